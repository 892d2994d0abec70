//! What reading a sitemap costs: a full-size one (50,000 URLs, about 5 MB of XML), plain and
//! gzipped, read again and again as a worker reads it ([`kubecrawl_worker::sitemap::read`]).
//! Prints the figures and, last, one JSON line:
//!
//! - `ms_per_sitemap_xml`, `ms_per_sitemap_gzip`: the median time to read one whole sitemap;
//! - `urls_per_s_xml`: URLs read per second of one core;
//! - `peak_rss_growth_mb`: how much the process's peak memory grew while reading (the body
//!   held, the decompressed copy and the listing).
//!
//! No services needed: `cargo bench -p kubecrawl-worker --bench sitemap` (`make bench-sitemap`).

use std::io::Write as _;
use std::time::{Duration, Instant, SystemTime};

use kubecrawl_worker::sitemap::{MAX_ENTRIES, read};

const RUNS: usize = 15;

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn time_reads(body: &[u8], since: Option<SystemTime>) -> Duration {
    let times = (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            let listing = read(body, false, since);
            let elapsed = started.elapsed();
            assert_eq!(
                listing.pages.len() as u64 + listing.unmodified,
                MAX_ENTRIES as u64,
                "every entry read"
            );
            assert!(listing.problem.is_none(), "{:?}", listing.problem);
            elapsed
        })
        .collect();
    median(times)
}

fn main() {
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n",
    );
    for i in 0..MAX_ENTRIES {
        xml.push_str(&format!(
            "  <url><loc>https://www.example.org/catalogue/section-{}/item-{i}.html</loc><lastmod>2026-{:02}-{:02}</lastmod><changefreq>weekly</changefreq></url>\n",
            i % 97,
            i % 12 + 1,
            i % 28 + 1
        ));
    }
    xml.push_str("</urlset>\n");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(xml.as_bytes()).expect("gzips");
    let gzip = encoder.finish().expect("gzips");
    println!(
        "a sitemap of {MAX_ENTRIES} URLs: {:.1} MB of XML, {:.2} MB gzipped",
        xml.len() as f64 / 1e6,
        gzip.len() as f64 / 1e6
    );

    let before = peak_rss_kb();
    let plain = time_reads(xml.as_bytes(), None);
    let zipped = time_reads(&gzip, None);
    let since = SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000);
    let filtered = time_reads(xml.as_bytes(), Some(since));
    let growth_mb = peak_rss_kb().saturating_sub(before) as f64 / 1024.0;
    let urls_per_s = MAX_ENTRIES as f64 / plain.as_secs_f64();
    println!(
        "read (median of {RUNS}): xml {plain:?}, gzip {zipped:?}, xml with modifiedSince {filtered:?}"
    );
    println!("{urls_per_s:.0} URLs/s of one core; peak memory grew {growth_mb:.1} MB");
    println!(
        "{}",
        serde_json::json!({
            "ms_per_sitemap_xml": (plain.as_secs_f64() * 1e4).round() / 10.0,
            "ms_per_sitemap_gzip": (zipped.as_secs_f64() * 1e4).round() / 10.0,
            "ms_per_sitemap_modified_since": (filtered.as_secs_f64() * 1e4).round() / 10.0,
            "urls_per_s_xml": urls_per_s.round(),
            "peak_rss_growth_mb": (growth_mb * 10.0).round() / 10.0,
        })
    );
}
