//! Where the docs' commands run: a working directory, a namespace, a synthetic site and the
//! environment of the local test services, and the two rewrites the docs test allows.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kubecrawl_e2e::site::{SiteConfig, TestSite};
use kubecrawl_e2e::{TestEnv, TestNamespace, ensure_crd, kubectl, kubectl_ok, repo_path};
use regex::Regex;

/// The public example site the docs show.
const EXAMPLE_HOST: &str = "example.org";
/// How long one command may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);
/// Hosts a command may name in a URL: the synthetic site's and the loopback.
const LOCAL_HOSTS: &[&str] = &[
    "site.test",
    "other.test",
    "far.test",
    "127.0.0.1",
    "localhost",
];
/// Programs the docs' commands use besides the workspace's own; a missing one is named
/// rather than left to a "command not found". (`make env-up` installs kcat, builds kubectl
/// and helm; jq comes from the machine.)
const TOOLS: &[&str] = &["kubectl", "helm", "jq", "kcat"];
/// Binaries the docs run, by the package that builds them.
const BINARIES: &[(&str, &str)] = &[
    ("kubecrawl-worker", "kubecrawl-worker"),
    ("kubecrawl-example-spider", "titles-worker"),
    ("kubecrawl-operator", "kubecrawl-operator"),
];

/// The workspace's debug binaries (`target/debug`, beside this test's own `deps/`).
pub(crate) fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("a test knows its own path");
    exe.parent()
        .and_then(Path::parent)
        .expect("a test binary lives in <target>/debug/deps")
        .to_path_buf()
}

/// Builds the binaries the docs run, once per test process, so that a command never runs a
/// stale binary (`cargo test -p kubecrawl-e2e` alone builds none of them). A no-op when they
/// are up to date.
pub(crate) fn build_binaries() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let target = bin_dir()
            .parent()
            .expect("debug/ has a parent")
            .to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut cmd = std::process::Command::new(cargo);
        cmd.args(["build", "--locked", "--bins", "--target-dir"])
            .arg(&target)
            .current_dir(repo_path(""));
        for (package, _) in BINARIES {
            cmd.args(["-p", package]);
        }
        let started = Instant::now();
        let out = cmd.output().expect("cargo runs");
        eprintln!(
            "the docs' binaries are up to date ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
        assert!(
            out.status.success(),
            "building the docs' binaries failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (_, bin) in BINARIES {
            assert!(bin_dir().join(bin).exists(), "{bin} was not built");
        }
    });
}

/// The rewrites of a command and of its output, and nothing else.
#[derive(Debug, Clone)]
pub(crate) struct Mapping {
    /// `http://site.test:PORT/`
    root: String,
    /// `site.test:PORT`
    authority: String,
}

impl Mapping {
    fn new(site: &TestSite) -> Self {
        Self {
            root: site.root(),
            authority: format!("site.test:{}", site.port()),
        }
    }

