//! The HTTP API: admin, login, health and metrics. [`app`] builds the whole router.
//!
//! HTTP only: each handler extracts its caller and input, calls the capability that owns the
//! behaviour (`accounts`, `identity`, `limits`, `routing`, `changes`), and encodes the answer;
//! errors become the documented JSON shape in [`error`].

mod access;
mod audit;
mod auth;
mod backends;
mod correlation;
mod cross_site;
pub mod error;
mod extract;
mod figures;
mod groups;
mod health;
mod keys;
mod ldap_login;
mod login;
mod me;
mod mfa;
mod mfa_login;
mod oidc;
pub mod openapi;
mod paging;
mod permission;
mod quota;
mod reach;
mod self_service;
mod settings;
mod tenants;
mod throttle;
mod user_export;
mod user_import;
mod user_logins;
mod users;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::accounts::api_key::KeyHasher;
use crate::domain::audit_sample::AuditSample;
use crate::domain::live::Live;
use crate::identity::address_failures::AddressFailures;
use crate::identity::email_links::EmailLinks;
use crate::identity::lockout::AccountLockout;
use crate::identity::methods::LoginMethods;
use crate::identity::mfa::MfaPolicy;
use crate::identity::oidc::OidcProviders;
use crate::identity::password::PasswordWork;
use crate::identity::password_policy::PasswordPolicy;
use crate::identity::sealing::Sealer;
use crate::identity::self_service::{MailBudget, SelfService};
use crate::identity::signing::SigningAlgorithm;
use crate::identity::tokens::SessionTokens;
use crate::limits::counters::Counters;
use crate::limits::quota::QuotaPolicy;
use crate::mail::Mailer;
use crate::routing::pool::HealthCheckSettings;
use crate::routing::xds::NodeStatuses;
use crate::store::Store;
pub use access::AccessPolicy;
use error::ApiError;

/// What every handler may use.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub hasher: KeyHasher,
    pub key_prefix: Arc<str>,
    /// How long a rotated key works beside its replacement unless the rotation says.
    pub key_rotation_grace_secs: u32,
    pub metrics: PrometheusHandle,
    pub tokens: SessionTokens,
    pub sealer: Sealer,
    pub sessions: Arc<SessionSettings>,
    pub pool_limits: PoolLimits,
    /// Replaced by a configuration reload.
    pub default_health_check: Live<HealthCheckSettings>,
    /// Replaced by a configuration reload.
    pub quotas: Live<QuotaPolicy>,
    /// What every Envoy accepted and refused over xDS.
    pub xds_nodes: NodeStatuses,
    /// The rate-limit counters, for the health report.
    pub counters: Arc<dyn Counters>,
    /// Bounds the Argon2id hashes of logins and password changes.
    pub passwords: PasswordWork,
    /// What new passwords must be.
    pub password_policy: Arc<PasswordPolicy>,
    /// The login methods offered.
    pub login_methods: Arc<LoginMethods>,
    /// The OpenID Connect providers, with what they discovered.
    pub oidc: Arc<OidcProviders>,
    /// Bounds the audit entries of logins refused before any password check.
    pub login_refusals: Arc<AuditSample>,
    /// Where calls may come from: trusted proxies and the origins of cookie-authenticated pages.
    pub access: Arc<AccessPolicy>,
    /// Locks a login name after repeated failures.
    pub lockout: AccountLockout,
    /// Who must use a second factor, and how long a login waits for it.
    pub mfa: Arc<MfaPolicy>,
    /// Locks a user's second factor after repeated wrong codes, apart from their logins.
    pub mfa_lockout: AccountLockout,
    /// Holds back client addresses that keep failing to authenticate.
    pub address_failures: AddressFailures,
    /// What people may do for themselves by email.
    pub self_service: Arc<SelfService>,
    /// Delivers mail; `None` without `mail.smtp_host`.
    pub mailer: Option<Mailer>,
    /// Signs and checks the links mailed to people.
    pub email_links: EmailLinks,
    /// Bounds the messages a client may cause and a recipient may get.
    pub mail_budget: MailBudget,
}

/// How many backends a pool may have.
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    pub min_backends: usize,
    pub max_backends: usize,
}

/// Session settings the handlers need beyond the token policy.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub refresh_ttl_secs: i64,
    pub key_publish_delay_secs: i64,
    pub algorithm: SigningAlgorithm,
    /// The most live sessions one user may hold.
    pub max_per_user: u32,
}

