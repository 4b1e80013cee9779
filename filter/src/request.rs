//! The per-request context: reads the request, asks the gate, applies the decision.

use std::net::IpAddr;
use std::rc::Rc;

use prost::Message;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use tollgate_filter_core::callout::{Lookup, CHECK_LIMITS_METHOD, FILTER_SERVICE};
use tollgate_filter_core::clock::unix_micros;
use tollgate_filter_core::config::RateLimitHeaders;
use tollgate_filter_core::credential::{
    extract, without_session_cookie, CredentialError, CredentialSource, Presented,
};
use tollgate_filter_core::decision::{AuthMethod, Decision, AUTH_METHOD_HEADER};
use tollgate_filter_core::error_body::{error_body, quota_exceeded_body};
use tollgate_filter_core::gate::{client_address, Gate, RequestFacts, Stage};
use tollgate_filter_core::header_pairs::parse_pairs;
use tollgate_filter_core::hygiene::headers_to_remove;
use tollgate_filter_core::limits::bucket::Rate;
use tollgate_filter_core::limits::plan::{
    address_failure_horizon_us, address_plan, address_subject, Draw, Plan,
};
use tollgate_filter_core::limits::state::Checked;
use tollgate_filter_core::limits::{retry_after_secs, RateLimitFigures};
use tollgate_filter_core::proto::{BucketRef, CheckLimitsRequest, CheckLimitsResponse, UsageDelta};
use tollgate_filter_core::resolved::ROUTE_GROUP_HEADER;
use tollgate_filter_core::usage::{charge_for, header_bytes, Charge};

use crate::header_map;
use crate::limiter::{self, Admission};
use crate::worker::Worker;

const FORWARDED_FOR_HEADER: &str = "x-forwarded-for";
/// An upstream reports storage it added (or, negative, freed) in this response header, in bytes.
const STORAGE_HEADER: &str = "x-tollgate-storage-bytes";
const GRPC_STATUS_OK: u32 = 0;
const UNAUTHENTICATED: u32 = 401;
const MICROS_PER_MILLI: i64 = 1000;

/// What a paused request waits for.
enum Pending {
    /// The control plane's answer about a credential, asked at the given millisecond.
    Lookup(Lookup, i64),
    /// The control plane's answer to the `exact` limits of an allowed request, and the draws
    /// already taken here (returned if the answer refuses).
    ExactLimits(Allowed, Vec<BucketRef>, Vec<Draw>),
}

