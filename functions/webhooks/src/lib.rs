//! Webhooks: Herald's HTTPS endpoint (a Lambda Function URL, AuthType NONE: every
//! request is verified by its own signature before it changes anything).
//!
//! - `POST /sns`: SNS HTTPS subscriptions. The message signature is checked
//!   (versions 1 and 2, the certificate fetched only from an SNS host), the topic
//!   must be one Herald accepts, the message at most 90 minutes old (SNS retries an
//!   HTTPS delivery for an hour at most); a subscription confirmation is confirmed,
//!   a notification is handed to the receipts queue re-serialized from its signed
//!   fields (what an SQS subscription would receive), once per `MessageId`: SNS's
//!   retry of one already taken is answered 200 and not handed on again.
//! - `POST /providers/<name>`: a custom provider's report, signed with
//!   HMAC-SHA256 over `<timestamp>.<raw body>` with that provider's secret, at
//!   most 5 minutes old, each signature (its value, however its hex is spelled)
//!   accepted once, every event on one of the channels that provider is configured
//!   for (the ledger then moves only messages sent on the event's channel).
//! - `GET /unsubscribe?t=<token>`: a confirmation page (a link scanner that
//!   follows the link changes nothing), which also links to the person's preference
//!   center; `POST` with `List-Unsubscribe=One-Click` (RFC 8058) revokes the consent
//!   the signed token names, through the same consent path as `set_consent`, with
//!   source `one-click-unsubscribe`.
//! - `GET /preferences?t=<token>` and `POST /preferences`: the preference center
//!   ([`preferences`]), a signed link to a person's page of topics by channel.
//!
//! Refusals: 400 malformed, 401 unsigned (or no secret for that provider), 403
//! forged, stale, replayed, from an untrusted source or on a channel the provider
//! is not configured for, 404/405 elsewhere, 410 an expired preference link, 503
//! when a store or a secret is unavailable (the sender retries). The two pages
//! answer with an HTML page, the others with text.
//!
//! Every answer carries `Content-Security-Policy` (nothing but inline style, forms posting
//! to this origin only, never framed), `X-Frame-Options: DENY`, `Referrer-Policy:
//! no-referrer` (a page's URL holds its token), `Cache-Control: no-store` and
//! `X-Content-Type-Options: nosniff`.
//!
//! The unsubscribe key and the providers' secrets are in Secrets Manager, read when a
//! request first needs them and kept for a few minutes: a provider added to the secret
//! is accepted without a redeploy.

pub mod preferences;
pub mod sns;

#[cfg(feature = "aws")]
pub mod aws;

use aws_lambda_events::event::lambda_function_urls::{LambdaFunctionUrlRequest, LambdaFunctionUrlResponse};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use herald::config::{ConfigError, LedgerConfig, Lookup, optional, required};
use herald::contract::{ConsentSource, SetConsent};
use herald::domain::Channel;
use herald::domain::contact::redact_contacts;
use herald::domain::preferences::Lang;
use herald::domain::receipts::{ProviderReceipt, ProviderReport};
use herald::domain::unsubscribe::{self, TokenError, Unsubscribe, UnsubscribeKey};
use herald::domain::webhook::{self, Provider, ProviderKey, SnsMessage, SnsMessageError};
use herald::metrics;
use herald::ports::*;
use sns::{SnsVerifier, VerifyError};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// The consent source recorded for a one-click unsubscribe.
pub const UNSUBSCRIBE_SOURCE: &str = "one-click-unsubscribe";

