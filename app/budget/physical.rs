//! What the GPU will really hold, per phase: resident weights, live activations, VAE working
//! sets, workspaces, the allocator's cache, and the compile mode's extra. Every coefficient is
//! named, documented with where it comes from, and can be overridden (and is, by calibration).
//!
//! Sources: wan-pilot's research notes on the Wan 2.2 budget (vram-budget-data.md §3.4, §4, §5),
//! which derive the activation coefficients from a live-tensor simulation of ComfyUI 0.8.0's Wan
//! forward and cross-check them with a WanVideoWrapper log on an RTX 5090 (row 8).

use super::comfyui::{Latent, MIB, WanVae};

const GIB: f64 = 1024.0 * MIB;

/// The torch.compile modes wan-pilot chooses between.
pub use crate::workflow::edit::CompileMode;

/// Which torch version the server runs, as far as memory is concerned: PyTorch 2.8 fused
/// RMSNorm, which cut the 14B model's live activations by about a quarter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TorchGeneration {
    /// 2.8 or newer (or unknown: the current default install).
    FusedRmsNorm,
    /// 2.7 or older.
    UnfusedRmsNorm,
}

/// Coefficients of the physical model. `prior()` gives the documented starting values;
/// calibration replaces them with fitted ones per card and model family.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Coefficients {
    /// Live activation bytes per DiT token for one sample (KiB). Prior: 85.2 (14B, fused
    /// RMSNorm), 111.2 (14B, unfused), 75.5 (5B) from the simulation (§3.4); row 8 gives 89.
    pub activation_kib_per_token: f64,
    /// CUDA context, cuBLAS/cuDNN workspaces, fp8→fp16 weight-cast temporaries and LoRA patch
    /// temporaries (GiB). Prior 1.0, the middle of the 0.5–1.5 GiB the notes expect (§5.4).
    pub workspace_gib: f64,
    /// Reserved/allocated factor of PyTorch's caching allocator while sampling. Prior 1.11
    /// (row 8, WanVideoWrapper on an RTX 5090).
    pub allocator_factor_sampling: f64,
    /// The same factor during VAE decode and encode. Prior 1.39 (row 8).
    pub allocator_factor_vae: f64,
    /// VAE decode working set per latent pixel (MiB). Prior 0.55 for the Wan 2.1 VAE (simulated,
    /// §5.2; ComfyUI budgets 0.85); the Wan 2.2 VAE is scaled from ComfyUI's budget by the same
    /// simulated/budget ratio (0.644), an assumption until measured.
    pub decode_mib_per_latent_pixel: f64,
    /// VAE encode working set per pixel of the clip (KiB). Prior 6.5 for the Wan 2.1 VAE
    /// (simulated; ComfyUI budgets 11.7); Wan 2.2 scaled the same way.
    pub encode_kib_per_pixel: f64,
    /// Working memory of the text encoder beyond its weights (GiB). Prior 0.3: 512 tokens through
    /// umT5-XXL are small next to its weights.
    pub text_encode_gib: f64,
    /// Compile-mode extra as a share of the activations, per mode.
    pub compile: CompileOverheads,
}

/// What each torch.compile mode adds to the sampling peak, as a share of the live activations
/// (negative = saves), plus a one-off transient while compiling. Priors from §4.2–4.3: inductor
/// fusion lowers activation memory (about 0 to −1.5 GB seen; −10% assumed); CUDA-graph modes
/// keep a private pool (NeMo reports about +20% of activations); max-autotune benchmarks GEMM
/// configs while compiling (transient only). None of these is measured for Wan: calibration
/// replaces them.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CompileOverheads {
    pub default_share: f64,
    pub reduce_overhead_share: f64,
    pub max_autotune_share: f64,
    pub max_autotune_no_cudagraphs_share: f64,
    /// Transient at compile time of the max-autotune modes (GiB), on top of the sampling peak.
    pub autotune_transient_gib: f64,
}

impl CompileOverheads {
    pub fn prior() -> Self {
        Self {
            default_share: -0.10,
            reduce_overhead_share: 0.20,
            max_autotune_share: 0.20,
            max_autotune_no_cudagraphs_share: -0.10,
            autotune_transient_gib: 1.0,
        }
    }

    pub fn share(&self, mode: CompileMode) -> f64 {
        match mode {
            CompileMode::Off => 0.0,
            CompileMode::Default => self.default_share,
            CompileMode::ReduceOverhead => self.reduce_overhead_share,
            CompileMode::MaxAutotune => self.max_autotune_share,
            CompileMode::MaxAutotuneNoCudagraphs => self.max_autotune_no_cudagraphs_share,
        }
    }

