//! The local Function URLs: a small HTTP/1.1 server on loopback per function the
//! template gives a `FunctionUrlConfig`, translating each request into the
//! Function URL event (payload format 2.0) and the handler's answer back, the way
//! Lambda's URL front end does. One request per connection, bodies by
//! `Content-Length` (no chunked uploads): enough for SNS, providers and browsers.

use crate::runner::{Handler, build};
use crate::stack::{FunctionSpec, Stack, Trigger};
use anyhow::{Context as _, bail};
use aws_config::SdkConfig;
use base64::Engine as _;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Map, Value, json};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 6 * 1024 * 1024;

/// One function served on loopback.
pub struct Served {
    /// The template's logical id (`WebhooksFunction`).
    pub logical_id: String,
    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub url: String,
    task: JoinHandle<()>,
}

/// The served functions; stopped on drop.
pub struct WebFront {
    pub served: Vec<Served>,
}

impl Drop for WebFront {
    fn drop(&mut self) {
        for s in &self.served {
            s.task.abort();
        }
    }
}

impl WebFront {
    /// Serves every URL function of the stack on the port the stack reserved for it.
    pub async fn start(stack: &Stack, sdk: &SdkConfig) -> anyhow::Result<Self> {
        let mut served = Vec::new();
        for spec in stack.functions.iter().filter(|f| matches!(f.trigger, Trigger::Url)) {
            let port = stack
                .function_urls
                .get(&spec.logical_id)
                .and_then(|u| u.trim_end_matches('/').rsplit(':').next()?.parse().ok())
                .unwrap_or(0);
            served.push(serve(spec, sdk, port).await?);
        }
        Ok(Self { served })
    }

    /// The URL of the function with this logical id.
    pub fn url(&self, logical_id: &str) -> Option<&str> {
        self.served.iter().find(|s| s.logical_id == logical_id).map(|s| s.url.as_str())
    }
}

async fn serve(spec: &FunctionSpec, sdk: &SdkConfig, port: u16) -> anyhow::Result<Served> {
    let Handler::Json(invoke) = build(spec, sdk).with_context(|| format!("configuring {}", spec.name))? else {
        bail!("{}: a Function URL handler takes JSON events", spec.name);
    };
    let listener = TcpListener::bind(("127.0.0.1", port)).await.context("binding the local function URL")?;
    let addr = listener.local_addr()?;
    let timeout = Duration::from_secs(spec.timeout_secs.max(1));
    let name = spec.name.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let (invoke, name) = (invoke.clone(), name.clone());
            tokio::spawn(async move {
                if let Err(e) = connection(stream, addr.port(), timeout, &invoke).await {
                    tracing::debug!(function = %name, error = %format!("{e:#}"), "local function URL request failed");
                }
            });
        }
    });
    Ok(Served { logical_id: spec.logical_id.clone(), url: format!("http://{addr}"), task })
}

type Invoke = std::sync::Arc<
    dyn Fn(LambdaEvent<Value>) -> futures::future::BoxFuture<'static, Result<Value, lambda_runtime::Error>>
        + Send
        + Sync,
>;

async fn connection(mut stream: TcpStream, port: u16, timeout: Duration, invoke: &Invoke) -> anyhow::Result<()> {
    let response = match read_request(&mut stream).await {
        Ok(request) => {
            let event = function_url_event(&request, port);
            let mut ctx = Context::default();
            ctx.request_id = format!("local-{}", chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default());
            ctx.deadline = (chrono::Utc::now() + chrono::TimeDelta::from_std(timeout)?).timestamp_millis() as u64;
            match tokio::time::timeout(timeout, invoke(LambdaEvent::new(event, ctx))).await {
                Ok(Ok(v)) => http_response(&v),
                // As Lambda's front end: a failed or timed-out invocation is a 502.
                Ok(Err(e)) => plain(502, &format!("the function failed: {e}")),
                Err(_) => plain(502, "the function timed out"),
            }
        }
        Err(e) => plain(400, &format!("{e:#}")),
    };
    stream.write_all(&response).await?;
    stream.shutdown().await?;
    Ok(())
}

/// A request as read from the socket.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RawRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

async fn read_request(stream: &mut TcpStream) -> anyhow::Result<RawRequest> {
    let mut buf = Vec::with_capacity(4096);
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD {
            bail!("request head larger than {MAX_HEAD} bytes");
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed before the request head ended");
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let mut request = parse_head(&String::from_utf8_lossy(&buf[..head_end]))?;
    let length: usize = request
        .headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.trim().parse())
        .transpose()
        .context("Content-Length")?
        .unwrap_or(0);
    if request.headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")) {
        bail!("chunked request bodies are not supported locally: send Content-Length");
    }
    if length > MAX_BODY {
        bail!("request body larger than {MAX_BODY} bytes");
    }
    let mut body = buf.split_off(head_end + 4);
    while body.len() < length {
        let mut chunk = vec![0u8; (length - body.len()).min(64 * 1024)];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed before the body ended");
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    request.body = body;
    Ok(request)
}

