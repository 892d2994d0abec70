//! kubecrawl-worker: the crawler. It leases requests from the frontier, fetches them
//! politely, runs a spider's `parse`, publishes each page record, and only then acknowledges
//! the lease.
//!
//! One binary, two ways to run: `kubecrawl-worker crawl URL...` crawls on this machine with
//! an in-memory frontier and JSON lines out ([`standalone`]); `kubecrawl-worker run` is one
//! worker of a fleet, on the Redis frontier with Kafka out ([`cluster`]). A custom spider
//! lives in a binary of its own that calls [`main`] with its [`spider::Registry`].
//!
//! What this crate is not: it does not decide what is crawled next or when (the frontier
//! does), and it does not talk to Kubernetes (the operator does).
//!
//! # Tour
//! - [`spider`]: the `Spider` trait, the `Response` a spider sees, and the registry;
//!   [`spiders`]: the built-in `link` and `wandering`.
//! - [`runtime`]: the worker loop — lease, fetch, parse, publish, acknowledge — and shutdown.
//! - [`fetch`]: the HTTP client (timeouts, redirects checked hop by hop, body cap);
//!   [`guard`]: refusing private networks; [`robots`]: robots.txt per origin;
//!   [`charset`]: decoding bodies; [`extract`]: links from HTML; [`sitemap`]: what a
//!   sitemap or a robots.txt lists; [`declarative`]: a job's `extract` rules (item fields by
//!   CSS selector, follow rules), compiled once per job; [`recrawl`]: conditional requests
//!   and whether a page changed since the previous recrawl round; [`render`]: pages run
//!   in headless Chromium for jobs with `render`, every request they make answered by the
//!   worker.
//! - [`sink`]: where records go — [`sink::kafka`] or [`sink::jsonl`]; [`warc`]: every page
//!   also as WARC/1.1 records in rolling files, when enabled.
//! - [`metrics`]: Prometheus metrics and health endpoints.
//! - [`args`]: the command line (logging, the shutdown signal and the admin server are
//!   [`kubecrawl_process`]'s).

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

pub mod adaptive;
pub mod args;
pub mod charset;
pub mod cluster;
pub mod declarative;
pub mod extract;
pub mod fetch;
pub mod guard;
pub mod metrics;
pub mod recrawl;
pub mod render;
pub mod robots;
pub mod runtime;
pub mod sink;
pub mod sitemap;
pub mod spider;
pub mod spiders;
pub mod standalone;
pub mod traps;
pub mod warc;

/// Everything that stops a worker from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No spider of that name is registered in this binary.
    #[error("unknown spider {name:?} (this worker knows: {known})")]
    UnknownSpider {
        /// The requested name.
        name: String,
        /// The registered names.
        known: String,
    },
    /// A start URL is not an absolute http(s) URL.
    #[error("start URL {url:?} is not an absolute http or https URL")]
    InvalidSeed {
        /// The URL as given.
        url: String,
    },
    /// A `--sitemap` is not an absolute http(s) URL.
    #[error("sitemap {url:?} is not an absolute http or https URL")]
    InvalidSitemap {
        /// The URL as given.
        url: String,
    },
    /// The `--extract` file could not be read.
    #[error("reading the extract rules {path:?} failed")]
    ReadExtract {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The `--extract` file is not an `extract` object in YAML or JSON.
    #[error("the extract rules {path:?} are not a CrawlJob's extract object")]
    ParseExtract {
        /// The file.
        path: std::path::PathBuf,
        /// What the parser said.
        #[source]
        source: serde_yaml::Error,
    },
    /// A selector or regex of the `--extract` file does not compile.
    #[error("the extract rules {path:?} do not compile")]
    InvalidExtract {
        /// The file.
        path: std::path::PathBuf,
        /// Which selector or regex, and why.
        #[source]
        source: declarative::Error,
    },
    /// A frontier operation failed.
    #[error("frontier {op} failed")]
    Frontier {
        /// The operation.
        op: &'static str,
        /// The frontier's error.
        #[source]
        source: Box<kubecrawl_frontier::Error>,
    },
    /// Redis or Kafka did not accept this worker at start-up (wrong CA, wrong password,
    /// plaintext on a TLS port, unreachable).
    #[error("start-up connection check failed")]
    Connect {
        /// Which endpoint and why.
        #[source]
        source: kubecrawl_process::connect::Error,
    },
    /// The output could not be set up or written.
    #[error("page output failed")]
    Sink {
        /// The sink's error.
        #[source]
        source: sink::Error,
    },
    /// The HTTP client could not be built.
    #[error("building the http client failed")]
    HttpClient {
        /// The client's error.
        #[source]
        source: reqwest::Error,
    },
    /// WARC output could not be set up (bad settings, a directory that cannot be written).
    #[error("warc output failed")]
    Warc {
        /// The writer's error.
        #[source]
        source: warc::Error,
    },
    /// The browser that renders pages could not be started.
    #[error(
        "starting the browser {path:?} failed (install Debian's chromium-headless-shell, or name another with --browser)"
    )]
    Browser {
        /// The browser.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: render::RenderError,
    },
    /// A `--render-pattern` is not a regular expression.
    #[error("--render-pattern {pattern:?} is not a regular expression")]
    InvalidRenderPattern {
        /// The pattern.
        pattern: String,
        /// What the regex parser said.
        #[source]
        source: regex::Error,
    },
    /// The admin server (metrics, health) could not start, or failed.
    #[error("the admin server failed")]
    Admin {
        /// Which address and why.
        #[source]
        source: kubecrawl_process::Error,
    },
}

