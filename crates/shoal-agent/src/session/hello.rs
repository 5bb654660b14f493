//! The greeting: `Hello` up, then `Welcome` or `Reject` down.
#![forbid(unsafe_code)]

use std::time::Duration;

use shoal_proto::agent::{AgentMsg, Hello, ServerMsg, Welcome};

use super::error::LinkError;
use super::link::{Incoming, Link};

/// How long the server may take to answer `Hello`.
pub const WELCOME_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn greet(link: &mut Link, hello: Hello) -> Result<Welcome, LinkError> {
    link.send(&AgentMsg::Hello(hello)).await?;
    tokio::time::timeout(WELCOME_TIMEOUT, async {
        loop {
            match link.recv().await? {
                Incoming::Msg(ServerMsg::Welcome(w)) => return Ok(w),
                Incoming::Msg(ServerMsg::Reject(r)) => return Err(LinkError::Rejected { message: r.message, retry: r.retry }),
                Incoming::Msg(other) => {
                    tracing::warn!(?other, "message before Welcome; ignored");
                }
                Incoming::Other => {}
            }
        }
    })
    .await
    .map_err(|_| LinkError::Timeout("waiting for Welcome"))?
}
