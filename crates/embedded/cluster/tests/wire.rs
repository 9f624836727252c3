//! Wire behaviours of `virt-cluster apiserver` checked against what a real kube-apiserver answers
//! (/work/shared/reference/kube-api-wire.md): error Status bodies (405, 415, 400, 404, 409),
//! watch start points, bookmarks and timeouts, `fieldValidation`, OpenAPI v3 ETags, and kubectl
//! 1.33 on built-in kinds the other suites do not touch. Every test starts its own server.

mod common;

use std::time::{Duration, Instant};

use common::{KUBECTL_133, Server};
use http::{HeaderMap, Method, Request, StatusCode};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

const VMS: &str = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines";
const CMS: &str = "/api/v1/namespaces/default/configmaps";
/// Our ConfigMaps' label: watches select it so the `kube-root-ca.crt` the server publishes into
/// each namespace (on its own schedule) does not show up in their events.
const OURS: &str = "labelSelector=wire%3D1";

/// One raw HTTP exchange with the admin credentials of the server's kubeconfig.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body).into_owned()
            )
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts a failure `Status` with this code and reason, as the reference shows them, and
    /// returns it for further checks.
    fn failure(&self, code: u16, reason: &str) -> Value {
        assert_eq!(self.status.as_u16(), code, "{}", self.text());
        let st = self.json();
        assert_eq!(st["kind"], "Status", "{st}");
        assert_eq!(st["apiVersion"], "v1", "{st}");
        assert_eq!(st["status"], "Failure", "{st}");
        assert_eq!(st["code"], code, "{st}");
        assert_eq!(st["reason"], reason, "{st}");
        assert!(
            st["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{st}"
        );
        st
    }

    fn warnings(&self) -> Vec<String> {
        self.headers
            .get_all("warning")
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }
}

async fn call(
    client: &kube::Client,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("accept", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b
        .body(kube::client::Body::from(body.to_vec()))
        .expect("request");
    let resp = client.send(req).await.expect("send");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect_bytes()
        .await
        .expect("body")
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

async fn get(client: &kube::Client, path: &str) -> Reply {
    call(client, Method::GET, path, &[], b"").await
}

async fn send_json(client: &kube::Client, method: Method, path: &str, v: &Value) -> Reply {
    let body = serde_json::to_vec(v).expect("encode");
    call(
        client,
        method,
        path,
        &[("content-type", "application/json")],
        &body,
    )
    .await
}

async fn patch(client: &kube::Client, path: &str, content_type: &str, body: &str) -> Reply {
    call(
        client,
        Method::PATCH,
        path,
        &[("content-type", content_type)],
        body.as_bytes(),
    )
    .await
}

/// Creates the VirtualMachine CRD (from the API types) and waits until it is served.
async fn install_vm_crd(client: &kube::Client) {
    let crd = kubevirt_api::crd::all()
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some("virtualmachines.kubevirt.io"))
        .expect("the VirtualMachine CRD");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("create CRD");
    for _ in 0..200 {
        if get(client, VMS).await.status == StatusCode::OK {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the VirtualMachine CRD was not served");
}

fn vm(name: &str) -> Value {
    json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
           "metadata": {"name": name, "labels": {"app": "a"}},
           "spec": {"runStrategy": "Halted", "template": {"spec": {"domain": {
               "devices": {}, "resources": {"requests": {"memory": "64M"}}}}}}})
}

fn cm(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "labels": {"wire": "1"}}, "data": {"k": "v"}})
}

