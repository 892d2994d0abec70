//! Command-line arguments of `kubecrawl-worker`. Every flag also reads a `KUBECRAWL_…`
//! environment variable, which is how the operator's Deployment configures a worker.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use kubecrawl_process::connect::kafka::{KafkaArgs, KafkaSecurity};
use kubecrawl_process::connect::redis::{RedisArgs, RedisSecurity};

/// kubecrawl's crawler worker: a standalone crawl on this machine, or one worker of a fleet.
#[derive(Debug, Parser)]
#[command(name = "kubecrawl-worker", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Logging.
    #[command(flatten)]
    pub log: kubecrawl_process::log::LogArgs,
}

/// The worker's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Crawl from one or more URLs on this machine and write every page as a JSON line.
    /// Needs no cluster: the frontier is in memory unless --redis is given, and the output is
    /// a file or stdout unless --kafka is given.
    Crawl(CrawlArgs),
    /// Run as one worker of a spider fleet: lease from the Redis frontier, publish to Kafka,
    /// never exit when idle. This is what the operator's Deployment runs.
    Run(RunArgs),
}

/// How pages are fetched.
#[derive(Debug, Clone, Args)]
pub struct FetchArgs {
    /// Time allowed to open a connection.
    #[arg(long, env = "KUBECRAWL_CONNECT_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
    /// Time allowed for one request, body included.
    #[arg(long, env = "KUBECRAWL_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// The most body bytes kept per page (after decompression); longer bodies are cut and
    /// flagged `body_truncated`.
    #[arg(long, env = "KUBECRAWL_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// The most redirects followed for one request.
    #[arg(long, env = "KUBECRAWL_MAX_REDIRECTS", default_value_t = 10)]
    pub max_redirects: usize,
    /// Allow fetching private, loopback and link-local addresses (refused by default so that
    /// a crawler in a cluster cannot reach the cluster's own network).
    #[arg(long, env = kubecrawl_api::contract::env::ALLOW_PRIVATE_NETWORKS)]
    pub allow_private_networks: bool,
    /// The User-Agent sent when a job sets none.
    #[arg(long, env = "KUBECRAWL_USER_AGENT")]
    pub user_agent: Option<String>,
    /// The product token matched against robots.txt `User-agent` lines.
    #[arg(long, env = "KUBECRAWL_ROBOTS_AGENT", default_value = "kubecrawl")]
    pub robots_agent: String,
    /// How long a host waits after its robots.txt could not be fetched (5xx, timeout) before
    /// its requests are tried again (each such wait counts as one of the request's retries).
    #[arg(long, env = "KUBECRAWL_ROBOTS_RETRY", default_value = "60s", value_parser = humantime::parse_duration)]
    pub robots_retry: Duration,
    /// The longest one page may take from lease to acknowledgement (robots.txt, redirects,
    /// parsing, publishing); past it the attempt is retried.
    #[arg(long, env = "KUBECRAWL_PAGE_TIMEOUT", default_value = "10m", value_parser = humantime::parse_duration)]
    pub page_timeout: Duration,
    /// Resolve a host name to a fixed address, `host=ip` (like curl's --resolve); repeatable.
    #[arg(long = "resolve", env = "KUBECRAWL_RESOLVE", value_delimiter = ',', value_parser = parse_resolve)]
    pub resolve: Vec<(String, SocketAddr)>,
    /// The most fetches in flight at once.
    #[arg(long, env = kubecrawl_api::contract::env::CONCURRENCY, default_value_t = 64)]
    pub concurrency: usize,
    /// The most fetches in flight to one host at once.
    #[arg(long, env = "KUBECRAWL_PER_HOST_CONCURRENCY", default_value_t = 16)]
    pub per_host_concurrency: usize,
}

/// Where page records go when they go to Kafka (how Kafka is reached is
/// [`KafkaArgs`] / [`KafkaSecurity`]).
#[derive(Debug, Clone, Args)]
pub struct KafkaOutputArgs {
    /// Topic prefix: records go to `<prefix>.crawled_firehose`.
    #[arg(long, env = kubecrawl_api::contract::env::TOPIC_PREFIX, default_value = "kubecrawl")]
    pub topic_prefix: String,
    /// Also write each record to `<prefix>.crawled_<appid>`.
    #[arg(long, env = kubecrawl_api::contract::env::PER_APPID_TOPICS)]
    pub per_appid_topics: bool,
    /// How long a record may wait for Kafka's acknowledgement.
    #[arg(long, env = "KUBECRAWL_KAFKA_DELIVERY_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub delivery_timeout: Duration,
    /// How record batches are compressed: `gzip` (the default, at level 1) is read by every
    /// Kafka client, including Scrapy Cluster's consumers with a stock kafka-python; `zstd`,
    /// `lz4` and `snappy` cost less CPU but need the codec in every consumer; `none` costs
    /// the least CPU and the most bytes (docs/operations.md, "Compression").
    #[arg(long, env = "KUBECRAWL_KAFKA_COMPRESSION", default_value = "gzip", value_parser = ["none", "gzip", "snappy", "lz4", "zstd"])]
    pub compression: String,
}

