//! A tenant's monthly quotas as one pool its users share, on SQLite and on Postgres: grants
//! to all its users together never pass the pool, whatever their own quotas, on two
//! replicas at once; settled usage counts in the pool and what was not used returns to it.

mod support;

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{json, Value};
use support::allowances::{acquire_requests, replica, report, requests};
use support::app::Api;
use support::{against_both_shared_databases, TestDatabase};

against_both_shared_databases!(
    grants_to_all_users_of_a_tenant_never_pass_its_pool,
    settled_usage_counts_in_the_pool_and_the_rest_returns_to_it,
    concurrent_reports_that_use_up_quotas_all_apply,
);

async fn tenant_with_quotas(api: &Api, id: &str, quotas: Value) {
    let (status, answer) = api
        .admin(
            "POST",
            "/api/v1/tenants",
            Some(json!({"id": id, "name": id, "quotas": quotas})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}

/// A new user of `tenant` with these settings of their own; returns their id.
async fn member(api: &Api, tenant: &str, username: &str, quotas: Value) -> String {
    let user = api
        .create_user_with(json!({"username": username, "tenant_id": tenant, "quotas": quotas}))
        .await;
    user["id"].as_str().expect("id").to_string()
}

async fn statistics(api: &Api, tenant: &str) -> Value {
    let (status, answer) = api
        .admin("GET", &format!("/api/v1/tenants/{tenant}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["statistics"].clone()
}

async fn grants_to_all_users_of_a_tenant_never_pass_its_pool(db: Arc<TestDatabase>) {
    let first = replica(&db, |_| {}).await;
    let second = replica(&db, |_| {}).await;
    tenant_with_quotas(&first, "shared", json!({"monthly_requests": 30})).await;
    let members = [
        member(
            &first,
            "shared",
            "own-quota",
            json!({"monthly_requests": 1000}),
        )
        .await,
        member(&first, "shared", "inherits", json!({})).await,
        member(
            &first,
            "shared",
            "small-own",
            json!({"monthly_requests": 5}),
        )
        .await,
    ];
    let outsider = first
        .create_user_with(json!({"username": "outsider", "quotas": {"monthly_requests": 50}}))
        .await;
    let outsider = outsider["id"].as_str().expect("id");

    let mut tasks = Vec::new();
    for index in 0..90 {
        let filter = if index % 2 == 0 {
            first.filter.clone()
        } else {
            second.filter.clone()
        };
        let user_id = members[index % members.len()].clone();
        tasks.push(tokio::spawn(async move {
            acquire_requests(&filter, &user_id).await.granted
        }));
    }
    let mut granted = 0;
    for task in tasks {
        granted += task.await.expect("task");
    }
    assert_eq!(granted, 30, "the pool's 30 among all three, and no more");
    for user_id in &members {
        assert_eq!(acquire_requests(&second.filter, user_id).await.granted, 0);
    }
    let outside = acquire_requests(&first.filter, outsider).await;
    assert_eq!(outside.granted, 7, "a user of no tenant draws on no pool");
}

async fn settled_usage_counts_in_the_pool_and_the_rest_returns_to_it(db: Arc<TestDatabase>) {
    let api = replica(&db, |config| config.quotas.allowance_divisor = 1).await;
    tenant_with_quotas(&api, "settles", json!({"monthly_requests": 10})).await;
    let heavy = member(&api, "settles", "heavy", json!({"monthly_requests": 100})).await;
    let light = member(&api, "settles", "light", json!({})).await;

    let whole = acquire_requests(&api.filter, &heavy).await;
    assert_eq!(whole.granted, 10, "the whole pool with divisor 1");
    assert_eq!(acquire_requests(&api.filter, &light).await.granted, 0);

    let batch = vec![requests(&heavy, 4)];
    assert_eq!(
        report(&api.filter, "b1", batch.clone(), &[&whole.allowance_id]).await,
        Ok(())
    );
    assert_eq!(
        report(&api.filter, "b1", batch, &[&whole.allowance_id]).await,
        Ok(()),
        "a retried batch counts once"
    );
    assert_eq!(statistics(&api, "settles").await["requests"], 4);
    let rest = acquire_requests(&api.filter, &light).await;
    assert_eq!(rest.granted, 6, "what was not used returned to the pool");

    assert_eq!(
        report(
            &api.filter,
            "b2",
            vec![requests(&light, 6)],
            &[&rest.allowance_id]
        )
        .await,
        Ok(())
    );
    assert_eq!(statistics(&api, "settles").await["requests"], 10);
    let (status, answer) = api
        .admin("GET", &format!("/api/v1/users/{heavy}/quota"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["quotas"][0]["used"], 4,
        "the user's own count holds only their requests"
    );
    assert_eq!(acquire_requests(&api.filter, &heavy).await.granted, 0);
}

async fn concurrent_reports_that_use_up_quotas_all_apply(db: Arc<TestDatabase>) {
    let first = replica(&db, |_| {}).await;
    let second = replica(&db, |_| {}).await;
    tenant_with_quotas(&first, "crossing", json!({"monthly_requests": 1000})).await;
    for round in 0..10 {
        let one = member(
            &first,
            "crossing",
            &format!("one-{round}"),
            json!({"monthly_requests": 1}),
        )
        .await;
        let two = member(
            &first,
            "crossing",
            &format!("two-{round}"),
            json!({"monthly_requests": 1}),
        )
        .await;
        // Each report takes a user to their quota, which is audited, while the other holds or
        // waits for the same rows.
        let (both_id, alone_id) = (format!("both-{round}"), format!("alone-{round}"));
        let both = report(
            &first.filter,
            &both_id,
            vec![requests(&one, 1), requests(&two, 1)],
            &[],
        );
        let alone = report(&second.filter, &alone_id, vec![requests(&two, 1)], &[]);
        let (both, alone) = tokio::join!(both, alone);
        assert_eq!((both, alone), (Ok(()), Ok(())), "round {round}");
    }
    assert_eq!(statistics(&first, "crossing").await["requests"], 30);
}
