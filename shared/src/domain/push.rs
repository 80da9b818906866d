//! Push payloads per platform, for SNS `MessageStructure=json`.

use crate::domain::jobs::DispatchJob;
use crate::domain::template::{CompiledTemplate, PushContent, TemplateError};
use crate::domain::{MessageId, Platform};
use serde_json::{Value, json};

/// APNs and FCM both refuse a payload above 4 KB.
pub const MAX_PAYLOAD_BYTES: usize = 4096;

/// The size of the platform payload (what APNs or FCM receives) for this content.
pub fn payload_bytes(platform: Platform, content: &PushContent, id: &MessageId) -> usize {
    platform_payload(platform, content, id).to_string().len()
}

fn platform_payload(platform: Platform, content: &PushContent, id: &MessageId) -> Value {
    let mut data = json!({ "herald_message_id": id.as_str() });
    if let Some(link) = &content.deep_link {
        data["deep_link"] = Value::String(link.clone());
    }
    match platform {
        Platform::Apns | Platform::ApnsSandbox => {
            let mut p =
                json!({ "aps": { "alert": { "title": content.title, "body": content.body }, "sound": "default" } });
            if let (Some(obj), Some(extra)) = (p.as_object_mut(), data.as_object()) {
                obj.extend(extra.clone());
            }
            p
        }
        Platform::Fcm => json!({
            "notification": { "title": content.title, "body": content.body },
            "data": data,
        }),
    }
}

/// The push part of `job`'s template, rendered for its person (push dispatch and
/// `herald templates preview` both call this, then [`check_size`] and [`sns_message`]).
pub fn render(template: &CompiledTemplate, job: &DispatchJob) -> Result<PushContent, TemplateError> {
    template.render_push(job.locale.as_ref().map(|l| l.as_str()), &job.request.data, &job.recipient_view())
}

/// `Err(bytes)` when the payload for `platform` is over [`MAX_PAYLOAD_BYTES`]: no device of
/// that platform would take it.
pub fn check_size(platform: Platform, content: &PushContent, id: &MessageId) -> Result<usize, usize> {
    let size = payload_bytes(platform, content, id);
    if size > MAX_PAYLOAD_BYTES { Err(size) } else { Ok(size) }
}

/// The platform payload alone (what APNs or FCM receives), as SNS passes it on.
pub fn platform_json(platform: Platform, content: &PushContent, id: &MessageId) -> String {
    platform_payload(platform, content, id).to_string()
}

/// The SNS message for one device: a `default` text plus the platform's own payload
/// (APNs `aps` alert, or an FCM notification with data), carrying Herald's message id.
pub fn sns_message(platform: Platform, content: &PushContent, id: &MessageId) -> String {
    let payload = platform_payload(platform, content, id);
    json!({ "default": content.body, platform.sns_key(): payload.to_string() }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::IdempotencyKey;

    #[test]
    fn payloads_nest_the_platform_json_as_a_string() {
        let id = MessageId::for_key(&IdempotencyKey::new("k").unwrap());
        let content = PushContent { title: "T".into(), body: "B \"quoted\"".into(), deep_link: Some("app://x".into()) };
        let outer: Value = serde_json::from_str(&sns_message(Platform::Fcm, &content, &id)).unwrap();
        assert_eq!(outer["default"], "B \"quoted\"");
        let inner: Value = serde_json::from_str(outer["GCM"].as_str().unwrap()).unwrap();
        assert_eq!(inner["notification"]["title"], "T");
        assert_eq!(inner["data"]["herald_message_id"], id.as_str());
        let outer: Value = serde_json::from_str(&sns_message(Platform::ApnsSandbox, &content, &id)).unwrap();
        let inner: Value = serde_json::from_str(outer["APNS_SANDBOX"].as_str().unwrap()).unwrap();
        assert_eq!(inner["aps"]["alert"]["body"], "B \"quoted\"");
        assert_eq!(inner["deep_link"], "app://x");
        assert!(outer.get("GCM").is_none());
    }
}
