//! Quota allowances asked for and settled through the filter service, as an Envoy worker
//! would, on replicas of one deployment.

use std::sync::Arc;

use serde_json::{json, Value};
use tollgate::config::Config;
use tollgate::filter_service::FilterApi;
use tollgate::proto::v1::filter_service_server::FilterService;
use tollgate::proto::v1::{AcquireAllowancesRequest, Allowance, ReportUsageRequest, UsageDelta};
use tonic::{Code, Request};

use super::app::Api;
use super::TestDatabase;

/// Every replica of a test deployment hashes keys with this secret.
pub const SHARED_KEY_HASH_SECRET: &str = "a key-hash secret every replica of the deployment shares";

/// A replica of the deployment on `db`, with `adjust` applied to its configuration.
pub async fn replica(db: &Arc<TestDatabase>, adjust: impl FnOnce(&mut Config)) -> Api {
    Api::start_on(db.clone(), |config| {
        config.security.key_hash_secret = Some(SHARED_KEY_HASH_SECRET.to_string());
        adjust(config);
    })
    .await
}

/// A new user with these quota settings; returns their id.
pub async fn user_with_quotas(api: &Api, username: &str, quotas: Value) -> String {
    let user = api
        .create_user_with(json!({"username": username, "quotas": quotas}))
        .await;
    user["id"].as_str().expect("id").to_string()
}

pub fn ask(user_id: &str, quotas: &[&str]) -> AcquireAllowancesRequest {
    AcquireAllowancesRequest {
        node_id: "envoy-1".to_string(),
        holder: "worker-1".to_string(),
        user_id: user_id.to_string(),
        quotas: quotas.iter().map(|quota| (*quota).to_string()).collect(),
    }
}

pub async fn acquire(filter: &FilterApi, user_id: &str, quotas: &[&str]) -> Vec<Allowance> {
    filter
        .acquire_allowances(Request::new(ask(user_id, quotas)))
        .await
        .expect("acquired")
        .into_inner()
        .allowances
}

/// One allowance of monthly requests.
pub async fn acquire_requests(filter: &FilterApi, user_id: &str) -> Allowance {
    let mut allowances = acquire(filter, user_id, &["monthly_requests"]).await;
    assert_eq!(allowances.len(), 1, "{allowances:?}");
    allowances.remove(0)
}

pub async fn report(
    filter: &FilterApi,
    batch_id: &str,
    usage: Vec<UsageDelta>,
    settled: &[&str],
) -> Result<(), Code> {
    filter
        .report_usage(Request::new(ReportUsageRequest {
            batch_id: batch_id.to_string(),
            usage,
            settled_allowances: settled.iter().map(|id| (*id).to_string()).collect(),
        }))
        .await
        .map(|_| ())
        .map_err(|status| status.code())
}

pub fn requests(user_id: &str, requests: u64) -> UsageDelta {
    UsageDelta {
        user_id: user_id.to_string(),
        requests,
        ..UsageDelta::default()
    }
}
