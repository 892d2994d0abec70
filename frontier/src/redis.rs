//! [`RedisFrontier`]: the frontier shared by a fleet, on Redis.
//!
//! Every operation is one Lua script, so a lease (of a whole batch) or an acknowledgement
//! (with all its children) is one round trip and one atomic step. Scripts take "now" from
//! Redis (`TIME`), so the clocks of the workers never matter. No script uses KEYS or SCAN;
//! each touches a bounded number of keys, O(log n) in the size of the backlog (sorted-set
//! operations), except purge, which is proportional to the purged job and runs in chunks. (A
//! job's known pages are read with HSCAN of their own two hashes, never of the keyspace.)
//!
//! # Shards
//!
//! One Redis core serves one spider's frontier when it lives in one hash slot. To go past it,
//! a frontier spreads each spider over `n` shards: independent Redis servers
//! ([`RedisFrontier::connect_shards`]) or the primaries of a Redis Cluster
//! ([`RedisFrontier::connect_cluster`]). A domain (host) lives in one shard, chosen by a hash of
//! its name ([`RedisFrontier::shard_of`]), with its queues, clock, Crawl-delay and the
//! fingerprints of its URLs, so politeness and dedupe stay exact; every script still touches
//! one shard's slot. What changes with more than one shard:
//!
//! - **Priority is exact within a shard.** A lease asks one shard in turn for the whole batch
//!   and, while short, the others; across shards, requests of lower priority may be leased
//!   while another shard still holds higher ones.
//! - **An acknowledgement is atomic per shard.** The children that live on other shards are
//!   enqueued there first (dedupe makes that idempotent), then the lease is acknowledged with
//!   its own shard's children. A failure in between leaves the children enqueued and the lease
//!   held: it expires and the page is fetched again, and its children are duplicates. A
//!   stale, parked or purged lease's children on other shards stay admitted.
//! - **`maxPages` is a budget on the first shard.** The client takes budget for a batch's
//!   children before enqueuing them and gives back what was not admitted, so the cap is never
//!   exceeded; a client killed in between leaves the job that many pages short.
//!   `domainMaxPages` stays exact (a domain is in one shard).
//! - **Jobs are registered, suspended, resumed and purged on every shard**, one after the
//!   other; a reader in between sees some shards changed and others not.
//! - **Accounting adds up the shards.** [`Frontier::job_stats`] reads every shard; a job that
//!   looks finished is read again until two reads agree (a page's children reach their shard
//!   before its lease is acknowledged on its own, so one read could miss them).
//! - **The number of shards is pinned.** The first client records it under `P:shards`;
//!   another number is refused ([`Error::Shards`]), since it would move domains between shards.
//!
//! # Key layout
//!
//! `P` is the prefix ([`RedisFrontier::connect`], `kubecrawl` in the binaries), `S` the
//! spiderid, `J` a job's number (assigned at registration, unique within its spider and shard),
//! `F` a job's field (`["appid","crawlid"]`, the JSON that names it in `P:{S}:jobs`), `D` a
//! domain (host), `p` a priority. Every key of a spider's shard starts with `P:{S}` (one
//! shard) or `P:{S#k}` (shard `i` of several; `k` is picked so that the shards' slots spread over the cluster), so all keys one
//! script touches share one Redis Cluster hash slot. The table writes `P:{S}` for either.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:{S}:jobs` | hash | `["appid","crawlid"]` → `J` |
//! | `P:{S}:jobno` | string | last job number |
//! | `P:{S}:job:J` | hash | the job: `st` (run, susp, purge), `app`, `crawl`, `gen`, `pol` (policy JSON), `exp`, `mp`, `dmp`, `iv` (politeness interval µs), counters `q` queued, `f` in flight, `pg` pages, `it` items, `by` bytes, `er` errors, `rt` retries, `ad` admitted, `stp` furthest step, `c<code>` per status, `sd` seeded, dedupe state `dl`/`ds`/`dn`, `t:<D>` → why domain `D` was cut off as a crawler trap and `nt` how many were ([`crate::Frontier::cut_off`]) |
//! | `P:{S}:jd:J` | hash | `D` → requests admitted in that domain; kept only while the job has a `domainMaxPages` (set one later and counting starts then) |
//! | `P:{S}:jq:J` | set | `p:D` of each non-empty queue of the job (suspend, resume, purge) |
//! | `P:{S}:q:J:p:D` | list | the queue: `<seq> <request JSON>`, oldest first |
//! | `P:{S}:dq:D` | sorted set | `J:p` → score of that queue's head ([`crate::schedule`]) |
//! | `P:{S}:ready` | sorted set | domains that may be fetched now → best head score |
//! | `P:{S}:wait` | sorted set | domains whose clock has not passed → next allowed time (µs) |
//! | `P:{S}:cd:D` | string, TTL | a reported robots.txt Crawl-delay (µs) |
//! | `P:{S}:ad:D` | string, TTL | a worker's adaptive delay for the domain (µs) |
//! | `P:{S}:th` | hash | domain → throttle, the least interval between dispatches to each of its hosts (µs) ([`crate::rules`]) |
//! | `P:{S}:bl` | set | blacklisted domains ([`crate::rules`]) |
//! | `P:{S}:seq`, `P:{S}:lid` | string | enqueue sequence, lease numbers |
//! | `P:{S}:deadlines` | sorted set | leases: `<lease number>\|J\|p\|D\|seq\|request JSON` → deadline (µs); the client holds the same string, so an acknowledgement is one `ZREM` that also tells whether the lease was still held |
//! | `P:{S}:retry` | sorted set | `J\|p\|D\|request JSON` → when the retry is due (µs) |
//! | `P:{S}:s:J:b` | hash | dedupe bucket `b`: 12-byte fingerprint → empty |
//! | `P:{S}:st:g:n` | hash, TTL | spider counts per status label in bucket `n` of `g` seconds ([`crate::stats`]); a 10 s bucket gets its TTL when rolled up |
//! | `P:{S}:st:last` | string | the newest 10 s bucket, not yet rolled up into the coarser ones |
//! | `P:{S}:st:life` | hash | lifetime spider counts per status label (rolled up) |
//! | `P:{S}:epoch` | string | the identity of the spider's state ([`crate::Frontier::epoch`]) |
//! | `P:{S}:workers` | sorted set, TTL | worker name → heartbeat expiry (µs); first shard only |
//! | `P:spiders` | sorted set, TTL | spiderid → latest heartbeat expiry (µs); its own slot |
//! | `P:shards` | string | the number of shards the frontier was first used with; its own slot |
//! | `P:{S}:budget` | hash | first shard of several only: job field → `maxPages` (-1: none), `<field>#n` → pages taken |
//! | `P:{S}:kn:F` | hash | the job's known pages of the current recrawl round ([`crate::known`]): URL → request JSON, written by `complete.lua` when an acknowledgement that remembers a request is applied, on the shard of the request's domain; kept by purge, and without the job being registered |
//! | `P:{S}:knp:F` | hash | the previous round's known pages, as `kn` ([`crate::Frontier::rotate_known`] renames `kn` to it) |
//! | `P:{S}:knr:F` | string | first shard only: the job's known pages have a previous set (set by a rotation once every shard rotated, deleted by [`crate::Frontier::drop_known`]; a rotation does nothing while it is there) |
//!
//! # Memory
//!
//! A queued request is one list entry, its JSON plus a sequence number (lists of small
//! entries are packed by Redis, a few bytes of overhead each). Dedupe is *linear hashing* over
//! small hashes: a job's fingerprints live in `2^l + s` buckets that split one at a time as the
//! job grows, so each bucket stays a compact listpack of at most ~100 entries (16 bytes per
//! URL plus a share of the bucket's key) and looking up or adding is O(1). `make
//! bench-frontier` measures both. A job that recrawls keeps one request JSON per known page
//! (a few hundred bytes with its validators), twice while a round re-seeds the previous
//! round's pages; purge does not free them, [`crate::Frontier::drop_known`] does.
//!
//! # Where policy is evaluated
//!
//! Link filters (regexes, allowed domains, extensions, depth) run in the client
//! ([`crate::filter`]), which also canonicalises URLs and computes fingerprints; the script
//! then decides atomically what needs shared state: whether the job accepts anything,
//! budgets, dedupe, and the enqueue itself. A client caches each job's compiled filter and
//! reloads it when the job's generation (bumped by every registration) changes.

