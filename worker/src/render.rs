//! Rendering pages in headless Chromium: the DOM a page's scripts build, for jobs with
//! `spec.render` ([`kubecrawl_api::Render`]).
//!
//! A page is fetched over HTTP first, like any other (robots.txt, politeness, the network
//! guard, retries). Rendering then loads that response into the browser: the browser never
//! reaches the network itself.
//!
//! - **Every request of the page is answered by the worker** (`Fetch` domain interception,
//!   `intercept`): the document with the response already fetched; scripts, XHR and fetch
//!   calls (GET only) with the worker's own fetcher, so the network guard, the job's
//!   User-Agent, robots.txt (unless the job ignores it) and the body cap hold for
//!   sub-resources too. Images, media, fonts,
//!   stylesheets, WebSockets and other kinds a DOM does not need are refused, as are requests
//!   past [`MAX_SUBRESOURCES`] per page. The browser also runs behind an unreachable proxy, a
//!   backstop for anything the interception would not see.
//! - **Limits per page.** The page has `timeoutSeconds`: it counts as settled once it has
//!   loaded and no request has been pending or answered for `settleMillis`, and is read as it is at three quarters of its time
//!   if it never settles (polling scripts); a page that cannot be read in the rest fails. A
//!   DOM of more than `maxElements` elements is not used. Each renderer's JavaScript heap is
//!   capped (`--max-old-space-size`); a page past it crashes its renderer, which fails the
//!   page, not the browser.
//! - **A pool of browser contexts.** At most `contexts` pages render at once, each in a
//!   fresh incognito context (no cookie or storage crosses pages), disposed afterwards.
//! - **Crashes.** A browser that dies fails the pages it had open, which the worker retries
//!   (their leases go back to the frontier with a bounded retry); the next render starts a
//!   new browser. The browser is killed with the worker: it runs under a parent-death signal
//!   ([`launcher`]), so even a worker killed with SIGKILL leaves no browser behind.

mod intercept;
pub mod launcher;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use chromiumoxide::cdp::browser_protocol::page::CaptureScreenshotFormat;
use chromiumoxide::cdp::browser_protocol::target::{
    CreateBrowserContextParams, CreateTargetParams,
};
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::{Browser, BrowserConfig, Page};
use futures::StreamExt;
use tokio::sync::{Mutex, Semaphore};
use url::Url;

use kubecrawl_api::{Render, RenderMode};

use crate::extract::Signals;
use crate::fetch::Fetcher;

/// Where Debian's `chromium-headless-shell` package puts the browser.
pub const DEFAULT_BROWSER: &str = "/usr/lib/chromium/chromium-headless-shell";
/// The most requests one page may make besides its document.
pub const MAX_SUBRESOURCES: usize = 200;
/// The screenshot's size, in CSS pixels.
const VIEWPORT: (u32, u32) = (1280, 800);
/// How often a settling page is checked.
const SETTLE_POLL: Duration = Duration::from_millis(25);

/// Job counters the render stage adds.
pub mod counter {
    /// Pages rendered.
    pub const RENDERED: &str = "rendered";
    /// Pages `auto` chose to render.
    pub const AUTO: &str = "render_auto";
    /// Rendered pages read at their time limit, still busy.
    pub const UNSETTLED: &str = "render_unsettled";
    /// Renders whose DOM was too large to use.
    pub const TOO_LARGE: &str = "render_too_large";
    /// Renders that timed out or whose renderer crashed.
    pub const FAILED: &str = "render_failed";
    /// Pages to render on a worker without a browser.
    pub const UNAVAILABLE: &str = "render_unavailable";
    /// Screenshots left out for their size.
    pub const SCREENSHOT_TOO_LARGE: &str = "screenshot_too_large";
}

/// How a worker's browser runs.
#[derive(Debug, Clone)]
pub struct RenderConfig {
    /// The browser executable.
    pub browser: PathBuf,
    /// Pages rendered at once (browser contexts open at once).
    pub contexts: usize,
    /// The JavaScript heap of each renderer process, in MiB.
    pub js_heap_mb: u32,
    /// The most body bytes of one sub-resource.
    pub max_subresource_bytes: usize,
    /// A worker binary to start the browser through, so that the browser dies with the
    /// worker ([`launcher`]); `None` starts the browser directly (a library user, a test).
    pub launcher: Option<PathBuf>,
}

