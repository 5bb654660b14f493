//! A task's output stream: cap, chunking and sequence numbers together.
#![forbid(unsafe_code)]

use std::future::Future;

use tokio::time::Instant;

use super::{Chunker, HeadTail, Masker, CHUNK_BYTES, CHUNK_DELAY};

/// Where numbered chunks go (the session persists them and sends them up; tests collect them).
pub trait ChunkSink {
    fn send_chunk(&mut self, seq: u64, data: Vec<u8>) -> impl Future<Output = ()> + Send;
}

/// Totals for `TaskExit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSummary {
    /// Chunks sent: `0..chunks`.
    pub chunks: u64,
    /// Bytes dropped between head and tail.
    pub dropped_bytes: u64,
}

#[derive(Debug)]
pub struct LogStream<S> {
    cap: HeadTail,
    chunker: Chunker,
    next_seq: u64,
    /// Last byte accepted, so agent notes start on a line of their own.
    last_byte: Option<u8>,
    /// Secret values to mask, if the task has any.
    masker: Option<Masker>,
    sink: S,
}

impl<S: ChunkSink> LogStream<S> {
    /// A stream capped at `cap` bytes (0 = default cap) whose first chunk gets `first_seq`.
    pub fn new(cap: u64, first_seq: u64, sink: S) -> Self {
        LogStream {
            cap: HeadTail::new(cap),
            chunker: Chunker::new(CHUNK_BYTES, CHUNK_DELAY),
            next_seq: first_seq,
            last_byte: None,
            masker: None,
            sink,
        }
    }

    /// Replace these values with `******` in everything written.
    pub fn with_mask(mut self, secrets: &[String]) -> Self {
        self.masker = Masker::new(secrets);
        self
    }

    /// Output of the task.
    pub async fn write(&mut self, data: &[u8]) {
        if let Some(&b) = data.last() {
            self.last_byte = Some(b);
        }
        match self.masker.as_mut().map(|m| m.push(data)) {
            Some(masked) => self.admit(&masked).await,
            None => self.admit(data).await,
        }
    }

    async fn admit(&mut self, data: &[u8]) {
        let head = self.cap.admit(data);
        for chunk in self.chunker.push(head, Instant::now()) {
            self.emit(chunk).await;
        }
    }

    /// A line from the agent itself (`[shoal] ...`), on a line of its own.
    pub async fn note(&mut self, line: &str) {
        let mut text = String::new();
        if self.last_byte.is_some_and(|b| b != b'\n') {
            text.push('\n');
        }
        text.push_str(line);
        text.push('\n');
        self.write(text.as_bytes()).await;
    }

    /// When buffered output must be flushed, if any is buffered.
    pub fn flush_due(&self) -> Option<Instant> {
        self.chunker.due()
    }

    /// Sends whatever is buffered.
    pub async fn flush(&mut self) {
        if let Some(chunk) = self.chunker.take() {
            self.emit(chunk).await;
        }
    }

    /// Flushes, then sends the tail (with the drop marker if output was dropped).
    pub async fn finish(&mut self) -> LogSummary {
        if let Some(rest) = self.masker.as_mut().map(Masker::finish) {
            self.admit(&rest).await;
        }
        self.flush().await;
        let tail = self.cap.finish();
        for piece in tail.chunks(CHUNK_BYTES) {
            self.emit(piece.to_vec()).await;
        }
        LogSummary { chunks: self.next_seq, dropped_bytes: self.cap.dropped() }
    }

    pub fn sink(&self) -> &S {
        &self.sink
    }

    async fn emit(&mut self, data: Vec<u8>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.sink.send_chunk(seq, data).await;
    }
}

/// A sink that keeps chunks in memory (tests).
#[derive(Debug, Default)]
pub struct VecSink(pub Vec<(u64, Vec<u8>)>);

impl ChunkSink for VecSink {
    async fn send_chunk(&mut self, seq: u64, data: Vec<u8>) {
        self.0.push((seq, data));
    }
}

impl VecSink {
    /// All chunk bytes concatenated.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.iter().flat_map(|(_, d)| d.clone()).collect::<Vec<_>>()).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::cap::drop_marker;

    #[tokio::test]
    async fn chunks_are_numbered_and_bounded() {
        let mut s = LogStream::new(10 * 1024 * 1024, 0, VecSink::default());
        s.write(&vec![b'a'; CHUNK_BYTES * 2 + 5]).await;
        assert_eq!(s.sink().0.len(), 2, "two full chunks leave at once");
        s.note("[shoal] done").await;
        let sum = s.finish().await;
        assert_eq!(sum, LogSummary { chunks: 3, dropped_bytes: 0 });
        let seqs: Vec<u64> = s.sink().0.iter().map(|(q, _)| *q).collect();
        assert_eq!(seqs, vec![0, 1, 2]);
        assert!(s.sink().0.iter().all(|(_, d)| d.len() <= CHUNK_BYTES));
        assert!(s.sink().text().ends_with("aaaaa\n[shoal] done\n"));
    }

    #[tokio::test]
    async fn a_secret_across_a_chunk_boundary_is_masked() {
        let mut s = LogStream::new(10 * 1024 * 1024, 0, VecSink::default()).with_mask(&["hunter2".to_string()]);
        let mut out = vec![b'x'; CHUNK_BYTES - 3];
        out.extend_from_slice(b"hunter2\n");
        for piece in out.chunks(1000) {
            s.write(piece).await;
        }
        s.finish().await;
        assert!(s.sink().0.len() >= 2, "the output spans two chunks");
        assert!(s.sink().0.iter().all(|(_, d)| !String::from_utf8_lossy(d).contains("hun")), "no piece of it in any chunk");
        assert!(s.sink().text().ends_with("xx******\n"));
    }

    #[tokio::test]
    async fn small_cap_keeps_head_marker_and_tail() {
        let mut s = LogStream::new(40, 7, VecSink::default());
        for i in 0..100 {
            s.write(format!("{i:03}\n").as_bytes()).await; // 400 bytes
        }
        let sum = s.finish().await;
        assert_eq!(sum.dropped_bytes, 400 - 40);
        assert_eq!(s.sink().0[0].0, 7);
        let text = s.sink().text();
        // head = 30 bytes, tail = 10 bytes
        let head: String = (0..100).map(|i| format!("{i:03}\n")).collect::<String>()[..30].into();
        let tail: String = (0..100).map(|i| format!("{i:03}\n")).collect::<String>()[390..].into();
        assert_eq!(text, format!("{head}{}{tail}", drop_marker(360)));
        assert_eq!(sum.chunks, 7 + s.sink().0.len() as u64);
    }
}
