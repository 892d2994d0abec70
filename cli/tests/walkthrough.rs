//! Scrapy Cluster's walkthrough on kubecrawl, end to end on the real kube-apiserver, Redis
//! and Kafka: the operator binary, real `kubecrawl-worker` processes run by a fake kubelet,
//! the synthetic site, and the `kubecrawl` binary as a user runs it.
//!
//! - Feed the wandering crawl with the docs' JSON, dump the firehose (steps 0, 1, 2, …), read
//!   the Crawler Stats Dump, feed the same crawlid again.
//! - The same crawl requested over `<prefix>.incoming` by a plain Kafka producer, with info,
//!   stats and stop actions answered on `<prefix>.outbound_firehose`, and invalid messages
//!   answered with errors.
//! - Refusals name the field (and the API server's own refusal is passed on).
//! - A throttle change for a domain takes effect within seconds, measured ([`throttle`]).

#[path = "walkthrough/support.rs"]
mod support;
#[path = "walkthrough/throttle.rs"]
mod throttle;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kubecrawl_api::Phase;
use kubecrawl_e2e::cluster::take_turn;
use kubecrawl_e2e::crawljob::phase;
use kubecrawl_e2e::scrapy_cluster::{check_raw_response_item, read_topic};
use kubecrawl_e2e::{TestEnv, TestNamespace, unique_name};
use kubecrawl_frontier::Frontier;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};

use support::{answer, answer_where, consumer, install, kubecrawl_json, kubecrawl_ok, teardown};

/// The Crawler Stats Dump's windows.
const WINDOWS: [&str; 7] = [
    "900", "3600", "21600", "43200", "86400", "604800", "lifetime",
];

