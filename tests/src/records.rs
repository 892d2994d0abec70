//! Reading a crawl's output back: every record of a Kafka topic, or of a JSON-lines file
//! (`kubecrawl-worker crawl -o FILE`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::de::DeserializeOwned;

/// How long one metadata or watermark request may take.
const BROKER_TIMEOUT: Duration = Duration::from_secs(30);

/// Every record of `topic`, from its beginning to its end as it is when the call starts (the
/// producers have stopped), each parsed as JSON into a `T`. `config` names the brokers (and
/// any TLS or SASL settings); the group id is set here. Blocking: call it from
/// `spawn_blocking`, or use [`topic_records`].
///
/// # Errors
/// When the topic does not exist (nothing was published), a record is missing or is not a
/// `T`, or reading takes longer than `deadline`.
pub fn read_topic<T: DeserializeOwned>(
    mut config: ClientConfig,
    topic: &str,
    deadline: Duration,
) -> Result<Vec<T>> {
    let consumer: BaseConsumer = config
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .context("creating a kafka consumer")?;
    let metadata = consumer
        .fetch_metadata(Some(topic), BROKER_TIMEOUT)
        .context("reading the topic's metadata")?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .with_context(|| format!("topic {topic} does not exist: nothing was published"))?
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    let mut ends = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for &p in &partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, BROKER_TIMEOUT)
            .context("reading a partition's end")?;
        ends.insert(p, high);
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut next: BTreeMap<i32, i64> = partitions.iter().map(|&p| (p, 0)).collect();
    let mut records = Vec::new();
    let started = Instant::now();
    while next.iter().any(|(p, n)| *n < ends[p]) {
        if started.elapsed() > deadline {
            bail!("reading {topic} back took over {deadline:?}: at {next:?} of {ends:?}");
        }
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message.context("consuming a record")?;
        next.insert(message.partition(), message.offset() + 1);
        let payload = message.payload().context("a record without a payload")?;
        records.push(
            serde_json::from_slice(payload)
                .with_context(|| format!("a record of {topic} that does not parse"))?,
        );
    }
    Ok(records)
}

/// [`read_topic`] on a blocking thread.
///
/// # Errors
/// As [`read_topic`].
pub async fn topic_records<T: DeserializeOwned + Send + 'static>(
    config: ClientConfig,
    topic: &str,
    deadline: Duration,
) -> Result<Vec<T>> {
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || read_topic(config, &topic, deadline))
        .await
        .context("the reader thread panicked")?
}

/// Every line of the JSON-lines file `path` parsed into a `T`; the file is deleted.
///
/// # Errors
/// When the file cannot be read or a line does not parse (its number is named).
pub fn take_json_lines<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let _ = std::fs::remove_file(path);
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).with_context(|| format!("{} line {}", path.display(), i + 1))
        })
        .collect()
}
