//! Broadcast commands: start one (check its segment, campaign and templates, record it,
//! hand the first page of each scan segment to the fan-out), pause, resume or cancel it,
//! and hold a broadcast's message that arrives while its broadcast is paused.

use crate::{Deps, Ports, Step, reject};
use chrono::{DateTime, TimeDelta, Utc};
use herald::contract::{BroadcastControl, BroadcastRequest, ControlAction, NotifyRequest, Rejection};
use herald::domain::broadcast::{Broadcast, BroadcastState, PageJob};
use herald::domain::segment::Audience;
use herald::domain::{SegmentName, TemplateName};
use herald::lambda::Record;
use herald::ports::*;

/// How long a broadcast's message waits on the ingest queue, each time round, while its
/// broadcast is paused (a new message each time, so a long pause never dead-letters it).
pub const PAUSED_HOLD_SECS: u32 = 60;

/// The first page of each scan segment, or of each not yet finished, as jobs to queue.
fn pages(broadcast: &Broadcast, now: DateTime<Utc>) -> Step {
    let delay = broadcast.request.send_at.map_or(0, |at| {
        u32::try_from((at - now).num_seconds().clamp(0, herald::domain::broadcast::MAX_DELAY_SECS)).unwrap_or(0)
    });
    let mut out = Vec::new();
    for job in broadcast.open_pages() {
        match serde_json::to_string::<PageJob>(&job) {
            Ok(body) => out.push((Destination::Broadcast, body, delay)),
            Err(e) => return Step::Retry(format!("could not encode a page job: {e}")),
        }
    }
    Step::Forward(out)
}

/// The segment and every segment it excludes, read from the store and checked against the
/// pushed profile schema (a segment pushed before an attribute was dropped from it is refused).
async fn audience<T: SegmentStore>(
    templates: &T,
    name: &SegmentName,
) -> Result<Result<Audience, Rejection>, PortError> {
    let audience = match resolve_audience(templates, name).await? {
        Ok(a) => a,
        Err(why) if templates.segment(name).await?.is_none() => {
            let detail = format!("{why} (push it with herald templates push)");
            return Ok(Err(Rejection::new("unknown_segment", detail)));
        }
        Err(why) => return Ok(Err(Rejection::new("invalid_segment", why))),
    };
    let schema = templates.profile_schema().await?;
    for doc in std::iter::once(&audience.segment).chain(&audience.exclusions) {
        if let Err(why) = doc.validate(&schema, |_| true) {
            return Ok(Err(Rejection::new("invalid_segment", why)));
        }
    }
    Ok(Ok(audience))
}

/// The template the broadcast's messages name: its own, or (when it names none) the
/// campaign's variants' own. Every template it may send must exist.
async fn template<T: TemplateStore + CampaignStore>(
    templates: &T,
    request: &BroadcastRequest,
) -> Result<Result<TemplateName, Rejection>, PortError> {
    let campaign = templates.campaign(&request.campaign).await?;
    let variants: Vec<TemplateName> =
        campaign.iter().flat_map(|c| c.variants.iter().filter_map(|v| v.template.clone())).collect();
    let Some(main) = request.template.clone().or_else(|| variants.first().cloned()) else {
        return Ok(Err(Rejection::new(
            "invalid_field",
            format!(
                "the broadcast names no template, and campaign {} has no variant with a template",
                request.campaign
            ),
        )));
    };
    for name in std::iter::once(&main).chain(&variants) {
        if templates.get(name).await?.is_none() {
            return Ok(Err(Rejection::new("unknown_template", format!("no template {name} has been pushed"))));
        }
    }
    Ok(Ok(main))
}

pub(crate) async fn start<P: Ports>(
    deps: &Deps<P>,
    record: &Record,
    request: BroadcastRequest,
    now: DateTime<Utc>,
) -> Step {
    let checked = async {
        let mut audience = match audience(&deps.templates, &request.segment).await? {
            Ok(a) => a,
            Err(r) => return Ok(Err(r)),
        };
        let template = match template(&deps.templates, &request).await? {
            Ok(t) => t,
            Err(r) => return Ok(Err(r)),
        };
        if let Some(channels) = &request.channels {
            audience.segment.channels.clone_from(channels);
        }
        Ok::<_, PortError>(Ok(Broadcast::new(request.clone(), template, audience, deps.scan_segments, now)))
    };
    let broadcast = match checked.await {
        Ok(Ok(b)) => b,
        Ok(Err(rejection)) => return reject(deps, record, rejection, now).await,
        Err(e) => return Step::Retry(e.to_string()),
    };
    if let Some(expires) = request.expires_at
        && expires <= now
    {
        return reject(deps, record, Rejection::new("expired", "the broadcast's expires_at has passed"), now).await;
    }
    let keep_until = now + deps.retention.max(TimeDelta::days(30));
    match deps.ledger.create(&broadcast, keep_until).await {
        Ok(Created::New) => {
            tracing::info!(campaign = %request.campaign, segment = %request.segment, record = %record.id, "broadcast started");
            pages(&broadcast, now)
        }
        // The same command again (a redelivery, or a retry after the first pages could not be
        // queued): queue the open chains again; a page read twice counts and sends once.
        Ok(Created::Exists(existing)) if existing.request == request => {
            tracing::info!(campaign = %request.campaign, record = %record.id, state = existing.state.as_str(), outcome = "duplicate", "broadcast already recorded");
            match existing.state {
                BroadcastState::Running => pages(&existing, now),
                _ => Step::Done,
            }
        }
        Ok(Created::Exists(existing)) => {
            let detail = format!(
                "campaign {} was broadcast already (to segment {}, {}): a campaign is broadcast once, so use a new campaign name",
                request.campaign,
                existing.request.segment,
                existing.state.as_str()
            );
            reject(deps, record, Rejection::new("broadcast_exists", detail), now).await
        }
        Err(e) => Step::Retry(e.to_string()),
    }
}

