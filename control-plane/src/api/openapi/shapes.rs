//! The shapes of answers the handlers build as JSON on the spot, for the document only.
//! Each mirrors the `json!` of the handler named in its doc comment; the fuzz run
//! (`scripts/fuzz-api.sh`) checks every answer against them.

use std::collections::BTreeMap;

use utoipa::ToSchema;

use crate::accounts::api_key::ApiKey;
use crate::accounts::group::Group;
use crate::accounts::tenant::Tenant;
use crate::accounts::user::User;
use crate::domain::ids::{GroupId, UserId};
use crate::domain::Timestamp;
use crate::routing::pool::{HealthCheckSettings, PoolName};

/// The documented list shape.
#[derive(ToSchema)]
pub struct ListOf<T: ToSchema> {
    pub items: Vec<T>,
    /// Items in the whole listing.
    pub total: u64,
    /// Counts from 1.
    pub page: u64,
    pub per_page: u64,
}

/// An answer that is only a status word.
#[derive(ToSchema)]
pub struct Status {
    #[schema(example = "ready")]
    pub status: String,
}

/// `GET /api/v1/health`.
#[derive(ToSchema)]
pub struct HealthReport {
    #[schema(example = "ok")]
    pub status: OverallHealth,
    #[schema(example = "0.1.0")]
    pub version: String,
    /// The database, and the shared rate-limit counters when configured (e.g. `redis`).
    pub checks: BTreeMap<String, DependencyCheck>,
}

/// How the service as a whole is.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum OverallHealth {
    Ok,
    /// The shared counters are down; the filter applies its fallback.
    Degraded,
    /// The database is down.
    Down,
}

