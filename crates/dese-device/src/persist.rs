//! The state a device keeps across a reboot: what changes it, and what a boot gives back.
//!
//! With [`Settings::persist`](crate::Settings::persist) on, the engine reports every change to
//! the state worth keeping through [`Device::poll_persist`](crate::Device::poll_persist): a
//! message entering or leaving the outbox, a command answered, the config changing. The
//! firmware writes each change to its storage before it sends anything the change concerns
//! (the message, the PUBACK of the command), and at boot hands what it read back to
//! [`Device::restore`](crate::Device::restore).

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use dese_protocol::{CommandId, DeviceConfig, MessageKind};

use crate::outbox::MessageId;

/// One change to the state that survives a reboot, for the firmware to write to its storage.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Persist {
    /// A message entered the outbox: keep it, under its id, until [`Persist::Removed`] names
    /// it. Statuses never appear: a fresh one replaces them on every connection.
    Queued {
        /// Its id, which [`Persist::Removed`] and a later [`SavedMessage`] carry.
        id: MessageId,
        /// Telemetry, an alert or a command response.
        kind: MessageKind,
        /// The encoded message, exactly as it will be published.
        payload: Vec<u8>,
    },
    /// A message left the outbox: the broker acknowledged it, or it was dropped for room.
    Removed {
        /// The id of an earlier [`Persist::Queued`].
        id: MessageId,
    },
    /// A command was answered: after a reboot, a delivery of the same id gets this response
    /// instead of running again. Keep the most recent
    /// [`Settings::answered_capacity`](crate::Settings::answered_capacity); a later answer of
    /// the same id replaces the earlier one (a command handed out as
    /// [`Event::Command`](crate::Event::Command) is saved as interrupted until its result).
    Answered {
        /// The command.
        command_id: CommandId,
        /// The encoded response.
        response: Vec<u8>,
    },
    /// The config in force changed (a config message, or `reset_config`): it replaces the one
    /// kept before, whole.
    Config(DeviceConfig),
}

/// A message read back from storage at boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedMessage {
    /// The id it was saved under.
    pub id: MessageId,
    /// Its kind.
    pub kind: MessageKind,
    /// The encoded message.
    pub payload: Vec<u8>,
}

/// What a device saved before a reboot, for [`Device::restore`](crate::Device::restore).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Saved {
    /// The outbox: messages queued and not removed, in any order (the engine orders them by
    /// id).
    pub messages: Vec<SavedMessage>,
    /// The responses to recent commands, oldest first.
    pub answered: Vec<(CommandId, Vec<u8>)>,
    /// The config in force, if one was saved.
    pub config: Option<DeviceConfig>,
}

/// The changes not yet taken by the firmware, kept small: a message queued and removed before
/// the firmware asked leaves no trace, only the latest config and the most recent answers stay.
/// Its length is bounded by the outbox's capacity (twice, for removals of messages already
/// taken), the command memory and one config, whether or not anyone drains it.
#[derive(Debug)]
pub(crate) struct Journal {
    changes: VecDeque<Persist>,
    answered_capacity: usize,
}

impl Journal {
    pub(crate) fn new(answered_capacity: usize) -> Self {
        Self {
            changes: VecDeque::new(),
            answered_capacity,
        }
    }

    pub(crate) fn queued(&mut self, id: MessageId, kind: MessageKind, payload: &[u8]) {
        self.changes.push_back(Persist::Queued {
            id,
            kind,
            payload: payload.to_vec(),
        });
    }

    pub(crate) fn removed(&mut self, id: MessageId) {
        let pending = self.changes.iter().position(
            |change| matches!(change, Persist::Queued { id: queued, .. } if *queued == id),
        );
        match pending {
            // Never taken, so never stored: nothing to remove.
            Some(at) => {
                self.changes.remove(at);
            }
            None => self.changes.push_back(Persist::Removed { id }),
        }
    }

    pub(crate) fn answered(&mut self, command_id: CommandId, response: Vec<u8>) {
        let waiting = self
            .changes
            .iter()
            .filter(|change| matches!(change, Persist::Answered { .. }))
            .count();
        if waiting >= self.answered_capacity {
            if let Some(oldest) = self
                .changes
                .iter()
                .position(|change| matches!(change, Persist::Answered { .. }))
            {
                self.changes.remove(oldest);
            }
        }
        self.changes.push_back(Persist::Answered {
            command_id,
            response,
        });
    }

    pub(crate) fn config(&mut self, config: DeviceConfig) {
        self.changes
            .retain(|change| !matches!(change, Persist::Config(_)));
        self.changes.push_back(Persist::Config(config));
    }

    pub(crate) fn next(&mut self) -> Option<Persist> {
        self.changes.pop_front()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.changes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_removed_before_it_was_taken_leaves_no_trace() {
        let mut journal = Journal::new(2);
        journal.queued(MessageId(1), MessageKind::Telemetry, b"a");
        journal.queued(MessageId(2), MessageKind::Alert, b"b");
        journal.removed(MessageId(1));
        assert_eq!(
            journal.next(),
            Some(Persist::Queued {
                id: MessageId(2),
                kind: MessageKind::Alert,
                payload: b"b".to_vec()
            })
        );
        journal.removed(MessageId(2));
        assert_eq!(journal.next(), Some(Persist::Removed { id: MessageId(2) }));
        assert_eq!(journal.next(), None);
    }

    #[test]
    fn only_the_latest_config_and_the_recent_answers_wait() {
        let mut journal = Journal::new(2);
        for n in 0..5u8 {
            let id = CommandId::parse(&alloc::format!("cmd-{n}")).unwrap();
            journal.answered(id, alloc::vec![n]);
            journal.config(DeviceConfig::default());
        }
        assert_eq!(journal.len(), 3);
        let mut answered = Vec::new();
        while let Some(change) = journal.next() {
            if let Persist::Answered { response, .. } = change {
                answered.push(response[0]);
            }
        }
        assert_eq!(answered, [3, 4]);
    }
}
