//! Run tracking and run history against what a real ComfyUI 0.8.0 sent: every recorded websocket
//! transcript in tests/data/comfy-protocol/ws is replayed through the tracker with the stage map
//! of the prompt it ran, and the sidecars and the history index are written to and read from real
//! folders.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};
use wan_pilot::comfy::protocol::{ExecutionError, WsMessage};
use wan_pilot::runs::history::{
    Attempt, CalibrationFacts, HISTORY_FILE, HistoryItem, LoadedHistory, OUTCOME_OUT_OF_MEMORY,
    OUTCOME_SUCCESS, Parameters, SIDECAR_FILE, SIDECAR_VERSION, ServerInfo, Sidecar,
    add_to_history, index_path, load_history, read_sidecar, rebuild_history, run_records,
    write_sidecar,
};
use wan_pilot::runs::track::{Expert, Outcome, Progress, Stage, StageMap, Tracker};

const HIGH: Stage = Stage::Sampling {
    expert: Expert::High,
};
const LOW: Stage = Stage::Sampling {
    expert: Expert::Low,
};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/comfy-protocol")
}

/// The prompt each transcript ran (tests/data/comfy-protocol/README.md).
fn prompt_file(transcript: &str) -> Option<&'static str> {
    Some(match transcript {
        "compiled_run" => "compiled_run.api.json",
        "plain_run" | "cached_rerun" => "plain_run.api.json",
        "reconnect_mid_run" => "reconnect_mid_run.api.json",
        "runtime_error" => "runtime_error.api.json",
        "interrupt_and_clear" => "interrupt_and_clear.api.json",
        _ => return None,
    })
}

fn prompt_of(transcript: &str) -> Value {
    let file = prompt_file(transcript).expect("a prompt for the transcript");
    let text = fs::read_to_string(data_dir().join("prompts").join(file)).expect("prompt file");
    serde_json::from_str(&text).expect("prompt JSON")
}

/// The text frames the client received, with their time in ms; a `None` marks the moment the
/// socket was closed and opened again.
fn transcript(name: &str) -> Vec<(u64, Option<WsMessage>)> {
    let text = fs::read_to_string(data_dir().join("ws").join(format!("{name}.jsonl")))
        .expect("transcript");
    let mut out = Vec::new();
    let mut connects = 0;
    for line in text.lines() {
        let event: Value = serde_json::from_str(line).expect("JSON line");
        let at_ms = (event["t"].as_f64().expect("time") * 1000.0) as u64;
        match event["ev"].as_str() {
            Some("ws_text") => {
                let frame = serde_json::to_string(&event["msg"]).expect("frame");
                out.push((at_ms, Some(WsMessage::parse(&frame).expect("a message"))));
            }
            Some("ws_connect") => {
                connects += 1;
                if connects > 1 {
                    out.push((at_ms, None));
                }
            }
            _ => {}
        }
    }
    out
}

fn messages(name: &str) -> Vec<(u64, WsMessage)> {
    transcript(name)
        .into_iter()
        .filter_map(|(t, m)| m.map(|m| (t, m)))
        .collect()
}

fn prompt_id_of(messages: &[(u64, WsMessage)]) -> String {
    messages
        .iter()
        .find_map(|(_, m)| match m {
            WsMessage::ExecutionStart { prompt_id } => Some(prompt_id.clone()),
            _ => None,
        })
        .expect("an execution_start")
}

/// What a replay saw.
struct Replay {
    tracker: Tracker,
    /// Stages in the order shown, repeats collapsed.
    stages: Vec<Stage>,
    /// The progress after every message that concerned the run.
    seen: Vec<Progress>,
}

impl Replay {
    /// The first progress seen that `test` accepts.
    fn first_seen(&self, test: impl Fn(&Progress) -> bool) -> &Progress {
        self.seen
            .iter()
            .find(|p| test(p))
            .expect("such a progress was seen")
    }
}

