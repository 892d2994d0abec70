//! Decoding script replies. Scripts answer with an integer, a string, or a flat array of
//! strings (numbers formatted in Lua, so that none is truncated to a Redis integer).

use std::time::SystemTime;

use kubecrawl_api::{CrawlRequest, JobRef};
use redis::Value;

use crate::clock::micros_system;
use crate::lease::{Lease, LeaseId};
use crate::stats::{SpiderStats, Window};
use crate::{Admission, Completion, Error, JobPolicy, JobStats, Result};

/// Fields per lease in a lease reply.
const LEASE_FIELDS: usize = 4;
/// Fields per lease in a complete reply: the tag and five counts.
const COMPLETION_FIELDS: usize = 6;

/// One page of a backlog read.
#[derive(Debug)]
pub(crate) struct BacklogPage {
    /// The spider's leases.
    pub(crate) in_flight: u64,
    /// The spider's scheduled retries.
    pub(crate) retrying: u64,
    /// Domains of the set the page looked at.
    pub(crate) looked: usize,
    /// (domain, queued, may be fetched now) for those with something queued.
    pub(crate) domains: Vec<(String, u64, bool)>,
}

/// What an enqueue call did with one group of requests.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Enqueued {
    /// Went through dedupe and budgets as counted (`filtered` and `refused` are 0).
    Done(Admission),
    /// The job accepts nothing (suspended, expired).
    Refused,
    /// The job is not registered (or was purged).
    Unknown,
}

/// Fields per group in an enqueue reply: the tag and four counts.
const ENQUEUE_FIELDS: usize = 5;

/// A decoded script reply.
#[derive(Debug)]
pub(crate) struct Reply {
    op: &'static str,
    value: Shape,
}

#[derive(Debug)]
enum Shape {
    Int(i64),
    Text(String),
    Items(Vec<String>),
}

fn text(op: &'static str, value: Value) -> Result<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes).map_err(|_| Error::Reply {
            op,
            detail: "a reply string is not utf-8".to_owned(),
        }),
        Value::SimpleString(s) => Ok(s),
        Value::Int(n) => Ok(n.to_string()),
        Value::Okay => Ok("OK".to_owned()),
        other => Err(Error::Reply {
            op,
            detail: format!("expected a string, got {other:?}"),
        }),
    }
}

/// One of a job's queues in a job backlog page: priority, domain, requests queued.
pub(crate) type JobQueue = (i32, String, u64);

impl Reply {
    pub(crate) fn new(op: &'static str, value: Value) -> Result<Self> {
        let value = match value {
            Value::Int(n) => Shape::Int(n),
            Value::Array(items) => Shape::Items(
                items
                    .into_iter()
                    .map(|v| text(op, v))
                    .collect::<Result<_>>()?,
            ),
            Value::Nil => Shape::Items(Vec::new()),
            other => Shape::Text(text(op, other)?),
        };
        Ok(Self { op, value })
    }

    pub(crate) fn unexpected(&self) -> Error {
        Error::Reply {
            op: self.op,
            detail: format!("unexpected reply {:?}", self.value),
        }
    }

    fn items(&self) -> Result<&[String]> {
        match &self.value {
            Shape::Items(items) => Ok(items),
            _ => Err(self.unexpected()),
        }
    }

    /// The first element of an array reply.
    pub(crate) fn tag(&self) -> Option<&str> {
        match &self.value {
            Shape::Items(items) => items.first().map(String::as_str),
            _ => None,
        }
    }

    /// A string reply.
    pub(crate) fn status_text(&self) -> Option<&str> {
        match &self.value {
            Shape::Text(t) => Some(t),
            _ => None,
        }
    }

    /// An integer reply.
    pub(crate) fn int(&self) -> Result<i64> {
        match &self.value {
            Shape::Int(n) => Ok(*n),
            _ => Err(self.unexpected()),
        }
    }

