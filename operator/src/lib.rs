//! kubecrawl-operator: the controller that turns `kubectl apply` into a running crawl and
//! `kubectl get crawljobs` into a live view of it.
//!
//! It reconciles each CrawlJob ([`reconcile`]): validates what the schema cannot
//! ([`validate`]), registers the job's policy and seeds it in the Redis frontier exactly once,
//! keeps one worker Deployment per spiderid scaled to the work that exists ([`fleet`]), copies
//! the frontier's per-job accounting into `status` ([`status`]), detects completion and expiry,
//! and purges a job's frontier state when it is deleted (a finalizer). It is the only writer
//! of CrawlJob status.
//!
//! What it is not: it never fetches a page (workers do) and never decides crawl order (the
//! frontier does).
//!
//! # Tour
//! - [`reconcile`]: the reconcile loop and its contract; [`status`]: phases and conditions.
//! - [`fleet`]: worker Deployments and the fleet configuration; [`validate`]: spec checks.
//! - [`leader`]: leader election; [`statsdump`]: the Crawler Stats Dump; [`metrics`]:
//!   Prometheus and health endpoints; [`args`]: the command line.
//! - [`throttle`]: per-domain throttles and the domain blacklist from a ConfigMap, applied
//!   to every fleet live.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use kube::runtime::controller::Controller;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kubecrawl_api::CrawlJob;
use kubecrawl_frontier::{Frontier, FrontierConfig, RedisFrontier};
use tokio_util::sync::CancellationToken;

pub mod args;
#[cfg(test)]
mod fixtures;
pub mod fleet;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod statsdump;
pub mod status;
pub mod throttle;
pub mod validate;

