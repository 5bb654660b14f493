//! When buffered output leaves: as soon as [`CHUNK_BYTES`](super::CHUNK_BYTES) are gathered, or
//! [`CHUNK_DELAY`](super::CHUNK_DELAY) after the first byte not yet sent.
#![forbid(unsafe_code)]

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub struct Chunker {
    buf: Vec<u8>,
    /// When the oldest unsent byte arrived.
    since: Option<Instant>,
    max: usize,
    delay: Duration,
}

impl Chunker {
    pub fn new(max: usize, delay: Duration) -> Self {
        Chunker { buf: Vec::new(), since: None, max: max.max(1), delay }
    }

    /// Buffers `data`; returns the full chunks that must leave now.
    pub fn push(&mut self, data: &[u8], now: Instant) -> Vec<Vec<u8>> {
        if data.is_empty() {
            return Vec::new();
        }
        self.since.get_or_insert(now);
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        while self.buf.len() >= self.max {
            let rest = self.buf.split_off(self.max);
            out.push(std::mem::replace(&mut self.buf, rest));
        }
        if self.buf.is_empty() {
            self.since = None;
        } else if !out.is_empty() {
            // What is left arrived with the last piece.
            self.since = Some(now);
        }
        out
    }

    /// When the buffered bytes must leave, if any are buffered.
    pub fn due(&self) -> Option<Instant> {
        self.since.map(|s| s + self.delay)
    }

    /// Everything buffered, now.
    pub fn take(&mut self) -> Option<Vec<u8>> {
        self.since = None;
        if self.buf.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.buf))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_triggers_full_chunks_and_keeps_the_rest() {
        let now = Instant::now();
        let mut c = Chunker::new(4, Duration::from_millis(100));
        assert!(c.push(b"ab", now).is_empty());
        assert_eq!(c.due(), Some(now + Duration::from_millis(100)));
        let later = now + Duration::from_millis(10);
        assert_eq!(c.push(b"cdefghij", later), vec![b"abcd".to_vec(), b"efgh".to_vec()]);
        assert_eq!(c.due(), Some(later + Duration::from_millis(100)));
        assert_eq!(c.take(), Some(b"ij".to_vec()));
        assert_eq!(c.due(), None);
        assert_eq!(c.take(), None);
    }

    #[test]
    fn the_deadline_counts_from_the_first_unsent_byte() {
        let now = Instant::now();
        let mut c = Chunker::new(1024, Duration::from_millis(100));
        c.push(b"a", now);
        c.push(b"b", now + Duration::from_millis(50));
        assert_eq!(c.due(), Some(now + Duration::from_millis(100)));
    }
}
