//! `wan-pilot run` end to end against the stand-in ComfyUI (tests/standin, a real child process
//! speaking the recorded protocol), started by wan-pilot itself: a normal run with progress and
//! outputs, out-of-memory then a retry on the next rung, a websocket drop, a crash mid-run, a
//! hang, and wan-pilot being SIGKILLed with its server and the server's children going down with it.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wan_pilot::comfy::process::process_alive;

const WAN_PROMPT: &str = "tests/data/comfy-protocol/prompts/compiled_run.api.json";

struct Setup {
    dir: PathBuf,
    comfy: PathBuf,
}

fn setup(name: &str, scenario: Value) -> Setup {
    let dir = common::standin::temp_dir(&format!("run-{name}"));
    let comfy = common::standin::standin_install(&dir, scenario);
    Setup { dir, comfy }
}

/// A distinct port per test, so parallel tests do not race for one.
fn port_for(name: &str) -> String {
    let hash = name
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    (30_000 + (std::process::id() + hash) % 20_000).to_string()
}

fn command(setup: &Setup, name: &str, workflow: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wan-pilot"));
    cmd.arg("run")
        .arg(workflow)
        .arg("--comfyui")
        .arg(&setup.comfy)
        .arg("--out")
        .arg(setup.dir.join("out"))
        .args(["--port", &port_for(name)])
        .args(extra)
        .env("WAN_PILOT_DATA_DIR", setup.dir.join("data"))
        .env_remove("WAN_PILOT_COMFYUI_DIR");
    cmd
}

fn run(setup: &Setup, name: &str, workflow: &Path, extra: &[&str]) -> Output {
    command(setup, name, workflow, extra).output().unwrap()
}

/// Runs the recorded Wan 2.2 14B prompt, planned for a 48 GB card.
fn run_wan(setup: &Setup, name: &str, extra: &[&str]) -> Output {
    let mut args = vec!["--vram", "48"];
    args.extend_from_slice(extra);
    run(setup, name, Path::new(WAN_PROMPT), &args)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// An API prompt of two nodes: EmptyImage → SaveImage.
fn empty_image_prompt(dir: &Path, width: u32, height: u32, batch: u32) -> PathBuf {
    let prompt = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": width, "height": height, "batch_size": batch, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "wan-pilot-test/frame"}}
    });
    let path = dir.join("empty_image.api.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&prompt).unwrap()).unwrap();
    path
}

fn sidecar(stdout: &str) -> Value {
    let first = stdout.lines().next().expect("an output path");
    // Outputs keep the server's subfolders inside the run folder, which holds the sidecar.
    let sidecar = Path::new(first)
        .ancestors()
        .map(|dir| dir.join("wan-pilot-run.json"))
        .find(|path| path.exists())
        .expect("a sidecar above the outputs");
    serde_json::from_slice(&std::fs::read(sidecar).unwrap()).unwrap()
}

fn standin_gone(setup: &Setup) -> bool {
    let Ok(text) = std::fs::read_to_string(setup.comfy.join("standin.pid")) else {
        return true;
    };
    let pid: u32 = text.trim().parse().unwrap();
    common::standin::gone_within(pid, Duration::from_secs(2))
}

