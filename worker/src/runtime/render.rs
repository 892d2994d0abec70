//! The render stage of a lease, between reading the fetched page and the spider: for a job
//! with `render`, a page its plan wants is loaded into the worker's browser and the spider
//! gets the DOM the scripts built ([`crate::render`]).
//!
//! What a render can end in, and the job counters it adds:
//!
//! | render | the spider gets | counters |
//! |---|---|---|
//! | done | the DOM, its links, `rendered: true` (and the screenshot) | `rendered`, `render_auto` when `auto` chose it, `render_unsettled` when read at its time limit, `screenshot_too_large` |
//! | the DOM is past `maxElements` or the worker's body cap | the page as fetched | `render_too_large` |
//! | the page timed out or its renderer crashed | the page as fetched | `render_failed` |
//! | the browser died or stopped answering | nothing: the lease is retried (bounded) | — |
//! | this worker has no browser | the page as fetched | `render_unavailable` |

use kubecrawl_frontier::{Lease, RetryRequest};

use super::stages::Stage;
use super::{LeaseOutcome, Worker};
use crate::charset;
use crate::extract::{self, Signals};
use crate::render::{Document, Plan, RenderError, Why, counter};
use crate::spider::Response;

impl Worker {
    /// `response` rendered when the job's plan wants it (see the module docs); `response` as
    /// it is otherwise. `Err`: the browser failed and the lease was retried.
    pub(super) async fn render_page(
        &self,
        lease: &Lease,
        plan: &Plan,
        response: Response,
        signals: &Signals,
        obey_robots: bool,
        counters: &mut Vec<(&'static str, u64)>,
    ) -> Stage<Response> {
        let renderable = (200..300).contains(&response.status)
            && charset::is_html(&response.content_type)
            && response.text.is_some();
        let Some(why) = renderable
            .then(|| plan.wants(&response.url, signals))
            .flatten()
        else {
            return Ok(response);
        };
        if why == Why::Auto {
            counters.push((counter::AUTO, 1));
        }
        let Some(renderer) = &self.renderer else {
            tracing::warn!("the job renders this page, but this worker has no browser (--render)");
            counters.push((counter::UNAVAILABLE, 1));
            return Ok(response);
        };
        let document = Document {
            url: response.url.clone(),
            status: response.status,
            headers: response
                .headers
                .iter()
                .flat_map(|(n, vs)| vs.iter().map(move |v| (n.clone(), v.clone())))
                .collect(),
            body: response.body.clone(),
            user_agent: response
                .request_headers
                .get("user-agent")
                .and_then(|v| v.first())
                .cloned(),
            robots: obey_robots.then(|| self.robots.clone()),
        };
        let rendered = match renderer.render(&document, &plan.limits).await {
            Ok(rendered) => rendered,
            Err(RenderError::Browser(reason)) => {
                tracing::warn!(%reason, "the browser failed while rendering, retrying the page");
                return Err(self
                    .retry(lease, RetryRequest::default(), LeaseOutcome::RenderRetry)
                    .await);
            }
            Err(e) => {
                tracing::info!(error = %e, "page published as fetched");
                let label = match e {
                    RenderError::TooLarge { .. } => counter::TOO_LARGE,
                    _ => counter::FAILED,
                };
                counters.push((label, 1));
                return Ok(response);
            }
        };
        if rendered.html.len() > self.fetcher.config().max_body {
            tracing::info!(
                bytes = rendered.html.len(),
                "the rendered page is larger than the body cap, published as fetched"
            );
            counters.push((counter::TOO_LARGE, 1));
            return Ok(response);
        }
        counters.push((counter::RENDERED, 1));
        if !rendered.settled {
            counters.push((counter::UNSETTLED, 1));
        }
        if rendered.screenshot_too_large {
            counters.push((counter::SCREENSHOT_TOO_LARGE, 1));
        }
        tracing::debug!(
            elements = rendered.elements,
            subresources = rendered.subresources,
            elapsed = ?rendered.elapsed,
            "page rendered"
        );
        let links = extract::links(&rendered.html, &response.url);
        Ok(Response {
            body: bytes::Bytes::from(rendered.html.clone().into_bytes()),
            text: Some(rendered.html),
            encoding: Some("utf-8".to_owned()),
            truncated: false,
            links,
            rendered: true,
            screenshot: rendered.screenshot,
            ..response
        })
    }
}
