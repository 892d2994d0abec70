//! A job's declarative spider (`spec.extract`): its CSS selectors and regexes compiled once
//! per job ([`Rules::compile`]), then applied to each page ([`Rules::apply`]).
//!
//! Applying the rules parses the page into a DOM (`scraper`), which the streaming link
//! extractor ([`crate::extract`]) avoids: that is what a declarative spider costs per page
//! (docs/performance.md). `scraper::Html` is not `Send`, so [`Rules::apply`] is synchronous
//! and returns owned data.
//!
//! # What a page gives
//! - **Fields**: for each field, the elements its selector matches, in document order; with
//!   `attribute`, only those that have it (matched without regard to case), and the value is
//!   the attribute's, else the element's text (every text node below it). Whitespace runs
//!   become one space and the ends are trimmed; a value is cut at [`MAX_VALUE_CHARS`]. The
//!   field is the first value or null, or with `all` the list of values (at most
//!   [`MAX_VALUES`], `[]` when none). A page's fields hold at most [`MAX_FIELDS_BYTES`] of
//!   text together: past it, a list ends and a single value is null. A page that is not
//!   HTML gets null (or `[]`) for every field.
//! - **Links to follow**: without `follow` rules, every followable link (as the link spider
//!   follows without rules). With them, a link of the page is followed when a rule selects it
//!   (it is an `a` or `area` at or inside an element the rule's selector matches; a rule
//!   without a selector selects every link) and admits it (it matches one of the rule's
//!   `allow` regexes, if it has any, and none of its `deny` ones), or when it is at or inside
//!   an element the `pagination` selector matches. Links are the page's extracted ones
//!   ([`crate::spider::Response::followable_links`]): canonical, resolved against
//!   `<base href>`, nofollow ones left out unless the job follows them; the rules only choose
//!   among them, in document order.

use std::collections::HashSet;

use kubecrawl_api::{Extract, ExtractField, FollowRule, Link};
use kubecrawl_frontier::fingerprint::canonicalize;
use regex::Regex;
use scraper::error::SelectorErrorKind;
use scraper::{ElementRef, Html, Selector};
use serde_json::{Map, Value};
use url::Url;

/// The longest value of a field, in characters; longer ones are cut.
pub const MAX_VALUE_CHARS: usize = 16_384;
/// The most values of an `all` field.
pub const MAX_VALUES: usize = 1_000;
/// The most text a page's fields hold together, in bytes (the worker's default body cap):
/// overlapping selectors (`div` with `all`) could otherwise repeat a page's text many times.
pub const MAX_FIELDS_BYTES: usize = 1 << 20;

/// Why a job's rules do not compile. `path` is below `spec.extract`, e.g.
/// `fields[2].selector`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A selector is not valid CSS (or uses what the selector engine does not support).
    #[error("{path}: {selector:?} is not a valid CSS selector: {reason}")]
    Selector {
        /// Where it is in the rules.
        path: String,
        /// The selector as written.
        selector: String,
        /// What the selector parser said.
        reason: String,
    },
    /// A follow rule's regex does not compile.
    #[error("{path}: {regex:?} is not a valid regular expression")]
    Regex {
        /// Where it is in the rules.
        path: String,
        /// The regex as written.
        regex: String,
        /// The regex compiler's error.
        #[source]
        source: regex::Error,
    },
}

/// A job's rules, compiled: what [`Rules::apply`] runs on each page.
#[derive(Debug)]
pub struct Rules {
    fields: Vec<FieldRule>,
    /// `None`: every followable link.
    follow: Option<Vec<LinkRule>>,
    pagination: Option<Selector>,
    /// `a[href], area[href]`.
    links: Selector,
    /// `base[href]`.
    base: Selector,
    /// Whether applying needs the DOM (a field, a selector of a link rule, pagination).
    needs_dom: bool,
}

#[derive(Debug)]
struct FieldRule {
    name: String,
    selector: Selector,
    /// Lowercase: the HTML parser lowercases attribute names.
    attribute: Option<String>,
    all: bool,
}

