//! The names kubecrawl's processes agree on: environment variables, Kafka topics, object
//! names, labels and annotations.
//!
//! One side writes each of these and another reads it, often in another binary (the operator
//! writes a worker Deployment's environment, the worker parses it; the worker publishes to a
//! topic, the CLI reads it). A typo on one side fails at run time only, so both sides spell
//! them through this module. The Helm chart cannot share Rust constants; the chart's tests
//! check its names against these.
//!
//! # Guarantees
//! Changing a value here is a change of the wire contract between versions: a running fleet of
//! the old version no longer understands the new name. Add names; rename only with a
//! migration.

/// Environment variables a `kubecrawl-worker run` process reads, as set by the operator's
/// worker Deployment and by the Helm chart's fleet configuration. Each is the `env` of one
/// worker flag (see the worker's `--help`).
pub mod env {
    /// The spider fleet the worker serves (`--spider`).
    pub const SPIDER: &str = "KUBECRAWL_SPIDER";
    /// Where the worker serves `/metrics`, `/healthz` and `/readyz` (`--metrics-addr`).
    pub const METRICS_ADDR: &str = "KUBECRAWL_METRICS_ADDR";
    /// The worker's name in heartbeats; the operator sets the pod's name (`--worker-name`).
    pub const WORKER_NAME: &str = "KUBECRAWL_WORKER_NAME";
    /// The log format, `plain` or `json` (`--log-format`).
    pub const LOG_FORMAT: &str = "KUBECRAWL_LOG_FORMAT";
    /// The Redis URL of the frontier, `rediss://` for TLS; several, comma-separated, for a
    /// sharded frontier or a cluster's nodes (`--redis-url`).
    pub const REDIS_URL: &str = "KUBECRAWL_REDIS_URL";
    /// The Redis URLs are nodes of a Redis Cluster (`--redis-cluster`).
    pub const REDIS_CLUSTER: &str = "KUBECRAWL_REDIS_CLUSTER";
    /// The number of shards of a frontier on a Redis Cluster (`--redis-shards`).
    pub const REDIS_SHARDS: &str = "KUBECRAWL_REDIS_SHARDS";
    /// The Redis key prefix the operator and the workers share (`--redis-prefix`).
    pub const REDIS_PREFIX: &str = "KUBECRAWL_REDIS_PREFIX";
    /// The Redis ACL user (`--redis-username`).
    pub const REDIS_USERNAME: &str = "KUBECRAWL_REDIS_USERNAME";
    /// A file holding the Redis password (`--redis-password-file`).
    pub const REDIS_PASSWORD_FILE: &str = "KUBECRAWL_REDIS_PASSWORD_FILE";
    /// A PEM CA bundle Redis' certificate is checked against (`--redis-ca-file`).
    pub const REDIS_CA_FILE: &str = "KUBECRAWL_REDIS_CA_FILE";
    /// A PEM client certificate presented to Redis (`--redis-cert-file`).
    pub const REDIS_CERT_FILE: &str = "KUBECRAWL_REDIS_CERT_FILE";
    /// The PEM private key of the Redis client certificate (`--redis-key-file`).
    pub const REDIS_KEY_FILE: &str = "KUBECRAWL_REDIS_KEY_FILE";
    /// Kafka brokers, `host:port,...` (`--kafka-brokers`).
    pub const KAFKA_BROKERS: &str = "KUBECRAWL_KAFKA_BROKERS";
    /// The Kafka security protocol (`--kafka-security-protocol`).
    pub const KAFKA_SECURITY_PROTOCOL: &str = "KUBECRAWL_KAFKA_SECURITY_PROTOCOL";
    /// The Kafka SASL mechanism (`--kafka-sasl-mechanism`).
    pub const KAFKA_SASL_MECHANISM: &str = "KUBECRAWL_KAFKA_SASL_MECHANISM";
    /// The Kafka SASL user (`--kafka-username`).
    pub const KAFKA_USERNAME: &str = "KUBECRAWL_KAFKA_USERNAME";
    /// A file holding the Kafka SASL password (`--kafka-password-file`).
    pub const KAFKA_PASSWORD_FILE: &str = "KUBECRAWL_KAFKA_PASSWORD_FILE";
    /// A PEM CA bundle the brokers' certificates are checked against (`--kafka-ca-file`).
    pub const KAFKA_CA_FILE: &str = "KUBECRAWL_KAFKA_CA_FILE";
    /// A PEM client certificate presented to Kafka (`--kafka-cert-file`).
    pub const KAFKA_CERT_FILE: &str = "KUBECRAWL_KAFKA_CERT_FILE";
    /// The PEM private key of the Kafka client certificate (`--kafka-key-file`).
    pub const KAFKA_KEY_FILE: &str = "KUBECRAWL_KAFKA_KEY_FILE";
    /// Other librdkafka properties, `key=value,...` (`--kafka-property`).
    pub const KAFKA_PROPERTIES: &str = "KUBECRAWL_KAFKA_PROPERTIES";
    /// The Kafka topic prefix; see [`topic`](super::topic) (`--topic-prefix`).
    pub const TOPIC_PREFIX: &str = "KUBECRAWL_TOPIC_PREFIX";
    /// Also publish each record to its appid's topic (`--per-appid-topics`).
    pub const PER_APPID_TOPICS: &str = "KUBECRAWL_PER_APPID_TOPICS";
    /// The most fetches in flight at once (`--concurrency`).
    pub const CONCURRENCY: &str = "KUBECRAWL_CONCURRENCY";
    /// Allow fetching private, loopback and link-local addresses
    /// (`--allow-private-networks`).
    pub const ALLOW_PRIVATE_NETWORKS: &str = "KUBECRAWL_ALLOW_PRIVATE_NETWORKS";
    /// The directory of the worker's WARC files; unset, no WARC output (`--warc-dir`).
    pub const WARC_DIR: &str = "KUBECRAWL_WARC_DIR";
    /// The start of every WARC file's name (`--warc-prefix`).
    pub const WARC_PREFIX: &str = "KUBECRAWL_WARC_PREFIX";
    /// The size in bytes at which a WARC file is closed (`--warc-max-bytes`).
    pub const WARC_MAX_BYTES: &str = "KUBECRAWL_WARC_MAX_BYTES";
    /// The age at which a WARC file is closed, e.g. `1h` (`--warc-max-age`).
    pub const WARC_MAX_AGE: &str = "KUBECRAWL_WARC_MAX_AGE";
    /// The gzip level of WARC records, 0 to 9 (`--warc-gzip-level`).
    pub const WARC_GZIP_LEVEL: &str = "KUBECRAWL_WARC_GZIP_LEVEL";
    /// The spider that parses a fleet's pages, when not the one named by the spiderid
    /// (`--parse-with`).
    pub const PARSE_WITH: &str = "KUBECRAWL_PARSE_WITH";
    /// Start a headless browser and render the pages of jobs with `render` (`--render`).
    pub const RENDER: &str = "KUBECRAWL_RENDER";
    /// The browser executable (`--browser`).
    pub const BROWSER: &str = "KUBECRAWL_BROWSER";
    /// Pages rendered at once (`--render-contexts`).
    pub const RENDER_CONTEXTS: &str = "KUBECRAWL_RENDER_CONTEXTS";
    /// The JavaScript heap of each page's renderer, MiB (`--render-js-heap-mb`).
    pub const RENDER_JS_HEAP_MB: &str = "KUBECRAWL_RENDER_JS_HEAP_MB";

