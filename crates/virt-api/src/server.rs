//! virt-api's HTTPS endpoints: one POST route per webhook path, and `/healthz`.

use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kubevirt_api::config::ClusterConfig;

use crate::admission::{self, Endpoint, Inputs};

/// What the handlers share: the cluster configuration, replaced when the KubeVirt CR changes.
#[derive(Default)]
pub struct Shared {
    pub config: RwLock<ClusterConfig>,
}

/// The router serving every webhook endpoint.
pub fn router(shared: Arc<Shared>) -> Router {
    let mut r = Router::new().route("/healthz", get(|| async { "ok" }));
    for endpoint in Endpoint::ALL {
        r = r.route(
            endpoint.path(),
            post(
                move |State(s): State<Arc<Shared>>, body: Bytes| async move {
                    handle(&s, endpoint, &body)
                },
            ),
        );
    }
    r.with_state(shared)
}

fn handle(shared: &Shared, endpoint: Endpoint, body: &[u8]) -> Response {
    // A poisoned lock only means another request panicked mid-update; the config is still whole.
    let cfg = shared
        .config
        .read()
        .map(|c| c.clone())
        .unwrap_or_else(|p| p.into_inner().clone());
    let mut new_uuid = admission::random_uuid;
    let mut inputs = Inputs {
        cfg: &cfg,
        new_uuid: &mut new_uuid,
        now: Time(jiff::Timestamp::now()),
    };
    let answer = admission::review(endpoint, body, &mut inputs);
    tracing::debug!(path = endpoint.path(), allowed = %answer["response"]["allowed"], "admission");
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        answer.to_string(),
    )
        .into_response()
}
