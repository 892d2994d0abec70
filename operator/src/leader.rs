//! Leader election on a `coordination.k8s.io/v1` Lease, so two operator replicas are safe:
//! only the holder reconciles; the other waits and takes over when the holder stops renewing.
//!
//! # Guarantees
//! A replica acts only while it holds the Lease. Every write to the Lease is conditional on
//! the resourceVersion it read, so two replicas can never both take it. A holder that cannot
//! renew within the lease duration stops acting (the caller's token is cancelled) before
//! another replica may take over, as long as clocks agree within the renew margin.

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

    /// Renews the Lease every third of its duration until `shutdown`; cancels `lost` when a
    /// renewal has not succeeded for a whole duration, or another replica took the Lease.
    pub async fn keep(self, shutdown: CancellationToken, lost: CancellationToken) {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.duration / 3) => {},
                () = shutdown.cancelled() => {
                    self.release().await;
                    return;
                }
            }
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewal = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::error!(lease = %self.name, "leadership lost to another replica");
                    lost.cancel();
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %crate::format_chain(&e), "renewing the leader lease failed")
                }
            }
            if last_renewal.elapsed() >= self.duration {
                tracing::error!(lease = %self.name, "leader lease not renewed in time");
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