fn replay(name: &str, messages: &[(u64, WsMessage)]) -> Replay {
    let prompt_id = prompt_id_of(messages);
    let mut tracker = Tracker::new(prompt_id, StageMap::from_prompt(&prompt_of(name)));
    let mut stages = vec![tracker.progress().stage];
    let mut seen = Vec::new();
    let mut overall = 0.0;
    for (at_ms, message) in messages {
        if !tracker.apply(message, *at_ms) {
            continue;
        }
        let progress = tracker.progress();
        assert!(
            progress.overall >= overall,
            "{name}: overall went from {overall} back to {} at {message:?}",
            progress.overall
        );
        assert!((0.0..=1.0).contains(&progress.overall));
        overall = progress.overall;
        if stages.last() != Some(&progress.stage) {
            stages.push(progress.stage);
        }
        seen.push(progress);
    }
    Replay {
        tracker,
        stages,
        seen,
    }
}

/// Replays the whole recorded transcript `name`.
fn replay_recorded(name: &str) -> Replay {
    replay(name, &messages(name))
}

/// Replays the whole recorded transcript `name` and checks the stages it showed, in order.
fn replay_through(name: &str, stages: &[Stage]) -> Replay {
    let run = replay_recorded(name);
    assert_eq!(run.stages, stages, "{name}");
    run
}

#[test]
fn every_recorded_transcript_replays_to_its_end() {
    let mut names: Vec<String> = fs::read_dir(data_dir().join("ws"))
        .expect("ws folder")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".jsonl"))
                .map(str::to_string)
        })
        .collect();
    names.sort();
    assert!(names.len() >= 6, "{names:?}");
    for name in &names {
        assert!(
            prompt_file(name).is_some(),
            "transcript {name} has no prompt here: add it to prompt_file"
        );
        let run = replay_recorded(name);
        let end = run.tracker.progress();
        assert!(end.server_done, "{name}: executing null seen");
        assert!(end.finished.is_some(), "{name}: ended");
        match end.finished {
            Some(Outcome::Success) => {
                assert_eq!(end.overall, 1.0, "{name}");
                assert_eq!(end.stage, Stage::Done, "{name}");
                assert_eq!(end.eta_secs, None);
                assert_eq!(end.line(), "done — 100 %");
            }
            _ => assert!(end.overall < 1.0, "{name}: {}", end.overall),
        }
        // Before the end, the bar never claims to be full.
        for progress in &run.seen {
            if progress.finished.is_none() {
                assert!(progress.overall < 1.0, "{name}: {progress:?}");
            }
        }
    }
}

#[test]
fn compiled_run_goes_through_the_wan_stages() {
    let run = replay_through(
        "compiled_run",
        &[
            Stage::Queued,
            Stage::Prepare,
            Stage::TextEncode,
            HIGH,
            LOW,
            Stage::VaeDecode,
            Stage::Save,
            Stage::Done,
        ],
    );
    // Step progress of the two passes, counted in the whole 4-step schedule.
    let steps: Vec<(Stage, (u64, u64))> = run
        .seen
        .iter()
        .filter_map(|p| p.schedule_step.map(|s| (p.stage, s)))
        .collect();
    let mut distinct = steps.clone();
    distinct.dedup();
    assert_eq!(
        distinct,
        vec![(HIGH, (1, 4)), (HIGH, (2, 4)), (LOW, (3, 4)), (LOW, (4, 4))]
    );
    let line = run.first_seen(|p| p.schedule_step == Some((3, 4))).line();
    assert!(
        line.starts_with("low-noise sampling — step 3/4 — ") && line.contains(" % — about "),
        "{line}"
    );
    // Sampling dominates the bar: after the high-noise expert it is about half way.
    let after_high = run.first_seen(|p| p.stage == LOW).overall;
    assert!((0.35..0.65).contains(&after_high), "{after_high}");
    // The compile warm-up (13 s before the first step) is kept apart from the steady pace.
    let timings = run.tracker.timings();
    let high = &timings.samplers[0];
    assert_eq!((high.node.as_str(), high.expert), ("81", Expert::High));
    assert!(high.first_step_ms.unwrap() > 12_000, "{high:?}");
    assert!(high.s_per_step.unwrap() < 1.0, "{high:?}");
    assert_eq!(timings.samplers[1].expert, Expert::Low);
    assert!(timings.sampling_s_per_step.unwrap() < 1.0);
    let total = timings.total_ms.unwrap();
    assert!((15_000..17_000).contains(&total), "{total}");
    let staged: u64 = timings.stages.iter().map(|s| s.ms).sum();
    assert_eq!(staged, total, "{timings:?}");
    let sampling_ms: u64 = timings
        .stages
        .iter()
        .filter(|s| s.stage.ends_with("sampling"))
        .map(|s| s.ms)
        .sum();
    assert!(sampling_ms > 13_000, "{timings:?}");
}

