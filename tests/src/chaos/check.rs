//! Reading the crawl's output back and explaining what is missing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::ClientConfig;

use crate::records::read_topic;

/// How long reading one topic back may take (20,000 records take a few seconds).
const READ_DEADLINE: Duration = Duration::from_secs(180);

/// The `url` of every record of `topic`, from its beginning to its end as it is now (the
/// producers have stopped). Blocking: call it from `spawn_blocking`.
///
/// # Errors
/// When the topic does not exist, a record is not a page record, or reading takes longer
/// than [`READ_DEADLINE`].
pub(crate) fn record_urls(brokers: &str, topic: &str) -> Result<Vec<String>> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    read_topic::<serde_json::Value>(config, topic, READ_DEADLINE)?
        .into_iter()
        .map(|record| {
            record["url"]
                .as_str()
                .map(str::to_owned)
                .context("a record without a url")
        })
        .collect()
}

/// One line of evidence about a missing page: where it was logged.
#[derive(Debug, Clone)]
pub(crate) struct Sighting {
    /// The log file's name.
    pub(crate) file: String,
    /// The log line, cut to a readable length.
    pub(crate) line: String,
    /// Its `timestamp` field, when it has one.
    pub(crate) timestamp: Option<std::time::SystemTime>,
}

/// The lines of every `*.log` in `dir` that mention one of `urls` (at most `per_url` per
/// URL, the last ones), by URL.
pub(crate) fn sightings(
    dir: &Path,
    urls: &BTreeSet<String>,
    per_url: usize,
) -> BTreeMap<String, Vec<Sighting>> {
    let mut found: BTreeMap<String, Vec<Sighting>> = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    for path in files {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        for line in text.lines() {
            // A log line names a URL as a JSON string: match it with its closing quote, so
            // /p/1 does not match /p/12.
            for url in urls.iter().filter(|u| line.contains(&format!("{u}\""))) {
                let timestamp = serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v["timestamp"].as_str().map(str::to_owned))
                    .and_then(|t| humantime::parse_rfc3339_weak(&t).ok());
                let seen = found.entry(url.clone()).or_default();
                seen.push(Sighting {
                    file: file.clone(),
                    line: line.chars().take(400).collect(),
                    timestamp,
                });
                if seen.len() > per_url {
                    seen.remove(0);
                }
            }
        }
    }
    found
}

/// Warnings and errors the workers logged, counted by message (`worker-*.log` in `dir`,
/// JSON lines): how the faults looked from inside (acknowledgements that failed, policies
/// that could not be read, publishes given back).
pub(crate) fn worker_warnings(dir: &Path) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return counts;
    };
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        let is_worker_log = path
            .file_name()
            .and_then(|f| f.to_str())
            .is_some_and(|f| f.starts_with("worker-") && f.ends_with(".log"));
        let Some(text) = is_worker_log
            .then(|| std::fs::read_to_string(&path).ok())
            .flatten()
        else {
            continue;
        };
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if !matches!(v["level"].as_str(), Some("WARN" | "ERROR")) {
                continue;
            }
            let message = v["fields"]["message"]
                .as_str()
                .or_else(|| v["message"].as_str())
                .unwrap_or("?");
            // librdkafka's messages carry addresses and states: keep their kind only, so
            // the keys stay few.
            let key = match message.strip_prefix("librdkafka: ") {
                Some(rest) => format!(
                    "librdkafka: {}",
                    rest.split_whitespace().next().unwrap_or("?")
                ),
                None => message.to_owned(),
            };
            *counts.entry(key).or_default() += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of its own under the system's temporary directory, removed at the end.
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "kubecrawl-chaos-check-{name}-{}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).expect("creates a scratch directory");
            Self(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const LOG: &str = r#"{"timestamp":"2026-12-05T06:37:17.027642Z","level":"WARN","message":"reading the job's policy failed","span":{"url":"http://site.test:1/p/1"}}
{"timestamp":"2026-12-05T06:37:18.000000Z","level":"INFO","message":"fetched","span":{"url":"http://site.test:1/p/12"}}
{"timestamp":"2026-12-05T06:37:19.000000Z","level":"ERROR","message":"librdkafka: FAIL [thrd:127.0.0.1:4/1]: connect failed"}
{"timestamp":"2026-12-05T06:37:20.000000Z","level":"ERROR","message":"librdkafka: FAIL [thrd:127.0.0.1:5/1]: reset"}
not json at all
"#;

    #[test]
    fn sightings_match_whole_urls_and_read_their_timestamps() {
        let scratch = Scratch::new("sightings");
        std::fs::write(scratch.0.join("worker-0.log"), LOG).expect("writes a log");
        std::fs::write(scratch.0.join("notes.txt"), LOG).expect("writes a non-log");
        let wanted: BTreeSet<String> = ["http://site.test:1/p/1".to_owned()].into();
        let found = sightings(&scratch.0, &wanted, 4);
        let seen = &found["http://site.test:1/p/1"];
        assert_eq!(
            seen.len(),
            1,
            "/p/12 is not /p/1, and .txt files are not logs: {seen:?}"
        );
        assert_eq!(seen[0].file, "worker-0.log");
        assert!(seen[0].line.contains("policy failed"));
        assert_eq!(
            seen[0].timestamp,
            Some(humantime::parse_rfc3339("2026-12-05T06:37:17.027642Z").expect("a time"))
        );
    }

    #[test]
    fn warnings_are_counted_by_message_with_librdkafka_folded_by_kind() {
        let scratch = Scratch::new("warnings");
        std::fs::write(scratch.0.join("worker-0.log"), LOG).expect("writes a log");
        std::fs::write(scratch.0.join("worker-1.log"), LOG).expect("writes a log");
        std::fs::write(scratch.0.join("operator-1.log"), LOG).expect("writes a log");
        let counts = worker_warnings(&scratch.0);
        assert_eq!(
            counts,
            BTreeMap::from([
                ("librdkafka: FAIL".to_owned(), 4),
                ("reading the job's policy failed".to_owned(), 2),
            ]),
            "info lines, non-JSON lines and other components' logs are left out"
        );
    }
}
