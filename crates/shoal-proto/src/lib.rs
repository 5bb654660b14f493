//! Shoal wire types, with no I/O.
//!
//! # Layout
//! - [`agent`]: messages between `shoal agent` and `shoal server` (JSON over WebSocket).
//! - [`jobv3`]: the BlueKing JOB v3 open API: envelope, request and response DTOs.
//! - [`status`]: JOB's run-status, host-status and script-language enums.
//! - [`code`]: JOB's error codes and their messages (zh-cn / en).
//! - [`lenient`]: serde helpers that accept what Python callers put on the wire
//!   (`"1"` for `1`, `"True"` for `true`).
#![forbid(unsafe_code)]

pub mod agent;
pub mod code;
pub mod grouping;
pub mod jobv3;
pub mod lenient;
pub mod status;

pub use code::ErrorCode;
