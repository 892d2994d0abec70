//! Spider fleets: one worker Deployment per spiderid, scaled to the work that exists.
//!
//! A fleet's replicas are the sum of `spec.workers` over its active jobs (not being deleted,
//! not suspended, not finished, failed or expired), capped by the fleet's `maxReplicas`;
//! zero when no job is active. A fleet's Deployment is created when its first job needs
//! workers, and kept, at zero, when its jobs are gone.
//!
//! Deployments are shared by jobs of every namespace, so they are not owned by any one
//! CrawlJob: the operator labels them (`app.kubernetes.io/managed-by: kubecrawl-operator`,
//! `kubecrawl.io/spiderid`) and applies them with server-side apply only when the desired
//! replicas or pod template differ from what the API server has (a hash of the template is
//! kept in an annotation), so steady state costs no writes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecretKeySelector, SecurityContext, Toleration, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use kubecrawl_api::contract::{self, env};
use kubecrawl_api::{CrawlJob, Phase};
use kubecrawl_frontier::{Frontier, FrontierConfig, JobPolicy};
use kubecrawl_process::format_chain;
use serde::{Deserialize, Serialize};

use crate::autoscale::{self, Autoscale, Damper};
use crate::{Error, Result};

/// The field manager of every write the operator makes.
pub const MANAGER: &str = contract::OPERATOR;
/// Label naming a worker Deployment's spider.
pub const SPIDER_LABEL: &str = contract::label::SPIDERID;
/// Label marking what the operator manages.
pub const MANAGED_BY: (&str, &str) = (contract::label::MANAGED_BY, contract::OPERATOR);
const NAME_LABEL: (&str, &str) = (contract::label::NAME, contract::WORKER);
const TEMPLATE_HASH: &str = contract::annotation::TEMPLATE_HASH;
/// The volume a rendering fleet's pods mount at `/tmp`.
const RENDER_TMP: &str = "render-tmp";
/// The port workers serve `/metrics`, `/healthz` and `/readyz` on, unless a fleet names
/// another.
pub const METRICS_PORT: u16 = 9090;

/// A reference to one key of a Secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SecretRef {
    /// The Secret's name (in the workers' namespace).
    pub name: String,
    /// The key.
    pub key: String,
}

/// How the workers of one spider fleet run. Every field may be set for all fleets at the top
/// of the configuration and overridden per fleet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FleetSettings {
    /// The worker image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The image pull policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// The most replicas the fleet runs, whatever its jobs ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replicas: Option<u32>,
    /// The worker container's resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Extra environment for the worker (e.g. `KUBECRAWL_CONCURRENCY`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Extra arguments after `run`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Seconds a worker pod gets to drain at shutdown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<i64>,
    /// Node selector for worker pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of worker pods (added to those set for all fleets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Run worker pods in the node's network namespace. Each worker then binds its metrics
    /// port on the node, so a node runs at most one worker of the fleet per port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_network: Option<bool>,
    /// The port workers serve `/metrics`, `/healthz` and `/readyz` on (default 9090).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_port: Option<u16>,
    /// Volumes of the worker pods: how the chart gives workers the Secrets their TLS and
    /// authentication settings name (CA, client certificate and key, passwords) as files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// Where the worker container mounts `volumes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// Size the fleet by the ready work in its frontier instead of its jobs' `workers`
    /// (see [`crate::autoscale`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscale: Option<Autoscale>,
    /// The fleet's workers carry a headless Chromium and render the pages of jobs with
    /// `render` (`kubecrawl-worker run --render`); its `image` must hold the browser (the
    /// `kubecrawl-render-worker` image does). Its pods get a writable `/tmp` (the browser's
    /// profile) and share their process namespace, so that the pod's pause process reaps
    /// what a crashed browser leaves. Only such fleets take jobs with `render`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub render: Option<bool>,
    /// The spider of the worker binary that parses the fleet's pages, when its name is not
    /// the fleet's (a fleet `link-render` of the `link` spider with a browser).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spider: Option<String>,
}

