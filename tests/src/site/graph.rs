//! The link graph: which node links to which, and how each link is written.
//!
//! Main pages form a random tree below the root (each page's parent is an earlier page, so
//! every main page is reachable from `/`), in levels: a page's level is its depth from the
//! root. Besides tree edges a page links to random pages of the next level (cross links),
//! sometimes twice in different forms, sometimes back to the root or to a level-1 page (a
//! navigation bar). Every other page hangs off one main page and links to the level after
//! its own. So every followable link leads either one level deeper or to a page of depth at
//! most 1, which the root seed enqueues before any other: whatever order a deduplicating
//! crawler works in, it assigns each page its ground-truth depth, and a maxdepth crawl finds
//! exactly the ground truth set.

use std::borrow::Cow;
use std::collections::HashMap;

use super::config::SiteConfig;
use super::model::{
    FILES, GONE_PAGES, Host, LINKED_STATUSES, LONG_PAGES, MALFORMED_CHILDREN, NOFOLLOW_PAGES, Node,
    PRESS_PAGES, PRIVATE_PAGES, Prng, REDIRECTS, SEARCH_PAGES, SHORT_CHAIN, Trap,
};
use super::traps::CHARSET_CASES;

/// Pages the root links to (level 1).
const ROOT_LINKS: u32 = 4;
/// Most forward links of a page that is not a main page.
const SPECIAL_FORWARD: u32 = 3;

/// How an `href` is written; all forms of one target resolve to the same canonical URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Form {
    /// `http://site.test:PORT/p/5`
    Absolute,
    /// `HTTP://SITE.TEST:PORT/p/5`
    Upper,
    /// `http://site.test:0PORT/p/5` (a leading zero in the port)
    ZeroPort,
    /// `//site.test:PORT/p/5`
    SchemeRelative,
    /// `/p/5`
    RootRelative,
    /// `5`, `../../p/5`, … relative to the page's base
    Relative,
    /// `/x/../p/5`
    DotSegments,
    /// `\n\t /p/5 \n` (surrounding whitespace)
    Spaced,
}

impl Form {
    const ALL: [Form; 8] = [
        Form::Absolute,
        Form::Upper,
        Form::ZeroPort,
        Form::SchemeRelative,
        Form::RootRelative,
        Form::Relative,
        Form::DotSegments,
        Form::Spaced,
    ];
    const CROSS_HOST: [Form; 4] = [
        Form::Absolute,
        Form::Upper,
        Form::ZeroPort,
        Form::SchemeRelative,
    ];

    /// Whether the form can point to another host.
    pub(crate) fn crosses_hosts(self) -> bool {
        Self::CROSS_HOST.contains(&self)
    }
}

/// What a link points to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum To {
    /// A node of the site.
    Node(Node),
    /// A non-HTTP URL written verbatim (`mailto:` …), never followed.
    Verbatim(&'static str),
    /// `#top`: the page itself (only on pages without `<base>`).
    SelfFragment,
    /// `href=""`: the page itself (only on pages without `<base>`).
    SelfEmpty,
}

/// One `a` or `area` element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Link {
    /// The target.
    pub(crate) to: To,
    /// How the href is written.
    pub(crate) form: Form,
    /// Whether `#frag` is appended.
    pub(crate) fragment: bool,
    /// Whether the element carries `rel="nofollow"`.
    pub(crate) nofollow: bool,
    /// Whether it is an `area` rather than an `a`.
    pub(crate) area: bool,
}

impl Link {
    /// A plain `a` link to `node`.
    pub(crate) fn to(node: Node, form: Form) -> Self {
        Self {
            to: To::Node(node),
            form,
            fragment: false,
            nofollow: false,
            area: false,
        }
    }
}

/// Non-HTTP links, skipped by a correct crawler.
pub(crate) const VERBATIM: [&str; 5] = [
    "mailto:webmaster@site.test",
    "javascript:void(0)",
    "tel:+1-555-0100",
    "data:text/plain,hello",
    "ftp://site.test/pub/file.txt",
];

