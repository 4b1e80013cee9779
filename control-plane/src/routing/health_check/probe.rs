//! One check of a backend: a GET of its health-check path. Over TLS the checker asks for the
//! backend's server name and trusts what Envoy trusts for it (its own CA, or nothing when it
//! opted out), so a backend Envoy can use is not reported down, nor the other way round.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use crate::routing::backend::Backend;

/// The client every check starts from; `user_agent` tells a backend which replica checks it.
pub fn client_builder(user_agent: &str) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(user_agent)
}

/// `Ok(latency_ms)` for a 2xx or 3xx answer within the timeout, else why not.
pub async fn probe(
    shared: &reqwest::Client,
    user_agent: &str,
    backend: &Backend,
    timeout: Duration,
) -> Result<u64, String> {
    let target = target(backend, shared, user_agent).await?;
    let url = format!("{}{}", target.base_url, backend.health_check_path);
    let started = Instant::now();
    let response = target
        .client
        .get(&url)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                "timed out".to_string()
            } else {
                "connection failed".to_string()
            }
        })?;
    let status = response.status();
    if status.is_success() || status.is_redirection() {
        Ok(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX))
    } else {
        Err(format!("answered {}", status.as_u16()))
    }
}

/// The client to probe a backend with, and the URL its health-check path is appended to.
struct ProbeTarget<'a> {
    client: Cow<'a, reqwest::Client>,
    base_url: String,
}

/// `shared` for a backend it can check as it is; otherwise a client of the backend's own.
async fn target<'a>(
    backend: &Backend,
    shared: &'a reqwest::Client,
    user_agent: &str,
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
    let mut builder = client_builder(user_agent).danger_accept_invalid_certs(backend.tls_insecure);
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
