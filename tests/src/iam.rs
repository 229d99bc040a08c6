//! IAM fixtures on the moto that enforces IAM: callers, roles and policies, made with the administrator's keys.

use aws_credential_types::Credentials;
use serde_json::{Value, json};

/// The account moto puts everything in.
pub const ACCOUNT: &str = "123456789012";

/// The administrator's IAM client on the enforcing moto.
pub async fn admin() -> aws_sdk_iam::Client {
    let (url, admin) = crate::env::iam();
    aws_sdk_iam::Client::new(&crate::env::sdk_config(&url, admin).await)
}

/// Creates a user allowed `actions` on everything, with an access key; returns its ARN and credentials.
pub async fn caller(name: &str, actions: &[&str]) -> (String, Credentials) {
    let iam = admin().await;
    let user = crate::stream::unique_name(name);
    let created = iam.create_user().user_name(&user).send().await.expect("create a caller");
    let arn = created.user().unwrap().arn().to_owned();
    let policy =
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]});
    iam.put_user_policy()
        .user_name(&user)
        .policy_name("caller")
        .policy_document(policy.to_string())
        .send()
        .await
        .expect("give the caller its policy");
    let key = iam.create_access_key().user_name(&user).send().await.expect("create the caller's key");
    let key = key.access_key().unwrap();
    (arn, Credentials::new(key.access_key_id(), key.secret_access_key(), None, None, "caller"))
}

/// Creates a role with `trust` as its trust policy and, if given, `policy` as its inline policy; returns its ARN.
pub async fn role(name: &str, trust: &Value, policy: Option<&Value>) -> String {
    let iam = admin().await;
    let created = iam
        .create_role()
        .role_name(name)
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("create role {name}: {e:?}"));
    if let Some(policy) = policy {
        iam.put_role_policy()
            .role_name(name)
            .policy_name("kinesis")
            .policy_document(policy.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("put the policy of role {name}: {e:?}"));
    }
    created.role().unwrap().arn().to_owned()
}

/// A Kinesis client signing as the administrator.
pub async fn admin_kinesis() -> aws_sdk_kinesis::Client {
    let (url, admin) = crate::env::iam();
    crate::stream::client(&url, admin).await
}

/// Attaches `policy` to the role `role` as the inline policy `name`; panics with the emulator's answer if IAM
/// refuses the document.
pub async fn put_role_policy(role: &str, name: &str, policy: &Value) {
    admin()
        .await
        .put_role_policy()
        .role_name(role)
        .policy_name(name)
        .policy_document(policy.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("IAM refused the policy {name} of role {role}: {e:?}"));
}

/// Replaces the trust policy of the role `role`.
pub async fn update_trust(role: &str, trust: &Value) {
    admin()
        .await
        .update_assume_role_policy()
        .role_name(role)
        .policy_document(trust.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("IAM refused the trust policy of role {role}: {e:?}"));
}

/// Removes the inline policy `name` of the role `role`: what revoking a role's access looks like.
pub async fn delete_role_policy(role: &str, name: &str) {
    admin()
        .await
        .delete_role_policy()
        .role_name(role)
        .policy_name(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("deleting the policy {name} of role {role}: {e:?}"));
}
