//! HTML and the other bodies the site serves, rendered once at start-up where they are finite.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::http::HeaderValue;
use bytes::Bytes;

use super::config::SiteConfig;
use super::graph::{BASE_DIR, Base, Form, Graph, Link, To};
use super::model::{
    Behaviour, FILES, GONE_PAGES, Host, LINKED_STATUSES, LONG_PAGES, MALFORMED_CHILDREN,
    NOFOLLOW_PAGES, Node, PRESS_PAGES, PRIVATE_PAGES, REDIRECTS, SEARCH_PAGES, SHORT_CHAIN, Trap,
    behaviour,
};
use super::traps;

/// Content type of the site's HTML.
pub(crate) const HTML: &str = "text/html; charset=utf-8";

/// A response decided in advance.
#[derive(Clone, Debug)]
pub(crate) struct Prepared {
    /// HTTP status.
    pub(crate) status: u16,
    /// `Content-Type`.
    pub(crate) content_type: &'static str,
    /// `Content-Encoding`, if any.
    pub(crate) content_encoding: Option<&'static str>,
    /// `Location`, for redirects.
    pub(crate) location: Option<HeaderValue>,
    /// The body.
    pub(crate) body: Bytes,
}

impl Prepared {
    pub(crate) fn ok(content_type: &'static str, body: impl Into<Bytes>) -> Self {
        Self {
            status: 200,
            content_type,
            content_encoding: None,
            location: None,
            body: body.into(),
        }
    }
}

/// Writes a site's pages.
pub(crate) struct Renderer<'a> {
    pub(crate) config: &'a SiteConfig,
    pub(crate) graph: &'a Graph,
    pub(crate) port: u16,
}

