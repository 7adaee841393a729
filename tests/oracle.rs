//! UI → API conversion against ComfyUI's own frontend: for every UI workflow in
//! `../shared/workflows/oracle-api/`, the prompt the frontend produced must equal ours in node ids,
//! class types, every input value and every link.

mod common;

use std::path::PathBuf;

use serde_json::Value;
use wan_pilot::workflow::convert::{ConvertOptions, ui_to_api};
use wan_pilot::workflow::load::load;
use wan_pilot::workflow::node_defs::NodeDefs;

use common::{corpus_file, differences, shared_workflows};

#[test]
fn conversion_matches_the_frontend_for_every_oracle_file() {
    let dir = shared_workflows().join("oracle-api");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("oracle-api folder")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 13,
        "expected the oracle files, found {}",
        files.len()
    );
    let defs = NodeDefs::bundled();
    let mut failures = Vec::new();
    for oracle_path in &files {
        let name = oracle_path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        let oracle: Value = serde_json::from_slice(&std::fs::read(oracle_path).unwrap()).unwrap();
        let bytes = std::fs::read(corpus_file(&name)).unwrap();
        let loaded = load(&bytes).unwrap();
        let ui = loaded.ui.expect("a UI workflow");
        match ui_to_api(&ui, defs, &ConvertOptions::default()) {
            Ok(prompt) => {
                for d in differences(&oracle, &prompt.to_json()) {
                    failures.push(format!("{name}: {d}"));
                }
            }
            Err(e) => failures.push(format!("{name}: conversion failed: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} differences from the frontend:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