    /// Element `i` of an array reply as a number.
    pub(crate) fn u64_at(&self, i: usize) -> Result<u64> {
        let items = self.items()?;
        items
            .get(i)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| self.unexpected())
    }

    fn number(&self, s: &str) -> Result<u64> {
        s.parse().map_err(|_| Error::Reply {
            op: self.op,
            detail: format!("not a number: {s:?}"),
        })
    }

    /// The answers of `complete.lua` for `leases` leases, in order (what the client decided
    /// itself, such as the children its filter refused, is added by the caller).
    pub(crate) fn completions(&self, leases: usize) -> Result<Vec<Completion>> {
        let items = self.items()?;
        if items.len() != leases * COMPLETION_FIELDS {
            return Err(self.unexpected());
        }
        items
            .chunks_exact(COMPLETION_FIELDS)
            .map(|f| match f[0].as_str() {
                "acked" => Ok(Completion::Acked(Admission {
                    admitted: self.number(&f[1])?,
                    duplicates: self.number(&f[2])?,
                    over_budget: self.number(&f[3])?,
                    refused: self.number(&f[4])?,
                    blacklisted: self.number(&f[5])?,
                    ..Admission::default()
                })),
                "parked" => Ok(Completion::Parked),
                "gone" => Ok(Completion::JobGone),
                "stale" => Ok(Completion::Stale),
                _ => Err(self.unexpected()),
            })
            .collect()
    }

    /// The answers of `enqueue.lua`, one per group, in order.
    pub(crate) fn enqueued(&self, groups: usize) -> Result<Vec<Enqueued>> {
        let items = self.items()?;
        if items.len() != groups * ENQUEUE_FIELDS {
            return Err(self.unexpected());
        }
        items
            .chunks_exact(ENQUEUE_FIELDS)
            .map(|f| match f[0].as_str() {
                "ok" => Ok(Enqueued::Done(Admission {
                    admitted: self.number(&f[1])?,
                    duplicates: self.number(&f[2])?,
                    over_budget: self.number(&f[3])?,
                    blacklisted: self.number(&f[4])?,
                    ..Admission::default()
                })),
                "refused" => Ok(Enqueued::Refused),
                "unknown" => Ok(Enqueued::Unknown),
                _ => Err(self.unexpected()),
            })
            .collect()
    }

    /// A lease reply: now, deadline, reclaimed, then [`LEASE_FIELDS`] per lease.
    pub(crate) fn leases(&self, spiderid: &str) -> Result<Vec<Lease>> {
        let items = self.items()?;
        if items.len() < 3 || (items.len() - 3) % LEASE_FIELDS != 0 {
            return Err(self.unexpected());
        }
        let leased_at = micros_system(self.number(&items[0])?);
        let deadline = micros_system(self.number(&items[1])?);
        items[3..]
            .chunks_exact(LEASE_FIELDS)
            .map(|f| self.lease(spiderid, f, leased_at, deadline))
            .collect()
    }

    /// One lease: `<number>|<job>|<priority>|<domain>|<seq>|<record>`, generation, appid,
    /// crawlid.
    fn lease(
        &self,
        spiderid: &str,
        f: &[String],
        leased_at: SystemTime,
        deadline: SystemTime,
    ) -> Result<Lease> {
        let token = &f[0];
        let parts: Vec<&str> = token.splitn(6, '|').collect();
        let [number, job, _priority, domain, _seq, record] = parts[..] else {
            return Err(self.unexpected());
        };
        let request: CrawlRequest =
            serde_json::from_str(record).map_err(|source| Error::Record { source })?;
        Ok(Lease {
            id: LeaseId {
                spiderid: spiderid.to_owned(),
                number: self.number(number)?,
                job: self.number(job)?,
                generation: self.number(&f[1])?,
                token: token.clone(),
            },
            job: JobRef {
                spiderid: spiderid.to_owned(),
                appid: f[2].clone(),
                crawlid: f[3].clone(),
            },
            domain: domain.to_owned(),
            request,
            leased_at,
            deadline,
        })
    }

    /// The job hash as a flat list, or empty for an unknown job.
    pub(crate) fn job_stats(&self) -> Result<Option<JobStats>> {
        let items = self.items()?;
        if items.is_empty() {
            return Ok(None);
        }
        let mut stats = JobStats::default();
        for pair in items.chunks_exact(2) {
            let (field, value) = (pair[0].as_str(), pair[1].as_str());
            let n = || value.parse::<i64>().unwrap_or(0).max(0).unsigned_abs();
            match field {
                "q" => stats.queued = n(),
                "f" => stats.in_flight = n(),
                "pg" => stats.pages = n(),
                "it" => stats.items = n(),
                "by" => stats.bytes = n(),
                "er" => stats.errors = n(),
                "rt" => stats.retries = n(),
                "ad" => stats.admitted = n(),
                "stp" => stats.furthest_step = u32::try_from(n()).unwrap_or(u32::MAX),
                "bl" => stats.blacklisted = n(),
                "sd" => stats.seeded = value == "1",
                "st" => stats.suspended = value == "susp",
                "cur" => stats.settling = true,
                _ if field.starts_with("t:") => {
                    stats.traps.insert(field[2..].to_owned(), value.to_owned());
                }
                _ if field.starts_with("x:") => {
                    stats.counters.insert(field[2..].to_owned(), n());
                }
                _ => {
                    if let Some(code) = field.strip_prefix('c').and_then(|c| c.parse().ok()) {
                        stats.status_codes.insert(code, n());
                    }
                }
            }
        }
        Ok(Some(stats))
    }

    /// The `pol` field of the job hash (the stats script's reply), or `None` for an unknown job.
    pub(crate) fn job_policy(&self) -> Result<Option<JobPolicy>> {
        let items = self.items()?;
        items
            .chunks_exact(2)
            .find(|pair| pair[0] == "pol")
            .map(|pair| serde_json::from_str(&pair[1]).map_err(|source| Error::Record { source }))
            .transpose()
    }

    /// (window label, status, count) triples.
    pub(crate) fn spider_stats(&self) -> Result<SpiderStats> {
        let items = self.items()?;
        if items.len() % 3 != 0 {
            return Err(self.unexpected());
        }
        let mut stats = SpiderStats::default();
        for t in items.chunks_exact(3) {
            let window = Window::ALL
                .into_iter()
                .find(|w| w.label() == t[0])
                .ok_or_else(|| self.unexpected())?;
            let count = self.number(&t[2])?;
            stats
                .counts
                .entry(window)
                .or_default()
                .insert(t[1].clone(), count);
        }
        Ok(stats)
    }

    /// A backlog page: in flight, retrying, domains looked at, then (domain, queued, ready)
    /// triples.
    pub(crate) fn backlog_page(&self) -> Result<BacklogPage> {
        let items = self.items()?;
        if items.len() < 3 || (items.len() - 3) % 3 != 0 {
            return Err(self.unexpected());
        }
        let domains = items[3..]
            .chunks_exact(3)
            .map(|p| Ok((p[0].clone(), self.number(&p[1])?, p[2] == "1")))
            .collect::<Result<_>>()?;
        Ok(BacklogPage {
            in_flight: self.number(&items[0])?,
            retrying: self.number(&items[1])?,
            looked: usize::try_from(self.number(&items[2])?).unwrap_or(usize::MAX),
            domains,
        })
    }

    /// The next SSCAN cursor, then (priority, domain, queued) triples.
    pub(crate) fn job_backlog_page(&self) -> Result<(String, Vec<JobQueue>)> {
        let items = self.items()?;
        let (cursor, rest) = items.split_first().ok_or_else(|| self.unexpected())?;
        if rest.len() % 3 != 0 {
            return Err(self.unexpected());
        }
        let queues = rest
            .chunks_exact(3)
            .map(|q| {
                let priority = q[0].parse().map_err(|_| self.unexpected())?;
                Ok((priority, q[1].clone(), self.number(&q[2])?))
            })
            .collect::<Result<_>>()?;
        Ok((cursor.clone(), queues))
    }

    /// now, then live members.
    pub(crate) fn live(&self) -> Result<(u64, Vec<String>)> {
        let items = self.items()?;
        let (now, members) = items.split_first().ok_or_else(|| self.unexpected())?;
        Ok((self.number(now)?, members.to_vec()))
    }
}