impl Renderer<'_> {
    /// Every main page, indexed by page number.
    pub(crate) fn main_pages(&self) -> Vec<Bytes> {
        (0..self.config.pages)
            .map(|i| Bytes::from(self.document(Node::Page(i as u32))))
            .collect()
    }

    /// Every finite response that is not a main page.
    pub(crate) fn prepared(&self) -> HashMap<Node, Prepared> {
        let config = self.config;
        let other = u32::try_from(config.other_pages).unwrap_or(0);
        let far = u32::try_from(config.far_pages).unwrap_or(0);
        let mut nodes: Vec<Node> = Host::ALL.iter().map(|&h| Node::Root(h)).collect();
        nodes.extend([
            Node::Robots(Host::Site),
            Node::Robots(Host::Far),
            Node::Style,
            Node::Logo,
            Node::MetaNoFollow,
            Node::Unicode,
            Node::OtherLanding,
            Node::Traps,
        ]);
        nodes.extend((0..PRIVATE_PAGES).map(Node::Private));
        nodes.extend((0..PRESS_PAGES).map(Node::Press));
        nodes.extend((0..=NOFOLLOW_PAGES).map(Node::NoFollow));
        for k in 0..REDIRECTS {
            nodes.extend([Node::Redirect(k), Node::Landing(k), Node::LandingMore(k)]);
        }
        nodes.extend((0..GONE_PAGES).map(Node::Gone));
        nodes.extend((0..FILES.len() as u32).map(Node::File));
        nodes.extend((0..SEARCH_PAGES).map(Node::Search));
        nodes.extend((0..other).flat_map(|k| [Node::Other(k), Node::Back(k)]));
        nodes.extend((0..far).map(Node::Far));
        nodes.push(Node::Wander(0, 0));
        for step in 1..=config.wander_steps {
            nodes.extend((0..config.wander_width).map(|idx| Node::Wander(step, idx)));
        }
        let mut traps = vec![
            Trap::LoopA,
            Trap::LoopB,
            Trap::Offsite,
            Trap::Slow,
            Trap::Gzip,
            Trap::GzipChild,
            Trap::Binary,
            Trap::Plain,
            Trap::Never,
            Trap::Malformed,
            Trap::Empty,
        ];
        traps.extend((0..=config.chain_len).map(Trap::Chain));
        traps.extend((0..=SHORT_CHAIN).map(Trap::Short));
        traps.extend(super::model::FLAKY_STATUSES.map(Trap::Flaky));
        traps.extend((1..=MALFORMED_CHILDREN).map(Trap::MalformedChild));
        traps.extend((0..=LONG_PAGES).map(Trap::Long));
        for n in 0..traps::CHARSET_CASES.len() as u8 {
            traps.extend([Trap::Charset(n), Trap::CharsetChild(n)]);
        }
        nodes.extend(traps.into_iter().map(Node::Trap));
        nodes.extend(LINKED_STATUSES.map(|s| Node::Trap(Trap::Status(s))));

        nodes
            .into_iter()
            .map(|node| (node, self.prepare(node)))
            .collect()
    }

    /// The response of a finite node (for flaky and slow traps: their successful response).
    pub(crate) fn prepare(&self, node: Node) -> Prepared {
        match behaviour(self.config, node) {
            Behaviour::Redirect {
                status,
                to,
                relative,
            } => {
                let location = if relative {
                    relative_href(&dir_of(&node.path()), &to.path())
                } else {
                    to.url(self.port)
                };
                let location =
                    HeaderValue::try_from(location).expect("generated URLs are visible ASCII");
                Prepared {
                    status,
                    content_type: HTML,
                    content_encoding: None,
                    location: Some(location),
                    body: Bytes::from_static(b"<!DOCTYPE html>\n<title>moved</title>\n"),
                }
            }
            Behaviour::Status(status) => status_page(status),
            _ => self.prepare_ok(node),
        }
    }

    fn prepare_ok(&self, node: Node) -> Prepared {
        match node {
            Node::Robots(Host::Site) => Prepared::ok(TEXT, self.robots_txt()),
            Node::Robots(_) => Prepared::ok(TEXT, "User-agent: *\nDisallow:\n"),
            Node::Style => Prepared::ok("text/css", "body { font-family: sans-serif; }\n"),
            Node::Logo => Prepared::ok("image/png", Bytes::from_static(PNG_MAGIC)),
            Node::File(k) => {
                let content_type = FILES
                    .get(k as usize)
                    .map_or("application/octet-stream", |f| f.1);
                Prepared::ok(content_type, format!("file {k}: not a real document\n"))
            }
            Node::Trap(Trap::Gzip) => Prepared {
                content_encoding: Some("gzip"),
                ..Prepared::ok(HTML, traps::gzip(self.document(node).as_bytes()))
            },
            Node::Trap(Trap::Charset(n)) => {
                let (content_type, body) = traps::charset_page(n);
                Prepared::ok(content_type, body)
            }
            Node::Trap(Trap::Binary) => Prepared::ok("text/html", traps::binary()),
            Node::Trap(Trap::Plain) => Prepared::ok(TEXT, traps::PLAIN_BODY),
            Node::Trap(Trap::Malformed) => {
                Prepared::ok(HTML, Bytes::from_static(traps::MALFORMED_BODY))
            }
            Node::Trap(Trap::Empty) => Prepared::ok("text/html", Bytes::new()),
            _ => Prepared::ok(HTML, self.document(node)),
        }
    }

    /// The site's robots.txt.
    pub(crate) fn robots_txt(&self) -> String {
        let mut text = String::from("# robots.txt of the kubecrawl test site\n");
        text.push_str("User-agent: ");
        text.push_str(BLOCKED_AGENT);
        text.push_str("\nDisallow: /\n\nUser-agent: *\n");
        for allow in &self.config.robots_allow {
            let _ = writeln!(text, "Allow: {allow}");
        }
        for disallow in &self.config.robots_disallow {
            let _ = writeln!(text, "Disallow: {disallow}");
        }
        if let Some(delay) = self.config.crawl_delay {
            let _ = writeln!(text, "Crawl-delay: {}", delay.as_secs_f64());
        }
        if self.config.sitemaps {
            text.push_str(&super::sitemaps::robots_line(self.port));
        }
        text
    }

    /// The HTML page of `node`, with its links.
    pub(crate) fn document(&self, node: Node) -> String {
        let links = self.graph.links(node);
        let base = self.graph.base(node);
        let own_dir = dir_of(&node.path());
        let dir = if base == Base::None {
            own_dir.as_str()
        } else {
            BASE_DIR
        };
        let title = node.title();
        let title = escape(&title);
        let mut html = String::with_capacity(512 + self.config.padding + links.len() * 96);
        html.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
        let _ = writeln!(html, "<title>{title}</title>");
        if node.host() == Host::Site {
            html.push_str("<link rel=\"stylesheet\" href=\"/static/site.css\">\n");
        }
        match base {
            Base::None => {}
            Base::Absolute => {
                let _ = writeln!(
                    html,
                    "<base href=\"http://{}:{}{BASE_DIR}\">",
                    node.host().name(),
                    self.port
                );
            }
            Base::RootRelative => {
                let _ = writeln!(html, "<base href=\"{BASE_DIR}\">");
            }
        }
        if node == Node::MetaNoFollow {
            html.push_str("<meta name=\"robots\" content=\"nofollow\">\n");
        }
        let _ = write!(html, "</head>\n<body>\n<h1 id=\"top\">{title}</h1>\n<p>");
        padding(&mut html, self.config.padding);
        html.push_str("</p>\n<ul>\n");
        for link in links.iter().filter(|l| !l.area) {
            let _ = writeln!(
                html,
                "<li><a href=\"{}\"{}>{}</a></li>",
                escape(&self.href(node, dir, link)),
                rel(link),
                escape(&text(link)),
            );
        }
        html.push_str("</ul>\n");
        if links.iter().any(|l| l.area) {
            html.push_str("<map name=\"nav\">\n");
            for (n, link) in links.iter().filter(|l| l.area).enumerate() {
                let _ = writeln!(
                    html,
                    "<area shape=\"rect\" coords=\"{},0,{},20\" href=\"{}\" alt=\"{}\"{}>",
                    n * 20,
                    n * 20 + 19,
                    escape(&self.href(node, dir, link)),
                    escape(&text(link)),
                    rel(link),
                );
            }
            html.push_str("</map>\n<img src=\"/static/logo.png\" usemap=\"#nav\" alt=\"\">\n");
        }
        html.push_str("</body>\n</html>\n");
        html
    }

    /// The `href` of `link` on `page`, whose relative links resolve against `dir`.
    pub(crate) fn href(&self, page: Node, dir: &str, link: &Link) -> String {
        let target = match link.to {
            To::Node(target) => target,
            To::Verbatim(href) => return href.to_owned(),
            To::SelfFragment => return "#top".to_owned(),
            To::SelfEmpty => return String::new(),
        };
        let host = target.host();
        let path = target.written_path();
        let port = self.port;
        let form = if host != page.host() && !link.form.crosses_hosts() {
            Form::Absolute
        } else {
            link.form
        };
        let mut href = match form {
            Form::Absolute => format!("http://{}:{port}{path}", host.name()),
            Form::Upper => format!("HTTP://{}:{port}{path}", host.name().to_ascii_uppercase()),
            Form::ZeroPort => format!("http://{}:0{port}{path}", host.name()),
            Form::SchemeRelative => format!("//{}:{port}{path}", host.name()),
            Form::RootRelative | Form::Spaced => path,
            Form::Relative => relative_href(dir, &path),
            Form::DotSegments => format!("/x/..{path}"),
        };
        if link.fragment {
            href.push_str("#frag");
        }
        if form == Form::Spaced {
            href = format!("\n\t {href} \n");
        }
        href
    }
}

