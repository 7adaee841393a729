//! How long a run takes: DiT FLOPs per forward from the architecture, a per-card throughput,
//! the cost of streaming offloaded weights, and the compile mode's speed-up, so the slider can
//! say "about 95 s". Every coefficient is named, sourced and overridable (calibration fits them).
//!
//! Sources: wan-pilot's research notes (vram-budget-data.md §2.3 FLOPs, §3.3 offload cost, §4
//! compile, §5.3 time model; rows 8, 9 and 12 give about 220–290 TFLOP/s on an RTX 5090).

use serde::{Deserialize, Serialize};

use super::physical::CompileMode;

/// The DiT's shape, as far as FLOPs go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DitShape {
    /// Parameters inside the transformer blocks (14.056 B for an A14B expert, 4.910 B for 5B).
    pub block_params: f64,
    pub layers: u32,
    pub dim: u32,
}

impl DitShape {
    /// A Wan 2.2 A14B expert: 14.056 B parameters in 40 blocks of width 5120 (research §2.2).
    pub const A14B: DitShape = DitShape {
        block_params: 14.056e9,
        layers: 40,
        dim: 5120,
    };
    /// Wan 2.2 TI2V-5B: 4.910 B parameters in 30 blocks of width 3072.
    pub const TI2V_5B: DitShape = DitShape {
        block_params: 4.910e9,
        layers: 30,
        dim: 3072,
    };
}

/// Text tokens every block cross-attends to (umT5, padded).
const TEXT_TOKENS: f64 = 512.0;

/// FLOPs of one forward over `tokens` DiT tokens: 2·P·N (linear layers) + 4·L·dim·N²
/// (self-attention) + 4·L·dim·512·N (cross-attention), split into (matmul, attention).
pub fn flops_per_forward(dit: DitShape, tokens: u64) -> (f64, f64) {
    let n = tokens as f64;
    let width = f64::from(dit.layers) * f64::from(dit.dim);
    let linear = 2.0 * dit.block_params * n + 4.0 * width * TEXT_TOKENS * n;
    let attention = 4.0 * width * n * n;
    (linear, attention)
}

/// Time coefficients. `prior(card_tflops)` gives documented starting values for a card whose
/// dense 16-bit tensor throughput is `card_tflops`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TimeCoefficients {
    /// Effective matmul throughput (TFLOP/s).
    pub matmul_tflops: f64,
    /// Effective attention throughput (TFLOP/s), SDPA by default.
    pub attention_tflops: f64,
    /// Seconds per forward per GiB of weights streamed from RAM. Prior 2.2: about 5 s per step for
    /// 2.3 GiB offloaded in the 81-frame RTX 5090 run (§3.3), far more than PCIe alone.
    pub offload_s_per_gib: f64,
    /// Seconds to compile the DiT on the first step of a new shape (per expert). Prior 60: no Wan
    /// measurement; tiny-wan's CPU run spent 40 s compiling two 2-block experts.
    pub compile_s_per_model: f64,
    /// VAE decode seconds per latent frame per latent megapixel. Prior 2.0, unmeasured.
    pub decode_s_per_latent_mvoxel: f64,
    /// Fixed seconds per run: text encoding, model loading from a warm cache, saving.
    pub fixed_s: f64,
    pub speedup: CompileSpeedups,
}

/// Step time with each compile mode relative to eager. Priors (§4.3): default −6% (the one Wan
/// data point, KJNodes#502); CUDA-graph modes only slightly better, since Wan steps are
/// compute-bound; max-autotune's GEMM tuning a little more. Unmeasured: calibration replaces them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CompileSpeedups {
    pub default: f64,
    pub reduce_overhead: f64,
    pub max_autotune: f64,
    pub max_autotune_no_cudagraphs: f64,
}

impl CompileSpeedups {
    pub fn prior() -> Self {
        Self {
            default: 0.94,
            reduce_overhead: 0.93,
            max_autotune: 0.90,
            max_autotune_no_cudagraphs: 0.91,
        }
    }

    pub fn factor(&self, mode: CompileMode) -> f64 {
        match mode {
            CompileMode::Off => 1.0,
            CompileMode::Default => self.default,
            CompileMode::ReduceOverhead => self.reduce_overhead,
            CompileMode::MaxAutotune => self.max_autotune,
            CompileMode::MaxAutotuneNoCudagraphs => self.max_autotune_no_cudagraphs,
        }
    }
}

/// Share of a card's dense fp16 tensor throughput a Wan forward reaches in ComfyUI with SDPA:
/// 260 TFLOP/s effective on an RTX 5090 (rows 8, 9, 12: 220–290) against its 419 TFLOP/s dense
/// fp16. ComfyUI computes Wan in fp16 and PyTorch lets cuBLAS reduce in fp16, which GeForce
/// cards run at twice their fp32-accumulate rate (see [`fp16_tensor_tflops`]).
const EFFICIENCY: f64 = 260.0 / 419.0;

/// Dense fp16 tensor throughput as ComfyUI uses it: GeForce cards double their bf16/fp32-
/// accumulate figure with fp16 accumulation; data-centre and workstation cards do not.
pub fn fp16_tensor_tflops(bf16_dense_tflops: f64, is_geforce: bool) -> f64 {
    if is_geforce {
        2.0 * bf16_dense_tflops
    } else {
        bf16_dense_tflops
    }
}