/// The `<base href>` of a main page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Base {
    /// No `<base>`.
    None,
    /// `<base href="http://site.test:PORT/p/deep/er/">`
    Absolute,
    /// `<base href="/p/deep/er/">`
    RootRelative,
}

/// The directory relative links of a page with a `<base>` are written against.
pub(crate) const BASE_DIR: &str = "/p/deep/er/";

/// The generated graph of one configuration.
#[derive(Debug)]
pub(crate) struct Graph {
    /// Level (depth from the root) of each main page.
    level: Vec<u32>,
    /// Main pages by level.
    by_level: Vec<Vec<u32>>,
    /// Links of each main page, in document order.
    links: Vec<Vec<Link>>,
    /// `<base>` of each main page.
    base: Vec<Base>,
    /// For each page that hangs off another, that page (its only way in).
    anchor: HashMap<Node, Node>,
    seed: u64,
    with_traps: bool,
    other_pages: u32,
    far_pages: u32,
    wander_steps: u32,
    wander_width: u32,
    chain_len: u32,
}

impl Graph {
    /// Generates the graph of `config` (assumed valid).
    pub(crate) fn generate(config: &SiteConfig) -> Self {
        let pages = u32::try_from(config.pages).unwrap_or(u32::MAX);
        let seed = config.seed;
        let mut tree = Prng::new(seed, 1);
        let mut level = Vec::with_capacity(pages as usize);
        let mut children: Vec<Vec<u32>> = vec![Vec::new(); pages as usize];
        for i in 0..pages {
            if i < ROOT_LINKS {
                level.push(1);
                continue;
            }
            let parent = tree.between((i / 4).saturating_sub(1), (i - 1) / 2);
            level.push(level[parent as usize] + 1);
            children[parent as usize].push(i);
        }
        let depth = level.iter().copied().max().unwrap_or(1);
        let mut by_level = vec![Vec::new(); depth as usize + 2];
        for (i, &l) in level.iter().enumerate() {
            by_level[l as usize].push(i as u32);
        }

        let mut graph = Self {
            level,
            by_level,
            links: Vec::with_capacity(pages as usize),
            base: Vec::with_capacity(pages as usize),
            anchor: HashMap::new(),
            seed,
            with_traps: config.with_traps,
            other_pages: u32::try_from(config.other_pages).unwrap_or(0),
            far_pages: u32::try_from(config.far_pages).unwrap_or(0),
            wander_steps: config.wander_steps,
            wander_width: config.wander_width,
            chain_len: config.chain_len,
        };
        for i in 0..pages {
            let (links, base) = graph.main_page(i, &children[i as usize], config.max_links);
            graph.links.push(links);
            graph.base.push(base);
        }
        graph.place_specials();
        graph
    }

    /// Links of main page `i`: tree children, cross links, duplicates, navigation.
    fn main_page(&self, i: u32, children: &[u32], max_links: usize) -> (Vec<Link>, Base) {
        let mut rng = Prng::new(self.seed, 0x1000_0000 + u64::from(i));
        let base = match (i, rng.below(100)) {
            (0, _) => Base::None,
            (_, 0..8) => Base::Absolute,
            (_, 8..15) => Base::RootRelative,
            _ => Base::None,
        };
        let next_level = self
            .by_level
            .get(self.level[i as usize] as usize + 1)
            .map_or(&[][..], Vec::as_slice);
        let mut targets: Vec<u32> = children.to_vec();
        let room = max_links.saturating_sub(children.len()) as u64;
        for _ in 0..rng.below(room + 1) {
            if let Some(j) = rng.pick(next_level) {
                targets.push(j);
            }
        }
        let mut links: Vec<Link> = targets
            .iter()
            .map(|&j| random_link(&mut rng, Node::Page(j)))
            .collect();
        // A page with a base must exercise it: one of its links is relative.
        if base != Base::None
            && let Some(first) = links.first_mut()
        {
            first.form = Form::Relative;
        }
        if !links.is_empty() && rng.chance(30) {
            let k = rng.below(links.len() as u64) as usize;
            let mut dup = random_link(&mut rng, links[k].to_node());
            dup.fragment = true;
            let at = rng.below(links.len() as u64 + 1) as usize;
            links.insert(at, dup);
        }
        if rng.chance(20) {
            links.push(random_link(&mut rng, Node::Root(Host::Site)));
        }
        if rng.chance(10) {
            let nav = rng.below(u64::from(ROOT_LINKS.min(self.level.len() as u32)));
            links.push(random_link(&mut rng, Node::Page(nav as u32)));
        }
        if rng.chance(12)
            && let Some(v) = rng.pick(&VERBATIM)
        {
            links.push(verbatim(v));
        }
        if i == 0 {
            links.extend(Form::ALL.map(|form| Link::to(Node::Root(Host::Site), form)));
            links.extend(VERBATIM.map(verbatim));
            links.push(Link {
                to: To::SelfFragment,
                ..verbatim("")
            });
            links.push(Link {
                to: To::SelfEmpty,
                ..verbatim("")
            });
        }
        (links, base)
    }

