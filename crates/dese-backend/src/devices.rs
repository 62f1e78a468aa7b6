//! What the engine remembers of each device, in a table of bounded size.
//!
//! Every device id a message names could be invented, so the table holds at most
//! [`Settings::max_devices`](crate::Settings::max_devices) devices: when a new one would not
//! fit, the longest silent are forgotten first, a batch at a time, so that a flood of new ids
//! costs a scan of the table now and then rather than one per message. A message the decoder
//! refuses creates no entry at all.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::backend::{DeviceKey, Presence};
use crate::inbox::Ack;
use crate::limit::{Bucket, RateLimit};

/// How many status digests a device keeps: enough to recognise a status delivered again
/// after newer ones.
const STATUSES: usize = 4;

/// One device's state.
#[derive(Debug)]
pub(crate) struct Tracked {
    /// Its presence, once a status arrived.
    pub(crate) presence: Option<Presence>,
    /// Its rate-limit bucket, while it is not full.
    pub(crate) bucket: Option<Bucket>,
    /// When a message of it was last accepted (or it was first seen).
    pub(crate) heard: Instant,
    /// Its recent telemetry, to recognise redeliveries.
    recent: VecDeque<Seen>,
    /// Digests of its recent statuses, newest last.
    statuses: [Option<u64>; STATUSES],
}

/// One remembered telemetry message.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// A digest of its payload's bytes (which include its timestamp).
    digest: u64,
    /// The ack of its event: a copy is acknowledged once this one is.
    ack: Ack,
}

impl Tracked {
    fn new(now: Instant) -> Self {
        Self {
            presence: None,
            bucket: None,
            heard: now,
            recent: VecDeque::new(),
            statuses: [None; STATUSES],
        }
    }

    /// Remembers a telemetry message; `Some(original)` when the same bytes were seen among the
    /// last `window`: a copy, acknowledged after the original's ack.
    pub(crate) fn telemetry(&mut self, digest: u64, ack: Ack, window: usize) -> Option<Ack> {
        if let Some(original) = self.recent.iter().find(|seen| seen.digest == digest) {
            return Some(original.ack);
        }
        while self.recent.len() >= window.max(1) {
            self.recent.pop_front();
        }
        self.recent.push_back(Seen { digest, ack });
        None
    }

    /// Remembers a status; true when the same bytes were seen among the last few (a copy
    /// delivered again, perhaps after newer ones: it must not undo them).
    pub(crate) fn status(&mut self, digest: u64) -> bool {
        if self.statuses.contains(&Some(digest)) {
            return true;
        }
        self.statuses.rotate_left(1);
        self.statuses[STATUSES - 1] = Some(digest);
        false
    }
}

/// The table.
#[derive(Debug)]
pub(crate) struct Devices {
    map: HashMap<DeviceKey, Tracked>,
    capacity: usize,
    evicted: u64,
}