/// WARC output: every fetched page also written as WARC/1.1 records into rolling files
/// (docs/operations.md, "WARC output").
#[derive(Debug, Clone, Args)]
pub struct WarcArgs {
    /// Write every page as WARC/1.1 files (request, response and metadata records, gzip per
    /// record) into this directory, created if missing. Not set: no WARC output.
    #[arg(long, env = kubecrawl_api::contract::env::WARC_DIR)]
    pub warc_dir: Option<PathBuf>,
    /// The start of every WARC file's name: `<prefix>-<UTC time>-<worker>-<serial>.warc.gz`.
    #[arg(long, env = kubecrawl_api::contract::env::WARC_PREFIX, default_value = "kubecrawl")]
    pub warc_prefix: String,
    /// A WARC file is closed, and the next one started, once it holds this many (compressed)
    /// bytes; the default is 1 GiB.
    #[arg(long, env = kubecrawl_api::contract::env::WARC_MAX_BYTES, default_value_t = 1 << 30)]
    pub warc_max_bytes: u64,
    /// A WARC file is closed once it is this old, even while the worker is idle.
    #[arg(long, env = kubecrawl_api::contract::env::WARC_MAX_AGE, default_value = "1h", value_parser = humantime::parse_duration)]
    pub warc_max_age: Duration,
    /// The gzip level of every WARC record, 0 (stored) to 9: higher levels make smaller files
    /// for more CPU per page (docs/performance.md, "WARC output").
    #[arg(long, env = kubecrawl_api::contract::env::WARC_GZIP_LEVEL, default_value_t = 6, value_parser = clap::value_parser!(u32).range(0..=9))]
    pub warc_gzip_level: u32,
}

/// The browser that renders pages of jobs with `render` (docs/crawljob.md, "Rendering").
#[derive(Debug, Clone, Args)]
pub struct BrowserArgs {
    /// The headless Chromium to run (Debian's `chromium-headless-shell` package).
    #[arg(long, env = kubecrawl_api::contract::env::BROWSER, default_value = crate::render::DEFAULT_BROWSER)]
    pub browser: PathBuf,
    /// Pages rendered at once: browser contexts open at once, each about 13 MB besides the
    /// browser's own ~190 MB (docs/performance.md, "Rendering").
    #[arg(long, env = kubecrawl_api::contract::env::RENDER_CONTEXTS, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub render_contexts: u16,
    /// The JavaScript heap of each page's renderer, in MiB: a page past it crashes its
    /// renderer and is published as fetched.
    #[arg(long, env = kubecrawl_api::contract::env::RENDER_JS_HEAP_MB, default_value_t = 256, value_parser = clap::value_parser!(u32).range(16..=16384))]
    pub render_js_heap_mb: u32,
}

impl BrowserArgs {
    /// The renderer's configuration; the browser starts through this very binary
    /// ([`crate::render::launcher`]).
    pub fn config(&self, max_body: usize) -> crate::render::RenderConfig {
        crate::render::RenderConfig {
            browser: self.browser.clone(),
            contexts: usize::from(self.render_contexts),
            js_heap_mb: self.render_js_heap_mb,
            max_subresource_bytes: max_body,
            launcher: crate::render::launcher::launcher(),
        }
    }
}

