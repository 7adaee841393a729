//! The window's areas: left (open a workflow, the run's inputs), centre (length, budget, mode,
//! Run / Cancel, progress), right (outputs), the bottom drawer (server log, history, VRAM over
//! time), the first-run choice and the toasts.

use egui::{Color32, RichText, Ui};

use super::{DrawerTab, UiLocal};
use crate::logic::{AppState, Command, RunOutcome, Setup, WAN_SIZES};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Open (dialog, typed path, drag and drop) and the run's inputs.
pub fn left_ui(ui: &mut Ui, state: &mut AppState, local: &mut UiLocal, outbox: &mut Vec<Command>) {
    ui.heading("Workflow");
    if ui
        .button("Open…")
        .on_hover_text("Open a ComfyUI workflow (Ctrl+O); you can also drop a file on the window")
        .clicked()
    {
        outbox.push(Command::BrowseForWorkflow);
    }
    let label = ui.label("Path:");
    let edit = ui
        .add(
            egui::TextEdit::singleline(&mut local.path_text)
                .hint_text("or type a workflow's path")
                .desired_width(f32::INFINITY),
        )
        .labelled_by(label.id);
    let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
    if (ui.button("Open path").clicked() || enter) && !local.path_text.trim().is_empty() {
        outbox.push(Command::OpenFile(local.path_text.trim().into()));
    }
    if let Some(file) = &state.opening {
        ui.horizontal(|ui| {
            ui.spinner();
            // Truncated: a long path must not widen the panel for good.
            ui.add(egui::Label::new(format!("Reading {}", file.display())).truncate());
        });
    }
    match &state.workflow {
        None => {
            ui.label(RichText::new("No workflow open.").weak());
        }
        Some(workflow) => {
            let name = workflow
                .file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            ui.label(RichText::new(name).strong())
                .on_hover_text(workflow.file.display().to_string());
            egui::Grid::new("workflow_facts")
                .num_columns(2)
                .show(ui, |ui| {
                    ui.label("Task");
                    ui.label(&workflow.family);
                    ui.end_row();
                    ui.label("Frame node");
                    ui.label(workflow.frame_node.as_deref().unwrap_or("none found"));
                    ui.end_row();
                    ui.label("Size");
                    ui.label(match workflow.size {
                        Some((w, h)) => format!("{w}×{h}"),
                        None => "set when it runs".into(),
                    });
                    ui.end_row();
                    ui.label("Frame rate");
                    ui.label(match workflow.fps {
                        Some(fps) => format!("{fps} fps"),
                        None => "not set".into(),
                    });
                    ui.end_row();
                });
            egui::CollapsingHeader::new(format!("Models ({})", workflow.models.len()))
                .id_salt("models")
                .show(ui, |ui| {
                    for model in &workflow.models {
                        ui.label(model);
                    }
                });
            for warning in &workflow.warnings {
                ui.label(RichText::new(warning).color(Color32::from_rgb(220, 160, 40)));
            }
        }
    }
    ui.separator();
    ui.heading("Inputs");
    let inputs = &mut state.inputs;
    ui.label("Prompt");
    ui.add(
        egui::TextEdit::multiline(&mut inputs.prompt)
            .hint_text("empty: the workflow's own prompt")
            .desired_rows(3),
    );
    ui.label("Negative prompt");
    ui.add(
        egui::TextEdit::multiline(&mut inputs.negative_prompt)
            .hint_text("not applied yet: the workflow's own is used")
            .desired_rows(2),
    );
    ui.horizontal(|ui| {
        let label = ui.label("Seed");
        ui.add_enabled(
            !inputs.randomise_seed,
            egui::DragValue::new(&mut inputs.seed),
        )
        .labelled_by(label.id);
        ui.checkbox(&mut inputs.randomise_seed, "randomise")
            .on_hover_text("A new seed for every run");
    });
    ui.horizontal(|ui| {
        let label = ui.label("Steps");
        let mut steps = inputs.steps.unwrap_or(0);
        ui.add(egui::DragValue::new(&mut steps).range(0..=100))
            .labelled_by(label.id)
            .on_hover_text("0: as the workflow says (changing steps is not applied yet)");
        inputs.steps = (steps > 0).then_some(steps);
    });
    ui.horizontal(|ui| {
        let label = ui.label("Size");
        let text = match inputs.size {
            Some((w, h)) => format!("{w}×{h}"),
            None => "as the workflow".into(),
        };
        egui::ComboBox::from_id_salt("size")
            .selected_text(text)
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut inputs.size, None, "as the workflow");
                for &(w, h) in WAN_SIZES {
                    ui.selectable_value(&mut inputs.size, Some((w, h)), format!("{w}×{h}"));
                }
            })
            .response
            .labelled_by(label.id);
    });
    if state.workflow.as_ref().is_some_and(|w| w.takes_start_image) {
        ui.horizontal(|ui| {
            ui.label("Start image");
            ui.label(match &inputs.start_image {
                Some(path) => path.display().to_string(),
                None => "the workflow's own (changing it is not applied yet)".into(),
            });
        });
    }
}

