//! A latency-bound site of many hosts, for `make bench-scale`: `hosts` hosts
//! (`h000.farm.test`, …) of `pages` pages each, every answer held for `latency` first, as a
//! remote server would. The site a fleet crawls in production is many slow hosts, not one fast
//! one; here a single worker is bound by how many requests it keeps in flight, so adding
//! workers should add throughput until the machine's CPU runs out.
//!
//! Page `i` of host `k` links to page `i + 1` of the same host and page `i` of host `k + 1`
//! (so a crawl from page 0 of host 0 reaches all `hosts × pages` pages), plus `links` more
//! pages picked by a hash. robots.txt is 404 (everything allowed).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, HOST};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;

/// The shape of a farm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FarmConfig {
    /// Hosts (at least 1).
    pub hosts: usize,
    /// Pages per host (at least 1).
    pub pages: usize,
    /// Links per page besides the two that make every page reachable.
    pub links: usize,
    /// How long every answer waits before it is sent.
    pub latency: Duration,
}

/// A running farm.
#[derive(Debug)]
pub struct Farm {
    addr: SocketAddr,
    config: FarmConfig,
    served: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    config: FarmConfig,
    port: u16,
    served: Arc<AtomicU64>,
}

impl Farm {
    /// Starts serving on 127.0.0.1 (any free port).
    ///
    /// # Errors
    /// When no port can be bound, or a size is 0.
    pub async fn start(config: FarmConfig) -> std::io::Result<Self> {
        if config.hosts == 0 || config.pages == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a farm needs at least one host and one page",
            ));
        }
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let served = Arc::new(AtomicU64::new(0));
        let shared = Arc::new(Shared {
            config,
            port: addr.port(),
            served: served.clone(),
        });
        let app = Router::new().fallback(serve).with_state(shared);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("farm: serving stopped: {e}");
            }
        });
        Ok(Self {
            addr,
            config,
            served,
            task,
        })
    }

    /// Where it listens; every host resolves here.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every host name, in order.
    pub fn hosts(&self) -> Vec<String> {
        (0..self.config.hosts).map(host).collect()
    }

    /// Page 0 of host 0, from which every page is reachable.
    pub fn root(&self) -> String {
        page_url(0, 0, self.addr.port())
    }

    /// The number of pages: a crawl from [`Farm::root`] finds all of them.
    pub fn pages(&self) -> usize {
        self.config.hosts * self.config.pages
    }

    /// Page requests answered so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for Farm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn host(k: usize) -> String {
    format!("h{k:03}.farm.test")
}

fn page_url(k: usize, i: usize, port: u16) -> String {
    format!("http://{}:{port}/p/{i}", host(k))
}

/// The pages page `i` of host `k` links to.
fn links(config: &FarmConfig, k: usize, i: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(config.links + 2);
    if i + 1 < config.pages {
        out.push((k, i + 1));
    }
    out.push(((k + 1) % config.hosts, i));
    let mut h = (k as u64) << 32 | i as u64;
    for _ in 0..config.links {
        // splitmix64: a fixed, well-spread sequence per page.
        h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = h;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let target = usize::try_from(z % (config.hosts * config.pages) as u64).unwrap_or(0);
        out.push((target / config.pages, target % config.pages));
    }
    out
}

async fn serve(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let config = &shared.config;
    tokio::time::sleep(config.latency).await;
    let host_index = request
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.split(':').next())
        .and_then(|h| h.strip_prefix('h'))
        .and_then(|h| h.strip_suffix(".farm.test"))
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|k| *k < config.hosts);
    let page = request
        .uri()
        .path()
        .strip_prefix("/p/")
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|i| *i < config.pages);
    let (Some(k), Some(i)) = (host_index, page) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    shared.served.fetch_add(1, Ordering::Relaxed);
    let mut html = format!(
        "<!doctype html><html><head><title>{} page {i}</title></head><body><h1>Page {i} of {}</h1><ul>",
        host(k),
        host(k)
    );
    for (tk, ti) in links(config, k, i) {
        html.push_str(&format!(
            "<li><a href=\"{}\">page {ti} of {}</a></li>",
            page_url(tk, ti, shared.port),
            host(tk)
        ));
    }
    html.push_str("</ul><p>A page of the farm: many hosts, each slow to answer.</p></body></html>");
    ([(CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_is_reachable_from_the_root() {
        let config = FarmConfig {
            hosts: 7,
            pages: 5,
            links: 3,
            latency: Duration::ZERO,
        };
        let mut seen = std::collections::HashSet::from([(0, 0)]);
        let mut todo = vec![(0, 0)];
        while let Some((k, i)) = todo.pop() {
            for next in links(&config, k, i) {
                assert!(next.0 < 7 && next.1 < 5, "{next:?}");
                if seen.insert(next) {
                    todo.push(next);
                }
            }
        }
        assert_eq!(seen.len(), 35);
    }
}
