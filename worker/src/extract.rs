//! Link extraction from HTML, streaming: html5ever's tokenizer, no DOM.
//!
//! `a` and `area` hrefs are resolved against the page URL or its `<base href>`, canonicalised
//! (lowercase scheme and host, default port and fragment dropped), restricted to http and
//! https, and deduplicated in document order. Anchor text is kept with whitespace collapsed.
//! Links marked `rel="nofollow"`, or all links of a page whose `<meta name="robots">` says
//! `nofollow`, are kept and flagged; whether they are followed is the runtime's decision.
//!
//! The tokens are read as the HTML parser would see them, without building the tree: the
//! contents of `script`, `style`, `noscript`, `iframe`, `textarea`, `title`, … are text (so a
//! link written inside a script is not a link), an anchor's text ends with its `</a>`, the
//! next `<a>` or the end of an element it was opened in (as the tree builder closes it), and
//! `<base>` applies to every link of the page wherever it stands. A test checks that the links
//! are those a DOM (`scraper`) finds, on the synthetic site and on real pages.
//!
//! The same pass notes what `render.mode: auto` decides on ([`Signals`]): scripts, the text
//! outside scripts and styles, and an empty application root.

use std::cell::RefCell;
use std::collections::HashSet;

use html5ever::tendril::StrTendril;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{
    BufferQueue, Tag, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};
use html5ever::{LocalName, TokenizerResult, local_name};
use kubecrawl_api::Link;
use kubecrawl_frontier::fingerprint::canonicalize;
use url::Url;

/// The most links kept from one page; a page with more is a trap or a sitemap dump.
pub const MAX_LINKS_PER_PAGE: usize = 10_000;
/// The longest anchor text kept, in characters.
const MAX_LINK_TEXT: usize = 256;
/// The most raw anchor text gathered before it is collapsed, in bytes.
const MAX_RAW_TEXT: usize = 64 * 1024;
/// The longest URL followed, in bytes; longer ones are dropped (the repeating-path trap).
pub const MAX_URL_LEN: usize = 2048;

/// A page with less text than this (outside scripts and styles, whitespace not counted) and
/// a script is rendered by `render.mode: auto`.
pub const AUTO_RENDER_TEXT_CHARS: usize = 200;
/// The ids of the elements single-page applications mount into.
const APP_ROOT_IDS: [&str; 4] = ["root", "app", "__next", "__nuxt"];

/// What the scan saw that tells whether a page needs its scripts run to show its content.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Signals {
    /// `<script>` elements.
    pub scripts: usize,
    /// Characters of text outside scripts, styles and the head's title, whitespace not
    /// counted; counting stops at [`AUTO_RENDER_TEXT_CHARS`].
    pub text_chars: usize,
    /// An element with an application root's id (`root`, `app`, `__next`, `__nuxt`) holds
    /// nothing but whitespace.
    pub empty_app_root: bool,
}

impl Signals {
    /// `render.mode: auto`'s rule: a script, and either little text or an empty
    /// application root.
    pub fn needs_render(&self) -> bool {
        self.scripts > 0 && (self.text_chars < AUTO_RENDER_TEXT_CHARS || self.empty_app_root)
    }
}

/// Extracts the links of an HTML document served from `page_url`.
pub fn links(html: &str, page_url: &Url) -> Vec<Link> {
    scan(html, page_url).0
}

/// The links of an HTML document served from `page_url`, and its [`Signals`].
pub fn scan(html: &str, page_url: &Url) -> (Vec<Link>, Signals) {
    let tokenizer = Tokenizer::new(Scan::default(), TokenizerOpts::default());
    let input = BufferQueue::default();
    input.push_back(StrTendril::from_slice(html));
    while let TokenizerResult::Script(()) = tokenizer.feed(&input) {}
    tokenizer.end();
    let found = tokenizer.sink.found.take();
    let signals = found.signals;

    let base = found
        .base
        .and_then(|href| page_url.join(href.trim()).ok())
        .unwrap_or_else(|| page_url.clone());
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for raw in found.links {
        let Ok(absolute) = base.join(raw.href.trim()) else {
            continue;
        };
        let Some(canonical) = canonicalize(absolute.as_str()) else {
            continue;
        };
        if canonical.url.len() > MAX_URL_LEN || !seen.insert(canonical.url.clone()) {
            continue;
        }
        out.push(Link {
            url: canonical.url,
            text: collapse_whitespace(&raw.text),
            nofollow: found.page_nofollow || raw.nofollow,
        });
        if out.len() == MAX_LINKS_PER_PAGE {
            break;
        }
    }
    (out, signals)
}

