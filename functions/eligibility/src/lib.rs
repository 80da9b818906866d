//! Eligibility: decides whether, when and where each notification may go, takes
//! its frequency-cap slots atomically, and hands it to one channel queue (or
//! several, in `all` mode). Every refusal lands in the ledger with its reason.

use chrono::{DateTime, Utc};
use herald::config::{ConfigError, LedgerConfig, Lookup, optional, parsed, required};
use herald::contract::{Kind, Mode};
use herald::domain::campaign::{GlobalControl, Group, group};
use herald::domain::caps::{CapPolicy, CapScope, CapSlot};
use herald::domain::eligibility::{Decision, Facts, capped_and_held_out, evaluate, recipient_wait};
use herald::domain::jobs::{Contact, DispatchJob, EligibilityJob, check_sqs_body};
use herald::domain::ledger::{Reason, Status};
use herald::domain::recipient::Recipient;
use herald::domain::{Channel, MessageId};
use herald::lambda::{LambdaEvent, Outcome, Record, SqsBatchResponse, SqsEvent, batch_response, for_each_record};
use herald::metrics;
use herald::ports::*;

#[cfg(feature = "aws")]
pub mod aws;

#[derive(Debug, Clone)]
pub struct Config {
    pub ledger: LedgerConfig,
    pub recipients_table: String,
    pub suppression_table: String,
    pub caps_table: String,
    pub templates_table: String,
    pub push_queue_url: String,
    pub email_queue_url: String,
    pub sms_queue_url: String,
    pub inbox_queue_url: String,
    pub eligibility_queue_url: String,
    pub schedule_table: String,
    pub cap_policy: CapPolicy,
    /// How long a notification waits for a recipient that does not exist yet before
    /// it is rejected as `unknown_recipient` (0: rejected at once).
    pub recipient_wait_secs: u32,
    /// The stack-wide share of people held out of all marketing.
    pub global_control: GlobalControl,
}

impl Config {
    pub fn from_lookup(get: Lookup<'_>) -> Result<Self, ConfigError> {
        let cap_policy = match optional(get, "HERALD_CAP_POLICY") {
            None => CapPolicy::default(),
            Some(raw) => CapPolicy::from_json(&raw).map_err(|e| ConfigError(format!("HERALD_CAP_POLICY: {e}")))?,
        };
        Ok(Self {
            ledger: LedgerConfig::from_lookup(get)?,
            recipients_table: required(get, "HERALD_RECIPIENTS_TABLE")?,
            suppression_table: required(get, "HERALD_SUPPRESSION_TABLE")?,
            caps_table: required(get, "HERALD_CAPS_TABLE")?,
            templates_table: required(get, "HERALD_TEMPLATES_TABLE")?,
            push_queue_url: required(get, "HERALD_PUSH_QUEUE_URL")?,
            email_queue_url: required(get, "HERALD_EMAIL_QUEUE_URL")?,
            sms_queue_url: required(get, "HERALD_SMS_QUEUE_URL")?,
            inbox_queue_url: required(get, "HERALD_INBOX_QUEUE_URL")?,
            eligibility_queue_url: required(get, "HERALD_ELIGIBILITY_QUEUE_URL")?,
            schedule_table: required(get, "HERALD_SCHEDULE_TABLE")?,
            cap_policy,
            recipient_wait_secs: parsed(get, "HERALD_RECIPIENT_WAIT_SECS", 60)?,
            global_control: GlobalControl::new(parsed(get, "HERALD_GLOBAL_CONTROL_PERCENT", 0.0)?)
                .map_err(|e| ConfigError(format!("HERALD_GLOBAL_CONTROL_PERCENT: {e}")))?,
        })
    }
}

/// The ports eligibility uses, bundled so handlers take one type parameter.
pub trait Ports {
    type Ledger: Ledger;
    type Recipients: RecipientStore;
    type Suppression: SuppressionList;
    type Caps: CapCounter;
    type Templates: TemplateStore + CampaignStore;
    type Outbox: Outbox;
    type Schedule: ScheduleStore;
}

