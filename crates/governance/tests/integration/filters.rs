//! Destination filters on messages of the Segment spec: Segment's order, sampling, field removal, errors.

use governance::filters::{Action, Step};
use governance::{FilterConfig, Filters};
use segment_model::Message;

fn filters(toml_text: &str) -> Filters {
    #[derive(serde::Deserialize)]
    struct File {
        filters: Vec<FilterConfig>,
    }
    let file: File = toml::from_str(toml_text).unwrap();
    Filters::compile(&file.filters, "main").unwrap()
}

fn message(json: &str) -> Message {
    Message::from_slice(json.as_bytes()).unwrap()
}

const ORDER: &str = r#"
{"type":"track","event":"Order Completed","userId":"u1","messageId":"m1","properties":{"total":30,"email":"a@b.c","coupon":"X"},"context":{"ip":"10.0.0.1","library":{"name":"analytics.js"}}}
"#;

#[test]
fn filters_run_in_segments_order_whatever_the_order_written() {
    let f = filters(
        r#"
        [[filters]]
        if = "type = 'track'"
        action = "allow_properties"
        fields = ["properties.total", "properties.email"]
        [[filters]]
        if = "event = 'Order Completed'"
        action = "drop_properties"
        fields = ["properties.email", "context.ip"]
        [[filters]]
        if = "event = 'Test'"
        action = "drop"
        "#,
    );
    let mut m = message(ORDER);
    let applied = f.apply("src_web", &mut m);
    assert!(applied.kept && applied.changed);
    let order: Vec<(usize, Action)> = applied.steps.iter().map(|(n, a, _)| (*n, *a)).collect();
    assert_eq!(order, [(3, Action::Drop), (2, Action::DropProperties), (1, Action::AllowProperties)]);
    assert_eq!(applied.steps[1].2, Step::Removed(vec!["properties.email".into(), "context.ip".into()]));
    assert_eq!(applied.steps[2].2, Step::Removed(vec!["properties.coupon".into()]));
    let json: serde_json::Value = serde_json::from_slice(&m.to_json_vec()).unwrap();
    assert_eq!(json["properties"], serde_json::json!({"total": 30}));
    assert_eq!(
        json["context"],
        serde_json::json!({"library": {"name": "analytics.js"}}),
        "context is not named by the allow list, so it is kept"
    );
    assert_eq!(json["event"], "Order Completed");
    assert_eq!(json["messageId"], "m1");
}

#[test]
fn a_drop_applies_to_its_source_only() {
    let f = filters(
        r#"
        [[filters]]
        source = "src_test"
        if = "match(event, 'Order *')"
        action = "drop"
        "#,
    );
    assert!(f.apply("src_web", &mut message(ORDER)).kept);
    let applied = f.apply("src_test", &mut message(ORDER));
    assert!(!applied.kept);
    assert_eq!(applied.decided_by, Some("drop"));
}

#[test]
fn a_condition_that_fails_drops_the_message() {
    let f = filters(
        r#"
        [[filters]]
        if = "number(properties.coupon) > 1"
        action = "drop_properties"
        fields = ["properties.coupon"]
        "#,
    );
    let applied = f.apply("src_web", &mut message(ORDER));
    assert!(!applied.kept);
    assert_eq!(applied.decided_by, Some("error"));
    assert!(matches!(&applied.steps[0].2, Step::Failed(why) if why.contains("cannot read \"X\"")));
}

#[test]
fn a_sample_keeps_its_share_and_decides_alike_every_time() {
    let f = filters("[[filters]]\naction = \"sample\"\npercent = 10\n");
    let mut kept = 0;
    for n in 0..20_000 {
        let json = format!(r#"{{"type":"track","event":"E","userId":"u{n}","messageId":"id-{n}"}}"#);
        let first = f.apply("s", &mut message(&json)).kept;
        assert_eq!(first, f.apply("s", &mut message(&json)).kept, "the same message is decided alike");
        kept += usize::from(first);
    }
    assert!((1_800..=2_200).contains(&kept), "kept {kept} of 20,000 at 10%");
    // By user: all of one user's messages alike.
    let by_user = filters("[[filters]]\naction = \"sample\"\npercent = 50\nby = \"user\"\n");
    for user in 0..50 {
        let decisions: Vec<bool> = (0..10)
            .map(|n| {
                let json = format!(r#"{{"type":"track","event":"E","userId":"u{user}","messageId":"m{user}-{n}"}}"#);
                by_user.apply("s", &mut message(&json)).kept
            })
            .collect();
        assert!(decisions.iter().all(|d| *d == decisions[0]), "user {user}: {decisions:?}");
    }
}

#[test]
fn every_problem_names_its_filter_and_key() {
    #[derive(serde::Deserialize)]
    struct File {
        filters: Vec<FilterConfig>,
    }
    let file: File = toml::from_str(
        r#"
        [[filters]]
        if = "type = 'track' and"
        action = "drop"
        [[filters]]
        action = "sample"
        [[filters]]
        action = "drop_properties"
        fields = ["userId", "properties.a b"]
        [[filters]]
        action = "drop"
        percent = 5
        "#,
    )
    .unwrap();
    let problems = Filters::compile(&file.filters, "main").unwrap_err();
    let lines: Vec<String> = problems.iter().map(|p| format!("{} {}: {}", p.filter, p.key, p.message)).collect();
    assert!(lines[0].starts_with("1 if: column 19: expected a value"), "{lines:?}");
    assert_eq!(lines[1], "2 percent: sample needs percent = 0 to 100");
    assert!(lines[2].starts_with("3 fields: \"userId\" is not a path under properties"), "{lines:?}");
    assert!(lines[3].starts_with("3 fields: \"properties.a b\": ' ' at column 13 needs a \\"), "{lines:?}");
    assert!(lines[4].starts_with("4 percent: percent and by are for sample"), "{lines:?}");
    assert!(toml::from_str::<File>("[[filters]]\naction = \"drop\"\nunknown = 1\n").is_err());
}
