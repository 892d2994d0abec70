//! The README's and the docs' commands, run as written on the local test environment.
//!
//! # What runs
//! In `README.md` and `docs/*.md`, every ```` ```console ```` block right after a
//! `<!-- tested -->` (or `<!-- tested: fails -->`) line is run, command by command, each with
//! `bash -c` (see `docs/markdown.rs` for how commands and their shown output are read). A
//! command fails the test when its exit status is not the one its marker says, or when its
//! output lacks a line the doc shows (in order; `…` stands for any text and numbers for any
//! number). Some commands also promise something the test checks whatever the doc shows: a
//! `crawl … -o FILE` writes FILE as JSON lines of page records; `kubectl get crawljobs`
//! prints the columns NAME SPIDER PHASE PAGES STEPS QUEUED AGE.
//!
//! In the docs this project owns, every console block is either tested or says why not
//! (`<!-- untested: <why> -->`), shell commands are written only in console blocks, relative
//! links resolve, and the README's quick start is among the tested commands.
//!
//! # The mapping: the only rewrites
//! 1. `cargo run [--release] -p PACKAGE [--bin BIN] --` runs that package's debug binary
//!    instead (`kubecrawl-worker`, `titles-worker`, `kubecrawl-operator`), from
//!    `<target>/debug`, which is first on `PATH`. The test builds those binaries once
//!    (`cargo build --locked --bins -p …`) so they are never stale. No other `cargo` command
//!    may appear in a tested block.
//! 2. `https://example.org/` (and `http://`) becomes the synthetic site's root
//!    `http://site.test:PORT/` (`kubecrawl_e2e::site::TestSite`, started per doc) and the host
//!    name `example.org` becomes `site.test`. Output is mapped back before it is compared,
//!    so the docs can show `https://example.org/`.
//!
//! # The environment
//! Per doc file: a working directory in which the repository's top-level entries are linked
//! (so `charts/kubecrawl` and `examples/link.yaml` resolve, and `pages.jsonl` lands there); a
//! namespace of its own, which a copy of the test kubeconfig makes current and
//! `HELM_NAMESPACE` names, with a ResourceQuota of zero Pods (no kubelet runs here, and other
//! tests' fake nodes must not get its Pods), except on the real node (below); `REDIS_URL` and `KAFKA_BROKERS` of the test
//! services; `KUBECRAWL_RESOLVE` (the site's hosts → 127.0.0.1) and
//! `KUBECRAWL_ALLOW_PRIVATE_NETWORKS=true`, which the worker reads; and every proxy variable
//! pointing at a closed local port, except for the local hosts, so that nothing can reach the
//! internet. `docs/crawljob.md` also gets an operator (the debug binary, watching only that
//! namespace), standing in for the operator Pod `helm install` would start. Afterwards the
//! CrawlJobs are deleted (while the operator runs, so it purges them), helm releases
//! uninstalled, the namespace and the working directory removed.
//!
//! # On the real node
//! `make test-node` runs the README's cluster commands (the blocks that call `kubectl` or
//! `helm`) once more, as written, in a namespace whose annotations send every Pod to the real
//! node: the chart's operator, dev Redis and Kafka and workers run there as Pods from the
//! images of `make images`, and `docs/real_node.rs` checks them Ready and crawling.
//!
//! Not tested, and saying so where they appear: `docker build` (no Docker engine here),
//! `make test` (it runs this test), commands that need a real cluster's network.

#[path = "docs/markdown.rs"]
mod markdown;
#[path = "docs/real_node.rs"]
mod real_node;
#[path = "docs/sandbox.rs"]
mod sandbox;

use std::path::Path;

use kubecrawl_api::PageRecord;
use kubecrawl_e2e::repo_path;
use regex::Regex;

use markdown::{Marker, blocks, unmatched};
use sandbox::{Needs, Ran, Sandbox};

/// The docs this project's docs engineer owns; the policy checks apply to them. Tested blocks
/// of every other `docs/*.md` run too.
const OWNED: &[&str] = &[
    "README.md",
    "docs/architecture.md",
    "docs/crawljob.md",
    "docs/spiders.md",
    "docs/operations.md",
    "docs/migrating.md",
];

/// Docs that other engineers write; links to them are allowed before they exist.
const LINKED_BEFORE_WRITTEN: &[&str] = &["docs/performance.md", "docs/scrapy-cluster.md"];

/// The printer columns `kubectl get crawljobs` shows.
const COLUMNS: &[&str] = &["NAME", "SPIDER", "PHASE", "PAGES", "STEPS", "QUEUED", "AGE"];

