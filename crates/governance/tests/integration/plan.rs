//! Tracking plans on Protocols-style plans for events of Segment's spec (Order Completed and its friends).

use governance::plan::{OnViolation, Plan, PlanFile, Unplanned};
use segment_model::Message;
use serde_json::{Value, json};

fn ecommerce() -> Plan {
    let file: PlanFile = serde_json::from_str(include_str!("plans/ecommerce.json")).unwrap();
    Plan::compile("ecommerce", &file).unwrap()
}

fn message(value: Value) -> Message {
    Message::from_slice(value.to_string().as_bytes()).unwrap()
}

fn order(properties: Value) -> Message {
    message(json!({"type": "track", "event": "Order Completed", "userId": "u1", "properties": properties}))
}

/// Each violation as (kind, field).
fn found(plan: &Plan, message: &Message) -> Vec<(String, String)> {
    plan.check(message).violations.into_iter().map(|v| (v.kind, v.field)).collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
}

#[test]
fn an_order_that_keeps_to_the_plan_has_no_violation() {
    let plan = ecommerce();
    assert_eq!(
        (plan.name.as_str(), plan.id.as_deref(), plan.unplanned),
        ("Acme Ecommerce TP", Some("tp_acme_ecommerce"), Unplanned::Block)
    );
    let good = order(json!({"order_id": "50314b8e", "total": 27.5, "currency": "USD",
                            "products": [{"product_id": "507f1f77", "price": 18.99, "quantity": 1}]}));
    assert_eq!(found(&plan, &good), []);
    let viewed = message(
        json!({"type": "track", "event": "Product Viewed", "anonymousId": "a", "properties": {"product_id": "p", "category": "Games"}}),
    );
    assert_eq!(found(&plan, &viewed), []);
    let home = message(json!({"type": "page", "name": "Home", "userId": "u", "properties": {"path": "/"}}));
    assert_eq!(found(&plan, &home), []);
    let alias = message(json!({"type": "alias", "userId": "u", "previousId": "a"}));
    assert_eq!(found(&plan, &alias), [], "an alias has only the common rule");
}

#[test]
fn each_kind_of_violation_names_its_field_and_keyword() {
    let plan = ecommerce();
    let bad = order(json!({"total": "30", "currency": "usd", "gift_note": "x",
                           "products": [{"price": 1, "quantity": 0}]}));
    let mut got = found(&plan, &bad);
    got.sort();
    assert_eq!(
        got,
        pairs(&[
            ("additional_properties", "properties.gift_note"),
            ("minimum", "properties.products.0.quantity"),
            ("pattern", "properties.currency"),
            ("required", "properties.order_id"),
            ("required", "properties.products.0.product_id"),
            ("type", "properties.total"),
        ])
    );
    let checked = plan.check(&bad);
    let required = checked.violations.iter().find(|v| v.field == "properties.order_id").unwrap();
    assert_eq!(required.description, "properties.order_id is required");
    assert!(required.schema_path.starts_with("#/properties/properties/required"), "{}", required.schema_path);
    assert_eq!(required.segment_type(), "Required");
    let wrong_type = checked.violations.iter().find(|v| v.kind == "type").unwrap();
    assert_eq!(wrong_type.segment_type(), "Type");
    let context = message(json!({"type": "track", "event": "Checkout Started", "userId": "u",
                                 "properties": {"order_id": "o"}, "context": {"locale": 7}}));
    assert_eq!(found(&plan, &context), pairs(&[("type", "context.locale")]), "the common rule applies to every event");
    let viewed = message(
        json!({"type": "track", "event": "Product Viewed", "userId": "u", "properties": {"product_id": "p", "category": "Toys"}}),
    );
    assert_eq!(found(&plan, &viewed), pairs(&[("enum", "properties.category")]));
    let identify = message(
        json!({"type": "identify", "userId": "u", "traits": {"email": "not an email", "plan": "pro", "age": 4.5}}),
    );
    let mut got = found(&plan, &identify);
    got.sort();
    assert_eq!(got, pairs(&[("format", "traits.email"), ("type", "traits.age")]), "draft-07 checks formats");
}

#[test]
fn a_violations_description_never_holds_the_value() {
    let plan = ecommerce();
    let bad = order(json!({"order_id": 4111111111111111u64, "total": "secret-total-4242", "products": []}));
    for violation in plan.check(&bad).violations {
        assert!(!violation.description.contains("secret-total-4242"), "{}", violation.description);
        assert!(!violation.description.contains("4111111111111111"), "{}", violation.description);
    }
}

