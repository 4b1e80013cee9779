//! Tenants through Envoy: a user carries their tenant to the upstream, inherits the tenant's
//! rate limit below their own, and a change to the tenant reaches their cached state.

use std::time::{Duration, Instant};

use serde_json::json;
use tollgate_e2e::Gateway;

#[test]
fn a_tenants_limit_holds_for_its_users_and_its_id_reaches_the_upstream() {
    let gateway = Gateway::start();
    let cp = &gateway.control_plane;
    let created = cp.admin(
        "POST",
        "/api/v1/tenants",
        Some(json!({
            "id": "acme",
            "name": "Acme",
            "rate_limits": {"requests_per_minute": 3, "mode": "local"},
        })),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    let (user, key) =
        cp.create_user_and_key_with(json!({"username": "worker", "tenant_id": "acme"}));
    let (_, own_key) = cp.create_user_and_key_with(json!({
        "username": "exempt",
        "tenant_id": "acme",
        "rate_limits": {"requests_per_minute": 5, "mode": "local"},
    }));

    let answer = gateway.envoy.get_with_key("/", &key);
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["headers"]["x-tollgate-tenant-id"], "acme");
    assert_eq!(answer.body["headers"]["x-tollgate-user-id"], user.as_str());
    assert_eq!(gateway.envoy.statuses_with_key(&key, 3), [200, 200, 429]);
    assert_eq!(
        gateway.envoy.statuses_with_key(&own_key, 6),
        [200, 200, 200, 200, 200, 429],
        "a user's own limit wins over the tenant's"
    );

    let raised = cp.admin(
        "PATCH",
        "/api/v1/tenants/acme",
        Some(json!({"rate_limits": {"requests_per_minute": 1000}})),
    );
    assert_eq!(raised.status, 200, "{}", raised.text);
    // The tenant's users are refetched by every Envoy, so the refused one is admitted again.
    let deadline = Instant::now() + Duration::from_secs(3);
    while gateway.envoy.get_with_key("/", &key).status != 200 {
        assert!(
            Instant::now() < deadline,
            "the raised tenant limit never applied"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
