//! Pod workers: one task per pod on this node, which sets up the pod's sandbox (directory,
//! network namespace, cgroup, volumes), runs its init containers then its containers through
//! the shim, restarts them per `restartPolicy` with back-off, runs probes, terminates gracefully
//! on deletion, and reports status. A worker adopts containers a previous kubelet started: all it
//! needs is on disk.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, Pod, PodStatus, Secret,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::EventType;
use nix::sys::signal::Signal;
use tokio::sync::{Notify, watch};

use crate::backoff::should_restart;
use crate::images::{self, ImageKind, expand, program_args};
use crate::shim::{Exited, ShimSpec, Started};
use crate::status::{ContainerInfo, StatusInput};
use crate::{Shared, downward, network, probes, runtime, volumes};

/// The launcher's environment variable for the node's QEMU capability cache.
const LIBVIRT_CACHE_ENV: &str = "KUBEVIRT_RS_LIBVIRT_CACHE";

/// The pod's sandbox: what its containers share.
#[derive(Clone, Debug)]
struct Sandbox {
    ip: Ipv4Addr,
    netns: PathBuf,
    cgroup_procs: Vec<PathBuf>,
    volumes: BTreeMap<String, volumes::Ready>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct NetworkRecord {
    ip: Ipv4Addr,
    netns: String,
}

/// What the worker knows about one container.
#[derive(Default)]
struct C {
    attempt: u32,
    started: Option<Started>,
    exited: Option<Exited>,
    restart_count: i32,
    last: Option<ContainerStateTerminated>,
    /// Restarts in a row without a long enough run in between (drives the back-off).
    consecutive: u32,
    backoff_until: Option<Instant>,
    waiting: Option<(String, Option<String>)>,
    image_id: String,
    ready: bool,
    startup_done: bool,
    started_instant: Option<Instant>,
    liveness: Option<probes::State>,
    readiness: Option<probes::State>,
    startup: Option<probes::State>,
    /// A kill sent (liveness failure or deletion) and when to escalate to SIGKILL.
    kill_deadline: Option<Instant>,
    watched: bool,
    /// The pod's OOM kill count when this attempt started; a SIGKILL with a higher count after
    /// is reported as OOMKilled.
    oom_before: u64,
    oom_killed: bool,
}

impl C {
    fn running(&self) -> bool {
        self.started.is_some() && self.exited.is_none()
    }
    fn container_id(&self) -> Option<String> {
        self.started.as_ref().map(|s| format!("kvrs://{}", s.pid))
    }
    fn terminated(&self) -> Option<ContainerStateTerminated> {
        let e = self.exited.as_ref()?;
        Some(ContainerStateTerminated {
            exit_code: e.exit_code,
            signal: e.signal,
            reason: Some(
                if e.error.is_some() {
                    "StartError"
                } else if self.oom_killed {
                    "OOMKilled"
                } else if e.exit_code == 0 {
                    "Completed"
                } else {
                    "Error"
                }
                .into(),
            ),
            message: e.error.clone(),
            started_at: self
                .started
                .as_ref()
                .and_then(|s| s.started_at.parse().ok())
                .map(Time),
            finished_at: e.finished_at.parse().ok().map(Time),
            container_id: self.container_id(),
        })
    }
}

pub(crate) struct Worker {
    shared: Arc<Shared>,
    uid: String,
    dir: PathBuf,
    sandbox: Option<Sandbox>,
    containers: HashMap<String, C>,
    loaded: bool,
    start_time: Option<Timestamp>,
    last_status: Option<PodStatus>,
    wake: Arc<Notify>,
    terminating: Option<Instant>,
    phase_override: Option<(String, String, String)>,
    admitted: bool,
    deadline_wake: Option<Duration>,
    /// When configMap, secret, downwardAPI and projected volumes were last written.
    volumes_written: Option<Instant>,
}

enum Next {
    After(Duration),
    Done,
}

fn pod_key(pod: &Pod) -> (String, String) {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

/// Runs a pod's worker until the pod is gone.
pub(crate) async fn run_worker(
    shared: Arc<Shared>,
    uid: String,
    mut rx: watch::Receiver<Option<Arc<Pod>>>,
) {
    let dir = shared.root.join("pods").join(&uid);
    let mut w = Worker {
        shared,
        uid,
        dir,
        sandbox: None,
        containers: HashMap::new(),
        loaded: false,
        start_time: None,
        last_status: None,
        wake: Arc::new(Notify::new()),
        terminating: None,
        phase_override: None,
        admitted: false,
        deadline_wake: None,
        volumes_written: None,
    };
    loop {
        let pod = rx.borrow_and_update().clone();
        let next = match pod {
            None => {
                w.teardown(true).await;
                Next::Done
            }
            Some(p) => w.sync(&p).await,
        };
        match next {
            Next::Done => break,
            Next::After(d) => {
                tokio::select! {
                    r = rx.changed() => if r.is_err() {
                        // The kubelet is stopping: leave everything running.
                        break;
                    },
                    _ = w.wake.notified() => {}
                    _ = tokio::time::sleep(d) => {}
                }
            }
        }
    }
}

impl Worker {
    fn event(&self, pod: &Pod, type_: EventType, reason: &str, note: String) {
        let shared = self.shared.clone();
        let reference = kube::Resource::object_ref(pod, &());
        let reason = reason.to_string();
        tokio::spawn(async move {
            let ev = kube::runtime::events::Event {
                type_,
                reason,
                note: Some(note),
                action: "Sync".into(),
                secondary: None,
            };
            if let Err(e) = shared.recorder.publish(&ev, &reference).await {
                tracing::debug!(error = %e, "event not published");
            }
        });
    }

    /// Reads what earlier kubelets recorded for this pod's containers.
    fn load(&mut self, pod: &Pod) {
        if self.loaded {
            return;
        }
        self.loaded = true;
        let spec = pod.spec.clone().unwrap_or_default();
        for c in spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
        {
            let attempts = runtime::attempts(&self.dir, &c.name);
            let Some(&last) = attempts.last() else {
                continue;
            };
            let dir = runtime::attempt_dir(&self.dir, &c.name, last);
            let mut st = C {
                attempt: last,
                started: runtime::read_started(&dir),
                exited: runtime::read_exited(&dir),
                restart_count: attempts.len() as i32 - 1,
                consecutive: attempts.len() as u32 - 1,
                image_id: std::fs::read_to_string(dir.join("image-id")).unwrap_or_default(),
                ..C::default()
            };
            if let Some(prev) = attempts.iter().rev().nth(1) {
                let pdir = runtime::attempt_dir(&self.dir, &c.name, *prev);
                let p = C {
                    started: runtime::read_started(&pdir),
                    exited: runtime::read_exited(&pdir),
                    ..C::default()
                };
                st.last = p.terminated();
            }
            if let Some(s) = &st.started
                && st.exited.is_none()
                && !runtime::alive(s)
            {
                // The shim died without recording an exit (machine reboot, SIGKILL).
                st.exited = Some(Exited {
                    exit_code: 137,
                    signal: Some(9),
                    finished_at: crate::shim::now_rfc3339(),
                    error: None,
                });
            }
            if st.running() {
                st.started_instant = Some(Instant::now());
                // Adopted: treat as started for startup probes (it was running before).
                st.startup_done = true;
            }
            tracing::info!(uid = %self.uid, container = %c.name, attempt = last, running = st.running(), "adopted container");
            self.containers.insert(c.name.clone(), st);
        }
        if let Ok(b) = std::fs::read(self.dir.join("start-time"))
            && let Ok(t) = String::from_utf8_lossy(&b).trim().parse()
        {
            self.start_time = Some(t);
        }
        self.last_status = pod.status.clone();
    }

    async fn sync(&mut self, pod: &Pod) -> Next {
        self.load(pod);
        let (ns, name) = pod_key(pod);
        self.refresh_exits();
        if pod.metadata.deletion_timestamp.is_some() {
            return self.terminate(pod).await;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) && !self.any_running() {
            if self.sandbox.is_some()
                || network::netns_path(&network::pod_netns(
                    &self.shared.config.node_name,
                    &self.uid,
                ))
                .exists()
            {
                self.teardown(false).await;
            }
            return Next::After(Duration::from_secs(3600));
        }
        // Failed here (admission, deadline): stop what runs, report, wait for the deletion.
        if self.phase_override.is_some() {
            self.escalate_kills();
            self.report(pod).await;
            return Next::After(if self.any_running() {
                Duration::from_millis(100)
            } else {
                Duration::from_secs(3600)
            });
        }
        if !self.admitted {
            let requests = pod
                .spec
                .as_ref()
                .map(kubevirt_embedded_scheduler::predicates::pod_requests)
                .unwrap_or_default();
            let adopted = !self.containers.is_empty() || phase == Some("Running");
            let verdict = match self.shared.admitted.lock() {
                Ok(mut admitted) => {
                    let others = admitted
                        .iter()
                        .filter(|(u, _)| **u != self.uid)
                        .map(|(_, r)| r);
                    let v = if adopted {
                        Ok(())
                    } else {
                        crate::admission::admit(&requests, others, &self.shared.allocatable)
                    };
                    if v.is_ok() {
                        admitted.insert(self.uid.clone(), requests);
                    }
                    v
                }
                Err(_) => Ok(()),
            };
            match verdict {
                Ok(()) => self.admitted = true,
                Err((reason, message)) => {
                    tracing::info!(namespace = %ns, name = %name, uid = %self.uid, %reason, "pod rejected");
                    self.event(pod, EventType::Warning, &reason, message.clone());
                    self.phase_override = Some(("Failed".into(), reason, message));
                    self.report(pod).await;
                    return Next::After(Duration::from_secs(3600));
                }
            }
        }
        if self.start_time.is_none() {
            let now = Timestamp::now();
            let _ = std::fs::create_dir_all(&self.dir);
            let _ = std::fs::write(self.dir.join("start-time"), now.to_string());
            self.start_time = Some(now);
        }
        if let (Some(d), Some(start)) = (
            pod.spec.as_ref().and_then(|s| s.active_deadline_seconds),
            self.start_time,
        ) {
            let deadline = start
                .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(d))
                .unwrap_or(start);
            if Timestamp::now() >= deadline {
                let msg = "Pod was active on the node longer than the specified deadline";
                self.event(pod, EventType::Normal, "DeadlineExceeded", msg.into());
                let names: Vec<String> = self
                    .containers
                    .iter()
                    .filter(|(_, c)| c.running())
                    .map(|(n, _)| n.clone())
                    .collect();
                for n in names {
                    if let Some(c) = spec_container(pod, &n) {
                        self.kill_for_restart(pod, &c, &format!("Stopping container {n}"));
                    }
                }
                self.phase_override =
                    Some(("Failed".into(), "DeadlineExceeded".into(), msg.into()));
                self.report(pod).await;
                return Next::After(Duration::from_millis(100));
            }
            let left =
                Duration::try_from(deadline.duration_since(Timestamp::now())).unwrap_or_default();
            self.deadline_wake = Some(left);
        }
        if self.sandbox.is_none() {
            match self.ensure_sandbox(pod).await {
                Ok(s) => self.sandbox = Some(s),
                Err((reason, msg)) => {
                    tracing::warn!(namespace = %ns, name = %name, uid = %self.uid, %reason, %msg, "sandbox not ready");
                    self.event(pod, EventType::Warning, &reason, msg.clone());
                    self.set_all_waiting(pod, "ContainerCreating", None);
                    self.report(pod).await;
                    return Next::After(Duration::from_secs(2));
                }
            }
        }
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        let mut wake = Duration::from_secs(30);
        // Init containers, one after another; the containers wait until all succeeded.
        let mut init_done = true;
        for c in spec.init_containers.iter().flatten() {
            let st = self.containers.entry(c.name.clone()).or_default();
            if st
                .exited
                .as_ref()
                .is_some_and(|e| e.exit_code == 0 && e.error.is_none())
            {
                continue;
            }
            init_done = false;
            if st.running() {
                break;
            }
            let init_policy = if policy == "Always" {
                "OnFailure"
            } else {
                policy.as_str()
            };
            if let Some(d) = self.maybe_start(pod, c, init_policy).await {
                wake = wake.min(d);
            }
            break;
        }
        if !init_done {
            for c in &spec.containers {
                let st = self.containers.entry(c.name.clone()).or_default();
                if st.attempt == 0 {
                    st.waiting = Some(("PodInitializing".into(), None));
                }
            }
        } else {
            for c in &spec.containers {
                if let Some(d) = self.maybe_start(pod, c, &policy).await {
                    wake = wake.min(d);
                }
            }
            if let Some(d) = self.probe_all(pod).await {
                wake = wake.min(d);
            }
            wake = wake.min(self.refresh_volumes(pod).await);
        }
        self.escalate_kills();
        self.report(pod).await;
        if let Some(d) = self.deadline_wake.take() {
            wake = wake.min(d + Duration::from_millis(10));
        }
        Next::After(wake)
    }

    fn any_running(&self) -> bool {
        self.containers.values().any(C::running)
    }

    fn refresh_exits(&mut self) {
        for (name, st) in self.containers.iter_mut() {
            if st.running() {
                let dir = runtime::attempt_dir(&self.dir, name, st.attempt);
                if let Some(e) = runtime::read_exited(&dir) {
                    st.oom_killed = e.signal == Some(9)
                        && self.shared.cgroups.oom_kills(&self.uid) > st.oom_before;
                    st.exited = Some(e);
                    st.ready = false;
                    st.kill_deadline = None;
                } else if let Some(s) = &st.started
                    && !runtime::alive(s)
                {
                    // Gone without a record: the shim was killed.
                    st.exited = Some(Exited {
                        exit_code: 137,
                        signal: Some(9),
                        finished_at: crate::shim::now_rfc3339(),
                        error: None,
                    });
                    st.ready = false;
                }
            }
        }
    }

    fn escalate_kills(&mut self) {
        let now = Instant::now();
        for st in self.containers.values_mut() {
            if let (Some(d), Some(s)) = (st.kill_deadline, &st.started)
                && st.exited.is_none()
                && now >= d
            {
                runtime::signal(s.pid, Signal::SIGKILL);
                st.kill_deadline = None;
            }
        }
    }

    fn set_all_waiting(&mut self, pod: &Pod, reason: &str, msg: Option<String>) {
        let spec = pod.spec.clone().unwrap_or_default();
        for c in spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
        {
            let st = self.containers.entry(c.name.clone()).or_default();
            if st.attempt == 0 {
                st.waiting = Some((reason.into(), msg.clone()));
            }
        }
    }

    async fn ensure_sandbox(&mut self, pod: &Pod) -> Result<Sandbox, (String, String)> {
        let node = self.shared.config.node_name.clone();
        std::fs::create_dir_all(self.dir.join("logs"))
            .map_err(|e| ("FailedCreatePodSandBox".to_string(), e.to_string()))?;
        let rec_path = self.dir.join("network.json");
        let ip = match std::fs::read(&rec_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<NetworkRecord>(&b).ok())
        {
            Some(r) => r.ip,
            None => {
                let _g = self.shared.ip_lock.lock().await;
                let used = self.shared.used_ips();
                let ip = network::allocate(self.shared.addrs.index, &used)
                    .map_err(|e| ("FailedCreatePodSandBox".to_string(), e.to_string()))?;
                let rec = NetworkRecord {
                    ip,
                    netns: network::pod_netns(&node, &self.uid),
                };
                std::fs::write(&rec_path, serde_json::to_vec(&rec).unwrap_or_default())
                    .map_err(|e| ("FailedCreatePodSandBox".to_string(), e.to_string()))?;
                ip
            }
        };
        let netns = network::setup_pod(&node, &self.uid, &self.shared.addrs, ip)
            .await
            .map_err(|e| {
                (
                    "FailedCreatePodSandBox".to_string(),
                    format!("Failed to create pod sandbox: {e}"),
                )
            })?;
        let limits = pod_limits(pod);
        let cgroup_procs = self.shared.cgroups.create_pod(&self.uid, limits);
        let host_ip = self.shared.host_ip.clone();
        let ip_s = ip.to_string();
        let ctx = volumes::VolumeCtx {
            client: &self.shared.client,
            pod_dir: &self.dir,
            rt: downward::Runtime {
                pod_ip: Some(&ip_s),
                host_ip: &host_ip,
                node_name: &node,
            },
        };
        let vols = volumes::prepare(&ctx, pod).await.map_err(|e| {
            (
                "FailedMount".to_string(),
                format!("MountVolume.SetUp failed: {e}"),
            )
        })?;
        Ok(Sandbox {
            ip,
            netns: network::netns_path(&netns),
            cgroup_procs,
            volumes: vols,
        })
    }

    /// Rewrites the pod's configMap, secret, downwardAPI and projected volumes every
    /// `volume_refresh` (upstream's kubelet syncs them about once a minute); returns when to
    /// look again. Files are replaced atomically; containers see them through their bind mounts
    /// (not through `subPath` mounts, as upstream).
    async fn refresh_volumes(&mut self, pod: &Pod) -> Duration {
        let every = self.shared.config.volume_refresh;
        let now = Instant::now();
        let last = *self.volumes_written.get_or_insert(now);
        if now < last + every {
            return last + every - now;
        }
        self.volumes_written = Some(now);
        let Some(sandbox) = self.sandbox.clone() else {
            return every;
        };
        let node = self.shared.config.node_name.clone();
        let ip = sandbox.ip.to_string();
        let ctx = volumes::VolumeCtx {
            client: &self.shared.client,
            pod_dir: &self.dir,
            rt: downward::Runtime {
                pod_ip: Some(&ip),
                host_ip: &self.shared.host_ip,
                node_name: &node,
            },
        };
        if let Err(e) = volumes::prepare(&ctx, pod).await {
            tracing::warn!(uid = %self.uid, error = %e, "refreshing volumes failed");
        }
        every
    }

    /// Starts `c` if it should run now; returns when to look again (back-off).
    async fn maybe_start(&mut self, pod: &Pod, c: &Container, policy: &str) -> Option<Duration> {
        let policy_cfg = self.shared.config.backoff;
        let st = self.containers.entry(c.name.clone()).or_default();
        if st.running() {
            return None;
        }
        if st.attempt > 0 {
            let exited = st.exited.clone()?;
            if !should_restart(policy, exited.exit_code)
                || exited.error.is_some() && policy == "Never"
            {
                return None;
            }
            let now = Instant::now();
            let until = match st.backoff_until {
                Some(u) => u,
                None => {
                    let ran = match (&st.started, exited.finished_at.parse::<Timestamp>()) {
                        (Some(s), Ok(f)) => s
                            .started_at
                            .parse::<Timestamp>()
                            .ok()
                            .and_then(|s| Duration::try_from(f.duration_since(s)).ok())
                            .unwrap_or_default(),
                        _ => Duration::ZERO,
                    };
                    if ran >= policy_cfg.reset_after {
                        st.consecutive = 0;
                    }
                    let d = policy_cfg.delay(st.consecutive, ran);
                    let u = now + d;
                    st.backoff_until = Some(u);
                    u
                }
            };
            if now < until {
                let left = until - now;
                let msg = format!(
                    "back-off {}s restarting failed container={} pod={}_{}({})",
                    policy_cfg.delay(st.consecutive, Duration::ZERO).as_secs(),
                    c.name,
                    pod.metadata.name.as_deref().unwrap_or(""),
                    pod.metadata.namespace.as_deref().unwrap_or(""),
                    self.uid
                );
                if st.waiting.as_ref().map(|w| w.0.as_str()) != Some("CrashLoopBackOff") {
                    st.waiting = Some(("CrashLoopBackOff".into(), Some(msg.clone())));
                    self.event(
                        pod,
                        EventType::Warning,
                        "BackOff",
                        format!(
                            "Back-off restarting failed container {} in pod {}",
                            c.name,
                            pod.metadata.name.as_deref().unwrap_or("")
                        ),
                    );
                }
                return Some(left);
            }
            st.last = st.terminated();
        }
        self.start(pod, c).await
    }

    /// Starts one attempt of `c`.
    async fn start(&mut self, pod: &Pod, c: &Container) -> Option<Duration> {
        let image = c.image.clone().unwrap_or_default();
        let (program, rootfs, image_id) = match self.shared.config.images.lookup(&image) {
            ImageKind::Program(p) => (Some(p), None, format!("kvrs-program://{image}")),
            ImageKind::Data => {
                let st = self.containers.entry(c.name.clone()).or_default();
                if st.waiting.as_ref().map(|w| w.0.as_str()) != Some("ErrImagePull")
                    && st.waiting.as_ref().map(|w| w.0.as_str()) != Some("ImagePullBackOff")
                {
                    self.event(
                        pod,
                        EventType::Normal,
                        "Pulling",
                        format!("Pulling image \"{image}\""),
                    );
                }
                let policy = c
                    .image_pull_policy
                    .clone()
                    .unwrap_or_else(|| "IfNotPresent".into());
                match self.shared.puller.ensure(&image, &policy).await {
                    Ok(p) => {
                        let st = self.containers.entry(c.name.clone()).or_default();
                        st.waiting = None;
                        if !p.cached {
                            self.event(
                                pod,
                                EventType::Normal,
                                "Pulled",
                                format!(
                                    "Successfully pulled image \"{image}\" in {:.3}s",
                                    p.took.as_secs_f64()
                                ),
                            );
                        }
                        (None, Some(p.rootfs), p.image_id)
                    }
                    Err(e) => {
                        let st = self.containers.entry(c.name.clone()).or_default();
                        let first =
                            st.waiting.as_ref().map(|w| w.0.as_str()) != Some("ErrImagePull");
                        let (reason, delay) = if first {
                            ("ErrImagePull", Duration::from_secs(1))
                        } else {
                            ("ImagePullBackOff", self.shared.config.backoff.base)
                        };
                        let msg = if first {
                            e.clone()
                        } else {
                            format!("Back-off pulling image \"{image}\": {e}")
                        };
                        st.waiting = Some((reason.into(), Some(msg)));
                        self.event(
                            pod,
                            EventType::Warning,
                            if first { "Failed" } else { "BackOff" },
                            format!("Failed to pull image \"{image}\": {e}"),
                        );
                        return Some(delay);
                    }
                }
            }
        };
        let sandbox = self.sandbox.clone()?;
        let ip = sandbox.ip.to_string();
        let env = match self.env(pod, c, &ip).await {
            Ok(mut e) => {
                // The node's QEMU capability cache (DATA/nodes/<node>/libvirt-caps, see the
                // design notes) for launchers: the first one on the node probes QEMU (about 8 s
                // under TCG) and writes it back, the others start from it. A real node's
                // launcher image would carry it; ours is a program on the node.
                if images::repository_name(&image) == "virt-launcher"
                    && !e.iter().any(|(k, _)| k == LIBVIRT_CACHE_ENV)
                {
                    let caps = self.shared.config.node_dir().join("libvirt-caps");
                    e.push((
                        LIBVIRT_CACHE_ENV.into(),
                        caps.to_string_lossy().into_owned(),
                    ));
                }
                e
            }
            Err(msg) => {
                let st = self.containers.entry(c.name.clone()).or_default();
                st.waiting = Some(("CreateContainerConfigError".into(), Some(msg.clone())));
                self.event(pod, EventType::Warning, "Failed", format!("Error: {msg}"));
                return Some(Duration::from_secs(2));
            }
        };
        let mounts = match volumes::container_mounts(c, &sandbox.volumes) {
            Ok(mut m) => {
                // The pod's own /etc/hosts (localhost, and its name at its address), as
                // kubelets write it, unless a volume is mounted there.
                let hosts = self.dir.join("etc-hosts");
                let name = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.hostname.clone())
                    .or_else(|| pod.metadata.name.clone())
                    .unwrap_or_default();
                let text = etc_hosts(&ip, &name);
                if rootfs.is_none()
                    && !m
                        .iter()
                        .any(|b| b.target == std::path::Path::new("/etc/hosts"))
                    && std::fs::write(&hosts, text).is_ok()
                {
                    m.push(crate::shim::BindMount {
                        source: hosts,
                        target: PathBuf::from("/etc/hosts"),
                        read_only: false,
                    });
                }
                m
            }
            Err(e) => {
                let st = self.containers.entry(c.name.clone()).or_default();
                st.waiting = Some(("CreateContainerConfigError".into(), Some(e.to_string())));
                return Some(Duration::from_secs(2));
            }
        };
        let args: Vec<String> = program_args(c.command.as_deref(), c.args.as_deref())
            .iter()
            .map(|a| expand(a, &env))
            .collect();
        let st = self.containers.entry(c.name.clone()).or_default();
        let attempt = st.attempt + 1;
        let dir = runtime::attempt_dir(&self.dir, &c.name, attempt);
        let log = self.dir.join("logs").join(format!("{}.log", c.name));
        if attempt > 1 && log.exists() {
            let _ = std::fs::rename(
                &log,
                self.dir
                    .join("logs")
                    .join(format!("{}.previous.log", c.name)),
            );
        }
        let listen_socket = rootfs.as_ref().and_then(|_| copy_path_socket(&args));
        let spec = ShimSpec {
            program,
            args,
            env,
            working_dir: c.working_dir.clone().map(PathBuf::from),
            netns: Some(sandbox.netns.clone()),
            hostname: Some(
                pod.spec
                    .as_ref()
                    .and_then(|s| s.hostname.clone())
                    .or_else(|| pod.metadata.name.clone())
                    .unwrap_or_default(),
            ),
            mounts,
            listen_socket,
            rootfs,
            cgroup_procs: sandbox.cgroup_procs.clone(),
            log,
        };
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join("image-id"), &image_id);
        // Counted before the spawn: a program that outgrows its limit at once can be
        // OOM-killed before the spawn returns, and a count read after would already include it.
        let oom_before = self.shared.cgroups.oom_kills(&self.uid);
        let spawned = runtime::spawn(&self.shared.config.shim, &dir, &spec).await;
        let st = self.containers.entry(c.name.clone()).or_default();
        st.attempt = attempt;
        st.image_id = image_id;
        st.backoff_until = None;
        st.waiting = None;
        st.ready = false;
        st.startup_done = c.startup_probe.is_none();
        st.liveness = None;
        st.readiness = None;
        st.startup = None;
        st.kill_deadline = None;
        st.oom_killed = false;
        st.oom_before = oom_before;
        if attempt > 1 {
            st.restart_count += 1;
            st.consecutive += 1;
        }
        match spawned {
            Ok(mut child) => {
                st.started = runtime::read_started(&dir);
                st.exited = runtime::read_exited(&dir);
                st.started_instant = Some(Instant::now());
                let wake = self.wake.clone();
                tokio::spawn(async move {
                    let _ = child.wait().await;
                    wake.notify_one();
                });
                st.watched = true;
                let msg = st.exited.as_ref().and_then(|e| e.error.clone());
                let pid = st.started.as_ref().map(|s| s.pid);
                tracing::info!(uid = %self.uid, container = %c.name, attempt, pid, "started container");
                match msg {
                    Some(m) => self.event(pod, EventType::Warning, "Failed", format!("Error: {m}")),
                    None => {
                        self.event(
                            pod,
                            EventType::Normal,
                            "Created",
                            format!("Created container: {}", c.name),
                        );
                        self.event(
                            pod,
                            EventType::Normal,
                            "Started",
                            format!("Started container {}", c.name),
                        );
                    }
                }
                None
            }
            Err(e) => {
                st.exited = Some(Exited {
                    exit_code: 128,
                    signal: None,
                    finished_at: crate::shim::now_rfc3339(),
                    error: Some(e.to_string()),
                });
                Some(Duration::from_secs(1))
            }
        }
    }

    /// Watches adopted containers for their exit (spawned ones are watched through the child).
    fn watch_adopted(&mut self) {
        for st in self.containers.values_mut() {
            if st.running()
                && !st.watched
                && let Some(s) = st.started.clone()
            {
                st.watched = true;
                let wake = self.wake.clone();
                tokio::spawn(async move {
                    while runtime::alive(&s) {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    wake.notify_one();
                });
            }
        }
    }

    async fn probe_all(&mut self, pod: &Pod) -> Option<Duration> {
        self.watch_adopted();
        let sandbox = self.sandbox.clone()?;
        let ip = sandbox.ip.to_string();
        let spec = pod.spec.clone().unwrap_or_default();
        let mut next: Option<Duration> = None;
        let now = Instant::now();
        for c in &spec.containers {
            let Some(st) = self.containers.get_mut(&c.name) else {
                continue;
            };
            if !st.running() || st.kill_deadline.is_some() {
                continue;
            }
            let pid = st.started.as_ref().map(|s| s.pid).unwrap_or(0);
            let started = st.started_instant.unwrap_or(now);
            // Startup probe first; the others wait for it.
            if !st.startup_done {
                if let Some(p) = &c.startup_probe {
                    let t = probes::timing(p);
                    let state = st
                        .startup
                        .get_or_insert_with(|| probes::State::new(started, &t));
                    if now >= state.next {
                        let o = probes::run(p, c, pid, sandbox.netns.clone(), &ip).await;
                        tracing::debug!(uid = %self.uid, container = %c.name, outcome = ?o, "probe");
                        let st = self.containers.get_mut(&c.name)?;
                        let state = st.startup.as_mut()?;
                        match state.record(&o, &t, Instant::now()) {
                            Some(true) => st.startup_done = true,
                            Some(false) => {
                                let msg = format!(
                                    "Container {} failed startup probe, will be restarted",
                                    c.name
                                );
                                self.kill_for_restart(pod, c, &msg);
                            }
                            None => {}
                        }
                        if let probes::Outcome::Failure(m) = &o {
                            self.event(
                                pod,
                                EventType::Warning,
                                "Unhealthy",
                                format!("Startup probe failed: {m}"),
                            );
                        }
                    }
                    let st = self.containers.get_mut(&c.name)?;
                    if let Some(s) = &st.startup {
                        let d = s.next.saturating_duration_since(Instant::now());
                        next = Some(next.map_or(d, |n| n.min(d)));
                    }
                    continue;
                }
                st.startup_done = true;
            }
            let st = self.containers.get_mut(&c.name)?;
            match &c.readiness_probe {
                None => st.ready = true,
                Some(p) => {
                    let t = probes::timing(p);
                    let state = st
                        .readiness
                        .get_or_insert_with(|| probes::State::new(started, &t));
                    if now >= state.next {
                        let o = probes::run(p, c, pid, sandbox.netns.clone(), &ip).await;
                        tracing::debug!(uid = %self.uid, container = %c.name, outcome = ?o, "probe");
                        let st = self.containers.get_mut(&c.name)?;
                        let state = st.readiness.as_mut()?;
                        if let Some(r) = state.record(&o, &t, Instant::now()) {
                            st.ready = r;
                        }
                        if let probes::Outcome::Failure(m) = &o {
                            self.event(
                                pod,
                                EventType::Warning,
                                "Unhealthy",
                                format!("Readiness probe failed: {m}"),
                            );
                        }
                    }
                    let st = self.containers.get_mut(&c.name)?;
                    if let Some(s) = &st.readiness {
                        let d = s.next.saturating_duration_since(Instant::now());
                        next = Some(next.map_or(d, |n| n.min(d)));
                    }
                }
            }
            if let Some(p) = &c.liveness_probe {
                let st = self.containers.get_mut(&c.name)?;
                let t = probes::timing(p);
                let state = st
                    .liveness
                    .get_or_insert_with(|| probes::State::new(started, &t));
                if now >= state.next {
                    let o = probes::run(p, c, pid, sandbox.netns.clone(), &ip).await;
                    tracing::debug!(uid = %self.uid, container = %c.name, outcome = ?o, "probe");
                    let st = self.containers.get_mut(&c.name)?;
                    let state = st.liveness.as_mut()?;
                    let verdict = state.record(&o, &t, Instant::now());
                    if let probes::Outcome::Failure(m) = &o {
                        self.event(
                            pod,
                            EventType::Warning,
                            "Unhealthy",
                            format!("Liveness probe failed: {m}"),
                        );
                    }
                    if verdict == Some(false) {
                        let msg = format!(
                            "Container {} failed liveness probe, will be restarted",
                            c.name
                        );
                        self.kill_for_restart(pod, c, &msg);
                    }
                }
                let st = self.containers.get_mut(&c.name)?;
                if let Some(s) = &st.liveness {
                    let d = s.next.saturating_duration_since(Instant::now());
                    next = Some(next.map_or(d, |n| n.min(d)));
                }
            }
        }
        next
    }

    fn kill_for_restart(&mut self, pod: &Pod, c: &Container, msg: &str) {
        let grace = pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30)
            .max(0) as u64;
        if let Some(st) = self.containers.get_mut(&c.name)
            && let Some(s) = &st.started
        {
            runtime::signal(s.pid, Signal::SIGTERM);
            st.kill_deadline = Some(Instant::now() + Duration::from_secs(grace));
            st.ready = false;
        }
        self.event(pod, EventType::Normal, "Killing", msg.to_string());
    }

    /// Graceful termination of a deleted pod: SIGTERM, the grace period, SIGKILL; then the final
    /// status and the grace-0 delete that removes the pod from the API.
    async fn terminate(&mut self, pod: &Pod) -> Next {
        let now = Instant::now();
        let grace = pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                pod.spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30)
            .max(0) as u64;
        if self.terminating.is_none() {
            let deadline = now + Duration::from_secs(grace);
            self.terminating = Some(deadline);
            let names: Vec<String> = self
                .containers
                .iter()
                .filter(|(_, c)| c.running())
                .map(|(n, _)| n.clone())
                .collect();
            for n in names {
                if let Some(st) = self.containers.get_mut(&n)
                    && let Some(s) = &st.started
                {
                    runtime::signal(
                        s.pid,
                        if grace == 0 {
                            Signal::SIGKILL
                        } else {
                            Signal::SIGTERM
                        },
                    );
                    st.kill_deadline = Some(deadline);
                }
                self.event(
                    pod,
                    EventType::Normal,
                    "Killing",
                    format!("Stopping container {n}"),
                );
            }
            self.watch_adopted();
        }
        let deadline = self.terminating.unwrap_or(now);
        // A shorter grace period from a second delete.
        if now + Duration::from_secs(grace) < deadline {
            self.terminating = Some(now + Duration::from_secs(grace));
            for st in self.containers.values_mut() {
                st.kill_deadline = self.terminating;
            }
        }
        self.escalate_kills();
        self.refresh_exits();
        if self.any_running() {
            return Next::After(Duration::from_millis(100));
        }
        // Final status: every container terminated; the phase is terminal.
        let all_ok = self
            .containers
            .values()
            .all(|c| c.exited.as_ref().is_none_or(|e| e.exit_code == 0));
        let phase = if all_ok { "Succeeded" } else { "Failed" };
        self.phase_override = Some((phase.into(), String::new(), String::new()));
        self.report(pod).await;
        let (ns, name) = pod_key(pod);
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), &ns);
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => {
                tracing::warn!(namespace = %ns, name = %name, uid = %self.uid, error = %e, "final delete failed");
                return Next::After(Duration::from_secs(1));
            }
        }
        tracing::info!(namespace = %ns, name = %name, uid = %self.uid, "pod terminated and deleted");
        self.teardown(true).await;
        Next::Done
    }

    /// Stops what is left and removes the sandbox; with `remove`, also the pod directory.
    async fn teardown(&mut self, remove: bool) {
        runtime::kill_all(&self.dir);
        for _ in 0..50 {
            self.refresh_exits();
            if !self.any_running() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Ok(mut a) = self.shared.admitted.lock() {
            a.remove(&self.uid);
        }
        self.admitted = false;
        network::teardown_pod(&self.shared.config.node_name, &self.uid).await;
        self.shared
            .cgroups
            .kill_remaining_and_remove(&self.uid, Duration::from_secs(3))
            .await;
        volumes::unmount_all(&self.dir);
        self.sandbox = None;
        if remove {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn infos(&self, list: &[Container]) -> Vec<ContainerInfo> {
        list.iter()
            .map(|c| {
                let st = self.containers.get(&c.name);
                let state = match st {
                    Some(st) if st.running() => ContainerState {
                        running: Some(ContainerStateRunning {
                            started_at: st
                                .started
                                .as_ref()
                                .and_then(|s| s.started_at.parse().ok())
                                .map(Time),
                        }),
                        ..ContainerState::default()
                    },
                    Some(st) if st.waiting.is_some() => {
                        let (r, m) = st.waiting.clone().unwrap_or_default();
                        ContainerState {
                            waiting: Some(ContainerStateWaiting {
                                reason: Some(r),
                                message: m,
                            }),
                            ..ContainerState::default()
                        }
                    }
                    Some(st) if st.exited.is_some() => ContainerState {
                        terminated: st.terminated(),
                        ..ContainerState::default()
                    },
                    _ => ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some("ContainerCreating".into()),
                            message: None,
                        }),
                        ..ContainerState::default()
                    },
                };
                let image = c.image.clone().unwrap_or_default();
                ContainerInfo {
                    name: c.name.clone(),
                    image: image.clone(),
                    image_id: st.map(|s| s.image_id.clone()).unwrap_or_default(),
                    container_id: st.and_then(C::container_id),
                    last_state: st.and_then(|s| s.last.clone()).map(|t| ContainerState {
                        terminated: Some(t),
                        ..ContainerState::default()
                    }),
                    restart_count: st.map(|s| s.restart_count).unwrap_or(0),
                    ready: st.is_some_and(|s| s.running() && s.ready && s.startup_done),
                    started: st.is_some_and(|s| s.running() && s.startup_done),
                    state,
                }
            })
            .collect()
    }

    async fn report(&mut self, pod: &Pod) {
        let spec = pod.spec.clone().unwrap_or_default();
        let init = self.infos(spec.init_containers.as_deref().unwrap_or(&[]));
        let containers = self.infos(&spec.containers);
        let policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        let ov = self
            .phase_override
            .as_ref()
            .map(|(p, r, m)| (p.as_str(), r.clone(), m.clone()));
        let input = StatusInput {
            restart_policy: &policy,
            init: &init,
            containers: &containers,
            sandbox_ready: self.sandbox.is_some(),
            pod_ip: self.sandbox.as_ref().map(|s| s.ip.to_string()),
            host_ip: self.shared.host_ip.clone(),
            start_time: self.start_time,
            phase_override: ov,
            old: pod.status.as_ref(),
            now: Timestamp::now(),
        };
        let mut status = crate::status::pod_status(&input);
        if status.reason.as_deref() == Some("") {
            status.reason = None;
            status.message = None;
        }
        if let Some(last) = &self.last_status
            && crate::status::same(last, &status)
        {
            return;
        }
        if pod
            .status
            .as_ref()
            .is_some_and(|s| crate::status::same(s, &status))
        {
            self.last_status = Some(status);
            return;
        }
        let (ns, name) = pod_key(pod);
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), &ns);
        let patch = serde_json::json!({"status": status});
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => {
                tracing::debug!(namespace = %ns, name = %name, uid = %self.uid, phase = ?status.phase, "status updated");
                self.last_status = Some(status);
            }
            Err(e) => {
                tracing::warn!(namespace = %ns, name = %name, uid = %self.uid, error = %e, "status update failed")
            }
        }
    }

    /// The container's environment: defaults, `envFrom`, then `env` with `$(VAR)` expansion and
    /// `valueFrom` (downward API, configMap and secret keys).
    async fn env(
        &self,
        pod: &Pod,
        c: &Container,
        ip: &str,
    ) -> Result<Vec<(String, String)>, String> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let mut env: Vec<(String, String)> = vec![
            (
                "PATH".into(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            ),
            (
                "HOSTNAME".into(),
                pod.metadata.name.clone().unwrap_or_default(),
            ),
        ];
        let set = |env: &mut Vec<(String, String)>, k: String, v: String| {
            env.retain(|(n, _)| *n != k);
            env.push((k, v));
        };
        let cms: Api<ConfigMap> = Api::namespaced(self.shared.client.clone(), &ns);
        let secrets: Api<Secret> = Api::namespaced(self.shared.client.clone(), &ns);
        for from in c.env_from.iter().flatten() {
            let prefix = from.prefix.clone().unwrap_or_default();
            if let Some(r) = &from.config_map_ref {
                match cms.get_opt(&r.name).await.map_err(|e| e.to_string())? {
                    Some(cm) => {
                        for (k, v) in cm.data.unwrap_or_default() {
                            set(&mut env, format!("{prefix}{k}"), v);
                        }
                    }
                    None if r.optional.unwrap_or(false) => {}
                    None => return Err(format!("configmap \"{}\" not found", r.name)),
                }
            }
            if let Some(r) = &from.secret_ref {
                match secrets.get_opt(&r.name).await.map_err(|e| e.to_string())? {
                    Some(s) => {
                        for (k, v) in s.data.unwrap_or_default() {
                            set(
                                &mut env,
                                format!("{prefix}{k}"),
                                String::from_utf8_lossy(&v.0).into_owned(),
                            );
                        }
                    }
                    None if r.optional.unwrap_or(false) => {}
                    None => return Err(format!("secret \"{}\" not found", r.name)),
                }
            }
        }
        let node = self.shared.config.node_name.clone();
        let rt = downward::Runtime {
            pod_ip: Some(ip),
            host_ip: &self.shared.host_ip,
            node_name: &node,
        };
        for e in c.env.iter().flatten() {
            let value = if let Some(v) = &e.value {
                expand(v, &env)
            } else if let Some(from) = &e.value_from {
                if let Some(f) = &from.field_ref {
                    downward::field(pod, &f.field_path, &rt)
                        .ok_or_else(|| format!("unsupported fieldPath: {}", f.field_path))?
                } else if let Some(r) = &from.resource_field_ref {
                    downward::resource(pod, &c.name, r).unwrap_or_default()
                } else if let Some(k) = &from.config_map_key_ref {
                    match cms.get_opt(&k.name).await.map_err(|e| e.to_string())? {
                        Some(cm) => match cm.data.and_then(|d| d.get(&k.key).cloned()) {
                            Some(v) => v,
                            None if k.optional.unwrap_or(false) => continue,
                            None => {
                                return Err(format!(
                                    "couldn't find key {} in ConfigMap {ns}/{}",
                                    k.key, k.name
                                ));
                            }
                        },
                        None if k.optional.unwrap_or(false) => continue,
                        None => return Err(format!("configmap \"{}\" not found", k.name)),
                    }
                } else if let Some(k) = &from.secret_key_ref {
                    match secrets.get_opt(&k.name).await.map_err(|e| e.to_string())? {
                        Some(s) => match s.data.and_then(|d| d.get(&k.key).cloned()) {
                            Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                            None if k.optional.unwrap_or(false) => continue,
                            None => {
                                return Err(format!(
                                    "couldn't find key {} in Secret {ns}/{}",
                                    k.key, k.name
                                ));
                            }
                        },
                        None if k.optional.unwrap_or(false) => continue,
                        None => return Err(format!("secret \"{}\" not found", k.name)),
                    }
                } else {
                    String::new()
                }
            } else {
                String::new()
            };
            set(&mut env, e.name.clone(), value);
        }
        Ok(env)
    }
}

