//! One module per subcommand.

pub(crate) mod account;
pub mod agent;
pub mod biz_set;
pub(crate) mod check;
pub mod config;
pub(crate) mod cron;
pub(crate) mod danger;
mod dev;
pub mod file_source;
pub mod group;
pub mod host;
mod job;
pub mod login;
pub mod manual;
pub mod push;
mod run;
pub mod script;
mod server;
pub mod template;
pub mod trust;
pub mod user;

use crate::cli::{Cli, Command};

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Run a subcommand; the value is the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Server(a) => server::run(a).await,
        Command::Agent(a) => agent::run(a).await,
        Command::Dev(a) => dev::run(a).await,
        Command::Run(a) => run::run(a).await,
        Command::Push(a) => push::run(a).await,
        Command::Job(j) => job::run(j).await,
        Command::Host(h) => host::run(h).await,
        Command::Check(c) => check::run(*c).await,
        Command::Template(t) => template::run(t).await,
        Command::Script(c) => script::run(c).await,
        Command::App(c) => trust::app(c).await,
        Command::User(c) => user::run(c).await,
        Command::BizSet(c) => biz_set::run(c).await,
        Command::Audit(c) => trust::audit(c).await,
        Command::AgentRevoke(a) => trust::revoke_agent(a).await,
        Command::AgentToken(c) => agent::token(c).await,
        Command::AgentAccept(a) => agent::accept(a).await,
        Command::Danger(c) => danger::run(c).await,
        Command::Account(c) => account::run(c).await,
        Command::Config(c) => config::run(c),
        Command::Login(a) => login::run(a).await,
        Command::Completions(a) => manual::completions(a),
        Command::Man(a) => manual::man(a),
        Command::Cron(c) => cron::run(c).await,
        Command::Credential(c) => file_source::credential(c).await,
        Command::FileSource(c) => file_source::file_source(c).await,
        Command::Group(c) => group::run(c).await,
    }
}
