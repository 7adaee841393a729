//! The budget panel: the frame slider (4n+1, seconds at the workflow's fps) with its track coloured
//! by zone for the shown mode and a small zone row per mode underneath; the stacked VRAM bar for
//! the chosen length against the card's total and the usable line, with the weights left in RAM
//! beside it and the VAE decode's peak on its own row; the compile mode Auto picks with its
//! reasons and a manual override; the predicted time. Draws a precomputed
//! [`BudgetView`](crate::policy::zones::BudgetView): no projection happens here.

use egui::{
    Align2, Color32, ComboBox, CornerRadius, FontId, Rect, Response, RichText, Role, Sense, Shape,
    Slider, Stroke, StrokeKind, Ui, Vec2, WidgetInfo, pos2, vec2,
};

use crate::budget::physical::CompileMode;
use crate::budget::projection::PhaseName;
use crate::policy::zones::{
    BudgetView, CardLines, ModeBudget, PartKind, Place, Zone, mode_explanation,
};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Height of the slider's zone track and of the stacked bar.
const TRACK_HEIGHT: f32 = 8.0;
const BAR_HEIGHT: f32 = 26.0;
const DECODE_BAR_HEIGHT: f32 = 10.0;
const MODE_ROW_HEIGHT: f32 = 5.0;
/// Room beside the bar for the weights kept in RAM.
const RAM_BOX_WIDTH: f32 = 120.0;

/// What the user changed this frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BudgetResponse {
    /// `frames` moved (always to a 4n+1 value in the view's range).
    pub frames_changed: bool,
    /// `mode_override` was set or cleared.
    pub mode_changed: bool,
}

impl BudgetResponse {
    pub fn changed(&self) -> bool {
        self.frames_changed || self.mode_changed
    }
}

/// The colour of a zone on the slider's track.
pub fn zone_color(zone: Zone) -> Color32 {
    match zone {
        Zone::Fits => Color32::from_rgb(0x4c, 0xa8, 0x5a),
        Zone::FitsWithOffload => Color32::from_rgb(0xd9, 0xa8, 0x2e),
        Zone::PredictedOom => Color32::from_rgb(0xd0, 0x4a, 0x45),
        Zone::Unavailable => Color32::from_rgb(0x6e, 0x6e, 0x78),
    }
}

/// The colour of a part in the bar.
pub fn part_color(kind: PartKind) -> Color32 {
    match kind {
        PartKind::ResidentWeights => Color32::from_rgb(0x5b, 0x8d, 0xe8),
        PartKind::OtherModels => Color32::from_rgb(0x3d, 0x5f, 0x9e),
        PartKind::Activations => Color32::from_rgb(0xa0, 0x70, 0xe0),
        PartKind::Workspace => Color32::from_rgb(0x8a, 0x8a, 0x96),
        PartKind::CompileOverhead => Color32::from_rgb(0xe8, 0x8e, 0x3a),
        PartKind::OffloadedWeights => Color32::from_rgb(0x5b, 0x8d, 0xe8).gamma_multiply(0.45),
        PartKind::VaeDecode => Color32::from_rgb(0x3f, 0xb0, 0xa8),
        PartKind::Reserve => Color32::from_rgb(0x8a, 0x8a, 0x96),
    }
}

const USABLE_COLOR: Color32 = Color32::from_rgb(0xe0, 0x55, 0x55);

/// Draws the budget panel for `view` and lets the user move `frames` and override the mode.
pub fn budget_ui(
    ui: &mut Ui,
    view: &BudgetView,
    frames: &mut u32,
    mode_override: &mut Option<CompileMode>,
) -> BudgetResponse {
    let mut response = BudgetResponse::default();
    let clamped = view.clamp_frames(*frames);
    if clamped != *frames {
        *frames = clamped;
        response.frames_changed = true;
    }
    let Some(length) = view.at(*frames) else {
        ui.label("No projection for this workflow yet.");
        return response;
    };
    let shown_mode = mode_override.unwrap_or(length.chosen);

    ui.horizontal(|ui| {
        ui.label(RichText::new(format!("Frames {}", *frames)).strong());
        ui.label(format!(
            "({:.1} s at {} fps)",
            view.seconds(*frames),
            trim_number(view.fps)
        ));
        if let Some(asked) = view.workflow_frames {
            ui.weak(format!("· the workflow asks for {asked}"));
        }
    });
    response.frames_changed |= frame_slider_ui(ui, view, frames, shown_mode);
    mode_rows_ui(ui, view, *frames, shown_mode);
    zone_legend_ui(ui, shown_mode);

    // The slider may have moved: show the new length at once.
    let Some(length) = view.at(*frames) else {
        return response;
    };
    let Some(shown) = length.mode(shown_mode) else {
        return response;
    };
    ui.add_space(6.0);
    stacked_bar_ui(ui, &view.card, shown);
    decode_row_ui(ui, &view.card, shown);
    part_legend_ui(ui, &view.card, shown);
    ui.label(peak_line(&view.card, shown));
    for note in &length.notes {
        ui.weak(note);
    }

    ui.add_space(6.0);
    response.mode_changed |= mode_ui(ui, view, *frames, mode_override);
    ui.label(RichText::new(predicted_time(shown)).strong())
        .on_hover_text(
            "How long the whole run should take: loading, drawing every step, compiling when the size is new, and decoding. Runs on this card refine the estimate.",
        );
    response
}

