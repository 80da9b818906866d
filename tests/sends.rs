//! Provider sends go out once per attempt: the SDK's own retries are off for SES
//! `SendEmail` and SNS `Publish` (a retry after an answer that was lost, or a 500 for a
//! send that happened, is a second email, push or SMS), and Herald's retry path decides.
//! Other operations keep the SDK's retries. Proved against a loopback endpoint that
//! answers 500 to the first request and counts the requests.

use herald::aws::ses::SesEmail;
use herald::aws::sns::{PlatformApps, SnsEndpoints, SnsPush, SnsSms};
use herald::domain::template::EmailContent;
use herald::domain::{EmailAddress, PhoneNumber};
use herald::ports::{EmailMessage, EmailSender, PortError, PushEndpoints, PushSender, SmsSender, SmsType};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// One canned HTTP answer.
#[derive(Clone, Copy)]
struct Answer {
    status: u16,
    headers: &'static str,
    body: &'static str,
}

/// An HTTP endpoint on loopback: the first request gets `first`, every later one `then`.
struct Loopback {
    url: String,
    requests: Arc<AtomicU32>,
}

impl Loopback {
    fn start(first: Answer, then: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicU32::new(0));
        let count = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let n = count.fetch_add(1, Ordering::SeqCst);
                let a = if n == 0 { first } else { then };
                let response = format!(
                    "HTTP/1.1 {} X\r\n{}Content-Length: {}\r\nConnection: close\r\n\r\n{}",
                    a.status,
                    a.headers,
                    a.body.len(),
                    a.body
                );
                let _ = stream.write_all(response.as_bytes());
            }
        });
        Self { url, requests }
    }

    fn requests(&self) -> u32 {
        self.requests.load(Ordering::SeqCst)
    }
}

const SES_500: Answer = Answer {
    status: 500,
    headers: "Content-Type: application/json\r\nx-amzn-ErrorType: InternalFailure\r\n",
    body: r#"{"message":"We encountered an internal error. Please try again."}"#,
};
const SES_SENT: Answer =
    Answer { status: 200, headers: "Content-Type: application/json\r\n", body: r#"{"MessageId":"loopback-1"}"# };
const SNS_500: Answer = Answer {
    status: 500,
    headers: "Content-Type: text/xml\r\n",
    body: r#"<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error><Type>Receiver</Type><Code>InternalError</Code><Message>Internal Error</Message></Error><RequestId>r-1</RequestId></ErrorResponse>"#,
};
const SNS_PUBLISHED: Answer = Answer {
    status: 200,
    headers: "Content-Type: text/xml\r\n",
    body: r#"<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishResult><MessageId>loopback-1</MessageId></PublishResult><ResponseMetadata><RequestId>r-2</RequestId></ResponseMetadata></PublishResponse>"#,
};
const SNS_DELETED: Answer = Answer {
    status: 200,
    headers: "Content-Type: text/xml\r\n",
    body: r#"<DeleteEndpointResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><ResponseMetadata><RequestId>r-3</RequestId></ResponseMetadata></DeleteEndpointResponse>"#,
};

fn assert_held(result: Result<String, PortError>, what: &str) {
    match result {
        Err(e @ (PortError::Transient(_) | PortError::Throttled(_))) => assert!(e.is_retryable()),
        other => panic!("{what}: expected a retryable error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ses_send_email_is_not_retried_by_the_sdk() {
    let server = Loopback::start(SES_500, SES_SENT);
    let sdk = herald_cli::local::sdk_for(&server.url).await;
    let ses = SesEmail::new(aws_sdk_sesv2::Client::new(&sdk), None);
    let message = EmailMessage {
        to: EmailAddress::new("ana@example.org").unwrap(),
        from: "noreply@example.org".into(),
        reply_to: None,
        content: EmailContent { subject: "s".into(), html: "<p>h</p>".into(), text: "t".into() },
        headers: Vec::new(),
        tags: Vec::new(),
    };
    assert_held(ses.send(&message).await, "SendEmail");
    assert_eq!(server.requests(), 1, "one request: the SDK did not send the email again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_publish_is_not_retried_by_the_sdk_for_push_or_sms() {
    let server = Loopback::start(SNS_500, SNS_PUBLISHED);
    let sdk = herald_cli::local::sdk_for(&server.url).await;
    let push = SnsPush::new(aws_sdk_sns::Client::new(&sdk));
    let endpoint = "arn:aws:sns:us-east-1:123456789012:endpoint/GCM/app/5e3b";
    assert_held(push.publish(endpoint, r#"{"GCM":"{}"}"#).await, "Publish (push)");
    assert_eq!(server.requests(), 1, "one request: the SDK did not push again");

    let server = Loopback::start(SNS_500, SNS_PUBLISHED);
    let sdk = herald_cli::local::sdk_for(&server.url).await;
    let sms = SnsSms::new(aws_sdk_sns::Client::new(&sdk));
    let to = PhoneNumber::new("+15555550100").unwrap();
    assert_held(sms.send(&to, "Your code is 123456", SmsType::Transactional).await, "Publish (SMS)");
    assert_eq!(server.requests(), 1, "one request: the SDK did not text again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_operations_keep_the_sdk_retries() {
    let server = Loopback::start(SNS_500, SNS_DELETED);
    let sdk = herald_cli::local::sdk_for(&server.url).await;
    let endpoints = SnsEndpoints::new(aws_sdk_sns::Client::new(&sdk), PlatformApps::default());
    endpoints.delete("arn:aws:sns:us-east-1:123456789012:endpoint/GCM/app/5e3b").await.unwrap();
    assert_eq!(server.requests(), 2, "the 500 was retried by the SDK");
}
