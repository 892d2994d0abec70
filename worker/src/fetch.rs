//! Fetching one URL: timeouts, redirects checked hop by hop, decompression, a body cap.
//!
//! Redirects are followed by hand, so that every hop is checked against the job's link policy
//! and the network guard before it is requested, and the whole chain is recorded. A redirect
//! to a URL the job does not allow ends the fetch with the 3xx response itself as the page.
//!
//! Bodies are decoded here, not by the HTTP client: a `Content-Encoding` of gzip, deflate, br
//! or zstd is undone as the body streams ([`coding`] has the rules), and the decoded body is
//! cut at the body cap, counted after decompression, so a compression bomb costs no more than
//! the cap; reading stops there. The bytes as sent are kept beside the decoded body
//! ([`Fetched::encoded`]) for the WARC records, also at most the cap: a fetch holds at most
//! twice the cap.

mod body;
mod coding;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kubecrawl_api::page::Headers;
use reqwest::header::{self, HeaderMap, HeaderValue};
use url::Url;

use crate::guard;

/// How the HTTP client behaves; the same for every job of a worker.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Time allowed for one request, body included.
    pub timeout: Duration,
    /// The most body bytes kept (after decompression); the rest is cut and flagged.
    pub max_body: usize,
    /// The most redirects followed for one request.
    pub max_redirects: usize,
    /// Fetch private, loopback and link-local destinations (off by default).
    pub allow_private_networks: bool,
    /// The User-Agent sent when the job sets none.
    pub user_agent: String,
    /// Fixed name-to-address mappings, like curl's `--resolve` (tests, split-horizon DNS).
    pub resolve: Vec<(String, SocketAddr)>,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            max_body: 1 << 20,
            max_redirects: 10,
            allow_private_networks: false,
            user_agent: default_user_agent(),
            resolve: Vec::new(),
        }
    }
}

/// kubecrawl's User-Agent: `kubecrawl/<version> (+https://github.com/kubecrawl/kubecrawl)`.
pub fn default_user_agent() -> String {
    format!(
        "kubecrawl/{} (+https://github.com/kubecrawl/kubecrawl)",
        env!("CARGO_PKG_VERSION")
    )
}

/// Why a fetch produced no response.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL cannot be fetched (not http(s), no host).
    #[error("{url} is not a fetchable http(s) URL")]
    InvalidUrl {
        /// The URL.
        url: String,
    },
    /// The network guard refused the destination.
    #[error("{url} points to a private, loopback or link-local address")]
    PrivateDestination {
        /// The URL.
        url: String,
    },
    /// No response within the timeout.
    #[error("fetching {url} timed out")]
    Timeout {
        /// The URL.
        url: String,
    },
    /// The connection or the exchange failed.
    #[error("fetching {url} failed")]
    Transport {
        /// The URL.
        url: String,
        /// The client's error.
        #[source]
        source: reqwest::Error,
    },
    /// More redirects than allowed (a loop or a very long chain).
    #[error("{url} redirected more than {max} times")]
    TooManyRedirects {
        /// The URL first requested.
        url: String,
        /// The limit.
        max: usize,
    },
    /// The body does not decode from its `Content-Encoding` (corrupt data, a wrong checksum).
    /// Not transient: the server sends the same bytes again.
    #[error("decoding the {coding} body of {url} failed")]
    Undecodable {
        /// The URL of the response.
        url: String,
        /// The codings, as applied: `gzip`, `gzip, br`.
        coding: String,
        /// The decoder's error.
        #[source]
        source: std::io::Error,
    },
}

impl FetchError {
    /// Whether trying again later may succeed (timeouts and transport failures).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Timeout { .. } => true,
            Self::Transport { source, .. } => !is_guard_refusal(source),
            _ => false,
        }
    }

    /// What kind of failure this is, as counted.
    pub fn kind(&self) -> FetchErrorKind {
        match self {
            Self::InvalidUrl { .. } => FetchErrorKind::InvalidUrl,
            Self::PrivateDestination { .. } => FetchErrorKind::PrivateDestination,
            Self::Timeout { .. } => FetchErrorKind::Timeout,
            Self::Transport { source, .. } if is_guard_refusal(source) => {
                FetchErrorKind::PrivateDestination
            }
            Self::Transport { .. } => FetchErrorKind::Transport,
            Self::TooManyRedirects { .. } => FetchErrorKind::TooManyRedirects,
            Self::Undecodable { .. } => FetchErrorKind::Undecodable,
        }
    }
}