/// The request line and headers (names lower-cased).
pub fn parse_head(head: &str) -> anyhow::Result<RawRequest> {
    let mut lines = head.split("\r\n");
    let line = lines.next().context("empty request")?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        bail!("malformed request line");
    };
    if !version.starts_with("HTTP/1.") {
        bail!("only HTTP/1.x is served locally");
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').context("malformed header line")?;
            Ok((k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(RawRequest {
        method: method.to_ascii_uppercase(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        body: Vec::new(),
    })
}

fn text_like(content_type: &str) -> bool {
    let ct = content_type.to_ascii_lowercase();
    ct.starts_with("text/")
        || ct.contains("json")
        || ct.contains("xml")
        || ct.contains("javascript")
        || ct.starts_with("application/x-www-form-urlencoded")
}

/// The Function URL event (payload format 2.0) for a request, as Lambda builds it:
/// repeated headers and query parameters joined with commas, the body base64-encoded
/// unless it is text.
pub fn function_url_event(request: &RawRequest, port: u16) -> Value {
    let mut headers = Map::new();
    for (k, v) in &request.headers {
        match headers.get_mut(k) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(v);
            }
            _ => {
                headers.insert(k.clone(), Value::String(v.clone()));
            }
        }
    }
    let mut query = Map::new();
    for (k, v) in form_urlencoded::parse(request.query.as_bytes()) {
        let (k, v) = (k.into_owned(), v.into_owned());
        match query.get_mut(&k) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&v);
            }
            _ => {
                query.insert(k, Value::String(v));
            }
        }
    }
    let content_type = headers.get("content-type").and_then(Value::as_str).unwrap_or("");
    let (body, encoded) = match std::str::from_utf8(&request.body) {
        _ if request.body.is_empty() => (Value::Null, false),
        Ok(text) if text_like(content_type) => (Value::String(text.to_owned()), false),
        _ => (Value::String(base64::engine::general_purpose::STANDARD.encode(&request.body)), true),
    };
    let now = chrono::Utc::now();
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": request.path,
        "rawQueryString": request.query,
        "headers": headers,
        "queryStringParameters": if query.is_empty() { Value::Null } else { Value::Object(query) },
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "local",
            "domainName": format!("127.0.0.1:{port}"),
            "domainPrefix": "127",
            "http": {
                "method": request.method,
                "path": request.path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": headers.get("user-agent").cloned().unwrap_or(Value::String(String::new())),
            },
            "requestId": format!("local-{}", now.timestamp_nanos_opt().unwrap_or_default()),
            "routeKey": "$default",
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S +0000").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "body": body,
        "isBase64Encoded": encoded,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        410 => "Gone",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "",
    }
}

fn plain(status: u16, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        reason(status),
        body.len()
    )
    .into_bytes()
}

/// The HTTP response for a Function URL handler's answer.
pub fn http_response(answer: &Value) -> Vec<u8> {
    let status = answer["statusCode"].as_u64().and_then(|s| u16::try_from(s).ok()).unwrap_or(200);
    let body = match (answer["body"].as_str(), answer["isBase64Encoded"].as_bool()) {
        (Some(b), Some(true)) => base64::engine::general_purpose::STANDARD.decode(b).unwrap_or_default(),
        (Some(b), _) => b.as_bytes().to_vec(),
        (None, _) => Vec::new(),
    };
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in answer["headers"].as_object().into_iter().flatten() {
        if let Some(v) = v.as_str() {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str(&format!("content-length: {}\r\nconnection: close\r\n\r\n", body.len()));
    let mut out = head.into_bytes();
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_become_function_url_events() {
        let mut request = parse_head(
            "POST /unsubscribe?t=a%2Eb&x=1&x=2 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Dup: a\r\nx-dup: b",
        )
        .unwrap();
        request.body = b"List-Unsubscribe=One-Click".to_vec();
        let event = function_url_event(&request, 9);
        assert_eq!(event["rawPath"], "/unsubscribe");
        assert_eq!(event["queryStringParameters"]["t"], "a.b");
        assert_eq!(event["queryStringParameters"]["x"], "1,2");
        assert_eq!(event["headers"]["x-dup"], "a,b");
        assert_eq!(event["requestContext"]["http"]["method"], "POST");
        assert_eq!(
            (event["body"].as_str(), event["isBase64Encoded"].as_bool()),
            (Some("List-Unsubscribe=One-Click"), Some(false))
        );
        let parsed: aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest =
            serde_json::from_value(event).unwrap();
        assert_eq!(parsed.raw_path.as_deref(), Some("/unsubscribe"));

        request.headers = vec![("content-type".into(), "application/octet-stream".into())];
        request.body = vec![0, 159, 146, 150];
        let event = function_url_event(&request, 9);
        assert_eq!(event["isBase64Encoded"], true);
        assert!(parse_head("GARBAGE").is_err());
        assert!(parse_head("GET / HTTP/2").is_err());
    }

    #[test]
    fn answers_become_http_responses() {
        let answer = json!({"statusCode": 403, "headers": {"content-type": "text/plain"}, "body": "no", "isBase64Encoded": false});
        let raw = String::from_utf8(http_response(&answer)).unwrap();
        assert!(raw.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{raw}");
        assert!(raw.contains("content-type: text/plain\r\n") && raw.ends_with("\r\n\r\nno"), "{raw}");
    }
}
