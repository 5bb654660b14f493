//! Real processes: these tests run scripts on this host.
#![forbid(unsafe_code)]

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use shoal_proto::agent::{ExitReason, RunTask, TaskKey};
use tokio::sync::{mpsc, oneshot};

use super::cgroup::Placement;
use super::leftovers::group_members;
use super::*;
use crate::logs::{LogSummary, VecSink};

fn task(language: i32, script: &str, user: &str) -> RunTask {
    RunTask {
        key: TaskKey::new(1, 0, 1),
        language,
        script: script.as_bytes().to_vec(),
        args: vec![],
        sensitive: false,
        user: user.to_string(),
        timeout_secs: 60,
        output_cap: 1024 * 1024,
        mask: vec![],
        transfer: None,
    }
}

fn me() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid()).unwrap().unwrap().name
}

/// A test's scripts dir and its agent cgroup dir, removed when the test ends.
struct Scratch {
    _dir: tempfile::TempDir,
    placement: Placement,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Background children a test left running go with it.
        if let Placement::Cgroups(dir) = &self.placement {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if e.path().is_dir() {
                    super::cgroup::TaskCgroup::at(&e.path()).kill_all(Duration::from_secs(2));
                }
            }
        }
        self.placement.sweep();
    }
}

/// Scripts in a fresh dir; tasks in cgroups where this host allows it (as the agent would).
fn env(grace: Duration) -> (Scratch, ExecEnv) {
    let dir = tempfile::tempdir().unwrap();
    // Let other users reach their script file (setuid test); the file itself stays 0700.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let scripts = dir.path().join("scripts");
    std::fs::create_dir(&scripts).unwrap();
    std::fs::set_permissions(&scripts, std::fs::Permissions::from_mode(0o711)).unwrap();
    let name = format!("test-{}", dir.path().file_name().unwrap().to_string_lossy());
    let placement = Placement::detect(&name);
    let env = ExecEnv::new(scripts, grace, placement.clone());
    (Scratch { _dir: dir, placement }, env)
}

/// Whether process `pid` exists and is not a zombie.
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.split_whitespace().next() != Some("Z")))
        .unwrap_or(false)
}

async fn run(t: &RunTask) -> (ExecOutcome, String, LogSummary) {
    let (_dir, env) = env(Duration::from_millis(500));
    run_in(t, &env).await
}

async fn run_in(t: &RunTask, env: &ExecEnv) -> (ExecOutcome, String, LogSummary) {
    let (_keep, rx) = oneshot::channel();
    let mut logs = LogStream::new(t.output_cap, 0, VecSink::default());
    let out = execute(t, env, &mut logs, rx).await;
    let sum = logs.finish().await;
    let scripts_left = std::fs::read_dir(&env.scripts_dir).unwrap().count();
    assert_eq!(scripts_left, 0, "the script file is removed");
    (out, logs.sink().text(), sum)
}

