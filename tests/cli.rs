//! The command line as a user meets it: real files in, one clear line and exit code 2 for bad
//! input, never a panic; and the acceptance example of `inspect`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn shared(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/workflows")
        .join(name)
}

/// Runs the binary with an empty data folder of its own, so a developer's calibration never
/// changes what the tests see.
fn wan_pilot(args: &[&str]) -> Output {
    let data = std::env::temp_dir().join(format!("wan-pilot-cli-data-{}", std::process::id()));
    Command::new(env!("CARGO_BIN_EXE_wan-pilot"))
        .args(args)
        .env("WAN_PILOT_DATA_DIR", data)
        .env_remove("WAN_PILOT_COMFYUI_DIR")
        .output()
        .expect("run wan-pilot")
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wan-pilot-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Exit code 2, one line on stderr that names the file and says `what`, nothing on stdout.
fn assert_refused(output: &Output, file: &Path, what: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one line, got: {stderr}"
    );
    assert!(
        stderr.contains(&file.display().to_string()),
        "names the file: {stderr}"
    );
    assert!(stderr.contains(what), "says '{what}': {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn inspect_reads_the_official_t2v_template() {
    let file = shared("official_wan22_14B_t2v_flat.json");
    let output = wan_pilot(&["inspect", file.to_str().unwrap(), "--json"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["format"], "ui");
    assert_eq!(json["family"], "t2v");
    assert_eq!(json["frames"]["node"], "74");
    assert_eq!(json["frames"]["class_type"], "EmptyHunyuanLatentVideo");
    assert_eq!(json["frames"]["input"], "length");
    assert_eq!(json["frames"]["value"], 81);
    assert_eq!(json["width"]["value"], 640);
    assert_eq!(json["height"]["value"], 640);
    let models = json["models"].as_array().unwrap();
    let active_experts: Vec<&Value> = models
        .iter()
        .filter(|m| m["class_type"] == "UNETLoader" && m["active"] == true)
        .collect();
    assert_eq!(active_experts.len(), 2, "{models:?}");
    let roles: Vec<&str> = active_experts
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert!(
        roles.contains(&"high_noise") && roles.contains(&"low_noise"),
        "{roles:?}"
    );
    let active_loras = models
        .iter()
        .filter(|m| m["role"] == "lora" && m["active"] == true)
        .count();
    assert_eq!(active_loras, 2, "{models:?}");
    // The bypassed 20-step copy: its own two loaders, inactive.
    let inactive_experts = models
        .iter()
        .filter(|m| m["class_type"] == "UNETLoader" && m["active"] == false)
        .count();
    assert_eq!(inactive_experts, 2, "{models:?}");
}

#[test]
fn bad_json_is_one_clear_line() {
    let dir = temp_dir("json");
    let cases: [(&str, &[u8], &str); 6] = [
        ("truncated.json", b"{\"nodes\": [{\"id\": 1, ", "not valid JSON at line 1"),
        ("garbage.json", b"\x00\x01 hello", "not valid JSON"),
        ("empty.json", b"", "empty"),
        ("not-a-workflow.json", b"{\"name\": \"x\", \"version\": 3}", "not a ComfyUI workflow"),
        ("list.json", b"[1, 2, 3]", "not a ComfyUI workflow"),
        (
            "bad-node.json",
            b"{\"nodes\": [{\"id\": 1, \"type\": \"KSampler\"}, {\"type\": \"VAEDecode\"}], \"links\": []}",
            "nodes[1]",
        ),
    ];
    for (name, bytes, what) in cases {
        let file = dir.join(name);
        std::fs::write(&file, bytes).unwrap();
        for command in ["inspect", "convert"] {
            assert_refused(&wan_pilot(&[command, file.to_str().unwrap()]), &file, what);
        }
    }
}

#[test]
fn deep_nesting_and_huge_files_are_refused_cleanly() {
    let dir = temp_dir("big");
    let deep = dir.join("deep.json");
    let mut text = "[".repeat(100_000);
    text.push_str(&"]".repeat(100_000));
    std::fs::write(&deep, text).unwrap();
    assert_refused(
        &wan_pilot(&["inspect", deep.to_str().unwrap()]),
        &deep,
        "recursion limit",
    );

    // 50 MB: a real workflow padded with a note node carrying 50 MB of text.
    let mut workflow: Value =
        serde_json::from_slice(&std::fs::read(shared("official_wan22_14B_t2v_flat.json")).unwrap())
            .unwrap();
    workflow["nodes"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "id": 999_999, "type": "Note", "mode": 0, "widgets_values": ["x".repeat(50 << 20)]
        }));
    let big = dir.join("big.json");
    std::fs::write(&big, serde_json::to_vec(&workflow).unwrap()).unwrap();
    let output = wan_pilot(&["inspect", big.to_str().unwrap(), "--json"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let junk = dir.join("junk.bin");
    std::fs::write(&junk, vec![0xA5u8; 50 << 20]).unwrap();
    assert_refused(
        &wan_pilot(&["inspect", junk.to_str().unwrap()]),
        &junk,
        "not valid JSON",
    );
}

#[test]
fn an_image_without_metadata_says_so() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/embedded/no-metadata.png");
    assert_refused(
        &wan_pilot(&["inspect", file.to_str().unwrap()]),
        &file,
        "no ComfyUI workflow",
    );
}

#[test]
fn broken_graphs_are_refused_not_half_converted() {
    let dir = temp_dir("graphs");
    let cases: [(&str, Value, &str); 4] = [
        (
            "dangling.json",
            serde_json::json!({"nodes": [
                {"id": 1, "type": "VAEDecode", "inputs": [{"name": "samples", "type": "LATENT", "link": 5}]}
            ], "links": []}),
            "link 5",
        ),
        (
            "dangling-api.json",
            serde_json::json!({"1": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0]}}}),
            "node 7",
        ),
        (
            "cycle-api.json",
            serde_json::json!({
                "1": {"class_type": "LatentUpscaleBy", "inputs": {"samples": ["2", 0], "upscale_method": "nearest-exact", "scale_by": 1.5}},
                "2": {"class_type": "LatentUpscaleBy", "inputs": {"samples": ["1", 0], "upscale_method": "nearest-exact", "scale_by": 1.5}}
            }),
            "cycle",
        ),
        (
            "unknown-type.json",
            serde_json::json!({"nodes": [
                {"id": 3, "type": "TotallyMadeUpNode", "mode": 0, "widgets_values": [1]}
            ], "links": []}),
            "TotallyMadeUpNode",
        ),
    ];
    for (name, value, what) in cases {
        let file = dir.join(name);
        std::fs::write(&file, serde_json::to_vec(&value).unwrap()).unwrap();
        assert_refused(
            &wan_pilot(&["convert", file.to_str().unwrap()]),
            &file,
            what,
        );
    }
}

