//! HTTPS material and kubeconfig: a throw-away CA and a server certificate for
//! 127.0.0.1/localhost signed by it, and the kubeconfig that trusts that CA.

use std::sync::Arc;

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

pub(crate) struct TlsMaterial {
    pub ca_pem: String,
    pub acceptor: TlsAcceptor,
}

/// Generates a CA and a server certificate. Clients verify the server against the CA, so the
/// server certificate is a leaf (a self-signed CA used as the server certificate is rejected
/// by strict verifiers such as rustls/webpki).
pub(crate) fn generate() -> Result<TlsMaterial, String> {
    let err = |e: rcgen::Error| format!("certificate generation failed: {e}");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "kube-sim-ca");
    ca_params.distinguished_name = dn;
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().map_err(err)?;
    let issuer = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(err)?;

    let mut params = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "kubernetes.default.svc".to_string(),
    ])
    .map_err(err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "kube-apiserver");
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let key = KeyPair::generate().map_err(err)?;
    let cert = params.signed_by(&key, &issuer).map_err(err)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration failed: {e}"))?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .map_err(|e| format!("TLS configuration failed: {e}"))?;
    // HTTP/1.1 only: the server speaks nothing else.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsMaterial {
        ca_pem: issuer.pem(),
        acceptor: TlsAcceptor::from(Arc::new(config)),
    })
}

/// A kubeconfig with one cluster, user and context, all named `kube-sim`.
pub(crate) fn kubeconfig(server: &str, token: &str, ca_pem: Option<&str>) -> String {
    // Double-quoted YAML scalars accept JSON string syntax, which escapes anything a token
    // or URL might contain.
    let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string());
    let ca = ca_pem
        .map(|pem| {
            format!(
                "    certificate-authority-data: {}\n",
                base64::engine::general_purpose::STANDARD.encode(pem)
            )
        })
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n{ca}    server: {}\n  name: kube-sim\ncontexts:\n- context:\n    cluster: kube-sim\n    namespace: default\n    user: kube-sim\n  name: kube-sim\ncurrent-context: kube-sim\npreferences: {{}}\nusers:\n- name: kube-sim\n  user:\n    token: {}\n",
        q(server),
        q(token)
    )
}
