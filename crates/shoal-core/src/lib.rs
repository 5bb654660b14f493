//! Shoal's domain rules, with no I/O.
//!
//! # Layout
//! - [`error`]: [`JobError`], a JOB error code with its message arguments; every layer that
//!   rejects a request speaks it, the API renders it.
//! - [`scope`]: resource scope (`bk_scope_type`/`bk_scope_id`, legacy `bk_biz_id`).
//! - [`validate`]: request checks in the order JOB runs them, decoding base64 at the boundary.
//! - [`outcome`]: how an agent's exit becomes a host status, and host statuses a step status.
//! - [`selector`]: label selectors and dynamic groups (saved host selectors).
//! - [`limits`]: JOB's numeric limits.
//! - [`template`]: job templates as documents, their diff, and variables for scripts.
//! - [`danger`]: dangerous-statement rules and the script check (`check_script`, `1244019`).
//! - [`rolling`]: rolling batch expressions and `rolling_config`.
#![forbid(unsafe_code)]

pub mod danger;
pub mod error;
pub mod limits;
pub mod outcome;
pub mod rolling;
pub mod scope;
pub mod selector;
pub mod template;
pub mod validate;

pub use error::JobError;
pub use scope::Scope;
pub mod time;