/// The slider over 4n+1 lengths with its track coloured by the shown mode's zones.
fn frame_slider_ui(ui: &mut Ui, view: &BudgetView, frames: &mut u32, mode: CompileMode) -> bool {
    let (first, last) = view.frame_range();
    let mut value = f64::from(*frames);
    let track = ui.painter().add(Shape::Noop);
    let slider = ui
        .scope(|ui| {
            // The zone track replaces the rail: egui paints no rail of zero height.
            ui.spacing_mut().slider_rail_height = 0.0;
            ui.spacing_mut().slider_width = ui.available_width().max(120.0);
            ui.add(
                Slider::new(&mut value, f64::from(first)..=f64::from(last))
                    .step_by(4.0)
                    .show_value(false)
                    .handle_shape(egui::style::HandleShape::Circle),
            )
        })
        .inner;
    let snapped = view.clamp_frames(value.round().max(0.0) as u32);
    slider.widget_info(|| WidgetInfo::slider(ui.is_enabled(), f64::from(snapped), "Frames"));
    let slider = slider.on_hover_text(format!(
        "Frames: how long the video is. Wan makes 4n+1 frames (1, 5, 9, … 81, …), so the slider steps by 4. The colours show, for {mode}, which lengths fit on the card:\n• green — {}\n• amber — {}\n• red — {}\n• grey — {}",
        Zone::Fits.explanation(),
        Zone::FitsWithOffload.explanation(),
        Zone::PredictedOom.explanation(),
        Zone::Unavailable.explanation()
    ));

    let rect = slider.rect;
    let x_of = slider_x(view, rect);
    let y = rect.center().y;
    let mut shapes = Vec::new();
    for range in view.zones.ranges(mode) {
        // Each length owns half a step either side, so neighbouring ranges meet.
        let left = x_of(f64::from(range.first) - 2.0).max(x_of(f64::from(first)));
        let right = x_of(f64::from(range.last) + 2.0).min(x_of(f64::from(last)));
        shapes.push(Shape::rect_filled(
            Rect::from_min_max(
                pos2(left, y - TRACK_HEIGHT / 2.0),
                pos2(right, y + TRACK_HEIGHT / 2.0),
            ),
            CornerRadius::ZERO,
            zone_color(range.zone),
        ));
    }
    ui.painter().set(track, Shape::Vec(shapes));

    // Tick labels: both ends, the workflow's own length and round lengths.
    let ticks_rect = ui
        .allocate_exact_size(vec2(rect.width(), 14.0), Sense::hover())
        .0;
    let painter = ui.painter();
    let mut ticks: Vec<u32> = vec![first, 49, 81, 121, 161, 201, last];
    ticks.retain(|t| (first..=last).contains(t));
    let font = FontId::proportional(10.0);
    for tick in ticks {
        let x = x_of(f64::from(tick));
        let align = if tick == first {
            Align2::LEFT_TOP
        } else if tick == last {
            Align2::RIGHT_TOP
        } else {
            Align2::CENTER_TOP
        };
        painter.text(
            pos2(x, ticks_rect.top()),
            align,
            tick.to_string(),
            font.clone(),
            ui.visuals().weak_text_color(),
        );
    }

    if snapped != *frames {
        *frames = snapped;
        true
    } else {
        false
    }
}

