//! The OpenAPI 3 document of the HTTP API, served unauthenticated at
//! `GET /api/v1/openapi.json`.
//!
//! Each handler describes itself with `#[utoipa::path]` (its success answers and the errors
//! only it gives); this module lists them, declares the three ways to authenticate, and adds
//! the errors every operation of a kind can give (see [`CommonErrors`]), all in the shape of
//! [`super::error`].

pub mod shapes;

use std::sync::LazyLock;

use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};
use tollgate_filter_core::credential::SESSION_COOKIE;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{Modify, OpenApi};

/// The name of the error schema every error answer refers to.
const ERROR_SCHEMA: &str = "Error";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tollgate control plane",
        description = "The admin, login and health API of the Tollgate control plane. Every \
            error is `{\"error\": {\"code\", \"message\", ...}}`; `code` is stable, `message` is \
            for people. Admin calls authenticate with an API key (`X-API-Key` or \
            `Authorization: Bearer`), a session's access token (`Authorization: Bearer`) or the \
            session cookie."
    ),
    paths(
        super::health::health,
        super::health::ready,
        super::figures::prometheus,
        super::figures::summary,
        document,
        super::auth::jwks,
        super::auth::methods,
        super::login::login,
        super::oidc::login_page,
        super::oidc::start,
        super::oidc::callback,
        super::self_service::register,
        super::self_service::verify_email,
        super::self_service::resend_verification,
        super::self_service::request_password_reset,
        super::self_service::confirm_password_reset,
        super::mfa_login::complete,
        super::auth::refresh,
        super::auth::logout,
        super::auth::rotate_signing_key,
        super::users::create,
        super::users::list,
        super::users::me,
        super::users::get,
        super::users::change,
        super::users::delete,
        super::users::restore,
        super::user_import::import,
        super::user_export::export,
        super::me::change_password,
        super::me::sessions,
        super::me::end_all_sessions,
        super::me::end_session,
        super::mfa::status,
        super::mfa::remove,
        super::mfa::enrol,
        super::mfa::confirm,
        super::mfa::reset,
        super::user_logins::reset_password,
        super::user_logins::lockout,
        super::user_logins::unlock,
        super::quota::get,
        super::keys::create,
        super::keys::list,
        super::keys::revoke,
        super::keys::change,
        super::keys::rotate,
        super::audit::list,
        super::groups::create,
        super::groups::list,
        super::groups::get,
        super::groups::change,
        super::groups::delete,
        super::groups::members,
        super::groups::add_member,
        super::groups::remove_member,
        super::backends::create,
        super::backends::list,
        super::backends::get,
        super::backends::change,
        super::backends::delete,
        super::backends::pools,
        super::backends::xds_nodes,
        super::backends::set_pool,
        super::tenants::create,
        super::tenants::list,
        super::tenants::get,
        super::tenants::change,
        super::tenants::delete,
    ),
    components(schemas(shapes::Error)),
    modifiers(&Authentication, &CommonErrors, &OperationIds),
    security(("api_key" = []), ("bearer" = []), ("session_cookie" = [])),
    tags(
        (name = "health", description = "Liveness, readiness, metrics and this document"),
        (name = "auth", description = "Logins, sessions, tokens and self-service by email"),
        (name = "users", description = "Users, their passwords, second factors and quotas"),
        (name = "keys", description = "A user's API keys"),
        (name = "groups", description = "Groups: shared limits and pools"),
        (name = "backends", description = "Upstream backends and pools"),
        (name = "audit", description = "The audit log"),
        (name = "tenants", description = "Tenants: their settings, statistics and deletion"),
    )
)]
struct ApiDoc;

static DOCUMENT: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(ApiDoc::openapi);

/// The document, as served.
pub fn openapi() -> &'static utoipa::openapi::OpenApi {
    &DOCUMENT
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "health",
    security(()),
    responses((status = 200, description = "The OpenAPI 3 document of this API", body = Object))
)]
pub async fn document() -> impl IntoResponse {
    Json(openapi())
}

/// The three ways to authenticate.
struct Authentication;

impl Modify for Authentication {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "An API key (also accepted as `Authorization: Bearer <key>`)",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("A session's access token, or an API key"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                SESSION_COOKIE,
                "The browser session a login set; changes also need a same-origin `Origin`",
            ))),
        );
    }
}

/// The errors every operation of a kind can give, added beside each handler's own: bad
/// input for those that take any, the refusals of the credential check for those that need
/// one, and the server's own failures for all.
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                add_common_errors(operation);
            }
        }
    }
}

/// Operation ids from the method and the path (`patch_api_v1_users_id`): the handlers' names
/// repeat across modules, and ids must be unique.
struct OperationIds;

impl Modify for OperationIds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in &mut openapi.paths.paths {
            let name: String = path
                .chars()
                .filter(|c| !matches!(c, '{' | '}'))
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            for (method, operation) in [
                ("get", &mut item.get),
                ("put", &mut item.put),
                ("post", &mut item.post),
                ("delete", &mut item.delete),
                ("patch", &mut item.patch),
            ] {
                if let Some(operation) = operation {
                    operation.operation_id = Some(format!("{method}{name}"));
                }
            }
        }
    }
}

fn add_common_errors(operation: &mut Operation) {
    let takes_input = operation.request_body.is_some()
        || operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
    let public = operation
        .security
        .as_ref()
        .is_some_and(|requirements| requirements.iter().any(|r| json!(r) == json!({})));
    let mut errors = vec![
        ("500", "internal_error", "The server failed; nothing was changed"),
        ("503", "database_unavailable", "A dependency is unavailable or the work is bounded (`busy`, with `Retry-After`); retry later"),
    ];
    if takes_input {
        errors.push((
            "400",
            "validation_failed",
            "The input was refused (`invalid_body` when it is not the JSON the operation takes)",
        ));
    }
    if !public {
        errors.extend([
            ("401", "unauthenticated", "No valid credential was presented"),
            ("403", "forbidden", "The caller may not do this (role, IP allowlist, key scopes, or a cross-site change)"),
            ("429", "too_many_attempts", "The client's address failed to authenticate too often; retry after `Retry-After`"),
        ]);
    }
    for (status, code, description) in errors {
        operation
            .responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| error_response(description, code).into());
    }
    for (status, response) in &mut operation.responses.responses {
        if let RefOr::T(response) = response {
            if status.as_str() >= "400" && response.content.is_empty() {
                let code = first_code(&response.description);
                *response = error_response(&response.description, code);
            }
        }
    }
}

/// The first `code` a handler's error description names, e.g. `name_taken`.
fn first_code(description: &str) -> &str {
    description.split('`').nth(1).unwrap_or("error")
}

/// An error answer in the documented shape, with an example of `code`.
fn error_response(description: &str, code: &str) -> utoipa::openapi::Response {
    let example: Value = json!({"error": {"code": code, "message": description}});
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ERROR_SCHEMA)))
                .example(Some(example))
                .build(),
        )
        .build()
}