mod reply;
mod scripts;
mod shards;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::try_join_all;
use kubecrawl_api::{CrawlRequest, JobRef};
use redis::aio::ConnectionManager;

use self::reply::{Enqueued, Reply};
use self::scripts::Scripts;
use self::shards::{Conn, Layout};
use crate::clock::duration_micros;
use crate::filter::{LinkFilter, Prepared};
use crate::known::{Known, KnownCursor};
use crate::lease::{Completion, Lease, LeaseId, Outcome, RetryOutcome, RetryRequest};
use crate::stats::{SpiderStats, Window, WorkerCounts};
use crate::{
    Admission, DomainHint, DomainRules, Error, Frontier, FrontierConfig, JobBacklog, JobPolicy,
    JobStats, Result, SpiderBacklog, check_name,
};

/// Queues and dedupe buckets one purge call deletes at most, bounding how long it blocks Redis.
const PURGE_CHUNK: u32 = 2000;
/// Queues one suspend or resume call attaches or detaches at most, bounding how long it
/// blocks Redis (a job may have a queue per (domain, priority): millions).
const STATE_CHUNK: u32 = 1000;
/// Requests one enqueue script call carries at most (seeds are sent in chunks of this).
const SEED_CHUNK: usize = 1000;
/// How many times [`Frontier::job_stats`] reads a sharded job again when the shards' answers
/// looked finished but changed between two reads.
const STATS_READS: usize = 5;

/// Where a frontier lives: independent Redis servers, one shard each (one server: no
/// sharding), or a Redis Cluster spread over `shards` shards (`None`: as many as the frontier
/// was first used with, else as the cluster has primaries).
#[derive(Debug, Clone)]
pub enum Servers {
    /// Independent servers, one shard each, in shard order.
    List(Vec<redis::Client>),
    /// A Redis Cluster.
    Cluster {
        /// The cluster-aware client.
        client: Box<redis::cluster::ClusterClient>,
        /// The number of shards.
        shards: Option<usize>,
    },
}

/// The frontier on Redis: one server, several independent servers (shards), or a Redis
/// Cluster. Cheap to clone; clones share the connections.
#[derive(Clone)]
pub struct RedisFrontier {
    inner: Arc<Inner>,
}

/// A job's compiled filter, the policy generation it was compiled from, and whether the job
/// has a `maxPages` (which a sharded frontier takes from the job's budget before enqueuing).
type CachedFilter = (u64, Arc<LinkFilter>, bool);

struct Inner {
    /// One connection per shard (clones of one cluster connection for a Redis Cluster).
    shards: Vec<Conn>,
    layout: Layout,
    prefix: String,
    config: FrontierConfig,
    scripts: Scripts,
    /// (spiderid, shard, job number) → the job's compiled filter.
    filters: Mutex<HashMap<(String, usize, u64), CachedFilter>>,
    round_trips: AtomicU64,
    /// The shard a lease call asks first, turning so that successive leases visit every shard.
    next_shard: AtomicUsize,
}

impl std::fmt::Debug for RedisFrontier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisFrontier")
            .field("prefix", &self.inner.prefix)
            .field("shards", &self.inner.layout.count())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Children of acknowledgement `.0` (its index in the batch) of job field `.1` that live on
/// another shard than its lease.
type RemoteGroup<'a> = (usize, String, &'a [Prepared]);

/// One acknowledgement of a batch, prepared: its children filtered and split by shard.
struct Ack<'a> {
    lease: &'a Lease,
    outcome: &'a Outcome,
    shard: usize,
    /// Children per shard, in the order the spider yielded them.
    children: BTreeMap<usize, Vec<Prepared>>,
    /// What the client already decided: filtered out, and over the job's budget.
    decided: Admission,
    /// What other shards did with the children they hold.
    remote: Admission,
    /// The job's budget field, when the children were taken from its budget.
    budget: Option<String>,
}

impl RedisFrontier {
    /// Connects to one Redis at `url` (`redis://host:port/db`) and uses keys under `prefix`.
    ///
    /// # Errors
    /// [`Error::InvalidName`] for a prefix with braces, [`Error::Connect`] when Redis cannot
    /// be reached, [`Error::Shards`] when the prefix holds a sharded frontier.
    pub async fn connect(url: &str, prefix: &str, config: FrontierConfig) -> Result<Self> {
        let client = redis::Client::open(url).map_err(|source| Error::Connect { source })?;
        Self::connect_client(client, prefix, config).await
    }

    /// Connects with a client built elsewhere (with TLS and credentials, as the binaries'
    /// `kubecrawl_process::connect::redis` flags build it) and uses keys under `prefix`.
    ///
    /// # Errors
    /// As [`RedisFrontier::connect`].
    pub async fn connect_client(
        client: redis::Client,
        prefix: &str,
        config: FrontierConfig,
    ) -> Result<Self> {
        Self::connect_shards(vec![client], prefix, config).await
    }

    /// Connects to independent Redis servers, one shard each, in the order given: every client
    /// of the frontier must list the same servers in the same order. One client is the
    /// unsharded frontier.
    ///
    /// # Errors
    /// As [`RedisFrontier::connect`]; [`Error::Shards`] when the prefix was first used with
    /// another number of shards.
    pub async fn connect_shards(
        clients: Vec<redis::Client>,
        prefix: &str,
        config: FrontierConfig,
    ) -> Result<Self> {
        check_name("prefix", prefix)?;
        if clients.is_empty() {
            return Err(Error::Shards {
                prefix: prefix.to_owned(),
                stored: 0,
                configured: 0,
            });
        }
        let conns = try_join_all(clients.into_iter().map(ConnectionManager::new))
            .await
            .map_err(|source| Error::Connect { source })?;
        let shards: Vec<Conn> = conns.into_iter().map(Conn::Single).collect();
        let count = shards.len();
        Self::open(shards, count, prefix, config).await
    }