    /// The command to run for `script` as the doc writes it:
    /// - `cargo run [--release] -p PACKAGE [--bin BIN] --` becomes the debug binary of that
    ///   package (on `PATH`), so a tested command never compiles a release build;
    /// - `https://example.org/` (or `http://`) becomes the synthetic site's root and the host
    ///   name `example.org` becomes `site.test`.
    ///
    /// # Errors
    /// Any other `cargo` command, or a URL of a host that is not local after the rewrite: a
    /// tested command never builds and never reaches the internet.
    pub(crate) fn command(&self, script: &str) -> Result<String, String> {
        let cargo_run = Regex::new(
            r"(^|[\s;&|(])cargo run (?:--release )?-p ([a-z0-9-]+)(?: --bin ([a-z0-9-]+))? --(\s|$)",
        )
        .expect("a valid regex");
        let mut out = String::new();
        let mut last = 0;
        for caps in cargo_run.captures_iter(script) {
            let whole = caps.get(0).expect("group 0");
            let package = &caps[2];
            let bin = match caps.get(3) {
                Some(bin) => bin.as_str(),
                None => BINARIES
                    .iter()
                    .find(|(p, _)| *p == package)
                    .map(|(_, b)| *b)
                    .ok_or_else(|| format!("no binary known for package {package}"))?,
            };
            out.push_str(&script[last..whole.start()]);
            out.push_str(&caps[1]);
            out.push_str(bin);
            out.push_str(&caps[4]);
            last = whole.end();
        }
        out.push_str(&script[last..]);
        if Regex::new(r"(^|[\s;&|(])cargo\s")
            .expect("a valid regex")
            .is_match(&out)
        {
            return Err(
                "only `cargo run [--release] -p PACKAGE [--bin BIN] --` is mapped; a tested \
                 command must not build"
                    .to_owned(),
            );
        }

        let example_root = Regex::new(r"https?://example\.org/").expect("a valid regex");
        let out = example_root
            .replace_all(&out, self.root.as_str())
            .into_owned();
        let out = replace_host(&out, EXAMPLE_HOST, "site.test");

        let url = Regex::new(r#"https?://([^/\s:'"]+)"#).expect("a valid regex");
        for caps in url.captures_iter(&out) {
            let host = caps[1].to_ascii_lowercase();
            if !LOCAL_HOSTS.contains(&host.as_str()) {
                return Err(format!(
                    "the command names {}, which is not local: tested commands never reach \
                     the internet (use https://example.org/, which the test points at its site)",
                    &caps[0]
                ));
            }
        }
        Ok(out)
    }

    /// Real output as the doc shows it: the site's root back to `https://example.org/`, its
    /// host back to `example.org`, terminal colours dropped.
    pub(crate) fn output(&self, raw: &str) -> String {
        let ansi = Regex::new(r"\x1b\[[0-9;]*[A-Za-z]").expect("a valid regex");
        let text = ansi.replace_all(raw, "");
        let text = text.replace(&self.root, "https://example.org/");
        let text = text.replace(&self.authority, EXAMPLE_HOST);
        replace_host(&text, "site.test", EXAMPLE_HOST)
    }
}

/// Replaces the host name `from` by `to` where it stands alone (not inside a longer name).
fn replace_host(text: &str, from: &str, to: &str) -> String {
    let name_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(from) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + from.len()..].chars().next();
        let alone = !before.is_some_and(name_char)
            && !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        out.push_str(&rest[..at]);
        out.push_str(if alone { to } else { from });
        rest = &rest[at + from.len()..];
    }
    out.push_str(rest);
    out
}

/// What one command did.
#[derive(Debug)]
pub(crate) struct Ran {
    /// Its exit code (`None`: killed, e.g. by the timeout).
    pub(crate) code: Option<i32>,
    /// Its stdout and stderr, interleaved as printed, mapped back ([`Mapping::output`]).
    pub(crate) output: String,
}

/// What a doc's commands need besides the basics.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Needs {
    /// An operator watching the sandbox's namespace (what `helm install` would run, were
    /// there a kubelet to run its Pod).
    pub(crate) operator: bool,
    /// The real node of `make node-up`: the namespace's Pods land there (its annotations add
    /// the node's toleration and selector), instead of no Pod being allowed; the site listens
    /// on the node's bridge, where the Pods reach it.
    pub(crate) real_node: bool,
}

/// One doc's sandbox.
pub(crate) struct Sandbox {
    /// The namespace every kubectl and helm command uses.
    pub(crate) ns: TestNamespace,
    /// The working directory (the repository's top level, linked in).
    pub(crate) dir: PathBuf,
    /// The site `https://example.org/` is pointed at; it serves until the sandbox drops.
    pub(crate) site: TestSite,
    /// The rewrites for this site.
    pub(crate) mapping: Mapping,
    env: Vec<(String, String)>,
    operator: Option<tokio::process::Child>,
    releases: Vec<String>,
    real_node: bool,
    /// Redis key prefixes the commands (and the operator) wrote under.
    redis_prefixes: Vec<String>,
    _helm: Option<HelmLock>,
}

