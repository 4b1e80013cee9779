//! A request's metered quotas: taken from this worker's allowances, or, when it holds none
//! that admits, from new ones the control plane grants while the request waits.

use std::rc::Rc;

use prost::Message;

use super::{refusal, RequestFlow};
use crate::allowances::{MeteredQuota, MeteredQuotas};
use crate::decision::{Allowed, Decision};
use crate::error_body::{error_body, quota_exceeded_body};
use crate::host::Host;
use crate::limits::plan::Plan;
use crate::proto::{AcquireAllowancesRequest, AcquireAllowancesResponse};

const GRPC_STATUS_OK: u32 = 0;
const UNAVAILABLE_CODE: &str = "control_plane_unavailable";

impl RequestFlow {
    /// Takes the request's share of each of `metered` from the allowances this worker holds;
    /// returns the quotas it holds no allowance of that admits it.
    pub(super) fn take_allowances(
        &self,
        allowed: &mut Allowed,
        metered: MeteredQuotas,
    ) -> MeteredQuotas {
        let mut missing = MeteredQuotas::default();
        let Ok(mut allowances) = self.worker.allowances.try_borrow_mut() else {
            return metered;
        };
        for quota in metered.iter() {
            let amount = match quota {
                MeteredQuota::Requests => 1,
                MeteredQuota::Bandwidth => self
                    .declared_bytes
                    .max(self.worker.config.bandwidth_reserve_bytes),
            };
            match allowances.take(&allowed.user_id, quota, amount, self.now_us) {
                Some(taken) => allowed.taken.push(taken),
                None => missing.insert(quota),
            }
        }
        missing
    }

    /// What a paused request asks for: allowances of `wanted` for its user.
    pub(super) fn allowance_request(&self, allowed: &Allowed, wanted: MeteredQuotas) -> Vec<u8> {
        AcquireAllowancesRequest {
            node_id: self.worker.background.node_id().to_owned(),
            holder: self.worker.background.holder().to_owned(),
            user_id: allowed.user_id.to_string(),
            quotas: wanted.names(),
        }
        .encode_to_vec()
    }

    /// The control plane's answer to a request's allowance callout: admit from what it
    /// granted, or refuse with 402 when a quota has nothing left.
    pub(super) fn allowances_answered(
        &mut self,
        host: &impl Host,
        mut allowed: Allowed,
        plan: &Rc<Plan>,
        wanted: MeteredQuotas,
        grpc_status: u32,
        body: Option<&[u8]>,
    ) -> Decision {
        let answer = (grpc_status == GRPC_STATUS_OK)
            .then(|| AcquireAllowancesResponse::decode(body.unwrap_or_default()).ok())
            .flatten();
        let Some(answer) = answer else {
            log::warn!("quota allowances could not be acquired (gRPC status {grpc_status})");
            return self.allowances_unavailable(host, allowed, plan);
        };
        let mut still_wanted = MeteredQuotas::default();
        if let Ok(mut allowances) = self.worker.allowances.try_borrow_mut() {
            for grant in &answer.allowances {
                allowances.granted(&allowed.user_id, grant, self.now_us);
            }
        }
        for quota in wanted.iter() {
            let unlimited = answer
                .allowances
                .iter()
                .any(|grant| grant.quota == quota.name() && grant.unlimited);
            if !unlimited {
                still_wanted.insert(quota);
            }
        }
        let missing = self.take_allowances(&mut allowed, still_wanted);
        let Some(quota) = missing.iter().next() else {
            return self.check_exact_limits(allowed, plan);
        };
        let grant = answer
            .allowances
            .iter()
            .find(|grant| grant.quota == quota.name());
        self.give_back(host, &allowed, plan);
        self.worker.metrics.denied("quota_exceeded");
        if let Ok(mut usage) = self.worker.background.usage.try_borrow_mut() {
            usage.record(&allowed.user_id, |delta| delta.quota_refused += 1);
        }
        let resets_at = grant.map_or(0, |grant| grant.resets_at);
        refusal(402, quota_exceeded_body(quota.name(), resets_at))
    }

    /// No allowance could be had: admit when the operator lets `exact` limits fail open,
    /// else 503.
    pub(super) fn allowances_unavailable(
        &mut self,
        host: &impl Host,
        allowed: Allowed,
        plan: &Rc<Plan>,
    ) -> Decision {
        let worker = &self.worker;
        worker.metrics.allowance_failed();
        let fails_open = worker
            .freshness
            .try_borrow()
            .is_ok_and(|freshness| freshness.limits().exact_fails_open);
        if fails_open {
            return self.check_exact_limits(allowed, plan);
        }
        self.give_back(host, &allowed, plan);
        worker.metrics.denied(UNAVAILABLE_CODE);
        refusal(
            503,
            error_body(UNAVAILABLE_CODE, "the control plane could not be reached"),
        )
    }

    /// Returns what a request that will not be forwarded took: its allowances whole, and
    /// its local rate limits.
    pub(super) fn give_back(&self, host: &impl Host, allowed: &Allowed, plan: &Plan) {
        self.give_back_allowances(allowed);
        self.worker.limiter.give_back(host, &plan.here);
    }

    pub(super) fn give_back_allowances(&self, allowed: &Allowed) {
        if allowed.taken.is_empty() {
            return;
        }
        if let Ok(mut allowances) = self.worker.allowances.try_borrow_mut() {
            for taken in &allowed.taken {
                allowances.finish(taken, 0);
            }
        }
    }
}
