//! The "seed profile": the memory budget of the design notes wan-pilot started from, kept as a
//! named baseline so tests and the README can show where the default model differs and why.
//!
//! The seed documents budget an RTX 5090 running the 14B fp8 I2V expert at 832×1216 with
//! `--reserve-vram 4` as about 20.3 GB for 61 frames without compile: one expert's weights
//! (13.6 GB), activations of 2.5 GB, the 4 GB reserve, and about 0.2 GB for the rest, with
//! compile adding +0.5–1 GB (default), +1.5–2 GB (reduce-overhead) and +3–4 GB (max-autotune).
//! Activations scale with the token count from the 61-frame figure (about 41 KiB per token).
//! Research on each term: vram-budget-data.md §0 findings 1–2, 7 and §4.3.

use super::comfyui::Latent;
use super::physical::{CompileMode, tokens};

const GB: f64 = 1e9;

/// The seed's weights: one 14B fp8 expert, as "13.6 GB".
pub const SEED_WEIGHTS_GB: f64 = 13.6;
/// The seed's activations at 61 frames, 832×1216 (63,232 tokens).
pub const SEED_ACTIVATIONS_GB_AT_61: f64 = 2.5;
const SEED_TOKENS_AT_61: f64 = 63_232.0;
/// `--reserve-vram 4`, counted as memory in use.
pub const SEED_RESERVE_GB: f64 = 4.0;
/// VAE, text-encoder remnants and the CUDA context, as the seed lumps them.
pub const SEED_OTHER_GB: f64 = 0.2;

/// The seed's compile extras, the middle of each range it gives.
pub fn seed_compile_gb(mode: CompileMode) -> f64 {
    match mode {
        CompileMode::Off => 0.0,
        CompileMode::Default => 0.75,
        CompileMode::ReduceOverhead => 1.75,
        // The seed gives no separate figure for the no-cudagraphs variant; take default's.
        CompileMode::MaxAutotuneNoCudagraphs => 0.75,
        CompileMode::MaxAutotune => 3.5,
    }
}

/// The seed profile's peak in bytes for a 14B run of this latent, with the reserve counted.
pub fn seed_peak_bytes(latent: Latent, mode: CompileMode) -> f64 {
    let activations = SEED_ACTIVATIONS_GB_AT_61 * tokens(latent) as f64 / SEED_TOKENS_AT_61;
    (SEED_WEIGHTS_GB + activations + SEED_RESERVE_GB + SEED_OTHER_GB + seed_compile_gb(mode)) * GB
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_budget_is_20_3_gb_at_61_frames() {
        let latent = Latent::of_video(61, 832, 1216, 8);
        assert!((seed_peak_bytes(latent, CompileMode::Off) / GB - 20.3).abs() < 0.01);
        assert!(
            seed_peak_bytes(latent, CompileMode::MaxAutotune)
                > seed_peak_bytes(latent, CompileMode::ReduceOverhead)
        );
    }
}