/// What every answer carries (see the module's documentation).
pub const SECURITY_HEADERS: [(http::HeaderName, &str); 5] = [
    (
        http::header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (http::header::X_FRAME_OPTIONS, "DENY"),
    (http::header::REFERRER_POLICY, "no-referrer"),
    (http::header::CACHE_CONTROL, "no-store"),
    (http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
];

/// Request bodies above this are refused unread (Function URLs allow 6 MB).
const MAX_BODY: usize = 256 * 1024;

#[derive(Debug, Clone)]
pub struct Config {
    pub ledger: LedgerConfig,
    pub recipients_table: String,
    pub receipts_queue_url: String,
    /// The secret (ARN) holding the key that signs unsubscribe links.
    pub unsubscribe_key_secret: String,
    /// The secret (ARN) holding the custom providers' secrets (see [`parse_providers`]).
    pub provider_secrets_secret: String,
    /// Where the preference center's topics are (`topics.toml`, pushed beside the templates).
    pub templates_table: String,
    pub settings: Settings,
}

/// What the handler checks requests against, besides the secrets.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The SNS topics whose messages are accepted: a valid SNS signature proves
    /// SNS sent the message, not whose topic it came from.
    pub sns_topics: Vec<String>,
}

impl Config {
    pub fn from_lookup(get: Lookup<'_>) -> Result<Self, ConfigError> {
        let sns_topics = optional(get, "HERALD_SNS_TOPIC_ARNS")
            .map(|raw| raw.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        Ok(Self {
            ledger: LedgerConfig::from_lookup(get)?,
            recipients_table: required(get, "HERALD_RECIPIENTS_TABLE")?,
            receipts_queue_url: required(get, "HERALD_RECEIPTS_QUEUE_URL")?,
            unsubscribe_key_secret: required(get, "HERALD_UNSUBSCRIBE_KEY_SECRET")?,
            provider_secrets_secret: required(get, "HERALD_WEBHOOK_SECRETS_SECRET")?,
            templates_table: required(get, "HERALD_TEMPLATES_TABLE")?,
            settings: Settings { sns_topics },
        })
    }
}

/// Custom providers, by the name in their path.
pub type Providers = HashMap<String, Provider>;

/// The providers' secret as stored: a JSON object of provider name to
/// `{"secret": "<16 bytes or more>", "channels": ["sms", ..]}`. An entry that is the
/// secret alone (a string: the form before providers had channels) still reads, with no
/// channel, so the other providers keep working: that provider is refused (403) until
/// its channels are given. An error names a provider at most, never a secret.
pub fn parse_providers(raw: &str) -> Result<Providers, String> {
    let entries: HashMap<String, serde_json::Value> = serde_json::from_str(raw)
        .map_err(|_| r#"it must be a JSON object of provider name to {"secret": "..", "channels": [..]}"#.to_owned())?;
    let mut providers = HashMap::new();
    for (name, entry) in entries {
        let valid_name = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
        if !valid_name {
            return Err(format!("provider name {name:?} must be letters, digits, - or _"));
        }
        let (secret, channels) = provider_entry(entry).map_err(|e| format!("provider {name}: {e}"))?;
        let key = ProviderKey::new(&secret).map_err(|e| format!("provider {name}: {e}"))?;
        providers.insert(name, Provider { key, channels });
    }
    Ok(providers)
}

/// One provider's secret and channels. The errors quote nothing from the entry.
fn provider_entry(entry: serde_json::Value) -> Result<(String, BTreeSet<Channel>), &'static str> {
    use serde_json::Value;
    const CHANNELS: &str = r#""channels" must list one or more of "push", "email", "sms""#;
    let mut fields = match entry {
        Value::String(secret) => return Ok((secret, BTreeSet::new())),
        Value::Object(fields) => fields,
        _ => return Err(r#"its entry must be {"secret": "..", "channels": [..]}"#),
    };
    let Some(Value::String(secret)) = fields.remove("secret") else {
        return Err(r#""secret" must be a string"#);
    };
    let Some(Value::Array(list)) = fields.remove("channels") else { return Err(CHANNELS) };
    let channels = list
        .iter()
        .map(|c| c.as_str().and_then(|c| c.parse::<Channel>().ok()))
        .collect::<Option<BTreeSet<_>>>()
        .filter(|c| !c.is_empty())
        .ok_or(CHANNELS)?;
    if !fields.is_empty() {
        return Err(r#"an entry holds "secret" and "channels", nothing else"#);
    }
    Ok((secret, channels))
}

/// The webhook function's two secrets.
pub struct Secrets<U, P> {
    pub unsubscribe_key: U,
    pub providers: P,
}

impl<U: Secret<UnsubscribeKey>, P: Send + Sync> Secret<UnsubscribeKey> for Secrets<U, P> {
    fn current(&self) -> impl Future<Output = PortResult<Arc<UnsubscribeKey>>> + Send {
        self.unsubscribe_key.current()
    }
}

impl<U: Send + Sync, P: Secret<Providers>> Secret<Providers> for Secrets<U, P> {
    fn current(&self) -> impl Future<Output = PortResult<Arc<Providers>>> + Send {
        self.providers.current()
    }
}

/// What the webhook function needs: SNS signature checks (with their certificate
/// fetcher), consents, the receipts queue, the replay guard, the secrets (both
/// [`Secret<UnsubscribeKey>`] and [`Secret<Providers>`], such as [`Secrets`]) and the
/// preference center's topics.
pub struct Deps<F, R, Q, G, S, T> {
    pub sns: SnsVerifier<F>,
    pub recipients: R,
    pub receipts: Q,
    pub replay: G,
    pub secrets: S,
    pub topics: T,
    pub settings: Settings,
}

// ---------------------------------------------------------------- HTTP in and out

/// An HTTP request as the handler sees it, whatever carried it.
#[derive(Debug, Clone, Default)]
pub struct WebRequest {
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    /// Lower-case names.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl WebRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The Function URL event (payload format 2.0); a body Lambda base64-encoded is decoded.
    pub fn from_function_url(event: LambdaFunctionUrlRequest) -> Result<Self, Refusal> {
        let body = match (event.body, event.is_base64_encoded) {
            (None, _) => Vec::new(),
            (Some(b), false) => b.into_bytes(),
            (Some(b), true) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|_| Refusal::Malformed("the body is not valid base64".into()))?,
        };
        let headers = event
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_owned())))
            .collect();
        Ok(Self {
            method: event.request_context.http.method.unwrap_or_default().to_ascii_uppercase(),
            path: event.raw_path.or(event.request_context.http.path).unwrap_or_else(|| "/".into()),
            query: event.query_string_parameters,
            headers,
            body,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl WebResponse {
    fn text(status: u16, body: impl Into<String>) -> Self {
        Self { status, content_type: "text/plain; charset=utf-8", body: body.into() }
    }

    fn html(status: u16, body: String) -> Self {
        Self { status, content_type: "text/html; charset=utf-8", body }
    }

    pub fn into_function_url(self) -> LambdaFunctionUrlResponse {
        use http::header;
        let mut response = LambdaFunctionUrlResponse::default();
        response.status_code = i64::from(self.status);
        let headers = &mut response.headers;
        headers.insert(header::CONTENT_TYPE, http::HeaderValue::from_static(self.content_type));
        // The pages hold signed tokens: never cached, framed, sniffed or sent on as a referrer.
        for (name, value) in SECURITY_HEADERS {
            headers.insert(name, http::HeaderValue::from_static(value));
        }
        response.body = Some(self.body);
        response
    }
}

/// Why a request was refused: the status, and a reason safe to send back and to log
/// (never a secret, an address or a token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    Unsigned(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A link that worked once and has expired.
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    Unavailable(String),
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Malformed(_) => 400,
            Refusal::Unsigned(_) => 401,
            Refusal::Forbidden(_) => 403,
            Refusal::NotFound => 404,
            Refusal::MethodNotAllowed => 405,
            Refusal::Gone(_) => 410,
            Refusal::Unavailable(_) => 503,
        }
    }

    pub(crate) fn unavailable(err: PortError) -> Self {
        Refusal::Unavailable(format!("temporarily unavailable, retry later ({})", short(&err)))
    }
}

/// A port error's kind, without its details (which may name stores or keys).
fn short(err: &PortError) -> &'static str {
    match err {
        PortError::Throttled(_) => "throttled",
        PortError::Transient(_) => "transient",
        PortError::Permanent { .. } => "refused",
        PortError::Unknown(_) => "unknown",
    }
}

// ---------------------------------------------------------------- the handler

pub async fn handler<F, R, Q, G, S, T>(
    deps: &Deps<F, R, Q, G, S, T>,
    event: lambda_runtime::LambdaEvent<LambdaFunctionUrlRequest>,
) -> Result<LambdaFunctionUrlResponse, lambda_runtime::Error>
where
    F: CertFetcher,
    R: RecipientStore,
    Q: ReceiptInbox,
    G: ReplayGuard,
    S: Secret<UnsubscribeKey> + Secret<Providers>,
    T: TopicStore,
{
    let response = match WebRequest::from_function_url(event.payload) {
        Ok(request) => handle(deps, &request, Utc::now()).await,
        Err(refusal) => refused("request", &refusal, Lang::En),
    };
    Ok(response.into_function_url())
}

/// Routes one request and turns the outcome into a response.
pub async fn handle<F, R, Q, G, S, T>(
    deps: &Deps<F, R, Q, G, S, T>,
    request: &WebRequest,
    now: DateTime<Utc>,
) -> WebResponse
where
    F: CertFetcher,
    R: RecipientStore,
    Q: ReceiptInbox,
    G: ReplayGuard,
    S: Secret<UnsubscribeKey> + Secret<Providers>,
    T: TopicStore,
{
    let path = request.path.trim_end_matches('/');
    let (route, result) = if request.body.len() > MAX_BODY {
        ("request", Err(Refusal::Malformed(format!("the body is larger than {MAX_BODY} bytes"))))
    } else {
        match (request.method.as_str(), path) {
            ("POST", "/sns") => ("sns", sns(deps, request, now).await),
            ("POST", p) if p.starts_with("/providers/") => {
                ("provider", provider(deps, &p["/providers/".len()..], request, now).await)
            }
            ("GET" | "HEAD", "/unsubscribe") => ("unsubscribe", unsubscribe_page(deps, request, now).await),
            ("POST", "/unsubscribe") => ("unsubscribe", unsubscribe(deps, request, now).await),
            ("GET" | "HEAD", preferences::PATH) => ("preferences", preferences::page(deps, request, now).await),
            ("POST", preferences::PATH) => ("preferences", preferences::save(deps, request, now).await),
            (_, preferences::PATH) => ("preferences", Err(Refusal::MethodNotAllowed)),
            (_, "/sns" | "/unsubscribe") => ("request", Err(Refusal::MethodNotAllowed)),
            (_, p) if p.starts_with("/providers/") => ("request", Err(Refusal::MethodNotAllowed)),
            _ => ("request", Err(Refusal::NotFound)),
        }
    };
    match result {
        Ok(response) => {
            metrics::count("Webhooks", &[("Route", route), ("Outcome", "accepted")]);
            response
        }
        Err(refusal) => refused(route, &refusal, preferences::request_lang(request)),
    }
}

/// The answer to a refused request; a page of the preference center's in `lang`.
fn refused(route: &'static str, refusal: &Refusal, lang: Lang) -> WebResponse {
    let status = refusal.status();
    // The reason may quote the request (a parser error): no address or number in the log.
    tracing::warn!(route, status, reason = %redact_contacts(&refusal.to_string()), "webhook refused");
    let outcome = match status {
        400 => "malformed",
        401 => "unsigned",
        403 => "forbidden",
        410 => "expired",
        503 => "unavailable",
        _ => "not_found",
    };
    metrics::count("Webhooks", &[("Route", route), ("Outcome", outcome)]);
    if route == "preferences" {
        preferences::error_page(refusal, lang)
    } else if route == "unsubscribe" {
        WebResponse::html(status, page("This link cannot be used", &escape(&refusal.to_string())))
    } else {
        WebResponse::text(status, refusal.to_string())
    }
}

// ---------------------------------------------------------------- SNS

fn sns_refusal(e: SnsMessageError) -> Refusal {
    match e {
        SnsMessageError::Unsigned => Refusal::Unsigned(e.to_string()),
        SnsMessageError::UntrustedCertUrl | SnsMessageError::Stale => Refusal::Forbidden(e.to_string()),
        _ => Refusal::Malformed(e.to_string()),
    }
}

async fn sns<F, R, Q, G, S, T>(
    deps: &Deps<F, R, Q, G, S, T>,
    request: &WebRequest,
    now: DateTime<Utc>,
) -> Result<WebResponse, Refusal>
where
    F: CertFetcher,
    Q: ReceiptInbox,
    G: ReplayGuard,
{
    let message: SnsMessage = serde_json::from_slice(&request.body)
        .map_err(|_| Refusal::Malformed("the body is not an SNS message".into()))?;
    // Before any fetch: only the topics Herald was configured for, only recent messages
    // (the Timestamp is signed: a forged one fails the signature below).
    if !deps.settings.sns_topics.contains(&message.topic_arn) {
        return Err(Refusal::Forbidden("messages from this topic are not accepted".into()));
    }
    let published = message.check_fresh(now).map_err(sns_refusal)?;
    deps.sns.verify(&message).await.map_err(|e| match e {
        VerifyError::Message(e) => sns_refusal(e),
        VerifyError::BadSignature | VerifyError::BadCertificate => Refusal::Forbidden(e.to_string()),
        VerifyError::Fetch(err) if err.is_retryable() => Refusal::unavailable(err),
        VerifyError::Fetch(_) => Refusal::Forbidden("the signing certificate could not be fetched".into()),
    })?;
    match message.kind.as_str() {
        "SubscriptionConfirmation" => {
            let url = message.subscribe_url.as_deref().unwrap_or_default();
            if !webhook::is_sns_url(url) {
                return Err(Refusal::Forbidden("SubscribeURL is not an SNS URL".into()));
            }
            deps.sns.fetcher().get(url, 64 * 1024).await.map_err(Refusal::unavailable)?;
            tracing::info!(topic = %message.topic_arn, "SNS subscription confirmed");
            Ok(WebResponse::text(200, "subscription confirmed"))
        }
        "UnsubscribeConfirmation" => {
            tracing::warn!(topic = %message.topic_arn, "SNS unsubscribed this endpoint from a topic");
            Ok(WebResponse::text(200, "noted"))
        }
        _ => {
            // Only what SNS signed goes on, re-serialized: exactly what an SQS subscription
            // would have delivered. A field added to the body (signed by no one) stops here.
            let body = message.relayed().map_err(sns_refusal)?;
            let (replay_key, until) = message.replay_key(published).map_err(sns_refusal)?;
            if !deps.replay.first_use(&replay_key, until).await.map_err(Refusal::unavailable)? {
                // SNS retries a delivery whose answer it did not get: already handed on, so
                // a 200 (anything else and SNS tries again), and nothing is applied twice.
                tracing::info!(topic = %message.topic_arn, sns_message_id = %message.message_id, "SNS notification already taken");
                return Ok(WebResponse::text(200, "already accepted"));
            }
            if let Err(e) = deps.receipts.put(&body).await {
                // Not handed on: SNS's retry of this very message must get through.
                if let Err(forget) = deps.replay.forget(&replay_key).await {
                    tracing::warn!(error = %forget, "could not forget an SNS message id after a failed hand-over");
                }
                return Err(Refusal::unavailable(e));
            }
            confirm(deps, &replay_key).await;
            tracing::info!(topic = %message.topic_arn, sns_message_id = %message.message_id, "SNS notification accepted");
            Ok(WebResponse::text(200, "accepted"))
        }
    }
}

// ---------------------------------------------------------------- custom providers

async fn provider<F, R, Q, G, S, T>(
    deps: &Deps<F, R, Q, G, S, T>,
    name: &str,
    request: &WebRequest,
    now: DateTime<Utc>,
) -> Result<WebResponse, Refusal>
where
    Q: ReceiptInbox,
    G: ReplayGuard,
    S: Secret<Providers>,
{
    let providers: Arc<Providers> = deps.secrets.current().await.map_err(Refusal::unavailable)?;
    let provider =
        providers.get(name).ok_or_else(|| Refusal::Unsigned("no secret is configured for this provider".into()))?;
    let signature = request.header(webhook::SIGNATURE_HEADER);
    let signed = provider
        .key
        .verify(request.header(webhook::TIMESTAMP_HEADER), signature, &request.body, now)
        .map_err(|e| match e {
            webhook::ProviderAuthError::Missing(_) => Refusal::Unsigned(e.to_string()),
            webhook::ProviderAuthError::Malformed(_) => Refusal::Malformed(e.to_string()),
            webhook::ProviderAuthError::Stale | webhook::ProviderAuthError::Mismatch => {
                Refusal::Forbidden(e.to_string())
            }
        })?;
    let report = ProviderReport::parse(&request.body).map_err(|e| Refusal::Malformed(e.detail))?;
    // Authenticated; now authorized: only on the channels this provider carries.
    provider.authorize(&report).map_err(|e| Refusal::Forbidden(e.to_string()))?;
    // Signed and fresh: now make sure it is the first time, by the signature's value
    // (not its spelling: upper-case hex is the same signature).
    let (replay_key, until) = signed.replay_key(name);
    if !deps.replay.first_use(&replay_key, until).await.map_err(Refusal::unavailable)? {
        return Err(Refusal::Forbidden("this signed request was already received".into()));
    }
    let count = report.events.len();
    let body = ProviderReceipt::new(name, report)
        .to_body()
        .map_err(|_| Refusal::Malformed("the report could not be encoded".into()))?;
    if let Err(e) = deps.receipts.put(&body).await {
        // Not handed on: let the provider's retry of this very request through.
        if let Err(forget) = deps.replay.forget(&replay_key).await {
            tracing::warn!(error = %forget, "could not forget a signature after a failed hand-over");
        }
        return Err(Refusal::unavailable(e));
    }
    confirm(deps, &replay_key).await;
    tracing::info!(provider = name, events = count, "provider report accepted");
    Ok(WebResponse { status: 200, content_type: "application/json", body: format!("{{\"accepted\":{count}}}") })
}

/// The request was handed on: a second use of its key is a replay from now on. Should
/// this write fail, the key stays pending and a replay after its hold (two minutes) is
/// handed on again, which receipts apply idempotently: a warning, not a failure.
async fn confirm<F, R, Q, G: ReplayGuard, S, T>(deps: &Deps<F, R, Q, G, S, T>, replay_key: &str) {
    if let Err(e) = deps.replay.confirm(replay_key).await {
        tracing::warn!(error = %e, "could not confirm a handed-on request to the replay guard");
    }
}

// ---------------------------------------------------------------- one-click unsubscribe

async fn token<F, R, Q, G, S: Secret<UnsubscribeKey>, T>(
    deps: &Deps<F, R, Q, G, S, T>,
    request: &WebRequest,
    now: DateTime<Utc>,
) -> Result<(Unsubscribe, Arc<UnsubscribeKey>), Refusal> {
    let raw = request.query.get("t").ok_or_else(|| Refusal::Malformed("the link carries no token".into()))?;
    let key: Arc<UnsubscribeKey> = deps.secrets.current().await.map_err(Refusal::unavailable)?;
    let u = unsubscribe::verify(raw, &key, now).map_err(|e| match e {
        TokenError::Malformed => Refusal::Malformed(e.to_string()),
        TokenError::BadSignature | TokenError::Expired => Refusal::Forbidden(e.to_string()),
    })?;
    Ok((u, key))
}

fn scope(u: &Unsubscribe) -> String {
    match &u.topic {
        Some(topic) => format!("{} messages about {}", u.channel, escape(topic.as_str())),
        None => format!("all {} messages", u.channel),
    }
}

/// GET changes nothing: mail scanners follow links. The page posts the one-click form.
async fn unsubscribe_page<F, R, Q, G, S: Secret<UnsubscribeKey>, T>(
    deps: &Deps<F, R, Q, G, S, T>,
    request: &WebRequest,
    now: DateTime<Utc>,
) -> Result<WebResponse, Refusal> {
    let (u, key) = token(deps, request, now).await?;
    let token = request.query.get("t").map(|t| escape(t)).unwrap_or_default();
    let body = format!(
        "<p>Stop receiving {}?</p>\
         <form method=\"post\" action=\"?t={token}\">\
         <input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
         <button type=\"submit\">Unsubscribe</button></form>{}",
        scope(&u),
        preferences_link(&u, &key, now)
    );
    Ok(WebResponse::html(200, page("Unsubscribe", &body)))
}

async fn unsubscribe<F, R, Q, G, S, T>(
    deps: &Deps<F, R, Q, G, S, T>,
    request: &WebRequest,
    now: DateTime<Utc>,
) -> Result<WebResponse, Refusal>
where
    R: RecipientStore,
    S: Secret<UnsubscribeKey>,
{
    let (u, key) = token(deps, request, now).await?;
    if !is_one_click(&request.body) {
        return Err(Refusal::Malformed("the body must be List-Unsubscribe=One-Click (RFC 8058)".into()));
    }
    let source = ConsentSource::new(UNSUBSCRIBE_SOURCE).map_err(Refusal::Malformed)?;
    let cmd = SetConsent {
        recipient: u.recipient.clone(),
        channel: u.channel,
        topic: u.topic.clone(),
        granted: false,
        source,
        at: None,
    };
    deps.recipients.set_consent(&cmd, now).await.map_err(Refusal::unavailable)?;
    tracing::info!(recipient = %u.recipient, channel = %u.channel, topic = u.topic.as_ref().map_or("*", |t| t.as_str()), "unsubscribed");
    metrics::count(
        "Unsubscribes",
        &[("Channel", u.channel.as_str()), ("Topic", u.topic.as_ref().map_or("*", |t| t.as_str()))],
    );
    let body = format!("<p>You will no longer receive {}.</p>{}", scope(&u), preferences_link(&u, &key, now));
    Ok(WebResponse::html(200, page("Unsubscribed", &body)))
}

/// The unsubscribe pages' way to the person's preference center (every topic and channel).
fn preferences_link(u: &Unsubscribe, key: &UnsubscribeKey, now: DateTime<Utc>) -> String {
    let href = preferences::link_from_unsubscribe(&u.recipient, u.expires_at, key, now);
    format!("<p><a href=\"{}\" id=\"preferences\">Choose what else you receive</a></p>", escape(&href))
}

/// `List-Unsubscribe=One-Click`, form-encoded (what mail providers send) or as a
/// multipart form field.
fn is_one_click(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    let urlencoded =
        form_urlencoded::parse(body).any(|(k, v)| k.trim() == "List-Unsubscribe" && v.trim() == "One-Click");
    let multipart = text.split("name=\"List-Unsubscribe\"").nth(1).is_some_and(|rest| {
        rest.split_once("\r\n\r\n")
            .or_else(|| rest.split_once("\n\n"))
            .is_some_and(|(_, value)| value.starts_with("One-Click"))
    });
    urlencoded || multipart
}

fn escape(raw: &str) -> String {
    raw.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{title}</title></head>\
         <body style=\"font-family: sans-serif; max-width: 32em; margin: 3em auto\"><h1>{title}</h1>{body}</body></html>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_click_bodies_are_recognised_in_both_form_encodings() {
        for (body, ok) in [
            ("List-Unsubscribe=One-Click", true),
            ("List-Unsubscribe=One-Click\r\n", true),
            ("List%2DUnsubscribe=One%2DClick", true),
            ("a=b&List-Unsubscribe=One-Click", true),
            ("--x\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--x--", true),
            ("List-Unsubscribe=Two-Clicks", false),
            ("", false),
            ("One-Click", false),
            ("%", false),
        ] {
            assert_eq!(is_one_click(body.as_bytes()), ok, "{body:?}");
        }
    }

    #[test]
    fn configuration_names_the_secrets_and_holds_none() {
        let env = |name: &str| {
            [
                ("HERALD_LEDGER_TABLE", "ledger"),
                ("HERALD_RECIPIENTS_TABLE", "recipients"),
                ("HERALD_RECEIPTS_QUEUE_URL", "http://q"),
                ("HERALD_UNSUBSCRIBE_KEY_SECRET", "arn:key"),
                ("HERALD_WEBHOOK_SECRETS_SECRET", "arn:providers"),
                ("HERALD_TEMPLATES_TABLE", "templates"),
                ("HERALD_SNS_TOPIC_ARNS", "arn:a, ,arn:b,"),
            ]
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
        };
        let c = Config::from_lookup(&env).unwrap();
        assert_eq!(c.settings.sns_topics, ["arn:a", "arn:b"]);
        assert_eq!(
            (c.unsubscribe_key_secret.as_str(), c.provider_secrets_secret.as_str()),
            ("arn:key", "arn:providers")
        );
        let without_providers = |name: &str| env(name).filter(|_| name != "HERALD_WEBHOOK_SECRETS_SECRET");
        assert!(Config::from_lookup(&without_providers).is_err());
    }

    #[test]
    fn provider_secrets_parse_and_their_errors_never_quote_a_secret() {
        let providers = parse_providers(
            r#"{"acme": {"secret": "a secret of sixteen+ bytes", "channels": ["sms", "email", "sms"]},
                "b-2_c": {"secret": "another long secret", "channels": ["push"]},
                "old": "a secret from before channels"}"#,
        );
        let providers = providers.unwrap();
        assert_eq!(providers.len(), 3);
        assert!(!format!("{providers:?}").contains("sixteen"), "keys never print");
        let channels = |name: &str| providers[name].channels.iter().copied().collect::<Vec<_>>();
        assert_eq!(channels("acme"), [Channel::Email, Channel::Sms]);
        assert_eq!(channels("b-2_c"), [Channel::Push]);
        assert!(channels("old").is_empty(), "the old form reads, with no channel: refused until given");
        assert!(parse_providers("{}").unwrap().is_empty());
        for (raw, says) in [
            (r#"{"acme": "hunter2"}"#, "provider acme"),
            (r#"{"acme": {"secret": "hunter2", "channels": ["sms"]}}"#, "provider acme"),
            (r#"{"a/b": "hunter2 hunter2 hunter2"}"#, "\"a/b\""),
            (r#"{"acme": ["hunter2 hunter2 hunter2"]}"#, "provider acme"),
            (r#"{"acme": {"secret": "hunter2 hunter2 hunter2"}}"#, "\"channels\""),
            (r#"{"acme": {"secret": "hunter2 hunter2 hunter2", "channels": []}}"#, "\"channels\""),
            (r#"{"acme": {"secret": "hunter2 hunter2 hunter2", "channels": "sms"}}"#, "\"channels\""),
            (r#"{"acme": {"secret": "hunter2 hunter2 hunter2", "channels": ["mms"]}}"#, "\"channels\""),
            (r#"{"acme": {"secret": "x", "channels": ["hunter2 hunter2 hunter2"]}}"#, "\"channels\""),
            (r#"{"acme": {"channels": ["sms"], "hunter2 hunter2 hunter2": 1, "secret": "s"}}"#, "provider acme"),
            (r#"{"acme": {"secret": ["hunter2 hunter2 hunter2"], "channels": ["sms"]}}"#, "\"secret\""),
            (r#"{"acme": "hunter2 hunter2 hunter2""#, "JSON object"),
            ("acme=hunter2 hunter2 hunter2", "JSON object"),
            (r#""hunter2 hunter2 hunter2""#, "JSON object"),
        ] {
            let err = parse_providers(raw).unwrap_err();
            assert!(err.contains(says), "{raw}: {err}");
            assert!(!err.contains("hunter2"), "{raw}: the error quotes the secret: {err}");
        }
    }
}