/// `kubecrawl-worker crawl`.
#[derive(Debug, Clone, Args)]
pub struct CrawlArgs {
    /// The URLs to start from.
    #[arg(required = true)]
    pub urls: Vec<String>,
    /// The spider: `link` follows every allowed link, `wandering` one random link per page.
    #[arg(long, default_value = "link")]
    pub spider: String,
    /// How many hops to follow from a start URL (0 fetches the start URLs only).
    #[arg(long, default_value_t = 0)]
    pub maxdepth: u32,
    /// Only follow links to this domain (and its subdomains); repeatable.
    #[arg(long = "allowed-domain")]
    pub allowed_domains: Vec<String>,
    /// Only follow links matching one of these regexes; repeatable.
    #[arg(long = "allow-regex")]
    pub allow_regex: Vec<String>,
    /// Never follow links matching one of these regexes; repeatable.
    #[arg(long = "deny-regex")]
    pub deny_regex: Vec<String>,
    /// Stop admitting links after this many pages.
    #[arg(long)]
    pub max_pages: Option<u64>,
    /// The least time between two requests to one domain (robots.txt Crawl-delay wins when
    /// longer).
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    pub delay: Duration,
    /// Ignore robots.txt (only for sites you own).
    #[arg(long)]
    pub ignore_robots: bool,
    /// Follow links marked rel="nofollow" too.
    #[arg(long)]
    pub follow_nofollow: bool,
    /// A declarative spider: a YAML or JSON file holding a CrawlJob's `extract` object (item
    /// fields by CSS selector, follow rules, pagination). The link spider puts the fields in
    /// every record and follows the links the rules choose.
    #[arg(long, value_name = "FILE")]
    pub extract: Option<PathBuf>,
    /// Also crawl the pages this sitemap (or sitemap index, plain or gzipped) lists;
    /// repeatable.
    #[arg(long = "sitemap")]
    pub sitemaps: Vec<String>,
    /// Also crawl the pages listed by the sitemaps the start URLs' robots.txt files name.
    #[arg(long)]
    pub sitemaps_from_robots: bool,
    /// Queue only the sitemap pages whose lastmod is at or after this RFC 3339 time
    /// (entries without a lastmod are queued).
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    pub sitemaps_modified_since: Option<std::time::SystemTime>,
    /// The appid written into every record.
    #[arg(long, default_value = "standalone")]
    pub appid: String,
    /// The crawlid written into every record; defaults to `crawl-<unix seconds>`.
    #[arg(long)]
    pub crawlid: Option<String>,
    /// Where to write the JSON lines; `-` is stdout.
    #[arg(short = 'o', long, default_value = "-")]
    pub output: PathBuf,
    /// Use the Redis frontier at this URL instead of the in-memory one (other workers can then
    /// join the crawl with `kubecrawl-worker run`); `rediss://` for TLS. Several URLs,
    /// comma-separated, are the frontier's shards.
    #[arg(long)]
    pub redis: Option<String>,
    /// The Redis key prefix, with --redis.
    #[arg(long, default_value = "kubecrawl")]
    pub redis_prefix: String,
    /// Redis TLS and authentication, with --redis.
    #[command(flatten)]
    pub redis_security: RedisSecurity,
    /// Make this run the next recrawl round of an earlier run with the same --crawlid on the
    /// same Redis: every page that run reached is requested again with its ETag and
    /// Last-Modified, a 304 or an unchanged body is counted and not written, changed and new
    /// pages are. The first run with --recrawl is round 1. Needs --redis and --crawlid.
    #[arg(long, requires_all = ["redis", "crawlid"])]
    pub recrawl: bool,
    /// Publish to Kafka at these brokers instead of writing JSON lines.
    #[arg(long)]
    pub kafka: Option<String>,
    /// Kafka TLS and authentication, with --kafka.
    #[command(flatten)]
    pub kafka_security: KafkaSecurity,
    /// Kafka output settings, with --kafka.
    #[command(flatten)]
    pub kafka_args: KafkaOutputArgs,
    /// Fetching.
    #[command(flatten)]
    pub fetch: FetchArgs,
    /// WARC output.
    #[command(flatten)]
    pub warc: WarcArgs,
    /// Render pages in headless Chromium before parsing them, as a CrawlJob's `render.mode`:
    /// `never`, `always`, `patterns` (the URLs matching a --render-pattern) or `auto` (pages
    /// whose HTML shows it needs scripts). The records then hold the DOM the scripts built.
    #[arg(long, value_name = "MODE", default_value = "never", value_parser = parse_render_mode)]
    pub render: kubecrawl_api::RenderMode,
    /// With --render patterns: a regex on the page's URL; repeatable.
    #[arg(long = "render-pattern", value_name = "REGEX")]
    pub render_patterns: Vec<String>,
    /// The most seconds one render may take (`render.timeoutSeconds`).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(1..=300))]
    pub render_timeout: Option<u32>,
    /// The quiet time after which a rendered page counts as settled (`render.settleMillis`).
    #[arg(long, value_name = "MILLIS", value_parser = clap::value_parser!(u32).range(0..=30_000))]
    pub render_settle_ms: Option<u32>,
    /// The most elements a rendered DOM may hold (`render.maxElements`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(100..=10_000_000))]
    pub render_max_elements: Option<u32>,
    /// Store a JPEG screenshot of each rendered page in its record when it is at most this
    /// many bytes (`render.screenshotMaxBytes`).
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(1024..=5_242_880))]
    pub screenshot_max_bytes: Option<u32>,
    /// The browser, with --render.
    #[command(flatten)]
    pub browser: BrowserArgs,
    /// Never draw a progress bar, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
}

