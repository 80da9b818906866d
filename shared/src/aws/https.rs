//! Plain HTTPS GETs on the SDK's own HTTP client (hyper with rustls on ring): SNS
//! signing certificates and subscription confirmations. No second HTTP/TLS stack.

use crate::ports::{CertFetcher, PortError, PortResult};
use aws_smithy_http_client::Connector;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::HttpConnector;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::byte_stream::ByteStream;
use std::sync::OnceLock;
use std::time::Duration;

/// Bounded in time and size: a slow or huge answer cannot hold the function. The
/// connector (and its trust store) is built on first use, not at start-up: most
/// invocations never fetch anything.
#[derive(Debug)]
pub struct HttpsFetcher {
    connector: OnceLock<Connector>,
    timeout: Duration,
}

impl HttpsFetcher {
    pub fn new(timeout: Duration) -> Self {
        Self { connector: OnceLock::new(), timeout }
    }

    fn connector(&self) -> &Connector {
        self.connector.get_or_init(|| Connector::builder().tls_provider(Provider::Rustls(CryptoMode::Ring)).build())
    }
}

impl CertFetcher for HttpsFetcher {
    async fn get(&self, url: &str, max_bytes: usize) -> PortResult<Vec<u8>> {
        let request = HttpRequest::get(url)
            .map_err(|e| PortError::Permanent { code: "InvalidUrl".into(), message: format!("GET {url}: {e}") })?;
        let fetch = async {
            let response =
                self.connector().call(request).await.map_err(|e| PortError::Transient(format!("GET {url}: {e}")))?;
            let status = response.status().as_u16();
            if status >= 500 || status == 429 {
                return Err(PortError::Transient(format!("GET {url}: HTTP {status}")));
            }
            if !(200..300).contains(&status) {
                return Err(PortError::Permanent { code: format!("HTTP{status}"), message: format!("GET {url}") });
            }
            let mut stream = ByteStream::new(response.into_body());
            let mut body = Vec::new();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| PortError::Transient(format!("GET {url}: {e}")))?;
                if body.len() + chunk.len() > max_bytes {
                    return Err(PortError::Permanent {
                        code: "TooLarge".into(),
                        message: format!("GET {url}: more than {max_bytes} bytes"),
                    });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body)
        };
        tokio::time::timeout(self.timeout, fetch)
            .await
            .map_err(|_| PortError::Transient(format!("GET {url}: no answer within {:?}", self.timeout)))?
    }
}