pub struct Deps<P: Ports> {
    pub ledger: P::Ledger,
    pub recipients: P::Recipients,
    pub suppression: P::Suppression,
    pub caps: P::Caps,
    pub templates: P::Templates,
    pub outbox: P::Outbox,
    pub schedule: P::Schedule,
    pub policy: CapPolicy,
    pub recipient_wait_secs: u32,
    pub global_control: GlobalControl,
}

const CONCURRENCY: usize = 10;

/// SQS delays a message at most 15 minutes; longer waits go to the schedule table.
pub const MAX_QUEUE_DELAY_SECS: i64 = 900;

/// One record's output: jobs for channel queues (or back to eligibility when deferred).
struct Routed {
    outcome: Outcome,
    jobs: Vec<(Destination, String, u32)>,
}

impl Routed {
    fn done() -> Self {
        Self { outcome: Outcome::Done, jobs: Vec::new() }
    }
    fn retry(reason: impl ToString) -> Self {
        Self { outcome: Outcome::Retry(reason.to_string()), jobs: Vec::new() }
    }
}

pub async fn handler<P: Ports>(
    deps: &Deps<P>,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, herald::lambda::Error> {
    handle_at(deps, event, Utc::now()).await
}

/// The handler at a given instant (tests move the clock; Lambda passes now).
pub async fn handle_at<P: Ports>(
    deps: &Deps<P>,
    event: LambdaEvent<SqsEvent>,
    now: DateTime<Utc>,
) -> Result<SqsBatchResponse, herald::lambda::Error> {
    let routed = for_each_record(event.payload, CONCURRENCY, |record| process(deps, record, now)).await;

    // Send the jobs in batches per queue; a record with a job not sent comes back. Its
    // cap slots stay taken: they are held in the message's name, so the record's next
    // attempt finds them its own rather than taking them again (and giving them back
    // here could free a slot that a copy of the job has routed a send on).
    let mut outcomes: Vec<(String, Outcome)> = Vec::with_capacity(routed.len());
    let mut handoffs = Vec::new();
    for (position, (id, r)) in routed.into_iter().enumerate() {
        for (to, body, delay_secs) in r.jobs {
            handoffs.push(Handoff { record: position, to, body, delay_secs });
        }
        outcomes.push((id, r.outcome));
    }
    for position in hand_off(&deps.outbox, handoffs).await {
        if let Some((_, outcome)) = outcomes.get_mut(position)
            && *outcome == Outcome::Done
        {
            *outcome = Outcome::Retry("enqueue failed".into());
        }
    }
    Ok(batch_response(outcomes.iter().map(|(id, o)| (id.as_str(), o))))
}

async fn process<P: Ports>(deps: &Deps<P>, record: Record, now: DateTime<Utc>) -> Routed {
    let job: EligibilityJob = match serde_json::from_str(&record.body) {
        Ok(job) => job,
        Err(e) => {
            // Only Herald writes this queue: a bad body is a bug, recorded and dropped.
            // serde's own text quotes values (an address, a number): never logged or stored.
            let detail = herald::contract::json_error_detail(&e, None);
            tracing::error!(record = %record.id, error = %detail, "eligibility job does not parse");
            let rejection = RejectionRecord::unreadable(&record.id, "invalid_job", detail, record.body.len(), now);
            return match deps.ledger.reject(rejection).await {
                Err(e) if e.is_retryable() => Routed::retry(e),
                _ => Routed::done(),
            };
        }
    };
    match decide(deps, &job, now).await {
        Ok(routed) => routed,
        Err(e) if e.is_retryable() => Routed::retry(e),
        Err(e) => {
            tracing::error!(message_id = %job.message_id, error = %e, "eligibility failed permanently");
            refuse(deps, &job, Status::Failed, Reason::ProviderRejected, &e.to_string(), now).await
        }
    }
}

async fn refuse<P: Ports>(
    deps: &Deps<P>,
    job: &EligibilityJob,
    status: Status,
    reason: Reason,
    detail: &str,
    now: DateTime<Utc>,
) -> Routed {
    let id = &job.message_id;
    tracing::info!(message_id = %id, status = %status, reason = %reason, detail, "not sent");
    metrics::count(
        "Notifications",
        &[
            ("Stage", "eligibility"),
            ("Outcome", status.as_str()),
            ("Reason", reason.as_str()),
            ("Kind", job.request.kind.as_str()),
        ],
    );
    let t = Transition::new(status, now).reason(reason).detail(detail);
    // Never over a send: a copy of this job that finds the message claimed or sent
    // (another copy routed it) changes nothing.
    match deps.ledger.settle(id, t).await {
        Ok(Applied::Stale) => {
            tracing::info!(message_id = %id, "a copy of this job routed the message already: refusal not recorded");
            Routed::done()
        }
        Ok(_) => Routed::done(),
        Err(e) if e.is_retryable() => Routed::retry(e),
        Err(_) => Routed::done(),
    }
}

fn contact(recipient: &Recipient, channel: Channel) -> Option<Contact> {
    match channel {
        Channel::Email => recipient.email.clone().map(Contact::Email),
        Channel::Sms => recipient.phone.clone().map(Contact::Sms),
        Channel::Push => (!recipient.devices.is_empty()).then(|| Contact::Push(recipient.devices.clone())),
        Channel::Inbox => Some(Contact::Inbox),
    }
}

async fn decide<P: Ports>(deps: &Deps<P>, job: &EligibilityJob, now: DateTime<Utc>) -> PortResult<Routed> {
    let request = &job.request;
    let Some(template) = deps.templates.get(&request.template).await? else {
        let detail = format!("no template named {}", request.template);
        return Ok(refuse(deps, job, Status::Rejected, Reason::UnknownTemplate, &detail, now).await);
    };
    let Some(recipient) = deps.recipients.get(&request.recipient).await? else {
        return Ok(unknown_recipient(deps, job, now).await);
    };
    let mut keys = Vec::with_capacity(2);
    if let Some(email) = &recipient.email {
        keys.push((Channel::Email, email.suppression_hash()));
    }
    if let Some(phone) = &recipient.phone {
        keys.push((Channel::Sms, phone.suppression_hash()));
    }
    let suppressions = deps.suppression.find(&keys).await?;
    let facts = Facts {
        request,
        recipient: &recipient,
        template_channels: &template.doc.channels,
        suppressions: &suppressions,
        tried: &job.tried,
        now,
    };
    match evaluate(&facts) {
        Decision::Refuse { reason, detail } => {
            let status = if reason == Reason::Expired { Status::Expired } else { Status::Suppressed };
            Ok(refuse(deps, job, status, reason, &detail, now).await)
        }
        Decision::Defer { until, reason } => defer(deps, job, until, reason, now).await,
        Decision::Send { candidates } => {
            // Holdouts (the campaign's and the global control group) are drawn among people
            // who would have received it, so the groups compare like with like when lift is
            // measured.
            let campaign = match &request.campaign {
                Some(name) => deps.templates.campaign(name).await?,
                None => None,
            };
            let drawn = match capped_and_held_out(request) {
                true => group(request.kind, &request.recipient, campaign.as_deref(), deps.global_control),
                false => Group::Send(None),
            };
            let variant = match drawn {
                Group::GlobalControl => {
                    let detail = format!(
                        "in the global control group ({}% of people, held out of all marketing)",
                        deps.global_control.percent()
                    );
                    return Ok(refuse(deps, job, Status::Suppressed, Reason::GlobalControl, &detail, now).await);
                }
                Group::Holdout => {
                    let holdout = campaign.as_ref().map_or(0.0, |c| c.holdout_percent);
                    let name = request.campaign.as_ref().map(|c| c.as_str()).unwrap_or_default();
                    let detail = format!("held out of campaign {name} ({holdout}%)");
                    return Ok(refuse(deps, job, Status::Suppressed, Reason::Holdout, &detail, now).await);
                }
                Group::Send(v) => v.cloned(),
            };
            // The template dispatch renders (a variant's own, if it names one) picks the
            // profile attributes its job carries.
            let rendered = match variant.as_ref().and_then(|v| v.template.as_ref()) {
                Some(name) => deps.templates.get(name).await?.unwrap_or(template),
                None => template,
            };
            let attributes = rendered.profile_use().pick(&recipient.attributes);
            route(deps, job, &recipient, &candidates, variant, attributes, now).await
        }
    }
}

/// A recipient not found may be on its way (its `upsert_recipient` published with
/// the notification, and SQS keeps no order): the job looks again after a delay on
/// this queue, writing nothing, until the wait is used up; then it is rejected.
async fn unknown_recipient<P: Ports>(deps: &Deps<P>, job: &EligibilityJob, now: DateTime<Utc>) -> Routed {
    let Some(delay) = recipient_wait(deps.recipient_wait_secs, job.recipient_waits) else {
        let detail = match job.recipient_waits {
            0 => format!("no recipient {}", job.request.recipient),
            _ => format!("no recipient {} (waited {} s for it)", job.request.recipient, deps.recipient_wait_secs),
        };
        return refuse(deps, job, Status::Rejected, Reason::UnknownRecipient, &detail, now).await;
    };
    tracing::info!(message_id = %job.message_id, recipient = %job.request.recipient, delay_secs = delay, "recipient not found yet: looking again");
    let again = EligibilityJob { recipient_waits: job.recipient_waits.saturating_add(1), ..job.clone() };
    match serde_json::to_string(&again) {
        Ok(body) => Routed { outcome: Outcome::Done, jobs: vec![(Destination::Eligibility, body, delay)] },
        Err(e) => Routed::retry(e),
    }
}

/// Waits until `until`: on the queue itself when that is within an SQS delay,
/// else in the schedule table, which the scheduler reads every minute.
async fn defer<P: Ports>(
    deps: &Deps<P>,
    job: &EligibilityJob,
    until: DateTime<Utc>,
    reason: Reason,
    now: DateTime<Utc>,
) -> PortResult<Routed> {
    let id = &job.message_id;
    tracing::info!(message_id = %id, reason = %reason, until = %until, "deferred");
    if !job.deferred {
        let t = Transition::new(Status::Deferred, now).reason(reason).detail(until.to_rfc3339());
        deps.ledger.transition(id, t).await?;
        metrics::count(
            "Notifications",
            &[
                ("Stage", "eligibility"),
                ("Outcome", "deferred"),
                ("Reason", reason.as_str()),
                ("Kind", job.request.kind.as_str()),
            ],
        );
    }
    // Its caps count in the window it will be sent in, the same for every copy.
    let body = serde_json::to_string(&EligibilityJob { deferred: true, counted_at: Some(until), ..job.clone() })
        .map_err(|e| PortError::Unknown(e.into()))?;
    let wait = (until - now).num_seconds().max(0);
    if wait > MAX_QUEUE_DELAY_SECS {
        deps.schedule.schedule(id.as_str(), &body, until, Destination::Eligibility).await?;
        return Ok(Routed::done());
    }
    Ok(Routed { outcome: Outcome::Done, jobs: vec![(Destination::Eligibility, body, wait as u32)] })
}

/// Takes cap slots on the candidates in order: the first channel that gets all its
/// slots is used (every such channel in `all` mode).
async fn route<P: Ports>(
    deps: &Deps<P>,
    job: &EligibilityJob,
    recipient: &Recipient,
    candidates: &[Channel],
    variant: Option<herald::domain::campaign::Variant>,
    attributes: serde_json::Map<String, serde_json::Value>,
    now: DateTime<Utc>,
) -> PortResult<Routed> {
    let request = &job.request;
    let mode = request.mode;
    let mut routed = Routed::done();
    let mut capped = Vec::new();
    let mut reason = Reason::CapReached;
    let mut sent_request = request.clone();
    if let Some(template) = variant.as_ref().and_then(|v| v.template.clone()) {
        sent_request.template = template;
    }
    // Every copy of this job counts its caps at the same instant, in the same windows.
    let counted_at = job.counted_at.unwrap_or(now);
    for (position, &channel) in candidates.iter().enumerate() {
        let Some(contact) = contact(recipient, channel) else { continue };
        let slots = match capped_and_held_out(request) {
            true => deps.policy.slots(request.kind, &request.recipient, channel, request.campaign.as_ref(), counted_at),
            false => Vec::new(),
        };
        match take_slots(&deps.caps, &slots, &job.message_id).await? {
            Err(full) => {
                if full.scope == CapScope::Campaign {
                    reason = Reason::Cooldown;
                }
                capped.push(format!(
                    "{channel}: {} ({})",
                    if full.scope == CapScope::Campaign { "cooldown" } else { "cap_reached" },
                    full.label
                ));
            }
            Ok(taken) => {
                let dispatch = DispatchJob {
                    message_id: job.message_id.clone(),
                    request: sent_request.clone(),
                    contact,
                    locale: recipient.locale.clone(),
                    tried: job.tried.clone(),
                    may_fall_back: mode == Mode::First && position + 1 < candidates.len(),
                    slots: taken.clone(),
                    variant: variant.as_ref().map(|v| v.name.clone()),
                    attributes: attributes.clone(),
                    timezone: recipient.timezone,
                };
                let body = serde_json::to_string(&dispatch).map_err(|e| PortError::Unknown(e.into()))?;
                // A job SQS will not carry (a person with hundreds of devices): this channel
                // cannot be used; its slots go back (every copy of this job finds the same)
                // and the next candidate is tried.
                if let Err(why) = check_sqs_body(&body) {
                    give_back_all(&deps.caps, &taken, &job.message_id).await;
                    tracing::warn!(message_id = %job.message_id, channel = %channel, reason = %why, "channel skipped: its job would not fit a queue message");
                    capped.push(format!("{channel}: {}", why.code()));
                    if reason == Reason::CapReached && capped.len() == 1 {
                        reason = Reason::PayloadTooLarge;
                    }
                    continue;
                }
                tracing::info!(message_id = %job.message_id, channel = %channel, kind = request.kind.as_str(), "routed");
                metrics::count(
                    "Notifications",
                    &[
                        ("Stage", "eligibility"),
                        ("Outcome", "routed"),
                        ("Channel", channel.as_str()),
                        ("Kind", request.kind.as_str()),
                    ],
                );
                routed.jobs.push((Destination::Channel(channel), body, 0));
                if mode == Mode::First {
                    break;
                }
            }
        }
    }
    if routed.jobs.is_empty() {
        let detail = capped.join(", ");
        return Ok(refuse(deps, job, Status::Suppressed, reason, &detail, now).await);
    }
    if request.kind == Kind::Marketing && !capped.is_empty() {
        tracing::info!(message_id = %job.message_id, capped = %capped.join(", "), "some channels were capped");
    }
    Ok(routed)
}

/// Takes every slot or none, in the message's name: on the first full counter, the ones
/// this call took are given back (not those the message held already: a copy of this
/// job may have routed a send on them).
async fn take_slots<C: CapCounter>(
    caps: &C,
    slots: &[CapSlot],
    holder: &MessageId,
) -> PortResult<Result<Vec<CapSlot>, CapSlot>> {
    let mut taken = Vec::with_capacity(slots.len());
    let mut new = Vec::with_capacity(slots.len());
    for slot in slots {
        match caps.try_take(slot, holder).await {
            Ok(Take::Taken) => {
                taken.push(slot.clone());
                new.push(slot.clone());
            }
            Ok(Take::Held) => taken.push(slot.clone()),
            Ok(Take::Full) => {
                give_back_all(caps, &new, holder).await;
                return Ok(Err(slot.clone()));
            }
            Err(e) => {
                give_back_all(caps, &new, holder).await;
                return Err(e);
            }
        }
    }
    Ok(Ok(taken))
}

async fn give_back_all<C: CapCounter>(caps: &C, slots: &[CapSlot], holder: &MessageId) {
    for slot in slots {
        if let Err(e) = caps.give_back(slot, holder).await {
            tracing::warn!(message_id = %holder, error = %e, "could not give a cap slot back");
        }
    }
}