impl FleetSettings {
    fn overlay(&self, over: &FleetSettings) -> FleetSettings {
        let mut env = self.env.clone();
        for e in &over.env {
            env.retain(|x| x.name != e.name);
            env.push(e.clone());
        }
        let mut node_selector = self.node_selector.clone();
        node_selector.extend(over.node_selector.clone());
        let mut tolerations = self.tolerations.clone();
        tolerations.extend(
            over.tolerations
                .iter()
                .filter(|t| !self.tolerations.contains(t))
                .cloned(),
        );
        let mut volumes = self.volumes.clone();
        for v in &over.volumes {
            volumes.retain(|x| x.name != v.name);
            volumes.push(v.clone());
        }
        let mut volume_mounts = self.volume_mounts.clone();
        for m in &over.volume_mounts {
            volume_mounts.retain(|x| x.mount_path != m.mount_path);
            volume_mounts.push(m.clone());
        }
        FleetSettings {
            image: over.image.clone().or_else(|| self.image.clone()),
            image_pull_policy: over
                .image_pull_policy
                .clone()
                .or_else(|| self.image_pull_policy.clone()),
            max_replicas: over.max_replicas.or(self.max_replicas),
            resources: over.resources.clone().or_else(|| self.resources.clone()),
            env,
            args: if over.args.is_empty() {
                self.args.clone()
            } else {
                over.args.clone()
            },
            termination_grace_period_seconds: over
                .termination_grace_period_seconds
                .or(self.termination_grace_period_seconds),
            node_selector,
            tolerations,
            host_network: over.host_network.or(self.host_network),
            metrics_port: over.metrics_port.or(self.metrics_port),
            volumes,
            volume_mounts,
            autoscale: over.autoscale.or(self.autoscale),
            render: over.render.or(self.render),
            spider: over.spider.clone().or_else(|| self.spider.clone()),
        }
    }
}

/// The operator's fleet configuration (a YAML file, mounted from a ConfigMap by the chart).
///
/// ```yaml
/// namespace: kubecrawl
/// defaults: {image: "kubecrawl/worker:0.1.0", maxReplicas: 10}
/// fleets:
///   link: {maxReplicas: 20}
///   wandering: {}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FleetConfig {
    /// Where worker Deployments live.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Settings of every fleet.
    #[serde(default)]
    pub defaults: FleetSettings,
    /// The fleets (spiderids) this operator runs, with their own settings. A CrawlJob for a
    /// spiderid not listed here is refused (`Valid=False`).
    #[serde(default = "default_fleets")]
    pub fleets: BTreeMap<String, FleetSettings>,
    /// The Redis URL workers use, when it differs from the operator's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    /// A Secret key holding the workers' Redis URL (wins over `redisUrl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_url_secret: Option<SecretRef>,
    /// Kafka brokers workers publish to, when they differ from the operator's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_brokers: Option<String>,
}

fn default_namespace() -> String {
    "default".to_owned()
}

fn default_fleets() -> BTreeMap<String, FleetSettings> {
    ["link", "wandering"]
        .into_iter()
        .map(|s| (s.to_owned(), FleetSettings::default()))
        .collect()
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            namespace: default_namespace(),
            defaults: FleetSettings::default(),
            fleets: default_fleets(),
            redis_url: None,
            redis_url_secret: None,
            kafka_brokers: None,
        }
    }
}

/// The image used when the configuration names none.
pub const DEFAULT_IMAGE: &str = concat!(
    "ghcr.io/kubecrawl/kubecrawl-worker:",
    env!("CARGO_PKG_VERSION")
);
/// The replica ceiling used when the configuration sets none.
pub const DEFAULT_MAX_REPLICAS: u32 = 10;