impl Default for RenderConfig {
    fn default() -> Self {
        Self {
            browser: PathBuf::from(DEFAULT_BROWSER),
            contexts: 4,
            js_heap_mb: 256,
            max_subresource_bytes: 4 * 1024 * 1024,
            launcher: None,
        }
    }
}

/// The limits of one render, from the job's `spec.render`.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The whole render.
    pub timeout: Duration,
    /// The quiet time that counts as settled.
    pub settle: Duration,
    /// The most elements the DOM may hold.
    pub max_elements: u64,
    /// Take a screenshot when it is at most this many bytes.
    pub screenshot_max_bytes: Option<usize>,
}

impl Limits {
    /// The limits a job's `render` asks for.
    pub fn of(render: &kubecrawl_api::Render) -> Self {
        Self {
            timeout: Duration::from_secs(u64::from(render.timeout_seconds())),
            settle: Duration::from_millis(u64::from(render.settle_millis())),
            max_elements: u64::from(render.max_elements()),
            screenshot_max_bytes: render.screenshot_max_bytes.map(|b| b as usize),
        }
    }
}

/// A job's rendering, compiled: which pages, and the limits.
#[derive(Debug, Clone)]
pub struct Plan {
    mode: RenderMode,
    patterns: regex::RegexSet,
    /// The limits of each render.
    pub limits: Limits,
}

/// Why a page is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The job renders every page.
    Always,
    /// The page's URL matches one of the job's patterns.
    Pattern,
    /// The page's HTML shows it needs its scripts ([`Signals::needs_render`]).
    Auto,
}

impl Plan {
    /// The plan of a job's `render`.
    ///
    /// # Errors
    /// When a pattern is not a regular expression.
    pub fn compile(render: &Render) -> Result<Self, regex::Error> {
        Ok(Self {
            mode: render.mode,
            patterns: regex::RegexSet::new(&render.patterns)?,
            limits: Limits::of(render),
        })
    }

    /// Whether a page at `url` whose HTML shows `signals` is rendered, and why.
    pub fn wants(&self, url: &Url, signals: &Signals) -> Option<Why> {
        match self.mode {
            RenderMode::Never => None,
            RenderMode::Always => Some(Why::Always),
            RenderMode::Patterns => self.patterns.is_match(url.as_str()).then_some(Why::Pattern),
            RenderMode::Auto => signals.needs_render().then_some(Why::Auto),
        }
    }
}

/// The page to render: the response already fetched, and how its sub-resources are fetched.
#[derive(Debug, Clone)]
pub struct Document {
    /// The URL the response came from (after redirects).
    pub url: Url,
    /// Its status code.
    pub status: u16,
    /// Its headers, name (lowercase) → values, describing `body`.
    pub headers: Vec<(String, String)>,
    /// The body, decoded from its Content-Encoding.
    pub body: bytes::Bytes,
    /// The User-Agent sub-resources are fetched with (the job's, or the worker's default).
    pub user_agent: Option<String>,
    /// The robots.txt rules the page's own requests must pass (the worker's cache, which
    /// fetches an origin's robots.txt the first time); `None` when the job ignores robots.txt.
    pub robots: Option<Arc<crate::robots::RobotsCache>>,
}

/// A rendered page.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The DOM after the scripts ran, serialised.
    pub html: String,
    /// Elements in it.
    pub elements: u64,
    /// Requests the page made besides its document, answered or refused.
    pub subresources: u64,
    /// The page settled; false when it was read as it was at its time limit.
    pub settled: bool,
    /// The screenshot, base64, when asked for and small enough.
    pub screenshot: Option<String>,
    /// A screenshot was asked for but was larger than allowed.
    pub screenshot_too_large: bool,
    /// From loading the page to reading its DOM.
    pub elapsed: Duration,
}

