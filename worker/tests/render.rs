//! Rendering pages in headless Chromium (`crawl --render`, the worker's `render` stage) on the
//! synthetic site's script area (`kubecrawl_e2e::site::scripts`): pages whose links exist only
//! once their JavaScript ran, one that loads them after a timer, one that never settles, one
//! that builds a huge DOM. Needs Debian's `chromium-headless-shell` (`make test` installs it).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kubecrawl_api::PageRecord;
use kubecrawl_e2e::site::{MAIN_HOST, SiteConfig, TestSite, scripts};
use kubecrawl_worker::fetch::{FetchConfig, Fetcher};
use kubecrawl_worker::render::{self, Document, Limits, RenderConfig, RenderError, Renderer};
use kubecrawl_worker::spider::Registry;
use kubecrawl_worker::standalone::CrawlSummary;

#[path = "support/standalone.rs"]
mod support;

const DEADLINE: Duration = Duration::from_secs(180);

async fn script_site() -> TestSite {
    TestSite::start(SiteConfig::default().with_scripts(true))
        .await
        .expect("site starts")
}

async fn crawl(site: &TestSite, flags: &[&str], name: &str) -> (CrawlSummary, Vec<PageRecord>) {
    let out: PathBuf = std::env::temp_dir().join(format!(
        "kubecrawl-render-{name}-{}.jsonl",
        std::process::id()
    ));
    let mut argv = vec![
        site.url(MAIN_HOST, scripts::INDEX),
        "--maxdepth".to_owned(),
        "3".to_owned(),
    ];
    argv.extend(flags.iter().map(|f| (*f).to_owned()));
    support::crawl_site(site, &argv, &out, &Registry::builtin(), DEADLINE).await
}

fn counter(summary: &CrawlSummary, name: &str) -> u64 {
    summary.stats.counters.get(name).copied().unwrap_or(0)
}

fn record<'r>(records: &'r [PageRecord], site: &TestSite, path: &str) -> &'r PageRecord {
    let url = site.url(MAIN_HOST, path);
    records
        .iter()
        .find(|r| r.url == url)
        .unwrap_or_else(|| panic!("no record of {url}"))
}