impl FleetConfig {
    /// Reads the configuration from a YAML file.
    ///
    /// # Errors
    /// [`Error::FleetConfig`] when the file cannot be read or is not a valid configuration
    /// (unknown fields included).
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::FleetConfig {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        serde_yaml::from_str(&text).map_err(|e| Error::FleetConfig {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    /// The fleets whose workers render, comma-separated, for messages.
    pub fn rendering(&self) -> String {
        self.fleets
            .keys()
            .filter(|s| self.renders(s))
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whether the workers of `spiderid` render pages (`render: true`).
    pub fn renders(&self, spiderid: &str) -> bool {
        self.settings(spiderid).render == Some(true)
    }

    /// Whether `spiderid` is a fleet of this operator.
    pub fn knows(&self, spiderid: &str) -> bool {
        self.fleets.contains_key(spiderid)
    }

    /// The known spiderids, comma-separated, for messages.
    pub fn known(&self) -> String {
        self.fleets.keys().cloned().collect::<Vec<_>>().join(", ")
    }

    /// The effective settings of a fleet.
    pub fn settings(&self, spiderid: &str) -> FleetSettings {
        match self.fleets.get(spiderid) {
            Some(over) => self.defaults.overlay(over),
            None => self.defaults.clone(),
        }
    }
}

/// What workers need to reach the shared services.
#[derive(Debug, Clone)]
pub struct Connections {
    /// The Redis URL (used when the configuration has no secret).
    pub redis_url: String,
    /// The Redis key prefix.
    pub redis_prefix: String,
    /// The Redis URLs are nodes of a Redis Cluster.
    pub redis_cluster: bool,
    /// The number of shards of a frontier on a Redis Cluster, when set.
    pub redis_shards: Option<u16>,
    /// Kafka brokers.
    pub kafka_brokers: String,
    /// Kafka topic prefix.
    pub topic_prefix: String,
}

/// The name of a fleet's Deployment.
pub fn deployment_name(spiderid: &str) -> String {
    contract::worker_deployment(spiderid)
}

/// Whether a job counts toward its fleet's replicas.
pub fn is_active(job: &CrawlJob) -> bool {
    let phase = job.status.as_ref().map(|s| s.phase).unwrap_or_default();
    job.metadata.deletion_timestamp.is_none()
        && !job.spec.suspend
        && !matches!(
            phase,
            Phase::Succeeded | Phase::Failed | Phase::Expired | Phase::Suspended
        )
}

/// Desired replicas per spiderid: the sum of `workers` over active jobs, capped, for every
/// configured fleet and every spiderid a job names. `exclude` is left out (a job being
/// deleted). Autoscaled fleets are sized by [`Fleets::sync`] from their ready work instead.
pub fn desired_replicas(
    config: &FleetConfig,
    jobs: &[Arc<CrawlJob>],
    exclude: Option<&ObjectRef<CrawlJob>>,
) -> BTreeMap<String, u32> {
    let mut wanted: BTreeMap<String, u64> = config.fleets.keys().map(|k| (k.clone(), 0)).collect();
    for job in jobs {
        if exclude.is_some_and(|x| *x == ObjectRef::from_obj(job.as_ref()))
            || !config.knows(&job.spec.spiderid)
        {
            continue;
        }
        let entry = wanted.entry(job.spec.spiderid.clone()).or_default();
        if is_active(job) {
            *entry += u64::from(job.spec.workers);
        }
    }
    wanted
        .into_iter()
        .map(|(spider, want)| {
            let cap = config
                .settings(&spider)
                .max_replicas
                .unwrap_or(DEFAULT_MAX_REPLICAS);
            (spider, u32::try_from(want).unwrap_or(u32::MAX).min(cap))
        })
        .collect()
}

/// The Deployment of one fleet with `replicas` workers.
pub fn deployment(
    config: &FleetConfig,
    connections: &Connections,
    spiderid: &str,
    replicas: u32,
) -> Deployment {
    let worker = WorkerPod {
        config,
        connections,
        settings: config.settings(spiderid),
        spiderid,
    };
    let template = worker.template();
    let hash = template_hash(&template);
    Deployment {
        metadata: ObjectMeta {
            name: Some(deployment_name(spiderid)),
            namespace: Some(config.namespace.clone()),
            labels: Some(object_labels(spiderid)),
            annotations: Some([(TEMPLATE_HASH.to_owned(), hash)].into()),
            ..ObjectMeta::default()
        },
        spec: DeploymentSpec {
            replicas: Some(i32::try_from(replicas).unwrap_or(i32::MAX)),
            selector: LabelSelector {
                match_labels: Some(selector_labels(spiderid)),
                match_expressions: None,
            },
            template,
            strategy: Some(rolling_update()),
            ..DeploymentSpec::default()
        },
        status: None,
    }
}

/// The labels that select a fleet's pods (on the pods and in the Deployment's selector).
fn selector_labels(spiderid: &str) -> BTreeMap<String, String> {
    [
        (NAME_LABEL.0.to_owned(), NAME_LABEL.1.to_owned()),
        (SPIDER_LABEL.to_owned(), spiderid.to_owned()),
    ]
    .into()
}

/// The labels of the Deployment itself: its pods' and what marks it as the operator's.
fn object_labels(spiderid: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(spiderid);
    labels.insert(MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned());
    labels.insert(
        contract::label::COMPONENT.to_owned(),
        contract::WORKER_COMPONENT.to_owned(),
    );
    labels
}

fn rolling_update() -> DeploymentStrategy {
    DeploymentStrategy {
        type_: Some("RollingUpdate".to_owned()),
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: Some(IntOrString::String("25%".to_owned())),
            max_unavailable: Some(IntOrString::String("25%".to_owned())),
        }),
    }
}

/// What one fleet's worker pods are built from.
struct WorkerPod<'a> {
    config: &'a FleetConfig,
    connections: &'a Connections,
    /// The fleet's effective settings (defaults overlaid with its own).
    settings: FleetSettings,
    spiderid: &'a str,
}

impl WorkerPod<'_> {
    fn template(&self) -> PodTemplateSpec {
        let settings = &self.settings;
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(selector_labels(self.spiderid)),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                containers: vec![self.container()],
                automount_service_account_token: Some(false),
                enable_service_links: Some(false),
                termination_grace_period_seconds: Some(
                    settings.termination_grace_period_seconds.unwrap_or(30),
                ),
                node_selector: (!settings.node_selector.is_empty())
                    .then(|| settings.node_selector.clone()),
                tolerations: (!settings.tolerations.is_empty())
                    .then(|| settings.tolerations.clone()),
                host_network: settings.host_network.filter(|&on| on),
                volumes: self.volumes(),
                share_process_namespace: self.renders().then_some(true),
                security_context: Some(pod_security_context()),
                ..PodSpec::default()
            }),
        }
    }

    fn renders(&self) -> bool {
        self.settings.render == Some(true)
    }

    /// The fleet's volumes, and a rendering fleet's `/tmp`.
    fn volumes(&self) -> Option<Vec<Volume>> {
        let mut volumes = self.settings.volumes.clone();
        if self.renders() {
            volumes.push(Volume {
                name: RENDER_TMP.to_owned(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            });
        }
        (!volumes.is_empty()).then_some(volumes)
    }

    fn volume_mounts(&self) -> Option<Vec<VolumeMount>> {
        let mut mounts = self.settings.volume_mounts.clone();
        if self.renders() {
            mounts.push(VolumeMount {
                name: RENDER_TMP.to_owned(),
                mount_path: "/tmp".to_owned(),
                ..VolumeMount::default()
            });
        }
        (!mounts.is_empty()).then_some(mounts)
    }

    fn metrics_port(&self) -> u16 {
        self.settings.metrics_port.unwrap_or(METRICS_PORT)
    }

    fn container(&self) -> Container {
        let settings = &self.settings;
        let mut args = vec!["run".to_owned()];
        args.extend(settings.args.iter().cloned());
        Container {
            name: "worker".to_owned(),
            image: Some(
                settings
                    .image
                    .clone()
                    .unwrap_or_else(|| DEFAULT_IMAGE.to_owned()),
            ),
            image_pull_policy: settings.image_pull_policy.clone(),
            command: Some(vec![contract::WORKER.to_owned()]),
            args: Some(args),
            env: Some(self.env()),
            ports: Some(vec![ContainerPort {
                name: Some("metrics".to_owned()),
                container_port: i32::from(self.metrics_port()),
                ..ContainerPort::default()
            }]),
            readiness_probe: Some(probe("/readyz", 5)),
            liveness_probe: Some(probe("/healthz", 10)),
            resources: settings.resources.clone(),
            volume_mounts: self.volume_mounts(),
            security_context: Some(container_security_context()),
            ..Container::default()
        }
    }

    /// The worker's environment: what the operator knows, then the fleet's own `env`, which
    /// wins over it.
    fn env(&self) -> Vec<EnvVar> {
        let config = self.config;
        let connections = self.connections;
        let kafka_brokers = config
            .kafka_brokers
            .as_deref()
            .unwrap_or(&connections.kafka_brokers);
        let mut env = vec![
            plain_env(env::SPIDER, self.spiderid),
            plain_env(
                env::METRICS_ADDR,
                &format!("0.0.0.0:{}", self.metrics_port()),
            ),
            self.redis_url_env(),
            plain_env(env::REDIS_PREFIX, &connections.redis_prefix),
            plain_env(env::KAFKA_BROKERS, kafka_brokers),
            plain_env(env::TOPIC_PREFIX, &connections.topic_prefix),
            plain_env(env::LOG_FORMAT, "json"),
            EnvVar {
                name: env::WORKER_NAME.to_owned(),
                value: None,
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "metadata.name".to_owned(),
                        api_version: None,
                    }),
                    ..EnvVarSource::default()
                }),
            },
        ];
        // Only when set, so that the template (and its hash) of an unsharded fleet is as before.
        if connections.redis_cluster {
            env.push(plain_env(env::REDIS_CLUSTER, "true"));
        }
        if let Some(shards) = connections.redis_shards {
            env.push(plain_env(env::REDIS_SHARDS, &shards.to_string()));
        }
        if self.renders() {
            env.push(plain_env(env::RENDER, "true"));
        }
        if let Some(spider) = &self.settings.spider {
            env.push(plain_env(env::PARSE_WITH, spider));
        }
        for extra in &self.settings.env {
            env.retain(|e| e.name != extra.name);
            env.push(extra.clone());
        }
        env
    }

    /// The Redis URL from the configured Secret, else the configured URL, else the
    /// operator's own.
    fn redis_url_env(&self) -> EnvVar {
        match &self.config.redis_url_secret {
            Some(secret) => EnvVar {
                name: env::REDIS_URL.to_owned(),
                value: None,
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: secret.name.clone(),
                        key: secret.key.clone(),
                        optional: Some(false),
                    }),
                    ..EnvVarSource::default()
                }),
            },
            None => plain_env(
                env::REDIS_URL,
                self.config
                    .redis_url
                    .as_deref()
                    .unwrap_or(&self.connections.redis_url),
            ),
        }
    }
}

