//! The settings window: ComfyUI folder or server URL, extra launch arguments, reserve VRAM,
//! safety margin, automatic OOM retry, output folder, theme, and the card to plan for.

use std::path::PathBuf;

use super::UiLocal;
use crate::logic::{AppState, Command, Theme, WindowSettings};

/// The settings as typed (text fields parse when saved).
#[derive(Debug, Clone, Default)]
pub struct SettingsDraft {
    pub comfyui_dir: String,
    pub server_url: String,
    pub extra_args: String,
    pub reserve_gib: String,
    pub margin_gib: f64,
    pub auto_oom_retry: bool,
    pub output_dir: String,
    pub theme: Option<Theme>,
    pub picked_card: String,
    pub error: Option<String>,
}

impl SettingsDraft {
    fn from_settings(s: &WindowSettings) -> SettingsDraft {
        SettingsDraft {
            comfyui_dir: s
                .comfyui_dir
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            server_url: s.server_url.clone().unwrap_or_default(),
            extra_args: s.extra_args.join(" "),
            reserve_gib: s.reserve_gib.map(|g| g.to_string()).unwrap_or_default(),
            margin_gib: s.margin_gib,
            auto_oom_retry: s.auto_oom_retry,
            output_dir: s
                .output_dir
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            theme: Some(s.theme),
            picked_card: s.picked_card.clone(),
            error: None,
        }
    }

    /// The settings, or what is wrong with a field.
    fn to_settings(&self, base: &WindowSettings) -> Result<WindowSettings, String> {
        let text = |s: &str| {
            let t = s.trim();
            (!t.is_empty()).then(|| t.to_string())
        };
        let reserve_gib = match text(&self.reserve_gib) {
            Some(t) => Some(
                t.parse::<f64>()
                    .ok()
                    .filter(|g| (0.0..=64.0).contains(g))
                    .ok_or("Reserve VRAM is a number of GiB between 0 and 64")?,
            ),
            None => None,
        };
        Ok(WindowSettings {
            comfyui_dir: text(&self.comfyui_dir).map(PathBuf::from),
            server_url: text(&self.server_url),
            extra_args: self
                .extra_args
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            reserve_gib,
            margin_gib: self.margin_gib,
            auto_oom_retry: self.auto_oom_retry,
            output_dir: text(&self.output_dir).map(PathBuf::from),
            theme: self.theme.unwrap_or(base.theme),
            picked_card: self.picked_card.clone(),
            port: base.port,
        })
    }
}

pub fn settings_window(
    ctx: &egui::Context,
    state: &AppState,
    local: &mut UiLocal,
    outbox: &mut Vec<Command>,
) {
    if !local.settings_open {
        return;
    }
    let mut open = true;
    let mut close = false;
    let draft = local
        .settings_draft
        .get_or_insert_with(|| SettingsDraft::from_settings(&state.settings));
    egui::Window::new("Settings")
        .open(&mut open)
        .collapsible(false)
        .show(ctx, |ui| {
            egui::Grid::new("settings_grid")
                .num_columns(2)
                .show(ui, |ui| {
                    ui.label("ComfyUI folder");
                    ui.horizontal(|ui| {
                        ui.text_edit_singleline(&mut draft.comfyui_dir);
                        if ui.button("Browse…").clicked() {
                            outbox.push(Command::BrowseForComfyUi);
                        }
                    });
                    ui.end_row();
                    let label = ui.label("or server URL").on_hover_text(
                        "A ComfyUI you run yourself: wan-pilot connects and never stops it",
                    );
                    ui.text_edit_singleline(&mut draft.server_url)
                        .labelled_by(label.id);
                    ui.end_row();
                    let label = ui.label("Extra launch arguments");
                    ui.text_edit_singleline(&mut draft.extra_args)
                        .labelled_by(label.id);
                    ui.end_row();
                    ui.label("Reserve VRAM (GiB)").on_hover_text(
                        "Memory ComfyUI keeps free for the desktop and other programs",
                    );
                    ui.add(
                        egui::TextEdit::singleline(&mut draft.reserve_gib)
                            .hint_text("ComfyUI's default"),
                    );
                    ui.end_row();
                    ui.label("Safety margin (GiB)")
                        .on_hover_text("Memory the chosen mode must leave free");
                    ui.add(egui::Slider::new(&mut draft.margin_gib, 0.0..=8.0).step_by(0.25));
                    ui.end_row();
                    ui.label("Out of memory");
                    ui.checkbox(
                        &mut draft.auto_oom_retry,
                        "retry automatically with a safer mode",
                    );
                    ui.end_row();
                    let label = ui.label("Output folder");
                    ui.add(
                        egui::TextEdit::singleline(&mut draft.output_dir)
                            .hint_text("the app's runs folder"),
                    )
                    .labelled_by(label.id);
                    ui.end_row();
                    ui.label("Theme");
                    ui.horizontal(|ui| {
                        ui.selectable_value(&mut draft.theme, Some(Theme::System), "System");
                        ui.selectable_value(&mut draft.theme, Some(Theme::Dark), "Dark");
                        ui.selectable_value(&mut draft.theme, Some(Theme::Light), "Light");
                    });
                    ui.end_row();
                    ui.label("Card to plan for")
                        .on_hover_text("Used when no NVIDIA GPU is found");
                    egui::ComboBox::from_id_salt("picked_card")
                        .selected_text(draft.picked_card.clone())
                        .show_ui(ui, |ui| {
                            for card in crate::budget::cards::cards() {
                                ui.selectable_value(
                                    &mut draft.picked_card,
                                    card.name.to_string(),
                                    card.name,
                                );
                            }
                        });
                    ui.end_row();
                });
            if let Some(error) = &draft.error {
                ui.colored_label(egui::Color32::from_rgb(220, 70, 60), error);
            }
            ui.horizontal(|ui| {
                if ui.button("Save").clicked() {
                    match draft.to_settings(&state.settings) {
                        Ok(settings) => {
                            outbox.push(Command::SaveSettings(settings));
                            close = true;
                        }
                        Err(why) => draft.error = Some(why),
                    }
                }
                if ui.button("Cancel").clicked() {
                    close = true;
                }
            });
        });
    if !open || close {
        local.settings_open = false;
        local.settings_draft = None;
    }
}
