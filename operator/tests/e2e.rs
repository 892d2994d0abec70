//! The operator end to end, on the real kube-apiserver, Redis and Kafka: the operator binary,
//! real `kubecrawl-worker` processes run by a fake kubelet for its Deployments, and the
//! synthetic site.
//!
//! The tests take turns (a static lock): each runs an operator, several workers and a site,
//! which is as much as two cores carry without turning timing into flakiness.

use std::path::Path;
use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::watcher::{self, Event};
use kubecrawl_api::{CrawlJob, Phase};
use kubecrawl_e2e::cluster::{Cluster, ClusterConfig, take_turn};
use kubecrawl_e2e::crawljob::{has_pages, link_spec, phase};
use kubecrawl_e2e::farm::FarmConfig;
use kubecrawl_e2e::kubectl_ok;
use kubecrawl_e2e::site::{GroundTruth, SiteConfig};
use kubecrawl_frontier::Frontier;
use tokio::sync::MutexGuard;

fn operator_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_kubecrawl-operator"))
}

/// The test's turn and an installation of its own named `name`.
async fn start(name: &str, config: ClusterConfig) -> (MutexGuard<'static, ()>, Cluster) {
    let turn = take_turn().await;
    let cluster = Cluster::start(name, operator_bin(), config)
        .await
        .expect("cluster");
    (turn, cluster)
}

/// [`start`] with the default configuration, then one link job `job` crawling the whole
/// site with one worker, `delay_millis` apart; with the site's ground truth.
async fn crawling(
    name: &str,
    job: &str,
    delay_millis: u32,
) -> (MutexGuard<'static, ()>, Cluster, GroundTruth) {
    let (turn, cluster) = start(name, ClusterConfig::default()).await;
    let truth = cluster.site.truth();
    cluster
        .create_link_job(job, 1, delay_millis)
        .await
        .expect("created");
    (turn, cluster, truth)
}

/// Waits until the link fleet's Deployment asks for `want` replicas.
async fn wait_replicas(cluster: &Cluster, want: i32) {
    cluster
        .wait_replicas("link", want, Duration::from_secs(30))
        .await;
}

/// Waits (up to `secs`) until a job is Succeeded; `what` names the expectation on failure.
async fn succeeded(cluster: &Cluster, name: &str, secs: u64, what: &str) -> CrawlJob {
    cluster
        .wait_job(name, Duration::from_secs(secs), |j| {
            phase(j) == Phase::Succeeded
        })
        .await
        .expect(what)
}

/// Waits (up to 60 s) until a job has fetched at least `pages` pages: it is mid-crawl.
async fn with_pages(cluster: &Cluster, name: &str, pages: u64, what: &str) -> CrawlJob {
    cluster
        .wait_job(name, Duration::from_secs(60), |j| has_pages(j, pages))
        .await
        .expect(what)
}

/// Waits (up to 30 s) until `holds` is true, failing with `what` and the logs.
async fn until(cluster: &Cluster, what: &str, mut holds: impl AsyncFnMut() -> bool) {
    cluster
        .eventually(what, Duration::from_secs(30), async || {
            holds().await.then_some(())
        })
        .await;
}

/// The test namespace's events of one `reason`, as `kubectl get events` prints them.
fn events(cluster: &Cluster, reason: &str) -> String {
    kubectl_ok(
        &[
            "get",
            "events",
            "-n",
            &cluster.ns.name,
            "--field-selector",
            &format!("reason={reason}"),
        ],
        None,
    )
    .expect("kubectl get events")
}

