//! Kafka output: `<prefix>.crawled_firehose`, and `<prefix>.crawled_<appid>` when enabled.
//!
//! The producer is idempotent (no duplicates from its own retries, order kept per
//! partition), waits for all in-sync replicas, and compresses as configured (gzip by
//! default, which every client reads). Records are keyed by URL, so one page's records land
//! in one partition. A record Kafka refuses as too large is
//! published again without its body and flagged `body_truncated`, never dropped. A record
//! that can never be published (see [`Error::is_permanent`]) ends, after its retries, as a
//! dead-letter record on `<prefix>.crawled_deadletter`.

use std::time::Duration;

use async_trait::async_trait;
use kubecrawl_api::PageRecord;
use kubecrawl_api::contract::topic;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use super::{Error, Sink};

/// How to reach Kafka and where to write.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `host:port,...`
    pub brokers: String,
    /// Topic prefix (Scrapy Cluster's `demo`).
    pub topic_prefix: String,
    /// Also write each record to `<prefix>.crawled_<appid>`.
    pub per_appid_topics: bool,
    /// TLS, SASL and extra librdkafka properties.
    pub security: kubecrawl_process::connect::kafka::KafkaSecurity,
    /// How long a record may wait for its acknowledgement.
    pub delivery_timeout: Duration,
    /// librdkafka's `compression.type` (`gzip`, `lz4`, …).
    pub compression: String,
}

/// Publishes page records to Kafka.
pub struct KafkaSink {
    producer: FutureProducer,
    config: KafkaConfig,
    firehose: String,
    dead_letters: String,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl KafkaSink {
    /// Creates the producer. Nothing is sent until the first record.
    ///
    /// # Errors
    /// [`Error::Settings`] for unusable security settings, [`Error::Producer`] for an invalid
    /// configuration.
    pub fn new(config: KafkaConfig) -> Result<Self, Error> {
        let mut client = config
            .security
            .client_config(&config.brokers)
            .map_err(|source| Error::Settings { source })?;
        // The security settings' extra properties win, as they did before.
        let extra: Vec<(String, String)> = config.security.kafka_properties.clone();
        client
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", &config.compression)
            // gzip's fastest level: most of its size gain for about half its CPU
            // (make bench-compression); --kafka-property compression.level=N overrides it.
            .set(
                "compression.level",
                if config.compression == "gzip" {
                    "1"
                } else {
                    "-1"
                },
            )
            .set("linger.ms", "5")
            .set("message.max.bytes", "16777216")
            .set(
                "message.timeout.ms",
                config.delivery_timeout.as_millis().to_string(),
            );
        for (k, v) in &extra {
            client.set(k, v);
        }
        let producer = client
            .create()
            .map_err(|source| Error::Producer { source })?;
        let firehose = topic::firehose(&config.topic_prefix);
        let dead_letters = topic::dead_letter(&config.topic_prefix);
        Ok(Self {
            producer,
            config,
            firehose,
            dead_letters,
        })
    }

    /// Whether a broker returns the cluster's metadata within `timeout`, on the producer's
    /// own connections (for `/readyz`; Kafka being away does not stop the worker, whose
    /// publishes wait and retry).
    pub async fn reachable(&self, timeout: Duration) -> bool {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, timeout)
                .is_ok_and(|m| !m.brokers().is_empty())
        })
        .await
        .unwrap_or(false)
    }

    async fn send(&self, topic: &str, record: &PageRecord) -> Result<(), Error> {
        let payload = serde_json::to_vec(record).map_err(|source| Error::Encode {
            url: record.url.clone(),
            source,
        })?;
        let delivery = self
            .producer
            .send(
                FutureRecord::to(topic).key(&record.url).payload(&payload),
                self.config.delivery_timeout,
            )
            .await;
        match delivery {
            Ok(_) => Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _))
                if !record.body.is_empty() =>
            {
                tracing::warn!(url = %record.url, bytes = payload.len(), "record too large for kafka, publishing without body");
                let mut slim = record.clone();
                slim.body.clear();
                slim.body_truncated = true;
                Box::pin(self.send(topic, &slim)).await
            }
            Err((source, _)) => Err(Error::Kafka {
                url: record.url.clone(),
                source,
            }),
        }
    }
}

#[async_trait]
impl Sink for KafkaSink {
    async fn publish(&self, record: &PageRecord) -> Result<(), Error> {
        self.send(&self.firehose, record).await?;
        if self.config.per_appid_topics {
            let appid_topic = topic::per_appid(&self.config.topic_prefix, &record.appid);
            self.send(&appid_topic, record).await?;
        }
        Ok(())
    }

    async fn dead_letter(&self, record: &PageRecord, reason: &str) -> Result<(), Error> {
        self.send(
            &self.dead_letters,
            &super::dead_letter_record(record, reason),
        )
        .await
    }

    async fn flush(&self) -> Result<(), Error> {
        let producer = self.producer.clone();
        let timeout = self.config.delivery_timeout;
        // librdkafka's flush blocks; keep it off the async workers.
        match tokio::task::spawn_blocking(move || producer.flush(timeout)).await {
            Ok(result) => result.map_err(|source| Error::Flush { source }),
            Err(_) => Err(Error::Flush {
                source: KafkaError::Canceled,
            }),
        }
    }
}
