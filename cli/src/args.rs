//! Command-line arguments of `kubecrawl`. Every flag also reads a `KUBECRAWL_…` environment
//! variable, which is how the chart configures `kubecrawl ingest`.

use clap::{Args, Parser, Subcommand};

/// Drive kubecrawl the Scrapy Cluster way: feed crawl requests, dump the firehose, read the
/// Crawler Stats Dump, and serve Scrapy Cluster's Kafka API.
#[derive(Debug, Parser)]
#[command(
    name = "kubecrawl",
    version,
    about,
    mut_arg("log", |a| a.default_value("warn"))
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Logging (logs go to stderr, results to stdout); `--log` defaults to `warn`.
    #[command(flatten)]
    pub log: kubecrawl_process::log::LogArgs,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a CrawlJob from a Scrapy Cluster crawl request (JSON), or add its URL to the
    /// seeds of the job that already has its crawlid, appid and spiderid.
    Feed(FeedArgs),
    /// Print the records of the firehose topic as readable JSON (Scrapy Cluster's kafkadump).
    Dump(DumpArgs),
    /// Print the Crawler Stats Dump and the queue backlog per spider and domain.
    Stats(StatsArgs),
    /// Print a crawl's status and counts (Scrapy Cluster's info action).
    Info(JobArgs),
    /// Stop a crawl: delete its CrawlJob; the operator purges its frontier state.
    Stop(JobArgs),
    /// Expire a crawl now: set its `expires` to the current time.
    Expire(JobArgs),
    /// Serve Scrapy Cluster's Kafka API: consume crawl and action requests from
    /// `<prefix>.incoming`, answer on `<prefix>.outbound_firehose`, until SIGTERM.
    Ingest(Box<IngestArgs>),
}

/// Where CrawlJobs live.
#[derive(Debug, Clone, Args)]
pub struct KubeArgs {
    /// The namespace of the CrawlJobs; defaults to the kubeconfig context's (or the pod's).
    #[arg(short = 'n', long, env = "KUBECRAWL_NAMESPACE")]
    pub namespace: Option<String>,
}

/// How to reach Kafka, and the topics' prefix.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Brokers, TLS and authentication.
    #[command(flatten)]
    pub connection: kubecrawl_process::connect::kafka::KafkaArgs,
    /// Topic prefix (Scrapy Cluster's `demo`): `<prefix>.crawled_firehose`,
    /// `<prefix>.incoming`, `<prefix>.outbound_firehose`.
    #[arg(long, env = "KUBECRAWL_TOPIC_PREFIX", default_value = "kubecrawl")]
    pub topic_prefix: String,
}

/// How to reach the Redis frontier, and which spiders the stats dump lists.
#[derive(Debug, Clone, Args)]
pub struct RedisArgs {
    /// URL, key prefix, TLS and authentication.
    #[command(flatten)]
    pub connection: kubecrawl_process::connect::redis::RedisArgs,
    /// Spiders always listed in the stats dump, besides those with live workers.
    #[arg(
        long = "spider",
        env = "KUBECRAWL_SPIDERS",
        value_delimiter = ',',
        default_value = "link,wandering"
    )]
    pub spiders: Vec<String>,
}

/// `kubecrawl feed`.
#[derive(Debug, Clone, Args)]
pub struct FeedArgs {
    /// The crawl request: a JSON object with Scrapy Cluster's fields (url, appid, crawlid,
    /// spiderid, maxdepth, priority, allowed_domains, allow_regex, deny_regex,
    /// deny_extensions, expires, useragent, cookie, attrs, domain_max_pages); `-` reads it
    /// from stdin.
    pub request: String,
    /// Where the CrawlJob goes.
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// `kubecrawl dump`.
#[derive(Debug, Clone, Args)]
pub struct DumpArgs {
    /// The topic to read; defaults to `<prefix>.crawled_firehose`.
    #[arg(long, env = "KUBECRAWL_DUMP_TOPIC")]
    pub topic: Option<String>,
    /// Print the page bodies too (omitted by default).
    #[arg(long, env = "KUBECRAWL_DUMP_BODY")]
    pub body: bool,
    /// Start from the oldest record kept, not from the newest.
    #[arg(long, env = "KUBECRAWL_DUMP_FROM_BEGINNING")]
    pub from_beginning: bool,
    /// Exit after printing this many records.
    #[arg(long, env = "KUBECRAWL_DUMP_MAX")]
    pub max: Option<u64>,
    /// One record per line instead of indented JSON.
    #[arg(long, env = "KUBECRAWL_DUMP_COMPACT")]
    pub compact: bool,
    /// Kafka.
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

/// `kubecrawl stats`.
#[derive(Debug, Clone, Args)]
pub struct StatsArgs {
    /// Redis.
    #[command(flatten)]
    pub redis: RedisArgs,
}

/// `kubecrawl info|stop|expire`.
#[derive(Debug, Clone, Args)]
pub struct JobArgs {
    /// The crawl's crawlid.
    pub crawlid: String,
    /// Only the crawl of this appid (needed when two apps use one crawlid).
    #[arg(long, env = "KUBECRAWL_APPID")]
    pub appid: Option<String>,
    /// Only the crawl of this spider (needed when two spiders use one crawlid).
    #[arg(long, env = "KUBECRAWL_SPIDERID")]
    pub spiderid: Option<String>,
    /// Where the CrawlJobs are.
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// `kubecrawl ingest`.
#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    /// The Kafka consumer group; every ingest replica of one installation shares it.
    #[arg(
        long,
        env = "KUBECRAWL_INGEST_GROUP",
        default_value = "kubecrawl-ingest"
    )]
    pub group: String,
    /// Kafka.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Redis (for the `stats` action).
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Where CrawlJobs are created and changed.
    #[command(flatten)]
    pub kube: KubeArgs,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn feed_takes_the_walkthroughs_json() {
        let cli = Cli::try_parse_from([
            "kubecrawl",
            "feed",
            r#"{"url": "http://site.test/", "appid": "testapp", "crawlid": "abc123"}"#,
            "-n",
            "crawls",
        ])
        .expect("parses");
        // Quieter than the daemons: a command's results should not drown in logs.
        assert_eq!(cli.log.log, "warn");
        let Command::Feed(args) = cli.command else {
            panic!("feed")
        };
        assert!(args.request.contains("abc123"));
        assert_eq!(args.kube.namespace.as_deref(), Some("crawls"));
    }
}
