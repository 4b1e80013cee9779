//! The per-request context: authenticates the request and applies the decision.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use tollgate_filter_core::cache::CacheEntry;
use tollgate_filter_core::callout::{
    decode_lookup_answer, lookup_key_request, CalloutFailure, FILTER_SERVICE, LOOKUP_KEY_METHOD,
};
use tollgate_filter_core::clock::unix_millis;
use tollgate_filter_core::config::PluginConfig;
use tollgate_filter_core::credential::extract_credential;
use tollgate_filter_core::decision::{decide_from_callout, decide_request, Decision};
use tollgate_filter_core::digest::KeyDigest;
use tollgate_filter_core::error_body::error_body;
use tollgate_filter_core::hygiene::headers_to_remove;

use crate::key_cache::KeyCache;

/// One request on its way through the filter.
pub struct TollgateRequest {
    config: Rc<PluginConfig>,
    key_cache: Rc<KeyCache>,
    /// Client headers to strip if the request is allowed; known once the credential is read.
    headers_to_remove: Vec<String>,
    /// The key the control plane is being asked about while the request is paused.
    pending_lookup: Option<KeyDigest>,
}

impl TollgateRequest {
    /// A request context sharing the VM's configuration and key cache.
    pub fn new(config: Rc<PluginConfig>, key_cache: Rc<KeyCache>) -> Self {
        Self {
            config,
            key_cache,
            headers_to_remove: Vec::new(),
            pending_lookup: None,
        }
    }

    fn now_ms(&self) -> i64 {
        unix_millis(self.get_current_time())
    }

    /// Carries out `decision`; the returned action is what the current callback answers.
    fn apply(&mut self, decision: Decision) -> Action {
        match decision {
            Decision::Allow { set_headers } => {
                for name in &self.headers_to_remove {
                    self.remove_http_request_header(name);
                }
                for (name, value) in &set_headers {
                    self.set_http_request_header(name, Some(value));
                }
                Action::Continue
            }
            Decision::Deny {
                status,
                code,
                message,
            } => {
                self.send_http_response(
                    status,
                    vec![("content-type", "application/json")],
                    Some(error_body(code, &message).as_bytes()),
                );
                Action::Pause
            }
            Decision::Lookup { key_digest } => self.start_lookup(key_digest),
        }
    }

    fn start_lookup(&mut self, key_digest: KeyDigest) -> Action {
        let dispatched = self.dispatch_grpc_call(
            &self.config.control_plane_cluster,
            FILTER_SERVICE,
            LOOKUP_KEY_METHOD,
            vec![],
            Some(&lookup_key_request(&key_digest)),
            self.config.callout_timeout(),
        );
        match dispatched {
            Ok(_token) => {
                self.pending_lookup = Some(key_digest);
                Action::Pause
            }
            Err(status) => {
                log::warn!(
                    "could not call the control plane on cluster {}: {status:?}",
                    self.config.control_plane_cluster
                );
                let now_ms = self.now_ms();
                self.apply(decide_from_callout(
                    &Err(CalloutFailure::NotDispatched),
                    now_ms,
                ))
            }
        }
    }
}

impl Context for TollgateRequest {
    fn on_grpc_call_response(&mut self, _token_id: u32, status_code: u32, response_size: usize) {
        let Some(key_digest) = self.pending_lookup.take() else {
            return;
        };
        let now_ms = self.now_ms();
        let body = match response_size {
            0 => None,
            size => self.get_grpc_call_response_body(0, size),
        };
        let answer = decode_lookup_answer(status_code, body.as_deref());
        match &answer {
            Ok(answer) => {
                if let Some(entry) = CacheEntry::for_answer(answer, now_ms) {
                    self.key_cache.remember(key_digest, entry, now_ms);
                }
            }
            Err(failure) => log::warn!("key lookup failed: {failure}"),
        }
        if self.apply(decide_from_callout(&answer, now_ms)) == Action::Continue {
            self.resume_http_request();
        }
    }
}

impl HttpContext for TollgateRequest {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // Bytes, not strings: a header value that is not UTF-8 must be refused, not trap the VM.
        let headers = self.get_http_request_headers_bytes();
        let credential = extract_credential(&headers, self.config.max_credential_bytes);
        if let Ok(presented) = &credential {
            self.headers_to_remove = headers_to_remove(&headers, presented.source);
        }
        let now_ms = self.now_ms();
        let key_cache = &self.key_cache;
        let decision = decide_request(
            credential,
            |digest| key_cache.fresh_entry(digest, now_ms),
            now_ms,
        );
        self.apply(decision)
    }
}
