//! A simulator for scripts (`.ci/systemd-test`): serves one app on every
//! interface, prints `base_url=<url>` for clients at `SIM_HOST`, and runs
//! until its stdin closes.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool

use feishu_sim::{Sim, SimOptions};
use std::io::Read;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(app), Some(secret)) = (args.next(), args.next()) else {
        eprintln!("usage: sim-serve <app_id> <app_secret>   (SIM_HOST: the address clients use)");
        std::process::exit(2);
    };
    let host = std::env::var("SIM_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let sim = Sim::start(SimOptions { public_host: Some(host), ..SimOptions::default() });
    sim.add_app(&app, &secret);
    println!("base_url={}", sim.base_url());
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    println!("connections={}", sim.connections(&app));
}
