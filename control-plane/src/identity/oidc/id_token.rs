//! Verifying an ID token: signature against the provider's keys (RS256 only), issuer, audience,
//! expiry and nonce, then the preset's rules for who the person is (Entra ID: `tid` + `oid`,
//! from an allowed tenant).

use openidconnect::core::{
    CoreGenderClaim, CoreIdTokenVerifier, CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AdditionalClaims, ClaimsVerificationError, IdToken, IdTokenClaims, Nonce,
    SignatureVerificationError,
};
use serde::{Deserialize, Serialize};

use super::settings::{OidcSettings, Preset};
use super::OidcError;

/// The only algorithm ID tokens may be signed with: what Entra ID, Google and most providers
/// use, and asymmetric (a token signed with the client secret would prove nothing more).
const ID_TOKEN_ALGORITHM: CoreJwsSigningAlgorithm = CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256;

/// Entra ID's claims for the person and their tenant.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TenantClaims {
    oid: Option<String>,
    tid: Option<String>,
}

impl AdditionalClaims for TenantClaims {}

type ProviderIdToken = IdToken<
    TenantClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

/// Who the provider says the person is, from a verified ID token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalIdentity {
    /// Immutable at the provider: `tid:oid` for Entra ID, `sub` otherwise.
    pub subject: String,
    pub email: Option<String>,
    /// Whether the provider asserts that the person controls `email`.
    pub email_verified: bool,
    pub preferred_username: Option<String>,
    pub name: Option<String>,
    /// Entra ID's `tid`.
    pub tenant: Option<String>,
}

/// Why an ID token was not accepted.
#[derive(Debug)]
pub enum IdTokenError {
    /// Signed with a key not among those known: worth fetching the keys again.
    UnknownKey,
    Invalid(String),
}

impl IdTokenError {
    pub fn into_error(self) -> OidcError {
        match self {
            Self::UnknownKey => OidcError::Refused("the ID token names an unknown key".into()),
            Self::Invalid(why) => OidcError::Refused(why),
        }
    }
}

pub fn verify_id_token(
    settings: &OidcSettings,
    metadata: &CoreProviderMetadata,
    raw: &str,
    nonce: &Nonce,
) -> Result<ExternalIdentity, IdTokenError> {
    let invalid = |why: String| IdTokenError::Invalid(why);
    let token: ProviderIdToken = raw
        .parse()
        .map_err(|e| invalid(format!("unreadable ID token: {e}")))?;
    let mut verifier = CoreIdTokenVerifier::new_public_client(
        settings.client_id.clone(),
        metadata.issuer().clone(),
        metadata.jwks().clone(),
    )
    .set_allowed_algs([ID_TOKEN_ALGORITHM]);
    if let Preset::Entra(_) = settings.preset {
        // Checked below against the token's own tenant, as a multi-tenant issuer is a template.
        verifier = verifier.require_issuer_match(false);
    }
    let claims = token
        .claims(&verifier, nonce)
        .map_err(|error| match error {
            ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            ) => IdTokenError::UnknownKey,
            other => invalid(format!("ID token refused: {other}")),
        })?;
    let (subject, tenant) = person(settings, metadata, claims)?;
    Ok(ExternalIdentity {
        subject,
        email: claims.email().map(|email| email.as_str().to_string()),
        email_verified: claims.email_verified() == Some(true),
        preferred_username: claims.preferred_username().map(|u| u.as_str().to_string()),
        name: claims
            .name()
            .and_then(|name| name.get(None))
            .map(|name| name.as_str().to_string()),
        tenant,
    })
}

/// The immutable subject, and for Entra ID the tenant, once the preset's rules hold.
fn person(
    settings: &OidcSettings,
    metadata: &CoreProviderMetadata,
    claims: &IdTokenClaims<TenantClaims, CoreGenderClaim>,
) -> Result<(String, Option<String>), IdTokenError> {
    let Preset::Entra(tenants) = &settings.preset else {
        return Ok((claims.subject().as_str().to_string(), None));
    };
    let extra = claims.additional_claims();
    let (Some(tid), Some(oid)) = (extra.tid.as_deref(), extra.oid.as_deref()) else {
        return Err(IdTokenError::Invalid(
            "the ID token has no `tid` and `oid`".into(),
        ));
    };
    if claims.issuer().as_str() != tenants.issuer_of(tid) {
        return Err(IdTokenError::Invalid(format!(
            "the ID token's issuer is not tenant {tid}'s"
        )));
    }
    let allowed = if !tenants.allowed.is_empty() {
        tenants.allowed.iter().any(|allowed| allowed == tid)
    } else if tenants.multi_tenant() {
        true
    } else {
        // The configured tenant, as its discovery document names it (an id even when the
        // tenant was configured by domain).
        metadata.issuer().as_str() == tenants.issuer_of(tid)
    };
    if !allowed {
        return Err(IdTokenError::Invalid(format!(
            "tenant {tid} is not allowed"
        )));
    }
    Ok((format!("{tid}:{oid}"), Some(tid.to_string())))
}