#[derive(Debug)]
struct LinkRule {
    selector: Option<Selector>,
    allow: Vec<Regex>,
    deny: Vec<Regex>,
}

impl LinkRule {
    fn admits(&self, url: &str) -> bool {
        (self.allow.is_empty() || self.allow.iter().any(|r| r.is_match(url)))
            && !self.deny.iter().any(|r| r.is_match(url))
    }
}

/// What the rules took from one page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extracted {
    /// Every field of the rules, by name (the record's `fields`).
    pub fields: Map<String, Value>,
    /// The canonical URLs to follow, in document order.
    pub follow: Vec<String>,
}

impl Rules {
    /// Compiles a job's rules.
    ///
    /// # Errors
    /// The first selector or regex that does not compile, named by its path.
    pub fn compile(extract: &Extract) -> Result<Self, Error> {
        let fields = extract
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| FieldRule::compile(i, f))
            .collect::<Result<_, _>>()?;
        let follow = extract
            .follow
            .as_ref()
            .map(|rules| {
                rules
                    .iter()
                    .enumerate()
                    .map(|(i, r)| LinkRule::compile(i, r))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let pagination = extract
            .pagination
            .as_deref()
            .map(|s| selector("pagination".to_owned(), s))
            .transpose()?;
        let needs_dom = !extract.fields.is_empty()
            || pagination.is_some()
            || follow
                .iter()
                .flatten()
                .any(|r: &LinkRule| r.selector.is_some());
        Ok(Self {
            fields,
            follow,
            pagination,
            links: Selector::parse("a[href], area[href]").expect("a valid constant selector"),
            base: Selector::parse("base[href]").expect("a valid constant selector"),
            needs_dom,
        })
    }

    /// Applies the rules to a page served from `page_url`: `html` is its text when it is
    /// HTML (else `None`), `links` its followable links. See the module docs for what comes
    /// out.
    pub fn apply(&self, html: Option<&str>, page_url: &Url, links: &[&Link]) -> Extracted {
        let doc = html.filter(|_| self.needs_dom).map(Html::parse_document);
        let mut budget = MAX_FIELDS_BYTES;
        let fields = self
            .fields
            .iter()
            .map(|f| {
                let value = match &doc {
                    Some(doc) => f.extract(doc, &mut budget),
                    None => f.none(),
                };
                (f.name.clone(), value)
            })
            .collect();
        let Some(rules) = &self.follow else {
            return Extracted {
                fields,
                follow: links.iter().map(|l| l.url.clone()).collect(),
            };
        };
        let base = doc.as_ref().map(|d| self.base_url(d, page_url));
        let mut chosen: HashSet<String> = HashSet::new();
        for rule in rules {
            match (&rule.selector, &doc, &base) {
                (None, _, _) => chosen.extend(
                    links
                        .iter()
                        .filter(|l| rule.admits(&l.url))
                        .map(|l| l.url.clone()),
                ),
                (Some(selector), Some(doc), Some(base)) => chosen.extend(
                    self.selected(doc, selector, base)
                        .filter(|url| rule.admits(url)),
                ),
                _ => {}
            }
        }
        if let (Some(selector), Some(doc), Some(base)) = (&self.pagination, &doc, &base) {
            chosen.extend(self.selected(doc, selector, base));
        }
        Extracted {
            fields,
            follow: links
                .iter()
                .filter(|l| chosen.contains(&l.url))
                .map(|l| l.url.clone())
                .collect(),
        }
    }

    /// The page's `<base href>` resolved against its URL, else its URL.
    fn base_url(&self, doc: &Html, page_url: &Url) -> Url {
        doc.select(&self.base)
            .next()
            .and_then(|b| b.attr("href"))
            .and_then(|href| page_url.join(href.trim()).ok())
            .unwrap_or_else(|| page_url.clone())
    }

    /// The canonical URLs of the links at or inside the elements `selector` matches.
    fn selected<'a>(
        &'a self,
        doc: &'a Html,
        selector: &'a Selector,
        base: &'a Url,
    ) -> impl Iterator<Item = String> + 'a {
        doc.select(selector)
            .flat_map(move |el| {
                let own = self.links.matches(&el).then_some(el);
                own.into_iter().chain(el.select(&self.links))
            })
            .filter_map(move |a| {
                let href = a.attr("href")?;
                let absolute = base.join(href.trim()).ok()?;
                canonicalize(absolute.as_str()).map(|c| c.url)
            })
    }
}