async fn wait_for(mut cond: impl FnMut() -> bool, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends every chunk to a channel, so a test can wait for output.
struct ChannelSink(mpsc::UnboundedSender<Vec<u8>>);

impl ChunkSink for ChannelSink {
    async fn send_chunk(&mut self, _seq: u64, data: Vec<u8>) {
        let _ = self.0.send(data);
    }
}

#[tokio::test]
async fn exit_codes_are_reported() {
    let (out, text, sum) = run(&task(1, "echo hello; exit 3", &me())).await;
    assert_eq!((out.reason, out.exit_code), (ExitReason::Exited, Some(3)));
    assert_eq!(text, "hello\n");
    assert_eq!(sum, LogSummary { chunks: 1, dropped_bytes: 0 });
    assert!(out.start_ms > 1_600_000_000_000 && out.end_ms >= out.start_ms);

    let (out, text, sum) = run(&task(1, "true", &me())).await;
    assert_eq!((out.reason, out.exit_code), (ExitReason::Exited, Some(0)));
    assert_eq!((text.as_str(), sum.chunks), ("", 0));
}

#[tokio::test]
async fn stdout_and_stderr_share_one_stream_in_order() {
    let script = "echo out1; echo err1 >&2; echo out2; echo err2 1>&2";
    let (out, text, _) = run(&task(1, script, &me())).await;
    assert_eq!(out.reason, ExitReason::Exited);
    assert_eq!(text, "out1\nerr1\nout2\nerr2\n");
}

#[tokio::test]
async fn environment_and_arguments() {
    let mut t = task(1, r#"echo "$USER|$LOGNAME|$HOME|$#|$1|$2|$SHOAL_SECRET_TEST|$(pwd)""#, &me());
    t.args = vec!["a b".into(), "c".into()];
    let (_, text, _) = run(&t).await;
    let user = nix::unistd::User::from_name(&me()).unwrap().unwrap();
    let workdir = if user.dir.is_dir() { user.dir.clone() } else { "/tmp".into() };
    let workdir = std::fs::canonicalize(workdir).unwrap();
    assert_eq!(text, format!("{0}|{0}|{1}|2|a b|c||{2}\n", me(), user.dir.display(), workdir.display()));
}

#[tokio::test]
async fn the_job_environment_is_minimal() {
    // The test process has plenty of variables of its own (CARGO_*, …): none may reach a job.
    let (_, text, _) = run(&task(1, "env | cut -d= -f1 | sort", &me())).await;
    let names: Vec<&str> = text.lines().collect();
    let allowed = ["PATH", "HOME", "USER", "LOGNAME", "SHELL", "SHOAL_VARS_FILE", "LANG", "LC_ALL", "TZ", "PWD", "SHLVL", "_", "OLDPWD"];
    for n in &names {
        assert!(allowed.contains(n), "{n} leaked into the job's environment: {names:?}");
    }
    for n in ["PATH", "HOME", "USER", "LOGNAME", "SHELL", "SHOAL_VARS_FILE"] {
        assert!(names.contains(&n), "{n} missing: {names:?}");
    }
}

#[tokio::test]
async fn variables_a_script_leaves_come_back_with_its_outcome() {
    // What a plan step's prelude writes as the script exits (masked like its output).
    let mut t = task(1, "printf '%s\\0%s\\0' VERSION 2.0 PW x-hunter2 > \"$SHOAL_VARS_FILE\"; exit 2", &me());
    t.mask = vec!["hunter2".into()];
    let (out, text, _) = run(&t).await;
    assert_eq!((out.reason, out.exit_code), (ExitReason::Exited, Some(2)), "{text}");
    let want: BTreeMap<String, String> =
        [("VERSION", "2.0"), ("PW", "x-******")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert_eq!(out.vars, want);
    // Nothing written: nothing reported. The private directory is gone either way (`run_in`).
    let (out, text, _) = run(&task(1, "test -d \"$(dirname \"$SHOAL_VARS_FILE\")\" && echo ok", &me())).await;
    assert_eq!((out.vars.len(), text.as_str()), (0, "ok\n"));
    // Too much: ignored, and the log says so.
    let t = task(1, "{ printf 'V\\000'; head -c 70000 /dev/zero | tr '\\0' x; printf '\\000'; } > \"$SHOAL_VARS_FILE\"", &me());
    let (out, text, _) = run(&t).await;
    assert!(out.vars.is_empty());
    assert!(text.contains("[shoal] the variables this script set were ignored") && text.contains("64 KiB"), "{text}");
}

#[tokio::test]
async fn python_and_perl_run() {
    let mut t = task(4, "import sys\nprint('py', sys.argv[1:])\n", &me());
    t.args = vec!["x".into(), "y z".into()];
    let (out, text, _) = run(&t).await;
    assert_eq!((out.reason, out.exit_code), (ExitReason::Exited, Some(0)), "{text}");
    assert_eq!(text, "py ['x', 'y z']\n");

    let mut t = task(3, "print \"perl $ARGV[0]\\n\"; exit 4;", &me());
    t.args = vec!["ok".into()];
    let (out, text, _) = run(&t).await;
    assert_eq!((out.reason, out.exit_code), (ExitReason::Exited, Some(4)), "{text}");
    assert_eq!(text, "perl ok\n");
}

#[tokio::test]
async fn bat_needs_windows() {
    let (out, text, _) = run(&task(2, "echo hi", &me())).await;
    assert_eq!((out.reason, out.exit_code), (ExitReason::InterpreterMissing, None));
    assert_eq!(text, format!("[shoal] bat scripts need a Windows host; this host is {}\n", std::env::consts::OS));
}

#[tokio::test]
async fn missing_user_is_a_user_error() {
    let (out, text, _) = run(&task(1, "echo hi", "shoal-no-such-user")).await;
    assert_eq!(out.reason, ExitReason::UserError);
    if nix::unistd::geteuid().is_root() {
        assert_eq!(text, "[shoal] user \"shoal-no-such-user\" does not exist on this host\n");
    }
}

#[tokio::test]
async fn a_signal_is_reported_as_128_plus_signo() {
    let (out, text, _) = run(&task(1, "echo before; kill -KILL $$", &me())).await;
    assert_eq!((out.reason, out.exit_code), (ExitReason::Signaled, Some(137)));
    assert!(text.starts_with("before\n[shoal] the script was killed by signal 9"), "{text}");
}

#[tokio::test]
async fn start_failure_is_reported() {
    let (_dir, mut env) = env(Duration::from_millis(100));
    env.scripts_dir = env.scripts_dir.join("missing");
    let (_keep, rx) = oneshot::channel();
    let mut logs = LogStream::new(0, 0, VecSink::default());
    let out = execute(&task(1, "true", &me()), &env, &mut logs, rx).await;
    logs.finish().await;
    assert_eq!(out.reason, ExitReason::StartFailed);
    assert!(logs.sink().text().starts_with("[shoal] could not write the script file"));
}

fn pgid_from(text: &str) -> i32 {
    let line = text.lines().find_map(|l| l.strip_prefix("pgid=")).expect("pgid line");
    line.trim().parse().unwrap()
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let mut t = task(1, "echo pgid=$$; sleep 300 & sleep 300 & sleep 300", &me());
    t.timeout_secs = 1;
    let started = Instant::now();
    let (out, text, _) = run(&t).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(out.reason, ExitReason::Timeout, "{text}");
    let pgid = pgid_from(&text);
    assert_eq!(out.pgid, Some(pgid));
    assert!(text.contains("[shoal] timed out after 1 s"), "{text}");
    assert!(wait_for(|| group_members(pgid).is_empty(), Duration::from_secs(5)).await, "left in group {pgid}: {:?}", group_members(pgid));
}

#[tokio::test]
async fn processes_ignoring_sigterm_get_sigkill_after_the_grace() {
    let mut t = task(1, "trap '' TERM; echo pgid=$$; sleep 300 & sleep 300", &me());
    t.timeout_secs = 1;
    let (out, text, _) = run(&t).await;
    assert_eq!((out.reason, out.exit_code), (ExitReason::Timeout, Some(137)), "{text}");
    let pgid = pgid_from(&text);
    assert!(wait_for(|| group_members(pgid).is_empty(), Duration::from_secs(5)).await, "left in group {pgid}: {:?}", group_members(pgid));
}

#[tokio::test]
async fn cancel_kills_the_whole_process_group() {
    let (_dir, env) = env(Duration::from_millis(500));
    let (kill_tx, kill_rx) = oneshot::channel();
    let (chunks_tx, mut chunks_rx) = mpsc::unbounded_channel();
    let t = task(1, "echo pgid=$$; sleep 300 & sleep 300", &me());
    let run = tokio::spawn(async move {
        let mut logs = LogStream::new(0, 0, ChannelSink(chunks_tx));
        let out = execute(&t, &env, &mut logs, kill_rx).await;
        logs.finish().await;
        out
    });
    let first = chunks_rx.recv().await.unwrap();
    let pgid = pgid_from(&String::from_utf8_lossy(&first));
    assert!(!group_members(pgid).is_empty());
    kill_tx.send(KillReason::Cancel).unwrap();
    let out = tokio::time::timeout(Duration::from_secs(10), run).await.unwrap().unwrap();
    assert_eq!(out.reason, ExitReason::Cancelled);
    let mut rest = String::new();
    while let Ok(c) = chunks_rx.try_recv() {
        rest.push_str(&String::from_utf8_lossy(&c));
    }
    assert!(rest.contains("[shoal] cancelled"), "{rest}");
    assert!(wait_for(|| group_members(pgid).is_empty(), Duration::from_secs(5)).await, "left in group {pgid}: {:?}", group_members(pgid));
}

fn daemon_from(text: &str) -> i32 {
    let line = text.lines().find_map(|l| l.strip_prefix("daemon=")).expect("daemon line");
    line.trim().parse().unwrap()
}

/// As root, every task gets its cgroup, and a timeout reaches a `setsid` daemon (which left
/// the process group); without cgroups, the task's log says what a timeout cannot reach.
#[tokio::test]
async fn a_timeout_reaches_setsid_daemons_through_the_cgroup() {
    let (_dir, env) = env(Duration::from_millis(300));
    let mut t = task(1, "setsid sh -c 'echo daemon=$$; exec sleep 300' & sleep 300", &me());
    t.timeout_secs = 1;
    let (out, text, _) = run_in(&t, &env).await;
    assert_eq!(out.reason, ExitReason::Timeout, "{text}");
    let daemon = daemon_from(&text);
    match &env.placement {
        Placement::Cgroups(dir) => {
            assert!(wait_for(|| !running(daemon), Duration::from_secs(5)).await, "the setsid daemon survived: {text}");
            assert!(!dir.join(t.key.to_string()).exists(), "the task's cgroup is removed");
            assert!(!dir.exists(), "the agent's directory exists only while it holds tasks");
        }
        Placement::ProcessGroup { why } => {
            assert!(!nix::unistd::geteuid().is_root(), "root gets cgroups: {why}");
            assert!(text.contains("reach this task's process group only"), "{text}");
            kill::signal_group(daemon, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

#[tokio::test]
async fn without_cgroups_the_limitation_is_in_the_log() {
    let (_dir, mut env) = env(Duration::from_millis(300));
    env.placement = Placement::ProcessGroup { why: "no cgroup2 hierarchy is mounted".into() };
    let (out, text, _) = run_in(&task(1, "echo hi", &me()), &env).await;
    assert_eq!(out.reason, ExitReason::Exited);
    assert_eq!(
        text,
        "[shoal] no cgroup2 hierarchy is mounted: timeout and terminate reach this task's process group only \
         (daemons it starts with setsid escape them)\nhi\n"
    );
}

#[tokio::test]
async fn a_service_left_by_a_normal_exit_keeps_its_cgroup_until_it_ends() {
    let (_dir, env) = env(Duration::from_millis(300));
    let t = task(1, "setsid sh -c 'echo daemon=$$; exec sleep 1' & echo done", &me());
    let (out, text, _) = run_in(&t, &env).await;
    assert_eq!((out.reason, out.exit_code), (ExitReason::Exited, Some(0)), "{text}");
    let daemon = daemon_from(&text);
    assert!(running(daemon), "the service keeps running");
    if let Placement::Cgroups(dir) = &env.placement {
        assert!(dir.join(t.key.to_string()).exists(), "its cgroup stays while it runs");
        assert!(wait_for(|| !running(daemon), Duration::from_secs(5)).await);
        env.placement.sweep();
        assert!(!dir.join(t.key.to_string()).exists(), "an empty cgroup is swept");
        assert!(!dir.exists(), "and the agent's directory with it");
    }
}

#[tokio::test]
async fn a_normal_exit_does_not_wait_for_or_kill_background_children() {
    let (_dir, env) = env(Duration::from_millis(500));
    let t = task(1, "echo pgid=$$; sleep 30 & echo done", &me());
    let started = Instant::now();
    let (out, text, _) = run_in(&t, &env).await;
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert_eq!((out.reason, out.exit_code), (ExitReason::Exited, Some(0)));
    assert!(text.ends_with("done\n"), "{text}");
    let pgid = pgid_from(&text);
    assert_eq!(group_members(pgid).len(), 1, "the background sleep is left alone");
    kill::signal_group(pgid, nix::sys::signal::Signal::SIGKILL);
}

#[tokio::test]
async fn output_over_the_cap_keeps_head_and_tail() {
    // 1000 lines of exactly 10 bytes.
    let mut t = task(1, r#"for i in $(seq 1000); do printf 'line %04d\n' $i; done"#, &me());
    t.output_cap = 1000;
    let (out, text, sum) = run(&t).await;
    assert_eq!(out.reason, ExitReason::Exited);
    assert_eq!(sum.dropped_bytes, 9000);
    let all: String = (1..=1000).map(|i| format!("line {i:04}\n")).collect();
    let marker = crate::logs::cap::drop_marker(9000);
    assert_eq!(text, format!("{}{}{}", &all[..750], marker, &all[all.len() - 250..]));
}

#[tokio::test]
async fn runs_as_another_user_when_root() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let (out, text, _) = run(&task(1, "id -un; id -u; echo $HOME; pwd", "nobody")).await;
    assert_eq!((out.reason, out.exit_code), (ExitReason::Exited, Some(0)), "{text}");
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("nobody"));
    assert_eq!(lines.next(), Some(nobody.uid.to_string().as_str()));
    assert_eq!(lines.next(), Some(nobody.dir.to_str().unwrap()));
    let expected_wd = if nobody.dir.is_dir() { nobody.dir.to_str().unwrap() } else { "/tmp" };
    assert_eq!(lines.next(), Some(expected_wd));
}
