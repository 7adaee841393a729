//! The model catalogue: what a Wan-related file is, from its name alone — family, expert role,
//! precision, parameter count, architecture, estimated bytes on disk, and the bytes ComfyUI will
//! hold in VRAM for it.
//!
//! Names are matched case-insensitively, with Windows or Unix subfolders (`WanVideo\2_2\…`,
//! `wan2.2/…`), URLs (the last path segment), and every spelling the corpus shows: ComfyUI's
//! repackaged files (`wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors`), kijai's
//! (`Wan2_2-I2V-A14B-HIGH_fp8_e4m3fn_scaled_KJ.safetensors`), city96 / QuantStack GGUFs
//! (`Wan2.2-T2V-A14B-HighNoise-Q4_K_M.gguf`), fine-tunes that keep the family in the name
//! (`smoothMixWan22I2VT2V_i2vHigh`), the umT5 encoders, both VAEs, CLIP vision H, wav2vec2 and
//! LoRAs. When the file is on disk, `weights` reads the exact figures from its header; this
//! module is what the budget uses before that, or when the file is elsewhere.
//!
//! # Where the numbers come from
//! - Parameter counts of the Wan DiTs are computed by [`DitArch::breakdown`], which walks ComfyUI
//!   v0.8.0's `WanModel` (`comfy/ldm/wan/model.py`) layer by layer. It reproduces every DiT row
//!   of `vram-budget-data.md` §2.2 (14.288 B per A14B expert, 16.395 B for Wan 2.1 I2V, 5.000 B
//!   for TI2V-5B); the architectures are §2.1 and `comfyui-spec.md` §7.4.
//! - Bytes on disk are estimates: parameters × bytes per parameter of the precision, class by
//!   class (see [`ParamBreakdown`]), with each format's real layout: ComfyUI fp8_scaled keeps
//!   norms, biases and the patch-embedding conv at 16 bits and stores one fp32 scale per linear;
//!   kijai's `_scaled_KJ` also keeps the text/time embeddings at 16 bits; GGUF follows city96's
//!   ComfyUI-GGUF tools (`tools/convert.py`, `tools/lcpp.patch`): 1-D tensors and `.modulation`
//!   in F32, embeddings/head/patch conv left unquantized, block linears at the quant type with
//!   llama.cpp's mix rules (see [`GgufQuant::block_types`]) and ggml's exact block sizes
//!   ([`GgmlType::block`]).
//! - Resident bytes follow ComfyUI's loader (`comfyui-spec.md` §7.3 item 6 and `model_patcher.py`
//!   `_load_list`/`load`); see [`ModelInfo::residency`]. For one Wan 2.2 14B fp8_scaled I2V expert
//!   this gives 13,629.99 MiB against the 13,629.08 MiB ComfyUI logged (research row 9).

use serde::Serialize;

use crate::budget::weights::GgmlType;

/// Sinusoidal time-embedding width of every Wan DiT (`freq_dim`, spec §7.4).
pub const WAN_FREQ_DIM: u64 = 256;
/// umT5-XXL output width, the DiT's `text_dim` (§2.1).
pub const WAN_TEXT_DIM: u32 = 4096;
/// Elements in one patch: the (1, 2, 2) patch of every Wan DiT.
pub const WAN_PATCH_VOLUME: u64 = 4;
/// Width of the CLIP-vision features Wan 2.1 I2V projects (`img_emb`, ViT-H penultimate layer).
pub const WAN_CLIP_DIM: u64 = 1280;
/// Channels of VACE's context latent (`vace_in_dim`: 16 inactive + 16 reactive + 64 mask).
pub const WAN_VACE_IN_DIM: u64 = 96;
/// Extra tokens of the FLF2V position embedding `img_emb.emb_pos`: (1, 2 × 257, 1280).
pub const WAN_FLF_POS_PARAMS: u64 = 2 * 257 * WAN_CLIP_DIM;

/// LoRA rank assumed when the name does not say: 64 for the speed/distill LoRAs (every
/// lightx2v, Lightning, CausVid and Seko LoRA in the corpus that states a rank says 32 or 64, most
/// say 64), 32 for anything else (character and style LoRAs are usually trained at 16–32). A
/// wrong guess costs at most a few hundred MB of system RAM: ComfyUI merges LoRAs into the weights.
pub const DEFAULT_SPEED_LORA_RANK: u32 = 64;
/// See [`DEFAULT_SPEED_LORA_RANK`].
pub const DEFAULT_LORA_RANK: u32 = 32;

/// What a file is for, which decides how ComfyUI loads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// A diffusion transformer (ComfyUI `diffusion_models`): `UNETLoader`, `UnetLoaderGGUF`,
    /// `WanVideoModelLoader`, VACE modules.
    Diffusion,
    /// The umT5-XXL text encoder (`text_encoders`): `CLIPLoader` type `wan`, `LoadWanVideoT5TextEncoder`.
    TextEncoder,
    /// A video VAE (`vae`), including the tiny preview autoencoders.
    Vae,
    /// CLIP vision (`clip_vision`), used by Wan 2.1 I2V / FLF2V / Animate.
    ClipVision,
    /// An audio encoder (`audio_encoders`), used by S2V.
    AudioEncoder,
    /// A LoRA (`loras`).
    Lora,
}

/// Which model a file is. One variant per architecture that has its own parameter count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Wan 2.2 T2V-A14B: one expert (high- or low-noise) of the two.
    Wan22T2vA14b,
    /// Wan 2.2 I2V-A14B: one expert; in_dim 36, no CLIP branch.
    Wan22I2vA14b,
    /// Wan 2.2 TI2V-5B (and its fine-tunes such as FastWan).
    Wan22Ti2v5b,
    /// Wan 2.2 S2V-14B (speech to video).
    Wan22S2v14b,
    /// Wan 2.2 Animate-14B.
    Wan22Animate14b,
    /// Wan 2.2 Fun A14B (VideoX-Fun InP / Control / Control-Camera), one expert.
    Wan22FunA14b,
    /// Wan 2.2 Fun 5B (InP / Control).
    Wan22Fun5b,
    /// Wan 2.2 VACE-Fun A14B, one expert.
    Wan22VaceFunA14b,
    /// Wan 2.1 T2V 14B (the same shape as one Wan 2.2 T2V expert).
    Wan21T2v14b,
    /// Wan 2.1 I2V 14B 480p (CLIP image cross-attention).
    Wan21I2v14b480p,
    /// Wan 2.1 I2V 14B 720p.
    Wan21I2v14b720p,
    /// Wan 2.1 I2V 14B, resolution not in the name (same parameters as both).
    Wan21I2v14b,
    /// Wan 2.1 FLF2V 14B 720p (first-last frame).
    Wan21Flf2v14b,
    /// Wan 2.1 T2V 1.3B.
    Wan21T2v1_3b,
    /// Wan 2.1 VACE 14B (full model: T2V 14B plus 8 VACE blocks).
    Wan21Vace14b,
    /// Wan 2.1 VACE 1.3B (full model: T2V 1.3B plus 15 VACE blocks).
    Wan21Vace1_3b,
    /// kijai's separate VACE module for 14B (the VACE blocks only).
    Wan21VaceModule14b,
    /// kijai's separate VACE module for 1.3B.
    Wan21VaceModule1_3b,
    /// Wan 2.1 Fun 14B (InP / Control: I2V shape with CLIP).
    Wan21Fun14b,
    /// Wan 2.1 Fun 1.3B.
    Wan21Fun1_3b,
    /// umT5-XXL encoder, the text encoder of every Wan model.
    UmT5Xxl,
    /// The Wan 2.1 VAE (z_dim 16; all 14B and 1.3B models).
    Wan21Vae,
    /// The Wan 2.2 VAE (z_dim 48; TI2V-5B only).
    Wan22Vae,
    /// madebyollin's tiny preview autoencoder for the Wan 2.1 latent (`taew2_1`).
    TinyVaeWan21,
    /// The tiny autoencoder for the Wan 2.2 latent (`taew2_2`).
    TinyVaeWan22,
    /// OpenCLIP ViT-H/14 vision tower (`clip_vision_h`).
    ClipVisionH,
    /// wav2vec2-large audio encoder (S2V).
    Wav2Vec2Large,
    /// A LoRA for a Wan DiT; [`ModelInfo::lora`] says what it targets.
    WanLora,
}

