//! Counters in this process's memory, for a control plane that runs alone.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::batches::RecentBatches;
use super::envoys::RecentEnvoys;
use super::gcra::{self, Bucket};
use super::{Charged, Checked, CounterError, Counters, Draw, BATCH_MEMORY, ENVOY_PRESENCE};

/// How often full buckets are looked for and dropped.
const SWEEP_INTERVAL_US: u64 = 10_000_000;

/// A bucket's name: subject and window.
type BucketKey = (String, u32);

/// Buckets behind one lock: a check reads and writes all its buckets at once.
pub struct LocalCounters {
    started: Instant,
    state: Mutex<State>,
}

struct State {
    buckets: HashMap<BucketKey, Bucket>,
    envoys: RecentEnvoys,
    batches: RecentBatches,
    last_sweep_us: u64,
}

impl LocalCounters {
    pub fn new() -> Self {
        metrics::gauge!("tollgate_counter_backend_up").set(1.0);
        Self {
            started: Instant::now(),
            state: Mutex::new(State {
                buckets: HashMap::new(),
                envoys: RecentEnvoys::default(),
                batches: RecentBatches::new(micros(BATCH_MEMORY)),
                last_sweep_us: 0,
            }),
        }
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

impl Default for LocalCounters {
    fn default() -> Self {
        Self::new()
    }
}

impl State {
    fn backlog(&self, draw: &Draw, now_us: u64) -> gcra::Ticks {
        self.buckets
            .get(&key(draw))
            .map_or(0, |bucket| bucket.backlog(&draw.limit, now_us))
    }

    fn store(&mut self, draw: &Draw, backlog: gcra::Ticks, now_us: u64) {
        self.buckets
            .insert(key(draw), Bucket::new(backlog, &draw.limit, now_us));
    }

    fn sweep(&mut self, now_us: u64) {
        if now_us.saturating_sub(self.last_sweep_us) < SWEEP_INTERVAL_US {
            return;
        }
        self.last_sweep_us = now_us;
        self.buckets
            .retain(|_, bucket| bucket.full_at_us() > now_us);
    }
}

fn key(draw: &Draw) -> BucketKey {
    (draw.subject.clone(), draw.limit.window_seconds)
}

#[async_trait]
impl Counters for LocalCounters {
    async fn check(&self, draws: &[Draw]) -> Result<Checked, CounterError> {
        let now_us = self.now_us();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.sweep(now_us);
        let before: Vec<_> = draws.iter().map(|d| state.backlog(d, now_us)).collect();
        let taken = gcra::take_all(
            before
                .iter()
                .zip(draws)
                .map(|(backlog, draw)| (*backlog, &draw.limit, draw.count)),
        );
        let admitted = taken.is_some();
        let after = taken.unwrap_or(before);
        if admitted {
            for (draw, backlog) in draws.iter().zip(&after) {
                state.store(draw, *backlog, now_us);
            }
        }
        Ok(Checked {
            admitted,
            backlog_ms: backlogs_ms(draws, &after),
        })
    }

    async fn charge(
        &self,
        node_id: &str,
        batch_id: &str,
        max_envoys: u32,
        draws: &[Draw],
    ) -> Result<Charged, CounterError> {
        let now_us = self.now_us();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.sweep(now_us);
        let repeated = !state.batches.first_time(batch_id, now_us);
        let mut after = Vec::with_capacity(draws.len());
        for draw in draws {
            let mut backlog = state.backlog(draw, now_us);
            if !repeated {
                backlog = gcra::charge(backlog, &draw.limit, draw.count);
                state.store(draw, backlog, now_us);
            }
            after.push(backlog);
        }
        let presence = state
            .envoys
            .seen(node_id, now_us, micros(ENVOY_PRESENCE), max_envoys);
        Ok(Charged {
            backlog_ms: backlogs_ms(draws, &after),
            envoys: presence.envoys,
            counted: presence.counted,
            repeated,
        })
    }

    fn dependency(&self) -> Option<&'static str> {
        None
    }

    async fn ping(&self) -> Result<(), CounterError> {
        Ok(())
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

fn backlogs_ms(draws: &[Draw], backlogs: &[gcra::Ticks]) -> Vec<u64> {
    draws
        .iter()
        .zip(backlogs)
        .map(|(draw, backlog)| gcra::backlog_ms(*backlog, &draw.limit))
        .collect()
}