/// The kind of a [`FetchError`]: a bounded set, for metrics labels and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FetchErrorKind {
    /// Not a fetchable http(s) URL.
    InvalidUrl,
    /// A private, loopback or link-local destination, refused by the network guard.
    PrivateDestination,
    /// No response within the timeout.
    Timeout,
    /// The connection or the exchange failed.
    Transport,
    /// More redirects than allowed.
    TooManyRedirects,
    /// A body that does not decode from its `Content-Encoding`.
    Undecodable,
}

impl FetchErrorKind {
    /// The kind as a label value: `invalid_url`, `private_destination`, `timeout`,
    /// `transport`, `too_many_redirects` or `undecodable`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidUrl => "invalid_url",
            Self::PrivateDestination => "private_destination",
            Self::Timeout => "timeout",
            Self::Transport => "transport",
            Self::TooManyRedirects => "too_many_redirects",
            Self::Undecodable => "undecodable",
        }
    }
}

fn is_guard_refusal(err: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.is::<guard::Refused>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// A response, after redirects.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The URL of the final response.
    pub final_url: Url,
    /// Every URL requested before `final_url`, in order.
    pub redirect_chain: Vec<String>,
    /// The final status code.
    pub status: u16,
    /// Its reason phrase.
    pub status_msg: String,
    /// Final response headers, name → values, describing `body`: without `content-encoding`
    /// and `content-length` when the body was decoded (they are in [`Self::encoded`]).
    pub headers: Headers,
    /// Headers sent with the request, name → values.
    pub request_headers: Headers,
    /// The body, de-chunked and decoded, at most `max_body` bytes.
    pub body: Bytes,
    /// The body was cut: it decoded to more than `max_body` bytes, or its bytes as sent
    /// were more than that.
    pub truncated: bool,
    /// The body as the server sent it, when the fetcher decoded its `Content-Encoding`;
    /// `None` when `body` is as sent (no coding, or one not decoded).
    pub encoded: Option<EncodedBody>,
    /// From sending the first request to the end of the last body.
    pub elapsed: Duration,
    /// The HTTP version of the final response.
    pub version: reqwest::Version,
    /// The address the final response came from, when the client reports it.
    pub remote_addr: Option<SocketAddr>,
}

/// A body as the server sent it, before the fetcher decoded its `Content-Encoding`: what a
/// WARC response record holds.
#[derive(Debug, Clone)]
pub struct EncodedBody {
    /// The response headers that describe these bytes and not the decoded body, as sent:
    /// `content-encoding` and, when the server sent one, `content-length`. They are left out
    /// of [`Fetched::headers`].
    pub headers: Headers,
    /// The bytes received, de-chunked, at most `max_body`.
    pub body: Bytes,
    /// Reading stopped before the end of the body had arrived (the decoded body or these
    /// bytes reached the cap): these bytes are a prefix of what the server sent.
    pub truncated: bool,
}

impl Fetched {
    /// The first value of a response header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    /// The Retry-After header as a delay (seconds form; an HTTP date counts as 60 s).
    pub fn retry_after(&self) -> Option<Duration> {
        let value = self.header("retry-after")?.trim();
        Some(match value.parse::<u64>() {
            Ok(secs) => Duration::from_secs(secs.min(86_400)),
            Err(_) => Duration::from_secs(60),
        })
    }
}

