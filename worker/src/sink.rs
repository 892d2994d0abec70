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
        source: kubecrawl_process::connect::Error,
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

impl Error {
    /// Whether publishing this record again can never succeed as it is: the broker refuses
    /// the record itself (too large even without its body, invalid) or the topic (not
    /// writable, invalid name), or the record cannot be encoded. A broker that is down or
    /// slow is not permanent: the record is tried again.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Encode { .. } => true,
            Self::Kafka { source, .. } => {
                kubecrawl_process::connect::kafka::is_permanent_refusal(source)
            }
            Self::Flush { .. }
            | Self::Producer { .. }
            | Self::Settings { .. }
            | Self::Write { .. } => false,
        }
    }

    /// A short, bounded label for metrics, logs and dead-letter records.
    pub fn reason(&self) -> String {
        match self {
            Self::Encode { .. } => "record_not_encodable".to_owned(),
            Self::Kafka { source, .. } => match source.rdkafka_error_code() {
                Some(code) => format!("kafka_{code:?}"),
                None => "kafka".to_owned(),
            },
            Self::Flush { .. } => "kafka_flush".to_owned(),
            Self::Producer { .. } => "kafka_producer".to_owned(),
            Self::Settings { .. } => "kafka_settings".to_owned(),
            Self::Write { .. } => "write".to_owned(),
        }
    }
}

/// The dead-letter form of a record: no body, no links, no extracted fields, `error` set.
pub fn dead_letter_record(record: &PageRecord, reason: &str) -> PageRecord {
    let mut slim = record.clone();
    slim.body.clear();
    slim.links.clear();
    slim.fields.clear();
    slim.error = Some(reason.to_owned());
    slim
}

/// A destination for page records.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Publishes one record; returns once it is durable (see the module docs).
    async fn publish(&self, record: &PageRecord) -> Result<(), Error>;

    /// Records that a page's record could not be published after its retries: a record of
    /// the page without body and links, with `error` set to `reason`, on the dead-letter
    /// destination (Kafka: `<prefix>.crawled_deadletter`; a file: the file itself).
    async fn dead_letter(&self, record: &PageRecord, reason: &str) -> Result<(), Error> {
        self.publish(&dead_letter_record(record, reason)).await
    }

    /// Writes out anything buffered. Called at shutdown.
    async fn flush(&self) -> Result<(), Error>;
}
