//! Tenants through Envoy: a user carries their tenant to the upstream, inherits the tenant's
//! rate limit below their own, a change to the tenant reaches their cached state, and the
//! tenant's quota is one pool its users share.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tollgate_e2e::{ControlPlane, Gateway};

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

/// The tenant's `statistics` once its requests this period reach `expected`.
fn statistics_at(cp: &ControlPlane, tenant: &str, expected: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = cp.admin("GET", &format!("/api/v1/tenants/{tenant}"), None);
        assert_eq!(answer.status, 200, "{}", answer.text);
        let statistics = answer.body["statistics"].clone();
        if statistics["requests"] == expected {
            return statistics;
        }
        assert!(
            Instant::now() < deadline,
            "the tenant's requests never reached {expected}: {statistics}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_tenants_quota_is_one_pool_its_users_share_whatever_their_own() {
    let gateway = Gateway::start();
    let cp = &gateway.control_plane;
    let created = cp.admin(
        "POST",
        "/api/v1/tenants",
        Some(json!({"id": "pool", "name": "Pool", "quotas": {"monthly_requests": 5}})),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    let (_, generous_key) = cp.create_user_and_key_with(json!({
        "username": "generous",
        "tenant_id": "pool",
        "quotas": {"monthly_requests": 100},
    }));
    let (_, inheriting_key) =
        cp.create_user_and_key_with(json!({"username": "inheriting", "tenant_id": "pool"}));

    let mut admitted = 0;
    for _ in 0..6 {
        for key in [&generous_key, &inheriting_key] {
            let answer = gateway.envoy.get_with_key("/", key);
            match answer.status {
                200 => admitted += 1,
                402 => {
                    answer.assert_refused(402, "quota_exceeded");
                    assert_eq!(answer.body["error"]["quota"], "monthly_requests");
                }
                other => panic!("unexpected {other}: {}", answer.text),
            }
        }
    }
    assert_eq!(admitted, 5, "the two users together take the pool's 5");
    let statistics = statistics_at(cp, "pool", 5);
    assert_eq!(statistics["users"], 2);

    let raised = cp.admin(
        "PATCH",
        "/api/v1/tenants/pool",
        Some(json!({"quotas": {"monthly_requests": 6}})),
    );
    assert_eq!(raised.status, 200, "{}", raised.text);
    let request = || gateway.envoy.get_with_key("/", &generous_key);
    gateway
        .envoy
        .until(Duration::from_secs(5), request, |answer| {
            answer.status == 200
        });
    assert_eq!(
        gateway.envoy.get_with_key("/", &inheriting_key).status,
        402,
        "the one raised request went to the first to ask"
    );
    statistics_at(cp, "pool", 6);
}
