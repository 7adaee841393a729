//! What ComfyUI 0.8.0 decides about GPU memory, reproduced exactly: its activation estimate, its
//! reserve, how many weight bytes each model may keep on the GPU, what it evicts between phases,
//! and whether it batches cond and uncond. Read from its source (`model_base.py`
//! `memory_required`, `sampler_helpers.py` `estimate_memory`, `model_management.py`
//! `load_models_gpu`, `samplers.py` `calc_cond_batch`, `sd.py` VAE estimates); checked against
//! real loader log lines in the tests.
//!
//! This is ComfyUI's bookkeeping, not the physical peak: its estimate is deliberately
//! conservative (about twice the live activations), which is why it offloads weights early.

/// 1 MiB, the unit of ComfyUI's logs and estimates.
pub const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;

/// The operating system ComfyUI runs on: Windows reserves more for the desktop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Linux,
    Windows,
}

/// `EXTRA_RESERVED_VRAM`: 400 MiB on Linux, 600 MiB on Windows (700 MiB on cards over 15 GiB),
/// or what `--reserve-vram GB` says.
pub fn reserve_bytes(platform: Platform, total_bytes: u64, reserve_vram_gib: Option<f64>) -> f64 {
    if let Some(gib) = reserve_vram_gib {
        return gib.max(0.0) * GIB;
    }
    match platform {
        Platform::Linux => 400.0 * MIB,
        Platform::Windows if total_bytes as f64 > 15.0 * GIB => 700.0 * MIB,
        Platform::Windows => 600.0 * MIB,
    }
}

/// `minimum_inference_memory()`: 0.8 GiB plus the reserve.
pub fn minimum_inference_bytes(reserve_bytes: f64) -> f64 {
    0.8 * GIB + reserve_bytes
}

/// Which attention path sizes the estimate. PyTorch SDPA, flash, xformers and Sage all take the
/// first (the default on NVIDIA); only split/quad cross-attention takes the 7.5× larger one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionEstimate {
    Efficient,
    SplitOrQuad,
}

/// `memory_usage_factor` of a Wan diffusion model: dim / 2222, ×1.2 for VACE.
pub fn memory_usage_factor(dim: u32, is_vace: bool) -> f64 {
    let factor = f64::from(dim) / 2222.0;
    if is_vace { factor * 1.2 } else { factor }
}

/// Latent size of one sample: latent frames and the latent height and width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latent {
    pub frames: u32,
    pub height: u32,
    pub width: u32,
}

impl Latent {
    /// The latent of `frames` video frames at `width`×`height` pixels with a VAE that compresses
    /// space by `spatial` (8 for Wan 2.1's VAE, 16 for Wan 2.2's): T = ⌊(F−1)/4⌋+1.
    pub fn of_video(frames: u32, width: u32, height: u32, spatial: u32) -> Latent {
        let spatial = spatial.max(1);
        Latent {
            frames: frames.saturating_sub(1) / 4 + 1,
            height: height / spatial,
            width: width / spatial,
        }
    }

    fn voxels(&self) -> f64 {
        f64::from(self.frames) * f64::from(self.height) * f64::from(self.width)
    }
}

/// `BaseModel.memory_required` for `batch` samples: ComfyUI's activation estimate in bytes.
/// `compute_dtype_bytes` is 2 for fp16/bf16 (fp8 weights compute in 16-bit).
pub fn activation_estimate_bytes(
    latent: Latent,
    batch: u32,
    factor: f64,
    compute_dtype_bytes: u32,
    attention: AttentionEstimate,
) -> f64 {
    let area = f64::from(batch) * latent.voxels();
    match attention {
        AttentionEstimate::Efficient => area * f64::from(compute_dtype_bytes) * 0.01 * factor * MIB,
        AttentionEstimate::SplitOrQuad => area * 0.15 * factor * MIB,
    }
}