/// What one request carries besides its URL.
#[derive(Debug, Clone, Default)]
pub struct RequestOptions<'a> {
    /// User-Agent for this request; the fetcher's default when `None`.
    pub user_agent: Option<&'a str>,
    /// Cookie header.
    pub cookie: Option<&'a str>,
    /// Referer header.
    pub referer: Option<&'a str>,
    /// The most body bytes kept for this request, when not the fetcher's `max_body` (a
    /// sitemap may be read up to 50 MiB).
    pub max_body: Option<usize>,
    /// If-None-Match header: the page's ETag from the previous recrawl round.
    pub if_none_match: Option<&'a str>,
    /// If-Modified-Since header: the page's Last-Modified from the previous recrawl round.
    pub if_modified_since: Option<&'a str>,
}

/// The HTTP client of a worker. Cheap to clone.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    config: std::sync::Arc<FetchConfig>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Fetcher {
    /// Builds the client.
    ///
    /// # Errors
    /// When the TLS backend cannot be initialised.
    pub fn new(config: FetchConfig) -> Result<Self, reqwest::Error> {
        // One TLS provider is compiled in (ring); make it the process default. A second call
        // finds it installed already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            // The fetcher decodes bodies itself, keeping them as sent; another crate of the
            // build (the tests' client) may turn the client's decoding on.
            .no_gzip()
            .no_brotli()
            .no_deflate()
            .no_zstd()
            .pool_max_idle_per_host(16)
            .tcp_nodelay(true);
        if !config.allow_private_networks {
            builder = builder.dns_resolver(guard::resolver());
        }
        for (name, addr) in &config.resolve {
            builder = builder.resolve(name, *addr);
        }
        Ok(Self {
            client: builder.build()?,
            config: std::sync::Arc::new(config),
        })
    }

    /// The configuration the fetcher was built with.
    pub fn config(&self) -> &FetchConfig {
        &self.config
    }

    /// Fetches `url`, following redirects that `follow_redirect` accepts.
    ///
    /// # Errors
    /// See [`FetchError`]; a response with any status code is `Ok`.
    pub async fn fetch(
        &self,
        url: &Url,
        options: &RequestOptions<'_>,
        follow_redirect: impl Fn(&Url) -> bool,
    ) -> Result<Fetched, FetchError> {
        let started = Instant::now();
        let mut current = url.clone();
        let mut chain = Vec::new();
        loop {
            self.check_destination(&current)?;
            let request_headers = self.request_headers(options);
            let response = self
                .client
                .get(current.clone())
                .headers(request_headers.clone())
                .send()
                .await
                .map_err(|e| classify(&current, e))?;
            let status = response.status();
            let location = status
                .is_redirection()
                .then(|| response.headers().get(header::LOCATION))
                .flatten()
                .and_then(|l| l.to_str().ok())
                .and_then(|l| current.join(l).ok());
            if let Some(next) = location
                && follow_redirect(&next)
                && matches!(next.scheme(), "http" | "https")
            {
                if chain.len() >= self.config.max_redirects {
                    return Err(FetchError::TooManyRedirects {
                        url: url.to_string(),
                        max: self.config.max_redirects,
                    });
                }
                chain.push(current.to_string());
                current = next;
                continue;
            }
            let mut headers = header_lists(response.headers());
            let version = response.version();
            let remote_addr = response.remote_addr();
            let max = options.max_body.unwrap_or(self.config.max_body);
            let read = body::read(&current, response, max).await?;
            let (body, truncated) = (read.body, read.truncated);
            let encoded = read.encoded.map(|(bytes, cut)| {
                let mut described = Headers::new();
                for name in [header::CONTENT_ENCODING, header::CONTENT_LENGTH] {
                    if let Some((name, values)) = headers.remove_entry(name.as_str()) {
                        described.insert(name, values);
                    }
                }
                EncodedBody {
                    headers: described,
                    body: bytes,
                    truncated: cut,
                }
            });
            return Ok(Fetched {
                final_url: current,
                redirect_chain: chain,
                status: status.as_u16(),
                status_msg: status.canonical_reason().unwrap_or("").to_owned(),
                headers,
                request_headers: header_lists(&request_headers),
                body,
                truncated,
                encoded,
                elapsed: started.elapsed(),
                version,
                remote_addr,
            });
        }
    }

    fn check_destination(&self, url: &Url) -> Result<(), FetchError> {
        let host = match url.host() {
            Some(h) if matches!(url.scheme(), "http" | "https") => h,
            _ => {
                return Err(FetchError::InvalidUrl {
                    url: url.to_string(),
                });
            }
        };
        if self.config.allow_private_networks {
            return Ok(());
        }
        let ip = match host {
            url::Host::Ipv4(ip) => Some(std::net::IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => Some(std::net::IpAddr::V6(ip)),
            // A `--resolve` override never reaches the guarded resolver: check it here.
            url::Host::Domain(name) => self
                .config
                .resolve
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, addr)| addr.ip()),
        };
        // Other names are checked by the guarded resolver.
        match ip {
            Some(ip) if !guard::is_public(ip) => Err(FetchError::PrivateDestination {
                url: url.to_string(),
            }),
            _ => Ok(()),
        }
    }

    fn request_headers(&self, options: &RequestOptions<'_>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let agent = options.user_agent.unwrap_or(&self.config.user_agent);
        if let Ok(v) = HeaderValue::from_str(agent) {
            headers.insert(header::USER_AGENT, v);
        }
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static(
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            ),
        );
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, deflate, br, zstd"),
        );
        if let Some(v) = options.cookie.and_then(|c| HeaderValue::from_str(c).ok()) {
            headers.insert(header::COOKIE, v);
        }
        if let Some(v) = options.referer.and_then(|r| HeaderValue::from_str(r).ok()) {
            headers.insert(header::REFERER, v);
        }
        if let Some(v) = options
            .if_none_match
            .and_then(|e| HeaderValue::from_str(e).ok())
        {
            headers.insert(header::IF_NONE_MATCH, v);
        }
        if let Some(v) = options
            .if_modified_since
            .and_then(|t| HeaderValue::from_str(t).ok())
        {
            headers.insert(header::IF_MODIFIED_SINCE, v);
        }
        headers
    }
}

