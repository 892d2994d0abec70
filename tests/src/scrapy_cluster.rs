//! Scrapy Cluster's side of its wire formats: reading a topic with its own Kafka client, and
//! checking a page record against the `RawResponseItem` it documents.
//!
//! The client is kafka-python from PyPI with none of its optional codec packages, the way
//! Scrapy Cluster's `kafkadump.py` and REST service run it (`tests/env/build-python.sh`
//! installs it, `SCRAPY_CLUSTER_PYTHON` names its interpreter, `tests/compat/read_topic.py`
//! reads). So a topic it reads is one a stock Scrapy Cluster consumer can decode.

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::repo_path;

/// Reads `topic` from its beginning with Scrapy Cluster's client until `count` messages were
/// read (0: until none came for 10 s) and returns their values.
///
/// # Errors
/// The client could not decode the topic (e.g. a codec it lacks), fewer than `count`
/// messages came, or a value is not JSON.
pub async fn read_topic(brokers: &str, topic: &str, count: usize) -> Result<Vec<Value>> {
    let python = std::env::var("SCRAPY_CLUSTER_PYTHON")
        .context("SCRAPY_CLUSTER_PYTHON is not set: run the tests with `make test`")?;
    let out = tokio::process::Command::new(python)
        .arg(repo_path("tests/compat/read_topic.py"))
        .args([brokers, topic, &count.to_string(), "10"])
        .output()
        .await
        .context("running tests/compat/read_topic.py")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if count > 0 && !out.status.success() {
        bail!("Scrapy Cluster's client could not read {topic}: {stderr}");
    }
    if count == 0 && stderr.contains("Error") {
        bail!("Scrapy Cluster's client failed on {topic}: {stderr}");
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).with_context(|| format!("not JSON: {line}")))
        .collect()
}

/// What a `RawResponseItem` consumer relies on, checked on one record: every documented field
/// with its type, header names as Scrapy writes them, `attrs` an object or null, and the
/// timestamp in Python's `isoformat()` form.
///
/// # Errors
/// Names the first field that differs.
pub fn check_raw_response_item(record: &Value) -> Result<()> {
    let text = |field: &str| -> Result<&str> {
        record[field]
            .as_str()
            .with_context(|| format!("{field} is not a string in {record}"))
    };
    for field in [
        "appid",
        "crawlid",
        "url",
        "response_url",
        "status_msg",
        "body",
        "encoding",
    ] {
        text(field)?;
    }
    record["status_code"]
        .as_u64()
        .with_context(|| format!("status_code is not an integer in {record}"))?;
    for field in ["response_headers", "request_headers"] {
        let headers = record[field]
            .as_object()
            .with_context(|| format!("{field} is not an object"))?;
        for (name, values) in headers {
            let title_cased = name
                .split('-')
                .all(|part| part.chars().next().is_none_or(|c| !c.is_ascii_lowercase()));
            if !title_cased {
                bail!("{field}: {name:?} is not title-cased as Scrapy writes header names");
            }
            if !values
                .as_array()
                .is_some_and(|v| v.iter().all(Value::is_string))
            {
                bail!("{field}: {name} is not a list of strings");
            }
        }
    }
    if !record["links"].is_array() {
        bail!("links is not a list in {record}");
    }
    if !(record["attrs"].is_object() || record["attrs"].is_null()) {
        bail!("attrs is neither an object nor null: {}", record["attrs"]);
    }
    let timestamp = text("timestamp")?;
    let isoformat = regex::Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}$")?;
    if !isoformat.is_match(timestamp) {
        bail!("timestamp {timestamp:?} is not in Python's isoformat() form");
    }
    Ok(())
}
