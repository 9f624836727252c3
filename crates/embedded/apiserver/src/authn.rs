//! Authentication: who a request comes from. Client certificates signed by the cluster CA
//! (verified during the TLS handshake; CN is the user, each O a group), bearer tokens from a
//! static token file, and ServiceAccount tokens this server signed (checked against the stored
//! service account and bound object). Without credentials a request is anonymous, which this
//! server refuses (401) except for health checks. The parsing is pure; [`authenticate`] reads
//! the store.

use std::collections::HashMap;

use axum::http::{HeaderMap, header};
use serde_json::Value;

use crate::auth::{AUTHENTICATED, User};
use crate::server::App;
use crate::store::object_key;
use crate::tokens;

/// Parses a static token file (`--token-auth-file`): CSV lines `token,user,uid[,"g1,g2"]`.
pub fn parse_token_file(text: &str) -> Result<HashMap<String, User>, String> {
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields = csv_fields(line);
        if fields.len() < 3 {
            return Err(format!(
                "token file line {}: want token,user,uid[,groups]",
                i + 1
            ));
        }
        let groups: Vec<&str> = fields
            .get(3)
            .map(|g| {
                g.split(',')
                    .map(str::trim)
                    .filter(|x| !x.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let mut u = User::new(&fields[1], &groups);
        u.uid = fields[2].clone();
        if fields[0].is_empty() || fields[1].is_empty() {
            return Err(format!("token file line {}: empty token or user", i + 1));
        }
        out.insert(fields[0].clone(), u);
    }
    Ok(out)
}

/// Splits one CSV line (double quotes group, `""` is a quote).
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur).trim().to_string()),
            c => cur.push(c),
        }
    }
    out.push(cur.trim().to_string());
    out
}

/// The user a (verified) client certificate names: CN, and each O as a group.
pub fn user_from_cert(der: &[u8]) -> Result<User, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let subject = cert.subject();
    let cn = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .ok_or("the certificate has no common name")?
        .to_string();
    let orgs: Vec<String> = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok().map(str::to_string))
        .collect();
    let refs: Vec<&str> = orgs.iter().map(String::as_str).collect();
    Ok(User::new(&cn, &refs))
}

/// The bearer token of a request: `Authorization: Bearer <token>`, or (websocket clients, which
/// cannot set headers in browsers) the `base64url.bearer.authorization.k8s.io.<token>`
/// subprotocol.
pub fn bearer(h: &HeaderMap) -> Option<String> {
    if let Some(v) = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let mut it = v.trim().splitn(2, ' ');
        if let (Some(scheme), Some(tok)) = (it.next(), it.next())
            && scheme.eq_ignore_ascii_case("bearer")
            && !tok.trim().is_empty()
        {
            return Some(tok.trim().to_string());
        }
    }
    for v in h.get_all(header::SEC_WEBSOCKET_PROTOCOL) {
        for p in v.to_str().unwrap_or("").split(',') {
            if let Some(enc) = p
                .trim()
                .strip_prefix("base64url.bearer.authorization.k8s.io.")
            {
                use base64::Engine;
                if let Ok(b) = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(enc.trim_end_matches('='))
                    && let Ok(t) = String::from_utf8(b)
                {
                    return Some(t);
                }
            }
        }
    }
    None
}

/// The user of a service account token.
pub fn service_account_user(
    ns: &str,
    name: &str,
    uid: &str,
    bound: Option<&tokens::Bound>,
    jti: Option<&str>,
) -> User {
    let mut u = User::new(
        &format!("system:serviceaccount:{ns}:{name}"),
        &[
            "system:serviceaccounts",
            &format!("system:serviceaccounts:{ns}"),
            AUTHENTICATED,
        ],
    );
    u.uid = uid.to_string();
    if let Some(b) = bound
        && b.kind == "Pod"
    {
        u.extra.insert(
            "authentication.kubernetes.io/pod-name".into(),
            vec![b.name.clone()],
        );
        u.extra.insert(
            "authentication.kubernetes.io/pod-uid".into(),
            vec![b.uid.clone()],
        );
    }
    if let Some(j) = jti {
        u.extra.insert(
            "authentication.kubernetes.io/credential-id".into(),
            vec![format!("JTI={j}")],
        );
    }
    u
}

/// Why a request could not be authenticated.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No credentials at all.
    Anonymous,
    /// Credentials that do not check out.
    Invalid(String),
}

