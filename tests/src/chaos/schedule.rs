//! The faults the chaos suite injects and when: a plan drawn from one seed, so a failing run
//! can be replayed exactly (same faults, same order, same victims, same durations, at the
//! same points of the crawl's progress).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::proxy::Mode;

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// `kill -9` of one worker process, started again at once.
    WorkerKill,
    /// `kill -9` of Redis (AOF on, fsync always), started again at once.
    RedisRestart,
    /// `kill -9` of the Kafka broker, started again after a pause.
    KafkaKill,
    /// The operators' API server stopped (SIGTERM) and started again.
    ApiServerRestart,
    /// `kill -9` of the leading operator; the standby takes over, the killed one comes back
    /// as the new standby.
    OperatorKill,
    /// The leading operator's connections to the API server silent (half-open) for longer
    /// than the leader Lease: it must stop acting before the standby takes over.
    OperatorStall,
    /// Every worker connection to Redis cut (reset) and new ones refused for a while.
    RedisDrop,
    /// Every worker connection to Redis silent (half-open) for a while.
    RedisStall,
    /// Every worker connection to Redis reset once.
    RedisReset,
    /// As [`FaultKind::RedisDrop`], to the Kafka broker.
    KafkaDrop,
    /// As [`FaultKind::RedisStall`], to the Kafka broker.
    KafkaStall,
    /// As [`FaultKind::RedisReset`], to the Kafka broker.
    KafkaReset,
}

impl FaultKind {
    /// Every kind, in the order the report lists them.
    pub const ALL: [FaultKind; 12] = [
        FaultKind::WorkerKill,
        FaultKind::RedisRestart,
        FaultKind::KafkaKill,
        FaultKind::ApiServerRestart,
        FaultKind::OperatorKill,
        FaultKind::OperatorStall,
        FaultKind::RedisDrop,
        FaultKind::RedisStall,
        FaultKind::RedisReset,
        FaultKind::KafkaDrop,
        FaultKind::KafkaStall,
        FaultKind::KafkaReset,
    ];

    /// Its name in the report and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::WorkerKill => "worker_kill",
            FaultKind::RedisRestart => "redis_restart",
            FaultKind::KafkaKill => "kafka_kill",
            FaultKind::ApiServerRestart => "apiserver_restart",
            FaultKind::OperatorKill => "operator_kill",
            FaultKind::OperatorStall => "operator_stall",
            FaultKind::RedisDrop => "redis_drop",
            FaultKind::RedisStall => "redis_stall",
            FaultKind::RedisReset => "redis_reset",
            FaultKind::KafkaDrop => "kafka_drop",
            FaultKind::KafkaStall => "kafka_stall",
            FaultKind::KafkaReset => "kafka_reset",
        }
    }

    /// The kind named `name`.
    ///
    /// # Errors
    /// For a name that is none of [`FaultKind::ALL`]'s.
    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .with_context(|| {
                format!(
                    "unknown fault {name:?}; known: {}",
                    Self::ALL.map(FaultKind::name).join(", ")
                )
            })
    }

    /// Whether the fault needs the operator (and its API server) to be running.
    pub fn needs_operator(self) -> bool {
        matches!(
            self,
            FaultKind::ApiServerRestart | FaultKind::OperatorKill | FaultKind::OperatorStall
        )
    }

    /// For a network fault: which proxy (true: Redis's) and which mode.
    pub(crate) fn network(self) -> Option<(bool, Mode)> {
        match self {
            FaultKind::RedisDrop => Some((true, Mode::Drop)),
            FaultKind::RedisStall => Some((true, Mode::Stall)),
            FaultKind::RedisReset => Some((true, Mode::Reset)),
            FaultKind::KafkaDrop => Some((false, Mode::Drop)),
            FaultKind::KafkaStall => Some((false, Mode::Stall)),
            FaultKind::KafkaReset => Some((false, Mode::Reset)),
            _ => None,
        }
    }

    /// How many workers the fault can catch with requests in flight: the one killed, or
    /// all of them for a fault on a service they share. Control-plane faults touch none.
    pub(crate) fn workers_hit(self, workers: usize) -> usize {
        match self {
            FaultKind::WorkerKill => 1,
            FaultKind::ApiServerRestart | FaultKind::OperatorKill | FaultKind::OperatorStall => 0,
            _ => workers,
        }
    }
}

