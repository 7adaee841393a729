//! Conversion against ComfyUI's real web frontend on small graphs, one rule each: for every
//! `tests/data/frontend-oracle/*.ui.json` the frontend's own `graphToPrompt` output is stored
//! beside it (`*.api.json`, recorded in headless Chromium; see that folder's README).

mod common;

use std::path::Path;

use serde_json::Value;
use wan_pilot::workflow::convert::{ConvertOptions, ui_to_api};
use wan_pilot::workflow::load::load;
use wan_pilot::workflow::node_defs::NodeDefs;

#[test]
fn conversion_matches_the_frontend_on_every_recorded_case() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/frontend-oracle");
    let mut cases: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter_map(|n| n.strip_suffix(".ui.json").map(str::to_string))
        .collect();
    cases.sort();
    assert!(cases.len() >= 15, "recorded cases: {cases:?}");
    let mut failures = Vec::new();
    for case in &cases {
        let ui_bytes = std::fs::read(dir.join(format!("{case}.ui.json"))).unwrap();
        let expected: Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{case}.api.json"))).unwrap())
                .unwrap();
        let ui = load(&ui_bytes).unwrap().ui.expect("a UI workflow");
        match ui_to_api(&ui, NodeDefs::bundled(), &ConvertOptions::default()) {
            Ok(prompt) => {
                for d in common::differences(&expected, &prompt.to_json()) {
                    failures.push(format!("{case}: {d}"));
                }
            }
            Err(e) => failures.push(format!("{case}: conversion failed: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} differences from the frontend:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
