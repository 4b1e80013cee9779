//! The five roles through the admin API: a table of which role may make each call, walked
//! call by call, and the walls between tenants (an object of another tenant answers 404, as
//! if it did not exist, to everyone confined to their own).

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::StatusCode;
use serde_json::{json, Value};
use support::app::{error_code, Api};

const ROLES: [&str; 5] = ["admin", "tenant_admin", "operator", "auditor", "user"];

/// One caller per role; all but the admin and the operator and auditor (staff of the whole
/// deployment) belong to tenant `acme`.
struct Cast {
    api: Api,
    /// Each role's key and user id, in the order of [`ROLES`].
    keys: Vec<String>,
    ids: Vec<String>,
    acme_user: String,
    globex_user: String,
    acme_group: String,
    globex_group: String,
    fresh: AtomicUsize,
}

impl Cast {
    async fn assemble() -> Self {
        let api = Api::start().await;
        for tenant in ["acme", "globex"] {
            let (status, body) = api
                .admin(
                    "POST",
                    "/api/v1/tenants",
                    Some(json!({"id": tenant, "name": tenant})),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        let mut keys = Vec::new();
        let mut ids = Vec::new();
        for role in ROLES {
            let tenant = matches!(role, "tenant_admin" | "user").then_some("acme");
            let user = api
                .create_user_with(
                    json!({"username": format!("the-{role}"), "role": role, "tenant_id": tenant}),
                )
                .await;
            let id = id(&user);
            keys.push(api.issue_key(&id).await);
            ids.push(id);
        }
        let acme_user = id(&api
            .create_user_with(json!({"username": "acme-person", "tenant_id": "acme"}))
            .await);
        let globex_user = id(&api
            .create_user_with(json!({"username": "globex-person", "tenant_id": "globex"}))
            .await);
        let mut groups = Vec::new();
        for tenant in ["acme", "globex"] {
            let (status, group) = api
                .admin(
                    "POST",
                    "/api/v1/groups",
                    Some(json!({"name": format!("{tenant}-team"), "tenant_id": tenant})),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{group}");
            groups.push(id(&group));
        }
        let [acme_group, globex_group] = <[String; 2]>::try_from(groups).expect("two groups");
        Self {
            api,
            keys,
            ids,
            acme_user,
            globex_user,
            acme_group,
            globex_group,
            fresh: AtomicUsize::new(0),
        }
    }

    /// A new user of `tenant`, made by the admin, for a call that changes or deletes one.
    async fn fresh_user(&self, tenant: &str) -> String {
        let n = self.fresh.fetch_add(1, Ordering::Relaxed);
        id(&self
            .api
            .create_user_with(json!({"username": format!("fresh-{n}"), "tenant_id": tenant}))
            .await)
    }

    fn unique(&self, what: &str) -> String {
        format!("{what}-{}", self.fresh.fetch_add(1, Ordering::Relaxed))
    }

    /// `template` with its placeholders filled for the caller of role number `caller`
    /// (`{self}` is their own id); each `{fresh_*}` is a new object.
    async fn fill(&self, template: &str, caller: usize) -> String {
        let mut text = template
            .replace("{self}", &self.ids[caller])
            .replace("{user}", &self.ids[4])
            .replace("{acme_user}", &self.acme_user)
            .replace("{globex_user}", &self.globex_user)
            .replace("{acme_group}", &self.acme_group)
            .replace("{globex_group}", &self.globex_group);
        for (placeholder, tenant) in [("{fresh_acme}", "acme"), ("{fresh_globex}", "globex")] {
            if text.contains(placeholder) {
                text = text.replace(placeholder, &self.fresh_user(tenant).await);
            }
        }
        if text.contains("{unique}") {
            text = text.replace("{unique}", &self.unique("n"));
        }
        text
    }
}

fn id(object: &Value) -> String {
    object["id"].as_str().expect("id").to_string()
}

/// A call and the status each role gets, in the order of [`ROLES`].
struct Row {
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    expected: [u16; 5],
}

const fn row(
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    expected: [u16; 5],
) -> Row {
    Row {
        method,
        path,
        body,
        expected,
    }
}

/// Who may do what: the status each role gets, in the order of [`ROLES`]:
/// admin, tenant_admin, operator, auditor, user.
#[rustfmt::skip]
const TABLE: &[Row] = &[
    row("GET", "/api/v1/users/me", None, [200, 200, 200, 200, 200]),
    row("GET", "/api/v1/users", None, [200, 200, 200, 200, 403]),
    row("POST", "/api/v1/users", Some(r#"{"username": "{unique}"}"#), [201, 201, 403, 403, 403]),
    row("POST", "/api/v1/users", Some(r#"{"username": "{unique}", "role": "admin"}"#), [201, 403, 403, 403, 403]),
    row("POST", "/api/v1/users", Some(r#"{"username": "{unique}", "tenant_id": "globex"}"#), [201, 404, 403, 403, 403]),
    row("GET", "/api/v1/users/{self}", None, [200, 200, 200, 200, 200]),
    row("GET", "/api/v1/users/{acme_user}", None, [200, 200, 200, 200, 403]),
    row("GET", "/api/v1/users/{globex_user}", None, [200, 404, 200, 200, 403]),
    row("PATCH", "/api/v1/users/{fresh_acme}", Some(r#"{"department": "Ops"}"#), [200, 200, 403, 403, 403]),
    row("PATCH", "/api/v1/users/{fresh_globex}", Some(r#"{"department": "Ops"}"#), [200, 404, 403, 403, 403]),
    row("PATCH", "/api/v1/users/{fresh_acme}", Some(r#"{"role": "admin"}"#), [200, 403, 403, 403, 403]),
    row("PATCH", "/api/v1/users/{fresh_acme}", Some(r#"{"tenant_id": "globex"}"#), [200, 404, 403, 403, 403]),
    row("PATCH", "/api/v1/users/{fresh_acme}", Some(r#"{"quotas": {"monthly_requests": 5}}"#), [200, 403, 200, 403, 403]),
    row("DELETE", "/api/v1/users/{fresh_acme}", None, [204, 204, 403, 403, 403]),
    row("DELETE", "/api/v1/users/{fresh_globex}", None, [204, 404, 403, 403, 403]),
    row("POST", "/api/v1/users/{fresh_acme}/password-reset", Some("{}"), [200, 200, 403, 403, 403]),
    row("GET", "/api/v1/users/{acme_user}/lockout", None, [200, 200, 200, 200, 403]),
    row("GET", "/api/v1/users/{globex_user}/lockout", None, [200, 404, 200, 200, 403]),
    row("DELETE", "/api/v1/users/{fresh_acme}/lockout", None, [204, 204, 403, 403, 403]),
    row("DELETE", "/api/v1/users/{fresh_globex}/lockout", None, [204, 404, 403, 403, 403]),
    row("POST", "/api/v1/users/{fresh_acme}/restore", None, [409, 409, 403, 403, 403]),
    row("GET", "/api/v1/users/{self}/keys", None, [200, 200, 200, 200, 200]),
    row("GET", "/api/v1/users/{user}/keys", None, [200, 200, 200, 200, 200]),
    row("GET", "/api/v1/users/{globex_user}/keys", None, [200, 404, 200, 200, 403]),
    row("POST", "/api/v1/users/{fresh_acme}/keys", Some(r#"{"name": "k"}"#), [201, 201, 403, 403, 403]),
    row("POST", "/api/v1/users/{fresh_globex}/keys", Some(r#"{"name": "k"}"#), [201, 404, 403, 403, 403]),
    row("POST", "/api/v1/users/{self}/keys", Some(r#"{"name": "mine"}"#), [201, 201, 201, 201, 201]),
    row("GET", "/api/v1/users/{acme_user}/quota", None, [200, 200, 200, 200, 403]),
    row("GET", "/api/v1/users/{globex_user}/quota", None, [200, 404, 200, 200, 403]),
    row("GET", "/api/v1/groups", None, [200, 200, 200, 200, 403]),
    row("GET", "/api/v1/groups/{acme_group}", None, [200, 200, 200, 200, 403]),
    row("GET", "/api/v1/groups/{globex_group}", None, [200, 404, 200, 200, 403]),
    row("GET", "/api/v1/groups/{globex_group}/members", None, [200, 404, 200, 200, 403]),
    row("POST", "/api/v1/groups", Some(r#"{"name": "{unique}"}"#), [201, 201, 403, 403, 403]),
    row("PATCH", "/api/v1/groups/{acme_group}", Some(r#"{"priority": 3}"#), [200, 200, 403, 403, 403]),
    row("PATCH", "/api/v1/groups/{globex_group}", Some(r#"{"priority": 3}"#), [200, 404, 403, 403, 403]),
    row("PATCH", "/api/v1/groups/{acme_group}", Some(r#"{"pools": ["default"]}"#), [200, 403, 200, 403, 403]),
    row("PATCH", "/api/v1/groups/{acme_group}", Some(r#"{"rate_limits": {"requests_per_second": 9}}"#), [200, 403, 200, 403, 403]),
    row("POST", "/api/v1/groups/{acme_group}/members", Some(r#"{"user_id": "{fresh_acme}"}"#), [201, 201, 403, 403, 403]),
    row("POST", "/api/v1/groups/{globex_group}/members", Some(r#"{"user_id": "{fresh_globex}"}"#), [201, 404, 403, 403, 403]),
    row("GET", "/api/v1/backends", None, [200, 403, 200, 200, 403]),
    row("GET", "/api/v1/pools", None, [200, 403, 200, 200, 403]),
    row("GET", "/api/v1/xds/nodes", None, [200, 403, 200, 200, 403]),
    row("POST", "/api/v1/backends", Some(r#"{"url": "http://127.0.0.1:9", "pool": "{unique}", "enabled": false}"#), [201, 403, 201, 403, 403]),
    row("GET", "/api/v1/tenants", None, [200, 200, 200, 200, 403]),
    row("GET", "/api/v1/tenants/acme", None, [200, 200, 200, 200, 403]),
    row("GET", "/api/v1/tenants/globex", None, [200, 404, 200, 200, 403]),
    row("POST", "/api/v1/tenants", Some(r#"{"name": "{unique}"}"#), [201, 403, 403, 403, 403]),
    row("PATCH", "/api/v1/tenants/acme", Some(r#"{"mfa_required": false}"#), [200, 403, 403, 403, 403]),
    row("GET", "/api/v1/audit", None, [200, 200, 403, 200, 403]),
    row("POST", "/api/v1/auth/signing-keys/rotate", None, [201, 403, 403, 403, 403]),
    row("GET", "/api/v1/users/export", None, [200, 200, 200, 200, 403]),
    row("POST", "/api/v1/users/import?dry_run=true", Some(r#"[{"username": "{unique}"}]"#), [200, 200, 403, 403, 403]),
    row("DELETE", "/api/v1/users/{acme_user}/mfa", None, [404, 404, 403, 403, 403]),
    row("GET", "/api/v1/metrics", None, [200, 403, 200, 200, 403]),
    row("PUT", "/api/v1/pools/{unique}", Some(r#"{"interval_secs": 30}"#), [200, 403, 200, 403, 403]),
    row("DELETE", "/api/v1/tenants/{unique}", None, [404, 403, 403, 403, 403]),
];

#[tokio::test]
async fn every_role_gets_what_the_table_says() {
    let cast = Cast::assemble().await;
    let mut wrong = Vec::new();
    for row in TABLE {
        for (caller, (role, expected)) in ROLES.iter().zip(row.expected).enumerate() {
            let key = &cast.keys[caller];
            let path = cast.fill(row.path, caller).await;
            let body = match row.body {
                Some(body) => {
                    Some(serde_json::from_str(&cast.fill(body, caller).await).expect("json"))
                }
                None => None,
            };
            let (status, answer) = cast.api.call(row.method, &path, Some(key), body).await;
            if status.as_u16() != expected {
                wrong.push(format!(
                    "{role} {} {}: {status}, expected {expected}: {answer}",
                    row.method, row.path
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn a_tenant_admin_lists_counts_and_creates_only_inside_their_tenant() {
    let cast = Cast::assemble().await;
    let tenant_admin = &cast.keys[1];

    let (_, users) = cast
        .api
        .call(
            "GET",
            "/api/v1/users?per_page=100",
            Some(tenant_admin),
            None,
        )
        .await;
    let tenants: Vec<&str> = users["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|user| user["tenant_id"].as_str().unwrap_or("none"))
        .collect();
    assert!(
        tenants.iter().all(|tenant| *tenant == "acme"),
        "{tenants:?}"
    );
    assert_eq!(users["total"].as_u64(), Some(tenants.len() as u64));
    let (_, filtered) = cast
        .api
        .call(
            "GET",
            "/api/v1/users?tenant_id=globex",
            Some(tenant_admin),
            None,
        )
        .await;
    assert_eq!(filtered["total"], 0, "a filter cannot widen the reach");

    let (status, created) = cast
        .api
        .call(
            "POST",
            "/api/v1/users",
            Some(tenant_admin),
            Some(json!({"username": "hired"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["tenant_id"], "acme");
    assert_eq!(created["role"], "user");

    let (_, groups) = cast
        .api
        .call("GET", "/api/v1/groups", Some(tenant_admin), None)
        .await;
    let ids: Vec<&str> = groups["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|group| group["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, [cast.acme_group.as_str()]);

    let (_, tenants) = cast
        .api
        .call("GET", "/api/v1/tenants", Some(tenant_admin), None)
        .await;
    assert_eq!(tenants["total"], 1);
    assert_eq!(tenants["items"][0]["id"], "acme");
}

#[tokio::test]
async fn a_tenant_admin_cannot_act_on_an_admin_of_their_own_tenant() {
    let cast = Cast::assemble().await;
    let admin_in_acme = id(&cast
        .api
        .create_user_with(json!({"username": "boss", "role": "admin", "tenant_id": "acme"}))
        .await);
    let tenant_admin = &cast.keys[1];
    for (method, path, body) in [
        ("GET", format!("/api/v1/users/{admin_in_acme}"), None),
        ("DELETE", format!("/api/v1/users/{admin_in_acme}"), None),
        (
            "POST",
            format!("/api/v1/users/{admin_in_acme}/keys"),
            Some(json!({"name": "mine now"})),
        ),
        (
            "POST",
            format!("/api/v1/users/{admin_in_acme}/password-reset"),
            Some(json!({})),
        ),
    ] {
        let (status, answer) = cast.api.call(method, &path, Some(tenant_admin), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
    }
    let (_, admin) = cast
        .api
        .admin("GET", &format!("/api/v1/users/{admin_in_acme}"), None)
        .await;
    assert_eq!(admin["status"], "active");
}

#[tokio::test]
async fn staff_of_a_tenant_touch_nothing_of_the_whole_deployment_and_read_only_their_audit() {
    let cast = Cast::assemble().await;
    let local_auditor = cast
        .api
        .create_user_with(
            json!({"username": "local-auditor", "role": "auditor", "tenant_id": "acme"}),
        )
        .await;
    let key = cast.api.issue_key(&id(&local_auditor)).await;
    let local_operator = cast
        .api
        .create_user_with(
            json!({"username": "local-operator", "role": "operator", "tenant_id": "acme"}),
        )
        .await;
    let operator_key = cast.api.issue_key(&id(&local_operator)).await;
    for (key, path) in [
        (&key, "/api/v1/backends"),
        (&operator_key, "/api/v1/backends"),
        (&operator_key, "/api/v1/xds/nodes"),
    ] {
        let (status, body) = cast.api.call("GET", path, Some(key), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
    }
    let backend = json!({"url": "http://127.0.0.1:9", "pool": "theirs"});
    let (status, _) = cast
        .api
        .call(
            "POST",
            "/api/v1/backends",
            Some(&operator_key),
            Some(backend),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "backends serve every tenant");
    let (status, audit) = cast
        .api
        .call("GET", "/api/v1/audit?per_page=200", Some(&key), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let entries = audit["items"].as_array().expect("items");
    assert!(
        !entries.is_empty() && entries.iter().all(|entry| entry["tenant_id"] == "acme"),
        "only their tenant's entries: {audit}"
    );
    assert!(
        entries
            .iter()
            .all(|entry| entry["target"] != id(&local_operator).as_str()),
        "nothing about an operator of the tenant, whom its staff cannot see: {audit}"
    );
    let (_, theirs) = cast
        .api
        .call("GET", "/api/v1/audit?tenant=globex", Some(&key), None)
        .await;
    assert_eq!(theirs["total"], 0, "{theirs}");
    let (_, everyone) = cast
        .api
        .admin("GET", "/api/v1/audit?tenant=globex", None)
        .await;
    assert!(everyone["total"].as_u64() > Some(0), "{everyone}");
    let (status, users) = cast
        .api
        .call("GET", "/api/v1/users", Some(&key), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        users["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|user| user["tenant_id"] == "acme"),
        "{users}"
    );
}

#[tokio::test]
async fn a_tenant_admin_keeps_the_memberships_they_cannot_see_and_their_own_safeguards() {
    let cast = Cast::assemble().await;
    let (_, limited) = cast
        .api
        .admin("POST", "/api/v1/groups", Some(json!({"name": "throttled"})))
        .await;
    let limited = id(&limited);
    for group in [&limited, &cast.acme_group] {
        let (status, _) = cast
            .api
            .admin(
                "POST",
                &format!("/api/v1/groups/{group}/members"),
                Some(json!({"user_id": cast.acme_user})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let tenant_admin = &cast.keys[1];
    let path = format!("/api/v1/users/{}", cast.acme_user);
    let (status, user) = cast
        .api
        .call(
            "PATCH",
            &path,
            Some(tenant_admin),
            Some(json!({"groups": []})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(
        user["groups"],
        json!([limited]),
        "the operator's group stays"
    );
    let removal = format!("/api/v1/groups/{limited}/members/{}", cast.acme_user);
    let (status, _) = cast
        .api
        .call("DELETE", &removal, Some(tenant_admin), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let own = format!("/api/v1/users/{}", cast.ids[1]);
    for body in [
        json!({"mfa_required": false}),
        json!({"ip_allowlist": []}),
        json!({"password": "a new passphrase of theirs"}),
    ] {
        let (status, answer) = cast
            .api
            .call("PATCH", &own, Some(tenant_admin), Some(body))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        assert_eq!(error_code(&answer), "own_security_settings");
    }
}

#[tokio::test]
async fn a_group_of_one_tenant_takes_no_member_of_another() {
    let cast = Cast::assemble().await;
    let (status, body) = cast
        .api
        .admin(
            "POST",
            &format!("/api/v1/groups/{}/members", cast.acme_group),
            Some(json!({"user_id": cast.globex_user})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "tenant_mismatch");
    let (status, body) = cast
        .api
        .admin(
            "PATCH",
            &format!("/api/v1/users/{}", cast.globex_user),
            Some(json!({"groups": [cast.acme_group]})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (_, user) = cast
        .api
        .admin("GET", &format!("/api/v1/users/{}", cast.globex_user), None)
        .await;
    assert_eq!(user["groups"], json!([]), "nothing changed");
}
