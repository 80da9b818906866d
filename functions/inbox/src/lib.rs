//! The in-app inbox API (a Lambda Function URL): the team's app lists a person's
//! messages and marks them seen, read, archived or clicked, with a user token its
//! backend signed (docs/inbox.md).
//!
//! - `GET /v1/messages?limit=&cursor=&status=all|unread|unseen|archived`: newest first,
//!   20 by default, at most 100 (a larger limit is refused, not clamped); archived
//!   messages only with `status=archived`; expired ones never.
//! - `GET /v1/messages/count`: `{"unseen": n, "unread": n}`.
//! - `GET /v1/messages/<id>`: one message.
//! - `POST /v1/messages/<id>/seen|read|archived|clicked`: idempotent (the first time is
//!   kept); `POST /v1/messages/seen|read` marks all (100 at most per call).
//!
//! The person is the token's `sub`, always: no parameter names anyone, and another
//! person's message id is simply not found. Read and clicked move the ledger (`opened`,
//! `clicked`) through the receipts queue, as a provider's report does, handed on before
//! the mark is written: a mark is never recorded without its receipt.
//!
//! Refusals are JSON `{"error": code, "reason": text}`: 400 bad input, 401 no or bad
//! token (with `WWW-Authenticate`), 404, 405, 503 when the store, the queue or the key is
//! unavailable (nothing was changed: retry).

pub mod token;

#[cfg(feature = "aws")]
pub mod aws;

use aws_lambda_events::event::lambda_function_urls::{LambdaFunctionUrlRequest, LambdaFunctionUrlResponse};
use chrono::{DateTime, Utc};
use herald::config::{ConfigError, Lookup, required};
use herald::domain::inbox::{InboxMessage, ListQuery, Mark, PublicId};
use herald::domain::receipts::{ProviderEvent, ProviderReceipt, ProviderStatus};
use herald::domain::{Channel, RecipientId};
use herald::metrics;
use herald::ports::{InboxStore, Marked, PortError, ReceiptInbox, Secret};
use serde_json::json;
use std::collections::HashMap;
use token::{InboxKey, TokenError};

#[derive(Debug, Clone)]
pub struct Config {
    pub inbox_table: String,
    pub receipts_queue_url: String,
    /// The secret (ARN) holding the key user tokens are signed with.
    pub token_secret: String,
}

impl Config {
    pub fn from_lookup(get: Lookup<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            inbox_table: required(get, "HERALD_INBOX_TABLE")?,
            receipts_queue_url: required(get, "HERALD_RECEIPTS_QUEUE_URL")?,
            token_secret: required(get, "HERALD_INBOX_TOKEN_SECRET")?,
        })
    }
}

/// The provider name inbox engagement is reported under on the receipts queue.
pub const PROVIDER: &str = "inbox";

/// Messages one "mark all" call marks at most (one receipt carries them all).
pub const MARK_ALL_MAX: usize = 100;

/// Request bodies above this are refused unread (the API reads none).
const MAX_BODY: usize = 16 * 1024;

/// What the API needs: the inbox store, the receipts queue, the token key.
pub struct Deps<S, Q, K> {
    pub store: S,
    pub receipts: Q,
    pub key: K,
}

// ---------------------------------------------------------------- HTTP in and out

/// An HTTP request as the handler sees it.
#[derive(Debug, Clone, Default)]
pub struct ApiRequest {
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    pub body_len: usize,
}

