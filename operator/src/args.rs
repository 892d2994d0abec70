//! Command-line arguments of `kubecrawl-operator`. Every flag also reads a `KUBECRAWL_…`
//! environment variable; the Helm chart sets those.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// The kubecrawl operator: reconciles CrawlJobs into seeds, worker Deployments and status.
#[derive(Debug, Clone, Parser)]
#[command(name = "kubecrawl-operator", version, about)]
pub struct Args {
    /// The Redis frontier shared with the workers.
    #[command(flatten)]
    pub redis: kubecrawl_process::connect::redis::RedisArgs,
    /// Kafka brokers the workers publish to.
    #[arg(long, env = "KUBECRAWL_KAFKA_BROKERS")]
    pub kafka_brokers: String,
    /// Kafka topic prefix (`<prefix>.crawled_firehose`).
    #[arg(long, env = "KUBECRAWL_TOPIC_PREFIX", default_value = "kubecrawl")]
    pub topic_prefix: String,
    /// The fleet configuration (YAML): worker namespace, image, replica ceilings, resources
    /// and settings per spiderid. Without it: fleets `link` and `wandering` in `default`.
    #[arg(long, env = "KUBECRAWL_FLEET_CONFIG")]
    pub fleet_config: Option<PathBuf>,
    /// Watch CrawlJobs in this namespace only; all namespaces when unset.
    #[arg(long, env = "KUBECRAWL_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// How often an active job's status is refreshed from the frontier.
    #[arg(long, env = "KUBECRAWL_STATUS_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub status_interval: Duration,
    /// How long a seeded job must be out of work before it is Succeeded.
    #[arg(long, env = "KUBECRAWL_COMPLETION_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub completion_grace: Duration,
    /// How often the Crawler Stats Dump is logged.
    #[arg(long, env = "KUBECRAWL_STATS_DUMP_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub stats_dump_interval: Duration,
    /// Where /metrics, /healthz and /readyz are served.
    #[arg(long, env = "KUBECRAWL_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Elect a leader through a Lease so that several replicas are safe.
    #[arg(long, env = "KUBECRAWL_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// The namespace of the leader Lease (the operator's own).
    #[arg(long, env = "KUBECRAWL_LEADER_NAMESPACE", default_value = "default")]
    pub leader_namespace: String,
    /// The leader Lease's name.
    #[arg(
        long,
        env = "KUBECRAWL_LEADER_LEASE",
        default_value = "kubecrawl-operator"
    )]
    pub leader_lease: String,
    /// The ConfigMap of per-domain throttles and the domain blacklist (key `throttle.yaml`,
    /// Scrapy Cluster's format), watched and applied to every fleet live: `name` in the
    /// operator's namespace (--leader-namespace) or `namespace/name`; empty disables.
    #[arg(
        long,
        env = "KUBECRAWL_THROTTLE_CONFIGMAP",
        default_value = "kubecrawl-throttle"
    )]
    pub throttle_configmap: String,
    /// This replica's identity in the Lease; defaults to `<hostname>-<pid>`.
    #[arg(long, env = "KUBECRAWL_IDENTITY")]
    pub identity: Option<String>,
    /// Logging.
    #[command(flatten)]
    pub log: kubecrawl_process::log::LogArgs,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_is_well_formed() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
