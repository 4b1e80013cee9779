//! Session access tokens: signed JWTs the filter verifies without calling home.

use std::sync::{Arc, RwLock};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::sealing::Sealer;
use super::signing::{PublicJwk, SigningAlgorithm, SigningKeyError, SigningKeyRecord};
use crate::accounts::user::User;
use crate::changes::signal::{Followers, Reach};
use crate::domain::ids::SessionId;
use crate::domain::{now, Timestamp};

/// Seconds of clock skew tolerated between the control plane and verifiers.
pub const LEEWAY_SECS: u64 = 30;
/// Appended to the audience of tokens that may only change the password, so that the filter
/// (which accepts only the audience itself) refuses them.
const PASSWORD_CHANGE_AUDIENCE_SUFFIX: &str = ":password-change";
/// Appended to the audience of tokens that may only enrol a second factor, so that the filter
/// refuses them too.
const MFA_ENROLMENT_AUDIENCE_SUFFIX: &str = ":mfa-enrolment";

/// What an access token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    /// Everything the user may do, behind Envoy and at the admin API.
    Access,
    /// Only changing the user's own password at the control plane: after an admin's reset.
    PasswordChange,
    /// Only enrolling a second factor at the control plane: for a user who must use one and
    /// has none yet.
    MfaEnrolment,
}

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// The user id.
    pub sub: String,
    /// The session id, so ending the session revokes its tokens.
    pub sid: String,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    pub role: String,
}

/// Why a token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("no signing key is active")]
    NoActiveKey,
    #[error("token refused: {0}")]
    Invalid(String),
    #[error("signing failed: {0}")]
    Signing(String),
    #[error(transparent)]
    Key(#[from] SigningKeyError),
}

struct LoadedKey {
    record: SigningKeyRecord,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

/// Who issues tokens, for whom, and for how long.
#[derive(Debug, Clone)]
pub struct TokenPolicy {
    pub issuer: String,
    pub audience: String,
    pub access_ttl_secs: i64,
}

/// Issues and verifies access tokens with the current set of signing keys.
#[derive(Clone)]
pub struct SessionTokens {
    policy: Arc<TokenPolicy>,
    keys: Arc<RwLock<Vec<LoadedKey>>>,
}

impl SessionTokens {
    pub fn new(policy: TokenPolicy) -> Self {
        Self {
            policy: Arc::new(policy),
            keys: Arc::new(RwLock::new(Vec::new())),
        }
    }

    pub fn policy(&self) -> &TokenPolicy {
        &self.policy
    }

    /// Unix seconds by which every access token issued until now has expired, leeway
    /// included: how long an ended session's tokens must stay refused.
    pub fn issued_tokens_expire_at(&self) -> i64 {
        now().timestamp() + self.policy.access_ttl_secs + i64::try_from(LEEWAY_SECS).unwrap_or(0)
    }

    /// Replaces the key set with `records` (the store's, newest first).
    pub fn load(&self, records: Vec<SigningKeyRecord>, sealer: &Sealer) -> Result<(), TokenError> {
        let loaded = records
            .into_iter()
            .map(|record| load_key(record, sealer))
            .collect::<Result<Vec<_>, _>>()?;
        if let Ok(mut keys) = self.keys.write() {
            *keys = loaded;
        }
        Ok(())
    }

    /// Replaces the key set with `records`; when that changes the published keys, wakes the
    /// change-feed watchers that hand them to the data plane.
    pub fn reload(
        &self,
        records: Vec<SigningKeyRecord>,
        sealer: &Sealer,
        followers: &Followers,
    ) -> Result<(), TokenError> {
        let before = self.published_kids();
        self.load(records, sealer)?;
        if self.published_kids() != before {
            followers.announce(Reach::FEED);
        }
        Ok(())
    }

    fn published_kids(&self) -> Vec<String> {
        self.published().into_iter().map(|key| key.kid).collect()
    }

    /// The audience of tokens for `purpose`.
    fn audience(&self, purpose: TokenPurpose) -> String {
        match purpose {
            TokenPurpose::Access => self.policy.audience.clone(),
            TokenPurpose::PasswordChange => {
                format!("{}{PASSWORD_CHANGE_AUDIENCE_SUFFIX}", self.policy.audience)
            }
            TokenPurpose::MfaEnrolment => {
                format!("{}{MFA_ENROLMENT_AUDIENCE_SUFFIX}", self.policy.audience)
            }
        }
    }

    /// What a verified token's claims allow.
    pub fn purpose(&self, claims: &AccessClaims) -> TokenPurpose {
        if claims.aud == self.audience(TokenPurpose::MfaEnrolment) {
            TokenPurpose::MfaEnrolment
        } else if claims.aud == self.policy.audience {
            TokenPurpose::Access
        } else {
            TokenPurpose::PasswordChange
        }
    }