impl Family {
    /// A short human name for the UI and CLI.
    pub fn label(self) -> &'static str {
        use Family::*;
        match self {
            Wan22T2vA14b => "Wan 2.2 T2V A14B",
            Wan22I2vA14b => "Wan 2.2 I2V A14B",
            Wan22Ti2v5b => "Wan 2.2 TI2V 5B",
            Wan22S2v14b => "Wan 2.2 S2V 14B",
            Wan22Animate14b => "Wan 2.2 Animate 14B",
            Wan22FunA14b => "Wan 2.2 Fun A14B",
            Wan22Fun5b => "Wan 2.2 Fun 5B",
            Wan22VaceFunA14b => "Wan 2.2 VACE Fun A14B",
            Wan21T2v14b => "Wan 2.1 T2V 14B",
            Wan21I2v14b480p => "Wan 2.1 I2V 14B 480p",
            Wan21I2v14b720p => "Wan 2.1 I2V 14B 720p",
            Wan21I2v14b => "Wan 2.1 I2V 14B",
            Wan21Flf2v14b => "Wan 2.1 FLF2V 14B",
            Wan21T2v1_3b => "Wan 2.1 T2V 1.3B",
            Wan21Vace14b => "Wan 2.1 VACE 14B",
            Wan21Vace1_3b => "Wan 2.1 VACE 1.3B",
            Wan21VaceModule14b => "Wan 2.1 VACE module 14B",
            Wan21VaceModule1_3b => "Wan 2.1 VACE module 1.3B",
            Wan21Fun14b => "Wan 2.1 Fun 14B",
            Wan21Fun1_3b => "Wan 2.1 Fun 1.3B",
            UmT5Xxl => "umT5-XXL text encoder",
            Wan21Vae => "Wan 2.1 VAE",
            Wan22Vae => "Wan 2.2 VAE",
            TinyVaeWan21 => "tiny VAE (Wan 2.1 latent)",
            TinyVaeWan22 => "tiny VAE (Wan 2.2 latent)",
            ClipVisionH => "CLIP vision ViT-H/14",
            Wav2Vec2Large => "wav2vec2 large",
            WanLora => "Wan LoRA",
        }
    }

    /// Whether this is one expert of a two-expert (high/low noise) Wan 2.2 model.
    pub fn is_a14b_expert(self) -> bool {
        matches!(
            self,
            Family::Wan22T2vA14b
                | Family::Wan22I2vA14b
                | Family::Wan22FunA14b
                | Family::Wan22VaceFunA14b
        )
    }
}

/// Which denoising stage a file serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The high-noise expert (early steps), or a LoRA for it.
    High,
    /// The low-noise expert (late steps), or a LoRA for it.
    Low,
    /// A model that is not split into experts (5B, 2.1, encoders, VAEs).
    Single,
    /// An A14B expert (or LoRA) whose name does not say which.
    Unknown,
}

/// The two fp8 formats PyTorch has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fp8Format {
    E4m3fn,
    E5m2,
}

/// How fp8 weights are scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fp8Scaling {
    /// Plain cast: ComfyUI keeps it fp8 only where the GPU computes in fp8 (or it would not fit).
    None,
    /// ComfyUI's `*_fp8_scaled`: every linear weight fp8 with an fp32 `scale_weight`; the rest
    /// 16-bit. Loaded as quantized layers that stay fp8 on every GPU.
    Comfy,
    /// kijai's `*_scaled_KJ`: like ComfyUI's, but norms, biases, modulation and the
    /// text/time/patch embeddings stay bf16 (recipe quoted on the apozz/WorldStereo-fp8 model
    /// card, grade C), with bf16 scalar scales.
    Kijai,
}

/// GGUF quantization named in a file name (llama.cpp `llama_ftype`).
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum GgufQuant {
    F32,
    F16,
    BF16,
    Q8_0,
    Q6_K,
    Q5_K_M,
    Q5_K_S,
    Q5_1,
    Q5_0,
    Q4_K_M,
    Q4_K_S,
    Q4_1,
    Q4_0,
    Q3_K_L,
    Q3_K_M,
    Q3_K_S,
    Q2_K,
}

/// The ggml types one quantization gives a DiT's block linears.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GgufBlockTypes {
    /// Most block linears.
    pub base: GgmlType,
    /// Attention value projections (`.v.weight`).
    pub value_proj: GgmlType,
    /// The first `value_proj_first_n` value projections get this instead (Q3_K_M, Q4_K_S).
    pub value_proj_first: Option<(u64, GgmlType)>,
    /// FFN down projections (`.ffn.2.weight`, T5's `DenseReluDense.wo`).
    pub ffn_down: GgmlType,
}

impl GgufQuant {
    /// The base ggml type (llama.cpp `llama_model_quantize_internal` default type per ftype).
    pub fn base_type(self) -> GgmlType {
        use GgufQuant::*;
        match self {
            F32 => GgmlType::F32,
            F16 => GgmlType::F16,
            BF16 => GgmlType::BF16,
            Q8_0 => GgmlType::Q8_0,
            Q6_K => GgmlType::Q6_K,
            Q5_K_M | Q5_K_S => GgmlType::Q5_K,
            Q5_1 => GgmlType::Q5_1,
            Q5_0 => GgmlType::Q5_0,
            Q4_K_M | Q4_K_S => GgmlType::Q4_K,
            Q4_1 => GgmlType::Q4_1,
            Q4_0 => GgmlType::Q4_0,
            Q3_K_L | Q3_K_M | Q3_K_S => GgmlType::Q3_K,
            Q2_K => GgmlType::Q2_K,
        }
    }

    /// The mix city96's patched llama.cpp applies to image-model tensors
    /// (ComfyUI-GGUF `tools/lcpp.patch`, `img_tensor_get_type`): value projections (`.v.weight`)
    /// and FFN down projections (`.ffn.2.weight`) get more bits in the `_M`/`_L`/`_K_S` mixes.
    /// All Wan and T5 row widths (1536, 3072, 4096, 5120, 8960, 10240, 13824, 14336) are
    /// multiples of 256, so the K-quant row rule never falls back to F16 for them.
    pub fn block_types(self) -> GgufBlockTypes {
        use GgmlType as G;
        use GgufQuant::*;
        let base = self.base_type();
        let (value_proj, value_proj_first, ffn_down) = match self {
            Q2_K => (G::Q3_K, None, base),
            Q3_K_M => (G::Q4_K, Some((2, G::Q5_K)), G::Q4_K),
            Q3_K_L => (G::Q5_K, None, G::Q5_K),
            Q4_K_S => (base, Some((4, G::Q5_K)), G::Q5_K),
            Q4_K_M | Q5_K_M => (G::Q6_K, None, G::Q6_K),
            Q4_0 => (base, None, G::Q4_1),
            Q5_0 => (base, None, G::Q5_1),
            _ => (base, None, base),
        };
        GgufBlockTypes {
            base,
            value_proj,
            value_proj_first,
            ffn_down,
        }
    }

    /// The name as llama.cpp spells it.
    pub fn name(self) -> &'static str {
        use GgufQuant::*;
        match self {
            F32 => "F32",
            F16 => "F16",
            BF16 => "BF16",
            Q8_0 => "Q8_0",
            Q6_K => "Q6_K",
            Q5_K_M => "Q5_K_M",
            Q5_K_S => "Q5_K_S",
            Q5_1 => "Q5_1",
            Q5_0 => "Q5_0",
            Q4_K_M => "Q4_K_M",
            Q4_K_S => "Q4_K_S",
            Q4_1 => "Q4_1",
            Q4_0 => "Q4_0",
            Q3_K_L => "Q3_K_L",
            Q3_K_M => "Q3_K_M",
            Q3_K_S => "Q3_K_S",
            Q2_K => "Q2_K",
        }
    }
}

/// How the weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Precision {
    Fp32,
    Fp16,
    Bf16,
    Fp8 {
        format: Fp8Format,
        scaling: Fp8Scaling,
    },
    /// ComfyUI `int8_tensorwise` (e.g. `_int8_convrot`): one byte per linear weight plus a scale,
    /// loaded as quantized layers like fp8_scaled.
    Int8,
    /// NVFP4: 4-bit values with an fp8 scale per 16 (4.5 bits per weight) on the linears.
    Nvfp4,
    Gguf {
        quant: GgufQuant,
    },
}

/// How sure a parameter count is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// Computed from the architecture; matches vram-budget-data §2.2 where it has a row.
    Derived,
    /// A published figure (source in `params_source`).
    Cited,
    /// A structural estimate or a figure of low trust: expect ± 5 %. The header gives the truth.
    Rough,
}

/// A Wan diffusion transformer's shape (spec §7.4: ComfyUI reads these from the checkpoint).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
pub struct DitArch {
    pub dim: u32,
    pub layers: u32,
    /// Attention heads: dim / 128 for every Wan model.
    pub heads: u32,
    pub ffn_dim: u32,
    /// Input latent channels: 16 T2V, 36 I2V (16 noise + 4 mask + 16 image), 48 TI2V-5B.
    pub in_dim: u32,
    pub out_dim: u32,
    /// Text embedding input width (umT5: 4096).
    pub text_dim: u32,
    /// Wan 2.1 I2V / FLF2V / Animate: a CLIP image branch (`img_emb`, `k_img`/`v_img` per block).
    pub image_cross_attn: bool,
    /// VACE blocks (14B: 8, one every 5 layers; 1.3B: 15, every 2).
    pub vace_layers: u32,
}

impl DitArch {
    /// Wan 14B (each A14B expert; Wan 2.1 14B): dim 5120, 40 layers, 40 heads, ffn 13824 (§2.1).
    pub const fn wan_14b(in_dim: u32) -> Self {
        Self::new(5120, 40, 13824, in_dim, 16)
    }

    /// Wan 2.2 TI2V-5B: dim 3072, 30 layers, 24 heads, ffn 14336, in/out 48 (§2.1).
    pub const fn wan_5b() -> Self {
        Self::new(3072, 30, 14336, 48, 48)
    }

