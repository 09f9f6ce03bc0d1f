//! TLS client certificates (issue 26, `transports.tls_client_ca`): a client whose certificate
//! a trusted authority signed logs in as the user whose `certificate_subject` it carries,
//! whatever login it gives (ActiveMQ's certificate authentication plugin); without one, with
//! one from another authority, or with one no user claims, it gets nothing. Every certificate
//! is made by the test (rcgen); the client is raw STOMP over rustls.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use broker::config::BrokerConfig;
use common::TestBroker;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A certificate authority, its PEM file, and a server certificate for `localhost`.
struct Pki {
    dir: tempfile::TempDir,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

/// A client's certificate chain and key.
struct ClientCert {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        let ca = params.self_signed(&ca_key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&server_key, &ca, &ca_key)
            .unwrap();
        std::fs::write(dir.path().join("server.pem"), server.pem()).unwrap();
        std::fs::write(dir.path().join("server.key"), server_key.serialize_pem()).unwrap();
        Pki { dir, ca, ca_key }
    }

    /// A client certificate with subject `CN=<cn>, O=Example`, signed by this authority.
    fn client(&self, cn: &str) -> ClientCert {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Example");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        ClientCert {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        }
    }

    fn path(&self, file: &str) -> String {
        self.dir.path().join(file).display().to_string()
    }

    /// A broker with STOMP over TLS requiring (or, `optional`, accepting) client certificates
    /// of this authority; user `app` logs in by certificate only, `admin` by password, and
    /// authorization tells them apart.
    async fn broker(&self, mode: &str) -> TestBroker {
        TestBroker::start(&format!(
            "[[users]]\nname = \"app\"\ncertificate_subject = \"CN=app,O=Example\"\ngroups = [\"apps\"]\n\
             [[users]]\nname = \"admin\"\npassword = \"admin\"\ngroups = [\"admins\"]\n\
             [[authorization]]\nqueue = \">\"\nread = [\"admins\"]\nwrite = [\"admins\"]\nadmin = [\"admins\"]\n\
             [[authorization]]\nqueue = \"app.>\"\nread = [\"apps\"]\nwrite = [\"apps\"]\nadmin = [\"apps\"]\n\
             [[authorization]]\ntopic = \"ActiveMQ.Advisory.>\"\nread = [\"admins\", \"apps\"]\nwrite = [\"admins\", \"apps\"]\nadmin = [\"admins\", \"apps\"]\n\
             [transports]\nstomp = \"127.0.0.1:0\"\nstomp_tls = \"127.0.0.1:0\"\n\
             tls_certificate = \"{}\"\ntls_key = \"{}\"\ntls_client_ca = \"{}\"\ntls_client_auth = \"{mode}\"\n",
            self.path("server.pem"),
            self.path("server.key"),
            self.path("ca.pem"),
        ))
        .await
    }
}

/// A STOMP connection over TLS to `b`, trusting `pki`'s authority, presenting `cert`.
struct Stomp {
    s: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
}

