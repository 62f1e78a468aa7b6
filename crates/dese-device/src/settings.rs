//! Refusing settings that cannot work, before an engine runs with them.

use alloc::string::String;
use core::time::Duration;

use crate::backoff::Backoff;

/// A setting that cannot work: which one, and why. Returned by `Settings::check` of this
/// crate's engine and of the backend engine, and by the clients that start them.
///
/// ```
/// use dese_device::Settings;
///
/// let mut settings = Settings::new("org-1".parse()?, "dev-1".parse()?, "1.0.0");
/// settings.in_flight_window = 0;
/// let error = settings.check().unwrap_err();
/// assert_eq!(error.setting(), "in_flight_window");
/// assert_eq!(error.to_string(), "setting in_flight_window: 0 would never publish anything; at least 1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("setting {setting}: {problem}")]
pub struct SettingsError {
    setting: &'static str,
    problem: String,
}

impl SettingsError {
    /// A setting that cannot work, and why.
    pub fn new(setting: &'static str, problem: impl Into<String>) -> Self {
        Self {
            setting,
            problem: problem.into(),
        }
    }

    /// The setting's field name.
    pub fn setting(&self) -> &'static str {
        self.setting
    }

    /// What is wrong with it.
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

impl SettingsError {
    /// Checks a count that must be at least 1 and at most `max`; `zero` says what 0 would do.
    pub fn count(
        setting: &'static str,
        value: usize,
        max: usize,
        zero: &str,
    ) -> Result<(), SettingsError> {
        if value == 0 {
            return Err(SettingsError::new(
                setting,
                alloc::format!("0 {zero}; at least 1"),
            ));
        }
        if value > max {
            return Err(SettingsError::new(
                setting,
                alloc::format!("{value} is more than the largest, {max}"),
            ));
        }
        Ok(())
    }

    /// Checks a duration that must be longer than zero (when `positive`) and at most [`LONGEST`].
    pub fn duration(
        setting: &'static str,
        value: Duration,
        positive: bool,
    ) -> Result<(), SettingsError> {
        if positive && value.is_zero() {
            return Err(SettingsError::new(setting, "must be longer than zero"));
        }
        if value > LONGEST {
            return Err(SettingsError::new(
                setting,
                alloc::format!(
                    "{} s is longer than the longest, {} s (a day)",
                    value.as_secs(),
                    LONGEST.as_secs()
                ),
            ));
        }
        Ok(())
    }
}

/// The longest period or timeout any setting takes: a day. Longer ones are typing mistakes
/// (`1e19` seconds), and a deadline that far would overflow a clock.
pub const LONGEST: Duration = Duration::from_secs(86_400);

impl Backoff {
    /// Refuses a backoff that cannot work: a base or cap of zero or over a day, a
    /// `stable_after` over a day. (A cap below the base is fine: every wait is then at most the
    /// cap.)
    ///
    /// ```
    /// use core::time::Duration;
    /// use dese_device::Backoff;
    ///
    /// assert!(Backoff::DEFAULT.check().is_ok());
    /// let stuck = Backoff { cap: Duration::ZERO, ..Backoff::DEFAULT };
    /// assert_eq!(stuck.check().unwrap_err().setting(), "backoff.cap");
    /// ```
    pub fn check(&self) -> Result<(), SettingsError> {
        SettingsError::duration("backoff.base", self.base, true)?;
        SettingsError::duration("backoff.cap", self.cap, true)?;
        SettingsError::duration("backoff.stable_after", self.stable_after, false)?;
        Ok(())
    }
}
