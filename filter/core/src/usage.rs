//! Usage counted on one worker and reported in batches. A batch keeps its id until the
//! control plane acknowledges it, so a retry after a timeout is applied only once.

use std::collections::HashMap;

use crate::proto::{ReportUsageRequest, UsageDelta};

/// The most users one batch carries (the control plane refuses more); the rest wait for the
/// next batch.
pub const MAX_USERS_PER_BATCH: usize = 10_000;

/// What this worker counted and has not had acknowledged.
pub struct UsageBuffer {
    batch_prefix: String,
    next_sequence: u64,
    current: HashMap<String, UsageDelta>,
    unacknowledged: Option<ReportUsageRequest>,
}

impl UsageBuffer {
    /// `batch_prefix` must be unique to this worker VM's lifetime.
    pub fn new(batch_prefix: String) -> Self {
        Self {
            batch_prefix,
            next_sequence: 0,
            current: HashMap::new(),
            unacknowledged: None,
        }
    }

    /// Adds to the user's counts.
    pub fn record(&mut self, user_id: &str, add: impl FnOnce(&mut UsageDelta)) {
        let delta = match self.current.get_mut(user_id) {
            Some(delta) => delta,
            None => self
                .current
                .entry(user_id.to_owned())
                .or_insert_with(|| UsageDelta {
                    user_id: user_id.to_owned(),
                    ..UsageDelta::default()
                }),
        };
        add(delta);
    }

    /// The batch to send: the unacknowledged one again, else everything counted since.
    pub fn next_batch(&mut self) -> Option<&ReportUsageRequest> {
        if self.unacknowledged.is_none() && !self.current.is_empty() {
            let batch_id = format!("{}-{}", self.batch_prefix, self.next_sequence);
            self.next_sequence += 1;
            let users: Vec<String> = self
                .current
                .keys()
                .take(MAX_USERS_PER_BATCH)
                .cloned()
                .collect();
            let usage = users
                .iter()
                .filter_map(|user| self.current.remove(user))
                .collect();
            self.unacknowledged = Some(ReportUsageRequest {
                batch_id,
                usage,
                settled_allowances: Vec::new(),
            });
        }
        self.unacknowledged.as_ref()
    }

    /// The control plane applied the batch, or refused it as malformed (which no retry
    /// changes).
    pub fn acknowledged(&mut self, batch_id: &str) {
        if self
            .unacknowledged
            .as_ref()
            .is_some_and(|batch| batch.batch_id == batch_id)
        {
            self.unacknowledged = None;
        }
    }
}

/// Envoy's router adds this header to every answer of an upstream, and to nothing else.
const UPSTREAM_SERVICE_TIME_HEADER: &str = "x-envoy-upstream-service-time";
const FIRST_ERROR_STATUS: u32 = 400;
const GRPC_STATUS_HEADER: &str = "grpc-status";

/// Whether the answer to an allowed request counts against its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    Yes,
    /// The headers cannot tell: ask Envoy whether the upstream answered.
    AskEnvoy,
}

/// What the answer's headers show: an upstream's answer counts, and so does a success Envoy
/// answered itself (a `direct_response` route). An error without the router's mark may be
/// Envoy's own (no healthy upstream, a timeout, a refusal by a later filter), which does not
/// count, so Envoy is asked about those, and about gRPC answers without the mark (a gRPC
/// error is a 200 with `grpc-status` in its headers).
pub fn charge_for<N: AsRef<str>, V: AsRef<[u8]>>(headers: &[(N, V)]) -> Charge {
    let from_upstream = headers
        .iter()
        .any(|(name, _)| name.as_ref() == UPSTREAM_SERVICE_TIME_HEADER);
    let status = headers
        .iter()
        .find(|(name, _)| name.as_ref() == ":status")
        .and_then(|(_, value)| {
            std::str::from_utf8(value.as_ref())
                .ok()?
                .parse::<u32>()
                .ok()
        });
    // Envoy answers a gRPC call's errors with 200 and a `grpc-status`.
    let grpc = headers
        .iter()
        .any(|(name, _)| name.as_ref() == GRPC_STATUS_HEADER);
    match status {
        _ if from_upstream => Charge::Yes,
        Some(status) if status < FIRST_ERROR_STATUS && !grpc => Charge::Yes,
        _ => Charge::AskEnvoy,
    }
}

