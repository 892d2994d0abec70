//! Leader election on a `coordination.k8s.io/v1` Lease, so two operator replicas are safe:
//! only the holder reconciles; the other waits and takes over when the holder stops renewing.
//!
//! # Guarantees
//! A replica acts only while it holds the Lease. Every write to the Lease is conditional on
//! the resourceVersion it read, so two replicas can never both take it. A holder that has not
//! renewed within the *renew deadline* (two thirds of the lease duration, measured from the
//! start of its last successful renewal) stops acting — the caller's token is cancelled —
//! a third of the duration before another replica may take over, as long as clocks agree
//! within that margin. Every renewal attempt has its own deadline, so a hung request (a
//! half-open connection to the API server) cannot stall the check.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio_util::sync::CancellationToken;

use crate::{Error, Result};

/// One replica's claim on the Lease.
#[derive(Clone)]
pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl std::fmt::Debug for LeaderElection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderElection")
            .field("name", &self.name)
            .field("identity", &self.identity)
            .finish()
    }
}

impl LeaderElection {
    /// A claim on Lease `name` by `identity`, held for `duration` after each renewal.
    pub fn new(api: Api<Lease>, name: &str, identity: &str, duration: Duration) -> Self {
        Self {
            api,
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
        }
    }

    /// Waits until this replica holds the Lease (or `shutdown`; then returns false).
    ///
    /// # Errors
    /// [`Error::Kube`] when the Lease cannot be read or written for a reason other than a
    /// lost race.
    pub async fn acquire(&self, shutdown: &CancellationToken) -> Result<bool> {
        loop {
            if self.try_acquire_or_renew().await? {
                tracing::info!(lease = %self.name, identity = %self.identity, "became leader");
                return Ok(true);
            }
            tokio::select! {
                () = tokio::time::sleep(self.duration / 4) => {},
                () = shutdown.cancelled() => return Ok(false),
            }
        }
    }

    /// How long after the start of its last successful renewal a holder stops acting: two
    /// thirds of the lease duration, so it stops well before a standby may take over.
    pub fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }

    /// Renews the Lease every third of its duration until `shutdown`; cancels `lost` when no
    /// renewal succeeded within the renew deadline (each attempt is cut off at it), or another
    /// replica took the Lease. The caller must stop acting as soon as `lost` is cancelled.
    pub async fn keep(self, shutdown: CancellationToken, lost: CancellationToken) {
        let deadline = self.renew_deadline();
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.duration / 5) => {},
                () = shutdown.cancelled() => {
                    self.release().await;
                    return;
                }
            }
            let attempt = tokio::time::Instant::now();
            let left = deadline.saturating_sub(last_renewal.elapsed());
            match tokio::time::timeout(left, self.try_acquire_or_renew()).await {
                // The Lease says "renewed at" the time the attempt began, or later.
                Ok(Ok(true)) => last_renewal = attempt,
                Ok(Ok(false)) => {
                    tracing::error!(lease = %self.name, "leadership lost to another replica");
                    lost.cancel();
                    return;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %kubecrawl_process::format_chain(&e), "renewing the leader lease failed")
                }
                Err(_) => tracing::warn!(lease = %self.name, "renewing the leader lease timed out"),
            }
            if last_renewal.elapsed() >= deadline {
                tracing::error!(lease = %self.name, deadline = ?deadline, "leader lease not renewed in time");
                lost.cancel();
                return;
            }
        }
    }

    /// Takes the Lease if it is free, expired or already ours; true when we hold it.
    ///
    /// # Errors
    /// [`Error::Kube`] for anything but a lost race (409 Conflict).
    pub async fn try_acquire_or_renew(&self) -> Result<bool> {
        let now = k8s_openapi::jiff::Timestamp::now();
        let seconds = i32::try_from(self.duration.as_secs())
            .unwrap_or(i32::MAX)
            .max(1);
        let existing = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(Error::kube("get leader lease"))?;
        let result = match existing {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(seconds),
                        acquire_time: Some(MicroTime(now)),
                        renew_time: Some(MicroTime(now)),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                self.api
                    .create(&PostParams::default(), &lease)
                    .await
                    .map(|_| ())
            }
            Some(mut lease) => {
                let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                let ours = spec.holder_identity.as_deref() == Some(self.identity.as_str());
                let held_for = Duration::from_secs(
                    u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0),
                );
                let expired = match (&spec.holder_identity, &spec.renew_time) {
                    (None, _) | (_, None) => true,
                    (Some(_), Some(renewed)) => renewed.0 + held_for <= now,
                };
                if !ours && !expired {
                    return Ok(false);
                }
                if !ours {
                    spec.acquire_time = Some(MicroTime(now));
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
                spec.holder_identity = Some(self.identity.clone());
                spec.lease_duration_seconds = Some(seconds);
                spec.renew_time = Some(MicroTime(now));
                // resourceVersion from the read makes this a compare-and-swap.
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                    .map(|_| ())
            }
        };
        match result {
            Ok(()) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(source) => Err(Error::kube("write leader lease")(source)),
        }
    }

    /// Gives the Lease up (shutdown), so a standby replica takes over at once.
    async fn release(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await
            && let Some(spec) = lease.spec.as_mut()
            && spec.holder_identity.as_deref() == Some(self.identity.as_str())
        {
            spec.holder_identity = None;
            if self
                .api
                .replace(&self.name, &PostParams::default(), &lease)
                .await
                .is_ok()
            {
                tracing::info!(lease = %self.name, "leadership released");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An API server that accepts every request and never answers: a half-open connection.
    fn hanging_client() -> kube::Client {
        let service = tower::service_fn(|_req: http::Request<kube::client::Body>| {
            std::future::pending::<Result<http::Response<kube::client::Body>, std::io::Error>>()
        });
        kube::Client::new(service, "default")
    }

    /// Regression: a renewal that hung (half-open API connection) had no deadline, so the
    /// holder kept acting past the lease's expiry while a standby took over.
    #[tokio::test(start_paused = true)]
    async fn a_hanging_renewal_gives_up_leadership_before_the_lease_expires() {
        let duration = Duration::from_secs(15);
        let election = LeaderElection::new(
            Api::namespaced(hanging_client(), "default"),
            "kubecrawl-operator",
            "me",
            duration,
        );
        assert_eq!(election.renew_deadline(), Duration::from_secs(10));
        let (shutdown, lost) = (CancellationToken::new(), CancellationToken::new());
        let started = tokio::time::Instant::now();
        let keeper = tokio::spawn(election.keep(shutdown.clone(), lost.clone()));
        tokio::time::timeout(duration, lost.cancelled())
            .await
            .expect("leadership was not given up before the lease expired");
        let after = started.elapsed();
        assert!(
            after >= Duration::from_secs(10) && after < duration,
            "{after:?}"
        );
        tokio::time::timeout(Duration::from_secs(1), keeper)
            .await
            .expect("the keeper ended")
            .expect("the keeper did not panic");
    }
}
