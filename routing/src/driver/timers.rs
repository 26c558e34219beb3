//! The driver's clock and timer queue.
//!
//! The core names timers by id and says when they are due
//! ([`crate::Output::ArmTimer`]); re-arming an id moves it, cancelling
//! forgets it. The queue keeps one deadline per id and hands back, in time
//! order, every id that is due.

use std::collections::{BTreeMap, BTreeSet};

use tokio::time::Instant;

use crate::Time;

/// Milliseconds since the driver started, the core's notion of time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    epoch: Instant,
}

impl Clock {
    /// Start the clock at zero now.
    pub(crate) fn start() -> Self {
        Self {
            epoch: Instant::now(),
        }
    }

    /// Return the current time.
    pub(crate) fn now(&self) -> Time {
        Time(u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// Return the instant of `t`, for `sleep_until`.
    pub(crate) fn instant(&self, t: Time) -> Instant {
        self.epoch + std::time::Duration::from_millis(t.0)
    }
}

/// Pending timers: one deadline per id.
#[derive(Debug)]
pub(crate) struct TimerQueue<K> {
    deadline: BTreeMap<K, Time>,
    queue: BTreeSet<(Time, K)>,
}

impl<K: Ord + Copy> Default for TimerQueue<K> {
    fn default() -> Self {
        Self {
            deadline: BTreeMap::new(),
            queue: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Copy> TimerQueue<K> {
    /// Set timer `id` to fire at `at`, replacing an earlier deadline.
    pub(crate) fn arm(&mut self, id: K, at: Time) {
        if let Some(old) = self.deadline.insert(id, at) {
            self.queue.remove(&(old, id));
        }
        self.queue.insert((at, id));
    }

    /// Forget timer `id`.
    pub(crate) fn cancel(&mut self, id: K) {
        if let Some(old) = self.deadline.remove(&id) {
            self.queue.remove(&(old, id));
        }
    }

    /// Return the earliest deadline.
    pub(crate) fn next(&self) -> Option<Time> {
        self.queue.first().map(|(t, _)| *t)
    }

    /// Remove and return the earliest timer due at `now`.
    pub(crate) fn pop_due(&mut self, now: Time) -> Option<K> {
        let &(at, id) = self.queue.first()?;
        if at > now {
            return None;
        }
        self.queue.pop_first();
        self.deadline.remove(&id);
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rearm_moves_and_cancel_forgets() {
        let mut q = TimerQueue::default();
        q.arm(1, Time(100));
        q.arm(2, Time(50));
        q.arm(1, Time(10));
        q.arm(3, Time(70));
        q.cancel(3);
        assert_eq!(q.deadline.len(), 2);
        assert_eq!(q.next(), Some(Time(10)));
        assert_eq!(q.pop_due(Time(5)), None);
        assert_eq!(q.pop_due(Time(60)), Some(1));
        assert_eq!(q.pop_due(Time(60)), Some(2));
        assert_eq!(q.pop_due(Time(1000)), None);
        assert_eq!(q.next(), None);
    }
}
