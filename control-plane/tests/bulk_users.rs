//! Bulk import and export of users and their group memberships, as CSV and JSON: checked row
//! by row, nothing applied while any row is refused, a dry run first if asked; exports in the
//! columns imports take, within the caller's reach, with no secret.

mod support;

use std::fmt::Write;
use std::time::Instant;

use axum::http::StatusCode;
use serde_json::{json, Value};
use support::app::{error_code, Answer, Api, ADMIN_KEY, LOCAL_PEER};

const IMPORT: &str = "/api/v1/users/import";

async fn user_count(api: &Api) -> u64 {
    let (_, users) = api.admin("GET", "/api/v1/users", None).await;
    users["total"].as_u64().expect("total")
}

async fn import_csv(api: &Api, query: &str, csv: &str) -> Answer {
    api.upload(
        &format!("{IMPORT}{query}"),
        ADMIN_KEY,
        "text/csv",
        csv.to_string(),
    )
    .await
}

async fn export(api: &Api, key: &str, format: &str) -> Answer {
    api.answer_from(
        LOCAL_PEER,
        "GET",
        &format!("/api/v1/users/export?format={format}"),
        &[("x-api-key", key)],
        None,
    )
    .await
}

#[tokio::test]
async fn a_csv_import_checks_first_on_a_dry_run_then_applies_with_memberships() {
    let api = Api::start().await;
    api.admin(
        "POST",
        "/api/v1/tenants",
        Some(json!({"id": "acme", "name": "Acme"})),
    )
    .await;
    let (_, group) = api
        .admin(
            "POST",
            "/api/v1/groups",
            Some(json!({"name": "engineers", "tenant_id": "acme"})),
        )
        .await;
    api.admin("POST", "/api/v1/groups", Some(json!({"name": "2024"})))
        .await;
    let csv = "username,email,tenant_id,groups,department,role\n\
               ada,ada@example.com,acme,engineers,Engineering,\n\
               alan,alan@example.com,acme,,Research,auditor\n\
               grace,,,2024,=HYPERLINK(x),\n";
    let before = user_count(&api).await;

    let dry = import_csv(&api, "?dry_run=true", csv).await;
    assert_eq!(dry.status, StatusCode::OK, "{}", dry.body);
    assert_eq!(dry.body["accepted"], 3);
    assert_eq!(dry.body["applied"], false);
    assert_eq!(user_count(&api).await, before, "a dry run applies nothing");

    let applied = import_csv(&api, "", csv).await;
    assert_eq!(applied.status, StatusCode::CREATED, "{}", applied.body);
    assert_eq!(applied.body["applied"], true);
    assert_eq!(user_count(&api).await, before + 3);
    let (_, members) = api
        .admin(
            "GET",
            &format!(
                "/api/v1/groups/{}/members",
                group["id"].as_str().expect("id")
            ),
            None,
        )
        .await;
    assert_eq!(members["total"], 1);
    let (_, alan) = api.admin("GET", "/api/v1/users?q=alan", None).await;
    assert_eq!(alan["items"][0]["role"], "auditor");
    assert_eq!(alan["items"][0]["tenant_id"], "acme");
    assert_eq!(alan["items"][0]["department"], "Research");
    let (_, grace) = api.admin("GET", "/api/v1/users?q=grace", None).await;
    assert_eq!(
        grace["items"][0]["groups"].as_array().map(Vec::len),
        Some(1),
        "a group named 2024"
    );
    let exported = export(&api, ADMIN_KEY, "csv").await;
    let text = exported.body.as_str().expect("CSV text");
    assert!(
        text.contains(",'=HYPERLINK"),
        "a formula is exported as text: {text}"
    );
}

#[tokio::test]
async fn one_bad_row_leaves_nothing_applied_and_every_refusal_is_reported() {
    let api = Api::start().await;
    api.create_user("taken").await;
    let before = user_count(&api).await;
    let csv = "username,email,role,groups\n\
               fine,fine@example.com,,\n\
               broken,not-an-email,,\n\
               taken,,,\n\
               fine,,,\n\
               boss,,emperor,\n\
               lost,,,nosuchgroup\n";
    let answer = import_csv(&api, "", csv).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    assert_eq!(error_code(&answer.body), "import_rejected");
    let report = &answer.body["error"]["report"];
    assert_eq!(report["rows"], 6);
    assert_eq!(report["rejected"], 5);
    let refused: Vec<(u64, &str)> = report["refusals"]
        .as_array()
        .expect("refusals")
        .iter()
        .map(|refusal| {
            (
                refusal["row"].as_u64().expect("row"),
                refusal["message"].as_str().expect("message"),
            )
        })
        .collect();
    let rows: Vec<u64> = refused.iter().map(|(row, _)| *row).collect();
    assert_eq!(rows, [2, 3, 4, 5, 6], "{refused:?}");
    for (field, (_, message)) in ["email", "username", "username", "role", "groups"]
        .iter()
        .zip(&refused)
    {
        assert!(message.contains(field), "{field}: {message}");
    }
    assert_eq!(user_count(&api).await, before, "nothing was applied");
}

