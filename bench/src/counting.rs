//! Counts every AWS request the SDK sends, by wrapping the HTTP client that every
//! client derives from one `SdkConfig` (`herald::aws::loader().http_client(..)`
//! replaces the client `loader()` sets, so Herald's adapters are untouched).
//!
//! Each request is named from what goes on the wire: DynamoDB and SQS speak the
//! JSON protocol (`X-Amz-Target: DynamoDB_20120810.PutItem`), SNS the query
//! protocol (`Action=Publish` in the form body), SES v2 is REST
//! (`POST /v2/email/outbound-emails` is SendEmail). The service is the one named
//! in the request's SigV4 credential scope. Retries are separate requests, as AWS
//! bills them.

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Who made a request: the handler of a function (Herald's own code), the SQS
/// event source that invokes it (the local poller standing in for Lambda's), or
/// the bench itself playing a producer or SES.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Who {
    Herald(String),
    EventSource(String),
    Driver,
}

impl Who {
    pub fn function(&self) -> &str {
        match self {
            Who::Herald(f) | Who::EventSource(f) => f,
            Who::Driver => "driver",
        }
    }
}

/// One request as it went out and came back.
#[derive(Debug, Clone)]
pub struct Call {
    pub who: Who,
    pub service: String,
    pub operation: String,
    pub status: u16,
    pub start: Duration,
    pub end: Duration,
    pub request: Captured,
    /// The response body, kept for DynamoDB reads (their size is what they cost)
    /// and SQS receives (an empty receive is idle polling, not work).
    pub response: Option<Vec<u8>>,
}

/// The request, kept so that it can be sized, costed and replayed by the floor client.
#[derive(Debug, Clone)]
pub struct Captured {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Call {
    /// For SQS ReceiveMessage: how many messages came back.
    pub fn received(&self) -> Option<usize> {
        if self.operation != "ReceiveMessage" {
            return None;
        }
        let body: serde_json::Value = self.response.as_deref().and_then(|b| serde_json::from_slice(b).ok())?;
        Some(body.get("Messages").and_then(|m| m.as_array()).map_or(0, Vec::len))
    }

    /// Idle polling: a receive that found nothing.
    pub fn is_empty_receive(&self) -> bool {
        self.received() == Some(0)
    }

    pub fn request_json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.request.body).ok()
    }

    pub fn response_json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(self.response.as_deref()?).ok()
    }

    /// `Service Operation`, with SNS Publish split by target (a push endpoint, a
    /// phone number or a topic), since those are billed differently.
    pub fn label(&self) -> String {
        format!("{} {}", self.service, self.operation)
    }
}

/// Every request of a run, in the order they completed.
#[derive(Debug)]
pub struct Recorder {
    epoch: Instant,
    calls: Mutex<Vec<Call>>,
}

impl Recorder {
    pub fn new() -> Arc<Self> {
        Arc::new(Self { epoch: Instant::now(), calls: Mutex::new(Vec::new()) })
    }

    pub fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// How many calls have been recorded so far: a mark to slice a phase with.
    pub fn mark(&self) -> usize {
        self.calls.lock().map(|c| c.len()).unwrap_or_default()
    }

    /// The calls recorded from `mark` on.
    pub fn since(&self, mark: usize) -> Vec<Call> {
        self.calls.lock().map(|c| c.get(mark..).map(<[Call]>::to_vec).unwrap_or_default()).unwrap_or_default()
    }

    fn push(&self, call: Call) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(call);
        }
    }
}

/// The HTTP client Herald's `loader()` builds: rustls on ring (built here the same
/// way, to be wrapped).
pub fn herald_http_client() -> SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
}

#[derive(Debug, Clone)]
pub struct CountingClient {
    inner: SharedHttpClient,
    who: Who,
    recorder: Arc<Recorder>,
}

impl CountingClient {
    pub fn new(who: Who, recorder: Arc<Recorder>) -> Self {
        Self { inner: herald_http_client(), who, recorder }
    }
}

impl HttpClient for CountingClient {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(CountingConnector {
            inner: self.inner.http_connector(settings, components),
            who: self.who.clone(),
            recorder: self.recorder.clone(),
        })
    }
}

#[derive(Debug)]
struct CountingConnector {
    inner: SharedHttpConnector,
    who: Who,
    recorder: Arc<Recorder>,
}