impl Stomp {
    /// Connects and sends CONNECT with `login`; the broker's first frame, or `None` when the
    /// connection ended first (the handshake refused).
    async fn connect(
        b: &TestBroker,
        pki: &Pki,
        cert: Option<ClientCert>,
        login: &str,
    ) -> (Option<Stomp>, Option<String>) {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.ca.der().clone()).unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        let config = match cert {
            Some(c) => builder.with_client_auth_cert(c.chain, c.key).unwrap(),
            None => builder.with_no_client_auth(),
        };
        let tcp = tokio::net::TcpStream::connect(b.server.stomp_tls.unwrap())
            .await
            .unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let Ok(s) = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
        else {
            return (None, None);
        };
        let mut c = Stomp { s };
        let frame = format!(
            "CONNECT\naccept-version:1.2\nhost:localhost\nlogin:{login}\npasscode:admin\n\n\0"
        );
        if c.s.write_all(frame.as_bytes()).await.is_err() {
            return (None, None);
        }
        let first = c.frame().await;
        (Some(c), first)
    }

    /// The next frame (up to its NUL), or `None` once the connection ended.
    async fn frame(&mut self) -> Option<String> {
        let mut out = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.s.read(&mut byte)).await {
                Ok(Ok(1)) if byte[0] == 0 => return Some(String::from_utf8_lossy(&out).into()),
                Ok(Ok(1)) => out.push(byte[0]),
                Ok(_) => return None,
                Err(_) => panic!("no frame within 10 s: {}", String::from_utf8_lossy(&out)),
            }
        }
    }

    /// SEND with a receipt: the answer frame.
    async fn send(&mut self, destination: &str) -> String {
        let frame = format!("SEND\ndestination:{destination}\nreceipt:r\n\nhello\0");
        self.s.write_all(frame.as_bytes()).await.unwrap();
        self.frame().await.expect("an answer")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_is_its_subjects_user_and_nothing_else_gets_in() {
    let pki = Pki::new("test CA");
    let b = pki.broker("required").await;

    // The certificate decides who it is: logging in as admin, it is still app.
    let (c, first) = Stomp::connect(&b, &pki, Some(pki.client("app")), "admin").await;
    assert!(
        first.as_deref().unwrap().starts_with("CONNECTED"),
        "{first:?}"
    );
    let mut c = c.unwrap();
    assert!(c.send("/queue/app.orders").await.starts_with("RECEIPT"));
    let refused = c.send("/queue/payroll").await;
    assert!(
        refused.starts_with("ERROR") && refused.contains("app"),
        "{refused}"
    );

    // No certificate: refused in the handshake (or at the first read, with TLS 1.3).
    let (_, first) = Stomp::connect(&b, &pki, None, "admin").await;
    assert_eq!(first, None);

    // A certificate from another authority: the same.
    let other = Pki::new("another CA");
    let (_, first) = Stomp::connect(&b, &pki, Some(other.client("app")), "admin").await;
    assert_eq!(first, None);

    // A good certificate nobody claims: the login is refused.
    let (_, first) = Stomp::connect(&b, &pki, Some(pki.client("stranger")), "admin").await;
    assert!(
        first.as_deref().unwrap_or("").starts_with("ERROR"),
        "{first:?}"
    );

    // Plain TCP is untouched: passwords as before, and app has none.
    let admin = b.client().await;
    admin.disconnect().await.unwrap();
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optional_client_certificate_leaves_passwords_to_the_others() {
    let pki = Pki::new("test CA");
    let b = pki.broker("optional").await;
    let (c, first) = Stomp::connect(&b, &pki, None, "admin").await;
    assert!(
        first.as_deref().unwrap().starts_with("CONNECTED"),
        "{first:?}"
    );
    assert!(
        c.unwrap()
            .send("/queue/payroll")
            .await
            .starts_with("RECEIPT")
    );
    let (c, first) = Stomp::connect(&b, &pki, Some(pki.client("app")), "admin").await;
    assert!(
        first.as_deref().unwrap().starts_with("CONNECTED"),
        "{first:?}"
    );
    assert!(c.unwrap().send("/queue/payroll").await.starts_with("ERROR"));
    b.stop().await;
}

#[test]
fn client_certificate_settings_are_checked() {
    let err = |text: &str| BrokerConfig::from_toml(text).unwrap_err().to_string();
    assert!(
        err("[transports]\ntls_client_auth = \"required\"\n")
            .contains("transports.tls_client_auth")
    );
    assert!(
        err("[transports]\ntls_client_ca = \"ca.pem\"\ntls_client_auth = \"maybe\"\n")
            .contains("transports.tls_client_auth")
    );
    assert!(err("[[users]]\nname = \"nopass\"\n").contains("users[0].password"));
    // A certificate-only user needs no password.
    BrokerConfig::from_toml("[[users]]\nname = \"app\"\ncertificate_subject = \"CN=app\"\n")
        .unwrap();
}