/// Parses `kind=count,kind=count` (a bare `kind` counts 1).
///
/// # Errors
/// For an unknown kind or a count that is not a number.
pub fn parse_counts(text: &str) -> Result<BTreeMap<FaultKind, u32>> {
    let mut counts = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, count) = part.split_once('=').unwrap_or((part, "1"));
        let count: u32 = count
            .trim()
            .parse()
            .with_context(|| format!("{part:?}: the count is not a number"))?;
        *counts.entry(FaultKind::parse(name.trim())?).or_default() += count;
    }
    if counts.is_empty() {
        bail!("no faults in {text:?}");
    }
    Ok(counts)
}

/// One fault of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedFault {
    /// What.
    pub kind: FaultKind,
    /// When: as soon as the job has fetched this share of the ground truth (0..1).
    pub at_share: f64,
    /// Which worker, for a worker kill (an index into the fleet).
    pub victim: usize,
    /// How long the fault lasts, for a network fault that lasts (drop, stall) and the pause
    /// before a killed broker starts again.
    pub hold: Duration,
}

/// The earliest and latest share of the crawl a fault is placed at: late enough that every
/// worker has work, early enough that the crawl is still running when the last one fires.
const SHARE_RANGE: (f64, f64) = (0.03, 0.75);
/// The shortest and longest hold of a fault.
const HOLD_RANGE_MS: (u64, u64) = (1500, 6000);

/// The plan of `counts` faults for `workers` workers, from `seed`, in firing order.
pub fn plan(seed: u64, counts: &BTreeMap<FaultKind, u32>, workers: usize) -> Vec<PlannedFault> {
    let mut rng = SplitMix64(seed);
    let mut faults: Vec<PlannedFault> = counts
        .iter()
        .flat_map(|(&kind, &n)| std::iter::repeat_n(kind, n as usize))
        .map(|kind| PlannedFault {
            kind,
            at_share: SHARE_RANGE.0 + rng.unit() * (SHARE_RANGE.1 - SHARE_RANGE.0),
            victim: rng.below(workers.max(1) as u64) as usize,
            hold: Duration::from_millis(
                HOLD_RANGE_MS.0 + rng.below(HOLD_RANGE_MS.1 - HOLD_RANGE_MS.0),
            ),
        })
        .collect();
    faults.sort_by(|a, b| a.at_share.total_cmp(&b.at_share));
    faults
}

/// A seed from the clock, for a run that was not given one.
pub fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // Fold the 128-bit count into 64 bits; any bits do, the seed is printed.
    SplitMix64((nanos as u64) ^ ((nanos >> 64) as u64) ^ u64::from(std::process::id())).next()
}

/// SplitMix64 (Steele, Lea and Flood 2014): small, fast, and the same on every machine, so a
/// printed seed replays.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n) (n > 0; the modulo bias is immaterial here).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts() -> BTreeMap<FaultKind, u32> {
        parse_counts("worker_kill=20,redis_restart,kafka_stall=2").expect("parses")
    }

    #[test]
    fn a_seed_replays_the_same_plan() {
        let a = plan(42, &counts(), 3);
        assert_eq!(a, plan(42, &counts(), 3));
        assert_ne!(a, plan(43, &counts(), 3), "another seed, another plan");
        assert_eq!(a.len(), 23);
        assert!(a.windows(2).all(|w| w[0].at_share <= w[1].at_share));
        assert!(a.iter().all(|f| f.victim < 3
            && (SHARE_RANGE.0..SHARE_RANGE.1).contains(&f.at_share)
            && f.hold >= Duration::from_millis(HOLD_RANGE_MS.0)));
        let kills = a.iter().filter(|f| f.kind == FaultKind::WorkerKill).count();
        assert_eq!(kills, 20);
        let victims: std::collections::BTreeSet<usize> = a.iter().map(|f| f.victim).collect();
        assert_eq!(victims.len(), 3, "every worker is a victim some time");
    }

    #[test]
    fn counts_parse_and_unknown_kinds_are_refused() {
        let c = counts();
        assert_eq!(c[&FaultKind::WorkerKill], 20);
        assert_eq!(c[&FaultKind::RedisRestart], 1);
        assert_eq!(c[&FaultKind::KafkaStall], 2);
        assert!(parse_counts("worker_kil=2").is_err());
        assert!(parse_counts("worker_kill=x").is_err());
        assert!(parse_counts("").is_err());
        for kind in FaultKind::ALL {
            assert_eq!(FaultKind::parse(kind.name()).expect("round trip"), kind);
        }
    }
}