/// Maps a length to the x of the slider handle's centre, as egui's slider does.
fn slider_x(view: &BudgetView, rect: Rect) -> impl Fn(f64) -> f32 {
    let (first, last) = view.frame_range();
    let inset = rect.height() / 2.5;
    let left = rect.left() + inset;
    let right = rect.right() - inset;
    let span = f64::from(last.saturating_sub(first)).max(1.0);
    move |frames: f64| {
        let t = ((frames - f64::from(first)) / span) as f32;
        left + (right - left) * t
    }
}

/// One thin zone row per mode under the slider, with the mode's name on hover.
fn mode_rows_ui(ui: &mut Ui, view: &BudgetView, frames: u32, shown: CompileMode) {
    let width = ui.available_width();
    let (first, last) = view.frame_range();
    // The same x mapping as the slider above (it spans the full width too).
    let reference = Rect::from_min_size(ui.cursor().min, vec2(width, ui.spacing().interact_size.y));
    let x_of = slider_x(view, reference);
    for mode in CompileMode::ALL {
        let (row, response) =
            ui.allocate_exact_size(vec2(width, MODE_ROW_HEIGHT + 2.0), Sense::hover());
        let painter = ui.painter();
        let alpha = if mode == shown { 1.0 } else { 0.55 };
        for range in view.zones.ranges(mode) {
            let left = x_of(f64::from(range.first) - 2.0).max(x_of(f64::from(first)));
            let right = x_of(f64::from(range.last) + 2.0).min(x_of(f64::from(last)));
            painter.rect_filled(
                Rect::from_min_max(pos2(left, row.top() + 1.0), pos2(right, row.bottom() - 1.0)),
                CornerRadius::ZERO,
                zone_color(range.zone).gamma_multiply(alpha),
            );
        }
        if mode == shown {
            painter.rect_stroke(
                row,
                CornerRadius::ZERO,
                Stroke::new(1.0, ui.visuals().strong_text_color()),
                StrokeKind::Outside,
            );
        }
        let here = x_of(f64::from(frames));
        painter.line_segment(
            [pos2(here, row.top()), pos2(here, row.bottom())],
            Stroke::new(1.5, ui.visuals().strong_text_color()),
        );
        let summary = zone_summary(view, mode);
        let label = format!("Zones for {mode}");
        response.widget_info(|| WidgetInfo::labeled(Role::Image, true, &label));
        response.on_hover_text(format!("{label}: {summary}\n\n{}", mode_explanation(mode)));
    }
}