#[test]
fn unplanned_events_and_names_are_violations_of_their_own() {
    let plan = ecommerce();
    let unplanned = message(json!({"type": "track", "event": "Order Refunded", "userId": "u"}));
    let checked = plan.check(&unplanned);
    assert!(checked.unplanned);
    assert_eq!(found(&plan, &unplanned), pairs(&[("unplanned", "event")]));
    assert_eq!(checked.violations[0].segment_type(), "Unplanned Event");
    let pricing = message(json!({"type": "page", "name": "Pricing", "userId": "u"}));
    assert!(plan.check(&pricing).unplanned, "the plan has page rules, and none for Pricing");
    let screen = message(json!({"type": "screen", "name": "Settings", "userId": "u"}));
    assert!(!plan.check(&screen).unplanned, "the plan has no screen rules: screens are not planned");
    let group = message(json!({"type": "group", "userId": "u", "groupId": "g"}));
    assert!(!plan.check(&group).unplanned);
}

#[test]
fn omit_properties_takes_out_what_violates_and_keeps_the_rest() {
    let plan = ecommerce();
    let mut bad = order(
        json!({"total": "30", "currency": "USD", "gift_note": "x", "products": [{"product_id": "p", "quantity": 0}]}),
    );
    let checked = plan.check(&bad);
    assert_eq!(Plan::omit(&mut bad, &checked), 3, "total, gift_note and products (its item's quantity violates)");
    assert_eq!(bad.get("properties").unwrap(), json!({"currency": "USD"}));
    let mut identify =
        message(json!({"type": "identify", "userId": "u", "traits": {"plan": "gold", "email": "a@example.com"}}));
    let checked = plan.check(&identify);
    assert_eq!(Plan::omit(&mut identify, &checked), 1);
    assert_eq!(identify.get("traits").unwrap(), json!({"email": "a@example.com"}));
    let source: governance::SourcePlanConfig =
        toml::from_str("name = \"ecommerce\"\non_violation = \"omit_properties\"").unwrap();
    assert_eq!(source.on_violation, OnViolation::OmitProperties);
}

#[test]
fn each_schema_is_validated_with_the_draft_it_names() {
    let rule = |schema: Value| -> PlanFile {
        serde_json::from_value(json!({"rules": [{"type": "TRACK", "key": "E", "jsonSchema": schema}]})).unwrap()
    };
    let tuple = json!({"properties": {"properties": {"properties": {"pair": {"prefixItems": [{"type": "string"}]}}}}});
    let mut modern = tuple.clone();
    modern["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    let event = message(json!({"type": "track", "event": "E", "userId": "u", "properties": {"pair": [1]}}));
    let plan = Plan::compile("p", &rule(modern)).unwrap();
    assert_eq!(found(&plan, &event), pairs(&[("type", "properties.pair.0")]), "2020-12 knows prefixItems");
    let plan = Plan::compile("p", &rule(tuple)).unwrap();
    assert_eq!(found(&plan, &event), [], "draft-07 (no $schema, as Segment's) does not");
}

#[test]
fn a_broken_plan_names_each_rule_at_fault() {
    let file: PlanFile = serde_json::from_value(json!({"rules": [
        {"type": "TRACK", "jsonSchema": {}},
        {"type": "IDENTIFY", "key": "x", "jsonSchema": {}},
        {"type": "TRACK", "key": "E", "jsonSchema": {"type": 12}},
        {"type": "TRACK", "key": "F", "jsonSchema": {}},
        {"type": "TRACK", "key": "F", "jsonSchema": {}},
    ]}))
    .unwrap();
    let problems = Plan::compile("p", &file).unwrap_err();
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["rules[0].key", "rules[1].key", "rules[2].jsonSchema", "rules[4].type"], "{problems:?}");
    assert!(serde_json::from_value::<PlanFile>(json!({"rules": [{"type": "SOMETHING", "jsonSchema": {}}]})).is_err());
}

#[test]
fn patterns_match_in_linear_time_and_one_that_needs_backtracking_is_refused() {
    let rule = |pattern: &str| -> PlanFile {
        serde_json::from_value(json!({"rules": [{"type": "TRACK", "key": "E", "jsonSchema":
            {"properties": {"properties": {"properties": {"code": {"type": "string", "pattern": pattern}}}}}}]}))
        .unwrap()
    };
    let problems = Plan::compile("p", &rule(r"^(a)\1$")).unwrap_err();
    assert_eq!(problems[0].key, "rules[0].jsonSchema", "{problems:?}");
    // Catastrophic for a backtracking engine; linear here.
    let plan = Plan::compile("p", &rule("^(a+)+$")).unwrap();
    let hostile = format!("{}b", "a".repeat(30_000));
    let event = message(json!({"type": "track", "event": "E", "userId": "u", "properties": {"code": hostile}}));
    let started = std::time::Instant::now();
    assert_eq!(found(&plan, &event), pairs(&[("pattern", "properties.code")]));
    assert!(started.elapsed() < std::time::Duration::from_secs(1), "{:?}", started.elapsed());
}
