//! The governance a team would run on the benchmark's traffic (`traffic.rs`): a destination with ten filters, and a
//! source with a tracking plan of 50 track events (the traffic's own, with schemas that fit it, and the rest of
//! Segment's e-commerce, video and B2B specs), its pages and screens, identify traits and a common schema, and
//! privacy controls. The traffic keeps to the plan, as a team's traffic mostly does, so the cost measured is the
//! checking, not the rejected table.

use serde_json::{Value, json};

/// The destination's ten filters, as `[[filters]]` tables: drops of test and bot traffic that match nothing in the
/// traffic (each condition still evaluated on every message), and two that remove properties from some messages.
pub const FILTERS: &str = r#"
[[filters]]
if = "type = 'track' and match(event, 'Test *')"
action = "drop"

[[filters]]
if = "contains(lowercase(context.userAgent), 'headlesschrome')"
action = "drop"

[[filters]]
if = "userId = 'usr_internal_qa' or anonymousId = 'qa-device'"
action = "drop"

[[filters]]
if = "match(context.library.name, 'analytics-test*')"
action = "drop"

[[filters]]
if = "type = 'page' and length(properties.path) > 2000"
action = "drop"

[[filters]]
if = "type in ['alias']"
action = "drop"

[[filters]]
if = "lowercase(context.locale) = 'xx-xx'"
action = "drop"

[[filters]]
if = "typeof(properties.total) = 'string'"
action = "drop"

[[filters]]
if = "event = 'Coupon Applied'"
action = "drop_properties"
fields = ["properties.coupon_id"]

[[filters]]
if = "type = 'page'"
action = "drop_properties"
fields = ["properties.referrer"]
"#;

/// The source's `[tracking_plan]` and `[privacy]` tables (the key from `BENCH_PRIVACY_KEY`).
pub const SOURCE_CONTROLS: &str = r#"
[tracking_plan]
name = "bench"
on_violation = "omit_properties"

[privacy]
hash = ["traits.email", "properties.email"]
drop = ["context.ip", "traits.phone"]
privacy_key = { env = "BENCH_PRIVACY_KEY" }
"#;

/// The privacy key the source's controls read.
pub const PRIVACY_KEY: &str = "the benchmark's privacy key, 32 bytes";

/// The traffic's track events (`traffic::EVENTS` and its server events) and the rest of Segment's specs, 50 in
/// all.
const SPEC_EVENTS: [&str; 37] = [
    "Product List Viewed",
    "Product List Filtered",
    "Promotion Clicked",
    "Product Removed",
    "Checkout Step Viewed",
    "Checkout Step Completed",
    "Payment Info Entered",
    "Order Updated",
    "Order Refunded",
    "Order Cancelled",
    "Coupon Entered",
    "Coupon Denied",
    "Coupon Removed",
    "Product Added to Wishlist",
    "Product Removed from Wishlist",
    "Wishlist Product Added to Cart",
    "Product Shared",
    "Cart Shared",
    "Product Reviewed",
    "Video Playback Started",
    "Video Playback Paused",
    "Video Playback Interrupted",
    "Video Playback Buffer Started",
    "Video Playback Buffer Completed",
    "Video Playback Seek Started",
    "Video Playback Seek Completed",
    "Video Playback Resumed",
    "Video Playback Completed",
    "Video Content Started",
    "Video Content Playing",
    "Video Content Completed",
    "Account Created",
    "Account Deleted",
    "Trial Started",
    "Trial Ended",
    "Invite Sent",
    "Signed Out",
];

fn draft7(properties: Value) -> Value {
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"properties": properties},
        "required": ["properties"],
    })
}

fn product() -> Value {
    json!({
        "type": "object",
        "required": ["product_id"],
        "properties": {
            "product_id": {"type": "string"},
            "sku": {"type": "string"},
            "name": {"type": "string"},
            "category": {"enum": ["Games", "Books", "Apparel", "Home", "Outdoors", "Electronics", "Beauty", "Toys"]},
            "price": {"type": "number", "minimum": 0},
            "quantity": {"type": "integer", "minimum": 1},
        }
    })
}