/// The length and its budget, the mode, the predicted time, Run / Cancel and progress.
/// Returns whether Run was clicked.
pub fn centre_ui(ui: &mut Ui, state: &AppState, outbox: &mut Vec<Command>) -> bool {
    let mut run_clicked = false;
    // Run first: the budget panel below is tall, and Run must never be cut off.
    ui.horizontal(|ui| {
        let blocker = state.run_blocker();
        let run = ui
            .add_enabled(
                blocker.is_none(),
                egui::Button::new(RichText::new("Run").strong()),
            )
            .on_hover_text("Run with these settings (Ctrl+Enter)");
        if let Some(why) = blocker {
            run.on_disabled_hover_text(why);
        } else if run.clicked() {
            run_clicked = true;
        }
        if ui
            .add_enabled(state.run.active, egui::Button::new("Cancel"))
            .on_hover_text("Stop the run (Esc)")
            .clicked()
        {
            outbox.push(Command::Cancel);
        }
    });
    progress_ui(ui, state);
    ui.separator();
    ui.heading("Length and memory");
    budget_panel_ui(ui, state, outbox);
    run_clicked
}

/// The budget panel (slider, stacked bar, mode) for the open workflow; the length and the
/// override go back as commands.
fn budget_panel_ui(ui: &mut Ui, state: &AppState, outbox: &mut Vec<Command>) {
    match (&state.budget, &state.plan_problem) {
        (Some(view), _) => {
            let mut frames = state.frames;
            let mut mode_override = state.compile_override;
            let response = super::budget_ui::budget_ui(ui, view, &mut frames, &mut mode_override);
            if response.frames_changed && frames != state.frames {
                outbox.push(Command::SetFrames(frames));
            }
            if response.mode_changed && mode_override != state.compile_override {
                outbox.push(Command::SetCompileOverride(mode_override));
            }
            if let Some(card) = &state.projection_for_picked_card {
                ui.label(
                    RichText::new(format!("Projection for {card} (no NVIDIA GPU found)")).italics(),
                );
            }
            launch_flags_ui(ui, state, outbox);
        }
        (None, Some(problem)) => {
            ui.label(RichText::new(format!("No budget: {problem}")).weak());
        }
        (None, None) if state.workflow.is_none() => {
            ui.label(RichText::new("Open a workflow to see its length and memory.").weak());
        }
        (None, None) => {}
    }
}

/// The server flags the mode needs, and a restart when the running server lacks them.
fn launch_flags_ui(ui: &mut Ui, state: &AppState, outbox: &mut Vec<Command>) {
    let Some(plan) = &state.plan else {
        return;
    };
    if plan.launch_flags.is_empty() {
        return;
    }
    let missing = state.flags_needing_restart();
    if missing.is_empty() {
        ui.weak(format!(
            "This mode needs the server started with {}; wan-pilot adds it when it starts the \
             server.",
            plan.launch_flags.join(" ")
        ))
        .on_hover_text(
            "CUDA graphs replay fixed memory addresses: they need PyTorch's own allocator.",
        );
        return;
    }
    ui.horizontal(|ui| {
        ui.label(
            RichText::new(format!(
                "Restart needed: the running server lacks {} for this mode.",
                missing.join(" ")
            ))
            .color(Color32::from_rgb(220, 160, 40)),
        );
        if ui
            .button("Restart server")
            .on_hover_text("Stops the server and starts it again with the flags this mode needs")
            .clicked()
        {
            outbox.push(Command::RestartServer);
        }
    });
}

