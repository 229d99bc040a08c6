//! A TCP proxy in front of an emulator that records what clients send, so a test can read the HTTP requests
//! exactly as they crossed the wire.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// A running proxy; it stops when dropped.
pub struct RecordingProxy {
    /// The proxy's URL, to use as the endpoint.
    pub url: String,
    sent: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RecordingProxy {
    /// Starts a proxy on a free loopback port that forwards to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> RecordingProxy {
        let target = upstream.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let sent = Arc::new(Mutex::new(Vec::new()));
        let recorded = sent.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let target = target.clone();
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&target).await else { return };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let upstream = async {
                        let mut buffer = vec![0; 64 * 1024];
                        while let Ok(n) = client_read.read(&mut buffer).await {
                            if n == 0 || server_write.write_all(&buffer[..n]).await.is_err() {
                                break;
                            }
                            recorded.lock().unwrap().extend_from_slice(&buffer[..n]);
                        }
                        let _ = server_write.shutdown().await;
                    };
                    let downstream = async {
                        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                        let _ = client_write.shutdown().await;
                    };
                    tokio::join!(upstream, downstream);
                });
            }
        });
        RecordingProxy { url, sent, task }
    }

    /// Every byte clients have sent so far.
    pub fn sent(&self) -> Vec<u8> {
        self.sent.lock().unwrap().clone()
    }

    /// The JSON bodies of requests whose `X-Amz-Target` header ends with `operation`.
    pub fn bodies_of(&self, operation: &str) -> Vec<serde_json::Value> {
        let sent = self.sent();
        let text = String::from_utf8_lossy(&sent);
        let mut bodies = Vec::new();
        for request in text.split("POST ").skip(1) {
            let Some((head, rest)) = request.split_once("\r\n\r\n") else { continue };
            let is_operation = head.lines().any(|line| {
                let lower = line.to_ascii_lowercase();
                lower.starts_with("x-amz-target:")
                    && lower.trim_end().ends_with(&format!(".{}", operation.to_ascii_lowercase()))
            });
            let length = head.lines().find_map(|line| {
                let lower = line.to_ascii_lowercase();
                lower.strip_prefix("content-length:").and_then(|v| v.trim().parse::<usize>().ok())
            });
            if let (true, Some(length)) = (is_operation, length)
                && let Ok(body) = serde_json::from_str(&rest[..length.min(rest.len())])
            {
                bodies.push(body);
            }
        }
        bodies
    }
}

/// A TCP proxy that can be switched off, to stage an outage of the service behind it: while down, it closes new
/// connections at once and has closed every open one.
pub struct FaultProxy {
    /// The proxy's URL, to use as the endpoint.
    pub url: String,
    up: Arc<std::sync::atomic::AtomicBool>,
    connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.set_up(false);
    }
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port that forwards to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> FaultProxy {
        use std::sync::atomic::Ordering;
        let target = upstream.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (flag, open) = (up.clone(), connections.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !flag.load(Ordering::SeqCst) {
                    let _ = client.shutdown().await;
                    continue;
                }
                let target = target.clone();
                let handle = tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
                open.lock().unwrap().push(handle.abort_handle());
            }
        });
        FaultProxy { url, up, connections, task }
    }

    /// Switches the proxy on or off; switching off also cuts every open connection.
    pub fn set_up(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::SeqCst);
        if !up {
            for connection in self.connections.lock().unwrap().drain(..) {
                connection.abort();
            }
        }
    }
}