    /// Wan 2.1 1.3B: dim 1536, 30 layers, 12 heads, ffn 8960 (§2.1).
    pub const fn wan_1_3b(in_dim: u32) -> Self {
        Self::new(1536, 30, 8960, in_dim, 16)
    }

    const fn new(dim: u32, layers: u32, ffn_dim: u32, in_dim: u32, out_dim: u32) -> Self {
        Self {
            dim,
            layers,
            heads: dim / 128,
            ffn_dim,
            in_dim,
            out_dim,
            text_dim: WAN_TEXT_DIM,
            image_cross_attn: false,
            vace_layers: 0,
        }
    }

    const fn with_image_cross_attn(mut self) -> Self {
        self.image_cross_attn = true;
        self
    }

    const fn with_vace(mut self, vace_layers: u32) -> Self {
        self.vace_layers = vace_layers;
        self
    }

    /// One transformer block (`WanAttentionBlock`), T2V cross-attention unless `image`.
    fn block(&self, image: bool) -> ParamBreakdown {
        let d = u64::from(self.dim);
        let f = u64::from(self.ffn_dim);
        let attn_linears: u64 = if image { 10 } else { 8 };
        let image_norm = if image { d } else { 0 }; // norm_k_img
        ParamBreakdown {
            // self q,k,v,o + cross q,k,v,o (+ k_img, v_img) and ffn.0 / ffn.2
            block_linear: attn_linears * d * d + 2 * d * f,
            block_linear_count: attn_linears + 2,
            value_proj: 2 * d * d,
            value_proj_count: 2,
            ffn_down: d * f,
            ffn_down_count: 1,
            // biases of all linears; norm_q/norm_k of both attentions (+ norm_k_img); norm3
            // (cross_attn_norm: LayerNorm with weight and bias). norm1/norm2 have no affine.
            vector: attn_linears * d + f + d + 4 * d + image_norm + 2 * d,
            // `modulation`, a bare Parameter on the block (a non-leaf module)
            uncounted: 6 * d,
            ..ParamBreakdown::default()
        }
    }

    /// The base model without VACE blocks: blocks, embeddings, head.
    pub fn base_breakdown(&self) -> ParamBreakdown {
        let d = u64::from(self.dim);
        let mut total = ParamBreakdown::default();
        let block = self.block(self.image_cross_attn);
        for _ in 0..self.layers {
            total = total.plus(&block);
        }
        let t = u64::from(self.text_dim);
        let head_out = u64::from(self.out_dim) * WAN_PATCH_VOLUME;
        let mut outer = ParamBreakdown {
            // text_embedding (Linear text_dim→d, GELU, Linear d→d), time_embedding (Linear
            // freq→d, SiLU, Linear d→d), time_projection (SiLU, Linear d→6d), head.head (d→out·4)
            outer_linear: t * d + d * d + WAN_FREQ_DIM * d + d * d + 6 * d * d + d * head_out,
            outer_linear_count: 6,
            vector: 2 * d + 2 * d + 6 * d + head_out + d, // their biases + patch conv bias
            conv: d * u64::from(self.in_dim) * WAN_PATCH_VOLUME,
            uncounted: 2 * d, // head.modulation
            ..ParamBreakdown::default()
        };
        if self.image_cross_attn {
            // img_emb (MLPProj): LayerNorm(1280), Linear(1280,1280), GELU, Linear(1280,d), LayerNorm(d)
            let c = WAN_CLIP_DIM;
            outer.outer_linear += c * c + c * d;
            outer.outer_linear_count += 2;
            outer.vector += 2 * c + c + d + 2 * d;
        }
        total.plus(&outer)
    }

    /// The VACE part alone (`VaceWanModel`): `vace_layers` blocks each with an `after_proj`
    /// (block 0 also a `before_proj`), and `vace_patch_embedding` (Conv3d 96 → dim).
    pub fn vace_breakdown(&self) -> ParamBreakdown {
        if self.vace_layers == 0 {
            return ParamBreakdown::default();
        }
        let d = u64::from(self.dim);
        let mut block = self.block(false);
        block.block_linear += d * d; // after_proj
        block.block_linear_count += 1;
        block.vector += d;
        let mut total = ParamBreakdown::default();
        for _ in 0..self.vace_layers {
            total = total.plus(&block);
        }
        total.plus(&ParamBreakdown {
            block_linear: d * d, // before_proj of vace block 0
            block_linear_count: 1,
            vector: d + d, // its bias + the vace conv bias
            conv: d * WAN_VACE_IN_DIM * WAN_PATCH_VOLUME,
            ..ParamBreakdown::default()
        })
    }

    /// Every parameter of the model, by storage class.
    pub fn breakdown(&self) -> ParamBreakdown {
        self.base_breakdown().plus(&self.vace_breakdown())
    }
}

/// A model's parameters split by how formats store them. Quantizers treat these classes
/// differently, which is what makes the byte estimates exact rather than `params × bytes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ParamBreakdown {
    /// Weights of the linear layers inside the transformer blocks (DiT blocks, VACE blocks, T5
    /// layers): what fp8_scaled and GGUF quantize.
    pub block_linear: u64,
    pub block_linear_count: u64,
    /// Of `block_linear`: attention value projections (`.v.weight`).
    pub value_proj: u64,
    pub value_proj_count: u64,
    /// Of `block_linear`: FFN down projections (`.ffn.2.weight`, T5 `wo`).
    pub ffn_down: u64,
    pub ffn_down_count: u64,
    /// DiT linears outside the blocks: text/time embeddings, time projection, head, `img_emb`.
    /// ComfyUI's fp8_scaled quantizes them; GGUF and kijai keep them 16-bit.
    pub outer_linear: u64,
    pub outer_linear_count: u64,
    /// Token embedding of a text encoder (kept 16-bit by fp8_scaled).
    pub embedding: u64,
    /// Biases and norm weights (1-D).
    pub vector: u64,
    /// Convolution kernels of the patch embeddings (5-D, never quantized).
    pub conv: u64,
    /// Parameters held directly by non-leaf modules (`blocks.N.modulation`, `head.modulation`,
    /// FLF2V `emb_pos`): on the GPU with the model, but outside ComfyUI's per-module load list,
    /// so not in its "MB loaded".
    pub uncounted: u64,
    /// Everything else, stored at the file's precision (VAEs, CLIP vision, LoRA factors, and the
    /// extra modules of S2V / Animate).
    pub other: u64,
}

impl ParamBreakdown {
    /// All parameters.
    pub fn total(&self) -> u64 {
        self.block_linear
            + self.outer_linear
            + self.embedding
            + self.vector
            + self.conv
            + self.uncounted
            + self.other
    }

    fn plus(&self, o: &Self) -> Self {
        Self {
            block_linear: self.block_linear + o.block_linear,
            block_linear_count: self.block_linear_count + o.block_linear_count,
            value_proj: self.value_proj + o.value_proj,
            value_proj_count: self.value_proj_count + o.value_proj_count,
            ffn_down: self.ffn_down + o.ffn_down,
            ffn_down_count: self.ffn_down_count + o.ffn_down_count,
            outer_linear: self.outer_linear + o.outer_linear,
            outer_linear_count: self.outer_linear_count + o.outer_linear_count,
            embedding: self.embedding + o.embedding,
            vector: self.vector + o.vector,
            conv: self.conv + o.conv,
            uncounted: self.uncounted + o.uncounted,
            other: self.other + o.other,
        }
    }

    fn only_other(params: u64) -> Self {
        Self {
            other: params,
            ..Self::default()
        }
    }
}

/// What a LoRA's name says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LoraInfo {
    pub rank: u32,
    /// False when the rank is [`DEFAULT_LORA_RANK`] or [`DEFAULT_SPEED_LORA_RANK`].
    pub rank_from_name: bool,
    /// The DiT it patches (14B unless the name says 5B or 1.3B).
    pub target: DitArch,
}

/// Bytes on the GPU, split the way ComfyUI counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Residency {
    /// What ComfyUI's loader counts for the model: the sum of its per-module sizes, the
    /// "MB loaded" of a full load, and what its partial-load budget is compared with.
    pub counted_bytes: u64,
    /// Parameters that move to the GPU with the model but are not in that count (see
    /// [`ParamBreakdown::uncounted`]), at their resident width.
    pub uncounted_bytes: u64,
}

impl Residency {
    /// Everything physically on the GPU for these weights.
    pub fn total_bytes(&self) -> u64 {
        self.counted_bytes + self.uncounted_bytes
    }
}

/// What the catalogue knows about one file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    /// The name as given (subfolders included).
    pub file_name: String,
    pub kind: ModelKind,
    pub family: Family,
    pub role: Role,
    pub precision: Precision,
    /// False when the name did not say and a default was assumed (fp16 DiT, bf16 VAE, …).
    pub precision_from_name: bool,
    pub params: u64,
    pub params_confidence: Confidence,
    /// Where `params` comes from.
    pub params_source: &'static str,
    pub breakdown: ParamBreakdown,
    /// For diffusion models (and the DiT a LoRA targets: see `lora`).
    pub arch: Option<DitArch>,
    pub lora: Option<LoraInfo>,
    /// Estimated file size (tensor data; headers add well under 0.1 %).
    pub estimated_file_bytes: u64,
}

