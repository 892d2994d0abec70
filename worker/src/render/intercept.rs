//! Answering every request a rendered page makes (the `Fetch` domain): the document from the
//! response already fetched, scripts and data with the worker's fetcher, the rest refused.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::fetch::{
    EnableParams, EventRequestPaused, FailRequestParams, FulfillRequestParams, HeaderEntry,
    RequestPattern, RequestStage,
};
use chromiumoxide::cdp::browser_protocol::inspector;
use chromiumoxide::cdp::browser_protocol::network::{ErrorReason, ResourceType};
use futures::StreamExt;
use url::Url;

use super::{Document, MAX_SUBRESOURCES, RenderError, browser_error};
use crate::fetch::{FetchError, Fetcher, RequestOptions};

/// Headers that describe a body as sent, not the decoded body the browser is given.
const TRANSPORT_HEADERS: [&str; 3] = ["content-encoding", "content-length", "transfer-encoding"];

/// What a page's requests are doing.
#[derive(Debug)]
struct Counts {
    pending: AtomicUsize,
    requests: AtomicU64,
    last: Mutex<Instant>,
}

/// The page's traffic, while it is served; serving stops when this is dropped.
#[derive(Debug)]
pub(super) struct Traffic {
    counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

impl Traffic {
    /// No request pending, and none ended, for `quiet`.
    pub(super) fn quiet_for(&self, quiet: Duration) -> bool {
        self.counts.pending.load(Ordering::Acquire) == 0
            && self
                .counts
                .last
                .lock()
                .map_or(true, |last| last.elapsed() >= quiet)
    }

    /// Starts the quiet time again now (the page has loaded: its timers start now).
    pub(super) fn touch(&self) {
        if let Ok(mut last) = self.counts.last.lock() {
            *last = Instant::now();
        }
    }