/// Why a page was not rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The DOM grew past the job's `maxElements`.
    #[error("the rendered page has {elements} elements, more than the job's {max}")]
    TooLarge {
        /// Elements found.
        elements: u64,
        /// The limit.
        max: u64,
    },
    /// The page could not be loaded or read within its time.
    #[error("rendering took longer than {0:?}")]
    Timeout(Duration),
    /// The page's renderer crashed (out of memory, most likely).
    #[error("the page's renderer crashed")]
    PageCrashed,
    /// The browser could not be started, died, or stopped answering.
    #[error("the browser failed: {0}")]
    Browser(String),
}

impl RenderError {
    /// The label counted for it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "render_too_large",
            Self::Timeout(_) => "render_timeout",
            Self::PageCrashed => "render_page_crashed",
            Self::Browser(_) => "render_browser_failed",
        }
    }
}

fn browser_error(e: impl std::fmt::Display) -> RenderError {
    RenderError::Browser(e.to_string())
}

/// Whether `browser` is an executable file, as a start-up check.
///
/// # Errors
/// [`RenderError::Browser`] naming what is wrong.
pub fn check_browser(browser: &std::path::Path) -> Result<(), RenderError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(browser)
        .map_err(|e| RenderError::Browser(format!("{}: {e}", browser.display())))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(RenderError::Browser(format!(
            "{} is not an executable file",
            browser.display()
        )));
    }
    Ok(())
}

/// A running browser.
struct Live {
    browser: Browser,
    handler: tokio::task::JoinHandle<()>,
    /// Which start of the browser this is (1 for the first).
    generation: u64,
    /// The browser's process id.
    pid: Option<u32>,
    _profile: TempDir,
}

