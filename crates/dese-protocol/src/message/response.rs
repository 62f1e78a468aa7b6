//! `command_response`: the outcome of a command, device to backend.

use alloc::borrow::Cow;
use alloc::string::String;

use serde::{Deserialize, Serialize};

use crate::error::Fault;
use crate::id::{CommandId, IdKind};
use crate::message::JsonObject;
use crate::message::check::{self, Field, Ty};
use crate::time::Timestamp;

/// The longest `error` text, in bytes.
pub const ERROR_MAX: usize = 512;

/// A device's answer to a command, correlated by `command_id`.
///
/// `error` may be `null` or absent on the wire; both read as `None`, and `None` is left out when
/// encoding.
///
/// # Examples
///
/// ```
/// use dese_protocol::{CommandId, CommandResponse, Timestamp};
///
/// let id = CommandId::parse("cmd-1")?;
/// let failed = CommandResponse::failed(id, "unknown command \"dance\"", Timestamp::UNIX_EPOCH);
/// assert!(!failed.success);
/// assert_eq!(failed.error.as_deref(), Some("unknown command \"dance\""));
/// # Ok::<(), dese_protocol::IdError>(())
/// ```
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandResponse {
    /// The command answered.
    pub command_id: CommandId,
    /// Whether the device carried the command out.
    pub success: bool,
    /// Data about the outcome, such as `{"pump_state": "on"}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<JsonObject>,
    /// Why the command failed: 1 to 512 bytes of text.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<crate::schema::ErrorText>")
    )]
    pub error: Option<String>,
    /// When the device answered.
    pub timestamp: Timestamp,
}

impl CommandResponse {
    /// A success, with optional data.
    pub fn ok(command_id: CommandId, response: Option<JsonObject>, timestamp: Timestamp) -> Self {
        Self {
            command_id,
            success: true,
            response,
            error: None,
            timestamp,
        }
    }

    /// A failure with its reason, cut to [`ERROR_MAX`] bytes if longer.
    pub fn failed(command_id: CommandId, error: impl Into<String>, timestamp: Timestamp) -> Self {
        let mut error = error.into();
        let kept = crate::text::head(&error, ERROR_MAX).len();
        error.truncate(kept);
        if error.is_empty() {
            error.push_str("failed");
        }
        Self {
            command_id,
            success: false,
            response: None,
            error: Some(error),
            timestamp,
        }
    }

    pub(crate) fn from_wire(w: Wire<'_>) -> Result<Self, Fault> {
        Ok(Self {
            command_id: check::id(
                w.command_id,
                "command_id",
                IdKind::Command,
                CommandId::from_checked,
            )?,
            success: w.success,
            response: w.response,
            error: w
                .error
                .map(|e| check::text(e, ERROR_MAX, "error"))
                .transpose()?,
            timestamp: check::timestamp(&w.timestamp, "timestamp")?,
        })
    }

    pub(crate) fn check_text(&self) -> Result<(), Fault> {
        match &self.error {
            Some(error) => check::text_ref(error, ERROR_MAX, "error"),
            None => Ok(()),
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct Wire<'a> {
    command_id: String,
    success: bool,
    response: Option<JsonObject>,
    error: Option<String>,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
}

pub(crate) const SHAPE: &[Field] = &[
    Field::req("command_id", Ty::Str),
    Field::req("success", Ty::Bool),
    Field::opt("response", Ty::AnyObj),
    Field::opt("error", Ty::Str),
    Field::req("timestamp", Ty::Str),
];