/// The complete HTTP application.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/health", get(health::health))
        .route("/api/v1/ready", get(health::ready))
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/metrics", get(figures::prometheus))
        .route("/api/v1/metrics", get(figures::summary))
        .route("/.well-known/jwks.json", get(auth::jwks))
        .route("/api/v1/auth/methods", get(auth::methods))
        .route(
            "/api/v1/auth/login",
            post(login::login).get(oidc::login_page),
        )
        .route("/api/v1/auth/oidc/{provider}/login", get(oidc::start))
        .route("/api/v1/auth/oidc/{provider}/callback", get(oidc::callback))
        .route("/api/v1/auth/register", post(self_service::register))
        .route(
            "/api/v1/auth/verify-email",
            post(self_service::verify_email),
        )
        .route(
            "/api/v1/auth/verify-email/resend",
            post(self_service::resend_verification),
        )
        .route(
            "/api/v1/auth/password-reset",
            post(self_service::request_password_reset),
        )
        .route(
            "/api/v1/auth/password-reset/confirm",
            post(self_service::confirm_password_reset),
        )
        .route("/api/v1/auth/mfa", post(mfa_login::complete))
        .route("/api/v1/auth/refresh", post(auth::refresh))
        .route("/api/v1/auth/logout", post(auth::logout))
        .route(
            "/api/v1/auth/signing-keys/rotate",
            post(auth::rotate_signing_key),
        )
        .route("/api/v1/users", post(users::create).get(users::list))
        .route("/api/v1/users/me", get(users::me))
        .route(
            "/api/v1/users/import",
            post(user_import::import).layer(DefaultBodyLimit::max(user_import::MAX_IMPORT_BYTES)),
        )
        .route("/api/v1/users/export", get(user_export::export))
        .route("/api/v1/users/me/password", post(me::change_password))
        .route("/api/v1/users/me/mfa", get(mfa::status).delete(mfa::remove))
        .route("/api/v1/users/me/mfa/totp", post(mfa::enrol))
        .route("/api/v1/users/me/mfa/totp/confirm", post(mfa::confirm))
        .route("/api/v1/users/{id}/mfa", axum::routing::delete(mfa::reset))
        .route(
            "/api/v1/users/me/sessions",
            get(me::sessions).delete(me::end_all_sessions),
        )
        .route(
            "/api/v1/users/me/sessions/{id}",
            axum::routing::delete(me::end_session),
        )
        .route(
            "/api/v1/users/{id}/password-reset",
            post(user_logins::reset_password),
        )
        .route(
            "/api/v1/users/{id}/lockout",
            get(user_logins::lockout).delete(user_logins::unlock),
        )
        .route("/api/v1/users/{id}/quota", get(quota::get))
        .route("/api/v1/users/{id}/restore", post(users::restore))
        .route(
            "/api/v1/users/{id}",
            get(users::get).patch(users::change).delete(users::delete),
        )
        .route(
            "/api/v1/users/{id}/keys",
            post(keys::create).get(keys::list),
        )
        .route(
            "/api/v1/users/{id}/keys/{key_id}",
            axum::routing::delete(keys::revoke).patch(keys::change),
        )
        .route(
            "/api/v1/users/{id}/keys/{key_id}/rotate",
            post(keys::rotate),
        )
        .route("/api/v1/audit", get(audit::list))
        .route("/api/v1/tenants", post(tenants::create).get(tenants::list))
        .route(
            "/api/v1/tenants/{id}",
            get(tenants::get)
                .patch(tenants::change)
                .delete(tenants::delete),
        )
        .route("/api/v1/groups", post(groups::create).get(groups::list))
        .route(
            "/api/v1/groups/{id}",
            get(groups::get)
                .patch(groups::change)
                .delete(groups::delete),
        )
        .route(
            "/api/v1/groups/{id}/members",
            get(groups::members).post(groups::add_member),
        )
        .route(
            "/api/v1/groups/{id}/members/{user_id}",
            axum::routing::delete(groups::remove_member),
        )
        .route(
            "/api/v1/backends",
            post(backends::create).get(backends::list),
        )
        .route(
            "/api/v1/backends/{id}",
            get(backends::get)
                .patch(backends::change)
                .delete(backends::delete),
        )
        .route("/api/v1/pools", get(backends::pools))
        .route("/api/v1/xds/nodes", get(backends::xds_nodes))
        .route(
            "/api/v1/pools/{name}",
            axum::routing::put(backends::set_pool),
        )
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            cross_site::refuse_cross_site_changes,
        ))
        .layer(middleware::from_fn(record_request))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            correlation::correlate,
        ))
        .with_state(state)
}

/// The method as a metric label: the standard ones by name, anything else as `other`, so that
/// clients cannot grow the metrics without bound.
fn method_label(method: &Method) -> String {
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    if STANDARD.contains(method) {
        method.as_str().to_string()
    } else {
        "other".to_string()
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("route")
}

async fn record_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await.into_response();
    let labels = [
        ("method", method),
        ("route", route),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!("tollgate_http_requests_total", &labels).increment(1);
    metrics::histogram!("tollgate_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}
