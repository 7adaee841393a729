//! The projection for one frame count: every phase's ComfyUI decision and physical peak, then per
//! torch.compile mode the peak, the phase that sets it, the time, and whether it fits. This is
//! what the slider re-computes on every frame, so it allocates little and loops over five phases.

use serde::Serialize;

use super::comfyui::{self, AttentionEstimate, Latent, Loadout, Phase, RunShape, WanVae};
use super::physical::{self, Coefficients, CompileMode, uses_cuda_graphs};
use super::time::{self, DitShape, Pass, TimeCoefficients};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// The card as the projection needs it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Card {
    pub total_bytes: f64,
    /// Free memory with none of the run's models loaded (what `/system_stats` reports).
    pub free_bytes: f64,
    pub fp16_tflops: f64,
}

/// One diffusion model of the workflow (two for Wan 2.2 14B: high noise, then low noise).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Expert {
    /// Bytes ComfyUI holds on the GPU when fully loaded.
    pub bytes: f64,
    /// Steps this expert runs.
    pub steps: u32,
}

/// What the projection needs to know about the workflow, independent of the frame count.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub width: u32,
    pub height: u32,
    pub dit: DitShape,
    pub is_vace: bool,
    pub vae: WanVae,
    pub experts: Vec<Expert>,
    pub text_encoder_bytes: f64,
    pub vae_bytes: f64,
    /// Image-to-video: the whole clip is VAE-encoded before sampling.
    pub encodes_clip: bool,
    /// CFG above 1 (an uncond pass runs).
    pub uses_cfg: bool,
    /// Whether this shape was compiled already in the running server (no compile time then).
    pub compiled_already: bool,
}

impl Workload {
    /// The key calibration files runs under: runs of the same model size and layout on the same
    /// card teach each other ("dit5120-2x13.3GiB").
    pub fn family_key(&self) -> String {
        let bytes = self.experts.first().map_or(0.0, |e| e.bytes);
        format!(
            "dit{}-{}x{:.1}GiB",
            self.dit.dim,
            self.experts.len(),
            bytes / GIB
        )
    }
}

/// Settings that change the projection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    pub reserve_bytes: f64,
    /// Head room the chosen mode must leave below the free memory.
    pub margin_bytes: f64,
    /// The attention path ComfyUI sizes its estimate for (`--use-split-cross-attention` and
    /// `--use-quad-cross-attention` take the larger one).
    pub attention: AttentionEstimate,
}

/// One phase of the run at this frame count.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PhaseProjection {
    pub phase: PhaseName,
    /// ComfyUI's "MB usable" for the model this phase loads.
    pub usable_bytes: f64,
    pub resident_bytes: f64,
    pub offloaded_bytes: f64,
    pub evicted_bytes: f64,
    /// ComfyUI's estimate passed to its loader for this phase.
    pub comfy_estimate_bytes: f64,
    pub batches_cfg: Option<bool>,
    /// Weights of every model on the GPU in this phase (cached ones included).
    pub weights_on_gpu_bytes: f64,
    /// Physical peak without compile (the per-mode peaks follow).
    pub peak_bytes: f64,
}

/// Phase names as the JSON shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseName {
    TextEncode,
    ImageEncode,
    HighNoiseSampling,
    LowNoiseSampling,
    Sampling,
    VaeDecode,
}

/// One compile mode at this frame count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModeProjection {
    pub mode: &'static str,
    /// The run's physical peak and the phase that sets it.
    pub peak_bytes: f64,
    pub peak_phase: PhaseName,
    /// The peak of the sampling phases, which decides whether the mode fits: an out-of-memory
    /// there fails the run, while ComfyUI falls back to tiled VAE decoding and encoding.
    pub sampling_peak_bytes: f64,
    /// The sampling peak in parts, for the stacked bar (the phase that samples heaviest).
    pub sampling: physical::SamplingPeak,
    pub time: time::RunTime,
    /// Free memory left under the sampling peak (negative: does not fit at all).
    pub spare_bytes: f64,
    pub fits: bool,
    /// A CUDA-graph mode while ComfyUI streams weights: not allowed, whatever the memory.
    pub is_ruled_out: bool,
    /// Why it does not fit or is not allowed, in words; empty when it fits.
    pub blockers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrameProjection {
    pub frames: u32,
    pub latent_frames: u32,
    pub tokens: u64,
    pub phases: Vec<PhaseProjection>,
    pub modes: Vec<ModeProjection>,
    /// Things to know that no mode changes (a VAE phase over the free memory: tiled, slower).
    pub notes: Vec<String>,
}

