//! How a spider's frontier spreads over shards: which shard holds a domain, the hash tag of each
//! shard's keys, and the connection each shard is reached through.
//!
//! A domain (host) belongs to one shard, chosen by a hash of its name, so everything a host's
//! politeness and dedupe need (its queues, clock, Crawl-delay, the fingerprints of its URLs)
//! lives in one shard and stays exact. Shard `i` of spider `S` keeps its keys under
//! `P:{S#k}`, where `k` is the smallest number whose Redis Cluster slot falls in the `i`-th of
//! `n` equal ranges of the 16,384 slots: on a cluster whose slots are split evenly between `n`
//! primaries (as `redis-cli --cluster create` splits them), each shard lands on its own
//! primary. A frontier of one shard keeps the tag `{S}`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// Redis Cluster's number of hash slots.
const SLOTS: u16 = 16384;

/// The Redis Cluster hash slot of a key: CRC16 (XMODEM) of its hash tag, or of the whole key
/// when it has none.
pub(crate) fn slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = key
        .find('{')
        .and_then(|open| {
            let rest = &bytes[open + 1..];
            rest.iter()
                .position(|b| *b == b'}')
                .map(|close| &rest[..close])
        })
        .filter(|tag| !tag.is_empty());
    crc16::State::<crc16::XMODEM>::calculate(tagged.unwrap_or(bytes)) % SLOTS
}

/// The hash tag of shard `shard` of `count` for spider `spiderid`.
pub(crate) fn tag(spiderid: &str, shard: usize, count: usize) -> String {
    if count <= 1 {
        return spiderid.to_owned();
    }
    let range = |slot: u16| usize::from(slot) * count / usize::from(SLOTS);
    (0u64..)
        .map(|k| format!("{spiderid}#{k}"))
        .find(|candidate| range(slot(&format!("{{{candidate}}}"))) == shard)
        .unwrap_or_default()
}

/// The shards of one frontier: how many, the key bases of each spider (computed once), and
/// which shard a domain belongs to.
#[derive(Debug)]
pub(crate) struct Layout {
    prefix: String,
    count: usize,
    bases: Mutex<HashMap<String, Arc<[String]>>>,
}

impl Layout {
    pub(crate) fn new(prefix: &str, count: usize) -> Self {
        Self {
            prefix: prefix.to_owned(),
            count: count.max(1),
            bases: Mutex::new(HashMap::new()),
        }
    }

    /// The number of shards.
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// The shard holding `domain` (a lowercase host).
    pub(crate) fn shard_of(&self, domain: &str) -> usize {
        if self.count == 1 {
            return 0;
        }
        let hash = xxhash_rust::xxh3::xxh3_64(domain.as_bytes());
        usize::try_from(hash % self.count as u64).unwrap_or(0)
    }

    /// `P:{tag}` of every shard of `spiderid` (the name was checked by the caller).
    pub(crate) fn bases(&self, spiderid: &str) -> Arc<[String]> {
        if let Ok(cache) = self.bases.lock()
            && let Some(bases) = cache.get(spiderid)
        {
            return bases.clone();
        }
        let bases: Arc<[String]> = (0..self.count)
            .map(|i| format!("{}:{{{}}}", self.prefix, tag(spiderid, i, self.count)))
            .collect();
        if let Ok(mut cache) = self.bases.lock() {
            cache.insert(spiderid.to_owned(), bases.clone());
        }
        bases
    }
}

/// The connection of one shard: its own server's, or a Redis Cluster connection shared by every
/// shard (which routes each call to the primary of its keys' slot).
#[derive(Clone)]
pub(crate) enum Conn {
    /// An independent Redis server (reconnects by itself).
    Single(ConnectionManager),
    /// A Redis Cluster, cluster-aware: follows MOVED and ASK and slot changes.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis_cluster() {
        // Values from Redis's own CLUSTER KEYSLOT.
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("{user1000}.following"), slot("user1000"));
        assert_eq!(slot("123456789"), 12739);
        assert_eq!(slot("a{}b"), slot("a{}b"));
    }

    #[test]
    fn one_shard_keeps_the_spider_as_its_tag() {
        assert_eq!(tag("link", 0, 1), "link");
        let layout = Layout::new("kc", 1);
        assert_eq!(&*layout.bases("link"), ["kc:{link}".to_owned()]);
        assert_eq!(layout.shard_of("example.com"), 0);
    }

    #[test]
    fn each_shard_of_three_lands_in_its_own_third_of_the_slots() {
        for spider in ["link", "wandering", "a", "shop-spider"] {
            let tags: Vec<String> = (0..3).map(|i| tag(spider, i, 3)).collect();
            for (i, t) in tags.iter().enumerate() {
                let s = usize::from(slot(&format!("{{{t}}}")));
                assert_eq!(s * 3 / 16384, i, "{spider} shard {i}: {t} in slot {s}");
                assert!(t.starts_with(&format!("{spider}#")), "{t}");
            }
        }
    }

    #[test]
    fn domains_spread_over_the_shards() {
        let layout = Layout::new("kc", 3);
        let mut per = [0usize; 3];
        for i in 0..3000 {
            per[layout.shard_of(&format!("host{i}.test"))] += 1;
        }
        assert!(per.iter().all(|n| (800..1200).contains(n)), "{per:?}");
        assert_eq!(
            layout.shard_of("example.com"),
            Layout::new("other", 3).shard_of("example.com")
        );
    }
}
