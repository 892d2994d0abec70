//! A declarative spider: a CrawlJob's `extract` rules, what to take from each page and which
//! links to follow, written as CSS selectors and regexes instead of code.
//!
//! The stock `link` spider reads them: for each HTML page of a job with `extract`, it puts
//! the item fields in the page record's `fields` and follows the links the `follow` rules and
//! `pagination` select (every followable link when `follow` is unset). The job's other link
//! filters (`allowedDomains`, `allowRegex`, `denyRegex`, `denyExtensions`, `maxdepth`) still
//! apply on top, in the frontier. The `wandering` spider ignores them; a custom spider may use
//! them (the worker hands them to it compiled).
//!
//! The schema bounds every list and string; CEL checks that field names are unique. That a
//! selector or a regex compiles needs a program: the operator checks it (`Valid=False`), and
//! the worker checks again before it uses them.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// The most item fields one job may extract.
pub const MAX_FIELDS: usize = 50;
/// The most follow rules one job may have.
pub const MAX_FOLLOW_RULES: usize = 20;
/// The longest CSS selector accepted, in characters.
pub const MAX_SELECTOR_LEN: usize = 1024;
/// The longest field name accepted, in characters.
pub const MAX_FIELD_NAME_LEN: usize = 64;
/// The most allow (or deny) regexes of one follow rule.
pub const MAX_RULE_REGEXES: usize = 50;
/// The longest regex of a follow rule, in characters.
pub const MAX_REGEX_LEN: usize = 1024;

/// What to extract from each page and which links to follow, without code. Read by the
/// `link` spider; each HTML page's record gets a `fields` object with one entry per field.
/// Selectors are CSS selectors (as browsers' `querySelectorAll` takes them); regexes are Rust
/// `regex` syntax, searched unanchored in a link's canonical URL. The job's allowedDomains,
/// allowRegex, denyRegex, denyExtensions and maxdepth still apply to every followed link.
/// Unset means no fields and every allowed link followed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.fields) && size(self.fields) > 0) || has(self.follow) || has(self.pagination)",
    "message": "extract needs fields, follow or pagination"
}]))]
pub struct Extract {
    /// The item fields taken from each HTML page (keys of the record's `fields` object, which
    /// lists them in name order): at most 50, names unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 50),
        extend("x-kubernetes-validations" = [{
            "rule": "self.all(f, self.exists_one(g, g.name == f.name))",
            "message": "field names must be unique"
        }])
    )]
    pub fields: Vec<ExtractField>,

    /// Which links of a page are followed: those that at least one rule selects and admits.
    /// At most 20 rules. Unset means every link the job allows (as without `extract`); an
    /// empty list follows only the `pagination` links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 20))]
    pub follow: Option<Vec<FollowRule>>,

    /// A CSS selector of the next-page links (e.g. `a[rel=next]`): the links at or inside the
    /// elements it matches are always followed, besides those of `follow`, one hop deeper
    /// like any link (maxdepth counts them). At most 1024 characters. Unset means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub pagination: Option<String>,
}

/// One item field: where it is on the page and what of it is taken.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtractField {
    /// The field's key in the record's `fields` object: a lowercase letter, then lowercase
    /// letters, digits and '_', at most 64 characters. Unique within the job. Required.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[a-z][a-z0-9_]*$"))]
    pub name: String,

    /// The CSS selector of the elements the value comes from, e.g. `h1`, `span.price`,
    /// `meta[name=description]`. At most 1024 characters. Required.
    #[schemars(length(min = 1, max = 1024))]
    pub selector: String,

    /// Take this attribute of the element (e.g. `href`, `content`, `src`; matched without
    /// regard to case) instead of its text. Elements without it do not count as matches.
    /// Unset means the element's text. Either way whitespace runs become one space and the
    /// ends are trimmed; a value is cut at 16384 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[A-Za-z_:][-A-Za-z0-9_:.]*$")
    )]
    pub attribute: Option<String>,

    /// Take every match, as a list in document order (at most 1000; `[]` when none). Default
    /// false: the first match, or null when none.
    #[serde(default)]
    pub all: bool,
}