    /// Connects to a Redis Cluster (cluster-aware: it follows the cluster's slots) and spreads
    /// each spider over `shards` shards, or, when `None`, over as many as the frontier was
    /// first used with, else as the cluster has primaries.
    ///
    /// # Errors
    /// As [`RedisFrontier::connect_shards`].
    pub async fn connect_cluster(
        client: redis::cluster::ClusterClient,
        shards: Option<usize>,
        prefix: &str,
        config: FrontierConfig,
    ) -> Result<Self> {
        check_name("prefix", prefix)?;
        let mut conn = client
            .get_async_connection()
            .await
            .map_err(|source| Error::Connect { source })?;
        let count = match shards {
            Some(n) => n,
            None => match stored_shards(&mut conn, prefix).await? {
                Some(n) => n,
                None => primaries(&mut conn).await?,
            },
        };
        let conn = Conn::Cluster(conn);
        Self::open(vec![conn; count.max(1)], count, prefix, config).await
    }

    /// Connects to the servers the binaries' `--redis-url` flags name.
    ///
    /// # Errors
    /// As [`RedisFrontier::connect_shards`].
    pub async fn connect_servers(
        servers: Servers,
        prefix: &str,
        config: FrontierConfig,
    ) -> Result<Self> {
        match servers {
            Servers::List(clients) => Self::connect_shards(clients, prefix, config).await,
            Servers::Cluster { client, shards } => {
                Self::connect_cluster(*client, shards, prefix, config).await
            }
        }
    }

    /// Uses an existing connection manager: one shard, without checking how the prefix was
    /// first used.
    pub fn with_connection(conn: ConnectionManager, prefix: &str, config: FrontierConfig) -> Self {
        Self::new(vec![Conn::Single(conn)], prefix, config)
    }

