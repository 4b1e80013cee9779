//! `https` backends through real Envoy: reached only when their certificate chains to a
//! trusted CA and names the backend, unless an operator opts out.

use std::time::Duration;

use serde_json::json;
use tollgate_e2e::http::Answer;
use tollgate_e2e::{Echo, Gateway};

use super::routing::wait_for_health;

/// The CA that signed the HTTPS echo's certificate (for `localhost` and `127.0.0.1`).
const TEST_CA: &str = include_str!("../fixtures/upstream-tls/ca.pem");
const WAIT: Duration = Duration::from_secs(15);

#[test]
fn an_https_backend_is_reached_only_when_its_certificate_is_trusted_and_names_it() {
    let gateway = Gateway::start();
    let cp = &gateway.control_plane;
    let envoy = &gateway.envoy;
    let secure = Echo::start_https(&gateway.layout, "backend-tls");
    let created = cp.admin(
        "POST",
        "/api/v1/backends",
        Some(
            json!({"url": format!("https://127.0.0.1:{}", secure.port), "pool": "secure",
                    "tls_sni": "localhost"}),
        ),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().expect("backend id").to_string();
    let path = format!("/api/v1/backends/{id}");
    let group = cp.create_group(json!({"name": "secure", "pools": ["secure"]}));
    let (user, key) = cp.create_user_and_key("tls-client");
    cp.add_group_member(&group, &user);
    let stat = |name: &str| envoy.stat(&format!("cluster.tollgate_pool_secure.ssl.{name}"));
    let from_secure = |answer: &Answer| answer.body["backend"] == "backend-tls";

    // The system bundle does not hold the test CA: Envoy refuses the certificate.
    envoy.until_with_key(&key, WAIT, |_| stat("fail_verify_error") > 0);
    let refused = envoy.get_with_key("/", &key);
    assert_eq!(refused.status, 503, "{}", refused.text);

    let trusted = cp.admin("PATCH", &path, Some(json!({"tls_ca": TEST_CA})));
    assert_eq!(trusted.status, 200, "{}", trusted.text);
    envoy.until_with_key(&key, WAIT, |answer| {
        answer.status == 200 && from_secure(answer)
    });
    // The health checks trust the backend as Envoy does.
    let settings = cp.admin(
        "PUT",
        "/api/v1/pools/secure",
        Some(
            json!({"interval_secs": 2, "timeout_secs": 1, "unhealthy_threshold": 3,
                    "healthy_threshold": 2}),
        ),
    );
    assert_eq!(settings.status, 200, "{}", settings.text);
    wait_for_health(&gateway, &id, "healthy", WAIT);

    // A trusted certificate for another name is refused.
    let renamed = cp.admin(
        "PATCH",
        &path,
        Some(json!({"tls_sni": "elsewhere.example"})),
    );
    assert_eq!(renamed.status, 200, "{}", renamed.text);
    envoy.until_with_key(&key, WAIT, |_| stat("fail_verify_san") > 0);
    assert!(!from_secure(&envoy.get_with_key("/", &key)));

    // An explicit opt-out reaches it whatever it presents, and says so.
    let insecure = cp.admin(
        "PATCH",
        &path,
        Some(json!({"tls_ca": null, "tls_insecure": true})),
    );
    assert_eq!(insecure.status, 200, "{}", insecure.text);
    assert_eq!(insecure.body["tls_insecure"], true);
    envoy.until_with_key(&key, WAIT, |answer| {
        answer.status == 200 && from_secure(answer)
    });
    assert!(
        cp.log().contains("TLS to this backend is not verified"),
        "the opt-out is logged"
    );
}