/// How a model comes to sit in GPU memory for one phase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadDecision {
    /// ComfyUI's "N MB usable": the weight budget for this model.
    pub usable_bytes: f64,
    /// Weight bytes kept on the GPU; the rest streams from RAM every step.
    pub resident_bytes: f64,
    pub offloaded_bytes: f64,
    /// "loaded completely" in the log.
    pub is_full_load: bool,
}

/// `load_models_gpu` for one model on NVIDIA: `free_bytes` is the free memory the device reports
/// (after evictions), `already_loaded_bytes` the part of this model still on the GPU,
/// `minimum_estimate_bytes` the batch-1 activation estimate (or 0 for text encoders).
pub fn load_decision(
    model_bytes: f64,
    free_bytes: f64,
    already_loaded_bytes: f64,
    minimum_estimate_bytes: f64,
    reserve_bytes: f64,
) -> LoadDecision {
    let inference = minimum_inference_bytes(reserve_bytes);
    let minimum_required = inference.max(minimum_estimate_bytes + reserve_bytes);
    let available = free_bytes + already_loaded_bytes;
    // MIN_WEIGHT_MEMORY_RATIO is 0 on NVIDIA, so the third term of ComfyUI's max() is never larger.
    let budget = (available - minimum_required).max(0.0);
    let usable_bytes = if budget <= 0.0 { 0.1 * MIB } else { budget };
    let resident_bytes = model_bytes.min(usable_bytes);
    LoadDecision {
        usable_bytes,
        resident_bytes,
        offloaded_bytes: model_bytes - resident_bytes,
        is_full_load: resident_bytes >= model_bytes,
    }
}

/// `calc_cond_batch`: cond and uncond run as one batch only when 1.5× the batch-2 estimate fits
/// in what is free during sampling.
pub fn batches_cond_and_uncond(
    batch2_estimate_bytes: f64,
    free_during_sampling_bytes: f64,
) -> bool {
    1.5 * batch2_estimate_bytes < free_during_sampling_bytes
}

/// Which Wan VAE a workflow decodes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WanVae {
    /// Wan 2.1's VAE (14B models): 16 latent channels, 8× spatial.
    V21,
    /// Wan 2.2's VAE (5B): 48 channels, 16× spatial.
    V22,
}

impl WanVae {
    pub fn spatial_compression(self) -> u32 {
        match self {
            WanVae::V21 => 8,
            WanVae::V22 => 16,
        }
    }

    /// `memory_used_decode` for a latent (bf16: 2 bytes): independent of length beyond 4 latent
    /// frames, because the Wan VAE decodes causally, chunk by chunk.
    pub fn decode_estimate_bytes(self, latent: Latent, dtype_bytes: u32) -> f64 {
        let area = f64::from(latent.height) * f64::from(latent.width) * f64::from(dtype_bytes);
        match self {
            WanVae::V21 if latent.frames <= 4 => 2200.0 * area * 64.0,
            WanVae::V21 => 7000.0 * area * 64.0,
            WanVae::V22 => 8000.0 * area * 256.0,
        }
    }

    /// `memory_used_encode` for `frames` pixel frames of `width`×`height`.
    pub fn encode_estimate_bytes(
        self,
        frames: u32,
        width: u32,
        height: u32,
        dtype_bytes: u32,
    ) -> f64 {
        let area = f64::from(width) * f64::from(height) * f64::from(dtype_bytes);
        match self {
            WanVae::V21 if frames <= 4 => 1500.0 * area,
            WanVae::V21 => 6000.0 * area,
            WanVae::V22 => 3300.0 * area,
        }
    }
}

/// The models a Wan run loads, as ComfyUI holds them on the GPU (bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct Loadout {
    pub text_encoder_bytes: f64,
    pub vae_bytes: f64,
    /// One diffusion model (5B, Wan 2.1) or two experts (Wan 2.2 14B: high noise, then low).
    pub diffusion_bytes: Vec<f64>,
}