/// A link rule: the links at or inside the elements `selector` matches, less those its
/// regexes refuse.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FollowRule {
    /// A CSS selector, e.g. `ul.products`, `a.next`, `nav`: the `a` and `area` links at or
    /// inside the elements it matches are this rule's. At most 1024 characters. Unset means
    /// every link of the page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub selector: Option<String>,

    /// Regular expressions (Rust `regex` syntax); when any is given, this rule admits a link
    /// only if its canonical URL matches one of them. At most 50, each at most 1024
    /// characters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "rule_regexes_schema")]
    pub allow: Vec<String>,

    /// Regular expressions; this rule never admits a link whose canonical URL matches one of
    /// them, even when it matches `allow`. At most 50, each at most 1024 characters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "rule_regexes_schema")]
    pub deny: Vec<String>,
}

impl Extract {
    /// Every CSS selector of the rules with its path below `extract` (`fields[2].selector`,
    /// `follow[0].selector`, `pagination`), in that order: what must compile.
    pub fn selectors(&self) -> Vec<(String, &str)> {
        let mut out: Vec<(String, &str)> = self
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| (format!("fields[{i}].selector"), f.selector.as_str()))
            .collect();
        for (i, rule) in self.follow.iter().flatten().enumerate() {
            if let Some(selector) = &rule.selector {
                out.push((format!("follow[{i}].selector"), selector.as_str()));
            }
        }
        if let Some(pagination) = &self.pagination {
            out.push(("pagination".to_owned(), pagination.as_str()));
        }
        out
    }

    /// Every regex of the follow rules with its path below `extract` (`follow[1].allow[0]`,
    /// `follow[1].deny[3]`): what must compile.
    pub fn regexes(&self) -> Vec<(String, &str)> {
        let mut out = Vec::new();
        for (i, rule) in self.follow.iter().flatten().enumerate() {
            for (kind, list) in [("allow", &rule.allow), ("deny", &rule.deny)] {
                out.extend(
                    list.iter()
                        .enumerate()
                        .map(|(j, r)| (format!("follow[{i}].{kind}[{j}]"), r.as_str())),
                );
            }
        }
        out
    }
}

fn rule_regexes_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": MAX_RULE_REGEXES,
        "items": {"type": "string", "minLength": 1, "maxLength": MAX_REGEX_LEN}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Extract {
        serde_yaml::from_str(
            r#"
fields:
  - {name: title, selector: h1}
  - {name: price, selector: span.price}
  - {name: image, selector: img.main, attribute: src, all: true}
follow:
  - selector: ul.products
    allow: ['/product/\d+$']
    deny: ['\?preview']
  - allow: ['/category/']
pagination: a[rel=next]
"#,
        )
        .expect("the example parses")
    }

    #[test]
    fn selectors_and_regexes_are_named_by_their_path() {
        let extract = example();
        assert_eq!(
            extract.selectors(),
            [
                ("fields[0].selector".to_owned(), "h1"),
                ("fields[1].selector".to_owned(), "span.price"),
                ("fields[2].selector".to_owned(), "img.main"),
                ("follow[0].selector".to_owned(), "ul.products"),
                ("pagination".to_owned(), "a[rel=next]"),
            ]
        );
        assert_eq!(
            extract.regexes(),
            [
                ("follow[0].allow[0]".to_owned(), r"/product/\d+$"),
                ("follow[0].deny[0]".to_owned(), r"\?preview"),
                ("follow[1].allow[0]".to_owned(), "/category/"),
            ]
        );
    }

    #[test]
    fn defaults_fill_in_and_unknown_keys_are_refused() {
        let extract = example();
        assert!(!extract.fields[0].all);
        assert_eq!(extract.fields[0].attribute, None);
        let err = serde_yaml::from_str::<Extract>("fields: [{name: a, selector: h1, atribute: x}]")
            .expect_err("a typo is refused");
        assert!(err.to_string().contains("atribute"), "{err}");
        let unset: Extract = serde_yaml::from_str("fields: [{name: a, selector: h1}]")
            .expect("follow may be left out");
        assert_eq!(unset.follow, None, "unset is not an empty list");
    }
}
