//! Safe previews of client bytes for the debug log.
//!
//! A client controls what it sends; written raw to a terminal, its bytes
//! could move the cursor, change colours or hide lines. A preview escapes
//! every byte that is not printable ASCII and is cut short.

use std::fmt;

/// How many bytes of a read a preview shows.
pub(crate) const PREVIEW_LEN: usize = 48;

/// Displays the first [`PREVIEW_LEN`] bytes of a buffer escaped as Rust byte
/// strings are (`\n`, `\x1b`, `\\`), then how many more there were.
pub(crate) struct Preview<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Preview<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = &self.0[..self.0.len().min(PREVIEW_LEN)];
        write!(f, "\"{}\"", shown.escape_ascii())?;
        let rest = self.0.len() - shown.len();
        if rest > 0 {
            write!(f, " (+{rest} bytes)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_control_bytes_and_ansi_sequences() {
        let text = Preview(b"red \x1b[31mX\x1b[0m\r\n\t\0\x7f\xff\"\\").to_string();
        assert_eq!(text, r#""red \x1b[31mX\x1b[0m\r\n\t\x00\x7f\xff\"\\""#);
        assert!(text.bytes().all(|b| (0x20..0x7f).contains(&b)));
    }

    #[test]
    fn keeps_printable_text_as_is() {
        assert_eq!(
            Preview(b"Hello, server 1").to_string(),
            "\"Hello, server 1\""
        );
    }

    #[test]
    fn cuts_long_reads_and_counts_the_rest() {
        let data = [b'a'; PREVIEW_LEN + 10];
        let text = Preview(&data).to_string();
        assert_eq!(text, format!("\"{}\" (+10 bytes)", "a".repeat(PREVIEW_LEN)));
    }

    #[test]
    fn previews_empty_input() {
        assert_eq!(Preview(b"").to_string(), "\"\"");
    }
}
