//! Refused messages in the log, so that a flood of bad messages cannot flood the log too: the
//! first few of each interval in full, the rest counted by reason and summed up when the
//! interval ends. Device text in the lines is escaped ([`Printable`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use dese_protocol::Printable;

/// How many refusals an interval shows in full.
const SHOWN: u32 = 5;

#[derive(Debug)]
pub(crate) struct RefusalLog {
    interval: Duration,
    /// When the current interval ends; `None` while nothing was refused.
    ends: Option<Instant>,
    shown: u32,
    /// The refusals of this interval not shown, by reason.
    hidden: BTreeMap<&'static str, u64>,
}

impl RefusalLog {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval,
            ends: None,
            shown: 0,
            hidden: BTreeMap::new(),
        }
    }

    /// A refused message: the line to log, if it is one of the interval's first few.
    pub(crate) fn refused(
        &mut self,
        now: Instant,
        topic: &str,
        reason: &'static str,
        error: &str,
    ) -> Option<String> {
        self.ends.get_or_insert(now + self.interval);
        if self.shown < SHOWN {
            self.shown += 1;
            return Some(format!(
                "dese-backend: refused a message on {} ({reason}): {}",
                Printable(topic),
                Printable(error)
            ));
        }
        *self.hidden.entry(reason).or_default() += 1;
        None
    }

    /// When [`RefusalLog::flush`] is due.
    pub(crate) fn due(&self) -> Option<Instant> {
        self.ends
    }

    /// Ends the interval: the summary of what was not shown, if anything.
    pub(crate) fn flush(&mut self) -> Option<String> {
        self.ends = None;
        self.shown = 0;
        if self.hidden.is_empty() {
            return None;
        }
        let total: u64 = self.hidden.values().sum();
        let reasons: Vec<String> = self
            .hidden
            .iter()
            .map(|(reason, n)| format!("{reason} {n}"))
            .collect();
        self.hidden.clear();
        Some(format!(
            "dese-backend: refused {total} more message(s) in the last {} s: {}",
            self.interval.as_secs(),
            reasons.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A flood of 10,000 refusals logs five lines and one summary per interval, not 10,000.
    #[test]
    fn a_flood_is_summed_up() {
        let t0 = Instant::now();
        let mut log = RefusalLog::new(Duration::from_secs(10));
        let shown = (0..10_000)
            .filter_map(|n| {
                let reason = if n % 2 == 0 { "syntax" } else { "rate_limited" };
                log.refused(t0, "devices/o/d/telemetry", reason, "x")
            })
            .count();
        assert_eq!(shown, 5);
        assert_eq!(log.due(), Some(t0 + Duration::from_secs(10)));
        assert_eq!(
            log.flush().unwrap(),
            "dese-backend: refused 9995 more message(s) in the last 10 s: rate_limited 4998, syntax 4997"
        );
        assert_eq!(log.due(), None);
        assert_eq!(log.flush(), None);
    }

    // Device text cannot forge a log line or drive the terminal.
    #[test]
    fn device_text_is_escaped() {
        let mut log = RefusalLog::new(Duration::from_secs(10));
        let line = log
            .refused(
                Instant::now(),
                "devices/o/d\u{1b}[2J/alert",
                "syntax",
                "bad\ndese-backend: all good",
            )
            .unwrap();
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(line.contains(r"\u{1b}[2J") && line.contains(r"bad\ndese-backend"));
    }
}