/// The user agent the site's robots.txt shuts out entirely (matched case-insensitively
/// against the product token of the crawler's user agent).
pub(crate) const BLOCKED_AGENT: &str = "badbot";

const TEXT: &str = "text/plain; charset=utf-8";
const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

/// The small HTML body of an error status, without links.
pub(crate) fn status_page(status: u16) -> Prepared {
    Prepared {
        status,
        content_type: HTML,
        content_encoding: None,
        location: None,
        body: Bytes::from(format!(
            "<!DOCTYPE html>\n<title>{status}</title>\n<h1>status {status}</h1>\n"
        )),
    }
}

fn rel(link: &Link) -> &'static str {
    match (link.nofollow, link.fragment) {
        (false, _) => "",
        (true, false) => " rel=\"nofollow\"",
        (true, true) => " rel=\"noopener nofollow\"",
    }
}

fn text(link: &Link) -> String {
    match link.to {
        To::Node(node) => node.title(),
        To::Verbatim(href) => href.split(':').next().unwrap_or("other").to_owned(),
        To::SelfFragment => "top".to_owned(),
        To::SelfEmpty => "this page".to_owned(),
    }
}

/// The directory of a path (and query): everything up to its last `/` before any `?`.
pub(crate) fn dir_of(target: &str) -> String {
    let path = target.split('?').next().unwrap_or(target);
    match path.rfind('/') {
        Some(i) => path[..=i].to_owned(),
        None => "/".to_owned(),
    }
}