impl FieldRule {
    fn compile(i: usize, field: &ExtractField) -> Result<Self, Error> {
        Ok(Self {
            name: field.name.clone(),
            selector: selector(format!("fields[{i}].selector"), &field.selector)?,
            attribute: field.attribute.as_ref().map(|a| a.to_ascii_lowercase()),
            all: field.all,
        })
    }

    /// The field's value on a page with no match (or no HTML).
    fn none(&self) -> Value {
        if self.all {
            Value::Array(Vec::new())
        } else {
            Value::Null
        }
    }

    fn extract(&self, doc: &Html, budget: &mut usize) -> Value {
        let values = doc.select(&self.selector).filter_map(|el| self.value(el));
        if self.all {
            let mut list = Vec::new();
            for value in values.take(MAX_VALUES) {
                if value.len() > *budget {
                    break;
                }
                *budget -= value.len();
                list.push(Value::String(value));
            }
            Value::Array(list)
        } else {
            match values.take(1).next() {
                Some(value) if value.len() <= *budget => {
                    *budget -= value.len();
                    Value::String(value)
                }
                _ => Value::Null,
            }
        }
    }

    fn value(&self, el: ElementRef<'_>) -> Option<String> {
        match &self.attribute {
            Some(name) => el.attr(name).map(|v| collapse([v])),
            None => Some(collapse(el.text())),
        }
    }
}