/// `kubectl get crawljobs` as rows of columns.
fn table(ns: &str) -> Vec<Vec<String>> {
    kubectl_ok(&["get", "crawljobs", "-n", ns], None)
        .expect("kubectl get crawljobs")
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_job_crawls_the_site_succeeds_and_scales_back_to_zero() {
    let (_turn, cluster) = start("e2e-link", ClusterConfig::default()).await;
    let truth = cluster.site.truth();
    cluster
        .create_link_job("link-job", 2, 0)
        .await
        .expect("created");

    // The fleet's Deployment appears with the two workers the job asked for.
    wait_replicas(&cluster, 2).await;
    let running = cluster
        .wait_job("link-job", Duration::from_secs(60), |j| {
            phase(j) == Phase::Running || phase(j) == Phase::Succeeded
        })
        .await
        .expect("running");
    let during = table(&cluster.ns.name);

    let done = succeeded(&cluster, "link-job", 120, "succeeded").await;
    let status = done.status.clone().expect("status");
    assert_eq!(
        status.pages,
        truth.len() as u64,
        "status.pages is the site's reachable count"
    );
    assert_eq!(status.queued + status.in_flight, 0);
    assert!(status.start_time.is_some() && status.completion_time.is_some());
    assert_eq!(status.observed_generation, done.metadata.generation);
    assert_eq!(
        status.status_codes.get("200").copied().unwrap_or(0)
            + status.status_codes.get("404").copied().unwrap_or(0),
        status.pages
    );
    assert!(running.status.is_some());

    // kubectl shows the columns, with the job's figures.
    assert_eq!(
        during[0],
        ["NAME", "SPIDER", "PHASE", "PAGES", "STEPS", "QUEUED", "AGE"]
    );
    let rows = table(&cluster.ns.name);
    println!(
        "{}",
        rows.iter()
            .map(|r| r.join("\t"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let row = rows.iter().find(|r| r[0] == "link-job").expect("a row");
    assert_eq!(
        row[1..5],
        [
            "link".to_owned(),
            "Succeeded".to_owned(),
            truth.len().to_string(),
            status.steps.to_string()
        ]
    );
    assert_eq!(row[5], "0");

    // Nothing is left to do: the fleet goes back to zero.
    wait_replicas(&cluster, 0).await;
    until(&cluster, "no worker process after scale-down", async || {
        cluster.kubelet.running(&cluster.ns.name).is_empty()
    })
    .await;
    cluster.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_rise_while_a_wandering_job_runs() {
    let (_turn, cluster) = start("e2e-wander", ClusterConfig::default()).await;
    let spec = serde_json::json!({
        "spiderid": "wandering", "appid": "testapp", "crawlid": "wander1",
        "seeds": [cluster.site.wander_root()],
        // One page per second, so the steps can be watched as they rise.
        "politeness": {"delayMillis": 1000},
    });
    cluster.create_job("wander", spec).await.expect("created");
    let mut seen = Vec::new();
    let started = Instant::now();
    loop {
        let rows = table(&cluster.ns.name);
        if let Some(row) = rows.iter().find(|r| r[0] == "wander")
            && row.len() == 7
        {
            let steps: u32 = row[4].parse().expect("STEPS is a number");
            if seen.last() != Some(&steps) {
                seen.push(steps);
            }
            if row[2] == "Succeeded" {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "steps seen {seen:?}\n{}",
            cluster.all_logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    println!("STEPS seen in kubectl get crawljobs: {seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "steps never go back: {seen:?}"
    );
    assert!(seen.len() >= 3, "steps rose while it ran: {seen:?}");
    assert_eq!(seen.last().copied(), Some(cluster.site.wander_steps()));
    cluster.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_one_spider_share_a_deployment_with_summed_capped_replicas() {
    let config = ClusterConfig {
        max_replicas: 4,
        ..ClusterConfig::default()
    };
    let (_turn, cluster) = start("e2e-share", config).await;
    // Slow jobs, so both are still running while replicas are checked.
    cluster
        .create_link_job("first", 1, 200)
        .await
        .expect("created");
    wait_replicas(&cluster, 1).await;
    cluster
        .create_link_job("second", 2, 200)
        .await
        .expect("created");
    wait_replicas(&cluster, 3).await;
    cluster
        .create_link_job("third", 5, 200)
        .await
        .expect("created");
    wait_replicas(&cluster, 4).await;
    let deployments = cluster
        .deployments()
        .list(&ListParams::default())
        .await
        .expect("list");
    assert_eq!(
        deployments.items.len(),
        1,
        "one Deployment for the spider, shared"
    );
    // Wandering has no job: it has no Deployment.
    assert_eq!(
        cluster.fleet_replicas("wandering").await.expect("get"),
        None
    );
    for name in ["first", "second", "third"] {
        cluster
            .jobs()
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete");
    }
    wait_replicas(&cluster, 0).await;
    cluster.shutdown().await.expect("clean shutdown");
}

/// A fleet sized by ready work (`autoscale`): a polite crawl of one host keeps one worker,
/// hundreds of hosts that may be fetched now take the fleet to its maximum, and with nothing
/// left the fleet goes to zero, then comes back when a job is added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_autoscaled_fleet_follows_its_ready_work() {
    let config = ClusterConfig {
        max_replicas: 3,
        farm: Some(FarmConfig {
            hosts: 300,
            pages: 20,
            links: 4,
            latency: Duration::from_millis(500),
        }),
        autoscale: Some(serde_json::json!({
            "workerConcurrency": 8, "perHostConcurrency": 2, "scaleDownAfterSeconds": 5
        })),
        ..ClusterConfig::default()
    };
    let (_turn, cluster) = start("e2e-autoscale", config).await;
    assert_eq!(cluster.fleet_replicas("link").await.expect("get"), None);

    cluster
        .create_link_job("polite", 9, 1000)
        .await
        .expect("created");
    wait_replicas(&cluster, 1).await;
    with_pages(&cluster, "polite", 2, "the polite job crawls").await;
    let watch_until = Instant::now() + Duration::from_secs(12);
    while Instant::now() < watch_until {
        let replicas = cluster.fleet_replicas("link").await.expect("get");
        assert_eq!(
            replicas,
            Some(1),
            "one polite host, whatever `workers` asks"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let farm = cluster.farm.as_ref().expect("a farm");
    let seeds: Vec<String> = farm
        .hosts()
        .iter()
        .map(|h| format!("http://{h}:{}/p/0", farm.addr().port()))
        .collect();
    let mut spec = link_spec(&seeds[0], "farm", 1, 0);
    spec["seeds"] = serde_json::json!(seeds);
    spec["allowedDomains"] = serde_json::json!(["farm.test"]);
    cluster.create_job("farm", spec).await.expect("created");
    wait_replicas(&cluster, 3).await;

    for name in ["polite", "farm"] {
        cluster
            .jobs()
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete");
    }
    wait_replicas(&cluster, 0).await;

    cluster
        .create_link_job("again", 1, 0)
        .await
        .expect("created");
    wait_replicas(&cluster, 1).await;
    succeeded(&cluster, "again", 120, "the new job crawls the site").await;
    cluster.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_job_mid_crawl_purges_it_and_spares_the_other() {
    let (_turn, cluster, truth) = crawling("e2e-delete", "doomed", 20).await;
    cluster
        .create_link_job("kept", 1, 20)
        .await
        .expect("created");
    let frontier = cluster.frontier().await.expect("frontier");
    let doomed = cluster.job_ref("link", "doomed");
    with_pages(&cluster, "doomed", 20, "mid-crawl").await;
    let before = frontier
        .job_stats(&doomed)
        .await
        .expect("stats")
        .expect("registered");
    assert!(before.queued > 0, "deleted while it still had work");
    cluster
        .jobs()
        .delete("doomed", &DeleteParams::default())
        .await
        .expect("delete");
    until(&cluster, "the finalizer to finish", async || {
        cluster
            .jobs()
            .get_opt("doomed")
            .await
            .expect("get")
            .is_none()
    })
    .await;
    assert_eq!(
        frontier.job_stats(&doomed).await.expect("stats"),
        None,
        "the frontier forgot the job"
    );
    assert_eq!(frontier.policy(&doomed).await.expect("policy"), None);

    let kept = succeeded(&cluster, "kept", 120, "the other job finished").await;
    assert_eq!(kept.status.expect("status").pages, truth.len() as u64);
    cluster.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_restart_seeds_nothing_twice_and_status_carries_on() {
    let (_turn, mut cluster, truth) = crawling("e2e-restart", "restart", 15).await;
    let before = with_pages(&cluster, "restart", 30, "mid-crawl").await;
    assert_eq!(
        cluster.stop_operator().await.expect("stops"),
        Some(0),
        "the operator exits 0 on SIGTERM"
    );
    cluster.start_operator().await.expect("starts again");
    let done = succeeded(&cluster, "restart", 120, "succeeded after the restart").await;
    let status = done.status.expect("status");
    assert!(status.pages >= before.status.expect("status").pages);
    assert_eq!(
        status.pages,
        truth.len() as u64,
        "every page once: nothing was seeded twice"
    );
    let seedings = cluster
        .operator_logs()
        .lines()
        .filter(|l| l.contains(" seeded"))
        .count();
    assert_eq!(
        seedings,
        1,
        "seeded once across both operator runs\n{}",
        cluster.operator_logs()
    );
    cluster.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_job_is_purged_and_an_invalid_one_gets_no_workers() {
    let (_turn, cluster) = start("e2e-expire", ClusterConfig::default()).await;
    let expires =
        k8s_openapi::jiff::Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_secs(4);
    let mut spec = link_spec(&cluster.site.root(), "expiring", 1, 100);
    spec["expires"] = serde_json::json!(expires.to_string());
    cluster.create_job("expiring", spec).await.expect("created");
    let expired = cluster
        .wait_job("expiring", Duration::from_secs(60), |j| {
            phase(j) == Phase::Expired
        })
        .await
        .expect("expired");
    let status = expired.status.expect("status");
    assert!(status.pages > 0, "it crawled before it expired");
    assert!(status.completion_time.is_some());
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Complete" && c.reason == "Expired")
    );
    let frontier = cluster.frontier().await.expect("frontier");
    assert_eq!(
        frontier
            .job_stats(&cluster.job_ref("link", "expiring"))
            .await
            .expect("stats"),
        None,
        "purged"
    );

    let mut bad = link_spec(&cluster.site.root(), "invalid", 3, 0);
    bad["denyRegex"] = serde_json::json!(["(unclosed"]);
    bad["spiderid"] = serde_json::json!("wandering");
    cluster
        .create_job("invalid", bad)
        .await
        .expect("the API server accepts what only the operator can check");
    let failed = cluster
        .wait_job("invalid", Duration::from_secs(30), |j| {
            phase(j) == Phase::Failed
        })
        .await
        .expect("failed");
    let valid = failed
        .status
        .expect("status")
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Valid")
        .expect("a Valid condition");
    assert_eq!(valid.status, "False");
    assert!(
        valid.message.contains("spec.denyRegex[0]"),
        "message names the field: {}",
        valid.message
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        cluster.fleet_replicas("wandering").await.expect("get"),
        None,
        "no Deployment for an invalid job"
    );
    assert_eq!(
        frontier
            .job_stats(&cluster.job_ref("wandering", "invalid"))
            .await
            .expect("stats"),
        None,
        "no seeds"
    );
    cluster.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_writes_stay_bounded_over_a_steady_crawl() {
    let config = ClusterConfig {
        site: SiteConfig::default().with_pages(2000),
        ..ClusterConfig::default()
    };
    let (_turn, cluster) = start("e2e-writes", config).await;
    // 10 pages a second: the crawl outlasts the 60 s window.
    cluster
        .create_link_job("steady", 1, 100)
        .await
        .expect("created");
    cluster
        .wait_job("steady", Duration::from_secs(60), |j| {
            phase(j) == Phase::Running
        })
        .await
        .expect("running");

    let jobs: Api<CrawlJob> = cluster.jobs();
    let config = watcher::Config::default().fields("metadata.name=steady");
    let stream = watcher::watcher(jobs, config);
    let window = Duration::from_secs(60);
    let mut writes = 0u32;
    let mut last_version = None;
    let counting = async {
        use futures::StreamExt;
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            if let Ok(Event::Apply(job)) = event
                && job.metadata.resource_version != last_version
            {
                last_version.clone_from(&job.metadata.resource_version);
                writes += 1;
            }
        }
    };
    let _ = tokio::time::timeout(window, counting).await;
    let job = cluster.jobs().get("steady").await.expect("get");
    println!(
        "status writes over a {} s steady crawl: {writes} ({} pages crawled, phase {:?}, status interval 1 s)",
        window.as_secs(),
        job.status.as_ref().map_or(0, |s| s.pages),
        phase(&job)
    );
    assert_eq!(
        phase(&job),
        Phase::Running,
        "the crawl was steady for the whole window"
    );
    // At most one write per status interval, plus a few for transitions.
    assert!(writes <= 65, "{writes} writes in 60 s");
    assert!(
        writes >= 10,
        "status kept up with the crawl: {writes} writes"
    );
    cluster.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_jobs_are_all_running_within_thirty_seconds() {
    // No workers: the jobs are seeded and stay Running, which is what is measured.
    let config = ClusterConfig {
        max_replicas: 0,
        ..ClusterConfig::default()
    };
    let (_turn, cluster) = start("e2e-many", config).await;
    let started = Instant::now();
    let creates = (0..200).map(|i| {
        let cluster = &cluster;
        async move {
            let spec = link_spec(&cluster.site.page_url(i % 300), &format!("many{i}"), 1, 0);
            cluster.create_job(&format!("many-{i}"), spec).await
        }
    });
    for result in futures::future::join_all(creates).await {
        result.expect("created");
    }
    let created = started.elapsed();
    let deadline = Duration::from_secs(30);
    let running = loop {
        let jobs = cluster
            .jobs()
            .list(&ListParams::default())
            .await
            .expect("list");
        let running = jobs
            .items
            .iter()
            .filter(|j| phase(j) == Phase::Running)
            .count();
        if running == 200 {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < deadline,
            "{running} of 200 Running after {deadline:?}\n{}",
            cluster.operator_logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let pid = cluster.operator_pid().expect("operator runs");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("operator /proc");
    let peak = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .unwrap_or("VmHWM: ?")
        .to_owned();
    println!(
        "200 CrawlJobs created in {created:?}, all Running after {running:?}; operator peak memory {peak}"
    );
    cluster.shutdown().await.expect("clean shutdown");
}

/// Suspending keeps the frontier; resuming finishes the crawl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_job_pauses_and_resumes() {
    let (_turn, cluster, truth) = crawling("e2e-suspend", "pausing", 20).await;
    with_pages(&cluster, "pausing", 10, "mid-crawl").await;
    let patch = serde_json::json!({"spec": {"suspend": true}});
    cluster
        .jobs()
        .patch("pausing", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("suspend");
    let suspended = cluster
        .wait_job("pausing", Duration::from_secs(30), |j| {
            phase(j) == Phase::Suspended
        })
        .await
        .expect("suspended");
    let pages = suspended.status.expect("status").pages;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = cluster
        .jobs()
        .get("pausing")
        .await
        .expect("get")
        .status
        .expect("status");
    assert!(
        still.pages <= pages + 2,
        "nothing (or only in-flight pages) fetched while suspended"
    );
    assert!(still.queued > 0, "the frontier kept the work");
    let patch = serde_json::json!({"spec": {"suspend": false}});
    cluster
        .jobs()
        .patch("pausing", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("resume");
    let done = succeeded(&cluster, "pausing", 120, "succeeded after resume").await;
    assert_eq!(done.status.expect("status").pages, truth.len() as u64);
    cluster.shutdown().await.expect("clean shutdown");
}

/// Two replicas are safe: the second waits as a standby while the first leads, and takes over
/// when the first stops; the crawl carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_replica_takes_over_when_the_leader_stops() {
    let (_turn, mut cluster, truth) = crawling("e2e-leader", "led", 20).await;
    with_pages(&cluster, "led", 10, "mid-crawl").await;
    let mut standby = cluster.spawn_operator().expect("a second replica");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(cluster.operator_log(1).contains("became leader"));
    assert!(
        !cluster.operator_log(2).contains("became leader"),
        "only one leader at a time"
    );
    assert!(
        !cluster.operator_log(2).contains("controller started"),
        "the standby does not reconcile"
    );

    assert_eq!(cluster.stop_operator().await.expect("stops"), Some(0));
    let started = Instant::now();
    until(&cluster, "the standby to take over", async || {
        cluster.operator_log(2).contains("became leader")
    })
    .await;
    println!(
        "standby took over {:?} after the leader stopped",
        started.elapsed()
    );
    let done = succeeded(&cluster, "led", 120, "the new leader finished the job").await;
    assert_eq!(done.status.expect("status").pages, truth.len() as u64);
    if let Some(pid) = standby.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid).expect("a pid fits i32")),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), standby.wait()).await;
    cluster.shutdown().await.expect("clean shutdown");
}

/// Regression: a job whose every seed was refused (here: its domain is blacklisted) stayed
/// Pending forever, kept its workers and was seeded again every status interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_seeds_are_all_refused_fails_and_says_why() {
    let (_turn, cluster) = start("e2e-refused", ClusterConfig::default()).await;
    cluster
        .set_throttle_rules("blacklist:\n  - site.test\n")
        .await
        .expect("the ConfigMap is written");
    let frontier = cluster.frontier().await.expect("frontier");
    until(
        &cluster,
        "the blacklist to reach the frontier",
        async || {
            frontier
                .domain_rules("link")
                .await
                .expect("rules")
                .blacklist
                .contains("site.test")
        },
    )
    .await;
    cluster
        .create_link_job("refused", 1, 0)
        .await
        .expect("created");
    let job = cluster
        .wait_job("refused", Duration::from_secs(30), |j| {
            phase(j) == Phase::Failed
        })
        .await
        .expect("the job failed instead of waiting forever");
    let status = job.status.expect("status");
    let seeded = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Seeded")
        .expect("a Seeded condition");
    assert_eq!(
        (seeded.status.as_str(), seeded.reason.as_str()),
        ("False", "SeedsRefused")
    );
    assert!(
        seeded
            .message
            .contains("1 on the spider's domain blacklist"),
        "{}",
        seeded.message
    );
    // No workers for it, and it is not seeded again.
    let replicas = cluster
        .fleet_replicas("link")
        .await
        .expect("get deployment");
    assert!(matches!(replicas, None | Some(0)), "{replicas:?}");
    let stats = frontier
        .job_stats(&cluster.job_ref("link", "refused"))
        .await
        .expect("stats")
        .expect("registered");
    let refused_once = stats.blacklisted;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stats = frontier
        .job_stats(&cluster.job_ref("link", "refused"))
        .await
        .expect("stats")
        .expect("registered");
    assert_eq!(stats.blacklisted, refused_once, "the job was seeded again");
    cluster.shutdown().await.expect("clean shutdown");
}

/// Redis losing its data mid-crawl (a restart without persistence, simulated by deleting
/// every key of this test's frontier) is detected by the frontier's epoch: the job gets the
/// FrontierLost condition, is seeded again, and still ends with every page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frontier_that_lost_its_data_is_detected_and_the_job_reseeded() {
    let (_turn, cluster, truth) = crawling("e2e-lost", "lost", 20).await;
    let before = with_pages(&cluster, "lost", 20, "mid-crawl").await;
    let epoch = before
        .status
        .and_then(|s| s.frontier_epoch)
        .expect("the status records the frontier's epoch");

    let url = std::env::var("REDIS_URL").expect("REDIS_URL");
    let client = redis::Client::open(url.as_str()).expect("a redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connects");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", cluster.redis_prefix))
        .query_async(&mut conn)
        .await
        .expect("lists this test's keys");
    assert!(!keys.is_empty());
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .expect("deletes them");

    let job = cluster
        .wait_job("lost", Duration::from_secs(30), |j| {
            j.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "FrontierLost" && c.status == "True")
            })
        })
        .await
        .expect("the loss was detected");
    let status = job.status.expect("status");
    assert_ne!(status.frontier_epoch.as_deref(), Some(epoch.as_str()));
    let done = succeeded(&cluster, "lost", 180, "the reseeded job finished").await;
    assert_eq!(
        done.status.expect("status").pages,
        truth.len() as u64,
        "every page, counted in the new frontier"
    );
    let events = events(&cluster, "FrontierLost");
    assert!(events.contains("lost"), "no FrontierLost event: {events}");
    cluster.shutdown().await.expect("clean shutdown");
}

/// A host a worker finds to be a crawler trap (here: 300 seeds on a host that answers only
/// 404) is cut off for the job, and the job says so: a `TrapDetected` condition naming it and
/// an event. The rest of the crawl carries on to success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crawler_trap_is_cut_off_and_reported_on_the_job() {
    let (_turn, cluster) = start("e2e-trap", ClusterConfig::default()).await;
    let truth = cluster.site.truth();
    let mut seeds = vec![cluster.site.root()];
    seeds.extend((0..300).map(|i| {
        cluster
            .site
            .url(kubecrawl_e2e::site::OTHER_HOST, &format!("/missing/{i}"))
    }));
    let mut spec = link_spec(&seeds[0], "trap", 1, 0);
    spec["seeds"] = serde_json::json!(seeds);
    cluster.create_job("trap", spec).await.expect("created");
    let job = cluster
        .wait_job("trap", Duration::from_secs(90), |j| {
            j.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "TrapDetected" && c.status == "True")
            })
        })
        .await
        .expect("the trap is reported");
    let condition = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "TrapDetected"))
        .expect("condition")
        .clone();
    assert!(
        condition
            .message
            .starts_with("1 host cut off as crawler traps: other.test (errors"),
        "{}",
        condition.message
    );
    let done = succeeded(&cluster, "trap", 180, "the rest of the crawl finishes").await;
    let pages = done.status.expect("status").pages;
    assert!(
        pages >= truth.len() as u64 + 50 && pages < truth.len() as u64 + 300,
        "{pages} pages: the site's {} and part of the dead host",
        truth.len()
    );
    let events = events(&cluster, "TrapDetected");
    assert!(
        events.contains("other.test"),
        "no TrapDetected event: {events}"
    );
    cluster.shutdown().await.expect("clean shutdown");
}

