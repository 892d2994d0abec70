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
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
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
    /// The connection settings alone (brokers, security), for the admin client.
    connection: ClientConfig,
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
        let connection = client.clone();
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
            connection,
            config,
            firehose,
            dead_letters,
        })
    }

    /// Creates the firehose and dead-letter topics that do not exist yet, with the broker's
    /// default partitions and replication, so that the first records never race a topic's
    /// automatic creation and a broker with `auto.create.topics.enable=false` works.
    /// Per-appid topics are not created here (they appear with new appids). Never fails the
    /// worker: a topic it may not create (no permission, a policy) is logged, and records
    /// wait for it as for any unavailable topic. Returns each topic with the problem met, if
    /// any (a topic that exists already is none).
    pub async fn ensure_topics(&self, timeout: Duration) -> Vec<(String, Option<String>)> {
        let topics = [self.firehose.as_str(), self.dead_letters.as_str()];
        let problems = match self.create_topics(&topics, timeout).await {
            Ok(results) => results,
            Err(e) => vec![Some(e.to_string()); topics.len()],
        };
        let done: Vec<(String, Option<String>)> = topics
            .iter()
            .map(|t| (*t).to_owned())
            .zip(problems)
            .collect();
        for (topic, problem) in &done {
            match problem {
                None => tracing::debug!(%topic, "kafka topic ready"),
                Some(problem) => tracing::warn!(
                    %topic,
                    %problem,
                    "could not create the kafka topic; records wait until it exists"
                ),
            }
        }
        done
    }

    /// One CreateTopics request; the problem per topic, `None` when created or existing.
    async fn create_topics(
        &self,
        topics: &[&str],
        timeout: Duration,
    ) -> Result<Vec<Option<String>>, KafkaError> {
        let admin: AdminClient<DefaultClientContext> = self.connection.create()?;
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|t| NewTopic::new(t, -1, TopicReplication::Fixed(-1)))
            .collect();
        let options = AdminOptions::new()
            .request_timeout(Some(timeout))
            .operation_timeout(Some(timeout));
        let results = admin.create_topics(&new, &options).await?;
        Ok(results
            .into_iter()
            .map(|r| match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => None,
                Err((_, code)) => Some(code.to_string()),
            })
            .collect())
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