#[test]
fn the_window_says_in_one_line_when_there_is_no_display() {
    let output = Command::new(env!("CARGO_BIN_EXE_wan-pilot"))
        .env("WAN_PILOT_DATA_DIR", temp_dir("no-display"))
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("WAYLAND_SOCKET")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("wan-pilot: the window could not open"),
        "{stderr}"
    );
    assert!(stderr.contains("DISPLAY"), "{stderr}");
}

#[test]
fn run_names_a_missing_workflow_file_before_starting_anything() {
    let output = wan_pilot(&[
        "run",
        "no-such-workflow.json",
        "--server",
        "http://127.0.0.1:9",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("wan-pilot: no-such-workflow.json: "),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn run_says_when_the_server_url_does_not_answer() {
    let workflow = shared("official_wan22_14B_t2v_flat.json");
    let output = wan_pilot(&[
        "run",
        workflow.to_str().unwrap(),
        "--server",
        "http://127.0.0.1:9",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("127.0.0.1:9"), "{stderr}");
}

#[test]
fn help_lists_the_subcommands() {
    let output = wan_pilot(&["--help"]);
    let text = String::from_utf8_lossy(&output.stdout);
    for name in ["inspect", "convert", "plan", "run"] {
        assert!(text.contains(name), "{text}");
    }
}

#[test]
fn plan_projects_every_mode_and_chooses_one() {
    let file = shared("official_wan22_14B_t2v_flat.json");
    let output = wan_pilot(&[
        "plan",
        file.to_str().unwrap(),
        "--gpu",
        "RTX 4090",
        "--free-vram",
        "23",
        "--frames",
        "49,80",
        "--json",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["family"], "t2v");
    assert_eq!(json["card"]["name"], "GeForce RTX 4090");
    let frames: Vec<u64> = json["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["frames"].as_u64().unwrap())
        .collect();
    assert_eq!(frames, vec![49, 81], "80 snaps to 81");
    for row in json["frames"].as_array().unwrap() {
        assert_eq!(row["modes"].as_array().unwrap().len(), 5);
        assert_eq!(
            row["phases"].as_array().unwrap().len(),
            4,
            "text encode, two experts, decode"
        );
        let chosen = row["choice"]["mode"].as_str().unwrap();
        let mode = row["modes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mode"] == chosen)
            .unwrap();
        assert_eq!(mode["fits"], true);
        assert!(row["baseline"].is_string());
    }
}

#[test]
fn plan_without_a_card_says_how_to_name_one() {
    // This machine has no NVIDIA driver; with a GPU present NVML answers instead.
    if std::path::Path::new("/proc/driver/nvidia").exists() {
        return;
    }
    let file = shared("official_wan22_14B_t2v_flat.json");
    let output = wan_pilot(&["plan", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--gpu"), "{stderr}");
}