fn plain_env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        value_from: None,
    }
}

/// An HTTP probe of the worker's metrics port.
fn probe(path: &str, period_seconds: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("metrics".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period_seconds),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

/// The restricted Pod Security Standard, for the pod.
fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(65532),
        run_as_group: Some(65532),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..PodSecurityContext::default()
    }
}

/// The restricted Pod Security Standard, for the container: no privilege escalation, no
/// capabilities, a read-only root filesystem.
fn container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..SecurityContext::default()
    }
}

fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        localhost_profile: None,
    }
}

/// The hash kept in a Deployment's [`TEMPLATE_HASH`] annotation: FNV-1a (64 bits) over the
/// template's JSON, whose field order is fixed by its type.
///
/// # Guarantees
/// The same template gives the same hash in every build of the operator, whatever the Rust
/// release: a hash that changed with the toolchain would re-apply every fleet's Deployment
/// on upgrade.
fn template_hash(template: &PodTemplateSpec) -> String {
    let json = serde_json::to_vec(template).unwrap_or_default();
    format!("{:016x}", fnv1a64(&json))
}

/// FNV-1a, 64 bits (<http://www.isthe.com/chongo/tech/comp/fnv/>): specified, so stable.
fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// Keeps the fleets' Deployments at their desired replicas.
#[derive(Clone)]
pub struct Fleets {
    client: Client,
    config: Arc<FleetConfig>,
    connections: Arc<Connections>,
    deployments: Store<Deployment>,
    // Serialises syncs, so two reconciles never race to apply one Deployment.
    lock: Arc<tokio::sync::Mutex<()>>,
    /// What each autoscaled fleet runs, as [`Fleets::autoscale`] last decided.
    autoscaled: Arc<Mutex<(BTreeMap<String, u32>, Damper)>>,
}