#[test]
fn eta_after_the_warm_up_is_the_pace_of_recent_steps() {
    let run = replay_recorded("compiled_run");
    let eta_at = |step: (u64, u64)| run.first_seen(|p| p.schedule_step == Some(step)).eta_secs;
    // No steady pace after the first (compiling) step: no guess.
    assert_eq!(eta_at((1, 4)), None);
    // After the second step: the rest at ~0.4 s per step, not 13 s.
    let eta = eta_at((2, 4)).unwrap();
    assert!(eta > 0.0 && eta < 3.0, "{eta}");
    // The low-noise expert starts with the high-noise pace.
    let low_start = run.first_seen(|p| p.stage == LOW).eta_secs.unwrap();
    assert!(low_start < 3.0, "{low_start}");
}

#[test]
fn plain_run_with_cached_loaders() {
    let run = replay_through(
        "plain_run",
        &[
            Stage::Queued,
            Stage::Prepare,
            HIGH,
            LOW,
            Stage::VaeDecode,
            Stage::Save,
            Stage::Done,
        ],
    );
    let end = run.tracker.progress();
    let cached: HashSet<&str> = end.cached_nodes.iter().map(String::as_str).collect();
    assert_eq!(cached, HashSet::from(["75", "76", "89", "72", "73"]));
    // The cached loaders count at once.
    let first = run.first_seen(|p| !p.cached_nodes.is_empty());
    assert!(first.overall > 0.0);
}

#[test]
fn cached_rerun_succeeds_with_every_node_cached() {
    let run = replay_through(
        "cached_rerun",
        &[Stage::Queued, Stage::Prepare, Stage::Done],
    );
    let end = run.tracker.progress();
    assert_eq!(end.finished, Some(Outcome::Success));
    assert_eq!(end.cached_nodes.len(), 14);
    assert_eq!(end.overall, 1.0);
    // Everything cached: nearly full before the success message.
    let before = run
        .seen
        .iter()
        .rev()
        .find(|p| p.finished.is_none())
        .unwrap();
    assert!(before.overall > 0.99, "{}", before.overall);
}

#[test]
fn reconnect_mid_run_succeeds_after_the_gap() {
    let events = transcript("reconnect_mid_run");
    let gap = events.iter().position(|(_, m)| m.is_none()).unwrap();
    let run = replay_through(
        "reconnect_mid_run",
        &[
            Stage::Queued,
            Stage::Prepare,
            HIGH,
            Stage::VaeDecode,
            Stage::Save,
            Stage::Done,
        ],
    );
    assert_eq!(run.tracker.progress().finished, Some(Outcome::Success));
    // The replayed `executing` (no prompt id) moves the run past everything it lost.
    let before_gap: Vec<(u64, WsMessage)> = events[..gap]
        .iter()
        .filter_map(|(t, m)| m.clone().map(|m| (*t, m)))
        .collect();
    let cut = replay("reconnect_mid_run", &before_gap);
    let before = cut.tracker.progress();
    assert_eq!(before.stage, HIGH);
    assert_eq!(before.step, Some((1, 2)));
    let after_replay = run.first_seen(|p| p.stage == Stage::VaeDecode);
    assert_eq!(after_replay.node.as_deref(), Some("87"));
    assert!(after_replay.overall > 0.7, "{}", after_replay.overall);
    assert!(after_replay.overall > before.overall);

    // The outcome learnt from /history instead of the socket.
    let mut recovered = cut.tracker.clone();
    assert!(recovered.finish(Outcome::Success, 15_500));
    let end = recovered.progress();
    assert_eq!((end.stage, end.overall), (Stage::Done, 1.0));
    assert_eq!(recovered.timings().total_ms, Some(15_500));
}

