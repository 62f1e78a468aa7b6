//! Messages on their way to the broker: queued while the link is down, handed to the transport
//! in order, and kept until the broker acknowledges them.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use dese_protocol::MessageKind;

/// Identifies one message handed to the transport, for the engine's `handle_acked`
/// ([`Device::handle_acked`], and the backend engine's, which uses this type too).
///
/// [`Device::handle_acked`]: crate::Device::handle_acked
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(pub u64);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Queued {
    pub(crate) id: MessageId,
    pub(crate) kind: MessageKind,
    pub(crate) payload: Vec<u8>,
}

impl Queued {
    /// A status is never replayed: the device publishes a fresh one on every connection.
    pub(crate) fn replayable(&self) -> bool {
        self.kind != MessageKind::Status
    }
}

/// Every message is either queued or in flight until acknowledged. The capacity bounds both
/// together (statuses aside); when a new message would exceed it, the oldest queued telemetry is dropped (or,
/// with no telemetry queued, the oldest queued message), and the drop is counted by kind.
#[derive(Debug)]
pub(crate) struct Outbox {
    queued: VecDeque<Queued>,
    in_flight: VecDeque<Queued>,
    capacity: usize,
    dropped: [u64; 6],
    /// Messages dropped for room since the engine last took them (for its journal).
    evicted: Vec<MessageId>,
}

impl Outbox {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            queued: VecDeque::new(),
            in_flight: VecDeque::new(),
            capacity: capacity.max(1),
            dropped: [0; 6],
            evicted: Vec::new(),
        }
    }

    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub(crate) fn dropped(&self, kind: MessageKind) -> u64 {
        self.dropped[index(kind)]
    }

    pub(crate) fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    /// The ids dropped for room since the last call.
    pub(crate) fn take_evicted(&mut self) -> Vec<MessageId> {
        core::mem::take(&mut self.evicted)
    }

    /// Adds a message behind the others.
    pub(crate) fn push_back(&mut self, message: Queued) {
        self.queued.push_back(message);
        self.trim();
    }

    /// Adds a message ahead of the others (the status after a reconnect).
    pub(crate) fn push_front(&mut self, message: Queued) {
        self.queued.push_front(message);
        self.trim();
    }

    /// Hands out the oldest queued message, if fewer than `window` are in flight.
    pub(crate) fn next(&mut self, window: usize) -> Option<Queued> {
        if self.in_flight.len() >= window {
            return None;
        }
        let message = self.queued.pop_front()?;
        self.in_flight.push_back(message.clone());
        Some(message)
    }

    /// The broker acknowledged `id`. Returns its kind, or `None` for an unknown id (a duplicate
    /// acknowledgement, or one from before a reconnect that already re-queued it).
    pub(crate) fn ack(&mut self, id: MessageId) -> Option<MessageKind> {
        let at = self.in_flight.iter().position(|m| m.id == id)?;
        self.in_flight.remove(at).map(|m| m.kind)
    }

    /// The link dropped: what was in flight goes back to the front of the queue, in order,
    /// except statuses. Returns how many messages were re-queued.
    pub(crate) fn requeue_in_flight(&mut self) -> usize {
        let mut requeued = 0;
        while let Some(message) = self.in_flight.pop_back() {
            if message.replayable() {
                self.queued.push_front(message);
                requeued += 1;
            }
        }
        self.trim();
        requeued
    }

    /// Drops queued statuses (a fresh one replaces them on the next connection).
    pub(crate) fn forget_statuses(&mut self) {
        self.queued.retain(Queued::replayable);
    }

    /// Messages that count against the capacity: all but statuses, which are transient (at
    /// most one waits, and a fresh one replaces it on every connection).
    pub(crate) fn held(&self) -> usize {
        self.queued
            .iter()
            .chain(&self.in_flight)
            .filter(|m| m.replayable())
            .count()
    }

    fn trim(&mut self) {
        while self.held() > self.capacity {
            // The oldest queued telemetry, else the oldest queued message that counts.
            let victim = self
                .queued
                .iter()
                .position(|m| m.kind == MessageKind::Telemetry)
                .or_else(|| self.queued.iter().position(Queued::replayable));
            match victim.and_then(|at| self.queued.remove(at)) {
                Some(dropped) => {
                    self.dropped[index(dropped.kind)] += 1;
                    self.evicted.push(dropped.id);
                }
                // Only in-flight messages are left: they stay until acknowledged.
                None => break,
            }
        }
    }
}