/// A link as written, before resolution.
#[derive(Debug, Default)]
struct RawLink {
    href: String,
    text: String,
    nofollow: bool,
}

/// What the scan found.
#[derive(Debug, Default)]
struct Found {
    links: Vec<RawLink>,
    /// The first `<base href>`.
    base: Option<String>,
    /// A `<meta name="robots">` says nofollow (or none).
    page_nofollow: bool,
    signals: Signals,
}

/// The scan's state between tokens.
#[derive(Debug, Default)]
struct Scan {
    found: RefCell<Found>,
    state: RefCell<ScanState>,
}

#[derive(Debug, Default)]
struct ScanState {
    /// Elements open, as far as end tags tell (void elements never are).
    open: Vec<LocalName>,
    /// The anchor whose text is being gathered: its link's index and how many elements were
    /// open around it.
    anchor: Option<(usize, usize)>,
    /// How many `svg` and `math` elements are open: inside them, `style`, `title`, … are
    /// markup, not text.
    foreign: usize,
    /// An application root was opened and nothing but whitespace came since: how many
    /// elements were open around it.
    app_root: Option<usize>,
}

impl TokenSink for Scan {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        match token {
            Token::TagToken(tag) if tag.kind == TagKind::StartTag => return self.start(tag),
            Token::TagToken(tag) => self.end_tag(&tag.name),
            Token::CharacterTokens(text) => {
                let mut state = self.state.borrow_mut();
                let visible = state
                    .open
                    .last()
                    .is_none_or(|open| raw_kind(open).is_none());
                if visible && text.chars().any(|c| !c.is_whitespace()) {
                    state.app_root = None;
                    let mut found = self.found.borrow_mut();
                    let counted = &mut found.signals.text_chars;
                    if *counted < AUTO_RENDER_TEXT_CHARS {
                        *counted += text.chars().filter(|c| !c.is_whitespace()).count();
                    }
                }
                if let Some((index, _)) = state.anchor {
                    let mut found = self.found.borrow_mut();
                    let gathered = &mut found.links[index].text;
                    if gathered.len() < MAX_RAW_TEXT {
                        gathered.push_str(&text);
                    }
                }
            }
            _ => {}
        }
        TokenSinkResult::Continue
    }

    fn adjusted_current_node_present_but_not_in_html_namespace(&self) -> bool {
        // CDATA sections are text inside SVG and MathML, bogus comments elsewhere.
        self.state.borrow().foreign > 0
    }
}

