//! A CrawlJob's rendering (`spec.render`): which pages a headless browser renders, and the
//! limits of one render.
//!
//! Every page is fetched over HTTP first, with the job's politeness, robots.txt and network
//! guard. A page the job renders is then loaded into a browser from that response (the browser
//! does not fetch the document again); the scripts it runs fetch through the worker too, under
//! the same guard. The record is the DOM after the scripts ran, its links are followed, and it
//! is marked `rendered`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The default time one render may take, from loading the page to reading its DOM.
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 20;
/// The default quiet time: the DOM is read once no script has fetched anything for this long.
pub const DEFAULT_SETTLE_MILLIS: u32 = 500;
/// The default most elements a rendered DOM may hold.
pub const DEFAULT_MAX_ELEMENTS: u32 = 200_000;
/// The most patterns one job may name.
pub const MAX_PATTERNS: usize = 100;

/// Which pages are rendered.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RenderMode {
    /// No page is rendered (the default).
    #[default]
    Never,
    /// Every HTML page is rendered.
    Always,
    /// HTML pages whose URL matches one of `patterns` are rendered.
    Patterns,
    /// HTML pages whose fetched HTML shows it needs scripts are rendered (see `Render`).
    Auto,
}

/// How a job's pages are rendered in headless Chromium.
///
/// Only successful (2xx) HTML answers are rendered; others are handled as fetched. `auto`
/// renders a page whose HTML has a `<script>` and either holds fewer than 200 characters of
/// text outside scripts and styles, or has an empty application root (an element with id
/// `root`, `app`, `__next` or `__nuxt` and nothing inside). Each render is counted in the
/// job's `rendered` counter, and `auto`'s decisions also in `render_auto`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.mode != 'patterns' || (has(self.patterns) && size(self.patterns) > 0)",
    "message": "render.mode patterns needs at least one pattern"
}]))]
pub struct Render {
    /// `never` (the default), `always`, `patterns` or `auto`.
    #[serde(default)]
    pub mode: RenderMode,
    /// Regular expressions (Rust syntax) on the page's URL, for mode `patterns`: a page that
    /// matches any of them is rendered. At most 100.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub patterns: Vec<String>,
    /// The most seconds one render may take, 1 to 300 (default 20). A page whose scripts
    /// are still busy at three quarters of it is read as it is (counted in
    /// `render_unsettled`); one that cannot be read in time, or whose renderer crashes, is
    /// published as fetched and counted in `render_failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 300))]
    pub timeout_seconds: Option<u32>,
    /// Milliseconds without a script fetching anything after which the page counts as
    /// settled and its DOM is read, 0 to 30,000 (default 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 30_000))]
    pub settle_millis: Option<u32>,
    /// The most elements a rendered DOM may hold, 100 to 10,000,000 (default 200,000). A
    /// page past it is published as fetched, unrendered, and counted in `render_too_large`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = 10_000_000))]
    pub max_elements: Option<u32>,
    /// Also store a JPEG screenshot of the rendered page (its first 1280×800 pixels) in the
    /// record, base64 in `screenshot`, when it is at most this many bytes, 1,024 to
    /// 5,242,880; a larger one is left out and counted in `screenshot_too_large`. Unset
    /// means no screenshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1024, max = 5_242_880))]
    pub screenshot_max_bytes: Option<u32>,
}

impl Render {
    /// Whether the job renders anything.
    pub fn is_on(&self) -> bool {
        self.mode != RenderMode::Never
    }

    /// The time limit of one render, in seconds.
    pub fn timeout_seconds(&self) -> u32 {
        self.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS)
    }

    /// The quiet time, in milliseconds.
    pub fn settle_millis(&self) -> u32 {
        self.settle_millis.unwrap_or(DEFAULT_SETTLE_MILLIS)
    }

    /// The element limit.
    pub fn max_elements(&self) -> u32 {
        self.max_elements.unwrap_or(DEFAULT_MAX_ELEMENTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_lowercase_and_never_is_the_default() {
        let render: Render = serde_json::from_str(r#"{"mode":"auto"}"#).expect("parses");
        assert_eq!(render.mode, RenderMode::Auto);
        assert!(render.is_on());
        let default: Render = serde_json::from_str("{}").expect("parses");
        assert_eq!(default.mode, RenderMode::Never);
        assert!(!default.is_on());
        assert_eq!(default.timeout_seconds(), DEFAULT_TIMEOUT_SECONDS);
        assert!(serde_json::from_str::<Render>(r#"{"mode":"Always"}"#).is_err());
    }
}