#[test]
fn runtime_error_ends_in_error_at_the_failing_node() {
    let run = replay_through("runtime_error", &[Stage::Queued, Stage::Prepare, HIGH]);
    let end = run.tracker.progress();
    let Some(Outcome::Error(error)) = &end.finished else {
        panic!("{end:?}");
    };
    assert_eq!(error.node_id.as_deref(), Some("95"));
    assert_eq!(error.node_type, "LoraLoaderModelOnly");
    assert!(!end.finished.as_ref().unwrap().is_out_of_memory());
    assert_eq!(end.node.as_deref(), Some("95"));
    let line = end.line();
    assert_eq!(
        line,
        "failed during high-noise sampling (LoraLoaderModelOnly #95): SafetensorError: Error while deserializing header: header too large"
    );
}

#[test]
fn out_of_memory_is_flagged() {
    let mut messages = messages("runtime_error");
    for (_, message) in &mut messages {
        if let WsMessage::ExecutionError(error) = message {
            error.node_id = Some("81".into());
            error.node_type = "KSamplerAdvanced".into();
            error.exception_type = "torch.OutOfMemoryError".into();
            error.exception_message = "Allocation on device ".into();
        }
    }
    let run = replay("runtime_error", &messages);
    let end = run.tracker.progress();
    assert!(end.finished.as_ref().unwrap().is_out_of_memory());
    assert_eq!(end.stage, HIGH);
    assert!(
        end.line()
            .starts_with("out of GPU memory during high-noise sampling (KSamplerAdvanced #81)")
    );
}

#[test]
fn interrupt_and_clear_ends_interrupted() {
    let run = replay_through(
        "interrupt_and_clear",
        &[Stage::Queued, Stage::Prepare, HIGH],
    );
    let end = run.tracker.progress();
    assert_eq!(end.finished, Some(Outcome::Interrupted));
    assert_eq!(end.node.as_deref(), Some("81"));
    assert!(
        end.line()
            .starts_with("interrupted during high-noise sampling (KSamplerAdvanced #81) — ")
    );
}

/// A deterministic shuffle: messages within a window of `span` swap places.
fn jumble(messages: &[(u64, WsMessage)], span: usize, seed: u64) -> Vec<(u64, WsMessage)> {
    let mut out = messages.to_vec();
    let mut state = seed;
    for i in 0..out.len() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let j = (i + (state as usize % span)).min(out.len() - 1);
        out.swap(i, j);
    }
    out
}

#[test]
fn out_of_order_and_repeated_messages_never_move_the_bar_back() {
    for name in ["compiled_run", "plain_run", "reconnect_mid_run"] {
        let clean = messages(name);
        for seed in 1..20u64 {
            // Keep the end last: a jumble of the end itself is a different run.
            let (body, end) = clean.split_at(clean.len() - 3);
            let mut jumbled = jumble(body, 4, seed * 7919);
            jumbled.extend_from_slice(end);
            let run = replay(name, &jumbled);
            assert_eq!(run.tracker.progress().overall, 1.0, "{name} seed {seed}");
        }
        let doubled: Vec<(u64, WsMessage)> =
            clean.iter().flat_map(|m| [m.clone(), m.clone()]).collect();
        let once = replay(name, &clean);
        let twice = replay(name, &doubled);
        assert_eq!(once.stages, twice.stages, "{name}");
        assert_eq!(once.tracker.timings(), twice.tracker.timings(), "{name}");
    }
}

#[test]
fn messages_of_another_prompt_are_ignored() {
    let clean = messages("compiled_run");
    let mut mixed = Vec::new();
    for (t, message) in &clean {
        mixed.push((*t, message.clone()));
        let foreign = match message {
            WsMessage::Executing {
                node: Some(node), ..
            } => Some(WsMessage::Executing {
                prompt_id: Some("someone-else".into()),
                node: Some(node.clone()),
            }),
            WsMessage::Progress { node, .. } => Some(WsMessage::Progress {
                prompt_id: Some("someone-else".into()),
                node: node.clone(),
                value: 1,
                max: 1,
            }),
            WsMessage::ExecutionStart { .. } => Some(WsMessage::ExecutionInterrupted {
                prompt_id: "someone-else".into(),
                node_id: Some("81".into()),
            }),
            _ => None,
        };
        mixed.extend(foreign.map(|f| (*t, f)));
    }
    let alone = replay("compiled_run", &clean);
    let together = replay("compiled_run", &mixed);
    assert_eq!(alone.seen, together.seen);
    let errored = WsMessage::ExecutionError(ExecutionError {
        prompt_id: "someone-else".into(),
        node_id: Some("81".into()),
        node_type: "KSamplerAdvanced".into(),
        exception_type: "torch.OutOfMemoryError".into(),
        exception_message: String::new(),
        traceback: Vec::new(),
    });
    let mut tracker = alone.tracker.clone();
    assert!(!tracker.apply(&errored, 20_000));
}

