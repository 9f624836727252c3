//! The cluster CA, the serving certificate and the admin kubeconfig, made at first start.
//!
//! `DATA/pki/` holds `ca.crt`/`ca.key`, `apiserver.crt`/`apiserver.key` (for 127.0.0.1,
//! localhost, ::1 and the in-cluster `kubernetes.default.svc` names) and `admin.crt`/`admin.key`
//! (CN `admin`, O `system:masters`). They are reused on later starts; the kubeconfig is written on
//! every start because the port may change.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::Error;

/// Paths of the PKI files under a data directory.
#[derive(Debug, Clone)]
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn new(data_dir: &Path) -> Pki {
        Pki {
            dir: data_dir.join("pki"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn complete(&self) -> bool {
        [
            "ca.crt",
            "ca.key",
            "apiserver.crt",
            "apiserver.key",
            "admin.crt",
            "admin.key",
        ]
        .iter()
        .all(|f| self.path(f).is_file())
    }

    /// Makes the CA and certificates unless a complete set is already there.
    pub fn ensure(&self) -> Result<(), Error> {
        if self.complete() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| Error::io(self.dir.display().to_string(), e))?;
        let tls = |e: rcgen::Error| Error::Tls(e.to_string());
        let ca_key = KeyPair::generate().map_err(tls)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(tls)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "kubevirt-rs-ca");
        ca_params.distinguished_name = dn;
        let ca_cert = ca_params.self_signed(&ca_key).map_err(tls)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().map_err(tls)?;
        let mut sp = CertificateParams::new(vec![
            "localhost".to_string(),
            "kubernetes".to_string(),
            "kubernetes.default".to_string(),
            "kubernetes.default.svc".to_string(),
            "kubernetes.default.svc.cluster.local".to_string(),
        ])
        .map_err(tls)?;
        for ip in ["127.0.0.1", "::1", "10.96.0.1"] {
            if let Ok(addr) = ip.parse() {
                sp.subject_alt_names.push(SanType::IpAddress(addr));
            }
        }
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "kube-apiserver");
        sp.distinguished_name = dn;
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = sp.signed_by(&server_key, &issuer).map_err(tls)?;

        let admin_key = KeyPair::generate().map_err(tls)?;
        let mut ap = CertificateParams::new(Vec::<String>::new()).map_err(tls)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "admin");
        dn.push(DnType::OrganizationName, "system:masters");
        ap.distinguished_name = dn;
        ap.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_cert = ap.signed_by(&admin_key, &issuer).map_err(tls)?;

        for (name, body) in [
            ("ca.crt", ca_cert.pem()),
            ("ca.key", issuer.key().serialize_pem()),
            ("apiserver.crt", server_cert.pem()),
            ("apiserver.key", server_key.serialize_pem()),
            ("admin.crt", admin_cert.pem()),
            ("admin.key", admin_key.serialize_pem()),
        ] {
            write_private(&self.path(name), body.as_bytes())?;
        }
        tracing::info!(dir = %self.dir.display(), "generated cluster CA and certificates");
        Ok(())
    }

    /// A client certificate `<file>.crt`/`<file>.key` signed by the cluster CA for user `cn`
    /// in groups `orgs`, made once and reused. Returns (certificate, key) PEM.
    pub fn client_cert(
        &self,
        file: &str,
        cn: &str,
        orgs: &[&str],
    ) -> Result<(Vec<u8>, Vec<u8>), Error> {
        let (crt, key) = (format!("{file}.crt"), format!("{file}.key"));
        if self.path(&crt).is_file() && self.path(&key).is_file() {
            return Ok((self.read(&crt)?, self.read(&key)?));
        }
        let tls = |e: rcgen::Error| Error::Tls(e.to_string());
        let ca_key_pem = String::from_utf8_lossy(&self.read("ca.key")?).into_owned();
        let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(tls)?;
        let ca_pem = String::from_utf8_lossy(&self.read("ca.crt")?).into_owned();
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(tls)?;
        let k = KeyPair::generate().map_err(tls)?;
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(tls)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        for o in orgs {
            dn.push(DnType::OrganizationName, *o);
        }
        p.distinguished_name = dn;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = p.signed_by(&k, &issuer).map_err(tls)?;
        write_private(&self.path(&crt), cert.pem().as_bytes())?;
        write_private(&self.path(&key), k.serialize_pem().as_bytes())?;
        Ok((cert.pem().into_bytes(), k.serialize_pem().into_bytes()))
    }

    /// A kubeconfig for `server` authenticating as the client certificate `file` (see
    /// [`Pki::client_cert`]).
    pub fn client_kubeconfig(
        &self,
        server: &str,
        file: &str,
        cn: &str,
        orgs: &[&str],
    ) -> Result<String, Error> {
        let (crt, key) = self.client_cert(file, cn, orgs)?;
        let b64 = |b: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(b);
        Ok(format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kubevirt-rs\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\nusers:\n- name: {file}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: kubevirt-rs\n  context:\n    cluster: kubevirt-rs\n    user: {file}\n    namespace: default\ncurrent-context: kubevirt-rs\n",
            b64(self.read("ca.crt")?),
            b64(crt),
            b64(key),
        ))
    }

    /// The service account token signing key (`sa.key`, PKCS#8 PEM), made once.
    pub fn service_account_signer(&self) -> Result<crate::tokens::Signer, Error> {
        use rustls::pki_types::PrivatePkcs8KeyDer;
        let p = self.path("sa.key");
        if p.is_file() {
            let der = PrivatePkcs8KeyDer::from_pem_slice(&self.read("sa.key")?)
                .map_err(|e| Error::Tls(format!("sa.key: {e}")))?;
            return crate::tokens::Signer::from_pkcs8(der.secret_pkcs8_der()).map_err(Error::Tls);
        }
        let (der, signer) = crate::tokens::Signer::generate().map_err(Error::Tls)?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        let lines: Vec<String> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        );
        write_private(&p, pem.as_bytes())?;
        Ok(signer)
    }

    /// Kubeconfigs for the control plane's components in `DATA/kubeconfigs/`, each with its
    /// own client certificate: KubeVirt's service accounts (as upstream names them) and the
    /// scheduler. Kubelets get theirs per node ([`Pki::client_kubeconfig`] with
    /// `system:node:<node>` in `system:nodes`).
    pub fn component_kubeconfigs(&self, data_dir: &Path, server: &str) -> Result<(), Error> {
        let dir = data_dir.join("kubeconfigs");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display().to_string(), e))?;
        for (file, user, groups) in COMPONENTS {
            let kc = self.client_kubeconfig(server, file, user, groups)?;
            write_private(&dir.join(format!("{file}.kubeconfig")), kc.as_bytes())?;
        }
        Ok(())
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, Error> {
        let p = self.path(name);
        std::fs::read(&p).map_err(|e| Error::io(p.display().to_string(), e))
    }

    /// The rustls server configuration: our serving certificate, HTTP/2 and HTTP/1.1 by ALPN.
    /// Client certificates are accepted when offered and not required (users come later).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, Error> {
        let tls = |e: &dyn std::fmt::Display| Error::Tls(e.to_string());
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(&self.read("apiserver.crt")?)
                .collect::<Result<_, _>>()
                .map_err(|e| tls(&e))?;
        let key =
            PrivateKeyDer::from_pem_slice(&self.read("apiserver.key")?).map_err(|e| tls(&e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&self.read("ca.crt")?) {
            roots.add(c.map_err(|e| tls(&e))?).map_err(|e| tls(&e))?;
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| tls(&e))?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls(&e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .map_err(|e| tls(&e))?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }

    /// The admin kubeconfig for a server at `server` (e.g. `https://127.0.0.1:6443`).
    pub fn kubeconfig(&self, server: &str) -> Result<String, Error> {
        let b64 = |b: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(b);
        Ok(format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kubevirt-rs\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: kubevirt-rs\n  context:\n    cluster: kubevirt-rs\n    user: admin\n    namespace: default\ncurrent-context: kubevirt-rs\n",
            b64(self.read("ca.crt")?),
            b64(self.read("admin.crt")?),
            b64(self.read("admin.key")?),
        ))
    }
}

