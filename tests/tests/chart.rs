//! The Helm chart: lint-clean, its CRD is the generated one, and what it renders is accepted
//! by the real API server (`kubectl apply --dry-run=server`), in its default and dev modes.

use kubecrawl_e2e::{TestNamespace, ensure_crd, repo_path};

fn helm(args: &[&str]) -> (bool, String) {
    kubecrawl_e2e::helm(args).expect("helm runs")
}

fn chart() -> String {
    repo_path("charts/kubecrawl").display().to_string()
}

/// `helm template` of the chart with the required values and `set`.
fn template_with(set: &str) -> (bool, String) {
    helm(&["template", "kc", &chart(), "--set", REQUIRED, "--set", set])
}

const REQUIRED: &str = "redis.url=redis://redis.example:6379,kafka.brokers=kafka.example:9092";
/// Redis over TLS with an ACL user, Kafka over SASL_SSL, every secret from a Secret, the ingest on.
const TLS: &str = "redis.url=rediss://redis.example:6380,redis.username=crawler,\
redis.passwordSecret.name=redis-auth,redis.tls.caSecret.name=services-ca,\
redis.tls.clientSecret=redis-client,kafka.brokers=kafka.example:9093,\
kafka.securityProtocol=sasl_ssl,kafka.sasl.username=crawler,\
kafka.sasl.passwordSecret.name=kafka-auth,kafka.tls.caSecret.name=services-ca,ingest.enabled=true";

#[test]
fn the_chart_crd_is_the_generated_crd() {
    let generated =
        std::fs::read_to_string(repo_path("crds/crawljobs.kubecrawl.io.yaml")).expect("crds/");
    let in_chart = std::fs::read_to_string(repo_path(
        "charts/kubecrawl/crds/crawljobs.kubecrawl.io.yaml",
    ))
    .expect("chart crds/");
    assert!(
        generated == in_chart,
        "charts/kubecrawl/crds/ differs from crds/: copy crds/crawljobs.kubecrawl.io.yaml into the chart"
    );
}

#[test]
fn helm_lint_is_clean() {
    for set in [REQUIRED, "dev.enabled=true", TLS] {
        let (ok, out) = helm(&["lint", &chart(), "--strict", "--set", set]);
        assert!(
            ok && out.contains("0 chart(s) failed"),
            "helm lint --set {set}:\n{out}"
        );
    }
}

#[test]
fn values_are_checked_by_the_schema() {
    let (ok, out) = template_with("workers.maxReplicas=-1");
    assert!(
        !ok && out.contains("maxReplicas"),
        "a negative replica ceiling is refused:\n{out}"
    );
    let (ok, out) = helm(&["template", "kc", &chart()]);
    assert!(
        !ok && out.contains("set redis.url"),
        "missing connections are named:\n{out}"
    );
}

