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

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use kube::runtime::controller::Controller;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kubecrawl_api::CrawlJob;
use kubecrawl_frontier::{Frontier, FrontierConfig, RedisFrontier};
use kubecrawl_process::admin::AdminServer;
use kubecrawl_process::format_chain;
use kubecrawl_process::tasks::{Ended, Outcome, Tasks};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub mod args;
pub mod autoscale;
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
        source: kubecrawl_process::connect::Error,
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
    /// The admin server (metrics, health) could not start.
    #[error("starting the admin server failed")]
    Admin {
        /// Which address and why.
        #[source]
        source: kubecrawl_process::Error,
    },
    /// A task the operator cannot run without ended (or failed) before shutdown.
    #[error("a critical task stopped")]
    TaskEnded {
        /// Which task, and how it ended.
        #[source]
        source: Ended,
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

/// How long the operator's tasks may take to stop once told to (the leader keeper hands the
/// Lease back in this time, so that a standby takes over at once).
const STOP_DEADLINE: Duration = Duration::from_secs(5);

/// Runs the operator until `shutdown`: serves health and metrics, waits to become leader,
/// then runs the controller, the fleet's periodic sync, the domain rules and the stats dump.
///
/// Every task is owned by this function ([`Tasks`]) and runs in a span naming it. Each is
/// critical: one that ends before `shutdown`, or fails at any time, stops the operator with
/// [`Error::TaskEnded`] naming it, after an error log line saying which and why.
///
/// # Errors
/// Start-up failures (no cluster credentials, Redis unreachable, a bad fleet configuration,
/// the metrics address taken), a lost leadership, and a critical task that ended.
pub async fn run(args: args::Args, shutdown: CancellationToken) -> Result<()> {
    let services = Services::connect(&args).await?;
    let metrics = metrics::Metrics::new();
    let admin = AdminServer::bind(args.metrics_addr)
        .await
        .map_err(|source| Error::Admin { source })?;
    let mut tasks = Tasks::new();
    tasks.spawn_fallible(
        "admin server",
        admin.serve(metrics.clone(), shutdown.clone()),
    );
    tasks.spawn(
        "redis probe",
        probe_redis(services.redis.clone(), metrics.clone(), shutdown.clone()),
    );
    let result = operate(&args, &services, &metrics, &mut tasks, &shutdown).await;
    metrics.readiness_state().set_ready(false);
    shutdown.cancel();
    let failed_while_stopping = tasks.drain(STOP_DEADLINE).await;
    match (result, failed_while_stopping) {
        (Ok(()), Some(ended)) => Err(Error::TaskEnded { source: ended }),
        (Ok(()), None) => {
            tracing::info!("operator stopped");
            Ok(())
        }
        (Err(e), _) => Err(e),
    }
}

/// What the operator talks to, connected and checked at start-up.
struct Services {
    client: kube::Client,
    fleet_config: fleet::FleetConfig,
    redis: redis::Client,
    frontier: Arc<dyn Frontier>,
}

impl Services {
    /// The cluster's client, the fleet configuration, and Redis once it answered.
    async fn connect(args: &args::Args) -> Result<Self> {
        let client = kube::Client::try_default()
            .await
            .map_err(Error::kube("connect"))?;
        let fleet_config = match &args.fleet_config {
            Some(path) => fleet::FleetConfig::load(path)?,
            None => fleet::FleetConfig::default(),
        };
        let redis = args
            .redis
            .client()
            .await
            .map_err(|source| Error::Connect { source })?;
        let servers = args
            .redis
            .servers()
            .await
            .map_err(|source| Error::Connect { source })?;
        let frontier = RedisFrontier::connect_servers(
            servers,
            &args.redis.redis_prefix,
            FrontierConfig::default(),
        )
        .await
        .map_err(Error::frontier("connect"))?;
        Ok(Self {
            client,
            fleet_config,
            redis,
            frontier: Arc::new(frontier),
        })
    }
}

/// Waits to lead (when leader election is on), then runs the controller until `shutdown`,
/// a lost leadership or a critical task's end.
async fn operate(
    args: &args::Args,
    services: &Services,
    metrics: &metrics::Metrics,
    tasks: &mut Tasks,
    shutdown: &CancellationToken,
) -> Result<()> {
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let lost = CancellationToken::new();
    if args.leader_election {
        let election = leader::LeaderElection::new(
            Api::<Lease>::namespaced(services.client.clone(), &args.leader_namespace),
            &args.leader_lease,
            &identity,
            Duration::from_secs(15),
        );
        if !watching(tasks, shutdown, election.acquire(shutdown)).await? {
            return Ok(());
        }
        tasks.spawn(
            "leader lease",
            election.keep(shutdown.clone(), lost.clone()),
        );
    }
    // Stops everything that acts for the leader; cancelled with `shutdown`, and by `run` as
    // soon as this returns (a lost leadership, a critical task's end).
    let stop = shutdown.child_token();
    let controller = start(args, services, metrics, identity, tasks, &stop);
    metrics.readiness_state().set_ready(true);
    tracing::info!("controller started");
    // A shutdown lets running reconciles finish; a lost leadership drops them at once
    // (reconcile is safe to cancel at any await), so nothing is written after the loss.
    let control = async {
        tokio::select! {
            biased;
            () = lost.cancelled() => {
                tracing::error!("leadership lost, every reconcile stopped");
                Err(Error::LeadershipLost {
                    lease: args.leader_lease.clone(),
                })
            }
            () = controller => if stop.is_cancelled() {
                Ok(())
            } else {
                Err(critical(Ended { task: "controller", outcome: Outcome::Returned }))
            },
        }
    };
    watching(tasks, shutdown, control).await
}

/// Waits for `work` while watching `tasks`: a task that fails, or ends before `shutdown`,
/// ends the wait with [`Error::TaskEnded`] (`work` is dropped). `work` wins a tie, so that
/// its own account of an end (a lost leadership) is the one given.
async fn watching<T>(
    tasks: &mut Tasks,
    shutdown: &CancellationToken,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    tokio::pin!(work);
    loop {
        tokio::select! {
            biased;
            result = &mut work => return result,
            Some(ended) = tasks.next() => {
                if ended.returned() && shutdown.is_cancelled() {
                    continue;
                }
                return Err(critical(ended));
            }
        }
    }
}

/// The error of a critical task's end, logged with the task's name and why.
fn critical(ended: Ended) -> Error {
    tracing::error!(task = ended.task, error = %format_chain(&ended), "critical task ended, stopping the operator");
    Error::TaskEnded { source: ended }
}

/// Starts what the leader runs: the Deployment watch, the domain rules, the stats dump and the
/// periodic fleet sync as tasks until `stop`; returns the controller, to be run by the caller
/// (in the span `task{task="controller"}`).
fn start(
    args: &args::Args,
    services: &Services,
    metrics: &metrics::Metrics,
    identity: String,
    tasks: &mut Tasks,
    stop: &CancellationToken,
) -> impl Future<Output = ()> + use<> {
    let deployments = watch_deployments(services, tasks, stop);
    let connections = fleet::Connections {
        redis_url: args.redis.redis_url.clone(),
        redis_prefix: args.redis.redis_prefix.clone(),
        kafka_brokers: args.kafka_brokers.clone(),
        topic_prefix: args.topic_prefix.clone(),
        redis_cluster: args.redis.redis_cluster,
        redis_shards: args.redis.redis_shards,
    };
    let fleets = fleet::Fleets::new(
        services.client.clone(),
        services.fleet_config.clone(),
        connections,
        deployments.clone(),
    );
    let jobs_api: Api<CrawlJob> = match &args.watch_namespace {
        Some(ns) => Api::namespaced(services.client.clone(), ns),
        None => Api::all(services.client.clone()),
    };
    let controller = Controller::new(jobs_api, watcher::Config::default().any_semantic());
    let recorder = Recorder::new(
        services.client.clone(),
        Reporter {
            controller: "kubecrawl-operator".into(),
            instance: Some(identity),
        },
    );
    let ctx = Arc::new(reconcile::Context::new(
        services.client.clone(),
        services.frontier.clone(),
        fleets.clone(),
        controller.store(),
        recorder,
        metrics.clone(),
        reconcile::Settings {
            status_interval: args.status_interval,
            completion_grace: args.completion_grace,
        },
    ));
    spawn_leader_tasks(args, services, tasks, stop);
    tasks.spawn(
        "fleet sync",
        periodic_fleet_sync(
            fleets,
            services.frontier.clone(),
            controller.store(),
            deployments,
            stop.clone(),
        ),
    );
    controller
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|_| std::future::ready(()))
        .instrument(tracing::info_span!("task", task = "controller"))
}