#[test]
fn a_plain_workflow_runs_with_progress_and_its_outputs_are_fetched() {
    let setup = setup("plain", json!({}));
    let workflow = empty_image_prompt(&setup.dir, 64, 48, 5);
    let out = run(&setup, "plain", &workflow, &[]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("server ready at http://127.0.0.1:"),
        "{stderr}"
    );
    assert!(stderr.contains("attempt 1: submitted"), "{stderr}");
    let stdout = text(&out.stdout);
    let files: Vec<&str> = stdout.lines().collect();
    assert_eq!(files.len(), 5, "{stdout}");
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        // PNG IHDR: width and height, big-endian, at bytes 16..24.
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), 64);
        assert_eq!(u32::from_be_bytes(bytes[20..24].try_into().unwrap()), 48);
    }
    let record = sidecar(&stdout);
    assert_eq!(record["outcome"], "success");
    assert_eq!(record["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(record["outputs"].as_array().unwrap().len(), 5);
    assert!(standin_gone(&setup), "the server was stopped");
    let _ = std::fs::remove_dir_all(&setup.dir);
}

#[test]
fn a_wan_run_is_tracked_by_stage_and_records_its_mode() {
    let setup = setup("wan", json!({}));
    let out = run_wan(&setup, "wan", &["--frames", "13", "--frame-tap"]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("compile mode "),
        "the choice is said: {stderr}"
    );
    for stage in ["high-noise sampling", "low-noise sampling", "VAE decode"] {
        assert!(stderr.contains(stage), "{stage} missing from: {stderr}");
    }
    let stdout = text(&out.stdout);
    let frames = stdout
        .lines()
        .filter(|l| l.contains("wan-pilot-frames/frame_"))
        .count();
    assert_eq!(frames, 13, "one PNG per decoded frame: {stdout}");
    assert!(stdout.lines().any(|l| l.ends_with(".mp4")), "{stdout}");
    let record = sidecar(&stdout);
    assert_eq!(record["outcome"], "success");
    assert_eq!(record["parameters"]["frames"], 13);
    assert!(record["calibration"]["tokens"].as_u64().unwrap() > 0);
    let _ = std::fs::remove_dir_all(&setup.dir);
}

#[test]
fn out_of_memory_is_retried_on_the_next_rung() {
    let setup = setup("oom", json!({"oom_runs": 1}));
    let out = run_wan(
        &setup,
        "oom",
        &["--frames", "13", "--compile", "max-autotune"],
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("attempt 1 ran out of GPU memory"),
        "{stderr}"
    );
    assert!(
        stderr.contains("retrying with compile reduce-overhead at 13 frames"),
        "{stderr}"
    );
    let record = sidecar(&text(&out.stdout));
    let attempts = record["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["outcome"], "out of memory");
    assert_eq!(attempts[0]["compile_mode"], "max-autotune");
    assert_eq!(attempts[1]["outcome"], "success");
    assert_eq!(attempts[1]["compile_mode"], "reduce-overhead");
    assert_eq!(record["compile_mode"], "reduce-overhead");
    // The failed length is remembered as a cap for that mode.
    let calibration = std::fs::read_to_string(setup.dir.join("data/calibration.json")).unwrap();
    assert!(calibration.contains("max-autotune"), "{calibration}");
    let _ = std::fs::remove_dir_all(&setup.dir);
}

#[test]
fn out_of_memory_without_retry_stops_at_the_first_attempt() {
    let setup = setup("oom-off", json!({"oom_runs": 1}));
    let out = run_wan(
        &setup,
        "oom-off",
        &["--frames", "13", "--compile", "max-autotune", "--no-retry"],
    );
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("automatic retry is off"), "{stderr}");
    let _ = std::fs::remove_dir_all(&setup.dir);
}

#[test]
fn a_websocket_drop_is_recovered() {
    let setup = setup(
        "ws-drop",
        json!({"ws_drop_at_step": 2, "step_delay_s": 0.1}),
    );
    let out = run_wan(&setup, "ws-drop", &["--frames", "13"]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("lost the server's websocket"), "{stderr}");
    assert!(stderr.contains("websocket reconnected"), "{stderr}");
    assert_eq!(sidecar(&text(&out.stdout))["outcome"], "success");
    let _ = std::fs::remove_dir_all(&setup.dir);
}

#[test]
fn a_crash_mid_run_is_reported_and_nothing_is_left_running() {
    let setup = setup("crash", json!({"crash_at_step": 2}));
    let out = run_wan(&setup, "crash", &["--frames", "13"]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("the server stopped during the run"),
        "{stderr}"
    );
    assert!(standin_gone(&setup));
    let _ = std::fs::remove_dir_all(&setup.dir);
}

#[test]
fn a_hung_server_is_reported_and_stopped() {
    let setup = setup("hang", json!({"hang_at_step": 2}));
    let out = run_wan(&setup, "hang", &["--frames", "13"]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("stopped answering"), "{stderr}");
    assert!(standin_gone(&setup));
    let _ = std::fs::remove_dir_all(&setup.dir);
}

#[test]
fn a_workflow_with_node_types_the_server_lacks_is_not_submitted() {
    let setup = setup("missing", json!({}));
    let prompt = json!({
        "1": {"class_type": "NoSuchNodeAnywhere", "inputs": {}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}
    });
    let workflow = setup.dir.join("missing.api.json");
    std::fs::write(&workflow, prompt.to_string()).unwrap();
    let out = run(&setup, "missing", &workflow, &[]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("NoSuchNodeAnywhere"), "{stderr}");
    assert!(!stderr.contains("submitted"), "{stderr}");
    let _ = std::fs::remove_dir_all(&setup.dir);
}

#[test]
fn the_server_goes_down_within_two_seconds_when_wan_pilot_is_killed() {
    let setup = setup("sigkill", json!({"step_delay_s": 2.0, "grandchild": true}));
    let mut child: Child = command(
        &setup,
        "sigkill",
        Path::new(WAN_PROMPT),
        &["--frames", "13"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Wait until the run is under way: the server is ready and the prompt submitted.
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "never submitted: {seen:?}");
        let line = lines.next().expect("wan-pilot ended early").unwrap();
        let submitted = line.contains("submitted");
        seen.push(line);
        if submitted {
            break;
        }
    }
    let server: u32 = std::fs::read_to_string(setup.comfy.join("standin.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let grandchild: u32 = std::fs::read_to_string(setup.comfy.join("grandchild.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(process_alive(server));
    assert!(process_alive(grandchild));
    child.kill().unwrap();
    child.wait().unwrap();
    let killed_at = Instant::now();
    while process_alive(server) || process_alive(grandchild) {
        assert!(
            killed_at.elapsed() < Duration::from_secs(2),
            "outlived wan-pilot by 2 s: server {server} alive {}, its child {grandchild} alive {}",
            process_alive(server),
            process_alive(grandchild)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = std::fs::remove_dir_all(&setup.dir);
}