/// Projects one frame count for every compile mode.
pub fn project(
    card: &Card,
    workload: &Workload,
    settings: &Settings,
    coefficients: &Coefficients,
    timing: &TimeCoefficients,
    frames: u32,
) -> FrameProjection {
    let shape = RunShape {
        frames,
        width: workload.width,
        height: workload.height,
        dit_dim: workload.dit.dim,
        is_vace: workload.is_vace,
        vae: workload.vae,
        encodes_clip: workload.encodes_clip,
        uses_cfg: workload.uses_cfg,
        compute_dtype_bytes: 2,
        attention: settings.attention,
    };
    let latent = shape.latent();
    let tokens = physical::tokens(latent);
    let loadout = Loadout {
        text_encoder_bytes: workload.text_encoder_bytes,
        vae_bytes: workload.vae_bytes,
        diffusion_bytes: workload.experts.iter().map(|e| e.bytes).collect(),
    };
    let decisions = comfyui::simulate(card.free_bytes, settings.reserve_bytes, &loadout, &shape);
    let two_experts = workload.experts.len() > 1;
    let phases: Vec<PhaseProjection> = decisions
        .iter()
        .map(|d| {
            let weights_on_gpu = (card.free_bytes - d.free_after_load_bytes).max(0.0);
            let others = weights_on_gpu - d.load.resident_bytes;
            let peak = match d.phase {
                Phase::TextEncode => {
                    others + physical::text_encode_peak(coefficients, d.load.resident_bytes)
                }
                Phase::ImageEncode => {
                    others
                        + physical::encode_peak(
                            coefficients,
                            workload.width,
                            workload.height,
                            d.load.resident_bytes,
                        )
                }
                Phase::Sampling(_) => {
                    let samples = if d.batches_cfg == Some(true) { 2 } else { 1 };
                    others
                        + physical::sampling_peak(
                            coefficients,
                            latent,
                            d.load.resident_bytes,
                            samples,
                            CompileMode::Off,
                        )
                        .total_bytes
                }
                Phase::VaeDecode => {
                    others
                        + physical::decode_peak(
                            coefficients,
                            workload.vae,
                            latent,
                            frames,
                            d.load.resident_bytes,
                        )
                }
            };
            PhaseProjection {
                phase: name_of(d.phase, two_experts),
                usable_bytes: d.load.usable_bytes,
                resident_bytes: d.load.resident_bytes,
                offloaded_bytes: d.load.offloaded_bytes,
                evicted_bytes: d.evicted_bytes,
                comfy_estimate_bytes: d.estimate_bytes,
                batches_cfg: d.batches_cfg,
                weights_on_gpu_bytes: weights_on_gpu,
                peak_bytes: peak,
            }
        })
        .collect();
    let passes: Vec<Pass> = workload
        .experts
        .iter()
        .zip(phases.iter().filter(|p| is_sampling(p.phase)))
        .map(|(expert, phase)| Pass {
            steps: expert.steps,
            forwards_per_step: if workload.uses_cfg { 2 } else { 1 },
            offloaded_bytes: phase.offloaded_bytes,
        })
        .collect();
    let any_offload = passes.iter().any(|p| p.offloaded_bytes > 0.0);
    let voxels = f64::from(latent.frames) * f64::from(latent.height) * f64::from(latent.width);
    let modes = CompileMode::ALL
        .iter()
        .map(|&mode| {
            mode_projection(
                mode,
                card,
                workload,
                settings,
                coefficients,
                timing,
                latent,
                tokens,
                voxels,
                &phases,
                &passes,
                any_offload,
            )
        })
        .collect();
    let notes = phases
        .iter()
        .filter(|p| matches!(p.phase, PhaseName::ImageEncode | PhaseName::VaeDecode))
        .filter(|p| p.peak_bytes > card.free_bytes)
        .map(|p| {
            format!(
                "{} would need {:.1} GiB of {:.1} GiB free: ComfyUI then works in tiles, which is slower",
                match p.phase {
                    PhaseName::ImageEncode => "the image encode",
                    _ => "the VAE decode",
                },
                p.peak_bytes / GIB,
                card.free_bytes / GIB
            )
        })
        .collect();
    FrameProjection {
        frames,
        latent_frames: latent.frames,
        tokens,
        phases,
        modes,
        notes,
    }
}

fn is_sampling(phase: PhaseName) -> bool {
    matches!(
        phase,
        PhaseName::HighNoiseSampling | PhaseName::LowNoiseSampling | PhaseName::Sampling
    )
}

fn name_of(phase: Phase, two_experts: bool) -> PhaseName {
    match phase {
        Phase::TextEncode => PhaseName::TextEncode,
        Phase::ImageEncode => PhaseName::ImageEncode,
        Phase::Sampling(0) if two_experts => PhaseName::HighNoiseSampling,
        Phase::Sampling(_) if two_experts => PhaseName::LowNoiseSampling,
        Phase::Sampling(_) => PhaseName::Sampling,
        Phase::VaeDecode => PhaseName::VaeDecode,
    }
}