/// An authenticated request on its way to the upstream.
struct Allowed {
    set_headers: Rc<[(&'static str, String)]>,
    auth_method: AuthMethod,
    user_id: Rc<str>,
    /// Verdicts of the buckets counted here, for the `X-RateLimit-*` headers.
    checked: Vec<Checked>,
}

/// One request on its way through the filter.
pub struct TollgateRequest {
    worker: Rc<Worker>,
    presented: Result<Presented, CredentialError>,
    method: String,
    path: String,
    forwarded_for: Vec<u8>,
    /// Client headers to strip if the request is allowed.
    headers_to_remove: Vec<String>,
    /// The `Cookie` header to forward instead of the client's, without the session cookie;
    /// `Some(None)` removes the header.
    cookie_rewrite: Option<Option<String>>,
    /// What the paused request waits for.
    pending: Option<Pending>,
    /// The client's address, worked out once.
    client: Option<Result<IpAddr, Decision>>,
    /// The `X-RateLimit-*` headers for the response.
    rate_limit_figures: Option<RateLimitFigures>,
    /// The user the upstream's answer is charged to; empty when nobody is.
    charged_user: Rc<str>,
    /// Whether the request went to the upstream (else the filter answered it).
    forwarded: bool,
    /// Whether the answer counts against the user, as its headers showed; `None` until they come.
    charge: Option<Charge>,
    storage_bytes: i64,
    /// Metered sizes: headers, then every body chunk as it passes.
    request_bytes: u64,
    response_bytes: u64,
    /// Envoy's clock when the current callback started, in Unix microseconds.
    now_us: i64,
}

impl TollgateRequest {
    pub fn new(worker: Rc<Worker>) -> Self {
        Self {
            worker,
            presented: Err(CredentialError::Missing),
            method: String::new(),
            path: String::new(),
            forwarded_for: Vec::new(),
            headers_to_remove: Vec::new(),
            cookie_rewrite: None,
            pending: None,
            client: None,
            rate_limit_figures: None,
            charged_user: Rc::from(""),
            forwarded: false,
            charge: None,
            storage_bytes: 0,
            request_bytes: 0,
            response_bytes: 0,
            now_us: 0,
        }
    }

    /// Reads Envoy's clock once for the callback that runs now.
    fn tick_clock(&mut self) {
        self.now_us = unix_micros(self.get_current_time());
    }

    fn now_ms(&self) -> i64 {
        self.now_us / MICROS_PER_MILLI
    }

    fn now_us(&self) -> i64 {
        self.now_us
    }

    /// The client's address, from Envoy's peer address and trusted `X-Forwarded-For` hops.
    fn client_ip(&self) -> Result<IpAddr, Decision> {
        if let Some(known) = &self.client {
            return known.clone();
        }
        let source = self
            .get_property(vec!["source", "address"])
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .unwrap_or_default();
        client_address(
            &source,
            (!self.forwarded_for.is_empty()).then_some(self.forwarded_for.as_slice()),
            self.worker.config.trusted_hops,
        )
    }

    fn decide(&self, stage: Stage) -> Decision {
        let client_ip = || self.client_ip();
        let facts = RequestFacts {
            method: &self.method,
            path: &self.path,
            client_ip: &client_ip,
            now_ms: self.now_ms(),
            stage,
        };
        let (Ok(freshness), Ok(mut tokens)) = (
            self.worker.freshness.try_borrow(),
            self.worker.tokens.try_borrow_mut(),
        ) else {
            return tollgate_filter_core::decision::CONTROL_PLANE_UNAVAILABLE;
        };
        let gate = Gate {
            principals: &self.worker.caches,
            freshness: &freshness,
            policy: &self.worker.policy,
        };
        gate.decide(&self.presented, &facts, &mut tokens)
    }

    /// Carries out `decision`; the returned action is what the current callback answers.
    fn apply(&mut self, decision: Decision) -> Action {
        match decision {
            Decision::Allow {
                set_headers,
                auth_method,
                user_id,
                limits,
            } => self.admit(
                Allowed {
                    set_headers,
                    auth_method,
                    user_id,
                    checked: Vec::new(),
                },
                &limits,
            ),
            Decision::Deny {
                status,
                code,
                message,
            } => {
                if status == UNAUTHENTICATED {
                    if let Some(refusal) = self.count_failed_authentication() {
                        return self.rate_limited(&refusal, "");
                    }
                }
                self.worker.metrics.denied(code);
                self.refuse(status, error_body(code, message), Vec::new())
            }
            Decision::QuotaExceeded {
                user_id,
                quota,
                resets_at,
            } => {
                self.worker.metrics.denied("quota_exceeded");
                if let Ok(mut usage) = self.worker.background.usage.try_borrow_mut() {
                    usage.record(&user_id, |delta| delta.quota_refused += 1);
                }
                self.refuse(402, quota_exceeded_body(&quota, resets_at), Vec::new())
            }
            Decision::Lookup(lookup) => self.start_lookup(lookup),
        }
    }

    /// Answers the client directly, with the `X-RateLimit-*` headers known so far.
    fn refuse(&mut self, status: u32, body: String, extra: Vec<(&str, String)>) -> Action {
        let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
        let mut digits = Default::default();
        if let Some(figures) = self.rate_limit_figures.take() {
            headers.extend(figures.headers(&mut digits));
        }
        headers.extend(extra.iter().map(|(name, value)| (*name, value.as_str())));
        self.send_http_response(status, headers, Some(body.as_bytes()));
        Action::Pause
    }

    /// The address's own limits, before authentication: a request from an address over
    /// its limit is refused whatever it carries. Counts the request when every request
    /// counts; otherwise only looks (failed authentications are counted when they fail).
    fn address_refusal(&mut self) -> Option<Admission> {
        let worker = Rc::clone(&self.worker);
        let freshness = worker.freshness.try_borrow().ok()?;
        let settings = freshness.limits();
        if settings.ip.is_empty() {
            return None;
        }
        let counts_every_request = settings.ip_counts_every_request;
        let envoys = self.worker.background.envoys();
        let horizon_us = address_failure_horizon_us(settings, envoys);
        let failures = &self.worker.address_failures;
        if !counts_every_request && failures.is_quiet(self.now_us(), horizon_us) {
            return None;
        }
        let address = self.client_ip();
        self.client = Some(address.clone());
        let address = address.ok()?;
        if !counts_every_request && !failures.may_refuse(address, self.now_us(), horizon_us) {
            return None;
        }
        let subject = address_subject(address);
        let subject = if counts_every_request {
            limiter::address_bucket(subject)
        } else {
            subject
        };
        let plan = address_plan(settings, subject);
        drop(freshness);
        let admission = if counts_every_request {
            let admission = self.worker.limiter.admit(&plan.here, self.now_us(), envoys);
            if admission.wrote_shared {
                self.touched(&plan.here);
            }
            admission
        } else {
            self.worker.limiter.peek(&plan.here, self.now_us(), envoys)
        };
        (!admission.admitted).then_some(admission)
    }

    /// Counts a failed authentication against the address; the refusal when its bucket
    /// was already empty.
    fn count_failed_authentication(&mut self) -> Option<Admission> {
        let envoys = self.worker.background.envoys();
        let (address, plan, horizon_us) = {
            let freshness = self.worker.freshness.try_borrow().ok()?;
            let settings = freshness.limits();
            if settings.ip.is_empty() || settings.ip_counts_every_request {
                return None;
            }
            let address = self.client_ip().ok()?;
            let plan = address_plan(settings, limiter::address_bucket(address_subject(address)));
            (address, plan, address_failure_horizon_us(settings, envoys))
        };
        let admission = self.worker.limiter.admit(&plan.here, self.now_us(), envoys);
        self.worker
            .address_failures
            .counted(address, self.now_us(), horizon_us);
        if admission.wrote_shared {
            self.touched(&plan.here);
        }
        if !admission.admitted {
            return Some(admission);
        }
        self.rate_limit_figures = RateLimitFigures::of(&admission.checked, self.now_us());
        None
    }

    fn touched(&self, draws: &[Draw]) {
        for draw in draws {
            self.worker.background.touched(&draw.subject, &draw.limits);
        }
    }

    /// 429 with `Retry-After`; counted per limit level, and for the user when known.
    fn rate_limited(&mut self, admission: &Admission, user_id: &str) -> Action {
        let level = admission
            .refused_by
            .as_deref()
            .and_then(|subject| subject.split(':').next())
            .unwrap_or("user");
        self.worker.metrics.rate_limited(level);
        self.worker.metrics.denied("rate_limited");
        if !user_id.is_empty() {
            if let Ok(mut usage) = self.worker.background.usage.try_borrow_mut() {
                usage.record(user_id, |delta: &mut UsageDelta| {
                    *delta.rate_limited.entry(level.to_owned()).or_default() += 1;
                });
            }
        }
        let retry_after = retry_after_secs(&admission.checked);
        self.rate_limit_figures = RateLimitFigures::of(&admission.checked, self.now_us());
        self.refuse(
            429,
            error_body("rate_limited", "rate limit exceeded; retry later"),
            vec![("retry-after", retry_after.to_string())],
        )
    }

    /// Takes the request from its rate limits, then forwards it or asks the control plane
    /// about its `exact` limits.
    fn admit(&mut self, mut allowed: Allowed, limits: &Plan) -> Action {
        if !limits.here.is_empty() {
            let envoys = self.worker.background.envoys();
            let admission = self
                .worker
                .limiter
                .admit(&limits.here, self.now_us(), envoys);
            if admission.wrote_shared {
                self.touched(&limits.here);
            }
            if !admission.admitted {
                return self.rate_limited(&admission, &allowed.user_id);
            }
            allowed.checked = admission.checked;
        }
        if limits.exact.is_empty() {
            self.forward(allowed);
            return Action::Continue;
        }
        let buckets: Vec<BucketRef> = limits
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
        let request = CheckLimitsRequest {
            buckets: buckets.clone(),
        };
        let config = &self.worker.config;
        match self.dispatch_grpc_call(
            &config.control_plane_cluster,
            FILTER_SERVICE,
            CHECK_LIMITS_METHOD,
            Vec::new(),
            Some(&request.encode_to_vec()),
            config.callout_timeout(),
        ) {
            Ok(_token) => {
                self.pending = Some(Pending::ExactLimits(allowed, buckets, limits.here.clone()));
                Action::Pause
            }
            Err(status) => {
                log::warn!("could not check exact rate limits: {status:?}");
                self.exact_limits_unavailable(allowed, &limits.here)
            }
        }
    }

    /// Applies the control plane's answer to an `exact` check.
    fn exact_limits_answered(
        &mut self,
        mut allowed: Allowed,
        buckets: &[BucketRef],
        taken_here: &[Draw],
        grpc_status: u32,
        body: Option<&[u8]>,
    ) -> Action {
        let answer = (grpc_status == GRPC_STATUS_OK)
            .then(|| CheckLimitsResponse::decode(body.unwrap_or_default()).ok())
            .flatten()
            .filter(|answer| answer.buckets.len() == buckets.len());
        let Some(answer) = answer else {
            log::warn!("exact rate-limit check failed (gRPC status {grpc_status})");
            return self.exact_limits_unavailable(allowed, taken_here);
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
            self.worker.limiter.give_back(taken_here);
            let admission = Admission {
                admitted: false,
                refused_by: buckets.first().map(|b| b.subject.clone()),
                checked,
                wrote_shared: false,
            };
            let user_id = std::mem::take(&mut allowed.user_id);
            return self.rate_limited(&admission, &user_id);
        }
        allowed.checked.extend(checked);
        self.forward(allowed);
        Action::Continue
    }

    fn exact_limits_unavailable(&mut self, allowed: Allowed, taken_here: &[Draw]) -> Action {
        self.worker.metrics.limit_sync_failed();
        let fails_open = self
            .worker
            .freshness
            .try_borrow()
            .is_ok_and(|freshness| freshness.limits().exact_fails_open);
        if fails_open {
            self.forward(allowed);
            return Action::Continue;
        }
        self.worker.limiter.give_back(taken_here);
        self.worker.metrics.denied("rate_limiter_unavailable");
        self.refuse(
            503,
            error_body(
                "rate_limiter_unavailable",
                "the rate limiter could not be reached",
            ),
            Vec::new(),
        )
    }

    /// Sends the request on with its identity headers and remembers what the answer needs.
    fn forward(&mut self, allowed: Allowed) {
        self.worker.metrics.allowed(allowed.auth_method);
        self.forward_with(&allowed.set_headers, allowed.auth_method);
        if self.worker.config.rate_limit_headers == RateLimitHeaders::EveryAnswer {
            self.rate_limit_figures = RateLimitFigures::of(&allowed.checked, self.now_us());
        }
        self.charged_user = allowed.user_id;
        self.forwarded = true;
        // The route depends on x-tollgate-route-group: when it was set, or a client's
        // copy removed, Envoy must choose the route again.
        let routing_changed = allowed
            .set_headers
            .iter()
            .map(|(name, _)| *name)
            .chain(self.headers_to_remove.iter().map(String::as_str))
            .any(|name| name == ROUTE_GROUP_HEADER);
        if routing_changed {
            if let Err(status) =
                proxy_wasm::hostcalls::call_foreign_function("clear_route_cache", None)
            {
                log::warn!("could not clear the route cache: {status:?}");
            }
        }
    }

    /// Rewrites the request's headers in place: the client's credential and `x-tollgate-*`
    /// headers out, the session cookie cut, the identity headers in. Each is one host call
    /// that returns nothing, far cheaper than replacing the whole map.
    fn forward_with(&mut self, set_headers: &[(&str, String)], auth_method: AuthMethod) {
        for name in &self.headers_to_remove {
            self.set_http_request_header(name, None);
        }
        if let Some(cookie) = self.cookie_rewrite.take() {
            self.set_http_request_header("cookie", cookie.as_deref());
        }
        for (name, value) in set_headers {
            self.add_http_request_header(name, value);
        }
        self.add_http_request_header(AUTH_METHOD_HEADER, auth_method.as_str());
    }

    fn start_lookup(&mut self, lookup: Lookup) -> Action {
        let config = &self.worker.config;
        let dispatched = self.dispatch_grpc_call(
            &config.control_plane_cluster,
            FILTER_SERVICE,
            lookup.method(),
            Vec::new(),
            Some(&lookup.request()),
            config.callout_timeout(),
        );
        match dispatched {
            Ok(_token) => {
                self.pending = Some(Pending::Lookup(lookup, self.now_ms()));
                Action::Pause
            }
            Err(status) => {
                log::warn!(
                    "could not call the control plane on cluster {}: {status:?}",
                    config.control_plane_cluster
                );
                self.worker.metrics.lookup_failed();
                let decision = self.decide(Stage::Unreachable);
                self.apply(decision)
            }
        }
    }

    fn read_request(&mut self) {
        // Bytes, not strings: a header value that is not UTF-8 must be refused, not trap the VM.
        let block = header_map::request_headers();
        let headers = parse_pairs(&block);
        self.request_bytes = header_bytes(&headers);
        self.presented = extract(
            &headers,
            self.worker.config.max_credential_bytes,
            &self.worker.digester,
        );
        let credential_source = match &self.presented {
            Ok(Presented::ApiKey(key)) => Some(key.source),
            Ok(Presented::Session {
                alongside_api_key,
                from_cookie,
                ..
            }) => {
                if *alongside_api_key {
                    log::info!("a request sent both a session and an API key; the session wins");
                    self.worker.metrics.dual_credentials();
                }
                if *from_cookie {
                    let cookies: Vec<&str> = headers
                        .iter()
                        .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
                        .filter_map(|(_, v)| std::str::from_utf8(v).ok())
                        .collect();
                    self.cookie_rewrite = Some(without_session_cookie(&cookies.join("; ")));
                    Some(CredentialSource::ApiKeyHeader)
                } else {
                    Some(CredentialSource::AuthorizationBearer)
                }
            }
            Err(_) => None,
        };
        self.headers_to_remove = headers_to_remove(
            &headers,
            credential_source.unwrap_or(CredentialSource::ApiKeyHeader),
        );
        let text = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
                .unwrap_or_default()
                .to_owned()
        };
        self.method = text(":method");
        self.path = text(":path");
        // Only a trusted proxy's X-Forwarded-For names the client.
        if self.worker.config.trusted_hops > 0 {
            let forwarded_for: Vec<&[u8]> = headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(FORWARDED_FOR_HEADER))
                .map(|(_, v)| *v)
                .collect();
            self.forwarded_for = forwarded_for.join(&b", "[..]);
        }
    }
}

