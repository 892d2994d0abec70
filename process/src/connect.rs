//! How every kubecrawl process (operator, worker, `kubecrawl`) reaches Redis and Kafka. One
//! set of flags for each service, written once and flattened into every binary that
//! connects, with TLS and authentication:
//!
//! - [`redis`]: `--redis-url` (`redis://` or `rediss://`), the CA that verifies the server,
//!   a client certificate for mutual TLS, an ACL user and password. [`redis::RedisArgs::client`]
//!   builds a [`::redis::Client`] and proves it works ([`redis::check`]) before anything else
//!   starts.
//! - [`kafka`]: `--kafka-brokers`, the security protocol (`plaintext`, `ssl`, `sasl_plaintext`,
//!   `sasl_ssl`), SASL SCRAM-SHA-256/512 or PLAIN credentials, the CA, a client certificate,
//!   extra librdkafka properties. [`kafka::KafkaSecurity::client_config`] builds an
//!   [`rdkafka::ClientConfig`]; [`kafka::check`] proves the brokers accept it.
//! - [`secret`]: passwords read from an environment variable or a file (a mounted Secret),
//!   never printed.
//!
//! What this module is not: it owns no Redis key and no topic. The frontier owns the keys, the
//! worker and the cli own their topics.
//!
//! # Start-up contract
//! A wrong CA, a wrong password, a plaintext client on a TLS port or an unreachable endpoint is
//! an [`Error`] within the connect timeout (`--redis-connect-timeout`,
//! `--kafka-connect-timeout`, 10 s by default) that names the endpoint and the cause; a process
//! exits with it rather than retrying in silence. Authentication and TLS failures end the check
//! at once; only transport failures are tried again until the timeout.

pub mod kafka;
pub mod redis;
pub mod secret;

use std::path::PathBuf;
use std::time::Duration;

/// How long connecting at start-up may take by default (the flags' default too).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What can go wrong while reaching Redis or Kafka.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file named by a flag (CA, certificate, key, password) could not be read.
    #[error("reading {what} from {path} failed")]
    ReadFile {
        /// Which flag's file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The Redis URL or TLS material is not usable.
    #[error("the redis configuration for {endpoint} is invalid")]
    RedisConfig {
        /// The endpoint (`host:port`, never the password).
        endpoint: String,
        /// The client's error.
        #[source]
        source: ::redis::RedisError,
    },
    /// Redis did not accept a connection and a PING.
    #[error("connecting to redis at {endpoint} failed{hint}")]
    RedisConnect {
        /// The endpoint (`host:port`, never the password).
        endpoint: String,
        /// A likely explanation, or empty.
        hint: &'static str,
        /// The client's error.
        #[source]
        source: ::redis::RedisError,
    },
    /// Redis did not answer within the connect timeout.
    #[error("connecting to redis at {endpoint} timed out after {after:?}{hint}")]
    RedisTimeout {
        /// The endpoint.
        endpoint: String,
        /// The connect timeout.
        after: Duration,
        /// A likely explanation, or empty.
        hint: &'static str,
    },
    /// The Kafka settings are not usable (librdkafka refused them).
    #[error("the kafka configuration for {brokers} is invalid")]
    KafkaConfig {
        /// The bootstrap brokers.
        brokers: String,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The Kafka flags contradict each other or miss a value.
    #[error("the kafka settings for {brokers} are incomplete: {problem}")]
    KafkaSettings {
        /// The bootstrap brokers.
        brokers: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// The brokers refused the client (TLS or authentication) or could not be reached.
    #[error("connecting to kafka at {brokers} failed: {cause}")]
    KafkaConnect {
        /// The bootstrap brokers.
        brokers: String,
        /// librdkafka's own account of the failure (its error callback).
        cause: String,
    },
    /// The start-up check could not run.
    #[error("the kafka start-up check for {brokers} was interrupted")]
    KafkaCheck {
        /// The bootstrap brokers.
        brokers: String,
    },
}

/// The result type of connecting.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Reads a file named by a flag, with the flag's name in the error.
fn read(what: &'static str, path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::ReadFile {
        what,
        path: path.to_owned(),
        source,
    })
}