// ---------------------------------------------------------------------------------------------
// History
// ---------------------------------------------------------------------------------------------

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wan-pilot-track-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

/// The names of the entries of `dir`.
fn file_names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Writes `text` as the sidecar of `run_dir` as is (not through `write_sidecar`); returns its path.
fn write_raw_sidecar(run_dir: &Path, text: &str) -> PathBuf {
    let path = run_dir.join(SIDECAR_FILE);
    fs::create_dir_all(run_dir).unwrap();
    fs::write(&path, text).unwrap();
    path
}

/// The prompt ids of a history list, in its order.
fn prompt_ids(items: &[HistoryItem]) -> Vec<&str> {
    items.iter().map(|i| i.prompt_id.as_str()).collect()
}

/// Why the list was rebuilt; fails when it was not.
fn rebuild_reason(loaded: &LoadedHistory) -> &str {
    loaded.rebuilt.as_deref().expect("the list was rebuilt")
}

fn facts() -> CalibrationFacts {
    CalibrationFacts {
        card: "NVIDIA GeForce RTX 4090".into(),
        family: "wan2.2-a14b-fp8".into(),
        tokens: 21 * 30 * 52,
        batched_samples: 1,
        forwards_per_step: 1,
        resident_weights_bytes: 14_000_000_000,
        offloaded_bytes: 0,
        linear_flops_per_forward: 1.0e15,
        attention_flops_per_forward: 2.0e15,
    }
}

/// A sidecar as a run of the compiled transcript leaves it: one out-of-memory attempt at 121
/// frames, then success at 81.
fn sidecar(prompt_id: &str, started_at: u64) -> Sidecar {
    let run = replay_recorded("compiled_run");
    Sidecar {
        prompt_id: prompt_id.into(),
        workflow_file: Some("/home/ann/workflows/t2v.json".into()),
        prompt: prompt_of("compiled_run"),
        parameters: Parameters {
            frames: Some(81),
            width: Some(832),
            height: Some(480),
            seed: Some(7),
            steps: Some(4),
            fps: Some(16.0),
        },
        compile_mode: Some("default".into()),
        attempts: vec![
            Attempt {
                number: 1,
                prompt_id: format!("{prompt_id}-1"),
                compile_mode: Some("max-autotune".into()),
                frames: Some(121),
                outcome: OUTCOME_OUT_OF_MEMORY.into(),
                message: Some("Allocation on device".into()),
                peak_vram_bytes: Some(23_000_000_000),
                took_ms: 40_000,
            },
            Attempt {
                number: 2,
                prompt_id: prompt_id.into(),
                compile_mode: Some("default".into()),
                frames: Some(81),
                outcome: OUTCOME_SUCCESS.into(),
                message: None,
                peak_vram_bytes: Some(21_000_000_000),
                took_ms: 16_000,
            },
        ],
        peak_vram_bytes: Some(21_000_000_000),
        timings: run.tracker.timings(),
        outputs: vec![
            "video/ComfyUI_00003_.mp4".into(),
            "wan-pilot/tap_00035_.png".into(),
        ],
        server: ServerInfo {
            version: Some("0.8.0".into()),
            url: "http://127.0.0.1:8199".into(),
        },
        started_at,
        finished_at: Some(started_at + 60),
        outcome: OUTCOME_SUCCESS.into(),
        calibration: Some(facts()),
        ..Sidecar::default()
    }
}

