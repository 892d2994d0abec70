//! `kubecrawl-worker crawl --warc-dir` against the synthetic site, checked by an independent
//! reader: warcio (PyPI), which `make env-up` installs and names in `WARCIO`. `warcio check`
//! must pass with every digest verified, and `warcio index` must list every page of the
//! site's ground truth with its status and the SHA-1 of the body this test fetches itself,
//! as the site sends it (a compressed page compressed).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::time::Duration;

use kubecrawl_api::PageRecord;
use kubecrawl_e2e::site::{MAIN_HOST, SiteConfig, TestSite, traps};
use kubecrawl_worker::spider::Registry;
use kubecrawl_worker::standalone::CrawlSummary;

#[path = "support/standalone.rs"]
mod support;

/// How long one crawl of the small site may take before the test counts it as hung.
const DEADLINE: Duration = Duration::from_secs(120);

/// The warcio command that `make env-up` installed.
fn warcio() -> PathBuf {
    PathBuf::from(std::env::var("WARCIO").expect(
        "WARCIO is not set: run `make env-up` and source .testenv/env (it names the warcio \
         that tests/env/build-python.sh installs)",
    ))
}

/// A fresh directory under the system's temporary directory.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "kubecrawl-warc-test-{name}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Runs `kubecrawl-worker crawl <seeds> <args> --warc-dir <work>/warc -o <work>/pages.jsonl`
/// in-process against `site`.
async fn run(
    site: &TestSite,
    work: &Path,
    seeds: &[String],
    args: &[&str],
) -> (CrawlSummary, Vec<PageRecord>) {
    let mut argv = seeds.to_vec();
    argv.extend(["--warc-dir".into(), work.join("warc").display().to_string()]);
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    let out = work.join("pages.jsonl");
    support::crawl_site(site, &argv, &out, &Registry::builtin(), DEADLINE).await
}

/// The WARC files of a crawl, by name; none may be left open.
fn warc_files(work: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(work.join("warc"))
        .expect("the warc directory exists")
        .map(|e| e.expect("a directory entry").path())
        .collect();
    files.sort();
    for file in &files {
        let name = file.file_name().expect("a file name").to_string_lossy();
        assert!(
            name.starts_with("kubecrawl-") && name.ends_with(".warc.gz"),
            "{name} is not a closed WARC file"
        );
    }
    assert!(!files.is_empty(), "no WARC file written");
    files
}

/// `warcio check -v` over `files`: it must exit 0 and verify the digests of `records`
/// records (a record without digests passes `check` unverified, so the count matters).
fn check(files: &[PathBuf], records: usize) {
    let output = Process::new(warcio())
        .arg("check")
        .arg("-v")
        .args(files)
        .output()
        .expect("warcio runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "warcio check failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let passed = stdout.matches("digest pass").count();
    assert_eq!(
        passed, records,
        "warcio check verified {passed} of {records} records: {stdout}"
    );
}

/// One line of `warcio index`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Indexed {
    warc_type: String,
    uri: Option<String>,
    status: Option<u16>,
    payload_digest: Option<String>,
    truncated: Option<String>,
}

/// `warcio index` of `files`, with the fields the test compares.
fn index(files: &[PathBuf]) -> Vec<Indexed> {
    let output = Process::new(warcio())
        .args([
            "index",
            "--fields",
            "warc-type,warc-target-uri,http:status,warc-payload-digest,warc-truncated",
        ])
        .args(files)
        .output()
        .expect("warcio runs");
    assert!(
        output.status.success(),
        "warcio index failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let text = |name: &str| v.get(name).and_then(|x| x.as_str()).map(str::to_owned);
            Indexed {
                warc_type: text("warc-type").expect("every record has a type"),
                uri: text("warc-target-uri"),
                status: text("http:status").map(|s| s.parse().expect("a numeric status")),
                payload_digest: text("warc-payload-digest"),
                truncated: text("warc-truncated"),
            }
        })
        .collect()
}

