//! How OS errors read in messages: as the OS words them, without std's
//! `(os error N)` suffix, and lowercased where they end a sentence.

use std::io;

/// The message of an OS error without std's " (os error N)" suffix, so that
/// errors read like `Address already in use`, as other servers print them.
pub fn os_message(error: &io::Error) -> String {
    let text = error.to_string();
    match text.rsplit_once(" (os error ") {
        Some((message, _)) => message.to_owned(),
        None => text,
    }
}

/// [`os_message`] with its first letter lowercased, for the end of a
/// sentence: `cannot connect to 127.0.0.1:1: connection refused`.
pub fn reason(error: &io::Error) -> String {
    let message = os_message(error);
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_the_os_error_number() {
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(os_message(&refused), "Connection refused");
        assert_eq!(reason(&refused), "connection refused");
    }

    #[test]
    fn keeps_messages_that_are_not_from_the_os() {
        let error = io::Error::other("Odd thing");
        assert_eq!(os_message(&error), "Odd thing");
        assert_eq!(reason(&error), "odd thing");
    }
}
