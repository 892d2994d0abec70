//! The CrawlJob CRD on the real kube-apiserver: it applies, it explains itself, examples are
//! accepted and shown with the printer columns, and invalid jobs are refused by the server.

use kube::api::{Api, Patch, PatchParams};
use kubecrawl_api::{CrawlJob, Phase};
use kubecrawl_e2e::{TestNamespace, ensure_crd, kubectl, kubectl_ok, repo_path};

#[test]
fn kubectl_explain_prints_the_field_docs() {
    ensure_crd().expect("CRD applies");
    let out = kubectl_ok(&["explain", "crawljob.spec.seeds"], None).expect("explain works");
    assert!(out.contains("FIELD: seeds"), "explain output:\n{out}");
    assert!(
        out.contains("The URLs the crawl starts from"),
        "explain output:\n{out}"
    );
    let out = kubectl_ok(&["explain", "crawljob.spec.maxdepth"], None).expect("explain works");
    assert!(
        out.contains("0 (the default) fetches the seeds only"),
        "explain output:\n{out}"
    );
    let out = kubectl_ok(&["explain", "crawljob.spec.recrawl.afterSeconds"], None)
        .expect("explain works");
    assert!(
        out.contains("Seconds from the end of a round to the start of the next"),
        "explain output:\n{out}"
    );
    let out = kubectl_ok(&["explain", "crawljob.status.recrawl"], None).expect("explain works");
    assert!(out.contains("nextRoundTime"), "explain output:\n{out}");
}

#[tokio::test]
async fn examples_are_accepted_defaulted_and_listed_with_printer_columns() {
    ensure_crd().expect("CRD applies");
    let ns = TestNamespace::create("e2e-crd").expect("namespace");
    for example in [
        "examples/link.yaml",
        "examples/wandering.yaml",
        "examples/sitemaps.yaml",
        "examples/extract.yaml",
        "examples/recrawl.yaml",
        "examples/render.yaml",
    ] {
        let path = repo_path(example);
        kubectl_ok(
            &["apply", "-n", &ns.name, "-f", path.to_str().expect("utf-8")],
            None,
        )
        .unwrap_or_else(|e| panic!("{example} is accepted: {e:#}"));
    }

    let env = kubecrawl_e2e::TestEnv::get();
    let client = env.kube_client().await.expect("client");
    let jobs: Api<CrawlJob> = Api::namespaced(client, &ns.name);
    let job = jobs
        .get("test123456")
        .await
        .expect("wandering example exists");
    assert_eq!(job.spec.spiderid, "wandering");
    let sitemaps = jobs
        .get("news-sitemaps")
        .await
        .expect("sitemaps example exists")
        .spec
        .sitemaps
        .expect("sitemaps kept");
    assert!(sitemaps.from_robots && sitemaps.urls.len() == 1 && sitemaps.modified_since.is_some());
    let recrawl = jobs
        .get("docs-fresh")
        .await
        .expect("recrawl example exists")
        .spec
        .recrawl
        .expect("recrawl kept");
    assert_eq!(
        (recrawl.after_seconds, recrawl.max_rounds),
        (21600, Some(28))
    );
    let render = jobs
        .get("shop-app")
        .await
        .expect("render example exists")
        .spec
        .render
        .expect("render kept");
    assert_eq!(render.mode, kubecrawl_api::RenderMode::Auto);
    assert_eq!(render.screenshot_max_bytes, Some(262_144));
    assert_eq!(
        job.spec.priority, 1,
        "the server applied the schema default"
    );
    assert_eq!(
        job.spec.maxdepth, 0,
        "the server applied the schema default"
    );

    // A declarative spider's rules are stored as written, defaults filled in.
    let products = jobs.get("products").await.expect("extract example exists");
    let extract = products.spec.extract.expect("the rules are kept");
    assert_eq!(extract.fields.len(), 4);
    assert_eq!(extract.fields[2].attribute.as_deref(), Some("src"));
    assert!(extract.fields[3].all && !extract.fields[0].all);
    assert_eq!(
        extract.follow.expect("follow rules")[0].allow,
        [r"/product/\d+$"]
    );
    assert_eq!(extract.pagination.as_deref(), Some("a[rel=next]"));

    // The status subresource is writable on its own and feeds the printer columns.
    let status = serde_json::json!({"status": {"phase": Phase::Running, "pages": 42, "steps": 3, "queued": 7}});
    jobs.patch_status(
        "test123456",
        &PatchParams::default(),
        &Patch::Merge(&status),
    )
    .await
    .expect("status patch");

    let table = kubectl_ok(&["get", "crawljobs", "-n", &ns.name], None).expect("get");
    let header: Vec<&str> = table
        .lines()
        .next()
        .expect("a header")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "SPIDER", "PHASE", "PAGES", "STEPS", "QUEUED", "AGE"]
    );
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("test123456 "))
        .expect("a row for the wandering job")
        .split_whitespace()
        .collect();
    assert_eq!(
        row[1..6],
        ["wandering", "Running", "42", "3", "7"],
        "table:\n{table}"
    );

    // The short name and the category resolve to CrawlJobs.
    for name in ["crawl", "kubecrawl"] {
        let out = kubectl_ok(&["get", name, "-n", &ns.name, "-o", "name"], None).expect("get");
        assert!(
            out.contains("crawljob.kubecrawl.io/test123456"),
            "kubectl get {name}:\n{out}"
        );
    }
}

