//! One request's way through the filter: reading it, its address's limits, the gate, its
//! rate limits and quotas, the callouts it waits for, and the metering of its answer. Each
//! step reaches Envoy through [`Host`]; every request ends in one applied [`Decision`].

mod limits;
mod quotas;

use std::cell::OnceCell;
use std::net::IpAddr;
use std::rc::Rc;

use prost::Message;

use crate::access::{address_text, AddressText};
use crate::allowances::{MeteredQuota, Taken};
use crate::callout::{ACQUIRE_ALLOWANCES_METHOD, CHECK_LIMITS_METHOD};
use crate::config::RateLimitHeaders;
use crate::credential::{extract, CredentialError, CredentialSource, Presented};
use crate::decision::{Allowed, Callout, Decision, Refusal, AUTH_METHOD_HEADER, CLIENT_IP_HEADER};
use crate::error_body::{error_body, quota_exceeded_body};
use crate::gate::{client_address, Gate, RequestFacts, Stage, Verdict, CONTROL_PLANE_UNAVAILABLE};
use crate::header_pairs::parse_pairs;
use crate::host::{Action, GrpcCall, HeaderMap, Host};
use crate::hygiene::{scrub, Scrub};
use crate::limits::RateLimitFigures;
use crate::proto::CheckLimitsRequest;
use crate::resolved::ROUTE_GROUP_HEADER;
use crate::usage::{charge_for, header_bytes, Charge, UsageBuffer};
use crate::worker::Worker;

const FORWARDED_FOR_HEADER: &str = "x-forwarded-for";
const CONTENT_LENGTH_HEADER: &str = "content-length";
/// Envoy's id of the request, passed on with the calls made for it so the control plane's log
/// names it.
const REQUEST_ID_HEADER: &str = "x-request-id";
/// An upstream reports storage it added (or, negative, freed) in this response header, in bytes.
const STORAGE_HEADER: &str = "x-tollgate-storage-bytes";
const UNAUTHENTICATED: u32 = 401;
const MICROS_PER_MILLI: i64 = 1000;

/// One request on its way through the filter.
pub struct RequestFlow {
    worker: Rc<Worker>,
    presented: Result<Presented, CredentialError>,
    method: String,
    path: String,
    forwarded_for: Vec<u8>,
    /// The request's `x-request-id`; empty without one.
    request_id: Vec<u8>,
    /// What of the client's headers must not reach the upstream if the request is allowed.
    scrub: Scrub,
    /// What the paused request waits for, and when it was asked (Unix milliseconds).
    pending: Option<(Callout, i64)>,
    /// The client's address, worked out once, when first needed.
    client: OnceCell<Result<IpAddr, Verdict>>,
    /// The `X-RateLimit-*` headers for the response.
    rate_limit_figures: Option<RateLimitFigures>,
    /// The user the upstream's answer is charged to; empty when nobody is.
    charged_user: Rc<str>,
    /// What the forwarded request took from its user's quota allowances.
    taken: Vec<Taken>,
    /// Whether the request went to the upstream (else the filter answered it).
    forwarded: bool,
    /// Whether the answer counts against the user, as its headers showed; `None` until they come.
    charge: Option<Charge>,
    storage_bytes: i64,
    /// Metered sizes: headers, then every body chunk as it passes.
    request_bytes: u64,
    response_bytes: u64,
    /// The request's headers plus the body its `content-length` announces.
    declared_bytes: u64,
    /// Envoy's clock when the current callback started, in Unix microseconds.
    now_us: i64,
}

impl RequestFlow {
    pub fn new(worker: Rc<Worker>) -> Self {
        Self {
            worker,
            presented: Err(CredentialError::Missing),
            method: String::new(),
            path: String::new(),
            forwarded_for: Vec::new(),
            request_id: Vec::new(),
            scrub: Scrub::default(),
            pending: None,
            client: OnceCell::new(),
            rate_limit_figures: None,
            charged_user: Rc::from(""),
            taken: Vec::new(),
            forwarded: false,
            charge: None,
            storage_bytes: 0,
            request_bytes: 0,
            response_bytes: 0,
            declared_bytes: 0,
            now_us: 0,
        }
    }

    /// The request's headers arrived: decides it, or pauses it for the control plane.
    pub fn on_request_headers(&mut self, host: &impl Host) -> Action {
        self.now_us = host.now_us();
        self.read_request(host);
        if matches!(self.presented, Ok(Presented::Session { .. })) {
            // Until the first tick after the keys arrive, look for them on the spot.
            self.worker.load_session_keys_if_missing(host);
        }
        let decision = match self.address_refusal(host) {
            Some(refusal) => self.rate_limited(&refusal, ""),
            None => self.decide(host, Stage::First),
        };
        self.apply(host, decision)
    }

