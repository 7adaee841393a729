//! What the window's budget panel shows, computed once per workflow, card and settings: for every
//! 4n+1 length up to [`MAX_PLANNED_FRAMES`], each compile mode's memory in parts (the stacked bar),
//! its time, its zone (fits / fits with offload / predicted out of memory) and the mode Auto picks
//! with its reasons; and the slider's zones per mode as contiguous ranges of lengths.
//!
//! Pure: it reads projections. Computing every length is a few milliseconds (`cargo bench --bench
//! budget`), so a worker does it on each workflow/card/settings change and the window only looks
//! numbers up while the slider moves.

use crate::budget::physical::CompileMode;
use crate::budget::projection::{FrameProjection, ModeProjection, PhaseName};
use crate::policy::choose;
use crate::runs::plan::{MAX_PLANNED_FRAMES, Planner};
use crate::workflow::edit::snap_frames;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Wan 2.2 14B's native frame rate, for workflows whose output node sets none.
pub const DEFAULT_FPS: f64 = 16.0;

/// How a length runs in one mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Zone {
    /// Every weight stays on the GPU and the peak leaves the safety margin free.
    Fits,
    /// Fits because ComfyUI streams part of the weights from RAM each step: slower.
    FitsWithOffload,
    /// Over the usable line (the free memory less the safety margin), or it ran out of memory at
    /// this length before: predicted to run out of memory, or too close to risk it.
    PredictedOom,
    /// Memory would do, but the mode cannot run: CUDA graphs need every weight on the GPU while
    /// ComfyUI would stream some from RAM.
    Unavailable,
}

impl Zone {
    /// Short words for a legend.
    pub fn label(self) -> &'static str {
        match self {
            Zone::Fits => "fits",
            Zone::FitsWithOffload => "fits with offload (slower)",
            Zone::PredictedOom => "predicted out of memory",
            Zone::Unavailable => "not possible in this mode",
        }
    }

    /// A sentence for a tooltip.
    pub fn explanation(self) -> &'static str {
        match self {
            Zone::Fits => {
                "Fits: all of the model stays on the graphics card and there is memory to spare."
            }
            Zone::FitsWithOffload => {
                "Fits with offload: part of the model stays in normal RAM and is copied to the card on every step. It works, but it is slower."
            }
            Zone::PredictedOom => {
                "Predicted out of memory: this length needs more graphics memory than is safe to use, so the run would likely fail."
            }
            Zone::Unavailable => {
                "Not possible: this mode records CUDA graphs, which need the whole model on the card, but at this length part of it has to stay in RAM."
            }
        }
    }
}

/// One run of equal zones: lengths `first..=last` (both 4n+1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneRange {
    pub zone: Zone,
    pub first: u32,
    pub last: u32,
}

/// The slider's zones: per mode, contiguous ranges covering 1..=[`MAX_PLANNED_FRAMES`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SliderZones {
    pub modes: Vec<(CompileMode, Vec<ZoneRange>)>,
}

impl SliderZones {
    /// Zones from the per-length budgets (in increasing length).
    pub fn from_lengths(lengths: &[LengthBudget]) -> SliderZones {
        let modes = CompileMode::ALL
            .iter()
            .map(|&mode| {
                let mut ranges: Vec<ZoneRange> = Vec::new();
                for length in lengths {
                    let Some(zone) = length.mode(mode).map(|m| m.zone) else {
                        continue;
                    };
                    match ranges.last_mut() {
                        Some(last) if last.zone == zone => last.last = length.frames,
                        _ => ranges.push(ZoneRange {
                            zone,
                            first: length.frames,
                            last: length.frames,
                        }),
                    }
                }
                (mode, ranges)
            })
            .collect();
        SliderZones { modes }
    }

    /// The ranges of one mode (empty when unknown).
    pub fn ranges(&self, mode: CompileMode) -> &[ZoneRange] {
        self.modes
            .iter()
            .find(|(m, _)| *m == mode)
            .map_or(&[], |(_, r)| r.as_slice())
    }