    pub fn transient_bytes(&self, mode: CompileMode) -> f64 {
        match mode {
            CompileMode::MaxAutotune | CompileMode::MaxAutotuneNoCudagraphs => {
                self.autotune_transient_gib * GIB
            }
            _ => 0.0,
        }
    }
}

/// Whether a compile mode records CUDA graphs: those need every weight resident (streamed weights
/// change addresses) and a server started with `--disable-cuda-malloc`.
pub fn uses_cuda_graphs(mode: CompileMode) -> bool {
    matches!(mode, CompileMode::ReduceOverhead | CompileMode::MaxAutotune)
}

/// Which DiT the activation coefficient is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DitSize {
    /// dim 5120 (Wan 2.1/2.2 14B experts).
    B14,
    /// dim 3072 (Wan 2.2 TI2V 5B).
    B5,
    /// dim 1536 (Wan 2.1 1.3B).
    B1_3,
}

impl DitSize {
    pub fn of_dim(dim: u32) -> DitSize {
        match dim {
            d if d >= 4096 => DitSize::B14,
            d if d >= 2048 => DitSize::B5,
            _ => DitSize::B1_3,
        }
    }
}

impl Coefficients {
    pub fn prior(dit: DitSize, torch: TorchGeneration, vae: WanVae) -> Self {
        let activation_kib_per_token = match (dit, torch) {
            (DitSize::B14, TorchGeneration::FusedRmsNorm) => 85.2,
            (DitSize::B14, TorchGeneration::UnfusedRmsNorm) => 111.2,
            (DitSize::B5, _) => 75.5,
            // Not simulated: the 1.3B block is the 14B one at 30% width (1536/5120) with a
            // 8960/13824 FFN; scaled from the 14B figure by width.
            (DitSize::B1_3, TorchGeneration::FusedRmsNorm) => 85.2 * 0.3,
            (DitSize::B1_3, TorchGeneration::UnfusedRmsNorm) => 111.2 * 0.3,
        };
        // ComfyUI's budgets scaled by the Wan 2.1 simulated/budget ratios.
        let (decode, encode) = match vae {
            WanVae::V21 => (0.55, 6.5),
            WanVae::V22 => (
                8000.0 * 256.0 * 2.0 / MIB * (0.55 / 0.854),
                3300.0 * 2.0 / 1024.0 * (6.5 / 11.72),
            ),
        };
        Self {
            activation_kib_per_token,
            workspace_gib: 1.0,
            allocator_factor_sampling: 1.11,
            allocator_factor_vae: 1.39,
            decode_mib_per_latent_pixel: decode,
            encode_kib_per_pixel: encode,
            text_encode_gib: 0.3,
            compile: CompileOverheads::prior(),
        }
    }
}

/// DiT tokens of one sample: T · ⌈h/2⌉ · ⌈w/2⌉ (the (1,2,2) patch over the latent).
pub fn tokens(latent: Latent) -> u64 {
    u64::from(latent.frames)
        * u64::from(latent.height.div_ceil(2))
        * u64::from(latent.width.div_ceil(2))
}

/// The physical peak of one sampling phase, in parts.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct SamplingPeak {
    pub resident_weights_bytes: f64,
    pub activations_bytes: f64,
    pub workspace_bytes: f64,
    /// The compile mode's extra (negative when it saves).
    pub compile_bytes: f64,
    /// What the caching allocator holds on top of live tensors.
    pub allocator_cache_bytes: f64,
    /// One-off extra while the first step compiles (max-autotune modes).
    pub compile_transient_bytes: f64,
    pub total_bytes: f64,
}

/// Sampling: resident weights + (1 or 2 samples) × tokens × α + workspace + compile extra, times
/// the allocator factor on the non-weight part.
pub fn sampling_peak(
    coefficients: &Coefficients,
    latent: Latent,
    resident_weights_bytes: f64,
    batched_samples: u32,
    mode: CompileMode,
) -> SamplingPeak {
    let activations_bytes = f64::from(batched_samples.max(1))
        * tokens(latent) as f64
        * coefficients.activation_kib_per_token
        * 1024.0;
    let compile_bytes = activations_bytes * coefficients.compile.share(mode);
    let workspace_bytes = coefficients.workspace_gib * GIB;
    let live = (activations_bytes + compile_bytes).max(0.0) + workspace_bytes;
    let allocator_cache_bytes = live * (coefficients.allocator_factor_sampling - 1.0).max(0.0);
    let compile_transient_bytes = coefficients.compile.transient_bytes(mode);
    SamplingPeak {
        resident_weights_bytes,
        activations_bytes,
        workspace_bytes,
        compile_bytes,
        allocator_cache_bytes,
        compile_transient_bytes,
        total_bytes: resident_weights_bytes
            + live
            + allocator_cache_bytes
            + compile_transient_bytes,
    }
}