impl Scan {
    fn start(&self, tag: Tag) -> TokenSinkResult<()> {
        let mut state = self.state.borrow_mut();
        let name = tag.name.clone();
        // Any element inside an application root means it is not empty.
        state.app_root = None;
        if name == local_name!("script") {
            self.found.borrow_mut().signals.scripts += 1;
        } else if attr(&tag, &local_name!("id")).is_some_and(|id| APP_ROOT_IDS.contains(&&**id))
            && !is_void(&name)
            && !tag.self_closing
        {
            state.app_root = Some(state.open.len());
        }
        if name == local_name!("a") {
            // A new anchor closes the one still open, as the tree builder does.
            state.anchor = None;
            if let Some(index) = self.push_link(&tag) {
                state.anchor = Some((index, state.open.len()));
            }
        } else if name == local_name!("area") {
            self.push_link(&tag);
        } else if name == local_name!("base") {
            let mut found = self.found.borrow_mut();
            if found.base.is_none()
                && let Some(href) = attr(&tag, &local_name!("href"))
            {
                found.base = Some(href.to_string());
            }
        } else if name == local_name!("meta") && meta_robots_nofollow(&tag) {
            self.found.borrow_mut().page_nofollow = true;
        }
        if is_void(&name) {
            return TokenSinkResult::Continue;
        }
        let foreign_root = name == local_name!("svg") || name == local_name!("math");
        if tag.self_closing && (foreign_root || state.foreign > 0) {
            // Acknowledged in SVG and MathML: it opens nothing.
            return TokenSinkResult::Continue;
        }
        let result = if foreign_root || state.foreign > 0 {
            TokenSinkResult::Continue
        } else {
            // Start tags that end an open element implicitly (`<p>` after `<p>`, `<li>`
            // after `<li>`, …), which ends an anchor opened inside it.
            if let Some((closed, scope)) = implicitly_closed(&name)
                && let Some(at) = state.find_in_scope(closed, scope)
            {
                state.close_from(at);
            }
            match raw_kind(&name) {
                Some(Raw::Data(kind)) => TokenSinkResult::RawData(kind),
                Some(Raw::Plaintext) => TokenSinkResult::Plaintext,
                None => TokenSinkResult::Continue,
            }
        };
        if foreign_root {
            state.foreign += 1;
        }
        state.open.push(name);
        result
    }

    /// Records the link of an `a` or `area` start tag that has an href; returns its index.
    fn push_link(&self, tag: &Tag) -> Option<usize> {
        let href = attr(tag, &local_name!("href"))?;
        let mut found = self.found.borrow_mut();
        found.links.push(RawLink {
            href: href.to_string(),
            text: String::new(),
            nofollow: rel_nofollow(tag),
        });
        Some(found.links.len() - 1)
    }

    fn end_tag(&self, name: &LocalName) {
        let mut state = self.state.borrow_mut();
        if *name == local_name!("a") {
            state.anchor = None;
        }
        if let Some(depth) = state.app_root.take()
            && state.open.len() == depth + 1
            && state.open.last() == Some(name)
        {
            self.found.borrow_mut().signals.empty_app_root = true;
        }
        if let Some(at) = state.open.iter().rposition(|open| open == name) {
            state.close_from(at);
        }
    }
}

impl ScanState {
    /// The innermost open element named in `names`, unless an element of `scope` is open
    /// inside it.
    fn find_in_scope(&self, names: &[LocalName], scope: &[LocalName]) -> Option<usize> {
        for (at, open) in self.open.iter().enumerate().rev() {
            if names.contains(open) {
                return Some(at);
            }
            if scope.contains(open) {
                return None;
            }
        }
        None
    }

    /// Closes the open elements from `at` on.
    fn close_from(&mut self, at: usize) {
        let foreign = self.open[at..]
            .iter()
            .filter(|n| **n == local_name!("svg") || **n == local_name!("math"))
            .count();
        self.foreign -= foreign.min(self.foreign);
        self.open.truncate(at);
        // The element the anchor was opened in has ended, and the anchor with it.
        if self.anchor.is_some_and(|(_, depth)| at < depth) {
            self.anchor = None;
        }
    }
}