#[allow(clippy::too_many_arguments)]
fn mode_projection(
    mode: CompileMode,
    card: &Card,
    workload: &Workload,
    settings: &Settings,
    coefficients: &Coefficients,
    timing: &TimeCoefficients,
    latent: Latent,
    tokens: u64,
    voxels: f64,
    phases: &[PhaseProjection],
    passes: &[Pass],
    any_offload: bool,
) -> ModeProjection {
    let mut peak_bytes = 0.0;
    let mut peak_phase = PhaseName::TextEncode;
    let mut sampling_peak_bytes: f64 = 0.0;
    let mut heaviest: Option<physical::SamplingPeak> = None;
    for phase in phases {
        let peak = if is_sampling(phase.phase) {
            let samples = if phase.batches_cfg == Some(true) {
                2
            } else {
                1
            };
            let sampling =
                physical::sampling_peak(coefficients, latent, phase.resident_bytes, samples, mode);
            let others = phase.weights_on_gpu_bytes - phase.resident_bytes;
            if heaviest.is_none_or(|h| sampling.total_bytes > h.total_bytes) {
                heaviest = Some(sampling);
            }
            sampling_peak_bytes = sampling_peak_bytes.max(others + sampling.total_bytes);
            others + sampling.total_bytes
        } else {
            phase.peak_bytes
        };
        if peak > peak_bytes {
            peak_bytes = peak;
            peak_phase = phase.phase;
        }
    }
    let sampling =
        heaviest.unwrap_or_else(|| physical::sampling_peak(coefficients, latent, 0.0, 1, mode));
    let time = time::run_time(
        timing,
        workload.dit,
        tokens,
        voxels,
        passes,
        mode,
        !workload.compiled_already,
    );
    let spare_bytes = card.free_bytes - sampling_peak_bytes;
    let mut blockers = Vec::new();
    if spare_bytes < settings.margin_bytes {
        blockers.push(if spare_bytes < 0.0 {
            format!(
                "its peak is {:.1} GiB over the free memory",
                -spare_bytes / GIB
            )
        } else {
            format!(
                "it would leave {:.1} GiB, under the {:.1} GiB margin",
                spare_bytes / GIB,
                settings.margin_bytes / GIB
            )
        });
    }
    let is_ruled_out = uses_cuda_graphs(mode) && any_offload;
    if is_ruled_out {
        blockers.push(
            "CUDA graphs need every weight on the GPU, but ComfyUI would stream some from RAM"
                .into(),
        );
    }
    ModeProjection {
        mode: mode.as_str(),
        peak_bytes,
        peak_phase,
        sampling_peak_bytes,
        sampling,
        time,
        spare_bytes,
        fits: blockers.is_empty(),
        is_ruled_out,
        blockers,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::budget::physical::{DitSize, TorchGeneration};

    pub(crate) fn a14b_i2v_on_a_4090() -> (Card, Workload, Settings) {
        let card = Card {
            total_bytes: 24_564.0 * 1024.0 * 1024.0,
            free_bytes: 23.0 * GIB,
            fp16_tflops: 330.4,
        };
        let expert = Expert {
            bytes: 13_629.08 * 1024.0 * 1024.0,
            steps: 2,
        };
        let workload = Workload {
            width: 832,
            height: 480,
            dit: DitShape::A14B,
            is_vace: false,
            vae: WanVae::V21,
            experts: vec![expert, expert],
            text_encoder_bytes: 6.3 * GIB,
            vae_bytes: 0.24 * GIB,
            encodes_clip: true,
            uses_cfg: false,
            compiled_already: false,
        };
        let settings = Settings {
            reserve_bytes: 400.0 * 1024.0 * 1024.0,
            margin_bytes: 2.0 * GIB,
            attention: AttentionEstimate::Efficient,
        };
        (card, workload, settings)
    }

    #[test]
    fn more_frames_never_lower_the_peak_or_the_time() {
        let (card, workload, settings) = a14b_i2v_on_a_4090();
        let c = Coefficients::prior(DitSize::B14, TorchGeneration::FusedRmsNorm, WanVae::V21);
        let t = TimeCoefficients::prior(card.fp16_tflops);
        let mut last: Option<FrameProjection> = None;
        for frames in (1..=161).step_by(16) {
            let p = project(&card, &workload, &settings, &c, &t, frames);
            assert_eq!(p.phases.len(), 5);
            if let Some(prev) = &last {
                for (a, b) in prev.modes.iter().zip(&p.modes) {
                    assert!(
                        b.time.total_s >= a.time.total_s,
                        "{frames}: {} time fell",
                        b.mode
                    );
                }
            }
            last = Some(p);
        }
    }

    #[test]
    fn cuda_graph_modes_are_blocked_when_weights_stream() {
        let (mut card, workload, settings) = a14b_i2v_on_a_4090();
        card.free_bytes = 15.0 * GIB;
        let c = Coefficients::prior(DitSize::B14, TorchGeneration::FusedRmsNorm, WanVae::V21);
        let t = TimeCoefficients::prior(card.fp16_tflops);
        let p = project(&card, &workload, &settings, &c, &t, 81);
        assert!(p.phases.iter().any(|ph| ph.offloaded_bytes > 0.0));
        let reduce = p
            .modes
            .iter()
            .find(|m| m.mode == "reduce-overhead")
            .unwrap();
        assert!(!reduce.fits && reduce.blockers.iter().any(|b| b.contains("CUDA graphs")));
    }
}
