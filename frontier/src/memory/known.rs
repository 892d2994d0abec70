//! One job's known pages in memory: the Redis hashes `P:{S}:kn:<job>` (current) and
//! `P:{S}:knp:<job>` (previous), URL → request, as two maps ordered by URL; the previous set
//! is there from a rotation until it is dropped (`P:{S}:knr:<job>`), even when empty.

use std::collections::BTreeMap;

use kubecrawl_api::CrawlRequest;

use crate::known::{Known, KnownCursor};

#[derive(Debug, Default)]
pub(crate) struct KnownPages {
    current: BTreeMap<String, CrawlRequest>,
    previous: Option<BTreeMap<String, CrawlRequest>>,
}

impl KnownPages {
    /// Keeps `request` in the current set, replacing one of the same URL.
    pub(crate) fn remember(&mut self, request: CrawlRequest) {
        self.current.insert(request.url.clone(), request);
    }

    /// The current set becomes the previous one, unless there is a previous set.
    pub(crate) fn rotate(&mut self) -> bool {
        if self.previous.is_some() {
            return false;
        }
        self.previous = Some(std::mem::take(&mut self.current));
        true
    }

    /// Up to `count` pages from `cursor` on: the previous set, then the current one, each in
    /// URL order. The cursor counts the pages of its set returned already.
    pub(crate) fn page(
        &self,
        cursor: KnownCursor,
        count: usize,
    ) -> (Vec<CrawlRequest>, Option<KnownCursor>) {
        let skip = usize::try_from(cursor.at).unwrap_or(usize::MAX);
        let in_current = cursor.current;
        let previous = self
            .previous
            .iter()
            .filter(|_| !in_current)
            .flat_map(|set| set.values().skip(skip).map(|r| (false, r)));
        let current_skip = if cursor.current { skip } else { 0 };
        let mut walk = previous
            .chain(self.current.values().skip(current_skip).map(|r| (true, r)))
            .peekable();
        let mut out = Vec::new();
        let mut at = cursor;
        while out.len() < count.max(1) {
            let Some((current, request)) = walk.next() else {
                break;
            };
            if current != at.current {
                at.current = true;
                at.at = 0;
            }
            at.at += 1;
            out.push(request.clone());
        }
        let more = walk.peek().is_some();
        (out, more.then_some(at))
    }

    pub(crate) fn drop(&mut self, which: Known) {
        self.previous = None;
        if which == Known::All {
            self.current.clear();
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.current.is_empty() && self.previous.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages(urls: &[&str]) -> KnownPages {
        let mut known = KnownPages::default();
        for url in urls {
            known.remember(CrawlRequest::seed(*url, 1));
        }
        known
    }

    fn walk(known: &KnownPages, count: usize) -> Vec<String> {
        let mut cursor = Some(KnownCursor::start());
        let mut urls = Vec::new();
        while let Some(at) = cursor {
            let (page, next) = known.page(at, count);
            assert!(page.len() <= count, "{page:?}");
            urls.extend(page.into_iter().map(|r| r.url));
            cursor = next;
        }
        urls
    }

    #[test]
    fn a_walk_reads_the_previous_set_then_the_current_one() {
        let mut known = pages(&["http://a/1", "http://a/2", "http://a/3"]);
        assert!(known.rotate());
        known.remember(CrawlRequest::seed("http://a/0", 1));
        known.remember(CrawlRequest::seed("http://a/2", 1));
        for count in [1, 2, 3, 4, 10] {
            assert_eq!(
                walk(&known, count),
                [
                    "http://a/1",
                    "http://a/2",
                    "http://a/3",
                    "http://a/0",
                    "http://a/2"
                ],
                "count {count}"
            );
        }
        assert!(walk(&KnownPages::default(), 3).is_empty());
    }

    #[test]
    fn a_previous_set_stays_until_dropped_even_empty() {
        let mut known = KnownPages::default();
        assert!(
            known.rotate(),
            "an empty current set becomes the previous one"
        );
        known.remember(CrawlRequest::seed("http://a/1", 1));
        assert!(!known.rotate());
        assert_eq!(walk(&known, 3), ["http://a/1"]);
        known.drop(Known::Previous);
        assert!(!known.is_empty());
        assert!(known.rotate());
        known.drop(Known::All);
        assert!(known.is_empty());
    }

    #[test]
    fn a_walk_of_the_current_set_alone_ends() {
        let known = pages(&["http://a/1", "http://a/2"]);
        assert_eq!(walk(&known, 2), ["http://a/1", "http://a/2"]);
        assert_eq!(walk(&known, 1), ["http://a/1", "http://a/2"]);
    }
}
