//! What a container's spec becomes on this machine: a program, its arguments, its
//! environment and its working directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, Pod, Secret};
use kube::api::Api;

use super::Context;

/// A process to start for a container.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ProcessSpec {
    pub(super) program: PathBuf,
    pub(super) args: Vec<String>,
    pub(super) env: BTreeMap<String, String>,
    pub(super) working_dir: Option<PathBuf>,
}

/// Why a container cannot start (yet), as a kubelet would put it in a `waiting` state.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct NotStartable {
    pub(super) reason: &'static str,
    pub(super) message: String,
}

impl NotStartable {
    fn config(message: String) -> Self {
        Self {
            reason: "CreateContainerConfigError",
            message,
        }
    }
}

/// Resolves `container` of `pod` into the process to start, reading the Secrets and
/// ConfigMaps it refers to from the API server.
pub(super) async fn resolve(
    ctx: &Context,
    pod: &Pod,
    container: &Container,
) -> Result<ProcessSpec, NotStartable> {
    let commands = &ctx.config.commands;
    let (program, raw_args) = commands.lookup(container).ok_or_else(|| NotStartable {
        reason: "CreateContainerError",
        message: format!(
            "no local program for command {:?} of image {:?}: the fake kubelet's CommandMap has {:?}",
            container.command.as_deref().unwrap_or_default().first(),
            container.image.as_deref().unwrap_or_default(),
            commands.keys(),
        ),
    })?;
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");

    let mut env = BTreeMap::new();
    for name in &ctx.config.pass_env {
        if let Ok(value) = std::env::var(name) {
            env.insert(name.clone(), value);
        }
    }
    if let Some(name) = &pod.metadata.name {
        env.insert("HOSTNAME".to_owned(), name.clone());
    }
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.as_deref().unwrap_or_default();
        let (data, what, optional) = if let Some(cm) = &source.config_map_ref {
            let data = config_map(ctx, namespace, &cm.name).await?;
            (data, format!("configmap {:?}", cm.name), cm.optional)
        } else if let Some(secret) = &source.secret_ref {
            let data = secret_data(ctx, namespace, &secret.name).await?;
            (data, format!("secret {:?}", secret.name), secret.optional)
        } else {
            continue;
        };
        match data {
            Some(data) => {
                for (key, value) in data {
                    env.insert(format!("{prefix}{key}"), value);
                }
            }
            None if optional == Some(true) => {}
            None => return Err(NotStartable::config(format!("{what} not found"))),
        }
    }
    for var in container.env.iter().flatten() {
        if let Some(value) = env_value(ctx, pod, namespace, var, &env).await? {
            env.insert(var.name.clone(), value);
        }
    }
    for (name, value) in &ctx.config.extra_env {
        let value = expand(value, &env);
        env.insert(name.clone(), value);
    }

    let args = raw_args.iter().map(|arg| expand(arg, &env)).collect();
    let working_dir = container
        .working_dir
        .as_deref()
        .map(PathBuf::from)
        .filter(|dir| dir.is_dir());
    Ok(ProcessSpec {
        program,
        args,
        env,
        working_dir,
    })
}

/// The value of one `env` entry, or `None` when it is left unset.
async fn env_value(
    ctx: &Context,
    pod: &Pod,
    namespace: &str,
    var: &EnvVar,
    defined: &BTreeMap<String, String>,
) -> Result<Option<String>, NotStartable> {
    let Some(source) = &var.value_from else {
        return Ok(Some(expand(
            var.value.as_deref().unwrap_or_default(),
            defined,
        )));
    };
    if let Some(field) = &source.field_ref {
        return field_value(pod, &field.field_path)
            .map(Some)
            .ok_or_else(|| {
                NotStartable::config(format!(
                    "env {}: unsupported fieldRef {:?}",
                    var.name, field.field_path
                ))
            });
    }
    if let Some(key_ref) = &source.secret_key_ref {
        let data = secret_data(ctx, namespace, &key_ref.name).await?;
        return keyed(
            &var.name,
            "secret",
            &key_ref.name,
            &key_ref.key,
            key_ref.optional,
            data,
        );
    }
    if let Some(key_ref) = &source.config_map_key_ref {
        let data = config_map(ctx, namespace, &key_ref.name).await?;
        return keyed(
            &var.name,
            "configmap",
            &key_ref.name,
            &key_ref.key,
            key_ref.optional,
            data,
        );
    }
    tracing::warn!(
        name = %var.name,
        "env var source not supported by the fake kubelet, left unset"
    );
    Ok(None)
}