impl Devices {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            capacity: capacity.max(1),
            evicted: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Devices forgotten to make room for new ones.
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted
    }

    pub(crate) fn get(&self, key: &DeviceKey) -> Option<&Tracked> {
        self.map.get(key)
    }

    pub(crate) fn get_mut(&mut self, key: &DeviceKey) -> Option<&mut Tracked> {
        self.map.get_mut(key)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&DeviceKey, &Tracked)> {
        self.map.iter()
    }

    /// The device's entry, created (making room if the table is full) when it has none.
    pub(crate) fn entry(&mut self, key: &DeviceKey, now: Instant) -> &mut Tracked {
        if !self.map.contains_key(key) {
            if self.map.len() >= self.capacity {
                self.evict();
            }
            self.map.insert(key.clone(), Tracked::new(now));
        }
        // Present: found or just inserted.
        self.map
            .get_mut(key)
            .unwrap_or_else(|| unreachable!("the entry was just inserted"))
    }

    /// Forgets the longest silent sixty-fourth of the table (at least one device).
    fn evict(&mut self) {
        let batch = (self.capacity / 64).max(1);
        let mut heard: Vec<Instant> = self.map.values().map(|t| t.heard).collect();
        if heard.is_empty() {
            return;
        }
        let nth = batch.min(heard.len()) - 1;
        let (_, cutoff, _) = heard.select_nth_unstable(nth);
        let cutoff = *cutoff;
        let mut left = batch;
        self.map.retain(|_, tracked| {
            if left > 0 && tracked.heard <= cutoff {
                left -= 1;
                false
            } else {
                true
            }
        });
        self.evicted += (batch - left) as u64;
    }

    /// Drops what a device silent since `silent_since` no longer needs: a full rate-limit
    /// bucket (it would be created full again), and its telemetry window once it has been silent
    /// for `forget_after`. A device left with nothing (no presence) is forgotten.
    pub(crate) fn prune(
        &mut self,
        now: Instant,
        limit: Option<RateLimit>,
        silent_since: Instant,
        forget_after: Duration,
    ) {
        self.map.retain(|_, tracked| {
            if let (Some(limit), Some(bucket)) = (limit, tracked.bucket) {
                if bucket.full_at(limit, now) {
                    tracked.bucket = None;
                }
            }
            let quiet_from = tracked.heard.max(silent_since);
            if now.saturating_duration_since(quiet_from) >= forget_after {
                tracked.recent = VecDeque::new();
                tracked.statuses = [None; STATUSES];
            }
            tracked.presence.is_some() || tracked.bucket.is_some() || !tracked.recent.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: usize) -> DeviceKey {
        DeviceKey {
            org: "org-1".parse().unwrap(),
            device: format!("dev-{n}").parse().unwrap(),
        }
    }

    // A full table forgets its longest silent devices, a batch at a time, and never grows.
    #[test]
    fn full_table_evicts_the_longest_silent() {
        let t0 = Instant::now();
        let mut devices = Devices::new(128);
        for n in 0..128 {
            devices.entry(&key(n), t0 + Duration::from_secs(n as u64));
        }
        assert_eq!(devices.len(), 128);
        devices.entry(&key(1_000), t0 + Duration::from_secs(1_000));
        // 128 / 64 = 2 forgotten: the two heard first.
        assert_eq!(devices.evicted(), 2);
        assert_eq!(devices.len(), 127);
        assert!(devices.get(&key(0)).is_none() && devices.get(&key(1)).is_none());
        assert!(devices.get(&key(2)).is_some() && devices.get(&key(1_000)).is_some());
        for n in 2_000..10_000 {
            devices.entry(&key(n), t0 + Duration::from_secs(n as u64));
            assert!(devices.len() <= 128);
        }
    }

    // The same bytes are a copy; other bytes with the same timestamp are a new reading.
    #[test]
    fn telemetry_window_recognises_only_identical_bytes() {
        let mut tracked = Tracked::new(Instant::now());
        let inbox = &mut crate::inbox::Inbox::default();
        let (a, b) = (inbox.allocate(), inbox.allocate());
        assert_eq!(tracked.telemetry(1, a, 4), None);
        assert_eq!(tracked.telemetry(2, b, 4), None);
        assert_eq!(tracked.telemetry(1, b, 4), Some(a));
        // The window forgets the oldest.
        for digest in 3..7 {
            tracked.telemetry(digest, b, 4);
        }
        assert_eq!(tracked.telemetry(1, b, 4), None);
    }

    // A status seen among the last few is a copy; the ring forgets older ones.
    #[test]
    fn status_ring() {
        let mut tracked = Tracked::new(Instant::now());
        assert!(!tracked.status(10));
        assert!(!tracked.status(11));
        assert!(tracked.status(10));
        for digest in 12..16 {
            assert!(!tracked.status(digest));
        }
        assert!(!tracked.status(10));
    }

    // Pruning drops full buckets and, after the silence, the windows; a device with nothing
    // left is forgotten, one with a presence stays.
    #[test]
    fn prune_forgets_what_is_no_longer_needed() {
        let t0 = Instant::now();
        let limit = RateLimit {
            burst: 2,
            per_second: 1.0,
        };
        let mut devices = Devices::new(16);
        let quiet = devices.entry(&key(1), t0);
        let mut bucket = Bucket::new(limit, t0);
        assert!(bucket.take(limit, t0));
        quiet.bucket = Some(bucket);
        let inbox = &mut crate::inbox::Inbox::default();
        quiet.telemetry(7, inbox.allocate(), 8);
        devices.prune(
            t0 + Duration::from_secs(5),
            Some(limit),
            t0,
            Duration::from_secs(60),
        );
        let quiet = devices.get(&key(1)).unwrap();
        assert!(quiet.bucket.is_none(), "full again after 5 s");
        assert_eq!(quiet.recent.len(), 1, "not silent long enough yet");
        devices.prune(
            t0 + Duration::from_secs(61),
            Some(limit),
            t0,
            Duration::from_secs(60),
        );
        assert!(devices.get(&key(1)).is_none());
    }
}
