//! The Helm chart: lint-clean, its CRD is the generated one, and what it renders is accepted
//! by the real API server (`kubectl apply --dry-run=server`), in its default and dev modes.

use kubecrawl_e2e::{TestNamespace, ensure_crd, kubectl, repo_path};

fn helm(args: &[&str]) -> (bool, String) {
    kubecrawl_e2e::helm(args).expect("helm runs")
}

fn chart() -> String {
    repo_path("charts/kubecrawl").display().to_string()
}

const REQUIRED: &str = "redis.url=redis://redis.example:6379,kafka.brokers=kafka.example:9092";

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
    for set in [REQUIRED, "dev.enabled=true"] {
        let (ok, out) = helm(&["lint", &chart(), "--strict", "--set", set]);
        assert!(
            ok && out.contains("0 chart(s) failed"),
            "helm lint --set {set}:\n{out}"
        );
    }
}

#[test]
fn values_are_checked_by_the_schema() {
    let (ok, out) = helm(&[
        "template",
        "kc",
        &chart(),
        "--set",
        REQUIRED,
        "--set",
        "workers.maxReplicas=-1",
    ]);
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
    ] {
        let (ok, rendered) = helm(&["template", "kc", &chart(), "-n", &ns.name, "--set", set]);
        assert!(ok, "helm template --set {set}:\n{rendered}");
        let out = kubectl(
            &["apply", "--dry-run=server", "-n", &ns.name, "-f", "-"],
            Some(&rendered),
        )
        .expect("kubectl runs");
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

/// The restricted Pod Security Standard, checked by the API server's own admission: the
/// namespace enforces it, and the chart's Pods (operator, dev Redis and Kafka) are accepted.
#[test]
fn pods_pass_the_restricted_pod_security_standard() {
    let ns = TestNamespace::create("e2e-pss").expect("namespace");
    // Workload resources (Deployments) are checked by the warn mode, Pods by enforce.
    let label = kubectl(
        &[
            "label",
            "namespace",
            &ns.name,
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/warn=restricted",
        ],
        None,
    )
    .expect("kubectl runs");
    assert!(label.status.success());
    // The check can fail: a Deployment with no security settings is reported.
    let bad = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: bad}\nspec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec:\n      containers: [{name: c, image: x}]\n";
    let out = kubectl(
        &["apply", "--dry-run=server", "-n", &ns.name, "-f", "-"],
        Some(bad),
    )
    .expect("kubectl runs");
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
    let out = kubectl(
        &["apply", "--dry-run=server", "-n", &ns.name, "-f", "-"],
        Some(&rendered),
    )
    .expect("kubectl runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("violate"),
        "restricted PSS refused the chart:\n{stderr}"
    );
}