/// A job that seeds from the sitemaps its seed host's robots.txt names: the operator seeds
/// the robots.txt with the seed, workers read the sitemap index and its sitemaps, and the
/// status counts what was read, what failed (with a Warning event) and every page listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_crawls_what_its_sitemaps_list_and_counts_them() {
    let config = ClusterConfig {
        site: SiteConfig::default().with_pages(150).with_sitemaps(true),
        ..ClusterConfig::default()
    };
    let (_turn, cluster) = start("e2e-sitemaps", config).await;
    let truth = cluster.site.sitemap_truth(None);
    let mut spec = link_spec(&cluster.site.root(), "sitemaps", 1, 0);
    spec["maxdepth"] = serde_json::json!(0);
    spec["sitemaps"] = serde_json::json!({"fromRobots": true});
    cluster.create_job("sitemaps", spec).await.expect("created");
    let done = succeeded(&cluster, "sitemaps", 120, "the sitemap crawl finishes").await;
    let status = done.status.expect("status");
    let sitemaps = status.sitemaps.clone().expect("status.sitemaps");
    assert_eq!(
        (
            sitemaps.read,
            sitemaps.failed,
            sitemaps.urls,
            sitemaps.unmodified
        ),
        (truth.read, truth.failed, truth.urls, 0),
        "{sitemaps:?}"
    );
    // The seed, every page the sitemaps list (once), robots.txt and the sitemaps themselves.
    assert_eq!(
        status.pages,
        1 + truth.pages.len() as u64 + truth.fetches,
        "{status:?}"
    );
    assert_eq!(
        cluster.site.hits("/p/1"),
        1,
        "a page two sitemaps list is fetched once"
    );
    let events = events(&cluster, "SitemapsFailed");
    // One event per rise; repeats of a reason are folded into one event by the recorder.
    assert!(
        events.contains("could not be read whole"),
        "no SitemapsFailed event: {events}"
    );
    cluster.shutdown().await.expect("clean shutdown");
}

