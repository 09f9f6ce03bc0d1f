//! TLS for the STOMP, WebSocket, OpenWire and console listeners (rustls), from PEM files named
//! in the config, with optional client certificates (`tls_client_ca`).
//!
//! A verified client certificate is the transport's proof of who the client is, known before
//! any protocol starts. Its subject goes with the connection's task as [`CLIENT_SUBJECT`]
//! (a task-local set by the listener around the protocol's serve), and `Users::authenticate`,
//! which every protocol's login goes through, reads it there: STOMP, STOMP over WebSocket,
//! OpenWire and MQTT all honour it without each carrying it through its own signatures.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

tokio::task_local! {
    /// The subject of the connection's verified TLS client certificate (see the module doc);
    /// unset, or `None`, when it has none.
    pub static CLIENT_SUBJECT: Option<String>;
}

/// The subject of the current connection's verified client certificate, if any.
pub fn client_subject() -> Option<String> {
    CLIENT_SUBJECT.try_with(Clone::clone).ok().flatten()
}

/// Who may connect: anyone (the default), or clients with a certificate from `ca`
/// (`required`), or clients with one or with none (`optional`).
pub struct ClientAuth<'a> {
    pub ca: &'a Path,
    pub required: bool,
}

/// The subject of a DER certificate as `TYPE=value` parts (e.g. `CN=app`), for comparing
/// with a configured `certificate_subject`; `None` when it cannot be read.
pub fn subject_of(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.subject().to_string())
}

/// A subject in one form whatever its order and spacing: `TYPE=value` parts, types in upper
/// case, sorted, joined by `,`. (A value containing an escaped comma is compared as written.)
pub fn normalize_subject(subject: &str) -> String {
    let mut parts: Vec<String> = subject
        .split(',')
        .filter_map(|part| {
            let (ty, value) = part.split_once('=')?;
            Some(format!(
                "{}={}",
                ty.trim().to_ascii_uppercase(),
                value.trim()
            ))
        })
        .collect();
    parts.sort();
    parts.join(",")
}

pub fn acceptor(certificate: &Path, key: &Path) -> Result<TlsAcceptor> {
    acceptor_with(certificate, key, None)
}

/// A server accepting with `certificate` and `key`, verifying client certificates per `client`.
pub fn acceptor_with(
    certificate: &Path,
    key: &Path,
    client: Option<ClientAuth<'_>>,
) -> Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certificate)
        .with_context(|| format!("cannot read the TLS certificate {}", certificate.display()))?
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("bad PEM in the TLS certificate {}", certificate.display()))?;
    if certs.is_empty() {
        anyhow::bail!("no certificate in {}", certificate.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read the TLS key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match client {
        None => builder.with_no_client_auth(),
        Some(c) => {
            let roots = Arc::new(root_store(c.ca)?);
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider);
            let verifier = if c.required {
                verifier.build()
            } else {
                verifier.allow_unauthenticated().build()
            }
            .with_context(|| format!("the client CAs in {}", c.ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not fit together")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The certificates in the PEM file `ca`, as trust anchors.
fn root_store(ca: &Path) -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)
        .with_context(|| format!("cannot read the CA file {}", ca.display()))?
    {
        roots
            .add(cert.with_context(|| format!("bad PEM in {}", ca.display()))?)
            .with_context(|| format!("a CA certificate in {} was refused", ca.display()))?;
    }
    if roots.is_empty() {
        anyhow::bail!("no certificate in {}", ca.display());
    }
    Ok(roots)
}

/// A client configuration trusting the certificates in `ca` (PEM).
pub fn client_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let roots = root_store(ca)?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS protocol versions")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_compare_whatever_their_order_and_spacing() {
        assert_eq!(
            normalize_subject("C=US, O=Example, CN=app"),
            normalize_subject("cn=app,o=Example,c=US")
        );
        assert_ne!(
            normalize_subject("CN=app,O=Example"),
            normalize_subject("CN=app,O=Other")
        );
    }

    #[test]
    fn a_generated_certificate_has_its_subject() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "app");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let subject = subject_of(cert.der()).unwrap();
        assert_eq!(normalize_subject(&subject), "CN=app,O=Example");
        assert_eq!(subject_of(b"not a certificate"), None);
    }
}
