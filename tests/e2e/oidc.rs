//! A session from an OpenID Connect login through Envoy: the filter accepts it like a
//! password login's, with the same identity headers.

use serde_json::{json, Value};
use tollgate_e2e::http::{client, send};
use tollgate_e2e::oidc_provider::{
    log_in_at_provider, TestProvider, CLIENT_ID, CLIENT_SECRET, PUBLIC_URL,
};
use tollgate_e2e::{ControlPlaneOptions, Gateway};

const TENANT: &str = "11111111-aaaa-4aaa-8aaa-111111111111";
const PASSWORD: &str = "correct horse battery";

/// The `x-tollgate-*` headers the upstream saw for a request with `cookie`.
fn identity_headers(gateway: &Gateway, cookie: &str) -> Vec<(String, Value)> {
    let answer = gateway.envoy.get("/v1/things", &[("cookie", cookie)]);
    assert_eq!(answer.status, 200, "{}", answer.text);
    let seen = answer.body["headers"].as_object().expect("echoed headers");
    assert!(
        seen.get("cookie").is_none(),
        "the session cookie reached the upstream"
    );
    seen.iter()
        .filter(|(name, _)| name.starts_with("x-tollgate-"))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

#[test]
fn an_oidc_session_reaches_the_upstream_with_the_same_identity_as_a_password_session() {
    let claims = json!({
        "oid": "oid-olga", "tid": TENANT, "preferred_username": "olga@corp.example",
        "email": "olga@corp.example", "email_verified": true,
    });
    let provider = TestProvider::start(TENANT, "entra", json!({ "olga": claims }));
    let authority = provider.authority();
    let gateway = Gateway::start_with(ControlPlaneOptions::with_env(&[
        ("TOLLGATE_AUTH__OIDC__PUBLIC_URL", PUBLIC_URL),
        ("TOLLGATE_AUTH__OIDC__PROVIDERS__ENTRA__PRESET", "entra"),
        ("TOLLGATE_AUTH__OIDC__PROVIDERS__ENTRA__TENANT_ID", TENANT),
        (
            "TOLLGATE_AUTH__OIDC__PROVIDERS__ENTRA__AUTHORITY",
            &authority,
        ),
        (
            "TOLLGATE_AUTH__OIDC__PROVIDERS__ENTRA__CLIENT_ID",
            CLIENT_ID,
        ),
        (
            "TOLLGATE_AUTH__OIDC__PROVIDERS__ENTRA__CLIENT_SECRET",
            CLIENT_SECRET,
        ),
        (
            "TOLLGATE_AUTH__OIDC__PROVIDERS__ENTRA__LINK_BY_VERIFIED_EMAIL",
            "true",
        ),
    ]));
    let cp = &gateway.control_plane;
    cp.create_user_with(json!({
        "username": "olga", "email": "olga@corp.example", "password": PASSWORD,
    }));
    let password_session = format!("tollgate_session={}", cp.login("olga", PASSWORD));

    let start = send(client().get(cp.url("/api/v1/auth/oidc/entra/login")));
    assert_eq!(start.status, 302, "{}", start.text);
    let flow = start.cookie("tollgate_oidc_flow").expect("a flow cookie");
    let back = log_in_at_provider(start.header("location"), "olga");
    let finished = send(
        client()
            .get(cp.url(&back))
            .header("cookie", format!("tollgate_oidc_flow={flow}")),
    );
    assert_eq!(finished.status, 302, "{}", finished.text);
    let oidc_session = format!(
        "tollgate_session={}",
        finished
            .cookie("tollgate_session")
            .expect("a session cookie")
    );

    let by_password = identity_headers(&gateway, &password_session);
    assert!(
        by_password
            .iter()
            .any(|(name, _)| name == "x-tollgate-user-id"),
        "{by_password:?}"
    );
    assert_eq!(identity_headers(&gateway, &oidc_session), by_password);
}
