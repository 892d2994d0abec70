//! The `wandering` spider: follow one random link per page, counting steps.
//!
//! As in Scrapy Cluster's walkthrough, each page's item carries `attrs.step` (0 for the seed,
//! then 1, 2, ...) and the spider follows one randomly chosen link. The walk ends on a page
//! without links, or when the chosen link was already seen (the frontier's dedupe refuses it).
//! The step travels in the request's meta, not in its depth, so `maxdepth` does not cut a walk
//! short: the walk's length is the site's to decide.

use crate::spider::{Output, Response, Spider};

/// The meta key that carries the step from a page to the next.
pub const STEP_KEY: &str = "step";

/// Follows one random link per page.
#[derive(Debug, Clone, Copy, Default)]
pub struct WanderingSpider;

impl WanderingSpider {
    /// The step of a response: its request's `step` meta, 0 for a seed.
    pub fn step(response: &Response) -> u32 {
        response
            .request
            .meta
            .get(STEP_KEY)
            .and_then(serde_json::Value::as_u64)
            .and_then(|s| u32::try_from(s).ok())
            .unwrap_or(0)
    }
}

impl Spider for WanderingSpider {
    fn name(&self) -> &str {
        "wandering"
    }

    fn parse(&self, response: &Response) -> Vec<Output> {
        let step = Self::step(response);
        let mut item = response.item();
        item.attrs.insert(STEP_KEY.to_owned(), step.into());
        // The record's depth is the page's hops from the seed: its step.
        item.depth = step;
        let mut out = vec![Output::Item(Box::new(item))];
        let links: Vec<_> = response.followable_links().collect();
        if !links.is_empty() {
            let next = links[fastrand::usize(..links.len())];
            let mut request = response.follow(&next.url);
            // The walk is counted in steps, not depth: stay at the parent's depth.
            request.depth = response.request.depth;
            request.meta.insert(STEP_KEY.to_owned(), (step + 1).into());
            out.push(Output::Request(request));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spider::fixtures::response;

    #[test]
    fn follows_exactly_one_link_and_counts_the_step() {
        let mut r = response(
            "http://site.test/w/0",
            &["http://site.test/w/1a", "http://site.test/w/1b"],
            0,
        );
        r.request.meta.insert(STEP_KEY.into(), 4.into());
        let out = WanderingSpider.parse(&r);
        assert_eq!(out.len(), 2);
        let Output::Item(item) = &out[0] else {
            panic!("item first")
        };
        assert_eq!(item.attrs[STEP_KEY], 4);
        assert_eq!(item.depth, 4, "the record's depth is the step");
        let Output::Request(next) = &out[1] else {
            panic!("then a request")
        };
        assert!(next.url.starts_with("http://site.test/w/1"));
        assert_eq!(next.meta[STEP_KEY], 5);
        assert_eq!(next.meta["custom"], "kept", "meta passes through");
        assert_eq!(next.depth, 0);
    }

    #[test]
    fn a_page_without_links_ends_the_walk() {
        let out = WanderingSpider.parse(&response("http://site.test/end", &[], 0));
        assert_eq!(out.len(), 1);
    }
}