/// Watches the worker Deployments the operator manages into a store, as a task until `stop`.
fn watch_deployments(
    services: &Services,
    tasks: &mut Tasks,
    stop: &CancellationToken,
) -> reflector::Store<Deployment> {
    let (deployments, writer) = reflector::store();
    let api: Api<Deployment> =
        Api::namespaced(services.client.clone(), &services.fleet_config.namespace);
    let selector = format!("{}={}", fleet::MANAGED_BY.0, fleet::MANAGED_BY.1);
    let watch = watcher(api, watcher::Config::default().labels(&selector))
        .default_backoff()
        .reflect(writer)
        .take_until(stop.clone().cancelled_owned())
        .for_each(|_| std::future::ready(()));
    tasks.spawn("deployment watcher", watch);
    deployments
}

/// Starts the domain rules (when a ConfigMap is named) and the stats dump, as tasks until
/// `stop`.
fn spawn_leader_tasks(
    args: &args::Args,
    services: &Services,
    tasks: &mut Tasks,
    stop: &CancellationToken,
) {
    let fleets = || services.fleet_config.fleets.keys().cloned().collect();
    if let Some((namespace, name)) =
        throttle::configmap_ref(&args.throttle_configmap, &args.leader_namespace)
    {
        let settings = throttle::Settings {
            namespace,
            name,
            fleets: fleets(),
        };
        tasks.spawn(
            "domain rules",
            throttle::run(
                services.client.clone(),
                services.frontier.clone(),
                settings,
                stop.clone(),
            ),
        );
    }
    tasks.spawn(
        "stats dump",
        statsdump::run(
            services.frontier.clone(),
            fleets(),
            args.stats_dump_interval,
            stop.clone(),
        ),
    );
}