/// "1–21 predicted out of memory, 25–129 fits, …" for one mode.
fn zone_summary(view: &BudgetView, mode: CompileMode) -> String {
    view.zones
        .ranges(mode)
        .iter()
        .map(|r| {
            if r.first == r.last {
                format!("{} {}", r.first, r.zone.label())
            } else {
                format!("{}–{} {}", r.first, r.last, r.zone.label())
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn zone_legend_ui(ui: &mut Ui, mode: CompileMode) {
    ui.horizontal_wrapped(|ui| {
        for zone in [
            Zone::Fits,
            Zone::FitsWithOffload,
            Zone::PredictedOom,
            Zone::Unavailable,
        ] {
            let (swatch, _) = ui.allocate_exact_size(Vec2::splat(9.0), Sense::hover());
            ui.painter()
                .rect_filled(swatch, CornerRadius::same(2), zone_color(zone));
            ui.weak(zone.label()).on_hover_text(zone.explanation());
        }
        ui.weak(format!("— track: {mode}; rows: every mode"));
    });
}

/// The stacked bar at the sampling peak against the card's total, the usable line, the reserve
/// and what other programs hold; the weights left in RAM beside it.
fn stacked_bar_ui(ui: &mut Ui, card: &CardLines, shown: &ModeBudget) {
    let width = (ui.available_width() - RAM_BOX_WIDTH - 8.0).max(120.0);
    let (row, _) = ui.allocate_exact_size(
        vec2(ui.available_width(), BAR_HEIGHT + 16.0),
        Sense::hover(),
    );
    let bar = Rect::from_min_size(pos2(row.left(), row.top() + 14.0), vec2(width, BAR_HEIGHT));
    let scale = f64::from(bar.width()) / card.total_bytes.max(1.0);
    let x_at = |bytes: f64| bar.left() + (bytes.clamp(0.0, card.total_bytes) * scale) as f32;
    let visuals = ui.visuals().clone();
    ui.painter()
        .rect_filled(bar, CornerRadius::same(2), visuals.extreme_bg_color);

    // Other programs hold the right end of the card.
    let others = card.others_bytes();
    if others > 0.0 {
        let rect = Rect::from_min_max(pos2(x_at(card.free_bytes), bar.top()), bar.right_bottom());
        ui.painter().rect_filled(
            rect,
            CornerRadius::ZERO,
            visuals.weak_text_color().gamma_multiply(0.5),
        );
        if rect.width() > 60.0 {
            ui.painter().text(
                rect.center(),
                Align2::CENTER_CENTER,
                format!("others {:.1}", others / GIB),
                FontId::proportional(10.0),
                visuals.strong_text_color(),
            );
        }
        part_hover_ui(
            ui,
            rect,
            "Other programs",
            format!(
                "Other programs: the desktop, the driver and anything else already using the card hold {:.1} GiB of it.",
                others / GIB
            ),
        );
    }

    // The run's parts at its peak, left to right.
    let mut at = 0.0;
    for part in shown
        .parts
        .iter()
        .filter(|p| p.kind.place() == Place::OnCard)
    {
        if part.bytes <= 0.0 {
            continue;
        }
        let rect = Rect::from_min_max(
            pos2(x_at(at), bar.top()),
            pos2(x_at(at + part.bytes), bar.bottom()),
        );
        at += part.bytes;
        ui.painter()
            .rect_filled(rect, CornerRadius::ZERO, part_color(part.kind));
        if rect.width() > 70.0 {
            ui.painter().text(
                rect.left_center() + vec2(4.0, 0.0),
                Align2::LEFT_CENTER,
                format!("{:.1}", part.bytes / GIB),
                FontId::proportional(11.0),
                Color32::WHITE,
            );
        }
        part_hover_ui(
            ui,
            rect,
            &format!("{} {:.1} GiB", part.kind.label(), part.bytes / GIB),
            part.tooltip.clone(),
        );
    }

    // ComfyUI's reserve: a bracket just below the free end.
    if let Some(reserve) = shown.part(PartKind::Reserve).filter(|p| p.bytes > 0.0) {
        let rect = Rect::from_min_max(
            pos2(x_at(card.free_bytes - reserve.bytes), bar.top() + 2.0),
            pos2(x_at(card.free_bytes), bar.bottom() - 2.0),
        );
        ui.painter().rect_stroke(
            rect,
            CornerRadius::ZERO,
            Stroke::new(1.0, part_color(PartKind::Reserve)),
            StrokeKind::Inside,
        );
        part_hover_ui(
            ui,
            rect,
            &format!("Reserve {:.1} GiB", reserve.bytes / GIB),
            reserve.tooltip.clone(),
        );
    }

    // The usable line and the total.
    let usable_x = x_at(card.usable_bytes());
    ui.painter().line_segment(
        [
            pos2(usable_x, bar.top() - 4.0),
            pos2(usable_x, bar.bottom() + 2.0),
        ],
        Stroke::new(2.0, USABLE_COLOR),
    );
    ui.painter().text(
        pos2(usable_x, row.top()),
        Align2::RIGHT_TOP,
        format!("usable {:.1} GiB", card.usable_bytes() / GIB),
        FontId::proportional(11.0),
        USABLE_COLOR,
    );
    part_hover_ui(
        ui,
        Rect::from_center_size(pos2(usable_x, bar.center().y), vec2(6.0, bar.height())),
        "Usable line",
        format!(
            "Usable line: the peak must stay left of it to count as fitting — the {:.1} GiB free on the card less a {:.1} GiB safety margin (Settings).",
            card.free_bytes / GIB,
            card.margin_bytes / GIB
        ),
    );
    ui.painter().text(
        pos2(bar.right(), row.top()),
        Align2::RIGHT_TOP,
        format!("{} · {:.1} GiB", card.name, card.total_bytes / GIB),
        FontId::proportional(11.0),
        visuals.weak_text_color(),
    );

    // Weights ComfyUI leaves in RAM, beside the bar: they take no graphics memory.
    if let Some(offloaded) = shown
        .part(PartKind::OffloadedWeights)
        .filter(|p| p.bytes > 0.0)
    {
        let rect = Rect::from_min_size(
            pos2(bar.right() + 8.0, bar.top()),
            vec2(RAM_BOX_WIDTH, BAR_HEIGHT),
        );
        ui.painter().rect(
            rect,
            CornerRadius::same(2),
            part_color(PartKind::OffloadedWeights),
            Stroke::new(1.0, part_color(PartKind::ResidentWeights)),
            StrokeKind::Inside,
        );
        ui.painter().text(
            rect.center(),
            Align2::CENTER_CENTER,
            format!("+{:.1} GiB in RAM", offloaded.bytes / GIB),
            FontId::proportional(11.0),
            visuals.strong_text_color(),
        );
        part_hover_ui(
            ui,
            rect,
            &format!(
                "{} {:.1} GiB",
                PartKind::OffloadedWeights.label(),
                offloaded.bytes / GIB
            ),
            offloaded.tooltip.clone(),
        );
    }
}

/// The VAE decode's peak on its own thin row, on the same scale: it runs after sampling.
fn decode_row_ui(ui: &mut Ui, card: &CardLines, shown: &ModeBudget) {
    let Some(decode) = shown.part(PartKind::VaeDecode).filter(|p| p.bytes > 0.0) else {
        return;
    };
    let width = (ui.available_width() - RAM_BOX_WIDTH - 8.0).max(120.0);
    let (row, _) = ui.allocate_exact_size(
        vec2(ui.available_width(), DECODE_BAR_HEIGHT + 4.0),
        Sense::hover(),
    );
    let bar = Rect::from_min_size(
        pos2(row.left(), row.top() + 2.0),
        vec2(width, DECODE_BAR_HEIGHT),
    );
    let scale = f64::from(bar.width()) / card.total_bytes.max(1.0);
    let x_at = |bytes: f64| bar.left() + (bytes.clamp(0.0, card.total_bytes) * scale) as f32;
    ui.painter()
        .rect_filled(bar, CornerRadius::same(2), ui.visuals().extreme_bg_color);
    let rect = Rect::from_min_max(bar.left_top(), pos2(x_at(decode.bytes), bar.bottom()));
    ui.painter()
        .rect_filled(rect, CornerRadius::ZERO, part_color(PartKind::VaeDecode));
    let usable_x = x_at(card.usable_bytes());
    ui.painter().line_segment(
        [pos2(usable_x, bar.top()), pos2(usable_x, bar.bottom())],
        Stroke::new(2.0, USABLE_COLOR),
    );
    ui.painter().text(
        pos2(bar.right() + 8.0, bar.center().y),
        Align2::LEFT_CENTER,
        format!("VAE decode {:.1} GiB", decode.bytes / GIB),
        FontId::proportional(10.0),
        ui.visuals().weak_text_color(),
    );
    part_hover_ui(
        ui,
        rect,
        &format!(
            "{} {:.1} GiB",
            PartKind::VaeDecode.label(),
            decode.bytes / GIB
        ),
        decode.tooltip.clone(),
    );
}

/// Swatches naming the bar's parts with their sizes, each with its plain-words tooltip.
fn part_legend_ui(ui: &mut Ui, card: &CardLines, shown: &ModeBudget) {
    ui.horizontal_wrapped(|ui| {
        for part in &shown.parts {
            // Every part with a size is named here, wherever the bar draws it.
            if part.bytes <= 0.0 {
                continue;
            }
            let (swatch, _) = ui.allocate_exact_size(Vec2::splat(9.0), Sense::hover());
            if part.kind == PartKind::Reserve {
                ui.painter().rect_stroke(
                    swatch,
                    CornerRadius::same(1),
                    Stroke::new(1.0, part_color(part.kind)),
                    StrokeKind::Inside,
                );
            } else {
                ui.painter()
                    .rect_filled(swatch, CornerRadius::same(2), part_color(part.kind));
            }
            ui.weak(format!("{} {:.1}", part.kind.label(), part.bytes / GIB))
                .on_hover_text(part.tooltip.clone());
        }
        if card.others_bytes() > 0.0 {
            ui.weak(format!("· others {:.1} GiB", card.others_bytes() / GIB))
                .on_hover_text(
                    "Memory the desktop, the driver and other programs already use on the card.",
                );
        }
    });
}

/// A hover area with an accessibility label and a tooltip.
fn part_hover_ui(ui: &mut Ui, rect: Rect, label: &str, tooltip: String) -> Response {
    let name = label.split(' ').next().unwrap_or(label);
    let id = ui
        .scope_id()
        .with(("budget-part", name, rect.left() as i32));
    let response = ui.interact(rect, id, Sense::hover());
    response.widget_info(|| WidgetInfo::labeled(Role::Image, true, label));
    response.on_hover_text(tooltip)
}

/// "Peak 17.4 GiB in low-noise sampling · usable 21.7 of 24.0 GiB · 4.3 GiB spare".
fn peak_line(card: &CardLines, shown: &ModeBudget) -> String {
    let spare = if shown.spare_bytes >= 0.0 {
        format!("{:.1} GiB left free", shown.spare_bytes / GIB)
    } else {
        format!("{:.1} GiB short", -shown.spare_bytes / GIB)
    };
    format!(
        "Sampling peak {:.1} GiB ({spare}) · whole run {:.1} GiB in {} · usable {:.1} of {:.1} GiB",
        shown.sampling_peak_bytes / GIB,
        shown.run_peak_bytes / GIB,
        phase_words(shown.run_peak_phase),
        card.usable_bytes() / GIB,
        card.total_bytes / GIB
    )
}

fn phase_words(phase: PhaseName) -> &'static str {
    match phase {
        PhaseName::TextEncode => "text encode",
        PhaseName::ImageEncode => "image encode",
        PhaseName::HighNoiseSampling => "high-noise sampling",
        PhaseName::LowNoiseSampling => "low-noise sampling",
        PhaseName::Sampling => "sampling",
        PhaseName::VaeDecode => "VAE decode",
    }
}

/// The mode line, the override box and one reason per mode. Returns whether the override changed.
fn mode_ui(
    ui: &mut Ui,
    view: &BudgetView,
    frames: u32,
    mode_override: &mut Option<CompileMode>,
) -> bool {
    let Some(length) = view.at(frames) else {
        return false;
    };
    let before = *mode_override;
    ui.horizontal(|ui| {
        let selected = match *mode_override {
            None => format!("Auto ({})", length.chosen),
            Some(mode) => mode.to_string(),
        };
        ComboBox::from_label("Compile mode")
            .selected_text(selected)
            .width(210.0)
            .show_ui(ui, |ui| {
                ui.selectable_value(mode_override, None, format!("Auto ({})", length.chosen))
                    .on_hover_text(
                        "Auto: wan-pilot picks the fastest mode that fits at this length, and picks again when the length changes.",
                    );
                for mode in CompileMode::ALL {
                    let zone = length.mode(mode).map_or(Zone::PredictedOom, |m| m.zone);
                    let reason = length
                        .mode(mode)
                        .map_or(String::new(), |m| m.reason.clone());
                    ui.selectable_value(mode_override, Some(mode), mode.as_str())
                        .on_hover_text(format!(
                            "{}\n\nAt {frames} frames: {} — {reason}",
                            mode_explanation(mode),
                            zone.label()
                        ));
                }
            })
            .response
            .on_hover_text(
                "Compile mode: whether and how torch.compile speeds up the model. Auto picks the fastest that fits; choose one to override it.",
            );
    });
    ui.label(RichText::new(view.mode_line(frames, *mode_override)).strong());
    for mode in &length.modes {
        ui.horizontal(|ui| {
            // A dot in the zone's colour (the default fonts have no check marks).
            let (dot, _) = ui.allocate_exact_size(Vec2::splat(10.0), Sense::hover());
            ui.painter()
                .circle_filled(dot.center(), 4.0, zone_color(mode.zone));
            ui.label(&mode.reason).on_hover_text(format!(
                "{}\n\n{}",
                mode_explanation(mode.mode),
                mode.zone.explanation()
            ));
        });
    }
    *mode_override != before
}

/// "Predicted time ≈ 47 s" with the compile share when there is one.
fn predicted_time(shown: &ModeBudget) -> String {
    let total = format_duration(shown.time_s);
    if shown.compile_s > 0.0 {
        format!(
            "Predicted time ≈ {total} ({} of it compiling a new size)",
            format_duration(shown.compile_s)
        )
    } else {
        format!("Predicted time ≈ {total}")
    }
}

fn format_duration(seconds: f64) -> String {
    let seconds = seconds.max(0.0).round() as u64;
    if seconds >= 120 {
        format!("{} min {:02} s", seconds / 60, seconds % 60)
    } else {
        format!("{seconds} s")
    }
}

/// 16 → "16", 23.976 → "23.98".
fn trim_number(value: f64) -> String {
    if (value - value.round()).abs() < 1e-6 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}
