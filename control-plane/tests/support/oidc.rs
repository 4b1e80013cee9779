//! An OIDC login driven like a browser against the in-process application and the real test
//! provider (`tollgate_e2e::oidc_provider`): accounts with Entra-style claims, the control
//! plane configured for the provider as `entra`, and the answers' cookies and redirects.

use axum::http::StatusCode;
use serde_json::{json, Value};
use tollgate::config::{Config, CreateUsersConfig, OidcProviderConfig};
use tollgate_e2e::oidc_provider::{TestProvider, CLIENT_ID, CLIENT_SECRET, PUBLIC_URL};

use super::app::{Answer, Api, LOCAL_PEER};

pub const TENANT: &str = "11111111-aaaa-4aaa-8aaa-111111111111";
pub const OTHER_TENANT: &str = "22222222-bbbb-4bbb-8bbb-222222222222";
pub const LOGIN: &str = "/api/v1/auth/oidc/entra/login";

pub fn account(oid: &str, tid: &str, username: &str, email_verified: bool) -> Value {
    json!({
        "oid": oid,
        "tid": tid,
        "preferred_username": username,
        "email": username,
        "email_verified": email_verified,
        "name": "Test Person",
    })
}

/// A provider of `TENANT` with one person, `name`, whose email is `name@corp.example`.
pub fn provider_of(name: &str, email_verified: bool) -> TestProvider {
    TestProvider::start(
        TENANT,
        "entra",
        json!({ name: person(name, email_verified) }),
    )
}

pub fn person(name: &str, email_verified: bool) -> Value {
    account(
        &format!("oid-{name}"),
        TENANT,
        &format!("{name}@corp.example"),
        email_verified,
    )
}

/// Starts a login, logs in as `name` at the provider, and answers the callback's path and the
/// flow cookie, before the callback is made.
pub async fn until_callback(api: &Api, name: &str) -> (String, String) {
    let started = start(api).await;
    let back = log_in_at_provider(&started.authorization_url, name).await;
    (back, started.flow_cookie)
}

/// The control plane with the provider as `entra`, creating users on a first login unless
/// `adjust` says otherwise.
pub async fn api_with(
    provider: &TestProvider,
    adjust: impl FnOnce(&mut OidcProviderConfig) + Send,
) -> Api {
    let mut entra = OidcProviderConfig {
        preset: "entra".into(),
        tenant_id: Some(provider.tenant.clone()),
        authority: Some(provider.authority()),
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        timeout_secs: 3,
        create_users: CreateUsersConfig {
            enabled: true,
            ..CreateUsersConfig::default()
        },
        redirect_after: "/welcome".into(),
        ..OidcProviderConfig::default()
    };
    adjust(&mut entra);
    Api::start_with(|config: &mut Config| {
        config.auth.oidc.public_url = Some(PUBLIC_URL.into());
        config.auth.oidc.providers.insert("entra".into(), entra);
    })
    .await
}

/// Logs in as `account` at the provider from `authorization_url`; the callback's path and
/// query.
pub async fn log_in_at_provider(authorization_url: &str, account: &str) -> String {
    let (url, account) = (authorization_url.to_string(), account.to_string());
    tokio::task::spawn_blocking(move || {
        tollgate_e2e::oidc_provider::log_in_at_provider(&url, &account)
    })
    .await
    .expect("the browser finishes")
}

/// A login started in a browser: where the provider is, and the flow cookie (`name=value`).
pub struct Started {
    pub authorization_url: String,
    pub flow_cookie: String,
}

pub async fn start(api: &Api) -> Started {
    let answer = api.answer_from(LOCAL_PEER, "GET", LOGIN, &[], None).await;
    assert_eq!(answer.status, StatusCode::FOUND, "{}", answer.body);
    Started {
        authorization_url: header(&answer, "location"),
        flow_cookie: set_cookie(&answer, "tollgate_oidc_flow")
            .map(|value| format!("tollgate_oidc_flow={value}"))
            .expect("a flow cookie"),
    }
}

pub async fn callback(api: &Api, path: &str, flow_cookie: &str) -> Answer {
    api.answer_from(LOCAL_PEER, "GET", path, &[("cookie", flow_cookie)], None)
        .await
}

/// A whole login as `account`; the callback's answer.
pub async fn log_in(api: &Api, account: &str) -> Answer {
    let (back, flow_cookie) = until_callback(api, account).await;
    callback(api, &back, &flow_cookie).await
}

pub fn header(answer: &Answer, name: &str) -> String {
    answer
        .headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_string()
}

/// The value the answer sets the cookie `name` to.
pub fn set_cookie(answer: &Answer, name: &str) -> Option<String> {
    answer
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|cookie| {
            let (pair, _) = cookie.split_once(';')?;
            let (key, value) = pair.split_once('=')?;
            (key == name && !value.is_empty()).then(|| value.to_string())
        })
}

/// The user the session of a successful callback belongs to.
pub async fn session_user(api: &Api, answer: &Answer) -> Value {
    assert_eq!(answer.status, StatusCode::FOUND, "{}", answer.body);
    let access_token = set_cookie(answer, "tollgate_session").expect("a session cookie");
    let (status, me) = api
        .call_with_session("GET", "/api/v1/users/me", &access_token)
        .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    me
}

pub fn replace_query_param(url: &str, name: &str, value: &str) -> String {
    let mut url = url::Url::parse(url).expect("a URL");
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(key, old)| {
            let new = if key == name {
                value.to_string()
            } else {
                old.to_string()
            };
            (key.to_string(), new)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    url.to_string()
}

pub fn query_param(url: &str, name: &str) -> String {
    url::Url::parse(url)
        .expect("a URL")
        .query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.to_string())
        .unwrap_or_else(|| panic!("no {name} in {url}"))
}
