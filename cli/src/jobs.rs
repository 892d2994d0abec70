//! CrawlJobs by crawlid: feed a crawl request (create the job, or add its URL to the seeds of
//! the job that has its crawlid, appid and spiderid), find, stop and expire jobs.
//!
//! # Names
//! A fed job is named after its crawlid when the crawlid already is a DNS-1123 label
//! (`abc123` → `abc123`); otherwise the crawlid is lowercased, every other character becomes
//! `-`, and a hash of the crawlid is appended (`Run_7` → `run-7-1f0c9a2b`), so that crawlids
//! that differ only in case or punctuation never share a name. When that name is taken by a
//! crawl of another appid or spiderid, a hash of all three is appended as well. Jobs are
//! found by their spec (spiderid, appid, crawlid), never by name alone, so jobs created with
//! `kubectl apply` are found too.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use kubecrawl_api::crawljob::MAX_SEEDS;
use kubecrawl_api::{CrawlJob, Phase, contract};
use serde_json::{Value, json};

use crate::request::{self, CrawlRequest};
use crate::{Error, Refusal, Result};

/// Attempts at a change that lost a race with another writer (HTTP 409) before giving up.
const CONFLICT_RETRIES: usize = 5;
/// The longest name base taken from a crawlid (a name may have 253 characters; the hashes
/// need 18 more).
const NAME_BASE_MAX: usize = 200;

/// Parses the text of a crawl request.
///
/// # Errors
/// [`Error::Refused`] for text that is not a JSON object or not a valid request.
pub fn parse_feed(text: &str) -> Result<CrawlRequest> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| Refusal::new("request", format!("is not valid JSON: {e}")))?;
    let Value::Object(object) = value else {
        return Err(Refusal::new(
            "request",
            format!("must be a JSON object, not {}", request::kind(&value)),
        )
        .into());
    };
    Ok(request::parse(&object, crate::now_s())?)
}

/// Which crawls an action is about; `None` matches any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    /// The crawlid.
    pub crawlid: Option<String>,
    /// The appid.
    pub appid: Option<String>,
    /// The spiderid.
    pub spiderid: Option<String>,
}

impl Selector {
    /// Whether `job` is one of the selected crawls.
    pub fn matches(&self, job: &CrawlJob) -> bool {
        self.crawlid.as_deref().is_none_or(|c| job.crawlid() == c)
            && self.appid.as_deref().is_none_or(|a| job.spec.appid == a)
            && self
                .spiderid
                .as_deref()
                .is_none_or(|s| job.spec.spiderid == s)
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(c) = &self.crawlid {
            parts.push(format!("with crawlid {c:?}"));
        }
        if let Some(a) = &self.appid {
            parts.push(format!("of appid {a:?}"));
        }
        if let Some(s) = &self.spiderid {
            parts.push(format!("of spider {s:?}"));
        }
        parts.join(" ")
    }
}

/// What a feed did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fed {
    /// The job's namespace.
    pub namespace: String,
    /// The job's name.
    pub name: String,
    /// What happened.
    pub outcome: FeedOutcome,
}

/// What a feed did to the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedOutcome {
    /// A new CrawlJob.
    Created,
    /// The URL was added to an existing job's seeds.
    SeedAdded,
    /// The URL already was one of the job's seeds; nothing changed.
    AlreadySeeded,
}

impl FeedOutcome {
    /// The outcome's name in answers: `created`, `seed added`, `already seeded`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::SeedAdded => "seed added",
            Self::AlreadySeeded => "already seeded",
        }
    }
}

impl fmt::Display for Fed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "crawljob.kubecrawl.io/{} {} (namespace {})",
            self.name,
            self.outcome.as_str(),
            self.namespace
        )
    }
}

/// CrawlJobs of one namespace.
#[derive(Clone)]
pub struct Jobs {
    api: Api<CrawlJob>,
    namespace: String,
}

