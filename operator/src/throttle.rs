//! Per-domain throttles and the domain blacklist, changed live through a ConfigMap.
//!
//! Scrapy Cluster let its operators change per-domain throttles and a blacklist without a
//! restart by editing a YAML file in Zookeeper. Here the same YAML lives under the key
//! [`CONFIG_KEY`] of a ConfigMap (`--throttle-configmap`, default `kubecrawl-throttle` in the
//! operator's own namespace):
//!
//! ```yaml
//! domains:
//!   example.org:      # and its subdomains
//!     window: 60      # seconds
//!     hits: 10        # requests per window
//!     scale: 0.5      # optional, 0 < scale <= 1 (default 1): the share of hits allowed
//! blacklist:
//!   - bad.example
//! ```
//!
//! The operator watches that one ConfigMap and, within a second of a change, stores the rules
//! in the frontier for every spider fleet ([`kubecrawl_frontier::Frontier::set_domain_rules`]):
//! each domain's throttle as a least interval of `window / (hits * scale)` between two
//! dispatches to each of its hosts (a floor beside the jobs' own politeness and robots.txt
//! Crawl-delay, see [`kubecrawl_frontier::rules`]), and the blacklist, whose requests are
//! refused at admission and dropped from the queues, counted in each job's accounting.
//!
//! # Why a ConfigMap and not a CRD
//! The content is one cluster-wide document that people edit as a whole, in the format
//! Scrapy Cluster users already have; a ConfigMap takes it as is (`kubectl create configmap
//! kubecrawl-throttle --from-file=throttle.yaml`), needs no second CRD to install and version,
//! and its RBAC can name the one object. What a schema would have refused at admission is
//! checked here instead, with a message naming the field, as a Warning event on the ConfigMap
//! and in the log.
//!
//! # Guarantees
//! - An invalid document changes nothing: the last valid rules stay in force.
//! - A deleted (or never created) ConfigMap means no rules: they are cleared.
//! - The rules are re-checked every [`RESYNC`] against what the frontier holds and written
//!   again where they differ (a new fleet, a Redis that lost its data), and only there.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use kubecrawl_frontier::{DomainRules, Frontier};
use kubecrawl_process::format_chain;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// The ConfigMap key holding the rules.
pub const CONFIG_KEY: &str = "throttle.yaml";
/// How often the rules are compared with what the frontier holds, beside every change.
pub const RESYNC: Duration = Duration::from_secs(30);
/// The longest throttle interval accepted (one day).
const MAX_INTERVAL: Duration = Duration::from_secs(86_400);

/// One domain's throttle, as Scrapy Cluster wrote it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Throttle {
    window: f64,
    hits: u64,
    #[serde(default = "default_scale")]
    scale: f64,
}

fn default_scale() -> f64 {
    1.0
}

/// The document under [`CONFIG_KEY`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(default)]
    domains: BTreeMap<String, Throttle>,
    #[serde(default)]
    blacklist: Vec<String>,
}

/// Parses the throttle document.
///
/// # Errors
/// A message naming the field that is wrong (`domains."example.org".hits: …`).
pub fn parse(text: &str) -> Result<DomainRules, String> {
    let doc: Document = if text.trim().is_empty() {
        Document::default()
    } else {
        serde_yaml::from_str(text).map_err(|e| format!("{CONFIG_KEY}: {e}"))?
    };
    let mut rules = DomainRules::default();
    for (domain, t) in &doc.domains {
        let name = checked_domain(domain).map_err(|why| format!("domains.{domain:?}: {why}"))?;
        let field = |f: &str| format!("domains.{domain:?}.{f}");
        if !(t.window.is_finite() && t.window > 0.0) {
            return Err(format!(
                "{}: must be a positive number of seconds",
                field("window")
            ));
        }
        if t.hits == 0 {
            return Err(format!("{}: must be at least 1", field("hits")));
        }
        if !(t.scale.is_finite() && t.scale > 0.0 && t.scale <= 1.0) {
            return Err(format!(
                "{}: must be above 0 and at most 1 (the share of hits allowed)",
                field("scale")
            ));
        }
        let seconds = t.window / (t.hits as f64 * t.scale);
        let interval = Duration::try_from_secs_f64(seconds)
            .ok()
            .filter(|iv| *iv <= MAX_INTERVAL)
            .ok_or_else(|| {
                format!(
                    "{}: window / (hits * scale) is {seconds} s, more than a day",
                    field("window")
                )
            })?;
        rules.throttles.insert(name, interval);
    }
    for (i, domain) in doc.blacklist.iter().enumerate() {
        let name = checked_domain(domain).map_err(|why| format!("blacklist[{i}]: {why}"))?;
        rules.blacklist.insert(name);
    }
    Ok(rules)
}

