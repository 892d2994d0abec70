//! Fleets sized by ready work: how many workers a spider's frontier can keep busy right now.
//!
//! A fleet with `autoscale` in its settings is not sized by its jobs' `workers` but by what its
//! spider's frontier holds ([`kubecrawl_frontier::SpiderBacklog`]):
//!
//! - **demand** = requests in flight + for each host that may be fetched now (its politeness
//!   clock has passed) the fetches it can take at once: 1 when every active job of the spider
//!   has a politeness delay (a polite host gets one request per interval), else up to
//!   `perHostConcurrency` (as many as it has queued);
//! - **workers** = demand ÷ `workerConcurrency` (a worker's fetches in flight), rounded up,
//!   at least 1 while anything is queued, retrying or in flight, between `minReplicas` (0
//!   allowed) and the fleet's `maxReplicas`;
//! - **damping**: a larger count applies at once; a smaller one only once it has been the
//!   largest wanted over the last `scaleDownAfterSeconds`, so a fleet does not shrink between
//!   two bursts and grow again.
//!
//! The operator owns `replicas` of the Deployment (no HorizontalPodAutoscaler to fight): it
//! reads each autoscaled spider's backlog every few seconds, beside the periodic fleet sync.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use kubecrawl_frontier::SpiderBacklog;
use serde::{Deserialize, Serialize};

/// How an autoscaled fleet is sized (`fleets.<spiderid>.autoscale` or `defaults.autoscale`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Autoscale {
    /// The fewest workers, even with nothing to do (0 allowed).
    #[serde(default)]
    pub min_replicas: u32,
    /// Fetches one worker keeps in flight: its `KUBECRAWL_CONCURRENCY`.
    #[serde(default = "default_worker_concurrency")]
    pub worker_concurrency: u32,
    /// Fetches one host may take at once when its jobs have no politeness delay: the
    /// workers' `KUBECRAWL_PER_HOST_CONCURRENCY`.
    #[serde(default = "default_per_host_concurrency")]
    pub per_host_concurrency: u32,
    /// How long a smaller worker count must be all that is wanted before the fleet shrinks.
    #[serde(default = "default_scale_down_after")]
    pub scale_down_after_seconds: u32,
}

fn default_worker_concurrency() -> u32 {
    64
}

fn default_per_host_concurrency() -> u32 {
    16
}

fn default_scale_down_after() -> u32 {
    60
}

impl Default for Autoscale {
    fn default() -> Self {
        Self {
            min_replicas: 0,
            worker_concurrency: default_worker_concurrency(),
            per_host_concurrency: default_per_host_concurrency(),
            scale_down_after_seconds: default_scale_down_after(),
        }
    }
}

/// Fetches the frontier could have in flight right now: those in flight, plus what each host
/// that may be fetched now can take (`per_host` at most, and no more than it has queued).
pub fn demand(backlog: &SpiderBacklog, per_host: u32) -> u64 {
    let ready: u64 = backlog
        .ready
        .iter()
        .map(|host| {
            backlog
                .domains
                .get(host)
                .copied()
                .unwrap_or(0)
                .min(u64::from(per_host.max(1)))
        })
        .sum();
    backlog.in_flight + ready
}

/// Workers wanted for `backlog`, before damping: enough for its demand, at least one while
/// anything is left, between the fleet's bounds.
pub fn workers(backlog: &SpiderBacklog, polite: bool, settings: &Autoscale, max: u32) -> u32 {
    let per_host = if polite {
        1
    } else {
        settings.per_host_concurrency
    };
    let demand = demand(backlog, per_host);
    let left = backlog.queued() + backlog.retrying + backlog.in_flight > 0;
    let wanted = demand.div_ceil(u64::from(settings.worker_concurrency.max(1)));
    let wanted = u32::try_from(wanted)
        .unwrap_or(u32::MAX)
        .max(u32::from(left));
    wanted
        .max(settings.min_replicas)
        .min(max.max(settings.min_replicas))
}

/// Remembers what each fleet wanted lately, so that it grows at once and shrinks late.
#[derive(Debug, Default)]
pub struct Damper {
    wanted: BTreeMap<String, VecDeque<(Instant, u32)>>,
}