/// VAE decode: VAE weights + the working set per latent pixel (independent of length: the Wan VAE
/// decodes causally) + the decoded frames, times the allocator factor on the working part.
pub fn decode_peak(
    coefficients: &Coefficients,
    vae: WanVae,
    latent: Latent,
    output_frames: u32,
    vae_bytes: f64,
) -> f64 {
    let working = coefficients.decode_mib_per_latent_pixel
        * MIB
        * f64::from(latent.height)
        * f64::from(latent.width);
    let spatial = f64::from(vae.spatial_compression());
    // The decoded clip: frames × H × W × 3 channels in 16-bit before it leaves the GPU.
    let pixels = f64::from(output_frames)
        * f64::from(latent.height)
        * spatial
        * f64::from(latent.width)
        * spatial;
    vae_bytes
        + (working + pixels * 3.0 * 2.0 + coefficients.workspace_gib * GIB)
            * coefficients.allocator_factor_vae
}

/// VAE encode of a clip of `width`×`height` pixels (image-to-video encodes the whole length).
pub fn encode_peak(coefficients: &Coefficients, width: u32, height: u32, vae_bytes: f64) -> f64 {
    let working = coefficients.encode_kib_per_pixel * 1024.0 * f64::from(width) * f64::from(height);
    vae_bytes + (working + coefficients.workspace_gib * GIB) * coefficients.allocator_factor_vae
}

/// Text encode: the encoder's weights plus a small working set.
pub fn text_encode_peak(coefficients: &Coefficients, encoder_bytes: f64) -> f64 {
    encoder_bytes + (coefficients.text_encode_gib + coefficients.workspace_gib) * GIB
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_the_research_table() {
        assert_eq!(tokens(Latent::of_video(81, 832, 480, 8)), 32_760);
        assert_eq!(tokens(Latent::of_video(61, 832, 1216, 8)), 63_232);
        assert_eq!(tokens(Latent::of_video(81, 1280, 720, 8)), 75_600);
        assert_eq!(tokens(Latent::of_video(121, 1280, 704, 16)), 27_280);
    }

    #[test]
    fn activations_match_the_simulation() {
        // 14B, 61 frames at 832×1216: 5.14 GiB fused, 6.71 GiB unfused (§3.2).
        let latent = Latent::of_video(61, 832, 1216, 8);
        for (torch, gib) in [
            (TorchGeneration::FusedRmsNorm, 5.14),
            (TorchGeneration::UnfusedRmsNorm, 6.71),
        ] {
            let c = Coefficients::prior(DitSize::B14, torch, WanVae::V21);
            let peak = sampling_peak(&c, latent, 0.0, 1, CompileMode::Off);
            assert!(
                (peak.activations_bytes / GIB - gib).abs() < 0.01,
                "{}",
                peak.activations_bytes / GIB
            );
        }
    }

    #[test]
    fn compile_modes_move_the_peak_the_documented_way() {
        let c = Coefficients::prior(DitSize::B14, TorchGeneration::FusedRmsNorm, WanVae::V21);
        let latent = Latent::of_video(81, 832, 480, 8);
        let peak = |mode| sampling_peak(&c, latent, 13.3 * GIB, 1, mode).total_bytes;
        assert!(peak(CompileMode::Default) < peak(CompileMode::Off));
        assert!(peak(CompileMode::ReduceOverhead) > peak(CompileMode::Off));
        assert!(peak(CompileMode::MaxAutotune) > peak(CompileMode::ReduceOverhead));
        assert!(
            uses_cuda_graphs(CompileMode::ReduceOverhead)
                && !uses_cuda_graphs(CompileMode::Default)
        );
    }

    #[test]
    fn vae_working_sets_follow_the_simulated_figures() {
        // 832×1216: simulated decode 8.4 GiB, I2V full-length encode 6.3 GiB (§3.2), before the
        // allocator factor, weights and workspace.
        let c = Coefficients::prior(DitSize::B14, TorchGeneration::FusedRmsNorm, WanVae::V21);
        let latent = Latent::of_video(61, 832, 1216, 8);
        let decode_working =
            c.decode_mib_per_latent_pixel * MIB * f64::from(latent.height * latent.width) / GIB;
        assert!((decode_working - 8.49).abs() < 0.1, "{decode_working}");
        let encode_working = c.encode_kib_per_pixel * 1024.0 * 832.0 * 1216.0 / GIB;
        assert!((encode_working - 6.3).abs() < 0.1, "{encode_working}");
        assert!(decode_peak(&c, WanVae::V21, latent, 61, 0.24 * GIB) > 8.4 * GIB);
        assert!(encode_peak(&c, 832, 1216, 0.24 * GIB) > 6.3 * GIB);
    }
}