/// A relative reference from directory `dir` (ending in `/`) to `target` (path and query).
pub(crate) fn relative_href(dir: &str, target: &str) -> String {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let dir_segments: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (target_dirs, _) = segments.split_at(segments.len().saturating_sub(1));
    let common = dir_segments
        .iter()
        .zip(target_dirs)
        .take_while(|(a, b)| a == b)
        .count();
    let mut href = "../".repeat(dir_segments.len() - common);
    href.push_str(&segments[common..].join("/"));
    if let Some(query) = query {
        href.push('?');
        href.push_str(query);
    }
    let first = href.split('/').next().unwrap_or("");
    if href.is_empty() || href.starts_with('?') || first.contains(':') {
        href.insert_str(0, "./");
    }
    href
}

/// HTML-escapes text and attribute values.
pub(crate) fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains(['&', '<', '>', '"']) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

fn padding(html: &mut String, bytes: usize) {
    const LOREM: &str = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod \
        tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud \
        exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. ";
    let mut left = bytes;
    while left > 0 {
        let take = left.min(LOREM.len());
        html.push_str(&LOREM[..take]);
        left -= take;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_references_resolve_back_to_their_targets() {
        let cases = [
            ("/p/", "/p/5", "5"),
            ("/p/deep/er/", "/p/5", "../../5"),
            ("/landing/3/", "/landing/3/more", "more"),
            ("/", "/search?q=1&page=2", "search?q=1&page=2"),
            ("/p/", "/", "../"),
            ("/", "/", "./"),
            ("/p/", "/landing/3/", "../landing/3/"),
            ("/trap/repeat/a/", "/trap/repeat/a/a/a", "a/a"),
            ("/trap/", "/trap/gzip/child", "gzip/child"),
        ];
        for (dir, target, want) in cases {
            assert_eq!(relative_href(dir, target), want, "{dir} -> {target}");
            let base = url::Url::parse(&format!("http://h{dir}")).unwrap();
            assert_eq!(
                base.join(want).unwrap().as_str(),
                format!("http://h{target}")
            );
        }
    }

    #[test]
    fn directories_of_paths() {
        assert_eq!(dir_of("/p/5"), "/p/");
        assert_eq!(dir_of("/landing/3/"), "/landing/3/");
        assert_eq!(dir_of("/search?q=a/b"), "/");
    }

    #[test]
    fn escaping_covers_markup_characters() {
        assert_eq!(escape("a&b<\"c\">"), "a&amp;b&lt;&quot;c&quot;&gt;");
        assert!(matches!(escape("plain"), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn padding_has_the_asked_length() {
        let mut s = String::new();
        padding(&mut s, 1000);
        assert_eq!(s.len(), 1000);
    }
}