impl ApiRequest {
    /// The Function URL event (payload format 2.0).
    pub fn from_function_url(event: &LambdaFunctionUrlRequest) -> Self {
        let authorization =
            event.headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Self {
            method: event.request_context.http.method.clone().unwrap_or_default().to_ascii_uppercase(),
            path: event.raw_path.clone().or(event.request_context.http.path.clone()).unwrap_or_else(|| "/".into()),
            query: event.query_string_parameters.clone(),
            authorization,
            body_len: event.body.as_ref().map_or(0, String::len),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse {
    pub status: u16,
    pub body: serde_json::Value,
    /// `WWW-Authenticate`, on a 401.
    pub challenge: Option<String>,
}

impl ApiResponse {
    fn ok(body: serde_json::Value) -> Self {
        Self { status: 200, body, challenge: None }
    }

    pub fn into_function_url(self) -> LambdaFunctionUrlResponse {
        let mut response = LambdaFunctionUrlResponse::default();
        response.status_code = i64::from(self.status);
        response.headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        // A person's messages: never kept by a shared cache.
        response.headers.insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
        if let Some(challenge) = self.challenge.and_then(|c| http::HeaderValue::from_str(&c).ok()) {
            response.headers.insert(http::header::WWW_AUTHENTICATE, challenge);
        }
        response.body = Some(self.body.to_string());
        response
    }
}

/// Why a request was refused, with a reason safe to send back and to log (never a token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    BadRequest(String),
    /// No token: the app should get one.
    #[error("an Authorization: Bearer <token> header is required")]
    NoToken,
    #[error("{0}")]
    InvalidToken(TokenError),
    #[error("no such message")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Unavailable(String),
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::BadRequest(_) => 400,
            Refusal::NoToken | Refusal::InvalidToken(_) => 401,
            Refusal::NotFound => 404,
            Refusal::MethodNotAllowed => 405,
            Refusal::Unavailable(_) => 503,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Refusal::BadRequest(_) => "bad_request",
            Refusal::NoToken => "missing_token",
            Refusal::InvalidToken(_) => "invalid_token",
            Refusal::NotFound => "not_found",
            Refusal::MethodNotAllowed => "method_not_allowed",
            Refusal::Unavailable(_) => "unavailable",
        }
    }

    fn unavailable(err: PortError) -> Self {
        let kind = match err {
            PortError::Throttled(_) => "throttled",
            PortError::Transient(_) => "transient",
            PortError::Permanent { .. } => "refused",
            PortError::Unknown(_) => "unknown",
        };
        tracing::warn!(error = %err, "inbox store, queue or key unavailable");
        Refusal::Unavailable(format!("temporarily unavailable, nothing was changed: retry later ({kind})"))
    }