/// One invalid CrawlJob: what is wrong with it, the spec fields that make it so, and a piece
/// of the refusal that names the field.
struct Invalid {
    what: &'static str,
    spec: &'static str,
    names: &'static str,
}

const BASE: &str = "spiderid: link\n  appid: testapp\n  seeds: [\"http://site.test/\"]";

fn invalid_cases() -> Vec<Invalid> {
    vec![
        Invalid {
            what: "empty seeds",
            spec: "spiderid: link\n  appid: a\n  seeds: []",
            names: "spec.seeds",
        },
        Invalid {
            what: "a non-http seed",
            spec: "spiderid: link\n  appid: a\n  seeds: [\"ftp://x.test/\"]",
            names: "spec.seeds[0]",
        },
        Invalid {
            what: "a seed that is not a URL",
            spec: "spiderid: link\n  appid: a\n  seeds: [\"not a url\"]",
            names: "spec.seeds[0]",
        },
        Invalid {
            what: "a relative seed",
            spec: "spiderid: link\n  appid: a\n  seeds: [\"/index.html\"]",
            names: "spec.seeds[0]",
        },
        Invalid {
            what: "priority 0",
            spec: "priority: 0",
            names: "spec.priority",
        },
        Invalid {
            what: "priority 101",
            spec: "priority: 101",
            names: "spec.priority",
        },
        Invalid {
            what: "negative maxdepth",
            spec: "maxdepth: -1",
            names: "spec.maxdepth",
        },
        Invalid {
            what: "a bad expires",
            spec: "expires: tomorrow",
            names: "spec.expires",
        },
        Invalid {
            what: "a too-long appid",
            spec: "spiderid: link\n  seeds: [\"http://site.test/\"]\n  appid: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            names: "spec.appid",
        },
        Invalid {
            what: "an appid with a space",
            spec: "spiderid: link\n  seeds: [\"http://site.test/\"]\n  appid: my app",
            names: "spec.appid",
        },
        Invalid {
            what: "a missing spiderid",
            spec: "appid: a\n  seeds: [\"http://site.test/\"]",
            names: "spec.spiderid",
        },
        Invalid {
            what: "an uppercase spiderid",
            spec: "spiderid: Link\n  appid: a\n  seeds: [\"http://site.test/\"]",
            names: "spec.spiderid",
        },
        Invalid {
            what: "an allowed domain with a path",
            spec: "allowedDomains: [\"site.test/path\"]",
            names: "spec.allowedDomains[0]",
        },
        Invalid {
            what: "workers above 1000",
            spec: "workers: 1001",
            names: "spec.workers",
        },
        Invalid {
            what: "maxPages 0",
            spec: "maxPages: 0",
            names: "spec.maxPages",
        },
        Invalid {
            what: "an extension with a dot",
            spec: "denyExtensions: [\".pdf\"]",
            names: "spec.denyExtensions[0]",
        },
        Invalid {
            what: "attrs that are not an object",
            spec: "attrs: hello",
            names: "spec.attrs",
        },
        Invalid {
            what: "hits without windowSeconds",
            spec: "politeness: {hits: 5}",
            names: "spec.politeness",
        },
        Invalid {
            what: "sitemaps with neither urls nor fromRobots",
            spec: "sitemaps: {fromRobots: false}",
            names: "spec.sitemaps",
        },
        Invalid {
            what: "a sitemap that is not an http URL",
            spec: "sitemaps: {urls: [\"file:///etc/sitemap.xml\"]}",
            names: "spec.sitemaps.urls[0]",
        },
        Invalid {
            what: "a bad sitemaps modifiedSince",
            spec: "sitemaps: {fromRobots: true, modifiedSince: yesterday}",
            names: "spec.sitemaps.modifiedSince",
        },
        Invalid {
            what: "a recrawl without afterSeconds",
            spec: "recrawl: {maxRounds: 3}",
            names: "spec.recrawl.afterSeconds",
        },
        Invalid {
            what: "a recrawl at once",
            spec: "recrawl: {afterSeconds: 0}",
            names: "spec.recrawl.afterSeconds",
        },
        Invalid {
            what: "a recrawl of one round",
            spec: "recrawl: {afterSeconds: 60, maxRounds: 1}",
            names: "spec.recrawl.maxRounds",
        },
        Invalid {
            what: "two extract fields of one name",
            spec: "extract: {fields: [{name: title, selector: h1}, {name: title, selector: title}]}",
            names: "spec.extract.fields: Invalid value: field names must be unique",
        },
        Invalid {
            what: "an extract field name with a capital",
            spec: "extract: {fields: [{name: Title, selector: h1}]}",
            names: "spec.extract.fields[0].name",
        },
        Invalid {
            what: "51 extract fields",
            spec: Box::leak(too_many_fields().into_boxed_str()),
            names: "spec.extract.fields: Too many: 51: must have at most 50 items",
        },
        Invalid {
            what: "an extract field without a selector",
            spec: "extract: {fields: [{name: title}]}",
            names: "spec.extract.fields[0].selector: Required value",
        },
        Invalid {
            what: "an attribute name with a space",
            spec: "extract: {fields: [{name: t, selector: a, attribute: \"on click\"}]}",
            names: "spec.extract.fields[0].attribute",
        },
        Invalid {
            what: "a follow rule with an empty selector",
            spec: "extract: {follow: [{selector: \"\"}]}",
            names: "spec.extract.follow[0].selector",
        },
        Invalid {
            what: "render patterns without a pattern",
            spec: "render: {mode: patterns}",
            names: "render.mode patterns needs at least one pattern",
        },
        Invalid {
            what: "an unknown render mode",
            spec: "render: {mode: sometimes}",
            names: "spec.render.mode: Unsupported value",
        },
        Invalid {
            what: "a render timeout of zero",
            spec: "render: {mode: always, timeoutSeconds: 0}",
            names: "spec.render.timeoutSeconds",
        },
        Invalid {
            what: "an empty extract",
            spec: "extract: {}",
            names: "extract needs fields, follow or pagination",
        },
    ]
}

