//! The STS/IAM suite: assumed roles and External IDs against moto with IAM enforcement on.

use kinesis_sink::Credentials;
use serde_json::json;
use sink::Outcome;
use tests::env::iam;
use tests::stream::{client, create, read_all, unique_name};

use crate::support::{config, deliver_all, message, records, sink};

/// An IAM caller (the identity Tributary runs as) and a role it may assume.
struct Setup {
    url: String,
    admin: Credentials,
    caller: Credentials,
    role_arn: String,
    stream: String,
}

/// Creates a caller allowed to assume roles, a stream, and a role that trusts the caller with `external_ids` and
/// allows `actions` on Kinesis.
async fn setup(name: &str, external_ids: &[&str], actions: &[&str]) -> Setup {
    let (url, admin) = iam();
    let (caller_arn, caller) = tests::iam::caller(&format!("{name}-caller"), &["sts:AssumeRole"]).await;
    let ids: Vec<String> = external_ids.iter().map(|id| (*id).to_owned()).collect();
    let trust = kinesis_sink::setup::iam::trust_policy(&caller_arn, &ids);
    // moto matches Kinesis policies only when the resource is "*".
    let policy =
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]});
    let role_arn = tests::iam::role(&unique_name(&format!("{name}-role")), &trust, Some(&policy)).await;
    let stream = unique_name(name);
    create(&client(&url, admin.clone()).await, &stream, 1).await;
    Setup { url, admin, caller, role_arn, stream }
}

fn role_config(setup: &Setup) -> kinesis_sink::KinesisConfig {
    let mut config = config(&setup.url, &setup.stream);
    config.role_address = Some(setup.role_arn.clone());
    config
}

async fn read_ids(setup: &Setup) -> Vec<String> {
    let admin = client(&setup.url, setup.admin.clone()).await;
    read_all(&admin, &setup.stream)
        .await
        .iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.data).unwrap()["messageId"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn event(id: &str) -> segment_model::Message {
    message(json!({"type": "track", "userId": "user_1", "event": "Role Check"}), id)
}

#[tokio::test]
async fn the_source_id_is_the_external_id() {
    let setup = setup("ext-ok", &["src_web"], &["kinesis:PutRecord", "kinesis:PutRecords"]).await;
    let sink = sink(&role_config(&setup), None, setup.caller.clone()).await;
    deliver_all(&sink, records("src_web", &[event("via-role")]), "moto").await;
    assert_eq!(read_ids(&setup).await, ["via-role"]);
}

#[tokio::test]
async fn a_wrong_external_id_is_refused_with_the_role_named() {
    let setup = setup("ext-wrong", &["src_web"], &["kinesis:PutRecord", "kinesis:PutRecords"]).await;
    let sink = sink(&role_config(&setup), None, setup.caller.clone()).await;
    let outcomes = sink::Sink::deliver(&sink, records("src_mobile", &[event("refused")])).await;
    // A trust policy is fixed by an operator: the record waits to be retried rather than failing.
    let Outcome::Retryable(reason) = &outcomes[0] else {
        panic!("expected a retryable outcome, got {:?}", outcomes[0])
    };
    assert!(reason.contains(&setup.role_arn), "the reason does not name the role: {reason}");
    assert!(reason.contains("ExternalId \"src_mobile\" was refused"), "{reason}");
    assert!(read_ids(&setup).await.is_empty());
}

#[tokio::test]
async fn the_secret_id_replaces_the_source_id() {
    let setup = setup("ext-secret", &["shared-secret-123"], &["kinesis:PutRecord", "kinesis:PutRecords"]).await;
    let right = sink(&role_config(&setup), Some("shared-secret-123"), setup.caller.clone()).await;
    // The source's own ID is not in the trust policy; only the Secret ID is.
    deliver_all(&right, records("src_web", &[event("via-secret")]), "moto").await;
    assert_eq!(read_ids(&setup).await, ["via-secret"]);

    let wrong = sink(&role_config(&setup), Some("not-the-secret"), setup.caller.clone()).await;
    let outcomes = sink::Sink::deliver(&wrong, records("src_web", &[event("wrong-secret")])).await;
    let Outcome::Retryable(reason) = &outcomes[0] else {
        panic!("expected a retryable outcome, got {:?}", outcomes[0])
    };
    assert!(!reason.contains("not-the-secret"), "the Secret ID leaked into an error: {reason}");
    assert!(reason.contains("secret_id as ExternalId was refused"), "{reason}");
}

#[tokio::test]
async fn a_put_record_only_role_still_delivers_through_the_fallback() {
    // The one action Segment's setup guide grants.
    let setup = setup("put-record-only", &["src_web"], &["kinesis:PutRecord"]).await;
    let sink = sink(&role_config(&setup), None, setup.caller.clone()).await;
    let events: Vec<_> = (0..5).map(|i| event(&format!("single-{i}"))).collect();
    deliver_all(&sink, records("src_web", &events), "moto").await;
    assert!(sink.is_single_record_mode(), "the sink did not switch to PutRecord");
    let mut ids = read_ids(&setup).await;
    ids.sort();
    assert_eq!(ids, (0..5).map(|i| format!("single-{i}")).collect::<Vec<_>>());
}