    /// Hangs every page that is not a main page off a random main page (or off the page
    /// that leads to it), and adds the link there.
    fn place_specials(&mut self) {
        let mut rng = Prng::new(self.seed, 2);
        let mut specials: Vec<(Node, bool)> = Vec::new();
        specials.extend((0..PRIVATE_PAGES).map(|k| (Node::Private(k), false)));
        specials.extend((0..PRESS_PAGES).map(|k| (Node::Press(k), false)));
        specials.extend((0..NOFOLLOW_PAGES).map(|k| (Node::NoFollow(k), true)));
        specials.push((Node::MetaNoFollow, false));
        specials.extend((0..REDIRECTS).map(|k| (Node::Redirect(k), false)));
        specials.extend((0..GONE_PAGES).map(|k| (Node::Gone(k), false)));
        specials.extend((0..FILES.len() as u32).map(|k| (Node::File(k), false)));
        specials.extend((0..SEARCH_PAGES).map(|k| (Node::Search(k), false)));
        specials.push((Node::Unicode, false));
        specials.extend((0..self.other_pages).map(|k| (Node::Other(k), false)));
        let pages = self.links.len() as u64;
        for (node, nofollow) in specials {
            let source = rng.below(pages) as u32;
            let mut link = random_link(&mut rng, node);
            link.nofollow = nofollow;
            if node == Node::Unicode {
                // Written raw, so the crawler must percent-encode it.
                link.form = Form::RootRelative;
            }
            self.links[source as usize].push(link);
            self.anchor.insert(node, Node::Page(source));
        }
        self.anchor
            .insert(Node::NoFollow(NOFOLLOW_PAGES), Node::MetaNoFollow);
        for k in 0..REDIRECTS {
            // A landing page has its redirect's depth (see `level`); its relative link goes deeper.
            self.anchor.insert(Node::LandingMore(k), Node::Landing(k));
        }
        for k in 0..self.other_pages {
            self.anchor.insert(Node::Back(k), Node::Other(k));
        }
        for k in 0..self.far_pages {
            self.anchor
                .insert(Node::Far(k), Node::Other(k % self.other_pages.max(1)));
        }
    }

    /// The level (ground-truth depth from the root) of a node of the main graph.
    pub(crate) fn level(&self, node: Node) -> Option<u32> {
        match node {
            Node::Root(Host::Site) => Some(0),
            Node::Page(i) => self.level.get(i as usize).copied(),
            Node::Landing(k) => self.level(Node::Redirect(k)),
            other => {
                let anchor = *self.anchor.get(&other)?;
                self.level(anchor).map(|l| l + 1)
            }
        }
    }

    /// The `<base>` of a node's page.
    pub(crate) fn base(&self, node: Node) -> Base {
        match node {
            Node::Page(i) => self.base.get(i as usize).copied().unwrap_or(Base::None),
            _ => Base::None,
        }
    }

