//! The fault-injecting proxy: an HTTP/1.1 listener on loopback that the functions'
//! handlers use as their AWS endpoint (`endpoint_url`, the path `AWS_ENDPOINT_URL`
//! takes in a deployment), forwarding to moto what it lets through.
//!
//! One request per connection, answered `Connection: close` (the SDK's client then
//! opens a new loopback connection per request); bodies by `Content-Length` or
//! chunked. Upstream, each request goes to moto as HTTP/1.0 (moto answers and
//! closes, never chunked), with its headers untouched: the SigV4 signature covers
//! the `Host` the client signed, and moto reads the service from the credential
//! scope, as `bench/src/counting.rs` does.

use crate::faults::{Decision, Faults, ServiceError, response, sqs_refusal};
use crate::observed::Observed;
use anyhow::{Context as _, bail};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 8 * 1024 * 1024;
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// A running proxy; stopped on drop.
pub struct Proxy {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    task: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Listens on a free loopback port; forwards to `upstream` (`http://127.0.0.1:<port>`).
    /// `prefix` (the stack's) is stripped from table names in the fault journal; the
    /// requests that pass are shown to `observed` (provider sends, long visibility parks).
    pub async fn start(
        upstream: &str,
        faults: Arc<Faults>,
        observed: Arc<Observed>,
        prefix: &str,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.context("binding the chaos proxy")?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let prefix = prefix.to_owned();
        let counter = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (faults, observed, upstream, prefix, counter) =
                    (faults.clone(), observed.clone(), upstream.clone(), prefix.clone(), counter.clone());
                tokio::spawn(async move {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = connection(stream, &upstream, &faults, &observed, &prefix, n).await {
                        tracing::debug!(error = %format!("{e:#}"), "chaos proxy: connection failed");
                    }
                });
            }
        });
        Ok(Self { endpoint, task })
    }
}

/// A request as read from the socket.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

async fn connection(
    mut client: TcpStream,
    upstream: &str,
    faults: &Faults,
    observed: &Observed,
    prefix: &str,
    n: u64,
) -> anyhow::Result<()> {
    let request = read_request(&mut client).await?;
    let (service, operation) = identify(&request);
    let request_id = format!("chaos-{n:08}");
    if service == "sqs"
        && let Some(refusal) = sqs_refusal(&operation, &request.body)
    {
        faults.record_sqs_refusal(&operation, &request.body, prefix);
        return answer(&mut client, &refusal.render(&service, &request_id)).await;
    }
    let decision = faults.decide(&service, &operation, &request.body);
    let reply = match decision {
        Decision::Pass => {
            let reply = forward(upstream, &request).await;
            if let Ok(raw) = &reply
                && status_of(raw).is_some_and(|s| (200..300).contains(&s))
            {
                let body = find(raw, b"\r\n\r\n").map_or(&[][..], |i| &raw[i + 4..]);
                observed.observe(&service, &operation, &request.body, body);
            }
            reply
        }
        Decision::AppliedThen500 => match forward(upstream, &request).await {
            // Applied: the answer is lost on its way back.
            Ok(raw) if status_of(&raw).is_some_and(|s| (200..300).contains(&s)) => {
                Ok(ServiceError::for_fault(&service, decision).render(&service, &request_id))
            }
            // Not applied (refused, say a failed condition): nothing to lose, pass it on.
            other => {
                faults.record(&service, &operation, Decision::Pass, &request.body, prefix);
                return answer(&mut client, &other.unwrap_or_else(|e| bad_gateway(&e))).await;
            }
        },
        _ => Ok(ServiceError::for_fault(&service, decision).render(&service, &request_id)),
    };
    faults.record(&service, &operation, decision, &request.body, prefix);
    answer(&mut client, &reply.unwrap_or_else(|e| bad_gateway(&e))).await
}

fn bad_gateway(e: &anyhow::Error) -> Vec<u8> {
    response(502, &[("content-type", "text/plain".into())], format!("chaos proxy: {e:#}").as_bytes())
}

