//! A source's tracking plan as the runner applies it (`serve`, `send`, `plan check`): what happens to a message that
//! violates it, and the `Violation Generated` calls Segment forwards for each violation.

use std::sync::Arc;

use governance::plan::Unplanned;
use governance::{OnViolation, Plan, SourcePlanConfig, Violation};
use segment_model::{Message, MessageType};
use serde_json::{Value, json};
use sha2::Digest as _;

/// The most violations a rejection's reason lists, and the most `Violation Generated` calls one message makes: a
/// message of a few thousand unexpected properties is a few thousand violations, and must not cost a few thousand
/// stored calls (they are all counted).
pub const REASONS: usize = 10;

/// A source's plan and what the source does with its violations.
#[derive(Debug, Clone)]
pub struct SourcePlan {
    /// The plan.
    pub plan: Arc<Plan>,
    /// What happens to a violating message.
    pub on_violation: OnViolation,
    /// Where `Violation Generated` calls go, if anywhere.
    pub forward_to: Option<String>,
    source_id: String,
    source_name: String,
}

/// What a plan made of one message.
#[derive(Debug, Default)]
pub struct Applied {
    /// Every violation found (empty: the message keeps to the plan).
    pub violations: Vec<Violation>,
    /// Why the message is kept out, when it is: (the field, the reason with the schema path), as the rejected table
    /// keeps it.
    pub blocked: Option<(String, String)>,
    /// How many properties or traits `omit_properties` took out.
    pub omitted: usize,
}

impl SourcePlan {
    /// The plan of the source `source_id` (named `source_name`) as its `[tracking_plan]` table says.
    pub fn new(source_id: &str, source_name: &str, plan: Arc<Plan>, table: &SourcePlanConfig) -> SourcePlan {
        SourcePlan {
            plan,
            on_violation: table.on_violation,
            forward_to: table.forward_violations_to.clone(),
            source_id: source_id.to_owned(),
            source_name: source_name.to_owned(),
        }
    }

    /// Checks `message`, and takes out what violates when the source omits properties. An unplanned event is
    /// blocked or allowed by the plan's `unplanned`; other violations by the source's `on_violation`.
    pub fn apply(&self, message: &mut Message) -> Applied {
        let checked = self.plan.check(message);
        if checked.violations.is_empty() {
            return Applied::default();
        }
        let planned: Vec<&Violation> = checked.violations.iter().filter(|v| v.kind != "unplanned").collect();
        let blocked = if checked.unplanned && self.plan.unplanned == Unplanned::Block {
            Some((
                "event".to_owned(),
                format!("tracking plan {:?}: {}", self.plan.name, checked.violations[0].description),
            ))
        } else if self.on_violation == OnViolation::Block && !planned.is_empty() {
            let mut reasons: Vec<String> =
                planned.iter().take(REASONS).map(|v| format!("{} ({})", v.description, v.schema_path)).collect();
            if planned.len() > REASONS {
                reasons.push(format!("and {} more", planned.len() - REASONS));
            }
            let field = if planned[0].field.is_empty() { "message".to_owned() } else { planned[0].field.clone() };
            Some((field, format!("tracking plan {:?}: {}", self.plan.name, reasons.join("; "))))
        } else {
            None
        };
        let omitted = match (&blocked, self.on_violation) {
            (None, OnViolation::OmitProperties) => Plan::omit(message, &checked),
            _ => 0,
        };
        Applied { violations: checked.violations, blocked, omitted }
    }

    /// The `Violation Generated` track call Segment forwards for `violation` of `message`, received at `now`
    /// (RFC 3339). Its messageId is a digest of the source, the message and the violation, so a resent message's
    /// violation is a duplicate, not a new one.
    pub fn violation_message(&self, message: &Message, violation: &Violation, now: &str) -> Message {
        let text = |field: &str| match message.get(field) {
            Some(Value::String(text)) => text,
            _ => String::new(),
        };
        let event_name = match message.kind() {
            MessageType::Track => text("event"),
            MessageType::Page | MessageType::Screen => text("name"),
            other => other.as_str().to_owned(),
        };
        let message_id = message.message_id().unwrap_or_default();
        let mut digest = sha2::Sha256::new();
        for part in [self.source_id.as_str(), message_id, &violation.field, &violation.kind, &violation.schema_path] {
            digest.update(part.as_bytes());
            digest.update([0]);
        }
        let digest: String = digest.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect();
        let forwarded = json!({
            "type": "track",
            "event": "Violation Generated",
            "userId": "schema-violations",
            "messageId": format!("sch-{digest}"),
            "timestamp": now,
            "context": {"library": {"name": "tributary", "version": env!("CARGO_PKG_VERSION")}},
            "integrations": {},
            "properties": {
                "eventMessageID": message_id,
                "eventName": event_name,
                "eventType": message.kind().as_str(),
                "eventSentAt": text("sentAt"),
                "eventTimestamp": text("timestamp"),
                "sourceID": self.source_id,
                "sourceName": self.source_name,
                "trackingPlanID": self.plan.id.clone().unwrap_or_default(),
                "trackingPlanName": self.plan.name,
                "violationDescription": violation.description,
                "violationField": violation.field,
                "violationType": violation.segment_type(),
            },
        });
        Message::from_slice(forwarded.to_string().as_bytes()).expect("a Violation Generated call is a valid track call")
    }
}
