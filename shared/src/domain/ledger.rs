//! The message ledger's vocabulary: statuses, the order they move in, and reasons.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a notification stands. Statuses only move forward (by [`Status::rank`]),
/// so a late or repeated provider event can never undo a newer one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Accepted,
    Deferred,
    Sent,
    Delivered,
    Opened,
    Clicked,
    /// Terminal outcomes.
    Rejected,
    Suppressed,
    Expired,
    Failed,
    Bounced,
    Complained,
    /// A digest item: collected into its digest's message, never sent on its own.
    Digested,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Accepted => "accepted",
            Status::Deferred => "deferred",
            Status::Sent => "sent",
            Status::Delivered => "delivered",
            Status::Opened => "opened",
            Status::Clicked => "clicked",
            Status::Rejected => "rejected",
            Status::Suppressed => "suppressed",
            Status::Expired => "expired",
            Status::Failed => "failed",
            Status::Bounced => "bounced",
            Status::Complained => "complained",
            Status::Digested => "digested",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(raw.to_owned())).ok()
    }

    /// The order of progress. A transition is applied only to a lower rank.
    /// A bounce outranks delivery (an asynchronous bounce can follow a delivery
    /// report); a complaint outranks everything the recipient did before it.
    pub fn rank(self) -> u8 {
        match self {
            Status::Accepted => 10,
            Status::Deferred => 20,
            Status::Sent => 30,
            Status::Delivered => 40,
            Status::Opened => 50,
            Status::Clicked => 60,
            Status::Failed => 70,
            Status::Bounced => 80,
            Status::Complained => 90,
            Status::Rejected | Status::Suppressed | Status::Expired | Status::Digested => 100,
        }
    }

    pub fn can_move_to(self, next: Status) -> bool {
        next.rank() > self.rank()
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Machine-readable reasons for every decision that is not a plain send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Duplicate,
    Invalid,
    UnknownRecipient,
    UnknownTemplate,
    NoConsent,
    OptedOut,
    SuppressedBounce,
    SuppressedComplaint,
    SuppressedOptOut,
    NoContact,
    CapReached,
    Cooldown,
    Holdout,
    /// A broadcast's message that was in flight when the broadcast was cancelled.
    BroadcastCancelled,
    /// In the stack-wide global control group: held out of all marketing.
    GlobalControl,
    QuietHoursDeferred,
    Scheduled,
    Expired,
    NoEligibleChannel,
    ProviderRejected,
    EndpointDisabled,
    RenderFailed,
    PayloadTooLarge,
    TooLong,
    RetriesExhausted,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Duplicate => "duplicate",
            Reason::Invalid => "invalid",
            Reason::UnknownRecipient => "unknown_recipient",
            Reason::UnknownTemplate => "unknown_template",
            Reason::NoConsent => "no_consent",
            Reason::OptedOut => "opted_out",
            Reason::SuppressedBounce => "suppressed_bounce",
            Reason::SuppressedComplaint => "suppressed_complaint",
            Reason::SuppressedOptOut => "suppressed_opt_out",
            Reason::NoContact => "no_contact",
            Reason::CapReached => "cap_reached",
            Reason::Cooldown => "cooldown",
            Reason::Holdout => "holdout",
            Reason::BroadcastCancelled => "broadcast_cancelled",
            Reason::GlobalControl => "global_control",
            Reason::QuietHoursDeferred => "quiet_hours_deferred",
            Reason::Scheduled => "scheduled",
            Reason::Expired => "expired",
            Reason::NoEligibleChannel => "no_eligible_channel",
            Reason::ProviderRejected => "provider_rejected",
            Reason::EndpointDisabled => "endpoint_disabled",
            Reason::RenderFailed => "render_failed",
            Reason::PayloadTooLarge => "payload_too_large",
            Reason::TooLong => "too_long",
            Reason::RetriesExhausted => "retries_exhausted",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an address or number is suppressed for every sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressionCause {
    Bounce,
    Complaint,
    OptOut,
}

impl SuppressionCause {
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressionCause::Bounce => "bounce",
            SuppressionCause::Complaint => "complaint",
            SuppressionCause::OptOut => "opt_out",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(raw.to_owned())).ok()
    }

    pub fn reason(self) -> Reason {
        match self {
            SuppressionCause::Bounce => Reason::SuppressedBounce,
            SuppressionCause::Complaint => Reason::SuppressedComplaint,
            SuppressionCause::OptOut => Reason::SuppressedOptOut,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    #[test]
    fn statuses_only_move_forward() {
        let cases = [
            (Accepted, Sent, true),
            (Sent, Delivered, true),
            (Delivered, Sent, false),
            (Delivered, Delivered, false),
            (Delivered, Opened, true),
            (Clicked, Opened, false),
            (Delivered, Bounced, true),
            (Bounced, Delivered, false),
            (Opened, Complained, true),
            (Suppressed, Sent, false),
            (Deferred, Sent, true),
            (Digested, Sent, false),
            (Digested, Delivered, false),
        ];
        for (from, to, ok) in cases {
            assert_eq!(from.can_move_to(to), ok, "{from} -> {to}");
        }
    }

    #[test]
    fn text_forms_round_trip() {
        for s in [
            Accepted, Deferred, Sent, Delivered, Opened, Clicked, Rejected, Suppressed, Expired, Failed, Bounced,
            Complained, Digested,
        ] {
            assert_eq!(Status::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(serde_json::to_value(Reason::QuietHoursDeferred).unwrap(), "quiet_hours_deferred");
        assert_eq!(serde_json::to_value(Reason::CapReached).unwrap(), Reason::CapReached.as_str());
        assert_eq!(serde_json::to_value(Reason::GlobalControl).unwrap(), Reason::GlobalControl.as_str());
    }
}
