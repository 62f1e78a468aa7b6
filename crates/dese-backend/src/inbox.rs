//! Acknowledgements of received messages: which events the application still holds, and which
//! received messages the transport may acknowledge to the broker (PUBACK), in arrival order.

use std::collections::{HashSet, VecDeque};

/// A received message, as the transport names it: the engine hands it back through
/// [`Backend::poll_ack`](crate::Backend::poll_ack) when the transport may acknowledge it to the
/// broker. The transport chooses the numbers (a packet id and a connection count, say); the
/// engine only keeps them in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Inbound(pub u64);

/// The application's handle on an event it must confirm: give it back to
/// [`Backend::ack`](crate::Backend::ack) once the event is safe (stored, committed, acted upon).
/// Until then the broker keeps the message and delivers it again after a reconnection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ack(pub(crate) u64);

/// The ledger. Every received message has an entry in arrival order (24 bytes); an entry waits
/// while the
/// application holds the [`Ack`] it depends on (its own event's, or for a duplicate, the
/// original's), and may be acknowledged to the broker once it and every older entry are free.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    /// The current connection's messages, oldest first, with the ack each waits for.
    order: VecDeque<(Inbound, Option<Ack>)>,
    /// Acks the application has not given back yet.
    held: HashSet<Ack>,
    next: u64,
}

impl Inbox {
    /// A fresh ack, for a message that has just arrived (used or not: never given twice).
    pub(crate) fn allocate(&mut self) -> Ack {
        self.next += 1;
        Ack(self.next)
    }

    /// A message arrived that the application must confirm: it holds `ack` (from
    /// [`Inbox::allocate`]) from now on.
    pub(crate) fn hold(&mut self, inbound: Inbound, ack: Ack) {
        self.held.insert(ack);
        self.order.push_back((inbound, Some(ack)));
    }

    /// A message arrived that needs no confirmation of its own: refused, or a duplicate that
    /// waits for its original's `after` (if the application still holds it).
    pub(crate) fn settle(&mut self, inbound: Inbound, after: Option<Ack>) {
        let after = after.filter(|ack| self.held.contains(ack));
        self.order.push_back((inbound, after));
    }

    /// The application gave `ack` back. False if it was not held (given back twice).
    pub(crate) fn release(&mut self, ack: Ack) -> bool {
        self.held.remove(&ack)
    }

    /// The oldest message that may be acknowledged to the broker now.
    pub(crate) fn next_puback(&mut self) -> Option<Inbound> {
        let (inbound, after) = *self.order.front()?;
        if after.is_some_and(|ack| self.held.contains(&ack)) {
            return None;
        }
        self.order.pop_front();
        Some(inbound)
    }

    /// The connection is gone: what it owed the broker is void (the broker delivers those
    /// messages again). The application keeps the acks it holds.
    pub(crate) fn void(&mut self) {
        self.order.clear();
    }

    /// Acks the application holds.
    pub(crate) fn held(&self) -> usize {
        self.held.len()
    }

    /// Messages of this connection not yet acknowledged to the broker.
    pub(crate) fn owed(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(inbox: &mut Inbox, id: u64) -> Ack {
        let ack = inbox.allocate();
        inbox.hold(Inbound(id), ack);
        ack
    }

    fn pubacks(inbox: &mut Inbox) -> Vec<u64> {
        std::iter::from_fn(|| inbox.next_puback())
            .map(|i| i.0)
            .collect()
    }

    // MQTT 3.1.1 wants PUBACKs in arrival order, whatever order the application confirms in.
    #[test]
    fn pubacks_follow_arrival_order() {
        let mut inbox = Inbox::default();
        let a = accept(&mut inbox, 1);
        let b = accept(&mut inbox, 2);
        inbox.settle(Inbound(3), None);
        let c = accept(&mut inbox, 4);
        assert!(inbox.release(c));
        assert!(inbox.release(b));
        assert_eq!(pubacks(&mut inbox), Vec::<u64>::new(), "1 still held");
        assert!(inbox.release(a));
        assert_eq!(pubacks(&mut inbox), [1, 2, 3, 4]);
        assert!(!inbox.release(a), "a second release is refused");
        assert_eq!((inbox.held(), inbox.owed()), (0, 0));
    }

    // A redelivery is acknowledged only once the application has its original.
    #[test]
    fn a_duplicate_waits_for_its_original() {
        let mut inbox = Inbox::default();
        let original = accept(&mut inbox, 1);
        inbox.void(); // the connection drops before the application confirms
        inbox.settle(Inbound(7), Some(original));
        assert_eq!(pubacks(&mut inbox), Vec::<u64>::new());
        inbox.release(original);
        assert_eq!(pubacks(&mut inbox), [7]);
        // Once confirmed, a further copy goes at once.
        inbox.settle(Inbound(8), Some(original));
        assert_eq!(pubacks(&mut inbox), [8]);
    }
}