/// `extract` with one field more than the schema allows.
fn too_many_fields() -> String {
    let fields: Vec<String> = (0..=kubecrawl_api::extract::MAX_FIELDS)
        .map(|i| format!("{{name: f{i}, selector: p}}"))
        .collect();
    format!("extract: {{fields: [{}]}}", fields.join(", "))
}

fn manifest(name: &str, spec: &str) -> String {
    // A case that overrides a base field lists the whole spec; others add to the base.
    let spec = if spec.contains("spiderid") || spec.contains("appid") {
        spec.to_string()
    } else {
        format!("{BASE}\n  {spec}")
    };
    format!(
        "apiVersion: kubecrawl.io/v1alpha1\nkind: CrawlJob\nmetadata:\n  name: {name}\nspec:\n  {spec}\n"
    )
}

/// Prints the table of inputs and the server's messages; asserts each is refused, names its
/// field, and left nothing behind.
#[test]
fn invalid_crawljobs_are_refused_by_the_api_server() {
    ensure_crd().expect("CRD applies");
    let ns = TestNamespace::create("e2e-invalid").expect("namespace");

    // The base manifest itself is valid: the refusals below come from each case's change.
    let ok = manifest("valid-base", "maxdepth: 2");
    kubectl_ok(&["create", "-n", &ns.name, "-f", "-"], Some(&ok)).expect("the base job is valid");

    let cases = invalid_cases();
    assert!(cases.len() >= 10);
    println!("| input | the API server's message |\n|---|---|");
    for (i, case) in cases.iter().enumerate() {
        let name = format!("invalid-{i}");
        let out = kubectl(
            &["create", "-n", &ns.name, "-f", "-"],
            Some(&manifest(&name, case.spec)),
        )
        .expect("kubectl runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{} was accepted", case.what);
        assert!(
            stderr.contains(case.names),
            "the refusal of {} does not name {}: {stderr}",
            case.what,
            case.names
        );
        let message = stderr.trim().replace('\n', " ");
        let message = message
            .split_once("is invalid: ")
            .map_or(message.as_str(), |(_, m)| m);
        println!("| {} | `{}` |", case.what, message.replace('|', "\\|"));
        let left =
            kubectl(&["get", "crawljob", &name, "-n", &ns.name], None).expect("kubectl runs");
        assert!(
            !left.status.success(),
            "{} left an object behind",
            case.what
        );
    }
}