fn urls(records: &[PageRecord]) -> BTreeSet<String> {
    records.iter().map(|r| r.url.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_renders_the_script_pages_and_finds_the_ground_truth_within_the_limits() {
    let site = script_site().await;
    let truth = site.script_truth();
    let (summary, records) = crawl(
        &site,
        &[
            "--render",
            "auto",
            "--render-max-elements",
            "100000",
            "--render-timeout",
            "4",
        ],
        "auto",
    )
    .await;
    println!("{summary}");

    assert_eq!(urls(&records), truth.rendered, "the pages found");
    // auto fires on the five script pages (a script and little text), not on the index or
    // the plain page (a script and prose) or the prose pages (no script).
    assert_eq!(counter(&summary, render::counter::AUTO), 5);
    // /js/huge is past maxElements: published as fetched, so its link is never seen.
    assert_eq!(counter(&summary, render::counter::TOO_LARGE), 1);
    assert_eq!(counter(&summary, render::counter::RENDERED), 4);
    // /js/forever polls forever: read at three quarters of its time, its link found.
    assert_eq!(counter(&summary, render::counter::UNSETTLED), 1);
    assert_eq!(counter(&summary, render::counter::FAILED), 0);

    let rendered: BTreeSet<&str> = records
        .iter()
        .filter(|r| r.rendered)
        .map(|r| {
            r.url
                .rsplit_once(&format!(":{}", site.port()))
                .map_or("", |(_, p)| p)
        })
        .collect();
    assert_eq!(
        rendered,
        BTreeSet::from(["/js/app", "/js/timer", "/js/forever", "/js/sub"])
    );
    let app = record(&records, &site, "/js/app");
    assert!(
        app.body.contains("<h1 id=\"rendered\">Rendered app</h1>"),
        "{}",
        app.body
    );
    assert_eq!(app.links.len(), scripts::APP_LINKS);
    let huge = record(&records, &site, "/js/huge");
    assert!(!huge.rendered && huge.links.is_empty());
    // Scripts and data are fetched through the worker; an image is refused before it is
    // requested.
    let sub = record(&records, &site, "/js/sub");
    assert!(
        sub.body.contains("<p id=\"data\">forty-two</p>"),
        "{}",
        sub.body
    );
    assert!(sub.body.contains("image refused"), "{}", sub.body);
    assert_eq!(site.hits("/static/logo.png"), 0);
    assert_eq!(site.hits("/js/app.js"), 1);
    assert_eq!(site.hits("/js/timer.json"), 1);
    // The polling page was stopped when it was read.
    let polls = site
        .request_log()
        .iter()
        .filter(|h| h.target.starts_with("/js/poll"))
        .count();
    assert!((1..=60).contains(&polls), "{polls} polls");
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_rendering_the_script_links_are_not_found_and_with_patterns_only_matching_pages_render()
 {
    let site = script_site().await;
    let truth = site.script_truth();
    let (summary, records) = crawl(&site, &[], "never").await;
    assert_eq!(urls(&records), truth.unrendered);
    assert!(records.iter().all(|r| !r.rendered));
    assert_eq!(counter(&summary, render::counter::RENDERED), 0);

    let (summary, records) = crawl(
        &site,
        &[
            "--render",
            "patterns",
            "--render-pattern",
            "/js/(app|timer)$",
            "--screenshot-max-bytes",
            "5000000",
        ],
        "patterns",
    )
    .await;
    let mut expected = truth.unrendered.clone();
    expected.extend(
        truth
            .rendered
            .iter()
            .filter(|u| u.contains("/js/app/") || u.contains("/js/timer/"))
            .cloned(),
    );
    assert_eq!(urls(&records), expected);
    assert_eq!(counter(&summary, render::counter::RENDERED), 2);
    assert_eq!(counter(&summary, render::counter::AUTO), 0);
    // Rendered records carry their screenshot; the others none.
    for r in &records {
        assert_eq!(r.screenshot.is_some(), r.rendered, "{}", r.url);
    }
    site.shutdown().await;
}

/// A renderer whose pages fetch with the guard on or off; `site`'s hosts resolve to it.
fn renderer(allow_private_networks: bool, site: Option<&TestSite>) -> Renderer {
    let resolve = site.map_or_else(Vec::new, |site| {
        site.hosts()
            .into_iter()
            .map(|(h, a)| (h.to_owned(), a))
            .collect()
    });
    let fetcher = Fetcher::new(FetchConfig {
        allow_private_networks,
        resolve,
        ..FetchConfig::default()
    })
    .expect("client builds");
    Renderer::new(
        RenderConfig {
            contexts: 2,
            js_heap_mb: 64,
            ..RenderConfig::default()
        },
        fetcher,
    )
}

fn limits(timeout: Duration) -> Limits {
    Limits {
        timeout,
        settle: Duration::from_millis(500),
        max_elements: 100_000,
        screenshot_max_bytes: None,
    }
}

fn document(url: &str, html: &str) -> Document {
    Document {
        url: url.parse().expect("valid url"),
        status: 200,
        headers: vec![("content-type".to_owned(), "text/html".to_owned())],
        body: bytes::Bytes::from(html.to_owned()),
        user_agent: None,
        robots: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_s_requests_to_private_addresses_are_refused_by_the_guard() {
    let site = script_site().await;
    let guarded = renderer(false, Some(&site));
    // The document is given, not fetched; its script asks its own origin, whose name
    // resolves to the site on 127.0.0.1, for data (same origin: the browser lets it through).
    let page = site.url(MAIN_HOST, "/page");
    let html = "<html><body><div id=root></div><script>fetch('/js/data.json')\
                .then(r => r.json()).then(\
                d => document.getElementById('root').textContent = 'got ' + d.answer, \
                () => document.getElementById('root').textContent = 'refused');\
                </script></body></html>";
    let rendered = guarded
        .render(&document(&page, html), &limits(Duration::from_secs(10)))
        .await
        .expect("renders");
    assert!(
        rendered.html.contains("<div id=\"root\">refused</div>"),
        "{}",
        rendered.html
    );
    assert_eq!(
        site.hits("/js/data.json"),
        0,
        "the private address was reached"
    );

    // With private networks allowed (as in the other tests), the same page gets its data.
    let open = renderer(true, Some(&site));
    let rendered = open
        .render(&document(&page, html), &limits(Duration::from_secs(10)))
        .await
        .expect("renders");
    assert!(
        rendered
            .html
            .contains("<div id=\"root\">got forty-two</div>"),
        "{}",
        rendered.html
    );
    assert_eq!(site.hits("/js/data.json"), 1);
    guarded.stop().await;
    open.stop().await;
    site.shutdown().await;
}

/// The processes of `pid`'s tree that are alive (zombies, already dead, are not).
fn live_tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut at = 0;
    while at < all.len() {
        let tasks = format!("/proc/{}/task", all[at]);
        for task in std::fs::read_dir(tasks).into_iter().flatten().flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            all.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
        at += 1;
    }
    all.retain(|p| alive(*p));
    all
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(") ")
                .map(|(_, rest)| !rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_that_dies_fails_only_its_open_pages_and_the_next_render_starts_another() {
    let site = script_site().await;
    let renderer = std::sync::Arc::new(renderer(true, Some(&site)));
    renderer.start().await.expect("the browser starts");
    let first = renderer.browser_pid().await.expect("a pid");
    let tree = live_tree(first);
    assert!(
        tree.len() >= 2,
        "the browser runs its own processes: {tree:?}"
    );
    // A page that never settles keeps its context open while the browser is killed.
    let forever = site.url(MAIN_HOST, "/js/forever");
    let html = scripts_page(&site, "/js/forever").await;
    let open = {
        let renderer = renderer.clone();
        let document = document(&forever, &html);
        tokio::spawn(async move {
            renderer
                .render(&document, &limits(Duration::from_secs(20)))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(first).expect("a pid")),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the browser");
    let failed = open.await.expect("the render task ends");
    assert!(matches!(failed, Err(RenderError::Browser(_))), "{failed:?}");
    wait_until(
        "the dead browser's processes ending",
        Duration::from_secs(10),
        || tree.iter().all(|p| !alive(*p)),
    )
    .await;

    // The next render starts a new browser and works.
    let app = site.url(MAIN_HOST, "/js/timer");
    let html = scripts_page(&site, "/js/timer").await;
    let rendered = renderer
        .render(&document(&app, &html), &limits(Duration::from_secs(10)))
        .await
        .expect("renders on a new browser");
    assert_eq!(renderer.starts(), 2);
    assert!(rendered.html.contains("/js/timer/3"), "{}", rendered.html);
    let second = renderer.browser_pid().await.expect("a pid");
    let tree = live_tree(second);
    renderer.stop().await;
    wait_until(
        "the stopped browser's processes ending",
        Duration::from_secs(10),
        || tree.iter().all(|p| !alive(*p)),
    )
    .await;
    site.shutdown().await;
}

/// The HTML the site serves at `path`, as the worker would have fetched it.
async fn scripts_page(site: &TestSite, path: &str) -> String {
    let fetcher = Fetcher::new(FetchConfig {
        allow_private_networks: true,
        resolve: site
            .hosts()
            .into_iter()
            .map(|(h, a)| (h.to_owned(), a))
            .collect(),
        ..FetchConfig::default()
    })
    .expect("client builds");
    let url = site.url(MAIN_HOST, path).parse().expect("valid url");
    let page = fetcher
        .fetch(&url, &Default::default(), |_| true)
        .await
        .expect("the site answers");
    String::from_utf8(page.body.to_vec()).expect("utf-8")
}

/// `kubecrawl-worker crawl` of the script page `path`, rendering it, as a process of its own
/// (so that the browser starts through the worker binary, as in production).
fn worker_process(
    site: &TestSite,
    path: &str,
    timeout: &str,
    out: &std::path::Path,
) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_kubecrawl-worker"))
        .args(["crawl", &site.url(MAIN_HOST, path), "--maxdepth", "1"])
        .args(["--render", "always", "--render-timeout", timeout])
        .args(["--allow-private-networks", "--no-progress", "--delay", "0s"])
        .args(["--resolve", &site.resolve(), "-o"])
        .arg(out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the worker starts")
}

/// The worker's child processes.
fn children(pid: u32) -> Vec<u32> {
    let tree = live_tree(pid);
    tree.into_iter().filter(|p| *p != pid).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_browser_costs_the_worker_a_retry_of_its_open_page_not_the_page() {
    let site = script_site().await;
    let out = std::env::temp_dir().join(format!(
        "kubecrawl-render-crash-{}.jsonl",
        std::process::id()
    ));
    // /js/forever never settles: read at 4.5 s of its 6, so it is open when the browser dies.
    let mut worker = worker_process(&site, "/js/forever", "6", &out);
    let pid = worker.id();
    wait_until("the browser starting", Duration::from_secs(30), || {
        !children(pid).is_empty()
    })
    .await;
    // The browser is the worker's child; wait until the page is being rendered.
    wait_until("the page polling", Duration::from_secs(30), || {
        site.hits("/js/forever") > 0
            && site
                .request_log()
                .iter()
                .any(|h| h.target.starts_with("/js/poll"))
    })
    .await;
    let browser = children(pid)[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(browser).expect("a pid")),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the browser");
    let output = tokio::task::spawn_blocking(move || {
        let status = worker.wait().expect("the worker ends");
        let mut stderr = String::new();
        std::io::Read::read_to_string(worker.stderr.as_mut().expect("piped"), &mut stderr)
            .expect("stderr reads");
        (status, stderr)
    })
    .await
    .expect("waits");
    let (status, stderr) = output;
    assert!(status.success(), "{stderr}");
    let summary = stderr
        .lines()
        .filter(|l| l.starts_with("outcomes:"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(summary.contains("render_retry: 1"), "{stderr}");
    let records = kubecrawl_e2e::records::take_json_lines(&out).expect("records");
    let forever = record(&records, &site, "/js/forever");
    assert!(
        forever.rendered,
        "the page was rendered by the second browser"
    );
    assert_eq!(
        urls(&records).len(),
        2,
        "the page and the link its script added"
    );
    // The page was fetched twice (once per attempt), rendered once.
    assert_eq!(site.hits("/js/forever"), 2);
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_with_sigkill_leaves_no_browser_behind() {
    let site = script_site().await;
    let out = std::env::temp_dir().join(format!(
        "kubecrawl-render-kill-{}.jsonl",
        std::process::id()
    ));
    let mut worker = worker_process(&site, "/js/forever", "60", &out);
    let pid = worker.id();
    wait_until("the page polling", Duration::from_secs(30), || {
        site.request_log()
            .iter()
            .any(|h| h.target.starts_with("/js/poll"))
    })
    .await;
    let browser = children(pid);
    assert!(!browser.is_empty());
    let tree: Vec<u32> = browser.iter().flat_map(|b| live_tree(*b)).collect();
    assert!(
        tree.len() >= 2,
        "the browser runs its own processes: {tree:?}"
    );
    worker.kill().expect("SIGKILL the worker");
    let _ = worker.wait();
    wait_until(
        "every browser process ending",
        Duration::from_secs(10),
        || tree.iter().all(|p| !alive(*p)),
    )
    .await;
    let _ = std::fs::remove_file(&out);
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_past_the_js_heap_limit_crashes_its_renderer_not_the_browser() {
    let renderer = renderer(false, None);
    let hog = "<html><body><script>const kept = []; \
               while (true) kept.push(new Array(1000000).fill(7));</script></body></html>";
    let started = Instant::now();
    let crashed = renderer
        .render(
            &document("http://hog.example/", hog),
            &limits(Duration::from_secs(30)),
        )
        .await;
    assert!(
        matches!(crashed, Err(RenderError::PageCrashed)),
        "{crashed:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    // The browser lives on: the next page renders in it.
    let fine = "<html><body><div id=root></div><script>\
                document.getElementById('root').textContent = 'alive';</script></body></html>";
    let rendered = renderer
        .render(
            &document("http://fine.example/", fine),
            &limits(Duration::from_secs(10)),
        )
        .await
        .expect("renders");
    assert!(rendered.html.contains(">alive</div>"), "{}", rendered.html);
    assert_eq!(renderer.starts(), 1);
    renderer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_screenshot_is_kept_only_within_its_bound() {
    let renderer = renderer(false, None);
    let page = "<html><body style='background:#c33'><h1>shot</h1></body></html>";
    let mut bounded = limits(Duration::from_secs(10));
    bounded.screenshot_max_bytes = Some(5 * 1024 * 1024);
    let rendered = renderer
        .render(&document("http://shot.example/", page), &bounded)
        .await
        .expect("renders");
    let shot = rendered.screenshot.expect("a screenshot");
    let jpeg =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &shot).expect("base64");
    assert_eq!(&jpeg[..3], [0xff, 0xd8, 0xff], "a JPEG");
    assert!(!rendered.screenshot_too_large);
    // The same page with a bound below its size: no screenshot, and it says why.
    bounded.screenshot_max_bytes = Some(jpeg.len() - 1);
    let rendered = renderer
        .render(&document("http://shot.example/", page), &bounded)
        .await
        .expect("renders");
    assert!(rendered.screenshot.is_none() && rendered.screenshot_too_large);
    renderer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_gets_at_most_its_share_of_requests_no_websocket_and_nothing_of_the_page_before() {
    let site = script_site().await;
    let renderer = renderer(true, Some(&site));
    let page = site.url(MAIN_HOST, "/page");
    // 250 data requests (200 are answered), a WebSocket, and a cookie and storage left for
    // the next page.
    let busy = "<html><body><div id=root></div><script>\
                document.cookie = 'left=behind'; localStorage.setItem('left', 'behind');\
                try { new WebSocket('ws://127.0.0.1:PORT/js/socket'); } catch (e) {}\
                Promise.allSettled([...Array(250).keys()].map(i => fetch('/js/data.json?' + i)))\
                .then(r => document.getElementById('root').textContent = \
                  r.filter(x => x.status === 'fulfilled').length + ' answered');\
                </script></body></html>";
    let rendered = renderer
        .render(
            &document(&page, &busy.replace("PORT", &site.port().to_string())),
            &limits(Duration::from_secs(20)),
        )
        .await
        .expect("renders");
    assert!(
        rendered.html.contains(">200 answered</div>"),
        "{}",
        rendered.html
    );
    let log = site.request_log();
    let data = log
        .iter()
        .filter(|h| h.target.starts_with("/js/data.json"))
        .count();
    assert_eq!(data, render::MAX_SUBRESOURCES);
    assert!(
        !log.iter().any(|h| h.target.starts_with("/js/socket")),
        "the WebSocket reached the site"
    );
    // The next page of the same origin, in the same browser, finds nothing of the first.
    let reader = "<html><body><div id=root></div><script>\
                  document.getElementById('root').textContent = \
                  'cookie=' + document.cookie + ';storage=' + localStorage.getItem('left');\
                  </script></body></html>";
    let rendered = renderer
        .render(&document(&page, reader), &limits(Duration::from_secs(10)))
        .await
        .expect("renders");
    assert!(
        rendered.html.contains(">cookie=;storage=null</div>"),
        "{}",
        rendered.html
    );
    renderer.stop().await;
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_s_requests_obey_robots_txt_unless_the_job_ignores_it() {
    let site = script_site().await;
    let renderer = renderer(true, Some(&site));
    let page = site.url(MAIN_HOST, "/page");
    // robots.txt disallows /private/ (but /private/press/) for every agent.
    let html = "<html><body><div id=a></div><div id=b></div><script>\
                const show = (id, path) => fetch(path).then(r => r.text()).then(\
                  () => document.getElementById(id).textContent = 'got ' + path, \
                  () => document.getElementById(id).textContent = 'refused ' + path);\
                show('a', '/private/0'); show('b', '/js/data.json');\
                </script></body></html>";
    let mut obeying = document(&page, html);
    obeying.robots = Some(std::sync::Arc::new(
        kubecrawl_worker::robots::RobotsCache::new("kubecrawl", 100),
    ));
    let rendered = renderer
        .render(&obeying, &limits(Duration::from_secs(10)))
        .await
        .expect("renders");
    assert!(
        rendered.html.contains(">refused /private/0</div>")
            && rendered.html.contains(">got /js/data.json</div>"),
        "{}",
        rendered.html
    );
    assert_eq!(
        site.hits("/private/0"),
        0,
        "a disallowed request reached the site"
    );
    assert_eq!(site.hits("/robots.txt"), 1);
    // A job that ignores robots.txt: its pages' requests do not ask it.
    let rendered = renderer
        .render(&document(&page, html), &limits(Duration::from_secs(10)))
        .await
        .expect("renders");
    assert!(
        rendered.html.contains(">got /private/0</div>"),
        "{}",
        rendered.html
    );
    assert_eq!(site.hits("/private/0"), 1);
    renderer.stop().await;
    site.shutdown().await;
}