/// A lowercase host name, or why it is not one.
fn checked_domain(domain: &str) -> Result<String, String> {
    let lower = domain.trim().to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if lower.is_empty() || lower.len() > 253 || !lower.split('.').all(label_ok) {
        return Err(format!(
            "{domain:?} is not a domain name (letters, digits, '-' and '.', e.g. example.org)"
        ));
    }
    Ok(lower)
}

/// Where the rules come from and where they go.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The ConfigMap's namespace.
    pub namespace: String,
    /// The ConfigMap's name.
    pub name: String,
    /// The spider fleets the rules are written for (live spiders are added at each sync).
    pub fleets: Vec<String>,
}

/// Splits `--throttle-configmap` (`name` or `namespace/name`; empty disables) into
/// (namespace, name), the namespace defaulting to `own_namespace`.
pub fn configmap_ref(flag: &str, own_namespace: &str) -> Option<(String, String)> {
    let flag = flag.trim();
    if flag.is_empty() {
        return None;
    }
    Some(match flag.split_once('/') {
        Some((ns, name)) => (ns.to_owned(), name.to_owned()),
        None => (own_namespace.to_owned(), flag.to_owned()),
    })
}

/// Watches the ConfigMap and keeps every fleet's domain rules in the frontier equal to it,
/// until `stop`. Never returns an error: a failure is logged and retried (the watch with
/// backoff, the frontier at the next change or resync).
pub async fn run(
    client: Client,
    frontier: Arc<dyn Frontier>,
    settings: Settings,
    stop: CancellationToken,
) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &settings.namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", settings.name));
    let mut events = watcher(api, config).default_backoff().boxed();
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: "kubecrawl-operator".into(),
            instance: None,
        },
    );
    let mut applier = Applier {
        frontier,
        settings,
        recorder,
        desired: None,
        listing: None,
        last_text: None,
    };
    tracing::info!(namespace = %applier.settings.namespace, name = %applier.settings.name, "watching domain rules");
    let mut resync = tokio::time::interval(RESYNC);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = resync.tick() => {
                applier.sync().await;
            }
            event = events.next() => match event {
                Some(Ok(event)) => applier.observe(event).await,
                Some(Err(e)) => tracing::warn!(error = %format_chain(&e), "watching domain rules failed"),
                None => return,
            },
        }
    }
}

/// The state of the watch and the rules in force.
struct Applier {
    frontier: Arc<dyn Frontier>,
    settings: Settings,
    recorder: Recorder,
    /// The rules to hold; `None` until the ConfigMap was first listed.
    desired: Option<DomainRules>,
    /// During a (re)list: the ConfigMap seen so far.
    listing: Option<Option<ConfigMap>>,
    /// The document last handled, so an unchanged one is not parsed and reported again.
    last_text: Option<Option<String>>,
}

impl Applier {
    async fn observe(&mut self, event: watcher::Event<ConfigMap>) {
        match event {
            watcher::Event::Init => self.listing = Some(None),
            watcher::Event::InitApply(cm) => self.listing = Some(Some(cm)),
            watcher::Event::InitDone => {
                let seen = self.listing.take().flatten();
                self.changed(seen.as_ref()).await;
            }
            watcher::Event::Apply(cm) => self.changed(Some(&cm)).await,
            watcher::Event::Delete(_) => self.changed(None).await,
        }
    }

    /// The ConfigMap is now `cm` (`None`: absent).
    async fn changed(&mut self, cm: Option<&ConfigMap>) {
        let text = cm.map(|cm| {
            cm.data
                .as_ref()
                .and_then(|d| d.get(CONFIG_KEY))
                .cloned()
                .unwrap_or_default()
        });
        if self.last_text.as_ref() == Some(&text) && self.desired.is_some() {
            return;
        }
        self.last_text = Some(text.clone());
        match text
            .as_deref()
            .map(parse)
            .unwrap_or(Ok(DomainRules::default()))
        {
            Ok(rules) => {
                tracing::info!(
                    throttles = rules.throttles.len(),
                    blacklisted = rules.blacklist.len(),
                    present = cm.is_some(),
                    "domain rules changed"
                );
                self.desired = Some(rules);
                let started = Instant::now();
                let written = self.sync().await;
                if let Some(cm) = cm {
                    let note = format!(
                        "{} throttles and {} blacklisted domains applied to {written} spider fleets in {} ms",
                        self.desired.as_ref().map_or(0, |r| r.throttles.len()),
                        self.desired.as_ref().map_or(0, |r| r.blacklist.len()),
                        started.elapsed().as_millis()
                    );
                    self.report(cm, EventType::Normal, "Applied", note).await;
                }
            }
            Err(message) => {
                tracing::warn!(error = %message, "domain rules refused, the previous ones stay in force");
                if let Some(cm) = cm {
                    self.report(cm, EventType::Warning, "Invalid", message)
                        .await;
                }
            }
        }
    }