    /// Links of `node`'s page in document order (none for leaves and non-pages).
    pub(crate) fn links(&self, node: Node) -> Cow<'_, [Link]> {
        if let Node::Page(i) = node {
            return self
                .links
                .get(i as usize)
                .map_or(Cow::Borrowed(&[][..]), |l| Cow::Borrowed(l.as_slice()));
        }
        let mut rng = Prng::new(self.seed, 0x2000_0000 ^ node_hash(node));
        let mut links = Vec::new();
        match node {
            Node::Root(Host::Site) => {
                let forms = [Form::RootRelative, Form::Relative, Form::Absolute];
                for j in 0..ROOT_LINKS.min(self.level.len() as u32) {
                    links.push(Link::to(Node::Page(j), forms[j as usize % forms.len()]));
                }
                if self.with_traps {
                    links.push(Link::to(Node::Traps, Form::RootRelative));
                }
            }
            Node::Root(Host::Other) => {
                links.extend(
                    (0..self.other_pages).map(|k| Link::to(Node::Other(k), Form::Relative)),
                );
            }
            Node::Root(Host::Far) => {
                links.extend((0..self.far_pages).map(|k| Link::to(Node::Far(k), Form::Relative)));
            }
            Node::MetaNoFollow => {
                links.push(random_link(&mut rng, Node::NoFollow(NOFOLLOW_PAGES)));
            }
            Node::Landing(k) => {
                links.push(Link::to(Node::LandingMore(k), Form::Relative));
                self.forward(&mut rng, node, &mut links);
            }
            Node::Other(k) => {
                self.forward(&mut rng, node, &mut links);
                links.push(random_link(&mut rng, Node::Back(k)));
                let mut far = k;
                while far < self.far_pages {
                    links.push(random_link(&mut rng, Node::Far(far)));
                    far += self.other_pages.max(1);
                }
            }
            Node::OtherLanding => links.push(random_link(&mut rng, Node::Root(Host::Site))),
            Node::Private(_)
            | Node::Press(_)
            | Node::NoFollow(_)
            | Node::LandingMore(_)
            | Node::Back(_)
            | Node::Search(_)
            | Node::Unicode
            | Node::Far(_) => self.forward(&mut rng, node, &mut links),
            Node::Wander(step, _) if step < self.wander_steps => {
                let mut next: Vec<u32> = (0..self.wander_width).collect();
                for i in (1..next.len()).rev() {
                    next.swap(i, rng.below(i as u64 + 1) as usize);
                }
                let forms = [Form::Relative, Form::RootRelative, Form::Absolute];
                for idx in next {
                    let form = forms[rng.below(forms.len() as u64) as usize];
                    links.push(Link::to(Node::Wander(step + 1, idx), form));
                }
            }
            Node::Traps => {
                links.extend(self.trap_entries().map(|n| Link::to(n, Form::RootRelative)))
            }
            Node::Trap(trap) => self.trap_links(trap, &mut links),
            _ => {}
        }
        Cow::Owned(links)
    }

    /// Links to a few main pages of the level after `node`'s, and sometimes to the root.
    fn forward(&self, rng: &mut Prng, node: Node, links: &mut Vec<Link>) {
        let Some(level) = self.level(node) else {
            return;
        };
        let next = self
            .by_level
            .get(level as usize + 1)
            .map_or(&[][..], Vec::as_slice);
        for _ in 0..rng.between(1, SPECIAL_FORWARD) {
            if let Some(j) = rng.pick(next) {
                links.push(random_link(rng, Node::Page(j)));
            }
        }
        if rng.chance(50) {
            links.push(Link::to(Node::Root(Host::Site), Form::Absolute));
        }
    }

    /// The nodes the trap index links to, in order.
    pub(crate) fn trap_entries(&self) -> impl Iterator<Item = Node> + use<> {
        let mut traps = vec![Trap::LoopA, Trap::Chain(0), Trap::Short(0), Trap::Offsite];
        traps.extend(LINKED_STATUSES.map(Trap::Status));
        traps.extend(super::model::FLAKY_STATUSES.map(Trap::Flaky));
        traps.extend([
            Trap::Slow,
            Trap::Stall,
            Trap::Huge,
            Trap::HugeChunked,
            Trap::Gzip,
        ]);
        traps.extend((0..CHARSET_CASES.len() as u8).map(Trap::Charset));
        traps.extend([
            Trap::Binary,
            Trap::Plain,
            Trap::Malformed,
            Trap::Empty,
            Trap::Long(0),
            Trap::Repeat(1),
        ]);
        traps.into_iter().map(Node::Trap)
    }

    fn trap_links(&self, trap: Trap, links: &mut Vec<Link>) {
        match trap {
            Trap::Gzip => links.push(Link::to(Node::Trap(Trap::GzipChild), Form::Relative)),
            Trap::Charset(n) => {
                links.push(Link::to(
                    Node::Trap(Trap::CharsetChild(n)),
                    Form::RootRelative,
                ));
            }
            Trap::Malformed => links.extend(
                (1..=MALFORMED_CHILDREN)
                    .map(|k| Link::to(Node::Trap(Trap::MalformedChild(k)), Form::RootRelative)),
            ),
            Trap::Long(n) if n < LONG_PAGES => {
                links.push(Link::to(Node::Trap(Trap::Long(n + 1)), Form::RootRelative));
            }
            Trap::Repeat(n) => {
                // Written `a/a` from `/trap/repeat/a…/a`: one level deeper, forever.
                links.push(Link::to(Node::Trap(Trap::Repeat(n + 1)), Form::Relative));
            }
            Trap::Chain(k) if k == self.chain_len => {}
            Trap::Short(k) if k == SHORT_CHAIN => {}
            _ => {}
        }
    }
}

