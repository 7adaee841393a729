//! wan-pilot managing a real ComfyUI, when `WAN_PILOT_COMFYUI=DIR` names one: start it, run
//! EmptyImage (832×1216, batch 81) → SaveImage, fetch all 81 frames, stop it, and check that no
//! process is left and the port is free. `WAN_PILOT_COMFYUI_ARGS` adds server arguments
//! (`--cpu` on a machine without an NVIDIA card).
//!
//! Run with: `WAN_PILOT_COMFYUI=/path/to/ComfyUI cargo test --test real_comfyui_run -- --ignored --nocapture`

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::watch;
use wan_pilot::comfy::install;
use wan_pilot::comfy::process::process_alive;
use wan_pilot::comfy::server::{ManagedServer, ServerDirs, ServerSettings, ServerState};
use wan_pilot::runs::run::{CompileChoice, RunSpec, RunTarget, run};
use wan_pilot::workflow::load::load;

#[test]
#[ignore = "needs a real ComfyUI: set WAN_PILOT_COMFYUI=DIR"]
fn a_real_comfyui_runs_81_frames_of_832x1216_and_leaves_nothing_behind() {
    let Some(dir) = std::env::var_os("WAN_PILOT_COMFYUI").map(PathBuf::from) else {
        panic!("set WAN_PILOT_COMFYUI to a ComfyUI folder");
    };
    let extra_args: Vec<String> = std::env::var("WAN_PILOT_COMFYUI_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let work = std::env::temp_dir().join(format!("wan-pilot-real-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    // SAFETY: set before any thread of this test starts; this test binary has no other test.
    unsafe { std::env::set_var("WAN_PILOT_DATA_DIR", work.join("data")) };

    let prompt = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 832, "height": 1216, "batch_size": 81, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "wan-pilot-check/frame"}}
    });
    let workflow_file = work.join("empty_image_81.api.json");
    std::fs::write(&workflow_file, prompt.to_string()).unwrap();
    let loaded = load(prompt.to_string().as_bytes()).unwrap();

    let install = install::validate(&dir).unwrap();
    let t0 = Instant::now();
    let flags = install::read_help(&install).unwrap();
    let help_s = t0.elapsed().as_secs_f64();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (state, _) = watch::channel(ServerState::Stopped);
    let settings = ServerSettings {
        extra_args,
        ..ServerSettings::default()
    };
    let dirs = ServerDirs::in_data_dir(&work.join("data"));
    let t1 = Instant::now();
    let server = rt
        .block_on(ManagedServer::start(
            &install, &flags, &settings, &dirs, &state, None,
        ))
        .unwrap();
    let boot_s = t1.elapsed().as_secs_f64();
    let (pid, port) = (server.pid(), server.port());

    let spec = RunSpec {
        workflow_file,
        frames: None,
        size: None,
        seed: None,
        prompt: None,
        compile: CompileChoice::AsWritten,
        frame_tap: false,
        out_dir: work.join("runs"),
        retry_on_oom: true,
        max_attempts: 3,
    };
    let t2 = Instant::now();
    let mut events = Vec::new();
    let summary = rt
        .block_on(run(
            RunTarget {
                client: server.client(),
                server_exit: Some(server.exit_watch()),
                sampler: None,
                health_interval: Duration::from_secs(2),
                missed_probes: 3,
            },
            &spec,
            &loaded,
            None,
            &mut |event| events.push(format!("{event:?}")),
        ))
        .unwrap();
    let run_s = t2.elapsed().as_secs_f64();
    assert_eq!(summary.outputs.len(), 81, "{events:#?}");
    for path in &summary.outputs {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), 832);
        assert_eq!(u32::from_be_bytes(bytes[20..24].try_into().unwrap()), 1216);
    }
    let output_bytes: u64 = summary
        .outputs
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();

    let t3 = Instant::now();
    let report = rt.block_on(server.stop());
    let stop_s = t3.elapsed().as_secs_f64();
    assert!(report.is_clean(), "{report:?}");
    assert!(!process_alive(pid));
    assert!(TcpListener::bind(("127.0.0.1", port)).is_ok());
    eprintln!(
        "real ComfyUI: --help {help_s:.1} s, start to ready {boot_s:.1} s, run with 81 frames fetched {run_s:.1} s \
         ({:.1} MB), stop {stop_s:.1} s ({:?})",
        output_bytes as f64 / 1e6,
        report.process.as_ref().map(|p| &p.how)
    );
    let _ = std::fs::remove_dir_all(&work);
}
