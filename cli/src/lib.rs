//! kubecrawl-cli: the `kubecrawl` command, Scrapy Cluster's workflow on kubecrawl.
//!
//! Scrapy Cluster users feed crawl requests as JSON (`kafka_monitor.py feed '{"url": …}'`),
//! read pages with a firehose dump, watch the Redis Monitor's "Crawler Stats Dump", and send
//! action requests (info, stop, expire, stats) over Kafka. This crate keeps all of that
//! working while the CrawlJob stays the source of truth: a crawl request becomes a CrawlJob
//! (or a new seed of one), an action reads or changes CrawlJobs, and the operator does the
//! rest.
//!
//! What it is not: it never touches the frontier's queues (only the operator and the workers
//! do) and never fetches a page. It reads the frontier for statistics only.
//!
//! # Tour
//! - [`args`]: the command line.
//! - [`request`]: Scrapy Cluster's crawl request, checked field by field, as a CrawlJob spec.
//! - [`jobs`]: CrawlJobs by crawlid: feed (create or add a seed), find, stop, expire.
//! - [`actions`]: info, stop, expire and stats, answered as Scrapy Cluster's JSON.
//! - [`dump`]: the firehose printed as readable JSON (Scrapy Cluster's kafkadump).
//! - [`ingest`]: the long-running consumer of `<prefix>.incoming` and its protocol.

use std::io::Write;

use tokio_util::sync::CancellationToken;

pub mod actions;
pub mod args;
pub mod dump;
pub mod expired;
pub mod ingest;
pub mod jobs;
pub mod request;
pub mod stats;

/// A request refused before it reached the API server, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Refusal {
    /// The request's field, e.g. `priority` or `allowed_domains[2]`.
    pub field: String,
    /// What is wrong with it, for a person.
    pub message: String,
}

impl Refusal {
    /// A refusal of `field`.
    pub fn new(field: &str, message: String) -> Self {
        Self {
            field: field.to_owned(),
            message,
        }
    }
}

/// Everything that can go wrong in `kubecrawl`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is not valid; nothing was sent.
    #[error("request refused")]
    Refused(#[source] Refusal),
    /// The API server refused the CrawlJob (or the change to it).
    #[error("the API server refused: {message}")]
    ApiRefused {
        /// The API server's own message.
        message: String,
    },
    /// No CrawlJob matches.
    #[error("no crawl {what} in namespace {namespace}")]
    NotFound {
        /// What was looked for (`crawlid "abc"`, `of appid "app"`).
        what: String,
        /// Where.
        namespace: String,
    },
    /// More than one CrawlJob matches where one was meant.
    #[error(
        "crawlid {crawlid:?} names {count} crawls in namespace {namespace}; say which with --appid and --spiderid"
    )]
    Ambiguous {
        /// The crawlid.
        crawlid: String,
        /// How many match.
        count: usize,
        /// Where.
        namespace: String,
    },
    /// The kubeconfig (or in-cluster configuration) could not be loaded.
    #[error("loading the kubernetes configuration failed")]
    KubeConfig {
        /// The client's error.
        #[source]
        source: Box<kube::Error>,
    },
    /// A Kubernetes API call failed for a reason other than a refusal.
    #[error("kubernetes {op} failed")]
    Kube {
        /// The operation.
        op: &'static str,
        /// The client's error.
        #[source]
        source: Box<kube::Error>,
    },
    /// A Kafka operation failed.
    #[error("kafka {op} failed")]
    Kafka {
        /// The operation.
        op: &'static str,
        /// The client's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// Redis or Kafka did not accept the settings at start-up (wrong CA, wrong password,
    /// plaintext on a TLS port, unreachable).
    #[error("start-up connection check failed")]
    Connect {
        /// Which endpoint and why.
        #[source]
        source: kubecrawl_process::connect::Error,
    },
    /// A frontier read failed.
    #[error("frontier {op} failed")]
    Frontier {
        /// The operation.
        op: &'static str,
        /// The frontier's error.
        #[source]
        source: Box<kubecrawl_frontier::Error>,
    },
    /// Reading the request from stdin failed.
    #[error("reading the request from stdin failed")]
    Stdin {
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Writing the output failed.
    #[error("writing to stdout failed")]
    Stdout {
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps a Kubernetes client error of operation `op`: a 4xx answer (other than 404, 409
    /// and 429, which callers handle or retry) is the API server refusing, anything else a
    /// failure to reach it.
    pub fn kube(op: &'static str) -> impl FnOnce(kube::Error) -> Self {
        move |source| match &source {
            kube::Error::Api(status)
                if (400..500).contains(&status.code) && ![404, 409, 429].contains(&status.code) =>
            {
                Self::ApiRefused {
                    message: status.message.clone(),
                }
            }
            _ => Self::Kube {
                op,
                source: Box::new(source),
            },
        }
    }

    /// Wraps a frontier error of operation `op`.
    pub fn frontier(op: &'static str) -> impl FnOnce(kubecrawl_frontier::Error) -> Self {
        move |source| Self::Frontier {
            op,
            source: Box::new(source),
        }
    }

    /// Wraps a Kafka error of operation `op`.
    pub fn kafka(op: &'static str) -> impl FnOnce(rdkafka::error::KafkaError) -> Self {
        move |source| Self::Kafka { op, source }
    }

    /// Whether trying again later may succeed (a service unreachable), as opposed to a final
    /// answer about the request (refused, not found).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Kube { .. }
                | Self::Kafka { .. }
                | Self::Frontier { .. }
                | Self::KubeConfig { .. }
        )
    }

    /// The request field at fault, when the error is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Refused(r) => Some(&r.field),
            Self::NotFound { .. } | Self::Ambiguous { .. } => Some("crawlid"),
            _ => None,
        }
    }
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        Self::Refused(r)
    }
}