/// Parses what `kubecrawl dump` printed: indented JSON values one after another.
fn records(text: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("dump printed something that is not JSON ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_walkthrough_feed_dump_and_stats() {
    let _turn = take_turn().await;
    let started = Instant::now();
    let cluster = install("kcw-walk").await;
    let crawlid = unique_name("walk");
    let steps = cluster.site.wander_steps();
    let pages = u64::from(steps) + 1;

    // Scrapy Cluster's docs: feed '{"url": …, "appid":"testapp", "crawlid":…, "spiderid":"wandering"}'
    let request = json!({
        "url": cluster.site.wander_root(),
        "appid": "testapp",
        "crawlid": crawlid,
        "spiderid": "wandering",
    });
    let fed = kubecrawl_ok(&cluster, &["feed", &request.to_string()]).await;
    assert!(
        fed.contains(&format!("crawljob.kubecrawl.io/{crawlid} created")),
        "{fed}"
    );

    // While it runs, the dump counts the fleet's worker.
    let running = cluster
        .eventually(
            "a live wandering worker in the stats dump",
            Duration::from_secs(90),
            async || {
                let stats = kubecrawl_json(&cluster, &["stats"]).await;
                (stats["crawler"]["wandering_spider_count"] == 1).then_some(stats)
            },
        )
        .await;
    assert_eq!(running["crawler"]["total_spider_count"], 1, "{running:#}");
    assert_eq!(running["crawler"]["unique_spider_count"], 1, "{running:#}");
    assert_eq!(running["crawler"]["link_spider_count"], 0, "{running:#}");

    let job = cluster
        .wait_crawl(
            &crawlid,
            "the wandering job to succeed",
            Duration::from_secs(180),
            |j| phase(j) == Phase::Succeeded,
        )
        .await;
    let status = job.status.clone().unwrap_or_default();
    assert_eq!((status.pages, status.steps), (pages, steps), "{status:?}");

    // `kubecrawl dump`: one record per page, steps 0 … wander_steps, bodies left out.
    let max = pages.to_string();
    let text = kubecrawl_ok(
        &cluster,
        &["dump", "--from-beginning", "--max", max.as_str()],
    )
    .await;
    let dumped = records(&text);
    assert_eq!(dumped.len() as u64, pages);
    let mut seen_steps = Vec::new();
    let mut urls = BTreeSet::new();
    for r in &dumped {
        assert_eq!(r["crawlid"], crawlid.as_str(), "{r:#}");
        assert_eq!(
            (r["appid"].as_str(), r["spiderid"].as_str()),
            (Some("testapp"), Some("wandering"))
        );
        assert_eq!(r["status_code"], 200, "{r:#}");
        assert!(
            r.get("body").is_none(),
            "the body was printed without --body"
        );
        let step = r["attrs"]["step"].as_u64().expect("attrs.step is a number");
        let url = r["url"].as_str().expect("a url").to_owned();
        let path = url.split_once("/w/").map(|(_, p)| p).unwrap_or_default();
        assert!(
            path == "0" && step == 0 || path.starts_with(&format!("{step}/")),
            "{url} at step {step}"
        );
        seen_steps.push(step);
        urls.insert(url);
    }
    seen_steps.sort_unstable();
    assert_eq!(seen_steps, (0..=u64::from(steps)).collect::<Vec<_>>());
    let text = kubecrawl_ok(
        &cluster,
        &["dump", "--from-beginning", "--max", "1", "--body"],
    )
    .await;
    let with_body = records(&text);
    assert!(
        with_body[0]["body"]
            .as_str()
            .is_some_and(|b| b.contains("<html")),
        "--body prints the page"
    );

    // `kubecrawl stats`: the dump's keys, counting exactly the pages crawled; nothing queued.
    let stats = kubecrawl_json(&cluster, &["stats"]).await;
    let crawler = &stats["crawler"];
    for key in [
        "total_spider_count",
        "unique_spider_count",
        "wandering_spider_count",
        "link_spider_count",
    ] {
        assert!(crawler[key].is_u64(), "{key} missing: {stats:#}");
    }
    for window in WINDOWS {
        assert_eq!(
            crawler[format!("wandering_200_{window}")],
            pages,
            "window {window}: {stats:#}"
        );
    }
    assert_eq!(stats["queue"]["total_backlog"], 0, "{stats:#}");
    assert_eq!(
        stats["queue"]["wandering"]["spider_backlog"], 0,
        "{stats:#}"
    );
    println!("walkthrough stats dump: {crawler}");

    // `kubecrawl info`.
    let info = kubecrawl_json(&cluster, &["info", &crawlid]).await;
    assert_eq!(
        (info["phase"].as_str(), info["pages"].as_u64()),
        (Some("Succeeded"), Some(pages)),
        "{info:#}"
    );
    assert_eq!(
        (info["steps"].as_u64(), info["total_pending"].as_u64()),
        (Some(u64::from(steps)), Some(0))
    );

    // Feeding the same crawlid again adds the URL to that job's seeds, and it is crawled: a
    // last-step page the walk did not visit (it has no links, so exactly one more page).
    let unvisited = (0..cluster.site.config().wander_width)
        .map(|i| cluster.site.url("site.test", &format!("/w/{steps}/{i}")))
        .find(|u| !urls.contains(u))
        .expect("the walk visited one page per step");
    let again =
        json!({"url": unvisited, "appid": "testapp", "crawlid": crawlid, "spiderid": "wandering"});
    let fed = kubecrawl_ok(&cluster, &["feed", &again.to_string()]).await;
    assert!(fed.contains("seed added"), "{fed}");
    let job = cluster
        .wait_crawl(
            &crawlid,
            "the second seed to be crawled",
            Duration::from_secs(120),
            |j| {
                j.status.as_ref().is_some_and(|s| s.pages == pages + 1)
                    && phase(j) == Phase::Succeeded
            },
        )
        .await;
    assert_eq!(job.spec.seeds.len(), 2);
    let fed = kubecrawl_ok(&cluster, &["feed", &again.to_string()]).await;
    assert!(fed.contains("already seeded"), "{fed}");

    teardown(cluster).await;
    println!("the walkthrough took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_refuses_invalid_requests_naming_the_field() {
    let _turn = take_turn().await;
    kubecrawl_e2e::ensure_crd().expect("the CRD is served");
    let ns = TestNamespace::create("kcw-refuse").expect("a namespace");
    let env = TestEnv::get();
    let run = async |args: &[&str], stdin: Option<Vec<u8>>| {
        let mut child = tokio::process::Command::new(support::KUBECRAWL)
            .args(args)
            .env("KUBECONFIG", &env.kubeconfig)
            .env("KUBECRAWL_NAMESPACE", &ns.name)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("kubecrawl starts");
        let mut input = child.stdin.take().expect("piped");
        if let Some(bytes) = stdin {
            tokio::io::AsyncWriteExt::write_all(&mut input, &bytes)
                .await
                .expect("writes");
        }
        drop(input);
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("kubecrawl hung")
            .expect("kubecrawl runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let base = |extra: Value| {
        let mut v = json!({"url": "http://site.test/", "appid": "testapp", "crawlid": "refused"});
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        v.to_string()
    };
    for (extra, field) in [
        (json!({"bogus": true}), "bogus: unknown field"),
        (
            json!({"url": "ftp://site.test/"}),
            "url: \"ftp://site.test/\" is not an absolute http or https URL",
        ),
        (
            json!({"priority": 500}),
            "priority: 500 is out of range 1..=100",
        ),
        (json!({"deny_regex": ["(oops"]}), "deny_regex[0]:"),
        (json!({"expires": 1}), "expires:"),
    ] {
        let (ok, stderr) = run(&["feed", &base(extra.clone())], None).await;
        assert!(!ok, "{extra} was accepted");
        assert!(stderr.contains(field), "{extra}: {stderr}");
    }
    // What only the API server checks is passed on: an object over its 3 MiB request limit.
    let huge = base(json!({"attrs": {"blob": "x".repeat(4 << 20)}}));
    let (ok, stderr) = run(&["feed", "-"], Some(huge.into_bytes())).await;
    assert!(!ok, "a 4 MiB CrawlJob was accepted");
    assert!(stderr.contains("the API server refused"), "{stderr}");
    let (ok, stderr) = run(&["feed", &base(json!({}))], None).await;
    assert!(ok, "a valid request was refused: {stderr}");
    let (ok, stderr) = run(&["info", "nope"], None).await;
    assert!(
        !ok && stderr.contains("no crawl with crawlid \"nope\""),
        "{stderr}"
    );
    let (ok, stderr) = run(&["stop", "refused"], None).await;
    assert!(ok, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_crawl_over_kafka_with_actions_and_errors_answered() {
    let _turn = take_turn().await;
    let started = Instant::now();
    let cluster = install("kcw-kafka").await;
    let log_path = std::env::temp_dir().join(format!("{}-ingest.log", cluster.ns.name));
    let mut ingest = support::chart_ingest(&cluster, &unique_name("kcw-ingest"), &log_path);
    let incoming = format!("{}.incoming", cluster.topic_prefix);
    let answers = consumer(&format!("{}.outbound_firehose", cluster.topic_prefix));
    let producer: FutureProducer = TestEnv::get().kafka_config().create().expect("a producer");
    let send = async |payload: &str| {
        producer
            .send(
                FutureRecord::<(), _>::to(&incoming).payload(payload),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("kafka takes the request");
    };
    let ingest_log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    // The walkthrough's crawl request, by a plain producer.
    let crawlid = unique_name("kafka");
    let steps = cluster.site.wander_steps();
    let pages = u64::from(steps) + 1;
    send(&json!({
        "url": cluster.site.wander_root(), "appid": "testapp", "crawlid": crawlid, "spiderid": "wandering"
    }).to_string())
    .await;
    let job = cluster
        .wait_crawl(
            &crawlid,
            "the crawl requested over kafka to succeed",
            Duration::from_secs(180),
            |j| phase(j) == Phase::Succeeded,
        )
        .await;
    assert_eq!(
        job.status.as_ref().map(|s| s.pages),
        Some(pages),
        "ingest log:\n{}",
        ingest_log()
    );

    // info, answered with the uuid and the job's counts.
    send(&json!({"action": "info", "appid": "testapp", "crawlid": crawlid, "spiderid": "wandering", "uuid": "info-1"}).to_string()).await;
    let info = answer(&answers, "info-1").await;
    assert_eq!(info["action"], "info", "{info:#}");
    assert!(info.get("error").is_none(), "{info:#}");
    // Scrapy Cluster's domain figures: a finished crawl has nothing queued.
    assert_eq!(
        (
            &info["total_domains"],
            &info["distinct_domains"],
            &info["domains"]
        ),
        (&json!(0), &json!(0), &json!({})),
        "{info:#}"
    );
    assert_eq!(
        (info["crawlid"].as_str(), info["phase"].as_str()),
        (Some(crawlid.as_str()), Some("Succeeded"))
    );
    assert_eq!(
        (
            info["pages"].as_u64(),
            info["steps"].as_u64(),
            info["total_pending"].as_u64()
        ),
        (Some(pages), Some(u64::from(steps)), Some(0))
    );

    // The same crawlid with another URL adds a seed (a last-step page, so one more page).
    let visited: BTreeSet<String> = cluster
        .site
        .request_log()
        .into_iter()
        .map(|h| h.target)
        .collect();
    let last = (0..cluster.site.config().wander_width)
        .map(|i| format!("/w/{steps}/{i}"))
        .find(|path| !visited.contains(path))
        .map(|path| cluster.site.url("site.test", &path))
        .expect("the walk visited one page per step");
    send(&json!({
        "url": last, "appid": "testapp", "crawlid": crawlid, "spiderid": "wandering", "uuid": "feed-8"
    }).to_string())
    .await;
    let fed = answer(&answers, "feed-8").await;
    assert_eq!(
        (fed["action"].as_str(), fed["result"].as_str()),
        (Some("crawl"), Some("seed added")),
        "{fed:#}"
    );
    let pages_now = pages + 1;
    let job = cluster
        .wait_crawl(
            &crawlid,
            "the added seed to be crawled",
            Duration::from_secs(120),
            |j| {
                phase(j) == Phase::Succeeded
                    && j.status.as_ref().is_some_and(|s| s.pages == pages_now)
            },
        )
        .await;
    assert_eq!(job.spec.seeds.len(), 2);

    // Invalid messages are answered with an error carrying their uuid, never dropped.
    send(r#"{"action": "info", "uuid": "broken-2", "appid": "#).await;
    let broken = answer(&answers, "broken-2").await;
    assert!(
        broken["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not valid JSON")),
        "{broken:#}"
    );
    send(&json!({"action": "info", "appid": "testapp", "crawlid": crawlid, "uuid": "unknown-3", "bogus": 1}).to_string()).await;
    let unknown = answer(&answers, "unknown-3").await;
    assert_eq!(
        (
            unknown["action"].as_str(),
            unknown["error"]["field"].as_str()
        ),
        (Some("info"), Some("bogus")),
        "{unknown:#}"
    );
    send(&json!({"url": cluster.site.root(), "appid": "testapp", "crawlid": "x", "priority": 0, "uuid": "crawl-4"}).to_string()).await;
    let crawl = answer(&answers, "crawl-4").await;
    assert_eq!(
        (crawl["action"].as_str(), crawl["error"]["field"].as_str()),
        (Some("crawl"), Some("priority")),
        "{crawl:#}"
    );
    send(&json!({"action": "info", "appid": "testapp", "crawlid": "no-such-crawl", "uuid": "missing-5"}).to_string()).await;
    let missing = answer(&answers, "missing-5").await;
    assert_eq!(missing["error"]["field"], "crawlid", "{missing:#}");
    send(&json!({"action": "info", "appid": "testapp", "spiderid": "wandering", "uuid": "app-info-12"}).to_string()).await;
    let app = answer(&answers, "app-info-12").await;
    assert_eq!(
        (app["spiderid"].as_str(), app["total_crawlids"].as_u64()),
        (Some("wandering"), Some(1)),
        "{app:#}"
    );
    assert!(app["total_domains"].is_u64(), "{app:#}");
    assert!(app["crawlids"][&crawlid]["domains"].is_object(), "{app:#}");

    // stats: the dump's counts match the crawl.
    send(
        &json!({"action": "stats", "appid": "testapp", "uuid": "stats-6", "stats": "all"})
            .to_string(),
    )
    .await;
    let stats = answer(&answers, "stats-6").await;
    assert_eq!(
        stats["crawler"]["wandering_200_lifetime"], pages_now,
        "{stats:#}"
    );
    assert_eq!(stats["queue"]["total_backlog"], 0, "{stats:#}");

    // The same in Scrapy Cluster's own form, without action, answered in its shapes.
    send(&json!({"appid": "testapp", "uuid": "sc-stats-10", "stats": "crawler"}).to_string()).await;
    let sc = answer(&answers, "sc-stats-10").await;
    assert_eq!(sc.get("action"), None, "{sc:#}");
    assert_eq!(sc["stats"], "crawler", "{sc:#}");
    assert_eq!(
        sc["spiders"]["wandering"]["200"]["lifetime"], pages_now,
        "{sc:#}"
    );
    assert_eq!(sc["queues"]["total_backlog"], 0, "{sc:#}");
    assert!(sc["machines"]["count"].is_u64(), "{sc:#}");

    // stop without a crawlid is refused (as Scrapy Cluster does), and nothing is deleted.
    send(&json!({"action": "stop", "appid": "testapp", "spiderid": "wandering", "uuid": "stop-all-11"}).to_string()).await;
    let refused = answer(&answers, "stop-all-11").await;
    assert_eq!(refused["error"]["field"], "crawlid", "{refused:#}");
    assert!(
        cluster.job_by_crawlid(&crawlid).await.is_some(),
        "the crawl is still there"
    );

    // A message without a uuid is answered without one (not `"uuid": null`).
    send("[]").await;

    // Scrapy Cluster's own client (kafka-python with its stock codecs only) reads every page
    // record and every answer, and each record is a RawResponseItem as it documents them.
    let brokers = std::env::var("KAFKA_BROKERS").expect("KAFKA_BROKERS (make env-up)");
    let firehose = kubecrawl_api::contract::topic::firehose(&cluster.topic_prefix);
    let count = usize::try_from(pages_now).expect("a count");
    let records = read_topic(&brokers, &firehose, count)
        .await
        .expect("Scrapy Cluster's client reads the firehose");
    for record in &records {
        check_raw_response_item(record).expect("a RawResponseItem");
        assert_eq!(record["crawlid"], json!(crawlid));
    }
    let outbound = kubecrawl_api::contract::topic::outbound(&cluster.topic_prefix);
    let answered = read_topic(&brokers, &outbound, 0)
        .await
        .expect("Scrapy Cluster's client reads the answers");
    assert!(
        answered
            .iter()
            .any(|a| a["uuid"] == "sc-stats-10" && a["spiders"].is_object()),
        "{answered:#?}"
    );
    assert!(
        answered.iter().all(|a| a.get("uuid") != Some(&Value::Null)),
        "an answer says \"uuid\": null, which Scrapy Cluster's REST service takes for a poll result"
    );

    // expire: the job's expires is now; the operator purges it and marks it Expired.
    send(
        &json!({"action": "expire", "appid": "testapp", "crawlid": crawlid, "uuid": "expire-9"})
            .to_string(),
    )
    .await;
    let expired = answer(&answers, "expire-9").await;
    assert_eq!(expired["result"], "expired", "{expired:#}");
    cluster
        .wait_crawl(
            &crawlid,
            "the expired job to be Expired",
            Duration::from_secs(30),
            |j| phase(j) == Phase::Expired,
        )
        .await;

    // Scrapy Cluster's expired notification follows, once the operator has purged it.
    let notified = answer_where(&answers, |v| {
        v["action"] == "expired" && v["crawlid"] == json!(crawlid)
    })
    .await;
    assert_eq!(
        (notified["appid"].as_str(), notified["spiderid"].as_str()),
        (Some("testapp"), Some("wandering")),
        "{notified:#}"
    );
    assert!(notified["total_expired"].is_u64(), "{notified:#}");

    // stop: the CrawlJob goes, and with it (through the operator's finalizer) its frontier state.
    send(&json!({"action": "stop", "appid": "testapp", "crawlid": crawlid, "spiderid": "wandering", "uuid": "stop-7"}).to_string()).await;
    let stop = answer(&answers, "stop-7").await;
    assert_eq!(stop["result"], "stopped", "{stop:#}");
    cluster
        .eventually(
            "the stopped job to be gone",
            Duration::from_secs(30),
            async || {
                cluster
                    .job_by_crawlid(&crawlid)
                    .await
                    .is_none()
                    .then_some(())
            },
        )
        .await;
    let frontier = cluster.frontier().await.expect("the frontier");
    let jobref = kubecrawl_frontier::JobRef {
        spiderid: "wandering".into(),
        appid: "testapp".into(),
        crawlid: crawlid.clone(),
    };
    assert_eq!(
        frontier.job_stats(&jobref).await.expect("reads"),
        None,
        "the stopped job was not purged"
    );

    // SIGTERM: the ingest finishes and exits 0.
    let pid = ingest.id().expect("ingest runs");
    nix_kill(pid);
    let status = tokio::time::timeout(Duration::from_secs(20), ingest.wait())
        .await
        .expect("ingest stops within 20 s of SIGTERM")
        .expect("ingest exits");
    assert!(
        status.success(),
        "ingest exited with {status}; log:\n{}",
        ingest_log()
    );
    teardown(cluster).await;
    println!("the kafka walkthrough took {:?}", started.elapsed());
}

/// Sends SIGTERM to a process this test started.
fn nix_kill(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}