/// An unknown field is refused by strict decoding before any other check, so it is tested on
/// its own, on an otherwise valid job.
#[test]
fn unknown_fields_are_refused() {
    ensure_crd().expect("CRD applies");
    let ns = TestNamespace::create("e2e-unknown").expect("namespace");
    let out = kubectl(
        &["create", "-n", &ns.name, "-f", "-"],
        Some(&manifest("unknown-field", "bogus: 1")),
    )
    .expect("kubectl runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an unknown field was accepted");
    assert!(
        stderr.contains("unknown field \"spec.bogus\""),
        "refusal: {stderr}"
    );
    println!("| an unknown field | `{}` |", stderr.trim());
}

/// Regression: changing a live job's spiderid, appid or crawlid was accepted, which orphaned
/// its frontier state (the old job crawled on, deletion purged only the new one).
#[test]
fn identity_fields_are_immutable() {
    ensure_crd().expect("CRD applies");
    let ns = TestNamespace::create("e2e-immutable").expect("namespace");
    let with_crawlid = |crawlid: &str| {
        format!(
            "apiVersion: kubecrawl.io/v1alpha1\nkind: CrawlJob\nmetadata:\n  name: ident\nspec:\n  {BASE}\n  crawlid: {crawlid}\n"
        )
    };
    kubectl_ok(
        &["create", "-n", &ns.name, "-f", "-"],
        Some(&with_crawlid("first")),
    )
    .expect("the job is valid");
    let cases = [
        (
            "spiderid",
            r#"{"spec":{"spiderid":"wandering"}}"#,
            "spiderid is immutable",
        ),
        (
            "appid",
            r#"{"spec":{"appid":"other-app"}}"#,
            "appid is immutable",
        ),
        (
            "crawlid",
            r#"{"spec":{"crawlid":"second"}}"#,
            "crawlid is immutable",
        ),
        (
            "crawlid removed",
            r#"{"spec":{"crawlid":null}}"#,
            "crawlid is immutable",
        ),
    ];
    let patch_ident = |patch: &str| {
        kubectl(
            &[
                "patch",
                "crawljob",
                "ident",
                "-n",
                &ns.name,
                "--type=merge",
                "-p",
                patch,
            ],
            None,
        )
        .expect("kubectl runs")
    };
    for (what, patch, message) in cases {
        let out = patch_ident(patch);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "changing {what} was accepted");
        assert!(stderr.contains(message), "refusal of {what}: {stderr}");
        println!("| changing {what} | `{}` |", stderr.trim());
    }
    // Other fields stay editable.
    let out = patch_ident(r#"{"spec":{"maxdepth":3,"suspend":true}}"#);
    assert!(
        out.status.success(),
        "mutable fields can change: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