    /// The zone of `frames` (snapped to 4n+1) in `mode`.
    pub fn zone_at(&self, mode: CompileMode, frames: u32) -> Option<Zone> {
        let frames = snap_frames(frames);
        self.ranges(mode)
            .iter()
            .find(|r| r.first <= frames && frames <= r.last)
            .map(|r| r.zone)
    }
}

/// One part of the memory picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartKind {
    /// The diffusion model's weights ComfyUI keeps on the card while sampling.
    ResidentWeights,
    /// Models of earlier steps ComfyUI still holds on the card (the text encoder, the VAE).
    OtherModels,
    /// The working memory of sampling, with what PyTorch's allocator keeps cached on top.
    Activations,
    /// Fixed scratch memory of the attention and matmul kernels.
    Workspace,
    /// torch.compile's extra (CUDA-graph pools, autotuning's first-step transient).
    CompileOverhead,
    /// Weights ComfyUI leaves in RAM and streams to the card each step (not on the card).
    OffloadedWeights,
    /// The VAE decode's own peak, after sampling (not at the same time).
    VaeDecode,
    /// What ComfyUI keeps free when it decides how many weights to load (`--reserve-vram`).
    Reserve,
}

/// Where a part lives, which tells the bar where to draw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Place {
    /// Stacked in the bar: on the card at the sampling peak.
    OnCard,
    /// Beside the bar: in the computer's RAM.
    InRam,
    /// Its own row: a later phase's peak, against the same lines.
    LaterPhase,
    /// Left free on purpose, drawn against the free end of the card.
    KeptFree,
}

impl PartKind {
    /// The bar's order: stacked parts first, then the ones drawn elsewhere.
    pub const ALL: [PartKind; 8] = [
        PartKind::ResidentWeights,
        PartKind::OtherModels,
        PartKind::Activations,
        PartKind::Workspace,
        PartKind::CompileOverhead,
        PartKind::OffloadedWeights,
        PartKind::VaeDecode,
        PartKind::Reserve,
    ];

    pub fn label(self) -> &'static str {
        match self {
            PartKind::ResidentWeights => "Resident weights",
            PartKind::OtherModels => "Other models still loaded",
            PartKind::Activations => "Activations",
            PartKind::Workspace => "Workspace",
            PartKind::CompileOverhead => "Compile overhead",
            PartKind::OffloadedWeights => "Offloaded weights (in RAM)",
            PartKind::VaeDecode => "VAE decode",
            PartKind::Reserve => "Reserve",
        }
    }

    pub fn place(self) -> Place {
        match self {
            PartKind::OffloadedWeights => Place::InRam,
            PartKind::VaeDecode => Place::LaterPhase,
            PartKind::Reserve => Place::KeptFree,
            _ => Place::OnCard,
        }
    }

    /// What the part is, in plain words.
    pub fn explanation(self) -> &'static str {
        match self {
            PartKind::ResidentWeights => {
                "The video model itself (its weights), loaded onto the graphics card while it draws the frames. Wan 2.2 14B swaps two such models: one for the rough first steps, one for the fine last steps."
            }
            PartKind::OtherModels => {
                "Models from earlier steps that ComfyUI keeps on the card because it thinks there is room (usually the text encoder). They are dropped when memory gets tight — but only as far as ComfyUI's own estimate says."
            }
            PartKind::Activations => {
                "Working memory for the frames being drawn. It grows with the number of frames and the picture size; it includes what PyTorch keeps cached for reuse."
            }
            PartKind::Workspace => {
                "A fixed amount of scratch memory the maths routines need, whatever the length."
            }
            PartKind::CompileOverhead => {
                "Extra memory torch.compile uses to run faster: CUDA-graph memory pools and, with max-autotune, a one-off bump while it tries kernels on the first step. Some modes save memory instead; the tooltip then says how much."
            }
            PartKind::OffloadedWeights => {
                "Part of the model that does not fit on the card. It stays in the computer's normal RAM and is copied to the card on every step, which makes the run slower. It takes no graphics memory."
            }
            PartKind::VaeDecode => {
                "After drawing, the VAE turns the result into real pictures. It runs after sampling, so it does not add to the bar above; if it needs more than is free, ComfyUI decodes in tiles, which is slower but works."
            }
            PartKind::Reserve => {
                "Memory ComfyUI leaves free on purpose when it decides how much of the model to load (its --reserve-vram setting), so the desktop and other programs keep working."
            }
        }
    }
}