/// `kubecrawl-worker run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The spider fleet this worker serves.
    #[arg(long, env = kubecrawl_api::contract::env::SPIDER)]
    pub spider: String,
    /// The spider of this binary that parses the pages, when its name is not the fleet's
    /// (a fleet `link-render` whose pages the `link` spider parses).
    #[arg(long, env = kubecrawl_api::contract::env::PARSE_WITH)]
    pub parse_with: Option<String>,
    /// The Redis frontier.
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Kafka.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Kafka output settings.
    #[command(flatten)]
    pub output: KafkaOutputArgs,
    /// Fetching.
    #[command(flatten)]
    pub fetch: FetchArgs,
    /// WARC output.
    #[command(flatten)]
    pub warc: WarcArgs,
    /// Start a headless Chromium and render the pages of jobs with `render`; without it
    /// such pages are published as fetched and counted in `render_unavailable`.
    #[arg(long, env = kubecrawl_api::contract::env::RENDER)]
    pub render: bool,
    /// The browser, with --render.
    #[command(flatten)]
    pub browser: BrowserArgs,
    /// Where /metrics, /healthz and /readyz are served.
    #[arg(long, env = kubecrawl_api::contract::env::METRICS_ADDR, default_value = "0.0.0.0:9090")]
    pub metrics_addr: SocketAddr,
    /// This worker's name in heartbeats; defaults to `<hostname>-<pid>`.
    #[arg(long, env = kubecrawl_api::contract::env::WORKER_NAME)]
    pub worker_name: Option<String>,
    /// The most requests asked for in one lease call.
    #[arg(long, env = "KUBECRAWL_LEASE_BATCH", default_value_t = 32)]
    pub lease_batch: usize,
    /// How long a lease holds its request before another worker may take it over. Leases of
    /// pages in work are extended every third of this, so it bounds how soon a dead worker's
    /// requests come back, not how long a page may take (that is --page-timeout).
    #[arg(long, env = "KUBECRAWL_LEASE_DURATION", default_value = "2m", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,
    /// How long in-flight fetches may finish at shutdown; keep it below the pod's
    /// terminationGracePeriodSeconds.
    #[arg(long, env = "KUBECRAWL_DRAIN_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
}

fn parse_resolve(s: &str) -> Result<(String, SocketAddr), String> {
    let (host, ip) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not host=ip"))?;
    let ip: std::net::IpAddr = ip
        .parse()
        .map_err(|_| format!("{ip:?} is not an IP address"))?;
    if host.is_empty() {
        return Err(format!("{s:?} has no host name"));
    }
    Ok((host.to_ascii_lowercase(), SocketAddr::new(ip, 0)))
}

/// A `render.mode`, as the CrawlJob spells it.
fn parse_render_mode(text: &str) -> Result<kubecrawl_api::RenderMode, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| format!("{text:?} is not a render mode: never, always, patterns or auto"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    /// The operator's Deployment and the chart configure a worker only through these
    /// variables; a flag renamed on one side would otherwise fail in a cluster only.
    #[test]
    fn run_reads_every_variable_of_the_worker_contract() {
        use clap::CommandFactory;
        let mut cli = Cli::command();
        cli.build();
        let run = cli.find_subcommand("run").expect("a run command");
        let read: Vec<String> = run
            .get_arguments()
            .filter_map(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned())
            .collect();
        for name in kubecrawl_api::contract::env::WORKER {
            assert!(
                read.iter().any(|r| r == name),
                "`kubecrawl-worker run` does not read {name}: {read:?}"
            );
        }
    }

    #[test]
    fn resolve_takes_host_equals_ip() {
        assert_eq!(
            parse_resolve("Site.test=127.0.0.1").expect("ok").0,
            "site.test"
        );
        assert!(parse_resolve("site.test").is_err());
        assert!(parse_resolve("site.test=nope").is_err());
    }

    #[test]
    fn crawl_parses_the_quick_start() {
        let cli = Cli::try_parse_from([
            "kubecrawl-worker",
            "crawl",
            "https://example.org",
            "--spider",
            "link",
            "--maxdepth",
            "1",
            "-o",
            "pages.jsonl",
        ])
        .expect("parses");
        let Command::Crawl(args) = cli.command else {
            panic!("crawl")
        };
        assert_eq!(args.maxdepth, 1);
        assert_eq!(args.output, PathBuf::from("pages.jsonl"));
        assert_eq!(args.warc.warc_dir, None);
    }

    #[test]
    fn warc_flags_parse_into_typed_values() {
        let cli = Cli::try_parse_from([
            "kubecrawl-worker",
            "crawl",
            "https://example.org",
            "--warc-dir",
            "/data/warc",
            "--warc-max-bytes",
            "1000000",
            "--warc-max-age",
            "15m",
        ])
        .expect("parses");
        let Command::Crawl(args) = cli.command else {
            panic!("crawl")
        };
        assert_eq!(args.warc.warc_dir, Some(PathBuf::from("/data/warc")));
        assert_eq!(args.warc.warc_prefix, "kubecrawl");
        assert_eq!(args.warc.warc_max_bytes, 1_000_000);
        assert_eq!(args.warc.warc_max_age, Duration::from_secs(900));
    }
}
