//! What the backend publishes (commands, their retries, config): queued while the link is down
//! or the in-flight window is full, handed to the transport in order, kept until the broker
//! acknowledges it.

use std::collections::VecDeque;

use dese_device::MessageId;
use dese_protocol::CommandId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Queued {
    pub(crate) id: MessageId,
    pub(crate) topic: String,
    pub(crate) payload: Vec<u8>,
    /// The command this message carries, so that a timeout can withdraw it.
    pub(crate) command: Option<CommandId>,
}

/// Every message is queued or in flight until acknowledged; at most `capacity` in all.
#[derive(Debug)]
pub(crate) struct Outbox {
    queued: VecDeque<Queued>,
    in_flight: VecDeque<Queued>,
    capacity: usize,
    next_id: u64,
}

impl Outbox {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            queued: VecDeque::new(),
            in_flight: VecDeque::new(),
            capacity: capacity.max(1),
            next_id: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.queued.len() + self.in_flight.len()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len() >= self.capacity
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Queues a message behind the others. The caller checks [`Outbox::is_full`] first for new
    /// messages; a retry is let in regardless (it replaces a copy that already left).
    pub(crate) fn push(&mut self, topic: String, payload: Vec<u8>, command: Option<CommandId>) {
        let id = MessageId(self.next_id);
        self.next_id += 1;
        self.queued.push_back(Queued {
            id,
            topic,
            payload,
            command,
        });
    }

    /// Hands out the oldest queued message, if fewer than `window` are in flight.
    pub(crate) fn next(&mut self, window: usize) -> Option<&Queued> {
        if self.in_flight.len() >= window.max(1) {
            return None;
        }
        let message = self.queued.pop_front()?;
        self.in_flight.push_back(message);
        self.in_flight.back()
    }

    /// The broker acknowledged `id`; false for an id not in flight (a duplicate acknowledgement,
    /// or one that lost a race with a reconnection).
    pub(crate) fn ack(&mut self, id: MessageId) -> bool {
        match self.in_flight.iter().position(|m| m.id == id) {
            Some(at) => {
                self.in_flight.remove(at);
                true
            }
            None => false,
        }
    }

    /// Whether a copy of `command` waits in the queue (not yet handed out).
    pub(crate) fn has_queued(&self, command: &CommandId) -> bool {
        self.queued
            .iter()
            .any(|m| m.command.as_ref() == Some(command))
    }

    /// The command ended or is sent anew: no copy of it is handed out from now on, and none in
    /// flight is published again after a reconnection. Returns how many copies were taken back
    /// before they were ever handed out.
    pub(crate) fn withdraw(&mut self, command: &CommandId) -> usize {
        let queued = self.queued.len();
        self.queued.retain(|m| m.command.as_ref() != Some(command));
        self.in_flight
            .retain(|m| m.command.as_ref() != Some(command));
        queued - self.queued.len()
    }

    /// The link dropped: what was in flight goes back to the front of the queue, in order.
    pub(crate) fn requeue_in_flight(&mut self) {
        while let Some(message) = self.in_flight.pop_back() {
            self.queued.push_front(message);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn command(n: u32) -> Option<CommandId> {
        Some(CommandId::parse(&format!("cmd-{n}")).unwrap())
    }

    #[test]
    fn window_ack_requeue_and_withdrawal() {
        let mut o = Outbox::new(10);
        for n in 0..4 {
            o.push(format!("t{n}"), vec![], command(n));
        }
        let handed: Vec<u64> = (0..3).filter_map(|_| o.next(2).map(|m| m.id.0)).collect();
        assert_eq!(handed, [0, 1], "a window of 2");
        assert!(o.ack(MessageId(0)));
        assert!(!o.ack(MessageId(0)), "acknowledged once");
        assert_eq!(o.next(2).map(|m| m.id.0), Some(2));
        // Message 1 is in flight: withdrawn, but it had been handed out already.
        assert_eq!(o.withdraw(&command(1).unwrap()), 0);
        assert_eq!(o.withdraw(&command(3).unwrap()), 1, "3 was still queued");
        assert!(!o.has_queued(&command(3).unwrap()));
        o.requeue_in_flight();
        let order: Vec<u64> = std::iter::from_fn(|| o.next(10).map(|m| m.id.0)).collect();
        assert_eq!(order, [2], "the withdrawn ones gone");
    }
}