/// The components with their own identities: (file name, user, groups).
pub const COMPONENTS: &[(&str, &str, &[&str])] = &[
    (
        "virt-api",
        "system:serviceaccount:kubevirt:kubevirt-apiserver",
        &["system:serviceaccounts", "system:serviceaccounts:kubevirt"],
    ),
    (
        "virt-controller",
        "system:serviceaccount:kubevirt:kubevirt-controller",
        &["system:serviceaccounts", "system:serviceaccounts:kubevirt"],
    ),
    (
        "virt-handler",
        "system:serviceaccount:kubevirt:kubevirt-handler",
        &["system:serviceaccounts", "system:serviceaccounts:kubevirt"],
    ),
    ("scheduler", "system:kube-scheduler", &[]),
];

/// Writes a file readable by its owner only, atomically (temp file + rename).
pub fn write_private(path: &Path, body: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let io = |e| Error::io(path.display().to_string(), e);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(body).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_reusable_pki_and_kubeconfig() {
        let d = tempfile::tempdir().expect("tempdir");
        let pki = Pki::new(d.path());
        pki.ensure().expect("pki");
        let ca = std::fs::read(pki.path("ca.crt")).expect("ca");
        pki.ensure().expect("again");
        assert_eq!(std::fs::read(pki.path("ca.crt")).expect("ca"), ca);
        pki.server_config().expect("server config");
        let kc = pki.kubeconfig("https://127.0.0.1:1").expect("kubeconfig");
        assert!(kc.contains("certificate-authority-data"));
        let (c1, _) = pki
            .client_cert("front-proxy-client", "front-proxy-client", &[])
            .expect("client cert");
        let (c2, _) = pki
            .client_cert("front-proxy-client", "front-proxy-client", &[])
            .expect("again");
        assert_eq!(c1, c2);
        let kc = pki
            .client_kubeconfig("https://127.0.0.1:1", "bob", "bob", &["dev"])
            .expect("kubeconfig");
        assert!(kc.contains("user: bob"));
    }
}
