//! Head + tail output cap.
//!
//! The first `cap - cap/4` bytes (the head) stream out as they come. After that only the last
//! `cap/4` bytes are kept in a ring; at the end, if anything was pushed out of the ring, a
//! marker line saying how many bytes were dropped goes before the tail. So at most
//! `cap + marker` bytes are ever sent for a task.
#![forbid(unsafe_code)]

use std::collections::VecDeque;

/// The line inserted between head and tail when output was dropped (the server ends a log
/// it cut itself with a line of the same form).
pub use shoal_proto::agent::drop_marker;

#[derive(Debug)]
pub struct HeadTail {
    /// Bytes that may still pass straight through.
    head_left: u64,
    /// The last bytes seen after the head filled up, at most `tail_cap` of them.
    tail: VecDeque<u8>,
    tail_cap: usize,
    /// Bytes pushed out of the tail ring.
    dropped: u64,
}

impl HeadTail {
    /// `cap` of 0 means [`super::DEFAULT_OUTPUT_CAP`].
    pub fn new(cap: u64) -> Self {
        let cap = if cap == 0 { super::DEFAULT_OUTPUT_CAP } else { cap };
        let tail_cap = cap / 4;
        HeadTail { head_left: cap - tail_cap, tail: VecDeque::new(), tail_cap: usize::try_from(tail_cap).unwrap_or(usize::MAX), dropped: 0 }
    }

    /// Takes `data`; returns the prefix of it that belongs to the head (send it now). The rest
    /// goes into the tail ring.
    pub fn admit<'a>(&mut self, data: &'a [u8]) -> &'a [u8] {
        let head_n = usize::try_from(self.head_left).map_or(data.len(), |h| h.min(data.len()));
        self.head_left -= head_n as u64;
        let (head, rest) = data.split_at(head_n);
        self.keep_tail(rest);
        head
    }

    fn keep_tail(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if data.len() >= self.tail_cap {
            self.dropped += (self.tail.len() + data.len() - self.tail_cap) as u64;
            self.tail.clear();
            self.tail.extend(&data[data.len() - self.tail_cap..]);
        } else {
            let overflow = (self.tail.len() + data.len()).saturating_sub(self.tail_cap);
            self.tail.drain(..overflow);
            self.dropped += overflow as u64;
            self.tail.extend(data);
        }
    }

    /// Bytes dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// What is left to send at the end: the tail, preceded by the drop marker if anything was
    /// dropped. Empty when there is nothing.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.dropped > 0 {
            out.extend_from_slice(drop_marker(self.dropped).as_bytes());
        }
        out.extend(self.tail.drain(..));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cap: u64, pieces: &[&[u8]]) -> (Vec<u8>, Vec<u8>, u64) {
        let mut ht = HeadTail::new(cap);
        let mut head = Vec::new();
        for p in pieces {
            head.extend_from_slice(ht.admit(p));
        }
        let dropped = ht.dropped();
        (head, ht.finish(), dropped)
    }

    #[test]
    fn under_the_cap_everything_is_kept_in_order() {
        let (head, tail, dropped) = run(100, &[b"hello ", b"world"]);
        assert_eq!(dropped, 0);
        assert_eq!([head, tail].concat(), b"hello world");
    }

    #[test]
    fn exactly_the_cap_drops_nothing() {
        let data: Vec<u8> = (0..100u8).collect();
        let (head, tail, dropped) = run(100, &[&data]);
        assert_eq!(dropped, 0);
        assert_eq!(head.len(), 75);
        assert_eq!([head, tail].concat(), data);
    }

    #[test]
    fn over_the_cap_keeps_head_and_tail_and_counts_the_gap() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        // Feed in uneven pieces so the ring logic is exercised.
        let pieces: Vec<&[u8]> = data.chunks(7).collect();
        let (head, tail, dropped) = run(100, &pieces);
        assert_eq!(head, &data[..75]);
        assert_eq!(dropped, 1000 - 100);
        let marker = drop_marker(900);
        assert!(marker.contains("900 bytes of output dropped"));
        assert_eq!(&tail[..marker.len()], marker.as_bytes());
        assert_eq!(&tail[marker.len()..], &data[975..]);
        assert!(head.len() + tail.len() <= 100 + marker.len());
    }

    #[test]
    fn one_huge_write_is_split_correctly() {
        let data = vec![b'x'; 10_000];
        let (head, tail, dropped) = run(40, &[&data]);
        assert_eq!(head.len(), 30);
        assert_eq!(dropped, 10_000 - 40);
        assert!(tail.ends_with(&[b'x'; 10]));
    }

    #[test]
    fn zero_cap_means_default() {
        let (head, tail, dropped) = run(0, &[&vec![1u8; 1_000_000]]);
        assert_eq!((head.len(), tail.len(), dropped), (1_000_000, 0, 0));
    }
}
