//! Where page records go: Kafka in a cluster, a JSON lines file in a standalone crawl.
//!
//! # Guarantees
//! [`Sink::publish`] returns only once the record is durable in the sink (Kafka acknowledged
//! it; the line is written to the file's buffer, flushed at the end). The runtime acknowledges
//! a lease only after every item of the page was published, so a record is never lost; it may
//! be published twice when a lease expires while its worker is still working (at-least-once).

use async_trait::async_trait;
use kubecrawl_api::PageRecord;

pub mod jsonl;
pub mod kafka;

/// Why a record could not be published.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Kafka refused or did not confirm the record.
    #[error("kafka did not confirm the record for {url}")]
    Kafka {
        /// The page's URL.
        url: String,
        /// The client's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// Records still queued for Kafka could not be delivered at shutdown.
    #[error("flushing the kafka producer failed")]
    Flush {
        /// The client's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// Creating the Kafka producer failed (bad configuration).
    #[error("creating the kafka producer failed")]
    Producer {
        /// The client's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The Kafka TLS or authentication settings are not usable.
    #[error("the kafka settings are not usable")]
    Settings {
        /// What is wrong with them.
        #[source]
        source: kubecrawl_connect::Error,
    },
    /// Writing the output file failed.
    #[error("writing {path} failed")]
    Write {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A record could not be serialised.
    #[error("page record for {url} could not be serialised")]
    Encode {
        /// The page's URL.
        url: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
}

/// A destination for page records.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Publishes one record; returns once it is durable (see the module docs).
    async fn publish(&self, record: &PageRecord) -> Result<(), Error>;

    /// Writes out anything buffered. Called at shutdown.
    async fn flush(&self) -> Result<(), Error>;
}
