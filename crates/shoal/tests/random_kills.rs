//! The fault suite's kill loop, sized for CI: a real server and three real agents on
//! loopback, jobs submitted continuously, and the server or an agent killed with SIGKILL at
//! random moments and started again. Afterwards every job has reached a final state, no
//! task ran twice (each run leaves a mark named after its task), and no host's numbered log
//! line was lost or doubled — a host that succeeded has every line exactly once.
//!
//! `SHOAL_TEST_SEED=<n>` replays a run; the seed is printed. The long version of this is
//! `scripts/chaos`.

mod common;

use std::path::PathBuf;
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const APP: &str = "kill-app";
const SECRET: &str = "kill-secret";
const TOKEN: &str = "kill-token";
const AGENTS: usize = 3;
const LINES: usize = 30;
const ROUNDS: usize = 8;

/// A small deterministic generator (xorshift), so a failing run can be replayed.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo))
    }
}

struct Fleet {
    dir: tempfile::TempDir,
    port: u16,
    database_url: Option<String>,
    kids: Kids,
}

impl Fleet {
    fn server(&self) -> Child {
        let mut cmd = server_cmd(self.port, &self.dir.path().join("data"), (APP, SECRET), TOKEN);
        cmd.env("SHOAL_AGENT_LOST_GRACE_SECS", "5").env("SHOAL_HEARTBEAT_SECS", "1");
        if let Some(url) = &self.database_url {
            cmd.args(["--database-url", url]);
        }
        cmd.spawn().unwrap()
    }

    fn agent(&self, i: usize) -> Child {
        agent_cmd(self.port, &format!("127.0.0.{}", 60 + i), &self.dir.path().join(format!("agent{i}")), TOKEN).spawn().unwrap()
    }

    fn client(&self, args: &[&str]) -> Output {
        cli_cmd(self.port, (APP, SECRET)).args(args).output().unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_slice(&self.client(args).stdout).unwrap_or(Value::Null)
    }

    fn marks(&self) -> PathBuf {
        self.dir.path().join("marks")
    }

    /// Kills kid `i` (0: the server) with SIGKILL and starts it again.
    fn kill_and_restart(&mut self, i: usize, pause: Duration) {
        self.kids.0[i].kill().unwrap();
        self.kids.0[i].wait().unwrap();
        std::thread::sleep(pause);
        self.kids.0[i] = if i == 0 { self.server() } else { self.agent(i - 1) };
        if i == 0 {
            wait_until("the server to listen again", Duration::from_secs(30), || listening(self.port));
        }
    }
}

fn run(database_url: Option<String>) {
    let seed = std::env::var("SHOAL_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1);
    println!("SHOAL_TEST_SEED={seed}");
    let mut dice = Dice(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut fleet = Fleet { dir, port: free_port(), database_url, kids: Kids(vec![]) };
    std::fs::create_dir(fleet.marks()).unwrap();
    fleet.kids.0.push(fleet.server());
    wait_until("the server to listen", Duration::from_secs(30), || listening(fleet.port));
    for i in 0..AGENTS {
        let a = fleet.agent(i);
        fleet.kids.0.push(a);
    }
    wait_until("every agent to connect", Duration::from_secs(30), || {
        fleet.json(&["host", "list", "--json"])["data"].as_array().is_some_and(|a| a.iter().filter(|h| h["alive"] == 1).count() == AGENTS)
    });
    let me = whoami();
    let acc = post_json(
        fleet.port,
        (APP, SECRET),
        "/api/v3/create_account",
        json!({"bk_scope_type": "biz", "bk_scope_id": "1", "account": me, "alias": me, "type": 1, "category": 1}),
    );
    assert_eq!(acc["code"], 0, "{acc}");

    // Each run of a task leaves a mark named after its script file (named after the task).
    let script = format!(
        "echo $$ >> {marks}/$(basename $0)\nfor i in $(seq 1 {LINES}); do echo \"$$ line $i\"; sleep 0.02; done\n",
        marks = fleet.marks().display()
    );
    let mut jobs = Vec::new();
    let mut kills = Vec::new();
    for _ in 0..ROUNDS {
        for _ in 0..2 {
            let v = fleet.json(&["run", "--all", "--no-wait", "--json", "--timeout", "60", "-c", &script]);
            jobs.push(v["job_instance_id"].as_i64().unwrap_or_else(|| panic!("submit failed: {v}")).to_string());
        }
        std::thread::sleep(dice.millis(100, 1200));
        let victim = dice.below(AGENTS as u64 + 1) as usize;
        let pause = dice.millis(100, 1000);
        kills.push(victim);
        fleet.kill_and_restart(victim, pause);
    }
    println!("kills (0 = server): {kills:?}");

    let end = Instant::now() + Duration::from_secs(90);
    for job in &jobs {
        while fleet.json(&["job", "status", job, "--json"])["finished"] != true {
            assert!(Instant::now() < end, "job {job} never finished (seed {seed})");
            std::thread::sleep(Duration::from_millis(200));
        }
        let v = fleet.json(&["job", "logs", job, "--json"]);
        let hosts = v["hosts"].as_array().unwrap_or_else(|| panic!("{v}"));
        assert_eq!(hosts.len(), AGENTS, "job {job}: {v}");
        for h in hosts {
            check_log(job, h, seed);
        }
    }
    for mark in std::fs::read_dir(fleet.marks()).unwrap().flatten() {
        let runs = std::fs::read_to_string(mark.path()).unwrap().lines().count();
        assert_eq!(runs, 1, "task {} ran {runs} times (seed {seed})", mark.file_name().to_string_lossy());
    }
    assert!(std::fs::read_dir(fleet.marks()).unwrap().count() > 0);
}

/// One host's log: lines from one run only, numbered without gaps or repeats; all of them
/// when the host succeeded.
fn check_log(job: &str, h: &Value, seed: u64) {
    let out = h["output"].as_str().unwrap_or("");
    let lines: Vec<&str> = out.lines().filter(|l| !l.starts_with("[shoal]")).collect();
    let pids: std::collections::BTreeSet<&str> = lines.iter().filter_map(|l| l.split(' ').next()).collect();
    let numbers: Vec<usize> = lines.iter().filter_map(|l| l.split(' ').nth(2)?.parse().ok()).collect();
    let ctx = format!("job {job} host {} status {} (seed {seed}): {out}", h["bk_host_id"], h["status"]);
    assert!(pids.len() <= 1, "two runs in one log: {ctx}");
    assert_eq!(numbers.len(), lines.len(), "unexpected lines: {ctx}");
    if h["status"] == 9 {
        assert_eq!(numbers, (1..=LINES).collect::<Vec<_>>(), "lines lost or doubled: {ctx}");
    } else {
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "lines doubled or out of order: {ctx}");
        assert!(numbers.first().is_none_or(|&n| n == 1), "the head of the log is missing: {ctx}");
    }
}

#[test]
fn random_kills_on_sqlite() {
    run(None);
}

#[tokio::test(flavor = "multi_thread")]
async fn random_kills_on_postgres() {
    let Some(db) = shoal_store::testing::fresh_postgres("kills").await else { return };
    let url = db.to_string();
    tokio::task::spawn_blocking(move || run(Some(url))).await.unwrap();
}