/// Bytes one element takes in a storage class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Width {
    Bytes(u64),
    /// 4 bits + an fp8 scale per 16 elements = 9/16 byte.
    Nvfp4,
    Ggml(GgmlType),
}

impl Width {
    fn bytes(self, elements: u64) -> u64 {
        match self {
            Width::Bytes(b) => elements * b,
            Width::Nvfp4 => (elements * 9).div_ceil(16),
            Width::Ggml(t) => t.bytes_for(elements),
        }
    }
}

/// Per storage class: how wide each is, in the file or on the GPU.
#[derive(Debug, Clone, Copy)]
struct Layout {
    block_linear: BlockWidths,
    outer_linear: Width,
    embedding: Width,
    vector: Width,
    conv: Width,
    uncounted: Width,
    other: Width,
    /// Bytes of scale per quantized linear (fp32 `scale_weight`: 4).
    scale_bytes_per_linear: u64,
    /// Whether `outer_linear` layers carry a scale too.
    outer_scaled: bool,
}

#[derive(Debug, Clone, Copy)]
enum BlockWidths {
    Uniform(Width),
    Gguf(GgufBlockTypes),
}

impl Layout {
    fn uniform(w: Width) -> Self {
        Self {
            block_linear: BlockWidths::Uniform(w),
            outer_linear: w,
            embedding: w,
            vector: w,
            conv: w,
            uncounted: w,
            other: w,
            scale_bytes_per_linear: 0,
            outer_scaled: false,
        }
    }

    fn bytes(&self, b: &ParamBreakdown) -> (u64, u64) {
        let block = match self.block_linear {
            BlockWidths::Uniform(w) => w.bytes(b.block_linear),
            BlockWidths::Gguf(types) => gguf_block_bytes(b, types),
        };
        let scaled_linears = b.block_linear_count
            + if self.outer_scaled {
                b.outer_linear_count
            } else {
                0
            };
        let counted = block
            + self.outer_linear.bytes(b.outer_linear)
            + self.embedding.bytes(b.embedding)
            + self.vector.bytes(b.vector)
            + self.conv.bytes(b.conv)
            + self.other.bytes(b.other)
            + scaled_linears * self.scale_bytes_per_linear;
        (counted, self.uncounted.bytes(b.uncounted))
    }
}

/// Bytes of the block linears under a GGUF mix, tensor class by tensor class.
fn gguf_block_bytes(b: &ParamBreakdown, t: GgufBlockTypes) -> u64 {
    let per = |total: u64, count: u64| total.checked_div(count).unwrap_or(0);
    let v_each = per(b.value_proj, b.value_proj_count);
    let (first_n, first_type) = t
        .value_proj_first
        .map_or((0, t.value_proj), |(n, ty)| (n.min(b.value_proj_count), ty));
    let value = first_type.bytes_for(v_each) * first_n
        + t.value_proj.bytes_for(v_each) * b.value_proj_count.saturating_sub(first_n);
    let ffn_each = per(b.ffn_down, b.ffn_down_count);
    let ffn = t.ffn_down.bytes_for(ffn_each) * b.ffn_down_count;
    let rest = b
        .block_linear
        .saturating_sub(b.value_proj)
        .saturating_sub(b.ffn_down);
    let rest_count = b
        .block_linear_count
        .saturating_sub(b.value_proj_count)
        .saturating_sub(b.ffn_down_count);
    let rest_bytes = match rest_count {
        0 => t.base.bytes_for(rest),
        n => t.base.bytes_for(per(rest, n)) * n + t.base.bytes_for(rest % n),
    };
    value + ffn + rest_bytes
}

const B1: Width = Width::Bytes(1);
const B2: Width = Width::Bytes(2);
const B4: Width = Width::Bytes(4);

/// The layout of the file.
fn file_layout(kind: ModelKind, precision: Precision) -> Layout {
    match precision {
        Precision::Fp32 => Layout::uniform(B4),
        Precision::Fp16 | Precision::Bf16 => Layout::uniform(B2),
        Precision::Fp8 {
            scaling: Fp8Scaling::None,
            ..
        } if kind == ModelKind::TextEncoder => Layout::uniform(B1),
        Precision::Fp8 { scaling, .. } => Layout {
            block_linear: BlockWidths::Uniform(B1),
            outer_linear: if scaling == Fp8Scaling::Kijai { B2 } else { B1 },
            scale_bytes_per_linear: match scaling {
                Fp8Scaling::None => 0,
                Fp8Scaling::Comfy => 4,
                Fp8Scaling::Kijai => 2,
            },
            outer_scaled: scaling == Fp8Scaling::Comfy,
            ..Layout::uniform(B2)
        },
        Precision::Int8 => Layout {
            block_linear: BlockWidths::Uniform(B1),
            outer_linear: B1,
            scale_bytes_per_linear: 4,
            outer_scaled: true,
            ..Layout::uniform(B2)
        },
        Precision::Nvfp4 => Layout {
            block_linear: BlockWidths::Uniform(Width::Nvfp4),
            ..Layout::uniform(B2)
        },
        Precision::Gguf { quant } => {
            let types = quant.block_types();
            let base = Width::Ggml(types.base);
            Layout {
                block_linear: BlockWidths::Gguf(types),
                // convert.py keeps 1-D tensors and `.modulation` in F32; lcpp.patch leaves
                // patch/text/time embeddings, time projection and head unquantized (16-bit).
                outer_linear: B2,
                embedding: base,
                vector: B4,
                conv: B2,
                uncounted: B4,
                other: B2,
                scale_bytes_per_linear: 0,
                outer_scaled: false,
            }
        }
    }
}

/// The layout ComfyUI holds on the GPU (spec §7.3 item 6; `model_patcher.py` `_load_list`).
fn resident_layout(kind: ModelKind, precision: Precision, has_fp8_compute: bool) -> Layout {
    match kind {
        // VAE, CLIP vision and audio encoders run in bf16/fp16 whatever the file holds (§7.4).
        ModelKind::Vae | ModelKind::ClipVision | ModelKind::AudioEncoder => Layout::uniform(B2),
        // Merged into the weights they patch; the LoRA tensors stay in system RAM.
        ModelKind::Lora => Layout::uniform(Width::Bytes(0)),
        ModelKind::Diffusion | ModelKind::TextEncoder => match precision {
            // fp32/fp16/bf16 load in the compute dtype (fp16 or bf16): 2 bytes.
            Precision::Fp32 | Precision::Fp16 | Precision::Bf16 => Layout::uniform(B2),
            // Plain fp8: a text encoder is built in its weight dtype (t5 detection), so it stays
            // fp8; a DiT stays fp8 only with fp8 compute (or when 2 bytes/param would not fit,
            // which the caller decides), else it is upcast on load — every parameter at 2 bytes.
            Precision::Fp8 {
                scaling: Fp8Scaling::None,
                ..
            } => {
                if kind == ModelKind::TextEncoder || has_fp8_compute {
                    Layout::uniform(B1)
                } else {
                    Layout::uniform(B2)
                }
            }
            // Scaled formats load as quantized layers as stored, each linear with an fp32 scale
            // (`weight_scale`, counted by module_size, even where the file keeps it 16-bit).
            Precision::Fp8 { .. } => Layout {
                scale_bytes_per_linear: 4,
                ..file_layout(kind, precision)
            },
            // int8 and nvfp4 as stored; ComfyUI-GGUF keeps every tensor as stored and
            // dequantizes per forward.
            Precision::Int8 | Precision::Nvfp4 | Precision::Gguf { .. } => {
                file_layout(kind, precision)
            }
        },
    }
}

impl ModelInfo {
    /// Bytes ComfyUI counts for this model on the GPU when fully loaded — the figure its log
    /// prints as "MB loaded" and compares with the usable budget ([`Residency::counted_bytes`]).
    ///
    /// `has_fp8_compute`: whether plain (unscaled) fp8 weights stay fp8 — true on NVIDIA sm ≥ 8.9
    /// with torch ≥ 2.3, and also where ComfyUI keeps them fp8 because twice the parameters would
    /// exceed `maximum_vram_for_weights` (§7.3 item 6). It changes nothing for other precisions.
    pub fn resident_bytes(&self, has_fp8_compute: bool) -> u64 {
        self.residency(has_fp8_compute).counted_bytes
    }

