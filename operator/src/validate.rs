//! What the schema cannot check about a CrawlJob, checked by the operator.
//!
//! The API server already refused bad URLs, ranges, lengths and unknown fields. What is left
//! needs a program: regexes must compile (Rust `regex` syntax), and the CSS selectors of
//! `extract` and `render`'s patterns too; the spiderid must name a fleet this operator runs
//! (one whose workers render, for a job with `render`), and no other CrawlJob may already use the same spiderid, appid and
//! crawlid (they would share one frontier job). Each failure is a message a person can act on,
//! shown in the `Valid=False` condition.

use std::sync::Arc;

use kube::ResourceExt;
use kubecrawl_api::{CrawlJob, Extract};
use kubecrawl_frontier::JobPolicy;
use kubecrawl_frontier::filter::{FilterError, LinkFilter};

use crate::fleet::FleetConfig;

/// Checks `job`; `others` are the jobs the operator knows (the job itself may be among them).
///
/// # Errors
/// A message naming the field and what to do.
pub fn check(job: &CrawlJob, fleets: &FleetConfig, others: &[Arc<CrawlJob>]) -> Result<(), String> {
    let spec = &job.spec;
    if !fleets.knows(&spec.spiderid) {
        return Err(format!(
            "spec.spiderid: {:?} is not a spider fleet this operator runs (known: {}); add it to the operator's fleet configuration",
            spec.spiderid,
            fleets.known()
        ));
    }
    if spec.render.as_ref().is_some_and(|r| r.is_on()) && !fleets.renders(&spec.spiderid) {
        let rendering = fleets.rendering();
        return Err(format!(
            "spec.render: the workers of spider fleet {:?} do not render pages; use a fleet with render: true ({}), or set render in the operator's fleet configuration",
            spec.spiderid,
            if rendering.is_empty() {
                "none is configured"
            } else {
                &rendering
            }
        ));
    }
    let sitemaps = spec.sitemaps.iter().flat_map(|s| s.urls.iter());
    http_urls("spec.seeds", spec.seeds.iter())?;
    http_urls("spec.sitemaps.urls", sitemaps)?;
    if let Err(FilterError::Regex { field, source }) = LinkFilter::new(&JobPolicy::from_spec(spec))
    {
        let which = if field == "allowRegex" {
            &spec.allow_regex
        } else {
            &spec.deny_regex
        };
        let bad = which
            .iter()
            .position(|r| regex::Regex::new(r).is_err())
            .unwrap_or(0);
        let reason = source.to_string();
        let first_line = reason.lines().last().unwrap_or("does not compile").trim();
        return Err(format!(
            "spec.{field}[{bad}]: {:?} is not a valid regular expression: {first_line}",
            which.get(bad).map_or("", String::as_str)
        ));
    }
    if let Some(extract) = &spec.extract {
        check_extract(extract)?;
    }
    if let Some(render) = &spec.render {
        for (i, pattern) in render.patterns.iter().enumerate() {
            if let Err(e) = regex::Regex::new(pattern) {
                let last_line = e.to_string().lines().last().unwrap_or_default().to_owned();
                return Err(format!(
                    "spec.render.patterns[{i}]: {pattern:?} is not a valid regular expression: {last_line}"
                ));
            }
        }
    }
    match conflict(job, others) {
        Some(message) => Err(message),
        None => Ok(()),
    }
}

/// Every selector of `spec.extract` must be a CSS selector the workers' engine (`scraper`)
/// parses, and every regex of its follow rules must compile.
fn check_extract(extract: &Extract) -> Result<(), String> {
    for (path, selector) in extract.selectors() {
        if let Err(e) = scraper::Selector::parse(selector) {
            return Err(format!(
                "spec.extract.{path}: {selector:?} is not a valid CSS selector: {}",
                selector_reason(&e)
            ));
        }
    }
    for (path, regex) in extract.regexes() {
        if let Err(e) = regex::Regex::new(regex) {
            let reason = e.to_string();
            let last_line = reason.lines().last().unwrap_or("does not compile").trim();
            return Err(format!(
                "spec.extract.{path}: {regex:?} is not a valid regular expression: {last_line}"
            ));
        }
    }
    Ok(())
}

