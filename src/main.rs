//! The `asktable-feishu-gateway` command.

use std::process::ExitCode;

use asktable_feishu_gateway::cli;
use asktable_feishu_gateway::config::Config;
use asktable_feishu_gateway::feishu::conn::Tuning;
use asktable_feishu_gateway::supervisor::{Signal, Supervisor};
use asktable_feishu_gateway::{logging, metrics};

const USAGE: &str = "\
asktable-feishu-gateway: connects Feishu/Lark bots to AskTable through Redis

Usage:
  asktable-feishu-gateway [run]            run the gateway (the default)
  asktable-feishu-gateway check [--json] [--chat <chat_id>]
                                           walk the troubleshooting list: Redis, channels, each Feishu
                                           app's credentials, permissions, version and events, the
                                           running gateway, AskTable Server; --chat: is the bot there
  asktable-feishu-gateway status [--json]  show every channel's state
  asktable-feishu-gateway health           exit 0 when this host's gateway is healthy (its /healthz
                                           with METRICS_ADDR, else its heartbeat in Redis)
  asktable-feishu-gateway trace <message_id> [--json]
                                           where did this Feishu message go (kept 3 days)
  asktable-feishu-gateway dead list [--json] [N]   the newest N dead letters with their reasons
  asktable-feishu-gateway dead requeue <id>  put a dead-lettered answer back on the outbound list
  asktable-feishu-gateway channel list     list configured channels (secrets masked)
  asktable-feishu-gateway channel put <channel_id> --app-id <cli_…> [--agent-id ID] [--project-id ID]
                          [--domain feishu|lark|https://…] [--group-policy mention|all] [--disabled]
                                           add or change a channel; the App Secret is read from
                                           FEISHU_APP_SECRET or stdin (never from arguments)
  asktable-feishu-gateway channel rm <channel_id>
  asktable-feishu-gateway --version | --help

Settings come from the environment (REDIS_URL, GATEWAY_INSTANCE_ID, …; see
README.md). Channels are normally configured by AskTable Server in Redis.
";

#[allow(clippy::print_stdout, clippy::print_stderr)] // the CLI's own output
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] | ["run"] => run(),
        ["check", ..] => cli::check(Config::from_env(), &args[1..]),
        ["status" | "channel" | "trace" | "dead" | "health", ..] => match Config::from_env() {
            Err(e) => {
                eprintln!("asktable-feishu-gateway: {e}");
                ExitCode::from(2)
            }
            Ok(cfg) => match args[0].as_str() {
                "status" => cli::status(&cfg, &args[1..]),
                "trace" => cli::trace(&cfg, &args[1..]),
                "dead" => cli::dead(&cfg, &args[1..]),
                "health" => cli::health(&cfg, &args[1..]),
                _ => cli::channel(&cfg, &args[1..]),
            },
        },
        ["--version" | "-V" | "version"] => {
            cli::write_out(format_args!("asktable-feishu-gateway {}\n", env!("CARGO_PKG_VERSION")));
            ExitCode::SUCCESS
        }
        ["--help" | "-h" | "help"] => {
            cli::write_out(format_args!("{USAGE}"));
            ExitCode::SUCCESS
        }
        other => {
            eprintln!("asktable-feishu-gateway: unknown arguments {other:?}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

#[allow(clippy::print_stderr)] // before the logger exists
fn run() -> ExitCode {
    metrics::init();
    let cfg = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("asktable-feishu-gateway: {e}");
            return ExitCode::from(2);
        }
    };
    logging::init();
    if let Some(addr) = cfg.metrics_addr {
        match metrics::serve(addr) {
            Ok(bound) => {
                log::info!("metrics on http://{bound}/metrics, health on http://{bound}/healthz")
            }
            Err(e) => {
                log::error!("invalid METRICS_ADDR: cannot listen on {addr}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let signals = match signal_thread() {
        Ok(rx) => rx,
        Err(e) => {
            log::error!("cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    match Supervisor::new(cfg, Tuning::default()) {
        Ok(sup) => {
            sup.run(signals);
            ExitCode::SUCCESS
        }
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(2)
        }
    }
}

/// Forwards SIGTERM/SIGINT/SIGHUP to the supervisor.
fn signal_thread() -> std::io::Result<crossbeam_channel::Receiver<Signal>> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    let (tx, rx) = crossbeam_channel::bounded(16);
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        for sig in signals.forever() {
            let s = if sig == SIGHUP { Signal::Reload } else { Signal::Terminate };
            if tx.send(s).is_err() {
                break;
            }
        }
    })?;
    Ok(rx)
}