/// The run's shape, as far as ComfyUI's estimates see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunShape {
    pub frames: u32,
    pub width: u32,
    pub height: u32,
    pub dit_dim: u32,
    pub is_vace: bool,
    pub vae: WanVae,
    /// Image-to-video: WanImageToVideo VAE-encodes the whole clip before sampling.
    pub encodes_clip: bool,
    /// CFG above 1 runs an uncond pass (at 1 ComfyUI skips it).
    pub uses_cfg: bool,
    pub compute_dtype_bytes: u32,
    pub attention: AttentionEstimate,
}

impl RunShape {
    pub fn latent(&self) -> Latent {
        Latent::of_video(
            self.frames,
            self.width,
            self.height,
            self.vae.spatial_compression(),
        )
    }
}

/// The steps of a run that each load their own model and reserve their own working memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    TextEncode,
    /// VAE encode of the start image clip (image-to-video).
    ImageEncode,
    /// Sampling with diffusion model `n` (0 = high noise / the only one, 1 = low noise).
    Sampling(usize),
    VaeDecode,
}

/// What ComfyUI decides in one phase.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseDecision {
    pub phase: Phase,
    /// The estimate passed to `load_models_gpu` as `memory_required` (batch 2 for sampling).
    pub estimate_bytes: f64,
    /// The batch-1 estimate that sizes the weight budget (equal to the above outside sampling).
    pub minimum_estimate_bytes: f64,
    pub load: LoadDecision,
    /// Weight bytes of other models unloaded to make room in this phase.
    pub evicted_bytes: f64,
    /// Sampling only, and only with CFG: whether cond and uncond run as one batch.
    pub batches_cfg: Option<bool>,
    /// Free memory after the load, which the working memory of this phase must fit into.
    pub free_after_load_bytes: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loaded {
    TextEncoder,
    Vae,
    Diffusion(usize),
}

