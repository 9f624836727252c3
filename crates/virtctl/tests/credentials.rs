//! `virtctl credentials` against the API server: add-ssh-key makes a Secret owned by the VM and
//! a guest-agent credential for the user, then adds to that Secret; remove-ssh-key takes a key
//! out; set-password writes the user's password into the VM's password Secret, refusing a
//! Secret the VM does not own unless forced; a running VM is not given a new Secret unforced.

mod common;

use common::virtctl;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kubevirt_api::v1::VirtualMachine;
use serde_json::json;

fn values(secret: &Secret) -> Vec<String> {
    secret
        .data
        .iter()
        .flatten()
        .map(|(_, v)| String::from_utf8_lossy(&v.0).to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_remove_keys_and_set_passwords_in_the_vms_secrets() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (apiserver, client) = common::apiserver_with_testvm(tmp.path()).await;
    let kc = &apiserver.kubeconfig;
    let vms: Api<VirtualMachine> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let key1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAkey1 one@test";
    let key2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAkey2 two@test";

    // No credential for root yet: a new Secret, owned by the VM, and the credential naming it.
    let key_file = tmp.path().join("key1.pub");
    std::fs::write(&key_file, format!("{key1}\n")).expect("write");
    let (ok, _, err) = virtctl(
        kc,
        &[
            "credentials",
            "add-ssh-key",
            "--user",
            "root",
            "--file",
            key_file.to_str().expect("path"),
            "testvm",
        ],
    );
    assert!(ok, "{err}");
    let vm = vms.get("testvm").await.expect("vm");
    let creds = &vm
        .spec
        .template
        .spec
        .as_ref()
        .expect("template spec")
        .access_credentials;
    let cred = serde_json::to_value(&creds[0]).expect("json");
    assert_eq!(
        cred["sshPublicKey"]["propagationMethod"],
        json!({"qemuGuestAgent": {"users": ["root"]}})
    );
    let secret_name = cred["sshPublicKey"]["source"]["secret"]["secretName"]
        .as_str()
        .expect("secret name")
        .to_string();
    assert!(secret_name.starts_with("testvm-ssh-key-"), "{secret_name}");
    let secret = secrets.get(&secret_name).await.expect("secret");
    let owner = &secret.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        (
            "VirtualMachine",
            vm.metadata.uid.as_deref().unwrap_or_default(),
            Some(true)
        )
    );
    assert_eq!(values(&secret), [key1]);

    // Now it has one: the key goes into that Secret; a key it has already is left alone.
    let (ok, out, err) = virtctl(
        kc,
        &[
            "credentials",
            "add-ssh-key",
            "-u",
            "root",
            "--value",
            key2,
            "testvm",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(
        out,
        format!("Successfully added the key to secret \"{secret_name}\"")
    );
    let (ok, out, _) = virtctl(
        kc,
        &[
            "credentials",
            "add-ssh-key",
            "-u",
            "root",
            "--value",
            key1,
            "testvm",
        ],
    );
    assert!(ok);
    assert_eq!(
        out,
        format!("Secret \"{secret_name}\" already contains this SSH key.")
    );
    let mut held = values(&secrets.get(&secret_name).await.expect("secret"));
    held.sort();
    assert_eq!(held, [key1, key2]);

    // remove-ssh-key takes key1 out of every Secret of the user's.
    let (ok, _, err) = virtctl(
        kc,
        &[
            "credentials",
            "remove-ssh-key",
            "-u",
            "root",
            "--value",
            key1,
            "testvm",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(
        values(&secrets.get(&secret_name).await.expect("secret")),
        [key2]
    );
    let (ok, out, _) = virtctl(
        kc,
        &[
            "credentials",
            "remove-ssh-key",
            "-u",
            "nobody",
            "--value",
            key1,
            "testvm",
        ],
    );
    assert!(ok);
    assert_eq!(out, "No secrets associated with user nobody");
    let (ok, _, err) = virtctl(kc, &["credentials", "add-ssh-key", "-u", "root", "testvm"]);
    assert!(!ok);
    assert!(
        err.contains("one of --file, or --value must be specified"),
        "{err}"
    );

    // set-password: the VM needs a password credential; a Secret it does not own needs --force.
    let (ok, _, err) = virtctl(
        kc,
        &[
            "credentials",
            "set-password",
            "-u",
            "root",
            "-p",
            "pw1",
            "testvm",
        ],
    );
    assert!(!ok);
    assert!(
        err.contains("no secrets assigned to UserPassword AccessCredentials"),
        "{err}"
    );
    let pws: Secret = serde_json::from_value(json!({"metadata": {"name": "pws"}})).expect("secret");
    secrets
        .create(&PostParams::default(), &pws)
        .await
        .expect("create");
    vms.patch(
        "testvm",
        &PatchParams::default(),
        &Patch::Json::<()>(
            serde_json::from_value(json!([{"op": "add",
                "path": "/spec/template/spec/accessCredentials/-",
                "value": {"userPassword": {"source": {"secret": {"secretName": "pws"}},
                    "propagationMethod": {"qemuGuestAgent": {}}}}}]))
            .expect("patch"),
        ),
    )
    .await
    .expect("patched");
    let (ok, _, err) = virtctl(
        kc,
        &[
            "credentials",
            "set-password",
            "-u",
            "root",
            "-p",
            "pw1",
            "testvm",
        ],
    );
    assert!(!ok);
    assert!(
        err.contains("secret pws does not have an owner reference pointing to VM testvm"),
        "{err}"
    );
    let (ok, out, err) = virtctl(
        kc,
        &[
            "credentials",
            "set-password",
            "-u",
            "root",
            "-p",
            "pw1",
            "--force",
            "testvm",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "Successfully set password in secret \"pws\"");
    let pws = secrets.get("pws").await.expect("secret");
    assert_eq!(pws.data.expect("data")["root"].0, b"pw1");

    // A running VM (its instance exists) gets no new Secret without --force.
    let vmis: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &kube::api::ApiResource {
            group: "kubevirt.io".into(),
            version: "v1".into(),
            api_version: "kubevirt.io/v1".into(),
            kind: "VirtualMachineInstance".into(),
            plural: "virtualmachineinstances".into(),
        },
    );
    let vmi: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": "testvm"}, "spec": {"domain": {"devices": {}}},
    }))
    .expect("vmi");
    vmis.create(&PostParams::default(), &vmi)
        .await
        .expect("vmi");
    let (ok, _, err) = virtctl(
        kc,
        &[
            "credentials",
            "add-ssh-key",
            "-u",
            "ops",
            "--value",
            key1,
            "testvm",
        ],
    );
    assert!(!ok);
    assert!(
        err.contains("virtual machine testvm is running. Use --force flag"),
        "{err}"
    );
    apiserver.task.abort();
}
