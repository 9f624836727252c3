//! Leader election through a `coordination.k8s.io/v1` Lease, as upstream's virt-controller
//! does (`kubevirt/virt-controller`): only the holder runs the controllers; it renews the lease
//! every `renew` and gives up (the process exits) when it cannot renew within the lease's
//! duration, so a standby takes over.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};

/// Where the lease lives and who we are.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
    pub renew: Duration,
}

impl LeaseConfig {
    pub fn new(namespace: &str, identity: &str) -> Self {
        LeaseConfig {
            namespace: namespace.into(),
            name: "virt-controller".into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
            renew: Duration::from_secs(5),
        }
    }
}

/// Whether `identity` may take or keep the lease at `now`: nobody holds it, we do, or the
/// holder's last renewal is older than its duration.
pub fn may_hold(lease: Option<&Lease>, identity: &str, now: Timestamp) -> bool {
    let Some(spec) = lease.and_then(|l| l.spec.as_ref()) else {
        return true;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() || holder == identity {
        return true;
    }
    let secs = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    match spec.renew_time.as_ref() {
        None => true,
        Some(t) => now.as_second() - t.0.as_second() > secs,
    }
}

/// The lease as we write it: held by us, renewed now; transitions counted when we take over.
pub fn held(lease: Option<&Lease>, cfg: &LeaseConfig, now: Timestamp) -> Lease {
    let mut out = lease.cloned().unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(cfg.name.clone()),
            namespace: Some(cfg.namespace.clone()),
            ..Default::default()
        },
        spec: None,
    });
    let spec = out.spec.get_or_insert_with(LeaseSpec::default);
    let taking_over = spec.holder_identity.as_deref() != Some(cfg.identity.as_str());
    if taking_over {
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions =
            Some(spec.lease_transitions.unwrap_or(0) + i32::from(lease.is_some()));
    }
    spec.holder_identity = Some(cfg.identity.clone());
    spec.lease_duration_seconds = Some(i32::try_from(cfg.duration.as_secs()).unwrap_or(15));
    spec.renew_time = Some(MicroTime(now));
    out
}

/// One attempt to take or renew the lease; whether we hold it afterwards.
pub async fn try_hold(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let current = api.get_opt(&cfg.name).await?;
    if !may_hold(current.as_ref(), &cfg.identity, now) {
        return Ok(false);
    }
    let lease = held(current.as_ref(), cfg, now);
    let res = match current {
        None => api.create(&PostParams::default(), &lease).await,
        Some(_) => api.replace(&cfg.name, &PostParams::default(), &lease).await,
    };
    match res {
        Ok(_) => Ok(true),
        // Someone else wrote it first.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Waits until we hold the lease.
pub async fn acquire(api: &Api<Lease>, cfg: &LeaseConfig) {
    loop {
        match try_hold(api, cfg).await {
            Ok(true) => {
                tracing::info!(identity = %cfg.identity, lease = %cfg.name, "became the leader");
                return;
            }
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "taking the lease failed"),
        }
        tokio::time::sleep(cfg.renew).await;
    }
}

/// Renews the lease until a renewal is impossible for longer than its duration; then returns
/// (the caller stops leading).
pub async fn keep(api: &Api<Lease>, cfg: &LeaseConfig) {
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(cfg.renew).await;
        match try_hold(api, cfg).await {
            Ok(true) => last = tokio::time::Instant::now(),
            Ok(false) => {
                tracing::warn!(identity = %cfg.identity, "lost the lease to another holder");
                return;
            }
            Err(error) => tracing::warn!(%error, "renewing the lease failed"),
        }
        if last.elapsed() > cfg.duration {
            tracing::warn!(identity = %cfg.identity, "could not renew the lease in time");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    #[test]
    fn expired_or_own_leases_can_be_held() {
        let a = LeaseConfig::new("kubevirt", "a");
        let b = LeaseConfig::new("kubevirt", "b");
        assert!(may_hold(None, "a", now()));
        let mine = held(None, &a, now());
        assert_eq!(
            mine.spec.as_ref().unwrap().holder_identity.as_deref(),
            Some("a")
        );
        assert!(may_hold(Some(&mine), "a", now()));
        assert!(!may_hold(Some(&mine), "b", now()));
        let later = now()
            .checked_add(jiff::SignedDuration::from_secs(16))
            .unwrap();
        assert!(may_hold(Some(&mine), "b", later));
        let taken = held(Some(&mine), &b, later);
        let spec = taken.spec.unwrap();
        assert_eq!(spec.lease_transitions, Some(1));
        assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    }
}