impl Damper {
    /// Records that `spider` wants `workers` at `now`; returns the count to run: the largest
    /// wanted within the last `window`.
    pub fn damp(&mut self, spider: &str, workers: u32, now: Instant, window: Duration) -> u32 {
        let history = self.wanted.entry(spider.to_owned()).or_default();
        history.push_back((now, workers));
        while history
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > window)
        {
            history.pop_front();
        }
        history.iter().map(|(_, n)| *n).max().unwrap_or(workers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backlog(hosts: &[(&str, u64, bool)], in_flight: u64) -> SpiderBacklog {
        SpiderBacklog {
            domains: hosts
                .iter()
                .map(|(h, n, _)| ((*h).to_owned(), *n))
                .collect(),
            ready: hosts
                .iter()
                .filter(|(_, _, r)| *r)
                .map(|(h, _, _)| (*h).to_owned())
                .collect(),
            in_flight,
            retrying: 0,
        }
    }

    const SETTINGS: Autoscale = Autoscale {
        min_replicas: 0,
        worker_concurrency: 64,
        per_host_concurrency: 16,
        scale_down_after_seconds: 60,
    };

    #[test]
    fn hundreds_of_ready_hosts_want_the_whole_fleet() {
        let names: Vec<String> = (0..500).map(|i| format!("h{i}.test")).collect();
        let hosts: Vec<(&str, u64, bool)> = names.iter().map(|h| (h.as_str(), 3, true)).collect();
        let b = backlog(&hosts, 0);
        assert_eq!(demand(&b, 1), 500);
        assert_eq!(workers(&b, true, &SETTINGS, 10), 8);
        assert_eq!(workers(&b, true, &SETTINGS, 4), 4, "capped by maxReplicas");
        assert_eq!(
            workers(&b, false, &SETTINGS, 100),
            24,
            "3 each without a delay"
        );
    }

    #[test]
    fn one_polite_host_wants_one_worker() {
        let waiting = backlog(&[("site.test", 5000, false)], 1);
        assert_eq!(workers(&waiting, true, &SETTINGS, 10), 1);
        let ready = backlog(&[("site.test", 5000, true)], 0);
        assert_eq!(demand(&ready, 1), 1);
        assert_eq!(workers(&ready, true, &SETTINGS, 10), 1);
        // Without a delay one host takes up to 16 fetches: still one worker of 64.
        assert_eq!(workers(&ready, false, &SETTINGS, 10), 1);
    }

    #[test]
    fn nothing_left_wants_the_minimum() {
        let empty = SpiderBacklog::default();
        assert_eq!(workers(&empty, true, &SETTINGS, 10), 0);
        let min = Autoscale {
            min_replicas: 2,
            ..SETTINGS
        };
        assert_eq!(workers(&empty, true, &min, 10), 2);
        let retrying = SpiderBacklog {
            retrying: 3,
            ..SpiderBacklog::default()
        };
        assert_eq!(
            workers(&retrying, true, &SETTINGS, 10),
            1,
            "retries come back"
        );
    }

    #[test]
    fn the_fleet_grows_at_once_and_shrinks_after_the_window() {
        let mut damper = Damper::default();
        let t0 = Instant::now();
        let window = Duration::from_secs(60);
        assert_eq!(damper.damp("link", 2, t0, window), 2);
        assert_eq!(
            damper.damp("link", 8, t0 + Duration::from_secs(5), window),
            8
        );
        assert_eq!(
            damper.damp("link", 1, t0 + Duration::from_secs(30), window),
            8
        );
        assert_eq!(
            damper.damp("link", 1, t0 + Duration::from_secs(64), window),
            8
        );
        assert_eq!(
            damper.damp("link", 1, t0 + Duration::from_secs(66), window),
            1
        );
        assert_eq!(damper.damp("other", 3, t0, window), 3, "per fleet");
    }

    #[test]
    fn settings_parse_with_defaults() {
        let a: Autoscale = serde_yaml::from_str("minReplicas: 1").expect("parses");
        assert_eq!(
            a,
            Autoscale {
                min_replicas: 1,
                ..Autoscale::default()
            }
        );
        assert!(serde_yaml::from_str::<Autoscale>("minReplica: 1").is_err());
    }
}
