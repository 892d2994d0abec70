//! The `link` spider: publish every page, follow every link the job allows.
//!
//! Like Scrapy Cluster's link spider, it yields the raw-response item for each page and a
//! request for each extracted link; the frontier then applies the job's filters (maxdepth,
//! allowed domains, allow/deny regexes, extensions), dedupe and page budgets.
//!
//! A job with `extract` rules makes it a declarative spider ([`crate::declarative`]): the
//! item carries the rules' `fields`, and only the links the rules choose are yielded (every
//! followable link when the rules have no `follow`).

use crate::spider::{Output, Response, Spider};

/// Follows links within the job's filters up to maxdepth.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkSpider;

impl Spider for LinkSpider {
    fn name(&self) -> &str {
        "link"
    }

    fn parse(&self, response: &Response) -> Vec<Output> {
        let mut item = response.item();
        let Some(extracted) = response.extract() else {
            let mut out = vec![Output::Item(Box::new(item))];
            out.extend(
                response
                    .followable_links()
                    .map(|l| Output::Request(response.follow(&l.url))),
            );
            return out;
        };
        item.fields = extracted.fields;
        let mut out = vec![Output::Item(Box::new(item))];
        out.extend(
            extracted
                .follow
                .iter()
                .map(|url| Output::Request(response.follow(url))),
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
        let Output::Item(item) = &out[0] else {
            panic!("an item first")
        };
        assert!(item.fields.is_empty(), "no rules, no fields");
    }

    #[test]
    fn a_job_with_rules_gets_its_fields_and_follows_only_what_they_choose() {
        let html = r#"<title>Shop</title><h1> Widget </h1>
            <ul><li><a href="/p/1">one</a><li><a href="/about">about</a></ul>
            <a rel="next" href="/list?page=2">next</a>"#;
        let mut r = response("http://site.test/list", &[], 0);
        r.text = Some(html.to_owned());
        r.links = crate::extract::links(html, &r.url);
        let extract: kubecrawl_api::Extract = serde_yaml::from_str(
            r"
fields: [{name: name, selector: h1}, {name: sku, selector: .sku}]
follow: [{selector: ul, allow: ['/p/']}]
pagination: 'a[rel=next]'
",
        )
        .expect("rules parse");
        r.rules = Some(std::sync::Arc::new(
            crate::declarative::Rules::compile(&extract).expect("rules compile"),
        ));
        let out = LinkSpider.parse(&r);
        let Output::Item(item) = &out[0] else {
            panic!("an item first")
        };
        assert_eq!(
            serde_json::Value::Object(item.fields.clone()),
            serde_json::json!({"name": "Widget", "sku": null})
        );
        let urls: Vec<&str> = out[1..]
            .iter()
            .map(|o| match o {
                Output::Request(req) => req.url.as_str(),
                Output::Item(_) => panic!("one item only"),
            })
            .collect();
        assert_eq!(
            urls,
            ["http://site.test/p/1", "http://site.test/list?page=2"]
        );
    }
}