impl Sandbox {
    /// Sets up a namespace (in which no Pod can be created, or whose Pods go to the real
    /// node), a working directory, the site and, if `needs` says so, an operator.
    pub(crate) async fn start(name: &str, needs: Needs) -> Self {
        build_binaries();
        ensure_crd().expect("the CRD applies");
        let env = TestEnv::get();
        let ns = TestNamespace::create(&format!("docs-{name}")).expect("a namespace");
        // The script area (pages that need JavaScript) for the rendering examples.
        let mut site_config = SiteConfig::default().with_scripts(true);
        if needs.real_node {
            send_pods_to_the_node(&ns.name);
            site_config.address = node_var("KUBECRAWL_NODE_GATEWAY")
                .parse()
                .expect("KUBECRAWL_NODE_GATEWAY is an IPv4 address");
        } else {
            // No kubelet runs here, and other tests' fake nodes must not get this namespace's
            // Pods (helm's operator, dev Redis and Kafka, worker fleets): none may be created.
            kubectl_ok(
                &[
                    "create",
                    "quota",
                    "no-pods",
                    "--hard=pods=0",
                    "-n",
                    &ns.name,
                ],
                None,
            )
            .expect("a quota");
        }
        let dir = std::env::temp_dir().join(format!("kubecrawl-{}", ns.name));
        std::fs::create_dir_all(&dir).expect("a working directory");
        link_repository(&dir);
        let kubeconfig = dir.join(".kubeconfig");
        std::fs::copy(&env.kubeconfig, &kubeconfig).expect("the kubeconfig copies");
        let kubeconfig_arg = format!("--kubeconfig={}", kubeconfig.display());
        kubectl_ok(
            &[
                "config",
                "set-context",
                "--current",
                &format!("--namespace={}", ns.name),
                &kubeconfig_arg,
            ],
            None,
        )
        .expect("the context takes the namespace");

        let site = TestSite::start(site_config).await.expect("the site starts");
        let mapping = Mapping::new(&site);
        let resolve: Vec<String> = site
            .hosts()
            .iter()
            .map(|(h, a)| format!("{h}={}", a.ip()))
            .collect();
        let path = format!(
            "{}:{}",
            bin_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        // Anything not local goes to a proxy that refuses, so no command reaches the
        // internet even if a doc slips a public URL past the rewrite.
        let dead_proxy = "http://127.0.0.1:9".to_owned();
        let no_proxy = LOCAL_HOSTS.join(",");
        let mut vars = vec![
            ("PATH".to_owned(), path),
            ("KUBECONFIG".to_owned(), kubeconfig.display().to_string()),
            ("HELM_NAMESPACE".to_owned(), ns.name.clone()),
            ("REDIS_URL".to_owned(), env.redis_url.clone()),
            ("KAFKA_BROKERS".to_owned(), env.kafka_brokers.clone()),
            ("KUBECRAWL_RESOLVE".to_owned(), resolve.join(",")),
            (
                "KUBECRAWL_ALLOW_PRIVATE_NETWORKS".to_owned(),
                "true".to_owned(),
            ),
        ];
        for proxy in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
            vars.push((proxy.to_owned(), dead_proxy.clone()));
            vars.push((proxy.to_ascii_lowercase(), dead_proxy.clone()));
        }
        vars.push(("NO_PROXY".to_owned(), no_proxy.clone()));
        vars.push(("no_proxy".to_owned(), no_proxy));

        let mut sandbox = Self {
            ns,
            dir,
            site,
            mapping,
            env: vars,
            operator: None,
            releases: Vec::new(),
            real_node: needs.real_node,
            redis_prefixes: Vec::new(),
            _helm: None,
        };
        if needs.operator {
            sandbox.start_operator(&env);
        }
        sandbox
    }

    /// Runs the operator binary against the test services, watching only this namespace and
    /// keeping its fleets and its Redis and Kafka prefixes here too.
    fn start_operator(&mut self, env: &TestEnv) {
        let ns = &self.ns.name;
        let fleets = self.dir.join(".fleets.yaml");
        std::fs::write(
            &fleets,
            format!("namespace: {ns}\ndefaults: {{maxReplicas: 2}}\nfleets: {{link: {{}}, wandering: {{}}}}\n"),
        )
        .expect("the fleet configuration writes");
        let log = std::fs::File::create(self.dir.join(".operator.log")).expect("a log file");
        let prefix = format!("kc-{ns}");
        self.redis_prefixes.push(prefix.clone());
        let child = tokio::process::Command::new(bin_dir().join("kubecrawl-operator"))
            .env("KUBECONFIG", &env.kubeconfig)
            .env("KUBECRAWL_REDIS_URL", &env.redis_url)
            .env("KUBECRAWL_REDIS_PREFIX", &prefix)
            .env("KUBECRAWL_KAFKA_BROKERS", &env.kafka_brokers)
            .env("KUBECRAWL_TOPIC_PREFIX", &prefix)
            .env("KUBECRAWL_FLEET_CONFIG", &fleets)
            .env("KUBECRAWL_WATCH_NAMESPACE", ns)
            .env("KUBECRAWL_LEADER_ELECTION", "false")
            .env("KUBECRAWL_LEADER_NAMESPACE", ns)
            .env("KUBECRAWL_METRICS_ADDR", "127.0.0.1:0")
            .env("KUBECRAWL_STATUS_INTERVAL", "1s")
            .env("KUBECRAWL_LOG_FORMAT", "plain")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a log handle"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("the operator starts");
        self.operator = Some(child);
    }

