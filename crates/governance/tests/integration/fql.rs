//! FQL against the examples of Segment's Destination Filter Query Language reference, each with the result the
//! reference gives, and the rest of the language as the reference defines it.

use governance::fql::{Condition, Val};
use serde_json::{Map, Value, json};

/// The reference's sample object.
fn sample() -> Map<String, Value> {
    let value = json!({
        "event": "Button Clicked",
        "type": "track",
        "context": {"library": {"name": "analytics.js", "version": "1.0"}},
        "properties": {"features": ["discounts", "dark-mode"]}
    });
    value.as_object().unwrap().clone()
}

#[track_caller]
fn holds(text: &str, on: &Map<String, Value>) -> bool {
    Condition::parse(text).unwrap_or_else(|e| panic!("{text}: {e}")).eval(on).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[track_caller]
fn value(text: &str, on: &Map<String, Value>) -> Val {
    Condition::parse(text).unwrap_or_else(|e| panic!("{text}: {e}")).value(on).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn the_reference_examples_give_the_reference_results() {
    let on = sample();
    let table = [
        ("event = 'Button Clicked'", true),
        ("event = 'Screen Tapped'", false),
        ("context.path.path = '/login'", false),
        ("type = 'identify' or type = 'track'", true),
        ("event = 'Button Clicked' and type = 'track'", true),
        ("match( context.library.version, '1.*' )", true),
        ("match( context.library.version, '2.*' )", false),
        ("type = 'track' and ( event = 'Click' or match( event, 'Button *' ) )", true),
        ("!contains( context.library.name, 'js' )", false),
        ("'dark-mode' in properties.features", true),
        ("'blink' in properties.features", false),
        // The subexpressions section.
        ("!( type in ['track', 'identify'] )", false),
        (
            "( type = 'track' or type = 'identify' ) and ( properties.enabled or match( context.library.name, '*.js' ) )",
            true,
        ),
    ];
    for (text, expected) in table {
        assert_eq!(holds(text, &on), expected, "{text}");
    }
}

#[test]
fn match_is_the_references_glob() {
    let on = Map::new();
    let table = [
        ("match( 'abcd', 'a*d' )", true),
        ("match( '', '*' )", true),
        ("match( 'abc', 'ab' )", false),
        ("match( 'abcd', 'a??d' )", true),
        ("match( 'abcd', '*d' )", true),
        (r"match( 'ab*d', 'ab\\*d' )", true),
        ("match( 'abCd', 'ab[cC]d' )", true),
        ("match( 'abcd', 'ab[a-z]d' )", true),
        ("match( 'abcd', 'ab[A-Z]d' )", false),
        // Beyond the table: literal regex characters, a newline, negated classes, multi-byte characters.
        ("match( 'a.b+c', 'a.b+c' )", true),
        ("match( 'axb', 'a.b' )", false),
        ("match( 'ア', '?' )", true),
        ("match( 'abd', 'ab[^c]' )", true),
    ];
    for (text, expected) in table {
        assert_eq!(holds(text, &on), expected, "{text}");
    }
}

#[test]
fn functions_and_their_null_defaults() {
    let on = json!({"userId": "Ada Lovelace", "properties": {"list": [1, 2, 3], "price": "19.99", "n": 0, "flag": true, "o": {"a": 1}}});
    let on = on.as_object().unwrap().clone();
    let table: Vec<(&str, Val)> = vec![
        ("contains( null, 'x' )", Val::Bool(false)),
        ("length( null )", Val::Num(0.0)),
        ("lowercase( null )", Val::Null),
        ("typeof( null )", Val::Str("null".into())),
        ("match( null, '*' )", Val::Bool(false)),
        ("length( 'ア' )", Val::Num(3.0)),
        ("length( properties.list )", Val::Num(3.0)),
        ("lowercase( userId )", Val::Str("ada lovelace".into())),
        ("uppercase( userId )", Val::Str("ADA LOVELACE".into())),
        ("snakecase( 'test string' )", Val::Str("test_string".into())),
        ("kebabcase( 'test string' )", Val::Str("test-string".into())),
        ("titlecase( 'test string' )", Val::Str("Test String".into())),
        ("typeof( properties.list )", Val::Str("list".into())),
        ("typeof( properties.n )", Val::Str("number".into())),
        ("typeof( properties.flag )", Val::Str("bool".into())),
        ("typeof( properties.o )", Val::Str("object".into())),
        ("number( properties.price ) > 19", Val::Bool(true)),
        ("string( properties.n )", Val::Str("0".into())),
        ("string( 1.5 )", Val::Str("1.5".into())),
        ("bool( properties.n )", Val::Bool(false)),
        ("bool( 'false' )", Val::Bool(false)),
        ("bool( properties.list )", Val::Bool(true)),
        ("length( userId ) > 0", Val::Bool(true)),
        ("length( anonymousId ) > 0", Val::Bool(false)),
        ("properties.list = [1, 2, 3]", Val::Bool(true)),
        ("properties.n != '0'", Val::Bool(true)),
        ("properties.missing = null", Val::Bool(true)),
        ("properties.price > 1", Val::Bool(false)),
        ("-1.5e1 < properties.n", Val::Bool(true)),
        ("properties.n in [0, 'zero']", Val::Bool(true)),
    ];
    for (text, expected) in table {
        assert_eq!(value(text, &on), expected, "{text}");
    }
}

#[test]
fn escaped_paths_reach_any_field_name() {
    let on = json!({"properties": {"product 1": {"price": "19.99"}, "a.b": 1, "ü": true}});
    let on = on.as_object().unwrap().clone();
    assert!(holds(r"properties.product\ 1.price = '19.99'", &on));
    assert!(holds(r"properties.a\.b = 1", &on));
    assert!(holds(r"properties.\ü", &on));
}

#[test]
fn a_condition_that_cannot_be_parsed_names_its_column() {
    let cases = [
        ("userId = oops\"", 14, "unexpected '\"'"),
        ("type = 'track' and", 19, "expected a value"),
        ("frobnicate( event )", 1, "there is no function frobnicate()"),
        ("contains( event )", 1, "contains() takes 2 arguments, not 1"),
        ("event = 'unclosed", 9, "not closed"),
        ("match( event, 'a[b' )", 1, "is not closed with ']'"),
        ("( type = 'track'", 17, "expected ')'"),
        ("type = 'track' 'x'", 16, "after a whole condition"),
        ("", 1, "empty"),
    ];
    for (text, column, words) in cases {
        let error = Condition::parse(text).unwrap_err();
        assert_eq!(error.column, column, "{text}: {error}");
        assert!(error.message.contains(words), "{text}: {error}");
    }
    let deep = format!("{}true{}", "(".repeat(100), ")".repeat(100));
    assert!(Condition::parse(&deep).unwrap_err().message.contains("nests deeper than 64"));
}

#[test]
fn conditions_that_fail_on_a_message_are_errors_not_answers() {
    let on = json!({"event": 5, "properties": {"price": "x"}});
    let on = on.as_object().unwrap().clone();
    for text in ["contains( event, '5' )", "number( properties.price ) > 1", "event and true", "'a' in event", "event"]
    {
        let condition = Condition::parse(text).unwrap();
        assert!(condition.eval(&on).is_err(), "{text}");
    }
}

#[test]
fn evaluation_is_linear_in_the_message() {
    // A pattern that backtracking globs take quadratic time on, against a long string: the compiled glob does not.
    let long = format!("{}b", "a".repeat(200_000));
    let on = json!({"event": long});
    let on = on.as_object().unwrap().clone();
    let condition = Condition::parse("match( event, '*a*a*a*a*a*a*a*c' )").unwrap();
    let started = std::time::Instant::now();
    assert!(!condition.eval(&on).unwrap());
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
}
