//! The budget panel in egui_kittest with a real planner: a shared Wan 2.2 14B image-to-video
//! workflow (the 4-step LoRA one) on an RTX 4090 whose desktop holds 6 GiB, so 18 GiB are free.
//! At 33 frames compile off fits; at 81 nothing fits and Auto takes the mode that needs least.
//! Snapshots: `UPDATE_SNAPSHOTS=1 cargo test --test ui_budget` writes the baselines (they need a
//! Vulkan adapter; lavapipe from `mesa-vulkan-drivers libvulkan1` does).

mod common;

use std::time::Instant;

use egui::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use wan_pilot::budget::calibrate::Calibration;
use wan_pilot::budget::physical::CompileMode;
use wan_pilot::policy::zones::{BudgetView, PartKind, Zone};
use wan_pilot::runs::plan::{PlanRequest, Planner};
use wan_pilot::ui::budget_ui::budget_ui;
use wan_pilot::workflow::load::load;
use wan_pilot::workflow::node_defs::NodeDefs;
use wan_pilot::workflow::recognise;

const WORKFLOW: &str = "api_wan22_14B_i2v_lightning_4step.json";

struct Panel {
    view: BudgetView,
    frames: u32,
    mode_override: Option<CompileMode>,
    changes: u32,
}

fn view() -> BudgetView {
    let path = common::corpus_file(WORKFLOW);
    let bytes = std::fs::read(&path).expect("the shared corpus is beside the checkout");
    let loaded = load(&bytes).expect("loads");
    let inspection = recognise::inspect(&loaded, NodeDefs::bundled()).expect("inspects");
    let request = PlanRequest {
        gpu: Some("RTX 4090".into()),
        free_vram_gib: Some(18.0),
        margin_gib: 2.0,
        ..Default::default()
    };
    let planner = Planner::new(&inspection, &request, None, &Calibration::default())
        .expect("plans for a named card");
    let fps = inspection.fps.as_ref().and_then(|s| s.value);
    let started = Instant::now();
    let view = BudgetView::for_planner(&planner, fps);
    println!(
        "budget view for {WORKFLOW} ({} lengths × 5 modes): {:.1} ms (debug build)",
        view.lengths.len(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    view
}

fn harness(frames: u32) -> Harness<'static, Panel> {
    let panel = Panel {
        view: view(),
        frames,
        mode_override: None,
        changes: 0,
    };
    Harness::builder()
        .with_size(egui::vec2(820.0, 560.0))
        .build_ui_state(
            |ui, panel: &mut Panel| {
                egui::Frame::central_panel(ui.style()).show(ui, |ui| {
                    let response =
                        budget_ui(ui, &panel.view, &mut panel.frames, &mut panel.mode_override);
                    if response.changed() {
                        panel.changes += 1;
                    }
                });
            },
            panel,
        )
}

/// The labels of the bar's parts (and the zone rows), as a screen reader reads them.
fn image_labels(harness: &Harness<'_, Panel>) -> Vec<String> {
    harness
        .query_all_by_role(Role::Image)
        .filter_map(|node| node.accesskit_node().label())
        .collect()
}

#[test]
fn the_view_differs_between_33_and_81_frames() {
    let view = view();
    let short = view.at(33).unwrap();
    let long = view.at(81).unwrap();
    assert_eq!(short.chosen, CompileMode::Off, "{}", short.summary);
    assert!(short.fits);
    assert_ne!(long.chosen, short.chosen, "{}", long.summary);
    println!("33: {}\n81: {}", short.summary, long.summary);
    for length in [short, long] {
        let chosen = length.mode(length.chosen).unwrap();
        let parts: Vec<String> = chosen
            .parts
            .iter()
            .map(|p| {
                format!(
                    "{} {:.2} GiB",
                    p.kind.label(),
                    p.bytes / (1u64 << 30) as f64
                )
            })
            .collect();
        println!(
            "{} frames, {}: {}",
            length.frames,
            chosen.mode,
            parts.join(", ")
        );
    }
    for (mode, ranges) in &view.zones.modes {
        let text: Vec<String> = ranges
            .iter()
            .map(|r| format!("{}–{} {}", r.first, r.last, r.zone.label()))
            .collect();
        println!("{mode}: {}", text.join(", "));
    }
    assert_eq!(
        view.zones.zone_at(CompileMode::Off, 33),
        Some(Zone::Fits),
        "33 frames fit without offload"
    );
}

#[test]
fn the_bar_and_the_mode_change_with_the_length() {
    let mut harness = harness(33);
    harness.run();
    let at_33 = image_labels(&harness);
    assert!(
        at_33.iter().any(|l| l.starts_with("Resident weights")),
        "{at_33:?}"
    );
    harness.get_by_label_contains("Auto: off — fits");
    let combo = harness.get_by_role_and_label(Role::ComboBox, "Compile mode");
    assert_eq!(combo.value().as_deref(), Some("Auto (off)"));

    harness.state_mut().frames = 81;
    harness.run();
    let at_81 = image_labels(&harness);
    assert_ne!(at_33, at_81, "the bar's parts should change");
    let chosen = harness.state().view.at(81).unwrap().chosen;
    harness.get_by_label_contains(&format!("Auto: {chosen} — nothing fits at 81 frames"));
    let combo = harness.get_by_role_and_label(Role::ComboBox, "Compile mode");
    assert_eq!(combo.value(), Some(format!("Auto ({chosen})")));
    // Every stacked part and the lines have a name a screen reader (and this test) can find.
    for label in ["Activations", "Workspace", "Usable line", "Other programs"] {
        assert!(
            at_81.iter().any(|l| l.starts_with(label)),
            "{label} in {at_81:?}"
        );
    }
    for mode in CompileMode::ALL {
        harness.get_by_label(&format!("Zones for {mode}"));
    }
}

#[test]
fn the_slider_moves_in_4n_plus_1_steps() {
    let mut harness = harness(33);
    harness.run();
    harness
        .get_by_role_and_label(Role::Slider, "Frames")
        .set_value_accesskit(80.0);
    harness.run();
    assert_eq!(harness.state().frames, 81);
    assert!(harness.state().changes > 0);

    // A drag to about three quarters of the track lands on a 4n+1 length too.
    let rect = harness.get_by_role_and_label(Role::Slider, "Frames").rect();
    let at = egui::pos2(rect.left() + rect.width() * 0.75, rect.center().y);
    harness.drag_at(at);
    harness.run();
    harness.drop_at(at);
    harness.run();
    let frames = harness.state().frames;
    assert_eq!(frames % 4, 1, "{frames}");
    assert!((161..=201).contains(&frames), "{frames}");
    let slider = harness.get_by_role_and_label(Role::Slider, "Frames");
    assert_eq!(
        slider.accesskit_node().numeric_value(),
        Some(f64::from(frames))
    );
    harness.get_by_label_contains(&format!("Frames {frames}"));
}

#[test]
fn the_override_changes_the_mode() {
    let mut harness = harness(33);
    harness.run();
    harness
        .get_by_role_and_label(Role::ComboBox, "Compile mode")
        .click();
    harness.run();
    harness.get_by_label("max-autotune-no-cudagraphs").click();
    harness.run();
    assert_eq!(
        harness.state().mode_override,
        Some(CompileMode::MaxAutotuneNoCudagraphs)
    );
    harness.get_by_label_contains("Manual: max-autotune-no-cudagraphs");
    let combo = harness.get_by_role_and_label(Role::ComboBox, "Compile mode");
    assert_eq!(combo.value().as_deref(), Some("max-autotune-no-cudagraphs"));
    // The bar follows the override: its compile part is max-autotune's one-off bump.
    let shown = harness
        .state()
        .view
        .shown_mode(33, Some(CompileMode::MaxAutotuneNoCudagraphs))
        .unwrap();
    assert!(shown.bytes(PartKind::CompileOverhead) > 0.0);
    assert!(
        image_labels(&harness)
            .iter()
            .any(|l| l.starts_with("Compile overhead")),
    );
    // Auto again.
    harness
        .get_by_role_and_label(Role::ComboBox, "Compile mode")
        .click();
    harness.run();
    harness.get_by_label("Auto (off)").click();
    harness.run();
    assert_eq!(harness.state().mode_override, None);
}

#[test]
fn snapshots_at_33_and_81_frames() {
    let mut harness = harness(33);
    harness.run();
    harness.snapshot("ui_budget_33_frames");
    harness.state_mut().frames = 81;
    harness.run();
    harness.snapshot("ui_budget_81_frames");
}
