//! The two implementations under one test harness.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kubecrawl_frontier::clock::ManualClock;
use kubecrawl_frontier::{Frontier, FrontierConfig, MemoryFrontier, RedisFrontier};

/// The settings every conformance test runs with: quick retries for the retry test.
pub(crate) fn config() -> FrontierConfig {
    FrontierConfig {
        retry_base: Duration::from_millis(200),
        retry_max: Duration::from_secs(1),
        max_retries: 2,
        ..FrontierConfig::default()
    }
}

/// A frontier under test, a way to move its time, and a way to open another client on the
/// same state.
pub(crate) trait Harness: Send + Sync {
    /// The implementation.
    type F: Frontier + Clone + 'static;
    /// The client tests use.
    fn frontier(&self) -> &Self::F;
    /// Lets `by` pass for the frontier (a manual clock, or a real sleep for Redis).
    fn advance(&self, by: Duration) -> impl Future<Output = ()> + Send;
    /// Another client on the same state (its own connection, for Redis).
    fn client(&self) -> impl Future<Output = Self::F> + Send;
}

pub(crate) struct Memory {
    frontier: MemoryFrontier,
    clock: ManualClock,
}

pub(crate) fn memory() -> Memory {
    let clock = ManualClock::new();
    Memory {
        frontier: MemoryFrontier::with_clock(config(), Arc::new(clock.clone())),
        clock,
    }
}

impl Harness for Memory {
    type F = MemoryFrontier;

    fn frontier(&self) -> &MemoryFrontier {
        &self.frontier
    }

    async fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    async fn client(&self) -> MemoryFrontier {
        self.frontier.clone()
    }
}

pub(crate) struct Redis {
    frontier: RedisFrontier,
    url: String,
    prefix: String,
}

/// The Redis of the test environment. Fails (never skips) when REDIS_URL is unset.
pub(crate) fn redis_url() -> String {
    std::env::var("REDIS_URL").expect(
        "REDIS_URL is not set: these tests need the real Redis (`make env-up`, then \
         `. .testenv/env`), e.g. REDIS_URL=redis://127.0.0.1:6379",
    )
}

/// A key prefix no other test (or run) uses.
pub(crate) fn unique_prefix(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "kctest-{name}-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub(crate) async fn redis(name: &str) -> Redis {
    let url = redis_url();
    let prefix = unique_prefix(name);
    let frontier = RedisFrontier::connect(&url, &prefix, config())
        .await
        .expect("connects to REDIS_URL");
    Redis {
        frontier,
        url,
        prefix,
    }
}

impl Redis {
    /// Deletes every key of this test (tests may SCAN; the frontier never does).
    pub(crate) async fn cleanup(&self) {
        delete_prefix(&self.url, &self.prefix).await;
    }
}

/// Deletes every key under a prefix; returns how many there were.
pub(crate) async fn delete_prefix(url: &str, prefix: &str) -> usize {
    let keys = keys_with_prefix(url, prefix).await;
    let client = ::redis::Client::open(url).expect("valid url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connects");
    for chunk in keys.chunks(500) {
        let _: () = ::redis::cmd("DEL")
            .arg(chunk)
            .query_async(&mut conn)
            .await
            .expect("deletes");
    }
    keys.len()
}

/// Every key under a prefix.
pub(crate) async fn keys_with_prefix(url: &str, prefix: &str) -> Vec<String> {
    let client = ::redis::Client::open(url).expect("valid url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connects");
    let mut cursor: u64 = 0;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = ::redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .expect("scans");
        keys.extend(batch);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

impl Harness for Redis {
    type F = RedisFrontier;

    fn frontier(&self) -> &RedisFrontier {
        &self.frontier
    }

    async fn advance(&self, by: Duration) {
        tokio::time::sleep(by).await;
    }

    async fn client(&self) -> RedisFrontier {
        RedisFrontier::connect(&self.url, &self.prefix, config())
            .await
            .expect("connects to REDIS_URL")
    }
}