async fn answer(client: &mut TcpStream, bytes: &[u8]) -> anyhow::Result<()> {
    client.write_all(bytes).await?;
    client.shutdown().await?;
    Ok(())
}

/// Sends the request to moto and returns its answer, rewritten as a `Connection: close`
/// HTTP/1.1 response with a `Content-Length`.
async fn forward(upstream: &str, request: &Request) -> anyhow::Result<Vec<u8>> {
    let exchange = async {
        let mut stream = TcpStream::connect(upstream).await.context("connecting to moto")?;
        let mut head = format!("{} {} HTTP/1.0\r\n", request.method, request.target);
        for (k, v) in &request.headers {
            if !is_hop_header(k) {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", request.body.len()));
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&request.body).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        anyhow::Ok(raw)
    };
    let raw = tokio::time::timeout(UPSTREAM_TIMEOUT, exchange).await.context("moto did not answer within 60 s")??;
    rewrite_response(&raw)
}

fn is_hop_header(name: &str) -> bool {
    ["connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "te", "upgrade"]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
}

/// The status code of a raw response.
pub fn status_of(raw: &[u8]) -> Option<u16> {
    let line = raw.split(|b| *b == b'\n').next()?;
    std::str::from_utf8(line).ok()?.split_whitespace().nth(1)?.parse().ok()
}

fn rewrite_response(raw: &[u8]) -> anyhow::Result<Vec<u8>> {
    let end = find(raw, b"\r\n\r\n").context("moto's answer has no end of head")?;
    let head = std::str::from_utf8(&raw[..end]).context("moto's answer head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("no status")?;
    let mut headers = Vec::new();
    let mut chunked = false;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else { continue };
        if k.trim().eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked") {
            chunked = true;
        }
        if !is_hop_header(k.trim()) {
            headers.push((k.trim(), v.trim().to_owned()));
        }
    }
    let rest = &raw[end + 4..];
    let body = if chunked { dechunk(rest)? } else { rest.to_vec() };
    let mut out = format!("HTTP/1.1 {status} {}\r\n", status_line.splitn(3, ' ').nth(2).unwrap_or("")).into_bytes();
    for (k, v) in headers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(format!("content-length: {}\r\nconnection: close\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Decodes a complete chunked body.
fn dechunk(mut raw: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = find(raw, b"\r\n").context("chunk size line")?;
        let size_text = std::str::from_utf8(&raw[..line_end])?.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).context("chunk size")?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if raw.len() < size + 2 {
            bail!("chunk shorter than its size");
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

async fn read_request(stream: &mut TcpStream) -> anyhow::Result<Request> {
    let mut buf = Vec::with_capacity(8192);
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD {
            bail!("request head larger than {MAX_HEAD} bytes");
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed before the request head ended");
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split_whitespace();
    let (method, target) = (first.next().unwrap_or_default().to_owned(), first.next().unwrap_or("/").to_owned());
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect();
    let mut request = Request { method, target, headers, body: buf[head_end + 4..].to_vec() };
    let chunked = request.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        while !request.body.ends_with(b"0\r\n\r\n") {
            read_more(stream, &mut request.body).await?;
        }
        request.body = dechunk(&request.body)?;
    } else {
        let length: usize = request.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        if length > MAX_BODY {
            bail!("request body larger than {MAX_BODY} bytes");
        }
        while request.body.len() < length {
            read_more(stream, &mut request.body).await?;
        }
        request.body.truncate(length);
    }
    Ok(request)
}

async fn read_more(stream: &mut TcpStream, body: &mut Vec<u8>) -> anyhow::Result<()> {
    if body.len() > MAX_BODY {
        bail!("request body larger than {MAX_BODY} bytes");
    }
    let mut chunk = [0u8; 16384];
    let n = stream.read(&mut chunk).await?;
    if n == 0 {
        bail!("connection closed before the request body ended");
    }
    body.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// The service (from the SigV4 credential scope) and the operation of a request:
/// DynamoDB and SQS name it in `X-Amz-Target`, SNS in the form's `Action`, SES v2 by
/// method and path.
pub fn identify(request: &Request) -> (String, String) {
    let service = request
        .header("authorization")
        .and_then(|auth| auth.split("Credential=").nth(1))
        .and_then(|cred| cred.split(',').next())
        .and_then(|scope| scope.split('/').nth(3))
        .unwrap_or("unknown")
        .to_owned();
    if let Some(target) = request.header("x-amz-target") {
        return (service, target.rsplit('.').next().unwrap_or(target).to_owned());
    }
    let body = String::from_utf8_lossy(&request.body);
    if let Some(action) = body.split('&').find_map(|pair| pair.strip_prefix("Action=")) {
        return (service, action.to_owned());
    }
    let path = request.target.split('?').next().unwrap_or_default();
    let op = match (request.method.as_str(), path) {
        ("POST", "/v2/email/outbound-emails") => "SendEmail".to_owned(),
        (method, path) => format!("{method} {path}"),
    };
    (service, op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::FaultConfig;

    const AUTH: &str =
        "AWS4-HMAC-SHA256 Credential=test/20261127/us-east-1/{svc}/aws4_request, SignedHeaders=host, Signature=0";

    fn request(svc: &str, headers: &[(&str, &str)], method: &str, target: &str, body: &str) -> Request {
        let mut h: Vec<(String, String)> = vec![("Authorization".into(), AUTH.replace("{svc}", svc))];
        h.extend(headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        Request { method: method.into(), target: target.into(), headers: h, body: body.as_bytes().to_vec() }
    }

    #[test]
    fn names_each_protocol() {
        let ddb = request("dynamodb", &[("X-Amz-Target", "DynamoDB_20120810.UpdateItem")], "POST", "/", "{}");
        assert_eq!(identify(&ddb), ("dynamodb".into(), "UpdateItem".into()));
        let sqs = request("sqs", &[("x-amz-target", "AmazonSQS.SendMessageBatch")], "POST", "/", "{}");
        assert_eq!(identify(&sqs), ("sqs".into(), "SendMessageBatch".into()));
        let sns = request("sns", &[], "POST", "/", "Action=Publish&Version=2010-03-31&TargetArn=x");
        assert_eq!(identify(&sns), ("sns".into(), "Publish".into()));
        let ses = request("ses", &[], "POST", "/v2/email/outbound-emails", "{}");
        assert_eq!(identify(&ses), ("ses".into(), "SendEmail".into()));
    }

    #[test]
    fn chunked_bodies_and_moto_answers_are_rewritten() {
        assert_eq!(dechunk(b"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n").unwrap(), b"Wikipedia");
        let raw = b"HTTP/1.0 200 OK\r\nContent-Type: text/xml\r\nConnection: keep-alive\r\n\r\n<ok/>";
        let out = String::from_utf8(rewrite_response(raw).unwrap()).unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains("content-length: 5\r\nconnection: close\r\n\r\n<ok/>"), "{out}");
        assert!(!out.contains("keep-alive"));
        assert_eq!(status_of(b"HTTP/1.1 503 Service Unavailable\r\n\r\n"), Some(503));
    }

    /// A fake upstream that answers every request 200 and counts them.
    async fn upstream() -> (String, Arc<AtomicU64>) {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicU64::new(0));
        let h = hits.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else { continue };
                h.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let _ = read_request(&mut s).await;
                    let body = br#"{"MessageId":"m-1","MD5OfMessageBody":"x"}"#;
                    let head = b"HTTP/1.0 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\n\r\n";
                    let _ = s.write_all(head).await;
                    let _ = s.write_all(body).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        (addr, hits)
    }

    async fn sdk(endpoint: &str, attempts: u32) -> aws_config::SdkConfig {
        herald::aws::loader()
            .endpoint_url(endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "chaos"))
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(attempts))
            .load()
            .await
    }

    fn faults(throttle: f64, server_error: f64, applied: f64) -> Arc<Faults> {
        Arc::new(Faults::new(FaultConfig {
            seed: 1,
            throttle,
            server_error,
            applied_then_500: applied,
            outages: Vec::new(),
        }))
    }

    /// The SDK reads each fault as the service's own error: the code Herald's
    /// `classify` and the SDK's retry classifier look at.
    #[tokio::test]
    async fn the_sdk_reads_each_throttle_as_its_service_spells_it() {
        use aws_sdk_dynamodb::error::ProvideErrorMetadata;
        let (up, hits) = upstream().await;
        let f = faults(1.0, 0.0, 0.0);
        let proxy = Proxy::start(&up, f.clone(), Arc::new(Observed::new().0), "").await.unwrap();
        let conf = sdk(&proxy.endpoint, 1).await;

        let e = aws_sdk_dynamodb::Client::new(&conf).get_item().table_name("t").send().await.unwrap_err();
        let code = e.code().unwrap_or_default().to_owned();
        assert!(["ProvisionedThroughputExceededException", "ThrottlingException"].contains(&code.as_str()), "{code}");

        let e = aws_sdk_sqs::Client::new(&conf).send_message().queue_url("http://q/1/q").message_body("b");
        let e = e.send().await.unwrap_err();
        assert_eq!(e.code(), Some("RequestThrottled"));

        let e = aws_sdk_sns::Client::new(&conf).publish().target_arn("arn:x").message("m").send().await.unwrap_err();
        assert!(["Throttling", "Throttled"].contains(&e.code().unwrap_or_default()), "{:?}", e.code());

        let e = aws_sdk_sesv2::Client::new(&conf)
            .send_email()
            .from_email_address("a@example.com")
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("TooManyRequestsException"));
        assert_eq!(hits.load(Ordering::SeqCst), 0, "a refused request never reaches the service");
        assert_eq!(f.counts().throttle, 4);
    }

    #[tokio::test]
    async fn a_write_applied_then_answered_500_reaches_the_service_and_the_sdk_retries_it() {
        use aws_sdk_sqs::error::ProvideErrorMetadata;
        let (up, hits) = upstream().await;
        let f = faults(0.0, 0.0, 1.0);
        let proxy = Proxy::start(&up, f.clone(), Arc::new(Observed::new().0), "").await.unwrap();
        let conf = sdk(&proxy.endpoint, 3).await;
        let e = aws_sdk_sqs::Client::new(&conf).send_message().queue_url("http://q/1/q").message_body("b");
        let e = e.send().await.unwrap_err();
        assert_eq!(e.code(), Some("InternalFailure"));
        // Each of the SDK's three attempts was applied: three messages for one send.
        assert_eq!(hits.load(Ordering::SeqCst), 3);
        assert_eq!(f.counts().applied_then_500.get("sqs"), Some(&3));
        // A read is never applied-then-500: it passes, once.
        let _ = aws_sdk_sqs::Client::new(&conf).get_queue_url().queue_name("q").send().await;
        assert_eq!(hits.load(Ordering::SeqCst), 4);
        assert_eq!(f.counts().forwarded, 1);
    }

    #[tokio::test]
    async fn server_errors_are_500_or_503_and_retried_by_the_sdk() {
        let (up, hits) = upstream().await;
        let f = faults(0.0, 1.0, 0.0);
        let proxy = Proxy::start(&up, f.clone(), Arc::new(Observed::new().0), "").await.unwrap();
        let conf = sdk(&proxy.endpoint, 3).await;
        let e = aws_sdk_dynamodb::Client::new(&conf).get_item().table_name("t").send().await.unwrap_err();
        let status = e.raw_response().map(|r| r.status().as_u16());
        assert!(matches!(status, Some(500 | 503)), "{status:?}");
        assert_eq!(f.counts().server_error, 3, "three attempts, each refused");
        assert_eq!(hits.load(Ordering::SeqCst), 0);
    }
}
