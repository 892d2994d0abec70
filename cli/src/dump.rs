//! `kubecrawl dump`: the firehose printed as readable JSON, like Scrapy Cluster's kafkadump.
//!
//! Reads `<prefix>.crawled_firehose` (or `--topic`) from the newest record on (or the oldest
//! with `--from-beginning`) as a consumer group of its own that commits nothing, so it never
//! takes records from anyone else. Each record is printed as indented JSON (one line each with
//! `--compact`); its `body` is left out unless `--body` is given. A record that is not JSON
//! is printed as it is, with a warning. Stops after `--max` records or at Ctrl-C.

use std::io::Write;
use std::time::Duration;

use kubecrawl_api::contract::topic;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::args::{DumpArgs, KafkaArgs};
use crate::{Error, Result};

/// How often a missing topic is looked for again.
const METADATA_REFRESH: Duration = Duration::from_secs(2);

/// The client configuration of the Kafka flags (brokers, TLS, SASL, extra properties),
/// once the brokers have accepted it: a wrong CA or password ends the command here.
///
/// # Errors
/// [`Error::Connect`] naming the brokers and the cause.
pub async fn client_config(kafka: &KafkaArgs) -> Result<ClientConfig> {
    let config = kafka
        .connection
        .client_config()
        .map_err(|source| Error::Connect { source })?;
    kubecrawl_process::connect::kafka::check(
        &config,
        &kafka.connection.kafka_brokers,
        kafka.connection.security.kafka_connect_timeout,
    )
    .await
    .map_err(|source| Error::Connect { source })?;
    Ok(config)
}

/// The text printed for one record.
pub fn render(payload: &[u8], body: bool, compact: bool) -> String {
    match serde_json::from_slice::<Value>(payload) {
        Ok(mut value) => {
            if !body && let Value::Object(o) = &mut value {
                o.remove("body");
            }
            let text = if compact {
                serde_json::to_string(&value)
            } else {
                serde_json::to_string_pretty(&value)
            };
            text.unwrap_or_default()
        }
        Err(_) => {
            tracing::warn!(
                bytes = payload.len(),
                "record is not json, printed as it is"
            );
            String::from_utf8_lossy(payload).into_owned()
        }
    }
}

/// Prints records to `out` until `--max` records or `shutdown`.
///
/// # Errors
/// [`Error::Connect`] when the brokers refuse the settings, [`Error::Kafka`] for an unusable
/// configuration, [`Error::Stdout`] when `out` fails.
pub async fn run(args: &DumpArgs, out: &mut impl Write, shutdown: CancellationToken) -> Result<()> {
    let topic = args
        .topic
        .clone()
        .unwrap_or_else(|| topic::firehose(&args.kafka.topic_prefix));
    let group = format!(
        "kubecrawl-dump-{}-{}",
        std::process::id(),
        k8s_openapi::jiff::Timestamp::now().as_nanosecond()
    );
    let consumer: StreamConsumer = client_config(&args.kafka)
        .await?
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set(
            "auto.offset.reset",
            if args.from_beginning {
                "earliest"
            } else {
                "latest"
            },
        )
        .set(
            "topic.metadata.refresh.interval.ms",
            METADATA_REFRESH.as_millis().to_string(),
        )
        .create()
        .map_err(Error::kafka("create consumer"))?;
    consumer
        .subscribe(&[&topic])
        .map_err(Error::kafka("subscribe"))?;
    tracing::info!(topic, "dumping");
    let mut printed = 0u64;
    while args.max.is_none_or(|max| printed < max) {
        let message = tokio::select! {
            () = shutdown.cancelled() => break,
            m = consumer.recv() => m,
        };
        match message {
            Ok(m) => {
                let text = render(m.payload().unwrap_or_default(), args.body, args.compact);
                writeln!(out, "{text}").map_err(|source| Error::Stdout { source })?;
                out.flush().map_err(|source| Error::Stdout { source })?;
                printed += 1;
            }
            // A topic that does not exist yet, a broker restarting: keep waiting.
            Err(e) => {
                tracing::debug!(error = %e, "no record");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_left_out_unless_asked_for() {
        let record =
            br#"{"url": "http://a.test/", "body": "<html>x</html>", "attrs": {"step": 2}}"#;
        let text = render(record, false, false);
        assert!(!text.contains("<html>"), "{text}");
        assert!(text.contains("\"step\": 2"), "pretty: {text}");
        assert!(text.lines().count() > 3, "indented: {text}");
        let text = render(record, true, true);
        assert!(text.contains("<html>x</html>"));
        assert_eq!(text.lines().count(), 1);
    }

    #[test]
    fn a_record_that_is_not_json_is_printed_as_is() {
        assert_eq!(render(b"plain text", false, false), "plain text");
    }
}
