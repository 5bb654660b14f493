//! Output of a task → numbered chunks, bounded by the task's output cap.
//!
//! - [`cap`]: which bytes are kept (a streamed head and a tail ring) and the drop marker.
//! - [`chunker`]: when bytes leave (64 KiB gathered, or 100 ms after the first unsent byte).
//! - [`mask`]: secret values replaced before anything leaves the host.
//! - [`stream`]: all together, numbering chunks and handing them to a [`ChunkSink`].
#![forbid(unsafe_code)]

pub mod cap;
pub mod chunker;
pub mod mask;
pub mod stream;

pub use cap::HeadTail;
pub use chunker::Chunker;
pub use mask::Masker;
pub use stream::{ChunkSink, LogStream, LogSummary, VecSink};

/// Largest chunk sent; a chunk leaves as soon as this much is buffered.
pub const CHUNK_BYTES: usize = 64 * 1024;
/// A chunk leaves at the latest this long after its first byte arrived.
pub const CHUNK_DELAY: std::time::Duration = std::time::Duration::from_millis(100);
/// Output cap used when a task says 0 (JOB's 5 MB).
pub const DEFAULT_OUTPUT_CAP: u64 = 5 * 1024 * 1024;
