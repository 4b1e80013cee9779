//! [`Host`] over the proxy-wasm host calls of the context that runs now.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, Status};
use tollgate_filter_core::callout::FILTER_SERVICE;
use tollgate_filter_core::clock::unix_micros;
use tollgate_filter_core::host::{GrpcCall, HeaderMap, Host, HostError, WriteError};

use crate::header_map;

/// Envoy, as the current callback reaches it.
pub struct ProxyHost;

fn host_error(status: Status) -> HostError {
    HostError(format!("{status:?}"))
}

fn map_type(map: HeaderMap) -> MapType {
    match map {
        HeaderMap::Request => MapType::HttpRequestHeaders,
        HeaderMap::Response => MapType::HttpResponseHeaders,
    }
}

impl ProxyHost {
    /// The body of the gRPC answer being delivered now.
    pub fn grpc_answer_body(response_size: usize) -> Option<Vec<u8>> {
        match response_size {
            0 => None,
            size => hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, size)
                .ok()
                .flatten(),
        }
    }
}

impl Host for ProxyHost {
    fn now_us(&self) -> i64 {
        hostcalls::get_current_time().map_or(0, unix_micros)
    }

    fn shared_data_get(&self, key: &str) -> Option<(Vec<u8>, Option<u32>)> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(bytes), cas)) => Some((bytes, cas)),
            Ok((None, _)) => None,
            Err(status) => {
                log::warn!("could not read {key} from shared data: {status:?}");
                None
            }
        }
    }

    fn shared_data_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), WriteError> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(|status| match status {
            Status::CasMismatch => WriteError::CasMismatch,
            status => WriteError::Failed(host_error(status)),
        })
    }

    fn dispatch_grpc_call(&self, call: GrpcCall<'_>) -> Result<u32, HostError> {
        hostcalls::dispatch_grpc_call(
            call.cluster,
            FILTER_SERVICE,
            call.method,
            [
                ("authorization", call.authorization),
                ("x-request-id", call.request_id),
            ]
            .into_iter()
            .filter_map(|(name, value)| Some((name, value?)))
            .collect(),
            Some(call.message),
            call.timeout,
        )
        .map_err(host_error)
    }

    fn cancel_grpc_call(&self, token: u32) {
        if let Err(status) = hostcalls::cancel_grpc_call(token) {
            log::warn!("could not cancel a gRPC call: {status:?}");
        }
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        hostcalls::get_property(path.to_vec()).ok().flatten()
    }

    fn headers(&self, map: HeaderMap) -> Vec<u8> {
        header_map::serialized(map_type(map))
    }

    fn set_header(&self, map: HeaderMap, name: &str, value: Option<&str>) {
        if let Err(status) = hostcalls::set_map_value(map_type(map), name, value) {
            log::warn!("could not set header {name}: {status:?}");
        }
    }

    fn add_header(&self, map: HeaderMap, name: &str, value: &str) {
        if let Err(status) = hostcalls::add_map_value(map_type(map), name, value) {
            log::warn!("could not add header {name}: {status:?}");
        }
    }

    fn clear_route_cache(&self) {
        if let Err(status) = hostcalls::call_foreign_function("clear_route_cache", None) {
            log::warn!("could not clear the route cache: {status:?}");
        }
    }

    fn send_reply(&self, status: u32, headers: Vec<(&str, &str)>, body: &[u8]) {
        if let Err(error) = hostcalls::send_http_response(status, headers, Some(body)) {
            log::warn!("could not answer the client: {error:?}");
        }
    }
}
