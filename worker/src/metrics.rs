//! Prometheus metrics and readiness, served by the admin server
//! ([`kubecrawl_process::admin`]: `/metrics`, `/healthz`, `/readyz`).
//!
//! Labels are bounded: the spider and an outcome from a fixed set, never a URL or a host.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kubecrawl_process::admin::Readiness;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::runtime::LeaseOutcome;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    spider: String,
    outcome: LeaseOutcome,
}

impl prometheus_client::encoding::EncodeLabelValue for LeaseOutcome {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SpiderLabels {
    spider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WarcErrorLabels {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TrapLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SitemapLabels {
    result: &'static str,
}

fn fetch_histogram() -> Histogram {
    // 5 ms to about 80 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

struct Inner {
    registry: Registry,
    leases: Family<OutcomeLabels, Counter>,
    fetch_seconds: Family<SpiderLabels, Histogram, fn() -> Histogram>,
    body_bytes: Family<SpiderLabels, Counter>,
    slowed_hosts: Gauge,
    adaptive_delay_max: Gauge<f64, std::sync::atomic::AtomicU64>,
    traps: Family<TrapLabels, Counter>,
    sitemaps: Family<SitemapLabels, Counter>,
    warc_records: Counter,
    warc_bytes: Counter,
    warc_files: Counter,
    warc_errors: Family<WarcErrorLabels, Counter>,
    extract_rules_invalid: Family<SpiderLabels, Counter>,
    readiness: Readiness,
    outcomes: Mutex<BTreeMap<&'static str, u64>>,
}

/// The worker's metrics. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with the worker's metrics.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kubecrawl_worker");
        let leases = Family::<OutcomeLabels, Counter>::default();
        registry.register("leases", "Leases handled, by outcome", leases.clone());
        let fetch_seconds =
            Family::<SpiderLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                fetch_histogram as fn() -> Histogram,
            );
        registry.register(
            "fetch_seconds",
            "Time to fetch a page, redirects and body included",
            fetch_seconds.clone(),
        );
        let body_bytes = Family::<SpiderLabels, Counter>::default();
        registry.register(
            "body_bytes",
            "Response body bytes fetched",
            body_bytes.clone(),
        );
        let slowed_hosts = Gauge::default();
        registry.register(
            "slowed_hosts",
            "Hosts this worker slows down now (adaptive politeness)",
            slowed_hosts.clone(),
        );
        let adaptive_delay_max = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "adaptive_delay_max_seconds",
            "The largest adaptive delay this worker holds for a host now",
            adaptive_delay_max.clone(),
        );
        let traps = Family::<TrapLabels, Counter>::default();
        registry.register(
            "traps",
            "Hosts this worker cut off for a job as crawler traps, by rule",
            traps.clone(),
        );
        let sitemaps = Family::<SitemapLabels, Counter>::default();
        registry.register(
            "sitemaps",
            "Sitemaps this worker read, by result: ok, or what kept one from being read whole \
             (unavailable, malformed, too_large, too_many_entries, bad_gzip, too_deep)",
            sitemaps.clone(),
        );
        let warc_records = Counter::default();
        registry.register(
            "warc_records",
            "WARC records written (warcinfo, request, response, metadata)",
            warc_records.clone(),
        );
        let warc_bytes = Counter::default();
        registry.register(
            "warc_bytes",
            "Bytes written to WARC files (compressed)",
            warc_bytes.clone(),
        );
        let warc_files = Counter::default();
        registry.register(
            "warc_files",
            "WARC files closed and renamed to their final name",
            warc_files.clone(),
        );
        let warc_errors = Family::<WarcErrorLabels, Counter>::default();
        registry.register(
            "warc_errors",
            "WARC output failures: op=write, a page whose records could not be written (its \
             lease given back); op=close, a file that could not be fsynced or renamed",
            warc_errors.clone(),
        );
        let extract_rules_invalid = Family::<SpiderLabels, Counter>::default();
        registry.register(
            "extract_rules_invalid",
            "Times a job's extract rules did not compile in this worker (its pages are then \
             crawled as if it had none)",
            extract_rules_invalid.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                leases,
                fetch_seconds,
                body_bytes,
                slowed_hosts,
                adaptive_delay_max,
                traps,
                sitemaps,
                warc_records,
                warc_bytes,
                warc_files,
                warc_errors,
                extract_rules_invalid,
                readiness: Readiness::default(),
                outcomes: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// Counts a host cut off as a crawler trap, by the rule that found it.
    pub fn trap(&self, reason: &'static str) {
        self.inner.traps.get_or_create(&TrapLabels { reason }).inc();
    }

    /// Counts one sitemap read, by result (`ok` or its problem's label).
    pub fn sitemap(&self, result: &'static str) {
        self.inner
            .sitemaps
            .get_or_create(&SitemapLabels { result })
            .inc();
    }

    /// Counts WARC records written and their bytes.
    pub fn warc_written(&self, records: u64, bytes: u64) {
        self.inner.warc_records.inc_by(records);
        self.inner.warc_bytes.inc_by(bytes);
    }

    /// Counts a WARC file closed.
    pub fn warc_file_closed(&self) {
        self.inner.warc_files.inc();
    }

    /// Counts a WARC failure: `write` (a page) or `close` (a file).
    pub fn warc_error(&self, op: &'static str) {
        self.inner
            .warc_errors
            .get_or_create(&WarcErrorLabels { op })
            .inc();
    }

    /// Counts a job's extract rules that did not compile.
    pub fn extract_rules_invalid(&self, spider: &str) {
        self.inner
            .extract_rules_invalid
            .get_or_create(&SpiderLabels {
                spider: spider.to_owned(),
            })
            .inc();
    }

    /// Counts one handled lease.
    pub fn page(&self, spider: &str, outcome: LeaseOutcome) {
        self.inner
            .leases
            .get_or_create(&OutcomeLabels {
                spider: spider.to_owned(),
                outcome,
            })
            .inc();
        *self
            .inner
            .outcomes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(outcome.as_str())
            .or_default() += 1;
    }

    /// Records one fetch.
    pub fn fetched(&self, spider: &str, elapsed: Duration, bytes: usize) {
        let labels = SpiderLabels {
            spider: spider.to_owned(),
        };
        self.inner
            .fetch_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        self.inner
            .body_bytes
            .get_or_create(&labels)
            .inc_by(bytes as u64);
    }

    /// The hosts slowed down now and their delays (adaptive politeness): how many, and the
    /// largest delay. Hosts are never labels; the worker's log names each change.
    pub fn adaptive_delays(&self, slowed: &[(String, Duration)]) {
        self.inner
            .slowed_hosts
            .set(i64::try_from(slowed.len()).unwrap_or(i64::MAX));
        self.inner.adaptive_delay_max.set(
            slowed
                .iter()
                .map(|(_, d)| d.as_secs_f64())
                .fold(0.0, f64::max),
        );
    }

    /// Handled leases per outcome label so far.
    pub fn outcomes(&self) -> BTreeMap<&'static str, u64> {
        self.inner
            .outcomes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// What `/readyz` says: ready while leasing works and Redis and Kafka answer.
    pub fn readiness_state(&self) -> &Readiness {
        &self.inner.readiness
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        kubecrawl_process::admin::encode(&self.inner.registry)
    }
}

/// What the admin server shows: this registry, and ready only while leasing works and Redis
/// and Kafka answer.
impl kubecrawl_process::admin::Health for Metrics {
    fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    fn readiness(&self) -> Result<(), &'static str> {
        self.inner.readiness.check(
            "redis or kafka not reachable",
            "redis or kafka not reachable",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_up_in_the_text_format() {
        let m = Metrics::new();
        m.page("link", LeaseOutcome::Ok);
        m.page("link", LeaseOutcome::Ok);
        m.page(
            "link",
            LeaseOutcome::FetchFailed(crate::fetch::FetchErrorKind::TooManyRedirects),
        );
        m.fetched("link", Duration::from_millis(12), 100);
        m.adaptive_delays(&[
            ("a.test".to_owned(), Duration::from_millis(250)),
            ("b.test".to_owned(), Duration::from_secs(2)),
        ]);
        let text = m.encode();
        assert!(text.contains("kubecrawl_worker_slowed_hosts 2"), "{text}");
        assert!(
            text.contains("kubecrawl_worker_adaptive_delay_max_seconds 2.0"),
            "{text}"
        );
        assert!(
            text.contains(r#"kubecrawl_worker_leases_total{spider="link",outcome="ok"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"kubecrawl_worker_body_bytes_total{spider="link"} 100"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"kubecrawl_worker_leases_total{spider="link",outcome="too_many_redirects"} 1"#
            ),
            "{text}"
        );
        assert_eq!(m.outcomes()["ok"], 2);
    }
}
