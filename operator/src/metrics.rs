//! The operator's Prometheus metrics and readiness, served by the admin server
//! ([`kubecrawl_process::admin`]: `/metrics`, `/healthz`, `/readyz`). Labels are bounded
//! (outcome), never a job name.

use std::sync::Arc;
use std::time::Duration;

use kubecrawl_process::admin::Readiness;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

struct Inner {
    registry: Registry,
    reconciles: Family<OutcomeLabels, Counter>,
    reconcile_seconds: Histogram,
    status_writes: Counter,
    readiness: Readiness,
}

/// The operator's metrics. Cheap to clone.
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
    /// A fresh registry.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kubecrawl_operator");
        let reconciles = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "reconciles",
            "CrawlJob reconciles, by outcome",
            reconciles.clone(),
        );
        let reconcile_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "reconcile_seconds",
            "Time one reconcile takes",
            reconcile_seconds.clone(),
        );
        let status_writes = Counter::default();
        registry.register(
            "status_writes",
            "CrawlJob status patches written",
            status_writes.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                reconciles,
                reconcile_seconds,
                status_writes,
                readiness: Readiness::default(),
            }),
        }
    }

    /// Counts one reconcile.
    pub fn reconciled(&self, took: Duration, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.inner
            .reconciles
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        self.inner.reconcile_seconds.observe(took.as_secs_f64());
    }

    /// Counts one status write.
    pub fn status_written(&self) {
        self.inner.status_writes.inc();
    }

    /// Status writes so far.
    pub fn status_writes(&self) -> u64 {
        self.inner.status_writes.get()
    }

    /// What `/readyz` says: ready while leading (and the controller runs) with Redis answering.
    pub fn readiness_state(&self) -> &Readiness {
        &self.inner.readiness
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        kubecrawl_process::admin::encode(&self.inner.registry)
    }
}

/// What the admin server shows: this registry, and ready only while leading with Redis
/// answering. A standby replica is alive but not ready.
impl kubecrawl_process::admin::Health for Metrics {
    fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    fn readiness(&self) -> Result<(), &'static str> {
        self.inner.readiness.check("standby", "redis unreachable")
    }
}
