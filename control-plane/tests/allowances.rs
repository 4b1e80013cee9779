//! Quota allowances through the filter service and the admin API, on SQLite and on Postgres:
//! how much is granted, that grants never pass the limit and overshoot, and how allowances
//! are settled, expire and outlive a restart.

mod support;

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{json, Value};
use support::allowances::{
    acquire, acquire_requests, ask, replica, report, requests, user_with_quotas,
};
use support::app::{quota, Api};
use support::{against_both_shared_databases, TestDatabase};
use tollgate::config::Config;
use tollgate::proto::v1::filter_service_server::FilterService;
use tollgate::proto::v1::{
    AcquireAllowancesRequest, Allowance, LookupUserRequest, ReportUsageRequest,
};
use tollgate::store::AllowanceStore;
use tonic::{Code, Request};

against_both_shared_databases!(
    grants_shrink_with_the_remainder_and_end_one_request_at_a_time,
    concurrent_acquires_on_two_replicas_never_grant_beyond_limit_and_overshoot,
    settling_returns_the_unused_part_once,
    an_unsettled_allowance_returns_to_the_quota_after_the_timeout,
    allowances_survive_a_restart,
    quotas_without_a_limit_are_unlimited_and_unknown_users_get_nothing,
    malformed_asks_and_settlements_are_refused,
);