/// One dependency in the health report.
#[derive(ToSchema)]
pub struct DependencyCheck {
    #[schema(example = "ok")]
    pub status: DependencyStatus,
    pub latency_ms: Option<u64>,
    /// Why it is down; shown to admins only.
    pub error: Option<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum DependencyStatus {
    Ok,
    Down,
}

/// `GET /api/v1/auth/methods`.
#[derive(ToSchema)]
pub struct Methods {
    pub methods: Vec<crate::identity::methods::MethodListing>,
}

/// The tokens of a new or refreshed session.
#[derive(ToSchema)]
pub struct Tokens {
    pub access_token: String,
    #[schema(example = "tgr_3k9xq2m8v7c4n1b6z5l0")]
    pub refresh_token: String,
    #[schema(example = "Bearer")]
    pub token_type: String,
    /// Seconds the access token is valid.
    pub expires_in: i64,
    /// Set when the session allows only `POST /api/v1/users/me/password`.
    pub password_change_required: Option<bool>,
    /// Set when the session allows only `/api/v1/users/me/mfa...`.
    pub mfa_enrolment_required: Option<bool>,
}

/// A login whose password was right and which now needs the second factor.
#[derive(ToSchema)]
pub struct MfaChallenge {
    pub mfa_required: bool,
    /// For `POST /api/v1/auth/mfa`.
    pub mfa_token: String,
    pub expires_in: i64,
}

/// `POST /api/v1/auth/signing-keys/rotate`.
#[derive(ToSchema)]
pub struct SigningKey {
    pub kid: String,
    #[schema(example = "EdDSA")]
    pub alg: String,
    #[schema(value_type = String, format = DateTime, example = "2026-01-31T09:30:00Z")]
    pub activates_at: Timestamp,
    #[schema(value_type = String, format = DateTime, example = "2026-01-31T09:30:00Z")]
    pub previous_keys_retire_at: Timestamp,
}

/// A key as issued: the only time `key` is shown.
#[derive(ToSchema)]
pub struct NewKey {
    #[schema(inline)]
    #[serde(flatten)]
    pub record: ApiKey,
    #[schema(example = "tg_3k9xq2m8v7c4n1b6z5l0a8d7f6g5h4j3")]
    pub key: String,
}

/// A user, and the temporary password a reset generated.
#[derive(ToSchema)]
pub struct UserAfterReset {
    #[schema(inline)]
    #[serde(flatten)]
    pub user: User,
    /// Only when the reset generated it.
    pub temporary_password: Option<String>,
}

/// A group with its member count.
#[derive(ToSchema)]
pub struct GroupView {
    #[schema(inline)]
    #[serde(flatten)]
    pub group: Group,
    pub members: u64,
}

/// A tenant with its statistics, `GET /api/v1/tenants/{id}`.
#[derive(ToSchema)]
pub struct TenantView {
    #[schema(inline)]
    #[serde(flatten)]
    pub tenant: Tenant,
    pub statistics: TenantFigures,
}

/// What a tenant holds and used this period.
#[derive(ToSchema)]
pub struct TenantFigures {
    pub users: u64,
    pub active_users: u64,
    pub keys: u64,
    #[schema(value_type = String, format = DateTime, example = "2026-01-31T09:30:00Z")]
    pub period_start: Timestamp,
    #[schema(value_type = String, format = DateTime, example = "2026-01-31T09:30:00Z")]
    pub period_end: Timestamp,
    pub requests: u64,
    pub bandwidth_bytes: u64,
}

/// A user as `GET /api/v1/users/export` writes one and `POST /api/v1/users/import` reads one.
#[derive(ToSchema)]
pub struct UserRow {
    pub id: Option<UserId>,
    #[schema(example = "alice")]
    pub username: String,
    pub email: Option<String>,
    pub name: Option<String>,
    #[schema(example = "user")]
    pub role: Option<String>,
    #[schema(example = "active")]
    pub status: Option<String>,
    pub tenant_id: Option<String>,
    /// Group ids or names.
    pub groups: Option<Vec<String>>,
    pub organization: Option<String>,
    pub department: Option<String>,
    pub employee_id: Option<String>,
    /// Import only: a bcrypt or Argon2id hash from an older system.
    pub password_hash: Option<String>,
    /// Export only; an import reads and ignores it.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub created_at: Option<Timestamp>,
}

/// What an import did or would do, `POST /api/v1/users/import`.
#[derive(ToSchema)]
pub struct ImportReport {
    pub dry_run: bool,
    pub applied: bool,
    pub rows: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub refusals: Vec<ImportRefusal>,
}

/// A row an import refused.
#[derive(ToSchema)]
pub struct ImportRefusal {
    /// Counts data rows from 1.
    pub row: u64,
    pub username: Option<String>,
    pub message: String,
}

/// `POST /api/v1/groups/{id}/members`.
#[derive(ToSchema)]
pub struct Membership {
    pub group_id: GroupId,
    pub user_id: UserId,
}

/// A pool in `GET /api/v1/pools`.
#[derive(ToSchema)]
pub struct PoolView {
    pub name: PoolName,
    pub enabled_backends: u64,
    pub available_backends: u64,
    /// Fewer enabled backends than `pools.min_backends`.
    pub below_minimum: bool,
    pub health_check: HealthCheckSettings,
}

/// `PUT /api/v1/pools/{name}`.
#[derive(ToSchema)]
pub struct PoolSettings {
    pub name: PoolName,
    pub health_check: HealthCheckSettings,
}

/// `GET /api/v1/xds/nodes`.
#[derive(ToSchema)]
pub struct XdsNodes {
    /// Node id -> its state.
    pub nodes: BTreeMap<String, crate::routing::xds::status::NodeStatus>,
}

/// `GET /api/v1/users/me/mfa`.
#[derive(ToSchema)]
pub struct MfaStatus {
    pub enabled: bool,
    /// Enrolled but not yet confirmed.
    pub pending: bool,
    pub required: bool,
    pub backup_codes_remaining: u64,
}

/// `POST /api/v1/users/me/mfa/totp`.
#[derive(ToSchema)]
pub struct TotpSetup {
    #[schema(example = "otpauth://totp/Tollgate:alice?secret=JBSWY3DPEHPK3PXP&issuer=Tollgate")]
    pub otpauth_uri: String,
    /// The URI as a QR code, an SVG document.
    pub qr_svg: String,
}

/// `POST /api/v1/users/me/mfa/totp/confirm`.
#[derive(ToSchema)]
pub struct BackupCodes {
    /// Shown once; each works once.
    pub backup_codes: Vec<String>,
}

/// `GET /api/v1/users/{id}/lockout`.
#[derive(ToSchema)]
pub struct Lockout {
    pub user_id: UserId,
    pub failures: u64,
    #[schema(value_type = Option<String>, format = DateTime, example = "2026-01-31T09:30:00Z")]
    pub locked_until: Option<Timestamp>,
}

/// `GET /api/v1/users/{id}/quota`.
#[derive(ToSchema)]
pub struct QuotaReport {
    pub user_id: UserId,
    #[schema(value_type = String, format = DateTime, example = "2026-01-31T09:30:00Z")]
    pub period_start: Timestamp,
    #[schema(value_type = String, format = DateTime, example = "2026-01-31T09:30:00Z")]
    pub period_end: Timestamp,
    pub reset_day: Option<u8>,
    #[schema(example = "UTC")]
    pub time_zone: String,
    pub quotas: Vec<QuotaUse>,
}

/// One quota of a user: requests counted, or megabytes with the exact bytes beside them.
#[derive(ToSchema)]
pub struct QuotaUse {
    #[schema(example = "monthly_requests")]
    pub name: String,
    /// Unset: unlimited.
    pub limit: Option<u64>,
    pub used: f64,
    pub used_bytes: Option<u64>,
    pub remaining: Option<f64>,
    pub reserved: f64,
    pub reserved_bytes: Option<u64>,
}

/// `POST /api/v1/auth/login`: a session, or, for a user with a second factor, its challenge.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum LoginAnswer {
    Session(Tokens),
    Challenge(MfaChallenge),
}

/// Every error answer.
#[derive(ToSchema)]
pub struct Error {
    pub error: ErrorDetails,
}

/// `code` is stable for programs, `message` for people; some errors add fields (e.g.
/// `field`, the input refused).
#[derive(ToSchema)]
pub struct ErrorDetails {
    #[schema(example = "validation_failed")]
    pub code: String,
    pub message: String,
}