    /// The first program of [`TOOLS`] that `script` runs and the sandbox's `PATH` lacks.
    pub(crate) fn missing_tool(&self, script: &str) -> Option<&'static str> {
        let path = self
            .env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_str())
            .unwrap_or_default();
        TOOLS.iter().copied().find(|tool| {
            let used = Regex::new(&format!(r"(^|[\s|;&(]){tool}(\s|$)"))
                .expect("a valid regex")
                .is_match(script);
            used && !path
                .split(':')
                .any(|dir| Path::new(dir).join(tool).is_file())
        })
    }

    /// Runs `script` (already mapped) with bash in the working directory.
    pub(crate) async fn run(&mut self, script: &str) -> Ran {
        if let Some(release) = Regex::new(r"\bhelm install ([a-z0-9-]+)")
            .expect("a valid regex")
            .captures(script)
            .map(|c| c[1].to_owned())
        {
            // Release names are cluster-wide where the chart makes cluster-scoped objects.
            if self._helm.is_none() {
                self._helm = Some(HelmLock::acquire().await);
            }
            remove_stale_release_objects(&release);
            self.releases.push(release);
        }
        let prefixes = Regex::new(r"--redis-prefix[ =]+([A-Za-z0-9._-]+)").expect("a valid regex");
        for caps in prefixes.captures_iter(script) {
            if !self.redis_prefixes.contains(&caps[1].to_owned()) {
                self.redis_prefixes.push(caps[1].to_owned());
            }
        }
        let mut cmd = tokio::process::Command::new("bash");
        cmd.arg("-c")
            .arg(format!("exec 2>&1\n{script}\n"))
            .current_dir(&self.dir)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd.spawn().expect("bash starts");
        let pid = child.id();
        let started = Instant::now();
        match tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output()).await {
            Ok(out) => {
                let out = out.expect("bash's output is read");
                Ran {
                    code: out.status.code(),
                    output: self.mapping.output(&String::from_utf8_lossy(&out.stdout)),
                }
            }
            Err(_) => {
                if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                Ran {
                    code: None,
                    output: format!("(killed after {:?})", started.elapsed()),
                }
            }
        }
    }

    /// The operator's log so far (empty without an operator).
    pub(crate) fn operator_log(&self) -> String {
        std::fs::read_to_string(self.dir.join(".operator.log")).unwrap_or_default()
    }

    /// Removes what the commands made: CrawlJobs (while the operator still runs to purge
    /// them and drop its finalizer), the operator, helm releases, the working directory; the
    /// namespace goes when the sandbox drops.
    pub(crate) async fn clean_up(mut self) {
        let kubeconfig = format!("--kubeconfig={}", self.dir.join(".kubeconfig").display());
        // An operator (the sandbox's, or the Pod of a release on the real node) purges them.
        let wait = if self.operator.is_some() || self.real_node {
            "--timeout=60s"
        } else {
            "--wait=false"
        };
        let _ = kubectl(&["delete", "crawljobs", "--all", wait, &kubeconfig], None);
        if let Some(mut operator) = self.operator.take() {
            if let Some(pid) = operator.id().and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            if tokio::time::timeout(Duration::from_secs(10), operator.wait())
                .await
                .is_err()
            {
                let _ = operator.kill().await;
            }
        }
        for release in std::mem::take(&mut self.releases) {
            let out = std::process::Command::new("helm")
                .args(["uninstall", &release, "--namespace", &self.ns.name])
                .env("KUBECONFIG", TestEnv::get().kubeconfig)
                .output();
            if let Ok(out) = out
                && !out.status.success()
            {
                eprintln!(
                    "helm uninstall {release}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        for prefix in std::mem::take(&mut self.redis_prefixes) {
            if let Err(e) = delete_redis_prefix(&prefix).await {
                eprintln!("deleting the redis keys {prefix}:* failed: {e}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A variable of `make node-up`'s env file, which `make test-node` sources.
pub(crate) fn node_var(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run this test with `make test-node`"))
}

/// Annotates `ns` so that the API server's admission (PodNodeSelector,
/// PodTolerationRestriction) puts every Pod made in it on the real node, whatever the
/// commands say: the node's selector and a toleration of its taint.
fn send_pods_to_the_node(ns: &str) {
    let toleration = format!(
        r#"scheduler.alpha.kubernetes.io/defaultTolerations=[{{"key":"{}","operator":"Exists","effect":"NoSchedule"}}]"#,
        node_var("KUBECRAWL_NODE_TAINT")
    );
    kubectl_ok(
        &[
            "annotate",
            "namespace",
            ns,
            "scheduler.alpha.kubernetes.io/node-selector=kubecrawl.io/test-node=true",
            &toleration,
        ],
        None,
    )
    .expect("the namespace takes the node's annotations");
}

/// Deletes every key under `prefix:` in the test Redis (what a doc's crawl or the operator
/// left: job counters, statistics buckets, sequence numbers).
async fn delete_redis_prefix(prefix: &str) -> redis::RedisResult<()> {
    let client = redis::Client::open(TestEnv::get().redis_url.as_str())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut keys: Vec<String> = Vec::new();
    {
        let mut scan =
            redis::AsyncCommands::scan_match::<_, String>(&mut conn, format!("{prefix}:*")).await?;
        while let Some(key) = futures::StreamExt::next(&mut scan).await {
            keys.push(key?);
        }
    }
    for chunk in keys.chunks(500) {
        redis::cmd("DEL")
            .arg(chunk)
            .query_async::<()>(&mut conn)
            .await?;
    }
    Ok(())
}

/// Links every top-level entry of the repository into `dir`, so that commands see
/// `charts/`, `examples/`, … as from a clone, and what they write stays in `dir`.
fn link_repository(dir: &Path) {
    let root = repo_path("");
    let root = root.canonicalize().expect("the repository exists");
    for entry in std::fs::read_dir(&root).expect("the repository lists") {
        let entry = entry.expect("an entry");
        let name = entry.file_name();
        let text = name.to_string_lossy();
        if text.starts_with('.') || text == "target" {
            continue;
        }
        let link = dir.join(&name);
        if !link.exists() {
            std::os::unix::fs::symlink(entry.path(), link).expect("a symlink");
        }
    }
}

/// Deletes the cluster-scoped objects a release of this name left behind in a docs
/// namespace (a test run killed before its clean-up), which would make `helm install` refuse
/// to adopt them. Only objects a docs sandbox made are touched, and only while the helm lock
/// is held, so none of them can belong to a running test.
fn remove_stale_release_objects(release: &str) {
    for kind in ["clusterrole", "clusterrolebinding"] {
        let Ok(out) = kubectl_ok(
            &[
                "get",
                kind,
                "-o",
                "jsonpath={range .items[*]}{.metadata.name} {.metadata.annotations.meta\\.helm\\.sh/release-name} {.metadata.annotations.meta\\.helm\\.sh/release-namespace}{\"\\n\"}{end}",
            ],
            None,
        ) else {
            continue;
        };
        for line in out.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if let [name, owner, namespace] = fields[..]
                && owner == release
                && namespace.starts_with("docs-")
            {
                let _ = kubectl(&["delete", kind, name], None);
            }
        }
    }
}

/// One docs sandbox at a time may hold helm releases, across test processes: a directory
/// that exists while held, with the holder's pid inside (a dead holder's lock is taken over).
struct HelmLock {
    path: PathBuf,
}

impl HelmLock {
    async fn acquire() -> Self {
        let path = std::env::temp_dir().join("kubecrawl-docs-helm.lock");
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            if std::fs::create_dir(&path).is_ok() {
                std::fs::write(path.join("pid"), std::process::id().to_string())
                    .expect("the lock records its holder");
                return Self { path };
            }
            let holder = std::fs::read_to_string(path.join("pid")).unwrap_or_default();
            let alive = holder
                .trim()
                .parse::<u32>()
                .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
            if !alive && !holder.is_empty() {
                let _ = std::fs::remove_dir_all(&path);
                continue;
            }
            assert!(
                Instant::now() < deadline,
                "{} stayed held by pid {holder}",
                path.display()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for HelmLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
