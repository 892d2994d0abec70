//! Serving: the accept loop, the request handler and the request counters.
//!
//! The accept loop is ours rather than `axum::serve` so that every connection task is owned:
//! stopping the site aborts them all, stalled responses and idle keep-alive connections
//! included, instead of leaving them to the runtime.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{
    CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, ETAG, HOST, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    LAST_MODIFIED, LOCATION, RETRY_AFTER, USER_AGENT,
};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::Site;
use super::model::{Behaviour, Host, Node, Trap, behaviour, resolve};
use super::render::{Prepared, Renderer, status_page};
use super::traps::{HUGE_HEAD, STALL_DECLARED, STALL_HEAD};

/// One request the site received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// When it arrived.
    pub at: Instant,
    /// The host it named (`site.test`, …; `""` for an unknown host).
    pub host: &'static str,
    /// Path and query as sent.
    pub target: String,
    /// Its `User-Agent`, if any.
    pub user_agent: Option<String>,
}

/// Per-target hit counts and a bounded request log, behind one short-held lock.
#[derive(Debug)]
pub(crate) struct Recorder {
    inner: Mutex<Counters>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Counters {
    hits: [HashMap<String, u64>; 3],
    total: u64,
    log: VecDeque<Hit>,
}

impl Recorder {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Counters::default()),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        // A panic elsewhere cannot leave counters inconsistent in a way that matters.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a request and returns how many requests `target` on `host` has had, this one
    /// included (0 for an unknown host).
    fn record(&self, host: Option<Host>, target: &str, user_agent: Option<&str>) -> u64 {
        let at = Instant::now();
        let mut counters = self.lock();
        counters.total += 1;
        if self.capacity > 0 {
            if counters.log.len() == self.capacity {
                counters.log.pop_front();
            }
            counters.log.push_back(Hit {
                at,
                host: host.map_or("", Host::name),
                target: target.to_owned(),
                user_agent: user_agent.map(str::to_owned),
            });
        }
        let Some(host) = host else { return 0 };
        let per_host = &mut counters.hits[host.index()];
        match per_host.get_mut(target) {
            Some(n) => {
                *n += 1;
                *n
            }
            None => {
                per_host.insert(target.to_owned(), 1);
                1
            }
        }
    }

    pub(crate) fn hits(&self, host: Host, target: &str) -> u64 {
        self.lock().hits[host.index()]
            .get(target)
            .copied()
            .unwrap_or(0)
    }

    pub(crate) fn total(&self) -> u64 {
        self.lock().total
    }

    pub(crate) fn log(&self) -> Vec<Hit> {
        self.lock().log.iter().cloned().collect()
    }

    pub(crate) fn reset(&self) {
        *self.lock() = Counters::default();
    }
}

/// The state of [`SiteConfig::overload`](super::SiteConfig::overload): when the first page
/// request came, the current second's count, and the refusals.
#[derive(Debug, Default)]
pub(crate) struct Overload {
    inner: Mutex<OverloadState>,
}

#[derive(Debug, Default)]
struct OverloadState {
    started: Option<Instant>,
    second: u64,
    in_second: u32,
    refusals: u64,
    /// Refusals per second of the overload, from its start.
    by_second: Vec<u64>,
}

impl Overload {
    /// Whether this page request is refused, under at most `per_second` a second during the
    /// first `lasts`.
    fn refuses(&self, per_second: u32, lasts: Duration) -> bool {
        let now = Instant::now();
        let mut state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let started = *state.started.get_or_insert(now);
        let elapsed = now.duration_since(started);
        if elapsed >= lasts {
            return false;
        }
        let second = elapsed.as_secs();
        if second != state.second {
            state.second = second;
            state.in_second = 0;
        }
        state.in_second += 1;
        let refused = state.in_second > per_second;
        if refused {
            state.refusals += 1;
            let at = usize::try_from(second).unwrap_or(usize::MAX);
            if state.by_second.len() <= at {
                state.by_second.resize(at + 1, 0);
            }
            state.by_second[at] += 1;
        }
        refused
    }

    pub(crate) fn refusals_by_second(&self) -> Vec<u64> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_second
            .clone()
    }

    pub(crate) fn refusals(&self) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .refusals
    }
}