/// A worker's browser and its pool of contexts. Started on first use, started again after
/// it died.
pub struct Renderer {
    config: RenderConfig,
    fetcher: Fetcher,
    slots: Arc<Semaphore>,
    live: Mutex<Option<Arc<Live>>>,
    starts: AtomicU64,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Renderer {
    /// A renderer whose pages fetch their sub-resources with `fetcher`. Nothing starts yet.
    pub fn new(config: RenderConfig, fetcher: Fetcher) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(config.contexts.max(1))),
            config,
            fetcher,
            live: Mutex::new(None),
            starts: AtomicU64::new(0),
        }
    }

    /// Starts the browser now, so that a worker that cannot start one fails at startup.
    ///
    /// # Errors
    /// [`RenderError::Browser`] when the browser cannot be started.
    pub async fn start(&self) -> Result<(), RenderError> {
        self.browser().await.map(|_| ())
    }

    /// How many times the browser was started.
    pub fn starts(&self) -> u64 {
        self.starts.load(Ordering::Relaxed)
    }

    /// The browser's process id, while it runs.
    pub async fn browser_pid(&self) -> Option<u32> {
        let live = self.live.lock().await.clone()?;
        live.pid
    }

    /// Renders `document` within `limits`.
    ///
    /// # Errors
    /// See [`RenderError`]. A [`RenderError::Browser`] also stops the browser, so the next
    /// render starts a new one.
    pub async fn render(
        &self,
        document: &Document,
        limits: &Limits,
    ) -> Result<Rendered, RenderError> {
        let _slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(browser_error)?;
        let live = self.browser().await?;
        let result = self.render_in(&live, document, limits).await;
        if let Err(RenderError::Browser(reason)) = &result {
            tracing::warn!(%reason, generation = live.generation, "browser failed, stopping it");
            self.stop_generation(live.generation).await;
        }
        result
    }

    /// Stops the browser: the pages it had open fail.
    pub async fn stop(&self) {
        let live = self.live.lock().await.take();
        if let Some(live) = live {
            shut(live).await;
        }
    }

    async fn stop_generation(&self, generation: u64) {
        let live = {
            let mut slot = self.live.lock().await;
            match slot.as_ref() {
                Some(live) if live.generation == generation => slot.take(),
                _ => None,
            }
        };
        if let Some(live) = live {
            shut(live).await;
        }
    }

    /// The running browser, started if there is none (or the one there died).
    async fn browser(&self) -> Result<Arc<Live>, RenderError> {
        let mut slot = self.live.lock().await;
        if let Some(live) = slot.as_ref() {
            if !live.handler.is_finished() {
                return Ok(live.clone());
            }
            tracing::warn!(generation = live.generation, "browser connection ended");
        }
        if let Some(dead) = slot.take() {
            shut(dead).await;
        }
        let generation = self.starts.fetch_add(1, Ordering::Relaxed) + 1;
        let live = Arc::new(self.launch(generation).await?);
        *slot = Some(live.clone());
        Ok(live)
    }

    async fn launch(&self, generation: u64) -> Result<Live, RenderError> {
        let profile = TempDir::new().map_err(browser_error)?;
        let builder = match &self.config.launcher {
            Some(launcher) => BrowserConfig::builder()
                .chrome_executable(launcher)
                .envs(launcher::env(&self.config.browser)),
            None => BrowserConfig::builder().chrome_executable(&self.config.browser),
        };
        let config = builder
            .user_data_dir(profile.path())
            .no_sandbox()
            .viewport(None)
            .window_size(VIEWPORT.0, VIEWPORT.1)
            .launch_timeout(Duration::from_secs(20))
            .request_timeout(Duration::from_secs(30))
            // chromiumoxide writes each as `--<key>`.
            .args([
                // Nothing reaches the network but through the interception.
                "proxy-server=http://127.0.0.1:9".to_owned(),
                "proxy-bypass-list=<-loopback>".to_owned(),
                format!("js-flags=--max-old-space-size={}", self.config.js_heap_mb),
                "disable-gpu".to_owned(),
                "no-zygote".to_owned(),
                "disable-software-rasterizer".to_owned(),
            ])
            .build()
            .map_err(RenderError::Browser)?;
        let (mut browser, mut handler) = Browser::launch(config).await.map_err(browser_error)?;
        let pid = browser.get_mut_child().and_then(|c| c.as_mut_inner().id());
        let handler = tokio::spawn(async move {
            while let Some(event) = handler.next().await {
                if let Err(e) = event {
                    tracing::debug!(error = %e, "browser connection event");
                    if matches!(e, chromiumoxide::error::CdpError::Ws(_)) {
                        break;
                    }
                }
            }
        });
        let live = Live {
            browser,
            handler,
            generation,
            pid,
            _profile: profile,
        };
        tracing::info!(generation, pid = ?live.pid, "browser started");
        Ok(live)
    }

    async fn render_in(
        &self,
        live: &Live,
        document: &Document,
        limits: &Limits,
    ) -> Result<Rendered, RenderError> {
        let context = live
            .browser
            .create_browser_context(CreateBrowserContextParams::default())
            .await
            .map_err(browser_error)?;
        let target = CreateTargetParams::builder()
            .url("about:blank")
            .browser_context_id(context.clone())
            .build()
            .map_err(RenderError::Browser)?;
        let result = match live.browser.new_page(target).await {
            Ok(page) => {
                let result = self.load_and_read(&page, document, limits).await;
                // Closing the page also stops a script still running in it.
                let _ = tokio::time::timeout(Duration::from_secs(5), page.close()).await;
                result
            }
            Err(e) => Err(browser_error(e)),
        };
        let disposed = tokio::time::timeout(
            Duration::from_secs(5),
            live.browser.dispose_browser_context(context),
        )
        .await;
        match (result, disposed) {
            // A context that cannot be disposed means the browser is not answering.
            (Ok(_), Err(_) | Ok(Err(_))) => Err(RenderError::Browser(
                "disposing a browser context failed".to_owned(),
            )),
            (result, _) => result,
        }
    }

    async fn load_and_read(
        &self,
        page: &Page,
        document: &Document,
        limits: &Limits,
    ) -> Result<Rendered, RenderError> {
        let started = Instant::now();
        let deadline = started + limits.timeout;
        let traffic = intercept::serve(
            page,
            document.clone(),
            self.fetcher.clone(),
            self.config.max_subresource_bytes,
        )
        .await?;
        let crashed = intercept::crashed(page).await?;
        let navigate = async {
            tokio::select! {
                loaded = page.goto(document.url.as_str()) => loaded.map(|_| ()).map_err(browser_error),
                () = crashed.wait() => Err(RenderError::PageCrashed),
            }
        };
        match tokio::time::timeout_at(deadline.into(), navigate).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) if crashed.is_set() => return Err(RenderError::PageCrashed),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(RenderError::Timeout(limits.timeout)),
        }
        traffic.touch();
        // Settled: nothing pending for `settle`, or read anyway at three quarters of the time.
        let read_by = started + limits.timeout.mul_f64(0.75);
        let settled = loop {
            if crashed.is_set() {
                return Err(RenderError::PageCrashed);
            }
            if traffic.quiet_for(limits.settle) {
                break true;
            }
            if Instant::now() >= read_by {
                break false;
            }
            tokio::time::sleep(SETTLE_POLL).await;
        };
        let read = async {
            let elements: u64 = evaluate(page, "document.getElementsByTagName('*').length").await?;
            if elements > limits.max_elements {
                return Err(RenderError::TooLarge {
                    elements,
                    max: limits.max_elements,
                });
            }
            let html: String = evaluate(
                page,
                "(document.doctype ? new XMLSerializer().serializeToString(document.doctype) + '\\n' : '') + document.documentElement.outerHTML",
            )
            .await?;
            let shot = match limits.screenshot_max_bytes {
                Some(max) => Some((screenshot(page).await?, max)),
                None => None,
            };
            Ok((elements, html, shot))
        };
        let read = async {
            tokio::select! {
                read = read => read,
                () = crashed.wait() => Err(RenderError::PageCrashed),
            }
        };
        let (elements, html, shot) = match tokio::time::timeout_at(deadline.into(), read).await {
            Ok(Ok(read)) => read,
            Ok(Err(_)) if crashed.is_set() => return Err(RenderError::PageCrashed),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(RenderError::Timeout(limits.timeout)),
        };
        let (screenshot, screenshot_too_large) = match shot {
            Some((bytes, max)) if bytes.len() <= max => (
                Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
                false,
            ),
            Some(_) => (None, true),
            None => (None, false),
        };
        Ok(Rendered {
            html,
            elements,
            subresources: traffic.requests(),
            settled,
            screenshot,
            screenshot_too_large,
            elapsed: started.elapsed(),
        })
    }
}