#[tokio::test]
async fn a_json_import_takes_what_an_export_gives() {
    let source = Api::start().await;
    for name in ["one", "two"] {
        source
            .create_user_with(json!({"username": name, "organization": "Initech", "password": "correct horse battery"}))
            .await;
    }
    let exported = export(&source, ADMIN_KEY, "json").await;
    assert_eq!(exported.status, StatusCode::OK);
    let users = exported.body.as_array().expect("an array").clone();
    assert_eq!(users.len(), 3, "the admin and the two: {users:?}");
    assert!(users.iter().all(|user| user.get("password_hash").is_none()));

    let target = Api::start().await;
    let imported: Vec<Value> = users
        .into_iter()
        .filter(|user| user["username"] != "admin")
        .collect();
    let (status, report) = target.admin("POST", IMPORT, Some(json!(imported))).await;
    assert_eq!(status, StatusCode::CREATED, "{report}");
    let (_, one) = target.admin("GET", "/api/v1/users?q=one", None).await;
    assert_eq!(one["items"][0]["organization"], "Initech");
    assert_eq!(one["items"][0]["id"], imported[0]["id"], "ids are kept");

    let (status, body) = target
        .admin("POST", IMPORT, Some(json!({"username": "x"})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let wrong_type = target
        .upload(IMPORT, ADMIN_KEY, "text/plain", "username\nx\n".into())
        .await;
    assert_eq!(wrong_type.status, StatusCode::BAD_REQUEST);
    let twice = json!([{"username": "a", "id": "u_same"}, {"username": "b", "id": "u_same"}]);
    let (status, body) = target.admin("POST", IMPORT, Some(twice)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let again = json!([{"username": "c", "id": imported[0]["id"]}]);
    let (status, body) = target.admin("POST", IMPORT, Some(again)).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "an id already taken: {body}"
    );
    let unknown_column = import_csv(&target, "", "username,shoe_size\nx,44\n").await;
    assert_eq!(
        unknown_column.status,
        StatusCode::BAD_REQUEST,
        "{}",
        unknown_column.body
    );
}

#[tokio::test]
async fn a_tenant_admin_imports_and_exports_only_inside_their_tenant() {
    let api = Api::start().await;
    for tenant in ["acme", "globex"] {
        api.admin(
            "POST",
            "/api/v1/tenants",
            Some(json!({"id": tenant, "name": tenant})),
        )
        .await;
    }
    api.create_user_with(json!({"username": "outsider", "tenant_id": "globex"}))
        .await;
    let boss = api
        .create_user_with(json!({"username": "boss", "role": "tenant_admin", "tenant_id": "acme"}))
        .await;
    let key = api.issue_key(boss["id"].as_str().expect("id")).await;

    let refused = api
        .upload(
            IMPORT,
            &key,
            "text/csv",
            "username,tenant_id\nspy,globex\n".into(),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    let refused = api
        .upload(
            IMPORT,
            &key,
            "text/csv",
            "username,role\nking,admin\n".into(),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    let accepted = api
        .upload(IMPORT, &key, "text/csv", "username\nhire\n".into())
        .await;
    assert_eq!(accepted.status, StatusCode::CREATED, "{}", accepted.body);

    let exported = export(&api, &key, "csv").await;
    assert_eq!(exported.status, StatusCode::OK);
    let csv = exported.body.as_str().expect("CSV text");
    let mut lines = csv.lines();
    assert!(lines
        .next()
        .expect("header")
        .starts_with("id,username,email"));
    let usernames: Vec<&str> = lines
        .map(|line| line.split(',').nth(1).expect("username"))
        .collect();
    assert_eq!(usernames, ["boss", "hire"], "{csv}");
}

#[tokio::test]
async fn ten_thousand_users_import_in_one_go() {
    let api = Api::start().await;
    let mut csv = String::from("username,email,department\n");
    for n in 0..10_000 {
        writeln!(csv, "person{n},person{n}@example.com,Dept {}", n % 7).expect("write");
    }
    let started = Instant::now();
    let answer = import_csv(&api, "", &csv).await;
    let elapsed = started.elapsed();
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    assert_eq!(answer.body["accepted"], 10_000);
    println!("imported 10000 users in {:.2} s", elapsed.as_secs_f64());
    assert_eq!(user_count(&api).await, 10_001);
}