/// Serves `site` on `listener` until `stop` fires or is dropped; then aborts every connection.
pub(crate) async fn serve(listener: TcpListener, site: Arc<Site>, mut stop: oneshot::Receiver<()>) {
    let router = Router::new().fallback(handle).with_state(site);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Small responses must not wait for Nagle's algorithm.
                    let _ = stream.set_nodelay(true);
                    let service = TowerToHyperService::new(router.clone());
                    connections.spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

async fn handle(State(site): State<Arc<Site>>, request: Request) -> Response {
    let headers = request.headers();
    let uri = request.uri();
    let host = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .and_then(Host::parse);
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let user_agent = headers.get(USER_AGENT).and_then(|v| v.to_str().ok());
    let count = site.recorder.record(host, target, user_agent);
    let Some(host) = host else {
        return respond(&status_page(404));
    };
    if host == Host::Site
        && site.config.sitemaps
        && let Some(prepared) = super::sitemaps::prepare(&site.config, site.port, uri.path())
    {
        return respond(&prepared);
    }
    if host == Host::Site
        && site.config.scripts
        && let Some(prepared) = super::scripts::prepare(uri.path(), site.config.script_pages)
    {
        return respond(&prepared);
    }
    let node = resolve(&site.config, host, uri.path(), uri.query());
    if let Node::Page(i) = node
        && site.config.validators
    {
        let conditional = Conditional {
            if_none_match: headers.get(IF_NONE_MATCH).and_then(|v| v.to_str().ok()),
            if_modified_since: headers.get(IF_MODIFIED_SINCE).and_then(|v| v.to_str().ok()),
        };
        if let Some(response) = site.not_modified(i, &conditional) {
            return response;
        }
    }
    site.answer(node, count).await
}

/// A request's conditional headers.
struct Conditional<'a> {
    if_none_match: Option<&'a str>,
    if_modified_since: Option<&'a str>,
}

/// Edits of main pages ([`super::TestSite::edit_page`]) and the 304 answers sent.
#[derive(Debug, Default)]
pub(crate) struct Edits {
    /// Page index → number of edits.
    versions: Mutex<HashMap<usize, u32>>,
    not_modified: std::sync::atomic::AtomicU64,
}

impl Edits {
    pub(crate) fn edit(&self, i: usize) -> u32 {
        let mut versions = self.versions.lock().unwrap_or_else(PoisonError::into_inner);
        let version = versions.entry(i).or_default();
        *version += 1;
        *version
    }

