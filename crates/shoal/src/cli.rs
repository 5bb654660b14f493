//! Command-line surface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "shoal", version, about = "Run scripts on fleets of hosts. Speaks the BlueKing JOB v3 API.")]
pub struct Cli {
    /// Language of the CLI's messages: en or zh, before or after the subcommand [env:
    /// SHOAL_LANG; default: zh when LC_ALL / LC_MESSAGES / LANG starts with zh, else en].
    /// (`shoal run --lang` is the script's language.)
    #[arg(long = "ui-lang", id = "ui_lang", value_name = "LANG", global = true)]
    pub ui_lang: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (API, engine, agent gateway).
    Server(ServerArgs),
    /// Run the agent on a host; it dials out to the server.
    Agent(AgentArgs),
    /// Server and a few local agents in one process, ready to try.
    Dev(DevArgs),
    /// Run a script on hosts and show the results grouped.
    Run(RunArgs),
    /// Copy local files to a directory on hosts, with live progress, and show the results grouped.
    #[command(visible_alias = "cp")]
    Push(crate::cmd::push::PushArgs),
    /// Inspect or stop jobs.
    #[command(subcommand)]
    Job(JobCommand),
    /// The host registry.
    #[command(subcommand)]
    Host(HostCommand),
    /// The script library: versions, publish, disable.
    #[command(subcommand)]
    Script(crate::cmd::script::ScriptCommand),
    /// Job templates as YAML: apply, diff, export, history, rollback, approvals, run.
    #[command(subcommand)]
    Template(crate::cmd::template::TemplateCommand),
    /// Check hosts (the Shoal agent, a log collector, or a custom check script) and report.
    Check(Box<crate::cmd::check::CheckArgs>),
    /// Apps, their secrets and grants (admin).
    #[command(subcommand)]
    App(crate::cmd::trust::AppCommand),
    /// Users: their passwords, API tokens and grants (admin; a user manages their own tokens).
    #[command(subcommand)]
    User(crate::cmd::user::UserCommand),
    /// The audit trail: list, verify the hash chain, export as JSON lines (admin).
    #[command(subcommand)]
    Audit(crate::cmd::trust::AuditCommand),
    /// Business sets: which businesses a biz_set scope reaches (admin).
    #[command(subcommand)]
    BizSet(crate::cmd::biz_set::BizSetCommand),
    /// Revoke an agent: it is disconnected and refused from then on (admin).
    AgentRevoke(crate::cmd::trust::RevokeAgentArgs),
    /// Enrolment tokens: create (per business, expiring, single-use, holding agents pending),
    /// list, revoke (admin).
    #[command(subcommand)]
    AgentToken(crate::cmd::agent::AgentTokenCommand),
    /// Accept a pending agent: its host becomes a target (admin).
    AgentAccept(crate::cmd::agent::AcceptArgs),
    /// Dangerous-command checks: turn a built-in check (rm -rf /, mkfs, …) off or on (admin).
    #[command(subcommand)]
    Danger(crate::cmd::danger::DangerCommand),
    /// Execution accounts: the OS users scripts run as, by alias (create one before the first run).
    #[command(subcommand)]
    Account(crate::cmd::account::AccountCommand),
    /// The CLI's own settings file: write it (init), show the effective settings (show).
    #[command(subcommand)]
    Config(crate::cmd::config::ConfigCommand),
    /// Log in as a Shoal user: the password (asked without echo, or --password-stdin) buys a
    /// personal API token, written with the URL and CA into the CLI's settings file (0600).
    Login(crate::cmd::login::LoginArgs),
    /// Print a shell completion script: shoal completions bash > /etc/bash_completion.d/shoal
    Completions(crate::cmd::manual::CompletionsArgs),
    /// Print the man page (roff): shoal man > /usr/local/share/man/man1/shoal.1, or write
    /// one page per subcommand with --dir.
    Man(crate::cmd::manual::ManArgs),
    /// Cron jobs: a plan run on a crontab expression or once at a time.
    #[command(subcommand)]
    Cron(crate::cmd::cron::CronCommand),
    /// Credentials file sources read with (secrets are never shown back).
    #[command(subcommand)]
    Credential(crate::cmd::file_source::CredentialCommand),
    /// File sources (bkrepo, S3-compatible) that `shoal push --from-source` reads from.
    #[command(subcommand)]
    FileSource(crate::cmd::file_source::FileSourceCommand),
    /// Dynamic groups: saved host selections (sets, modules, labels) to target with --group.
    #[command(subcommand)]
    Group(crate::cmd::group::GroupCommand),
}