/// One key of a Secret's or ConfigMap's data, honouring `optional`.
fn keyed(
    var: &str,
    what: &str,
    name: &str,
    key: &str,
    optional: Option<bool>,
    data: Option<BTreeMap<String, String>>,
) -> Result<Option<String>, NotStartable> {
    match data.and_then(|mut data| data.remove(key)) {
        Some(value) => Ok(Some(value)),
        None if optional == Some(true) => Ok(None),
        None => Err(NotStartable::config(format!(
            "env {var}: key {key:?} of {what} {name:?} not found"
        ))),
    }
}

/// The value of a `fieldRef`, as the kubelet's downward API gives it; `None` when this fake
/// kubelet does not know the field.
fn field_value(pod: &Pod, path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let map_key = |map: Option<&BTreeMap<String, String>>, prefix: &str| -> Option<String> {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.map(|s| {
            s.service_account_name
                .clone()
                .unwrap_or_else(|| "default".to_owned())
        }),
        "status.podIP" | "status.podIPs" | "status.hostIP" | "status.hostIPs" => {
            Some(super::pod::IP.to_owned())
        }
        _ => map_key(meta.labels.as_ref(), "metadata.labels['")
            .or_else(|| map_key(meta.annotations.as_ref(), "metadata.annotations['")),
    }
}

async fn secret_data(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, String>>, NotStartable> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let secret = secrets
        .get_opt(name)
        .await
        .map_err(|e| NotStartable::config(format!("reading secret {name:?}: {e}")))?;
    Ok(secret.map(|secret| {
        secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| (key, String::from_utf8_lossy(&value.0).into_owned()))
            .collect()
    }))
}

async fn config_map(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, String>>, NotStartable> {
    let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    let map = maps
        .get_opt(name)
        .await
        .map_err(|e| NotStartable::config(format!("reading configmap {name:?}: {e}")))?;
    Ok(map.map(|map| {
        let binary = map
            .binary_data
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| (key, String::from_utf8_lossy(&value.0).into_owned()));
        map.data
            .unwrap_or_default()
            .into_iter()
            .chain(binary)
            .collect()
    }))
}

/// Expands `$(VAR)` references as Kubernetes does for env values, command and args: `$$` is
/// a literal `$`; `$(NAME)` becomes NAME's value when it is defined and stays as written
/// otherwise; any other `$` is kept.
pub(super) fn expand(input: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match vars.get(name) {
                        Some(value) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Whether `program` can be started: an existing file when it names a path, or found on
/// `PATH` otherwise.
pub(super) fn program_exists(program: &Path, path_var: Option<&str>) -> bool {
    if program.components().count() > 1 {
        return program.is_file();
    }
    path_var
        .unwrap_or_default()
        .split(':')
        .any(|dir| Path::new(dir).join(program).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("A".to_owned(), "alpha".to_owned()),
            ("B".to_owned(), "b$(A)".to_owned()),
        ])
    }

    #[test]
    fn expansion_follows_kubernetes_rules() {
        let vars = vars();
        for (input, expected) in [
            ("$(A)", "alpha"),
            ("x-$(A)-$(A)-y", "x-alpha-alpha-y"),
            ("$(B)", "b$(A)"),
            ("$(UNDEFINED)", "$(UNDEFINED)"),
            ("$$(A)", "$(A)"),
            ("$$$(A)", "$alpha"),
            ("$$", "$"),
            ("$A", "$A"),
            ("cost: 5$", "cost: 5$"),
            ("$(A", "$(A"),
            ("$()", "$()"),
            ("plain", "plain"),
            ("héllo $(A) wörld", "héllo alpha wörld"),
        ] {
            assert_eq!(expand(input, &vars), expected, "expanding {input:?}");
        }
    }

    #[test]
    fn downward_api_fields_resolve() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "p", "namespace": "ns", "uid": "u-1",
                "labels": { "app": "crawler" }, "annotations": { "note": "n" },
            },
            "spec": { "nodeName": "node-1", "containers": [] },
        }))
        .expect("a valid pod");
        for (path, expected) in [
            ("metadata.name", Some("p")),
            ("metadata.namespace", Some("ns")),
            ("metadata.uid", Some("u-1")),
            ("spec.nodeName", Some("node-1")),
            ("spec.serviceAccountName", Some("default")),
            ("status.podIP", Some("127.0.0.1")),
            ("metadata.labels['app']", Some("crawler")),
            ("metadata.labels['missing']", Some("")),
            ("metadata.annotations['note']", Some("n")),
            ("status.phase", None),
        ] {
            assert_eq!(field_value(&pod, path).as_deref(), expected, "{path}");
        }
    }

    #[test]
    fn programs_are_found_by_path_or_on_path() {
        assert!(program_exists(Path::new("/bin/sh"), None));
        assert!(program_exists(Path::new("sh"), Some("/nonexistent:/bin")));
        assert!(!program_exists(Path::new("sh"), Some("/nonexistent")));
        assert!(!program_exists(Path::new("/nonexistent/sh"), Some("/bin")));
    }
}