    /// A token for `user` in session `session`, for `purpose`; returns it with its lifetime in
    /// seconds.
    pub fn issue(
        &self,
        user: &User,
        session: &SessionId,
        purpose: TokenPurpose,
    ) -> Result<(String, i64), TokenError> {
        let at = now();
        let keys = self.keys.read().map_err(|_| TokenError::NoActiveKey)?;
        let key = keys
            .iter()
            .filter(|k| k.record.activates_at <= at && k.record.retires_at.is_none_or(|r| r > at))
            .max_by_key(|k| k.record.activates_at)
            .ok_or(TokenError::NoActiveKey)?;
        let issued_at = at.timestamp();
        let claims = AccessClaims {
            iss: self.policy.issuer.clone(),
            aud: self.audience(purpose),
            sub: user.id.to_string(),
            sid: session.to_string(),
            exp: issued_at + self.policy.access_ttl_secs,
            nbf: issued_at,
            iat: issued_at,
            tid: user.tenant_id.clone(),
            groups: user.groups.clone(),
            role: user.role.as_str().to_string(),
        };
        let mut header = Header::new(algorithm(key.record.alg));
        header.kid = Some(key.record.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding)
            .map_err(|e| TokenError::Signing(e.to_string()))?;
        Ok((token, self.policy.access_ttl_secs))
    }

    /// Verifies signature (algorithm pinned by the key), issuer, audience (of either
    /// [`TokenPurpose`]; see [`Self::purpose`]), expiry and not-before.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        let kid = header
            .kid
            .ok_or_else(|| TokenError::Invalid("no kid".into()))?;
        let keys = self.keys.read().map_err(|_| TokenError::NoActiveKey)?;
        let key = keys
            .iter()
            .find(|k| k.record.kid == kid)
            .ok_or_else(|| TokenError::Invalid("unknown kid".into()))?;
        let pinned = algorithm(key.record.alg);
        if header.alg != pinned {
            return Err(TokenError::Invalid(
                "algorithm does not match the key".into(),
            ));
        }
        let mut validation = Validation::new(pinned);
        validation.set_issuer(&[&self.policy.issuer]);
        validation.set_audience(&[
            self.audience(TokenPurpose::Access),
            self.audience(TokenPurpose::PasswordChange),
            self.audience(TokenPurpose::MfaEnrolment),
        ]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        jsonwebtoken::decode::<AccessClaims>(token, &key.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| TokenError::Invalid(e.to_string()))
    }

    /// The published keys (including ones not yet signing), newest first.
    pub fn published(&self) -> Vec<SigningKeyRecord> {
        let at = now();
        self.keys
            .read()
            .map(|keys| {
                keys.iter()
                    .filter(|k| k.record.retires_at.is_none_or(|r| r > at))
                    .map(|k| k.record.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `GET /.well-known/jwks.json`.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<_> = self.published().iter().map(SigningKeyRecord::jwk).collect();
        serde_json::json!({ "keys": keys })
    }

    /// Whether a key is signing now or will be (so start-up need not create one).
    pub fn has_usable_key(&self, at: Timestamp) -> bool {
        self.keys
            .read()
            .map(|keys| {
                keys.iter().any(|k| {
                    k.record.activates_at <= at && k.record.retires_at.is_none_or(|r| r > at)
                })
            })
            .unwrap_or(false)
    }
}

fn algorithm(alg: SigningAlgorithm) -> Algorithm {
    match alg {
        SigningAlgorithm::EdDSA => Algorithm::EdDSA,
        SigningAlgorithm::RS256 => Algorithm::RS256,
    }
}

fn load_key(record: SigningKeyRecord, sealer: &Sealer) -> Result<LoadedKey, TokenError> {
    let pem = record.private_pem(sealer)?;
    let invalid = |e: jsonwebtoken::errors::Error| TokenError::Signing(e.to_string());
    let (encoding, decoding) = match (&record.alg, &record.public) {
        (SigningAlgorithm::EdDSA, PublicJwk::Okp { x, .. }) => (
            EncodingKey::from_ed_pem(&pem).map_err(invalid)?,
            DecodingKey::from_ed_components(x).map_err(invalid)?,
        ),
        (SigningAlgorithm::RS256, PublicJwk::Rsa { n, e }) => (
            EncodingKey::from_rsa_pem(&pem).map_err(invalid)?,
            DecodingKey::from_rsa_components(n, e).map_err(invalid)?,
        ),
        _ => {
            return Err(TokenError::Signing(format!(
                "key {} has the wrong kind of public key",
                record.kid
            )))
        }
    };
    Ok(LoadedKey {
        record,
        encoding,
        decoding,
    })
}
