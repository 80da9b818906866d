//! Each function's release binary: its size, the time from exec to its first
//! call to the Lambda runtime API, and its peak memory while handling a batch.
//!
//! A loopback listener plays the runtime API (`AWS_LAMBDA_RUNTIME_API`): it notes
//! when `GET /2018-06-01/runtime/invocation/next` first arrives; to measure
//! memory it answers that call with a real batch and, when the function asks for
//! the next one (so the batch is done), reads `VmHWM` from `/proc/<pid>/status`
//! before stopping the process.

use anyhow::{Context as _, bail};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// A binary's file size and whether it still carries a symbol table.
#[derive(Debug, Clone, Serialize)]
pub struct Binary {
    pub path: String,
    pub bytes: u64,
    pub stripped: bool,
}

pub fn binary(path: &Path) -> Option<Binary> {
    let bytes = std::fs::read(path).ok()?;
    // Section names live in .shstrtab: a symbol table would name itself there.
    let stripped = !bytes.windows(8).any(|w| w == b".symtab\0");
    Some(Binary { path: path.display().to_string(), bytes: bytes.len() as u64, stripped })
}

/// What the fake runtime API saw.
#[derive(Debug)]
enum Seen {
    FirstNext(Duration),
    Response(String),
    Error(String),
    SecondNext,
}

async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<Option<(String, String, Vec<u8>)>> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.lines();
    let first = lines.next().unwrap_or_default().to_owned();
    let length: usize = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    let total = head_end + 4 + length;
    while buf.len() < total {
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed mid-request");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end + 4..total].to_vec();
    buf.drain(..total);
    let mut parts = first.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    Ok(Some((method, path, body)))
}

/// Serves one connection of the function's runtime client.
async fn connection(
    mut stream: TcpStream,
    started: Instant,
    event: Option<Arc<String>>,
    function: String,
    seen: mpsc::UnboundedSender<Seen>,
    nexts: Arc<std::sync::atomic::AtomicUsize>,
) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    while let Some((method, path, body)) = read_request(&mut stream, &mut buf).await? {
        if method == "GET" && path.ends_with("/runtime/invocation/next") {
            let n = nexts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if n == 0 {
                let _ = seen.send(Seen::FirstNext(started.elapsed()));
            } else {
                let _ = seen.send(Seen::SecondNext);
                // Never answered: the process is stopped once its memory is read.
                std::future::pending::<()>().await;
            }
            let Some(event) = &event else {
                std::future::pending::<()>().await;
                return Ok(());
            };
            let deadline = chrono::Utc::now().timestamp_millis() + 30_000;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nlambda-runtime-aws-request-id: bench-{n}\r\n\
                 lambda-runtime-deadline-ms: {deadline}\r\n\
                 lambda-runtime-invoked-function-arn: arn:aws:lambda:us-east-1:123456789012:function:{function}\r\n\
                 lambda-runtime-trace-id: Root=1-00000000-000000000000000000000000;Sampled=0\r\n\
                 content-length: {}\r\n\r\n",
                event.len()
            );
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(event.as_bytes()).await?;
        } else {
            let text = String::from_utf8_lossy(&body).to_string();
            let _ = seen.send(if path.ends_with("/response") {
                Seen::Response(text)
            } else {
                Seen::Error(format!("{path}: {text}"))
            });
            stream.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 16\r\n\r\n{\"status\":\"OK\"}\n").await?;
        }
    }
    Ok(())
}

/// One run of a function binary against the fake runtime API.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunResult {
    /// From exec to the first `GET .../invocation/next`.
    pub start_ms: f64,
    /// VmHWM after the batch, in KiB.
    pub peak_kib: Option<u64>,
    pub response: Option<String>,
}

fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Runs `exe` with `env` until its first runtime call or, with `event`, until it
/// has handled that event and asks for the next.
pub async fn run_once(
    exe: &Path,
    function: &str,
    env: &BTreeMap<String, String>,
    event: Option<String>,
) -> anyhow::Result<RunResult> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let event = event.map(Arc::new);
    let nexts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut cmd = Command::new(exe);
    cmd.env_clear()
        .envs(env)
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", function)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{function}"))
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child: Child = cmd.spawn().with_context(|| format!("starting {}", exe.display()))?;
    let pid = child.id().context("no pid")?;
    let server = {
        let (tx, event, function, nexts) = (tx.clone(), event.clone(), function.to_owned(), nexts.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(connection(stream, started, event.clone(), function.clone(), tx.clone(), nexts.clone()));
            }
        })
    };
    let mut result = RunResult::default();
    let outcome = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(s) = rx.recv().await {
            match s {
                Seen::FirstNext(t) => {
                    result.start_ms = t.as_secs_f64() * 1000.0;
                    if event.is_none() {
                        return Ok(());
                    }
                }
                Seen::Response(r) => result.response = Some(r),
                Seen::Error(e) => bail!("{function} reported an error to the runtime API: {e}"),
                Seen::SecondNext => {
                    result.peak_kib = peak_kib(pid);
                    return Ok(());
                }
            }
        }
        bail!("the runtime API channel closed")
    })
    .await;
    let _ = child.start_kill();
    let _ = child.wait().await;
    server.abort();
    outcome.with_context(|| format!("{function}: no answer within 60 s"))??;
    Ok(result)
}

/// Median and largest of a sample.
pub fn median_max(mut xs: Vec<f64>) -> (f64, f64) {
    xs.sort_by(|a, b| a.total_cmp(b));
    let med = xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN);
    (med, xs.last().copied().unwrap_or(f64::NAN))
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set (as `make bench` passes it
/// on), else `target/` in the repository.
pub fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

/// Where a function's artifacts are.
pub fn x86_binary(root: &Path, function: &str) -> PathBuf {
    target_dir(root).join("release").join(function)
}

pub fn arm_artifact(root: &Path, function: &str) -> PathBuf {
    target_dir(root).join("lambda").join(function).join("bootstrap")
}
