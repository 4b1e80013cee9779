//! OpenID Connect logins against a real provider process (`oidc-provider`, Entra-style claims):
//! the whole code + PKCE flow into a session, first-login creation, linking by `tid` + `oid`
//! and (only when verified) by email, keys fetched again after a rotation, and the refusals: a
//! suspended user, a tampered state, a replayed code, a wrong nonce, another tenant, a provider
//! that is down or silent.

mod support;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::json;
use support::app::{error_code, Answer, Api, LOCAL_PEER};
use support::oidc::{
    account, api_with, callback, header, log_in, log_in_at_provider, person, provider_of,
    query_param, replace_query_param, session_user, set_cookie, start, until_callback, LOGIN,
    OTHER_TENANT, TENANT,
};
use tollgate::config::{Config, OidcProviderConfig};
use tollgate_e2e::oidc_provider::{TestProvider, CLIENT_ID, CLIENT_SECRET, PUBLIC_URL};

#[tokio::test]
async fn the_code_and_pkce_flow_ends_in_a_session_for_a_new_user() {
    let provider = provider_of("alice", true);
    let api = api_with(&provider, |_| {}).await;

    let (_, methods) = api.call("GET", "/api/v1/auth/methods", None, None).await;
    assert!(
        methods["methods"]
            .as_array()
            .expect("methods")
            .contains(&json!({
                "id": "entra", "kind": "oidc", "name": "entra", "login_url": LOGIN,
            })),
        "{methods}"
    );
    let started = start(&api).await;
    for param in ["state", "nonce", "code_challenge"] {
        query_param(&started.authorization_url, param);
    }
    assert_eq!(
        query_param(&started.authorization_url, "code_challenge_method"),
        "S256"
    );
    let back = log_in_at_provider(&started.authorization_url, "alice").await;
    let answer = callback(&api, &back, &started.flow_cookie).await;
    assert_eq!(header(&answer, "location"), "/welcome");
    let me = session_user(&api, &answer).await;
    assert_eq!(me["username"], "alice@corp.example", "{me}");
    assert_eq!(me["email"], "alice@corp.example", "{me}");
    assert_eq!(me["role"], "user", "{me}");

    // The browser renews its session with the refresh cookie alone.
    let refresh = set_cookie(&answer, "tollgate_refresh").expect("a refresh cookie");
    let renewed = api
        .answer_from(
            LOCAL_PEER,
            "POST",
            "/api/v1/auth/refresh",
            &[
                ("cookie", &format!("tollgate_refresh={refresh}")),
                ("x-tollgate-csrf", "1"),
            ],
            None,
        )
        .await;
    assert_eq!(renewed.status, StatusCode::OK, "{}", renewed.body);
    let replacement = set_cookie(&renewed, "tollgate_refresh").expect("a new refresh cookie");
    assert_ne!(replacement, refresh);

    let (_, audit) = api.admin("GET", "/api/v1/audit?per_page=50", None).await;
    let created = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|entry| entry["action"] == "session.created")
        .expect("the session is audited");
    assert_eq!(created["details"]["method"], "oidc", "{created}");
    assert_eq!(created["details"]["provider"], "entra", "{created}");
}