impl TimeCoefficients {
    /// Priors for a card with `fp16_tflops` dense fp16 tensor throughput (see
    /// [`fp16_tensor_tflops`]), at the efficiency measured on an RTX 5090.
    pub fn prior(fp16_tflops: f64) -> Self {
        let effective = EFFICIENCY * fp16_tflops.max(1.0);
        Self {
            matmul_tflops: effective,
            attention_tflops: effective,
            offload_s_per_gib: 2.2,
            compile_s_per_model: 60.0,
            decode_s_per_latent_mvoxel: 2.0,
            fixed_s: 10.0,
            speedup: CompileSpeedups::prior(),
        }
    }
}

/// One sampling pass (one expert's share of the steps).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pass {
    pub steps: u32,
    /// Forwards per step: 2 with CFG (batched or not, the FLOPs are the same), 1 at CFG 1.
    pub forwards_per_step: u32,
    pub offloaded_bytes: f64,
}

/// A run's predicted time, in parts (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RunTime {
    pub sampling_s: f64,
    pub offload_s: f64,
    pub compile_s: f64,
    pub decode_s: f64,
    pub fixed_s: f64,
    pub total_s: f64,
}

/// Predicted time of a run: every pass's forwards, the offload cost, the first-step compile (when
/// `compiles_now`, i.e. a new shape), the decode and the fixed part.
pub fn run_time(
    coefficients: &TimeCoefficients,
    dit: DitShape,
    tokens: u64,
    latent_voxels: f64,
    passes: &[Pass],
    mode: CompileMode,
    compiles_now: bool,
) -> RunTime {
    let (linear, attention) = flops_per_forward(dit, tokens);
    let forward_s = linear / (coefficients.matmul_tflops * 1e12)
        + attention / (coefficients.attention_tflops * 1e12);
    let speedup = coefficients.speedup.factor(mode);
    let mut sampling_s = 0.0;
    let mut offload_s = 0.0;
    for pass in passes {
        let forwards = f64::from(pass.steps) * f64::from(pass.forwards_per_step.max(1));
        sampling_s += forwards * forward_s * speedup;
        offload_s += forwards * coefficients.offload_s_per_gib * pass.offloaded_bytes
            / (1024.0 * 1024.0 * 1024.0);
    }
    let compile_s = if compiles_now && mode != CompileMode::Off {
        coefficients.compile_s_per_model * passes.len() as f64
    } else {
        0.0
    };
    let decode_s = coefficients.decode_s_per_latent_mvoxel * latent_voxels / 1e6;
    let total_s = sampling_s + offload_s + compile_s + decode_s + coefficients.fixed_s;
    RunTime {
        sampling_s,
        offload_s,
        compile_s,
        decode_s,
        fixed_s: coefficients.fixed_s,
        total_s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A14B: DitShape = DitShape::A14B;

    #[test]
    fn flops_match_the_research_table() {
        // §2.3: 832×480×81 → 0.92 / 0.88 PF; 832×1216×61 → 1.78 / 3.28 PF.
        let (linear, attention) = flops_per_forward(A14B, 32_760);
        assert!((linear / 1e15 - 0.93).abs() < 0.02 && (attention / 1e15 - 0.88).abs() < 0.01);
        let (linear, attention) = flops_per_forward(A14B, 63_232);
        assert!((linear / 1e15 - 1.80).abs() < 0.03 && (attention / 1e15 - 3.28).abs() < 0.01);
    }

    #[test]
    fn the_5090_run_at_61_frames_takes_about_what_the_log_says() {
        // Row 9: 17.38 s per step (CFG 1, one forward) at 832×1216×61, fully loaded.
        let c = TimeCoefficients::prior(fp16_tensor_tflops(209.5, true));
        let pass = Pass {
            steps: 1,
            forwards_per_step: 1,
            offloaded_bytes: 0.0,
        };
        let t = run_time(&c, A14B, 63_232, 0.0, &[pass], CompileMode::Off, false);
        let per_step = t.sampling_s;
        assert!((per_step - 17.38).abs() / 17.38 < 0.15, "{per_step}");
    }

    #[test]
    fn offload_and_compile_add_time_and_modes_save_some() {
        let c = TimeCoefficients::prior(fp16_tensor_tflops(209.5, true));
        let pass = |offloaded_bytes| Pass {
            steps: 2,
            forwards_per_step: 1,
            offloaded_bytes,
        };
        let eager = run_time(
            &c,
            A14B,
            82_992,
            0.0,
            &[pass(0.0), pass(0.0)],
            CompileMode::Off,
            false,
        );
        let streamed = run_time(
            &c,
            A14B,
            82_992,
            0.0,
            &[pass(2.3 * 1073741824.0), pass(0.0)],
            CompileMode::Off,
            false,
        );
        assert!((streamed.offload_s - 2.0 * 2.2 * 2.3).abs() < 0.01);
        let compiled = run_time(
            &c,
            A14B,
            82_992,
            0.0,
            &[pass(0.0), pass(0.0)],
            CompileMode::Default,
            true,
        );
        assert!(compiled.sampling_s < eager.sampling_s);
        assert_eq!(compiled.compile_s, 120.0);
    }
}