/// One part with its size.
#[derive(Debug, Clone, PartialEq)]
pub struct BarPart {
    pub kind: PartKind,
    pub bytes: f64,
    /// The plain-words tooltip with this length's numbers.
    pub tooltip: String,
}

/// One compile mode at one length.
#[derive(Debug, Clone, PartialEq)]
pub struct ModeBudget {
    pub mode: CompileMode,
    pub zone: Zone,
    /// Every part, in [`PartKind::ALL`] order; the [`Place::OnCard`] ones sum to
    /// `sampling_peak_bytes`.
    pub parts: Vec<BarPart>,
    /// The sampling peak, which decides whether the mode fits.
    pub sampling_peak_bytes: f64,
    /// The whole run's peak and the phase that sets it.
    pub run_peak_bytes: f64,
    pub run_peak_phase: PhaseName,
    /// Free memory left under the sampling peak (negative: short of memory).
    pub spare_bytes: f64,
    pub time_s: f64,
    /// The part of `time_s` spent compiling (a new size).
    pub compile_s: f64,
    /// The policy's line for this mode: why it was chosen or passed over.
    pub reason: String,
}

impl ModeBudget {
    pub fn part(&self, kind: PartKind) -> Option<&BarPart> {
        self.parts.iter().find(|p| p.kind == kind)
    }

    /// The bytes of one part (0 when absent).
    pub fn bytes(&self, kind: PartKind) -> f64 {
        self.part(kind).map_or(0.0, |p| p.bytes)
    }
}

/// Every mode at one length, and Auto's choice.
#[derive(Debug, Clone, PartialEq)]
pub struct LengthBudget {
    pub frames: u32,
    pub latent_frames: u32,
    pub tokens: u64,
    /// The mode Auto picks.
    pub chosen: CompileMode,
    /// The policy's sentence for the choice.
    pub summary: String,
    /// Whether any mode fits (when none does, `chosen` is the least bad).
    pub fits: bool,
    /// One entry per mode, in [`CompileMode::ALL`] order.
    pub modes: Vec<ModeBudget>,
    /// What no mode changes (a tiled VAE decode, …).
    pub notes: Vec<String>,
}

impl LengthBudget {
    pub fn mode(&self, mode: CompileMode) -> Option<&ModeBudget> {
        self.modes.iter().find(|m| m.mode == mode)
    }
}

/// The card's lines the bar is drawn against.
#[derive(Debug, Clone, PartialEq)]
pub struct CardLines {
    pub name: String,
    pub total_bytes: f64,
    /// Free with none of the run's models loaded (total less other programs and the driver).
    pub free_bytes: f64,
    pub reserve_bytes: f64,
    pub margin_bytes: f64,
}

impl CardLines {
    /// The line a mode's sampling peak must stay under to fit: the free memory less the margin.
    pub fn usable_bytes(&self) -> f64 {
        self.free_bytes - self.margin_bytes
    }

    /// Memory other programs and the driver hold.
    pub fn others_bytes(&self) -> f64 {
        (self.total_bytes - self.free_bytes).max(0.0)
    }
}

/// The budget panel's data for one workflow on one card with one set of settings.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetView {
    pub card: CardLines,
    /// The output's frame rate, for the slider's seconds.
    pub fps: f64,
    /// The length the workflow itself asks for, if known.
    pub workflow_frames: Option<u32>,
    /// Every 4n+1 length from 1 to [`MAX_PLANNED_FRAMES`], in order.
    pub lengths: Vec<LengthBudget>,
    pub zones: SliderZones,
}

impl BudgetView {
    /// Projects every length with the planner (its calibration and the lengths that ran out of
    /// memory before included). `fps`: the workflow's output frame rate, if it sets one.
    pub fn for_planner(planner: &Planner, fps: Option<f64>) -> BudgetView {
        let card = CardLines {
            name: planner.facts.name.clone(),
            total_bytes: planner.card.total_bytes,
            free_bytes: planner.card.free_bytes,
            reserve_bytes: planner.settings.reserve_bytes,
            margin_bytes: planner.settings.margin_bytes,
        };
        let mut view = BudgetView::compute(card, fps, |frames| planner.project_at(frames));
        view.workflow_frames = planner.workflow_frames;
        view
    }

