//! Second factors through the HTTP application: TOTP enrolment and confirmation, logins in two
//! steps with a code or a backup code, replays, backoff and lockout of wrong codes, an admin's
//! reset, enforcement by role and per user, and the challenge token's refusals (the calls in
//! `support/mfa.rs`).

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{json, Value};
use support::accounts::{
    access_token, assert_error, backing_off_then_locking, login, login_from, user_with_password,
    with_token, PASSWORD, PASSWORD_WORK,
};
use support::app::{retry_after_secs, token_part, Answer, Api, LOCAL_PEER};
use support::mfa::{
    access, code, confirm, enabled_totp, enrol, mfa_state, mfa_token, second_step, second_step_from,
};
use support::{against_both_databases, TestDatabase};
use tollgate::accounts::user::Role;
use tollgate::config::Config;

async fn enrolment_confirmation_and_logins_with_codes_and_backup_codes(db: TestDatabase) {
    let _turn = PASSWORD_WORK.lock().await;
    let api = Api::start_on(Arc::new(db), |config: &mut Config| {
        config.login.backoff_secs = 0;
        config.mfa.issuer = "Acme Gateway".into();
    })
    .await;
    let id = user_with_password(&api, "mia").await;
    let token = access_token(&api, "mia", PASSWORD).await;
    let before = mfa_state(&api, &token).await;
    assert_eq!(
        (&before["enabled"], &before["pending"], &before["required"]),
        (&json!(false), &json!(false), &json!(false))
    );

    let (first, replaced) = enrol(&api, &token).await;
    assert_eq!(replaced.issuer(), Some("Acme Gateway"));
    assert_eq!(replaced.account_name(), "mia");
    let qr = first.body["qr_svg"].as_str().expect("qr_svg");
    assert!(qr.starts_with("<?xml") && qr.contains("<svg") && qr.ends_with("</svg>"));
    assert_eq!(first.headers["cache-control"], "no-store");
    let (_, totp) = enrol(&api, &token).await;
    assert_ne!(totp.secret(), replaced.secret(), "a new secret each time");
    assert_eq!(mfa_state(&api, &token).await["pending"], true);
    let confirm_path = "/api/v1/users/me/mfa/totp/confirm";
    for (body, status, error) in [
        (
            json!({"code": code(&totp, 0)}),
            StatusCode::BAD_REQUEST,
            "validation_failed",
        ),
        (
            json!({"code": code(&totp, 0), "password": "wrong"}),
            StatusCode::FORBIDDEN,
            "invalid_current_password",
        ),
    ] {
        let refused = with_token(&api, "POST", confirm_path, &token, Some(body)).await;
        assert_error(&refused, status, error);
    }
    assert_error(
        &confirm(&api, &token, &code(&replaced, 0)).await,
        StatusCode::FORBIDDEN,
        "invalid_mfa_code",
    );

    let confirmed = confirm(&api, &token, &code(&totp, 0)).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
    let backup_codes: Vec<String> = confirmed.body["backup_codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|code| code.as_str().expect("code").to_string())
        .collect();
    assert_eq!(backup_codes.len(), 10);
    let again = with_token(&api, "POST", "/api/v1/users/me/mfa/totp", &token, None).await;
    assert_error(&again, StatusCode::CONFLICT, "mfa_already_enabled");
    let state = mfa_state(&api, &token).await;
    assert_eq!(
        (&state["enabled"], &state["backup_codes_remaining"]),
        (&json!(true), &json!(10))
    );

    // The confirmation spent this step: the next login takes the next code.
    let replayed = json!({"mfa_token": mfa_token(&api, "mia").await, "code": code(&totp, 0)});
    assert_error(
        &second_step(&api, replayed).await,
        StatusCode::UNAUTHORIZED,
        "invalid_mfa_code",
    );
    let challenge = mfa_token(&api, "mia").await;
    let next = code(&totp, 1);
    let session = second_step(&api, json!({"mfa_token": challenge, "code": next})).await;
    let me = with_token(&api, "GET", "/api/v1/users/me", access(&session), None).await;
    assert_eq!((me.status, &me.body["id"]), (StatusCode::OK, &json!(id)));
    assert!(session.headers["set-cookie"]
        .to_str()
        .expect("cookie")
        .contains("HttpOnly"));
    let replayed = json!({"mfa_token": mfa_token(&api, "mia").await, "code": next});
    assert_error(
        &second_step(&api, replayed).await,
        StatusCode::UNAUTHORIZED,
        "invalid_mfa_code",
    );

    let typed = format!(" {} ", backup_codes[0].to_uppercase().replace('-', " "));
    let with_backup = json!({"mfa_token": mfa_token(&api, "mia").await, "backup_code": typed});
    let backup_session = second_step(&api, with_backup).await;
    access(&backup_session);
    let reused = json!({"mfa_token": mfa_token(&api, "mia").await, "backup_code": backup_codes[0]});
    assert_error(
        &second_step(&api, reused).await,
        StatusCode::UNAUTHORIZED,
        "invalid_mfa_code",
    );
    assert_eq!(mfa_state(&api, &token).await["backup_codes_remaining"], 9);

    let (_, audit) = api.admin("GET", "/api/v1/audit?per_page=100", None).await;
    let text = audit.to_string();
    for secret in [totp.secret().to_base32(), backup_codes[1].clone()] {
        assert!(!text.contains(&secret), "the audit holds no secret");
    }
    let failures: Vec<&str> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|entry| entry["action"] == "login.mfa_failed")
        .map(|entry| entry["details"]["result"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        failures,
        ["wrong_code", "replayed_code", "replayed_code"],
        "newest first"
    );
}

async fn wrong_codes_back_off_then_lock_until_an_admin_unlocks_and_a_reset_removes_the_factor(
    db: TestDatabase,
) {
    let _turn = PASSWORD_WORK.lock().await;
    let api = Api::start_on(Arc::new(db), backing_off_then_locking).await;
    let id = user_with_password(&api, "noa").await;
    let token = access_token(&api, "noa", PASSWORD).await;
    let (totp, _) = enabled_totp(&api, &token).await;
    let challenge = mfa_token(&api, "noa").await;
    let with_code = |code: &str| json!({"mfa_token": challenge, "code": code});
    let bad = if code(&totp, 1) == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..2 {
        assert_error(
            &second_step(&api, with_code(bad)).await,
            StatusCode::UNAUTHORIZED,
            "invalid_mfa_code",
        );
    }
    let waiting = second_step(&api, with_code(&code(&totp, 1))).await;
    assert_error(&waiting, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts");
    assert_eq!(retry_after_secs(&waiting), 1, "even with the right code");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_error(
        &second_step(&api, with_code(bad)).await,
        StatusCode::UNAUTHORIZED,
        "invalid_mfa_code",
    );
    let locked = second_step(&api, with_code(&code(&totp, 1))).await;
    assert_error(&locked, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts");
    assert!(retry_after_secs(&locked) > 500, "{:?}", locked.headers);
    // The password's own failures are counted apart: it still leads to the second step.
    mfa_token(&api, "noa").await;
    let (status, _) = api
        .admin("DELETE", &format!("/api/v1/users/{id}/lockout"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    access(&second_step(&api, with_code(&code(&totp, 1))).await);

    let (_, other) = api.logged_in_user("someone").await;
    let path = format!("/api/v1/users/{id}/mfa");
    assert_error(
        &with_token(&api, "DELETE", &path, &other, None).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let (status, _) = api.admin("DELETE", &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.admin("DELETE", &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing left to reset");
    let (_, audit) = api.admin("GET", "/api/v1/audit?per_page=20", None).await;
    assert!(
        audit["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|entry| entry["action"] == "user.mfa_reset" && entry["target"] == json!(id)),
        "{audit}"
    );
    let after_reset = login(&api, "noa", PASSWORD).await;
    access(&after_reset);

    let (totp, _) = enabled_totp(&api, &token).await;
    let challenge = mfa_token(&api, "noa").await;
    let session = second_step(
        &api,
        json!({"mfa_token": challenge, "code": code(&totp, 1)}),
    )
    .await;
    access(&session);
}

against_both_databases!(
    enrolment_confirmation_and_logins_with_codes_and_backup_codes,
    wrong_codes_back_off_then_lock_until_an_admin_unlocks_and_a_reset_removes_the_factor,
);

#[tokio::test]
async fn the_challenge_token_is_refused_expired_tampered_from_elsewhere_or_used() {
    let _turn = PASSWORD_WORK.lock().await;
    let api = Api::start_with(|config: &mut Config| config.mfa.challenge_ttl_secs = 1).await;
    user_with_password(&api, "ola").await;
    let token = access_token(&api, "ola", PASSWORD).await;
    let (totp, backup_codes) = enabled_totp(&api, &token).await;

    let expiring = mfa_token(&api, "ola").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let expired = second_step(
        &api,
        json!({"mfa_token": expiring, "backup_code": backup_codes[0]}),
    )
    .await;
    assert_error(&expired, StatusCode::UNAUTHORIZED, "invalid_mfa_token");

    let challenge = mfa_token(&api, "ola").await;
    let mut tampered = challenge.clone().into_bytes();
    tampered[20] = if tampered[20] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    for forged in [tampered.as_str(), "not a token", ""] {
        let answer = second_step(
            &api,
            json!({"mfa_token": forged, "backup_code": backup_codes[0]}),
        )
        .await;
        assert_error(&answer, StatusCode::UNAUTHORIZED, "invalid_mfa_token");
    }
    let elsewhere = second_step_from(
        &api,
        "192.0.2.9:4000",
        json!({"mfa_token": challenge, "backup_code": backup_codes[0]}),
    )
    .await;
    assert_error(&elsewhere, StatusCode::UNAUTHORIZED, "invalid_mfa_token");
    let both = second_step(
        &api,
        json!({"mfa_token": challenge, "code": "123456", "backup_code": "x"}),
    )
    .await;
    assert_error(&both, StatusCode::BAD_REQUEST, "validation_failed");

    access(
        &second_step(
            &api,
            json!({"mfa_token": challenge, "code": code(&totp, 1)}),
        )
        .await,
    );
    let reused = second_step(
        &api,
        json!({"mfa_token": challenge, "backup_code": backup_codes[0]}),
    )
    .await;
    assert_error(&reused, StatusCode::UNAUTHORIZED, "invalid_mfa_token");
    assert_eq!(
        mfa_state(&api, &token).await["backup_codes_remaining"],
        10,
        "no refused token spent a backup code"
    );
}

/// A session that may only enrol: refused by the admin API beyond the enrolment, and of an
/// audience the filter does not accept.
async fn assert_enrolment_only(api: &Api, answer: &Answer) -> String {
    assert_eq!(
        answer.body["mfa_enrolment_required"], true,
        "{}",
        answer.body
    );
    let token = access(answer).to_string();
    for path in ["/api/v1/users/me", "/api/v1/users/me/sessions"] {
        let refused = with_token(api, "GET", path, &token, None).await;
        assert_error(&refused, StatusCode::FORBIDDEN, "mfa_enrolment_required");
    }
    let audience = tollgate::config::Config::default().sessions.audience;
    assert_ne!(token_part(&token, 1)["aud"], json!(audience));
    assert_eq!(mfa_state(api, &token).await["required"], true);
    token
}

#[tokio::test]
async fn a_role_or_user_that_must_use_mfa_may_only_enrol_until_it_has() {
    let _turn = PASSWORD_WORK.lock().await;
    let api =
        Api::start_with(|config: &mut Config| config.mfa.required_for_roles = vec![Role::Admin])
            .await;
    api.create_user_with(json!({"username": "ada", "password": PASSWORD, "role": "admin"}))
        .await;
    let first = login(&api, "ada", PASSWORD).await;
    let limited = assert_enrolment_only(&api, &first).await;
    let (totp, _) = enabled_totp(&api, &limited).await;
    let refreshed = api
        .call(
            "POST",
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": first.body["refresh_token"]})),
        )
        .await;
    assert_eq!(refreshed.0, StatusCode::OK, "{}", refreshed.1);
    assert!(
        refreshed.1.get("mfa_enrolment_required").is_none(),
        "{}",
        refreshed.1
    );
    let full = refreshed.1["access_token"].as_str().expect("access");
    let users = with_token(&api, "GET", "/api/v1/users", full, None).await;
    assert_eq!(users.status, StatusCode::OK, "{}", users.body);
    let challenge = mfa_token(&api, "ada").await;
    access(
        &second_step(
            &api,
            json!({"mfa_token": challenge, "code": code(&totp, 1)}),
        )
        .await,
    );

    let bo = user_with_password(&api, "bo").await;
    access(&login(&api, "bo", PASSWORD).await);
    let (status, changed) = api
        .admin(
            "PATCH",
            &format!("/api/v1/users/{bo}"),
            Some(json!({"mfa_required": true})),
        )
        .await;
    assert_eq!(
        (status, &changed["mfa_required"]),
        (StatusCode::OK, &json!(true))
    );
    let limited = assert_enrolment_only(
        &api,
        &login_from(&api, LOCAL_PEER, "curl/8.5.0", "bo", PASSWORD).await,
    )
    .await;
    let removal = with_token(
        &api,
        "DELETE",
        "/api/v1/users/me/mfa",
        &limited,
        Some(json!({"password": PASSWORD})),
    )
    .await;
    assert_error(&removal, StatusCode::FORBIDDEN, "mfa_enrolment_required");
}

#[tokio::test]
async fn a_person_removes_their_own_second_factor_with_a_code_or_the_password() {
    let _turn = PASSWORD_WORK.lock().await;
    let api = Api::start().await;
    user_with_password(&api, "pia").await;
    let token = access_token(&api, "pia", PASSWORD).await;
    let path = "/api/v1/users/me/mfa";
    let remove = |body: Value| with_token(&api, "DELETE", path, &token, Some(body));
    assert_error(
        &remove(json!({"password": PASSWORD})).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let (totp, _) = enabled_totp(&api, &token).await;
    assert_error(
        &remove(json!({"password": "wrong"})).await,
        StatusCode::FORBIDDEN,
        "invalid_current_password",
    );
    assert_error(
        &remove(json!({"code": code(&totp, 0)})).await,
        StatusCode::FORBIDDEN,
        "invalid_mfa_code",
    );
    assert_error(
        &remove(json!({})).await,
        StatusCode::BAD_REQUEST,
        "validation_failed",
    );
    assert_eq!(
        remove(json!({"code": code(&totp, 1)})).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(mfa_state(&api, &token).await["enabled"], false);
    access(&login(&api, "pia", PASSWORD).await);

    enabled_totp(&api, &token).await;
    assert_eq!(
        remove(json!({"password": PASSWORD})).await.status,
        StatusCode::NO_CONTENT
    );
    access(&login(&api, "pia", PASSWORD).await);
}

#[tokio::test]
async fn an_api_key_cannot_enrol_a_second_factor() {
    let api = Api::start().await;
    let (_, key) = api.user_with_key("kai").await;
    for path in [
        "/api/v1/users/me/mfa/totp",
        "/api/v1/users/me/mfa/totp/confirm",
    ] {
        let answer = api
            .answer_from(
                LOCAL_PEER,
                "POST",
                path,
                &[("x-api-key", &key)],
                Some(json!({"code": "123456"})),
            )
            .await;
        assert_error(&answer, StatusCode::FORBIDDEN, "session_required");
    }
}
