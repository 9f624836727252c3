//! Health checks of an instance (`spec.livenessProbe`, `spec.readinessProbe`): KubeVirt's own
//! probe type, which can also ask the guest agent.

use k8s_openapi::api::core::v1::{ExecAction, HTTPGetAction, TCPSocketAction};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A periodic health check of an instance: whether it is alive, or ready for traffic.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    /// The check to run (exactly one).
    #[serde(flatten)]
    pub handler: Handler,
    /// How many consecutive failures after a success make the probe fail; 3 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<i32>,
    /// Seconds to wait after the instance started before the first check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay_seconds: Option<i32>,
    /// Seconds between checks; 10 when unset, at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<i32>,
    /// How many consecutive successes after a failure make the probe pass; 1 when unset (and
    /// always 1 for liveness).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<i32>,
    /// Seconds after which a check counts as failed; 1 when unset. A timed-out guest command
    /// keeps running in the guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i32>,
}

impl Probe {
    /// The JSON name of the check this probe runs (`exec`, `guestAgentPing`, `httpGet` or
    /// `tcpSocket`), or `None` when none is set.
    pub fn handler_kind(&self) -> Option<&'static str> {
        let h = &self.handler;
        if h.exec.is_some() {
            Some("exec")
        } else if h.guest_agent_ping.is_some() {
            Some("guestAgentPing")
        } else if h.http_get.is_some() {
            Some("httpGet")
        } else if h.tcp_socket.is_some() {
            Some("tcpSocket")
        } else {
            None
        }
    }
}

/// The check a probe runs; exactly one member is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Handler {
    /// A command run inside the guest through the guest agent; exit status 0 is healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,
    /// A ping of the guest agent; failures while the guest is migrating or deliberately paused
    /// are ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_agent_ping: Option<GuestAgentPing>,
    /// An HTTP GET against the guest; a 2xx or 3xx answer is healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HTTPGetAction>,
    /// A TCP connection to a port of the guest; connecting is healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TCPSocketAction>,
}

/// Marker: check health by pinging the guest agent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GuestAgentPing {}