/// The current unix time in seconds.
pub fn now_s() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

/// Runs one command until it is done (or, for `ingest` and `dump`, until `shutdown`).
///
/// # Errors
/// A refused request, a crawl not found, or a service that cannot be reached.
pub async fn run(command: args::Command, shutdown: CancellationToken) -> Result<()> {
    use args::Command;
    match command {
        Command::Feed(a) => {
            let text = if a.request == "-" {
                std::io::read_to_string(std::io::stdin())
                    .map_err(|source| Error::Stdin { source })?
            } else {
                a.request.clone()
            };
            let request = jobs::parse_feed(&text)?;
            let jobs = jobs::Jobs::connect(a.kube.namespace.as_deref()).await?;
            let fed = jobs.feed(&request).await?;
            print_line(&fed.to_string())
        }
        Command::Dump(a) => dump::run(&a, &mut std::io::stdout(), shutdown).await,
        Command::Stats(a) => {
            let frontier = actions::connect_frontier(&a.redis).await?;
            let stats = actions::stats(frontier.as_ref(), &a.redis.spiders, "all").await?;
            print_json(&stats)
        }
        Command::Info(a) => {
            let jobs = jobs::Jobs::connect(a.kube.namespace.as_deref()).await?;
            let job = jobs.find_one(&selector(&a)).await?;
            print_json(&serde_json::Value::Object(actions::info(&job)))
        }
        Command::Stop(a) => {
            let jobs = jobs::Jobs::connect(a.kube.namespace.as_deref()).await?;
            let job = jobs.find_one(&selector(&a)).await?;
            let answer = actions::stop(&jobs, std::slice::from_ref(&job)).await?;
            print_json(&serde_json::Value::Object(answer))
        }
        Command::Expire(a) => {
            let jobs = jobs::Jobs::connect(a.kube.namespace.as_deref()).await?;
            let job = jobs.find_one(&selector(&a)).await?;
            let answer = actions::expire(&jobs, std::slice::from_ref(&job)).await?;
            print_json(&serde_json::Value::Object(answer))
        }
        Command::Ingest(a) => ingest::run(&a, shutdown).await,
    }
}

fn selector(a: &args::JobArgs) -> jobs::Selector {
    jobs::Selector {
        crawlid: Some(a.crawlid.clone()),
        appid: a.appid.clone(),
        spiderid: a.spiderid.clone(),
    }
}

fn print_line(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").map_err(|source| Error::Stdout { source })
}

fn print_json(value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    print_line(&text)
}
