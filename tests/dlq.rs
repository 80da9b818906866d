//! `herald dlq list|redrive` against a stack's real dead-letter queues on moto: what an
//! operator sees of a dead-lettered job (ids and the ledger's status, never an
//! address), a listing that leaves the queue as it was, and a redrive whose messages
//! go through the pipeline again.

use crate::support::*;
use herald_cli::dlq;
use serde_json::json;

fn shipped(key: &str, recipient: &str) -> String {
    json!({"idempotency_key": key, "recipient": recipient, "template": "order_shipped", "kind": "transactional",
           "data": {"order_id": "1", "eta": "Tuesday"}})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_queue_is_listed_by_ids_and_redriven_through_the_pipeline() {
    let t = TestStack::new().await;
    let tag = &t.tag;
    let (bob, address) = (format!("bob-{tag}"), format!("bob.{tag}@example.org"));
    let (sent_key, lost_key) = (format!("{tag}-sent"), format!("{tag}-lost"));
    t.publish(&[json!({"type": "upsert_recipient", "recipient": bob, "email": address}).to_string()]).await;
    t.wait_idle().await;
    t.publish(&[shipped(&sent_key, &bob)]).await;
    t.wait_idle().await;
    assert_eq!(t.entry(&sent_key).await.unwrap().channel.as_deref(), Some("email"));

    let sqs = aws_sdk_sqs::Client::new(&t.sdk);
    let ledger = t.ledger();
    // A copy of the sent message's dispatch job (with its address), a body that is not JSON,
    // and, on the ingest side, a notification that never got in.
    let sent_id = herald::domain::MessageId::for_key(&herald::domain::IdempotencyKey::new(&sent_key).unwrap());
    let job = json!({"message_id": sent_id, "request": serde_json::from_str::<serde_json::Value>(&shipped(&sent_key, &bob)).unwrap(),
                     "contact": {"email": address}});
    for (queue, body) in
        [("EmailQueueDeadLetterQueue", job.to_string()), ("EmailQueueDeadLetterQueue", "{oops".to_owned())]
            .into_iter()
            .chain([("IngestQueueDeadLetterQueue", shipped(&lost_key, &bob))])
    {
        sqs.send_message().queue_url(t.queue_url(queue)).message_body(body).send().await.unwrap();
    }

    let email = dlq::resolve(&sqs, tag, "email").await.unwrap();
    assert_eq!(
        (email.dead_letter_url.as_str(), email.source_url.as_str()),
        (t.queue_url("EmailQueueDeadLetterQueue").as_str(), t.queue_url("EmailQueue").as_str())
    );
    let listed = dlq::list(&sqs, &ledger, &email, 100).await.unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let copy = listed.iter().find(|l| l.described.message_id.as_ref() == Some(&sent_id)).expect("the job is listed");
    assert_eq!(copy.described.kind, "dispatch job (email)");
    assert_eq!(copy.described.recipient.as_deref(), Some(bob.as_str()));
    let status = copy.ledger.as_ref().map(|(s, _)| s.as_str());
    assert!(matches!(status, Some("sent" | "delivered")), "the ledger's word on it: {status:?}");
    assert!(listed.iter().any(|l| l.described.kind == "not a JSON object"));
    let table = dlq::render(&listed);
    assert!(!table.contains('@') && !table.contains("example.org"), "no address in the listing:\n{table}");
    // The listing gave every message back: listing again finds them all, at once.
    assert_eq!(dlq::list(&sqs, &ledger, &email, 100).await.unwrap().len(), 2, "a listing leaves the queue as it was");

    let ingest = dlq::resolve(&sqs, tag, "ingest").await.unwrap();
    let before = dlq::list(&sqs, &ledger, &ingest, 10).await.unwrap();
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].ledger, None, "the lost notification never reached the ledger");
    let done = dlq::redrive(&sqs, &ledger, &ingest, 1000).await.unwrap();
    assert_eq!((done.moved.len(), done.not_sent, done.not_deleted), (1, 0, 0), "{done:?}");
    assert!(dlq::list(&sqs, &ledger, &ingest, 10).await.unwrap().is_empty(), "the dead-letter queue is empty");
    t.wait_idle().await;
    let redriven = t.entry(&lost_key).await.expect("the redriven notification went through ingest");
    assert_eq!(redriven.channel.as_deref(), Some("email"), "and was sent: {:?}", redriven.status);
    assert_eq!(emails_to(&provider_data().await, &address).len(), 2, "one email per notification, no more");

    let unknown = dlq::resolve(&sqs, tag, "fax").await.unwrap_err().to_string();
    assert!(unknown.contains("ingest, eligibility, push"), "{unknown}");
    let missing = dlq::resolve(&sqs, "no-such-stack", "email").await.unwrap_err().to_string();
    assert!(missing.contains("no dead-letter queue"), "{missing}");
    t.stop().await;
}
