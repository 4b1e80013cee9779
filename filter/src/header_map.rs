//! Header maps read straight through the host ABI: as the one buffer Envoy hands over, where
//! the SDK copies every name and value into an allocation of its own.

// The one place the filter calls the host ABI directly.
#![allow(unsafe_code)]

use std::ptr::null_mut;

use proxy_wasm::types::{MapType, Status};

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> Status;
}

/// A header map, serialized as `tollgate_filter_core::header_pairs` reads it; empty when
/// Envoy has none to give.
pub fn serialized(map_type: MapType) -> Vec<u8> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: on success the host has allocated `size` bytes at `data` with the VM's own
    // allocator (`proxy_on_memory_allocate`), so the vector takes them over.
    unsafe {
        match proxy_get_header_map_pairs(map_type, &mut data, &mut size) {
            Status::Ok if !data.is_null() => Vec::from_raw_parts(data, size, size),
            _ => Vec::new(),
        }
    }
}