fn index(kind: MessageKind) -> usize {
    match kind {
        MessageKind::Telemetry => 0,
        MessageKind::Commands => 1,
        MessageKind::CommandResponse => 2,
        MessageKind::Status => 3,
        MessageKind::Config => 4,
        MessageKind::Alert => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn msg(id: u64, kind: MessageKind) -> Queued {
        Queued {
            id: MessageId(id),
            kind,
            payload: vec![id as u8],
        }
    }

    // DESE-D7: bounded, ordered, oldest telemetry dropped first, every drop counted.
    #[test]
    fn dese_d7_bounded_ordered_counted() {
        let mut o = Outbox::new(3);
        o.push_back(msg(1, MessageKind::Telemetry));
        o.push_back(msg(2, MessageKind::CommandResponse));
        o.push_back(msg(3, MessageKind::Telemetry));
        o.push_back(msg(4, MessageKind::Telemetry));
        assert_eq!(o.dropped(MessageKind::Telemetry), 1);
        let order: Vec<u64> = core::iter::from_fn(|| o.next(10)).map(|m| m.id.0).collect();
        assert_eq!(order, [2, 3, 4], "the response outlived older telemetry");
    }

    #[test]
    fn requeue_keeps_order_and_drops_statuses() {
        let mut o = Outbox::new(10);
        for (id, kind) in [
            (1, MessageKind::Status),
            (2, MessageKind::Telemetry),
            (3, MessageKind::Alert),
        ] {
            o.push_back(msg(id, kind));
        }
        o.push_back(msg(4, MessageKind::Telemetry));
        assert_eq!(o.next(3).map(|m| m.id.0), Some(1));
        assert_eq!(o.next(3).map(|m| m.id.0), Some(2));
        assert_eq!(o.next(3).map(|m| m.id.0), Some(3));
        assert!(o.next(3).is_none(), "window of 3");
        assert_eq!(o.ack(MessageId(2)), Some(MessageKind::Telemetry));
        assert_eq!(o.ack(MessageId(2)), None, "a second ack is ignored");
        assert_eq!(
            o.requeue_in_flight(),
            1,
            "the alert; the status is not replayed"
        );
        let order: Vec<u64> = core::iter::from_fn(|| o.next(10)).map(|m| m.id.0).collect();
        assert_eq!(order, [3, 4]);
    }

    // Found by the model test: a queued status must never be the victim of the capacity.
    #[test]
    fn statuses_are_never_dropped_for_room() {
        let mut o = Outbox::new(1);
        o.push_back(msg(1, MessageKind::CommandResponse));
        o.push_front(msg(2, MessageKind::Status));
        o.push_back(msg(3, MessageKind::Alert));
        assert_eq!(o.dropped_total(), 1);
        assert_eq!(o.dropped(MessageKind::CommandResponse), 1);
        let order: Vec<u64> = core::iter::from_fn(|| o.next(10)).map(|m| m.id.0).collect();
        assert_eq!(order, [2, 3]);
    }

    #[test]
    fn in_flight_is_never_dropped() {
        let mut o = Outbox::new(2);
        o.push_back(msg(1, MessageKind::Telemetry));
        o.push_back(msg(2, MessageKind::Telemetry));
        assert!(o.next(2).is_some() && o.next(2).is_some());
        o.push_back(msg(3, MessageKind::Telemetry));
        assert_eq!(o.held(), 2);
        assert_eq!(o.in_flight(), 2);
        assert_eq!(o.dropped_total(), 1, "the new one, as only it was queued");
    }
}