fn progress_ui(ui: &mut Ui, state: &AppState) {
    let run = &state.run;
    if let Some(oom) = &run.oom {
        ui.label(
            RichText::new(oom)
                .color(Color32::from_rgb(230, 140, 40))
                .strong(),
        );
    }
    if run.active || run.finished.is_some() {
        let mut text = run.stage.clone().unwrap_or_default();
        if let Some((step, of)) = run.step {
            text.push_str(&format!(" — step {step}/{of}"));
        }
        if let Some(eta) = run.eta_s {
            text.push_str(&format!(" — about {} left", duration_words(eta)));
        }
        if run.attempt > 1 {
            text.push_str(&format!(" — attempt {}", run.attempt));
        }
        ui.add(egui::ProgressBar::new(run.overall as f32).show_percentage());
        ui.label(format!("Stage: {text}"));
    }
    if let Some(planned) = &run.planned {
        ui.label(RichText::new(planned).weak());
    }
    match &run.finished {
        Some(RunOutcome::Done { total_s }) => {
            ui.label(
                RichText::new(format!("Done in {}", duration_words(*total_s)))
                    .color(Color32::from_rgb(80, 180, 90)),
            );
        }
        Some(RunOutcome::Failed { message }) => {
            ui.label(
                RichText::new(format!("Failed: {message}")).color(Color32::from_rgb(220, 70, 60)),
            );
        }
        None => {}
    }
    if !run.messages.is_empty() {
        egui::CollapsingHeader::new("Run messages")
            .id_salt("run_messages")
            .default_open(true)
            .show(ui, |ui| {
                for message in &run.messages {
                    ui.label(message);
                }
            });
    }
}

/// The outputs of the current or last run (the preview issue replaces the list).
pub fn outputs_ui(ui: &mut Ui, state: &AppState) {
    ui.heading("Outputs");
    if state.run.outputs.is_empty() {
        ui.label(RichText::new("Nothing yet.").weak());
        return;
    }
    ui.label(format!("{} files", state.run.outputs.len()));
    egui::ScrollArea::vertical()
        .id_salt("outputs")
        .show(ui, |ui| {
            for path in &state.run.outputs {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                ui.label(name).on_hover_text(path.display().to_string());
            }
        });
}

/// The bottom drawer: server log, run history, VRAM over time.
pub fn drawer_ui(ui: &mut Ui, state: &AppState, local: &mut UiLocal, outbox: &mut Vec<Command>) {
    ui.horizontal(|ui| {
        ui.selectable_value(&mut local.drawer, DrawerTab::Log, "Server log");
        ui.selectable_value(&mut local.drawer, DrawerTab::History, "History");
        ui.selectable_value(&mut local.drawer, DrawerTab::Vram, "VRAM over time");
    });
    ui.separator();
    match local.drawer {
        DrawerTab::Log => log_ui(ui, state, local),
        DrawerTab::History => history_ui(ui, state, outbox),
        DrawerTab::Vram => vram_plot_ui(ui, state),
    }
}

fn log_ui(ui: &mut Ui, state: &AppState, local: &mut UiLocal) {
    ui.horizontal(|ui| {
        let label = ui.label("Search:");
        ui.add(egui::TextEdit::singleline(&mut local.log_search).desired_width(200.0))
            .labelled_by(label.id);
        let needle = local.log_search.to_lowercase();
        let shown: Vec<&String> = state
            .log
            .lines
            .iter()
            .filter(|l| needle.is_empty() || l.to_lowercase().contains(&needle))
            .collect();
        if ui
            .button("Copy")
            .on_hover_text("Copy the lines shown")
            .clicked()
        {
            let text: Vec<&str> = shown.iter().map(|s| s.as_str()).collect();
            ui.ctx().copy_text(text.join("\n"));
        }
        if ui
            .button("Copy diagnostics")
            .on_hover_text(
                "Server state, GPU, workflow, plan, last run and the log's end, for a bug report",
            )
            .clicked()
        {
            ui.ctx().copy_text(diagnostics(state));
        }
    });
    let needle = local.log_search.to_lowercase();
    egui::ScrollArea::vertical()
        .id_salt("server_log")
        .stick_to_bottom(true)
        .auto_shrink([false, false])
        .show(ui, |ui| {
            for line in state
                .log
                .lines
                .iter()
                .filter(|l| needle.is_empty() || l.to_lowercase().contains(&needle))
            {
                ui.label(RichText::new(line).monospace());
            }
        });
}

/// Everything a bug report needs, as text.
pub fn diagnostics(state: &AppState) -> String {
    let mut text = format!(
        "wan-pilot {}\nserver: {:?}\ngpu: {:?}\nsetup: {:?}\n",
        env!("CARGO_PKG_VERSION"),
        state.server,
        state.gpu,
        state.setup
    );
    if let Some(workflow) = &state.workflow {
        text.push_str(&format!("workflow: {:?}\n", workflow));
    }
    if let Some(plan) = &state.plan {
        text.push_str(&format!(
            "plan: {} frames, mode {}, peak {:?} GiB, fits {}\n",
            plan.frames, plan.mode, plan.peak_gib, plan.fits
        ));
    }
    text.push_str(&format!(
        "last run: stage {:?}, attempt {}, finished {:?}\nmessages:\n{}\n--- log (last 100 lines) ---\n",
        state.run.stage,
        state.run.attempt,
        state.run.finished,
        state.run.messages.join("\n")
    ));
    let skip = state.log.lines.len().saturating_sub(100);
    for line in state.log.lines.iter().skip(skip) {
        text.push_str(line);
        text.push('\n');
    }
    text
}