impl LinkRule {
    fn compile(i: usize, rule: &FollowRule) -> Result<Self, Error> {
        let regexes = |kind: &str, list: &[String]| {
            list.iter()
                .enumerate()
                .map(|(j, r)| {
                    Regex::new(r).map_err(|source| Error::Regex {
                        path: format!("follow[{i}].{kind}[{j}]"),
                        regex: r.clone(),
                        source,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            selector: rule
                .selector
                .as_deref()
                .map(|s| selector(format!("follow[{i}].selector"), s))
                .transpose()?,
            allow: regexes("allow", &rule.allow)?,
            deny: regexes("deny", &rule.deny)?,
        })
    }
}

fn selector(path: String, text: &str) -> Result<Selector, Error> {
    Selector::parse(text).map_err(|e| Error::Selector {
        path,
        selector: text.to_owned(),
        reason: selector_reason(&e),
    })
}

/// The selector parser's complaint in one line. (Its own message for what the engine does
/// not support asks to report a bug and spans many lines.)
fn selector_reason(error: &SelectorErrorKind) -> String {
    match error {
        SelectorErrorKind::UnexpectedToken => "unexpected token".to_owned(),
        SelectorErrorKind::EndOfLine => "unexpected end of the selector".to_owned(),
        SelectorErrorKind::InvalidAtRule | SelectorErrorKind::InvalidAtRuleBody => {
            "an @-rule is not a selector".to_owned()
        }
        SelectorErrorKind::QualRuleInvalid => "invalid qualified name".to_owned(),
        SelectorErrorKind::TooManyNestedBlocks => "too many nested blocks".to_owned(),
        SelectorErrorKind::ExpectedColonOnPseudoElement => "a pseudo-element needs '::'".to_owned(),
        SelectorErrorKind::ExpectedIdentityOnPseudoElement => {
            "a pseudo-element needs a name".to_owned()
        }
        SelectorErrorKind::UnexpectedSelectorParseError(kind) => {
            format!("not supported ({kind:?})")
        }
    }
}

/// The text of `parts` with every whitespace run as one space, trimmed, at most
/// [`MAX_VALUE_CHARS`] characters.
fn collapse<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    let mut chars = 0;
    let mut space = false;
    for c in parts.into_iter().flat_map(str::chars) {
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if chars + usize::from(space) >= MAX_VALUE_CHARS {
            break;
        }
        if space {
            out.push(' ');
            chars += 1;
            space = false;
        }
        out.push(c);
        chars += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"<!DOCTYPE html>
<html lang="en"><head><title>  Shop:
  Widgets </title>
<meta name="description" content="  All   the widgets ">
<base href="/catalogue/">
</head><body>
<h1>Widgets <small>(3)</small></h1>
<ul class="products">
  <li><a href="widget-1">Widget <b>one</b></a> <span class="price">€ 10</span></li>
  <li><a href="widget-2?preview=1">Widget two</a> <span class="price">€ 12</span></li>
  <li><a href="/about">About</a></li>
</ul>
<img src="/a.png" alt="A"><img alt="no source"><IMG SRC="/b.png">
<nav><a class="next" rel="next" href="page-2">next</a><a href="/help">help</a></nav>
<map name="m"><area href="/area-link" alt="x"></map>
</body></html>"#;

    fn rules(yaml: &str) -> Rules {
        let extract: Extract = serde_yaml::from_str(yaml).expect("the rules parse");
        Rules::compile(&extract).expect("the rules compile")
    }

    fn page_url() -> Url {
        Url::parse("http://shop.test/list").expect("a valid url")
    }

    /// The links a link extractor finds on [`PAGE`] (canonical, resolved against the base).
    fn page_links() -> Vec<Link> {
        crate::extract::links(PAGE, &page_url())
    }

    fn apply(rules: &Rules) -> Extracted {
        let links = page_links();
        let refs: Vec<&Link> = links.iter().collect();
        rules.apply(Some(PAGE), &page_url(), &refs)
    }

    #[test]
    fn text_is_the_first_match_with_whitespace_collapsed() {
        let out = apply(&rules(
            "fields: [{name: title, selector: title}, {name: heading, selector: h1}, \
             {name: price, selector: span.price}]",
        ));
        assert_eq!(out.fields["title"], "Shop: Widgets");
        assert_eq!(
            out.fields["heading"], "Widgets (3)",
            "text of every node below"
        );
        assert_eq!(out.fields["price"], "€ 10", "the first match only");
        let names: Vec<&String> = out.fields.keys().collect();
        assert_eq!(names.len(), 3);
    }

    #[test]
    fn attributes_skip_elements_without_them_and_ignore_case() {
        let out = apply(&rules(
            "fields: [{name: description, selector: 'meta[name=description]', attribute: content}, \
             {name: images, selector: img, attribute: SRC, all: true}, \
             {name: lang, selector: html, attribute: lang}]",
        ));
        assert_eq!(out.fields["description"], "All the widgets");
        assert_eq!(
            out.fields["images"],
            serde_json::json!(["/a.png", "/b.png"])
        );
        assert_eq!(out.fields["lang"], "en");
    }

    #[test]
    fn all_lists_every_match_in_document_order() {
        let out = apply(&rules(
            "fields: [{name: prices, selector: span.price, all: true}, \
             {name: names, selector: 'ul a', all: true}]",
        ));
        assert_eq!(out.fields["prices"], serde_json::json!(["€ 10", "€ 12"]));
        assert_eq!(
            out.fields["names"],
            serde_json::json!(["Widget one", "Widget two", "About"])
        );
    }

    #[test]
    fn missing_fields_are_null_or_empty_and_non_html_gets_them_all() {
        let r = rules(
            "fields: [{name: sku, selector: .sku}, {name: tags, selector: .tag, all: true}, \
             {name: alt, selector: nav a, attribute: alt}]",
        );
        let out = apply(&r);
        assert_eq!(out.fields["sku"], Value::Null);
        assert_eq!(out.fields["tags"], serde_json::json!([]));
        assert_eq!(out.fields["alt"], Value::Null, "no match has the attribute");
        let none = r.apply(None, &page_url(), &[]);
        assert_eq!(none.fields, out.fields, "a page that is not HTML");
    }

    #[test]
    fn values_and_pages_are_bounded() {
        let long = format!("<p>{}</p>", "word ".repeat(10_000));
        let r = rules("fields: [{name: p, selector: p}]");
        let out = r.apply(Some(&long), &page_url(), &[]);
        let value = out.fields["p"].as_str().expect("a string");
        assert_eq!(value.chars().count(), MAX_VALUE_CHARS);
        assert!(!value.ends_with(' '));
        // Nested divs: `div` with `all` would repeat the text once per level.
        let nested = format!(
            "{}{}{}",
            "<div>".repeat(300),
            "x".repeat(10_000),
            "</div>".repeat(300)
        );
        let r = rules("fields: [{name: d, selector: div, all: true}]");
        let out = r.apply(Some(&nested), &page_url(), &[]);
        let list = out.fields["d"].as_array().expect("a list");
        let total: usize = list.iter().filter_map(Value::as_str).map(str::len).sum();
        assert!(total <= MAX_FIELDS_BYTES, "{total}");
        assert_eq!(
            list.len(),
            MAX_FIELDS_BYTES / 10_000,
            "whole values until the budget ends"
        );
    }

    #[test]
    fn without_follow_rules_every_followable_link_is_followed() {
        let out = apply(&rules("fields: [{name: t, selector: title}]"));
        let all: Vec<String> = page_links().into_iter().map(|l| l.url).collect();
        assert_eq!(out.follow, all);
    }

    #[test]
    fn follow_rules_select_by_selector_and_admit_by_their_own_regexes() {
        let out = apply(&rules(
            r#"
follow:
  - selector: ul.products
    allow: ['/catalogue/']
    deny: ['preview']
  - allow: ['/area-link$']
"#,
        ));
        assert_eq!(
            out.follow,
            [
                "http://shop.test/catalogue/widget-1",
                "http://shop.test/area-link"
            ],
            "relative links resolve against <base href>; /about is not admitted by rule 0"
        );
    }

    #[test]
    fn pagination_is_followed_whatever_the_rules_admit() {
        let out = apply(&rules("follow: []\npagination: 'a[rel=next]'"));
        assert_eq!(out.follow, ["http://shop.test/catalogue/page-2"]);
        let out = apply(&rules("follow: []"));
        assert!(out.follow.is_empty(), "an empty list follows nothing");
        let out = apply(&rules(
            "follow: [{selector: nav, deny: ['.']}]\npagination: nav",
        ));
        assert_eq!(
            out.follow,
            ["http://shop.test/catalogue/page-2", "http://shop.test/help"]
        );
    }

    #[test]
    fn only_the_pages_followable_links_are_followed() {
        let links = page_links();
        let without_help: Vec<&Link> = links.iter().filter(|l| !l.url.ends_with("/help")).collect();
        let out = rules("follow: [{selector: nav}]").apply(Some(PAGE), &page_url(), &without_help);
        assert_eq!(
            out.follow,
            ["http://shop.test/catalogue/page-2"],
            "a nofollow link (not among the followable ones) stays unfollowed"
        );
    }

    #[test]
    fn bad_selectors_and_regexes_are_named_by_their_path() {
        let bad = |yaml: &str| {
            let extract: Extract = serde_yaml::from_str(yaml).expect("the rules parse");
            Rules::compile(&extract).expect_err("refused").to_string()
        };
        assert_eq!(
            bad("fields: [{name: a, selector: h1}, {name: b, selector: 'h1['}]"),
            "fields[1].selector: \"h1[\" is not a valid CSS selector: unexpected end of the selector"
        );
        assert!(
            bad("fields: [{name: a, selector: 'p:frobnicate'}]").starts_with(
                "fields[0].selector: \"p:frobnicate\" is not a valid CSS selector: not supported"
            ),
        );
        assert_eq!(
            bad("follow: [{allow: [a]}, {selector: 'a', deny: ['ok', '(']}]"),
            "follow[1].deny[1]: \"(\" is not a valid regular expression"
        );
        assert!(bad("pagination: '>>'").starts_with("pagination: \">>\""));
    }

    #[test]
    fn collapse_joins_text_nodes_and_keeps_one_space() {
        assert_eq!(collapse(["  a\n\t b ", "c", " d  "]), "a b c d");
        assert_eq!(
            collapse(["a", "b"]),
            "ab",
            "no space where the text had none"
        );
        assert_eq!(collapse(["   "]), "");
    }
}