    fn new(shards: Vec<Conn>, prefix: &str, config: FrontierConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                layout: Layout::new(prefix, shards.len()),
                shards,
                prefix: prefix.to_owned(),
                config,
                scripts: Scripts::new(),
                filters: Mutex::new(HashMap::new()),
                round_trips: AtomicU64::new(0),
                next_shard: AtomicUsize::new(0),
            }),
        }
    }

    /// Records the number of shards under the prefix the first time, and refuses another
    /// number later: a domain's shard depends on it, so a changed count would lose requests.
    async fn open(
        shards: Vec<Conn>,
        count: usize,
        prefix: &str,
        config: FrontierConfig,
    ) -> Result<Self> {
        let mut first = shards[0].clone();
        let stored: Option<usize> = redis::cmd("SET")
            .arg(format!("{prefix}:shards"))
            .arg(count)
            .arg("NX")
            .arg("GET")
            .query_async(&mut first)
            .await
            .map_err(|source| Error::Connect { source })?;
        if let Some(stored) = stored.filter(|n| *n != count) {
            return Err(Error::Shards {
                prefix: prefix.to_owned(),
                stored,
                configured: count,
            });
        }
        Ok(Self::new(shards, prefix, config))
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The number of shards each spider's frontier spreads over.
    pub fn shards(&self) -> usize {
        self.inner.layout.count()
    }

    /// The shard that holds `domain`'s queues, clock and dedupe (0 with one shard).
    pub fn shard_of(&self, domain: &str) -> usize {
        self.inner.layout.shard_of(&domain.to_ascii_lowercase())
    }

    /// The key base `P:{tag}` of every shard of `spiderid`, in shard order (the benchmark and
    /// tests read Redis's own view of a shard with it).
    ///
    /// # Errors
    /// [`Error::InvalidName`] for a spiderid with braces.
    pub fn shard_bases(&self, spiderid: &str) -> Result<Vec<String>> {
        check_name("spiderid", spiderid)?;
        Ok(self.inner.layout.bases(spiderid).to_vec())
    }

    /// Requests this client sent to Redis so far (scripts and commands; the benchmark
    /// cross-checks Redis's own count with it).
    pub fn round_trips(&self) -> u64 {
        self.inner.round_trips.load(Ordering::Relaxed)
    }

    fn base(&self, spiderid: &str, shard: usize) -> Result<String> {
        check_name("spiderid", spiderid)?;
        Ok(self.inner.layout.bases(spiderid)[shard].clone())
    }

    fn conn(&self, shard: usize) -> Conn {
        self.inner.round_trips.fetch_add(1, Ordering::Relaxed);
        self.inner.shards[shard].clone()
    }

    /// Every shard's number.
    fn every_shard(&self) -> std::ops::Range<usize> {
        0..self.inner.layout.count()
    }

    async fn run(
        &self,
        op: &'static str,
        shard: usize,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<redis::Value> {
        invocation
            .invoke_async(&mut self.conn(shard))
            .await
            .map_err(|source| Error::Redis { op, source })
    }

    async fn query<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        shard: usize,
        cmd: &redis::Cmd,
    ) -> Result<T> {
        cmd.query_async(&mut self.conn(shard))
            .await
            .map_err(|source| Error::Redis { op, source })
    }

    /// Acknowledges leases of one spider (one hash slot per shard): the children that live on
    /// other shards are enqueued there first, then each shard's leases are acknowledged with
    /// their own children in one script call (`complete.lua`). Answers each lease in order.
    async fn complete_spider(&self, acks: &[(&Lease, &Outcome)]) -> Result<Vec<Completion>> {
        let mut prepared = Vec::with_capacity(acks.len());
        for (lease, outcome) in acks {
            prepared.push(self.prepare_ack(lease, outcome).await?);
        }
        let sharded = self.shards() > 1;
        if sharded {
            self.take_children_budget(&mut prepared).await?;
            self.enqueue_remote_children(&mut prepared).await?;
        }
        let mut by_shard: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, ack) in prepared.iter().enumerate() {
            by_shard.entry(ack.shard).or_default().push(i);
        }
        let answers = try_join_all(by_shard.iter().map(|(shard, indices)| {
            let batch: Vec<&Ack<'_>> = indices.iter().map(|i| &prepared[*i]).collect();
            self.complete_on_shard(*shard, batch)
        }))
        .await?;
        let mut done = vec![Completion::Stale; prepared.len()];
        for (indices, answers) in by_shard.values().zip(answers) {
            for (i, answer) in indices.iter().zip(answers) {
                done[*i] = answer;
            }
        }
        for (ack, completion) in prepared.iter().zip(done.iter_mut()) {
            if let Completion::Acked(admission) = completion {
                *admission += ack.decided;
                *admission += ack.remote;
            }
        }
        if sharded {
            self.give_back_budget(&prepared, &done).await?;
        }
        Ok(done)
    }

    /// Filters a lease's children through its job's policy and splits them by shard.
    async fn prepare_ack<'a>(&self, lease: &'a Lease, outcome: &'a Outcome) -> Result<Ack<'a>> {
        let shard = self.shard_of(&lease.domain);
        let mut ack = Ack {
            lease,
            outcome,
            shard,
            children: BTreeMap::new(),
            decided: Admission::default(),
            remote: Admission::default(),
            budget: None,
        };
        if outcome.children.is_empty() {
            return Ok(ack);
        }
        let (filter, budgeted) = self.filter(&lease.id, shard, &lease.job).await?;
        for child in &outcome.children {
            match filter.check(child) {
                Ok(prepared) => {
                    let to = self.inner.layout.shard_of(&prepared.domain);
                    ack.children.entry(to).or_default().push(prepared);
                }
                Err(_) => ack.decided.filtered += 1,
            }
        }
        if budgeted && self.shards() > 1 && !ack.children.is_empty() {
            ack.budget = Some(job_field(&lease.job)?);
        }
        Ok(ack)
    }

    /// Takes the children of budgeted jobs from their jobs' budgets; those beyond it are
    /// dropped and counted over budget. The acknowledgements are of one spider.
    async fn take_children_budget(&self, acks: &mut [Ack<'_>]) -> Result<()> {
        let Some(spiderid) = acks.first().map(|a| a.lease.id.spiderid.clone()) else {
            return Ok(());
        };
        let mut wanted: BTreeMap<String, u64> = BTreeMap::new();
        for ack in acks.iter() {
            if let Some(field) = &ack.budget {
                let n: usize = ack.children.values().map(Vec::len).sum();
                *wanted.entry(field.clone()).or_default() += n as u64;
            }
        }
        for (field, n) in wanted {
            let mut granted = self.budget(&spiderid, &field, "take", n).await?;
            for ack in acks
                .iter_mut()
                .filter(|a| a.budget.as_ref() == Some(&field))
            {
                for children in ack.children.values_mut() {
                    let keep = usize::try_from(granted)
                        .unwrap_or(usize::MAX)
                        .min(children.len());
                    granted -= keep as u64;
                    ack.decided.over_budget += (children.len() - keep) as u64;
                    children.truncate(keep);
                }
            }
        }
        Ok(())
    }

    /// Enqueues each acknowledgement's children that live on other shards than its lease, one
    /// call per shard (all shards at once), and notes what each did.
    async fn enqueue_remote_children(&self, acks: &mut [Ack<'_>]) -> Result<()> {
        let mut calls: BTreeMap<usize, Vec<RemoteGroup<'_>>> = BTreeMap::new();
        for (i, ack) in acks.iter().enumerate() {
            for (shard, children) in &ack.children {
                if *shard != ack.shard && !children.is_empty() {
                    calls.entry(*shard).or_default().push((
                        i,
                        job_field(&ack.lease.job)?,
                        children,
                    ));
                }
            }
        }
        if calls.is_empty() {
            return Ok(());
        }
        let spiderid = acks[0].lease.id.spiderid.clone();
        let answers = try_join_all(calls.iter().map(|(shard, groups)| {
            let groups: Vec<(&str, &[Prepared])> =
                groups.iter().map(|(_, f, c)| (f.as_str(), *c)).collect();
            self.enqueue(&spiderid, *shard, false, groups)
        }))
        .await?;
        let mut remote = vec![Admission::default(); acks.len()];
        for (groups, answers) in calls.values().zip(answers) {
            for ((i, _, children), answer) in groups.iter().zip(answers) {
                remote[*i] += match answer {
                    Enqueued::Done(admission) => admission,
                    Enqueued::Refused | Enqueued::Unknown => Admission {
                        refused: children.len() as u64,
                        ..Admission::default()
                    },
                };
            }
        }
        for (ack, remote) in acks.iter_mut().zip(remote) {
            ack.remote = remote;
        }
        Ok(())
    }

    /// Gives back to each budgeted job what it took and did not admit. The acknowledgements
    /// are of one spider.
    async fn give_back_budget(&self, acks: &[Ack<'_>], done: &[Completion]) -> Result<()> {
        let Some(spiderid) = acks.first().map(|a| &a.lease.id.spiderid) else {
            return Ok(());
        };
        let mut unused: BTreeMap<String, u64> = BTreeMap::new();
        for (ack, completion) in acks.iter().zip(done) {
            let Some(field) = &ack.budget else { continue };
            let taken: u64 = ack.children.values().map(|c| c.len() as u64).sum();
            // An acknowledged lease's admission already counts its other shards' children.
            let admitted = match completion {
                Completion::Acked(a) => a.admitted,
                _ => ack.remote.admitted,
            };
            *unused.entry(field.clone()).or_default() += taken.saturating_sub(admitted);
        }
        for (field, n) in unused {
            if n > 0 {
                self.budget(spiderid, &field, "give", n).await?;
            }
        }
        Ok(())
    }

    /// Acknowledges leases held on one shard, each with the children that live on that shard.
    async fn complete_on_shard(
        &self,
        shard: usize,
        acks: Vec<&Ack<'_>>,
    ) -> Result<Vec<Completion>> {
        let Some(first) = acks.first() else {
            return Ok(Vec::new());
        };
        let base = self.base(&first.lease.id.spiderid, shard)?;
        let mut inv = self.inner.scripts.complete.prepare_invoke();
        inv.key(&base).arg(acks.len());
        for ack in &acks {
            let (lease, outcome) = (ack.lease, ack.outcome);
            let children = ack.children.get(&shard).map_or(&[][..], Vec::as_slice);
            inv.arg(&lease.id.token)
                .arg(outcome.status.map(|s| s.to_string()).unwrap_or_default())
                .arg(outcome.bytes)
                .arg(outcome.items)
                .arg(outcome.step.unwrap_or(lease.request.depth))
                .arg(counters_arg(&outcome.counters));
            match &outcome.remember {
                Some(request) => {
                    let record = serde_json::to_string(request)
                        .map_err(|source| Error::Record { source })?;
                    inv.arg(job_field(&lease.job)?)
                        .arg(&request.url)
                        .arg(record);
                }
                None => {
                    inv.arg("").arg("").arg("");
                }
            }
            inv.arg(children.len());
            push_requests(&mut inv, children)?;
        }
        let reply = Reply::new("complete", self.run("complete", shard, &inv).await?)?;
        reply.completions(acks.len())
    }

    /// Enqueues groups of (job field, requests) on one shard (`enqueue.lua`).
    async fn enqueue(
        &self,
        spiderid: &str,
        shard: usize,
        seeds: bool,
        groups: Vec<(&str, &[Prepared])>,
    ) -> Result<Vec<Enqueued>> {
        let base = self.base(spiderid, shard)?;
        let mut inv = self.inner.scripts.enqueue.prepare_invoke();
        inv.key(&base)
            .arg(if seeds { "1" } else { "0" })
            .arg(groups.len());
        for (field, requests) in &groups {
            inv.arg(*field).arg(requests.len());
            push_requests(&mut inv, requests)?;
        }
        let op = if seeds { "seed" } else { "enqueue" };
        Reply::new(op, self.run(op, shard, &inv).await?)?.enqueued(groups.len())
    }

    /// Takes, gives back, sets or forgets a job's budget on its spider's first shard
    /// (`budget.lua`).
    async fn budget(&self, spiderid: &str, field: &str, op: &str, n: u64) -> Result<u64> {
        let mut inv = self.inner.scripts.budget.prepare_invoke();
        inv.key(self.base(spiderid, 0)?).arg(field).arg(op).arg(n);
        let reply = Reply::new("budget", self.run("budget", 0, &inv).await?)?;
        Ok(u64::try_from(reply.int()?).unwrap_or(0))
    }

    /// The compiled filter of a job on one shard, from the cache or from Redis, and whether the
    /// job has a `maxPages`.
    async fn filter(
        &self,
        id: &LeaseId,
        shard: usize,
        job: &JobRef,
    ) -> Result<(Arc<LinkFilter>, bool)> {
        let key = (id.spiderid.clone(), shard, id.job);
        if let Some((generation, filter, budgeted)) = self.cached_filter(&key)
            && generation >= id.generation
        {
            return Ok((filter, budgeted));
        }
        let jk = format!("{}:job:{}", self.base(&id.spiderid, shard)?, id.job);
        let (policy, generation): (Option<String>, Option<u64>) = self
            .query(
                "load policy",
                shard,
                redis::cmd("HMGET").arg(&jk).arg("pol").arg("gen"),
            )
            .await?;
        // A purged job has no policy; its children are refused by the script anyway.
        let policy: JobPolicy = match policy {
            Some(text) => serde_json::from_str(&text).map_err(|source| Error::Record { source })?,
            None => JobPolicy::default(),
        };
        let filter = Arc::new(LinkFilter::new(&policy).map_err(|source| Error::Policy {
            job: job.clone(),
            source,
        })?);
        let budgeted = policy.max_pages.is_some();
        if let Ok(mut cache) = self.inner.filters.lock() {
            cache.insert(key, (generation.unwrap_or(0), filter.clone(), budgeted));
        }
        Ok((filter, budgeted))
    }

    fn cached_filter(&self, key: &(String, usize, u64)) -> Option<CachedFilter> {
        self.inner
            .filters
            .lock()
            .ok()
            .and_then(|cache| cache.get(key).cloned())
    }

    /// Leases up to `max` from one shard.
    async fn lease_from(
        &self,
        spiderid: &str,
        shard: usize,
        max: usize,
        duration: Duration,
    ) -> Result<Vec<Lease>> {
        let base = self.base(spiderid, shard)?;
        let mut inv = self.inner.scripts.lease.prepare_invoke();
        inv.key(&base)
            .arg(max)
            .arg(duration_micros(duration).max(1))
            .arg(self.inner.config.housekeeping_batch);
        let reply = Reply::new("lease", self.run("lease", shard, &inv).await?)?;
        reply.leases(spiderid)
    }

    /// A job's accounting on every shard, added up; `None` when no shard knows the job.
    async fn read_job_stats(&self, job: &JobRef) -> Result<Option<JobStats>> {
        let field = job_field(job)?;
        let parts = try_join_all(self.every_shard().map(|shard| {
            let field = field.clone();
            async move {
                let mut inv = self.inner.scripts.stats.prepare_invoke();
                inv.key(self.base(&job.spiderid, shard)?).arg(field);
                Reply::new("job stats", self.run("job stats", shard, &inv).await?)?.job_stats()
            }
        }))
        .await?;
        let mut total: Option<JobStats> = None;
        for part in parts.into_iter().flatten() {
            total.get_or_insert_with(JobStats::default).absorb(&part);
        }
        Ok(total)
    }

    /// The key on the first shard that says a job's known pages have a previous set (from a
    /// rotation until it is dropped, even when empty).
    fn rotated_key(&self, job: &JobRef, field: &str) -> Result<String> {
        Ok(format!("{}:knr:{field}", self.base(&job.spiderid, 0)?))
    }

    /// Suspends or resumes a job on every shard, one chunk of its queues per call, until every
    /// queue is detached or attached. Interrupted, it leaves the job [`JobStats::settling`],
    /// and the next call for the same state carries on where it stopped.
    async fn set_state(&self, job: &JobRef, state: &'static str) -> Result<bool> {
        let field = job_field(job)?;
        let mut known = false;
        for shard in self.every_shard() {
            let base = self.base(&job.spiderid, shard)?;
            loop {
                let mut inv = self.inner.scripts.suspend.prepare_invoke();
                inv.key(&base).arg(&field).arg(state).arg(STATE_CHUNK);
                let reply = Reply::new("suspend", self.run("suspend", shard, &inv).await?)?;
                match reply.status_text() {
                    Some("done") => {
                        known = true;
                        break;
                    }
                    Some("none") => break,
                    Some("more") => {}
                    _ => return Err(reply.unexpected()),
                }
            }
        }
        Ok(known)
    }
}

/// The number of shards first used under `prefix`, if any.
/// An acknowledgement's named counters as `complete.lua` reads them: `name=n;name=n`.
fn counters_arg(counters: &[(&'static str, u64)]) -> String {
    counters
        .iter()
        .map(|(name, n)| format!("{name}={n}"))
        .collect::<Vec<_>>()
        .join(";")
}

async fn stored_shards(
    conn: &mut impl redis::aio::ConnectionLike,
    prefix: &str,
) -> Result<Option<usize>> {
    redis::cmd("GET")
        .arg(format!("{prefix}:shards"))
        .query_async(conn)
        .await
        .map_err(|source| Error::Connect { source })
}

/// The number of primaries of a Redis Cluster (`CLUSTER SHARDS`).
async fn primaries(conn: &mut impl redis::aio::ConnectionLike) -> Result<usize> {
    let shards: Vec<redis::Value> = redis::cmd("CLUSTER")
        .arg("SHARDS")
        .query_async(conn)
        .await
        .map_err(|source| Error::Connect { source })?;
    Ok(shards.len().max(1))
}

/// The field naming a job in `P:{S}:jobs`.
fn job_field(job: &JobRef) -> Result<String> {
    serde_json::to_string(&(&job.appid, &job.crawlid)).map_err(|source| Error::Record { source })
}

/// Appends (domain, priority, fingerprint, record) for each request.
fn push_requests(invocation: &mut redis::ScriptInvocation<'_>, items: &[Prepared]) -> Result<()> {
    for item in items {
        let record =
            serde_json::to_string(&item.request).map_err(|source| Error::Record { source })?;
        invocation
            .arg(&item.domain)
            .arg(item.request.priority)
            .arg(&item.fingerprint[..])
            .arg(record);
    }
    Ok(())
}

#[async_trait]
impl Frontier for RedisFrontier {
    async fn register(&self, job: &JobRef, policy: &JobPolicy) -> Result<()> {
        LinkFilter::new(policy).map_err(|source| Error::Policy {
            job: job.clone(),
            source,
        })?;
        check_name("spiderid", &job.spiderid)?;
        let field = job_field(job)?;
        let text = serde_json::to_string(policy).map_err(|source| Error::Record { source })?;
        let limit = |v: Option<u64>| v.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let sharded = self.shards() > 1;
        // Sharded, the job-wide cap lives in the budget of the first shard, not in each shard.
        let max_pages = if sharded { -1 } else { limit(policy.max_pages) };
        if sharded {
            let cap = limit(policy.max_pages);
            let mut inv = self.inner.scripts.budget.prepare_invoke();
            inv.key(self.base(&job.spiderid, 0)?)
                .arg(&field)
                .arg("set")
                .arg(cap);
            self.run("register", 0, &inv).await?;
        }
        for shard in self.every_shard() {
            let mut inv = self.inner.scripts.register.prepare_invoke();
            inv.key(self.base(&job.spiderid, shard)?)
                .arg(&field)
                .arg(&job.appid)
                .arg(&job.crawlid)
                .arg(&text)
                .arg(policy.expires_micros())
                .arg(max_pages)
                .arg(limit(policy.domain_max_pages))
                .arg(duration_micros(policy.interval(&self.inner.config)));
            let reply = Reply::new("register", self.run("register", shard, &inv).await?)?;
            if reply.tag() == Some("purging") {
                return Err(Error::Purging { job: job.clone() });
            }
        }
        // An expired job registered again: attach its queues, in chunks.
        self.set_state(job, "run").await?;
        Ok(())
    }

    async fn seed(&self, job: &JobRef, seeds: &[CrawlRequest]) -> Result<Admission> {
        check_name("spiderid", &job.spiderid)?;
        let field = job_field(job)?;
        let mut total = Admission::default();
        let prepared: Vec<Prepared> = seeds.iter().filter_map(Prepared::seed).collect();
        total.filtered = (seeds.len() - prepared.len()) as u64;
        let mut chunks: Vec<&[Prepared]> = prepared.chunks(SEED_CHUNK).collect();
        if chunks.is_empty() {
            // Still ask, so that an unknown job is reported as such.
            chunks.push(&[]);
        }
        let sharded = self.shards() > 1;
        for chunk in chunks {
            let mut chunk = chunk;
            if sharded {
                let granted = self
                    .budget(&job.spiderid, &field, "take", chunk.len() as u64)
                    .await?;
                let keep = usize::try_from(granted)
                    .unwrap_or(usize::MAX)
                    .min(chunk.len());
                total.over_budget += (chunk.len() - keep) as u64;
                chunk = &chunk[..keep];
            }
            let mut by_shard: BTreeMap<usize, Vec<Prepared>> = BTreeMap::new();
            for request in chunk {
                let shard = self.inner.layout.shard_of(&request.domain);
                by_shard.entry(shard).or_default().push(request.clone());
            }
            if by_shard.is_empty() {
                by_shard.insert(0, Vec::new());
            }
            let answers = try_join_all(by_shard.iter().map(|(shard, requests)| {
                self.enqueue(&job.spiderid, *shard, true, vec![(&field, requests)])
            }))
            .await?;
            let mut admitted = 0;
            for (requests, answer) in by_shard.values().zip(answers.into_iter().flatten()) {
                match answer {
                    Enqueued::Done(a) => {
                        admitted += a.admitted;
                        total += a;
                    }
                    Enqueued::Refused => total.refused += requests.len() as u64,
                    Enqueued::Unknown => return Err(Error::UnknownJob { job: job.clone() }),
                }
            }
            if sharded && (chunk.len() as u64) > admitted {
                self.budget(&job.spiderid, &field, "give", chunk.len() as u64 - admitted)
                    .await?;
            }
        }
        Ok(total)
    }

    async fn lease(&self, spiderid: &str, max: usize, duration: Duration) -> Result<Vec<Lease>> {
        let count = self.shards();
        if count == 1 {
            return self.lease_from(spiderid, 0, max, duration).await;
        }
        // One shard in turn for the whole batch, so that a batch's leases (and so its
        // acknowledgements) mostly touch one shard: fewer, larger script calls than a share
        // from every shard. While short, the other shards at once for their share of what is
        // missing, then one after the other those that had more.
        let start = self.inner.next_shard.fetch_add(1, Ordering::Relaxed) % count;
        let mut out = self.lease_from(spiderid, start, max, duration).await?;
        if out.len() >= max {
            return Ok(out);
        }
        let rest: Vec<usize> = (1..count).map(|i| (start + i) % count).collect();
        let missing = max - out.len();
        let share = |i: usize| missing / rest.len() + usize::from(i < missing % rest.len());
        let asked: Vec<(usize, usize)> = rest
            .iter()
            .enumerate()
            .map(|(i, shard)| (*shard, share(i)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let answers = try_join_all(
            asked
                .iter()
                .map(|(shard, n)| self.lease_from(spiderid, *shard, *n, duration)),
        )
        .await?;
        // Then the shards whose share was nothing, and those that had all they were asked.
        let mut more: Vec<usize> = rest
            .iter()
            .copied()
            .filter(|shard| !asked.iter().any(|(s, _)| s == shard))
            .collect();
        for ((shard, n), leases) in asked.iter().zip(answers) {
            if leases.len() == *n {
                more.push(*shard);
            }
            out.extend(leases);
        }
        for shard in more {
            if out.len() >= max {
                break;
            }
            let leases = self
                .lease_from(spiderid, shard, max - out.len(), duration)
                .await?;
            out.extend(leases);
        }
        Ok(out)
    }

    async fn complete(&self, lease: &Lease, outcome: Outcome) -> Result<Completion> {
        let mut done = self.complete_spider(&[(lease, &outcome)]).await?;
        done.pop().ok_or_else(|| Error::Reply {
            op: "complete",
            detail: "no answer for the lease".to_owned(),
        })
    }

    async fn complete_many(&self, acks: &[(Lease, Outcome)]) -> Result<Vec<Completion>> {
        let mut done = Vec::with_capacity(acks.len());
        // One script call per shard per run of leases of one spider.
        for group in acks.chunk_by(|a, b| a.0.id.spiderid == b.0.id.spiderid) {
            let group: Vec<(&Lease, &Outcome)> = group.iter().map(|(l, o)| (l, o)).collect();
            done.extend(self.complete_spider(&group).await?);
        }
        Ok(done)
    }

    async fn retry(&self, lease: &Lease, retry: RetryRequest) -> Result<RetryOutcome> {
        let shard = self.shard_of(&lease.domain);
        let base = self.base(&lease.id.spiderid, shard)?;
        let config = &self.inner.config;
        let attempt = lease.request.retries.saturating_add(1);
        let give_up = attempt > config.max_retries;
        let delay = config
            .backoff(attempt)
            .max(retry.not_before.unwrap_or_default());
        let mut request = lease.request.clone();
        request.retries = attempt;
        let record = serde_json::to_string(&request).map_err(|source| Error::Record { source })?;
        let mut inv = self.inner.scripts.retry.prepare_invoke();
        inv.key(&base)
            .arg(&lease.id.token)
            .arg(if give_up { "1" } else { "0" })
            .arg(duration_micros(delay))
            .arg(record)
            .arg(retry.status.map(|s| s.to_string()).unwrap_or_default());
        let reply = Reply::new("retry", self.run("retry", shard, &inv).await?)?;
        match reply.tag() {
            Some("scheduled") => Ok(RetryOutcome::Scheduled { attempt, delay }),
            Some("gaveup") => Ok(RetryOutcome::GaveUp),
            Some("gone") => Ok(RetryOutcome::JobGone),
            Some("stale") => Ok(RetryOutcome::Stale),
            _ => Err(reply.unexpected()),
        }
    }

    async fn extend(&self, leases: &[Lease], duration: Duration) -> Result<usize> {
        let mut by_shard: BTreeMap<(&str, usize), Vec<&Lease>> = BTreeMap::new();
        for lease in leases {
            by_shard
                .entry((&lease.id.spiderid, self.shard_of(&lease.domain)))
                .or_default()
                .push(lease);
        }
        let mut held = 0;
        for ((spiderid, shard), leases) in by_shard {
            let mut inv = self.inner.scripts.extend.prepare_invoke();
            inv.key(self.base(spiderid, shard)?)
                .arg(duration_micros(duration).max(1));
            for lease in leases {
                inv.arg(&lease.id.token);
            }
            let reply = Reply::new("extend", self.run("extend", shard, &inv).await?)?;
            held += usize::try_from(reply.int()?).unwrap_or(0);
        }
        Ok(held)
    }

    async fn release(&self, lease: &Lease) -> Result<bool> {
        let shard = self.shard_of(&lease.domain);
        let mut inv = self.inner.scripts.release.prepare_invoke();
        inv.key(self.base(&lease.id.spiderid, shard)?)
            .arg(&lease.id.token);
        let reply = Reply::new("release", self.run("release", shard, &inv).await?)?;
        Ok(reply.int()? == 1)
    }

    async fn reclaim_expired(&self, spiderid: &str, max: usize) -> Result<usize> {
        let mut reclaimed = 0;
        for shard in self.every_shard() {
            if reclaimed >= max {
                break;
            }
            let mut inv = self.inner.scripts.lease.prepare_invoke();
            inv.key(self.base(spiderid, shard)?)
                .arg(0)
                .arg(1)
                .arg(max - reclaimed);
            let reply = Reply::new("reclaim", self.run("reclaim", shard, &inv).await?)?;
            reclaimed += usize::try_from(reply.u64_at(2)?).unwrap_or(usize::MAX);
        }
        Ok(reclaimed)
    }

    async fn suspend(&self, job: &JobRef) -> Result<bool> {
        self.set_state(job, "susp").await
    }

    async fn resume(&self, job: &JobRef) -> Result<bool> {
        self.set_state(job, "run").await
    }

    async fn purge(&self, job: &JobRef) -> Result<bool> {
        let field = job_field(job)?;
        let mut known = false;
        for shard in self.every_shard() {
            let base = self.base(&job.spiderid, shard)?;
            let mut calls = 0u64;
            loop {
                let mut inv = self.inner.scripts.purge.prepare_invoke();
                inv.key(&base).arg(&field).arg(PURGE_CHUNK);
                let reply = Reply::new("purge", self.run("purge", shard, &inv).await?)?;
                calls += 1;
                match reply.status_text() {
                    Some("none") => {
                        known |= calls > 1;
                        break;
                    }
                    Some("done") => {
                        tracing::debug!(job = %job, shard, calls, "job purged");
                        known = true;
                        break;
                    }
                    Some("more") => {}
                    _ => return Err(reply.unexpected()),
                }
            }
        }
        if self.shards() > 1 {
            self.budget(&job.spiderid, &field, "del", 0).await?;
        }
        if let Ok(mut cache) = self.inner.filters.lock() {
            cache.retain(|(spider, _, _), _| spider != &job.spiderid);
        }
        Ok(known)
    }

    async fn rotate_known(&self, job: &JobRef) -> Result<bool> {
        let field = job_field(job)?;
        // Whether the job has a previous set is the job's, not each shard's: a shard that had
        // no pages when the round started must not rotate the pages it got since.
        let rotated = self.rotated_key(job, &field)?;
        if self
            .query::<bool>("rotate known", 0, redis::cmd("EXISTS").arg(&rotated))
            .await?
        {
            return Ok(false);
        }
        // Interrupted before the mark, a call again skips the shards that rotated already.
        for shard in self.every_shard() {
            let mut inv = self.inner.scripts.rotate_known.prepare_invoke();
            inv.key(self.base(&job.spiderid, shard)?).arg(&field);
            self.run("rotate known", shard, &inv).await?;
        }
        self.query::<()>("rotate known", 0, redis::cmd("SET").arg(&rotated).arg("1"))
            .await?;
        Ok(true)
    }

    async fn known_pages(
        &self,
        job: &JobRef,
        cursor: Option<KnownCursor>,
        count: usize,
    ) -> Result<(Vec<CrawlRequest>, Option<KnownCursor>)> {
        let field = job_field(job)?;
        let count = count.max(1);
        let mut at = cursor.unwrap_or_else(KnownCursor::start);
        let mut out = Vec::new();
        // HSCAN's COUNT is a hint (a small hash answers whole): read on until `count` or the
        // end, moving to the current set, then to the next shard, when a scan ends.
        while at.shard < self.shards() {
            let set = if at.current { "kn" } else { "knp" };
            let key = format!("{}:{set}:{field}", self.base(&job.spiderid, at.shard)?);
            let (next, items): (u64, Vec<String>) = self
                .query(
                    "known pages",
                    at.shard,
                    redis::cmd("HSCAN")
                        .arg(key)
                        .arg(at.at)
                        .arg("COUNT")
                        .arg(count),
                )
                .await?;
            for record in items.iter().skip(1).step_by(2) {
                out.push(serde_json::from_str(record).map_err(|source| Error::Record { source })?);
            }
            at = match (next, at.current) {
                (0, false) => KnownCursor {
                    current: true,
                    at: 0,
                    ..at
                },
                (0, true) => KnownCursor {
                    shard: at.shard + 1,
                    current: false,
                    at: 0,
                },
                (next, _) => KnownCursor { at: next, ..at },
            };
            if out.len() >= count {
                break;
            }
        }
        let more = at.shard < self.shards();
        Ok((out, more.then_some(at)))
    }

    async fn drop_known(&self, job: &JobRef, which: Known) -> Result<()> {
        let field = job_field(job)?;
        for shard in self.every_shard() {
            let base = self.base(&job.spiderid, shard)?;
            let mut unlink = redis::cmd("UNLINK");
            unlink.arg(format!("{base}:knp:{field}"));
            if which == Known::All {
                unlink.arg(format!("{base}:kn:{field}"));
            }
            self.query::<u64>("drop known", shard, &unlink).await?;
        }
        // Last, so that an interrupted drop still keeps a rotation from running.
        self.query::<u64>(
            "drop known",
            0,
            redis::cmd("UNLINK").arg(self.rotated_key(job, &field)?),
        )
        .await?;
        Ok(())
    }

    async fn epoch(&self, spiderid: &str) -> Result<String> {
        // One epoch per shard: when any shard loses its state, the whole changes.
        let mut parts = Vec::with_capacity(self.shards());
        for shard in self.every_shard() {
            let fresh = crate::new_epoch();
            // SET NX GET: the existing epoch, or none when ours was just set.
            let existing: Option<String> = self
                .query(
                    "epoch",
                    shard,
                    redis::cmd("SET")
                        .arg(format!("{}:epoch", self.base(spiderid, shard)?))
                        .arg(&fresh)
                        .arg("NX")
                        .arg("GET"),
                )
                .await?;
            parts.push(existing.unwrap_or(fresh));
        }
        Ok(parts.join("."))
    }

    async fn job_stats(&self, job: &JobRef) -> Result<Option<JobStats>> {
        let mut stats = self.read_job_stats(job).await?;
        if self.shards() == 1 {
            return Ok(stats);
        }
        // The shards are read one by one, and a page's children are enqueued on their shards
        // before its lease is acknowledged on its own: a read can see the lease gone and miss
        // the children. A job that looks finished is read again until two reads agree.
        for _ in 1..STATS_READS {
            if !stats.as_ref().is_some_and(JobStats::finished) {
                break;
            }
            let again = self.read_job_stats(job).await?;
            if again == stats {
                break;
            }
            stats = again;
        }
        Ok(stats)
    }

    async fn policy(&self, job: &JobRef) -> Result<Option<JobPolicy>> {
        let mut inv = self.inner.scripts.stats.prepare_invoke();
        inv.key(self.base(&job.spiderid, 0)?).arg(job_field(job)?);
        let reply = Reply::new("job policy", self.run("job policy", 0, &inv).await?)?;
        reply.job_policy()
    }

    async fn report_domain(&self, spiderid: &str, domain: &str, hint: DomainHint) -> Result<()> {
        let domain = domain.to_ascii_lowercase();
        let shard = self.inner.layout.shard_of(&domain);
        let (kind, delay) = match hint {
            DomainHint::CrawlDelay(d) => ("cd", d),
            DomainHint::RetryAfter(d) => ("ra", d),
            DomainHint::Adaptive(d) => ("ad", d),
        };
        let mut inv = self.inner.scripts.domain.prepare_invoke();
        inv.key(self.base(spiderid, shard)?)
            .arg(domain)
            .arg(kind)
            .arg(duration_micros(delay))
            .arg(self.inner.config.crawl_delay_ttl.as_secs().max(1));
        self.run("report domain", shard, &inv).await?;
        Ok(())
    }

    async fn cut_off(&self, job: &JobRef, domain: &str, reason: &str) -> Result<bool> {
        let domain = domain.to_ascii_lowercase();
        // The domain's queues and admissions live in its own shard only.
        let shard = self.inner.layout.shard_of(&domain);
        let mut inv = self.inner.scripts.cutoff.prepare_invoke();
        inv.key(self.base(&job.spiderid, shard)?)
            .arg(job_field(job)?)
            .arg(domain)
            .arg(reason);
        let reply = Reply::new("cut off", self.run("cut off", shard, &inv).await?)?;
        Ok(reply.int()? >= 0)
    }

    async fn spider_stats(&self, spiderid: &str) -> Result<SpiderStats> {
        let parts = try_join_all(self.every_shard().map(|shard| async move {
            let mut inv = self.inner.scripts.spider_stats.prepare_invoke();
            inv.key(self.base(spiderid, shard)?);
            for window in Window::ALL {
                if let (Some(seconds), Some(g)) = (window.seconds(), window.granularity()) {
                    inv.arg(window.label()).arg(seconds).arg(g);
                }
            }
            Reply::new("spider stats", self.run("spider stats", shard, &inv).await?)?.spider_stats()
        }))
        .await?;
        let mut total = SpiderStats::default();
        for part in parts {
            total.absorb(part);
        }
        Ok(total)
    }

    async fn heartbeat(&self, spiderid: &str, worker: &str, ttl: Duration) -> Result<()> {
        let base = self.base(spiderid, 0)?;
        check_name("worker", worker)?;
        let ttl = duration_micros(ttl).max(1);
        let mut inv = self.inner.scripts.heartbeat.prepare_invoke();
        inv.key(format!("{base}:workers")).arg(worker).arg(ttl);
        self.run("heartbeat", 0, &inv).await?;
        let mut inv = self.inner.scripts.heartbeat.prepare_invoke();
        inv.key(format!("{}:spiders", self.inner.prefix))
            .arg(spiderid)
            .arg(ttl);
        self.run("heartbeat", 0, &inv).await?;
        Ok(())
    }

    async fn workers(&self) -> Result<WorkerCounts> {
        let mut inv = self.inner.scripts.live.prepare_invoke();
        inv.key(format!("{}:spiders", self.inner.prefix));
        let reply = Reply::new("workers", self.run("workers", 0, &inv).await?)?;
        let (now, spiders) = reply.live()?;
        let mut counts = WorkerCounts::default();
        // Each spider's workers live in its own hash slot: one command each, all at once.
        let live = try_join_all(spiders.iter().map(|spider| async move {
            self.query::<u64>(
                "workers",
                0,
                redis::cmd("ZCOUNT")
                    .arg(format!("{}:workers", self.base(spider, 0)?))
                    .arg(format!("({now}"))
                    .arg("+inf"),
            )
            .await
        }))
        .await?;
        let per_spider: BTreeMap<String, u64> = spiders
            .into_iter()
            .zip(live)
            .filter(|(_, n)| *n > 0)
            .collect();
        counts.total = per_spider.values().sum();
        counts.unique = per_spider.len() as u64;
        counts.per_spider = per_spider;
        Ok(counts)
    }

    async fn backlog(&self, spiderid: &str) -> Result<SpiderBacklog> {
        let mut out = SpiderBacklog::default();
        for shard in self.every_shard() {
            let base = self.base(spiderid, shard)?;
            let mut first = true;
            for set in ["ready", "wait"] {
                let mut offset = 0usize;
                loop {
                    let mut inv = self.inner.scripts.backlog.prepare_invoke();
                    inv.key(&base)
                        .arg(set)
                        .arg(offset)
                        .arg(crate::backlog::PAGE);
                    let reply = Reply::new("backlog", self.run("backlog", shard, &inv).await?)?;
                    let page = reply.backlog_page()?;
                    if first {
                        out.in_flight += page.in_flight;
                        out.retrying += page.retrying;
                        first = false;
                    }
                    // A domain moved between the sets meanwhile is counted once.
                    for (domain, queued, ready) in page.domains {
                        if ready {
                            out.ready.insert(domain.clone());
                        }
                        out.domains.entry(domain).or_insert(queued);
                    }
                    if page.looked < crate::backlog::PAGE {
                        break;
                    }
                    offset += page.looked;
                }
            }
        }
        Ok(out)
    }

    async fn job_backlog(&self, job: &JobRef) -> Result<JobBacklog> {
        let field = job_field(job)?;
        let mut out = JobBacklog::default();
        for shard in self.every_shard() {
            let base = self.base(&job.spiderid, shard)?;
            let mut cursor = "0".to_owned();
            loop {
                let mut inv = self.inner.scripts.job_backlog.prepare_invoke();
                inv.key(&base)
                    .arg(&field)
                    .arg(&cursor)
                    .arg(crate::backlog::PAGE);
                let reply = Reply::new("job backlog", self.run("job backlog", shard, &inv).await?)?;
                let (next, queues) = reply.job_backlog_page()?;
                for (priority, domain, queued) in queues {
                    out.add(&domain, priority, queued);
                }
                if next == "0" {
                    break;
                }
                cursor = next;
            }
        }
        Ok(out)
    }

    async fn set_domain_rules(&self, spiderid: &str, rules: &DomainRules) -> Result<()> {
        let rules = rules.normalized();
        // Every shard holds the rules: a throttle names a domain whose hosts may live anywhere.
        for shard in self.every_shard() {
            let mut inv = self.inner.scripts.rules.prepare_invoke();
            inv.key(self.base(spiderid, shard)?)
                .arg(rules.throttles.len());
            for (domain, interval) in &rules.throttles {
                inv.arg(domain).arg(duration_micros(*interval));
            }
            for domain in &rules.blacklist {
                inv.arg(domain);
            }
            self.run("set domain rules", shard, &inv).await?;
        }
        Ok(())
    }

    async fn domain_rules(&self, spiderid: &str) -> Result<DomainRules> {
        let base = self.base(spiderid, 0)?;
        let (throttles, blacklist): (BTreeMap<String, u64>, std::collections::BTreeSet<String>) =
            redis::pipe()
                .cmd("HGETALL")
                .arg(format!("{base}:th"))
                .cmd("SMEMBERS")
                .arg(format!("{base}:bl"))
                .query_async(&mut self.conn(0))
                .await
                .map_err(|source| Error::Redis {
                    op: "domain rules",
                    source,
                })?;
        Ok(DomainRules {
            throttles: throttles
                .into_iter()
                .map(|(d, us)| (d, Duration::from_micros(us)))
                .collect(),
            blacklist,
        })
    }
}
