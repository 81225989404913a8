//! Reconciling the channel registry with the config hash, as a pure plan:
//! the configs read from Redis plus what runs now → for every channel one
//! [`Step`] (start, restart, apply in place, stop as rejected or disabled),
//! plus the channels to remove. The supervisor carries the plan out; the rules are tested here
//! with literals.
//!
//! One app, one channel: when two enabled channels name the same app, the
//! one already running it keeps it, else the lowest channel id; the other
//! is rejected with a reason the operator can read.

use std::collections::{BTreeMap, HashMap};

use crate::bridge::contract::Invalid;
use crate::channel::ChannelConfig;

/// A channel's config as read: usable, or why not.
pub type Parsed = Result<ChannelConfig, Invalid>;

/// What the registry knows of a channel before the plan.
#[derive(Debug, Clone, Copy, Default)]
pub struct Known<'a> {
    /// The config its connection thread runs with, if it runs.
    pub running: Option<&'a ChannelConfig>,
    /// Its thread failed and a restart is scheduled.
    pub restart_pending: bool,
}

/// What to do with one channel still in the config hash, with the config
/// it runs with from now on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Unusable config: stop it and report the reason as `error`.
    Reject(Invalid),
    /// `enabled: false`: stop it and report `disabled`.
    Disable(ChannelConfig),
    /// Not running: start it.
    Start(ChannelConfig),
    /// Running with other credentials, keys or domain: reconnect.
    Restart(ChannelConfig),
    /// Running; only routing (agent, project, group policy) may have
    /// changed, which applies without reconnecting.
    InPlace { config: ChannelConfig, routing_changed: bool },
    /// Its restart after a failure is scheduled already.
    AwaitRestart(ChannelConfig),
}

impl Step {
    /// The channel's config as read, which the registry records.
    pub fn parsed(&self) -> Parsed {
        match self {
            Step::Reject(problem) => Err(problem.clone()),
            Step::Disable(c)
            | Step::Start(c)
            | Step::Restart(c)
            | Step::InPlace { config: c, .. }
            | Step::AwaitRestart(c) => Ok(c.clone()),
        }
    }
}

/// The plan: channels gone from the config hash (stop and forget them),
/// then one step per channel in it, by channel id.
#[derive(Debug, Default)]
pub struct Plan {
    pub removed: Vec<String>,
    pub steps: Vec<(String, Step)>,
}

pub fn plan(configs: BTreeMap<String, Parsed>, known: &BTreeMap<String, Known>) -> Plan {
    let configs = assign_apps(configs, known);
    let removed = known.keys().filter(|id| !configs.contains_key(*id)).cloned().collect();
    let steps = configs
        .into_iter()
        .map(|(id, parsed)| {
            let k = known.get(&id).copied().unwrap_or_default();
            let step = match parsed {
                Err(problem) => Step::Reject(problem),
                Ok(c) if !c.enabled => Step::Disable(c),
                Ok(c) => match k.running {
                    Some(run) if run.needs_reconnect(&c) => Step::Restart(c),
                    Some(run) => {
                        let routing_changed = run.routing != c.routing;
                        Step::InPlace { config: c, routing_changed }
                    }
                    None if k.restart_pending => Step::AwaitRestart(c),
                    None => Step::Start(c),
                },
            };
            (id, step)
        })
        .collect();
    Plan { removed, steps }
}

