//! Every example in configs/ loads and validates, so the examples cannot rot.

use kinesis_sink::SignAs;
use runner::config::{Config, DestinationKind};

use crate::{configs, tributary};

#[test]
fn the_examples_load_without_problems() {
    let config = Config::load(&configs()).unwrap_or_else(|problems| panic!("configs/ has problems:\n{problems}"));
    assert!(config.warnings.0.is_empty(), "warnings:\n{}", config.warnings);
    let files: Vec<String> = ["sources", "destinations", "audiences"]
        .iter()
        .flat_map(|sub| std::fs::read_dir(configs().join(sub)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| p.display().to_string())
        .collect();
    let loaded: Vec<String> = config
        .sources
        .iter()
        .map(|s| s.file.display().to_string())
        .chain(config.destinations.iter().map(|d| d.file.display().to_string()))
        .chain(config.audiences.iter().map(|a| a.file.display().to_string()))
        .collect();
    for file in files {
        assert!(loaded.contains(&file), "{file} was not loaded");
    }
    let main = config.destination("kinesis-main").unwrap();
    let DestinationKind::Kinesis(kinesis) = &main.config.kind else { panic!("kinesis-main is {:?}", main.config.kind) };
    assert_eq!(config.kinesis("kinesis-main").unwrap(), kinesis);
    assert!(config.kinesis("archive").unwrap_err().to_string().contains("is of type file, not kinesis"));
    assert_eq!(config.sources_of("kinesis-main"), ["src_web"]);
    assert!(!config.destination("archive").unwrap().config.enabled);
    // Without a secret_id, kinesis-main's External IDs are its source and the personas source.
    assert_eq!(config.senders_of("kinesis-main"), ["src_personas", "src_web"]);
    // kinesis-demo assumes no role: one identity, the process's own credentials.
    assert_eq!(config.identities("kinesis-demo").unwrap(), [SignAs::Process]);
    let firehose = config.destination("firehose-main").unwrap();
    assert!(!firehose.config.enabled);
    assert_eq!(firehose.config.kind.catalog_name(), Some("Amazon Kinesis Firehose"));
    assert_eq!(config.firehose("firehose-main").unwrap().mapping.len(), 3);
    assert!(config.firehose("kinesis-main").unwrap_err().to_string().contains("is of type kinesis, not firehose"));
}

#[test]
fn validate_accepts_the_examples() {
    let dir = configs();
    let (ok, stdout, stderr) = tributary(&["--config", dir.to_str().unwrap(), "validate"], &[], None);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("2 sources, 5 destinations, 2 audiences and traits, no errors"), "{stdout}");
}

#[test]
fn the_demo_events_are_valid_messages() {
    let text = std::fs::read_to_string(configs().join("demo-events.ndjson")).unwrap();
    let kinds: Vec<_> =
        text.lines().map(|line| segment_model::Message::from_slice(line.as_bytes()).unwrap().kind().as_str()).collect();
    assert_eq!(kinds, ["track", "identify", "page", "screen", "group", "alias"]);
}

#[test]
fn environment_variables_override_file_keys() {
    // The override goes to a child process, so no other test sees it.
    let dir = crate::scratch("env-override");
    crate::write_files(
        &dir,
        &[(
            "destinations/over-ride.toml",
            "name = \"over-ride\"\ntype = \"kinesis\"\n[kinesis]\nregion = \"us-east-1\"\nstream = \"from-file\"\n",
        )],
    );
    let (ok, _, stderr) = tributary(
        &["--config", dir.to_str().unwrap(), "validate"],
        &[("TRIBUTARY__DESTINATIONS__OVER_RIDE__KINESIS__STREAM", "not a stream!")],
        None,
    );
    assert!(!ok);
    assert!(stderr.contains("kinesis.stream: \"not a stream!\" is not a stream name"), "{stderr}");
}
