//! The services the chaos suite owns, so that it can kill them without touching the shared
//! ones other tests use: a Redis with AOF on, a single-node Kafka broker, and a second
//! kube-apiserver on the shared etcd. Each keeps its data in the run's directory, so a
//! restart finds what the previous process wrote.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::process::Command;

use super::process::{Proc, free_port};
use crate::repo_path;

/// How long a restarted Redis may take to load its AOF and answer.
const REDIS_READY: Duration = Duration::from_secs(60);
/// How long a Kafka broker may take to be ready (22–30 s under heavy load, TEST-ENV.md).
const KAFKA_READY: Duration = Duration::from_secs(120);
/// How long a kube-apiserver may take to be ready.
const APISERVER_READY: Duration = Duration::from_secs(120);

/// A `redis-server` of the suite's own: `appendonly yes`, `appendfsync always`, so every
/// write it acknowledged survives `kill -9`.
#[derive(Debug)]
pub struct Redis {
    port: u16,
    dir: PathBuf,
    log: PathBuf,
    proc: Proc,
}

impl Redis {
    /// Starts it on a free port with its data in `dir/redis`, and waits until it answers.
    pub async fn start(dir: &Path) -> Result<Self> {
        let port = free_port()?;
        let data = dir.join("redis");
        std::fs::create_dir_all(&data)?;
        let log = dir.join("redis.log");
        let proc = Self::spawn(port, &data, &log)?;
        let redis = Self {
            port,
            dir: data,
            log,
            proc,
        };
        redis.wait_ready().await?;
        Ok(redis)
    }

    fn spawn(port: u16, data: &Path, log: &Path) -> Result<Proc> {
        Proc::spawn(
            "redis-server",
            Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--appendonly", "yes", "--appendfsync", "always"])
                .args(["--save", "", "--protected-mode", "yes", "--dir"])
                .arg(data),
            log,
        )
    }

    /// `redis://127.0.0.1:PORT`, straight to the server.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's address.
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `kill -9`, then starts it again on the same port and data, and waits until it
    /// answers (it has loaded its AOF by then).
    pub async fn restart(&mut self) -> Result<()> {
        self.proc.kill9().await?;
        self.proc = Self::spawn(self.port, &self.dir, &self.log)?;
        self.wait_ready().await
    }