    /// Projects every length with `project` (a planner's `project_at`, or a test's).
    pub fn compute(
        card: CardLines,
        fps: Option<f64>,
        mut project: impl FnMut(u32) -> FrameProjection,
    ) -> BudgetView {
        let lengths: Vec<LengthBudget> = (1..=MAX_PLANNED_FRAMES)
            .step_by(4)
            .map(|frames| length_budget(&card, &project(frames)))
            .collect();
        let zones = SliderZones::from_lengths(&lengths);
        BudgetView {
            card,
            fps: fps
                .filter(|f| f.is_finite() && *f > 0.0)
                .unwrap_or(DEFAULT_FPS),
            workflow_frames: None,
            lengths,
            zones,
        }
    }

    /// The shortest and longest length the slider offers.
    pub fn frame_range(&self) -> (u32, u32) {
        let first = self.lengths.first().map_or(1, |l| l.frames);
        let last = self.lengths.last().map_or(1, |l| l.frames);
        (first, last)
    }

    /// `frames` snapped to 4n+1 and kept within the slider's range.
    pub fn clamp_frames(&self, frames: u32) -> u32 {
        let (first, last) = self.frame_range();
        snap_frames(frames).clamp(first, last)
    }

    /// The budget at `frames` (snapped and clamped); `None` only for an empty view.
    pub fn at(&self, frames: u32) -> Option<&LengthBudget> {
        let frames = self.clamp_frames(frames);
        self.lengths.iter().find(|l| l.frames == frames)
    }

    /// The mode the bar shows at `frames`: the override, else Auto's choice.
    pub fn shown_mode(
        &self,
        frames: u32,
        mode_override: Option<CompileMode>,
    ) -> Option<&ModeBudget> {
        let length = self.at(frames)?;
        length.mode(mode_override.unwrap_or(length.chosen))
    }

    /// How long `frames` plays at the workflow's frame rate.
    pub fn seconds(&self, frames: u32) -> f64 {
        f64::from(frames) / self.fps
    }

    /// The line next to the mode: "Auto: default — fits with 6.5 GiB spare, about 165 s", or the
    /// override with its zone.
    pub fn mode_line(&self, frames: u32, mode_override: Option<CompileMode>) -> String {
        let Some(length) = self.at(frames) else {
            return "No projection".into();
        };
        let Some(shown) = length.mode(mode_override.unwrap_or(length.chosen)) else {
            return "No projection".into();
        };
        let how = describe(shown, &self.card);
        match mode_override {
            None if length.fits => format!("Auto: {} — {how}", shown.mode),
            None => format!(
                "Auto: {} — nothing fits at {} frames; this mode needs the least memory ({how})",
                shown.mode, length.frames
            ),
            Some(mode) if mode == length.chosen => {
                format!("Manual: {} (Auto's choice too) — {how}", shown.mode)
            }
            Some(_) => format!(
                "Manual: {} — {how}; Auto would pick {}",
                shown.mode, length.chosen
            ),
        }
    }
}

/// "fits with 6.5 GiB spare, about 47 s" and the like.
fn describe(mode: &ModeBudget, card: &CardLines) -> String {
    let spare = mode.spare_bytes / GIB;
    let time = if mode.compile_s > 0.0 {
        format!(
            "about {:.0} s ({:.0} s of it compiling)",
            mode.time_s, mode.compile_s
        )
    } else {
        format!("about {:.0} s", mode.time_s)
    };
    match mode.zone {
        Zone::Fits => format!("fits with {spare:.1} GiB spare, {time}"),
        Zone::FitsWithOffload => format!(
            "fits with {spare:.1} GiB spare by keeping {:.1} GiB of weights in RAM (slower), {time}",
            mode.bytes(PartKind::OffloadedWeights) / GIB
        ),
        Zone::PredictedOom if mode.spare_bytes < 0.0 => format!(
            "predicted out of memory: {:.1} GiB short, {time}",
            -spare
        ),
        Zone::PredictedOom => format!(
            "predicted out of memory: only {spare:.1} GiB would be left, under the {:.1} GiB safety margin",
            card.margin_bytes / GIB
        ),
        Zone::Unavailable => {
            "not possible: CUDA graphs need the whole model on the card, but part of it stays in RAM"
                .into()
        }
    }
}

