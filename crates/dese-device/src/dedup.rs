//! The answers to recent commands, so that a command delivered again (QoS 1 is at least once,
//! and the backend retries with the same id) is answered again and never run twice.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use dese_protocol::CommandId;

#[derive(Debug)]
pub(crate) struct Answered {
    recent: VecDeque<(CommandId, Vec<u8>)>,
    capacity: usize,
}

impl Answered {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            recent: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// The encoded response sent for `id`, if it is among the recent ones.
    pub(crate) fn get(&self, id: &CommandId) -> Option<&[u8]> {
        self.recent
            .iter()
            .find(|(seen, _)| seen == id)
            .map(|(_, payload)| payload.as_slice())
    }

    /// Remembers the response to `id`, in place of an earlier one for the same id (storage
    /// may hold a command saved as interrupted, then its result), forgetting the oldest beyond
    /// the capacity.
    pub(crate) fn insert(&mut self, id: CommandId, response: Vec<u8>) {
        self.recent.retain(|(seen, _)| *seen != id);
        if self.recent.len() == self.capacity {
            self.recent.pop_front();
        }
        self.recent.push_back((id, response));
    }
}