    fn into_response(self) -> ApiResponse {
        // RFC 6750: no error code when the request carried no credentials.
        let challenge = match &self {
            Refusal::NoToken => Some(r#"Bearer realm="herald-inbox""#.to_owned()),
            Refusal::InvalidToken(e) => {
                Some(format!(r#"Bearer realm="herald-inbox", error="invalid_token", error_description="{e}""#))
            }
            _ => None,
        };
        ApiResponse {
            status: self.status(),
            body: json!({"error": self.code(), "reason": self.to_string()}),
            challenge,
        }
    }
}

// ---------------------------------------------------------------- routes

/// What a request asks for, from its method and path alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    List,
    Count,
    Get(String),
    Mark(String, Mark),
    MarkAll(Mark),
}

/// The route, or 404 (no such path) / 405 (the path exists, not with this method).
pub fn route(method: &str, path: &str) -> Result<Route, Refusal> {
    let path = path.trim_end_matches('/');
    let Some(rest) = path.strip_prefix("/v1/messages").filter(|r| r.is_empty() || r.starts_with('/')) else {
        return Err(Refusal::NotFound);
    };
    let segments: Vec<&str> = rest.split('/').skip(1).collect();
    let (wanted, route) = match segments.as_slice() {
        [] => ("GET", Route::List),
        ["count"] => ("GET", Route::Count),
        [mark @ ("seen" | "read")] => ("POST", Route::MarkAll(Mark::parse(mark).ok_or(Refusal::NotFound)?)),
        [id] if !id.is_empty() => ("GET", Route::Get((*id).to_owned())),
        [id, mark] if !id.is_empty() => {
            ("POST", Route::Mark((*id).to_owned(), Mark::parse(mark).ok_or(Refusal::NotFound)?))
        }
        _ => return Err(Refusal::NotFound),
    };
    if method == wanted { Ok(route) } else { Err(Refusal::MethodNotAllowed) }
}

fn route_name(route: &Route) -> &'static str {
    match route {
        Route::List => "list",
        Route::Count => "count",
        Route::Get(_) => "get",
        Route::Mark(..) => "mark",
        Route::MarkAll(_) => "mark_all",
    }
}

// ---------------------------------------------------------------- the handler

pub async fn handler<S, Q, K>(
    deps: &Deps<S, Q, K>,
    event: lambda_runtime::LambdaEvent<LambdaFunctionUrlRequest>,
) -> Result<LambdaFunctionUrlResponse, lambda_runtime::Error>
where
    S: InboxStore,
    Q: ReceiptInbox,
    K: Secret<InboxKey>,
{
    let request = ApiRequest::from_function_url(&event.payload);
    Ok(handle(deps, &request, Utc::now()).await.into_function_url())
}

/// Routes one request, authenticates it and answers.
pub async fn handle<S, Q, K>(deps: &Deps<S, Q, K>, request: &ApiRequest, now: DateTime<Utc>) -> ApiResponse
where
    S: InboxStore,
    Q: ReceiptInbox,
    K: Secret<InboxKey>,
{
    let (name, result) = match route(&request.method, &request.path) {
        Err(refusal) => ("request", Err(refusal)),
        Ok(_) if request.body_len > MAX_BODY => {
            ("request", Err(Refusal::BadRequest(format!("the body is larger than {MAX_BODY} bytes"))))
        }
        Ok(route) => (route_name(&route), serve(deps, request, route, now).await),
    };
    let outcome = match &result {
        Ok(_) => "ok",
        Err(refusal) => refusal.code(),
    };
    metrics::count("InboxApi", &[("Route", name), ("Outcome", outcome)]);
    match result {
        Ok(response) => response,
        Err(refusal) => {
            tracing::info!(route = name, status = refusal.status(), reason = %refusal, "inbox request refused");
            refusal.into_response()
        }
    }
}

async fn person<S, Q, K: Secret<InboxKey>>(
    deps: &Deps<S, Q, K>,
    request: &ApiRequest,
    now: DateTime<Utc>,
) -> Result<RecipientId, Refusal> {
    let header = request.authorization.as_deref().map(str::trim).unwrap_or_default();
    let token = match header.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => token.trim(),
        _ if header.is_empty() => return Err(Refusal::NoToken),
        _ => return Err(Refusal::InvalidToken(TokenError::Malformed)),
    };
    let key = deps.key.current().await.map_err(Refusal::unavailable)?;
    token::verify(token, &key, now).map_err(Refusal::InvalidToken)
}

