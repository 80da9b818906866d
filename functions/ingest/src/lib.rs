//! Ingest: validates each producer message against contract v1, admits
//! notifications into the ledger once per idempotency key, applies recipient
//! commands, records conversions (`track`), and forwards notifications to
//! eligibility in batches.

use chrono::{DateTime, TimeDelta, Utc};
use herald::config::{ConfigError, LedgerConfig, Lookup, optional, parsed, required};
use herald::contract::{IngestMessage, PushTokenCommand, RegisterPushToken, Rejection, Track, UpsertRecipient};
use herald::domain::MessageId;
use herald::domain::campaign;
use herald::domain::jobs::{EligibilityJob, check_sqs_body};
use herald::domain::ledger::Status;
use herald::domain::recipient::Device;
use herald::lambda::{LambdaEvent, Record, SqsBatchResponse, SqsEvent, Step, for_each_record, settle};
use herald::ports::*;

#[cfg(feature = "aws")]
pub mod aws;
mod broadcast;
mod digest;
mod journeys;

#[derive(Debug, Clone)]
pub struct Config {
    pub ledger: LedgerConfig,
    pub recipients_table: String,
    /// Templates, campaigns (a `track` looks for the campaigns naming its event), segments.
    pub templates_table: String,
    pub eligibility_queue_url: String,
    /// Its own queue, where a paused broadcast's messages wait.
    pub ingest_queue_url: String,
    pub broadcast_queue_url: String,
    /// Digest windows' close jobs.
    pub digest_queue_url: String,
    /// Parallel scan segments a new broadcast reads the recipients table in.
    pub broadcast_scan_segments: u32,
    pub apns_app_arn: Option<String>,
    pub apns_sandbox_app_arn: Option<String>,
    pub fcm_app_arn: Option<String>,
    /// Each person's place in each journey; a journey's first step goes on the journey queue.
    pub journeys_table: String,
    pub journey_queue_url: String,
    /// In-app inbox messages: erasure removes the person's.
    pub inbox_table: String,
}

impl Config {
    pub fn from_lookup(get: Lookup<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            ledger: LedgerConfig::from_lookup(get)?,
            recipients_table: required(get, "HERALD_RECIPIENTS_TABLE")?,
            templates_table: required(get, "HERALD_TEMPLATES_TABLE")?,
            eligibility_queue_url: required(get, "HERALD_ELIGIBILITY_QUEUE_URL")?,
            ingest_queue_url: required(get, "HERALD_INGEST_QUEUE_URL")?,
            broadcast_queue_url: required(get, "HERALD_BROADCAST_QUEUE_URL")?,
            digest_queue_url: required(get, "HERALD_DIGEST_QUEUE_URL")?,
            broadcast_scan_segments: match parsed(get, "HERALD_BROADCAST_SCAN_SEGMENTS", 4u32)? {
                n @ 1..=64 => n,
                n => return Err(ConfigError(format!("HERALD_BROADCAST_SCAN_SEGMENTS={n} is not between 1 and 64"))),
            },
            apns_app_arn: optional(get, "HERALD_APNS_APP_ARN"),
            apns_sandbox_app_arn: optional(get, "HERALD_APNS_SANDBOX_APP_ARN"),
            fcm_app_arn: optional(get, "HERALD_FCM_APP_ARN"),
            journeys_table: required(get, "HERALD_JOURNEYS_TABLE")?,
            journey_queue_url: required(get, "HERALD_JOURNEY_QUEUE_URL")?,
            inbox_table: required(get, "HERALD_INBOX_TABLE")?,
        })
    }
}

/// The ports ingest uses, bundled so handlers take one type parameter.
pub trait Ports {
    /// The ledger, and the broadcasts recorded in its table.
    type Ledger: Ledger + Broadcasts;
    type Recipients: RecipientStore + DeviceRegistry;
    type Outbox: Outbox;
    type Endpoints: PushEndpoints;
    /// The templates table: templates, campaigns, segments, the profile schema, journeys.
    type Templates: TemplateStore + CampaignStore + SegmentStore + CampaignCatalog + JourneyStore;
    /// Digest heads and items (in the ledger table).
    type Digests: Digests;
    /// Where each person stands in each journey.
    type Journeys: Journeys;
    /// Each person's in-app messages (erasure only).
    type Inbox: InboxStore;
}