impl Context for TollgateRequest {
    fn on_grpc_call_response(&mut self, _token_id: u32, status_code: u32, response_size: usize) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        self.tick_clock();
        let body = match response_size {
            0 => None,
            size => self.get_grpc_call_response_body(0, size),
        };
        let action = match pending {
            Pending::Lookup(lookup, started_ms) => {
                let now_ms = self.now_ms();
                self.worker
                    .metrics
                    .lookup_took(u64::try_from(now_ms - started_ms).unwrap_or(0));
                let stage = match lookup.read_answer(status_code, body.as_deref(), now_ms) {
                    Ok(entry) => {
                        self.worker.caches.remember(&lookup, entry, now_ms);
                        Stage::Fetched
                    }
                    Err(failure) => {
                        log::warn!("lookup failed: {failure}");
                        self.worker.metrics.lookup_failed();
                        Stage::Unreachable
                    }
                };
                let decision = self.decide(stage);
                self.apply(decision)
            }
            Pending::ExactLimits(allowed, buckets, taken_here) => self.exact_limits_answered(
                allowed,
                &buckets,
                &taken_here,
                status_code,
                body.as_deref(),
            ),
        };
        if action == Action::Continue {
            self.resume_http_request();
        }
    }
}

impl HttpContext for TollgateRequest {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.tick_clock();
        self.read_request();
        if matches!(self.presented, Ok(Presented::Session { .. })) {
            // Until the first tick after the keys arrive, look for them on the spot.
            self.worker.load_session_keys_if_missing();
        }
        if let Some(refusal) = self.address_refusal() {
            return self.rate_limited(&refusal, "");
        }
        let decision = self.decide(Stage::First);
        self.apply(decision)
    }

    fn on_http_request_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        self.request_bytes = self.request_bytes.saturating_add(body_size as u64);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let rate_limit_figures = self.rate_limit_figures.take();
        if !self.forwarded {
            return Action::Continue;
        }
        let block = header_map::response_headers();
        let headers = parse_pairs(&block);
        self.response_bytes = header_bytes(&headers);
        self.charge = Some(charge_for(&headers));
        let sent = |wanted: &str| headers.iter().find(|(name, _)| *name == wanted);
        // The upstream's storage report goes to the meter, not to the client.
        if let Some((_, reported)) = sent(STORAGE_HEADER) {
            self.storage_bytes = std::str::from_utf8(reported)
                .ok()
                .and_then(|text| text.trim().parse().ok())
                .unwrap_or(0);
            self.set_http_response_header(STORAGE_HEADER, None);
        }
        // The gateway's rate-limit figures, instead of any the upstream sent.
        let mut digits = Default::default();
        let rate_limit_headers = rate_limit_figures.map(|figures| figures.headers(&mut digits));
        for (name, value) in rate_limit_headers.iter().flatten() {
            if sent(name).is_some() {
                self.set_http_response_header(name, Some(value));
            } else {
                self.add_http_response_header(name, value);
            }
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        self.response_bytes = self.response_bytes.saturating_add(body_size as u64);
        Action::Continue
    }

    fn on_log(&mut self) {
        if self.charged_user.is_empty() {
            return;
        }
        // Without response headers (the stream ended first), Envoy is asked too.
        let counts = self.charge == Some(Charge::Yes)
            || self
                .get_property(vec!["response", "code_details"])
                .is_some_and(|details| details == b"via_upstream");
        if !counts {
            return;
        }
        let bytes = self.request_bytes.saturating_add(self.response_bytes);
        let storage_bytes = self.storage_bytes;
        if let Ok(mut usage) = self.worker.background.usage.try_borrow_mut() {
            usage.record(&self.charged_user, |delta| {
                delta.requests += 1;
                delta.bytes = delta.bytes.saturating_add(bytes);
                delta.storage_bytes = delta.storage_bytes.saturating_add(storage_bytes);
            });
        }
    }
}