/// The selector parser's complaint in one line, as the worker words it
/// (`kubecrawl_worker::declarative`). Its own message for what the engine does not support
/// asks to report a bug and spans many lines.
fn selector_reason(error: &scraper::error::SelectorErrorKind) -> String {
    use scraper::error::SelectorErrorKind as Kind;
    match error {
        Kind::UnexpectedToken => "unexpected token".to_owned(),
        Kind::EndOfLine => "unexpected end of the selector".to_owned(),
        Kind::InvalidAtRule | Kind::InvalidAtRuleBody => "an @-rule is not a selector".to_owned(),
        Kind::QualRuleInvalid => "invalid qualified name".to_owned(),
        Kind::TooManyNestedBlocks => "too many nested blocks".to_owned(),
        Kind::ExpectedColonOnPseudoElement => "a pseudo-element needs '::'".to_owned(),
        Kind::ExpectedIdentityOnPseudoElement => "a pseudo-element needs a name".to_owned(),
        Kind::UnexpectedSelectorParseError(kind) => format!("not supported ({kind:?})"),
    }
}

/// The message for a job whose spiderid, appid and crawlid an older CrawlJob already uses.
pub fn conflict(job: &CrawlJob, others: &[Arc<CrawlJob>]) -> Option<String> {
    let spec = &job.spec;
    let me = (job.namespace(), job.name_any());
    others.iter().find(|o| {
        (o.namespace(), o.name_any()) != me
            && o.metadata.deletion_timestamp.is_none()
            && o.spec.spiderid == spec.spiderid
            && o.spec.appid == spec.appid
            && o.crawlid() == job.crawlid()
            // The older job keeps the crawlid; ties go by namespace and name.
            && (&o.metadata.creation_timestamp, o.namespace(), o.name_any())
                < (&job.metadata.creation_timestamp, me.0.clone(), me.1.clone())
    })
    .map(|other| {
        format!(
            "spec.crawlid: {:?} (spider {}, app {}) is already used by CrawlJob {}/{}; choose another crawlid",
            job.crawlid(),
            spec.spiderid,
            spec.appid,
            other.namespace().unwrap_or_default(),
            other.name_any()
        )
    })
}