/// What a start tag `name` ends implicitly, when it does: the open elements it closes, and
/// the elements that hide them from it (a scope). The tree builder's implied end tags for the
/// common cases: a `p` before a block, list items, table cells and rows, options.
fn implicitly_closed(name: &LocalName) -> Option<(&'static [LocalName], &'static [LocalName])> {
    static P: &[LocalName] = &[local_name!("p")];
    static BUTTON_SCOPE: &[LocalName] = &[
        local_name!("applet"),
        local_name!("button"),
        local_name!("caption"),
        local_name!("html"),
        local_name!("marquee"),
        local_name!("object"),
        local_name!("table"),
        local_name!("td"),
        local_name!("template"),
        local_name!("th"),
    ];
    static LI: &[LocalName] = &[local_name!("li")];
    static LIST_SCOPE: &[LocalName] = &[
        local_name!("ol"),
        local_name!("ul"),
        local_name!("table"),
        local_name!("td"),
        local_name!("th"),
        local_name!("template"),
    ];
    static DT_DD: &[LocalName] = &[local_name!("dt"), local_name!("dd")];
    static DL_SCOPE: &[LocalName] = &[
        local_name!("dl"),
        local_name!("table"),
        local_name!("td"),
        local_name!("th"),
        local_name!("template"),
    ];
    static CELL: &[LocalName] = &[local_name!("td"), local_name!("th")];
    static ROW_SCOPE: &[LocalName] = &[
        local_name!("tr"),
        local_name!("table"),
        local_name!("template"),
    ];
    static ROW: &[LocalName] = &[local_name!("tr")];
    static TABLE_SCOPE: &[LocalName] = &[local_name!("table"), local_name!("template")];
    static OPTION: &[LocalName] = &[local_name!("option")];
    static SELECT_SCOPE: &[LocalName] = &[
        local_name!("select"),
        local_name!("optgroup"),
        local_name!("datalist"),
    ];
    Some(match *name {
        local_name!("li") => (LI, LIST_SCOPE),
        local_name!("dt") | local_name!("dd") => (DT_DD, DL_SCOPE),
        local_name!("td") | local_name!("th") => (CELL, ROW_SCOPE),
        local_name!("tr") => (ROW, TABLE_SCOPE),
        local_name!("option") => (OPTION, SELECT_SCOPE),
        local_name!("p")
        | local_name!("address")
        | local_name!("article")
        | local_name!("aside")
        | local_name!("blockquote")
        | local_name!("details")
        | local_name!("div")
        | local_name!("dl")
        | local_name!("fieldset")
        | local_name!("figcaption")
        | local_name!("figure")
        | local_name!("footer")
        | local_name!("form")
        | local_name!("h1")
        | local_name!("h2")
        | local_name!("h3")
        | local_name!("h4")
        | local_name!("h5")
        | local_name!("h6")
        | local_name!("header")
        | local_name!("hgroup")
        | local_name!("main")
        | local_name!("menu")
        | local_name!("nav")
        | local_name!("ol")
        | local_name!("pre")
        | local_name!("section")
        | local_name!("summary")
        | local_name!("table")
        | local_name!("ul") => (P, BUTTON_SCOPE),
        _ => return None,
    })
}

/// How the tokenizer reads an element's contents, when not as markup.
enum Raw {
    Data(RawKind),
    Plaintext,
}

/// The elements whose contents the HTML parser reads as text (scripting enabled, as in a
/// browser: `noscript` too).
fn raw_kind(name: &LocalName) -> Option<Raw> {
    Some(match *name {
        local_name!("script") => Raw::Data(RawKind::ScriptData),
        local_name!("style")
        | local_name!("xmp")
        | local_name!("iframe")
        | local_name!("noembed")
        | local_name!("noframes")
        | local_name!("noscript") => Raw::Data(RawKind::Rawtext),
        local_name!("title") | local_name!("textarea") => Raw::Data(RawKind::Rcdata),
        local_name!("plaintext") => Raw::Plaintext,
        _ => return None,
    })
}

/// Elements that have no end tag and no contents.
fn is_void(name: &LocalName) -> bool {
    matches!(
        *name,
        local_name!("area")
            | local_name!("base")
            | local_name!("br")
            | local_name!("col")
            | local_name!("embed")
            | local_name!("hr")
            | local_name!("img")
            | local_name!("input")
            | local_name!("link")
            | local_name!("meta")
            | local_name!("source")
            | local_name!("track")
            | local_name!("wbr")
            | local_name!("param")
            | local_name!("keygen")
    )
}

fn attr<'t>(tag: &'t Tag, name: &LocalName) -> Option<&'t StrTendril> {
    tag.attrs
        .iter()
        .find(|a| a.name.local == *name)
        .map(|a| &a.value)
}