    async fn wait_ready(&self) -> Result<()> {
        let started = Instant::now();
        loop {
            if let Ok(client) = redis::Client::open(self.url())
                && let Ok(Ok(mut conn)) = tokio::time::timeout(
                    Duration::from_secs(2),
                    client.get_multiplexed_async_connection(),
                )
                .await
                && let Ok(Ok(())) = tokio::time::timeout(
                    Duration::from_secs(2),
                    redis::cmd("PING").query_async::<()>(&mut conn),
                )
                .await
            {
                return Ok(());
            }
            if started.elapsed() > REDIS_READY {
                bail!(
                    "redis on {} did not answer in {REDIS_READY:?}\n{}",
                    self.port,
                    self.proc.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops it (SIGTERM).
    pub async fn stop(&mut self) -> Result<()> {
        self.proc.stop().await.map(drop)
    }
}

/// A single-node Kafka broker of the suite's own (tests/env/kafka-node.sh). Clients of the
/// suite's own (the checker) use [`Kafka::brokers`]; workers bootstrap through a proxy in
/// front of its second listener, which the broker advertises at the proxy's port, so that
/// every connection a worker makes goes through the proxy.
#[derive(Debug)]
pub struct Kafka {
    port: u16,
    controller_port: u16,
    extra_port: u16,
    advertised_port: u16,
    dir: PathBuf,
    log: PathBuf,
    proc: Proc,
}

impl Kafka {
    /// Starts it with its data in `dir/kafka`; its second listener is on `extra_port` and
    /// advertised at `advertised_port`. Waits until it is ready.
    pub async fn start(dir: &Path, extra_port: u16, advertised_port: u16) -> Result<Self> {
        let data = dir.join("kafka");
        std::fs::create_dir_all(&data)?;
        let ports = [free_port()?, free_port()?, extra_port, advertised_port];
        let log = dir.join("kafka.log");
        let proc = Self::spawn(&data, ports, &log)?;
        let mut kafka = Self {
            port: ports[0],
            controller_port: ports[1],
            extra_port,
            advertised_port,
            dir: data,
            log,
            proc,
        };
        kafka.wait_ready().await?;
        Ok(kafka)
    }

    /// Runs kafka-node.sh DIR PORT CONTROLLER_PORT EXTRA_PORT ADVERTISED_PORT.
    fn spawn(data: &Path, ports: [u16; 4], log: &Path) -> Result<Proc> {
        Proc::spawn(
            "kafka",
            Command::new("bash")
                .arg(repo_path("tests/env/kafka-node.sh"))
                .arg(data)
                .args(ports.map(|p| p.to_string())),
            log,
        )
    }

    /// `127.0.0.1:PORT`, the broker's own listener.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `kill -9`.
    pub async fn kill9(&mut self) -> Result<()> {
        self.proc.kill9().await.map(drop)
    }

    /// Starts it again (after [`Kafka::kill9`]) and waits until it is ready.
    pub async fn start_again(&mut self) -> Result<()> {
        let ports = [
            self.port,
            self.controller_port,
            self.extra_port,
            self.advertised_port,
        ];
        self.proc = Self::spawn(&self.dir, ports, &self.log)?;
        self.wait_ready().await
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let started = Instant::now();
        loop {
            let out = Command::new("kcat")
                .args(["-b", &self.brokers(), "-L", "-m", "2", "-J"])
                .output()
                .await
                .context("running kcat (make env-up installs it)")?;
            if out.status.success()
                && String::from_utf8_lossy(&out.stdout).contains("\"brokers\":[{")
            {
                return Ok(());
            }
            if let Some(status) = self.proc.exited()? {
                bail!("kafka exited with {status}\n{}", self.proc.log_tail(40));
            }
            if started.elapsed() > KAFKA_READY {
                bail!(
                    "kafka on {} not ready in {KAFKA_READY:?}\n{}",
                    self.port,
                    self.proc.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Stops it (SIGTERM).
    pub async fn stop(&mut self) -> Result<()> {
        self.proc.stop().await.map(drop)
    }
}

/// A second kube-apiserver on the shared etcd (tests/env/apiserver-node.sh): the same cluster
/// as the shared API server, on a port of its own, used only by the suite's operators.
#[derive(Debug)]
pub struct ApiServer {
    port: u16,
    dir: PathBuf,
    log: PathBuf,
    kubeconfig: PathBuf,
    shared_kubeconfig: PathBuf,
    proc: Proc,
}

impl ApiServer {
    /// Starts it with its files in `dir/apiserver`, writes a kubeconfig for it (the shared
    /// one's, with its port) and waits until it is ready.
    pub async fn start(dir: &Path, shared_kubeconfig: &Path) -> Result<Self> {
        let port = free_port()?;
        let data = dir.join("apiserver");
        std::fs::create_dir_all(&data)?;
        let shared = std::fs::read_to_string(shared_kubeconfig)
            .with_context(|| format!("reading {}", shared_kubeconfig.display()))?;
        let server = regex::Regex::new(r"server: https://127\.0\.0\.1:[0-9]+")?;
        if !server.is_match(&shared) {
            bail!(
                "{} names no https://127.0.0.1 server",
                shared_kubeconfig.display()
            );
        }
        let kubeconfig = dir.join("apiserver.kubeconfig");
        std::fs::write(
            &kubeconfig,
            server
                .replace(
                    &shared,
                    format!("server: https://127.0.0.1:{port}").as_str(),
                )
                .as_ref(),
        )?;
        let log = dir.join("apiserver.log");
        let proc = Self::spawn(&data, port, shared_kubeconfig, &log)?;
        let mut api = Self {
            port,
            proc,
            dir: data,
            log,
            kubeconfig,
            shared_kubeconfig: shared_kubeconfig.to_owned(),
        };
        api.wait_ready().await?;
        Ok(api)
    }

    /// Runs apiserver-node.sh DIR PORT with the shared environment's kubeconfig (its PKI).
    fn spawn(data: &Path, port: u16, shared_kubeconfig: &Path, log: &Path) -> Result<Proc> {
        Proc::spawn(
            "kube-apiserver",
            Command::new("bash")
                .arg(repo_path("tests/env/apiserver-node.sh"))
                .arg(data)
                .arg(port.to_string())
                .env("KUBECONFIG", shared_kubeconfig),
            log,
        )
    }

    /// Where it listens.
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// A kubeconfig that talks to this API server.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Stops it (SIGTERM), starts it again and waits until it is ready.
    pub async fn restart(&mut self) -> Result<()> {
        self.proc.stop().await?;
        self.proc = Self::spawn(&self.dir, self.port, &self.shared_kubeconfig, &self.log)?;
        self.wait_ready().await
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let started = Instant::now();
        loop {
            let out = Command::new("kubectl")
                .args(["get", "--raw", "/readyz", "--request-timeout=3s"])
                .env("KUBECONFIG", &self.kubeconfig)
                .output()
                .await
                .context("running kubectl (make env-up puts it first on PATH)")?;
            if out.status.success() {
                return Ok(());
            }
            if let Some(status) = self.proc.exited()? {
                bail!(
                    "kube-apiserver exited with {status}\n{}",
                    self.proc.log_tail(40)
                );
            }
            if started.elapsed() > APISERVER_READY {
                bail!(
                    "kube-apiserver on {} not ready in {APISERVER_READY:?}\n{}",
                    self.port,
                    self.proc.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Stops it (SIGTERM).
    pub async fn stop(&mut self) -> Result<()> {
        self.proc.stop().await.map(drop)
    }
}
