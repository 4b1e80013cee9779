//! A worker's share of syncing: it follows the change feed while it holds the lease, and stops
//! (its watch cancelled) once it does not, so that an Envoy has one watch on the control plane
//! whether or not its bootstrap runs the `tollgate_sync` service.

use crate::config::PluginConfig;
use crate::host::Host;
use crate::metrics::Metrics;
use crate::sync::follower::{CallAnswer, FeedFollower};
use crate::sync::lease::SyncElection;

const MICROS_PER_MILLI: i64 = 1000;

/// The election and the watch loop of one worker.
pub struct ElectedSyncer {
    election: SyncElection,
    follower: FeedFollower,
    following: bool,
}

impl ElectedSyncer {
    /// `candidate` names this worker's VM in the lease; `node_id` names its Envoy to the
    /// control plane.
    pub fn new(candidate: String, node_id: String) -> Self {
        Self {
            election: SyncElection::new(candidate),
            follower: FeedFollower::new(node_id),
            following: false,
        }
    }

    /// The worker's tick: renews or takes the lease, then starts following (from the state
    /// published so far), keeps following, or stops.
    pub fn tick(&mut self, host: &impl Host, config: &PluginConfig, metrics: &Metrics) {
        let holds = self.election.tick(host, host.now_us() / MICROS_PER_MILLI);
        if holds && !self.following {
            log::info!("this worker follows the change feed for its Envoy");
            self.follower.resume(host);
        }
        if !holds && self.following {
            self.follower.stop(host);
        }
        self.following = holds;
        if holds {
            self.follower.tick(host, config, metrics);
        }
    }

    /// Handles the answer to a call of this worker; false when it was not a watch. An answer
    /// that arrives after the lease was lost is dropped unpublished.
    pub fn on_answer(
        &mut self,
        host: &impl Host,
        config: &PluginConfig,
        metrics: &Metrics,
        answer: CallAnswer<'_>,
    ) -> bool {
        if !self.follower.awaits(answer.token) {
            return false;
        }
        if self
            .election
            .still_holds(host, host.now_us() / MICROS_PER_MILLI)
        {
            self.follower.on_answer(host, config, metrics, answer);
        } else {
            self.follower.drop_answer();
            self.following = false;
        }
        true
    }

    /// Stops following and hands the lease on, as the worker's VM goes away.
    pub fn shut_down(&mut self, host: &impl Host) {
        self.follower.stop(host);
        self.following = false;
        self.election.release(host);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::memory::MemoryHost;
    use crate::proto::WatchChangesResponse;
    use crate::sync::lease::{claim_for_service, WORKER_LEASE_MS};
    use crate::sync::{SyncState, SYNC_STATE_KEY};
    use prost::Message;

    const START_US: i64 = 1_767_225_600_000_000;

    fn syncer(name: &str) -> ElectedSyncer {
        ElectedSyncer::new(name.to_owned(), "envoy-1".to_owned())
    }

    /// Two workers of one Envoy, with the configuration and metrics they share in these tests.
    fn two_workers() -> (MemoryHost, MemoryHost, PluginConfig, Metrics) {
        let first = MemoryHost::at(START_US);
        let second = first.another_worker();
        (first, second, PluginConfig::default(), Metrics::default())
    }

    fn answer_at(cursor: u64) -> Vec<u8> {
        WatchChangesResponse {
            cursor,
            ..WatchChangesResponse::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn only_the_holder_watches_and_a_deposed_holder_cancels_its_watch() {
        let (first, second, config, metrics) = two_workers();
        let (mut a, mut b) = (syncer("a"), syncer("b"));
        a.tick(&first, &config, &metrics);
        b.tick(&second, &config, &metrics);
        let watches = first.take_calls();
        assert_eq!(watches.len(), 1);
        assert!(second.take_calls().is_empty(), "one watch per Envoy");

        claim_for_service(&first, START_US / MICROS_PER_MILLI);
        a.tick(&first, &config, &metrics);
        b.tick(&second, &config, &metrics);
        assert_eq!(first.take_cancelled(), vec![watches[0].token]);
        assert!(first.take_calls().is_empty() && second.take_calls().is_empty());
    }

    #[test]
    fn an_answer_after_the_lease_was_lost_is_not_published() {
        let (first, second, config, metrics) = two_workers();
        let (mut a, mut b) = (syncer("a"), syncer("b"));
        a.tick(&first, &config, &metrics);
        let token = first.take_calls()[0].token;
        first.set_now_us(START_US + WORKER_LEASE_MS * MICROS_PER_MILLI);
        b.tick(&second, &config, &metrics);
        assert_eq!(
            second.take_calls().len(),
            1,
            "the lapsed lease was taken over"
        );

        let answer = answer_at(5);
        let answer = CallAnswer {
            token,
            grpc_status: 0,
            body: Some(&answer),
        };
        assert!(a.on_answer(&first, &config, &metrics, answer));
        assert!(first.shared(SYNC_STATE_KEY).is_none());
        assert!(first.take_calls().is_empty(), "no new watch");
        assert!(
            first.take_cancelled().is_empty(),
            "the answered call is not cancelled from its own callback"
        );
    }

    #[test]
    fn a_worker_going_away_hands_the_feed_on_at_once() {
        let (first, second, config, metrics) = two_workers();
        let (mut a, mut b) = (syncer("a"), syncer("b"));
        a.tick(&first, &config, &metrics);
        let token = first.take_calls()[0].token;
        let answer = answer_at(3);
        let answer = CallAnswer {
            token,
            grpc_status: 0,
            body: Some(&answer),
        };
        assert!(a.on_answer(&first, &config, &metrics, answer));
        a.shut_down(&first);
        b.tick(&second, &config, &metrics);
        let calls = second.take_calls();
        assert_eq!(calls.len(), 1);
        let request = crate::proto::WatchChangesRequest::decode(calls[0].message.as_slice())
            .expect("a watch");
        assert_eq!(request.since, 3);
        assert!(SyncState::from_bytes(&first.shared(SYNC_STATE_KEY).expect("state")).is_some());
    }
}
