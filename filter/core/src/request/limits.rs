//! A request's rate limits: its address's before authentication, its user's, key's and
//! routes' after, and the `exact` ones the control plane answers.

use std::rc::Rc;

use prost::Message;

use super::{refusal, RequestFlow};
use crate::allowances::MeteredQuotas;
use crate::decision::{Allowed, Callout, Decision, Refusal};
use crate::error_body::error_body;
use crate::host::Host;
use crate::limits::bucket::Rate;
use crate::limits::failing_addresses::FailureBucket;
use crate::limits::limiter::{address_bucket, address_bucket_in_use, Admission};
use crate::limits::plan::{
    address_failure_horizon_us, address_plan, address_subject, Draw, Plan, ADDRESS_OVERFLOW_SUBJECT,
};
use crate::limits::state::Checked;
use crate::limits::{retry_after_secs, RateLimitFigures};
use crate::proto::{BucketRef, CheckLimitsResponse, UsageDelta};

const GRPC_STATUS_OK: u32 = 0;

impl RequestFlow {
    /// The address's limits, before authentication: a request from an address over its
    /// limit is refused whatever it carries. Counts the request when every request counts;
    /// otherwise only looks, at the bucket its failed authentications are counted in (they
    /// are counted when they fail).
    pub(super) fn address_refusal(&mut self, host: &impl Host) -> Option<Admission> {
        let worker = Rc::clone(&self.worker);
        let freshness = worker.freshness.try_borrow().ok()?;
        let settings = freshness.limits();
        if settings.ip.is_empty() {
            return None;
        }
        let counts_every_request = settings.ip_counts_every_request;
        let envoys = worker.background.envoys();
        let horizon_us = address_failure_horizon_us(settings, envoys);
        let failures = &worker.address_failures;
        if !counts_every_request && failures.is_quiet(self.now_us, horizon_us) {
            return None;
        }
        let address = self.client_ip(host).ok()?;
        if !counts_every_request && !failures.may_refuse(address, self.now_us, horizon_us) {
            return None;
        }
        let subject = address_subject(address);
        let subject = if counts_every_request {
            address_bucket(host, subject)
        } else if failures.failed_in_own_bucket(address, self.now_us, horizon_us) {
            subject
        } else {
            // Only the shared overflow bucket failed: whether it is this address's takes a
            // read of shared data.
            address_bucket_in_use(host, subject)
        };
        let plan = address_plan(settings, subject);
        drop(freshness);
        let admission = if counts_every_request {
            let admission = worker.limiter.admit(host, &plan.here, self.now_us, envoys);
            if admission.wrote_shared {
                self.touched(&plan.here);
            }
            admission
        } else {
            worker.limiter.peek(host, &plan.here, self.now_us, envoys)
        };
        (!admission.admitted).then_some(admission)
    }

    /// Counts a failed authentication against the address; the refusal when its bucket
    /// was already empty.
    pub(super) fn count_failed_authentication(&mut self, host: &impl Host) -> Option<Admission> {
        let worker = Rc::clone(&self.worker);
        let envoys = worker.background.envoys();
        let (bucket, plan, horizon_us) = {
            let freshness = worker.freshness.try_borrow().ok()?;
            let settings = freshness.limits();
            if settings.ip.is_empty() || settings.ip_counts_every_request {
                return None;
            }
            let address = self.client_ip(host).ok()?;
            let subject = address_bucket(host, address_subject(address));
            let bucket = if subject == ADDRESS_OVERFLOW_SUBJECT {
                FailureBucket::Overflow
            } else {
                FailureBucket::Own(address)
            };
            let plan = address_plan(settings, subject);
            (bucket, plan, address_failure_horizon_us(settings, envoys))
        };
        let admission = worker.limiter.admit(host, &plan.here, self.now_us, envoys);
        worker
            .address_failures
            .counted(host, bucket, self.now_us, horizon_us);
        if admission.wrote_shared {
            self.touched(&plan.here);
        }
        if !admission.admitted {
            return Some(admission);
        }
        self.rate_limit_figures = RateLimitFigures::of(&admission.checked, self.now_us);
        None
    }

    fn touched(&self, draws: &[Draw]) {
        for draw in draws {
            self.worker.background.touched(&draw.subject, &draw.limits);
        }
    }

