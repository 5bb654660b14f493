//! The agent's side of the connection to the server.
//!
//! - [`connect`]: URL → endpoint, TLS, WebSocket handshake.
//! - [`hello`]: `Hello` → `Welcome` / `Reject`.
//! - [`link`]: an open connection (JSON frames, send timeout).
//! - [`backoff`]: reconnect delays.
//! - [`identity`]: the agent id in the state dir.
//! - [`outbox`]: task records and unacknowledged results on disk.
//! - [`agent`]: the state the session task owns and how it reacts to messages and events.
//! - [`runner`]: one task per running script.
//! - [`executor`]: how a task is carried out (real processes, or an instant simulated answer).
//!
//! [`run`] is the loop: dial the next server, greet, resend what is pending, then serve
//! (heartbeats, dead-link detection, messages both ways) until the link fails; back off and
//! dial again. Tasks keep running while disconnected; their output waits in the outbox.
#![forbid(unsafe_code)]

pub mod agent;
pub mod backoff;
pub mod connect;
pub mod error;
pub mod executor;
pub mod hello;
pub mod identity;
pub mod link;
pub mod outbox;
pub mod runner;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use shoal_proto::agent::{AgentMsg, Welcome};
use tokio::time::{interval_at, sleep, Instant, MissedTickBehavior};

use self::agent::Agent;
use self::backoff::Backoff;
use self::connect::Target;
use self::error::{LinkError, StartError};
use self::executor::ProcessExecutor;
use self::link::{Incoming, Link};
use self::outbox::Outbox;
use crate::exec::cgroup::Placement;
use crate::exec::{ExecEnv, StartedHook};
use crate::{AgentConfig, OutboxMode};

/// Runs the agent until `shutdown` resolves (→ `Ok`) or a server refuses it for good
/// (`Reject` with `retry: false` → `Err`). Configuration errors are returned at once.
pub async fn run(config: AgentConfig, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
    let mut shutdown = std::pin::pin!(shutdown);
    if config.servers.is_empty() {
        return Err(StartError::NoServers.into());
    }
    let targets = config.servers.iter().map(|s| Target::parse(s, config.insecure)).collect::<Result<Vec<_>, _>>()?;
    let tls = if targets.iter().any(|t| t.tls) { Some(connect::tls_connector(config.ca_file.as_deref())?) } else { None };

    let outbox = match config.outbox {
        OutboxMode::Disk => Outbox::new(&config.state_dir),
        OutboxMode::Memory => Outbox::in_memory(&config.state_dir),
    };
    let (agent_id, credential, index, placement) = {
        let outbox = outbox.clone();
        let state_dir = config.state_dir.clone();
        let cgroups = config.executor.is_none() && config.outbox == OutboxMode::Disk;
        tokio::task::spawn_blocking(move || -> Result<_, StartError> {
            let err = |source| StartError::StateDir { path: state_dir.clone(), source };
            outbox.create_dirs().map_err(err)?;
            let id = identity::load_or_create(&state_dir).map_err(err)?;
            let credential = identity::load_or_create_credential(&state_dir).map_err(err)?;
            // Kills what is left of tasks that were running when the agent stopped.
            let index = outbox.load().map_err(err)?;
            let placement =
                if cgroups { Placement::detect(&id) } else { Placement::ProcessGroup { why: "simulated or in-memory agent".into() } };
            placement.sweep();
            Ok((id, credential, index, placement))
        })
        .await
        .context("preparing the state dir")??
    };
    match &placement {
        Placement::Cgroups(dir) => {
            tracing::info!(%agent_id, pending = index.pending.len(), cgroups = %dir.display(), "shoal agent starting")
        }
        Placement::ProcessGroup { why } => tracing::warn!(%agent_id, pending = index.pending.len(),
            "shoal agent starting without cgroups ({why}); stopping a task reaches its process group only"),
    }

    let executor = match &config.executor {
        Some(e) => e.clone(),
        None => {
            let mut env = ExecEnv::new(outbox.scripts_dir(), config.kill_grace, placement.clone());
            let mut fetcher = crate::files::Fetcher::new(&config.servers, connect::client_config(config.ca_file.as_deref())?)?;
            if let Some(bind) = &config.peer_listen {
                match crate::files::swarm::Peers::start(bind).await {
                    Ok(p) => {
                        let mut withdrawals = p.withdrawals();
                        let teller = fetcher.clone();
                        tokio::spawn(async move {
                            while let Some(w) = withdrawals.recv().await {
                                teller.withdraw(&w).await;
                            }
                        });
                        fetcher.peers = Some(p);
                    }
                    Err(e) => tracing::warn!(%bind, error = %e, "cannot serve files to peers; every file will come from the server"),
                }
            }
            env.fetcher = Some(fetcher);
            let records = outbox.clone();
            env.on_started = Some(StartedHook(Arc::new(move |key, whereabouts| {
                if let Err(e) = records.note_started(key, whereabouts) {
                    tracing::warn!(%key, error = %e, "cannot note where the task runs; a crash would leave it running");
                }
            })));
            Arc::new(ProcessExecutor { env })
        }
    };
    let mut agent = Agent::with_executor(agent_id, config.token, config.facts, outbox, executor, index);
    agent.credential = Some(credential);
    let mut backoff = Backoff::new(config.reconnect_max);
    let mut attempt = 0usize;
    let result = loop {
        let target = &targets[attempt % targets.len()];
        attempt += 1;
        let hello = agent.hello();
        let greeted = async {
            let ws = connect::dial(target, tls.as_ref()).await?;
            let mut link = Link::new(ws, hello::WELCOME_TIMEOUT);
            let welcome = hello::greet(&mut link, hello).await?;
            Ok::<_, LinkError>((link, welcome))
        };
        match while_waiting(&mut agent, greeted, shutdown.as_mut()).await {
            None => break Ok(()),
            Some(Ok((mut link, welcome))) => {
                tracing::info!(server = %target.base, bk_host_id = welcome.bk_host_id,
                    heartbeat_secs = welcome.heartbeat_secs, "connected");
                backoff.reset();
                // Enrolled: the credential opens every later hello; the token is not kept.
                agent.forget_token();
                match serve(&mut agent, &mut link, &welcome, shutdown.as_mut()).await {
                    Ok(()) => {
                        link.close().await;
                        break Ok(());
                    }
                    Err(e) => tracing::warn!(server = %target.base, error = %e, "connection lost"),
                }
            }
            Some(Err(LinkError::Rejected { message, retry: false })) => {
                break Err(anyhow::anyhow!("server {} rejected this agent: {message}", target.base));
            }
            Some(Err(e)) => tracing::warn!(server = %target.base, error = %e, "cannot connect"),
        }
        if while_waiting(&mut agent, sleep(backoff.next_delay()), shutdown.as_mut()).await.is_none() {
            break Ok(());
        }
    };
    agent.shutdown(config.kill_grace).await;
    let _ = tokio::task::spawn_blocking(move || placement.sweep()).await;
    tracing::info!("shoal agent stopped");
    result
}