fn rel_nofollow(tag: &Tag) -> bool {
    attr(tag, &local_name!("rel")).is_some_and(|rel| {
        rel.split_ascii_whitespace()
            .any(|r| r.eq_ignore_ascii_case("nofollow"))
    })
}

/// `<meta name="robots" content="…nofollow…">` (or `none`); the name as the DOM version
/// matched it: robots, ROBOTS or Robots.
fn meta_robots_nofollow(tag: &Tag) -> bool {
    let named = attr(tag, &local_name!("name"))
        .is_some_and(|n| matches!(&**n, "robots" | "ROBOTS" | "Robots"));
    named
        && attr(tag, &local_name!("content")).is_some_and(|c| {
            c.to_ascii_lowercase()
                .split(',')
                .any(|d| matches!(d.trim(), "nofollow" | "none"))
        })
}

fn collapse_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_LINK_TEXT));
    for word in text.split_whitespace() {
        if out.chars().count() + word.chars().count() + 1 > MAX_LINK_TEXT {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use scraper::{Html, Selector};

    /// The links a DOM finds, as this module found them before it streamed: the reference
    /// the tokenizer's links are compared with.
    fn dom_links(html: &str, page_url: &Url) -> Vec<Link> {
        let doc = Html::parse_document(html);
        let select = |s| Selector::parse(s).expect("a constant, valid selector");
        let base = doc
            .select(&select("base[href]"))
            .next()
            .and_then(|b| b.value().attr("href"))
            .and_then(|href| page_url.join(href.trim()).ok())
            .unwrap_or_else(|| page_url.clone());
        let page_nofollow = doc
            .select(&select(
                "meta[name=robots], meta[name=ROBOTS], meta[name=Robots]",
            ))
            .any(|m| {
                m.value().attr("content").is_some_and(|c| {
                    c.to_ascii_lowercase()
                        .split(',')
                        .any(|d| matches!(d.trim(), "nofollow" | "none"))
                })
            });
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for element in doc.select(&select("a[href], area[href]")) {
            let href = element.value().attr("href").unwrap_or_default();
            let Ok(absolute) = base.join(href.trim()) else {
                continue;
            };
            let Some(canonical) = canonicalize(absolute.as_str()) else {
                continue;
            };
            if canonical.url.len() > MAX_URL_LEN || !seen.insert(canonical.url.clone()) {
                continue;
            }
            let nofollow = page_nofollow
                || element.value().attr("rel").is_some_and(|rel| {
                    rel.split_ascii_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("nofollow"))
                });
            out.push(Link {
                url: canonical.url,
                text: collapse_whitespace(&element.text().collect::<String>()),
                nofollow,
            });
        }
        out
    }

    /// The tokenizer's links and the DOM's, side by side where they differ.
    fn differences(html: &str, page: &Url) -> Option<String> {
        let streamed = links(html, page);
        let dom = dom_links(html, page);
        (streamed != dom).then(|| format!("streamed: {streamed:#?}\nDOM: {dom:#?}"))
    }

    #[test]
    fn the_tokenizer_finds_what_a_dom_finds_in_tricky_markup() {
        let page = Url::parse("http://site.test/dir/page.html").expect("valid");
        let cases = [
            r#"<a href="/a">a</a><script>var s = '<a href="/in-script">x</a>';</script><a href="/b">b</a>"#,
            r#"<noscript><a href="/in-noscript">n</a></noscript><a href="/c">c</a>"#,
            r#"<style>a[href="/in-style"] {}</style><textarea><a href="/in-textarea"></a></textarea><title><a href=/t></title>"#,
            r#"<a href="/one">one<p><a href=/two>two</div></table><a href="/three""#,
            r#"<p><a href="/unclosed">unclosed<p>next paragraph</p><a href="/after">after</a>"#,
            r#"<ul><li><a href="/l1">first<li>second item</ul>"#,
            r#"<table><tr><td><a href="/cell">cell<td>other cell</table>"#,
            r#"<a href="/x">x<div>inside a div</div>still</a> outside"#,
            r#"<a href="/outer">outer<a href="/inner">inner</a>tail</a>"#,
            r#"<a href="/b1"><b>bold</a> after</b>"#,
            r#"<svg><a href="/svg-link">s</a><style>a{}</style><title>t</title></svg><a href="/d">d</a>"#,
            r#"<math><mi><![CDATA[x]]></mi></math><a href="/m">m &amp; &lt;n&gt; &#x41;</a>"#,
            r#"<a href="/q?a=1&amp;b=2">&nbsp;spaced&nbsp; text </a><!-- <a href="/in-comment"> -->"#,
            r#"<a href="/base-after">before base</a><base href="http://other.test/b/"><a href="rel">rel</a>"#,
            r#"<iframe><a href="/in-iframe"></a></iframe><xmp><a href=/in-xmp></xmp><a href="/e">e</a>"#,
            r#"<div><a href="/d1">d1</div><a href="/d2">d2</a>"#,
            r#"<select><option><a href="/opt">o</a><option>p</select>"#,
            r#"<a href="/img"><img src="x.png" alt="alt text">label<br>line</a>"#,
            r#"<A HREF="/UPPER" REL="NOFOLLOW">Upper</A><area href="/area" rel=nofollow>"#,
            r#"<meta name="ROBOTS" content="NOINDEX,NOFOLLOW"><a href="/n">n</a>"#,
            "<a href='/nul'>a\u{0}b</a><a href='\u{0}/weird'>w</a>",
            r#"<a href="/pre"><pre>
pre text</pre></a><plaintext><a href="/in-plaintext">"#,
        ];
        let mut broken = Vec::new();
        for html in cases {
            if let Some(diff) = differences(html, &page) {
                broken.push(format!("{html}\n{diff}"));
            }
        }
        assert!(broken.is_empty(), "{}", broken.join("\n\n"));
    }

    /// Real pages: those of the documentation that ships with the toolchain (`rustup
    /// component add rust-docs`): every page of the Rust book, and one in fifty of the
    /// standard library's reference (pages with hundreds of links each).
    #[test]
    fn the_tokenizer_finds_what_a_dom_finds_on_real_pages() {
        let sysroot = std::process::Command::new(std::env::var("RUSTC").unwrap_or("rustc".into()))
            .args(["--print", "sysroot"])
            .output()
            .expect("rustc runs");
        let docs = std::path::PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim())
            .join("share/doc/rust/html");
        let html_pages = |dir: &str| {
            let mut pages: Vec<_> = walk(&docs.join(dir))
                .into_iter()
                .filter(|p| p.extension().is_some_and(|e| e == "html"))
                .collect();
            pages.sort();
            pages
        };
        let book = html_pages("book");
        let std_pages = html_pages("std");
        assert!(
            book.len() > 100 && std_pages.len() > 1000,
            "no Rust documentation in {} (rustup component add rust-docs)",
            docs.display()
        );
        let (mut compared, mut links_seen) = (0, 0);
        for path in book.iter().chain(std_pages.iter().step_by(50)) {
            let html = std::fs::read_to_string(path).expect("a readable page");
            let relative = path.strip_prefix(&docs).expect("inside");
            let page = Url::parse(&format!("http://docs.test/{}", relative.display()))
                .expect("a valid URL");
            if let Some(diff) = differences(&html, &page) {
                panic!("{}:\n{diff}", path.display());
            }
            compared += 1;
            links_seen += links(&html, &page).len();
        }
        assert!(
            links_seen > compared * 5,
            "{links_seen} links in {compared} pages"
        );
        println!("{compared} pages, {links_seen} links: the same as the DOM's");
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
        out
    }

    fn urls(html: &str, page: &str) -> Vec<String> {
        links(html, &Url::parse(page).expect("valid"))
            .into_iter()
            .map(|l| l.url)
            .collect()
    }

    #[test]
    fn resolves_relative_links_and_drops_fragments_and_other_schemes() {
        let html = r#"<a href="b.html#top">B</a> <a href="/c?x=1">C</a>
            <a href="mailto:a@b.c">m</a> <a href="javascript:void(0)">j</a> <a href="tel:1">t</a>
            <map><area href="HTTP://Site.TEST:80/d"></map> <a href="b.html">again</a>"#;
        assert_eq!(
            urls(html, "http://site.test/a/index.html"),
            [
                "http://site.test/a/b.html",
                "http://site.test/c?x=1",
                "http://site.test/d"
            ]
        );
    }

    #[test]
    fn base_href_changes_resolution() {
        let html = r#"<head><base href="http://other.test/dir/"></head><a href="x">x</a>"#;
        assert_eq!(urls(html, "http://site.test/"), ["http://other.test/dir/x"]);
    }

    #[test]
    fn nofollow_is_flagged_per_link_and_per_page() {
        let page = Url::parse("http://site.test/").expect("valid");
        let got = links(
            r#"<a href="/a" rel="external NoFollow">a</a><a href="/b">b</a>"#,
            &page,
        );
        assert_eq!(
            got.iter().map(|l| l.nofollow).collect::<Vec<_>>(),
            [true, false]
        );
        let got = links(
            r#"<meta name="robots" content="noindex, nofollow"><a href="/b">b</a>"#,
            &page,
        );
        assert!(got[0].nofollow);
    }

    #[test]
    fn keeps_collapsed_link_text() {
        let page = Url::parse("http://site.test/").expect("valid");
        let got = links("<a href='/a'>  Hello\n   <b>world</b> </a>", &page);
        assert_eq!(got[0].text, "Hello world");
    }

    #[test]
    fn malformed_html_still_yields_links() {
        let html = "<html><body><div><a href='/one'>one<p><a href=/two>two</div></table>\u{0}<a href=\"/three\"";
        let got = urls(html, "http://site.test/");
        assert!(got.contains(&"http://site.test/one".to_string()), "{got:?}");
        assert!(got.contains(&"http://site.test/two".to_string()), "{got:?}");
    }

    #[test]
    fn overlong_urls_are_dropped() {
        let long = "a".repeat(MAX_URL_LEN);
        let html = format!("<a href='/{long}'>x</a><a href='/ok'>ok</a>");
        assert_eq!(urls(&html, "http://site.test/"), ["http://site.test/ok"]);
    }

    fn signals(html: &str) -> Signals {
        scan(html, &Url::parse("http://site.test/").expect("valid")).1
    }

    #[test]
    fn auto_renders_a_scripted_shell_and_not_a_page_with_text() {
        let prose = "word ".repeat(60);
        // A single-page application's shell: a script and an empty root.
        let shell = format!(
            "<html><head><title>{prose}</title><script src=/app.js></script></head>\
             <body><div id=root>\n </div><p>{prose}</p></body></html>"
        );
        let found = signals(&shell);
        assert!(found.empty_app_root && found.scripts == 1, "{found:?}");
        assert!(found.needs_render());
        // Little text and a script, no root.
        let thin = "<body><script>document.write('<a href=/x>x</a>')</script><p>Loading</p></body>";
        assert!(signals(thin).needs_render(), "{:?}", signals(thin));
        // Text inside scripts, styles and the title does not count.
        let hidden = format!(
            "<title>{prose}</title><style>{prose}</style><script>var t = '{prose}';</script>"
        );
        assert_eq!(signals(&hidden).text_chars, 0);
        assert!(signals(&hidden).needs_render());
        // An ordinary page: a script, plenty of text, a root that holds content.
        let page = format!(
            "<body><script src=/analytics.js></script><div id=app><p>{prose}</p></div></body>"
        );
        let found = signals(&page);
        assert!(!found.empty_app_root && found.text_chars >= AUTO_RENDER_TEXT_CHARS);
        assert!(!found.needs_render(), "{found:?}");
        // No script: nothing to run, whatever the page holds.
        assert!(!signals("<div id=root></div>").needs_render());
        // A root holding an element is not empty, even one with no text.
        assert!(!signals("<script></script><div id=root><span></span></div>").empty_app_root);
    }
}
