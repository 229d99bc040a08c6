//! How fast a sync sends to each destination: its own setting, the audience's, or a share of a Kinesis stream's
//! write limit found through the admin API.

use personas::definition::ComputationConfig;

use crate::config::{Config, DestinationKind};

/// The share of a Kinesis stream's write limit (1,000 records/s per open shard) a sync takes when its rate is not
/// set: room is left for the events `serve` delivers to the same stream.
const KINESIS_SHARE: f64 = 0.8;

/// The rate `destination` is sent at: `--max-rate`, else the audience's setting for it, else, for a Kinesis
/// destination, [`KINESIS_SHARE`] of its stream's open shards' 1,000 records/s (unpaced, with a warning, when the
/// stream cannot be described).
pub(super) async fn rate_for(
    config: &Config,
    definition: &ComputationConfig,
    destination: &str,
    max_rate: Option<u32>,
    err: &mut (dyn std::io::Write + Send),
) -> Option<f64> {
    if let Some(rate) = max_rate.or(definition.max_rate_for(destination)) {
        return Some(f64::from(rate));
    }
    let kinesis = match config.destination(destination).map(|d| &d.config.kind) {
        Some(DestinationKind::Kinesis(kinesis)) => kinesis,
        _ => return None,
    };
    let described = async {
        let identity = config.identity_rule(destination)?.sign_as(definition.source_id());
        let client = kinesis_sink::setup::admin::client(kinesis, identity, &crate::route::base_credentials()).await?;
        // A templated stream is described by its default stream: the one calls without the fields land on.
        anyhow::Ok(kinesis_sink::setup::admin::describe(&client, kinesis.route.fixed()).await?)
    };
    match described.await {
        Ok(summary) if summary.open_shards > 0 => {
            let rate = f64::from(summary.open_shards) * 1_000.0 * KINESIS_SHARE;
            let _ = writeln!(
                err,
                "{}: sending {destination} at most {rate:.0} records/s ({:.0}% of {} open shards at 1,000 each; set \
                 max_rate to choose)",
                definition.name,
                KINESIS_SHARE * 100.0,
                summary.open_shards
            );
            Some(rate)
        }
        Ok(_) => None,
        Err(e) => {
            let _ = writeln!(
                err,
                "{}: could not read the open shards of {destination}'s stream to pace the sync; sending unpaced \
                 (set max_rate to choose): {e:#}",
                definition.name
            );
            None
        }
    }
}