/// Drives `fut` while still taking in task events (tasks run on while disconnected).
/// `None` if shutdown came first.
async fn while_waiting<F: Future, S: Future<Output = ()>>(agent: &mut Agent, fut: F, mut shutdown: Pin<&mut S>) -> Option<F::Output> {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            out = &mut fut => return Some(out),
            Some(event) = agent.events.recv() => {
                let _ = agent.on_event(event, None).await;
            }
            _ = shutdown.as_mut() => return None,
        }
    }
}

/// One welcomed session: resend what is pending, then messages both ways and heartbeats.
/// `Ok` on shutdown; `Err` when the link fails or goes silent for three heartbeats.
async fn serve<S: Future<Output = ()>>(
    agent: &mut Agent,
    link: &mut Link,
    welcome: &Welcome,
    mut shutdown: Pin<&mut S>,
) -> Result<(), LinkError> {
    // Clamped so a bad value can neither spin nor overflow the timers.
    let beat = Duration::from_secs(welcome.heartbeat_secs.clamp(1, 3600));
    let silence_limit = beat * 3;
    link.set_send_timeout(silence_limit);
    agent.resend_all(link).await?;
    let mut ticker = interval_at(Instant::now() + beat, beat);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let silence = sleep(silence_limit);
    tokio::pin!(silence);
    loop {
        tokio::select! {
            _ = shutdown.as_mut() => return Ok(()),
            incoming = link.recv() => {
                silence.as_mut().reset(Instant::now() + silence_limit);
                if let Incoming::Msg(msg) = incoming? {
                    agent.on_server_msg(msg, link).await?;
                }
            }
            Some(event) = agent.events.recv() => agent.on_event(event, Some(link)).await?,
            _ = ticker.tick() => link.send(&AgentMsg::Heartbeat).await?,
            _ = &mut silence => return Err(LinkError::Timeout("no frame from the server for 3 heartbeats")),
        }
    }
}

#[cfg(test)]
mod tests;
