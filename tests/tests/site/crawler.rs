//! Helpers of the site self-tests: HTTP clients with the DNS override, and an independent
//! crawler (reqwest + scraper + url) written from the crawling rules, not from the site's code,
//! to check the ground truth against.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use kubecrawl_e2e::site::{Reach, TestSite};
use reqwest::header::{CONTENT_TYPE, LOCATION};
use reqwest::redirect::Policy;
use url::Url;

/// Bound of every test that talks to the site.
pub(crate) const DEADLINE: Duration = Duration::from_secs(120);

pub(crate) fn client(site: &TestSite) -> reqwest::Client {
    client_with(site, |b| b)
}

pub(crate) fn client_with(
    site: &TestSite,
    tune: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
) -> reqwest::Client {
    kubecrawl_e2e::install_tls_provider();
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .redirect(Policy::none())
        .no_gzip()
        .timeout(Duration::from_secs(30));
    for (host, addr) in site.hosts() {
        builder = builder.resolve(host, addr);
    }
    tune(builder).build().expect("a plain HTTP client builds")
}

pub(crate) async fn get(client: &reqwest::Client, url: &str) -> reqwest::Response {
    client.get(url).send().await.expect("the site answers")
}

// ---------------------------------------------------------------------------------------------
// An independent crawler: what "a correct crawler" means, written from the rules.
// ---------------------------------------------------------------------------------------------

/// What the independent crawler got for one requested URL.
#[derive(Debug, Clone)]
struct Fetched {
    depth: u32,
    status: Option<u16>,
    final_url: String,
    redirects: u32,
    /// Extracted links (canonical, nofollow) of an HTML 200 response, deduplicated.
    links: Vec<(String, bool)>,
}

struct Crawler {
    client: reqwest::Client,
    reach: Reach,
    /// robots.txt rules per host: (allow, prefix).
    robots: HashMap<String, Vec<(bool, String)>>,
}

fn canonical(mut url: Url) -> Option<Url> {
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    url.set_fragment(None);
    Some(url)
}

/// RFC 9309 in miniature: the group of the agent's product token, else `*`; longest match.
fn robots_rules(text: &str, agent: &str) -> Vec<(bool, String)> {
    let token = agent
        .split(['/', ' '])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    // (user agents, rules) per group.
    type Group = (Vec<String>, Vec<(bool, String)>);
    let mut groups: Vec<Group> = Vec::new();
    let mut in_agents = false;
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim().to_ascii_lowercase(), value.trim().to_owned());
        match key.as_str() {
            "user-agent" => {
                if !in_agents {
                    groups.push((Vec::new(), Vec::new()));
                }
                in_agents = true;
                groups
                    .last_mut()
                    .expect("a group was just pushed")
                    .0
                    .push(value.to_ascii_lowercase());
            }
            "allow" | "disallow" => {
                in_agents = false;
                if let Some(group) = groups.last_mut()
                    && !value.is_empty()
                {
                    group.1.push((key == "allow", value));
                }
            }
            _ => in_agents = false,
        }
    }
    let pick = |name: &str| {
        groups
            .iter()
            .find(|(agents, _)| agents.iter().any(|a| a == name))
    };
    pick(&token)
        .or_else(|| pick("*"))
        .map(|g| g.1.clone())
        .unwrap_or_default()
}

fn robots_allowed(rules: &[(bool, String)], url: &Url) -> bool {
    let mut target = url.path().to_owned();
    if let Some(q) = url.query() {
        target.push('?');
        target.push_str(q);
    }
    let best = rules
        .iter()
        .filter(|(_, prefix)| target.starts_with(prefix.as_str()))
        .max_by_key(|(allow, prefix)| (prefix.len(), *allow));
    best.is_none_or(|(allow, _)| *allow)
}