/// Sizes the autoscaled fleets from their backlogs and syncs every fleet every few seconds,
/// beside the reconciles, so that a Deployment changed or deleted by hand is put right even
/// when no job changes.
async fn periodic_fleet_sync(
    fleets: fleet::Fleets,
    frontier: Arc<dyn Frontier>,
    jobs: reflector::Store<CrawlJob>,
    deployments: reflector::Store<Deployment>,
    stop: CancellationToken,
) {
    // Autoscaled fleets are sized from the first tick (reconciles apply the sizes too); the
    // sync waits for both stores, or 30 s, so that an empty store never scales fleets down.
    let started = tokio::time::Instant::now();
    let mut synced_once = false;
    loop {
        let state = jobs.state();
        fleets.autoscale(frontier.as_ref(), &state).await;
        let ready = synced_once
            || started.elapsed() >= Duration::from_secs(30)
            || (jobs.wait_until_ready().now_or_never().is_some()
                && deployments.wait_until_ready().now_or_never().is_some());
        if ready {
            synced_once = true;
            if let Err(e) = fleets.sync(&state, None).await {
                tracing::warn!(error = %format_chain(&e), "fleet sync failed");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(FLEET_SYNC_INTERVAL) => {},
            () = stop.cancelled() => return,
        }
    }
}

/// How often the fleets are sized and synced outside reconciles.
const FLEET_SYNC_INTERVAL: Duration = Duration::from_secs(5);

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
        let result =
            kubecrawl_process::connect::redis::check(&client, Duration::from_secs(3)).await;
        if let Err(e) = &result {
            tracing::warn!(error = %format_chain(e), "redis probe failed");
        }
        metrics.readiness_state().set_reachable(result.is_ok());
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_ends_before_shutdown_stops_the_operator_naming_it() {
        let shutdown = CancellationToken::new();
        let mut tasks = Tasks::new();
        tasks.spawn("forever", std::future::pending());
        tasks.spawn("deployment watcher", async {});
        let result = tokio::time::timeout(
            Duration::from_secs(5),
            watching(&mut tasks, &shutdown, std::future::pending::<Result<()>>()),
        )
        .await
        .expect("the ended task went unnoticed");
        let Err(err) = result else {
            panic!("the operator went on without its deployment watcher")
        };
        assert_eq!(
            format_chain(&err),
            "a critical task stopped: task \"deployment watcher\" returned"
        );
    }

    #[tokio::test]
    async fn tasks_that_stop_at_shutdown_let_the_work_finish() {
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let mut tasks = Tasks::new();
        tasks.spawn("admin server", async {});
        let finishing = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(7)
        };
        let result = tokio::time::timeout(
            Duration::from_secs(5),
            watching(&mut tasks, &shutdown, finishing),
        )
        .await
        .expect("the work never finished");
        assert_eq!(result.expect("no task failed"), 7);
    }

    #[tokio::test]
    async fn a_task_that_fails_after_shutdown_is_still_an_error() {
        #[derive(Debug, thiserror::Error)]
        #[error("address in use")]
        struct Broke;
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let mut tasks = Tasks::new();
        tasks.spawn_fallible("admin server", async { Err(Broke) });
        let result = tokio::time::timeout(
            Duration::from_secs(5),
            watching(&mut tasks, &shutdown, std::future::pending::<Result<()>>()),
        )
        .await
        .expect("the failed task went unnoticed");
        let err = result.expect_err("the admin server's error was dropped");
        assert!(format_chain(&err).ends_with("\"admin server\" failed: address in use"));
    }
}