#[test]
fn sidecar_round_trips_and_reads_old_and_new_files() {
    let dir = scratch("sidecar");
    let written = sidecar("p-1", 1_800_000_000);
    let path = write_sidecar(&dir, &written).unwrap();
    assert_eq!(path, dir.join(SIDECAR_FILE));
    let (read, problem) = read_sidecar(&path).unwrap();
    assert_eq!(read, written);
    assert_eq!(problem, None);
    assert_eq!(
        read.timings.stages.first().map(|s| s.stage.as_str()),
        Some("queued")
    );
    // Nothing else is left in the folder (no temporary file).
    assert_eq!(file_names(&dir), vec![SIDECAR_FILE.to_string()]);

    // An older, smaller file reads with defaults; unknown fields of a newer one are ignored
    // and the newer version is reported.
    fs::write(&path, r#"{"version": 1, "prompt_id": "old"}"#).unwrap();
    let (old, problem) = read_sidecar(&path).unwrap();
    assert_eq!((old.prompt_id.as_str(), problem), ("old", None));
    assert_eq!(old.attempts, Vec::new());
    fs::write(
        &path,
        format!(
            r#"{{"version": {}, "prompt_id": "new", "hologram": true}}"#,
            SIDECAR_VERSION + 1
        ),
    )
    .unwrap();
    let (new, problem) = read_sidecar(&path).unwrap();
    assert_eq!(new.prompt_id, "new");
    assert_eq!(problem.unwrap().newer_version, Some(SIDECAR_VERSION + 1));
    assert_eq!(
        run_records(&new).unwrap_err().to_string(),
        format!(
            "the run record was written by a newer wan-pilot (version {}); it is not used for calibration",
            SIDECAR_VERSION + 1
        )
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn sidecar_writes_are_atomic_for_a_reader() {
    let dir = scratch("atomic");
    let small = sidecar("small", 1);
    let mut big = sidecar("big", 2);
    // A large prompt makes a torn write likely to be seen if the write were not atomic.
    big.prompt = json!({ "padding": "x".repeat(2 << 20) });
    write_sidecar(&dir, &small).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = Arc::clone(&stop);
        let path = dir.join(SIDECAR_FILE);
        std::thread::spawn(move || {
            let mut reads = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let (read, _) = read_sidecar(&path).expect("always a whole sidecar");
                assert!(read.prompt_id == "small" || read.prompt_id == "big");
                reads += 1;
            }
            reads
        })
    };
    for i in 0..24 {
        write_sidecar(&dir, if i % 2 == 0 { &big } else { &small }).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let reads = reader.join().expect("the reader saw only whole files");
    assert!(reads > 0);
    let leftovers: Vec<String> = file_names(&dir)
        .into_iter()
        .filter(|n| n != SIDECAR_FILE)
        .collect();
    assert_eq!(leftovers, Vec::<String>::new());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn rebuild_lists_good_runs_and_reports_broken_ones() {
    let root = scratch("rebuild");
    write_sidecar(
        &root.join("t2v-20270115-101010-ab12"),
        &sidecar("older", 1_800_000_000),
    )
    .unwrap();
    write_sidecar(
        &root.join("t2v-20270116-090000-cd34"),
        &sidecar("newer", 1_800_090_000),
    )
    .unwrap();
    // Grouped one level deeper by hand.
    write_sidecar(
        &root.join("january").join("i2v-x"),
        &sidecar("grouped", 1_800_050_000),
    )
    .unwrap();
    let broken = write_raw_sidecar(
        &root.join("t2v-broken"),
        "{\"version\": 1, \"prompt_id\": \"cut off",
    );
    let future = write_raw_sidecar(
        &root.join("t2v-future"),
        r#"{"version": 99, "prompt_id": "future", "started_at": 1}"#,
    );
    // Folders without a sidecar and loose files are not runs.
    fs::create_dir_all(root.join("video")).unwrap();
    fs::write(root.join("ComfyUI_00001_.png"), b"png").unwrap();

    let scan = rebuild_history(&root).unwrap();
    assert_eq!(
        prompt_ids(&scan.items),
        vec!["newer", "grouped", "older", "future"]
    );
    assert_eq!(scan.items[0].run_dir, root.join("t2v-20270116-090000-cd34"));
    assert_eq!(scan.items[0].attempts, 2);
    assert_eq!(scan.items[0].parameters.frames, Some(81));
    assert_eq!(scan.problems.len(), 2, "{:?}", scan.problems);
    let broken_problem = scan.problems.iter().find(|p| p.path == broken).unwrap();
    assert!(
        broken_problem.reason.contains("not valid JSON"),
        "{broken_problem}"
    );
    assert_eq!(broken_problem.newer_version, None);
    let future_problem = scan.problems.iter().find(|p| p.path == future).unwrap();
    assert_eq!(future_problem.newer_version, Some(99));
    assert!(future_problem.to_string().contains("newer wan-pilot"));

    // No output folder yet: no runs, no error.
    let none = rebuild_history(&root.join("not-there")).unwrap();
    assert!(none.items.is_empty() && none.problems.is_empty());
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn a_lost_or_broken_index_is_rebuilt_from_the_output_folder() {
    let base = scratch("index");
    let data = base.join("data");
    let out = base.join("out");
    let first = out.join("run-a");
    let second = out.join("run-b");
    write_sidecar(&first, &sidecar("a", 100)).unwrap();

    // First start: no index.
    let loaded = load_history(&data, &out).unwrap();
    assert!(
        rebuild_reason(&loaded).contains("was missing"),
        "{loaded:?}"
    );
    assert_eq!(loaded.items.len(), 1);
    assert!(data.join(HISTORY_FILE).is_file());

    // A new run is added to the index.
    let b = sidecar("b", 200);
    write_sidecar(&second, &b).unwrap();
    add_to_history(&data, &out, &second, &b).unwrap();
    let loaded = load_history(&data, &out).unwrap();
    assert_eq!(loaded.rebuilt, None);
    assert_eq!(prompt_ids(&loaded.items), vec!["b", "a"]);

    // The index deleted: the same list comes back from the sidecars.
    fs::remove_file(index_path(&data)).unwrap();
    let rebuilt = load_history(&data, &out).unwrap();
    assert!(rebuilt.rebuilt.is_some());
    assert_eq!(rebuilt.items, loaded.items);

    // The index broken: rebuilt too, and rewritten whole.
    fs::write(index_path(&data), b"{\"version\": 1, \"items\": [").unwrap();
    let repaired = load_history(&data, &out).unwrap();
    assert!(rebuild_reason(&repaired).contains("not valid JSON"));
    assert_eq!(repaired.items, loaded.items);
    assert_eq!(load_history(&data, &out).unwrap().rebuilt, None);

    // A run folder deleted by hand leaves the list.
    fs::remove_dir_all(&first).unwrap();
    let pruned = load_history(&data, &out).unwrap();
    assert_eq!(prompt_ids(&pruned.items), vec!["b"]);

    // Another output folder: its own list.
    let other = base.join("elsewhere");
    write_sidecar(&other.join("run-c"), &sidecar("c", 300)).unwrap();
    let switched = load_history(&data, &other).unwrap();
    assert!(rebuild_reason(&switched).contains("another output folder"));
    assert_eq!(switched.items[0].prompt_id, "c");
    let _ = fs::remove_dir_all(&base);
}

#[test]
fn a_sidecar_gives_back_its_calibration_records() {
    let side = sidecar("p", 1_800_000_000);
    let records = run_records(&side).unwrap();
    assert_eq!(records.len(), 2);
    let (oom, ok) = (&records[0], &records[1]);
    assert!(oom.out_of_memory && !ok.out_of_memory);
    assert_eq!(
        (oom.frames, oom.compile_mode.as_str()),
        (121, "max-autotune")
    );
    assert_eq!((ok.frames, ok.compile_mode.as_str()), (81, "default"));
    // 121 frames are 31 latent frames, 81 are 21.
    assert_eq!(ok.tokens, facts().tokens);
    assert_eq!(oom.tokens, facts().tokens / 21 * 31);
    assert_eq!(ok.peak_reserved_bytes, Some(21_000_000_000));
    assert_eq!(oom.peak_reserved_bytes, Some(23_000_000_000));
    assert_eq!(ok.sampling_s_per_step, side.timings.sampling_s_per_step);
    assert!(ok.sampling_s_per_step.is_some());
    assert_eq!(oom.sampling_s_per_step, None);
    assert_eq!((ok.width, ok.height), (832, 480));
    assert_eq!(ok.timestamp_secs, 1_800_000_060);
    assert_eq!(oom.timestamp_secs, 1_800_000_040);
    for record in &records {
        record.check().unwrap();
    }

    let mut unplanned = side.clone();
    unplanned.calibration = None;
    assert!(
        run_records(&unplanned)
            .unwrap_err()
            .to_string()
            .contains("no calibration facts")
    );
    let mut interrupted = side;
    interrupted.attempts.truncate(1);
    interrupted.attempts[0].outcome = "interrupted".into();
    assert_eq!(run_records(&interrupted).unwrap(), Vec::new());
}