impl fmt::Debug for Jobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jobs")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Jobs {
    /// Connects with the kubeconfig (or in-cluster configuration); `namespace` defaults to
    /// its context's namespace.
    ///
    /// # Errors
    /// [`Error::KubeConfig`] when no configuration can be loaded.
    pub async fn connect(namespace: Option<&str>) -> Result<Self> {
        let config = kube::Config::infer().await.map_err(|e| Error::KubeConfig {
            source: Box::new(kube::Error::InferConfig(e)),
        })?;
        let namespace = namespace
            .map(str::to_owned)
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config).map_err(|source| Error::KubeConfig {
            source: Box::new(source),
        })?;
        Ok(Self::new(client, &namespace))
    }

    /// CrawlJobs of `namespace` through `client`.
    pub fn new(client: Client, namespace: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
        }
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Creates the request's CrawlJob, or adds its URL to the seeds of the job with its
    /// crawlid, appid and spiderid (the operator then seeds it; a finished job runs again).
    /// Other fields of a request for an existing job are not applied.
    ///
    /// # Errors
    /// [`Error::Refused`] for a job that is being deleted, has expired or is full;
    /// [`Error::ApiRefused`] when the API server refuses the job; [`Error::Kube`] when it
    /// cannot be reached or the job keeps changing under us.
    pub async fn feed(&self, request: &CrawlRequest) -> Result<Fed> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.feed_once(request).await {
                Err(Error::Kube { source, .. })
                    if attempt < CONFLICT_RETRIES
                        && matches!(source.as_ref(), kube::Error::Api(s) if s.code == 409) =>
                {
                    tracing::debug!(attempt, "crawljob changed meanwhile, feeding again");
                }
                other => return other,
            }
        }
    }

    async fn feed_once(&self, request: &CrawlRequest) -> Result<Fed> {
        let me = Selector {
            crawlid: Some(request.crawlid().to_owned()),
            appid: Some(request.spec.appid.clone()),
            spiderid: Some(request.spec.spiderid.clone()),
        };
        let (primary, alternate) = names(
            &request.spec.spiderid,
            &request.spec.appid,
            request.crawlid(),
        );
        let at_primary = self
            .api
            .get_opt(&primary)
            .await
            .map_err(Error::kube("get crawljob"))?;
        let primary_free = at_primary.is_none();
        let existing = match at_primary {
            Some(job) if me.matches(&job) => Some(job),
            _ => self.find(&me).await?.into_iter().next(),
        };
        match existing {
            Some(job) => self.add_seed(&job, &request.url).await,
            None if primary_free => self.create(&primary, request).await,
            None => self.create(&alternate, request).await,
        }
    }

    async fn create(&self, name: &str, request: &CrawlRequest) -> Result<Fed> {
        let mut job = CrawlJob::new(name, request.spec.clone());
        job.metadata.namespace = Some(self.namespace.clone());
        job.metadata.labels = Some(
            [(
                contract::label::CREATED_BY.to_owned(),
                contract::CLI.to_owned(),
            )]
            .into(),
        );
        match self.api.create(&PostParams::default(), &job).await {
            Ok(_) => {}
            // The namespace does not exist: a final answer, not a failure to retry.
            Err(kube::Error::Api(s)) if s.code == 404 && s.message.contains("namespace") => {
                return Err(Error::ApiRefused { message: s.message });
            }
            Err(e) => return Err(Error::kube("create crawljob")(e)),
        }
        tracing::info!(name, namespace = %self.namespace, url = %request.url, "crawljob created");
        Ok(self.fed(name, FeedOutcome::Created))
    }

    async fn add_seed(&self, job: &CrawlJob, url: &str) -> Result<Fed> {
        let name = job.name_any();
        if job.metadata.deletion_timestamp.is_some() {
            return Err(Refusal::new(
                "crawlid",
                format!("crawl {name} is being stopped; feed it again once it is gone"),
            )
            .into());
        }
        let phase = job.status.as_ref().map(|s| s.phase);
        let expired = job
            .spec
            .expires
            .as_ref()
            .is_some_and(|t| t.0.as_second() <= crate::now_s());
        if phase == Some(Phase::Expired) || expired {
            return Err(Refusal::new(
                "crawlid",
                format!(
                    "crawl {name} has expired and its frontier state is purged; stop it first or use another crawlid"
                ),
            )
            .into());
        }
        if job.spec.seeds.iter().any(|s| s == url) {
            return Ok(self.fed(&name, FeedOutcome::AlreadySeeded));
        }
        if job.spec.seeds.len() >= MAX_SEEDS {
            return Err(Refusal::new(
                "url",
                format!("crawl {name} already has the most seeds a job may have ({MAX_SEEDS}); use another crawlid"),
            )
            .into());
        }
        let mut seeds = job.spec.seeds.clone();
        seeds.push(url.to_owned());
        // The resourceVersion makes the patch fail (409) if the job changed since we read it,
        // so two feeds never drop each other's seed.
        let patch = json!({
            "metadata": {"resourceVersion": job.resource_version()},
            "spec": {"seeds": seeds},
        });
        self.api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::kube("add seed"))?;
        tracing::info!(name, namespace = %self.namespace, url, "seed added");
        Ok(self.fed(&name, FeedOutcome::SeedAdded))
    }

    fn fed(&self, name: &str, outcome: FeedOutcome) -> Fed {
        Fed {
            namespace: self.namespace.clone(),
            name: name.to_owned(),
            outcome,
        }
    }

    /// Every CrawlJob of the namespace that `selector` matches, oldest first.
    ///
    /// # Errors
    /// [`Error::Kube`] when the API server cannot be reached.
    pub async fn find(&self, selector: &Selector) -> Result<Vec<CrawlJob>> {
        let list = self
            .api
            .list(&ListParams::default())
            .await
            .map_err(Error::kube("list crawljobs"))?;
        let mut found: Vec<CrawlJob> = list
            .items
            .into_iter()
            .filter(|j| selector.matches(j))
            .collect();
        found.sort_by(|a, b| {
            (&a.metadata.creation_timestamp, a.name_any())
                .cmp(&(&b.metadata.creation_timestamp, b.name_any()))
        });
        Ok(found)
    }

    /// The one CrawlJob `selector` matches.
    ///
    /// # Errors
    /// [`Error::NotFound`] or [`Error::Ambiguous`], or [`Error::Kube`].
    pub async fn find_one(&self, selector: &Selector) -> Result<CrawlJob> {
        let mut found = self.find(selector).await?;
        match found.len() {
            0 => Err(self.not_found(selector)),
            1 => Ok(found.remove(0)),
            count => Err(Error::Ambiguous {
                crawlid: selector.crawlid.clone().unwrap_or_default(),
                count,
                namespace: self.namespace.clone(),
            }),
        }
    }

    /// The error for a selector that matched nothing.
    pub fn not_found(&self, selector: &Selector) -> Error {
        Error::NotFound {
            what: selector.describe(),
            namespace: self.namespace.clone(),
        }
    }

    /// Deletes a CrawlJob; its finalizer makes the operator purge its frontier state first.
    /// A job already gone counts as deleted.
    ///
    /// # Errors
    /// [`Error::Kube`], [`Error::ApiRefused`].
    pub async fn delete(&self, job: &CrawlJob) -> Result<()> {
        match self
            .api
            .delete(&job.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(Error::kube("delete crawljob")(e)),
        }
    }

    /// Sets a CrawlJob's `expires` to `at`; the operator then purges it and marks it Expired.
    ///
    /// # Errors
    /// [`Error::Kube`], [`Error::ApiRefused`].
    pub async fn expire(&self, job: &CrawlJob, at: &Time) -> Result<()> {
        self.merge(job, &json!({"spec": {"expires": at}}), "expire crawljob")
            .await
    }

    /// Sets an annotation on a CrawlJob.
    ///
    /// # Errors
    /// [`Error::Kube`].
    pub async fn annotate(&self, job: &CrawlJob, key: &str, value: &str) -> Result<()> {
        let patch = json!({"metadata": {"annotations": {key: value}}});
        self.merge(job, &patch, "annotate crawljob").await
    }

    async fn merge(&self, job: &CrawlJob, patch: &Value, op: &'static str) -> Result<()> {
        self.api
            .patch(
                &job.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
            .map_err(Error::kube(op))?;
        Ok(())
    }
}