/// What ingest needs: the ledger (and broadcasts in it), the recipients, its queues, SNS
/// endpoints, and the templates table (templates, campaigns, segments).
pub struct Deps<P: Ports> {
    pub ledger: P::Ledger,
    pub recipients: P::Recipients,
    pub outbox: P::Outbox,
    pub endpoints: P::Endpoints,
    pub templates: P::Templates,
    pub digests: P::Digests,
    pub journeys: P::Journeys,
    pub inbox: P::Inbox,
    pub scan_segments: u32,
    pub dedupe_window: TimeDelta,
    pub retention: TimeDelta,
}

impl<P: Ports> Deps<P> {
    /// The ledger's admission of `request`, carried by `record`, at `now`.
    fn admission<'a>(
        &self,
        id: &'a MessageId,
        record: &'a Record,
        request: &'a herald::contract::NotifyRequest,
        now: DateTime<Utc>,
    ) -> Admit<'a> {
        Admit {
            id,
            source_id: &record.id,
            request,
            now,
            dedupe_until: now + self.dedupe_window,
            expires_at: now + self.retention.max(self.dedupe_window),
        }
    }
}

/// Records in flight at once: each costs one or two DynamoDB requests.
const CONCURRENCY: usize = 10;

pub async fn handler<P: Ports>(
    deps: &Deps<P>,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, herald::lambda::Error> {
    let now = Utc::now();
    let steps = for_each_record(event.payload, CONCURRENCY, |record| process(deps, record, now)).await;
    // Every admitted notification, page job, close job or journey step, in batches of ten.
    Ok(settle(&deps.outbox, steps, "forwarding failed").await)
}

async fn process<P: Ports>(deps: &Deps<P>, record: Record, now: DateTime<Utc>) -> Step {
    let message = match IngestMessage::parse(&record.body) {
        Ok(m) => m,
        Err(rejection) => return reject(deps, &record, rejection, now).await,
    };
    let kind = message.type_name();
    let result = match message {
        IngestMessage::Notify(request) if request.digest.is_some() => {
            return digest::admit(deps, &record, *request, now).await;
        }
        IngestMessage::Notify(request) => {
            if let Some(step) = broadcast::in_flight(deps, &record, &request, now).await {
                return step;
            }
            return admit(deps, &record, *request, now).await;
        }
        IngestMessage::Broadcast(request) => return broadcast::start(deps, &record, *request, now).await,
        IngestMessage::BroadcastControl(action, cmd) => {
            return broadcast::control(deps, &record, action, cmd, now).await;
        }
        IngestMessage::UpsertRecipient(cmd) => match declared_types(deps, &cmd).await {
            Ok(Ok(())) => deps.recipients.upsert(&cmd, now).await,
            Ok(Err(rejection)) => return reject(deps, &record, rejection, now).await,
            Err(e) => Err(e),
        },
        IngestMessage::SetConsent(cmd) => deps.recipients.set_consent(&cmd, now).await.map(|applied| {
            if applied == ConsentApplied::Older {
                tracing::info!(record = %record.id, recipient = %cmd.recipient, "consent older than the recorded one: kept in the audit trail only");
            }
        }),
        IngestMessage::RegisterPushToken(cmd) => register(deps, &cmd, now).await,
        IngestMessage::RemovePushToken(cmd) => remove(deps, &cmd).await,
        IngestMessage::EraseRecipient(cmd) => erase(deps, &cmd.recipient).await,
        IngestMessage::Track(track) => match convert(deps, &record, &track).await {
            Ok(()) => return journeys::on_track(deps, &record, &track, now).await,
            Err(e) => Err(e),
        },
        IngestMessage::EnterJourney(cmd) => return journeys::enter(deps, &record, cmd, now).await,
    };
    match result {
        Ok(()) => {
            tracing::info!(record = %record.id, r#type = kind, "command applied");
            Step::Done
        }
        Err(e) if e.is_retryable() => Step::Retry(e.to_string()),
        Err(e) => {
            let code = if e.permanent_code() == Some("PlatformNotConfigured") {
                "platform_not_configured"
            } else {
                "provider_rejected"
            };
            reject(deps, &record, Rejection::new(code, e.to_string()), now).await
        }
    }
}

/// The command's attributes against the types the team declared (`profile.toml`): a
/// declared attribute of another type refuses the whole command (`invalid_attribute`),
/// naming the attribute and its type. The schema is read (cached) only when there are
/// attributes to check.
async fn declared_types<P: Ports>(deps: &Deps<P>, cmd: &UpsertRecipient) -> PortResult<Result<(), Rejection>> {
    let Some(attributes) = cmd.attributes.as_ref().filter(|a| a.values().any(|v| !v.is_null())) else {
        return Ok(Ok(()));
    };
    let schema = deps.templates.profile_schema().await?;
    Ok(schema.check(attributes).map_err(|detail| Rejection::new("invalid_attribute", detail)))
}

async fn admit<P: Ports>(
    deps: &Deps<P>,
    record: &Record,
    request: herald::contract::NotifyRequest,
    now: DateTime<Utc>,
) -> Step {
    let id = MessageId::for_key(&request.idempotency_key);
    // The job is written before the request is admitted: a request SQS could not carry on
    // to eligibility (a `\uFFFE` escape decodes to a character SQS refuses) is rejected
    // with its reason now, rather than admitted and then failing its whole forwarding batch.
    let job = EligibilityJob::new(id.clone(), request, now);
    let body = match serde_json::to_string(&job) {
        Ok(body) => body,
        Err(e) => return Step::Retry(format!("could not encode the eligibility job: {e}")),
    };
    if let Err(why) = check_sqs_body(&body) {
        return reject(deps, record, Rejection::new(why.code(), why.to_string()), now).await;
    }
    let request = &job.request;
    let admission = deps.ledger.admit(deps.admission(&id, record, request, now)).await;
    match admission {
        Ok(Admission::New) => {
            tracing::info!(message_id = %id, record = %record.id, template = %request.template, "accepted");
            Step::Forward(vec![(Destination::Eligibility, body, 0)])
        }
        // This very SQS message admitted it before but was not acknowledged: its
        // forward may have failed, so forward again (eligibility and dispatch dedupe).
        Ok(Admission::Duplicate { status: Status::Accepted, same_source: true, accepted_at }) => {
            tracing::info!(message_id = %id, record = %record.id, "redelivered before it was forwarded: forwarding again");
            // The same job as the first forward made, so both copies count caps alike.
            let again = EligibilityJob { counted_at: Some(accepted_at.unwrap_or(now)), ..job };
            match serde_json::to_string(&again) {
                Ok(body) => Step::Forward(vec![(Destination::Eligibility, body, 0)]),
                Err(e) => Step::Retry(format!("could not encode the eligibility job: {e}")),
            }
        }
        Ok(Admission::Duplicate { status, .. }) => {
            tracing::info!(message_id = %id, record = %record.id, status = %status, outcome = "duplicate", "duplicate idempotency key: dropped");
            match deps.ledger.note_duplicate(&id, &record.id, now).await {
                Ok(()) => Step::Done,
                Err(e) if e.is_retryable() => Step::Retry(e.to_string()),
                Err(_) => Step::Done,
            }
        }
        Err(e) => Step::Retry(e.to_string()),
    }
}

pub(crate) async fn reject<P: Ports>(
    deps: &Deps<P>,
    record: &Record,
    rejection: Rejection,
    now: DateTime<Utc>,
) -> Step {
    tracing::warn!(record = %record.id, code = rejection.code, detail = %rejection.detail, "rejected");
    let key = serde_json::from_str::<serde_json::Value>(&record.body)
        .ok()
        .and_then(|v| v.get("idempotency_key").and_then(|k| k.as_str()).map(|k| k.chars().take(256).collect()));
    let result = deps
        .ledger
        .reject(RejectionRecord {
            source_id: record.id.clone(),
            code: rejection.code.to_owned(),
            detail: rejection.detail,
            idempotency_key: key,
            body_bytes: record.body.len(),
            at: now,
            expires_at: now + deps.retention,
        })
        .await;
    match result {
        Ok(()) => Step::Done,
        Err(e) if e.is_retryable() => Step::Retry(e.to_string()),
        Err(_) => Step::Done,
    }
}

/// Creates (or finds and re-enables) the token's platform endpoint and records the
/// device; the endpoints of tokens it replaced on the same device are deleted.
async fn register<P: Ports>(deps: &Deps<P>, cmd: &RegisterPushToken, now: DateTime<Utc>) -> PortResult<()> {
    let endpoint_arn = deps.endpoints.register(cmd.platform, &cmd.token).await?;
    let device = Device { platform: cmd.platform, token: cmd.token.clone(), endpoint_arn };
    let replaced = deps.recipients.register_device(&cmd.recipient, &device, cmd.device_id.as_ref(), now).await?;
    for old in &replaced {
        tracing::info!(recipient = %cmd.recipient, token = %old.token.handle(), "token replaced on the same device");
        delete_endpoint(deps, old).await?;
    }
    Ok(())
}

async fn remove<P: Ports>(deps: &Deps<P>, cmd: &PushTokenCommand) -> PortResult<()> {
    if let Some(device) = deps.recipients.remove_device(&cmd.recipient, &cmd.token).await? {
        delete_endpoint(deps, &device).await?;
    }
    Ok(())
}

async fn erase<P: Ports>(deps: &Deps<P>, recipient: &herald::domain::RecipientId) -> PortResult<()> {
    journeys::erase(deps, recipient).await?;
    let removed = deps.inbox.erase(recipient).await?;
    tracing::info!(recipient = %recipient, inbox_messages = removed, "inbox erased");
    for device in deps.recipients.erase(recipient).await? {
        delete_endpoint(deps, &device).await?;
    }
    Ok(())
}

async fn delete_endpoint<P: Ports>(deps: &Deps<P>, device: &Device) -> PortResult<()> {
    match deps.endpoints.delete(&device.endpoint_arn).await {
        Err(e) if e.permanent_code() == Some("NotFound") => Ok(()),
        other => other,
    }
}

/// Records a `track` as the conversion of every campaign naming its event, on the person's
/// message of that campaign (`<campaign>#<recipient>`): one conditional write per such
/// campaign, none for a track no campaign counts. The ledger decides in the same write
/// whether it counts (the message exists, the time is within the window, it is the
/// earliest), so a retried or duplicate track changes nothing.
async fn convert<P: Ports>(deps: &Deps<P>, record: &Record, track: &Track) -> PortResult<()> {
    let campaigns = deps.templates.campaigns().await?;
    for doc in campaigns.iter().filter(|c| c.converts_on(&track.event)) {
        let Some(id) = campaign::message_id(&doc.name, &track.recipient) else { continue };
        let conversion = Conversion {
            id: &id,
            campaign: &doc.name,
            event: &track.event,
            at: track.at,
            value: track.value.map(f64::from),
            window: doc.conversion_window(),
        };
        let outcome = deps.ledger.record_conversion(conversion).await?;
        let outcome = match outcome {
            Converted::Recorded => "recorded",
            Converted::AlreadyConverted => "already_converted",
            Converted::OutsideWindow => "outside_window",
            Converted::NoMessage => "no_message",
        };
        tracing::info!(record = %record.id, message_id = %id, campaign = %doc.name, event = %track.event, outcome, "conversion");
        herald::metrics::count("Conversions", &[("Campaign", doc.name.as_str()), ("Outcome", outcome)]);
    }
    Ok(())
}
