//! Spider-level rolling counts and worker heartbeats: the figures of Scrapy Cluster's
//! "Crawler Stats Dump", in bounded memory.
//!
//! Scrapy Cluster kept one sorted-set entry per response for each window, so its statistics
//! grew with the crawl. Here counts live in fixed time buckets of the granularities below, one
//! small hash (status label → count) per bucket; a bucket expires once no window needs it, so a
//! spider holds at most `sum(longest window / granularity)` hashes (about 550), however much
//! it crawls. A window's count is the sum of its buckets: exact at bucket boundaries and
//! otherwise off by at most one bucket at its old end.
//!
//! The Redis frontier keeps the acknowledgement cheap: it increments one counter, in the
//! current 10 s bucket; when the next 10 s bucket starts, the finished one is rolled up into
//! the coarser buckets and the lifetime hash (once per 10 s per spider), and readers add the
//! one bucket not yet rolled up. The in-memory twin writes every granularity directly; both
//! give the same counts.
//!
//! | granularity | windows served |
//! |---|---|
//! | 10 s | 900 |
//! | 60 s | 3600 |
//! | 600 s | 21600, 43200, 86400 |
//! | 3600 s | 604800 |
//!
//! `lifetime` is one hash that never expires. Heartbeats are a sorted set of worker names
//! scored by expiry per spider, pruned whenever touched, with a TTL on the key itself, so a
//! dead pod's name disappears after its ttl.

use std::collections::BTreeMap;

/// A rolling window of the stats dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Window {
    /// 900 s.
    Quarter,
    /// 3600 s.
    Hour,
    /// 21600 s.
    SixHours,
    /// 43200 s.
    TwelveHours,
    /// 86400 s.
    Day,
    /// 604800 s.
    Week,
    /// Since the spider's first page.
    Lifetime,
}

impl Window {
    /// Every window, shortest first.
    pub const ALL: [Window; 7] = [
        Window::Quarter,
        Window::Hour,
        Window::SixHours,
        Window::TwelveHours,
        Window::Day,
        Window::Week,
        Window::Lifetime,
    ];

    /// The window's length in seconds; `None` for lifetime.
    pub fn seconds(self) -> Option<u64> {
        match self {
            Window::Quarter => Some(900),
            Window::Hour => Some(3600),
            Window::SixHours => Some(21_600),
            Window::TwelveHours => Some(43_200),
            Window::Day => Some(86_400),
            Window::Week => Some(604_800),
            Window::Lifetime => None,
        }
    }

    /// The window's name in the stats dump: its seconds, or `lifetime`.
    pub fn label(self) -> String {
        match self.seconds() {
            Some(s) => s.to_string(),
            None => "lifetime".to_owned(),
        }
    }

    /// The bucket granularity in seconds that serves this window; `None` for lifetime.
    pub fn granularity(self) -> Option<u64> {
        let seconds = self.seconds()?;
        GRANULARITIES
            .iter()
            .find(|(_, longest)| seconds <= *longest)
            .map(|(g, _)| *g)
    }
}

/// Bucket granularities in seconds, each with the longest window it serves.
pub const GRANULARITIES: [(u64, u64); 4] = [(10, 900), (60, 3600), (600, 86_400), (3600, 604_800)];

/// How long a bucket of granularity `g` must live: its longest window plus two buckets.
pub fn bucket_ttl(granularity: u64) -> u64 {
    GRANULARITIES
        .iter()
        .find(|(g, _)| *g == granularity)
        .map(|(g, longest)| longest + 2 * g)
        .unwrap_or(granularity)
}

/// The buckets (exclusive start, inclusive end) whose sum is `window`'s count at `now_s`.
pub fn window_buckets(window: Window, now_s: u64) -> Option<(u64, u64, u64)> {
    let seconds = window.seconds()?;
    let g = window.granularity()?;
    Some((g, now_s.saturating_sub(seconds) / g, now_s / g))
}

/// The label a status is counted under: the code, or `error` for no response.
pub fn status_label(status: Option<u16>) -> String {
    match status {
        Some(code) => code.to_string(),
        None => "error".to_owned(),
    }
}

/// A spider's counts per status label for each window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpiderStats {
    /// window -> status label (`200`, `404`, `error`) -> count.
    pub counts: BTreeMap<Window, BTreeMap<String, u64>>,
}

impl SpiderStats {
    /// Adds another part's counts to these (the shards of a sharded frontier).
    pub fn absorb(&mut self, other: Self) {
        for (window, labels) in other.counts {
            let mine = self.counts.entry(window).or_default();
            for (label, n) in labels {
                *mine.entry(label).or_default() += n;
            }
        }
    }

    /// The count of one status label in one window (0 when none).
    pub fn count(&self, window: Window, status: &str) -> u64 {
        self.counts
            .get(&window)
            .and_then(|m| m.get(status))
            .copied()
            .unwrap_or(0)
    }

    /// Writes `<spider>_<status>_<window>` entries into a stats dump.
    pub fn write_dump(&self, spider: &str, out: &mut BTreeMap<String, u64>) {
        for (window, by_status) in &self.counts {
            for (status, count) in by_status {
                out.insert(format!("{spider}_{status}_{}", window.label()), *count);
            }
        }
    }
}

/// Live workers, from their heartbeats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerCounts {
    /// All live workers.
    pub total: u64,
    /// The number of distinct spiders with at least one live worker.
    pub unique: u64,
    /// Live workers per spiderid.
    pub per_spider: BTreeMap<String, u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_window_has_a_granularity_that_divides_it() {
        for w in Window::ALL {
            match (w.seconds(), w.granularity()) {
                (Some(s), Some(g)) => {
                    assert_eq!(s % g, 0, "{w:?}");
                    assert!(s / g <= 168, "{w:?} sums too many buckets");
                    assert!(bucket_ttl(g) > s);
                }
                (None, None) => assert_eq!(w, Window::Lifetime),
                other => panic!("{w:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_window_spans_its_length_in_buckets() {
        let (g, from, to) = window_buckets(Window::Hour, 1_000_000).expect("bounded");
        assert_eq!(g, 60);
        assert_eq!((to - from) * g, 3600);
    }

    #[test]
    fn dump_keys_look_like_scrapy_clusters() {
        let mut stats = SpiderStats::default();
        stats
            .counts
            .entry(Window::Hour)
            .or_default()
            .insert("200".into(), 3);
        let mut out = BTreeMap::new();
        stats.write_dump("link", &mut out);
        assert_eq!(out.get("link_200_3600"), Some(&3));
    }
}
