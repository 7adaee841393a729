//! The top bar: the server's state with Start / Stop / Restart, the GPU and its live VRAM meter
//! (ours against other programs), and the settings button.

use egui::{Color32, RichText, Ui};

use super::UiLocal;
use crate::logic::{AppState, Command, GpuView, ServerView};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

pub fn top_bar_ui(ui: &mut Ui, state: &AppState, local: &mut UiLocal, outbox: &mut Vec<Command>) {
    ui.horizontal(|ui| {
        ui.heading("wan-pilot");
        ui.separator();
        server_ui(ui, state, outbox);
        ui.separator();
        gpu_ui(ui, state);
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            if ui.button("Settings").clicked() {
                local.settings_open = true;
                local.settings_draft = None;
            }
        });
    });
}

fn server_ui(ui: &mut Ui, state: &AppState, outbox: &mut Vec<Command>) {
    let server = &state.server;
    let colour = match server {
        ServerView::Ready { .. } => Color32::from_rgb(80, 180, 90),
        ServerView::Starting { .. } | ServerView::Restarting { .. } | ServerView::Stopping => {
            Color32::from_rgb(220, 170, 40)
        }
        ServerView::Crashed { .. }
        | ServerView::Stalled { .. }
        | ServerView::Unresponsive { .. } => Color32::from_rgb(220, 70, 60),
        ServerView::Stopped => Color32::GRAY,
    };
    let (dot, _) = ui.allocate_exact_size(egui::vec2(12.0, 12.0), egui::Sense::hover());
    ui.painter().circle_filled(dot.center(), 5.0, colour);
    let label = ui.label(format!("Server: {}", server.label(state.run.active)));
    match server {
        ServerView::Crashed {
            explanation,
            last_lines,
        } => {
            label.on_hover_text(format!("{explanation}\n\n{}", last_lines.join("\n")));
        }
        ServerView::Ready { url, .. } | ServerView::Unresponsive { url } => {
            label.on_hover_text(url.as_str());
        }
        _ => {}
    }
    if ui
        .add_enabled(server.can_start(), egui::Button::new("Start"))
        .on_hover_text("Start ComfyUI (or connect to the server URL in Settings)")
        .clicked()
    {
        outbox.push(Command::StartServer);
    }
    let running = !matches!(server, ServerView::Stopped | ServerView::Stopping);
    if ui
        .add_enabled(running, egui::Button::new("Stop"))
        .on_hover_text("Stop the server wan-pilot started (a server you run is only let go)")
        .clicked()
    {
        outbox.push(Command::StopServer);
    }
    if ui
        .add_enabled(running, egui::Button::new("Restart"))
        .clicked()
    {
        outbox.push(Command::RestartServer);
    }
}

fn gpu_ui(ui: &mut Ui, state: &AppState) {
    match &state.gpu {
        GpuView::Unknown => {
            ui.label("GPU: looking…");
        }
        GpuView::Unavailable { reason } => {
            let card = state
                .projection_for_picked_card
                .as_deref()
                .unwrap_or(&state.settings.picked_card);
            ui.label("GPU info unavailable")
                .on_hover_text(reason.as_str());
            ui.label(
                RichText::new(format!("projection for {card}"))
                    .italics()
                    .weak(),
            )
            .on_hover_text(
                "No NVIDIA GPU was found: the budget is for the card picked in Settings",
            );
        }
        GpuView::Live(reading) => {
            let total = reading.total_bytes as f64;
            ui.label(&reading.name);
            let (rect, response) =
                ui.allocate_exact_size(egui::vec2(160.0, 14.0), egui::Sense::hover());
            let painter = ui.painter_at(rect);
            painter.rect_filled(rect, 3.0, ui.visuals().extreme_bg_color);
            let width = |bytes: u64| rect.width() * (bytes as f64 / total.max(1.0)) as f32;
            let ours = egui::Rect::from_min_size(
                rect.min,
                egui::vec2(width(reading.ours_bytes), rect.height()),
            );
            painter.rect_filled(ours, 3.0, Color32::from_rgb(70, 130, 220));
            let others = egui::Rect::from_min_size(
                egui::pos2(ours.max.x, rect.min.y),
                egui::vec2(width(reading.others_bytes), rect.height()),
            );
            painter.rect_filled(others, 0.0, Color32::from_rgb(150, 150, 150));
            let used = reading.total_bytes.saturating_sub(reading.free_bytes);
            response.on_hover_text(format!(
                "ComfyUI (ours): {:.1} GiB\nother programs: {:.1} GiB\nfree: {:.1} GiB of {:.1} GiB",
                reading.ours_bytes as f64 / GIB,
                reading.others_bytes as f64 / GIB,
                reading.free_bytes as f64 / GIB,
                total / GIB
            ));
            ui.label(format!("{:.1} / {:.1} GiB", used as f64 / GIB, total / GIB));
        }
    }
}
