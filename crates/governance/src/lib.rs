//! What a team controls about the data it routes, as pure rules over messages (no IO): the runner loads them from
//! the config folder and applies them where messages are delivered.
//!
//! - [`fql`]: Segment's Destination Filter Query Language, parsed once and evaluated per message.
//! - [`filters`]: a destination's filters (sample, drop, drop properties, allow properties), in Segment's order.
//! - [`privacy`]: fields hashed or dropped on a source or a destination, named by path or found by [`matchers`].

pub mod filters;
pub mod fql;
pub mod matchers;
pub mod plan;
mod precheck;
pub mod privacy;
pub mod raw;

pub use filters::{Applied, FilterConfig, FilterProblem, Filters};
pub use fql::Condition;
pub use plan::{Checked, OnViolation, Plan, PlanFile, PlanProblem, SourcePlanConfig, Violation};
pub use privacy::{Change, Privacy, PrivacyAction, PrivacyConfig, PrivacyProblem};
