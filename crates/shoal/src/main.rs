//! `shoal`: one binary for the server, the agent, a local dev fleet and the client commands.
//! This file parses flags and hands off; each subcommand lives in `cmd/`.
#![forbid(unsafe_code)]

mod cli;
mod client_config;
mod cmd;
mod output;
mod server_config;

use clap::Parser;

/// mimalloc instead of glibc's malloc. Under ingest the server frees most of what it
/// allocates on another thread than the one that allocated it (agent sessions on tokio's
/// workers, batches on the store's connection threads); glibc kept each thread's arena at
/// its high-water mark (about 380 MB held but unused after ingesting 1 GB, in 13 arenas),
/// mimalloc gives freed pages back.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    quiet_on_broken_pipe();
    let cli = cli::Cli::parse();
    let default_level = if cli.command.is_daemon() { "info" } else { "warn" };
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // Colour only on a terminal: daemon logs in files and journals stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match rt.block_on(cmd::run(cli)) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// `shoal … | head` ends quietly when the reader goes away: printing to a closed pipe makes
/// `println!` panic (Rust ignores SIGPIPE), and that panic ends the process with the status
/// of a SIGPIPE death (141) and no message. Every other panic is reported as usual.
fn quiet_on_broken_pipe() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to std") && msg.contains("Broken pipe") {
            std::process::exit(128 + 13);
        }
        report(info);
    }));
}
