//! How a UDP client tells the echo of its outstanding datagram from a late
//! echo of an earlier one: every datagram carries its number.
//!
//! The first eight bytes of each datagram (fewer when the message is
//! shorter) are its number on that socket, big-endian, counting from 0;
//! the rest is random, as over TCP. A reply is then judged whole:
//!
//! - exactly what was sent: the echo, intact;
//! - the same length, numbered as an earlier datagram: a late echo of one
//!   already counted lost (or a duplicate), dropped without being counted;
//! - anything else (another length, a number never sent, the right number
//!   with other bytes): the echo, not intact, a mismatch.
//!
//! Corruption cannot pass unseen: a reply whose number is damaged into an
//! earlier one is dropped, and the datagram it answered is then lost.
//!
//! A message shorter than eight bytes is all number, its low bytes only,
//! with no random byte left; once more datagrams have been sent than such
//! a number counts (256 for one byte), every other number names an earlier
//! one, and a late echo from a multiple of that many datagrams back is
//! taken for the outstanding one's.

/// Most bytes of a datagram that carry its number.
pub const TAG: usize = 8;

/// What a datagram received is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// The echo of the outstanding datagram; `intact` if it is exactly
    /// what was sent.
    Echo {
        /// Whether the reply is exactly what was sent.
        intact: bool,
    },
    /// A late echo of an earlier datagram, to be dropped.
    Stale,
}

/// Writes `number` into the first bytes of `message`: its low bytes,
/// big-endian, as many as fit up to [`TAG`].
pub fn stamp(message: &mut [u8], number: u64) {
    let width = message.len().min(TAG);
    message[..width].copy_from_slice(&number.to_be_bytes()[TAG - width..]);
}

/// Judges `reply` against `sent`, the outstanding datagram, numbered
/// `number`.
pub fn judge(reply: &[u8], sent: &[u8], number: u64) -> Reply {
    if reply == sent {
        return Reply::Echo { intact: true };
    }
    // A number cut to fewer than eight bytes is below the full one of
    // every datagram sent after it, as is an earlier number in full.
    if reply.len() == sent.len() && tag(reply) < number {
        return Reply::Stale;
    }
    Reply::Echo { intact: false }
}

/// The number `message` carries, as far as it fits.
fn tag(message: &[u8]) -> u64 {
    let mut bytes = [0; TAG];
    let width = message.len().min(TAG);
    bytes[TAG - width..].copy_from_slice(&message[..width]);
    u64::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Datagram `number` of `size` bytes: its tag, then a filler byte.
    fn datagram(size: usize, number: u64) -> Vec<u8> {
        let mut message = vec![0xa5; size];
        stamp(&mut message, number);
        message
    }

    /// The number of the outstanding datagram in most tests.
    const OUTSTANDING: u64 = 5;

    /// `reply` judged against outstanding datagram 5, 64 bytes long.
    fn judged(reply: &[u8]) -> Reply {
        judge(reply, &datagram(64, OUTSTANDING), OUTSTANDING)
    }

    /// A mismatch.
    const MISMATCH: Reply = Reply::Echo { intact: false };

    #[test]
    fn the_number_goes_first_big_endian_cut_to_the_message() {
        assert_eq!(datagram(10, 0x0102), [0, 0, 0, 0, 0, 0, 1, 2, 0xa5, 0xa5]);
        assert_eq!(datagram(2, 0x010203), [2, 3]);
        assert_eq!(tag(&datagram(12, 77)), 77);
        assert_eq!(tag(&datagram(1, 0x1ff)), 0xff);
    }

    #[test]
    fn the_outstanding_datagram_back_unchanged_is_an_intact_echo() {
        let reply = datagram(64, OUTSTANDING);
        assert_eq!(judged(&reply), Reply::Echo { intact: true });
    }

    #[test]
    fn an_earlier_datagram_coming_back_late_is_stale() {
        for earlier in 0..OUTSTANDING {
            assert_eq!(judged(&datagram(64, earlier)), Reply::Stale);
        }
    }

    #[test]
    fn other_bytes_under_the_outstanding_number_are_a_mismatch() {
        let mut reply = datagram(64, OUTSTANDING);
        reply[63] ^= 1;
        assert_eq!(judged(&reply), MISMATCH);
    }

    #[test]
    fn a_number_never_sent_is_a_mismatch() {
        for never in [OUTSTANDING + 1, 1000, u64::MAX] {
            assert_eq!(judged(&datagram(64, never)), MISMATCH);
        }
        // The first byte flipped, as a corrupting server does, names a
        // datagram from far in the future.
        let mut reply = datagram(64, OUTSTANDING);
        reply[0] ^= 0xff;
        assert_eq!(judged(&reply), MISMATCH);
    }

    #[test]
    fn a_reply_of_another_length_is_a_mismatch_whatever_its_number() {
        for reply in [datagram(63, 4), datagram(65, 4), Vec::new()] {
            assert_eq!(judged(&reply), MISMATCH);
        }
    }

    #[test]
    fn short_messages_name_earlier_datagrams_by_their_low_bytes() {
        // One byte: datagram 300 carries 44; 299 and 256 (0) are earlier,
        // and past the byte's range every other number names an earlier one.
        let sent = datagram(1, 300);
        assert_eq!(judge(&datagram(1, 299), &sent, 300), Reply::Stale);
        assert_eq!(judge(&datagram(1, 256), &sent, 300), Reply::Stale);
        assert_eq!(judge(&datagram(1, 301), &sent, 300), Reply::Stale);
        // Early on, a tag ahead of the outstanding one was never sent.
        let sent = datagram(1, 3);
        assert_eq!(judge(&datagram(1, 4), &sent, 3), MISMATCH);
    }
}
