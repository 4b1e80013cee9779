//! How Envoy trusts an `https` backend: its certificate must chain to the deployment's CA
//! bundle (`routing.upstream_ca_file`, the system's by default) or to the backend's own CA
//! (`tls_ca`), and name the server Envoy asked for. `tls_insecure` turns the check off for one
//! backend; it is logged and shown in the admin API.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde::Serialize;

use crate::domain::validation::InvalidField;
use crate::routing::backend::Backend;

/// The largest `tls_ca` accepted: a few CA certificates.
pub const MAX_CA_PEM_BYTES: usize = 64 * 1024;

/// CA certificates (PEM) trusted for one backend instead of the deployment's bundle; each
/// parses as an X.509 certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct TrustedCa(String);

impl TrustedCa {
    pub fn parse(pem: &str) -> Result<Self, InvalidField> {
        let invalid = |problem| InvalidField {
            field: "tls_ca",
            problem,
        };
        if pem.len() > MAX_CA_PEM_BYTES {
            return Err(invalid("must be at most 65536 bytes of PEM"));
        }
        let mut certificates = 0;
        for certificate in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let certificate = certificate.map_err(|_| invalid("must be PEM certificates"))?;
            webpki::anchor_from_trusted_cert(&certificate)
                .map_err(|_| invalid("holds a certificate that cannot be parsed"))?;
            certificates += 1;
        }
        if certificates == 0 {
            return Err(invalid(
                "must hold at least one PEM certificate (-----BEGIN CERTIFICATE-----)",
            ));
        }
        Ok(Self(pem.to_string()))
    }

    /// A value read back from storage, checked when it was written.
    pub fn from_stored(pem: String) -> Self {
        Self(pem)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Refuses TLS settings that cannot apply to `backend`: a CA or an opt-out on a plain `http`
/// backend, or both at once.
pub fn check(backend: &Backend) -> Result<(), InvalidField> {
    let https_only = "applies to https backends only";
    if !backend.url.tls && backend.tls_ca.is_some() {
        return Err(InvalidField {
            field: "tls_ca",
            problem: https_only,
        });
    }
    if !backend.url.tls && backend.tls_insecure {
        return Err(InvalidField {
            field: "tls_insecure",
            problem: https_only,
        });
    }
    if backend.tls_ca.is_some() && backend.tls_insecure {
        return Err(InvalidField {
            field: "tls_insecure",
            problem: "cannot be true for a backend with a `tls_ca`",
        });
    }
    Ok(())
}

/// Warns about a backend Envoy reaches over TLS without checking who answers.
pub fn warn_if_unverified(backend: &Backend) {
    if backend.url.tls && backend.tls_insecure {
        tracing::warn!(
            backend = %backend.id,
            url = %backend.url,
            "TLS to this backend is not verified (`tls_insecure`): anyone on the path can \
             impersonate it"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = include_str!("../../../tests/fixtures/upstream-tls/ca.pem");

    #[test]
    fn a_ca_is_pem_certificates_that_parse() {
        assert!(TrustedCa::parse(CA).is_ok());
        assert!(TrustedCa::parse(&format!("{CA}{CA}")).is_ok());
        let body_start = CA.find('\n').expect("a PEM body") + 1;
        let corrupt = format!("{}AAAA{}", &CA[..body_start], &CA[body_start + 4..]);
        for refused in [
            "",
            "not a certificate",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            corrupt.as_str(),
        ] {
            assert_eq!(
                TrustedCa::parse(refused).map_err(|e| e.field),
                Err("tls_ca"),
                "{refused}"
            );
        }
        let too_long = CA.repeat(MAX_CA_PEM_BYTES / CA.len() + 1);
        assert!(TrustedCa::parse(&too_long).is_err());
    }
}