#[test]
fn rendered_manifests_are_accepted_by_the_api_server() {
    ensure_crd().expect("CRD applies");
    let ns = TestNamespace::create("e2e-chart").expect("namespace");
    for set in [
        REQUIRED,
        "dev.enabled=true,metrics.serviceMonitor.enabled=false",
        TLS,
    ] {
        let (ok, rendered) = helm(&["template", "kc", &chart(), "-n", &ns.name, "--set", set]);
        assert!(ok, "helm template --set {set}:\n{rendered}");
        let out = ns.dry_run_apply(&rendered).expect("kubectl runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "the API server refused the chart (--set {set}):\n{stderr}"
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        for kind in [
            "deployment.apps/kc-kubecrawl-operator",
            "serviceaccount/kc-kubecrawl-operator",
            "configmap/kc-kubecrawl-fleets",
        ] {
            assert!(stdout.contains(kind), "{kind} missing from:\n{stdout}");
        }
    }
}

/// TLS and authentication: every secret is a file mounted from an existing Secret, in the
/// operator, the ingest and (through the fleet configuration) the workers; none can be given
/// as a plain value.
#[test]
fn secrets_come_from_secrets_as_mounted_files() {
    let (ok, rendered) = helm(&["template", "kc", &chart(), "--set", TLS]);
    assert!(ok, "{rendered}");
    let docs: Vec<serde_yaml::Value> = rendered
        .split("\n---")
        .filter_map(|d| serde_yaml::from_str(d).ok())
        .filter(|d: &serde_yaml::Value| !d.is_null())
        .collect();
    let kind = |k: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == k && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{k} {name} is rendered"))
            .clone()
    };
    let names = |list: &serde_yaml::Value, field: &str| -> Vec<String> {
        list.as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|v| v[field].as_str().map(str::to_owned))
            .collect()
    };
    for (deployment, wants) in [
        (
            "kc-kubecrawl-operator",
            vec!["redis-password", "redis-ca", "redis-client"],
        ),
        (
            "kc-kubecrawl-ingest",
            vec![
                "redis-password",
                "redis-ca",
                "redis-client",
                "kafka-password",
                "kafka-ca",
            ],
        ),
    ] {
        let pod = &kind("Deployment", deployment)["spec"]["template"]["spec"];
        let volumes = names(&pod["volumes"], "name");
        let mounts = names(&pod["containers"][0]["volumeMounts"], "name");
        for want in wants {
            assert!(
                volumes.iter().any(|v| v == want),
                "{deployment}: volume {want} in {volumes:?}"
            );
            assert!(
                mounts.iter().any(|m| m == want),
                "{deployment}: mount {want} in {mounts:?}"
            );
        }
        let env = names(&pod["containers"][0]["env"], "name");
        assert!(
            env.iter().any(|e| e == "KUBECRAWL_REDIS_PASSWORD_FILE"),
            "{env:?}"
        );
        assert!(
            !env.iter().any(|e| e.ends_with("_PASSWORD")),
            "no password in env: {env:?}"
        );
    }
    let fleets = kind("ConfigMap", "kc-kubecrawl-fleets");
    let fleets: serde_yaml::Value =
        serde_yaml::from_str(fleets["data"]["fleets.yaml"].as_str().expect("fleets.yaml"))
            .expect("fleets.yaml is YAML");
    let defaults = &fleets["defaults"];
    let secrets = names(&defaults["volumes"], "name");
    assert_eq!(
        secrets,
        [
            "redis-password",
            "redis-ca",
            "redis-client",
            "kafka-password",
            "kafka-ca"
        ],
        "the workers get every secret as a volume"
    );
    assert_eq!(
        names(&defaults["volumeMounts"], "name").len(),
        secrets.len()
    );
    let env = names(&defaults["env"], "name");
    for want in [
        "KUBECRAWL_KAFKA_PASSWORD_FILE",
        "KUBECRAWL_KAFKA_CA_FILE",
        "KUBECRAWL_REDIS_CERT_FILE",
    ] {
        assert!(
            env.iter().any(|e| e == want),
            "workers' env has {want}: {env:?}"
        );
    }
    for plain in ["redis.password=x", "kafka.sasl.password=x"] {
        let (ok, out) = template_with(plain);
        assert!(!ok, "a plain password value ({plain}) is refused:\n{out}");
    }
}

/// The workers' environment in the fleet configuration names only variables a worker reads
/// (`kubecrawl_api::contract::env`, which the worker's own tests check against its flags): a
/// name the chart misspells would be silently ignored by every worker.
#[test]
fn the_workers_env_names_are_the_workers_contract() {
    use kubecrawl_api::contract::env;
    let every_option = format!(
        "{TLS},kafka.tls.clientSecret=kafka-client,workers.allowPrivateNetworks=true,\
kafka.properties.linger\\.ms=5,workers.warc.enabled=true"
    );
    let (ok, rendered) = helm(&["template", "kc", &chart(), "--set", &every_option]);
    assert!(ok, "{rendered}");
    let fleets = rendered
        .split("\n---")
        .filter_map(|d| serde_yaml::from_str::<serde_yaml::Value>(d).ok())
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "kc-kubecrawl-fleets")
        .expect("the fleets ConfigMap is rendered");
    let fleets: serde_yaml::Value =
        serde_yaml::from_str(fleets["data"]["fleets.yaml"].as_str().expect("fleets.yaml"))
            .expect("fleets.yaml is YAML");
    let names: Vec<&str> = fleets["defaults"]["env"]
        .as_sequence()
        .expect("the workers' env")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    for must in [
        env::CONCURRENCY,
        env::ALLOW_PRIVATE_NETWORKS,
        env::KAFKA_PROPERTIES,
        env::KAFKA_CERT_FILE,
        env::REDIS_PASSWORD_FILE,
        env::WARC_DIR,
        env::WARC_MAX_BYTES,
    ] {
        assert!(names.contains(&must), "{must} rendered: {names:?}");
    }
    for name in &names {
        assert!(
            env::WORKER.contains(name),
            "the chart sets {name} for the workers, which no worker reads"
        );
    }
}