impl std::fmt::Debug for Fleets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleets")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Fleets {
    /// Fleets of `config`, observing Deployments through `deployments`.
    pub fn new(
        client: Client,
        config: FleetConfig,
        connections: Connections,
        deployments: Store<Deployment>,
    ) -> Self {
        Self {
            client,
            config: Arc::new(config),
            connections: Arc::new(connections),
            deployments,
            lock: Arc::new(tokio::sync::Mutex::new(())),
            autoscaled: Arc::new(Mutex::new((BTreeMap::new(), Damper::default()))),
        }
    }

    /// Sizes every autoscaled fleet from its spider's backlog (see [`crate::autoscale`]); the
    /// next [`Fleets::sync`] applies it. A fleet whose backlog cannot be read keeps its last
    /// size.
    pub async fn autoscale(&self, frontier: &dyn Frontier, jobs: &[Arc<CrawlJob>]) {
        let config = FrontierConfig::default();
        for spider in self.config.fleets.keys() {
            let settings = self.config.settings(spider);
            let Some(autoscale) = settings.autoscale else {
                continue;
            };
            let backlog = match frontier.backlog(spider).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(spider, error = %format_chain(&e), "reading the backlog for autoscaling failed");
                    continue;
                }
            };
            let polite = jobs
                .iter()
                .filter(|j| j.spec.spiderid == *spider && is_active(j))
                .all(|j| !JobPolicy::from_spec(&j.spec).interval(&config).is_zero());
            let max = settings.max_replicas.unwrap_or(DEFAULT_MAX_REPLICAS);
            let wanted = autoscale::workers(&backlog, polite, &autoscale, max);
            let window = Duration::from_secs(u64::from(autoscale.scale_down_after_seconds));
            let Ok(mut state) = self.autoscaled.lock() else {
                continue;
            };
            let (decided, damper) = &mut *state;
            let run = damper.damp(spider, wanted, Instant::now(), window);
            if decided.insert(spider.clone(), run) != Some(run) {
                tracing::info!(
                    spider,
                    workers = run,
                    wanted,
                    in_flight = backlog.in_flight,
                    ready_hosts = backlog.ready.len(),
                    queued = backlog.queued(),
                    "autoscaled fleet sized"
                );
            }
        }
    }

    /// The replicas of an autoscaled fleet: the last decision, or its minimum before the first.
    fn autoscaled(&self, spider: &str, autoscale: &Autoscale) -> u32 {
        self.autoscaled
            .lock()
            .ok()
            .and_then(|state| state.0.get(spider).copied())
            .unwrap_or(autoscale.min_replicas)
    }

    /// The configuration.
    pub fn config(&self) -> &FleetConfig {
        &self.config
    }

    /// Ready workers of a fleet, as its Deployment reports them.
    pub fn ready_workers(&self, spiderid: &str) -> u32 {
        let key = ObjectRef::new(&deployment_name(spiderid)).within(&self.config.namespace);
        self.deployments
            .get(&key)
            .and_then(|d| d.status.as_ref().and_then(|s| s.ready_replicas))
            .and_then(|r| u32::try_from(r).ok())
            .unwrap_or(0)
    }

    /// Applies every fleet whose Deployment differs from what `jobs` need. Returns the number
    /// of Deployments written.
    ///
    /// # Errors
    /// [`Error::Kube`] when an apply fails; the fleets before it were applied.
    pub async fn sync(
        &self,
        jobs: &[Arc<CrawlJob>],
        exclude: Option<&ObjectRef<CrawlJob>>,
    ) -> Result<usize> {
        let _guard = self.lock.lock().await;
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.config.namespace);
        let mut written = 0;
        let spiders: BTreeSet<String> = self.config.fleets.keys().cloned().collect();
        let desired = desired_replicas(&self.config, jobs, exclude);
        for spider in spiders {
            let replicas = match self.config.settings(&spider).autoscale {
                Some(autoscale) => self.autoscaled(&spider, &autoscale),
                None => desired.get(&spider).copied().unwrap_or(0),
            };
            let want = deployment(&self.config, &self.connections, &spider, replicas);
            let key = ObjectRef::new(&deployment_name(&spider)).within(&self.config.namespace);
            match self.deployments.get(&key) {
                // A fleet gets its Deployment when its first job needs workers.
                None if replicas == 0 => continue,
                Some(have)
                    if have.spec.replicas == want.spec.replicas
                        && have.annotations().get(TEMPLATE_HASH)
                            == want.annotations().get(TEMPLATE_HASH) =>
                {
                    continue;
                }
                _ => {}
            }
            api.patch(
                &deployment_name(&spider),
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&want),
            )
            .await
            .map_err(Error::kube("apply worker deployment"))?;
            tracing::info!(spider, replicas, "fleet scaled");
            written += 1;
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubecrawl_api::{CrawlJobSpec, CrawlJobStatus};

    /// What workers of the tests' fleets connect to: one Redis, one Kafka.
    fn connections() -> Connections {
        Connections {
            redis_url: "redis://r:6379".into(),
            redis_prefix: "kc".into(),
            kafka_brokers: "k:9092".into(),
            topic_prefix: "demo".into(),
            redis_cluster: false,
            redis_shards: None,
        }
    }

    fn job(name: &str, spider: &str, workers: u32, phase: Phase) -> Arc<CrawlJob> {
        let spec: CrawlJobSpec = serde_json::from_value(serde_json::json!({
            "spiderid": spider, "appid": "a", "seeds": ["http://site.test/"], "workers": workers
        }))
        .expect("spec");
        let mut job = CrawlJob::new(name, spec);
        job.metadata.namespace = Some("ns".into());
        job.status = Some(CrawlJobStatus {
            phase,
            ..CrawlJobStatus::default()
        });
        Arc::new(job)
    }

    #[test]
    fn replicas_sum_active_jobs_and_are_capped() {
        let mut config = FleetConfig::default();
        config.fleets.insert(
            "link".into(),
            FleetSettings {
                max_replicas: Some(5),
                ..FleetSettings::default()
            },
        );
        let jobs = vec![
            job("a", "link", 2, Phase::Running),
            job("b", "link", 2, Phase::Pending),
            job("c", "link", 9, Phase::Succeeded),
            job("d", "wandering", 1, Phase::Running),
        ];
        let d = desired_replicas(&config, &jobs, None);
        assert_eq!(d["link"], 4);
        assert_eq!(d["wandering"], 1);
        let more = [jobs.clone(), vec![job("e", "link", 3, Phase::Running)]].concat();
        assert_eq!(
            desired_replicas(&config, &more, None)["link"],
            5,
            "capped by maxReplicas"
        );
        let excluded = ObjectRef::from_obj(jobs[0].as_ref());
        assert_eq!(desired_replicas(&config, &jobs, Some(&excluded))["link"], 2);
    }

    #[test]
    fn idle_fleets_go_to_zero() {
        let d = desired_replicas(
            &FleetConfig::default(),
            &[job("a", "link", 2, Phase::Succeeded)],
            None,
        );
        assert_eq!(d["link"], 0);
        assert_eq!(d["wandering"], 0);
    }

    #[test]
    fn the_deployment_is_restricted_and_configured() {
        let config = FleetConfig::default();
        let conns = connections();
        let d = deployment(&config, &conns, "link", 3);
        let spec = d.spec;
        assert_eq!(spec.replicas, Some(3));
        let pod = spec.template.spec.expect("pod");
        let c = &pod.containers[0];
        assert_eq!(c.args.as_deref(), Some(&["run".to_owned()][..]));
        let env: BTreeMap<_, _> = c
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.as_str(), e.value.clone()))
            .collect();
        assert_eq!(env[env::SPIDER].as_deref(), Some("link"));
        assert_eq!(env[env::REDIS_URL].as_deref(), Some("redis://r:6379"));
        let sc = c.security_context.as_ref().expect("security context");
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(pod.automount_service_account_token, Some(false));
    }

    #[test]
    fn a_rendering_fleet_starts_its_browser_with_a_writable_tmp_and_a_shared_process_namespace() {
        let yaml = "namespace: kc\nfleets:\n  link: {}\n  link-render: {render: true, image: r:1, spider: link}\n";
        let config: FleetConfig = serde_yaml::from_str(yaml).expect("parses");
        assert!(config.renders("link-render") && !config.renders("link"));
        assert_eq!(config.rendering(), "link-render");
        let conns = connections();
        let pod = |spider: &str| {
            deployment(&config, &conns, spider, 1)
                .spec
                .template
                .spec
                .expect("pod")
        };
        let render = pod("link-render");
        assert_eq!(render.share_process_namespace, Some(true));
        let c = &render.containers[0];
        assert_eq!(c.image.as_deref(), Some("r:1"));
        let value = |c: &Container, name: &str| {
            c.env
                .iter()
                .flatten()
                .find(|e| e.name == name)
                .and_then(|e| e.value.clone())
        };
        assert_eq!(value(c, env::RENDER).as_deref(), Some("true"));
        assert_eq!(value(c, env::SPIDER).as_deref(), Some("link-render"));
        assert_eq!(value(c, env::PARSE_WITH).as_deref(), Some("link"));
        let tmp = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == "/tmp")
            .expect("a /tmp mount");
        let volume = render
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == tmp.name)
            .expect("its volume");
        assert!(volume.empty_dir.is_some());
        // The root filesystem stays read-only.
        let sc = c.security_context.as_ref().expect("security context");
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        // A fleet that does not render is as before.
        let plain = pod("link");
        assert_eq!(plain.share_process_namespace, None);
        assert_eq!(plain.volumes, None);
        assert_eq!(value(&plain.containers[0], env::RENDER), None);
    }

    #[test]
    fn host_network_fleets_bind_their_metrics_port_and_tolerate_the_node() {
        let yaml = "namespace: kc\ndefaults: {hostNetwork: true, metricsPort: 19090, tolerations: [{key: a, operator: Exists}]}\nfleets:\n  link: {tolerations: [{key: b, operator: Exists}]}\n  wandering: {hostNetwork: false, metricsPort: 9091}\n";
        let config: FleetConfig = serde_yaml::from_str(yaml).expect("parses");
        let conns = connections();
        let pod = |spider: &str| {
            deployment(&config, &conns, spider, 1)
                .spec
                .template
                .spec
                .expect("pod")
        };
        let metrics = |pod: &PodSpec| {
            let c = &pod.containers[0];
            let addr = c
                .env
                .iter()
                .flatten()
                .find(|e| e.name == env::METRICS_ADDR)
                .and_then(|e| e.value.clone());
            let port = c.ports.as_ref().map(|p| p[0].container_port);
            (addr, port)
        };

        let link = pod("link");
        assert_eq!(link.host_network, Some(true));
        let keys: Vec<_> = link
            .tolerations
            .iter()
            .flatten()
            .filter_map(|t| t.key.as_deref())
            .collect();
        assert_eq!(
            keys,
            ["a", "b"],
            "a fleet's tolerations add to the defaults"
        );
        assert_eq!(
            metrics(&link),
            (Some("0.0.0.0:19090".to_owned()), Some(19090)),
            "the worker listens where its probes and port say"
        );

        let wandering = pod("wandering");
        assert_eq!(wandering.host_network, None);
        assert_eq!(
            metrics(&wandering),
            (Some("0.0.0.0:9091".to_owned()), Some(9091))
        );
    }

    #[test]
    fn secrets_reach_the_workers_as_mounted_files() {
        let yaml = "defaults:\n  env: [{name: KUBECRAWL_REDIS_CA_FILE, value: /var/run/secrets/kubecrawl/redis-ca/ca.crt}]\n  volumes: [{name: redis-ca, secret: {secretName: my-ca, items: [{key: ca.crt, path: ca.crt}]}}]\n  volumeMounts: [{name: redis-ca, mountPath: /var/run/secrets/kubecrawl/redis-ca, readOnly: true}]\n";
        let config: FleetConfig = serde_yaml::from_str(yaml).expect("parses");
        let conns = Connections {
            redis_url: "rediss://r:6379".into(),
            redis_prefix: "kc".into(),
            kafka_brokers: "k:9093".into(),
            topic_prefix: "demo".into(),
            redis_cluster: false,
            redis_shards: None,
        };
        let pod = deployment(&config, &conns, "link", 1)
            .spec
            .template
            .spec
            .expect("a pod spec");
        let volume = &pod.volumes.as_ref().expect("volumes")[0];
        assert_eq!(
            volume
                .secret
                .as_ref()
                .and_then(|s| s.secret_name.as_deref()),
            Some("my-ca")
        );
        let mount = &pod.containers[0].volume_mounts.as_ref().expect("mounts")[0];
        assert_eq!(mount.name, "redis-ca");
        assert_eq!(mount.read_only, Some(true));
    }

    #[test]
    fn fnv1a64_matches_the_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    fn fixed_template() -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([(SPIDER_LABEL.to_owned(), "link".to_owned())].into()),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "worker".to_owned(),
                    image: Some("kubecrawl/worker:1".to_owned()),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
        }
    }

    /// A hash that changes re-applies every fleet's Deployment: this literal changes only
    /// on purpose. (Regression: the hash came from the standard library's `DefaultHasher`,
    /// whose output may change with the Rust release.)
    #[test]
    fn the_template_hash_is_pinned() {
        assert_eq!(template_hash(&fixed_template()), "227eaeef0f29074b");
    }

    #[test]
    fn a_changed_template_changes_the_hash() {
        let mut changed = fixed_template();
        if let Some(pod) = changed.spec.as_mut() {
            pod.containers[0].image = Some("kubecrawl/worker:2".to_owned());
        }
        assert_ne!(template_hash(&changed), template_hash(&fixed_template()));
    }

    /// The Deployment a fixed configuration gives, pinned through its template hash: a change
    /// of the builder shows here (and re-applies every fleet on upgrade).
    #[test]
    fn the_built_template_is_pinned() {
        let yaml = "namespace: kc\ndefaults: {image: 'kubecrawl/worker:1', env: [{name: KUBECRAWL_CONCURRENCY, value: '8'}], args: ['--lease-batch', '4'], metricsPort: 9191, tolerations: [{key: a, operator: Exists}], nodeSelector: {disk: ssd}, volumes: [{name: redis-ca, secret: {secretName: my-ca}}], volumeMounts: [{name: redis-ca, mountPath: /ca, readOnly: true}]}\nredisUrlSecret: {name: redis, key: url}\n";
        let config: FleetConfig = serde_yaml::from_str(yaml).expect("parses");
        let conns = connections();
        let d = deployment(&config, &conns, "link", 2);
        assert_eq!(
            d.annotations().get(TEMPLATE_HASH).map(String::as_str),
            Some("0f35187bd6fadbd2")
        );
    }

    #[test]
    fn a_cluster_frontier_reaches_the_workers() {
        let config = FleetConfig::default();
        let conns = Connections {
            redis_url: "redis://a:6379,redis://b:6379".into(),
            redis_prefix: "kc".into(),
            kafka_brokers: "k:9092".into(),
            topic_prefix: "demo".into(),
            redis_cluster: true,
            redis_shards: Some(6),
        };
        let d = deployment(&config, &conns, "link", 1);
        let pod = d.spec.template.spec.expect("pod spec");
        let env: BTreeMap<String, String> = pod.containers[0]
            .env
            .iter()
            .flatten()
            .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
            .collect();
        assert_eq!(env[env::REDIS_URL], "redis://a:6379,redis://b:6379");
        assert_eq!(env[env::REDIS_CLUSTER], "true");
        assert_eq!(env[env::REDIS_SHARDS], "6");
    }

    #[test]
    fn fleet_settings_overlay_defaults() {
        let yaml = "namespace: kc\ndefaults: {image: img:1, maxReplicas: 4, env: [{name: A, value: '1'}]}\nfleets:\n  link: {maxReplicas: 8, env: [{name: A, value: '2'}]}\n  wandering: {}\n";
        let config: FleetConfig = serde_yaml::from_str(yaml).expect("parses");
        let link = config.settings("link");
        assert_eq!(link.image.as_deref(), Some("img:1"));
        assert_eq!(link.max_replicas, Some(8));
        assert_eq!(link.env[0].value.as_deref(), Some("2"));
        assert_eq!(config.settings("wandering").max_replicas, Some(4));
        assert!(
            serde_yaml::from_str::<FleetConfig>("bogus: 1").is_err(),
            "unknown fields are refused"
        );
    }
}
