//! Admission: the AdmissionReview requests the API server sends to virt-api's webhooks, answered
//! with the api crate's defaulting (as JSON patches) and validation (as refusals whose causes
//! name the fields). Pure: the caller passes the cluster configuration, a source of fresh UUIDs
//! and the time; the HTTP server around it lives in `server`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::response::{Status, StatusCause, StatusDetails, StatusSummary};
use kubevirt_api::config::ClusterConfig;
use kubevirt_api::field::Cause;
use kubevirt_api::manifest::{self, Object, Strictness};
use kubevirt_api::{defaults, validation};
use serde_json::{Value, json};

/// The webhook endpoints virt-api serves, by upstream's paths and webhook names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    VmMutate,
    VmiMutate,
    VmValidate,
    VmiValidateCreate,
    VmiValidateUpdate,
}

impl Endpoint {
    pub const ALL: [Endpoint; 5] = [
        Endpoint::VmMutate,
        Endpoint::VmiMutate,
        Endpoint::VmValidate,
        Endpoint::VmiValidateCreate,
        Endpoint::VmiValidateUpdate,
    ];

    /// The URL path the webhook configuration points at.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::VmMutate => "/virtualmachines-mutate",
            Endpoint::VmiMutate => "/virtualmachineinstances-mutate",
            Endpoint::VmValidate => "/virtualmachines-validate",
            Endpoint::VmiValidateCreate => "/virtualmachineinstances-validate-create",
            Endpoint::VmiValidateUpdate => "/virtualmachineinstances-validate-update",
        }
    }

    /// The webhook's name, which the API server puts in front of a refusal's message.
    pub fn webhook_name(self) -> &'static str {
        match self {
            Endpoint::VmMutate => "virtualmachines-mutator.kubevirt.io",
            Endpoint::VmiMutate => "virtualmachineinstances-mutator.kubevirt.io",
            Endpoint::VmValidate => "virtualmachine-validator.kubevirt.io",
            Endpoint::VmiValidateCreate => "virtualmachineinstances-create-validator.kubevirt.io",
            Endpoint::VmiValidateUpdate => "virtualmachineinstances-update-validator.kubevirt.io",
        }
    }

    pub fn from_path(path: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.path() == path)
    }

    /// Whether this is a mutating webhook (it answers with patches, never refuses on validation).
    pub fn mutating(self) -> bool {
        matches!(self, Endpoint::VmMutate | Endpoint::VmiMutate)
    }
}

/// What the pure admission logic needs from outside.
pub struct Inputs<'a> {
    pub cfg: &'a ClusterConfig,
    /// A fresh random UUID (firmware identities).
    pub new_uuid: &'a mut dyn FnMut() -> String,
    pub now: Time,
}

/// Service accounts of KubeVirt's own components, which may change what users may not.
pub fn is_kubevirt_component(username: &str) -> bool {
    username.starts_with("system:serviceaccount:kubevirt:")
}

/// Answers one AdmissionReview (the request body) with the AdmissionReview to send back.
pub fn review(endpoint: Endpoint, body: &[u8], inputs: &mut Inputs<'_>) -> Value {
    let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return respond(AdmissionResponse::invalid(format!(
                "cannot read the AdmissionReview: {e}"
            )));
        }
    };
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(_) => {
            return respond(AdmissionResponse::invalid(
                "the AdmissionReview carries no request",
            ));
        }
    };
    let base = AdmissionResponse::from(&request);
    let response = match admit(endpoint, &request, inputs) {
        Ok(Verdict::Allow { patch, warnings }) => allow(base, patch, warnings),
        Ok(Verdict::Refuse(causes)) => refuse(base, &causes),
        Err(message) => {
            let mut r = base.deny(&message);
            r.result.code = 400;
            r
        }
    };
    respond(response)
}

fn respond(response: AdmissionResponse) -> Value {
    let mut review = serde_json::to_value(response.into_review()).unwrap_or_else(|e| {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
               "response": {"uid": "", "allowed": false, "status": {"message": e.to_string(), "code": 500}}})
    });
    // kube-core writes the patch bytes as a list of numbers; Kubernetes writes byte strings in
    // base64, and that is what every API server expects first.
    if let Some(patch) = review.pointer_mut("/response/patch")
        && let Some(bytes) = patch.as_array().map(|a| {
            a.iter()
                .filter_map(|b| b.as_u64())
                .map(|b| b as u8)
                .collect::<Vec<u8>>()
        })
    {
        use base64::Engine as _;
        *patch = Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    review
}

/// The outcome of one admission.
#[derive(Debug)]
enum Verdict {
    Allow {
        patch: Option<Value>,
        warnings: Vec<String>,
    },
    Refuse(Vec<Cause>),
}

fn allow(
    mut response: AdmissionResponse,
    patch: Option<Value>,
    warnings: Vec<String>,
) -> AdmissionResponse {
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    let Some(ops) = patch else { return response };
    match serde_json::from_value::<json_patch::Patch>(ops) {
        Ok(p) => response.clone().with_patch(p).unwrap_or(response),
        Err(_) => response,
    }
}

/// A refusal as upstream words it: 422 Invalid, the causes' messages joined (at most ten).
fn refuse(response: AdmissionResponse, causes: &[Cause]) -> AdmissionResponse {
    let mut r = response.deny(validation::rejection_message(causes));
    r.result.code = 422;
    r.result.reason = "Invalid".into();
    r.result.status = Some(StatusSummary::Failure);
    r.result.details = Some(StatusDetails {
        causes: causes
            .iter()
            .take(10)
            .map(|c| StatusCause {
                reason: c.cause_type.as_str().to_string(),
                message: c.message.clone(),
                field: c.field.clone(),
            })
            .collect(),
        name: String::new(),
        group: String::new(),
        kind: String::new(),
        uid: String::new(),
        retry_after_seconds: 0,
    });
    r
}