/// The name a fed job gets, and the name it gets when that one is taken by another crawl.
pub fn names(spiderid: &str, appid: &str, crawlid: &str) -> (String, String) {
    let mut base: String = crawlid
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .take(NAME_BASE_MAX)
        .collect();
    base = base.trim_matches('-').to_owned();
    let hash = |s: &str| {
        format!(
            "{:08x}",
            xxhash_rust::xxh3::xxh3_64(s.as_bytes()) & 0xffff_ffff
        )
    };
    let primary = if base == crawlid && base.len() <= 63 {
        base
    } else if base.is_empty() {
        format!("crawl-{}", hash(crawlid))
    } else {
        format!("{base}-{}", hash(crawlid))
    };
    let alternate = format!(
        "{primary}-{}",
        hash(&format!("{spiderid}/{appid}/{crawlid}"))
    );
    (primary, alternate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dns_safe_crawlid_is_the_name() {
        assert_eq!(names("link", "testapp", "abc1234").0, "abc1234");
    }

    #[test]
    fn other_crawlids_are_made_safe_and_kept_apart() {
        let (a, _) = names("link", "app", "Run_7");
        let (b, _) = names("link", "app", "run-7");
        let (c, _) = names("link", "app", "RUN.7");
        assert!(
            a.starts_with("run-7-") && a.len() == "run-7-".len() + 8,
            "{a}"
        );
        assert_eq!(b, "run-7");
        assert_ne!(
            a, c,
            "crawlids differing in case and punctuation share a name"
        );
        assert!(names("link", "app", "___").0.starts_with("crawl-"));
        let long = "x".repeat(128);
        assert!(names("link", "app", &long).0.len() <= 253);
    }

    #[test]
    fn the_alternate_name_tells_apps_apart() {
        let (p1, a1) = names("link", "one", "abc");
        let (p2, a2) = names("link", "two", "abc");
        assert_eq!(p1, p2);
        assert_ne!(a1, a2);
        assert!(a1.starts_with("abc-"));
    }

    #[test]
    fn parse_feed_refuses_what_is_not_an_object() {
        let err = parse_feed("[1]").expect_err("refused");
        assert_eq!(err.field(), Some("request"));
        let err = parse_feed("{oops").expect_err("refused");
        assert!(kubecrawl_process::format_chain(&err).contains("not valid JSON"));
    }

    #[test]
    fn selectors_match_on_what_they_name() {
        let job: CrawlJob = serde_json::from_value(json!({
            "apiVersion": "kubecrawl.io/v1alpha1", "kind": "CrawlJob",
            "metadata": {"name": "n"},
            "spec": {"spiderid": "link", "appid": "app", "crawlid": "c1", "seeds": ["http://a.test/"]}
        }))
        .expect("a job");
        assert!(Selector::default().matches(&job));
        let s = Selector {
            crawlid: Some("c1".into()),
            appid: Some("app".into()),
            spiderid: None,
        };
        assert!(s.matches(&job));
        let s = Selector {
            appid: Some("other".into()),
            ..Selector::default()
        };
        assert!(!s.matches(&job));
    }
}