    /// Every variable above: what a worker's configuration may set from outside the
    /// worker. Each is read by `kubecrawl-worker run` (the worker's tests check it).
    pub const WORKER: &[&str] = &[
        SPIDER,
        METRICS_ADDR,
        WORKER_NAME,
        LOG_FORMAT,
        REDIS_URL,
        REDIS_CLUSTER,
        REDIS_SHARDS,
        REDIS_PREFIX,
        REDIS_USERNAME,
        REDIS_PASSWORD_FILE,
        REDIS_CA_FILE,
        REDIS_CERT_FILE,
        REDIS_KEY_FILE,
        KAFKA_BROKERS,
        KAFKA_SECURITY_PROTOCOL,
        KAFKA_SASL_MECHANISM,
        KAFKA_USERNAME,
        KAFKA_PASSWORD_FILE,
        KAFKA_CA_FILE,
        KAFKA_CERT_FILE,
        KAFKA_KEY_FILE,
        KAFKA_PROPERTIES,
        TOPIC_PREFIX,
        PER_APPID_TOPICS,
        CONCURRENCY,
        ALLOW_PRIVATE_NETWORKS,
        WARC_DIR,
        WARC_PREFIX,
        WARC_MAX_BYTES,
        WARC_MAX_AGE,
        WARC_GZIP_LEVEL,
        PARSE_WITH,
        RENDER,
        BROWSER,
        RENDER_CONTEXTS,
        RENDER_JS_HEAP_MB,
    ];
}