fn spec_container(pod: &Pod, name: &str) -> Option<Container> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == name)
        .cloned()
}

/// A pod's `/etc/hosts`.
pub fn etc_hosts(ip: &str, hostname: &str) -> String {
    format!(
        "# Kubernetes-managed hosts file (kubevirt-rs embedded kubelet).\n127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n{ip}\t{hostname}\n"
    )
}

/// `P.sock` for a data container started as upstream's `container-disk --copy-path P`.
pub fn copy_path_socket(args: &[String]) -> Option<PathBuf> {
    let i = args.iter().position(|a| a == "--copy-path")?;
    args.get(i + 1).map(|p| PathBuf::from(format!("{p}.sock")))
}

/// Pod-level limits: the sum of the containers' limits (when every container sets one).
pub fn pod_limits(pod: &Pod) -> crate::cgroup::Limits {
    use kubevirt_embedded_scheduler::quantity::{parse_milli, parse_units};
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or(&[]);
    let sum = |res: &str, parse: fn(&str) -> Option<i128>| -> Option<i128> {
        let mut total = 0;
        for c in containers {
            let q = c.resources.as_ref()?.limits.as_ref()?.get(res)?;
            total += parse(&q.0)?;
        }
        (!containers.is_empty()).then_some(total)
    };
    crate::cgroup::Limits {
        memory_bytes: sum("memory", parse_units),
        cpu_millis: sum("cpu", parse_milli),
    }
}