/// Each of `urls` must be an absolute http(s) URL with a host; the first that is not is named
/// by `field` and its index.
fn http_urls<'a>(field: &str, urls: impl Iterator<Item = &'a String>) -> Result<(), String> {
    for (i, raw) in urls.enumerate() {
        match url::Url::parse(raw) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
            _ => {
                return Err(format!(
                    "{field}[{i}]: {raw:?} is not an absolute http or https URL"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubecrawl_api::CrawlJobSpec;

    fn job(name: &str, extra: serde_json::Value) -> CrawlJob {
        let mut spec =
            serde_json::json!({"spiderid": "link", "appid": "a", "seeds": ["http://site.test/"]});
        if let (Some(base), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            base.extend(extra.clone());
        }
        let spec: CrawlJobSpec = serde_json::from_value(spec).expect("spec");
        let mut j = CrawlJob::new(name, spec);
        j.metadata.namespace = Some("ns".into());
        j
    }

    #[test]
    fn a_plain_job_is_valid() {
        assert_eq!(
            check(
                &job("a", serde_json::json!({})),
                &FleetConfig::default(),
                &[]
            ),
            Ok(())
        );
    }

    #[test]
    fn unknown_spiders_are_named() {
        let err = check(
            &job("a", serde_json::json!({"spiderid": "nope"})),
            &FleetConfig::default(),
            &[],
        )
        .expect_err("refused");
        assert!(
            err.contains("spec.spiderid")
                && err.contains("nope")
                && err.contains("link, wandering"),
            "{err}"
        );
    }

    #[test]
    fn bad_regexes_are_named_with_their_index() {
        let j = job("a", serde_json::json!({"denyRegex": ["ok", "(unclosed"]}));
        let err = check(&j, &FleetConfig::default(), &[]).expect_err("refused");
        assert!(err.starts_with("spec.denyRegex[1]: \"(unclosed\""), "{err}");
    }

    /// The default fleets, `link` rendering.
    fn rendering_fleets() -> FleetConfig {
        let mut fleets = FleetConfig::default();
        fleets.fleets.insert(
            "link".to_owned(),
            crate::fleet::FleetSettings {
                render: Some(true),
                ..Default::default()
            },
        );
        fleets
    }

    #[test]
    fn a_job_that_renders_needs_a_fleet_that_renders() {
        let rendering = job("a", serde_json::json!({"render": {"mode": "auto"}}));
        let err = check(&rendering, &FleetConfig::default(), &[]).expect_err("refused");
        assert!(
            err.starts_with("spec.render: the workers of spider fleet \"link\" do not render pages; use a fleet with render: true (none is configured)"),
            "{err}"
        );
        assert_eq!(check(&rendering, &rendering_fleets(), &[]), Ok(()));
        // Never renders nothing: any fleet takes it.
        let never = job("a", serde_json::json!({"render": {"mode": "never"}}));
        assert_eq!(check(&never, &FleetConfig::default(), &[]), Ok(()));
    }

    #[test]
    fn the_render_example_is_valid_on_the_chart_s_fleets() {
        let example: CrawlJob =
            serde_yaml::from_str(include_str!("../../examples/render.yaml")).expect("parses");
        let mut fleets = FleetConfig::default();
        fleets.fleets.insert(
            "link-render".to_owned(),
            crate::fleet::FleetSettings {
                render: Some(true),
                spider: Some("link".to_owned()),
                ..Default::default()
            },
        );
        assert_eq!(check(&example, &fleets, &[]), Ok(()));
    }

    #[test]
    fn bad_render_patterns_are_named_with_their_index() {
        let j = job(
            "a",
            serde_json::json!({"render": {"mode": "patterns", "patterns": ["/app/", "[unclosed"]}}),
        );
        let err = check(&j, &rendering_fleets(), &[]).expect_err("refused");
        assert!(
            err.starts_with(
                "spec.render.patterns[1]: \"[unclosed\" is not a valid regular expression: "
            ),
            "{err}"
        );
        let ok = job(
            "a",
            serde_json::json!({"render": {"mode": "patterns", "patterns": ["/app/"]}}),
        );
        assert_eq!(check(&ok, &rendering_fleets(), &[]), Ok(()));
    }

    #[test]
    fn bad_extract_selectors_and_regexes_are_named_with_their_path() {
        let with = |extract: serde_json::Value| {
            check(
                &job("a", serde_json::json!({"extract": extract})),
                &FleetConfig::default(),
                &[],
            )
        };
        let good = serde_json::json!({
            "fields": [{"name": "title", "selector": "h1"}, {"name": "img", "selector": "img.main", "attribute": "src", "all": true}],
            "follow": [{"selector": "ul.products", "allow": ["/p/\\d+$"], "deny": ["preview"]}],
            "pagination": "a[rel=next]"
        });
        assert_eq!(with(good), Ok(()));
        let err = with(serde_json::json!({"fields": [
            {"name": "a", "selector": "h1"},
            {"name": "b", "selector": "p"},
            {"name": "c", "selector": "h1["}
        ]}))
        .expect_err("refused");
        assert_eq!(
            err,
            "spec.extract.fields[2].selector: \"h1[\" is not a valid CSS selector: unexpected end of the selector"
        );
        let err =
            with(serde_json::json!({"follow": [{"selector": "ul"}, {"selector": "p:frobnicate"}]}))
                .expect_err("refused");
        assert!(
            err.starts_with("spec.extract.follow[1].selector: \"p:frobnicate\" is not a valid CSS selector: not supported"),
            "{err}"
        );
        let err = with(serde_json::json!({"pagination": "a[rel=]"})).expect_err("refused");
        assert!(err.starts_with("spec.extract.pagination: "), "{err}");
        let err =
            with(serde_json::json!({"follow": [{"allow": ["ok"]}, {"deny": ["x", "(unclosed"]}]}))
                .expect_err("refused");
        assert_eq!(
            err,
            "spec.extract.follow[1].deny[1]: \"(unclosed\" is not a valid regular expression: error: unclosed group"
        );
    }

    #[test]
    fn the_extract_example_is_valid() {
        let mut example: CrawlJob =
            serde_yaml::from_str(include_str!("../../examples/extract.yaml")).expect("parses");
        example.metadata.namespace = Some("ns".into());
        assert!(example.spec.extract.is_some());
        assert_eq!(check(&example, &FleetConfig::default(), &[]), Ok(()));
    }

    #[test]
    fn bad_sitemap_urls_are_named_with_their_index() {
        let j = job(
            "a",
            serde_json::json!({"sitemaps": {"urls": ["http://site.test/s.xml", "file:///etc/passwd"]}}),
        );
        let err = check(&j, &FleetConfig::default(), &[]).expect_err("refused");
        assert!(
            err.starts_with("spec.sitemaps.urls[1]: \"file:///etc/passwd\""),
            "{err}"
        );
    }

    #[test]
    fn a_second_job_with_the_same_crawlid_is_refused() {
        let first = Arc::new(job("first", serde_json::json!({"crawlid": "same"})));
        let second = job("second", serde_json::json!({"crawlid": "same"}));
        let err = check(
            &second,
            &FleetConfig::default(),
            std::slice::from_ref(&first),
        )
        .expect_err("refused");
        assert!(err.contains("ns/first"), "{err}");
        assert_eq!(
            check(
                &first,
                &FleetConfig::default(),
                std::slice::from_ref(&first)
            ),
            Ok(()),
            "a job never conflicts with itself"
        );
    }
}
