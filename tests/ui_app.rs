//! The whole window in egui_kittest with the real worker and the stand-in ComfyUI: open a
//! shared workflow, see its frame node and size, change the length, start the server, run,
//! follow the stages, list the outputs, and see an out-of-memory retry.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use serde_json::json;
use wan_pilot::logic::{Command, RunOutcome, WindowSettings};
use wan_pilot::ui::WanPilotApp;

const WORKFLOW: &str = "official_wan22_14B_t2v_flat.json";

struct Setup {
    dir: PathBuf,
    comfy: PathBuf,
}

fn setup(name: &str, scenario: serde_json::Value) -> Setup {
    let dir = common::standin::temp_dir(&format!("ui-{name}"));
    let comfy = common::standin::standin_install(&dir, scenario);
    Setup { dir, comfy }
}

/// One data folder (and runs folder) for the whole test process: the library records history
/// and calibration in `WAN_PILOT_DATA_DIR`, which is process-wide.
fn shared_data_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = common::standin::temp_dir("ui-data");
        // SAFETY: set once, before any app in this process reads it.
        unsafe { std::env::set_var("WAN_PILOT_DATA_DIR", &dir) };
        dir
    })
    .clone()
}

fn harness(setup: &Setup) -> Harness<'static, WanPilotApp> {
    harness_with(setup, |_| {})
}

/// The app with the stand-in's folder and a free port, and `adjust` applied to the settings.
fn harness_with(
    setup: &Setup,
    adjust: impl FnOnce(&mut WindowSettings),
) -> Harness<'static, WanPilotApp> {
    let data_dir = shared_data_dir();
    let mut settings = WindowSettings {
        comfyui_dir: Some(setup.comfy.clone()),
        output_dir: Some(data_dir.join("runs")),
        port: common::standin::free_port(),
        ..WindowSettings::default()
    };
    adjust(&mut settings);
    Harness::builder()
        .with_size([1280.0, 800.0])
        .build_eframe(move |cc| {
            WanPilotApp::new(&cc.egui_ctx, settings, data_dir).expect("the app starts")
        })
}