/// Authenticates a request from its headers and the client certificates of its connection.
pub fn authenticate(app: &App, h: &HeaderMap, certs: &[Vec<u8>]) -> Result<User, Refusal> {
    if let Some(leaf) = certs.first() {
        // The handshake verified the chain against the cluster CA.
        return user_from_cert(leaf).map_err(Refusal::Invalid);
    }
    let Some(token) = bearer(h) else {
        return Err(Refusal::Anonymous);
    };
    if let Some(u) = app.authn.static_tokens.get(&token) {
        return Ok(u.clone());
    }
    let claims = app
        .authn
        .signer
        .verify(&token, &[tokens::ISSUER], crate::meta::now_seconds())
        .map_err(Refusal::Invalid)?;
    let (ns, name, uid, bound) = tokens::subject(&claims)
        .ok_or_else(|| Refusal::Invalid("not a service account token".into()))?;
    let cache = app.store.read();
    let sa = cache
        .get("serviceaccounts", &object_key(&ns, &name))
        .ok_or_else(|| Refusal::Invalid(format!("service account {ns}/{name} is gone")))?;
    if !uid.is_empty() && sa.uid != uid {
        return Err(Refusal::Invalid(format!(
            "service account {ns}/{name} was recreated"
        )));
    }
    if let Some(b) = &bound {
        let gr = match b.kind.as_str() {
            "Pod" => "pods",
            "Secret" => "secrets",
            _ => "nodes",
        };
        let key = if b.kind == "Node" {
            object_key("", &b.name)
        } else {
            object_key(&ns, &b.name)
        };
        match cache.get(gr, &key) {
            Some(o) if b.uid.is_empty() || o.uid == b.uid => {}
            _ => {
                return Err(Refusal::Invalid(format!(
                    "the {} {} the token is bound to is gone",
                    b.kind, b.name
                )));
            }
        }
    }
    Ok(service_account_user(
        &ns,
        &name,
        &sa.uid,
        bound.as_ref(),
        claims.get("jti").and_then(Value::as_str),
    ))
}

/// What authentication needs: the static tokens and the service account signing key.
pub struct Authn {
    pub static_tokens: HashMap<String, User>,
    pub signer: tokens::Signer,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files() {
        let t = parse_token_file(
            "# comment\ns3cret,alice,1001,\"dev,ops\"\nt2,bob,1002\n\n\"a,b\",carol,3\n",
        )
        .expect("parses");
        let a = &t["s3cret"];
        assert_eq!(a.name, "alice");
        assert_eq!(a.uid, "1001");
        assert_eq!(a.groups, vec!["dev", "ops", "system:authenticated"]);
        assert_eq!(t["t2"].groups, vec!["system:authenticated"]);
        assert_eq!(t["a,b"].name, "carol");
        assert!(parse_token_file("only,two\n").is_err());
        assert!(parse_token_file(",u,1\n").is_err());
    }

    #[test]
    fn certificates_name_users_and_groups() {
        let d = tempfile::tempdir().expect("tempdir");
        let pki = crate::tls::Pki::new(d.path());
        pki.ensure().expect("pki");
        let (pem, _) = pki
            .client_cert("node", "system:node:n1", &["system:nodes"])
            .expect("cert");
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let der = CertificateDer::from_pem_slice(&pem).expect("der");
        let u = user_from_cert(&der).expect("user");
        assert_eq!(u.name, "system:node:n1");
        assert_eq!(u.groups, vec!["system:nodes", "system:authenticated"]);
        assert!(user_from_cert(b"junk").is_err());
    }

    #[test]
    fn bearer_tokens() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().expect("value"));
        assert_eq!(bearer(&h).as_deref(), Some("abc"));
        let mut h = HeaderMap::new();
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            "v5.channel.k8s.io, base64url.bearer.authorization.k8s.io.YWJj"
                .parse()
                .expect("value"),
        );
        assert_eq!(bearer(&h).as_deref(), Some("abc"));
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Basic abc".parse().expect("value"));
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn service_account_users() {
        let u = service_account_user(
            "kubevirt",
            "kubevirt-handler",
            "u",
            Some(&tokens::Bound {
                kind: "Pod".into(),
                name: "p".into(),
                uid: "pu".into(),
            }),
            Some("j"),
        );
        assert_eq!(u.name, "system:serviceaccount:kubevirt:kubevirt-handler");
        assert_eq!(
            u.groups,
            vec![
                "system:serviceaccounts",
                "system:serviceaccounts:kubevirt",
                "system:authenticated"
            ]
        );
        assert_eq!(u.extra["authentication.kubernetes.io/pod-name"], vec!["p"]);
    }
}