/// Kafka topics, each named from the deployment's topic prefix (Scrapy Cluster's `demo`).
pub mod topic {
    /// `<prefix>.crawled_firehose`: every page record the workers publish.
    pub fn firehose(prefix: &str) -> String {
        format!("{prefix}.crawled_firehose")
    }

    /// `<prefix>.crawled_<appid>`: the page records of one appid, when per-appid topics are
    /// on (in addition to the firehose).
    pub fn per_appid(prefix: &str, appid: &str) -> String {
        format!("{prefix}.crawled_{appid}")
    }

    /// `<prefix>.crawled_deadletter`: records the firehose refused for good, without their
    /// body, with the reason.
    pub fn dead_letter(prefix: &str) -> String {
        format!("{prefix}.crawled_deadletter")
    }

    /// `<prefix>.incoming`: crawl requests and actions for the ingest (Scrapy Cluster's
    /// Kafka monitor protocol).
    pub fn incoming(prefix: &str) -> String {
        format!("{prefix}.incoming")
    }

    /// `<prefix>.outbound_firehose`: the ingest's answers to info, stats and stop actions.
    pub fn outbound(prefix: &str) -> String {
        format!("{prefix}.outbound_firehose")
    }
}

/// Label keys on the objects kubecrawl creates.
pub mod label {
    /// `app.kubernetes.io/name`: the program a pod runs (e.g. [`WORKER`](super::WORKER)).
    pub const NAME: &str = "app.kubernetes.io/name";
    /// `app.kubernetes.io/component`: the part of kubecrawl (e.g.
    /// [`WORKER_COMPONENT`](super::WORKER_COMPONENT)).
    pub const COMPONENT: &str = "app.kubernetes.io/component";
    /// `app.kubernetes.io/managed-by`: the writer of an object (e.g.
    /// [`OPERATOR`](super::OPERATOR)).
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    /// `app.kubernetes.io/created-by`: the tool that created a CrawlJob (e.g.
    /// [`CLI`](super::CLI)).
    pub const CREATED_BY: &str = "app.kubernetes.io/created-by";
    /// `kubecrawl.io/spiderid`: the spider fleet of a worker Deployment and its pods.
    pub const SPIDERID: &str = "kubecrawl.io/spiderid";
}

/// Annotation keys on the objects kubecrawl creates.
pub mod annotation {
    /// `kubecrawl.io/template-hash`: on a worker Deployment, a hash of the pod template the
    /// operator last applied, so an unchanged fleet costs no write.
    pub const TEMPLATE_HASH: &str = "kubecrawl.io/template-hash";
}

/// The operator: the field manager of its writes and the `managed-by` label's value.
pub const OPERATOR: &str = "kubecrawl-operator";
/// The worker program: its binary and the `app.kubernetes.io/name` label of its pods.
pub const WORKER: &str = "kubecrawl-worker";
/// The `app.kubernetes.io/component` label's value on worker Deployments and pods.
pub const WORKER_COMPONENT: &str = "worker";
/// The command-line tool: the `created-by` label's value on the CrawlJobs it creates.
pub const CLI: &str = "kubecrawl-cli";

/// The name of a spider fleet's worker Deployment, `kubecrawl-worker-<spiderid>`, in the
/// operator's worker namespace.
pub fn worker_deployment(spiderid: &str) -> String {
    format!("{WORKER}-{spiderid}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_spelled_as_deployed() {
        assert_eq!(worker_deployment("link"), "kubecrawl-worker-link");
        assert_eq!(topic::firehose("demo"), "demo.crawled_firehose");
        assert_eq!(topic::per_appid("demo", "app"), "demo.crawled_app");
        assert_eq!(topic::dead_letter("demo"), "demo.crawled_deadletter");
        assert_eq!(topic::incoming("demo"), "demo.incoming");
        assert_eq!(topic::outbound("demo"), "demo.outbound_firehose");
    }

    #[test]
    fn worker_variables_are_distinct_and_prefixed() {
        let mut names = env::WORKER.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), env::WORKER.len(), "a name is listed twice");
        assert!(names.iter().all(|n| n.starts_with("KUBECRAWL_")));
    }
}