/// Plain words for a compile mode, for its tooltip.
pub fn mode_explanation(mode: CompileMode) -> &'static str {
    match mode {
        CompileMode::MaxAutotune => {
            "max-autotune: torch.compile tries many kernels on the first step and records CUDA graphs. Fastest per step, but the first run of a new size spends minutes compiling, it needs the whole model on the card, and it uses the most memory."
        }
        CompileMode::MaxAutotuneNoCudagraphs => {
            "max-autotune-no-cudagraphs: tries many kernels like max-autotune but records no CUDA graphs, so it works when part of the model stays in RAM. Slow first run of a new size."
        }
        CompileMode::ReduceOverhead => {
            "reduce-overhead: compiles and records CUDA graphs, which saves time per step but keeps extra memory pools and needs the whole model on the card."
        }
        CompileMode::Default => {
            "default: compiles the model's maths into faster kernels without CUDA graphs. Often saves a little memory; the first run of a new size spends time compiling."
        }
        CompileMode::Off => {
            "off: no torch.compile. No compile wait and no extra memory; each step is a bit slower."
        }
    }
}

fn length_budget(card: &CardLines, projection: &FrameProjection) -> LengthBudget {
    let choice = choose(projection);
    let chosen = CompileMode::parse(choice.mode).unwrap_or(CompileMode::Off);
    let sampling_phases = || {
        projection.phases.iter().filter(|p| {
            matches!(
                p.phase,
                PhaseName::HighNoiseSampling | PhaseName::LowNoiseSampling | PhaseName::Sampling
            )
        })
    };
    let offloaded_bytes = sampling_phases()
        .map(|p| p.offloaded_bytes)
        .fold(0.0, f64::max);
    let decode = projection
        .phases
        .iter()
        .find(|p| p.phase == PhaseName::VaeDecode);
    let modes = projection
        .modes
        .iter()
        .zip(
            choice
                .reasons
                .iter()
                .map(Some)
                .chain(std::iter::repeat(None)),
        )
        .filter_map(|(m, reason)| {
            let mode = CompileMode::parse(m.mode)?;
            Some(mode_budget(
                card,
                mode,
                m,
                offloaded_bytes,
                decode.map(|d| (d.peak_bytes, d.weights_on_gpu_bytes)),
                reason.cloned().unwrap_or_default(),
            ))
        })
        .collect();
    LengthBudget {
        frames: projection.frames,
        latent_frames: projection.latent_frames,
        tokens: projection.tokens,
        chosen,
        summary: choice.summary,
        fits: choice.fits,
        modes,
        notes: projection.notes.clone(),
    }
}

