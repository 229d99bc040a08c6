//! What a sync is asked to do, what it reports, and what one audience's run works with.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use personas::definition::ComputationConfig;
use personas::diff::Counts;
use personas::state::StateStore;

use crate::config::{Config, Loaded};
use crate::route::Routes;

/// Options of a sync.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Only this audience or trait (by name).
    pub audience: Option<String>,
    /// Print what would be sent; send nothing, change no state.
    pub dry_run: bool,
    /// Send every current member again.
    pub full_resync: bool,
    /// Let a run remove more than the audience's `max_removal_share`.
    pub allow_mass_removal: bool,
    /// Where the state lives.
    pub state_dir: PathBuf,
    /// The most memory an export's members may take before they are sorted on disk.
    pub memory_budget: usize,
    /// Records per second per destination, over every audience's and destination's own setting.
    pub max_rate: Option<u32>,
}

/// What a sync did for one audience or trait.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncSummary {
    /// Its name.
    pub name: String,
    /// The run's ID in the sync log (none for a dry run).
    pub run_id: Option<String>,
    /// Changes found.
    pub counts: Counts,
    /// Changes delivered (or, in a dry run, printed).
    pub sent: u64,
    /// Changes that failed; the next run sends them again.
    pub failed: u64,
    /// Rows of the export that could not be used.
    pub malformed: u64,
    /// Seconds taken.
    pub seconds: f64,
    /// Why the sync of this audience stopped, if it did.
    pub error: Option<String>,
}

impl SyncSummary {
    /// Whether everything went through.
    pub fn is_clean(&self) -> bool {
        self.error.is_none() && self.failed == 0 && self.malformed == 0
    }
}

/// What one audience's run works with.
pub(super) struct RunContext<'a> {
    pub(super) config: &'a Config,
    pub(super) router: Option<&'a Routes>,
    pub(super) options: &'a SyncOptions,
    pub(super) audience: &'a Loaded<ComputationConfig>,
    pub(super) state: Option<Arc<Mutex<StateStore>>>,
    /// The run's number in the sync log (none for a dry run).
    pub(super) run: Option<i64>,
}