/// A job that recrawls: the first round crawls the site; three pages change; the second round
/// (`afterSeconds` after the first finished) asks for every page again with its validators,
/// counts the 304s and the unchanged bodies, publishes only the changed pages, and is the
/// last (`maxRounds: 2`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recrawl_round_refetches_every_page_and_publishes_only_the_changed() {
    let config = ClusterConfig {
        site: SiteConfig::default().with_pages(120).with_validators(true),
        ..ClusterConfig::default()
    };
    let (_turn, cluster) = start("e2e-recrawl", config).await;
    let truth = cluster.site.truth();
    let mut spec = link_spec(&cluster.site.root(), "recrawl", 1, 0);
    spec["recrawl"] = serde_json::json!({"afterSeconds": 8, "maxRounds": 2});
    cluster.create_job("recrawl", spec).await.expect("created");
    let first = succeeded(&cluster, "recrawl", 120, "round 1 finishes").await;
    let one = first.status.expect("status");
    let round = one.recrawl.clone().expect("status.recrawl");
    assert_eq!((round.round, round.changed, round.unchanged), (1, 0, 0));
    assert_eq!(one.pages, truth.len() as u64, "round 1 crawls the site");
    let done = one.completion_time.clone().expect("completion time");
    assert_eq!(
        round.next_round_time.map(|t| t.0),
        Some(done.0 + k8s_openapi::jiff::SignedDuration::from_secs(8)),
        "the next round is afterSeconds after the first finished"
    );
    let firehose = kubecrawl_api::contract::topic::firehose(&cluster.topic_prefix);
    let records = async || -> Vec<kubecrawl_api::PageRecord> {
        kubecrawl_e2e::records::topic_records(
            kubecrawl_e2e::TestEnv::get().kafka_config(),
            &firehose,
            Duration::from_secs(60),
        )
        .await
        .expect("the firehose reads back")
    };
    let published = records().await.len();

    // Three main pages change; every answer that ends on one of them changes with it.
    let main_page = regex::Regex::new(r"/p/(\d+)$").expect("regex");
    let edited: Vec<(usize, String)> = truth
        .pages()
        .iter()
        .filter(|(url, e)| e.status == Some(200) && e.redirects == 0 && main_page.is_match(url))
        .filter_map(|(url, _)| Some((main_page.captures(url)?[1].parse().ok()?, url.clone())))
        .take(3)
        .collect();
    assert_eq!(edited.len(), 3, "the site has main pages");
    for (i, _) in &edited {
        cluster.site.edit_page(*i);
    }
    let answers_on = |urls: &[&String], status: Option<u16>| {
        truth
            .pages()
            .values()
            .filter(|e| urls.contains(&&e.final_url) && (status.is_none() || e.status == status))
            .count() as u64
    };
    let edited_urls: Vec<&String> = edited.iter().map(|(_, url)| url).collect();
    let changed = answers_on(&edited_urls, None);

    let second = cluster
        .wait_job("recrawl", Duration::from_secs(120), |j| {
            j.status.as_ref().is_some_and(|s| {
                s.phase == Phase::Succeeded && s.recrawl.as_ref().is_some_and(|r| r.round == 2)
            })
        })
        .await
        .expect("round 2 finishes");
    let two = second.status.expect("status");
    let round = two.recrawl.clone().expect("status.recrawl");
    assert_eq!(
        two.pages, one.pages,
        "round 2 fetches every page round 1 did: {two:?}"
    );
    assert_eq!(round.changed, changed, "{round:?}");
    assert_eq!(round.unchanged, two.pages - changed, "{round:?}");
    assert_eq!(round.next_round_time, None, "maxRounds 2: no third round");
    assert!(round.round_start_time.is_some_and(|t| t.0 >= done.0));
    // Main pages answer conditional requests; the other pages' bodies are compared.
    let not_modified = two.status_codes.get("304").copied().unwrap_or(0);
    assert_eq!(not_modified, cluster.site.not_modified(), "{two:?}");
    assert!(not_modified > 0 && not_modified < two.pages, "{two:?}");
    for (_, url) in &edited {
        let path = url::Url::parse(url).expect("url").path().to_owned();
        assert_eq!(cluster.site.hits(&path), 2, "{url} fetched once per round");
    }
    // Only the changed pages were published again, with their new bodies.
    let all = records().await;
    assert_eq!(
        all.len() - published,
        changed as usize,
        "records of round 2"
    );
    let marked = all
        .iter()
        .filter(|r| {
            edited.iter().any(|(i, _)| {
                r.body
                    .contains(&kubecrawl_e2e::site::TestSite::edit_marker(*i, 1))
            })
        })
        .count();
    assert_eq!(marked as u64, changed);
    cluster.shutdown().await.expect("clean shutdown");
}