    fn version(&self, i: usize) -> u32 {
        self.versions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&i)
            .copied()
            .unwrap_or(0)
    }

    pub(crate) fn not_modified(&self) -> u64 {
        self.not_modified.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The paragraph an edited page's body gains at its `n`-th edit.
pub(crate) fn edit_marker(i: usize, n: u32) -> String {
    format!("<p class=\"edit\">page {i}, edit {n}</p>")
}

/// A main page's ETag at `version`.
fn etag(i: usize, version: u32) -> String {
    format!("\"p{i}.{version}\"")
}

/// A main page's Last-Modified at `version`: a day later for every edit.
fn last_modified(version: u32) -> String {
    format!("Tue, {:02} Dec 2026 00:00:00 GMT", 1 + version.min(27))
}

impl Site {
    /// `304 Not Modified` when the request's validators match page `i`'s current ones
    /// (If-None-Match first; If-Modified-Since only without it, as RFC 9110 says).
    fn not_modified(&self, i: u32, conditional: &Conditional<'_>) -> Option<Response> {
        let i = i as usize;
        let version = self.edits.version(i);
        let fresh = match (conditional.if_none_match, conditional.if_modified_since) {
            (Some(tags), _) => tags.split(',').any(|t| t.trim() == etag(i, version)),
            (None, Some(since)) => since == last_modified(version),
            (None, None) => false,
        };
        if !fresh {
            return None;
        }
        self.edits
            .not_modified
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        self.validators(i, version, &mut response);
        Some(response)
    }

    fn validators(&self, i: usize, version: u32, response: &mut Response) {
        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&etag(i, version)) {
            headers.insert(ETAG, v);
        }
        if let Ok(v) = HeaderValue::from_str(&last_modified(version)) {
            headers.insert(LAST_MODIFIED, v);
        }
    }

    /// Main page `i`, as edited so far, with its validators when the site serves them. An
    /// edited page is served uncompressed, even with [`super::SiteConfig::gzip_pages`].
    fn main_page(&self, i: usize, body: &Bytes) -> Response {
        let version = self.edits.version(i);
        let mut response = if version == 0 {
            let mut response = html(body.clone());
            if self.config.gzip_pages {
                response
                    .headers_mut()
                    .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            response
        } else {
            let body = if self.config.gzip_pages {
                Bytes::from(super::traps::gunzip(body))
            } else {
                body.clone()
            };
            let text = String::from_utf8_lossy(&body);
            let marker = edit_marker(i, version);
            let edited = match text.rfind("</body>") {
                Some(at) => format!("{}{marker}{}", &text[..at], &text[at..]),
                None => format!("{text}{marker}"),
            };
            html(Bytes::from(edited))
        };
        if self.config.validators {
            self.validators(i, version, &mut response);
        }
        response
    }
}

impl Site {
    /// The response to the `count`-th request for `node`.
    async fn answer(&self, node: Node, count: u64) -> Response {
        if let Node::Page(i) = node
            && let Some(body) = self.pages.get(i as usize)
        {
            if let Some((per_second, lasts)) = self.config.overload
                && self.overload.refuses(per_second, lasts)
            {
                return respond(&status_page(503));
            }
            return self.main_page(i as usize, body);
        }
        match behaviour(&self.config, node) {
            Behaviour::Ok | Behaviour::Redirect { .. } => self.prepared_or_render(node),
            Behaviour::Status(status) => {
                let mut response = match self.prepared.get(&node) {
                    Some(prepared) => respond(prepared),
                    None => respond(&status_page(status)),
                };
                if matches!(status, 429 | 503) {
                    retry_after(&mut response);
                }
                response
            }
            Behaviour::Flaky { failures, status } => {
                if count <= u64::from(failures) {
                    let mut response = respond(&status_page(status));
                    if status == 429 {
                        retry_after(&mut response);
                    }
                    response
                } else {
                    self.prepared_or_render(node)
                }
            }
            Behaviour::Slow(delay) => {
                tokio::time::sleep(delay).await;
                self.prepared_or_render(node)
            }
            Behaviour::Stall(hold) => stalled(hold),
            Behaviour::Huge { len, chunked } => self.huge(len, chunked),
        }
    }

    fn prepared_or_render(&self, node: Node) -> Response {
        if let Some(prepared) = self.prepared.get(&node) {
            return respond(prepared);
        }
        // Only the repeating-path trap is infinite and rendered per request.
        let renderer = Renderer {
            config: &self.config,
            graph: &self.graph,
            port: self.port,
        };
        match node {
            Node::Trap(Trap::Repeat(_)) => html(Bytes::from(renderer.document(node))),
            _ => respond(&renderer.prepare(node)),
        }
    }

    fn huge(&self, len: u64, chunked: bool) -> Response {
        let head = Bytes::from_static(HUGE_HEAD);
        let chunk = self.huge_chunk.clone();
        let stream = futures::stream::unfold(0u64, move |sent| {
            let left = len - sent;
            let next = if left == 0 {
                None
            } else {
                let piece = if sent == 0 {
                    head.clone()
                } else {
                    chunk.clone()
                };
                let take = piece.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                Some((Ok::<_, Infallible>(piece.slice(..take)), sent + take as u64))
            };
            std::future::ready(next)
        });
        let mut response = Response::new(Body::from_stream(stream));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(super::render::HTML));
        if !chunked {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
        }
        response
    }
}

/// Headers and a first chunk now; the rest never: after `hold`, the stream fails and hyper
/// drops the connection with the declared length unmet.
fn stalled(hold: Duration) -> Response {
    let stream = futures::stream::unfold(0u8, move |step| async move {
        match step {
            0 => Some((Ok(Bytes::from_static(STALL_HEAD)), 1)),
            1 => {
                tokio::time::sleep(hold).await;
                Some((Err(std::io::Error::other("stalled response dropped")), 2))
            }
            _ => None,
        }
    });
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(super::render::HTML));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(STALL_DECLARED));
    response
}

fn html(body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(super::render::HTML));
    response
}

fn respond(prepared: &Prepared) -> Response {
    let mut response = Response::new(Body::from(prepared.body.clone()));
    *response.status_mut() =
        StatusCode::from_u16(prepared.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(prepared.content_type),
    );
    if let Some(encoding) = prepared.content_encoding {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static(encoding));
    }
    if let Some(location) = &prepared.location {
        headers.insert(LOCATION, location.clone());
    }
    response
}

fn retry_after(response: &mut Response) {
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
}
