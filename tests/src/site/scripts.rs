//! The script area of `site.test` (`SiteConfig::with_scripts`): pages whose links and content
//! exist only once their JavaScript ran, for the render tests. Not linked from `/`: a test
//! seeds [`INDEX`].
//!
//! | path | what |
//! |---|---|
//! | `/js/` | an ordinary page: prose, an analytics script, static links to every page below (`auto` does not render it) |
//! | `/js/plain` | an ordinary page with a script and prose (`auto` does not render it) |
//! | `/js/app` | a single-page application's shell: an empty `<div id="root">` that `/js/app.js` fills with a heading and links to `/js/app/1`..`/js/app/5` |
//! | `/js/timer` | a page that, 300 ms after loading, fetches `/js/timer.json` and adds its links `/js/timer/1`..`/js/timer/3` |
//! | `/js/forever` | a page that adds a link to `/js/forever/1` at once, then polls `/js/poll` every 100 ms forever: it never settles |
//! | `/js/huge` | a page that adds [`HUGE_ELEMENTS`] elements and a link to `/js/huge/1` |
//! | `/js/sub` | a page whose script asks for an image, a stylesheet and `/js/data.json`, and writes what it got into the DOM |
//! | `/js/app/{k}`, `/js/timer/{k}`, `/js/forever/1`, `/js/huge/1` | plain pages of prose |
//! | `/js/spa/{k}`, `k < script_pages` | benchmark pages (`SiteConfig::with_script_pages`): application shells whose script adds a heading, some prose and links to `/js/spa/{2k+1}` and `/js/spa/{2k+2}`, so that all are reached from `/js/spa/0` |
//!
//! Every script page holds little text, so `auto` renders it. `/js/poll` counts its requests
//! ([`super::TestSite::requests_to`] sees them like any other).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::render::Prepared;

/// The page a script crawl starts from.
pub const INDEX: &str = "/js/";
/// Elements `/js/huge` adds.
pub const HUGE_ELEMENTS: usize = 150_000;
/// Links `/js/app.js` adds.
pub const APP_LINKS: usize = 5;
/// Links `/js/timer.json` lists.
pub const TIMER_LINKS: usize = 3;
/// The pages that need rendering (their HTML holds a script and little text).
pub const SCRIPT_PAGES: [&str; 5] = ["/js/app", "/js/timer", "/js/forever", "/js/huge", "/js/sub"];

/// What a crawl of the script area from [`INDEX`] finds, as paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptTruth {
    /// Every page requested by a crawl that does not render.
    pub unrendered: BTreeSet<String>,
    /// Every page requested by a crawl that renders the script pages, with a `maxElements`
    /// below [`HUGE_ELEMENTS`] (so `/js/huge`'s link is never seen).
    pub rendered: BTreeSet<String>,
}

/// The ground truth of the script area.
pub fn truth() -> ScriptTruth {
    let unrendered: BTreeSet<String> = [INDEX, "/js/plain"]
        .into_iter()
        .chain(SCRIPT_PAGES)
        .map(str::to_owned)
        .collect();
    let mut rendered = unrendered.clone();
    rendered.extend((1..=APP_LINKS).map(|k| format!("/js/app/{k}")));
    rendered.extend((1..=TIMER_LINKS).map(|k| format!("/js/timer/{k}")));
    rendered.insert("/js/forever/1".to_owned());
    ScriptTruth {
        unrendered,
        rendered,
    }
}

fn prose(words: usize) -> String {
    let mut text = String::new();
    for i in 0..words {
        let _ = write!(text, "word{} ", i % 17);
    }
    text
}

fn shell(title: &str, script: &str) -> String {
    format!(
        "<!doctype html><html><head><title>{title}</title></head>\
         <body><div id=\"root\"></div><p>Loading…</p><script>{script}</script></body></html>\n"
    )
}