pub(crate) async fn control<P: Ports>(
    deps: &Deps<P>,
    record: &Record,
    action: ControlAction,
    cmd: BroadcastControl,
    now: DateTime<Utc>,
) -> Step {
    let at = cmd.at.unwrap_or(now);
    let current = match deps.ledger.broadcast(&cmd.campaign).await {
        Ok(Some(b)) => b,
        Ok(None) => {
            let detail = format!("campaign {} has no broadcast", cmd.campaign);
            return reject(deps, record, Rejection::new("unknown_broadcast", detail), now).await;
        }
        Err(e) => return Step::Retry(e.to_string()),
    };
    let outcome = match deps.ledger.control(&cmd.campaign, action, at, current.resume_origin(now)).await {
        Ok(o) => o,
        Err(e) => return Step::Retry(e.to_string()),
    };
    let wanted = match action {
        ControlAction::Pause => BroadcastState::Paused,
        ControlAction::Resume => BroadcastState::Running,
        ControlAction::Cancel => BroadcastState::Cancelled,
    };
    match outcome {
        ControlOutcome::Applied(b) => {
            tracing::info!(campaign = %cmd.campaign, action = action.as_str(), epoch = b.epoch, "broadcast control applied");
            match action {
                ControlAction::Resume => pages(&b, now),
                _ => Step::Done,
            }
        }
        // This very command, applied before its record was acknowledged: a resume's chains
        // may not have been queued, so queue them again.
        ControlOutcome::NotApplied(b) if b.state == wanted && b.state_at == at => match action {
            ControlAction::Resume => pages(&b, now),
            _ => Step::Done,
        },
        ControlOutcome::NotApplied(b) if b.state == wanted => {
            tracing::info!(campaign = %cmd.campaign, action = action.as_str(), "broadcast already in that state");
            Step::Done
        }
        ControlOutcome::NotApplied(b) if b.state_at > at => {
            tracing::info!(campaign = %cmd.campaign, action = action.as_str(), "older than the broadcast's last change: ignored");
            Step::Done
        }
        ControlOutcome::NotApplied(b) => {
            let detail =
                format!("cannot {} campaign {}'s broadcast: it is {}", action.as_str(), cmd.campaign, b.state.as_str());
            reject(deps, record, Rejection::new("broadcast_state", detail), now).await
        }
        ControlOutcome::Unknown => {
            let detail = format!("campaign {} has no broadcast", cmd.campaign);
            reject(deps, record, Rejection::new("unknown_broadcast", detail), now).await
        }
    }
}

/// What becomes of a broadcast's message (its key is `<campaign>#<recipient>`) arriving
/// now: `None` goes on as any notification; a paused broadcast's waits on the ingest queue;
/// a cancelled one's is recorded as suppressed and goes no further.
pub(crate) async fn in_flight<P: Ports>(
    deps: &Deps<P>,
    record: &Record,
    request: &NotifyRequest,
    now: DateTime<Utc>,
) -> Option<Step> {
    let campaign = herald::domain::broadcast::is_broadcast_message(request)?;
    match deps.ledger.state(campaign).await {
        Ok(Some(BroadcastState::Paused)) => {
            tracing::info!(record = %record.id, campaign = %campaign, "broadcast paused: message held");
            Some(Step::Forward(vec![(Destination::Ingest, record.body.clone(), PAUSED_HOLD_SECS)]))
        }
        Ok(Some(BroadcastState::Cancelled)) => Some(cancelled(deps, record, request, now).await),
        Ok(_) => None,
        Err(e) => Some(Step::Retry(e.to_string())),
    }
}

async fn cancelled<P: Ports>(deps: &Deps<P>, record: &Record, request: &NotifyRequest, now: DateTime<Utc>) -> Step {
    let id = herald::domain::MessageId::for_key(&request.idempotency_key);
    let admitted = deps.ledger.admit(deps.admission(&id, record, request, now)).await;
    match admitted {
        Ok(Admission::New) | Ok(Admission::Duplicate { status: herald::domain::ledger::Status::Accepted, .. }) => {}
        Ok(Admission::Duplicate { .. }) => return Step::Done,
        Err(e) => return Step::Retry(e.to_string()),
    }
    let t = Transition::new(herald::domain::ledger::Status::Suppressed, now)
        .reason(herald::domain::ledger::Reason::BroadcastCancelled)
        .detail("the broadcast was cancelled before this message was sent");
    match deps.ledger.settle(&id, t).await {
        Ok(_) => {
            tracing::info!(message_id = %id, record = %record.id, "broadcast cancelled: message suppressed");
            Step::Done
        }
        Err(e) => Step::Retry(e.to_string()),
    }
}