impl Error {
    /// Wraps a frontier error of operation `op`.
    pub fn frontier(op: &'static str) -> impl FnOnce(kubecrawl_frontier::Error) -> Self {
        move |source| Self::Frontier {
            op,
            source: Box::new(source),
        }
    }
}

/// The worker's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The HTTP client a worker's fetch flags describe.
fn fetcher(args: &args::FetchArgs) -> Result<fetch::Fetcher> {
    fetch::Fetcher::new(fetch::FetchConfig {
        connect_timeout: args.connect_timeout,
        timeout: args.timeout,
        max_body: args.max_body_bytes,
        max_redirects: args.max_redirects,
        allow_private_networks: args.allow_private_networks,
        user_agent: args
            .user_agent
            .clone()
            .unwrap_or_else(fetch::default_user_agent),
        resolve: args.resolve.clone(),
    })
    .map_err(|source| Error::HttpClient { source })
}

/// The spider named `name` in `registry`, or an error listing the names it has.
fn spider(registry: &spider::Registry, name: &str) -> Result<std::sync::Arc<dyn spider::Spider>> {
    registry.get(name).ok_or_else(|| Error::UnknownSpider {
        name: name.to_owned(),
        known: registry.names().join(", "),
    })
}

/// The Kafka sink for `brokers` with the security settings `security` and the output flags
/// `args`, once the brokers accepted those settings (a wrong CA or password ends the worker
/// here, at start-up).
async fn kafka_sink(
    brokers: &str,
    security: &kubecrawl_process::connect::kafka::KafkaSecurity,
    args: &args::KafkaOutputArgs,
) -> Result<sink::kafka::KafkaSink> {
    let client = security
        .client_config(brokers)
        .map_err(|source| Error::Connect { source })?;
    kubecrawl_process::connect::kafka::check(&client, brokers, security.kafka_connect_timeout)
        .await
        .map_err(|source| Error::Connect { source })?;
    let sink = sink::kafka::KafkaSink::new(sink::kafka::KafkaConfig {
        brokers: brokers.to_owned(),
        topic_prefix: args.topic_prefix.clone(),
        per_appid_topics: args.per_appid_topics,
        security: security.clone(),
        delivery_timeout: args.delivery_timeout,
        compression: args.compression.clone(),
    })
    .map_err(|source| Error::Sink { source })?;
    sink.ensure_topics(security.kafka_connect_timeout).await;
    Ok(sink)
}

/// The WARC writer the flags ask for, or `None` without `--warc-dir`.
fn warc_writer(
    args: &args::WarcArgs,
    fetch: &args::FetchArgs,
    worker_name: &str,
    spiderid: &str,
    metrics: &metrics::Metrics,
) -> Result<Option<warc::WarcWriter>> {
    let Some(dir) = &args.warc_dir else {
        return Ok(None);
    };
    let config = warc::WarcConfig {
        dir: dir.clone(),
        prefix: args.warc_prefix.clone(),
        max_bytes: args.warc_max_bytes,
        max_age: args.warc_max_age,
        worker_name: worker_name.to_owned(),
        spiderid: spiderid.to_owned(),
        user_agent: fetch
            .user_agent
            .clone()
            .unwrap_or_else(fetch::default_user_agent),
        gzip_level: args.warc_gzip_level,
    };
    warc::WarcWriter::start(config, metrics.clone())
        .map(Some)
        .map_err(|source| Error::Warc { source })
}

/// The worker's renderer, when `render` asks for one. The browser starts at the first page
/// to render (a job that renders nothing costs nothing), but a browser that is not there fails
/// the worker now rather than at that page.
async fn renderer(
    render: bool,
    args: &args::BrowserArgs,
    fetch: &args::FetchArgs,
) -> Result<Option<Arc<render::Renderer>>> {
    if !render {
        return Ok(None);
    }
    render::check_browser(&args.browser).map_err(|source| Error::Browser {
        path: args.browser.clone(),
        source,
    })?;
    let renderer = render::Renderer::new(args.config(fetch.max_body_bytes), fetcher(fetch)?);
    Ok(Some(Arc::new(renderer)))
}

/// The robots.txt cache a worker uses: bounded to 10,000 origins.
fn robots_cache(args: &args::FetchArgs) -> robots::RobotsCache {
    robots::RobotsCache::new(args.robots_agent.clone(), 10_000)
        .with_unreachable_retry(args.robots_retry)
}

/// The whole `kubecrawl-worker` program for a given set of spiders: parses the command line,
/// starts logging, runs until done or until SIGTERM/SIGINT, and returns the exit code
/// ([`kubecrawl_process::main`]). A custom worker binary is
/// `fn main() -> ExitCode { kubecrawl_worker::main(registry) }`.
pub fn main(registry: spider::Registry) -> ExitCode {
    // A worker that renders starts itself as the browser's launcher (`render::launcher`).
    render::launcher::exec_if_launcher();
    let cli = args::Cli::parse();
    kubecrawl_process::main(&cli.log, |shutdown| async move {
        let registry = Arc::new(registry);
        match cli.command {
            args::Command::Crawl(args) => {
                let summary = standalone::crawl(args, &registry, shutdown).await?;
                eprintln!("{summary}");
                Ok(())
            }
            args::Command::Run(args) => cluster::run(args, &registry, shutdown).await,
        }
    })
}
