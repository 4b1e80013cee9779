//! The per-request context: hands each of Envoy's callbacks to the core's request flow.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use tollgate_filter_core::host;
use tollgate_filter_core::request::RequestFlow;
use tollgate_filter_core::worker::Worker;

use crate::host::ProxyHost;

pub struct TollgateRequest {
    flow: RequestFlow,
}

impl TollgateRequest {
    pub fn new(worker: Rc<Worker>) -> Self {
        Self {
            flow: RequestFlow::new(worker),
        }
    }
}

fn action(next: host::Action) -> Action {
    match next {
        host::Action::Continue => Action::Continue,
        host::Action::Pause => Action::Pause,
    }
}

impl Context for TollgateRequest {
    fn on_grpc_call_response(&mut self, _token_id: u32, status_code: u32, response_size: usize) {
        let body = ProxyHost::grpc_answer_body(response_size);
        let next = self
            .flow
            .on_callout_answer(&ProxyHost, status_code, body.as_deref());
        if next == host::Action::Continue {
            self.resume_http_request();
        }
    }
}

impl HttpContext for TollgateRequest {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        action(self.flow.on_request_headers(&ProxyHost))
    }

    fn on_http_request_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        self.flow.on_request_body(body_size);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.flow.on_response_headers(&ProxyHost);
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        self.flow.on_response_body(body_size);
        Action::Continue
    }

    fn on_log(&mut self) {
        self.flow.on_log(&ProxyHost);
    }
}
