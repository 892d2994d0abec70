//! The admin server every long-running process serves: `/metrics` (Prometheus text),
//! `/healthz` (alive: always `ok`) and `/readyz` (`ready`, or 503 and why not). Each binary
//! supplies its own registry and readiness through [`Health`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::{Error, Result};

/// The two facts behind `/readyz`: the process's own state (leading, leasing), false until
/// it says otherwise, and whether its dependencies answered their last probe, true until a
/// probe fails.
#[derive(Debug)]
pub struct Readiness {
    own: AtomicBool,
    reachable: AtomicBool,
}

impl Default for Readiness {
    fn default() -> Self {
        Self {
            own: AtomicBool::new(false),
            reachable: AtomicBool::new(true),
        }
    }
}

impl Readiness {
    /// Marks the process itself ready or not.
    pub fn set_ready(&self, ready: bool) {
        self.own.store(ready, Ordering::Relaxed);
    }

    /// Records whether the dependencies answered their last probe.
    pub fn set_reachable(&self, reachable: bool) {
        self.reachable.store(reachable, Ordering::Relaxed);
    }

    /// `Ok` when both hold; otherwise `not_ready` (the process's own state) or
    /// `unreachable` (a dependency), the body of `/readyz`'s 503.
    ///
    /// # Errors
    /// The reason, as above.
    pub fn check(
        &self,
        not_ready: &'static str,
        unreachable: &'static str,
    ) -> Result<(), &'static str> {
        if !self.own.load(Ordering::Relaxed) {
            Err(not_ready)
        } else if !self.reachable.load(Ordering::Relaxed) {
            Err(unreachable)
        } else {
            Ok(())
        }
    }
}

/// What a binary shows on its admin server.
pub trait Health: Clone + Send + Sync + 'static {
    /// The metrics served on `/metrics`.
    fn registry(&self) -> &Registry;
    /// `Ok` when ready; otherwise why not, the body of `/readyz`'s 503.
    fn readiness(&self) -> Result<(), &'static str>;
}

/// `registry` in Prometheus text format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

/// An admin server bound to its address, not yet serving. Binding first lets a taken port
/// end the process at start-up.
#[derive(Debug)]
pub struct AdminServer {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
}

impl AdminServer {
    /// Binds `addr`.
    ///
    /// # Errors
    /// [`Error::AdminBind`] when the address cannot be bound (taken, not local).
    pub async fn bind(addr: SocketAddr) -> Result<Self> {
        let bound = |source| Error::AdminBind { addr, source };
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(bound)?;
        let addr = listener.local_addr().map_err(bound)?;
        Ok(Self { listener, addr })
    }

    /// The bound address (the port chosen when `addr` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `/metrics`, `/healthz` and `/readyz` from `health` until `shutdown`, then lets
    /// the requests in progress finish.
    ///
    /// # Errors
    /// [`Error::AdminServe`] when serving fails.
    pub async fn serve(self, health: impl Health, shutdown: CancellationToken) -> Result<()> {
        let ready = health.clone();
        let app = Router::new()
            .route(
                "/metrics",
                get(move || std::future::ready(encode(health.registry()))),
            )
            .route("/healthz", get(|| std::future::ready("ok")))
            .route(
                "/readyz",
                get(move || {
                    std::future::ready(match ready.readiness() {
                        Ok(()) => (StatusCode::OK, "ready"),
                        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
                    })
                }),
            );
        let addr = self.addr;
        tracing::info!(addr = %addr, "serving metrics and health");
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .map_err(|source| Error::AdminServe { addr, source })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use prometheus_client::metrics::counter::Counter;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[derive(Clone)]
    struct Probe {
        registry: Arc<Registry>,
        ready: Arc<AtomicBool>,
    }

    impl Health for Probe {
        fn registry(&self) -> &Registry {
            &self.registry
        }
        fn readiness(&self) -> Result<(), &'static str> {
            if self.ready.load(Ordering::Relaxed) {
                Ok(())
            } else {
                Err("standby")
            }
        }
    }

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connects");
        let request = format!("GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("writes");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("reads");
        response
    }

    #[test]
    fn readiness_needs_the_process_and_its_dependencies() {
        let r = Readiness::default();
        assert_eq!(
            r.check("own", "deps"),
            Err("own"),
            "not ready until it says so"
        );
        r.set_ready(true);
        assert_eq!(r.check("own", "deps"), Ok(()));
        r.set_reachable(false);
        assert_eq!(r.check("own", "deps"), Err("deps"));
        r.set_reachable(true);
        r.set_ready(false);
        assert_eq!(r.check("own", "deps"), Err("own"));
    }

    #[tokio::test]
    async fn serves_the_registry_health_and_readiness_until_shutdown() {
        let mut registry = Registry::with_prefix("test");
        let counter = Counter::<u64>::default();
        registry.register("things", "Things", counter.clone());
        counter.inc();
        let probe = Probe {
            registry: Arc::new(registry),
            ready: Arc::new(AtomicBool::new(false)),
        };
        let server = AdminServer::bind("127.0.0.1:0".parse().expect("an address"))
            .await
            .expect("binds");
        let addr = server.local_addr();
        let shutdown = CancellationToken::new();
        let serving = tokio::spawn(server.serve(probe.clone(), shutdown.clone()));
        let check = async {
            assert!(get(addr, "/metrics").await.contains("test_things_total 1"));
            assert!(get(addr, "/healthz").await.ends_with("ok"));
            let standby = get(addr, "/readyz").await;
            assert!(standby.starts_with("HTTP/1.1 503"), "{standby}");
            assert!(standby.ends_with("standby"), "{standby}");
            probe.ready.store(true, Ordering::Relaxed);
            assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
            shutdown.cancel();
            serving.await
        };
        let served = tokio::time::timeout(Duration::from_secs(10), check)
            .await
            .expect("the admin server hung");
        assert!(matches!(served, Ok(Ok(()))), "{served:?}");
    }

    #[tokio::test]
    async fn a_taken_address_is_an_error_naming_it() {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let addr = taken.local_addr().expect("an address");
        let err = AdminServer::bind(addr)
            .await
            .expect_err("the port is taken");
        assert!(crate::format_chain(&err).contains(&addr.to_string()));
    }
}