/// The metered size of a message's headers: every header name and value, as Envoy counts
/// them. Bodies are metered chunk by chunk as they pass.
pub fn header_bytes<N: AsRef<str>, V: AsRef<[u8]>>(headers: &[(N, V)]) -> u64 {
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_ref().len() + value.as_ref().len())
        .sum();
    u64::try_from(bytes).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn upstream_answers_and_envoys_own_successes_count() {
        let answer = |pairs: &[(&str, &str)]| {
            let headers: Vec<(&str, &[u8])> =
                pairs.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
            charge_for(&headers)
        };
        let from_upstream = [(":status", "503"), ("x-envoy-upstream-service-time", "3")];
        assert_eq!(answer(&from_upstream), Charge::Yes);
        assert_eq!(answer(&[(":status", "200")]), Charge::Yes);
        assert_eq!(answer(&[(":status", "302")]), Charge::Yes);
        assert_eq!(answer(&[(":status", "503")]), Charge::AskEnvoy);
        assert_eq!(answer(&[(":status", "2oo")]), Charge::AskEnvoy);
        let grpc_error = [(":status", "200"), ("grpc-status", "14")];
        assert_eq!(answer(&grpc_error), Charge::AskEnvoy);
    }

    #[test]
    fn header_bytes_count_every_name_and_value() {
        let get = headers(&[(":method", "GET"), (":path", "/a")]);
        assert_eq!(header_bytes(&get), 7 + 3 + 5 + 2);
        assert_eq!(header_bytes::<&str, &[u8]>(&[]), 0);
    }

    fn requests(buffer: &mut UsageBuffer, user: &str, count: u64) {
        buffer.record(user, |delta| delta.requests += count);
    }

    #[test]
    fn nothing_counted_sends_nothing() {
        assert!(UsageBuffer::new("w".to_owned()).next_batch().is_none());
    }

    #[test]
    fn a_batch_is_resent_with_its_id_until_acknowledged() {
        let mut buffer = UsageBuffer::new("w".to_owned());
        requests(&mut buffer, "u_1", 2);
        let first = buffer.next_batch().cloned().expect("batch");
        assert_eq!(first.usage[0].requests, 2);
        requests(&mut buffer, "u_1", 5);
        assert_eq!(
            buffer.next_batch(),
            Some(&first),
            "the retry is the same batch"
        );

        buffer.acknowledged(&first.batch_id);
        let second = buffer.next_batch().cloned().expect("batch");
        assert_ne!(second.batch_id, first.batch_id);
        assert_eq!(second.usage[0].requests, 5);
        buffer.acknowledged(&second.batch_id);
        assert!(buffer.next_batch().is_none());
    }

    #[test]
    fn a_stale_acknowledgement_keeps_the_batch() {
        let mut buffer = UsageBuffer::new("w".to_owned());
        requests(&mut buffer, "u_1", 1);
        let batch = buffer.next_batch().cloned().expect("batch");
        buffer.acknowledged("w-99");
        assert_eq!(buffer.next_batch(), Some(&batch));
    }

    #[test]
    fn a_batch_carries_at_most_its_share_of_users() {
        let mut buffer = UsageBuffer::new("w".to_owned());
        for user in 0..MAX_USERS_PER_BATCH + 5 {
            requests(&mut buffer, &format!("u_{user}"), 1);
        }
        let first = buffer.next_batch().cloned().expect("batch");
        assert_eq!(first.usage.len(), MAX_USERS_PER_BATCH);
        buffer.acknowledged(&first.batch_id);
        assert_eq!(buffer.next_batch().expect("rest").usage.len(), 5);
    }

    #[test]
    fn counts_add_up_per_user() {
        let mut buffer = UsageBuffer::new("w".to_owned());
        requests(&mut buffer, "u_1", 1);
        requests(&mut buffer, "u_2", 1);
        buffer.record("u_1", |delta| delta.bytes += 100);
        let batch = buffer.next_batch().expect("batch");
        let u1 = batch
            .usage
            .iter()
            .find(|d| d.user_id == "u_1")
            .expect("u_1");
        assert_eq!((u1.requests, u1.bytes), (1, 100));
        assert_eq!(batch.usage.len(), 2);
    }
}
