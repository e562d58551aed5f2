//! TLS for the HTTP clients of [`Downstream`](super::downstream::Downstream): Prometheus's
//! `tls_config` (the one Thanos's `http_config` and Alertmanager configs take) turned into a
//! rustls client configuration. Files are read once, when the configuration is built.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Deserialize;

/// Prometheus's `tls_config`: every field optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// CA certificates (PEM) that server certificates must chain to; the system's when unset.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) and its key, for servers that ask for one; both or neither.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The name the server certificate must carry (and the SNI sent), instead of the URL's host.
    pub server_name: Option<String>,
    /// Accept any server certificate (for testing only, as Prometheus warns).
    pub insecure_skip_verify: bool,
}

/// Prometheus's `tls_config` (and Thanos's `exthttp.TLSConfig`, the same fields) as the YAML
/// has it: every field optional, unknown ones refused.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsFields {
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
    pub server_name: String,
    pub insecure_skip_verify: bool,
}

impl TlsFields {
    /// The configuration these fields give (empty strings are unset).
    pub fn into_config(self) -> TlsConfig {
        let path = |s: String| (!s.is_empty()).then(|| PathBuf::from(s));
        TlsConfig {
            ca_file: path(self.ca_file),
            cert_file: path(self.cert_file),
            key_file: path(self.key_file),
            server_name: (!self.server_name.is_empty()).then_some(self.server_name),
            insecure_skip_verify: self.insecure_skip_verify,
        }
    }
}

/// A built client configuration, shared by every connection of the clients given it.
#[derive(Clone, Debug)]
pub struct Tls {
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) server_name: Option<ServerName<'static>>,
}

fn read_pem_certs(what: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{what} {}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

type Builder = rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>;

fn builder(provider: &Arc<rustls::crypto::CryptoProvider>) -> Result<Builder, String> {
    ClientConfig::builder_with_provider(Arc::clone(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))
}

impl Tls {
    /// Builds the configuration of `c`, reading its files; errors name the field and the file.
    pub fn new(c: &TlsConfig) -> Result<Tls, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = builder(&provider)?;
        let builder = if c.insecure_skip_verify {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        } else {
            let mut roots = RootCertStore::empty();
            match &c.ca_file {
                Some(path) => {
                    for cert in read_pem_certs("ca_file", path)? {
                        roots.add(cert).map_err(|e| format!("ca_file {}: {e}", path.display()))?;
                    }
                }
                None => {
                    let found = rustls_native_certs::load_native_certs();
                    if found.certs.is_empty() {
                        return Err(format!(
                            "no system CA certificates found ({:?}); set tls_config.ca_file",
                            found.errors
                        ));
                    }
                    // Certificates the store cannot parse are skipped, as Go's system pool does.
                    roots.add_parsable_certificates(found.certs);
                }
            }
            builder.with_root_certificates(roots)
        };
        let config = match (&c.cert_file, &c.key_file) {
            (Some(cert), Some(key)) => {
                let certs = read_pem_certs("cert_file", cert)?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("key_file {}: {e}", key.display()))?;
                builder.with_client_auth_cert(certs, key).map_err(|e| format!("cert_file and key_file: {e}"))?
            }
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => return Err("cert_file is set without key_file".to_owned()),
            (None, Some(_)) => return Err("key_file is set without cert_file".to_owned()),
        };
        let server_name = c
            .server_name
            .as_ref()
            .map(|name| ServerName::try_from(name.clone()).map_err(|e| format!("server_name {name:?}: {e}")))
            .transpose()?;
        Ok(Tls { config: Arc::new(config), server_name })
    }

    /// A configuration that trusts no server: for clients of `http://` URLs, which never use it.
    pub(crate) fn trusting_nobody() -> Result<Tls, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = builder(&provider)?.with_root_certificates(RootCertStore::empty()).with_no_client_auth();
        Ok(Tls { config: Arc::new(config), server_name: None })
    }
}

/// `insecure_skip_verify`: the server's certificate is not checked, its signatures are.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_files_are_named_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        let missing = dir.path().join("missing.pem");
        let cases = [
            (TlsConfig { ca_file: Some(missing.clone()), ..Default::default() }, "ca_file"),
            (TlsConfig { ca_file: Some(garbage.clone()), ..Default::default() }, "no PEM certificate"),
            (TlsConfig { cert_file: Some(garbage.clone()), ..Default::default() }, "without key_file"),
            (TlsConfig { key_file: Some(garbage.clone()), ..Default::default() }, "without cert_file"),
            (
                TlsConfig {
                    insecure_skip_verify: true,
                    cert_file: Some(garbage.clone()),
                    key_file: Some(garbage.clone()),
                    ..Default::default()
                },
                "cert_file",
            ),
            (
                TlsConfig { insecure_skip_verify: true, server_name: Some("bad name!".into()), ..Default::default() },
                "server_name",
            ),
        ];
        for (config, want) in cases {
            let err = Tls::new(&config).unwrap_err();
            assert!(err.contains(want), "{config:?}: {err}");
        }
        assert!(Tls::new(&TlsConfig { insecure_skip_verify: true, ..Default::default() }).is_ok());
    }
}
