//! Cutting text to a size in bytes without splitting a character.

/// The longest start of `s` that is at most `max` bytes long and ends on a character
/// boundary: how every length limit of the protocol, which counts UTF-8 bytes, cuts text.
///
/// ```
/// use dese_protocol::head;
///
/// assert_eq!(head("pH too high", 5), "pH to");
/// assert_eq!(head("é", 1), "", "the two bytes of é stay together");
/// assert_eq!(head("short", 64), "short");
/// ```
pub fn head(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `s` cut to `max` bytes with [`head`], and `…` after it when something was cut: for text
/// shown in a message or a log line.
#[cfg(feature = "alloc")]
pub fn shortened(s: &str, max: usize) -> alloc::string::String {
    let kept = head(s, max);
    if kept.len() == s.len() {
        alloc::string::String::from(s)
    } else {
        alloc::format!("{kept}…")
    }
}
