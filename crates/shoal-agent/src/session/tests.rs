//! The session against a tiny in-test WebSocket server.
#![forbid(unsafe_code)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use shoal_proto::agent::{
    Ack, AckItem, AgentMsg, ExitReason, Hello, LogChunk, Reject, RunTask, ServerMsg, TaskKey, Welcome, PROTOCOL_VERSION,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::outbox::{Outbox, TaskRecord, RESTARTED_NOTE};
use crate::{AgentConfig, HostFacts};

const PATIENCE: Duration = Duration::from_secs(15);

struct FakeServer {
    listener: TcpListener,
}

impl FakeServer {
    async fn start() -> Self {
        FakeServer { listener: TcpListener::bind("127.0.0.1:0").await.unwrap() }
    }

    fn url(&self) -> String {
        format!("http://{}", self.listener.local_addr().unwrap())
    }

    #[allow(clippy::result_large_err)] // the handshake callback's signature is tungstenite's
    async fn accept(&self) -> Conn {
        let (tcp, _) = tokio::time::timeout(PATIENCE, self.listener.accept()).await.expect("the agent connects").unwrap();
        let mut path = String::new();
        let ws = tokio_tungstenite::accept_hdr_async(tcp, |req: &tokio_tungstenite::tungstenite::handshake::server::Request, resp| {
            path = req.uri().path().to_string();
            Ok(resp)
        })
        .await
        .unwrap();
        assert_eq!(path, "/api/shoal/v1/agent/ws");
        Conn { ws }
    }
}

struct Conn {
    ws: WebSocketStream<TcpStream>,
}

impl Conn {
    /// The next message, heartbeats included.
    async fn recv_any(&mut self) -> AgentMsg {
        loop {
            let frame =
                tokio::time::timeout(PATIENCE, self.ws.next()).await.expect("a message from the agent").expect("connection open").unwrap();
            match frame {
                Message::Text(t) => return serde_json::from_str(&t).unwrap(),
                Message::Binary(b) => return AgentMsg::Log(LogChunk::from_frame(&b).expect("a log frame")),
                _ => {}
            }
        }
    }

    /// The next message that is not a heartbeat.
    async fn recv(&mut self) -> AgentMsg {
        loop {
            match self.recv_any().await {
                AgentMsg::Heartbeat => continue,
                m => return m,
            }
        }
    }

    async fn send(&mut self, msg: ServerMsg) {
        let text = serde_json::to_string(&msg).unwrap();
        self.ws.send(Message::text(text)).await.unwrap();
    }

    async fn hello(&mut self) -> Hello {
        match self.recv().await {
            AgentMsg::Hello(h) => h,
            other => panic!("expected Hello, got {other:?}"),
        }
    }

    async fn welcome(&mut self, heartbeat_secs: u64) -> Hello {
        let hello = self.hello().await;
        self.send(ServerMsg::Welcome(Welcome { bk_host_id: 7, heartbeat_secs })).await;
        hello
    }
}

struct AgentUnderTest {
    stop: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl AgentUnderTest {
    fn start(url: &str, state_dir: &std::path::Path) -> Self {
        let mut config = AgentConfig::new(
            vec![url.to_string()],
            "tok".into(),
            state_dir.to_path_buf(),
            HostFacts { ip: "10.0.0.1".into(), ..HostFacts::default() },
        );
        config.reconnect_max = Duration::from_millis(400);
        config.kill_grace = Duration::from_millis(300);
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(crate::run(config, async {
            let _ = stopped.await;
        }));
        AgentUnderTest { stop: Some(stop), handle }
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(PATIENCE, &mut self.handle).await.expect("the agent stops").unwrap()
    }
}

impl Drop for AgentUnderTest {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

fn key(n: i64) -> TaskKey {
    TaskKey::new(n, 0, 7)
}

fn me() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid()).unwrap().unwrap().name
}

fn run_task(key: TaskKey, script: &str) -> ServerMsg {
    ServerMsg::Run(RunTask {
        key,
        language: 1,
        script: script.as_bytes().to_vec(),
        args: vec![],
        sensitive: false,
        user: me(),
        timeout_secs: 600,
        output_cap: 1 << 20,
        mask: vec![],
        transfer: None,
    })
}

async fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + PATIENCE;
    while !cond() {
        if std::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

#[tokio::test]
async fn an_unacknowledged_result_is_resent_after_a_reconnect() {
    let state = tempfile::tempdir().unwrap();
    let server = FakeServer::start().await;
    let agent = AgentUnderTest::start(&server.url(), state.path());
    let k = key(1);

    let mut conn = server.accept().await;
    let hello = conn.welcome(30).await;
    assert_eq!((hello.protocol, hello.token.as_str()), (PROTOCOL_VERSION, "tok"));
    assert_eq!(hello.facts.ip, "10.0.0.1");
    assert!(hello.known_tasks.is_empty());
    conn.send(run_task(k, "echo hi; exit 3")).await;
    match conn.recv().await {
        AgentMsg::Log(c) => assert_eq!((c.key, c.seq, c.data.as_slice()), (k, 0, &b"hi\n"[..])),
        other => panic!("{other:?}"),
    }
    match conn.recv().await {
        AgentMsg::Exit(e) => {
            assert_eq!((e.key, e.reason, e.exit_code, e.chunks), (k, ExitReason::Exited, Some(3), 1))
        }
        other => panic!("{other:?}"),
    }
    let outbox = Outbox::new(state.path());
    assert!(outbox.task_dir(&k).join("exit.json").is_file(), "persisted before sending");
    drop(conn); // no Ack

    let mut conn = server.accept().await;
    let again = conn.welcome(30).await;
    assert_eq!(again.agent_id, hello.agent_id);
    assert_eq!(again.known_tasks, vec![k]);
    match conn.recv().await {
        AgentMsg::Log(c) => assert_eq!((c.seq, c.data.as_slice()), (0, &b"hi\n"[..])),
        other => panic!("{other:?}"),
    }
    match conn.recv().await {
        AgentMsg::Exit(e) => assert_eq!((e.key, e.exit_code), (k, Some(3))),
        other => panic!("{other:?}"),
    }
    conn.send(ServerMsg::Ack(Ack { items: vec![AckItem { key: k, upto_seq: Some(0), exit: true }] })).await;
    assert!(wait_for(|| !outbox.task_dir(&k).exists() && !outbox.record_path(&k).exists()).await, "an acknowledged task is forgotten");
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn chunk_acks_delete_chunks_and_cancel_stops_the_task() {
    let state = tempfile::tempdir().unwrap();
    let server = FakeServer::start().await;
    let agent = AgentUnderTest::start(&server.url(), state.path());
    let outbox = Outbox::new(state.path());
    let k = key(2);

    let mut conn = server.accept().await;
    conn.welcome(30).await;
    conn.send(run_task(k, "echo started; sleep 300")).await;
    match conn.recv().await {
        AgentMsg::Log(c) => assert_eq!(c.data, b"started\n"),
        other => panic!("{other:?}"),
    }
    assert!(outbox.record_path(&k).is_file(), "task record written before the run");
    assert!(outbox.task_dir(&k).join("0.chunk").is_file());
    // A repeated Run for a running task is ignored.
    conn.send(run_task(k, "echo second")).await;
    conn.send(ServerMsg::Ack(Ack { items: vec![AckItem { key: k, upto_seq: Some(0), exit: false }] })).await;
    assert!(wait_for(|| !outbox.task_dir(&k).join("0.chunk").exists()).await);
    conn.send(ServerMsg::Cancel { key: k }).await;
    conn.send(ServerMsg::Cancel { key: key(99) }).await; // unknown: ignored
    let note = match conn.recv().await {
        AgentMsg::Log(c) => String::from_utf8(c.data).unwrap(),
        other => panic!("{other:?}"),
    };
    assert!(note.starts_with("[shoal] cancelled"), "{note}");
    match conn.recv().await {
        AgentMsg::Exit(e) => {
            assert_eq!((e.key, e.reason, e.chunks), (k, ExitReason::Cancelled, 2));
        }
        other => panic!("{other:?}"),
    }
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn a_silent_server_is_left_after_three_heartbeats() {
    let state = tempfile::tempdir().unwrap();
    let server = FakeServer::start().await;
    let agent = AgentUnderTest::start(&server.url(), state.path());

    let mut silent = server.accept().await;
    silent.welcome(1).await;
    assert!(matches!(silent.recv_any().await, AgentMsg::Heartbeat));
    // Say nothing more: the agent must give up on this connection and dial again.
    let started = std::time::Instant::now();
    let mut conn = server.accept().await;
    assert!(started.elapsed() >= Duration::from_secs(1));
    conn.welcome(30).await;
    drop(silent);
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn a_final_reject_stops_the_agent() {
    let state = tempfile::tempdir().unwrap();
    let server = FakeServer::start().await;
    let mut agent = AgentUnderTest::start(&server.url(), state.path());

    // A retryable reject: the agent comes back.
    let mut conn = server.accept().await;
    conn.hello().await;
    conn.send(ServerMsg::Reject(Reject { message: "busy".into(), retry: true })).await;
    let mut conn = server.accept().await;
    conn.hello().await;
    conn.send(ServerMsg::Reject(Reject { message: "bad token".into(), retry: false })).await;
    let err = tokio::time::timeout(PATIENCE, &mut agent.handle).await.expect("the agent gives up").unwrap().unwrap_err();
    assert!(err.to_string().contains("bad token"), "{err}");
}

#[tokio::test]
async fn shutdown_kills_tasks_and_the_next_start_reports_them() {
    let state = tempfile::tempdir().unwrap();
    let server = FakeServer::start().await;
    let k = key(3);
    let lost = key(4);
    let outbox = Outbox::new(state.path());

    let agent = AgentUnderTest::start(&server.url(), state.path());
    let mut conn = server.accept().await;
    let first_hello = conn.welcome(30).await;
    conn.send(run_task(k, "echo started; sleep 300")).await;
    assert!(matches!(conn.recv().await, AgentMsg::Log(_)));
    agent.stop().await.unwrap();
    let exit: shoal_proto::agent::TaskExit =
        serde_json::from_slice(&std::fs::read(outbox.task_dir(&k).join("exit.json")).unwrap()).unwrap();
    assert_eq!(exit.reason, ExitReason::AgentRestarted);

    // As if the agent had crashed while `lost` ran: a record and nothing else.
    outbox.write_record(&lost, &TaskRecord { start_ms: 42, ..Default::default() }).unwrap();

    let agent = AgentUnderTest::start(&server.url(), state.path());
    let mut conn = server.accept().await;
    let hello = conn.welcome(30).await;
    assert_eq!(hello.agent_id, first_hello.agent_id, "the identity survives restarts");
    assert_eq!(hello.known_tasks, vec![k, lost]);
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(conn.recv().await);
    }
    // `k`: chunk 0 (started), chunk 1 (shutdown note), exit; `lost`: the note, exit.
    let summary: Vec<(TaskKey, &str, u64)> = got
        .iter()
        .map(|m| match m {
            AgentMsg::Log(c) => (c.key, "log", c.seq),
            AgentMsg::Exit(e) => (e.key, "exit", e.chunks),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(summary, vec![(k, "log", 0), (k, "log", 1), (k, "exit", 2), (lost, "log", 0), (lost, "exit", 1)]);
    match &got[3] {
        AgentMsg::Log(c) => assert_eq!(c.data, format!("{RESTARTED_NOTE}; it had not started a process\n").as_bytes()),
        _ => unreachable!(),
    }
    match &got[4] {
        AgentMsg::Exit(e) => assert_eq!((e.reason, e.start_ms), (ExitReason::AgentRestarted, 42)),
        _ => unreachable!(),
    }
    // A repeated Run for a task whose result is pending does not run it again; the next Run
    // does run, and its output is the next thing the server sees.
    conn.send(run_task(lost, "echo must-not-run")).await;
    conn.send(run_task(key(5), "echo fresh")).await;
    match conn.recv().await {
        AgentMsg::Log(c) => assert_eq!((c.key, c.data.as_slice()), (key(5), &b"fresh\n"[..])),
        other => panic!("{other:?}"),
    }
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn configuration_errors_are_reported_at_start() {
    let state = tempfile::tempdir().unwrap();
    let mut config = AgentConfig::new(vec!["http://127.0.0.1:1".into()], "t".into(), state.path().into(), HostFacts::default());
    config.insecure = false;
    let err = crate::run(config, std::future::pending()).await.unwrap_err();
    assert!(err.to_string().contains("plain http"), "{err}");
    let config = AgentConfig::new(vec![], "t".into(), state.path().into(), HostFacts::default());
    assert!(crate::run(config, std::future::pending()).await.is_err());
}

#[test]
fn run_is_send() {
    fn assert_send<T: Send>(_: T) {}
    let config = AgentConfig::new(vec![], "t".into(), "/nonexistent".into(), HostFacts::default());
    assert_send(crate::run(config, async {}));
}

/// No record, no run: a task the agent cannot record (it would forget it in a crash and run
/// it again when asked again) is answered as not started, and its script never runs.
#[tokio::test]
async fn a_task_that_cannot_be_recorded_is_not_run() {
    let state = tempfile::tempdir().unwrap();
    let marks = tempfile::tempdir().unwrap();
    let server = FakeServer::start().await;
    let agent = AgentUnderTest::start(&server.url(), state.path());
    let mut conn = server.accept().await;
    conn.welcome(30).await;
    // The records dir becomes unusable (even for root): a file where the dir was.
    let tasks = state.path().join("tasks");
    std::fs::remove_dir_all(&tasks).unwrap();
    std::fs::write(&tasks, b"").unwrap();
    let ran = marks.path().join("ran");
    conn.send(run_task(key(7), &format!("touch {}", ran.display()))).await;
    match conn.recv().await {
        AgentMsg::Log(c) => {
            let text = String::from_utf8_lossy(&c.data);
            assert!(text.starts_with("[shoal] the task was not started: the agent cannot record it"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    match conn.recv().await {
        AgentMsg::Exit(e) => assert_eq!((e.key, e.reason, e.chunks), (key(7), ExitReason::StartFailed, 1)),
        other => panic!("{other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!ran.exists(), "the script ran without a record");
    agent.stop().await.unwrap();
}
