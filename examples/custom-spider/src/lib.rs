//! An example of a custom kubecrawl spider: `titles` publishes every page with its `<title>`
//! and first `<h1>` in the item's `attrs`, and follows links like the built-in `link` spider.
//!
//! It shows everything a spider gets from the runtime: the job-scoped logger (a `tracing`
//! span with appid, crawlid, spiderid and url is already entered when `parse` runs), headers
//! as name → list of values, meta passthrough ([`Response::follow`] carries the parent's meta
//! to the child), and the raw-response item already built ([`Response::item`]).
//!
//! The binary in `src/main.rs` registers it beside the built-in spiders; `Dockerfile` builds
//! an image of that binary for a fleet (`fleets.titles.image` in the Helm chart's values).

use std::sync::LazyLock;

use kubecrawl_worker::spider::{Output, Response, Spider};
use scraper::{Html, Selector};

static TITLE: LazyLock<Selector> =
    LazyLock::new(|| Selector::parse("title").expect("a valid selector"));
static H1: LazyLock<Selector> = LazyLock::new(|| Selector::parse("h1").expect("a valid selector"));

/// The meta key children inherit: the title of the page that linked to them.
pub const PARENT_TITLE: &str = "parent_title";

/// Publishes pages with their titles and follows every allowed link.
#[derive(Debug, Clone, Copy, Default)]
pub struct TitleSpider;

impl Spider for TitleSpider {
    fn name(&self) -> &str {
        "titles"
    }

    fn parse(&self, response: &Response) -> Vec<Output> {
        let (title, h1) = match &response.text {
            Some(html) => {
                // `Html` is not Send: parse and extract in one synchronous step.
                let doc = Html::parse_document(html);
                let text = |sel: &Selector| {
                    doc.select(sel).next().map(|e| {
                        e.text()
                            .collect::<String>()
                            .split_whitespace()
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                };
                (text(&TITLE), text(&H1))
            }
            None => (None, None),
        };
        // The span of this request is entered: these fields join appid, crawlid, url.
        tracing::debug!(
            title = title.as_deref().unwrap_or(""),
            server = response.header("server").unwrap_or(""),
            "parsed page"
        );

        let mut item = response.item();
        item.attrs.insert("title".to_owned(), title.clone().into());
        item.attrs.insert("h1".to_owned(), h1.into());
        if let Some(parent) = response.request.meta.get(PARENT_TITLE) {
            item.attrs.insert(PARENT_TITLE.to_owned(), parent.clone());
        }
        let mut out = vec![Output::Item(Box::new(item))];
        for link in response.followable_links() {
            // `follow` carries this request's meta over; add to it what children should know.
            let mut child = response.follow(&link.url);
            child
                .meta
                .insert(PARENT_TITLE.to_owned(), title.clone().into());
            out.push(Output::Request(child));
        }
        out
    }
}
