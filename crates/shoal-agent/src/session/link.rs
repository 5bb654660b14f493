//! An established WebSocket to a server: JSON frames in and out (log chunks out as binary
//! frames), with a send timeout so a stalled peer is noticed instead of blocking the agent.
#![forbid(unsafe_code)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use shoal_proto::agent::{AgentMsg, ServerMsg};
use tokio_tungstenite::tungstenite::Message;

use super::connect::Ws;
use super::error::LinkError;

pub struct Link {
    ws: Ws,
    /// Longest a single send may take before the link counts as dead.
    send_timeout: Duration,
}

/// What came in.
#[derive(Debug)]
pub enum Incoming {
    Msg(ServerMsg),
    /// A frame that is not a message for us (ping, pong, binary, undecodable text).
    Other,
}

impl Link {
    pub fn new(ws: Ws, send_timeout: Duration) -> Self {
        Link { ws, send_timeout }
    }

    pub fn set_send_timeout(&mut self, t: Duration) {
        self.send_timeout = t;
    }

    pub async fn send(&mut self, msg: &AgentMsg) -> Result<(), LinkError> {
        let frame = match msg {
            AgentMsg::Log(chunk) => Message::binary(chunk.to_frame()),
            _ => Message::text(serde_json::to_string(msg)?),
        };
        tokio::time::timeout(self.send_timeout, self.ws.send(frame)).await.map_err(|_| LinkError::Timeout("sending to the server"))??;
        Ok(())
    }

    /// The next frame. Cancel-safe (a `select!` branch).
    pub async fn recv(&mut self) -> Result<Incoming, LinkError> {
        match self.ws.next().await {
            None => Err(LinkError::Closed),
            Some(Err(e)) => Err(e.into()),
            Some(Ok(Message::Close(_))) => Err(LinkError::Closed),
            Some(Ok(Message::Text(text))) => match serde_json::from_str::<ServerMsg>(&text) {
                Ok(msg) => Ok(Incoming::Msg(msg)),
                Err(e) => {
                    tracing::warn!(error = %e, "undecodable message from the server; ignored");
                    Ok(Incoming::Other)
                }
            },
            Some(Ok(_)) => Ok(Incoming::Other),
        }
    }

    /// Sends a close frame, briefly; the peer may already be gone.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(None)).await;
    }
}