/// Steps the window (real time passes: the worker and the server are real) until `done`.
fn step_until(
    harness: &mut Harness<'static, WanPilotApp>,
    what: &str,
    within: Duration,
    done: impl Fn(&Harness<'static, WanPilotApp>) -> bool,
) {
    let deadline = Instant::now() + within;
    loop {
        harness.step();
        if done(harness) {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{what}: not within {within:?}; state: server {:?}, run {:?}, toasts {:?}",
                harness.state().state().server,
                harness.state().state().run,
                harness.state().state().toasts
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn shows(harness: &Harness<'static, WanPilotApp>, text: &str) -> bool {
    harness.query_all_by_label_contains(text).next().is_some()
}

/// Folds the "Presets" and "Recent" headers and lets the animation end.
fn fold_presets_and_recent(harness: &mut Harness<'static, WanPilotApp>) {
    for header in ["Presets", "Recent"] {
        harness.get_by_label(header).click();
        for _ in 0..10 {
            harness.step();
        }
    }
}

/// Types `text` into the field labelled `label`.
fn type_into(harness: &mut Harness<'static, WanPilotApp>, label: &str, text: &str) {
    harness.get_by_label(label).focus();
    harness.step();
    harness.get_by_label(label).type_text(text);
    harness.step();
}

fn open_by_typed_path(harness: &mut Harness<'static, WanPilotApp>, path: &Path) {
    harness.get_by_label("Path:").focus();
    harness.step();
    harness
        .get_by_label("Path:")
        .type_text(&path.display().to_string());
    harness.step();
    harness.get_by_label("Open path").click();
    step_until(
        harness,
        "the workflow is read",
        Duration::from_secs(30),
        |h| h.state().state().workflow.is_some(),
    );
    harness.step();
}

#[test]
fn open_plan_start_run_and_list_the_outputs() {
    let setup = setup("run", json!({}));
    let mut harness = harness(&setup);
    step_until(
        &mut harness,
        "ComfyUI found",
        Duration::from_secs(20),
        |h| {
            matches!(
                h.state().state().setup,
                wan_pilot::logic::Setup::Found { .. }
            )
        },
    );
    let workflow = common::corpus_file(WORKFLOW);
    open_by_typed_path(&mut harness, &workflow);
    step_until(
        &mut harness,
        "the file heads the recent list",
        Duration::from_secs(10),
        |h| h.state().state().recent.first() == Some(&workflow),
    );
    assert!(
        shows(&harness, "EmptyHunyuanLatentVideo #74.length"),
        "the frame node is shown"
    );
    assert!(shows(&harness, "640×640"), "the size is shown");
    assert_eq!(harness.state().state().frames, 81);
    // Without NVML the plan is for the picked card, and the window says so.
    if harness.state().state().projection_for_picked_card.is_some() {
        assert!(shows(&harness, "GeForce RTX 5090"));
    }
    let plan_at_81 = harness.state().state().plan.clone();
    harness.state_mut().send(Command::SetFrames(13));
    harness.step();
    assert_eq!(harness.state().state().frames, 13);
    if let (Some(at_81), Some(at_13)) = (plan_at_81, harness.state().state().plan.clone()) {
        // (Peaks need not fall: fewer frames leave room for more resident weights.)
        assert!(at_13.projection.tokens < at_81.projection.tokens);
        assert!(
            at_13.predicted_s < at_81.predicted_s,
            "fewer frames, less time"
        );
    }
    // The preset and recent lists depend on what the other tests (sharing the data folder) did
    // first: folded away for the snapshot.
    fold_presets_and_recent(&mut harness);
    // The typed path depends on where the checkout is: masked.
    let path_field = harness.get_by_label("Path:").rect();
    harness.mask(path_field);
    harness.snapshot("ui_app_opened");

    harness.get_by_label("Start").click();
    step_until(&mut harness, "server ready", Duration::from_secs(60), |h| {
        shows(h, "Server: Ready")
    });
    step_until(
        &mut harness,
        "log lines shown",
        Duration::from_secs(10),
        |h| !h.state().state().log.lines.is_empty(),
    );

    harness.get_by_label("Run").click();
    let mut stages: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        harness.step();
        if let Some(stage) = harness.state().state().run.stage.clone()
            && stages.last() != Some(&stage)
        {
            stages.push(stage);
        }
        if harness.state().state().run.finished.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the run did not finish: {stages:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    harness.step();
    let run = &harness.state().state().run;
    assert!(
        matches!(run.finished, Some(RunOutcome::Done { .. })),
        "{:?} {:?}",
        run.finished,
        run.messages
    );
    assert!(stages.iter().any(|s| s.contains("sampling")), "{stages:?}");
    assert!(
        run.outputs
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "mp4"))
    );
    assert!(shows(&harness, "files"), "the outputs are listed");
    assert!(shows(&harness, "Done in"));
    step_until(
        &mut harness,
        "history reloaded",
        Duration::from_secs(10),
        |h| !h.state().state().history.is_empty(),
    );

    harness.get_by_label("Stop").click();
    step_until(
        &mut harness,
        "server stopped",
        Duration::from_secs(30),
        |h| shows(h, "Server: Stopped"),
    );
    drop(harness);
    let _ = std::fs::remove_dir_all(&setup.dir);
}

#[test]
fn an_out_of_memory_run_shows_the_retry() {
    let setup = setup("oom", json!({"oom_runs": 1}));
    let mut harness = harness(&setup);
    open_by_typed_path(&mut harness, &common::corpus_file(WORKFLOW));
    harness.state_mut().send(Command::SetFrames(13));
    harness.state_mut().send(Command::SetCompileOverride(Some(
        wan_pilot::workflow::edit::CompileMode::MaxAutotune,
    )));
    harness.step();
    // Run starts the server itself when none runs.
    harness.get_by_label("Run").click();
    step_until(
        &mut harness,
        "the run ends",
        Duration::from_secs(180),
        |h| h.state().state().run.finished.is_some(),
    );
    harness.step();
    let run = &harness.state().state().run;
    let oom = run.oom.clone().unwrap_or_default();
    assert!(oom.contains("ran out of GPU memory"), "{:?}", run.messages);
    assert!(oom.contains("Retrying with compile"), "{oom}");
    assert!(
        shows(&harness, "ran out of GPU memory"),
        "the retry is on screen"
    );
    assert!(
        matches!(run.finished, Some(RunOutcome::Done { .. })),
        "{:?}",
        run.finished
    );
    drop(harness);
    let _ = std::fs::remove_dir_all(&setup.dir);
}

/// The labels of the budget bar's parts and zone rows, as a screen reader reads them.
fn image_labels(harness: &Harness<'static, WanPilotApp>) -> Vec<String> {
    harness
        .query_all_by_role(Role::Image)
        .filter_map(|node| node.accesskit_node().label())
        .collect()
}

/// The line next to the compile mode ("Auto: off — fits with …").
fn mode_line(harness: &Harness<'static, WanPilotApp>) -> String {
    harness
        .query_all_by_label_contains("Auto: ")
        .filter_map(|node| {
            let node = node.accesskit_node();
            node.label().or_else(|| node.value())
        })
        .next()
        .unwrap_or_default()
}

fn set_frames_by_slider(harness: &mut Harness<'static, WanPilotApp>, frames: u32) {
    harness
        .get_by_role_and_label(Role::Slider, "Frames")
        .set_value_accesskit(f64::from(frames));
    harness.step();
    harness.step();
    assert_eq!(harness.state().state().frames, frames);
}

#[test]
fn the_slider_changes_the_bar_and_the_mode() {
    // The shared text-to-video workflow planned for a 16 GB card: at 33 frames nothing fits and
    // Auto takes the mode that needs least (default); at 81 the weights are streamed and Auto
    // takes off (`wan-pilot plan --gpu "RTX 4080"` shows the same).
    let setup = setup("budget", json!({}));
    let mut harness = harness_with(&setup, |settings| {
        settings.picked_card = "GeForce RTX 4080".into();
    });
    open_by_typed_path(&mut harness, &common::corpus_file(WORKFLOW));
    assert!(
        harness.state().state().budget.is_some(),
        "{:?}",
        harness.state().state().plan_problem
    );
    set_frames_by_slider(&mut harness, 33);
    let (bar_33, mode_33) = (image_labels(&harness), mode_line(&harness));
    set_frames_by_slider(&mut harness, 81);
    let (bar_81, mode_81) = (image_labels(&harness), mode_line(&harness));
    println!("33: {mode_33}\n81: {mode_81}");
    assert!(bar_33.iter().any(|l| l.starts_with("Resident weights")));
    assert_ne!(bar_33, bar_81, "the bar's parts change with the length");
    assert!(mode_33.starts_with("Auto: ") && mode_81.starts_with("Auto: "));
    assert_ne!(mode_33, mode_81, "the mode line changes with the length");
    let state = harness.state().state();
    if state.projection_for_picked_card.is_some() {
        // The planned card (no NVML here): the chosen mode itself differs.
        let budget = state.budget.clone().unwrap_or_else(|| unreachable!());
        let chosen = |frames| budget.at(frames).map(|l| l.chosen);
        assert_ne!(chosen(33), chosen(81), "{mode_33} / {mode_81}");
        assert_eq!(
            state.plan.as_ref().map(|p| p.mode.clone()),
            chosen(81).map(|m| m.to_string())
        );
    }
    drop(harness);
    let _ = std::fs::remove_dir_all(&setup.dir);
}

#[test]
fn a_setting_changed_in_the_window_is_in_the_file() {
    let setup = setup("settings", json!({}));
    let data_dir = shared_data_dir();
    let settings_file = wan_pilot::settings::settings_path(&data_dir);
    let mut harness = harness(&setup);
    harness.step();
    harness.get_by_label("Settings").click();
    step_until(
        &mut harness,
        "the settings window opens",
        Duration::from_secs(5),
        |h| shows(h, "Extra launch arguments"),
    );
    harness.get_by_label("Extra launch arguments").focus();
    harness.step();
    harness
        .get_by_label("Extra launch arguments")
        .type_text("--lowvram --preview-method auto");
    harness.step();
    harness.get_by_label("Save").click();
    step_until(
        &mut harness,
        "the settings are saved",
        Duration::from_secs(20),
        |h| h.state().state().settings.extra_args == ["--lowvram", "--preview-method", "auto"],
    );
    drop(harness);
    let loaded = wan_pilot::settings::load_settings_in(&data_dir).expect("the file reads");
    assert!(settings_file.exists());
    assert_eq!(
        loaded.settings.extra_args,
        ["--lowvram", "--preview-method", "auto"]
    );
    assert_eq!(
        loaded.settings.comfyui_dir.as_deref(),
        Some(setup.comfy.as_path())
    );
    let _ = std::fs::remove_dir_all(&setup.dir);
}

/// The names of the presets shipped in `workflows/`, the 14B text-to-video one first.
const SHIPPED_PRESETS: [&str; 6] = [
    "Wan 2.2 14B · text to video",
    "Wan 2.2 14B · text to video · 4 steps",
    "Wan 2.2 14B · image to video",
    "Wan 2.2 14B · image to video · 4 steps",
    "Wan 2.2 5B · text to video",
    "Wan 2.2 5B · image to video",
];

#[test]
fn presets_are_listed_opened_and_saved_and_broken_files_reported() {
    let setup = setup("presets", json!({}));
    let presets_dir = shared_data_dir().join("presets");
    std::fs::create_dir_all(&presets_dir).unwrap();
    std::fs::write(presets_dir.join("ui-broken.json"), b"{ this is not JSON").unwrap();
    let mut harness = harness(&setup);
    step_until(
        &mut harness,
        "the presets are listed",
        Duration::from_secs(20),
        |h| h.state().state().presets.entries.is_some(),
    );
    harness.step();
    let entries = harness.state().state().presets.entries.clone().unwrap();
    assert_eq!(entries.iter().filter(|e| e.read_only).count(), 6);
    for name in SHIPPED_PRESETS {
        assert!(harness.query_by_label(name).is_some(), "{name} is listed");
    }

    // The broken file is kept aside (by this listing or another test's) and listed with why.
    let broken = harness.state().state().presets.broken.clone();
    assert!(
        broken
            .iter()
            .any(|b| b.file.to_string_lossy().contains("ui-broken.json")
                && b.reason.contains("not valid JSON")),
        "{broken:?}"
    );
    assert!(shows(&harness, "ui-broken.json"));
    assert!(shows(&harness, "not valid JSON"));

    // Clicking a preset opens it like a workflow, with its defaults.
    harness.get_by_label(SHIPPED_PRESETS[0]).click();
    step_until(
        &mut harness,
        "the preset is open",
        Duration::from_secs(30),
        |h| h.state().state().presets.opened.is_some() && h.state().state().workflow.is_some(),
    );
    harness.step();
    let workflow = harness.state().state().workflow.clone().unwrap();
    let frame_node = workflow.frame_node.clone().expect("a frame node");
    assert!(shows(&harness, &frame_node), "the frame node is shown");
    assert!(shows(&harness, "832×480"), "the size is shown");
    assert_eq!(harness.state().state().inputs.size, Some((832, 480)));
    assert!(shows(&harness, "From the preset"));

    // Save as preset: a user preset file appears in the data folder's presets.
    type_into(&mut harness, "Preset name:", "UI test preset");
    harness.get_by_label("Save as preset").click();
    step_until(
        &mut harness,
        "the new preset is listed",
        Duration::from_secs(20),
        |h| shows(h, "UI test preset"),
    );
    let saved = std::fs::read_dir(&presets_dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .find(|text| text.contains("UI test preset"))
        .expect("a preset file in WAN_PILOT_DATA_DIR/presets");
    let saved: serde_json::Value = serde_json::from_str(&saved).unwrap();
    assert_eq!(saved["defaults"]["width"], 832);
    assert_eq!(saved["defaults"]["height"], 480);
}
