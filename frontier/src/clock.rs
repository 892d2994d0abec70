//! Time for the in-memory twin.
//!
//! [`RedisFrontier`](crate::RedisFrontier) takes "now" from Redis (`TIME`) inside its scripts,
//! so the clocks of different workers never matter. [`MemoryFrontier`](crate::MemoryFrontier)
//! takes it from a [`Clock`], so that tests can drive time by hand ([`ManualClock`]) or with
//! `tokio::time::pause` ([`TokioClock`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of "now", in microseconds since the Unix epoch.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Microseconds since the Unix epoch.
    fn now_micros(&self) -> u64;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_micros(&self) -> u64 {
        system_micros(SystemTime::now())
    }
}

/// A clock that only moves when told to. Clones share one time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    micros: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock standing at the current wall-clock time.
    pub fn new() -> Self {
        Self::at(SystemClock.now_micros())
    }

    /// A clock standing at `micros` since the Unix epoch.
    pub fn at(micros: u64) -> Self {
        Self {
            micros: Arc::new(AtomicU64::new(micros)),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.micros.fetch_add(duration_micros(by), Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now_micros(&self) -> u64 {
        self.micros.load(Ordering::SeqCst)
    }
}

/// The wall-clock time at creation plus tokio's elapsed time since, so that
/// `tokio::time::pause` and `advance` drive it.
///
/// # Assumptions
/// Created inside a tokio runtime (it reads `tokio::time::Instant`).
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    base_micros: u64,
    base: tokio::time::Instant,
}

impl TokioClock {
    /// A clock that starts at the current wall-clock time.
    pub fn new() -> Self {
        Self {
            base_micros: SystemClock.now_micros(),
            base: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now_micros(&self) -> u64 {
        self.base_micros
            .saturating_add(duration_micros(self.base.elapsed()))
    }
}

/// Microseconds since the epoch of a `SystemTime` (0 before the epoch).
pub(crate) fn system_micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(duration_micros)
        .unwrap_or(0)
}

/// A `SystemTime` from microseconds since the epoch.
pub(crate) fn micros_system(micros: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(micros)
}

/// A duration in whole microseconds, saturating.
pub(crate) fn duration_micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::at(1_000);
        let other = clock.clone();
        assert_eq!(clock.now_micros(), 1_000);
        other.advance(Duration::from_millis(2));
        assert_eq!(clock.now_micros(), 3_000);
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let clock = TokioClock::new();
        let before = clock.now_micros();
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(clock.now_micros() - before, 5_000_000);
    }
}
