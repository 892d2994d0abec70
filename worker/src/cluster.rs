//! `kubecrawl-worker run`: one worker of a spider fleet, as the operator's Deployment runs it.
//!
//! Leases from the Redis frontier, publishes to Kafka, serves `/metrics`, `/healthz` and
//! `/readyz`, heart-beats so the fleet can be counted, and never exits when idle. On SIGTERM
//! it drains (see [`crate::runtime`]) and exits 0.

use std::sync::Arc;
use std::time::Duration;

use kubecrawl_frontier::{FrontierConfig, RedisFrontier};
use kubecrawl_process::admin::AdminServer;
use tokio_util::sync::CancellationToken;

use crate::args::RunArgs;
use crate::metrics::Metrics;
use crate::runtime::{Worker, WorkerConfig, default_worker_name};
use crate::sink::kafka::KafkaSink;
use crate::spider::Registry;
use crate::{Error, Result, fetcher, kafka_sink, renderer, robots_cache, spider, warc_writer};

/// Runs a fleet worker until `shutdown`.
///
/// # Errors
/// An unknown spider, Redis unreachable at start-up, an invalid Kafka configuration, or the
/// metrics address cannot be bound.
pub async fn run(args: RunArgs, registry: &Registry, shutdown: CancellationToken) -> Result<()> {
    let spider = spider(registry, args.parse_with.as_deref().unwrap_or(&args.spider))?;
    let config = FrontierConfig::default();
    let client = args
        .redis
        .client()
        .await
        .map_err(|source| Error::Connect { source })?;
    let probe_client = client;
    let servers = args
        .redis
        .servers()
        .await
        .map_err(|source| Error::Connect { source })?;
    let frontier =
        RedisFrontier::connect_servers(servers, &args.redis.redis_prefix, config.clone())
            .await
            .map_err(Error::frontier("connect"))?;
    let sink = Arc::new(
        kafka_sink(
            &args.kafka.kafka_brokers,
            &args.kafka.security,
            &args.output,
        )
        .await?,
    );

    let metrics = Metrics::new();
    let admin = AdminServer::bind(args.metrics_addr)
        .await
        .map_err(|source| Error::Admin { source })?;
    let server = tokio::spawn(admin.serve(metrics.clone(), shutdown.clone()));
    let probe = tokio::spawn(probe_dependencies(
        probe_client,
        sink.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));

    let warc = warc_writer(
        &args.warc,
        &args.fetch,
        &worker_name(&args),
        &args.spider,
        &metrics,
    )?;
    let worker = Arc::new(
        Worker::new(
            Arc::new(frontier),
            fetcher(&args.fetch)?,
            robots_cache(&args.fetch),
            spider,
            sink,
            metrics,
            WorkerConfig {
                spiderid: args.spider.clone(),
                worker_name: worker_name(&args),
                concurrency: args.fetch.concurrency,
                per_host_concurrency: args.fetch.per_host_concurrency,
                lease_batch: args.lease_batch,
                lease_duration: args.lease_duration,
                max_retries: config.max_retries,
                robots_retry: args.fetch.robots_retry,
                page_timeout: args.fetch.page_timeout,
                drain_timeout: args.drain_timeout,
                ..WorkerConfig::default()
            },
        )
        .with_warc(warc)
        .with_renderer(renderer(args.render, &args.browser, &args.fetch).await?),
    );
    tracing::info!(spider = %args.spider, worker = %worker_name(&args), render = args.render, "worker started");
    let summary = worker.run(shutdown.clone()).await;
    tracing::info!(
        handled = summary.handled,
        released = summary.released,
        "worker stopped"
    );
    shutdown.cancel();
    // The probe only ever waits on timers and short probes; it ends with the token.
    let _ = probe.await;
    match server.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(Error::Admin { source }),
        Err(_) => Ok(()),
    }
}

fn worker_name(args: &RunArgs) -> String {
    args.worker_name.clone().unwrap_or_else(default_worker_name)
}

/// How often Redis and Kafka are probed for `/readyz`.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// How long one probe may take before its dependency counts as unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Keeps `/readyz` false while Redis or Kafka does not answer: every [`PROBE_INTERVAL`], a
/// PING on a connection of its own and a metadata request on the producer's connections.
/// (The lease loop also marks the worker unready when a lease fails; this also covers Kafka,
/// and an idle Redis connection.) Ends at `shutdown`.
async fn probe_dependencies(
    redis: redis::Client,
    kafka: Arc<KafkaSink>,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    loop {
        let (redis_ok, kafka_ok) = tokio::join!(
            kubecrawl_process::connect::redis::check(&redis, PROBE_TIMEOUT),
            kafka.reachable(PROBE_TIMEOUT),
        );
        if let Err(e) = &redis_ok {
            tracing::warn!(error = %kubecrawl_process::format_chain(e), "redis probe failed");
        }
        if !kafka_ok {
            tracing::warn!("kafka probe failed");
        }
        metrics
            .readiness_state()
            .set_reachable(redis_ok.is_ok() && kafka_ok);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(PROBE_INTERVAL) => {}
        }
    }
}