async fn serve<S, Q, K>(
    deps: &Deps<S, Q, K>,
    request: &ApiRequest,
    route: Route,
    now: DateTime<Utc>,
) -> Result<ApiResponse, Refusal>
where
    S: InboxStore,
    Q: ReceiptInbox,
    K: Secret<InboxKey>,
{
    let who = person(deps, request, now).await?;
    match route {
        Route::List => {
            let query = ListQuery::parse(&request.query).map_err(Refusal::BadRequest)?;
            let page = deps.store.list(&who, &query, now).await.map_err(Refusal::unavailable)?;
            let messages: Vec<_> = page.messages.iter().map(InboxMessage::view).collect();
            Ok(ApiResponse::ok(json!({"messages": messages, "next_cursor": page.next.map(|c| c.to_string())})))
        }
        Route::Count => {
            let counts = deps.store.counts(&who, now).await.map_err(Refusal::unavailable)?;
            Ok(ApiResponse::ok(json!({"unseen": counts.unseen, "unread": counts.unread})))
        }
        Route::Get(raw) => {
            let id = PublicId::parse(&raw).ok_or(Refusal::NotFound)?;
            let message = deps.store.get(&who, &id, now).await.map_err(Refusal::unavailable)?;
            Ok(ApiResponse::ok(json!(message.ok_or(Refusal::NotFound)?.view())))
        }
        Route::Mark(raw, mark) => {
            let id = PublicId::parse(&raw).ok_or(Refusal::NotFound)?;
            let message = deps.store.get(&who, &id, now).await.map_err(Refusal::unavailable)?;
            let message = message.ok_or(Refusal::NotFound)?;
            let changed = if mark.is_on(&message) {
                false
            } else {
                report(deps, std::slice::from_ref(&message), mark).await?;
                match deps.store.mark(&who, &id, mark, now).await.map_err(Refusal::unavailable)? {
                    Marked::Moved => true,
                    Marked::Unchanged => false,
                    Marked::NotFound => return Err(Refusal::NotFound),
                }
            };
            if changed {
                tracing::info!(recipient = %who, message_id = %id.message_id(), mark = mark.as_str(), "marked");
                metrics::count("InboxMarks", &[("Mark", mark.as_str()), ("Template", &message.template)]);
            }
            Ok(ApiResponse::ok(json!({"id": raw, "mark": mark.as_str(), "changed": changed})))
        }
        Route::MarkAll(mark) => {
            let messages = deps.store.unmarked(&who, mark, now, MARK_ALL_MAX).await.map_err(Refusal::unavailable)?;
            report(deps, &messages, mark).await?;
            let mut changed = 0usize;
            for m in &messages {
                if deps.store.mark(&who, &m.id, mark, now).await.map_err(Refusal::unavailable)? == Marked::Moved {
                    changed += 1;
                    metrics::count("InboxMarks", &[("Mark", mark.as_str()), ("Template", &m.template)]);
                }
            }
            tracing::info!(recipient = %who, mark = mark.as_str(), changed, "marked all");
            Ok(ApiResponse::ok(
                json!({"mark": mark.as_str(), "changed": changed, "more": messages.len() == MARK_ALL_MAX}),
            ))
        }
    }
}

