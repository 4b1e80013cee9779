//! The filter's bucket lists, checked and turned into draws.

use std::collections::HashSet;

use tonic::Status;

use crate::limits::counters::{Draw, Limit};
use crate::proto::v1::BucketRef;

pub const MAX_BUCKETS: usize = 64;
pub const MAX_SUBJECT_BYTES: usize = 512;
pub const MAX_NODE_ID_BYTES: usize = 512;
const WINDOWS: [u32; 3] = [1, 60, 3600];
const MAX_REQUESTS: u64 = 1_000_000_000;
const MAX_COUNT: u32 = 1_000_000;

/// Draws for `buckets`, or `invalid_argument` naming the first field at fault.
pub fn draws(buckets: &[BucketRef]) -> Result<Vec<Draw>, Status> {
    if buckets.is_empty() || buckets.len() > MAX_BUCKETS {
        return Err(Status::invalid_argument(format!(
            "buckets: must name 1 to {MAX_BUCKETS} buckets"
        )));
    }
    let mut named = HashSet::new();
    let mut draws = Vec::with_capacity(buckets.len());
    for (index, bucket) in buckets.iter().enumerate() {
        let draw = draw(bucket).map_err(|(field, problem)| {
            Status::invalid_argument(format!("buckets[{index}].{field}: {problem}"))
        })?;
        if !named.insert((bucket.subject.as_str(), draw.limit.window_seconds)) {
            return Err(Status::invalid_argument(format!(
                "buckets[{index}]: names a bucket (subject and limit.window_seconds) again"
            )));
        }
        draws.push(draw);
    }
    Ok(draws)
}

/// Checks the node id a sync names its Envoy by; empty is allowed.
pub fn node_id(node_id: &str) -> Result<(), Status> {
    if node_id.len() > MAX_NODE_ID_BYTES {
        return Err(Status::invalid_argument(format!(
            "node_id: must be at most {MAX_NODE_ID_BYTES} bytes"
        )));
    }
    Ok(())
}

fn draw(bucket: &BucketRef) -> Result<Draw, (&'static str, String)> {
    if bucket.subject.is_empty() || bucket.subject.len() > MAX_SUBJECT_BYTES {
        return Err(("subject", format!("must be 1 to {MAX_SUBJECT_BYTES} bytes")));
    }
    let limit = bucket
        .limit
        .as_ref()
        .ok_or(("limit", "is required".into()))?;
    if !WINDOWS.contains(&limit.window_seconds) {
        return Err(("limit.window_seconds", "must be 1, 60 or 3600".into()));
    }
    if !(1..=MAX_REQUESTS).contains(&limit.requests) {
        return Err(("limit.requests", format!("must be 1 to {MAX_REQUESTS}")));
    }
    if !(1..=MAX_REQUESTS).contains(&limit.burst) {
        return Err(("limit.burst", format!("must be 1 to {MAX_REQUESTS}")));
    }
    if !(1..=MAX_COUNT).contains(&bucket.count) {
        return Err(("count", format!("must be 1 to {MAX_COUNT}")));
    }
    Ok(Draw {
        subject: bucket.subject.clone(),
        limit: Limit {
            window_seconds: limit.window_seconds,
            requests: limit.requests,
            burst: limit.burst,
        },
        count: bucket.count,
    })
}
