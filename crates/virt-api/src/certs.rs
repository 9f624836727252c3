//! virt-api's own PKI kept in a Secret: a CA and the serving certificate of its webhooks and
//! aggregated API, reused across restarts and regenerated before they expire (the rotation
//! decision is pure; [`Store`] does the Secret I/O). The serving certificate is swappable under
//! a running server ([`Swappable`]), and the CA bundles (webhook configurations, the APIService)
//! carry both the new and the previous CA while clients catch up.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The Secret's keys.
pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const TLS_CERT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";
/// The default Secret (in virt-api's namespace).
pub const DEFAULT_SECRET: &str = "kubevirt-virt-api-certs";

/// How long a generated CA and serving certificate are valid.
pub const VALIDITY: jiff::SignedDuration = jiff::SignedDuration::from_hours(24 * 365);
/// Renew when less than this is left.
pub const RENEW_BEFORE: jiff::SignedDuration = jiff::SignedDuration::from_hours(24 * 30);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("the Secret: {0}")]
    Kube(#[from] kube::Error),
    #[error("bad PEM in the Secret: {0}")]
    Pem(String),
}

/// A CA and a serving certificate, PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    pub ca_pem: String,
    pub ca_key_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

fn not_after(pem: &str) -> Option<jiff::Timestamp> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    jiff::Timestamp::from_second(cert.validity().not_after.timestamp()).ok()
}

/// Whether `b` may still be used at `now`: both certificates parse and expire later than
/// [`RENEW_BEFORE`] from now (pure).
pub fn usable(b: &Bundle, now: jiff::Timestamp) -> bool {
    let limit = now.saturating_add(RENEW_BEFORE).unwrap_or(now);
    [&b.ca_pem, &b.cert_pem]
        .iter()
        .all(|p| not_after(p).is_some_and(|t| t > limit))
        && KeyPair::from_pem(&b.ca_key_pem).is_ok()
        && KeyPair::from_pem(&b.key_pem).is_ok()
}

/// A new CA and serving certificate for `names`, valid for [`VALIDITY`] from `now`.
pub fn generate(names: &[String], now: jiff::Timestamp) -> Result<Bundle, Error> {
    // From yesterday: day precision, and clocks differ a little.
    let (sy, sm, sd) = ymd(now - jiff::SignedDuration::from_hours(24));
    let (ey, em, ed) = ymd(now.saturating_add(VALIDITY).unwrap_or(now));
    let start = rcgen::date_time_ymd(sy, sm, sd);
    let end = rcgen::date_time_ymd(ey, em, ed);
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!("virt-api-ca@{}", now.as_second()),
    );
    ca.distinguished_name = dn;
    ca.not_before = start;
    ca.not_after = end;
    let ca_cert = ca.self_signed(&ca_key)?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate()?;
    let (ips, dns): (Vec<&String>, Vec<&String>) = names
        .iter()
        .partition(|n| n.parse::<std::net::IpAddr>().is_ok());
    let mut params = CertificateParams::new(dns.into_iter().cloned().collect::<Vec<_>>())?;
    for ip in ips {
        if let Ok(a) = ip.parse() {
            params.subject_alt_names.push(SanType::IpAddress(a));
        }
    }
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names.first().map(String::as_str).unwrap_or("virt-api"),
    );
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = start;
    params.not_after = end;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Bundle {
        ca_pem: ca_cert.pem(),
        ca_key_pem,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A certificate time as (year, month, day) for `rcgen::date_time_ymd` (day precision is
/// plenty for a year's validity and a month's renewal margin).
fn ymd(t: jiff::Timestamp) -> (i32, u8, u8) {
    let d = t.to_zoned(jiff::tz::TimeZone::UTC).date();
    (
        i32::from(d.year()),
        d.month().unsigned_abs(),
        d.day().unsigned_abs(),
    )
}

/// The bundle a Secret holds, if complete (pure).
pub fn from_secret(s: &Secret) -> Option<Bundle> {
    let data = s.data.as_ref()?;
    let get = |k: &str| {
        data.get(k)
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
    };
    Some(Bundle {
        ca_pem: get(CA_CERT)?,
        ca_key_pem: get(CA_KEY)?,
        cert_pem: get(TLS_CERT)?,
        key_pem: get(TLS_KEY)?,
    })
}

/// The Secret's data for a bundle (pure).
pub fn secret_data(b: &Bundle) -> BTreeMap<String, ByteString> {
    [
        (CA_CERT, &b.ca_pem),
        (CA_KEY, &b.ca_key_pem),
        (TLS_CERT, &b.cert_pem),
        (TLS_KEY, &b.key_pem),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.clone().into_bytes())))
    .collect()
}

/// The Secret holding the bundle.
pub struct Store {
    pub api: Api<Secret>,
    pub name: String,
}

impl Store {
    /// The stored bundle if still usable, else a new one written back (created or replaced).
    /// Returns the bundle and the previous CA when it was rotated.
    pub async fn load_or_rotate(
        &self,
        names: &[String],
        now: jiff::Timestamp,
    ) -> Result<(Bundle, Option<String>), Error> {
        let existing = self.api.get_opt(&self.name).await?;
        let old = existing.as_ref().and_then(from_secret);
        if let Some(b) = old.as_ref().filter(|b| usable(b, now)) {
            return Ok((b.clone(), None));
        }
        let fresh = generate(names, now)?;
        let data = secret_data(&fresh);
        match existing {
            Some(_) => {
                let patch = serde_json::json!({"data": data});
                self.api
                    .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            None => {
                let s = Secret {
                    metadata: kube::api::ObjectMeta {
                        name: Some(self.name.clone()),
                        ..Default::default()
                    },
                    data: Some(data),
                    type_: Some("kubernetes.io/tls".into()),
                    ..Default::default()
                };
                self.api.create(&PostParams::default(), &s).await?;
            }
        }
        tracing::info!(secret = %self.name, rotated = old.is_some(), "virt-api certificates generated");
        Ok((fresh, old.map(|b| b.ca_pem)))
    }
}

/// A serving certificate that can be replaced under a running server.
#[derive(Debug)]
pub struct Swappable(RwLock<Arc<CertifiedKey>>);

impl Swappable {
    pub fn new(b: &Bundle) -> Result<Arc<Self>, Error> {
        Ok(Arc::new(Swappable(RwLock::new(certified(b)?))))
    }