fn object_value(obj: &DynamicObject) -> Result<Value, String> {
    serde_json::to_value(obj).map_err(|e| format!("cannot read the object: {e}"))
}

fn decode(value: Value) -> Result<Object, String> {
    manifest::from_value(value, 0, Strictness::Prune).map_err(|e| e.to_string())
}

fn admit(
    endpoint: Endpoint,
    req: &AdmissionRequest<DynamicObject>,
    inputs: &mut Inputs<'_>,
) -> Result<Verdict, String> {
    let allow_plain = Ok(Verdict::Allow {
        patch: None,
        warnings: Vec::new(),
    });
    // Deletions and objects on their way out are not ours to judge.
    if req.operation == Operation::Delete {
        return allow_plain;
    }
    let Some(obj) = req.object.as_ref() else {
        return allow_plain;
    };
    if obj.metadata.deletion_timestamp.is_some() {
        return allow_plain;
    }
    let value = object_value(obj)?;
    match (endpoint, decode(value)?) {
        (Endpoint::VmMutate, Object::VirtualMachine(mut vm)) => {
            let (uuid, serial) = ((inputs.new_uuid)(), (inputs.new_uuid)());
            defaults::vm(
                &mut vm,
                inputs.cfg,
                req.operation == Operation::Create,
                &uuid,
                &serial,
            );
            let v = serde_json::to_value(&vm).map_err(|e| e.to_string())?;
            Ok(Verdict::Allow {
                patch: Some(replace_ops(&v, &["spec", "metadata"])),
                warnings: Vec::new(),
            })
        }
        (Endpoint::VmiMutate, Object::VirtualMachineInstance(mut vmi)) => {
            if req.operation != Operation::Create {
                return allow_plain;
            }
            let uuid = (inputs.new_uuid)();
            defaults::vmi(&mut vmi, inputs.cfg, &uuid, &inputs.now).map_err(|e| e.to_string())?;
            let v = serde_json::to_value(&vmi).map_err(|e| e.to_string())?;
            Ok(Verdict::Allow {
                patch: Some(replace_ops(&v, &["spec", "metadata", "status"])),
                warnings: Vec::new(),
            })
        }
        (Endpoint::VmValidate, Object::VirtualMachine(vm)) => {
            let causes = validation::vm(&vm, inputs.cfg).map_err(|e| e.to_string())?;
            if causes.is_empty() {
                Ok(Verdict::Allow {
                    patch: None,
                    warnings: validation::vm_warnings(&vm),
                })
            } else {
                Ok(Verdict::Refuse(causes))
            }
        }
        (Endpoint::VmiValidateCreate, Object::VirtualMachineInstance(vmi)) => {
            let causes = validation::vmi_create(&vmi, inputs.cfg);
            Ok(if causes.is_empty() {
                Verdict::Allow {
                    patch: None,
                    warnings: Vec::new(),
                }
            } else {
                Verdict::Refuse(causes)
            })
        }
        (Endpoint::VmiValidateUpdate, Object::VirtualMachineInstance(vmi)) => {
            let old = match req
                .old_object
                .as_ref()
                .map(object_value)
                .transpose()?
                .map(decode)
                .transpose()?
            {
                Some(Object::VirtualMachineInstance(old)) => old,
                _ => return allow_plain,
            };
            if old.spec != vmi.spec
                && !is_kubevirt_component(&req.user_info.username.clone().unwrap_or_default())
            {
                return Ok(Verdict::Refuse(vec![Cause::new(
                    kubevirt_api::field::CauseType::FieldValueNotSupported,
                    &kubevirt_api::field::FieldPath::new(""),
                    "update of VMI object is restricted",
                )]));
            }
            allow_plain
        }
        (_, other) => Err(format!(
            "{} does not admit this kind of object: {}",
            endpoint.path(),
            kind_of(&other)
        )),
    }
}

fn kind_of(o: &Object) -> &'static str {
    match o {
        Object::VirtualMachine(_) => "VirtualMachine",
        Object::VirtualMachineInstance(_) => "VirtualMachineInstance",
        _ => "another kind",
    }
}

/// Upstream's mutators answer with whole-member replacements; `add` also creates a member that
/// is absent (a new object may have no `status` yet), which `replace` would refuse.
fn replace_ops(object: &Value, members: &[&str]) -> Value {
    Value::Array(
        members
            .iter()
            .filter_map(|m| {
                object
                    .get(*m)
                    .map(|v| json!({"op": "add", "path": format!("/{m}"), "value": v}))
            })
            .collect(),
    )
}

/// A random (version 4) UUID from the system's secure random source.
pub fn random_uuid() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    // The system RNG failing is not something to recover from; fall back to the time so a
    // UUID is still unique per call.
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        let t = jiff::Timestamp::now().as_nanosecond().to_le_bytes();
        b.copy_from_slice(&t[..16]);
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    )
}

/// The refusal the API server builds from a webhook's answer (what kubectl prints after
/// `Error from server`): used by tests and by the embedded API server's documentation.
pub fn api_server_message(endpoint: Endpoint, status: &Status) -> String {
    format!(
        "admission webhook \"{}\" denied the request: {}",
        endpoint.webhook_name(),
        status.message
    )
}
