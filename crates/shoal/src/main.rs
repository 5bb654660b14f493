//! `shoal`: one binary for the server, the agent, a local dev fleet and the client commands.
//! This file parses flags and hands off; each subcommand lives in `cmd/`.
#![forbid(unsafe_code)]

mod agent_config;
mod cli;
mod client_config;
mod cmd;
mod errors;
mod output;
mod server_config;

use clap::Parser;

fn main() -> std::process::ExitCode {
    quiet_on_broken_pipe();
    let cli = cli::Cli::parse();
    errors::set_lang(errors::pick_lang(cli.ui_lang.as_deref(), &|k| std::env::var(k).ok()));
    let default_level = if cli.command.is_daemon() { "info" } else { "warn" };
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.command.log_format() {
        // One JSON object per line, fields at the top level, for log shippers.
        cli::LogFormat::Json => logs.json().flatten_event(true).with_current_span(true).with_span_list(false).init(),
        cli::LogFormat::Text => {
            let ansi = colour(std::io::IsTerminal::is_terminal(&std::io::stderr()), std::env::var_os("NO_COLOR"));
            logs.with_ansi(ansi).init()
        }
    }
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
            let msg = errors::explain(&e);
            // A JOB error says "error CODE: …" itself.
            if msg.starts_with("error ") || msg.starts_with("错误 ") {
                eprintln!("{msg}");
            } else {
                eprintln!("error: {msg}");
            }
            std::process::ExitCode::from(2)
        }
    }
}

/// Colour only on a terminal (daemon logs in files and journals stay plain text), and not
/// when `NO_COLOR` is set to anything but the empty string (no-color.org).
fn colour(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
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

#[cfg(test)]
mod tests {
    #[test]
    fn colour_on_a_terminal_unless_no_color() {
        assert!(super::colour(true, None));
        assert!(super::colour(true, Some("".into())));
        assert!(!super::colour(true, Some("1".into())));
        assert!(!super::colour(false, None));
    }
}