/// The user's quota answer from the admin API.
async fn quota_answer(api: &Api, user_id: &str) -> Value {
    let (status, answer) = api
        .admin("GET", &format!("/api/v1/users/{user_id}/quota"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

fn period_end(answer: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(answer["period_end"].as_str().expect("period end"))
        .expect("a time")
        .timestamp()
}

async fn grants_shrink_with_the_remainder_and_end_one_request_at_a_time(db: Arc<TestDatabase>) {
    let api = replica(&db, |_| {}).await;
    let hundred = user_with_quotas(&api, "hundred", json!({"monthly_requests": 100})).await;
    let mut grants = Vec::new();
    loop {
        let allowance = acquire_requests(&api.filter, &hundred).await;
        if allowance.granted == 0 {
            break;
        }
        grants.push(allowance.granted);
    }
    assert_eq!(grants.iter().sum::<u64>(), 100, "{grants:?}");
    assert_eq!(
        grants[..3],
        [13, 11, 10],
        "1/8 of the remainder, rounded up"
    );
    assert!(
        grants.windows(2).all(|pair| pair[0] >= pair[1]),
        "{grants:?}"
    );
    assert_eq!(grants[grants.len() - 8..], [1; 8], "{grants:?}");

    let three = user_with_quotas(&api, "three", json!({"monthly_requests": 3})).await;
    let answer = quota_answer(&api, &three).await;
    for _ in 0..3 {
        let allowance = acquire_requests(&api.filter, &three).await;
        assert_eq!(allowance.quota, "monthly_requests");
        assert_eq!(allowance.granted, 1, "{allowance:?}");
        assert!(allowance.allowance_id.starts_with("al_"), "{allowance:?}");
        assert_eq!(allowance.admit_for_ms, 30_000);
        assert_eq!(allowance.resets_at, period_end(&answer));
        assert!(!allowance.unlimited);
    }
    let spent = acquire_requests(&api.filter, &three).await;
    assert_eq!(
        spent,
        Allowance {
            quota: "monthly_requests".to_string(),
            resets_at: period_end(&answer),
            ..Allowance::default()
        },
        "nothing is left until the period ends"
    );
    let answer = quota_answer(&api, &three).await;
    let requests = quota(&answer, "monthly_requests");
    assert_eq!(
        (&requests["used"], &requests["reserved"]),
        (&json!(0), &json!(3)),
        "{answer}"
    );
}

async fn concurrent_acquires_on_two_replicas_never_grant_beyond_limit_and_overshoot(
    db: Arc<TestDatabase>,
) {
    let with_overshoot = |config: &mut Config| {
        config.quotas.overshoot_requests = 2;
        config.quotas.overshoot_bandwidth_mb = 1;
        // Halving grants use up both quotas within the 50 acquires.
        config.quotas.allowance_divisor = 2;
    };
    let first = replica(&db, with_overshoot).await;
    let second = replica(&db, with_overshoot).await;
    let user_id = user_with_quotas(
        &first,
        "contended",
        json!({"monthly_requests": 40, "monthly_bandwidth_mb": 1}),
    )
    .await;
    let mut tasks = Vec::new();
    for index in 0..50 {
        let filter = if index % 2 == 0 {
            first.filter.clone()
        } else {
            second.filter.clone()
        };
        let user_id = user_id.clone();
        tasks.push(tokio::spawn(async move {
            acquire(
                &filter,
                &user_id,
                &["monthly_requests", "monthly_bandwidth"],
            )
            .await
        }));
    }
    let (mut requests, mut bytes, mut ids) = (0, 0, Vec::new());
    for task in tasks {
        let allowances = task.await.expect("task");
        requests += allowances[0].granted;
        bytes += allowances[1].granted;
        ids.extend(
            allowances
                .into_iter()
                .map(|allowance| allowance.allowance_id)
                .filter(|id| !id.is_empty()),
        );
    }
    assert_eq!(requests, 42, "the limit plus the overshoot, and no more");
    assert_eq!(bytes, 2 * 1_048_576);
    let granted = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), granted, "every allowance has an id of its own");
    let answer = quota_answer(&second, &user_id).await;
    assert_eq!(quota(&answer, "monthly_requests")["reserved"], 42);
    assert_eq!(
        quota(&answer, "monthly_bandwidth_mb")["reserved_bytes"],
        2 * 1_048_576
    );
}

async fn settling_returns_the_unused_part_once(db: Arc<TestDatabase>) {
    let api = replica(&db, |config| config.quotas.allowance_divisor = 1).await;
    let user_id = user_with_quotas(&api, "settling", json!({"monthly_requests": 10})).await;
    let first = acquire_requests(&api.filter, &user_id).await;
    assert_eq!(first.granted, 10, "the whole remainder with divisor 1");
    assert_eq!(acquire_requests(&api.filter, &user_id).await.granted, 0);

    let batch = vec![requests(&user_id, 4)];
    assert_eq!(
        report(&api.filter, "b1", batch.clone(), &[&first.allowance_id]).await,
        Ok(())
    );
    let second = acquire_requests(&api.filter, &user_id).await;
    assert_eq!(second.granted, 6, "what the first did not use came back");
    let answer = quota_answer(&api, &user_id).await;
    let requests_quota = quota(&answer, "monthly_requests");
    assert_eq!(requests_quota["used"], 4, "{answer}");
    assert_eq!(requests_quota["reserved"], 6, "{answer}");
    assert_eq!(requests_quota["remaining"], 6, "{answer}");

    assert_eq!(
        report(&api.filter, "b1", batch, &[&second.allowance_id]).await,
        Ok(()),
        "a retry is acknowledged"
    );
    let answer = quota_answer(&api, &user_id).await;
    let requests_quota = quota(&answer, "monthly_requests");
    assert_eq!(requests_quota["used"], 4, "counted once: {answer}");
    assert_eq!(
        requests_quota["reserved"], 6,
        "a retried batch settles nothing: {answer}"
    );
    assert_eq!(acquire_requests(&api.filter, &user_id).await.granted, 0);

    assert_eq!(
        report(
            &api.filter,
            "b2",
            vec![],
            &[&second.allowance_id, &first.allowance_id, "al_unknown"]
        )
        .await,
        Ok(()),
        "settled and unknown ids are ignored"
    );
    assert_eq!(acquire_requests(&api.filter, &user_id).await.granted, 6);
}

async fn an_unsettled_allowance_returns_to_the_quota_after_the_timeout(db: Arc<TestDatabase>) {
    let api = replica(&db, |config| {
        config.quotas.allowance_timeout_secs = 2;
        config.quotas.allowance_admit_secs = 1;
        config.quotas.allowance_divisor = 1;
    })
    .await;
    let user_id = user_with_quotas(&api, "vanished", json!({"monthly_requests": 5})).await;
    let held = acquire_requests(&api.filter, &user_id).await;
    assert_eq!((held.granted, held.admit_for_ms), (5, 1000));
    assert_eq!(acquire_requests(&api.filter, &user_id).await.granted, 0);

    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let answer = quota_answer(&api, &user_id).await;
    assert_eq!(
        quota(&answer, "monthly_requests")["reserved"],
        0,
        "{answer}"
    );
    assert_eq!(
        acquire_requests(&api.filter, &user_id).await.granted,
        5,
        "the worker that held it never settled it"
    );

    let store = db.open().await;
    let later = tollgate::domain::now() + chrono::Duration::seconds(3);
    assert_eq!(
        store.prune_allowances(later).await.expect("pruned"),
        2,
        "both have expired by then"
    );
    let answer = quota_answer(&api, &user_id).await;
    assert_eq!(
        quota(&answer, "monthly_requests")["reserved"],
        0,
        "{answer}"
    );
}

async fn allowances_survive_a_restart(db: Arc<TestDatabase>) {
    let divisor_one = |config: &mut Config| config.quotas.allowance_divisor = 1;
    let before = replica(&db, divisor_one).await;
    let user_id = user_with_quotas(&before, "restarted", json!({"monthly_requests": 7})).await;
    let held = acquire_requests(&before.filter, &user_id).await;
    assert_eq!(held.granted, 7);
    drop(before);

    let after = replica(&db, divisor_one).await;
    assert_eq!(acquire_requests(&after.filter, &user_id).await.granted, 0);
    let answer = quota_answer(&after, &user_id).await;
    assert_eq!(
        quota(&answer, "monthly_requests")["reserved"],
        7,
        "{answer}"
    );
    assert_eq!(
        report(&after.filter, "after", vec![], &[&held.allowance_id]).await,
        Ok(())
    );
    assert_eq!(acquire_requests(&after.filter, &user_id).await.granted, 7);
}

async fn quotas_without_a_limit_are_unlimited_and_unknown_users_get_nothing(db: Arc<TestDatabase>) {
    let api = replica(&db, |_| {}).await;
    let user_id = user_with_quotas(&api, "bandwidth", json!({"monthly_bandwidth_mb": 1})).await;
    let principal = api
        .filter
        .lookup_user(Request::new(LookupUserRequest {
            user_id: user_id.clone(),
        }))
        .await
        .expect("lookup")
        .into_inner()
        .principal
        .expect("principal");
    assert_eq!(principal.metered_quotas, ["monthly_bandwidth"]);

    let allowances = acquire(
        &api.filter,
        &user_id,
        &["monthly_requests", "monthly_bandwidth"],
    )
    .await;
    assert_eq!(allowances[0].quota, "monthly_requests");
    assert!(allowances[0].unlimited);
    assert_eq!(
        (allowances[0].granted, allowances[0].allowance_id.as_str()),
        (0, "")
    );
    assert_eq!(allowances[1].quota, "monthly_bandwidth");
    assert!(!allowances[1].unlimited);
    assert_eq!(allowances[1].granted, 1_048_576 / 8, "bytes");

    let (status, _) = api
        .admin(
            "PATCH",
            &format!("/api/v1/users/{user_id}"),
            Some(json!({"quotas": {"monthly_requests": 10, "monthly_bandwidth_mb": null}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let principal = support::app::key_principal(&api.filter, &api.issue_key(&user_id).await)
        .await
        .expect("principal");
    assert_eq!(principal.metered_quotas, ["monthly_requests"]);
    let allowances = acquire(&api.filter, &user_id, &["monthly_bandwidth"]).await;
    assert!(allowances[0].unlimited, "the limit was removed");

    let (status, _) = api
        .admin("DELETE", &format!("/api/v1/users/{user_id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for gone in [user_id.as_str(), "u_nobody"] {
        let allowances = acquire(
            &api.filter,
            gone,
            &["monthly_requests", "monthly_bandwidth"],
        )
        .await;
        assert_eq!(allowances.len(), 2);
        for allowance in allowances {
            assert_eq!(allowance.granted, 0, "{gone}: {allowance:?}");
            assert!(!allowance.unlimited);
            assert!(allowance.resets_at > 0);
        }
    }
}

async fn malformed_asks_and_settlements_are_refused(db: Arc<TestDatabase>) {
    let api = replica(&db, |_| {}).await;
    let mut client = api.filter_client().await;
    let user_id = user_with_quotas(&api, "careful", json!({"monthly_requests": 5})).await;
    let long_node = AcquireAllowancesRequest {
        node_id: "n".repeat(513),
        ..ask(&user_id, &["monthly_requests"])
    };
    let bad = [
        (
            AcquireAllowancesRequest {
                holder: String::new(),
                ..ask(&user_id, &["monthly_requests"])
            },
            "holder",
        ),
        (
            AcquireAllowancesRequest {
                holder: "h".repeat(129),
                ..ask(&user_id, &["monthly_requests"])
            },
            "holder",
        ),
        (long_node, "node_id"),
        (ask("alice", &["monthly_requests"]), "user_id"),
        (ask(&user_id, &[]), "quotas"),
        (ask(&user_id, &["storage"]), "quotas"),
        (
            ask(&user_id, &["monthly_requests", "monthly_requests"]),
            "quotas",
        ),
    ];
    for (request, field) in bad {
        let refused = client
            .acquire_allowances(request.clone())
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), Code::InvalidArgument, "{request:?}");
        assert!(refused.message().starts_with(field), "{refused:?}");
    }
    let answer = quota_answer(&api, &user_id).await;
    assert_eq!(
        quota(&answer, "monthly_requests")["reserved"],
        0,
        "{answer}"
    );

    for settled in [vec!["al_x".to_string(); 10_001], vec!["x".repeat(129)]] {
        let refused = client
            .report_usage(ReportUsageRequest {
                batch_id: "settling".to_string(),
                usage: vec![requests(&user_id, 1)],
                settled_allowances: settled,
            })
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), Code::InvalidArgument);
    }
    let answer = quota_answer(&api, &user_id).await;
    assert_eq!(
        quota(&answer, "monthly_requests")["used"],
        0,
        "nothing applied"
    );
}