fn history_ui(ui: &mut Ui, state: &AppState, outbox: &mut Vec<Command>) {
    ui.horizontal(|ui| {
        ui.label(format!("{} runs", state.history.len()));
        if ui.button("Reload").clicked() {
            outbox.push(Command::ReloadHistory);
        }
    });
    for problem in &state.history_problems {
        ui.label(RichText::new(problem).color(Color32::from_rgb(220, 160, 40)));
    }
    egui::ScrollArea::vertical()
        .id_salt("history")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            egui::Grid::new("history_grid")
                .striped(true)
                .num_columns(6)
                .show(ui, |ui| {
                    for head in ["Shape", "Mode", "Time", "Peak VRAM", "Outcome", "Folder"] {
                        ui.label(RichText::new(head).strong());
                    }
                    ui.end_row();
                    for item in &state.history {
                        let p = &item.parameters;
                        ui.label(format!(
                            "{}×{}, {} frames",
                            p.width.map_or("?".into(), |v| v.to_string()),
                            p.height.map_or("?".into(), |v| v.to_string()),
                            p.frames.map_or("?".into(), |v| v.to_string())
                        ));
                        ui.label(item.compile_mode.as_deref().unwrap_or("as written"));
                        ui.label(
                            item.total_ms
                                .map_or("—".into(), |ms| duration_words(ms as f64 / 1000.0)),
                        );
                        ui.label(
                            item.peak_vram_bytes
                                .map_or("—".into(), |b| format!("{:.1} GiB", b as f64 / GIB)),
                        );
                        ui.label(&item.outcome);
                        ui.label(item.run_dir.display().to_string());
                        ui.end_row();
                    }
                });
        });
}

fn vram_plot_ui(ui: &mut Ui, state: &AppState) {
    if state.run.vram.is_empty() {
        ui.label(
            RichText::new("VRAM is plotted while a run goes on (it needs NVIDIA's driver).").weak(),
        );
        return;
    }
    let points: Vec<[f64; 2]> = state.run.vram.iter().map(|&(t, v)| [t, v]).collect();
    egui_plot::Plot::new("vram_plot")
        .x_axis_label("seconds")
        .y_axis_label("GiB used")
        .show(ui, |plot| {
            plot.line(egui_plot::Line::new("VRAM used", points));
        });
}

/// No ComfyUI found: locate one, the bundled runtime (its own issue), or a URL.
pub fn first_run_ui(ui: &mut Ui, state: &AppState, local: &mut UiLocal, outbox: &mut Vec<Command>) {
    let Setup::Missing { why } = &state.setup else {
        return;
    };
    ui.heading("ComfyUI was not found");
    ui.label(why);
    ui.label("wan-pilot runs your workflows in ComfyUI. Choose one:");
    ui.horizontal(|ui| {
        if ui
            .button("Locate ComfyUI…")
            .on_hover_text("Pick the folder with main.py")
            .clicked()
        {
            outbox.push(Command::BrowseForComfyUi);
        }
        ui.add_enabled(false, egui::Button::new("Install the bundled runtime"))
            .on_disabled_hover_text(
                "Comes with the packaging issue: not available in this build yet",
            );
    });
    ui.horizontal(|ui| {
        let label = ui.label("Server URL:");
        ui.add(
            egui::TextEdit::singleline(&mut local.attach_url).hint_text("http://127.0.0.1:8188"),
        )
        .labelled_by(label.id);
        if ui.button("Attach").clicked() && !local.attach_url.trim().is_empty() {
            let mut settings = state.settings.clone();
            settings.server_url = Some(local.attach_url.trim().to_string());
            outbox.push(Command::SaveSettings(settings));
        }
    });
}

/// The latest messages, bottom right.
pub fn toasts_ui(ctx: &egui::Context, state: &AppState) {
    let Some(toast) = state.toasts.last() else {
        return;
    };
    egui::Area::new(egui::Id::unique("wan-pilot-toasts"))
        .anchor(egui::Align2::RIGHT_BOTTOM, egui::vec2(-12.0, -220.0))
        .show(ctx, |ui| {
            egui::Frame::popup(ui.style()).show(ui, |ui| {
                ui.set_max_width(380.0);
                let colour = if toast.is_error {
                    Color32::from_rgb(220, 70, 60)
                } else {
                    ui.visuals().text_color()
                };
                ui.label(RichText::new(&toast.text).color(colour));
            });
        });
}

/// "12 s", "3 min 05 s", "1 h 02 min".
pub fn duration_words(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{} h {:02} min", s / 3600, (s % 3600) / 60)
    }
}