/// Runs every tested block of one doc; returns the commands run.
async fn run_doc(path: &str, needs: Needs) -> usize {
    let text = std::fs::read_to_string(repo_path(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    let tested: Vec<_> = blocks(&text)
        .into_iter()
        .filter(|b| b.lang == "console" && matches!(b.marker, Marker::Tested | Marker::Fails))
        // On the real node, only the cluster's commands.
        .filter(|b| !needs.real_node || b.commands.iter().any(|c| uses_cluster(&c.script)))
        .collect();
    if tested.is_empty() {
        return 0;
    }
    let name = Path::new(path)
        .file_stem()
        .map(|s| s.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let setup = std::time::Instant::now();
    let mut sandbox = Sandbox::start(&name, needs).await;
    let setup = setup.elapsed();
    let started = std::time::Instant::now();
    let mut failures = Vec::new();
    let mut ran = 0;
    for block in &tested {
        let must_fail = block.marker == Marker::Fails;
        for command in &block.commands {
            let context = format!("{path}:{}: $ {}", command.line, command.script);
            let mapped = match sandbox.mapping.command(&command.script) {
                Ok(mapped) => mapped,
                Err(why) => {
                    failures.push(format!("{context}\n{why}"));
                    continue;
                }
            };
            if let Some(tool) = sandbox.missing_tool(&mapped) {
                failures.push(format!(
                    "{context}\n`{tool}` is not installed here (the docs use it; install it, \
                     e.g. `apt-get install {tool}`)"
                ));
                continue;
            }
            let result = sandbox.run(&mapped).await;
            ran += 1;
            let problem = check(&mapped, &result, must_fail, &command.shown, &sandbox.dir);
            if let Err(problem) = problem {
                failures.push(format!(
                    "{context}\n(ran: {mapped})\n{problem}\n--- its output ---\n{}",
                    result.output
                ));
            }
        }
    }
    if needs.real_node
        && failures.is_empty()
        && let Err(problem) = real_node::check(&mut sandbox).await
    {
        failures.push(format!("on the real node: {problem}"));
    }
    let commands = started.elapsed();
    if !failures.is_empty() && needs.operator {
        failures.push(format!("--- operator log ---\n{}", sandbox.operator_log()));
    }
    let cleanup = std::time::Instant::now();
    sandbox.clean_up().await;
    eprintln!(
        "{path}: {ran} commands in {:.1} s (set-up {:.1} s, clean-up {:.1} s)",
        commands.as_secs_f64(),
        setup.as_secs_f64(),
        cleanup.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {path}'s commands broke:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    ran
}

/// Whether a command talks to the cluster.
fn uses_cluster(script: &str) -> bool {
    Regex::new(r"(^|[\s|;&(])(kubectl|helm)\s")
        .expect("a valid regex")
        .is_match(script)
}

/// Whether a command did what its doc says.
fn check(
    mapped: &str,
    ran: &Ran,
    must_fail: bool,
    shown: &[String],
    dir: &Path,
) -> Result<(), String> {
    match (ran.code, must_fail) {
        (Some(0), false) | (Some(1..), true) => {}
        (code, _) => {
            return Err(format!(
                "exit status {code:?}, the doc expects {}",
                if must_fail { "a failure" } else { "success" }
            ));
        }
    }
    if let Some(line) = unmatched(shown, &ran.output) {
        return Err(format!("the output has no line like the doc's {line:?}"));
    }
    if !must_fail {
        check_crawl_output(mapped, dir)?;
        check_crawljob_columns(mapped, &ran.output)?;
    }
    Ok(())
}

/// `… crawl … -o FILE` wrote FILE: JSON lines, each a page record.
fn check_crawl_output(mapped: &str, dir: &Path) -> Result<(), String> {
    let crawl = Regex::new(r"\b[a-z-]*worker crawl\b").expect("a valid regex");
    let output = Regex::new(r"(?:\s-o|\s--output)[\s=]+(\S+)").expect("a valid regex");
    if !crawl.is_match(mapped) {
        return Ok(());
    }
    let Some(file) = output.captures(mapped).map(|c| c[1].to_owned()) else {
        return Ok(());
    };
    if file == "-" {
        return Ok(());
    }
    let text = std::fs::read_to_string(dir.join(&file))
        .map_err(|e| format!("the crawl wrote no {file}: {e}"))?;
    let mut records = 0;
    for (i, line) in text.lines().enumerate() {
        serde_json::from_str::<PageRecord>(line)
            .map_err(|e| format!("{file} line {}: not a page record: {e}", i + 1))?;
        records += 1;
    }
    if records == 0 {
        return Err(format!("{file} holds no records"));
    }
    Ok(())
}

/// `kubectl get crawljobs` (or `crawljob`, `crawl`) in table form prints the printer columns.
fn check_crawljob_columns(mapped: &str, output: &str) -> Result<(), String> {
    let get = Regex::new(r"^kubectl get (crawljobs|crawljob|crawl)\b").expect("a valid regex");
    if !get.is_match(mapped.trim()) || mapped.contains(" -o") || mapped.contains("--output") {
        return Ok(());
    }
    let header: Vec<&str> = output
        .lines()
        .find(|l| l.starts_with("NAME"))
        .unwrap_or_default()
        .split_whitespace()
        .filter(|c| *c != "NAMESPACE")
        .collect();
    if header != COLUMNS {
        return Err(format!(
            "kubectl get crawljobs shows {header:?}, not {COLUMNS:?}"
        ));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_commands_run_as_written() {
    let ran = run_doc("README.md", Needs::default()).await;
    assert!(ran >= 4, "the README's quick start runs ({ran} commands)");
}

/// The README's cluster quick start, as written, on the real node: `helm install` with the
/// images of `make images` and the dev Redis and Kafka, `kubectl apply` of the example job,
/// `kubectl get crawljobs`; then every Pod Running and Ready there and a crawl from its Pods
/// (`docs/real_node.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real node and images: run by `make test-node`"]
async fn readme_cluster_commands_run_on_the_real_node() {
    let needs = Needs {
        real_node: true,
        ..Needs::default()
    };
    let ran = run_doc("README.md", needs).await;
    assert!(
        ran >= 3,
        "the README's cluster commands run ({ran} commands)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawljob_reference_commands_run_as_written() {
    let ran = run_doc(
        "docs/crawljob.md",
        Needs {
            operator: true,
            ..Needs::default()
        },
    )
    .await;
    assert!(
        ran > 0,
        "docs/crawljob.md shows real refusals and conditions"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spider_guide_commands_run_as_written() {
    let ran = run_doc("docs/spiders.md", Needs::default()).await;
    assert!(ran > 0, "docs/spiders.md crawls with the custom spider");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_commands_run_as_written() {
    run_doc("docs/operations.md", Needs::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_guide_commands_run_as_written() {
    run_doc("docs/migrating.md", Needs::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn architecture_commands_run_as_written() {
    run_doc("docs/architecture.md", Needs::default()).await;
}

/// Docs written by others (`docs/performance.md`, `docs/scrapy-cluster.md`, …): their tested
/// blocks run in the same environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_docs_commands_run_as_written() {
    let dir = repo_path("docs");
    let mut others: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| format!("docs/{}", e.file_name().to_string_lossy()))
                .filter(|p| p.ends_with(".md") && !OWNED.contains(&p.as_str()))
                .collect()
        })
        .unwrap_or_default();
    others.sort();
    for path in others {
        run_doc(&path, Needs::default()).await;
    }
}

#[test]
fn owned_docs_mark_every_console_block_and_link_only_to_what_exists() {
    let mut problems = Vec::new();
    let link = Regex::new(r"\]\(([^)#\s]+)(?:#[^)]*)?\)").expect("a valid regex");
    for path in OWNED {
        let text = std::fs::read_to_string(repo_path(path))
            .unwrap_or_else(|e| panic!("{path} exists: {e}"));
        for block in blocks(&text) {
            match (block.lang.as_str(), &block.marker) {
                ("console", Marker::None) => problems.push(format!(
                    "{path}:{}: a console block without <!-- tested --> or <!-- untested: why -->",
                    block.line
                )),
                ("console", _) if block.commands.is_empty() => problems.push(format!(
                    "{path}:{}: a console block without a `$ ` command",
                    block.line
                )),
                ("sh" | "bash" | "shell" | "zsh", _) => problems.push(format!(
                    "{path}:{}: commands go in console blocks (`$ ` lines), tested or marked untested",
                    block.line
                )),
                _ => {}
            }
        }
        let base = Path::new(path).parent().unwrap_or(Path::new(""));
        for caps in link.captures_iter(&prose(&text)) {
            let target = &caps[1];
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let resolved = normalize(&base.join(target));
            let exists = repo_path(&resolved).exists();
            if !exists && !LINKED_BEFORE_WRITTEN.contains(&resolved.as_str()) {
                problems.push(format!("{path}: the link {target} leads nowhere"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_readme_quick_start_is_tested() {
    let text = std::fs::read_to_string(repo_path("README.md")).expect("README.md");
    let tested: Vec<String> = blocks(&text)
        .into_iter()
        .filter(|b| b.marker == Marker::Tested)
        .flat_map(|b| b.commands)
        .map(|c| c.script)
        .collect();
    for wanted in [
        "cargo run --release -p kubecrawl-worker -- crawl https://example.org/ --spider link --maxdepth 1 -o pages.jsonl",
        "helm install kubecrawl charts/kubecrawl --set dev.enabled=true",
        "kubectl apply -f examples/link.yaml",
        "kubectl get crawljobs",
    ] {
        assert!(
            tested.iter().any(|c| c == wanted),
            "README.md runs `{wanted}` in a tested block; tested commands: {tested:#?}"
        );
    }
    let first = tested.first().map(String::as_str).unwrap_or_default();
    assert!(
        first.starts_with("cargo run --release -p kubecrawl-worker -- crawl"),
        "the README's first command is the standalone crawl, not {first:?}"
    );
}

/// The prose of a Markdown file: fenced blocks and inline code spans left out, so that
/// what looks like a link inside code (a regex, a pattern) is not taken for one.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 0 {
                out.push_str(part);
            }
        }
        out.push('\n');
    }
    out
}

/// `a/../b` → `b`, without touching the file system.
fn normalize(path: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                parts.pop();
            }
            std::path::Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    parts.join("/")
}