fn classify(url: &Url, err: reqwest::Error) -> FetchError {
    if err.is_timeout() {
        FetchError::Timeout {
            url: url.to_string(),
        }
    } else {
        FetchError::Transport {
            url: url.to_string(),
            source: err,
        }
    }
}

/// Headers as name → list of values, names lowercase.
pub fn header_lists(headers: &HeaderMap) -> Headers {
    let mut out = Headers::new();
    for (name, value) in headers {
        out.entry(name.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_headers_become_lists() {
        let mut map = HeaderMap::new();
        map.append("set-cookie", HeaderValue::from_static("a=1"));
        map.append("set-cookie", HeaderValue::from_static("b=2"));
        map.append("content-type", HeaderValue::from_static("text/html"));
        let lists = header_lists(&map);
        assert_eq!(lists["set-cookie"], ["a=1", "b=2"]);
        assert_eq!(lists["content-type"], ["text/html"]);
    }

    #[tokio::test]
    async fn ip_literals_in_private_ranges_are_refused_without_a_connection() {
        let fetcher = Fetcher::new(FetchConfig::default()).expect("client");
        let url = Url::parse("http://127.0.0.1:1/").expect("valid");
        let err = fetcher
            .fetch(&url, &RequestOptions::default(), |_| true)
            .await
            .expect_err("refused");
        assert!(
            matches!(err, FetchError::PrivateDestination { .. }),
            "{err:?}"
        );
        assert!(!err.is_transient());
    }

    /// Regression: a `--resolve` override bypassed the guard.
    #[tokio::test]
    async fn resolve_overrides_to_private_addresses_are_refused() {
        let fetcher = Fetcher::new(FetchConfig {
            resolve: vec![(
                "inside.test".to_owned(),
                "127.0.0.1:1".parse().expect("addr"),
            )],
            ..FetchConfig::default()
        })
        .expect("client");
        let url = Url::parse("http://Inside.test:1/").expect("valid");
        let err = fetcher
            .fetch(&url, &RequestOptions::default(), |_| true)
            .await
            .expect_err("refused");
        assert!(
            matches!(err, FetchError::PrivateDestination { .. }),
            "{err:?}"
        );
    }
}
