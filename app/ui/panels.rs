//! The window's areas: left (presets, recent workflows, open a workflow, the run's inputs), centre (length, budget, mode,
//! Run / Cancel, progress), right (outputs), the bottom drawer (server log, history, VRAM over
//! time), the first-run choice and the toasts.

use egui::{Color32, RichText, Ui};

use super::{DrawerTab, UiLocal};
use crate::logic::{AppState, Command, RunOutcome, Setup, WAN_SIZES};
use crate::presets::store::PresetEntry;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Presets and recent workflows, Open (dialog, typed path, drag and drop) and the run's inputs;
/// scrolls when the window is short.
pub fn left_ui(ui: &mut Ui, state: &mut AppState, local: &mut UiLocal, outbox: &mut Vec<Command>) {
    egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .show(ui, |ui| {
            presets_ui(ui, state, outbox);
            recent_ui(ui, state, outbox);
            ui.separator();
            workflow_ui(ui, state, local, outbox);
        });
}

/// The shipped and user presets: open one, save the open workflow as one, duplicate, rename,
/// delete, import and export; files that could not be used, with the reasons.
fn presets_ui(ui: &mut Ui, state: &mut AppState, outbox: &mut Vec<Command>) {
    egui::CollapsingHeader::new(RichText::new("Presets").heading())
        .id_salt("presets")
        .default_open(true)
        .show(ui, |ui| {
            let presets = &mut state.presets;
            match &presets.entries {
                None if presets.problem.is_none() => {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label("Reading the presets");
                    });
                }
                None => {}
                Some(entries) => {
                    for entry in entries {
                        preset_line_ui(ui, entry, presets.opened.as_ref(), presets, outbox);
                    }
                }
            }
            if let Some(problem) = &presets.problem {
                ui.label(
                    RichText::new(format!("The presets could not be read: {problem}"))
                        .color(Color32::from_rgb(220, 90, 70)),
                );
            }
            for broken in &presets.broken {
                let file = broken
                    .file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                ui.label(
                    RichText::new(format!("Unusable: {file}: {}", broken.reason))
                        .color(Color32::from_rgb(220, 160, 40)),
                )
                .on_hover_text(broken.to_string());
            }
            // Fields on lines of their own: the panel keeps its width.
            let label = ui.label("Preset name:");
            ui.add(
                egui::TextEdit::singleline(&mut presets.name_text)
                    .hint_text("a name for a new preset, or a rename")
                    .desired_width(f32::INFINITY),
            )
            .labelled_by(label.id);
            let name = presets.name_text.trim().to_string();
            let can_save = state.workflow.is_some() && !name.is_empty();
            let save = ui
                .add_enabled(can_save, egui::Button::new("Save as preset"))
                .on_hover_text("Save the open workflow, with this length and size, as a preset");
            let save = save.on_disabled_hover_text("open a workflow and type a name first");
            if save.clicked() {
                outbox.push(Command::SaveAsPreset {
                    name,
                    frames: state.frames,
                    size: state.inputs.size,
                });
            }
            let presets = &mut state.presets;
            let label = ui.label("Preset file:");
            ui.add(
                egui::TextEdit::singleline(&mut presets.path_text)
                    .hint_text("for import or export; empty: a dialog asks")
                    .desired_width(f32::INFINITY),
            )
            .labelled_by(label.id);
            ui.horizontal(|ui| {
                if ui
                    .button("Import")
                    .on_hover_text("Add the preset file typed above (or picked) to your presets")
                    .clicked()
                {
                    outbox.push(Command::ImportPreset(typed_path(&presets.path_text)));
                }
                if ui
                    .button("Refresh")
                    .on_hover_text("Read the presets folder again")
                    .clicked()
                {
                    outbox.push(Command::ListPresets);
                }
            });
        });
}

/// One preset: click to open it; its menu duplicates, renames, exports or deletes it.
fn preset_line_ui(
    ui: &mut Ui,
    entry: &PresetEntry,
    opened: Option<&crate::presets::store::PresetId>,
    presets: &crate::logic::PresetsView,
    outbox: &mut Vec<Command>,
) {
    ui.horizontal(|ui| {
        let d = entry.defaults;
        let facts = format!(
            "{}×{}, {} frames at {} fps, {} steps",
            d.width, d.height, d.frames, d.fps, d.steps
        );
        let hover = if entry.description.is_empty() {
            facts
        } else {
            format!("{}\n{facts}", entry.description)
        };
        if ui
            .selectable_label(opened == Some(&entry.id), &entry.name)
            .on_hover_text(hover)
            .clicked()
        {
            outbox.push(Command::OpenPreset(entry.id.clone()));
        }
        ui.menu_button("…", |ui| {
            if ui.button("Duplicate").clicked() {
                outbox.push(Command::DuplicatePreset(entry.id.clone()));
                ui.close();
            }
            let new_name = presets.name_text.trim().to_string();
            let rename = ui
                .add_enabled(
                    !entry.read_only && !new_name.is_empty(),
                    egui::Button::new("Rename to the name typed in \"Preset name\""),
                )
                .on_disabled_hover_text(if entry.read_only {
                    "shipped presets cannot be renamed: duplicate it first"
                } else {
                    "type the new name in \"Preset name\" first"
                });
            if rename.clicked() {
                outbox.push(Command::RenamePreset {
                    id: entry.id.clone(),
                    name: new_name,
                });
                ui.close();
            }
            if ui
                .button("Export…")
                .on_hover_text("To the file typed in \"Preset file\", or one a dialog asks for")
                .clicked()
            {
                outbox.push(Command::ExportPreset {
                    id: entry.id.clone(),
                    to: typed_path(&presets.path_text),
                });
                ui.close();
            }
            let delete = ui
                .add_enabled(!entry.read_only, egui::Button::new("Delete"))
                .on_disabled_hover_text("shipped presets cannot be deleted");
            if delete.clicked() {
                outbox.push(Command::DeletePreset(entry.id.clone()));
                ui.close();
            }
        });
    });
}

/// The typed path, or `None` when the field is empty (then a dialog asks).
fn typed_path(text: &str) -> Option<std::path::PathBuf> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.into())
}

/// The workflow files opened last; click one to open it again.
fn recent_ui(ui: &mut Ui, state: &AppState, outbox: &mut Vec<Command>) {
    egui::CollapsingHeader::new(RichText::new("Recent").heading())
        .id_salt("recent")
        .default_open(true)
        .show(ui, |ui| {
            if state.recent.is_empty() {
                ui.label(RichText::new("No workflow opened yet.").weak());
            }
            for path in &state.recent {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| path.display().to_string());
                if ui
                    .add(egui::Button::new(name).truncate())
                    .on_hover_text(path.display().to_string())
                    .clicked()
                {
                    outbox.push(Command::OpenFile(path.clone()));
                }
            }
        });
}

/// Open (dialog, typed path, drag and drop), what the open workflow is, and the run's inputs.
fn workflow_ui(ui: &mut Ui, state: &mut AppState, local: &mut UiLocal, outbox: &mut Vec<Command>) {
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
            if let Some(entry) = state
                .presets
                .opened
                .as_ref()
                .and_then(|id| state.presets.entry(id))
            {
                ui.label(format!("From the preset \"{}\"", entry.name));
            }
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