/// `a`/`area` links of an HTML page served at `page`, as an extractor reports them.
pub(crate) fn extract(html: &str, page: &Url) -> Vec<(String, bool)> {
    let doc = scraper::Html::parse_document(html);
    let select = |s| scraper::Selector::parse(s).expect("constant selectors parse");
    let base = doc
        .select(&select("base[href]"))
        .next()
        .and_then(|b| page.join(b.value().attr("href")?).ok())
        .unwrap_or_else(|| page.clone());
    let meta_nofollow = doc.select(&select("meta[name=robots]")).any(|m| {
        m.value()
            .attr("content")
            .is_some_and(|c| c.to_ascii_lowercase().contains("nofollow"))
    });
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for element in doc.select(&select("a[href], area[href]")) {
        let Some(href) = element.value().attr("href") else {
            continue;
        };
        let Some(url) = base.join(href).ok().and_then(canonical) else {
            continue;
        };
        let nofollow = meta_nofollow
            || element.value().attr("rel").is_some_and(|r| {
                r.split_ascii_whitespace()
                    .any(|t| t.eq_ignore_ascii_case("nofollow"))
            });
        if seen.insert(url.to_string()) {
            out.push((url.to_string(), nofollow));
        }
    }
    out
}

impl Crawler {
    async fn new(site: &TestSite, reach: &Reach) -> Self {
        let client = client(site);
        let mut robots = HashMap::new();
        for (host, _) in site.hosts() {
            let response = get(&client, &site.url(host, "/robots.txt")).await;
            let rules = if response.status().is_success() {
                robots_rules(
                    &response.text().await.expect("robots.txt body"),
                    &reach.user_agent,
                )
            } else {
                Vec::new()
            };
            robots.insert(host.to_owned(), rules);
        }
        Self {
            client,
            reach: reach.clone(),
            robots,
        }
    }

    fn robots_ok(&self, url: &Url) -> bool {
        !self.reach.obey_robots
            || self
                .robots
                .get(url.host_str().unwrap_or(""))
                .is_none_or(|rules| robots_allowed(rules, url))
    }

    /// The filters a link (or a redirect hop) must pass, depth and nofollow aside.
    fn passes(&self, url: &Url) -> bool {
        let host = url.host_str().unwrap_or("");
        let reach = &self.reach;
        let host_ok = reach.allowed_hosts.is_empty()
            || reach
                .allowed_hosts
                .iter()
                .any(|d| host == d || host.ends_with(&format!(".{d}")));
        let last = url
            .path()
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let ext_ok = !reach
            .deny_extensions
            .iter()
            .any(|e| last.ends_with(&format!(".{}", e.to_ascii_lowercase())));
        let s = url.as_str();
        host_ok
            && ext_ok
            && (reach.allow.is_empty() || reach.allow.iter().any(|r| r.is_match(s)))
            && !reach.deny.iter().any(|r| r.is_match(s))
            && reach.max_url_len.is_none_or(|m| s.len() <= m)
    }

    async fn fetch(self: Arc<Self>, url: Url, depth: u32) -> (String, Fetched) {
        let mut current = url.clone();
        let mut redirects = 0;
        loop {
            let response = get(&self.client, current.as_str()).await;
            let status = response.status().as_u16();
            if response.status().is_redirection() {
                let location = response.headers()[LOCATION]
                    .to_str()
                    .expect("ASCII Location")
                    .to_owned();
                let next = current
                    .join(&location)
                    .ok()
                    .and_then(canonical)
                    .expect("an http Location");
                if redirects == self.reach.max_redirects {
                    let f = Fetched {
                        depth,
                        status: None,
                        final_url: current.to_string(),
                        redirects,
                        links: vec![],
                    };
                    return (url.to_string(), f);
                }
                if self.passes(&next) && self.robots_ok(&next) {
                    redirects += 1;
                    current = next;
                    continue;
                }
            }
            let html = response
                .headers()
                .get(CONTENT_TYPE)
                .is_some_and(|c| c.to_str().unwrap_or("").starts_with("text/html"));
            let body = response.bytes().await.expect("a complete body");
            let links = if status == 200 && html {
                extract(&String::from_utf8_lossy(&body), &current)
            } else {
                Vec::new()
            };
            let f = Fetched {
                depth,
                status: Some(status),
                final_url: current.to_string(),
                redirects,
                links,
            };
            return (url.to_string(), f);
        }
    }