/// Ends a browser: closes it, kills it if it does not close, and waits for it.
async fn shut(live: Arc<Live>) {
    let live = match Arc::try_unwrap(live) {
        Ok(live) => live,
        Err(shared) => {
            // Pages still hold it: kill it, so that they fail now; the last one to let go
            // reaps it (the child is killed and waited for on drop).
            if let Some(pid) = shared.pid.and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            return;
        }
    };
    let mut live = live;
    if tokio::time::timeout(Duration::from_secs(5), live.browser.close())
        .await
        .is_err()
    {
        tracing::warn!(
            generation = live.generation,
            "browser did not close, killing it"
        );
    }
    let _ = live.browser.kill().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), live.browser.wait()).await;
    live.handler.abort();
}

async fn evaluate<T: serde::de::DeserializeOwned>(
    page: &Page,
    expression: &str,
) -> Result<T, RenderError> {
    page.evaluate(expression)
        .await
        .map_err(browser_error)?
        .into_value()
        .map_err(browser_error)
}

async fn screenshot(page: &Page) -> Result<Vec<u8>, RenderError> {
    let params = ScreenshotParams::builder()
        .format(CaptureScreenshotFormat::Jpeg)
        .quality(70)
        .build();
    page.screenshot(params).await.map_err(browser_error)
}

/// A directory removed when dropped: the browser's profile.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "kubecrawl-browser-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_browser_that_is_not_an_executable_file_is_named() {
        let missing =
            check_browser(std::path::Path::new("/nonexistent/chromium")).expect_err("refused");
        assert!(
            missing.to_string().contains("/nonexistent/chromium"),
            "{missing}"
        );
        let file =
            std::env::temp_dir().join(format!("kubecrawl-not-a-browser-{}", std::process::id()));
        std::fs::write(&file, "text").expect("a file");
        let plain = check_browser(&file).expect_err("refused");
        let _ = std::fs::remove_file(&file);
        assert!(
            plain.to_string().contains("is not an executable file"),
            "{plain}"
        );
        let dir = check_browser(std::path::Path::new("/usr/bin")).expect_err("refused");
        assert!(
            dir.to_string().contains("is not an executable file"),
            "{dir}"
        );
        assert!(check_browser(std::path::Path::new("/bin/sh")).is_ok());
    }
}
