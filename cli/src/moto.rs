//! The local AWS endpoint: a moto server on loopback, started from PyPI's `moto`
//! (pinned in `requirements-dev.txt`) by `scripts/moto_server.py`.

use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// A running moto server. It stops when this value is dropped or the process exits
/// (the server watches its stdin, which closes with us).
pub struct Moto {
    pub endpoint: String,
    _child: Child,
}

/// The Python that has moto: `HERALD_PYTHON`, else the project's `.venv`, else `python3`.
pub fn python(root: &Path) -> PathBuf {
    if let Some(p) = std::env::var_os("HERALD_PYTHON") {
        return p.into();
    }
    let venv = root.join(".venv/bin/python");
    if venv.exists() { venv } else { PathBuf::from("python3") }
}

impl Moto {
    /// Starts moto on `port` (0: a free one) and waits until it answers.
    pub async fn start(root: &Path, port: u16) -> anyhow::Result<Self> {
        let script = root.join("scripts/moto_server.py");
        let mut child = Command::new(python(root))
            .arg(&script)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} (is moto installed? run `make deps`)", script.display()))?;
        let stdout = child.stdout.take().context("moto stdout")?;
        let mut line = String::new();
        let mut reader = BufReader::new(stdout);
        let read = reader.read_line(&mut line);
        tokio::time::timeout(std::time::Duration::from_secs(60), read)
            .await
            .context("moto did not start within 60 s")??;
        let endpoint = line.trim().to_owned();
        if !endpoint.starts_with("http://127.0.0.1:") {
            bail!("moto did not report its endpoint (got {endpoint:?}); is moto[server] installed?");
        }
        Ok(Self { endpoint, _child: child })
    }

    /// What moto's fake providers received (`GET /moto-api/data.json`).
    pub async fn data(&self) -> anyhow::Result<serde_json::Value> {
        data(&self.endpoint).await
    }
}

/// What moto's fake providers received. Moto serializes its backends while other
/// requests change them and then answers 500 now and then: such a read is retried.
pub async fn data(endpoint: &str) -> anyhow::Result<serde_json::Value> {
    let mut last = None;
    for _ in 0..10 {
        match http(endpoint, "GET", "/moto-api/data.json").await {
            Ok(body) => return serde_json::from_str(&body).context("moto data.json"),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("moto data.json")))
}

/// A one-shot HTTP/1.0 request to the loopback endpoint: enough for moto's own API,
/// without a second HTTP client beside the SDK's.
pub async fn http(endpoint: &str, method: &str, path: &str) -> anyhow::Result<String> {
    let authority = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(authority).await?;
    let request = format!("{method} {path} HTTP/1.0\r\nHost: {authority}\r\nContent-Length: 0\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").context("malformed HTTP response")?;
    if !head.starts_with("HTTP/1.0 2") && !head.starts_with("HTTP/1.1 2") {
        bail!("{method} {path}: {}", head.lines().next().unwrap_or_default());
    }
    Ok(body.to_owned())
}
