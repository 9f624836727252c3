//! ServiceAccount tokens (pure): JWTs signed with ES256 (ECDSA P-256, SHA-256) carrying the
//! claims Kubernetes puts in them (`iss`, `sub`, `aud`, `exp`, `iat`, `nbf`, `jti` and the
//! `kubernetes.io` claim with the namespace, service account and bound object), and checking
//! them: signature, issuer, audience, validity window. Whether the service account and bound
//! object still exist is the caller's check.

use base64::Engine;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

/// The issuer and default audience of tokens this server signs (upstream's default).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The signing key (PKCS#8) and its public half.
pub struct Signer {
    key: EcdsaKeyPair,
    public: Vec<u8>,
}

impl Signer {
    /// A new random key, as PKCS#8 DER (to store) and the signer.
    pub fn generate() -> Result<(Vec<u8>, Signer), String> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| "generating the service account key failed".to_string())?;
        let der = pkcs8.as_ref().to_vec();
        let s = Signer::from_pkcs8(&der)?;
        Ok((der, s))
    }

    pub fn from_pkcs8(der: &[u8]) -> Result<Signer, String> {
        let rng = ring::rand::SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .map_err(|e| format!("invalid service account key: {e}"))?;
        let public = key.public_key().as_ref().to_vec();
        Ok(Signer { key, public })
    }

    /// The key id: a digest of the public key, as `kid` in the header.
    pub fn key_id(&self) -> String {
        let d = ring::digest::digest(&ring::digest::SHA256, &self.public);
        B64.encode(d.as_ref())
    }

    /// Signs `claims` as a compact JWS.
    pub fn sign(&self, claims: &Value) -> Result<String, String> {
        let header = json!({"alg": "ES256", "kid": self.key_id()});
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let rng = ring::rand::SystemRandom::new();
        let sig = self
            .key
            .sign(&rng, input.as_bytes())
            .map_err(|_| "signing failed".to_string())?;
        Ok(format!("{input}.{}", B64.encode(sig.as_ref())))
    }

    /// Checks a token's signature, issuer, audience and validity window at `now` (Unix
    /// seconds) and returns its claims.
    pub fn verify(&self, token: &str, audiences: &[&str], now: i64) -> Result<Value, String> {
        verify(&self.public, token, audiences, now)
    }
}

/// What a token is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    pub kind: String,
    pub name: String,
    pub uid: String,
}

/// The claims of a service account token.
#[allow(clippy::too_many_arguments)]
pub fn claims(
    namespace: &str,
    sa_name: &str,
    sa_uid: &str,
    audiences: &[String],
    now: i64,
    expiration_seconds: i64,
    bound: Option<&Bound>,
    jti: &str,
) -> Value {
    let mut k8s =
        json!({"namespace": namespace, "serviceaccount": {"name": sa_name, "uid": sa_uid}});
    if let Some(b) = bound {
        let key = match b.kind.as_str() {
            "Pod" => "pod",
            "Secret" => "secret",
            "Node" => "node",
            _ => "object",
        };
        k8s[key] = json!({"name": b.name, "uid": b.uid});
    }
    json!({
        "aud": audiences, "exp": now + expiration_seconds, "iat": now, "nbf": now,
        "iss": ISSUER, "jti": jti,
        "kubernetes.io": k8s,
        "sub": format!("system:serviceaccount:{namespace}:{sa_name}"),
    })
}

/// Checks a compact ES256 JWS against `public` (an uncompressed P-256 point).
pub fn verify(public: &[u8], token: &str, audiences: &[&str], now: i64) -> Result<Value, String> {
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a JWS".to_string());
    };
    let header: Value = B64
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("invalid JWS header")?;
    if header.get("alg").and_then(Value::as_str) != Some("ES256") {
        return Err("unexpected signing algorithm".to_string());
    }
    let sig = B64.decode(sig).map_err(|_| "invalid signature encoding")?;
    signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, public)
        .verify(format!("{h}.{c}").as_bytes(), &sig)
        .map_err(|_| "invalid signature".to_string())?;
    let claims: Value = B64
        .decode(c)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("invalid claims")?;
    if claims.get("iss").and_then(Value::as_str) != Some(ISSUER) {
        return Err("token issuer is not this server".to_string());
    }
    let aud: Vec<&str> = match claims.get("aud") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !aud.iter().any(|a| audiences.contains(a)) {
        return Err("token audiences do not include this server".to_string());
    }
    let num = |k: &str| claims.get(k).and_then(Value::as_i64);
    match (num("exp"), num("nbf")) {
        (Some(exp), _) if now >= exp => return Err("token has expired".to_string()),
        (_, Some(nbf)) if now + 60 < nbf => return Err("token is not valid yet".to_string()),
        (None, _) => return Err("token has no expiry".to_string()),
        _ => {}
    }
    Ok(claims)
}

/// The service account (namespace, name, uid) and bound object a token's claims name.
pub fn subject(claims: &Value) -> Option<(String, String, String, Option<Bound>)> {
    let k = claims.get("kubernetes.io")?;
    let ns = k.get("namespace")?.as_str()?.to_string();
    let name = k.pointer("/serviceaccount/name")?.as_str()?.to_string();
    let uid = k
        .pointer("/serviceaccount/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let bound = [("pod", "Pod"), ("secret", "Secret"), ("node", "Node")]
        .iter()
        .find_map(|(key, kind)| {
            let b = k.get(*key)?;
            Some(Bound {
                kind: kind.to_string(),
                name: b.get("name")?.as_str()?.to_string(),
                uid: b
                    .get("uid")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            })
        });
    Some((ns, name, uid, bound))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn signer() -> Signer {
        Signer::generate().expect("key").1
    }

    #[test]
    fn round_trip_and_checks() {
        let s = signer();
        let bound = Bound {
            kind: "Pod".into(),
            name: "p".into(),
            uid: "pu".into(),
        };
        let c = claims(
            "ns",
            "sa",
            "u1",
            &[ISSUER.to_string()],
            1000,
            600,
            Some(&bound),
            "j",
        );
        let t = s.sign(&c).expect("sign");
        let got = s.verify(&t, &[ISSUER], 1001).expect("valid");
        assert_eq!(got["sub"], "system:serviceaccount:ns:sa");
        assert_eq!(
            subject(&got),
            Some(("ns".into(), "sa".into(), "u1".into(), Some(bound)))
        );
        assert!(s.verify(&t, &[ISSUER], 1600).is_err(), "expired");
        assert!(s.verify(&t, &["other"], 1001).is_err(), "audience");
        assert!(signer().verify(&t, &[ISSUER], 1001).is_err(), "other key");
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = B64.encode(
            json!({"iss": ISSUER, "aud": [ISSUER], "exp": 99999, "sub": "system:serviceaccount:kube-system:admin"})
                .to_string(),
        );
        parts[1] = &forged;
        assert!(
            s.verify(&parts.join("."), &[ISSUER], 1001).is_err(),
            "forged claims"
        );
        // The key survives storage.
        let (der, s2) = Signer::generate().expect("key");
        let t2 = s2.sign(&c).expect("sign");
        let s3 = Signer::from_pkcs8(&der).expect("load");
        assert!(s3.verify(&t2, &[ISSUER], 1001).is_ok());
    }

    proptest! {
        // Arbitrary strings never verify and never panic.
        #[test]
        fn garbage_never_verifies(t in ".{0,120}") {
            let s = signer();
            prop_assert!(s.verify(&t, &[ISSUER], 0).is_err());
        }
    }
}