    pub fn replace(&self, b: &Bundle) -> Result<(), Error> {
        let k = certified(b)?;
        match self.0.write() {
            Ok(mut g) => *g = k,
            Err(p) => *p.into_inner() = k,
        }
        Ok(())
    }

    /// A rustls server configuration serving the current certificate (h2 and http/1.1). With
    /// `client_ca` (the API server's request-header CA), a client certificate is verified when
    /// offered (the aggregator's front-proxy certificate) and not required (webhook calls).
    pub fn server_config(
        self: &Arc<Self>,
        client_ca: Option<&str>,
    ) -> Result<Arc<rustls::ServerConfig>, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(ca.as_bytes()).filter_map(Result::ok) {
                    roots.add(c)?;
                }
                let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .allow_unauthenticated()
                .build()
                .map_err(|e| Error::Pem(e.to_string()))?;
                builder.with_client_cert_verifier(v)
            }
            None => builder.with_no_client_auth(),
        };
        let mut cfg = builder.with_cert_resolver(self.clone());
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

impl ResolvesServerCert for Swappable {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(match self.0.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        })
    }
}

fn certified(b: &Bundle) -> Result<Arc<CertifiedKey>, Error> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(b.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Pem(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(b.key_pem.as_bytes())
        .map_err(|e| Error::Pem(e.to_string()))?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(Error::Tls)?;
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}

/// The CA bundle for clients while a rotation settles: the current CA, then the previous one.
pub fn ca_bundle(current: &str, previous: Option<&str>) -> String {
    match previous {
        Some(p) if p != current => format!("{}\n{}", current.trim_end(), p),
        _ => current.to_string(),
    }
}

/// Points the webhook configurations and the APIService at `ca_bundle` (merge patches; a
/// missing object is skipped: it is registered later with the bundle of the moment).
pub async fn update_ca_bundles(client: &kube::Client, ca_bundle: &str) -> Result<(), kube::Error> {
    use base64::Engine;
    use k8s_openapi::api::admissionregistration::v1::{
        MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
    };
    let b64 = base64::engine::general_purpose::STANDARD.encode(ca_bundle);
    let bytes = ByteString(ca_bundle.as_bytes().to_vec());
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    if let Some(mut m) = mutating
        .get_opt(crate::webhooks::MUTATING_CONFIGURATION)
        .await?
    {
        for w in m.webhooks.iter_mut().flatten() {
            w.client_config.ca_bundle = Some(bytes.clone());
        }
        mutating
            .replace(
                crate::webhooks::MUTATING_CONFIGURATION,
                &PostParams::default(),
                &m,
            )
            .await?;
    }
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    if let Some(mut v) = validating
        .get_opt(crate::webhooks::VALIDATING_CONFIGURATION)
        .await?
    {
        for w in v.webhooks.iter_mut().flatten() {
            w.client_config.ca_bundle = Some(bytes.clone());
        }
        validating
            .replace(
                crate::webhooks::VALIDATING_CONFIGURATION,
                &PostParams::default(),
                &v,
            )
            .await?;
    }
    let ar = kube::api::ApiResource {
        group: "apiregistration.k8s.io".into(),
        version: "v1".into(),
        api_version: "apiregistration.k8s.io/v1".into(),
        kind: "APIService".into(),
        plural: "apiservices".into(),
    };
    let services: Api<kube::api::DynamicObject> = Api::all_with(client.clone(), &ar);
    let name = "v1.subresources.kubevirt.io";
    if services.get_opt(name).await?.is_some() {
        let patch = serde_json::json!({"spec": {"caBundle": b64}});
        services
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reused_until_close_to_expiry_then_regenerated() {
        let now = jiff::Timestamp::now();
        let b =
            generate(&["virt-api.kubevirt.svc".into(), "127.0.0.1".into()], now).expect("bundle");
        assert!(usable(&b, now));
        let later = now
            .saturating_add(VALIDITY - RENEW_BEFORE / 2)
            .expect("time");
        assert!(!usable(&b, later), "renewed before expiry");
        let s = Secret {
            data: Some(secret_data(&b)),
            ..Default::default()
        };
        assert_eq!(from_secret(&s), Some(b.clone()));
        let broken = Bundle {
            key_pem: "junk".into(),
            ..b.clone()
        };
        assert!(!usable(&broken, now));
        let sw = Swappable::new(&b).expect("swappable");
        sw.server_config(None).expect("config");
        sw.server_config(Some(&b.ca_pem))
            .expect("config with client CA");
        let b2 = generate(&["x".into()], now).expect("bundle");
        sw.replace(&b2).expect("replace");
        let both = ca_bundle(&b2.ca_pem, Some(&b.ca_pem));
        assert_eq!(CertificateDer::pem_slice_iter(both.as_bytes()).count(), 2);
        assert_eq!(ca_bundle(&b.ca_pem, Some(&b.ca_pem)), b.ca_pem);
    }
}