/// Hands the engagement of `messages` (read: `opened`; clicked: `clicked`) to the receipts
/// queue as one report, which the receipts function applies as a provider's: the ledger
/// moves forward only, on a message delivered to the inbox. Nothing for a mark the ledger
/// does not follow (seen, archived).
async fn report<S, Q: ReceiptInbox, K>(
    deps: &Deps<S, Q, K>,
    messages: &[InboxMessage],
    mark: Mark,
) -> Result<(), Refusal> {
    let status = match mark {
        Mark::Read => ProviderStatus::Opened,
        Mark::Clicked => ProviderStatus::Clicked,
        Mark::Seen | Mark::Archived => return Ok(()),
    };
    if messages.is_empty() {
        return Ok(());
    }
    let events = messages
        .iter()
        .map(|m| ProviderEvent {
            message_id: m.id.message_id().clone(),
            channel: Channel::Inbox,
            status,
            provider_id: Some(m.id.to_string()),
            address: None,
            detail: None,
        })
        .collect();
    let body = ProviderReceipt { provider: PROVIDER.to_owned(), events }
        .to_body()
        .map_err(|e| Refusal::unavailable(PortError::Unknown(e.into())))?;
    deps.receipts.put(&body).await.map_err(Refusal::unavailable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;
    use herald::domain::MessageId;
    use herald::domain::inbox::UserClaims;
    use herald::ports::{InboxCounts, InboxPage, PortResult, Stored};
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    const KEY: &str = "a test key of more than thirty-two bytes";

    /// Messages in memory, by person.
    #[derive(Default)]
    struct Store(Mutex<Vec<InboxMessage>>);

    impl InboxStore for Store {
        async fn put(&self, m: &InboxMessage) -> PortResult<Stored> {
            self.0.lock().unwrap().push(m.clone());
            Ok(Stored::New)
        }
        async fn list(&self, who: &RecipientId, q: &ListQuery, now: DateTime<Utc>) -> PortResult<InboxPage> {
            let all = self.0.lock().unwrap();
            let messages = all.iter().filter(|m| &m.recipient == who && q.filter.shows(m, now)).take(q.limit);
            Ok(InboxPage { messages: messages.cloned().collect(), next: None })
        }
        async fn counts(&self, who: &RecipientId, _: DateTime<Utc>) -> PortResult<InboxCounts> {
            let all = self.0.lock().unwrap();
            let mine: Vec<_> = all.iter().filter(|m| &m.recipient == who).collect();
            Ok(InboxCounts {
                unseen: mine.iter().filter(|m| m.seen_at.is_none()).count() as u64,
                unread: mine.iter().filter(|m| m.read_at.is_none()).count() as u64,
            })
        }
        async fn get(&self, who: &RecipientId, id: &PublicId, _: DateTime<Utc>) -> PortResult<Option<InboxMessage>> {
            Ok(self.0.lock().unwrap().iter().find(|m| &m.recipient == who && &m.id == id).cloned())
        }
        async fn mark(&self, who: &RecipientId, id: &PublicId, mark: Mark, now: DateTime<Utc>) -> PortResult<Marked> {
            let mut all = self.0.lock().unwrap();
            let Some(m) = all.iter_mut().find(|m| &m.recipient == who && &m.id == id) else {
                return Ok(Marked::NotFound);
            };
            if mark.is_on(m) {
                return Ok(Marked::Unchanged);
            }
            match mark {
                Mark::Seen => m.seen_at = Some(now),
                Mark::Read => (m.read_at, m.seen_at) = (Some(now), m.seen_at.or(Some(now))),
                Mark::Archived => m.archived_at = Some(now),
                Mark::Clicked => m.clicked_at = Some(now),
            }
            Ok(Marked::Moved)
        }
        async fn unmarked(
            &self,
            who: &RecipientId,
            mark: Mark,
            now: DateTime<Utc>,
            limit: usize,
        ) -> PortResult<Vec<InboxMessage>> {
            let all = self.0.lock().unwrap();
            let open = all.iter().filter(|m| &m.recipient == who && m.archived_at.is_none() && m.expires_at > now);
            Ok(open.filter(|m| !mark.is_on(m)).take(limit).cloned().collect())
        }
        async fn erase(&self, _: &RecipientId) -> PortResult<usize> {
            Ok(0)
        }
    }

    /// The receipts queue: what was put, or down.
    #[derive(Default)]
    struct Queue {
        bodies: Mutex<Vec<String>>,
        down: bool,
    }

    impl ReceiptInbox for Queue {
        async fn put(&self, body: &str) -> PortResult<()> {
            if self.down {
                return Err(PortError::Transient("queue down".into()));
            }
            self.bodies.lock().unwrap().push(body.to_owned());
            Ok(())
        }
    }

    struct Key(Option<Arc<InboxKey>>);

    impl Secret<InboxKey> for Key {
        async fn current(&self) -> PortResult<Arc<InboxKey>> {
            self.0.clone().ok_or_else(|| PortError::Transient("no key".into()))
        }
    }

    fn deps(queue: Queue) -> Deps<Store, Queue, Key> {
        Deps { store: Store::default(), receipts: queue, key: Key(Some(Arc::new(InboxKey::new(KEY).unwrap()))) }
    }

    fn message(who: &str, n: u8, now: DateTime<Utc>) -> InboxMessage {
        let id = MessageId::parse(&format!("{n:032x}")).unwrap();
        InboxMessage {
            id: PublicId::new(now - TimeDelta::minutes(i64::from(n)), id),
            recipient: RecipientId::new(who).unwrap(),
            title: format!("title {n}"),
            body: "body".into(),
            action_url: None,
            data: BTreeMap::new(),
            template: "t".into(),
            topic: None,
            campaign: None,
            kind: "transactional".into(),
            created_at: now,
            expires_at: now + TimeDelta::days(1),
            seen_at: None,
            read_at: None,
            archived_at: None,
            clicked_at: None,
        }
    }

    fn bearer(who: &str, now: DateTime<Utc>) -> Option<String> {
        let claims = UserClaims::for_recipient(&RecipientId::new(who).unwrap(), now, TimeDelta::hours(1));
        Some(format!("Bearer {}", token::mint(&InboxKey::new(KEY).unwrap(), &claims).unwrap()))
    }

    fn request(method: &str, target: &str, authorization: Option<String>) -> ApiRequest {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let query = query.split('&').filter_map(|p| p.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect();
        ApiRequest { method: method.into(), path: path.into(), query, authorization, body_len: 0 }
    }

    #[test]
    fn routes_by_method_and_path() {
        let cases: &[(&str, &str, Result<Route, Refusal>)] = &[
            ("GET", "/v1/messages", Ok(Route::List)),
            ("GET", "/v1/messages/", Ok(Route::List)),
            ("GET", "/v1/messages/count", Ok(Route::Count)),
            ("GET", "/v1/messages/abc", Ok(Route::Get("abc".into()))),
            ("POST", "/v1/messages/seen", Ok(Route::MarkAll(Mark::Seen))),
            ("POST", "/v1/messages/read", Ok(Route::MarkAll(Mark::Read))),
            ("POST", "/v1/messages/abc/clicked", Ok(Route::Mark("abc".into(), Mark::Clicked))),
            ("POST", "/v1/messages/abc/archived", Ok(Route::Mark("abc".into(), Mark::Archived))),
            ("POST", "/v1/messages", Err(Refusal::MethodNotAllowed)),
            ("DELETE", "/v1/messages/abc", Err(Refusal::MethodNotAllowed)),
            ("GET", "/v1/messages/abc/read", Err(Refusal::MethodNotAllowed)),
            ("POST", "/v1/messages/count", Err(Refusal::MethodNotAllowed)),
            ("POST", "/v1/messages/abc/deleted", Err(Refusal::NotFound)),
            ("POST", "/v1/messages/abc/read/x", Err(Refusal::NotFound)),
            ("GET", "/v1/messagesx", Err(Refusal::NotFound)),
            ("GET", "/", Err(Refusal::NotFound)),
            ("GET", "/v2/messages", Err(Refusal::NotFound)),
        ];
        for (method, path, expected) in cases {
            assert_eq!(&route(method, path), expected, "{method} {path}");
        }
    }

    #[tokio::test]
    async fn refusals_are_json_with_a_reason_and_a_challenge_on_401() {
        let now = Utc::now();
        let d = deps(Queue::default());
        let none = handle(&d, &request("GET", "/v1/messages", None), now).await;
        assert_eq!((none.status, none.body["error"].as_str()), (401, Some("missing_token")));
        assert_eq!(none.challenge.as_deref(), Some(r#"Bearer realm="herald-inbox""#));
        let basic = handle(&d, &request("GET", "/v1/messages", Some("Basic dXNlcg==".into())), now).await;
        assert_eq!((basic.status, basic.body["error"].as_str()), (401, Some("invalid_token")));
        let late = bearer("ana", now - TimeDelta::hours(2));
        let expired = handle(&d, &request("GET", "/v1/messages", late), now).await;
        assert_eq!(expired.status, 401);
        assert!(expired.challenge.unwrap().contains(r#"error="invalid_token""#));
        assert!(expired.body["reason"].as_str().unwrap().contains("expired"));

        let huge = handle(&d, &request("GET", "/v1/messages?limit=100000", bearer("ana", now)), now).await;
        assert_eq!((huge.status, huge.body["error"].as_str()), (400, Some("bad_request")));
        assert!(huge.body["reason"].as_str().unwrap().contains("limit"));
        let nowhere = handle(&d, &request("GET", "/elsewhere", None), now).await;
        assert_eq!(nowhere.status, 404);
        let method = handle(&d, &request("PUT", "/v1/messages/count", None), now).await;
        assert_eq!(method.status, 405);

        let keyless = Deps { store: Store::default(), receipts: Queue::default(), key: Key(None) };
        let unavailable = handle(&keyless, &request("GET", "/v1/messages/count", bearer("ana", now)), now).await;
        assert_eq!((unavailable.status, unavailable.body["error"].as_str()), (503, Some("unavailable")));
    }

    #[tokio::test]
    async fn a_read_hands_one_receipt_on_then_marks_and_a_repeat_changes_nothing() {
        let now = Utc::now();
        let d = deps(Queue::default());
        let mine = message("ana", 1, now);
        let theirs = message("bo", 2, now);
        d.store.put(&mine).await.unwrap();
        d.store.put(&theirs).await.unwrap();
        let read = |id: &PublicId, who: &str| request("POST", &format!("/v1/messages/{id}/read"), bearer(who, now));

        let r = handle(&d, &read(&mine.id, "ana"), now).await;
        assert_eq!((r.status, r.body["changed"].as_bool()), (200, Some(true)), "{}", r.body);
        let bodies = d.receipts.bodies.lock().unwrap().clone();
        assert_eq!(bodies.len(), 1);
        let receipt: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
        let event = &receipt["provider_report"]["events"][0];
        assert_eq!(receipt["provider_report"]["provider"], PROVIDER);
        assert_eq!((event["status"].as_str(), event["channel"].as_str()), (Some("opened"), Some("inbox")));
        assert_eq!(event["message_id"].as_str(), Some(mine.id.message_id().as_str()));

        let again = handle(&d, &read(&mine.id, "ana"), now).await;
        assert_eq!((again.status, again.body["changed"].as_bool()), (200, Some(false)));
        assert_eq!(d.receipts.bodies.lock().unwrap().len(), 1, "no second receipt");

        // Another person's message, by its real id: not found, nothing sent or marked.
        let other = handle(&d, &read(&theirs.id, "ana"), now).await;
        assert_eq!(other.status, 404);
        assert_eq!(handle(&d, &read(&theirs.id, "bo"), now).await.body["changed"], true);
        let garbage = handle(&d, &request("POST", "/v1/messages/nope/read", bearer("ana", now)), now).await;
        assert_eq!(garbage.status, 404);

        let count = handle(&d, &request("GET", "/v1/messages/count", bearer("ana", now)), now).await;
        assert_eq!(count.body, json!({"unseen": 0, "unread": 0}));
    }

    #[tokio::test]
    async fn when_the_receipts_queue_is_down_nothing_is_marked() {
        let now = Utc::now();
        let d = deps(Queue { down: true, ..Queue::default() });
        let m = message("ana", 3, now);
        d.store.put(&m).await.unwrap();
        let r = handle(&d, &request("POST", &format!("/v1/messages/{}/clicked", m.id), bearer("ana", now)), now).await;
        assert_eq!(r.status, 503);
        assert!(d.store.get(&m.recipient, &m.id, now).await.unwrap().unwrap().clicked_at.is_none());
        // Seen does not go through the queue.
        let seen = handle(&d, &request("POST", &format!("/v1/messages/{}/seen", m.id), bearer("ana", now)), now).await;
        assert_eq!(seen.status, 200);
    }

    #[tokio::test]
    async fn mark_all_read_reports_every_message_in_one_receipt() {
        let now = Utc::now();
        let d = deps(Queue::default());
        for n in 1..=3 {
            d.store.put(&message("ana", n, now)).await.unwrap();
        }
        d.store.put(&message("bo", 9, now)).await.unwrap();
        let r = handle(&d, &request("POST", "/v1/messages/read", bearer("ana", now)), now).await;
        assert_eq!(r.body, json!({"mark": "read", "changed": 3, "more": false}));
        let bodies = d.receipts.bodies.lock().unwrap().clone();
        let receipt: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
        assert_eq!((bodies.len(), receipt["provider_report"]["events"].as_array().unwrap().len()), (1, 3));
        let bo = handle(&d, &request("GET", "/v1/messages/count", bearer("bo", now)), now).await;
        assert_eq!(bo.body, json!({"unseen": 1, "unread": 1}), "the other person's stays unread");
    }
}
