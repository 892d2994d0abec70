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
    /// The shard holding a domain (0 unless the frontier is sharded).
    fn shard_of(&self, _domain: &str) -> usize {
        0
    }
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
    target: Target,
    prefix: String,
}

/// Where a Redis frontier under test keeps its state.
#[derive(Clone)]
pub(crate) enum Target {
    /// One Redis server (REDIS_URL).
    One(String),
    /// Independent Redis servers, one shard each (REDIS_SHARD_URLS).
    Shards(Vec<String>),
    /// A Redis Cluster of three primaries (REDIS_CLUSTER_URLS).
    Cluster(Vec<String>),
}

impl Target {
    /// The servers whose keys a test may have written.
    pub(crate) fn servers(&self) -> Vec<String> {
        match self {
            Self::One(url) => vec![url.clone()],
            Self::Shards(urls) | Self::Cluster(urls) => urls.clone(),
        }
    }

    pub(crate) async fn connect(&self, prefix: &str) -> RedisFrontier {
        match self {
            Self::One(url) => RedisFrontier::connect(url, prefix, config()).await,
            Self::Shards(urls) => {
                let clients = urls
                    .iter()
                    .map(|u| ::redis::Client::open(u.as_str()).expect("valid url"))
                    .collect();
                RedisFrontier::connect_shards(clients, prefix, config()).await
            }
            Self::Cluster(urls) => {
                let client =
                    ::redis::cluster::ClusterClient::new(urls.clone()).expect("valid urls");
                RedisFrontier::connect_cluster(client, None, prefix, config()).await
            }
        }
        .expect("connects to the test environment's redis")
    }
}

/// The Redis of the test environment. Fails (never skips) when REDIS_URL is unset.
pub(crate) fn redis_url() -> String {
    env_var("REDIS_URL")
}

fn env_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: these tests need the real Redis servers (`make env-up`, then \
             `. .testenv/env`)"
        )
    })
}

fn urls(name: &str) -> Vec<String> {
    env_var(name).split(',').map(str::to_owned).collect()
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

/// A frontier on one Redis server.
pub(crate) async fn redis(name: &str) -> Redis {
    on(Target::One(redis_url()), name).await
}

/// A frontier spread over three independent Redis servers.
pub(crate) async fn shards(name: &str) -> Redis {
    on(Target::Shards(urls("REDIS_SHARD_URLS")), name).await
}

/// A frontier spread over a Redis Cluster of three primaries.
pub(crate) async fn cluster(name: &str) -> Redis {
    on(Target::Cluster(urls("REDIS_CLUSTER_URLS")), name).await
}

async fn on(target: Target, name: &str) -> Redis {
    let prefix = unique_prefix(name);
    let frontier = target.connect(&prefix).await;
    Redis {
        frontier,
        target,
        prefix,
    }
}

impl Redis {
    /// Where the frontier keeps its state.
    #[allow(
        dead_code,
        reason = "used by tests/shards.rs, which shares this harness"
    )]
    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    /// Deletes every key of this test (tests may SCAN; the frontier never does).
    pub(crate) async fn cleanup(&self) {
        for server in self.target.servers() {
            delete_prefix(&server, &self.prefix).await;
        }
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
    // One DEL per key: a cluster node refuses a DEL of keys in different slots.
    for chunk in keys.chunks(500) {
        let mut pipe = ::redis::pipe();
        for key in chunk {
            pipe.cmd("DEL").arg(key).ignore();
        }
        let _: () = pipe.query_async(&mut conn).await.expect("deletes");
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
        self.target.connect(&self.prefix).await
    }

    fn shard_of(&self, domain: &str) -> usize {
        self.frontier.shard_of(domain)
    }
}