    /// [`Self::resident_bytes`] with the bytes ComfyUI does not count beside it.
    ///
    /// Rules (ComfyUI v0.8.0; spec §7.3–7.4):
    /// - fp32/fp16/bf16 DiTs and text encoders: 2 bytes per parameter (the compute dtype).
    /// - fp8_scaled / int8 / nvfp4: linear weights stay quantized, each with a 4-byte fp32
    ///   scale; norms, biases, patch conv in the compute dtype (2 bytes).
    /// - plain fp8: 1 byte per parameter with fp8 compute, else upcast to 2 (text encoders stay
    ///   fp8 either way).
    /// - GGUF (ComfyUI-GGUF): as stored.
    /// - VAE, CLIP vision, audio encoder: 2 bytes per parameter.
    /// - LoRA: 0 — ComfyUI merges it into the weights it patches (for modules streamed in a
    ///   partial load it is applied on the fly from system RAM).
    pub fn residency(&self, has_fp8_compute: bool) -> Residency {
        let (counted_bytes, uncounted_bytes) =
            resident_layout(self.kind, self.precision, has_fp8_compute).bytes(&self.breakdown);
        Residency {
            counted_bytes,
            uncounted_bytes,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Recognition

/// Recognises a file by its name (case-insensitive; subfolders and URLs allowed). `None` for a
/// name that says nothing Wan-related (or is a ControlNet, upscaler, …).
pub fn recognise(file_name: &str) -> Option<ModelInfo> {
    let name = Name::new(file_name);
    let kind = name.kind()?;
    build(file_name, &name, kind)
}

/// Recognises a file that a loader of `kind` loads (a `LoraLoader` loads LoRAs, whatever their
/// names say). Where the name has no hint of its own, LoRAs get defaults (a 14B target, the
/// default rank); other kinds still need a name that identifies the family.
pub fn recognise_as(file_name: &str, kind: ModelKind) -> Option<ModelInfo> {
    let name = Name::new(file_name);
    if name.is_excluded() {
        return None;
    }
    build(file_name, &name, kind)
}

fn build(file_name: &str, name: &Name, kind: ModelKind) -> Option<ModelInfo> {
    let family = match kind {
        ModelKind::Diffusion => name.dit_family()?,
        ModelKind::TextEncoder => name.has("umt5").then_some(Family::UmT5Xxl)?,
        ModelKind::Vae => name.vae_family()?,
        ModelKind::ClipVision => name.is_clip_vision_h().then_some(Family::ClipVisionH)?,
        ModelKind::AudioEncoder => name.has("wav2vec2").then_some(Family::Wav2Vec2Large)?,
        ModelKind::Lora => Family::WanLora,
    };
    let (precision, precision_from_name) = match name.precision() {
        Some(p) => (p, true),
        None => (default_precision(kind, name), false),
    };
    let role = if family.is_a14b_expert() || kind == ModelKind::Lora {
        name.role()
    } else {
        Role::Single
    };
    let (spec, lora) = if kind == ModelKind::Lora {
        let (spec, info) = lora_spec(name);
        (spec, Some(info))
    } else {
        (family_spec(family), None)
    };
    let estimated_file_bytes = {
        let (counted, uncounted) = file_layout(kind, precision).bytes(&spec.breakdown);
        counted + uncounted
    };
    Some(ModelInfo {
        file_name: file_name.to_string(),
        kind,
        family,
        role,
        precision,
        precision_from_name,
        params: spec.breakdown.total(),
        params_confidence: spec.confidence,
        params_source: spec.source,
        breakdown: spec.breakdown,
        arch: spec.arch,
        lora,
        estimated_file_bytes,
    })
}

fn default_precision(kind: ModelKind, name: &Name) -> Precision {
    if name.ext == "gguf" {
        return Precision::Gguf {
            quant: GgufQuant::Q4_K_M,
        };
    }
    let is_pickle = matches!(name.ext.as_str(), "pth" | "pt" | "ckpt" | "bin");
    match kind {
        // The official Wan2.1_VAE.pth is fp32 (508 MB, §2.2); ComfyUI's repackaged VAEs bf16.
        ModelKind::Vae if is_pickle => Precision::Fp32,
        ModelKind::Vae | ModelKind::Lora => Precision::Bf16,
        _ => Precision::Fp16,
    }
}

struct Spec {
    breakdown: ParamBreakdown,
    arch: Option<DitArch>,
    confidence: Confidence,
    source: &'static str,
}

const SRC_A14B: &str = "vram-budget-data §2.2 row 'A14B expert (T2V or I2V, each)': 14.288 B \
     (blocks 40 × 351.4 M, non-block 0.233 B); computed by DitArch::breakdown";
const SRC_WAN21_I2V: &str = "vram-budget-data §2.2 row 'Wan 2.1 14B I2V (CLIP branch)': 16.395 B; \
     computed by DitArch::breakdown";
const SRC_5B: &str =
    "vram-budget-data §2.2 row 'TI2V-5B': 5.000 B (blocks 4.910 B); computed by DitArch::breakdown";
const SRC_1_3B: &str = "vram-budget-data §2.1 row 'Wan 2.1 T2V 1.3B' architecture; computed by \
     DitArch::breakdown (1.419 B; ComfyUI's fp16 file is 2.84 GB)";
const SRC_VACE: &str = "ComfyUI VaceWanModel structure (vace blocks every 5th layer of 14B, every \
     2nd of 1.3B); computed by DitArch::breakdown, not in vram-budget-data";
const SRC_FUN: &str = "VideoX-Fun models reuse the Wan shapes; in_dim varies by variant (the \
     header is exact); computed by DitArch::breakdown";
const SRC_S2V: &str = "structural estimate: an A14B-shaped expert plus the audio injector \
     (cross-attention into 12 layers) and frame packer, ≈ 16.3 B; not in vram-budget-data";
const SRC_ANIMATE: &str = "treksis/video-lab model card: 'Wan2.2-Animate-14B … 17.3B transformer \
     parameters' (Diffusers version; grade C); base is the Wan 2.1 I2V 14B shape";
const SRC_UMT5: &str = "vram-budget-data §2.2 row 'umT5-XXL encoder': 5.681 B (embedding 1.050 B); \
     24 layers × (4 × 4096² attention + 3 × 4096 × 10240 gated FFN)";
const SRC_VAE21: &str = "vram-budget-data §2.2 row 'Wan 2.1 VAE': 126.9 M (enc 53.6 M, dec 73.3 M)";
const SRC_VAE22: &str = "vram-budget-data §2.2 row 'Wan 2.2 VAE (5B)': 704.7 M";
const SRC_TAE: &str = "rough: madebyollin's TAEHV-style tiny autoencoders are ~10 M parameters";
const SRC_CLIP_H: &str = "rough: OpenCLIP ViT-H/14 vision tower ≈ 632 M (ComfyUI's \
     clip_vision_h.safetensors ≈ 1.26 GB fp16)";
const SRC_WAV2VEC: &str = "rough: wav2vec2-large ≈ 315 M";
const SRC_LORA: &str = "rank × (in + out) over the linears of every block (8 attention, 2 FFN; \
     +2 for Wan 2.1 I2V's k_img/v_img); LoRAs' small extra tensors (norm/bias diffs) ignored";

fn dit_spec(arch: DitArch, source: &'static str, confidence: Confidence) -> Spec {
    Spec {
        breakdown: arch.breakdown(),
        arch: Some(arch),
        confidence,
        source,
    }
}

fn family_spec(family: Family) -> Spec {
    use Confidence::*;
    use Family::*;
    let a14b_i2v = DitArch::wan_14b(36);
    let wan21_i2v = DitArch::wan_14b(36).with_image_cross_attn();
    match family {
        Wan22T2vA14b | Wan21T2v14b => dit_spec(DitArch::wan_14b(16), SRC_A14B, Derived),
        Wan22I2vA14b => dit_spec(a14b_i2v, SRC_A14B, Derived),
        Wan22FunA14b => dit_spec(a14b_i2v, SRC_FUN, Derived),
        Wan22Ti2v5b => dit_spec(DitArch::wan_5b(), SRC_5B, Derived),
        Wan22Fun5b => dit_spec(DitArch::wan_5b(), SRC_FUN, Derived),
        Wan22VaceFunA14b | Wan21Vace14b => {
            dit_spec(DitArch::wan_14b(16).with_vace(8), SRC_VACE, Derived)
        }
        Wan21Vace1_3b => dit_spec(DitArch::wan_1_3b(16).with_vace(15), SRC_VACE, Derived),
        Wan21VaceModule14b | Wan21VaceModule1_3b => {
            let arch = if family == Wan21VaceModule14b {
                DitArch::wan_14b(16).with_vace(8)
            } else {
                DitArch::wan_1_3b(16).with_vace(15)
            };
            Spec {
                breakdown: arch.vace_breakdown(),
                arch: Some(arch),
                confidence: Derived,
                source: SRC_VACE,
            }
        }
        Wan21I2v14b480p | Wan21I2v14b720p | Wan21I2v14b => {
            dit_spec(wan21_i2v, SRC_WAN21_I2V, Derived)
        }
        Wan21Flf2v14b => {
            let mut spec = dit_spec(wan21_i2v, SRC_WAN21_I2V, Derived);
            spec.breakdown.uncounted += WAN_FLF_POS_PARAMS;
            spec
        }
        Wan21Fun14b => dit_spec(wan21_i2v, SRC_FUN, Derived),
        Wan21T2v1_3b => dit_spec(DitArch::wan_1_3b(16), SRC_1_3B, Derived),
        Wan21Fun1_3b => dit_spec(
            DitArch::wan_1_3b(36).with_image_cross_attn(),
            SRC_FUN,
            Derived,
        ),
        Wan22S2v14b => {
            let arch = DitArch::wan_14b(16);
            let mut breakdown = arch.breakdown();
            let extra = 16_300_000_000u64.saturating_sub(breakdown.total());
            breakdown.block_linear += extra;
            breakdown.block_linear_count += 48; // 12 injector layers × q, k, v, o
            Spec {
                breakdown,
                arch: Some(arch),
                confidence: Rough,
                source: SRC_S2V,
            }
        }
        Wan22Animate14b => {
            let mut breakdown = wan21_i2v.breakdown();
            breakdown.other += 17_300_000_000u64.saturating_sub(breakdown.total());
            Spec {
                breakdown,
                arch: Some(wan21_i2v),
                confidence: Cited,
                source: SRC_ANIMATE,
            }
        }
        UmT5Xxl => {
            let (d, ff, layers) = (4096u64, 10240u64, 24u64);
            Spec {
                breakdown: ParamBreakdown {
                    block_linear: layers * (4 * d * d + 3 * d * ff),
                    block_linear_count: layers * 7,
                    value_proj: layers * d * d,
                    value_proj_count: layers,
                    ffn_down: layers * ff * d,
                    ffn_down_count: layers,
                    embedding: 256_384 * d,
                    // two layer norms per layer + final norm; per-layer relative position bias
                    // (32 buckets × 64 heads: umT5 does not share it)
                    vector: layers * 2 * d + d + layers * 32 * 64,
                    ..ParamBreakdown::default()
                },
                arch: None,
                confidence: Derived,
                source: SRC_UMT5,
            }
        }
        Wan21Vae => other_spec(126_900_000, Derived, SRC_VAE21),
        Wan22Vae => other_spec(704_700_000, Derived, SRC_VAE22),
        TinyVaeWan21 | TinyVaeWan22 => other_spec(10_000_000, Rough, SRC_TAE),
        ClipVisionH => other_spec(632_000_000, Rough, SRC_CLIP_H),
        Wav2Vec2Large => other_spec(315_000_000, Rough, SRC_WAV2VEC),
        WanLora => other_spec(0, Rough, SRC_LORA),
    }
}

fn other_spec(params: u64, confidence: Confidence, source: &'static str) -> Spec {
    Spec {
        breakdown: ParamBreakdown::only_other(params),
        arch: None,
        confidence,
        source,
    }
}

fn lora_spec(name: &Name) -> (Spec, LoraInfo) {
    let base = &name.base;
    let target = if base.contains("1p3b") {
        DitArch::wan_1_3b(16)
    } else if name.has_5b() {
        DitArch::wan_5b()
    } else if base.contains("i2v") && !base.contains("wan22") && !base.contains("a14b") {
        // Wan 2.1 I2V LoRAs also adapt the CLIP branch (k_img, v_img).
        DitArch::wan_14b(36).with_image_cross_attn()
    } else {
        DitArch::wan_14b(16)
    };
    let (rank, rank_from_name) = match name.rank() {
        Some(r) => (r, true),
        None if name.is_speed_lora() => (DEFAULT_SPEED_LORA_RANK, false),
        None => (DEFAULT_LORA_RANK, false),
    };
    let d = u64::from(target.dim);
    let f = u64::from(target.ffn_dim);
    let attn_linears: u64 = if target.image_cross_attn { 10 } else { 8 };
    let per_block = u64::from(rank) * (attn_linears * 2 * d + 2 * (d + f));
    let params = per_block * u64::from(target.layers);
    (
        other_spec(params, Confidence::Rough, SRC_LORA),
        LoraInfo {
            rank,
            rank_from_name,
            target,
        },
    )
}

/// A file name prepared for matching: lower case, every separator (`-`, `.`, space, `/`, `\`)
/// turned into `_`, and the spellings of versions unified (`wan2.2`, `Wan2_2`, `wan_2.2`,
/// `WAN_22` → `wan22`; `1.3B` → `1p3b`).
struct Name {
    /// The whole path, normalised (folders can carry the family: `Wan2.2-…-Seko-V1/low_noise.safetensors`).
    full: String,
    /// The file's own name without extension, normalised.
    base: String,
    ext: String,
}

fn normalise(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| match c {
            '-' | '.' | ' ' | '/' | '\\' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    for (from, to) in [
        ("wan_2_2", "wan22"),
        ("wan2_2", "wan22"),
        ("wan_22", "wan22"),
        ("wan_2_1", "wan21"),
        ("wan2_1", "wan21"),
        ("wan_21", "wan21"),
        ("1_3b", "1p3b"),
    ] {
        out = out.replace(from, to);
    }
    out
}

impl Name {
    fn new(raw: &str) -> Self {
        // A URL: the last path segment, without a query.
        let raw = raw.split(['?', '#']).next().unwrap_or(raw);
        let file = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
        let (stem, ext) = match file.rsplit_once('.') {
            Some((stem, ext)) if is_model_ext(ext) => (stem, ext.to_ascii_lowercase()),
            _ => (file, String::new()),
        };
        let dir_len = raw.len() - file.len();
        let dir = raw.get(..dir_len).unwrap_or("");
        Self {
            full: normalise(&format!("{dir}{stem}")),
            base: normalise(stem),
            ext,
        }
    }

    fn has(&self, pat: &str) -> bool {
        self.full.contains(pat)
    }

    fn base_tokens(&self) -> impl Iterator<Item = &str> {
        self.base.split('_').filter(|t| !t.is_empty())
    }

    /// "5b" not preceded by a digit (so not "15b", not "q5_…").
    fn has_5b(&self) -> bool {
        self.full.match_indices("5b").any(|(i, _)| {
            i.checked_sub(1)
                .and_then(|p| self.full.as_bytes().get(p))
                .is_none_or(|c| !c.is_ascii_digit())
        })
    }

    /// Files this catalogue must not claim even under a loader hint.
    fn is_excluded(&self) -> bool {
        self.has("controlnet")
    }

    fn is_lora(&self) -> bool {
        self.has("lora") || self.rank().is_some()
    }

    fn is_speed_lora(&self) -> bool {
        [
            "lightx2v",
            "lightning",
            "causvid",
            "distill",
            "seko",
            "step",
        ]
        .iter()
        .any(|p| self.has(p))
    }

    /// `rank64`, `rank_64`, `rank_98` (kijai's "dynamic_avg_rank_98").
    fn rank(&self) -> Option<u32> {
        let s = &self.full;
        s.match_indices("rank").find_map(|(i, _)| {
            let rest = s.get(i + 4..)?;
            let rest = rest.strip_prefix('_').unwrap_or(rest);
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok().filter(|&r| r > 0 && r <= 4096)
        })
    }

    fn is_clip_vision_h(&self) -> bool {
        self.has("clip_vision_h")
            || self.has("clipvisionh")
            || (self.has("clip") && (self.has("vit_huge") || self.has("vit_h_14")))
    }

    fn kind(&self) -> Option<ModelKind> {
        if self.is_excluded() {
            return None;
        }
        if self.is_lora() {
            return Some(ModelKind::Lora);
        }
        if self.has("umt5") {
            return Some(ModelKind::TextEncoder);
        }
        if self.has("wav2vec2") {
            return Some(ModelKind::AudioEncoder);
        }
        if self.is_clip_vision_h() {
            return Some(ModelKind::ClipVision);
        }
        if self.vae_family().is_some() {
            return Some(ModelKind::Vae);
        }
        if self.dit_family().is_some() {
            return Some(ModelKind::Diffusion);
        }
        None
    }

    fn vae_family(&self) -> Option<Family> {
        if self.has("taew2_1") || self.has("taew21") {
            return Some(Family::TinyVaeWan21);
        }
        if self.has("taew2_2") || self.has("taew22") {
            return Some(Family::TinyVaeWan22);
        }
        if !self.base.contains("vae") {
            return None;
        }
        if self.base.contains("wan22") {
            Some(Family::Wan22Vae)
        } else if self.base.contains("wan21") {
            Some(Family::Wan21Vae)
        } else {
            None
        }
    }

    fn dit_family(&self) -> Option<Family> {
        use Family::*;
        let v22 = self.has("wan22");
        let v21 = self.has("wan21");
        let wan = v22 || v21 || self.has("wan");
        let ti2v = self.has("ti2v");
        let flf2v = self.has("flf2v");
        let s2v = self.has("s2v");
        let animate = self.has("animate");
        let vace = self.has("vace");
        let fun = self.full.split('_').any(|t| t == "fun");
        let i2v = (self.has("i2v") && !ti2v) || self.full.matches("i2v").count() > 1;
        let t2v = self.has("t2v");
        let size_14b = self.has("14b");
        let size_5b = self.has_5b();
        let size_1_3b = self.has("1p3b");
        let expert_hint = self.has("a14b") || self.has("high") || self.has("low_noise");
        let any_task = ti2v || flf2v || s2v || animate || vace || fun || i2v || t2v;
        if !wan || !(v22 || v21 || any_task || size_14b || size_5b || size_1_3b) {
            return None;
        }
        let is_22 = v22
            || (!v21
                && (ti2v || s2v || animate || self.has("a14b") || (expert_hint && !size_1_3b)));
        Some(if is_22 {
            if animate {
                Wan22Animate14b
            } else if s2v {
                Wan22S2v14b
            } else if ti2v || size_5b {
                if fun { Wan22Fun5b } else { Wan22Ti2v5b }
            } else if vace {
                Wan22VaceFunA14b
            } else if fun {
                Wan22FunA14b
            } else if i2v {
                Wan22I2vA14b
            } else {
                Wan22T2vA14b
            }
        } else if vace {
            match (self.has("module"), size_1_3b) {
                (true, true) => Wan21VaceModule1_3b,
                (true, false) => Wan21VaceModule14b,
                (false, true) => Wan21Vace1_3b,
                (false, false) => Wan21Vace14b,
            }
        } else if flf2v {
            Wan21Flf2v14b
        } else if fun {
            if size_1_3b { Wan21Fun1_3b } else { Wan21Fun14b }
        } else if i2v {
            if self.has("720p") {
                Wan21I2v14b720p
            } else if self.has("480p") {
                Wan21I2v14b480p
            } else {
                Wan21I2v14b
            }
        } else if size_1_3b {
            Wan21T2v1_3b
        } else {
            Wan21T2v14b
        })
    }

    /// High or low noise, from the file name first, then its folders.
    fn role(&self) -> Role {
        fn role_of(s: &str) -> Option<Role> {
            let mut found = None;
            for t in s.split('_') {
                let high = t.starts_with("high") || ends_after_tag(t, "high");
                let low = t.starts_with("low") || ends_after_tag(t, "low");
                match (high, low) {
                    (true, false) => found = found.or(Some(Role::High)),
                    (false, true) => found = found.or(Some(Role::Low)),
                    _ => {}
                }
            }
            found
        }
        role_of(&self.base)
            .or_else(|| role_of(&self.full))
            .unwrap_or(Role::Unknown)
    }

    fn precision(&self) -> Option<Precision> {
        if self.ext == "gguf" {
            return self.gguf_quant().map(|quant| Precision::Gguf { quant });
        }
        precision_of(&self.base).or_else(|| precision_of(&self.full))
    }

    fn gguf_quant(&self) -> Option<GgufQuant> {
        use GgufQuant::*;
        let tokens: Vec<&str> = self.base_tokens().collect();
        for (i, t) in tokens.iter().enumerate() {
            let next = tokens.get(i + 1).copied().unwrap_or("");
            let after = tokens.get(i + 2).copied().unwrap_or("");
            let q = match (*t, next, after) {
                ("q8", "0", _) => Q8_0,
                ("q6", "k", _) => Q6_K,
                ("q5", "k", "s") => Q5_K_S,
                ("q5", "k", _) => Q5_K_M,
                ("q5", "1", _) => Q5_1,
                ("q5", "0", _) => Q5_0,
                ("q4", "k", "s") => Q4_K_S,
                ("q4", "k", _) => Q4_K_M,
                ("q4", "1", _) => Q4_1,
                ("q4", "0", _) => Q4_0,
                ("q3", "k", "s") => Q3_K_S,
                ("q3", "k", "l") => Q3_K_L,
                ("q3", "k", _) => Q3_K_M,
                ("q2", "k", _) => Q2_K,
                ("bf16", _, _) => BF16,
                ("f16" | "fp16", _, _) => F16,
                ("f32" | "fp32", _, _) => F32,
                _ => continue,
            };
            return Some(q);
        }
        None
    }
}

/// `i2vhigh`, `14blow`: the tag right after a digit or a task's `v`.
fn ends_after_tag(token: &str, tag: &str) -> bool {
    token.len() > tag.len()
        && token.ends_with(tag)
        && token
            .as_bytes()
            .get(token.len() - tag.len() - 1)
            .is_some_and(|&c| c.is_ascii_digit() || c == b'v')
}

fn precision_of(s: &str) -> Option<Precision> {
    let tokens: Vec<&str> = s.split('_').filter(|t| !t.is_empty()).collect();
    let has = |t: &str| tokens.contains(&t);
    let fp8 = s.contains("fp8")
        || s.contains("float8")
        || has("e4m3fn")
        || has("e4m3")
        || has("e5m2")
        || has("f8");
    if fp8 {
        let format = if s.contains("e5m2") {
            Fp8Format::E5m2
        } else {
            Fp8Format::E4m3fn
        };
        let scaling = if has("scaled") || s.contains("fp8scaled") {
            if has("kj") {
                Fp8Scaling::Kijai
            } else {
                Fp8Scaling::Comfy
            }
        } else {
            Fp8Scaling::None
        };
        return Some(Precision::Fp8 { format, scaling });
    }
    if s.contains("int8") {
        return Some(Precision::Int8);
    }
    if s.contains("nvfp4") || has("fp4") {
        return Some(Precision::Nvfp4);
    }
    if has("bf16") {
        return Some(Precision::Bf16);
    }
    if has("fp16") || has("f16") || has("half") {
        return Some(Precision::Fp16);
    }
    if has("fp32") || has("f32") || has("float32") {
        return Some(Precision::Fp32);
    }
    None
}

fn is_model_ext(ext: &str) -> bool {
    matches!(
        ext.to_ascii_lowercase().as_str(),
        "safetensors" | "gguf" | "pt" | "pth" | "ckpt" | "bin" | "sft"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: f64 = 1024.0 * 1024.0;

    fn info(name: &str) -> ModelInfo {
        recognise(name).unwrap_or_else(|| panic!("{name} not recognised"))
    }

    #[test]
    fn dit_parameter_counts_match_the_research_rows() {
        // vram-budget-data §2.2: 14.288 B per A14B expert (blocks 14.056 B, non-block 0.233 B),
        // 16.395 B Wan 2.1 I2V, 5.000 B TI2V-5B (blocks 4.910 B).
        let t2v = DitArch::wan_14b(16).breakdown().total();
        let i2v = DitArch::wan_14b(36).breakdown().total();
        assert_eq!(t2v, 14_288_491_584);
        assert_eq!(i2v, 14_288_901_184);
        let blocks_14b = 40 * (8 * 5120 * 5120 + 2 * 5120 * 13824 + 121_344);
        assert_eq!(blocks_14b, 14_055_772_160, "40 × 351.4 M");
        assert_eq!((i2v - blocks_14b) / 1_000_000, 233, "non-block 0.233 B");
        let wan21_i2v = DitArch::wan_14b(36)
            .with_image_cross_attn()
            .breakdown()
            .total();
        assert_eq!(wan21_i2v / 1_000_000, 16_394, "16.395 B");
        let five = DitArch::wan_5b().breakdown().total();
        assert_eq!(five / 1_000_000, 4_999, "5.000 B");
        let one_three = DitArch::wan_1_3b(16).breakdown().total();
        assert_eq!(one_three / 1_000_000, 1_418, "1.419 B → 2.84 GB in fp16");
        // bf16/fp16 file sizes in §2.2: 28.58 GB, 32.8 GB, 10.0 GB.
        assert_eq!(
            info("wan2.2_i2v_high_noise_14B_fp16.safetensors").estimated_file_bytes / 10_000_000,
            2857
        );
        assert_eq!(
            info("wan2.1_i2v_720p_14B_fp16.safetensors").estimated_file_bytes / 100_000_000,
            327
        );
        assert_eq!(
            info("wan2.2_ti2v_5B_fp16.safetensors").estimated_file_bytes / 100_000_000,
            99
        );
    }

    #[test]
    fn the_logged_13629_mib_of_one_fp8_scaled_expert_is_reproduced() {
        // Research row 9: "14971.79 MB usable, 13629.08 MB loaded" for the I2V fp8_scaled expert.
        let m = info("wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors");
        let mib = m.resident_bytes(true) as f64 / MIB;
        assert!((mib - 13_629.08).abs() < 2.0, "got {mib:.2} MiB");
        assert_eq!(
            m.resident_bytes(false),
            m.resident_bytes(true),
            "scaled stays fp8"
        );
        let r = m.residency(true);
        assert!(
            r.uncounted_bytes > 2_000_000 && r.uncounted_bytes < 3_000_000,
            "modulation"
        );
        // §2.2: "14.29 GB → HF 14.3 GB" on disk.
        assert_eq!(m.estimated_file_bytes / 10_000_000, 1429);
    }

    #[test]
    fn plain_fp8_is_upcast_without_fp8_compute() {
        let m = info(r"WAN\wan2.1_i2v_480p_14B_fp8_e4m3fn.safetensors");
        assert_eq!(m.family, Family::Wan21I2v14b480p);
        let with = m.resident_bytes(true);
        let without = m.resident_bytes(false);
        assert_eq!(without, 2 * with);
        assert!((with as f64 / 1e9 - 16.39).abs() < 0.01);
        // Text encoders are built in their weight dtype and stay fp8 either way.
        let te = recognise_as("umt5_xxl_fp8_e4m3fn.safetensors", ModelKind::TextEncoder).unwrap();
        assert_eq!(te.resident_bytes(false), te.resident_bytes(true));
    }

    #[test]
    fn umt5_sizes_match_the_research_row() {
        // §2.2: 11.4 GB bf16; 6.74 GB fp8_e4m3fn_scaled (the embedding stays 16-bit).
        let fp8 = info("umt5_xxl_fp8_e4m3fn_scaled.safetensors");
        assert_eq!(fp8.kind, ModelKind::TextEncoder);
        assert_eq!(fp8.params / 1_000_000, 5_680);
        assert_eq!(fp8.estimated_file_bytes / 10_000_000, 673);
        let fp16 = info("umt5_xxl_fp16.safetensors");
        assert_eq!(fp16.estimated_file_bytes / 100_000_000, 113);
        assert_eq!(
            fp8.breakdown.block_linear_count, 168,
            "168 scale_weight tensors"
        );
    }

    #[test]
    fn gguf_sizes_follow_the_llama_cpp_mix_rules() {
        let q8 = info("wan2.2_i2v_high_noise_14B_Q8_0.gguf");
        let q4m = info("Wan2.2-I2V-A14B-HighNoise-Q4_K_M.gguf");
        let q4s = info("Wan2.2-I2V-A14B-HighNoise-Q4_K_S.gguf");
        let q3m = info("Wan2.2-I2V-A14B-HighNoise-Q3_K_M.gguf");
        assert_eq!(
            q4m.precision,
            Precision::Gguf {
                quant: GgufQuant::Q4_K_M
            }
        );
        let gb = |m: &ModelInfo| m.estimated_file_bytes as f64 / 1e9;
        // Block linears at 8.5 bpw, 0.233 B non-block params kept 16-bit, 1-D in F32.
        assert!((gb(&q8) - 15.41).abs() < 0.05, "Q8_0 {:.2}", gb(&q8));
        assert!(gb(&q4m) > gb(&q4s) && gb(&q4s) > gb(&q3m), "mixes order");
        assert!((gb(&q4m) - 9.66).abs() < 0.05, "Q4_K_M {:.2}", gb(&q4m));
        assert_eq!(q4m.resident_bytes(false), q4m.resident_bytes(true));
        let t = GgufQuant::Q3_K_M.block_types();
        assert_eq!(t.value_proj_first, Some((2, GgmlType::Q5_K)));
        assert_eq!(t.ffn_down, GgmlType::Q4_K);
    }

    #[test]
    fn names_from_every_publisher_are_recognised() {
        use Family::*;
        let cases: &[(&str, Family, Role, Precision)] = &[
            (
                "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors",
                Wan22T2vA14b,
                Role::High,
                Precision::Fp8 {
                    format: Fp8Format::E4m3fn,
                    scaling: Fp8Scaling::Comfy,
                },
            ),
            (
                r"WanVideo\2_2\Wan2_2-I2V-A14B-LOW_fp8_e4m3fn_scaled_KJ.safetensors",
                Wan22I2vA14b,
                Role::Low,
                Precision::Fp8 {
                    format: Fp8Format::E4m3fn,
                    scaling: Fp8Scaling::Kijai,
                },
            ),
            (
                "wan2.2_i2v_high_noise_14B_Q4_K_M.gguf",
                Wan22I2vA14b,
                Role::High,
                Precision::Gguf {
                    quant: GgufQuant::Q4_K_M,
                },
            ),
            (
                "Wan2.2-Animate-14B-Q3_K_M.gguf",
                Wan22Animate14b,
                Role::Single,
                Precision::Gguf {
                    quant: GgufQuant::Q3_K_M,
                },
            ),
            (
                "smoothMixWan22I2VT2V_i2vLow.safetensors",
                Wan22I2vA14b,
                Role::Low,
                Precision::Fp16,
            ),
            (
                "wan2.2_ti2v_5B_fp16.safetensors",
                Wan22Ti2v5b,
                Role::Single,
                Precision::Fp16,
            ),
            (
                "wan2.2/Wan2.2-T2V-A14B-LowNoise-Q6_K.gguf",
                Wan22T2vA14b,
                Role::Low,
                Precision::Gguf {
                    quant: GgufQuant::Q6_K,
                },
            ),
            (
                r"WanVideo\Wan2_1-FLF2V-14B-720P_fp8_e4m3fn.safetensors",
                Wan21Flf2v14b,
                Role::Single,
                Precision::Fp8 {
                    format: Fp8Format::E4m3fn,
                    scaling: Fp8Scaling::None,
                },
            ),
            (
                "wan2.1-v2-vace-14b-q6_k.gguf",
                Wan21Vace14b,
                Role::Single,
                Precision::Gguf {
                    quant: GgufQuant::Q6_K,
                },
            ),
            (
                r"WanVideo\Wan2_1-VACE_module_1_3B_bf16.safetensors",
                Wan21VaceModule1_3b,
                Role::Single,
                Precision::Bf16,
            ),
            (
                "https://huggingface.co/Comfy-Org/Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files/vae/wan2.2_vae.safetensors",
                Wan22Vae,
                Role::Single,
                Precision::Bf16,
            ),
            ("Wan2.1_VAE.pth", Wan21Vae, Role::Single, Precision::Fp32),
            (
                "cat-umt5xxl-q5_0.gguf",
                UmT5Xxl,
                Role::Single,
                Precision::Gguf {
                    quant: GgufQuant::Q5_0,
                },
            ),
            (
                r"WanVideo\2_2\Fun\Wan2_2-Fun-Control-Camera-A14B-HIGH_fp8_e4m3fn_scaled_KJ.safetensors",
                Wan22FunA14b,
                Role::High,
                Precision::Fp8 {
                    format: Fp8Format::E4m3fn,
                    scaling: Fp8Scaling::Kijai,
                },
            ),
            (
                "wan2.2_animate_14B_int8_convrot.safetensors",
                Wan22Animate14b,
                Role::Single,
                Precision::Int8,
            ),
            (
                "Wan2.2-VACE-Fun-A14B-low-noise_fp8_e5m2.safetensors",
                Wan22VaceFunA14b,
                Role::Low,
                Precision::Fp8 {
                    format: Fp8Format::E5m2,
                    scaling: Fp8Scaling::None,
                },
            ),
        ];
        for (name, family, role, precision) in cases {
            let m = info(name);
            assert_eq!(
                (m.family, m.role, m.precision),
                (*family, *role, *precision),
                "{name}"
            );
        }
        assert!(!info("smoothMixWan22I2VT2V_i2vLow.safetensors").precision_from_name);
        assert_eq!(info("taew2_1.safetensors").kind, ModelKind::Vae);
        assert_eq!(info("clip_vision_h.safetensors").family, ClipVisionH);
        assert_eq!(
            info("open-clip-xlm-roberta-large-vit-huge-14_visual_fp16.safetensors").family,
            ClipVisionH
        );
        assert_eq!(
            info("wav2vec2_large_english_fp16.safetensors").kind,
            ModelKind::AudioEncoder
        );
        for not_wan in [
            "RealESRGAN_x4plus.pth",
            "rife47.pth",
            "sam2.1_hiera_large.safetensors",
            "wan2.2-ti2v-5b-controlnet-depth-v1/diffusion_pytorch_model.safetensors",
            "flux1-dev-fp8.safetensors",
            "t5xxl_fp16.safetensors",
        ] {
            assert!(recognise(not_wan).is_none(), "{not_wan}");
        }
    }

    #[test]
    fn lora_ranks_come_from_the_name_or_a_documented_default() {
        let m = info(
            r"lightx2v\wan2.2_i2v_A14b_high_noise_lora_rank64_lightx2v_4step_1022.safetensors",
        );
        assert_eq!(m.kind, ModelKind::Lora);
        assert_eq!(m.role, Role::High);
        let lora = m.lora.unwrap();
        assert_eq!((lora.rank, lora.rank_from_name), (64, true));
        // 64 × (8 × 2 × 5120 + 2 × (5120 + 13824)) × 40 = 306.7 M params, 613 MB in bf16.
        assert_eq!(m.params, 306_708_480);
        assert_eq!(m.estimated_file_bytes, 2 * 306_708_480);
        assert_eq!(m.resident_bytes(true), 0, "merged into the weights");
        let pusa = info(
            r"WanVideo\Pusa\Wan22_PusaV1_lora_LOW_resized_dynamic_avg_rank_98_bf16.safetensors",
        );
        assert_eq!(pusa.lora.unwrap().rank, 98);
        let seko = info("Wan2.2-I2V-A14B-4steps-lora-rank64-Seko-V1/low_noise_model.safetensors");
        assert_eq!((seko.kind, seko.role), (ModelKind::Lora, Role::Low));
        let anon = recognise_as("svi-shot.safetensors", ModelKind::Lora).unwrap();
        assert_eq!(anon.lora.unwrap().rank, DEFAULT_LORA_RANK);
        assert!(!anon.lora.unwrap().rank_from_name);
        let speed =
            recognise_as("i2v_lightx2v_low_noise_model.safetensors", ModelKind::Lora).unwrap();
        assert_eq!(speed.lora.unwrap().rank, DEFAULT_SPEED_LORA_RANK);
        assert_eq!(speed.role, Role::Low);
    }

    #[test]
    fn vae_and_encoders_are_held_in_16_bits() {
        let vae = info("Wan2.1_VAE.pth");
        assert_eq!(
            vae.estimated_file_bytes,
            4 * 126_900_000,
            "official fp32: 508 MB"
        );
        assert_eq!(vae.resident_bytes(true), 2 * 126_900_000);
        let vae22 = info("wan2.2_vae.safetensors");
        assert_eq!(vae22.estimated_file_bytes, 2 * 704_700_000, "1.41 GB");
    }
}
