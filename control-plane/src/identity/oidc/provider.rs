//! One provider at run time: its discovery document and keys, fetched on first use and cached
//! (a provider down at start-up does not stop the control plane), the authorization request,
//! and the code exchange that ends in a verified [`ExternalIdentity`].

use std::time::{Duration, Instant};

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, CsrfToken, JsonWebKeySet, Nonce, PkceCodeChallenge, PkceCodeVerifier,
    RequestTokenError, Scope, TokenResponse,
};
use tokio::sync::Mutex;
use url::Url;

use super::id_token::{verify_id_token, ExternalIdentity, IdTokenError};
use super::settings::{OidcSettings, Preset};
use super::OidcError;

/// The least time between two fetches of the provider's keys for an unknown `kid`, so that
/// tokens naming made-up keys cannot make this replica hammer the provider.
const MIN_KEY_REFETCH: Duration = Duration::from_secs(30);

/// What the browser's flow cookie must carry back to finish a login.
pub struct FlowSecrets {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// A provider's discovery document with its keys, and when the keys were last fetched again
/// for an unknown `kid`.
#[derive(Clone)]
pub(super) struct Discovery {
    pub(super) metadata: CoreProviderMetadata,
    keys_refetched_at: Option<Instant>,
}

pub struct OidcProvider {
    pub settings: OidcSettings,
    http: reqwest::Client,
    discovery: Mutex<Option<Discovery>>,
}

impl OidcProvider {
    pub fn new(settings: OidcSettings) -> Result<Self, reqwest::Error> {
        // The token call must not follow redirects (a redirect would carry the code and the
        // client secret elsewhere), and nothing here needs to.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .build()?;
        Ok(Self {
            settings,
            http,
            discovery: Mutex::new(None),
        })
    }

    /// The provider's authorization URL for a new login, and the secrets it is bound to.
    pub async fn authorization_request(&self) -> Result<(Url, FlowSecrets), OidcError> {
        let discovery = self.within_timeout(self.discovery()).await?;
        let client = self.client(&discovery);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in self.settings.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        Ok((
            url,
            FlowSecrets {
                state: state.secret().clone(),
                nonce: nonce.secret().clone(),
                pkce_verifier: verifier.secret().clone(),
            },
        ))
    }

    /// Exchanges `code` (with the PKCE verifier) and verifies the ID token it brings.
    pub async fn finish_login(
        &self,
        code: String,
        secrets: &FlowSecrets,
    ) -> Result<ExternalIdentity, OidcError> {
        self.within_timeout(async {
            let discovery = self.discovery().await?;
            let client = self.client(&discovery);
            let response = client
                .exchange_code(AuthorizationCode::new(code))
                .map_err(|e| OidcError::Unavailable(e.to_string()))?
                .set_pkce_verifier(PkceCodeVerifier::new(secrets.pkce_verifier.clone()))
                .request_async(&self.http)
                .await
                .map_err(|error| match error {
                    RequestTokenError::ServerResponse(refusal) => OidcError::Refused(format!(
                        "the provider refused the code: {}",
                        refusal.error()
                    )),
                    RequestTokenError::Request(error) => OidcError::Unavailable(error.to_string()),
                    other => OidcError::Unavailable(format!("unusable token answer: {other}")),
                })?;
            let raw = response
                .id_token()
                .ok_or_else(|| OidcError::Refused("no ID token in the token answer".into()))?
                .to_string();
            let nonce = Nonce::new(secrets.nonce.clone());
            match verify_id_token(&self.settings, &discovery.metadata, &raw, &nonce) {
                Err(IdTokenError::UnknownKey) => {
                    let discovery = self.refetch_keys(discovery).await?;
                    verify_id_token(&self.settings, &discovery.metadata, &raw, &nonce)
                        .map_err(IdTokenError::into_error)
                }
                other => other.map_err(IdTokenError::into_error),
            }
        })
        .await
    }

    async fn within_timeout<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, OidcError>>,
    ) -> Result<T, OidcError> {
        tokio::time::timeout(self.settings.timeout, work)
            .await
            .unwrap_or_else(|_| {
                Err(OidcError::Unavailable(
                    "the provider did not answer in time".into(),
                ))
            })
    }

    fn client(
        &self,
        discovery: &Discovery,
    ) -> CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    > {
        CoreClient::from_provider_metadata(
            discovery.metadata.clone(),
            self.settings.client_id.clone(),
            Some(self.settings.client_secret.clone()),
        )
        .set_redirect_uri(self.settings.redirect_uri.clone())
    }

    /// The cached discovery, or a fresh one (kept only if it succeeds).
    async fn discovery(&self) -> Result<Discovery, OidcError> {
        let mut cached = self.discovery.lock().await;
        if let Some(discovery) = cached.as_ref() {
            return Ok(discovery.clone());
        }
        let metadata = self.fetch_metadata().await?;
        let keys = JsonWebKeySet::fetch_async(metadata.jwks_uri(), &self.http)
            .await
            .map_err(|e| {
                OidcError::Unavailable(format!("cannot fetch the provider's keys: {e}"))
            })?;
        let discovery = Discovery {
            metadata: metadata.set_jwks(keys),
            keys_refetched_at: None,
        };
        *cached = Some(discovery.clone());
        Ok(discovery)
    }

    /// Fetches the keys again (a token named a key not among them), at most once per
    /// [`MIN_KEY_REFETCH`]; answers the discovery to verify with.
    async fn refetch_keys(&self, used: Discovery) -> Result<Discovery, OidcError> {
        let mut cached = self.discovery.lock().await;
        let current = cached.clone().unwrap_or(used);
        if current
            .keys_refetched_at
            .is_some_and(|at| at.elapsed() < MIN_KEY_REFETCH)
        {
            return Ok(current);
        }
        let keys = JsonWebKeySet::fetch_async(current.metadata.jwks_uri(), &self.http)
            .await
            .map_err(|e| {
                OidcError::Unavailable(format!("cannot fetch the provider's keys: {e}"))
            })?;
        let discovery = Discovery {
            metadata: current.metadata.set_jwks(keys),
            keys_refetched_at: Some(Instant::now()),
        };
        *cached = Some(discovery.clone());
        Ok(discovery)
    }

    /// The discovery document, whose issuer must be the one configured (for Entra ID: a
    /// tenant's issuer under the authority, or the `{tenantid}` template of a multi-tenant one).
    async fn fetch_metadata(&self) -> Result<CoreProviderMetadata, OidcError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.settings.issuer.as_str().trim_end_matches('/')
        );
        let answer = self
            .http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| {
                OidcError::Unavailable(format!("cannot fetch the discovery document: {e}"))
            })?;
        let body = answer.bytes().await.map_err(|e| {
            OidcError::Unavailable(format!("cannot read the discovery document: {e}"))
        })?;
        let metadata: CoreProviderMetadata = serde_json::from_slice(&body)
            .map_err(|e| OidcError::Unavailable(format!("unusable discovery document: {e}")))?;
        let issuer = metadata.issuer().as_str();
        let expected = match &self.settings.preset {
            Preset::Entra(tenants) => {
                let tenant = issuer
                    .strip_prefix(&format!("{}/", tenants.authority))
                    .and_then(|rest| rest.strip_suffix("/v2.0"))
                    .filter(|tenant| !tenant.is_empty() && !tenant.contains('/'));
                tenant.is_some()
            }
            Preset::Google | Preset::Generic => issuer == self.settings.issuer.as_str(),
        };
        if !expected {
            return Err(OidcError::Unavailable(format!(
                "the discovery document names another issuer: {issuer}"
            )));
        }
        Ok(metadata)
    }
}