/// Rejects every enabled channel whose app another channel holds.
pub fn assign_apps(
    mut configs: BTreeMap<String, Parsed>,
    known: &BTreeMap<String, Known>,
) -> BTreeMap<String, Parsed> {
    // The running owner keeps its app.
    let mut owner: HashMap<String, String> = HashMap::new();
    for (id, k) in known {
        if let (Some(run), Some(Ok(new))) = (k.running, configs.get(id))
            && new.enabled
            && new.app_id == run.app_id
        {
            owner.insert(new.app_id.clone(), id.clone());
        }
    }
    // Else the lowest channel id (the map is ordered).
    for (id, cfg) in configs.iter_mut() {
        let Ok(c) = cfg else { continue };
        if !c.enabled {
            continue;
        }
        let holder = owner.entry(c.app_id.clone()).or_insert_with(|| id.clone());
        if holder != id {
            *cfg = Err(Invalid(format!("app_id {} is already used by channel {holder}", c.app_id)));
        }
    }
    configs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::{Domain, GroupPolicy, Routing, Secret};

    fn cfg(id: &str, app: &str, secret: &str) -> ChannelConfig {
        ChannelConfig {
            channel_id: id.into(),
            enabled: true,
            app_id: app.into(),
            app_secret: Secret::new(secret),
            encrypt_key: Secret::default(),
            verification_token: Secret::default(),
            domain: Domain::Feishu,
            routing: Routing {
                agent_id: None,
                project_id: None,
                group_policy: GroupPolicy::Mention,
                welcome: None,
            },
        }
    }

    fn configs(list: &[ChannelConfig]) -> BTreeMap<String, Parsed> {
        list.iter().map(|c| (c.channel_id.clone(), Ok(c.clone()))).collect()
    }

    /// What the registry knows when `running` channels run.
    fn known(running: &[ChannelConfig]) -> BTreeMap<String, Known<'_>> {
        running
            .iter()
            .map(|c| (c.channel_id.clone(), Known { running: Some(c), restart_pending: false }))
            .collect()
    }

    /// The plan as `(channel, what)` lines, removals first.
    fn steps(p: Plan) -> Vec<(String, String)> {
        let label = |s: &Step| match s {
            Step::Reject(e) => format!("reject: {e}"),
            Step::Disable(_) => "disable".into(),
            Step::Start(_) => "start".into(),
            Step::Restart(_) => "restart".into(),
            Step::InPlace { routing_changed: true, .. } => "in place, routing changed".into(),
            Step::InPlace { .. } => "in place".into(),
            Step::AwaitRestart(_) => "await restart".into(),
        };
        let removed = p.removed.into_iter().map(|id| (id, "remove".to_owned()));
        removed.chain(p.steps.iter().map(|(id, s)| (id.clone(), label(s)))).collect()
    }

    fn assert_plan(p: Plan, want: &[(&str, &str)]) {
        let want: Vec<(String, String)> =
            want.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        assert_eq!(steps(p), want);
    }

    #[test]
    fn new_channels_start() {
        let p = plan(
            configs(&[cfg("ch_a", "cli_a", "s"), cfg("ch_b", "cli_b", "s")]),
            &BTreeMap::new(),
        );
        assert_plan(p, &[("ch_a", "start"), ("ch_b", "start")]);
    }

    #[test]
    fn two_channels_on_one_app_the_lowest_id_wins() {
        let p = plan(
            configs(&[cfg("ch_b", "cli_x", "s"), cfg("ch_a", "cli_x", "s")]),
            &BTreeMap::new(),
        );
        assert_plan(
            p,
            &[("ch_a", "start"), ("ch_b", "reject: app_id cli_x is already used by channel ch_a")],
        );
    }

    #[test]
    fn two_channels_on_one_app_the_running_one_keeps_it() {
        let running = [cfg("ch_b", "cli_x", "s")];
        let known = known(&running);
        let p = plan(configs(&[cfg("ch_a", "cli_x", "s"), cfg("ch_b", "cli_x", "s")]), &known);
        assert_plan(
            p,
            &[
                ("ch_a", "reject: app_id cli_x is already used by channel ch_b"),
                ("ch_b", "in place"),
            ],
        );
    }

    #[test]
    fn a_changed_secret_reconnects_a_changed_agent_does_not() {
        let running = [cfg("ch_a", "cli_a", "old")];
        let known = known(&running);
        let p = plan(configs(&[cfg("ch_a", "cli_a", "new")]), &known);
        assert_eq!(p.steps, [("ch_a".into(), Step::Restart(cfg("ch_a", "cli_a", "new")))]);
        let mut agent = cfg("ch_a", "cli_a", "old");
        agent.routing.agent_id = Some("ag_2".into());
        let p = plan(configs(&[agent.clone()]), &known);
        assert_eq!(
            p.steps,
            [("ch_a".into(), Step::InPlace { config: agent, routing_changed: true })]
        );
    }

    #[test]
    fn a_disabled_channel_stops_and_frees_its_app() {
        let running = [cfg("ch_a", "cli_x", "s")];
        let known = known(&running);
        let mut off = cfg("ch_a", "cli_x", "s");
        off.enabled = false;
        let p = plan(configs(&[off, cfg("ch_b", "cli_x", "s")]), &known);
        assert_plan(p, &[("ch_a", "disable"), ("ch_b", "start")]);
    }

    #[test]
    fn removed_rejected_and_pending_restarts() {
        let running = cfg("ch_gone", "cli_g", "s");
        let known = BTreeMap::from([
            ("ch_gone".to_owned(), Known { running: Some(&running), restart_pending: false }),
            ("ch_crashed".to_owned(), Known { running: None, restart_pending: true }),
        ]);
        let mut all = configs(&[cfg("ch_crashed", "cli_c", "s")]);
        all.insert("ch_bad".into(), Err(Invalid("app_secret is missing or empty".into())));
        let p = plan(all, &known);
        assert_plan(
            p,
            &[
                ("ch_gone", "remove"),
                ("ch_bad", "reject: app_secret is missing or empty"),
                ("ch_crashed", "await restart"),
            ],
        );
    }
}