    /// 429 with `Retry-After`; counted per limit level, and for the user when known.
    pub(super) fn rate_limited(&mut self, admission: &Admission, user_id: &str) -> Decision {
        let level = admission
            .refused_by
            .as_deref()
            .and_then(|subject| subject.split(':').next())
            .unwrap_or("user");
        let metrics = &self.worker.metrics;
        metrics.rate_limited(level);
        metrics.denied("rate_limited");
        if !user_id.is_empty() {
            if let Ok(mut usage) = self.worker.background.usage.try_borrow_mut() {
                usage.record(user_id, |delta: &mut UsageDelta| {
                    *delta.rate_limited.entry(level.to_owned()).or_default() += 1;
                });
            }
        }
        let retry_after = retry_after_secs(&admission.checked);
        self.rate_limit_figures = RateLimitFigures::of(&admission.checked, self.now_us);
        Decision::Deny(Refusal {
            status: 429,
            body: error_body("rate_limited", "rate limit exceeded; retry later"),
            headers: vec![("retry-after", retry_after.to_string())],
        })
    }

    /// Takes the request from its rate limits and its quota allowances: allowed, refused, or
    /// to be asked of the control plane (new allowances, then its `exact` limits).
    pub(super) fn admit(
        &mut self,
        host: &impl Host,
        mut allowed: Allowed,
        limits: &Rc<Plan>,
        metered: MeteredQuotas,
    ) -> Decision {
        if !limits.here.is_empty() {
            let envoys = self.worker.background.envoys();
            let admission = self
                .worker
                .limiter
                .admit(host, &limits.here, self.now_us, envoys);
            if admission.wrote_shared {
                self.touched(&limits.here);
            }
            if !admission.admitted {
                return self.rate_limited(&admission, &allowed.user_id);
            }
            allowed.checked = admission.checked;
        }
        if !metered.is_empty() {
            let wanted = self.take_allowances(&mut allowed, metered);
            if !wanted.is_empty() {
                return Decision::Pause(Callout::Allowances {
                    allowed,
                    plan: Rc::clone(limits),
                    wanted,
                });
            }
        }
        self.check_exact_limits(allowed, limits)
    }

    /// Allows a request without `exact` limits; pauses one with them for the control plane.
    pub(super) fn check_exact_limits(&mut self, allowed: Allowed, limits: &Plan) -> Decision {
        if limits.exact.is_empty() {
            return Decision::Allow(allowed);
        }
        let buckets = limits
            .exact
            .iter()
            .flat_map(|draw| {
                draw.limits.iter().map(|limit| BucketRef {
                    subject: draw.subject.clone(),
                    limit: Some(*limit),
                    count: 1,
                })
            })
            .collect();
        Decision::Pause(Callout::ExactLimits {
            allowed,
            buckets,
            taken_here: limits.here.clone(),
        })
    }

    /// The control plane's answer to an `exact` check.
    pub(super) fn exact_limits_answered(
        &mut self,
        host: &impl Host,
        mut allowed: Allowed,
        buckets: &[BucketRef],
        taken_here: &[Draw],
        grpc_status: u32,
        body: Option<&[u8]>,
    ) -> Decision {
        let answer = (grpc_status == GRPC_STATUS_OK)
            .then(|| CheckLimitsResponse::decode(body.unwrap_or_default()).ok())
            .flatten()
            .filter(|answer| answer.buckets.len() == buckets.len());
        let Some(answer) = answer else {
            log::warn!("exact rate-limit check failed (gRPC status {grpc_status})");
            return self.exact_limits_unavailable(host, allowed, taken_here);
        };
        let checked: Vec<Checked> = buckets
            .iter()
            .zip(&answer.buckets)
            .filter_map(|(bucket, state)| {
                let rate = Rate::of(bucket.limit.as_ref()?)?;
                Some(Checked {
                    requests: rate.requests,
                    verdict: rate.from_backlog(state.backlog_ms, answer.admitted),
                })
            })
            .collect();
        if !answer.admitted {
            self.worker.limiter.give_back(host, taken_here);
            self.give_back_allowances(&allowed);
            let admission = Admission {
                admitted: false,
                refused_by: buckets.first().map(|b| b.subject.clone()),
                checked,
                wrote_shared: false,
            };
            return self.rate_limited(&admission, &allowed.user_id);
        }
        allowed.checked.extend(checked);
        Decision::Allow(allowed)
    }

    /// No answer about the `exact` limits: admit when the operator said so, else 503.
    pub(super) fn exact_limits_unavailable(
        &mut self,
        host: &impl Host,
        allowed: Allowed,
        taken_here: &[Draw],
    ) -> Decision {
        let worker = &self.worker;
        worker.metrics.limit_sync_failed();
        let fails_open = worker
            .freshness
            .try_borrow()
            .is_ok_and(|freshness| freshness.limits().exact_fails_open);
        if fails_open {
            return Decision::Allow(allowed);
        }
        worker.limiter.give_back(host, taken_here);
        self.give_back_allowances(&allowed);
        worker.metrics.denied("rate_limiter_unavailable");
        refusal(
            503,
            error_body(
                "rate_limiter_unavailable",
                "the rate limiter could not be reached",
            ),
        )
    }
}