/// The answer for `path` on `site.test`, when it is in the script area; `spa_pages` is
/// `SiteConfig::script_pages`.
pub(crate) fn prepare(path: &str, spa_pages: usize) -> Option<Prepared> {
    let html = |body: String| Some(Prepared::ok("text/html; charset=utf-8", body));
    let js = |body: &str| Some(Prepared::ok("text/javascript", body.to_owned()));
    match path {
        "/js/" => {
            let links: String = ["/js/plain"]
                .into_iter()
                .chain(SCRIPT_PAGES)
                .map(|p| format!("<a href=\"{p}\">{p}</a> "))
                .collect();
            html(format!(
                "<!doctype html><html><head><title>scripts</title>\
                 <script src=\"/js/analytics.js\"></script></head>\
                 <body><p>{}</p><p>{links}</p></body></html>\n",
                prose(80)
            ))
        }
        "/js/plain" => html(format!(
            "<!doctype html><html><head><script src=\"/js/analytics.js\"></script></head>\
             <body><div id=\"app\"><p>{}</p></div></body></html>\n",
            prose(80)
        )),
        "/js/analytics.js" => js("window.analytics = true;"),
        "/js/app" => Some(Prepared::ok(
            "text/html; charset=utf-8",
            "<!doctype html><html><head><title>app</title><script src=\"/js/app.js\" defer></script></head>\
             <body><div id=\"root\"></div></body></html>\n"
                .to_owned(),
        )),
        "/js/app.js" => {
            let links: String = (1..=APP_LINKS)
                .map(|k| format!("<a href=\"/js/app/{k}\">item {k}</a>"))
                .collect();
            js(&format!(
                "document.getElementById('root').innerHTML = '<h1 id=\"rendered\">Rendered app</h1>{links}';"
            ))
        }
        "/js/timer" => html(shell(
            "timer",
            "setTimeout(() => fetch('/js/timer.json').then(r => r.json()).then(links => { \
             const root = document.getElementById('root'); \
             for (const href of links) { const a = document.createElement('a'); a.href = href; \
             a.textContent = href; root.appendChild(a); } }), 300);",
        )),
        "/js/timer.json" => {
            let links: Vec<String> = (1..=TIMER_LINKS)
                .map(|k| format!("\"/js/timer/{k}\""))
                .collect();
            Some(Prepared::ok(
                "application/json",
                format!("[{}]", links.join(",")),
            ))
        }
        "/js/forever" => html(shell(
            "forever",
            "document.getElementById('root').innerHTML = '<a href=\"/js/forever/1\">more</a>'; \
             setInterval(() => fetch('/js/poll?' + Date.now()), 100);",
        )),
        "/js/poll" => Some(Prepared::ok("application/json", "{}".to_owned())),
        "/js/huge" => html(shell(
            "huge",
            &format!(
                "const root = document.getElementById('root'); \
                 const frag = document.createDocumentFragment(); \
                 for (let i = 0; i < {HUGE_ELEMENTS}; i++) frag.appendChild(document.createElement('span')); \
                 root.appendChild(frag); \
                 root.insertAdjacentHTML('beforeend', '<a href=\"/js/huge/1\">past the limit</a>');"
            ),
        )),
        "/js/sub" => html(shell(
            "sub",
            "const root = document.getElementById('root'); \
             const img = new Image(); img.onload = () => root.insertAdjacentHTML('beforeend', '<p id=img>image loaded</p>'); \
             img.onerror = () => root.insertAdjacentHTML('beforeend', '<p id=img>image refused</p>'); \
             img.src = '/static/logo.png'; \
             fetch('/js/data.json').then(r => r.json()).then(d => root.insertAdjacentHTML('beforeend', '<p id=data>' + d.answer + '</p>'));",
        )),
        "/js/spa.js" => js(
            "const root = document.getElementById('root'); \
             const k = Number(location.pathname.split('/').pop()); const n = Number(root.dataset.n); \
             let html = '<h1>page ' + k + '</h1><p>' + 'rendered words '.repeat(40) + '</p>'; \
             for (const c of [2 * k + 1, 2 * k + 2]) if (c < n) html += '<a href=\"/js/spa/' + c + '\">' + c + '</a> '; \
             root.innerHTML = html;",
        ),
        "/js/data.json" => Some(Prepared::ok(
            "application/json",
            "{\"answer\":\"forty-two\"}".to_owned(),
        )),
        _ if path.starts_with("/js/spa/") => {
            let k: usize = path.strip_prefix("/js/spa/")?.parse().ok()?;
            (k < spa_pages).then(|| {
                Prepared::ok(
                    "text/html; charset=utf-8",
                    format!(
                        "<!doctype html><html><head><title>spa {k}</title>\
                         <script src=\"/js/spa.js\" defer></script></head>\
                         <body><div id=\"root\" data-n=\"{spa_pages}\"></div></body></html>\n"
                    ),
                )
            })
        }
        _ => {
            let page = path.strip_prefix("/js/")?;
            let known = page.strip_prefix("app/").is_some_and(|k| in_range(k, APP_LINKS))
                || page.strip_prefix("timer/").is_some_and(|k| in_range(k, TIMER_LINKS))
                || page == "forever/1"
                || page == "huge/1";
            known.then(|| {
                Prepared::ok(
                    "text/html; charset=utf-8",
                    format!(
                        "<!doctype html><html><body><h1>{page}</h1><p>{}</p></body></html>\n",
                        prose(60)
                    ),
                )
            })
        }
    }
}

fn in_range(k: &str, max: usize) -> bool {
    k.parse::<usize>().is_ok_and(|k| (1..=max).contains(&k))
}
