//! A real output of wan-pilot's edits: the official 14B t2v workflow converted with
//! `--frames 17 --size 64x64 --seed 42 --compile default --frame-tap`, run to the end on a real
//! ComfyUI with tiny random-weight Wan models (see tests/data/tiny-wan/README.md). Dropping that
//! MP4 must give back both the prompt that ran and the workflow it came from.

mod common;

use std::path::Path;

use serde_json::Value;
use wan_pilot::workflow::load::{Origin, load};

fn data(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/tiny-wan")
        .join(name)
}

#[test]
fn the_output_video_gives_back_prompt_and_workflow() {
    let loaded = load(&std::fs::read(data("official_t2v_edited.mp4")).unwrap()).unwrap();
    assert!(matches!(loaded.origin, Origin::Embedded(_)));
    let ui = loaded.ui.expect("the UI workflow");
    assert!(ui.root.nodes.len() > 20);
    let (prompt, _) = loaded.api.expect("the prompt that ran");
    let posted: Value =
        serde_json::from_slice(&std::fs::read(data("official_t2v_edited.posted.json")).unwrap())
            .unwrap();
    assert!(common::same_value(&prompt.to_json(), &posted));
    assert_eq!(prompt.nodes["74"].inputs["length"], serde_json::json!(17));
}

/// Runs `wan-pilot SUBCOMMAND <the video> ARGS…` and reads the JSON it prints.
fn wan_pilot_json(subcommand: &str, args: &[&str]) -> Value {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wan-pilot"))
        .arg(subcommand)
        .arg(data("official_t2v_edited.mp4"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn converting_the_video_starts_from_the_prompt_that_ran() {
    let prompt = wan_pilot_json("convert", &["--frames", "33"]);
    assert_eq!(prompt["74"]["inputs"]["length"], 33);
    assert_eq!(prompt["74"]["inputs"]["width"], 64);
    assert_eq!(prompt["wan-pilot-compile-1"]["inputs"]["mode"], "default");
}

#[test]
fn inspecting_the_video_reports_what_ran() {
    let json = wan_pilot_json("inspect", &["--json"]);
    assert_eq!(json["format"], "api");
    assert_eq!(json["family"], "t2v");
    assert_eq!(json["frames"]["value"], 17);
    assert_eq!(json["width"]["value"], 64);
    let modes: Vec<&Value> = json["compile"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["mode"])
        .collect();
    assert_eq!(modes, vec!["default", "default"]);
}