fn rv(v: &Value) -> String {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_else(|| panic!("no resourceVersion: {v}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_statuses_over_http() {
    let s = Server::start();
    let client = s.client().await;
    install_vm_crd(&client).await;

    let r = send_json(&client, Method::POST, VMS, &vm("vm1")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let created = r.json();

    // 409 AlreadyExists on a second create, with the details the reference shows.
    let st = send_json(&client, Method::POST, VMS, &vm("vm1"))
        .await
        .failure(409, "AlreadyExists");
    assert_eq!(
        st["details"],
        json!({"name": "vm1", "group": "kubevirt.io", "kind": "virtualmachines"}),
        "{st}"
    );

    // 404 NotFound names what is missing: a custom resource and a core one (no group).
    let st = get(&client, &format!("{VMS}/nope"))
        .await
        .failure(404, "NotFound");
    assert_eq!(
        st["details"],
        json!({"name": "nope", "group": "kubevirt.io", "kind": "virtualmachines"}),
        "{st}"
    );
    let st = get(&client, &format!("{CMS}/nope"))
        .await
        .failure(404, "NotFound");
    assert_eq!(st["details"]["name"], "nope", "{st}");
    assert_eq!(st["details"]["kind"], "configmaps", "{st}");
    assert!(
        st["details"]["group"].as_str().unwrap_or("").is_empty(),
        "{st}"
    );

    // Update with the current resourceVersion: 200; then with the now stale one: 409 Conflict.
    let mut upd = created.clone();
    upd["metadata"]["labels"]["b"] = json!("c");
    let r = send_json(&client, Method::PUT, &format!("{VMS}/vm1"), &upd).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_ne!(rv(&r.json()), rv(&created));
    let mut stale = created.clone();
    stale["metadata"]["labels"]["d"] = json!("e");
    let st = send_json(&client, Method::PUT, &format!("{VMS}/vm1"), &stale)
        .await
        .failure(409, "Conflict");
    assert_eq!(
        st["details"],
        json!({"name": "vm1", "group": "kubevirt.io", "kind": "virtualmachines"}),
        "{st}"
    );
    let now = get(&client, &format!("{VMS}/vm1")).await.json();
    assert!(now["metadata"]["labels"].get("d").is_none(), "{now}");

    // 405: PUT on a collection, POST on a named object, for a custom and a built-in resource.
    send_json(&client, Method::PUT, VMS, &vm("vm1"))
        .await
        .failure(405, "MethodNotAllowed");
    send_json(&client, Method::POST, &format!("{VMS}/vm1"), &vm("vm1"))
        .await
        .failure(405, "MethodNotAllowed");
    send_json(&client, Method::PUT, CMS, &cm("c1"))
        .await
        .failure(405, "MethodNotAllowed");
    send_json(&client, Method::POST, &format!("{CMS}/c1"), &cm("c1"))
        .await
        .failure(405, "MethodNotAllowed");
    let r = get(&client, &format!("{CMS}/c1")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "a refused POST created c1");

    // 415 for a strategic merge patch on a custom resource; nothing is applied.
    let st = patch(
        &client,
        &format!("{VMS}/vm1"),
        "application/strategic-merge-patch+json",
        r#"{"metadata": {"labels": {"s": "1"}}}"#,
    )
    .await
    .failure(415, "UnsupportedMediaType");
    let msg = st["message"].as_str().unwrap_or("");
    assert!(msg.contains("application/merge-patch+json"), "{st}");
    assert!(!msg.contains("strategic-merge-patch"), "{st}");
    let now = get(&client, &format!("{VMS}/vm1")).await.json();
    assert!(now["metadata"]["labels"].get("s").is_none(), "{now}");
    // ... while a built-in kind accepts it.
    let r = send_json(&client, Method::POST, CMS, &cm("c1")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = patch(
        &client,
        &format!("{CMS}/c1"),
        "application/strategic-merge-patch+json",
        r#"{"metadata": {"labels": {"s": "1"}}}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["metadata"]["labels"]["s"], "1");

    // An unknown patch type: kube-apiserver answers 415 UnsupportedMediaType (its patch handler
    // rejects any Content-Type outside the supported patch types), not 400.
    patch(
        &client,
        &format!("{VMS}/vm1"),
        "application/x-unknown-patch+json",
        r#"{"metadata": {"labels": {"u": "1"}}}"#,
    )
    .await
    .failure(415, "UnsupportedMediaType");

    // 400 BadRequest: a malformed JSON body on create, and a JSON patch that is not a list of
    // operations.
    let st = call(
        &client,
        Method::POST,
        VMS,
        &[("content-type", "application/json")],
        b"{not json",
    )
    .await
    .failure(400, "BadRequest");
    assert!(st.get("details").is_none_or(|d| d.get("causes").is_none()));
    patch(
        &client,
        &format!("{VMS}/vm1"),
        "application/json-patch+json",
        r#"{"op": "add", "path": "/metadata/labels/j", "value": "1"}"#,
    )
    .await
    .failure(400, "BadRequest");
    let now = get(&client, &format!("{VMS}/vm1")).await.json();
    let labels = &now["metadata"]["labels"];
    assert!(
        labels.get("u").is_none() && labels.get("j").is_none(),
        "{now}"
    );
}

/// The lines of a finished watch, parsed.
fn events(r: &Reply) -> Vec<Value> {
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.text()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line ({e}): {l}")))
        .collect()
}

/// `(type, name)` of each event.
fn summary(evs: &[Value]) -> Vec<(String, String)> {
    evs.iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or("").to_string(),
                e["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect()
}

/// Runs a watch with a `timeoutSeconds` until the server ends it; returns the reply and how long
/// the stream lasted. A stream that does not end within `limit` fails the test.
async fn finished_watch(client: &kube::Client, path: &str, limit: Duration) -> (Reply, Duration) {
    let t0 = Instant::now();
    let r = tokio::time::timeout(limit, get(client, path))
        .await
        .unwrap_or_else(|_| panic!("the watch {path} did not end within {limit:?}"));
    (r, t0.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_without_or_at_rv_0_starts_with_added_events() {
    let s = Server::start();
    let client = s.client().await;
    for n in ["a", "b"] {
        let r = send_json(&client, Method::POST, CMS, &cm(n)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    }
    for q in [
        "watch=true&timeoutSeconds=1",
        "watch=true&resourceVersion=0&timeoutSeconds=1",
    ] {
        let (r, _) = finished_watch(
            &client,
            &format!("{CMS}?{q}&{OURS}"),
            Duration::from_secs(30),
        )
        .await;
        let mut got = summary(&events(&r));
        got.sort();
        assert_eq!(
            got,
            vec![
                ("ADDED".to_string(), "a".to_string()),
                ("ADDED".to_string(), "b".to_string())
            ],
            "{q}: {}",
            r.text()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_a_resource_version_sends_only_later_changes() {
    let s = Server::start();
    let client = s.client().await;
    for n in ["a", "b"] {
        let r = send_json(&client, Method::POST, CMS, &cm(n)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    }
    let from = rv(&get(&client, CMS).await.json());
    let r = patch(
        &client,
        &format!("{CMS}/a"),
        "application/merge-patch+json",
        r#"{"metadata": {"labels": {"w": "1"}}}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = send_json(&client, Method::POST, CMS, &cm("c")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = call(&client, Method::DELETE, &format!("{CMS}/b"), &[], b"").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    let (r, _) = finished_watch(
        &client,
        &format!("{CMS}?watch=true&resourceVersion={from}&timeoutSeconds=1&{OURS}"),
        Duration::from_secs(30),
    )
    .await;
    let evs = events(&r);
    let got = summary(&evs);
    let want: Vec<(String, String)> = [("MODIFIED", "a"), ("ADDED", "c"), ("DELETED", "b")]
        .iter()
        .map(|(t, n)| (t.to_string(), n.to_string()))
        .collect();
    assert_eq!(got, want, "{}", r.text());
    assert_eq!(evs[0]["object"]["metadata"]["labels"]["w"], "1");
    // Each event carries a resourceVersion newer than the start point.
    let from_n: u64 = from.parse().expect("numeric rv");
    for e in &evs {
        let n: u64 = rv(&e["object"]).parse().expect("numeric rv");
        assert!(n > from_n, "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_with_bookmarks_gets_a_bookmark_before_its_timeout() {
    let s = Server::start();
    let client = s.client().await;
    let r = send_json(&client, Method::POST, CMS, &cm("a")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let from = rv(&get(&client, CMS).await.json());
    // As in the reference: a quiet watch from a list's resourceVersion with bookmarks asked for
    // and a short timeout gets a BOOKMARK before the stream ends.
    let (r, took) = finished_watch(
        &client,
        &format!(
            "{CMS}?watch=true&allowWatchBookmarks=true&resourceVersion={from}&timeoutSeconds=4&{OURS}"
        ),
        Duration::from_secs(30),
    )
    .await;
    let evs = events(&r);
    assert!(!evs.is_empty(), "no events: {took:?}");
    assert!(evs.iter().all(|e| e["type"] == "BOOKMARK"), "{}", r.text());
    let b = &evs[0]["object"];
    assert_eq!(b["kind"], "ConfigMap", "{b}");
    assert_eq!(b["apiVersion"], "v1", "{b}");
    let at: u64 = rv(b).parse().expect("numeric rv");
    assert!(at >= from.parse::<u64>().expect("numeric rv"), "{b}");
    assert!(took >= Duration::from_secs(3), "ended early: {took:?}");

    // Without allowWatchBookmarks, the same watch has no BOOKMARK lines.
    let (r, _) = finished_watch(
        &client,
        &format!("{CMS}?watch=true&resourceVersion={from}&timeoutSeconds=3&{OURS}"),
        Duration::from_secs(30),
    )
    .await;
    assert!(events(&r).is_empty(), "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_ends_at_timeout_seconds() {
    let s = Server::start();
    let client = s.client().await;
    let (r, took) = finished_watch(
        &client,
        &format!("{CMS}?watch=true&timeoutSeconds=2"),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // Generous bounds: not before the timeout's whole seconds, and well before the default.
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(15),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_validation_strict_warn_ignore() {
    let s = Server::start();
    let client = s.client().await;
    install_vm_crd(&client).await;
    let with_unknown = |name: &str| {
        let mut v = vm(name);
        v["spec"]["template"]["spec"]["domain"]["bogus"] = json!(1);
        v["spec"]["alsoBogus"] = json!("x");
        v
    };
    let unknown = [
        "spec.template.spec.domain.bogus".to_string(),
        "spec.alsoBogus".to_string(),
    ];

    // Strict: 400 BadRequest naming every unknown field path; nothing stored.
    let st = send_json(
        &client,
        Method::POST,
        &format!("{VMS}?fieldValidation=Strict"),
        &with_unknown("v-strict"),
    )
    .await
    .failure(400, "BadRequest");
    let msg = st["message"].as_str().unwrap_or("");
    assert!(msg.contains("strict decoding error"), "{st}");
    for p in &unknown {
        assert!(msg.contains(&format!("unknown field \"{p}\"")), "{p}: {st}");
    }
    assert_eq!(
        get(&client, &format!("{VMS}/v-strict")).await.status,
        StatusCode::NOT_FOUND
    );

    // Warn: created, one `Warning: 299` header per unknown field, the fields dropped.
    let r = send_json(
        &client,
        Method::POST,
        &format!("{VMS}?fieldValidation=Warn"),
        &with_unknown("v-warn"),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let w = r.warnings();
    for p in &unknown {
        let want = format!("299 - \"unknown field \\\"{p}\\\"\"");
        assert!(w.contains(&want), "{want} not in {w:?}");
    }
    let stored = get(&client, &format!("{VMS}/v-warn")).await.json();
    assert!(
        stored["spec"]["template"]["spec"]["domain"]
            .get("bogus")
            .is_none()
    );
    assert!(stored["spec"].get("alsoBogus").is_none(), "{stored}");

    // Ignore: created, no warning, the fields dropped.
    let r = send_json(
        &client,
        Method::POST,
        &format!("{VMS}?fieldValidation=Ignore"),
        &with_unknown("v-ignore"),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert!(r.warnings().is_empty(), "{:?}", r.warnings());
    for v in [
        r.json(),
        get(&client, &format!("{VMS}/v-ignore")).await.json(),
    ] {
        assert!(
            v["spec"]["template"]["spec"]["domain"]
                .get("bogus")
                .is_none(),
            "{v}"
        );
        assert!(v["spec"].get("alsoBogus").is_none(), "{v}");
        assert_eq!(v["spec"]["runStrategy"], "Halted", "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_v3_etags_and_not_modified() {
    let s = Server::start();
    let client = s.client().await;
    let r = get(&client, "/openapi/v3").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let index = r.json();
    let paths = index["paths"].as_object().expect("paths");
    for gv in ["api/v1", "apis/apps/v1", "apis/storage.k8s.io/v1"] {
        assert!(paths.contains_key(gv), "{gv} not listed");
    }
    for (gv, e) in paths {
        let url = e["serverRelativeURL"].as_str().unwrap_or("");
        let hash = url.split_once("?hash=").map(|(_, h)| h).unwrap_or("");
        assert!(
            url.starts_with(&format!("/openapi/v3/{gv}?hash="))
                && !hash.is_empty()
                && hash
                    .chars()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()),
            "{gv}: {url}"
        );
    }

    let url = paths["api/v1"]["serverRelativeURL"]
        .as_str()
        .expect("url")
        .to_string();
    let hash = url.split_once("?hash=").map(|(_, h)| h).unwrap_or("");
    let r = get(&client, &url).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let doc = r.json();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let etag = r
        .headers
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("an ETag")
        .to_string();
    assert_eq!(etag, format!("\"{hash}\""));
    let cc = r
        .headers
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(cc.contains("immutable"), "{cc}");

    // Revalidation: the same ETag gives 304 with no body, also without the hash in the URL.
    for u in [url.as_str(), "/openapi/v3/api/v1"] {
        let r = call(&client, Method::GET, u, &[("if-none-match", &etag)], b"").await;
        assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{u}: {}", r.text());
        assert!(r.body.is_empty(), "{u}");
        assert_eq!(
            r.headers.get("etag").and_then(|v| v.to_str().ok()),
            Some(etag.as_str())
        );
    }
    // Another ETag gets the document.
    let r = call(
        &client,
        Method::GET,
        &url,
        &[("if-none-match", "\"0123\"")],
        b"",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), doc);
}

fn json_out(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn builtin_kinds_with_kubectl_1_33() {
    let s = Server::start();
    let k = KUBECTL_133;
    let manifest = s.dir.join("builtin.yaml");
    std::fs::write(
        &manifest,
        r#"apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: ds1
spec:
  selector:
    matchLabels: {app: ds1}
  template:
    metadata:
      labels: {app: ds1}
    spec:
      containers:
      - name: c
        image: example.invalid/agent:1
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: sc1
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: pv1
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  storageClassName: sc1
  hostPath: {path: /tmp/wire-pv1}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: pvc1
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: sc1
  resources:
    requests: {storage: 1Gi}
"#,
    )
    .expect("write manifest");
    let path = manifest.to_str().expect("path");
    let out = s.ok(k, &["create", "-f", path]);
    for what in [
        "daemonset.apps/ds1 created",
        "storageclass.storage.k8s.io/sc1 created",
        "persistentvolume/pv1 created",
        "persistentvolumeclaim/pvc1 created",
    ] {
        assert!(out.contains(what), "{what}: {out}");
    }

    // get each, with the server's defaults and the fields we sent.
    let ds = json_out(&s.ok(k, &["get", "ds", "ds1", "-o", "json"]));
    assert_eq!(ds["kind"], "DaemonSet");
    assert_eq!(
        ds["spec"]["template"]["spec"]["containers"][0]["image"],
        "example.invalid/agent:1"
    );
    let sc = json_out(&s.ok(k, &["get", "storageclass", "sc1", "-o", "json"]));
    assert_eq!(sc["provisioner"], "kubernetes.io/no-provisioner");
    assert_eq!(sc["volumeBindingMode"], "WaitForFirstConsumer");
    let pv = json_out(&s.ok(k, &["get", "pv", "pv1", "-o", "json"]));
    assert_eq!(pv["spec"]["capacity"]["storage"], "1Gi");
    assert!(pv["metadata"].get("namespace").is_none(), "{pv}");
    let pvc = json_out(&s.ok(k, &["get", "pvc", "pvc1", "-o", "json"]));
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "1Gi");
    assert_eq!(pvc["metadata"]["namespace"], "default");
    // Upstream's defaults: unbound claims and volumes are Pending, in Filesystem mode; volumes
    // are retained.
    assert_eq!(pvc["status"]["phase"], "Pending", "{pvc}");
    assert_eq!(pvc["spec"]["volumeMode"], "Filesystem", "{pvc}");
    assert_eq!(pv["status"]["phase"], "Pending", "{pv}");
    assert_eq!(pv["spec"]["volumeMode"], "Filesystem", "{pv}");
    assert_eq!(
        pv["spec"]["persistentVolumeReclaimPolicy"], "Retain",
        "{pv}"
    );

    // list: the table kubectl prints, and names.
    let table = s.ok(k, &["get", "ds,pvc"]);
    assert!(table.contains("ds1") && table.contains("pvc1"), "{table}");
    let table = s.ok(k, &["get", "pv,storageclass"]);
    assert!(table.contains("pv1") && table.contains("sc1"), "{table}");
    let names = s.ok(k, &["get", "pv,sc,pvc,ds", "-o", "name"]);
    for n in [
        "persistentvolume/pv1",
        "storageclass.storage.k8s.io/sc1",
        "persistentvolumeclaim/pvc1",
        "daemonset.apps/ds1",
    ] {
        assert!(names.lines().any(|l| l == n), "{n}: {names}");
    }

    // The status subresource: a status patch is seen; a main-endpoint patch that also carries
    // status changes the rest but not the status.
    for (kind, name, phase, other) in [
        ("pvc", "pvc1", "Bound", "Lost"),
        ("pv", "pv1", "Bound", "Released"),
    ] {
        let p = format!(r#"{{"status":{{"phase":"{phase}"}}}}"#);
        s.ok(
            k,
            &[
                "patch",
                kind,
                name,
                "--subresource=status",
                "--type=merge",
                "-p",
                &p,
            ],
        );
        let got = s.ok(k, &["get", kind, name, "-o", "jsonpath={.status.phase}"]);
        assert_eq!(got, phase, "{kind}");
        let p =
            format!(r#"{{"metadata":{{"labels":{{"x":"1"}}}},"status":{{"phase":"{other}"}}}}"#);
        s.ok(k, &["patch", kind, name, "--type=merge", "-p", &p]);
        let v = json_out(&s.ok(k, &["get", kind, name, "-o", "json"]));
        assert_eq!(v["metadata"]["labels"]["x"], "1", "{kind}: {v}");
        assert_eq!(v["status"]["phase"], phase, "{kind}: {v}");
        // And a status patch leaves the spec alone.
        s.ok(
            k,
            &[
                "patch",
                kind,
                name,
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"spec":{"storageClassName":"changed"}}"#,
            ],
        );
        let v = json_out(&s.ok(k, &["get", kind, name, "-o", "json"]));
        assert_eq!(v["spec"]["storageClassName"], "sc1", "{kind}: {v}");
    }

    // delete each; then they are gone.
    let out = s.ok(k, &["delete", "-f", path, "--wait=true", "--timeout=30s"]);
    assert_eq!(
        out.lines().filter(|l| l.contains("deleted")).count(),
        4,
        "{out}"
    );
    for (kind, name) in [
        ("ds", "ds1"),
        ("storageclass", "sc1"),
        ("pv", "pv1"),
        ("pvc", "pvc1"),
    ] {
        let err = s.fails(k, &["get", kind, name]);
        assert!(
            err.contains("NotFound") || err.contains("not found"),
            "{err}"
        );
    }
    let left = s.ok(k, &["get", "pv,sc,pvc,ds", "-o", "name"]);
    assert!(left.trim().is_empty(), "{left}");
}
