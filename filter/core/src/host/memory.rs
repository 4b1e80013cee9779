//! Envoy in memory, for tests. Hosts made with [`MemoryHost::another_worker`] share one
//! shared-data map (with Envoy's compare-and-swap versions) and one clock, as the worker VMs
//! of one Envoy do; each has its own request, callouts and replies.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use super::{GrpcCall, HeaderMap, Host, HostError, WriteError};
use crate::header_pairs::serialize;

/// A gRPC call the filter started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub token: u32,
    pub method: String,
    pub request_id: Option<Vec<u8>>,
    pub message: Vec<u8>,
}

/// An answer the filter sent the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

#[derive(Default)]
struct Envoy {
    shared: HashMap<String, (Vec<u8>, u32)>,
    last_version: u32,
    now_us: i64,
    last_token: u32,
}

type WriteHook = Box<dyn FnMut(&str)>;

#[derive(Default)]
pub struct MemoryHost {
    envoy: Rc<RefCell<Envoy>>,
    /// Runs before each of this worker's shared-data writes (with the key), to let another
    /// worker write in between.
    before_write: RefCell<Option<WriteHook>>,
    writes: Cell<u32>,
    unreachable: Cell<bool>,
    /// Envoy's `source.address` of the request.
    peer: RefCell<Option<String>>,
    calls: RefCell<Vec<Call>>,
    cancelled: RefCell<Vec<u32>>,
    request: RefCell<Vec<(String, String)>>,
    response: RefCell<Vec<(String, String)>>,
    replies: RefCell<Vec<Reply>>,
}

impl MemoryHost {
    /// A host at `now_us` on the Unix clock.
    pub fn at(now_us: i64) -> Self {
        let host = Self::default();
        host.set_now_us(now_us);
        host
    }

    /// Another worker VM of the same Envoy: the same shared data and clock.
    pub fn another_worker(&self) -> Self {
        Self {
            envoy: Rc::clone(&self.envoy),
            ..Self::default()
        }
    }

    pub fn set_now_us(&self, now_us: i64) {
        self.envoy.borrow_mut().now_us = now_us;
    }

    /// Runs `hook` before each shared-data write of this worker.
    pub fn before_each_write(&self, hook: impl FnMut(&str) + 'static) {
        *self.before_write.borrow_mut() = Some(Box::new(hook));
    }

    /// How many shared-data writes this worker attempted.
    pub fn writes(&self) -> u32 {
        self.writes.get()
    }

    /// Makes every callout fail to start, as with an unknown cluster.
    pub fn set_unreachable(&self, unreachable: bool) {
        self.unreachable.set(unreachable);
    }

    /// Sets the request's peer address, as Envoy's `source.address` gives it.
    pub fn set_peer(&self, source_address: &str) {
        *self.peer.borrow_mut() = Some(source_address.to_owned());
    }

    pub fn shared(&self, key: &str) -> Option<Vec<u8>> {
        let envoy = self.envoy.borrow();
        envoy.shared.get(key).map(|(bytes, _)| bytes.clone())
    }

    /// The calls started since the last look.
    pub fn take_calls(&self) -> Vec<Call> {
        self.calls.take()
    }

    /// The tokens of the calls cancelled since the last look.
    pub fn take_cancelled(&self) -> Vec<u32> {
        self.cancelled.take()
    }

    /// Sets the request's headers, as a new request brings them.
    pub fn set_request(&self, headers: &[(&str, &str)]) {
        *self.request.borrow_mut() = owned(headers);
    }

    pub fn request(&self) -> Vec<(String, String)> {
        self.request.borrow().clone()
    }

    pub fn set_response(&self, headers: &[(&str, &str)]) {
        *self.response.borrow_mut() = owned(headers);
    }

    pub fn response(&self) -> Vec<(String, String)> {
        self.response.borrow().clone()
    }

    fn map(&self, map: HeaderMap) -> &RefCell<Vec<(String, String)>> {
        match map {
            HeaderMap::Request => &self.request,
            HeaderMap::Response => &self.response,
        }
    }

    /// The answers sent to the client since the last look.
    pub fn take_replies(&self) -> Vec<Reply> {
        self.replies.take()
    }
}

fn owned(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

impl Host for MemoryHost {
    fn now_us(&self) -> i64 {
        self.envoy.borrow().now_us
    }

    fn shared_data_get(&self, key: &str) -> Option<(Vec<u8>, Option<u32>)> {
        let envoy = self.envoy.borrow();
        let (bytes, version) = envoy.shared.get(key)?;
        Some((bytes.clone(), Some(*version)))
    }

    fn shared_data_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), WriteError> {
        self.writes.set(self.writes.get() + 1);
        let hook = self.before_write.take();
        if let Some(mut hook) = hook {
            hook(key);
            *self.before_write.borrow_mut() = Some(hook);
        }
        let mut envoy = self.envoy.borrow_mut();
        let current = envoy.shared.get(key).map(|(_, version)| *version);
        if cas.is_some() && current.is_some() && cas != current {
            return Err(WriteError::CasMismatch);
        }
        envoy.last_version += 1;
        let version = envoy.last_version;
        envoy
            .shared
            .insert(key.to_owned(), (value.to_vec(), version));
        Ok(())
    }

    fn dispatch_grpc_call(&self, call: GrpcCall<'_>) -> Result<u32, HostError> {
        if self.unreachable.get() {
            return Err(HostError("BadArgument".to_owned()));
        }
        let mut envoy = self.envoy.borrow_mut();
        envoy.last_token += 1;
        let token = envoy.last_token;
        self.calls.borrow_mut().push(Call {
            token,
            method: call.method.to_owned(),
            request_id: call.request_id.map(<[u8]>::to_vec),
            message: call.message.to_vec(),
        });
        Ok(token)
    }

    fn cancel_grpc_call(&self, token: u32) {
        self.cancelled.borrow_mut().push(token);
    }

    /// Only the peer address (when set); how the stream ended is unknown.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        match path {
            ["source", "address"] => self.peer.borrow().clone().map(String::into_bytes),
            _ => None,
        }
    }

    fn headers(&self, map: HeaderMap) -> Vec<u8> {
        serialize(&self.map(map).borrow())
    }

    fn set_header(&self, map: HeaderMap, name: &str, value: Option<&str>) {
        let mut headers = self.map(map).borrow_mut();
        headers.retain(|(known, _)| known != name);
        headers.extend(value.map(|value| (name.to_owned(), value.to_owned())));
    }

    fn add_header(&self, map: HeaderMap, name: &str, value: &str) {
        let mut headers = self.map(map).borrow_mut();
        headers.push((name.to_owned(), value.to_owned()));
    }

    fn clear_route_cache(&self) {}

    fn send_reply(&self, status: u32, headers: Vec<(&str, &str)>, body: &[u8]) {
        self.replies.borrow_mut().push(Reply {
            status,
            headers: owned(&headers),
            body: String::from_utf8_lossy(body).into_owned(),
        });
    }
}