/// The fleet defaults of `helm template` with `set`, from the fleets ConfigMap.
fn fleet_defaults(set: &str) -> serde_yaml::Value {
    let (ok, rendered) = template_with(set);
    assert!(ok, "helm template --set {set}:\n{rendered}");
    let fleets = rendered
        .split("\n---")
        .filter_map(|d| serde_yaml::from_str::<serde_yaml::Value>(d).ok())
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "kc-kubecrawl-fleets")
        .expect("the fleets ConfigMap is rendered");
    let fleets: serde_yaml::Value =
        serde_yaml::from_str(fleets["data"]["fleets.yaml"].as_str().expect("fleets.yaml"))
            .expect("fleets.yaml is YAML");
    fleets["defaults"].clone()
}

/// `workers.warc` sets the workers' WARC variables and mounts a volume at its `dir`: an
/// existing claim, or an emptyDir; off by default.
#[test]
fn warc_output_sets_the_workers_env_and_mounts_its_volume() {
    let named = |list: &serde_yaml::Value, name: &str| -> Option<serde_yaml::Value> {
        list.as_sequence()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == name)
            .cloned()
    };
    let off = fleet_defaults("workers.concurrency=64");
    assert!(named(&off["env"], "KUBECRAWL_WARC_DIR").is_none());
    assert!(named(&off["volumes"], "warc").is_none());

    let on = fleet_defaults(
        "workers.warc.enabled=true,workers.warc.dir=/warc,workers.warc.prefix=crawl,\
workers.warc.maxBytes=5000000000,workers.warc.maxAge=15m,workers.warc.gzipLevel=1,\
workers.warc.volume.claimName=archive",
    );
    for (name, value) in [
        ("KUBECRAWL_WARC_DIR", "/warc"),
        ("KUBECRAWL_WARC_PREFIX", "crawl"),
        ("KUBECRAWL_WARC_MAX_BYTES", "5000000000"),
        ("KUBECRAWL_WARC_MAX_AGE", "15m"),
        ("KUBECRAWL_WARC_GZIP_LEVEL", "1"),
    ] {
        let env = named(&on["env"], name).unwrap_or_else(|| panic!("{name} is set"));
        assert_eq!(env["value"].as_str(), Some(value), "{name}");
    }
    let volume = named(&on["volumes"], "warc").expect("the warc volume");
    assert_eq!(volume["persistentVolumeClaim"]["claimName"], "archive");
    let mount = named(&on["volumeMounts"], "warc").expect("the warc mount");
    assert_eq!(mount["mountPath"], "/warc");
    assert!(mount["readOnly"].is_null(), "the workers write there");

    let scratch = fleet_defaults("workers.warc.enabled=true,workers.warc.volume.sizeLimit=20Gi");
    let volume = named(&scratch["volumes"], "warc").expect("the warc volume");
    assert_eq!(volume["emptyDir"]["sizeLimit"], "20Gi");
    assert_eq!(
        named(&scratch["volumeMounts"], "warc").expect("the warc mount")["mountPath"],
        "/var/lib/kubecrawl/warc"
    );
    let plain = fleet_defaults("workers.warc.enabled=true");
    let volume = named(&plain["volumes"], "warc").expect("the warc volume");
    assert!(volume["emptyDir"].is_mapping(), "{volume:?}");

    for bad in [
        "workers.warc.maxAge=soon",
        "workers.warc.gzipLevel=12",
        "workers.warc.dir=relative",
        "workers.warc.volume.bogus=x",
    ] {
        let (ok, out) = template_with(bad);
        assert!(!ok, "{bad} is refused by the schema:\n{out}");
    }
}

/// The restricted Pod Security Standard, checked by the API server's own admission: the
/// namespace enforces it, and the chart's Pods (operator, dev Redis and Kafka) are accepted.
#[test]
fn pods_pass_the_restricted_pod_security_standard() {
    let ns = TestNamespace::create("e2e-pss").expect("namespace");
    // Workload resources (Deployments) are checked by the warn mode, Pods by enforce.
    ns.enforce_restricted_pod_security()
        .expect("the namespace is labelled");
    // The check can fail: a Deployment with no security settings is reported.
    let bad = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: bad}\nspec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec:\n      containers: [{name: c, image: x}]\n";
    let out = ns.dry_run_apply(bad).expect("kubectl runs");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("violate"),
        "the namespace does check"
    );
    let (ok, rendered) = helm(&[
        "template",
        "kc",
        &chart(),
        "-n",
        &ns.name,
        "--set",
        "dev.enabled=true",
    ]);
    assert!(ok, "{rendered}");
    let out = ns.dry_run_apply(&rendered).expect("kubectl runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("violate"),
        "restricted PSS refused the chart:\n{stderr}"
    );
}
