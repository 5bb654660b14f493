//! A server that can die: it runs on a tokio runtime of its own, so killing it drops every
//! task and socket at once without any of its shutdown code running — as when the process
//! dies. And a gate in front of it, to keep agents away for a while.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_server::ServerConfig;
use tokio::net::{TcpListener, TcpStream};

use super::wait_for;

/// One `shoal server` on its own runtime.
pub struct Server {
    pub url: String,
    pub addr: SocketAddr,
    rt: Option<tokio::runtime::Runtime>,
}

impl Server {
    /// Starts a server with `config` on a new loopback port and waits until it answers.
    pub async fn start(config: ServerConfig) -> Server {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let url = format!("http://{addr}");
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.spawn(async move {
            let listener = TcpListener::from_std(listener).unwrap();
            shoal_server::run(config, listener, std::future::pending()).await
        });
        let http = reqwest::Client::new();
        wait_for(&format!("server {url} up"), Duration::from_secs(30), || {
            let (http, url) = (http.clone(), url.clone());
            async move { http.get(format!("{url}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
        Server { url, addr, rt: Some(rt) }
    }

    /// Drops every task and socket of the server at once.
    pub fn kill(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP forwarder to a server that can be shut: while shut (no upstream) it drops every
/// connection it accepts, as when the server cannot be reached.
pub struct Gate {
    pub url: String,
    upstream: Arc<Mutex<Option<SocketAddr>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Gate {
    pub async fn open_to(upstream: SocketAddr) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let target = Arc::new(Mutex::new(Some(upstream)));
        let upstream = target.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let Some(to) = *upstream.lock().unwrap() else { continue };
                tokio::spawn(async move {
                    if let Ok(mut up) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut up).await;
                    }
                });
            }
        });
        Gate { url, upstream: target, task }
    }

    /// Forwards new connections to `upstream`, or drops them (`None`).
    pub fn set(&self, upstream: Option<SocketAddr>) {
        *self.upstream.lock().unwrap() = upstream;
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.task.abort();
    }
}