impl Link {
    fn to_node(self) -> Node {
        match self.to {
            To::Node(n) => n,
            _ => Node::NotFound,
        }
    }
}

fn verbatim(href: &'static str) -> Link {
    Link {
        to: To::Verbatim(href),
        form: Form::Absolute,
        fragment: false,
        nofollow: false,
        area: false,
    }
}

/// A link to `node` in a random form, sometimes with a fragment, sometimes an `area`.
fn random_link(rng: &mut Prng, node: Node) -> Link {
    let forms: &[Form] = if node.host() == Host::Site {
        &Form::ALL
    } else {
        &Form::CROSS_HOST
    };
    // Relative links are the most common on the web; weigh them up.
    let form = if node.host() == Host::Site && rng.chance(25) {
        Form::Relative
    } else {
        rng.pick(forms).unwrap_or(Form::Absolute)
    };
    Link {
        to: To::Node(node),
        form,
        fragment: rng.chance(12),
        nofollow: false,
        area: rng.chance(10),
    }
}

fn node_hash(node: Node) -> u64 {
    use std::hash::{Hash, Hasher};
    // Not `DefaultHasher`: its algorithm may change between Rust releases, and the site must
    // not. FNV-1a over the Debug form is stable and needs nothing.
    struct Fnv(u64);
    impl Hasher for Fnv {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for &b in bytes {
                self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    format!("{node:?}").hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_seed_dependent() {
        let config = SiteConfig::default();
        let a = Graph::generate(&config);
        let b = Graph::generate(&config);
        assert_eq!(a.links, b.links);
        assert_eq!(a.level, b.level);
        let c = Graph::generate(&config.clone().with_seed(2));
        assert_ne!(a.links, c.links);
    }

    #[test]
    fn levels_spread_over_several_depths() {
        let graph = Graph::generate(&SiteConfig::default());
        let deepest = graph.level.iter().max().copied().unwrap_or(0);
        assert!(deepest >= 5, "deepest level {deepest}");
        assert!(graph.by_level[1].len() == ROOT_LINKS as usize);
    }

    #[test]
    fn every_special_page_hangs_off_something() {
        let config = SiteConfig::default();
        let graph = Graph::generate(&config);
        for node in [
            Node::Private(0),
            Node::Press(1),
            Node::NoFollow(NOFOLLOW_PAGES),
            Node::Landing(2),
            Node::LandingMore(2),
            Node::Back(3),
            Node::Far(2),
            Node::Unicode,
        ] {
            assert!(graph.level(node).is_some(), "{node:?}");
        }
    }
}