fn mode_budget(
    card: &CardLines,
    mode: CompileMode,
    m: &ModeProjection,
    offloaded_bytes: f64,
    decode: Option<(f64, f64)>,
    reason: String,
) -> ModeBudget {
    let zone = if m.fits {
        if offloaded_bytes > 0.0 {
            Zone::FitsWithOffload
        } else {
            Zone::Fits
        }
    } else if m.is_ruled_out && m.blockers.len() == 1 {
        // The CUDA-graph rule is its only blocker: memory would do.
        Zone::Unavailable
    } else {
        Zone::PredictedOom
    };
    let s = &m.sampling;
    let others = (m.sampling_peak_bytes - s.total_bytes).max(0.0);
    // A compile mode that saves activation memory shows as smaller activations, so the stacked
    // parts still add up to the peak; the saving goes in the tooltip.
    let (activations, compile, saving) = if s.compile_bytes < 0.0 {
        (
            (s.activations_bytes + s.compile_bytes).max(0.0) + s.allocator_cache_bytes,
            s.compile_transient_bytes,
            -s.compile_bytes,
        )
    } else {
        (
            s.activations_bytes + s.allocator_cache_bytes,
            s.compile_bytes + s.compile_transient_bytes,
            0.0,
        )
    };
    let gib = |b: f64| b / GIB;
    let (decode_peak, decode_weights) = decode.unwrap_or((0.0, 0.0));
    let parts = PartKind::ALL
        .iter()
        .map(|&kind| {
            let bytes = match kind {
                PartKind::ResidentWeights => s.resident_weights_bytes,
                PartKind::OtherModels => others,
                PartKind::Activations => activations,
                PartKind::Workspace => s.workspace_bytes,
                PartKind::CompileOverhead => compile,
                PartKind::OffloadedWeights => offloaded_bytes,
                PartKind::VaeDecode => decode_peak,
                PartKind::Reserve => card.reserve_bytes,
            };
            let detail = match kind {
                PartKind::CompileOverhead if saving > 0.0 => format!(
                    "{:.2} GiB here; {mode} also saves {:.2} GiB of activations.",
                    gib(bytes),
                    gib(saving)
                ),
                PartKind::Activations => format!(
                    "{:.2} GiB here ({:.2} GiB live, {:.2} GiB kept cached by PyTorch).",
                    gib(bytes),
                    gib(bytes - s.allocator_cache_bytes),
                    gib(s.allocator_cache_bytes)
                ),
                PartKind::VaeDecode => {
                    let tiled = if decode_peak > card.free_bytes {
                        " That is more than is free, so ComfyUI will decode in tiles (slower)."
                    } else {
                        ""
                    };
                    format!(
                        "Its peak is {:.2} GiB, {:.2} GiB of it models still loaded.{tiled}",
                        gib(decode_peak),
                        gib(decode_weights)
                    )
                }
                _ => format!("{:.2} GiB here.", gib(bytes)),
            };
            BarPart {
                kind,
                bytes,
                tooltip: format!("{}: {}\n\n{detail}", kind.label(), kind.explanation()),
            }
        })
        .collect();
    ModeBudget {
        mode,
        zone,
        parts,
        sampling_peak_bytes: m.sampling_peak_bytes,
        run_peak_bytes: m.peak_bytes,
        run_peak_phase: m.peak_phase,
        spare_bytes: m.spare_bytes,
        time_s: m.time.total_s,
        compile_s: m.time.compile_s,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::comfyui::WanVae;
    use crate::budget::physical::{Coefficients, DitSize, TorchGeneration};
    use crate::budget::projection::{project, tests::a14b_i2v_on_a_4090};
    use crate::budget::time::TimeCoefficients;

    fn view_with_free(free_gib: f64) -> BudgetView {
        let (mut card, workload, settings) = a14b_i2v_on_a_4090();
        card.free_bytes = free_gib * GIB;
        let c = Coefficients::prior(DitSize::B14, TorchGeneration::FusedRmsNorm, WanVae::V21);
        let t = TimeCoefficients::prior(card.fp16_tflops);
        let lines = CardLines {
            name: "test card".into(),
            total_bytes: card.total_bytes,
            free_bytes: card.free_bytes,
            reserve_bytes: settings.reserve_bytes,
            margin_bytes: settings.margin_bytes,
        };
        BudgetView::compute(lines, None, |frames| {
            project(&card, &workload, &settings, &c, &t, frames)
        })
    }

    #[test]
    fn ranges_cover_every_length_once_per_mode() {
        let view = view_with_free(23.0);
        assert_eq!(view.lengths.len(), 61);
        for (mode, ranges) in &view.zones.modes {
            assert_eq!(ranges.first().map(|r| r.first), Some(1), "{mode}");
            assert_eq!(ranges.last().map(|r| r.last), Some(MAX_PLANNED_FRAMES));
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].last + 4, pair[1].first, "{mode}: {ranges:?}");
                assert_ne!(pair[0].zone, pair[1].zone, "{mode}: {ranges:?}");
            }
        }
    }

    #[test]
    fn stacked_parts_add_up_to_the_sampling_peak() {
        let view = view_with_free(23.0);
        for length in &view.lengths {
            for mode in &length.modes {
                let stacked: f64 = mode
                    .parts
                    .iter()
                    .filter(|p| p.kind.place() == Place::OnCard)
                    .map(|p| p.bytes)
                    .sum();
                assert!(
                    (stacked - mode.sampling_peak_bytes).abs() < 1e-3 * GIB,
                    "{} frames {}: {stacked} vs {}",
                    length.frames,
                    mode.mode,
                    mode.sampling_peak_bytes
                );
                assert!(mode.parts.iter().all(|p| p.bytes >= 0.0));
            }
        }
    }

    #[test]
    fn zones_agree_with_the_policy_and_offload_only_where_weights_stream() {
        for free in [23.0, 18.0, 14.0] {
            let view = view_with_free(free);
            for length in &view.lengths {
                for mode in &length.modes {
                    let offloaded = mode.bytes(PartKind::OffloadedWeights);
                    match mode.zone {
                        Zone::Fits => assert_eq!(offloaded, 0.0),
                        Zone::FitsWithOffload => assert!(offloaded > 0.0),
                        Zone::PredictedOom => assert!(
                            mode.spare_bytes < view.card.margin_bytes,
                            "{free} GiB {} {}",
                            length.frames,
                            mode.mode
                        ),
                        Zone::Unavailable => assert!(offloaded > 0.0),
                    }
                    assert_eq!(
                        view.zones.zone_at(mode.mode, length.frames),
                        Some(mode.zone)
                    );
                }
                let chosen = length.mode(length.chosen).unwrap();
                assert_eq!(
                    length.fits,
                    matches!(chosen.zone, Zone::Fits | Zone::FitsWithOffload)
                );
            }
        }
    }

    #[test]
    fn once_out_of_memory_longer_lengths_with_the_same_weights_are_too() {
        // Memory only grows with length while the weights on the card stay the same. Short clips
        // can sit over the line only because ComfyUI keeps the text encoder loaded, and longer
        // ones can come back under it because ComfyUI starts streaming weights from RAM (its
        // estimate grows): so from the first length out of memory with nothing else loaded, every
        // longer length with at least as many weights resident is out of memory too.
        for free in [23.0, 20.0, 18.0, 16.0, 14.0] {
            let view = view_with_free(free);
            for mode in CompileMode::ALL {
                let mut out_of_memory_from: Option<(u32, f64)> = None;
                for length in &view.lengths {
                    let m = length.mode(mode).unwrap();
                    let resident = m.bytes(PartKind::ResidentWeights);
                    match out_of_memory_from {
                        Some((from, at_least)) if resident >= at_least => assert_eq!(
                            m.zone,
                            Zone::PredictedOom,
                            "{free} GiB free, {mode}: out of memory at {from} but not at {}",
                            length.frames
                        ),
                        Some(_) => {}
                        None if m.zone == Zone::PredictedOom
                            && m.bytes(PartKind::OtherModels) == 0.0 =>
                        {
                            out_of_memory_from = Some((length.frames, resident));
                        }
                        None => {}
                    }
                }
            }
            for (mode, ranges) in &view.zones.modes {
                let text: Vec<String> = ranges
                    .iter()
                    .map(|r| format!("{}-{} {}", r.first, r.last, r.zone.label()))
                    .collect();
                println!("{free} GiB free, {mode}: {}", text.join(", "));
            }
        }
    }

    #[test]
    fn the_view_snaps_and_describes_the_mode() {
        let view = view_with_free(23.0);
        assert_eq!(view.clamp_frames(80), 81);
        assert_eq!(view.clamp_frames(1000), MAX_PLANNED_FRAMES);
        assert_eq!(view.at(82).unwrap().frames, 81);
        assert!((view.seconds(81) - 81.0 / 16.0).abs() < 1e-9);
        let auto = view.mode_line(81, None);
        assert!(auto.starts_with("Auto: "), "{auto}");
        let manual = view.mode_line(81, Some(CompileMode::MaxAutotune));
        assert!(manual.starts_with("Manual: max-autotune"), "{manual}");
        let shown = view.shown_mode(81, Some(CompileMode::Default)).unwrap();
        assert_eq!(shown.mode, CompileMode::Default);
    }
}
