//! Admission webhooks against `virt-cluster apiserver`: a mutating webhook that sets labels (its
//! patch once as base64, once as a list of byte values) and a validating webhook that denies a
//! name, both served over TLS by this test; namespace selectors, warnings, dry runs and side
//! effects, and failure policies with the webhook down or too slow.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::post;
use base64::Engine;
use common::{KUBECTL_133, Server};
use serde_json::{Value, json};

/// The reviews the test webhooks received.
type Seen = Arc<Mutex<Vec<Value>>>;

struct Hook {
    addr: SocketAddr,
    ca: String,
    seen: Seen,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn label_patch(object: &Value, key: &str) -> Value {
    if object
        .pointer("/metadata/labels")
        .is_some_and(Value::is_object)
    {
        json!([{"op": "add", "path": format!("/metadata/labels/{key}"), "value": "yes"}])
    } else {
        json!([{"op": "add", "path": "/metadata/labels", "value": {key: "yes"}}])
    }
}

fn answer(review: &Value, response: Value) -> Json<Value> {
    let mut r = response;
    r["uid"] = review["request"]["uid"].clone();
    Json(json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": r}))
}

async fn mutate(State(seen): State<Seen>, Json(review): Json<Value>) -> Json<Value> {
    seen.lock().expect("lock").push(review.clone());
    let patch = label_patch(&review["request"]["object"], "mutated");
    let b64 = base64::engine::general_purpose::STANDARD.encode(patch.to_string());
    answer(
        &review,
        json!({"allowed": true, "patchType": "JSONPatch", "patch": b64,
               "warnings": ["the test webhook added a label"]}),
    )
}

async fn mutate_bytes(State(seen): State<Seen>, Json(review): Json<Value>) -> Json<Value> {
    seen.lock().expect("lock").push(review.clone());
    let patch = label_patch(&review["request"]["object"], "bytes");
    let bytes: Vec<Value> = patch.to_string().bytes().map(|b| json!(b)).collect();
    answer(
        &review,
        json!({"allowed": true, "patchType": "JSONPatch", "patch": bytes}),
    )
}

async fn mutate_svc(Json(review): Json<Value>) -> Json<Value> {
    let patch = label_patch(&review["request"]["object"], "svc");
    let b64 = base64::engine::general_purpose::STANDARD.encode(patch.to_string());
    answer(
        &review,
        json!({"allowed": true, "patchType": "JSONPatch", "patch": b64}),
    )
}

async fn validate(State(seen): State<Seen>, Json(review): Json<Value>) -> Json<Value> {
    seen.lock().expect("lock").push(review.clone());
    let req = &review["request"];
    let obj = if req["object"].is_null() {
        &req["oldObject"]
    } else {
        &req["object"]
    };
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if name.starts_with("forbidden") {
        return answer(
            &review,
            json!({"allowed": false, "status": {"code": 403, "reason": "Forbidden",
                   "message": "objects named forbidden-* are not allowed"}}),
        );
    }
    answer(&review, json!({"allowed": true}))
}

async fn slow(Json(review): Json<Value>) -> Json<Value> {
    // Far beyond the hook's 1 s timeoutSeconds, so the bound the test checks (which includes
    // starting kubectl on a loaded machine) can be generous and still prove the timeout applied.
    tokio::time::sleep(Duration::from_secs(30)).await;
    answer(&review, json!({"allowed": true}))
}

async fn start_hook() -> Hook {
    let pki = kubevirt_https::SelfSigned::generate(
        "test-webhook-ca",
        &["127.0.0.1", "test-hook.hooks.svc"],
    )
    .expect("webhook pki");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: Seen = Arc::default();
    let router = Router::new()
        .route("/mutate", post(mutate))
        .route("/mutate-bytes", post(mutate_bytes))
        .route("/mutate-svc", post(mutate_svc))
        .route("/validate", post(validate))
        .route("/slow", post(slow))
        .with_state(seen.clone());
    let task = kubevirt_https::serve(listener, pki.server_config().expect("tls"), router);
    Hook {
        addr,
        ca: pki.ca_pem,
        seen,
        task,
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// One webhook entry pointing at `url` with `ca`.
fn webhook(name: &str, url: &str, ca: &str, resources: &[&str], extra: Value) -> Value {
    let mut w = json!({
        "name": name,
        "clientConfig": {"url": url, "caBundle": b64(ca)},
        "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE", "DELETE"],
                   "resources": resources}],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
    });
    if let (Some(w), Some(e)) = (w.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            w.insert(k.clone(), v.clone());
        }
    }
    w
}