    /// Crawls with `concurrency` fetches in flight, taking work out of order (every third
    /// from the back of the queue), deduplicating when a link is found.
    async fn crawl(self, concurrency: usize) -> BTreeMap<String, Fetched> {
        let this = Arc::new(self);
        let mut seen = HashSet::new();
        let mut pending = VecDeque::new();
        for seed in &this.reach.seeds {
            let url = Url::parse(seed)
                .ok()
                .and_then(canonical)
                .expect("http seeds");
            if seen.insert(url.to_string()) {
                pending.push_back((url, 0));
            }
        }
        let mut running = tokio::task::JoinSet::new();
        let mut out = BTreeMap::new();
        let mut turn = 0u32;
        loop {
            while running.len() < concurrency {
                turn += 1;
                let next = if turn.is_multiple_of(3) {
                    pending.pop_back()
                } else {
                    pending.pop_front()
                };
                let Some((url, depth)) = next else { break };
                if this.robots_ok(&url) {
                    running.spawn(Arc::clone(&this).fetch(url, depth));
                }
            }
            let Some(done) = running.join_next().await else {
                break;
            };
            let (url, fetched) = done.expect("a fetch task panicked");
            if this.reach.max_depth.is_none_or(|m| fetched.depth < m) {
                for (link, nofollow) in &fetched.links {
                    let link = Url::parse(link).expect("extracted links are URLs");
                    if (*nofollow && !this.reach.follow_nofollow) || !this.passes(&link) {
                        continue;
                    }
                    if seen.insert(link.to_string()) {
                        pending.push_back((link, fetched.depth + 1));
                    }
                }
            }
            out.insert(url, fetched);
        }
        out
    }
}

/// Crawls with the independent crawler and checks it against the ground truth: same URLs,
/// same depths, statuses, final URLs and redirects, and every page's extracted links equal to
/// what the site says its links are.
pub(crate) async fn assert_crawl_matches(site: &TestSite, reach: &Reach) -> usize {
    let truth = site.reachable(reach).expect("a finite ground truth");
    let crawl = Crawler::new(site, reach).await.crawl(16).await;
    let crawled: BTreeSet<String> = crawl.keys().cloned().collect();
    let expected = truth.urls();
    assert_eq!(
        crawled.difference(&expected).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "crawled but not in the ground truth"
    );
    assert_eq!(
        expected.difference(&crawled).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "in the ground truth but not crawled"
    );
    for (url, fetched) in &crawl {
        let e = truth.get(url).expect("checked above");
        assert_eq!(fetched.depth, e.depth, "depth of {url}");
        assert_eq!(fetched.status, e.status, "status of {url}");
        assert_eq!(fetched.final_url, e.final_url, "final url of {url}");
        assert_eq!(fetched.redirects, e.redirects, "redirects of {url}");
        if fetched.status == Some(200) {
            let model: Vec<(String, bool)> = site
                .outlinks(&fetched.final_url)
                .expect("a URL of the site")
                .into_iter()
                .map(|l| (l.url, l.nofollow))
                .collect();
            assert_eq!(fetched.links, model, "links of {}", fetched.final_url);
        }
    }
    truth.len()
}

pub(crate) fn paths(urls: &BTreeSet<String>) -> BTreeSet<String> {
    urls.iter()
        .map(|u| {
            let u = Url::parse(u).expect("ground truth keys are URLs");
            format!(
                "{}{}{}",
                u.host_str().unwrap_or_default(),
                u.path(),
                u.query().map(|q| format!("?{q}")).unwrap_or_default()
            )
        })
        .collect()
}
