//! Text from a peer, made safe to print on a terminal or in a log line.

use core::fmt;

/// Displays text that came from a device or a backend (an alert's message, a firmware version,
/// an error string, a topic) with every control character and every invisible formatting
/// character escaped as `\u{…}` (`\n`, `\r` and `\t` as themselves, escaped), so that a hostile
/// peer cannot move the cursor, clear the screen, forge a log line or reorder what is shown
/// with bidirectional overrides. Everything else is shown as it is, including non-ASCII letters.
///
/// [`Printable::json_safe`] does the same for a line of JSON, whose encoder leaves DEL, the C1
/// controls (U+009B acts as an escape sequence on many terminals) and the formatting
/// characters as they are.
///
/// ```
/// use dese_protocol::Printable;
///
/// assert_eq!(Printable("pH 6.8 low").to_string(), "pH 6.8 low");
/// assert_eq!(Printable("ok\n[ALERT] forged").to_string(), r"ok\n[ALERT] forged");
/// assert_eq!(Printable("\u{1b}[2Jgone").to_string(), r"\u{1b}[2Jgone");
/// assert_eq!(Printable("abc\u{202e}fed").to_string(), r"abc\u{202e}fed");
/// assert_eq!(Printable("Température").to_string(), "Température");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Printable<'a>(pub &'a str);

impl Printable<'_> {
    /// A line of JSON (as `serde_json` writes it: every C0 control already escaped) with the
    /// characters [`Printable`] escapes written as JSON `\uXXXX` escapes: the same JSON value,
    /// safe on a terminal.
    #[cfg(feature = "alloc")]
    pub fn json_safe(line: &str) -> alloc::string::String {
        use core::fmt::Write;
        let mut out = alloc::string::String::with_capacity(line.len());
        for ch in line.chars() {
            if needs_escape(ch) && !matches!(ch, '\u{0}'..='\u{1f}') {
                let mut units = [0u16; 2];
                for unit in ch.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            } else {
                out.push(ch);
            }
        }
        out
    }
}

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(needs_escape) {
            f.write_str(&rest[..at])?;
            let Some(ch) = rest[at..].chars().next() else {
                break;
            };
            match ch {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                other => write!(f, "\\u{{{:x}}}", u32::from(other))?,
            }
            rest = &rest[at + ch.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// Control characters (C0, DEL, C1) and the invisible characters that change how text around
/// them is shown (Unicode's format characters and separators): the soft hyphen, the Arabic
/// letter mark, the Mongolian vowel separator, zero-width ones, bidirectional marks,
/// embeddings, overrides and isolates, the line and paragraph separators, the deprecated
/// format controls, the byte order mark, interlinear annotation marks, tag characters.
fn needs_escape(ch: char) -> bool {
    ch.is_control()
        || matches!(
            ch,
            '\u{ad}'
                | '\u{61c}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
                | '\u{e0000}'..='\u{e007f}'
        )
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn every_control_character_is_escaped() {
        for code in (0u32..0x20).chain(0x7f..0xa0) {
            let ch = char::from_u32(code).unwrap();
            let shown = Printable(&alloc::format!("a{ch}b")).to_string();
            assert!(
                shown.chars().all(|c| !c.is_control()),
                "U+{code:04X} shown as {shown:?}"
            );
            assert!(shown.starts_with("a\\") && shown.ends_with('b'));
        }
    }

    #[test]
    fn json_keeps_its_own_escapes_and_gains_the_missing_ones() {
        let line = "{\"m\":\"a\\nb\u{9b}2J\u{202e}\"}";
        assert_eq!(
            Printable::json_safe(line),
            "{\"m\":\"a\\nb\\u009b2J\\u202e\"}"
        );
    }
}