fn order() -> Value {
    json!({
        "type": "object",
        "required": ["order_id", "total", "products"],
        "properties": {
            "order_id": {"type": "string"},
            "total": {"type": "number", "minimum": 0},
            "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "products": {"type": "array", "items": product()},
        }
    })
}

/// The schema of one of the traffic's events, as the traffic makes its properties.
fn traffic_event(event: &str) -> Value {
    match event {
        "Order Completed" | "Checkout Started" => draft7(order()),
        "Products Searched" => {
            draft7(json!({"type": "object", "required": ["query"], "properties": {"query": {"type": "string"}}}))
        }
        "Signed In" => draft7(json!({"type": "object", "properties": {"method": {"enum": ["email", "google"]}}})),
        "Coupon Applied" => draft7(json!({"type": "object", "required": ["coupon_id"],
                                          "properties": {"coupon_id": {"type": "string"}, "discount": {"type": "integer"}}})),
        _ => draft7(product()),
    }
}

/// The plan file, `tracking-plans/bench.json`.
pub fn plan() -> String {
    let mut ours: Vec<&str> = crate::traffic::EVENTS.to_vec();
    ours.extend(crate::traffic::SERVER_EVENTS.iter().filter(|e| !crate::traffic::EVENTS.contains(e)));
    let mut rules = vec![json!({"type": "COMMON", "jsonSchema": {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"context": {"type": "object", "properties": {
            "library": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
            "locale": {"type": "string"},
        }}},
    }})];
    rules.extend(ours.iter().map(|event| json!({"type": "TRACK", "key": event, "jsonSchema": traffic_event(event)})));
    rules.extend(
        SPEC_EVENTS.iter().map(|event| json!({"type": "TRACK", "key": event, "jsonSchema": draft7(product())})),
    );
    for category in ["Games", "Books", "Apparel", "Home", "Outdoors", "Electronics", "Beauty", "Toys"] {
        let page = json!({"type": "object", "properties": {"path": {"type": "string"}, "url": {"type": "string"}}});
        rules.push(json!({"type": "PAGE", "key": category, "jsonSchema": draft7(page)}));
        rules.push(json!({"type": "SCREEN", "key": format!("{category} Screen"), "jsonSchema": draft7(json!({"type": "object"}))}));
    }
    rules.push(json!({"type": "IDENTIFY", "jsonSchema": {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"traits": {"type": "object", "properties": {
            "email": {"type": "string"},
            "name": {"type": "string"},
            "plan": {"enum": ["free", "pro", "enterprise"]},
            "createdAt": {"type": "string"},
        }}},
    }}));
    assert_eq!(rules.iter().filter(|r| r["type"] == "TRACK").count(), 50, "a plan of 50 events");
    serde_json::to_string_pretty(&json!({"name": "Acme Store", "unplanned": "allow", "rules": rules}))
        .expect("JSON serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traffic_keeps_to_the_plan_and_the_filters_keep_it() {
        let file: governance::PlanFile = serde_json::from_str(&plan()).unwrap();
        let plan = governance::Plan::compile("bench", &file).unwrap();
        let table: toml::Value = toml::from_str(FILTERS).unwrap();
        let filters: Vec<governance::FilterConfig> = table["filters"].clone().try_into().unwrap();
        assert_eq!(filters.len(), 10);
        let filters = governance::Filters::compile(&filters, "archive").unwrap();
        let traffic = crate::traffic::Traffic::new(3);
        let mut checked = 0;
        for _ in 0..20 {
            let body: Value = serde_json::from_slice(&traffic.next().body).unwrap();
            for call in body["batch"].as_array().unwrap() {
                let mut message = segment_model::Message::from_slice(call.to_string().as_bytes()).unwrap();
                let found = plan.check(&message);
                assert!(found.violations.is_empty(), "{call}: {:?}", found.violations);
                assert!(filters.apply("src_bench", &mut message).kept, "{call}");
                checked += 1;
            }
        }
        assert_eq!(checked, 2_000);
    }
}