fn apply(s: &Server, name: &str, doc: &Value) {
    let path = s.dir.join(format!("{name}.json"));
    std::fs::write(&path, doc.to_string()).expect("write manifest");
    s.ok(KUBECTL_133, &["apply", "-f", path.to_str().expect("path")]);
}

/// `kubectl create -f` of a ConfigMap (kubectl prints a server's Status as it is only for
/// manifests; `kubectl create configmap` words errors its own way).
fn create_cm(s: &Server, ns: &str, name: &str) -> std::process::Output {
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}});
    let path = s.dir.join(format!("cm-{ns}-{name}.json"));
    std::fs::write(&path, cm.to_string()).expect("write manifest");
    s.kubectl(KUBECTL_133, &["create", "-f", path.to_str().expect("path")])
}

fn failed(out: std::process::Output) -> String {
    assert!(
        !out.status.success(),
        "should have failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn configuration(kind: &str, name: &str, hooks: Vec<Value>) -> Value {
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
           "metadata": {"name": name}, "webhooks": hooks})
}

fn labels(s: &Server, args: &[&str]) -> Value {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", "jsonpath={.metadata.labels}"]);
    let out = s.ok(KUBECTL_133, &a);
    if out.trim().is_empty() {
        json!({})
    } else {
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("labels {out:?}: {e}"))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mutating_then_validating_webhooks() {
    let hook = start_hook().await;
    let s = Server::start();
    let k = KUBECTL_133;
    s.ok(k, &["create", "namespace", "hooks"]);
    s.ok(k, &["label", "namespace", "hooks", "webhooks=on"]);
    let base = format!("https://{}", hook.addr);
    // The same server reached through a Service whose Endpoints name 127.0.0.1 and its port.
    apply(
        &s,
        "service",
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "test-hook", "namespace": "hooks"},
                "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 8443}]}}),
    );
    apply(
        &s,
        "endpoints",
        &json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "test-hook", "namespace": "hooks"},
                "subsets": [{"addresses": [{"ip": "127.0.0.1"}],
                             "ports": [{"name": "https", "port": hook.addr.port()}]}]}),
    );
    let only_hooks = json!({"namespaceSelector": {"matchLabels": {"webhooks": "on"}}});
    apply(
        &s,
        "mutating",
        &configuration(
            "MutatingWebhookConfiguration",
            "test-mutator",
            vec![
                webhook(
                    "label.test.kubevirt-rs.io",
                    &format!("{base}/mutate"),
                    &hook.ca,
                    &["configmaps"],
                    only_hooks.clone(),
                ),
                webhook(
                    "bytes.test.kubevirt-rs.io",
                    &format!("{base}/mutate-bytes"),
                    &hook.ca,
                    &["configmaps"],
                    only_hooks.clone(),
                ),
                {
                    let mut w = webhook(
                        "svc.test.kubevirt-rs.io",
                        "",
                        &hook.ca,
                        &["configmaps"],
                        only_hooks.clone(),
                    );
                    w["clientConfig"] = json!({"caBundle": b64(&hook.ca),
                        "service": {"namespace": "hooks", "name": "test-hook", "path": "/mutate-svc"}});
                    w
                },
            ],
        ),
    );
    apply(
        &s,
        "validating",
        &configuration(
            "ValidatingWebhookConfiguration",
            "test-validator",
            vec![webhook(
                "deny.test.kubevirt-rs.io",
                &format!("{base}/validate"),
                &hook.ca,
                &["configmaps"],
                only_hooks.clone(),
            )],
        ),
    );

    // Both mutations land, in order, and the client sees the webhook's warning.
    let out = s.kubectl(
        k,
        &[
            "create",
            "configmap",
            "a",
            "-n",
            "hooks",
            "--from-literal=k=v",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("Warning: the test webhook added a label"),
        "{stderr}"
    );
    assert_eq!(
        labels(&s, &["cm", "a", "-n", "hooks"]),
        json!({"mutated": "yes", "bytes": "yes", "svc": "yes"})
    );
    // The validating webhook saw the mutated object, with the request's identity.
    {
        let seen = hook.seen.lock().expect("lock");
        let v = seen
            .iter()
            .rev()
            .find(|r| r["request"]["object"]["metadata"]["name"] == "a")
            .expect("validated");
        assert_eq!(v["request"]["operation"], "CREATE");
        assert_eq!(v["request"]["object"]["metadata"]["labels"]["bytes"], "yes");
        assert_eq!(v["request"]["resource"]["resource"], "configmaps");
        assert_eq!(v["request"]["namespace"], "hooks");
        assert_eq!(v["request"]["dryRun"], false);
        assert!(v["request"]["userInfo"]["username"].is_string());
    }
    // Outside the selected namespace no webhook runs.
    s.ok(k, &["create", "configmap", "plain", "-n", "default"]);
    assert_eq!(labels(&s, &["cm", "plain", "-n", "default"]), json!({}));

    // A refusal reaches kubectl in upstream's words and with the webhook's code.
    let err = failed(create_cm(&s, "hooks", "forbidden-1"));
    assert!(
        err.starts_with("Error from server (Forbidden): error when creating")
            && err.contains(": admission webhook \"deny.test.kubevirt-rs.io\" denied the request: objects named forbidden-* are not allowed"),
        "{err}"
    );
    s.fails(k, &["get", "configmap", "forbidden-1", "-n", "hooks"]);

    // Updates: the webhooks see the old object; the mutated labels stay.
    s.ok(k, &["label", "configmap", "a", "-n", "hooks", "extra=1"]);
    assert_eq!(
        labels(&s, &["cm", "a", "-n", "hooks"]),
        json!({"mutated": "yes", "bytes": "yes", "svc": "yes", "extra": "1"})
    );
    {
        let seen = hook.seen.lock().expect("lock");
        let v = seen.last().expect("validated");
        assert_eq!(v["request"]["operation"], "UPDATE");
        assert_eq!(v["request"]["oldObject"]["metadata"]["name"], "a");
        assert!(v["request"]["oldObject"]["metadata"]["labels"]["extra"].is_null());
        assert_eq!(v["request"]["object"]["metadata"]["labels"]["extra"], "1");
    }

    // Dry run: admitted and mutated, nothing stored, the webhooks are told.
    let out = s.ok(
        k,
        &[
            "create",
            "configmap",
            "dry",
            "-n",
            "hooks",
            "--dry-run=server",
            "-o",
            "json",
        ],
    );
    let dry: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(dry["metadata"]["labels"]["mutated"], "yes");
    s.fails(k, &["get", "configmap", "dry", "-n", "hooks"]);
    assert_eq!(
        hook.seen.lock().expect("lock").last().expect("seen")["request"]["dryRun"],
        true
    );

    // Deletions are validated against the old object.
    s.ok(
        k,
        &["create", "configmap", "keep", "-n", "default"], // not selected: created
    );
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "forbidden-later", "namespace": "hooks"}});
    // Created before the validating webhook selects it: label the namespace off and on.
    s.ok(k, &["label", "namespace", "hooks", "webhooks-"]);
    apply(&s, "later", &cm);
    s.ok(k, &["label", "namespace", "hooks", "webhooks=on"]);
    let err = s.fails(
        k,
        &["delete", "configmap", "forbidden-later", "-n", "hooks"],
    );
    assert!(
        err.contains("denied the request: objects named forbidden-* are not allowed"),
        "{err}"
    );
    {
        let seen = hook.seen.lock().expect("lock");
        let v = seen.last().expect("seen");
        assert_eq!(v["request"]["operation"], "DELETE");
        assert!(v["request"]["object"].is_null());
        assert_eq!(v["request"]["options"]["kind"], "DeleteOptions");
    }
    s.ok(k, &["get", "configmap", "forbidden-later", "-n", "hooks"]);
    // A collection deletion is admitted item by item, before anything goes.
    let err = s.fails(
        k,
        &["delete", "--raw", "/api/v1/namespaces/hooks/configmaps"],
    );
    assert!(
        err.contains("objects named forbidden-* are not allowed"),
        "{err}"
    );
    s.ok(k, &["get", "configmap", "a", "-n", "hooks"]);
    s.ok(k, &["delete", "configmap", "a", "-n", "hooks"]);

    // A webhook with side effects refuses dry runs (and only dry runs).
    apply(
        &s,
        "effects",
        &configuration(
            "ValidatingWebhookConfiguration",
            "test-side-effects",
            vec![webhook(
                "effects.test.kubevirt-rs.io",
                &format!("{base}/validate"),
                &hook.ca,
                &["secrets"],
                json!({"sideEffects": "Some"}),
            )],
        ),
    );
    let err = s.fails(
        k,
        &[
            "create",
            "secret",
            "generic",
            "s1",
            "-n",
            "default",
            "--dry-run=server",
        ],
    );
    assert!(
        err.contains("admission webhook \"effects.test.kubevirt-rs.io\" does not support dry run"),
        "{err}"
    );
    s.ok(k, &["create", "secret", "generic", "s1", "-n", "default"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn failure_policies_with_the_webhook_down_or_slow() {
    let hook = start_hook().await;
    // A port with nothing listening.
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let s = Server::start();
    let k = KUBECTL_133;
    for ns in ["fail", "ignore", "slow"] {
        s.ok(k, &["create", "namespace", ns]);
    }
    let in_ns = |ns: &str| json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}});
    let mut fail = in_ns("fail");
    fail["failurePolicy"] = json!("Fail");
    let mut ignore = in_ns("ignore");
    ignore["failurePolicy"] = json!("Ignore");
    let mut slow = in_ns("slow");
    slow["timeoutSeconds"] = json!(1);
    apply(
        &s,
        "down",
        &configuration(
            "ValidatingWebhookConfiguration",
            "test-down",
            vec![
                webhook(
                    "fail.test.kubevirt-rs.io",
                    &format!("https://{down}/validate"),
                    &hook.ca,
                    &["configmaps"],
                    fail,
                ),
                webhook(
                    "ignore.test.kubevirt-rs.io",
                    &format!("https://{down}/validate"),
                    &hook.ca,
                    &["configmaps"],
                    ignore,
                ),
                webhook(
                    "slow.test.kubevirt-rs.io",
                    &format!("https://{}/slow", hook.addr),
                    &hook.ca,
                    &["configmaps"],
                    slow,
                ),
            ],
        ),
    );
    let err = failed(create_cm(&s, "fail", "c"));
    assert!(
        err.starts_with("Error from server (InternalError): error when creating")
            && err.contains(": Internal error occurred: failed calling webhook \"fail.test.kubevirt-rs.io\": failed to call webhook: Post \"https://"),
        "{err}"
    );
    assert!(err.contains("connect: connection refused"), "{err}");
    s.fails(k, &["get", "configmap", "c", "-n", "fail"]);
    s.ok(k, &["create", "configmap", "c", "-n", "ignore"]);
    s.ok(k, &["get", "configmap", "c", "-n", "ignore"]);
    let started = Instant::now();
    let err = failed(create_cm(&s, "slow", "c"));
    assert!(err.contains("context deadline exceeded"), "{err}");
    // The hook answers after 30 s; returning well before that means timeoutSeconds (1 s) applied.
    // The bound is loose because it also covers starting kubectl on a loaded machine.
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "timeoutSeconds not honoured: took {took:?}"
    );

    // A webhook answering with a CA that did not sign it is a call failure too.
    let other = kubevirt_https::SelfSigned::generate("other-ca", &["127.0.0.1"]).expect("pki");
    let mut wrong = in_ns("fail");
    wrong["objectSelector"] = json!({"matchLabels": {"ca": "wrong"}});
    apply(
        &s,
        "wrong-ca",
        &configuration(
            "ValidatingWebhookConfiguration",
            "test-wrong-ca",
            vec![webhook(
                "ca.test.kubevirt-rs.io",
                &format!("https://{}/validate", hook.addr),
                &other.ca_pem,
                &["secrets"],
                wrong,
            )],
        ),
    );
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x", "namespace": "fail", "labels": {"ca": "wrong"}}});
    let path = s.dir.join("secret.json");
    std::fs::write(&path, secret.to_string()).expect("write");
    let err = s.fails(k, &["create", "-f", path.to_str().expect("path")]);
    assert!(
        err.contains("certificate signed by unknown authority"),
        "{err}"
    );
}