    /// Writes the desired rules to every spider whose rules differ; returns how many spiders
    /// hold them now.
    async fn sync(&self) -> usize {
        let Some(desired) = &self.desired else {
            return 0;
        };
        let desired = desired.normalized();
        let mut spiders: BTreeSet<String> = self.settings.fleets.iter().cloned().collect();
        match self.frontier.workers().await {
            Ok(live) => spiders.extend(live.per_spider.into_keys()),
            Err(e) => {
                tracing::warn!(error = %format_chain(&e), "listing live spiders failed")
            }
        }
        let mut holding = 0;
        for spider in spiders {
            let current = match self.frontier.domain_rules(&spider).await {
                Ok(current) => current,
                Err(e) => {
                    tracing::warn!(spider, error = %format_chain(&e), "reading domain rules failed");
                    continue;
                }
            };
            if current == desired {
                holding += 1;
                continue;
            }
            match self.frontier.set_domain_rules(&spider, &desired).await {
                Ok(()) => {
                    holding += 1;
                    tracing::info!(
                        spider,
                        throttles = desired.throttles.len(),
                        blacklisted = desired.blacklist.len(),
                        "domain rules applied"
                    );
                }
                Err(e) => {
                    tracing::warn!(spider, error = %format_chain(&e), "applying domain rules failed");
                }
            }
        }
        holding
    }

    async fn report(&self, cm: &ConfigMap, type_: EventType, reason: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: "ApplyDomainRules".to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &cm.object_ref(&())).await {
            tracing::warn!(configmap = %cm.name_any(), error = %e, "publishing an event failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrapy_clusters_format_becomes_intervals_and_a_blacklist() {
        let rules = parse(
            "domains:\n  Example.org:\n    window: 60\n    hits: 10\n  slow.test:\n    window: 60\n    hits: 30\n    scale: 0.5\nblacklist:\n  - bad.test\n",
        )
        .expect("parses");
        assert_eq!(rules.throttles["example.org"], Duration::from_secs(6));
        assert_eq!(rules.throttles["slow.test"], Duration::from_secs(4));
        assert!(rules.blacklist.contains("bad.test"));
    }

    #[test]
    fn an_empty_document_is_no_rules() {
        assert_eq!(parse(""), Ok(DomainRules::default()));
        assert_eq!(parse("domains: {}\n"), Ok(DomainRules::default()));
    }

    #[test]
    fn mistakes_name_their_field() {
        let err = |text: &str| parse(text).expect_err("refused");
        assert!(
            err("domains:\n  a.test: {window: 60, hits: 0}\n").contains("domains.\"a.test\".hits"),
            "{}",
            err("domains:\n  a.test: {window: 60, hits: 0}\n")
        );
        assert!(err("domains:\n  a.test: {window: -1, hits: 1}\n").contains(".window"));
        assert!(err("domains:\n  a.test: {window: 1, hits: 1, scale: 2}\n").contains(".scale"));
        assert!(err("domains:\n  a.test: {window: 1, hits: 1, burst: 2}\n").contains("burst"));
        assert!(err("blacklist: ['ok.test', 'not a domain']\n").contains("blacklist[1]"));
        assert!(err("domains:\n  'a_b': {window: 1, hits: 1}\n").contains("domains.\"a_b\""));
        assert!(err("throttle: {}\n").contains("throttle"));
        assert!(
            err("domains:\n  a.test: {window: 100000000, hits: 1}\n").contains("more than a day")
        );
    }

    #[test]
    fn the_flag_names_a_configmap_here_or_elsewhere() {
        assert_eq!(
            configmap_ref("kubecrawl-throttle", "ops"),
            Some(("ops".to_owned(), "kubecrawl-throttle".to_owned()))
        );
        assert_eq!(
            configmap_ref("crawl/rules", "ops"),
            Some(("crawl".to_owned(), "rules".to_owned()))
        );
        assert_eq!(configmap_ref(" ", "ops"), None);
    }
}