impl Command {
    pub fn is_daemon(&self) -> bool {
        matches!(self, Command::Server(_) | Command::Agent(_))
    }

    /// How the daemons write their log lines; the client commands always write text.
    pub fn log_format(&self) -> LogFormat {
        match self {
            Command::Server(a) => a.log_format,
            Command::Agent(a) => a.log_format,
            _ => LogFormat::Text,
        }
    }
}

/// Log line format of `shoal server` and `shoal agent`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, fields, span), for log shippers.
    Json,
}

#[derive(Args, Debug, Default)]
pub struct ServerArgs {
    /// TOML config file (every key can also be set as SHOAL_<KEY>)
    /// [default: /etc/shoal/server.toml when it exists].
    #[arg(long, env = "SHOAL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    pub listen: Option<String>,
    /// Data directory (embedded SQLite store, generated credentials).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// postgres://… to use PostgreSQL instead of the embedded store.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Output kept per host task, in bytes [default: 5 MiB].
    #[arg(long)]
    pub output_cap_bytes: Option<u64>,
    /// Seconds a disconnected agent may take to come back [default: 30].
    #[arg(long)]
    pub agent_lost_grace_secs: Option<u64>,
    /// PEM certificate chain: serve HTTPS / WSS (with --tls-key).
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// Print the effective configuration (secrets redacted) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Log line format.
    #[arg(long, env = "SHOAL_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,
}

/// Agent settings: flags, then their `SHOAL_*` variables, then the TOML file (`--config`,
/// `SHOAL_CONFIG`, else /etc/shoal/agent.toml when it exists; keys as the flags are named).
#[derive(Args, Debug, Default)]
pub struct AgentArgs {
    /// TOML config file [default: /etc/shoal/agent.toml when it exists].
    #[arg(long, env = "SHOAL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the effective settings and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Log line format.
    #[arg(long, env = "SHOAL_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,
    /// Server URL(s), http:// or https://; repeat or comma-separate for several (required,
    /// here or in the config file).
    #[arg(long, env = "SHOAL_SERVER", value_delimiter = ',')]
    pub server: Vec<String>,
    /// File holding the enrolment token (keep it 0600). The token may also come from the
    /// SHOAL_AGENT_TOKEN environment variable. Only a first start needs it: once enrolled,
    /// the agent's own credential (in --state-dir) is what the server checks.
    #[arg(long, conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
    /// Enrolment token on the command line: visible to every local user in /proc/*/cmdline;
    /// prefer --token-file or SHOAL_AGENT_TOKEN.
    #[arg(long)]
    pub token: Option<String>,
    /// Where the agent keeps its identity and unacknowledged results [default: /var/lib/shoal-agent].
    #[arg(long, env = "SHOAL_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Business the host belongs to (required, here or in the config file).
    #[arg(long, env = "SHOAL_BK_BIZ_ID")]
    pub bk_biz_id: Option<i64>,
    /// Cloud area [default: 0].
    #[arg(long, env = "SHOAL_BK_CLOUD_ID")]
    pub bk_cloud_id: Option<i64>,
    /// IPv4 to register with [default: the primary IPv4].
    #[arg(long, env = "SHOAL_IP")]
    pub ip: Option<String>,
    /// Topology: set id.
    #[arg(long = "set")]
    pub set_id: Option<i64>,
    /// Topology: module id.
    #[arg(long = "module")]
    pub module_id: Option<i64>,
    /// Labels, k=v; repeatable.
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// PEM CA bundle to verify an https server.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Allow plain http/ws to the server.
    #[arg(long)]
    pub insecure: bool,
    /// Where to serve held files to other targets of the same file (peer-to-peer fan-out,
    /// TLS, only to holders of the file's secret), or `off` [default: 0.0.0.0:0, any free port].
    #[arg(long, env = "SHOAL_PEER_LISTEN", value_name = "ADDR")]
    pub peer_listen: Option<String>,
}

#[derive(Args, Debug)]
pub struct DevArgs {
    /// Where the dev store and agent state live.
    #[arg(long, default_value = ".shoal/dev")]
    pub data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Number of local agents (each with its own loopback IP, 127.0.0.11, .12, …).
    #[arg(long, default_value_t = 3)]
    pub agents: usize,
    /// Run this shell command on every dev host, print the results and exit.
    #[arg(long)]
    pub run: Option<String>,
}