impl HttpConnector for CountingConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let captured = Captured {
            method: request.method().to_owned(),
            uri: request.uri().to_owned(),
            headers: request.headers().iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
            body: request.body().bytes().map(<[u8]>::to_vec).unwrap_or_default(),
        };
        let (service, operation) = identify(&captured);
        let keep_response = matches!(
            (service.as_str(), operation.as_str()),
            ("dynamodb", "GetItem" | "Query" | "BatchGetItem" | "Scan") | ("sqs", "ReceiveMessage")
        );
        let who = self.who.clone();
        let recorder = self.recorder.clone();
        let start = recorder.now();
        let future = self.inner.call(request);
        HttpConnectorFuture::new(async move {
            let mut response = future.await?;
            let body = if keep_response {
                let raw = response.take_body();
                let bytes = ByteStream::new(raw)
                    .collect()
                    .await
                    .map_err(|e| aws_smithy_runtime_api::client::result::ConnectorError::io(e.into()))?
                    .into_bytes();
                *response.body_mut() = SdkBody::from(bytes.clone());
                Some(bytes.to_vec())
            } else {
                None
            };
            recorder.push(Call {
                who,
                service,
                operation,
                status: response.status().as_u16(),
                start,
                end: recorder.now(),
                request: captured,
                response: body,
            });
            Ok::<HttpResponse, _>(response)
        })
    }
}

/// The service (from the SigV4 credential scope) and the operation of a request.
pub fn identify(request: &Captured) -> (String, String) {
    let header =
        |name: &str| request.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
    let service = header("authorization")
        .and_then(|auth| auth.split("Credential=").nth(1))
        .and_then(|cred| cred.split(',').next())
        .and_then(|scope| scope.split('/').nth(3))
        .unwrap_or("unknown")
        .to_owned();
    if let Some(target) = header("x-amz-target") {
        let op = target.rsplit('.').next().unwrap_or(target);
        return (service, op.to_owned());
    }
    let body = String::from_utf8_lossy(&request.body);
    if let Some(action) = form_value(&body, "Action") {
        let op = if action == "Publish" {
            let target = if form_value(&body, "PhoneNumber").is_some() {
                "sms"
            } else if form_value(&body, "TargetArn").is_some() {
                "push"
            } else {
                "topic"
            };
            format!("Publish({target})")
        } else {
            action
        };
        return (service, op);
    }
    let path = request.uri.split("://").nth(1).and_then(|rest| rest.find('/').map(|i| &rest[i..])).unwrap_or("/");
    let path = path.split('?').next().unwrap_or(path);
    let op = match (request.method.as_str(), path) {
        ("POST", "/v2/email/outbound-emails") => "SendEmail".to_owned(),
        (method, path) => format!("{method} {path}"),
    };
    (service, op)
}

fn form_value(body: &str, name: &str) -> Option<String> {
    body.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| v.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)], method: &str, uri: &str, body: &str) -> Captured {
        Captured {
            method: method.into(),
            uri: uri.into(),
            headers: headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    const AUTH: &str =
        "AWS4-HMAC-SHA256 Credential=test/20261127/us-east-1/{svc}/aws4_request, SignedHeaders=host, Signature=0";

    #[test]
    fn names_each_protocol() {
        let auth = |svc: &str| AUTH.replace("{svc}", svc);
        let ddb = request(
            &[("authorization", &auth("dynamodb")), ("x-amz-target", "DynamoDB_20120810.PutItem")],
            "POST",
            "http://127.0.0.1:1/",
            "{}",
        );
        assert_eq!(identify(&ddb), ("dynamodb".into(), "PutItem".into()));
        let sqs = request(
            &[("Authorization", &auth("sqs")), ("X-Amz-Target", "AmazonSQS.SendMessageBatch")],
            "POST",
            "http://127.0.0.1:1/",
            "{}",
        );
        assert_eq!(identify(&sqs), ("sqs".into(), "SendMessageBatch".into()));
        let sns = request(
            &[("authorization", &auth("sns"))],
            "POST",
            "http://127.0.0.1:1/",
            "Action=Publish&Version=2010-03-31&PhoneNumber=%2B15555550100&Message=hi",
        );
        assert_eq!(identify(&sns), ("sns".into(), "Publish(sms)".into()));
        let ses =
            request(&[("authorization", &auth("ses"))], "POST", "http://127.0.0.1:1/v2/email/outbound-emails", "{}");
        assert_eq!(identify(&ses), ("ses".into(), "SendEmail".into()));
    }
}