/// Everything that can go wrong in the operator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes {op} failed")]
    Kube {
        /// The operation.
        op: &'static str,
        /// The client's error.
        #[source]
        source: Box<kube::Error>,
    },
    /// A frontier operation failed.
    #[error("frontier {op} failed")]
    Frontier {
        /// The operation.
        op: &'static str,
        /// The frontier's error.
        #[source]
        source: Box<kubecrawl_frontier::Error>,
    },
    /// Redis did not accept the operator at start-up (wrong CA, wrong password, plaintext on
    /// a TLS port, unreachable).
    #[error("start-up connection check failed")]
    Connect {
        /// Which endpoint and why.
        #[source]
        source: kubecrawl_connect::Error,
    },
    /// Adding or removing the finalizer, or the reconcile inside it, failed.
    #[error("finalizer")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// The fleet configuration is unusable.
    #[error("fleet configuration {path}: {reason}")]
    FleetConfig {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// This replica lost the leader Lease (another replica took it, or it could not be
    /// renewed in time): it stopped acting and exits so that it restarts as a standby.
    #[error("leadership of lease {lease} lost")]
    LeadershipLost {
        /// The Lease's name.
        lease: String,
    },
    /// The metrics endpoint could not be served.
    #[error("serving metrics on {addr} failed")]
    Metrics {
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Wraps a Kubernetes client error of operation `op`.
    pub fn kube(op: &'static str) -> impl FnOnce(kube::Error) -> Self {
        move |source| Self::Kube {
            op,
            source: Box::new(source),
        }
    }

    /// Wraps a frontier error of operation `op`.
    pub fn frontier(op: &'static str) -> impl FnOnce(kubecrawl_frontier::Error) -> Self {
        move |source| Self::Frontier {
            op,
            source: Box::new(source),
        }
    }
}

/// The operator's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error and its sources, `: `-separated, for one log field.
pub fn format_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

/// Runs the operator until `shutdown`: serves health and metrics, waits to become leader,
/// then runs the controller, the fleet's periodic sync and the stats dump.
///
/// # Errors
/// Start-up failures (no cluster credentials, Redis unreachable, a bad fleet configuration,
/// the metrics address taken) and a lost leadership.
pub async fn run(args: args::Args, shutdown: CancellationToken) -> Result<()> {
    let client = kube::Client::try_default()
        .await
        .map_err(Error::kube("connect"))?;
    let fleet_config = match &args.fleet_config {
        Some(path) => fleet::FleetConfig::load(path)?,
        None => fleet::FleetConfig::default(),
    };
    let redis_client = args
        .redis
        .client()
        .await
        .map_err(|source| Error::Connect { source })?;
    let frontier: Arc<dyn Frontier> = Arc::new(
        RedisFrontier::connect_client(
            redis_client.clone(),
            &args.redis.redis_prefix,
            FrontierConfig::default(),
        )
        .await
        .map_err(Error::frontier("connect"))?,
    );

    let metrics = metrics::Metrics::new();
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .map_err(|source| Error::Metrics {
            addr: args.metrics_addr,
            source,
        })?;
    let server = tokio::spawn(metrics::serve_on(
        listener,
        metrics.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(probe_redis(redis_client, metrics.clone(), shutdown.clone()));

    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let lost = CancellationToken::new();
    let mut keeper = None;
    if args.leader_election {
        let election = leader::LeaderElection::new(
            Api::<Lease>::namespaced(client.clone(), &args.leader_namespace),
            &args.leader_lease,
            &identity,
            Duration::from_secs(15),
        );
        if !election.acquire(&shutdown).await? {
            return Ok(());
        }
        keeper = Some(tokio::spawn(election.keep(shutdown.clone(), lost.clone())));
    }
    // Leadership lost: stop acting at once; the process exits non-zero below.
    let stop = CancellationToken::new();
    {
        let (stop, shutdown, lost) = (stop.clone(), shutdown.clone(), lost.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {},
                () = lost.cancelled() => {},
            }
            stop.cancel();
        });
    }

    let (deployments, writer) = reflector::store();
    let deployment_api: Api<Deployment> = Api::namespaced(client.clone(), &fleet_config.namespace);
    let selector = format!("{}={}", fleet::MANAGED_BY.0, fleet::MANAGED_BY.1);
    let deployment_watch = watcher(deployment_api, watcher::Config::default().labels(&selector))
        .default_backoff()
        .reflect(writer)
        .for_each(|_| std::future::ready(()));
    tokio::spawn(deployment_watch);

    let connections = fleet::Connections {
        redis_url: args.redis.redis_url.clone(),
        redis_prefix: args.redis.redis_prefix.clone(),
        kafka_brokers: args.kafka_brokers.clone(),
        topic_prefix: args.topic_prefix.clone(),
    };
    let fleets = fleet::Fleets::new(
        client.clone(),
        fleet_config.clone(),
        connections,
        deployments.clone(),
    );
    let jobs_api: Api<CrawlJob> = match &args.watch_namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let controller = Controller::new(jobs_api, watcher::Config::default().any_semantic());
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "kubecrawl-operator".into(),
            instance: Some(identity),
        },
    );
    let ctx = Arc::new(reconcile::Context::new(
        client.clone(),
        frontier.clone(),
        fleets.clone(),
        controller.store(),
        recorder,
        metrics.clone(),
        reconcile::Settings {
            status_interval: args.status_interval,
            completion_grace: args.completion_grace,
        },
    ));

    if let Some((namespace, name)) =
        throttle::configmap_ref(&args.throttle_configmap, &args.leader_namespace)
    {
        let fleets = fleet_config.fleets.keys().cloned().collect();
        let settings = throttle::Settings {
            namespace,
            name,
            fleets,
        };
        tokio::spawn(throttle::run(
            client.clone(),
            frontier.clone(),
            settings,
            stop.clone(),
        ));
    }
    tokio::spawn(statsdump::run(
        frontier,
        fleet_config.fleets.keys().cloned().collect(),
        args.stats_dump_interval,
        stop.clone(),
    ));
    tokio::spawn(periodic_fleet_sync(
        fleets,
        controller.store(),
        deployments,
        stop.clone(),
    ));

    metrics.set_ready(true);
    tracing::info!("controller started");
    let controller = controller
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|_| std::future::ready(()));
    // A shutdown lets running reconciles finish; a lost leadership drops them at once
    // (reconcile is safe to cancel at any await), so nothing is written after the loss.
    tokio::select! {
        () = controller => {},
        () = lost.cancelled() => {
            tracing::error!("leadership lost, every reconcile stopped");
        }
    }
    metrics.set_ready(false);
    stop.cancel();
    shutdown.cancel();
    let _ = server.await;
    // Let the keeper hand the Lease back, so a standby takes over at once.
    if let Some(keeper) = keeper {
        let _ = tokio::time::timeout(Duration::from_secs(5), keeper).await;
    }
    if lost.is_cancelled() {
        return Err(Error::LeadershipLost {
            lease: args.leader_lease.clone(),
        });
    }
    tracing::info!("operator stopped");
    Ok(())
}

/// Syncs the fleets every few seconds, beside the reconciles, so that a Deployment changed
/// or deleted by hand is put right even when no job changes.
async fn periodic_fleet_sync(
    fleets: fleet::Fleets,
    jobs: reflector::Store<CrawlJob>,
    deployments: reflector::Store<Deployment>,
    stop: CancellationToken,
) {
    let _ = tokio::time::timeout(Duration::from_secs(30), jobs.wait_until_ready()).await;
    let _ = tokio::time::timeout(Duration::from_secs(30), deployments.wait_until_ready()).await;
    loop {
        if let Err(e) = fleets.sync(&jobs.state(), None).await {
            tracing::warn!(error = %format_chain(&e), "fleet sync failed");
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(10)) => {},
            () = stop.cancelled() => return,
        }
    }
}

fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "operator".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Keeps `/readyz` false while Redis does not answer a PING (every 5 s, 3 s allowed each), on a
/// connection of its own. Ends at `shutdown`.
async fn probe_redis(
    client: redis::Client,
    metrics: metrics::Metrics,
    shutdown: CancellationToken,
) {
    loop {
        let result = kubecrawl_connect::redis::check(&client, Duration::from_secs(3)).await;
        if let Err(e) = &result {
            tracing::warn!(error = %format_chain(e), "redis probe failed");
        }
        metrics.set_reachable(result.is_ok());
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}
