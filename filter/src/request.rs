//! The per-request context: reads the request, asks the gate, applies the decision.

use std::net::IpAddr;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use tollgate_filter_core::callout::{Lookup, FILTER_SERVICE};
use tollgate_filter_core::clock::unix_millis;
use tollgate_filter_core::credential::{
    extract, without_session_cookie, CredentialError, CredentialSource, Presented,
};
use tollgate_filter_core::decision::Decision;
use tollgate_filter_core::error_body::error_body;
use tollgate_filter_core::gate::{client_address, Gate, RequestFacts, Stage, ROUTE_GROUP_HEADER};
use tollgate_filter_core::hygiene::headers_to_remove;

use crate::worker::Worker;

const FORWARDED_FOR_HEADER: &str = "x-forwarded-for";

/// One request on its way through the filter.
pub struct TollgateRequest {
    worker: Rc<Worker>,
    presented: Result<Presented, CredentialError>,
    method: String,
    path: String,
    forwarded_for: Vec<u8>,
    /// The request headers as received, rewritten in one host call when the request is allowed.
    headers: Vec<(String, Vec<u8>)>,
    /// Client headers to strip if the request is allowed.
    headers_to_remove: Vec<String>,
    /// The `Cookie` header to forward instead of the client's, without the session cookie;
    /// `Some(None)` removes the header.
    cookie_rewrite: Option<Option<String>>,
    /// The lookup in flight while the request is paused, and when it started.
    pending: Option<(Lookup, i64)>,
}

impl TollgateRequest {
    pub fn new(worker: Rc<Worker>) -> Self {
        Self {
            worker,
            presented: Err(CredentialError::Missing),
            method: String::new(),
            path: String::new(),
            forwarded_for: Vec::new(),
            headers: Vec::new(),
            headers_to_remove: Vec::new(),
            cookie_rewrite: None,
            pending: None,
        }
    }

    fn now_ms(&self) -> i64 {
        unix_millis(self.get_current_time())
    }

    /// The client's address, from Envoy's peer address and trusted `X-Forwarded-For` hops.
    fn client_ip(&self) -> Result<IpAddr, Decision> {
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
            } => {
                self.worker.metrics.allowed(auth_method);
                self.forward_with(&set_headers);
                // The route depends on x-tollgate-route-group: when it was set, or a client's
                // copy removed, Envoy must choose the route again.
                let routing_changed = set_headers
                    .iter()
                    .map(|(name, _)| name)
                    .chain(&self.headers_to_remove)
                    .any(|name| name == ROUTE_GROUP_HEADER);
                if routing_changed {
                    if let Err(status) =
                        proxy_wasm::hostcalls::call_foreign_function("clear_route_cache", None)
                    {
                        log::warn!("could not clear the route cache: {status:?}");
                    }
                }
                Action::Continue
            }
            Decision::Deny {
                status,
                code,
                message,
            } => {
                self.worker.metrics.denied(code);
                self.send_http_response(
                    status,
                    vec![("content-type", "application/json")],
                    Some(error_body(code, message).as_bytes()),
                );
                Action::Pause
            }
            Decision::Lookup(lookup) => self.start_lookup(lookup),
        }
    }

    /// Replaces the request's headers in one host call: the client's credential and
    /// `x-tollgate-*` headers out, the identity headers in, the session cookie cut.
    fn forward_with(&mut self, set_headers: &[(String, String)]) {
        let cookie_rewrite = self.cookie_rewrite.take();
        let mut headers = std::mem::take(&mut self.headers);
        headers.retain(|(name, _)| {
            let replaced = cookie_rewrite.is_some() && name.eq_ignore_ascii_case("cookie");
            !replaced && !self.headers_to_remove.iter().any(|removed| removed == name)
        });
        if let Some(Some(cookie)) = cookie_rewrite {
            headers.push(("cookie".to_owned(), cookie.into_bytes()));
        }
        let forwarded: Vec<(&str, &[u8])> = headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_slice()))
            .chain(
                set_headers
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.as_bytes())),
            )
            .collect();
        self.set_http_request_headers_bytes(forwarded);
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
                self.pending = Some((lookup, self.now_ms()));
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
        let headers = self.get_http_request_headers_bytes();
        self.presented = extract(&headers, self.worker.config.max_credential_bytes);
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
                .find(|(n, _)| n == name)
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
                .unwrap_or_default()
                .to_owned()
        };
        self.method = text(":method");
        self.path = text(":path");
        let forwarded_for: Vec<&[u8]> = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(FORWARDED_FOR_HEADER))
            .map(|(_, v)| v.as_slice())
            .collect();
        self.forwarded_for = forwarded_for.join(&b", "[..]);
        self.headers = headers;
    }
}

impl Context for TollgateRequest {
    fn on_grpc_call_response(&mut self, _token_id: u32, status_code: u32, response_size: usize) {
        let Some((lookup, started_ms)) = self.pending.take() else {
            return;
        };
        let now_ms = self.now_ms();
        self.worker
            .metrics
            .lookup_took(u64::try_from(now_ms - started_ms).unwrap_or(0));
        let body = match response_size {
            0 => None,
            size => self.get_grpc_call_response_body(0, size),
        };
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
        if self.apply(decision) == Action::Continue {
            self.resume_http_request();
        }
    }
}

impl HttpContext for TollgateRequest {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.read_request();
        if matches!(self.presented, Ok(Presented::Session { .. })) {
            // Until the first tick after the keys arrive, look for them on the spot.
            self.worker.load_session_keys_if_missing();
        }
        let decision = self.decide(Stage::First);
        self.apply(decision)
    }
}