    /// The control plane answered the paused request's callout; [`Action::Continue`] resumes it.
    pub fn on_callout_answer(
        &mut self,
        host: &impl Host,
        grpc_status: u32,
        body: Option<&[u8]>,
    ) -> Action {
        let Some((callout, asked_at_ms)) = self.pending.take() else {
            return Action::Pause;
        };
        self.now_us = host.now_us();
        let decision = match callout {
            Callout::Lookup(lookup) => {
                let now_ms = self.now_ms();
                let metrics = &self.worker.metrics;
                metrics.lookup_took(u64::try_from(now_ms - asked_at_ms).unwrap_or(0));
                let stage = match lookup.read_answer(grpc_status, body, now_ms) {
                    Ok(entry) => {
                        self.worker.caches.remember(host, &lookup, entry, now_ms);
                        Stage::Fetched
                    }
                    Err(failure) => {
                        log::warn!("lookup failed: {failure}");
                        metrics.lookup_failed();
                        Stage::Unreachable
                    }
                };
                self.decide(host, stage)
            }
            Callout::ExactLimits {
                allowed,
                buckets,
                taken_here,
            } => {
                self.exact_limits_answered(host, allowed, &buckets, &taken_here, grpc_status, body)
            }
            Callout::Allowances {
                allowed,
                plan,
                wanted,
            } => self.allowances_answered(host, allowed, &plan, wanted, grpc_status, body),
        };
        self.apply(host, decision)
    }

    pub fn on_request_body(&mut self, body_size: usize) {
        self.request_bytes = self.request_bytes.saturating_add(body_size as u64);
    }