/// Client connection settings (flags win over env, env over the config file).
#[derive(Args, Debug, Clone, Default)]
pub struct ClientArgs {
    /// Server URL [env: SHOAL_URL].
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// App code to call as [env: SHOAL_APP_CODE]; its secret comes from SHOAL_APP_SECRET or
    /// the config file, never from the command line.
    #[arg(long = "app-code", id = "client_app_code", global = true)]
    pub app_code: Option<String>,
    /// User the app acts for (bk_username) [env: SHOAL_USERNAME, default: the OS user].
    #[arg(long = "username", id = "client_username", global = true)]
    pub username: Option<String>,
    /// Business id of the scope [env: SHOAL_BIZ, default 1].
    #[arg(long, global = true)]
    pub biz: Option<i64>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// PEM CA bundle to verify an https server signed by a private CA [env: SHOAL_CA].
    #[arg(long = "ca", id = "client_ca", value_name = "FILE", global = true)]
    pub ca: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Script text to run.
    #[arg(short = 'c', long = "command", conflicts_with_all = ["file", "script"])]
    pub command: Option<String>,
    /// A script of the library by name (or id): NAME runs its online version, NAME@VERSION
    /// that version; the business's scripts are looked up first, then public ones.
    #[arg(long, conflicts_with_all = ["file", "lang"])]
    pub script: Option<String>,
    /// Script file to run.
    #[arg(short = 'f', long)]
    pub file: Option<PathBuf>,
    /// The script's language: shell, python, perl, powershell [default: from the file
    /// extension, else shell]. (The messages' language is --ui-lang.)
    #[arg(long, visible_alias = "script-lang", value_name = "SCRIPT_LANG")]
    pub lang: Option<String>,
    /// Parameters passed to the script (split as a shell would), e.g. --param '--fast "a b"'.
    #[arg(long, allow_hyphen_values = true)]
    pub param: Option<String>,
    /// Execution account alias [default: the current OS user].
    #[arg(long)]
    pub account: Option<String>,
    /// Timeout in seconds.
    #[arg(long)]
    pub timeout: Option<i64>,
    /// Job name.
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub targets: TargetArgs,
    /// Do not wait; print the job id.
    #[arg(long)]
    pub no_wait: bool,
    /// Stream each host's output as it arrives, every line prefixed with the host's address
    /// (like pdsh), then the summary.
    #[arg(long, conflicts_with = "no_wait")]
    pub follow: bool,
    /// What Ctrl-C does: terminate the job, detach (the job runs on; the command to re-attach
    /// is printed) or ask [default: ask on a terminal, else detach].
    #[arg(long, value_enum)]
    pub on_interrupt: Option<OnInterrupt>,
    /// Rolling execution: batch sizes, e.g. 10% or 5, or an expression like "1 10% +5".
    #[arg(long)]
    pub batch: Option<String>,
    /// With --batch, when a batch fails: pause (wait for `shoal job retry`/ignore), ignore
    /// (go on), or confirm (every batch waits for a go-ahead) [default: pause].
    #[arg(long, value_enum, requires = "batch")]
    pub mode: Option<RollingModeArg>,
}

/// What Ctrl-C does to a followed job.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnInterrupt {
    /// Terminate the job, then show its results.
    Terminate,
    /// Stop following; the job runs on.
    Detach,
    /// Ask which (on a terminal; elsewhere detach).
    Ask,
}

/// `--mode` of a rolling run.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RollingModeArg {
    /// A failed batch pauses the rolling until retried or ignored.
    Pause,
    /// Failed batches are ignored; the rolling goes on.
    Ignore,
    /// Every batch waits for a go-ahead.
    Confirm,
}

