//! The permission policy a Firehose destination's role needs, derived from its mapping: pure, so that `iam policy`
//! needs no SDK.

pub use aws_common::iam::is_role_arn;
use aws_common::iam::{partition_of, role_account_id};
use serde_json::{Value, json};

use crate::config::FirehoseConfig;
use crate::mapping::Mapping;

/// The Firehose actions the permission policy grants: the two that deliver (Segment's own template grants only
/// PutRecord, which delivers one record per call) and the one `check` uses.
pub const ACTIONS: [&str; 3] = ["firehose:PutRecord", "firehose:PutRecordBatch", "firehose:DescribeDeliveryStream"];

/// The ARN of delivery stream `name` in the destination's region and `account_id`.
pub fn stream_arn(config: &FirehoseConfig, name: &str, account_id: &str) -> String {
    let partition = partition_of(config.role_address.as_deref());
    format!("arn:{partition}:firehose:{}:{account_id}:deliverystream/{name}", config.region)
}

/// The account a policy is for: `explicit` if given, else the role's.
pub fn account_id<'a>(config: &'a FirehoseConfig, explicit: Option<&'a str>) -> Option<&'a str> {
    explicit.or_else(|| config.role_address.as_deref().and_then(role_account_id))
}

/// The permission policy for the role: [`ACTIONS`] on each mapped delivery stream's ARN.
pub fn permission_policy(config: &FirehoseConfig, account_id: &str) -> Value {
    let resources: Vec<String> =
        Mapping::all_streams(&config.mapping).into_iter().map(|name| stream_arn(config, name, account_id)).collect();
    let resource = if resources.len() == 1 { json!(resources[0]) } else { json!(resources) };
    json!({"Version": "2012-10-17", "Statement": [{
        "Sid": "TributaryFirehoseDelivery",
        "Effect": "Allow",
        "Action": ACTIONS,
        "Resource": resource,
    }]})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(role: Option<&str>) -> FirehoseConfig {
        serde_json::from_value(json!({
            "region": "us-west-2",
            "role_address": role,
            "mapping": [
                {"event": "Order Completed", "stream": "orders"},
                {"event": "page", "stream": "pages"},
                {"event": "*", "stream": "orders"},
            ],
        }))
        .unwrap()
    }

    #[test]
    fn the_permission_policy_names_each_mapped_stream_once() {
        let config = config(Some("arn:aws:iam::123456789012:role/tributary-firehose"));
        let account = account_id(&config, None).unwrap();
        assert_eq!(
            permission_policy(&config, account),
            json!({"Version": "2012-10-17", "Statement": [{
                "Sid": "TributaryFirehoseDelivery",
                "Effect": "Allow",
                "Action": ["firehose:PutRecord", "firehose:PutRecordBatch", "firehose:DescribeDeliveryStream"],
                "Resource": [
                    "arn:aws:firehose:us-west-2:123456789012:deliverystream/orders",
                    "arn:aws:firehose:us-west-2:123456789012:deliverystream/pages",
                ],
            }]})
        );
        assert_eq!(account_id(&config, Some("999999999999")), Some("999999999999"));
        assert_eq!(account_id(&self::config(None), None), None);
        let china = self::config(Some("arn:aws-cn:iam::123456789012:role/r"));
        assert_eq!(
            stream_arn(&china, "x", "123456789012"),
            "arn:aws-cn:firehose:us-west-2:123456789012:deliverystream/x"
        );
    }
}
