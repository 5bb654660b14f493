//! `shoal server`.

use anyhow::Context;

use crate::cli::ServerArgs;
use crate::server_config;

pub async fn run(args: ServerArgs) -> anyhow::Result<u8> {
    let env = |k: &str| std::env::var(k).ok();
    let cfg = server_config::load(&args, &env)?;
    if args.print_config {
        match server_config::discover(&args, std::path::Path::new(server_config::DEFAULT_PATH)) {
            Some(p) => println!("# config file {}", p.display()),
            None => println!("# no config file ({} does not exist)", server_config::DEFAULT_PATH),
        }
        print!("{}", server_config::effective_toml(&cfg)?);
        return Ok(0);
    }
    // Everything the server creates (database, WAL, keys, credentials) is owner-only.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let listener = tokio::net::TcpListener::bind(&cfg.listen).await.with_context(|| format!("listening on {}", cfg.listen))?;
    shoal_server::run(cfg, listener, super::shutdown_signal()).await?;
    Ok(0)
}