    /// Meters the answer's headers and sets the `X-RateLimit-*` ones.
    pub fn on_response_headers(&mut self, host: &impl Host) {
        let rate_limit_figures = self.rate_limit_figures.take();
        if !self.forwarded {
            return;
        }
        let block = host.headers(HeaderMap::Response);
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
            host.set_header(HeaderMap::Response, STORAGE_HEADER, None);
        }
        // The gateway's rate-limit figures, instead of any the upstream sent.
        let mut digits = Default::default();
        let rate_limit_headers = rate_limit_figures.map(|figures| figures.headers(&mut digits));
        for (name, value) in rate_limit_headers.iter().flatten() {
            if sent(name).is_some() {
                host.set_header(HeaderMap::Response, name, Some(value));
            } else {
                host.add_header(HeaderMap::Response, name, value);
            }
        }
    }

    pub fn on_response_body(&mut self, body_size: usize) {
        self.response_bytes = self.response_bytes.saturating_add(body_size as u64);
    }

    /// The stream ended: what the upstream answered counts against the user, and settles
    /// what the request took from their allowances.
    pub fn on_log(&mut self, host: &impl Host) {
        if self.charged_user.is_empty() {
            return;
        }
        // Without response headers (the stream ended first), Envoy is asked too.
        let counts = self.charge == Some(Charge::Yes)
            || host
                .property(&["response", "code_details"])
                .is_some_and(|details| details == b"via_upstream");
        let bytes = self.request_bytes.saturating_add(self.response_bytes);
        let storage_bytes = self.storage_bytes;
        let worker = Rc::clone(&self.worker);
        let Ok(mut usage) = worker.background.usage.try_borrow_mut() else {
            return;
        };
        if counts {
            usage.record(&self.charged_user, |delta| {
                delta.requests += 1;
                delta.bytes = delta.bytes.saturating_add(bytes);
                delta.storage_bytes = delta.storage_bytes.saturating_add(storage_bytes);
            });
        }
        // After the usage: an allowance this request used up goes in the same report.
        self.finish_allowances(counts.then_some(bytes), &mut usage);
    }

    /// Settles what the request took: `used_bytes` is `None` when its answer does not count.
    /// An allowance it was the last request of, used up, is settled with `usage`.
    fn finish_allowances(&mut self, used_bytes: Option<u64>, usage: &mut UsageBuffer) {
        if self.taken.is_empty() {
            return;
        }
        let Ok(mut allowances) = self.worker.allowances.try_borrow_mut() else {
            return;
        };
        for taken in self.taken.drain(..) {
            let used = match (taken.quota(), used_bytes) {
                (_, None) => 0,
                (MeteredQuota::Requests, Some(_)) => 1,
                (MeteredQuota::Bandwidth, Some(bytes)) => bytes,
            };
            if let Some(used_up) = allowances.finish(&taken, used) {
                usage.settle(&used_up);
            }
        }
    }

    fn now_ms(&self) -> i64 {
        self.now_us / MICROS_PER_MILLI
    }

    /// The client's address, from Envoy's peer address and trusted `X-Forwarded-For` hops.
    fn client_ip(&self, host: &impl Host) -> Result<IpAddr, Verdict> {
        self.client
            .get_or_init(|| {
                let source = host
                    .property(&["source", "address"])
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .unwrap_or_default();
                client_address(
                    &source,
                    (!self.forwarded_for.is_empty()).then_some(self.forwarded_for.as_slice()),
                    self.worker.config.trusted_hops,
                )
            })
            .clone()
    }

    fn verdict(&self, host: &impl Host, stage: Stage) -> Verdict {
        let client_ip = || self.client_ip(host);
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
            return CONTROL_PLANE_UNAVAILABLE;
        };
        let gate = Gate {
            principals: &self.worker.caches.on(host, &self.worker.metrics),
            freshness: &freshness,
            policy: &self.worker.policy,
        };
        gate.decide(&self.presented, &facts, &mut tokens)
    }

    /// The gate's verdict, then the limits and quotas of an authorized request.
    fn decide(&mut self, host: &impl Host, stage: Stage) -> Decision {
        match self.verdict(host, stage) {
            Verdict::Authorized {
                set_headers,
                auth_method,
                user_id,
                limits,
                metered,
            } => {
                let allowed = Allowed {
                    set_headers,
                    auth_method,
                    user_id,
                    taken: Vec::new(),
                    checked: Vec::new(),
                };
                self.admit(host, allowed, &limits, metered)
            }
            Verdict::Refused {
                status,
                code,
                message,
            } => {
                if status == UNAUTHENTICATED {
                    if let Some(refusal) = self.count_failed_authentication(host) {
                        return self.rate_limited(&refusal, "");
                    }
                }
                self.worker.metrics.denied(code);
                refusal(status, error_body(code, message))
            }
            Verdict::QuotaExceeded {
                user_id,
                quota,
                resets_at,
            } => {
                self.worker.metrics.denied("quota_exceeded");
                if let Ok(mut usage) = self.worker.background.usage.try_borrow_mut() {
                    usage.record(&user_id, |delta| delta.quota_refused += 1);
                }
                refusal(402, quota_exceeded_body(&quota, resets_at))
            }
            Verdict::Lookup(lookup) => Decision::Pause(Callout::Lookup(lookup)),
        }
    }

    /// Carries out `decision`; the returned action is what the current callback answers.
    fn apply(&mut self, host: &impl Host, decision: Decision) -> Action {
        match decision {
            Decision::Allow(allowed) => {
                self.forward(host, allowed);
                Action::Continue
            }
            Decision::Deny(refusal) => {
                self.reply(host, refusal);
                Action::Pause
            }
            Decision::Pause(callout) => self.call(host, callout),
        }
    }

    /// Asks the control plane; when the call cannot start, decides without its answer.
    fn call(&mut self, host: &impl Host, callout: Callout) -> Action {
        let (method, message) = match &callout {
            Callout::Lookup(lookup) => (lookup.method(), lookup.request()),
            Callout::ExactLimits { buckets, .. } => {
                let request = CheckLimitsRequest {
                    buckets: buckets.clone(),
                };
                (CHECK_LIMITS_METHOD, request.encode_to_vec())
            }
            Callout::Allowances {
                allowed, wanted, ..
            } => (
                ACQUIRE_ALLOWANCES_METHOD,
                self.allowance_request(allowed, *wanted),
            ),
        };
        let config = &self.worker.config;
        let call = GrpcCall {
            request_id: Some(self.request_id.as_slice()).filter(|id| !id.is_empty()),
            ..GrpcCall::new(config, method, &message)
        };
        let error = match host.dispatch_grpc_call(call) {
            Ok(_token) => {
                self.pending = Some((callout, self.now_ms()));
                return Action::Pause;
            }
            Err(error) => error,
        };
        let decision = match callout {
            Callout::Lookup(_) => {
                log::warn!(
                    "could not call the control plane on cluster {}: {error}",
                    config.control_plane_cluster
                );
                self.worker.metrics.lookup_failed();
                self.decide(host, Stage::Unreachable)
            }
            Callout::ExactLimits {
                allowed,
                taken_here,
                ..
            } => {
                log::warn!("could not check exact rate limits: {error}");
                self.exact_limits_unavailable(host, allowed, &taken_here)
            }
            Callout::Allowances { allowed, plan, .. } => {
                log::warn!("could not acquire quota allowances: {error}");
                self.allowances_unavailable(host, allowed, &plan)
            }
        };
        self.apply(host, decision)
    }

    /// Answers the client directly, with the `X-RateLimit-*` headers known so far.
    fn reply(&mut self, host: &impl Host, refusal: Refusal) {
        let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
        let mut digits = Default::default();
        if let Some(figures) = self.rate_limit_figures.take() {
            headers.extend(figures.headers(&mut digits));
        }
        headers.extend(
            refusal
                .headers
                .iter()
                .map(|(name, value)| (*name, value.as_str())),
        );
        host.send_reply(refusal.status, headers, refusal.body.as_bytes());
    }

    /// Sends the request on with its identity headers and remembers what the answer needs.
    /// The request's headers are rewritten in place: the client's credential and
    /// `x-tollgate-*` headers out, the session cookie cut, the identity headers and the
    /// client's address in. Each is one host call that returns nothing, far cheaper than
    /// replacing the whole map.
    fn forward(&mut self, host: &impl Host, allowed: Allowed) {
        self.worker.metrics.allowed(allowed.auth_method);
        let request = HeaderMap::Request;
        for name in &self.scrub.remove {
            host.set_header(request, name, None);
        }
        if let Some(cookie) = self.scrub.cookie.take() {
            host.set_header(request, "cookie", cookie.as_deref());
        }
        for (name, value) in allowed.set_headers.iter() {
            host.add_header(request, name, value);
        }
        host.add_header(request, AUTH_METHOD_HEADER, allowed.auth_method.as_str());
        // Without an address (a peer that is not an IP), the upstream gets none rather than
        // one the client chose.
        let mut text = AddressText::default();
        if let Some(client_ip) = self
            .client_ip(host)
            .ok()
            .and_then(|ip| address_text(ip, &mut text))
        {
            host.add_header(request, CLIENT_IP_HEADER, client_ip);
        }
        if self.worker.config.rate_limit_headers == RateLimitHeaders::EveryAnswer {
            self.rate_limit_figures = RateLimitFigures::of(&allowed.checked, self.now_us);
        }
        // The route depends on x-tollgate-route-group: when it was set, or a client's
        // copy removed, Envoy must choose the route again.
        let routing_changed = allowed
            .set_headers
            .iter()
            .map(|(name, _)| *name)
            .chain(self.scrub.remove.iter().map(String::as_str))
            .any(|name| name == ROUTE_GROUP_HEADER);
        self.charged_user = allowed.user_id;
        self.taken = allowed.taken;
        self.forwarded = true;
        if routing_changed {
            host.clear_route_cache();
        }
    }

    fn read_request(&mut self, host: &impl Host) {
        // Bytes, not strings: a header value that is not UTF-8 must be refused, not trap the VM.
        let block = host.headers(HeaderMap::Request);
        let headers = parse_pairs(&block);
        self.request_bytes = header_bytes(&headers);
        self.presented = extract(
            &headers,
            self.worker.config.max_credential_bytes,
            &self.worker.digester,
        );
        // Which header carried the credential, so that `authorization` goes only when it did.
        let credential_source = match &self.presented {
            Ok(Presented::ApiKey(key)) => key.source,
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
                    CredentialSource::ApiKeyHeader
                } else {
                    CredentialSource::AuthorizationBearer
                }
            }
            Err(_) => CredentialSource::ApiKeyHeader,
        };
        self.scrub = scrub(&headers, credential_source);
        let text = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
                .unwrap_or_default()
                .to_owned()
        };
        self.method = text(":method");
        if let Some((_, id)) = headers.iter().find(|(n, _)| *n == REQUEST_ID_HEADER) {
            self.request_id = id.to_vec();
        }
        self.path = text(":path");
        let content_length = headers
            .iter()
            .find(|(name, _)| *name == CONTENT_LENGTH_HEADER)
            .and_then(|(_, value)| std::str::from_utf8(value).ok()?.parse::<u64>().ok())
            .unwrap_or(0);
        self.declared_bytes = self.request_bytes.saturating_add(content_length);
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

/// The filter's answer with the project's error body and no further headers.
fn refusal(status: u32, body: String) -> Decision {
    Decision::Deny(Refusal {
        status,
        body,
        headers: Vec::new(),
    })
}

#[cfg(test)]
mod tests;
