//! How the health checker reaches a backend: over TLS it asks for the backend's server name
//! and trusts what Envoy trusts for it (its own CA, or nothing when it opted out), so a
//! backend Envoy can use is not reported down, nor the other way round.

use std::borrow::Cow;

use crate::routing::backend::Backend;

/// The client to probe a backend with, and the URL its health-check path is appended to.
pub struct ProbeTarget<'a> {
    pub client: Cow<'a, reqwest::Client>,
    pub base_url: String,
}

/// `shared` for a backend it can check as it is; otherwise a client of the backend's own.
pub async fn target<'a>(
    backend: &Backend,
    shared: &'a reqwest::Client,
) -> Result<ProbeTarget<'a>, String> {
    let url = &backend.url;
    let server_name = backend.tls_sni.as_deref().unwrap_or(&url.host);
    let renamed = server_name != url.host;
    if !url.tls || (!renamed && backend.tls_ca.is_none() && !backend.tls_insecure) {
        return Ok(ProbeTarget {
            client: Cow::Borrowed(shared),
            base_url: url.to_string(),
        });
    }
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(backend.tls_insecure);
    if let Some(ca) = &backend.tls_ca {
        let certificates = reqwest::Certificate::from_pem_bundle(ca.as_str().as_bytes())
            .map_err(|_| "its tls_ca cannot be read".to_string())?;
        builder = builder.tls_built_in_root_certs(false);
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    let mut base_url = url.to_string();
    if renamed {
        // Connect to the backend's address while naming its server, as Envoy does.
        let addresses: Vec<_> = tokio::net::lookup_host((url.host.as_str(), url.port))
            .await
            .map_err(|_| "its host cannot be resolved".to_string())?
            .collect();
        builder = builder.resolve_to_addrs(server_name, &addresses);
        base_url = format!("https://{server_name}:{}", url.port);
    }
    let client = builder
        .build()
        .map_err(|_| "no TLS client can be built for it".to_string())?;
    Ok(ProbeTarget {
        client: Cow::Owned(client),
        base_url,
    })
}
