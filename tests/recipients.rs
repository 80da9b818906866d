//! Recipient commands against moto: GDPR erasure keeps only what suppression needs.

use crate::support::*;
use herald::domain::{Channel, EmailAddress, RecipientId};
use herald::ports::{RecipientStore, SuppressionList};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_removes_personal_data_and_tokens_but_keeps_the_suppression() {
    let t = TestStack::new().await;
    let tag = &t.tag;
    let who = format!("eve-{tag}");
    let address = format!("eve.{tag}@example.org");
    let token = format!("fcm-{tag}-eve");
    t.publish(&[
        json!({"type": "upsert_recipient", "recipient": who, "email": address, "phone": phone(tag, 3), "timezone": "Europe/Paris"}).to_string(),
        json!({"type": "set_consent", "recipient": who, "channel": "email", "granted": true, "source": "signup-form"}).to_string(),
        json!({"type": "register_push_token", "recipient": who, "platform": "fcm", "token": token}).to_string(),
    ])
    .await;
    t.wait_idle().await;
    let arn = endpoint_for(&provider_data().await, &token).expect("an endpoint for the token");
    let dynamodb = aws_sdk_dynamodb::Client::new(&t.sdk);
    let suppression = herald::aws::dynamodb::DynamoSuppression::new(dynamodb.clone(), t.table("SuppressionTable"));
    let hash = EmailAddress::new(address.clone()).unwrap().suppression_hash();
    suppression
        .suppress(Channel::Email, &hash, herald::domain::ledger::SuppressionCause::Complaint, chrono::Utc::now())
        .await
        .unwrap();

    t.publish(&[json!({"type": "erase_recipient", "recipient": who}).to_string()]).await;
    t.wait_idle().await;

    let recipients = herald::aws::dynamodb::DynamoRecipients::new(dynamodb.clone(), t.table("RecipientsTable"));
    assert_eq!(recipients.get(&RecipientId::new(who.clone()).unwrap()).await.unwrap(), None, "the profile is gone");
    let left = dynamodb
        .query()
        .table_name(t.table("RecipientsTable"))
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", aws_sdk_dynamodb::types::AttributeValue::S(who.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(left.count, 0, "consent records are gone too");
    // (moto's data.json keeps listing deleted endpoints: ask SNS itself.)
    let gone = aws_sdk_sns::Client::new(&t.sdk).get_endpoint_attributes().endpoint_arn(&arn).send().await;
    let code = gone.err().and_then(|e| e.into_service_error().meta().code().map(str::to_owned));
    assert_eq!(code.as_deref(), Some("NotFound"), "the SNS endpoint was deleted");
    let still = suppression.find(&[(Channel::Email, hash)]).await.unwrap();
    assert_eq!(still.len(), 1, "the hashed suppression stays, so the address is never mailed again");
    t.stop().await;
}
