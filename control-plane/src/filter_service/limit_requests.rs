//! The filter's bucket lists, checked. A bucket is named by its subject and its window; the
//! rest of the limit the filter sends is its own copy and is not read.

use std::collections::HashSet;

use tonic::Status;

use crate::limits::allowances::MAX_NODE_ID_BYTES;
use crate::limits::subjects::Subject;
use crate::proto::v1::BucketRef;

pub const MAX_BUCKETS: usize = 64;
pub const MAX_SUBJECT_BYTES: usize = 512;
pub const MAX_BATCH_ID_BYTES: usize = 128;
const WINDOWS: [u32; 3] = [1, 60, 3600];
const MAX_COUNT: u32 = 1_000_000;

/// One bucket a call names, and how many requests it takes or reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    /// The subject as the filter spelled it: the bucket's name.
    pub name: String,
    pub subject: Subject,
    pub window_seconds: u32,
    pub count: u32,
}

/// The buckets a call names, or `invalid_argument` naming the first field at fault.
pub fn buckets(buckets: &[BucketRef]) -> Result<Vec<Asked>, Status> {
    if buckets.is_empty() || buckets.len() > MAX_BUCKETS {
        return Err(Status::invalid_argument(format!(
            "buckets: must name 1 to {MAX_BUCKETS} buckets"
        )));
    }
    let mut named = HashSet::new();
    let mut asked = Vec::with_capacity(buckets.len());
    for (index, bucket) in buckets.iter().enumerate() {
        let one = bucket_ref(bucket).map_err(|(field, problem)| {
            Status::invalid_argument(format!("buckets[{index}].{field}: {problem}"))
        })?;
        if !named.insert((bucket.subject.as_str(), one.window_seconds)) {
            return Err(Status::invalid_argument(format!(
                "buckets[{index}]: names a bucket (subject and limit.window_seconds) again"
            )));
        }
        asked.push(one);
    }
    Ok(asked)
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

/// Checks the id a sync's batch is charged once by.
pub fn batch_id(batch_id: &str) -> Result<(), Status> {
    if batch_id.is_empty() || batch_id.len() > MAX_BATCH_ID_BYTES {
        return Err(Status::invalid_argument(format!(
            "batch_id: must be 1 to {MAX_BATCH_ID_BYTES} bytes"
        )));
    }
    Ok(())
}

fn bucket_ref(bucket: &BucketRef) -> Result<Asked, (&'static str, String)> {
    if bucket.subject.is_empty() || bucket.subject.len() > MAX_SUBJECT_BYTES {
        return Err(("subject", format!("must be 1 to {MAX_SUBJECT_BYTES} bytes")));
    }
    let subject = Subject::parse(&bucket.subject).ok_or((
        "subject",
        "must be ip:<address>, user:<user id>, key:<key id> or route:<route>".into(),
    ))?;
    let limit = bucket
        .limit
        .as_ref()
        .ok_or(("limit", "is required".into()))?;
    if !WINDOWS.contains(&limit.window_seconds) {
        return Err(("limit.window_seconds", "must be 1, 60 or 3600".into()));
    }
    if !(1..=MAX_COUNT).contains(&bucket.count) {
        return Err(("count", format!("must be 1 to {MAX_COUNT}")));
    }
    Ok(Asked {
        name: bucket.subject.clone(),
        subject,
        window_seconds: limit.window_seconds,
        count: bucket.count,
    })
}
