//! Prompts converted from the oracle UI workflows must pass a real ComfyUI's `/prompt` validation.
//!
//! Needs a running ComfyUI 0.8.0 with the four custom node packs and empty model files of the
//! right names (see `assets/README.md`), so it is ignored by default and runs with `--ignored`
//! against the server `WAN_PILOT_COMFYUI_URL` names:
//! `WAN_PILOT_COMFYUI_URL=http://127.0.0.1:8199 cargo test --test real_server -- --ignored`.
//! Each accepted prompt is queued, so afterwards the test interrupts and clears the queue.

mod common;

use serde_json::{Value, json};
use wan_pilot::workflow::convert::{ConvertOptions, flat_to_api, repair_for_server};
use wan_pilot::workflow::flat::{Strictness, flatten};
use wan_pilot::workflow::load::load;
use wan_pilot::workflow::node_defs::NodeDefs;

/// A POST of `body` as JSON; returns (status, JSON reply or null).
fn post(base: &str, path: &str, body: &Value) -> (u16, Value) {
    common::http_json(base, "POST", path, Some(body))
}

#[test]
#[ignore = "needs a running ComfyUI: set WAN_PILOT_COMFYUI_URL and pass --ignored"]
fn converted_oracle_prompts_pass_server_validation() {
    let base = common::comfyui_url();
    let mut names: Vec<String> = std::fs::read_dir(common::shared_workflows().join("oracle-api"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    let mut rejected = Vec::new();
    for name in &names {
        let ui_path = common::corpus_file(name);
        let loaded = load(&std::fs::read(&ui_path).unwrap()).unwrap();
        // What `wan-pilot convert` sends: the frontend's conversion, then the repairs for this server.
        let defs = NodeDefs::bundled();
        let mut graph = flatten(&loaded.ui.unwrap(), defs, Strictness::Convert).unwrap();
        for note in repair_for_server(&mut graph, defs) {
            println!("{name}: {note}");
        }
        let prompt = flat_to_api(&graph, defs, &ConvertOptions::default());
        let (status, reply) = post(
            &base,
            "/api/prompt",
            &json!({"prompt": prompt.to_json(), "client_id": "wan-pilot-test"}),
        );
        let errors = reply.get("node_errors").cloned().unwrap_or(Value::Null);
        let clean = status == 200 && errors.as_object().is_none_or(|m| m.is_empty());
        println!("{name}: HTTP {status}, node_errors {errors}");
        if !clean {
            rejected.push(format!("{name}: HTTP {status}: {reply}"));
        }
    }
    post(&base, "/api/interrupt", &json!({}));
    post(&base, "/api/queue", &json!({"clear": true}));
    println!(
        "{} of {} accepted",
        names.len() - rejected.len(),
        names.len()
    );
    assert!(rejected.is_empty(), "rejected:\n{}", rejected.join("\n"));
}