    /// Requests besides the document, answered or refused.
    pub(super) fn requests(&self) -> u64 {
        self.counts.requests.load(Ordering::Relaxed)
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts answering `page`'s requests: `document` for its navigation to `document.url`,
/// `fetcher` for what its scripts ask.
pub(super) async fn serve(
    page: &Page,
    document: Document,
    fetcher: Fetcher,
    max_bytes: usize,
) -> Result<Traffic, RenderError> {
    let mut events = page
        .event_listener::<EventRequestPaused>()
        .await
        .map_err(browser_error)?;
    let pattern = RequestPattern {
        url_pattern: Some("*".to_owned()),
        resource_type: None,
        request_stage: Some(RequestStage::Request),
    };
    page.execute(EnableParams {
        patterns: Some(vec![pattern]),
        handle_auth_requests: None,
    })
    .await
    .map_err(browser_error)?;
    let counts = Arc::new(Counts {
        pending: AtomicUsize::new(0),
        requests: AtomicU64::new(0),
        last: Mutex::new(Instant::now()),
    });
    let served = Arc::new(AtomicBool::new(false));
    let document = Arc::new(document);
    let page = page.clone();
    let task_counts = counts.clone();
    let task = tokio::spawn(async move {
        let mut answers = tokio::task::JoinSet::new();
        while let Some(event) = events.next().await {
            let page = page.clone();
            let fetcher = fetcher.clone();
            let document = document.clone();
            let served = served.clone();
            let counts = task_counts.clone();
            answers.spawn(async move {
                let answer = answer(&event, &document, &served, &counts, &fetcher, max_bytes).await;
                let sent = match answer {
                    Answer::Fulfil(params) => page.execute(params).await.map(|_| ()),
                    Answer::Fail(reason) => page
                        .execute(FailRequestParams::new(event.request_id.clone(), reason))
                        .await
                        .map(|_| ()),
                };
                if let Err(e) = sent {
                    tracing::debug!(url = %event.request.url, error = %e, "answering a request failed");
                }
            });
            // Reap what is done, so a long page does not keep every answered task.
            while answers.try_join_next().is_some() {}
        }
    });
    Ok(Traffic { counts, task })
}

/// Whether the page's renderer crashed.
#[derive(Debug)]
pub(super) struct Crashed {
    flag: Arc<AtomicBool>,
    notify: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Crashed {
    pub(super) fn is_set(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Returns once the renderer crashed.
    pub(super) async fn wait(&self) {
        let notified = self.notify.notified();
        if self.is_set() {
            return;
        }
        notified.await;
    }
}

impl Drop for Crashed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts watching `page` for its renderer crashing.
pub(super) async fn crashed(page: &Page) -> Result<Crashed, RenderError> {
    let mut events = page
        .event_listener::<inspector::EventTargetCrashed>()
        .await
        .map_err(browser_error)?;
    page.execute(inspector::EnableParams::default())
        .await
        .map_err(browser_error)?;
    let flag = Arc::new(AtomicBool::new(false));
    let notify = Arc::new(tokio::sync::Notify::new());
    let (set, wake) = (flag.clone(), notify.clone());
    let task = tokio::spawn(async move {
        if events.next().await.is_some() {
            set.store(true, Ordering::Release);
            wake.notify_waiters();
        }
    });
    Ok(Crashed { flag, notify, task })
}

enum Answer {
    Fulfil(FulfillRequestParams),
    Fail(ErrorReason),
}

async fn answer(
    event: &EventRequestPaused,
    document: &Document,
    served: &AtomicBool,
    counts: &Counts,
    fetcher: &Fetcher,
    max_bytes: usize,
) -> Answer {
    let request = &event.request;
    let Ok(url) = Url::parse(&request.url) else {
        return Answer::Fail(ErrorReason::BlockedByClient);
    };
    if event.resource_type == ResourceType::Document
        && same_document(&url, &document.url)
        && !served.swap(true, Ordering::AcqRel)
    {
        return Answer::Fulfil(fulfil(
            event,
            document.status,
            document
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str())),
            &document.body,
        ));
    }
    let n = counts.requests.fetch_add(1, Ordering::Relaxed) + 1;
    let wanted = matches!(
        event.resource_type,
        ResourceType::Document | ResourceType::Script | ResourceType::Xhr | ResourceType::Fetch
    );
    if !wanted || request.method != "GET" || n > MAX_SUBRESOURCES as u64 {
        return Answer::Fail(ErrorReason::BlockedByClient);
    }
    counts.pending.fetch_add(1, Ordering::AcqRel);
    let options = RequestOptions {
        user_agent: document.user_agent.as_deref(),
        referer: Some(document.url.as_str()),
        max_body: Some(max_bytes),
        ..RequestOptions::default()
    };
    let fetched = match &document.robots {
        Some(robots) if !robots.check(fetcher, &url, &options).await.allowed => {
            tracing::debug!(%url, "a page's request refused by robots.txt");
            Err(None)
        }
        // Redirects too must be allowed by their origin's robots.txt, when it is known.
        Some(robots) => {
            let allowed = |next: &Url| robots.cached_allows(next) == Some(true);
            fetcher.fetch(&url, &options, allowed).await.map_err(Some)
        }
        None => fetcher.fetch(&url, &options, |_| true).await.map_err(Some),
    };
    let answer = match fetched {
        Ok(fetched) => {
            let headers: Vec<(&str, &str)> = fetched
                .headers
                .iter()
                .flat_map(|(n, vs)| vs.iter().map(move |v| (n.as_str(), v.as_str())))
                .collect();
            Answer::Fulfil(fulfil(event, fetched.status, headers, &fetched.body))
        }
        Err(None) => Answer::Fail(ErrorReason::BlockedByClient),
        Err(Some(FetchError::PrivateDestination { .. })) => {
            tracing::debug!(%url, "a page's request to a private address refused");
            Answer::Fail(ErrorReason::AccessDenied)
        }
        Err(Some(FetchError::Timeout { .. })) => Answer::Fail(ErrorReason::TimedOut),
        Err(Some(_)) => Answer::Fail(ErrorReason::Failed),
    };
    if let Ok(mut last) = counts.last.lock() {
        *last = Instant::now();
    }
    counts.pending.fetch_sub(1, Ordering::AcqRel);
    answer
}

/// The same document: the same URL but for the fragment.
fn same_document(a: &Url, b: &Url) -> bool {
    let (mut a, mut b) = (a.clone(), b.clone());
    a.set_fragment(None);
    b.set_fragment(None);
    a == b
}

fn fulfil<'h>(
    event: &EventRequestPaused,
    status: u16,
    headers: impl IntoIterator<Item = (&'h str, &'h str)>,
    body: &[u8],
) -> FulfillRequestParams {
    let headers = headers
        .into_iter()
        .filter(|(name, _)| {
            !TRANSPORT_HEADERS
                .iter()
                .any(|t| name.eq_ignore_ascii_case(t))
        })
        .map(|(name, value)| HeaderEntry::new(name, value))
        .collect();
    let mut params = FulfillRequestParams::new(event.request_id.clone(), i64::from(status));
    params.response_headers = Some(headers);
    params.body = Some(
        base64::engine::general_purpose::STANDARD
            .encode(body)
            .into(),
    );
    params
}