/// Target hosts: the union of every flag as written.
#[derive(Args, Debug, Clone, Default)]
pub struct TargetArgs {
    /// Target host ids; repeatable, comma-separated.
    #[arg(long = "host", value_delimiter = ',')]
    pub hosts: Vec<i64>,
    /// Target by IP, as cloud:ip or ip (cloud 0); repeatable.
    #[arg(long = "ip", value_delimiter = ',')]
    pub ips: Vec<String>,
    /// Target a topology node: biz:ID, set:ID or module:ID; repeatable.
    #[arg(long = "topo")]
    pub topo: Vec<String>,
    /// Target hosts whose labels match, e.g. env=prod,role!=db.
    #[arg(long)]
    pub selector: Option<String>,
    /// Target every registered host of the business.
    #[arg(long)]
    pub all: bool,
    /// Target the hosts of a dynamic group (`shoal group list`); repeatable, comma-separated.
    #[arg(long = "group", value_delimiter = ',')]
    pub groups: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum JobCommand {
    /// Status of a job, per host.
    Status {
        /// The job's id (see `shoal job list`).
        job_instance_id: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Output of a job's hosts.
    Logs {
        /// The job's id (see `shoal job list`).
        job_instance_id: i64,
        /// Only these host ids.
        #[arg(long = "host", value_delimiter = ',')]
        hosts: Vec<i64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Terminate a running job.
    Terminate {
        /// The job's id (see `shoal job list`).
        job_instance_id: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Confirm the step waiting for a user (or --step ID), and go on.
    Confirm {
        /// The job's id (see `shoal job list`).
        job_instance_id: i64,
        /// The step instance id [default: the job's step in a state this applies to].
        #[arg(long)]
        step: Option<i64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Reject the step waiting for a user; the job ends.
    Reject {
        /// The job's id (see `shoal job list`).
        job_instance_id: i64,
        /// The step instance id [default: the job's step in a state this applies to].
        #[arg(long)]
        step: Option<i64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Run the failed step again: its failed hosts, or --all of them.
    Retry {
        /// The job's id (see `shoal job list`).
        job_instance_id: i64,
        /// Every host of the step, not only the failed ones.
        #[arg(long)]
        all: bool,
        /// The step instance id [default: the job's step in a state this applies to].
        #[arg(long)]
        step: Option<i64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Let a rolling step waiting between batches (--mode confirm) start its next batch.
    Continue {
        /// The job's id (see `shoal job list`).
        job_instance_id: i64,
        /// The step instance id [default: the job's step in a state this applies to].
        #[arg(long)]
        step: Option<i64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Follow a job again (after detaching): a progress bar, or its output with --follow.
    Watch {
        /// The job's id (see `shoal job list`).
        job_instance_id: i64,
        /// Stream each host's output as it arrives, prefixed with the host's address.
        #[arg(long)]
        follow: bool,
        /// What Ctrl-C does [default: ask on a terminal, else detach].
        #[arg(long, value_enum)]
        on_interrupt: Option<OnInterrupt>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Recent jobs.
    List {
        /// How many jobs, newest first.
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum HostCommand {
    /// Registered hosts.
    List {
        /// Only hosts whose labels match.
        #[arg(long)]
        selector: Option<String>,
        /// All businesses.
        #[arg(long)]
        all_biz: bool,
        /// Hosts whose agents wait for `shoal agent-accept` instead (admin).
        #[arg(long)]
        pending: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Rebind a host's address, business or topology (admin; audited). Its agent must then
    /// be started with the same facts, or its hello is refused.
    Move(crate::cmd::host::MoveArgs),
    /// Name a set or a module of the business (agents report only ids): `host list` shows the
    /// name beside the id. An empty name removes it.
    Name {
        /// The set id to name.
        #[arg(long, conflicts_with = "module", required_unless_present = "module")]
        set: Option<i64>,
        /// The module id to name.
        #[arg(long)]
        module: Option<i64>,
        /// The name ("" removes it).
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove hosts from the registry (admin; audited): no listing, no target, their agents
    /// revoked. A host whose agent is connected is refused without --force.
    Remove {
        /// Host ids; repeatable, comma-separated.
        #[arg(required = true, value_delimiter = ',')]
        host_ids: Vec<i64>,
        /// Remove even a host whose agent is connected (the agent is disconnected).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every subcommand's arguments are consistent (unique ids and names): clap checks only
    /// the subcommand being parsed, so a clash elsewhere would panic only when it is used.
    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}

#[cfg(test)]
mod help_tests {
    use clap::CommandFactory;

    /// Arguments without help text, as `command path: --name`.
    fn undocumented(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        for a in cmd.get_arguments() {
            if a.is_hide_set() || matches!(a.get_id().as_str(), "help" | "version") {
                continue;
            }
            if a.get_help().is_none() && a.get_long_help().is_none() {
                out.push(format!("{path}: {}", a.get_long().map_or_else(|| a.get_id().to_string(), |l| format!("--{l}"))));
            }
        }
        for s in cmd.get_subcommands() {
            undocumented(s, &format!("{path} {}", s.get_name()), out);
        }
    }

    /// Every flag and argument of every subcommand says what it is for (`--help`, man pages,
    /// completions).
    #[test]
    fn every_argument_has_help() {
        let mut out = vec![];
        undocumented(&super::Cli::command(), "shoal", &mut out);
        assert!(out.is_empty(), "{} arguments without help:\n{}", out.len(), out.join("\n"));
    }
}
