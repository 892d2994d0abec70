//! The `link` spider: publish every page, follow every link the job allows.
//!
//! Like Scrapy Cluster's link spider, it yields the raw-response item for each page and a
//! request for each extracted link; the frontier then applies the job's filters (maxdepth,
//! allowed domains, allow/deny regexes, extensions), dedupe and page budgets.

use crate::spider::{Output, Response, Spider};

/// Follows links within the job's filters up to maxdepth.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkSpider;

impl Spider for LinkSpider {
    fn name(&self) -> &str {
        "link"
    }

    fn parse(&self, response: &Response) -> Vec<Output> {
        let mut out = vec![Output::Item(Box::new(response.item()))];
        out.extend(
            response
                .followable_links()
                .map(|l| Output::Request(response.follow(&l.url))),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spider::fixtures::response;

    #[test]
    fn yields_the_item_then_one_request_per_link() {
        let r = response(
            "http://site.test/",
            &["http://site.test/a", "http://site.test/b"],
            1,
        );
        let out = LinkSpider.parse(&r);
        assert!(matches!(&out[0], Output::Item(item) if item.url == "http://site.test/"));
        let urls: Vec<_> = out[1..]
            .iter()
            .map(|o| match o {
                Output::Request(req) => (req.url.as_str(), req.depth),
                Output::Item(_) => panic!("one item only"),
            })
            .collect();
        assert_eq!(urls, [("http://site.test/a", 2), ("http://site.test/b", 2)]);
    }
}