/// The `sha1:<base 32>` digests of `bodies`, computed by Python's hashlib and base64 in the
/// warcio environment: apart from the worker's own code.
fn python_digests(work: &Path, bodies: &[Vec<u8>]) -> Vec<String> {
    let dir = work.join("bodies");
    std::fs::create_dir_all(&dir).expect("bodies dir");
    for (i, body) in bodies.iter().enumerate() {
        std::fs::write(dir.join(i.to_string()), body).expect("body written");
    }
    let python = warcio().with_file_name("python");
    let output = Process::new(python)
        .args([
            "-c",
            "import base64, hashlib, sys\n\
             for i in range(int(sys.argv[2])):\n\
             \x20   data = open(f'{sys.argv[1]}/{i}', 'rb').read()\n\
             \x20   print('sha1:' + base64.b32encode(hashlib.sha1(data).digest()).decode())",
        ])
        .arg(&dir)
        .arg(bodies.len().to_string())
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The body of `url` as the site sends it (a gzip page still compressed), fetched by this
/// test.
async fn fetch(client: &reqwest::Client, url: &str) -> Vec<u8> {
    client
        .get(url)
        .send()
        .await
        .expect("the site answers")
        .bytes()
        .await
        .expect("a whole body")
        .to_vec()
}

fn client(site: &TestSite) -> reqwest::Client {
    kubecrawl_e2e::install_tls_provider();
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .no_gzip()
        .redirect(reqwest::redirect::Policy::none());
    for (host, addr) in site.hosts() {
        builder = builder.resolve(host, addr);
    }
    builder.build().expect("a client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warcio_reads_every_page_of_a_crawl_with_its_status_and_digest() {
    every_page_of_a_crawl(false).await;
}

/// The same with the main pages sent gzip-compressed, as most servers send HTML: each record
/// holds a page as sent, compressed, and its digest is of those bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warcio_reads_every_compressed_page_as_sent() {
    every_page_of_a_crawl(true).await;
}

/// Crawls the site (its main pages gzip-compressed if `gzip`) with WARC output and checks
/// every page's response record against the ground truth and the body as the site sends it.
async fn every_page_of_a_crawl(gzip: bool) {
    let site = TestSite::start(SiteConfig::default().with_gzip_pages(gzip))
        .await
        .expect("site starts");
    let truth = site.reachable(&site.reach()).expect("ground truth");
    let work = temp_dir("site");
    // Small files, so that the crawl rolls over several and each is checked.
    let (summary, records) = run(
        &site,
        &work,
        &[site.root()],
        &[
            "--maxdepth",
            "1000",
            "--allowed-domain",
            MAIN_HOST,
            "--warc-max-bytes",
            "100000",
        ],
    )
    .await;
    assert_eq!(summary.stats.pages, truth.len() as u64);
    let files = warc_files(&work);
    assert!(files.len() >= 3, "the crawl did not roll: {files:?}");
    let indexed = index(&files);

    let of_type =
        |kind: &str| -> Vec<&Indexed> { indexed.iter().filter(|r| r.warc_type == kind).collect() };
    assert_eq!(
        of_type("warcinfo").len(),
        files.len(),
        "one warcinfo per file"
    );
    let responses = of_type("response");
    assert_eq!(responses.len(), truth.len(), "one response per page");
    assert_eq!(of_type("request").len(), truth.len());
    assert_eq!(of_type("metadata").len(), truth.len());
    check(&files, indexed.len());

    // The ground truth: every requested URL, at its final URL (after redirects followed
    // inline), with its final status.
    let want: BTreeMap<String, u16> = truth
        .pages()
        .values()
        .map(|e| {
            (
                e.final_url.clone(),
                e.status.expect("every page has a status"),
            )
        })
        .collect();
    let got: BTreeMap<String, u16> = responses
        .iter()
        .map(|r| {
            (
                r.uri.clone().expect("a target URI"),
                r.status.expect("an HTTP status"),
            )
        })
        .collect();
    assert_eq!(got, want);
    // The JSON lines of the same crawl say the same.
    let from_records: BTreeMap<String, u16> = records
        .iter()
        .map(|r| (r.response_url.clone(), r.status_code))
        .collect();
    assert_eq!(from_records, want);
    assert!(responses.iter().all(|r| r.truncated.is_none()));
    assert!(
        want.values().any(|&s| s == 404) && want.values().any(|&s| s == 200),
        "the site has pages of more than one status: {want:?}"
    );

    // Each payload digest is the SHA-1 of the body as the site serves it.
    let client = client(&site);
    let urls: Vec<&String> = want.keys().collect();
    let mut bodies = Vec::new();
    for url in &urls {
        bodies.push(fetch(&client, url).await);
    }
    let compressed = bodies
        .iter()
        .filter(|b| b.starts_with(&[0x1f, 0x8b]))
        .count();
    if gzip {
        assert!(
            compressed > truth.len() / 2,
            "{compressed} of {} pages came compressed",
            truth.len()
        );
        // The spider's view is decoded.
        assert!(records.iter().all(|r| !r.body.starts_with('\u{1f}')));
    } else {
        assert_eq!(compressed, 0);
    }
    let digests = python_digests(&work, &bodies);
    let by_uri: BTreeMap<&str, &str> = responses
        .iter()
        .map(|r| {
            (
                r.uri.as_deref().unwrap_or_default(),
                r.payload_digest.as_deref().expect("a payload digest"),
            )
        })
        .collect();
    for (url, digest) in urls.iter().zip(&digests) {
        assert_eq!(by_uri[url.as_str()], digest, "{url}");
    }
    let distinct: BTreeSet<&String> = digests.iter().collect();
    assert!(distinct.len() > truth.len() / 2, "the pages differ");
    std::fs::remove_dir_all(&work).expect("cleaned up");
}

/// A body cut at the body cap is marked `WARC-Truncated: length` and its digest is of what
/// was kept; a gzip-encoded page is stored as the site sent it, compressed, with its
/// `content-encoding`, and decodes to the page; the records still check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_and_compressed_bodies_make_consistent_records() {
    const CAP: usize = 65_536;
    let site = TestSite::start(
        SiteConfig::default()
            .with_traps(true)
            .with_pages(20)
            .with_huge_bytes(1 << 20),
    )
    .await
    .expect("site starts");
    let seeds: Vec<String> = [traps::HUGE, traps::HUGE_CHUNKED, traps::GZIP]
        .iter()
        .map(|path| site.url(MAIN_HOST, path))
        .collect();
    let work = temp_dir("traps");
    let cap = CAP.to_string();
    let (_, records) = run(
        &site,
        &work,
        &seeds,
        &["--maxdepth", "0", "--max-body-bytes", &cap],
    )
    .await;
    assert_eq!(records.len(), 3, "{records:?}");
    let files = warc_files(&work);
    let indexed = index(&files);
    check(&files, indexed.len());

    let client = client(&site);
    let mut bodies = Vec::new();
    for seed in &seeds {
        let mut body = fetch(&client, seed).await;
        body.truncate(CAP);
        bodies.push(body);
    }
    let digests = python_digests(&work, &bodies);
    for ((seed, digest), huge) in seeds.iter().zip(&digests).zip([true, true, false]) {
        let response = indexed
            .iter()
            .find(|r| r.warc_type == "response" && r.uri.as_ref() == Some(seed))
            .unwrap_or_else(|| panic!("no response record for {seed}"));
        assert_eq!(response.payload_digest.as_ref(), Some(digest), "{seed}");
        assert_eq!(response.status, Some(200));
        let want = huge.then(|| "length".to_owned());
        assert_eq!(response.truncated, want, "{seed}");
    }

    // The site does send the gzip page compressed, and the digest above is of those bytes...
    let gzip = &seeds[2];
    let sent = client.get(gzip).send().await.expect("the site answers");
    assert_eq!(sent.headers()["content-encoding"], "gzip");
    let sent = sent.bytes().await.expect("a whole body");
    assert_eq!(sent.as_ref(), bodies[2].as_slice());
    let mut page = Vec::new();
    flate2::read::GzDecoder::new(sent.as_ref())
        .read_to_end(&mut page)
        .expect("the site's gzip decodes");
    assert!(
        String::from_utf8_lossy(&page).contains(traps::GZIP_CHILD),
        "the page links to its child"
    );
    // ...and its record, read back by warcio, holds them byte for byte with the server's
    // Content-Encoding and Content-Length, and decodes (warcio's content stream) to the page.
    let raw_path = work.join("record-raw");
    let decoded_path = work.join("record-decoded");
    let output = Process::new(warcio().with_file_name("python"))
        .args([
            "-c",
            // The record is read twice: its raw stream and its content stream share one
            // reader.
            "import sys\n\
             from warcio.archiveiterator import ArchiveIterator\n\
             def records():\n\
             \x20   for path in sys.argv[4:]:\n\
             \x20       for record in ArchiveIterator(open(path, 'rb')):\n\
             \x20           if record.rec_type == 'response' and record.rec_headers.get_header('WARC-Target-URI') == sys.argv[1]:\n\
             \x20               yield record\n\
             for record in records():\n\
             \x20   h = record.http_headers\n\
             \x20   print(h.get_header('Content-Encoding'), h.get_header('Content-Length'), h.get_header('X-Crawler-Content-Length'))\n\
             \x20   open(sys.argv[2], 'wb').write(record.raw_stream.read())\n\
             for record in records():\n\
             \x20   open(sys.argv[3], 'wb').write(record.content_stream().read())",
        ])
        .arg(gzip)
        .arg(&raw_path)
        .arg(&decoded_path)
        .args(&files)
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen = String::from_utf8(output.stdout).expect("utf-8");
    assert_eq!(seen.trim(), format!("gzip {} None", sent.len()));
    let stored = std::fs::read(&raw_path).expect("the record's payload");
    assert!(
        stored == sent.as_ref(),
        "the record holds the bytes as sent"
    );
    let decoded = std::fs::read(&decoded_path).expect("the record's decoded payload");
    assert!(decoded == page, "the record decodes to the page");
    // The page record (the spider's view) holds the decoded page.
    let record = records
        .iter()
        .find(|r| r.response_url == *gzip)
        .expect("a page record of the gzip page");
    assert!(
        record.body.contains(traps::GZIP_CHILD),
        "the page record is decoded"
    );
    assert!(!record.response_headers.contains_key("content-encoding"));
    std::fs::remove_dir_all(&work).expect("cleaned up");
}