#[tokio::test]
async fn the_same_tenant_and_object_id_reach_the_same_user_whatever_the_name_until_suspended() {
    let provider = provider_of("carol", true);
    let api = api_with(&provider, |_| {}).await;
    let first = session_user(&api, &log_in(&api, "carol").await).await;

    provider.set_accounts(
        json!({"carol": account("oid-carol", TENANT, "carol.new@corp.example", true)}),
    );
    let second = session_user(&api, &log_in(&api, "carol").await).await;
    assert_eq!(second["id"], first["id"]);
    assert_eq!(
        second["username"], "carol@corp.example",
        "no new user: {second}"
    );

    // Another person who takes carol's old name and email is not carol.
    provider.set_accounts(
        json!({"mallory": account("oid-mallory", TENANT, "carol@corp.example", false)}),
    );
    let answer = log_in(&api, "mallory").await;
    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.body);
    assert!(set_cookie(&answer, "tollgate_session").is_none());

    // Once suspended here, carol's provider account logs in no more.
    let carol = first["id"].as_str().expect("id");
    let (status, _) = api
        .admin(
            "PATCH",
            &format!("/api/v1/users/{carol}"),
            Some(json!({"status": "suspended"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    provider.set_accounts(json!({"carol": person("carol", true)}));
    let answer = log_in(&api, "carol").await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    assert_eq!(error_code(&answer.body), "account_disabled");
}

#[tokio::test]
async fn a_first_login_into_a_group_that_does_not_exist_creates_nothing() {
    let provider = provider_of("jill", true);
    let api = api_with(&provider, |entra| {
        entra.create_users.group = Some("g_missing".into());
    })
    .await;
    let answer = log_in(&api, "jill").await;
    assert_eq!(
        answer.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        answer.body
    );
    let (_, users) = api.admin("GET", "/api/v1/users?q=jill", None).await;
    assert_eq!(users["total"], 0, "{users}");
}

#[tokio::test]
async fn an_email_links_only_when_the_provider_verified_it() {
    let provider = provider_of("bob", false);
    let api = api_with(&provider, |entra| {
        entra.link_by_verified_email = true;
        entra.create_users.enabled = false;
    })
    .await;
    let local = api
        .create_user_with(json!({"username": "bob", "email": "bob@corp.example"}))
        .await;

    let refused = log_in(&api, "bob").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert_eq!(error_code(&refused.body), "account_required");

    provider.set_accounts(json!({"bob": person("bob", true)}));
    let linked = session_user(&api, &log_in(&api, "bob").await).await;
    assert_eq!(linked["id"], local["id"]);
}

#[tokio::test]
async fn an_email_never_links_a_second_subject_and_unverified_ones_are_not_kept() {
    let provider = provider_of("carol", true);
    let api = api_with(&provider, |entra| entra.link_by_verified_email = true).await;
    let first = session_user(&api, &log_in(&api, "carol").await).await;
    assert_eq!(first["email"], "carol@corp.example");

    // The address passes to someone else at the provider: not a way into carol's account.
    provider.set_accounts(json!({
        "carol": account("oid-someone-else", TENANT, "carol@corp.example", true)
    }));
    let refused = log_in(&api, "carol").await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert_eq!(error_code(&refused.body), "account_conflict");

    // A first login whose email the provider does not vouch for keeps none, so no later
    // login can be linked to the user by it.
    provider.set_accounts(json!({"dan": person("dan", false)}));
    let dan = session_user(&api, &log_in(&api, "dan").await).await;
    assert_eq!(dan["email"], serde_json::Value::Null, "{dan}");
}

#[tokio::test]
async fn a_tampered_or_missing_state_is_refused() {
    let provider = provider_of("dan", true);
    let api = api_with(&provider, |_| {}).await;
    let (back, flow_cookie) = until_callback(&api, "dan").await;
    let state = query_param(&format!("http://x{back}"), "state");

    let tampered = back.replace(&state, &format!("{state}x"));
    let answer = callback(&api, &tampered, &flow_cookie).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    assert_eq!(error_code(&answer.body), "invalid_oidc_state");

    let without_cookie = api.answer_from(LOCAL_PEER, "GET", &back, &[], None).await;
    assert_eq!(error_code(&without_cookie.body), "invalid_oidc_state");
    let forged = callback(&api, &back, "tollgate_oidc_flow=bm90IHNlYWxlZA==").await;
    assert_eq!(error_code(&forged.body), "invalid_oidc_state");

    // The untouched callback still works: nothing above used the code.
    session_user(&api, &callback(&api, &back, &flow_cookie).await).await;
}

#[tokio::test]
async fn a_replayed_code_and_a_wrong_nonce_are_refused() {
    let provider = provider_of("erin", true);
    let api = api_with(&provider, |_| {}).await;
    let (back, flow_cookie) = until_callback(&api, "erin").await;
    session_user(&api, &callback(&api, &back, &flow_cookie).await).await;
    let replayed = callback(&api, &back, &flow_cookie).await;
    assert_eq!(
        replayed.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        replayed.body
    );
    assert_eq!(error_code(&replayed.body), "oidc_login_failed");

    // A login whose authorization request carries another login's nonce: its state and PKCE
    // match this browser's flow, so only the ID token's nonce is wrong.
    let victim = start(&api).await;
    let attacker = start(&api).await;
    let mut crafted = attacker.authorization_url.clone();
    for param in ["state", "code_challenge"] {
        crafted = replace_query_param(
            &crafted,
            param,
            &query_param(&victim.authorization_url, param),
        );
    }
    let back = log_in_at_provider(&crafted, "erin").await;
    let answer = callback(&api, &back, &victim.flow_cookie).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
    assert_eq!(error_code(&answer.body), "oidc_login_failed");
    assert!(set_cookie(&answer, "tollgate_session").is_none());
}

#[tokio::test]
async fn tokens_of_a_tenant_not_allowed_are_refused() {
    let accounts = json!({
        "frank": account("oid-frank", OTHER_TENANT, "frank@other.example", true),
        "guest": account("oid-guest", TENANT, "guest@other.example", true),
    });
    let provider = TestProvider::start(OTHER_TENANT, "entra", accounts);

    // Only TENANT is allowed, though the provider is OTHER_TENANT's.
    let api = api_with(&provider, |entra| {
        entra.allowed_tenants = vec![TENANT.into()];
    })
    .await;
    let answer = log_in(&api, "frank").await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
    assert_eq!(error_code(&answer.body), "oidc_login_failed");

    // By default only the configured tenant: a token claiming another `tid` than its issuer's
    // is refused too.
    let api = api_with(&provider, |_| {}).await;
    let answer = log_in(&api, "guest").await;
    assert_eq!(error_code(&answer.body), "oidc_login_failed");
    session_user(&api, &log_in(&api, "frank").await).await;
}

#[tokio::test]
async fn a_token_signed_with_a_new_key_fetches_the_keys_again() {
    let mut provider = provider_of("ivan", true);
    let api = api_with(&provider, |_| {}).await;
    let first = session_user(&api, &log_in(&api, "ivan").await).await;
    provider.stop();
    provider.resume();
    let again = session_user(&api, &log_in(&api, "ivan").await).await;
    assert_eq!(again["id"], first["id"]);
}

#[tokio::test]
async fn a_provider_down_or_silent_answers_503_in_time_while_local_logins_work() {
    let mut provider = provider_of("gina", true);
    let api = api_with(&provider, |_| {}).await;
    let (back, flow_cookie) = until_callback(&api, "gina").await;
    provider.stop();
    let answer = callback(&api, &back, &flow_cookie).await;
    assert_unavailable_while_local_logins_work(&api, &answer).await;

    // Silent from the start (it takes connections and never answers): the control plane
    // starts, and a login gives up after `timeout_secs`.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
    let authority = format!("http://{}", silent.local_addr().expect("its address"));
    let api = api_with(&provider, |entra| {
        entra.authority = Some(authority);
        entra.timeout_secs = 1;
    })
    .await;
    let began = Instant::now();
    let answer = api.answer_from(LOCAL_PEER, "GET", LOGIN, &[], None).await;
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "{:?}",
        began.elapsed()
    );
    assert_unavailable_while_local_logins_work(&api, &answer).await;
}

async fn assert_unavailable_while_local_logins_work(api: &Api, answer: &Answer) {
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.body
    );
    assert_eq!(error_code(&answer.body), "oidc_unavailable");
    api.logged_in_user("hank").await;
}

#[tokio::test]
async fn the_login_page_sends_a_browser_to_the_only_method() {
    let only_oidc = Api::start_with(|config: &mut Config| {
        config.auth.local.enabled = false;
        config.auth.oidc.public_url = Some(PUBLIC_URL.into());
        config.auth.oidc.providers.insert(
            "corp".into(),
            OidcProviderConfig {
                issuer: Some("https://login.corp.example".into()),
                client_id: CLIENT_ID.into(),
                client_secret: CLIENT_SECRET.into(),
                ..OidcProviderConfig::default()
            },
        );
    })
    .await;
    let answer = only_oidc
        .answer_from(
            LOCAL_PEER,
            "GET",
            "/api/v1/auth/login?return_to=/x",
            &[],
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::FOUND, "{}", answer.body);
    assert_eq!(
        header(&answer, "location"),
        "/api/v1/auth/oidc/corp/login?return_to=/x"
    );
    let (status, body) = only_oidc
        .call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "a", "password": "b"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let with_passwords = Api::start().await;
    let (status, _) = with_passwords
        .call("GET", "/api/v1/auth/login", None, None)
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}