/// The phases of one run in order, with ComfyUI's decision in each, starting from `free_bytes`
/// free and none of these models loaded. Models stay loaded after use until room is needed
/// (smart memory), so the second expert evicts the text encoder and as much of the first expert
/// as it needs.
pub fn simulate(
    free_bytes: f64,
    reserve_bytes: f64,
    loadout: &Loadout,
    shape: &RunShape,
) -> Vec<PhaseDecision> {
    let latent = shape.latent();
    let factor = memory_usage_factor(shape.dit_dim, shape.is_vace);
    let batch1 = activation_estimate_bytes(
        latent,
        1,
        factor,
        shape.compute_dtype_bytes,
        shape.attention,
    );
    let batch2 = activation_estimate_bytes(
        latent,
        2,
        factor,
        shape.compute_dtype_bytes,
        shape.attention,
    );
    let mut steps = vec![(
        Phase::TextEncode,
        Loaded::TextEncoder,
        loadout.text_encoder_bytes,
        0.0,
        0.0,
    )];
    if shape.encodes_clip {
        let encode = shape
            .vae
            .encode_estimate_bytes(shape.frames, shape.width, shape.height, 2);
        steps.push((
            Phase::ImageEncode,
            Loaded::Vae,
            loadout.vae_bytes,
            encode,
            encode,
        ));
    }
    for (n, bytes) in loadout.diffusion_bytes.iter().enumerate() {
        steps.push((
            Phase::Sampling(n),
            Loaded::Diffusion(n),
            *bytes,
            batch2,
            batch1,
        ));
    }
    let decode = shape.vae.decode_estimate_bytes(latent, 2);
    steps.push((
        Phase::VaeDecode,
        Loaded::Vae,
        loadout.vae_bytes,
        decode,
        decode,
    ));

    let mut resident: Vec<(Loaded, f64)> = Vec::new();
    let mut decisions = Vec::with_capacity(steps.len());
    for (phase, model, model_bytes, estimate, minimum) in steps {
        let inference = minimum_inference_bytes(reserve_bytes);
        let extra = inference.max(estimate + reserve_bytes);
        let minimum_required = inference.max(minimum + reserve_bytes);
        let already = resident
            .iter()
            .find(|(m, _)| *m == model)
            .map_or(0.0, |(_, b)| *b);
        let free =
            |resident: &[(Loaded, f64)]| free_bytes - resident.iter().map(|(_, b)| b).sum::<f64>();
        // free_memory(): unload other models, largest first, only as far as needed.
        let mut evicted = 0.0;
        for target in [(model_bytes - already) * 1.1 + extra, minimum_required] {
            let mut others: Vec<usize> = (0..resident.len())
                .filter(|&i| resident[i].0 != model)
                .collect();
            others.sort_by(|&a, &b| resident[b].1.total_cmp(&resident[a].1));
            for i in others {
                let short = target - free(&resident);
                if short <= 0.0 {
                    break;
                }
                let take = short.min(resident[i].1);
                resident[i].1 -= take;
                evicted += take;
            }
        }
        let load = load_decision(
            model_bytes,
            free(&resident),
            already,
            minimum,
            reserve_bytes,
        );
        match resident.iter_mut().find(|(m, _)| *m == model) {
            Some(entry) => entry.1 = load.resident_bytes,
            None => resident.push((model, load.resident_bytes)),
        }
        resident.retain(|(_, b)| *b > 0.0);
        let free_after = free(&resident);
        let batches_cfg = match phase {
            Phase::Sampling(_) if shape.uses_cfg => {
                Some(batches_cond_and_uncond(batch2, free_after))
            }
            _ => None,
        };
        decisions.push(PhaseDecision {
            phase,
            estimate_bytes: estimate,
            minimum_estimate_bytes: minimum,
            load,
            evicted_bytes: evicted,
            batches_cfg,
            free_after_load_bytes: free_after,
        });
    }
    decisions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RTX 5090 (Windows), `--reserve-vram 4`, the I2V 14B fp8_scaled high-noise expert
    /// (13,629.08 MiB as ComfyUI logs it), 832×1216, two real log lines from
    /// vram-budget-data.md rows 9–10: 61 frames "14971.79 MB usable … loaded completely",
    /// 81 frames "11329.26 MB usable … 2299.82 MB offloaded". Both imply the same free memory.
    const EXPERT_MIB: f64 = 13_629.08;

    fn estimate(frames: u32) -> f64 {
        let latent = Latent::of_video(frames, 832, 1216, 8);
        activation_estimate_bytes(
            latent,
            1,
            memory_usage_factor(5120, false),
            2,
            AttentionEstimate::Efficient,
        )
    }

    #[test]
    fn the_two_5090_loader_lines_come_out_within_16_mib() {
        let reserve = reserve_bytes(Platform::Windows, 32_607 * 1024 * 1024, Some(4.0));
        // The free memory the 61-frame line implies.
        let free = 14_971.79 * MIB + estimate(61) + reserve;
        assert!((free / MIB - 30_723.6).abs() < 1.0, "{}", free / MIB);

        let at_61 = load_decision(EXPERT_MIB * MIB, free, 0.0, estimate(61), reserve);
        assert!((at_61.usable_bytes / MIB - 14_971.79).abs() < 16.0);
        assert!(at_61.is_full_load);

        let at_81 = load_decision(EXPERT_MIB * MIB, free, 0.0, estimate(81), reserve);
        assert!(
            (at_81.usable_bytes / MIB - 11_329.26).abs() < 16.0,
            "{}",
            at_81.usable_bytes / MIB
        );
        assert!(
            (at_81.offloaded_bytes / MIB - 2_299.82).abs() < 16.0,
            "{}",
            at_81.offloaded_bytes / MIB
        );
        assert!(!at_81.is_full_load);
    }

    #[test]
    fn estimates_match_the_worked_numbers() {
        // comfyui-spec §7.6: 14B 832×480×81 → 11.79 GiB at batch 2, 5.90 GiB at batch 1.
        let latent = Latent::of_video(81, 832, 480, 8);
        let factor = memory_usage_factor(5120, false);
        let b1 =
            activation_estimate_bytes(latent, 1, factor, 2, AttentionEstimate::Efficient) / GIB;
        let b2 =
            activation_estimate_bytes(latent, 2, factor, 2, AttentionEstimate::Efficient) / GIB;
        assert!(
            (b1 - 5.90).abs() < 0.01 && (b2 - 11.79).abs() < 0.01,
            "{b1} {b2}"
        );
        // Wan 2.1 VAE decode at 832×480: 5.21 GiB; 5B 1280×704×121 with the 2.2 VAE: 13.43 GiB.
        assert!((WanVae::V21.decode_estimate_bytes(latent, 2) / GIB - 5.21).abs() < 0.01);
        let latent_5b = Latent::of_video(121, 1280, 704, 16);
        assert!((WanVae::V22.decode_estimate_bytes(latent_5b, 2) / GIB - 13.43).abs() < 0.01);
        // WanImageToVideo encodes the whole 81-frame clip at 832×480: 4.46 GiB.
        assert!((WanVae::V21.encode_estimate_bytes(81, 832, 480, 2) / GIB - 4.46).abs() < 0.01);
    }

    #[test]
    fn the_second_expert_evicts_the_first_when_both_do_not_fit() {
        let shape = RunShape {
            frames: 81,
            width: 832,
            height: 480,
            dit_dim: 5120,
            is_vace: false,
            vae: WanVae::V21,
            encodes_clip: true,
            uses_cfg: true,
            compute_dtype_bytes: 2,
            attention: AttentionEstimate::Efficient,
        };
        let loadout = Loadout {
            text_encoder_bytes: 6.3 * GIB,
            vae_bytes: 0.24 * GIB,
            diffusion_bytes: vec![EXPERT_MIB * MIB, EXPERT_MIB * MIB],
        };
        // A 24 GiB card with 23 GiB free on Linux.
        let phases = simulate(23.0 * GIB, 400.0 * MIB, &loadout, &shape);
        let kinds: Vec<Phase> = phases.iter().map(|p| p.phase).collect();
        assert_eq!(
            kinds,
            vec![
                Phase::TextEncode,
                Phase::ImageEncode,
                Phase::Sampling(0),
                Phase::Sampling(1),
                Phase::VaeDecode
            ]
        );
        let high = &phases[2];
        let low = &phases[3];
        assert!(high.load.is_full_load, "{high:?}");
        assert!(
            low.evicted_bytes > 0.0,
            "the low-noise expert needs the high one's room: {low:?}"
        );
        // 1.5 × 11.79 GiB does not fit next to a 13.3 GiB expert on 23 GiB.
        assert_eq!(low.batches_cfg, Some(false));
        // Every phase leaves at least the reserve plus its minimum estimate free, or streams weights.
        for p in &phases {
            assert!(p.load.is_full_load || p.load.offloaded_bytes > 0.0);
        }
    }

    #[test]
    fn reserve_follows_platform_and_flag() {
        assert_eq!(reserve_bytes(Platform::Linux, 24 << 30, None), 400.0 * MIB);
        assert_eq!(
            reserve_bytes(Platform::Windows, 12 << 30, None),
            600.0 * MIB
        );
        assert_eq!(
            reserve_bytes(Platform::Windows, 24 << 30, None),
            700.0 * MIB
        );
        assert_eq!(
            reserve_bytes(Platform::Linux, 24 << 30, Some(4.0)),
            4.0 * GIB
        );
        assert!((minimum_inference_bytes(400.0 * MIB) / GIB - 1.19).abs() < 0.01);
    }

    #[test]
    fn nothing_fits_means_a_token_budget() {
        let d = load_decision(13_000.0 * MIB, 4.0 * GIB, 0.0, 8.0 * GIB, 400.0 * MIB);
        assert_eq!(d.usable_bytes, 0.1 * MIB);
        assert!(d.offloaded_bytes > 12_999.0 * MIB);
    }

    #[test]
    fn cfg_batching_needs_one_and_a_half_times_the_estimate() {
        assert!(batches_cond_and_uncond(4.0 * GIB, 6.1 * GIB));
        assert!(!batches_cond_and_uncond(4.0 * GIB, 5.9 * GIB));
    }
}
