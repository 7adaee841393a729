//! The VRAM and time budget: what ComfyUI will decide, what the GPU will really hold, and how
//! long a run takes — per phase, per frame count, per torch.compile mode.
//!
//! Pure: plain data in, plain data out. I/O lives in `gpu` (NVML) and `comfy` (model files on
//! disk, whose headers [`header_facts`] sizes).

pub mod calibrate;
pub mod cards;
pub mod catalogue;
pub mod comfyui;
pub mod physical;
pub mod projection;
pub mod seed;
pub mod time;
pub mod weights;
pub mod workload;

/// Model facts for the workload from the catalogue, by file name (the file on disk is not read):
/// the bytes ComfyUI holds on a card with or without fp8 compute, and the DiT's shape.
pub fn catalogue_facts(file: &str, has_fp8_compute: bool) -> Option<workload::ModelFacts> {
    let info = catalogue::recognise(file)?;
    let dit = info.arch.map(|arch| time::DitShape {
        block_params: arch.breakdown().block_linear as f64,
        layers: arch.layers,
        dim: arch.dim,
    });
    Some(workload::ModelFacts {
        resident_bytes: info.resident_bytes(has_fp8_compute) as f64,
        dit,
        is_5b: info.family == catalogue::Family::Wan22Ti2v5b,
    })
}

/// Model facts from a file's parsed header: the exact bytes ComfyUI holds on the GPU for it,
/// tensor by tensor, and the DiT's shape as the header gives it. `info` is what the catalogue
/// recognised from the name, used where the header cannot tell (the kind of an unrecognised
/// file, the DiT shape of a file whose tensors do not say).
///
/// Per tensor, as [`catalogue::ModelInfo::resident_bytes`] counts (ComfyUI v0.8.0, spec §7.3):
/// - fp8_scaled / int8 / nvfp4 (a file with `scale_weight`/`weight_scale` tensors): quantized
///   tensors as stored, scales as fp32 parameters (4 bytes; as stored when sub-16-bit), every
///   other tensor in the 16-bit compute dtype.
/// - plain fp8: 1 byte per parameter with fp8 compute (and for a text encoder), else upcast to
///   2 bytes per parameter on load.
/// - GGUF: as stored (ComfyUI-GGUF dequantizes per forward).
/// - fp32/fp16/bf16, and every VAE, CLIP vision or audio encoder: 2 bytes per parameter.
/// - LoRA: 0 (merged into the weights it patches).
///
/// A DiT's `modulation` and `emb_pos` parameters are on the GPU but outside ComfyUI's count
/// ([`catalogue::ParamBreakdown::uncounted`]), so left out here as there.
pub fn header_facts(
    header: &weights::WeightsHeader,
    info: Option<&catalogue::ModelInfo>,
    has_fp8_compute: bool,
) -> workload::ModelFacts {
    use catalogue::ModelKind;
    use weights::{ArchGuess, WeightsFormat, safetensors_dtype_bits};

    let guess = header.guess_arch();
    let kind = match &guess {
        ArchGuess::WanDit { .. } => ModelKind::Diffusion,
        ArchGuess::UmT5 { .. } => ModelKind::TextEncoder,
        ArchGuess::WanVae { .. } => ModelKind::Vae,
        ArchGuess::Lora { .. } => ModelKind::Lora,
        ArchGuess::Unknown => info.map_or(ModelKind::Diffusion, |i| i.kind),
    };
    let bare = |name: &str| {
        name.strip_prefix("model.diffusion_model.")
            .or_else(|| name.strip_prefix("diffusion_model."))
            .unwrap_or(name)
            .to_string()
    };
    let is_uncounted = |name: &str| {
        let bare = bare(name);
        kind == ModelKind::Diffusion
            && (bare == "modulation" || bare.ends_with(".modulation") || bare.ends_with("emb_pos"))
    };
    let is_scale = |name: &str| {
        [
            ".scale_weight",
            ".weight_scale",
            ".weight_scale_2",
            ".input_scale",
            ".scale_input",
        ]
        .iter()
        .any(|s| name.ends_with(s))
            || bare(name) == "scaled_fp8"
    };
    // Sub-16-bit storage: fp8, int8, packed fp4 (unknown dtypes count as 16-bit).
    let is_narrow = |dtype: &str| safetensors_dtype_bits(dtype).is_some_and(|bits| bits < 16);
    let is_gguf = matches!(header.format, WeightsFormat::Gguf { .. });
    let is_scaled = header.tensors.iter().any(|t| is_scale(&t.name));
    let has_fp8 = header.tensors.iter().any(|t| t.dtype.starts_with("F8_"));
    let counted = header.tensors.iter().filter(|t| !is_uncounted(&t.name));
    let resident_bytes: u64 = match kind {
        ModelKind::Lora => 0,
        ModelKind::Vae | ModelKind::ClipVision | ModelKind::AudioEncoder => {
            counted.map(|t| t.elements.saturating_mul(2)).sum()
        }
        ModelKind::Diffusion | ModelKind::TextEncoder => {
            if is_gguf {
                counted.map(|t| t.data_bytes).sum()
            } else if is_scaled {
                counted
                    .map(|t| match (is_narrow(&t.dtype), is_scale(&t.name)) {
                        (true, _) => t.data_bytes,
                        (false, true) => t.elements.saturating_mul(4),
                        (false, false) => t.elements.saturating_mul(2),
                    })
                    .sum()
            } else if has_fp8 && (kind == ModelKind::TextEncoder || has_fp8_compute) {
                counted.map(|t| t.elements).sum()
            } else {
                counted.map(|t| t.elements.saturating_mul(2)).sum()
            }
        }
    };
    let header_arch = match guess {
        ArchGuess::WanDit { arch, .. } if arch.dim > 0 && arch.layers > 0 => Some(arch),
        _ => None,
    };
    let arch = header_arch.or(info.and_then(|i| i.arch));
    workload::ModelFacts {
        resident_bytes: resident_bytes as f64,
        dit: arch.map(|arch| time::DitShape {
            block_params: arch.breakdown().block_linear as f64,
            layers: arch.layers,
            dim: arch.dim,
        }),
        is_5b: info.is_some_and(|i| i.family == catalogue::Family::Wan22Ti2v5b)
            || header_arch.is_some_and(|a| a.out_dim == 48),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP8_SCALED: &[u8] =
        include_bytes!("../../tests/data/weights/tiny_wan_t2v_fp8_scaled.safetensors");
    const I2V_BARE: &[u8] =
        include_bytes!("../../tests/data/weights/tiny_wan21_i2v_bare_fp16.safetensors");
    const LORA: &[u8] = include_bytes!("../../tests/data/weights/tiny_wan_lora_rank4.safetensors");
    const GGUF_FILE: &[u8] = include_bytes!("../../tests/data/weights/tiny_wan_i2v_mixed.gguf");

    fn facts(bytes: &[u8], name: &str, fp8_compute: bool) -> workload::ModelFacts {
        let header = weights::parse_header(bytes).unwrap();
        header_facts(&header, catalogue::recognise(name).as_ref(), fp8_compute)
    }

    // Expected bytes summed in Python from tests/data/weights/expected.json, by the rules above.
    #[test]
    fn header_bytes_are_what_comfyui_holds() {
        for fp8_compute in [false, true] {
            // F8 linears 10,752 + 26 fp32 scales 104 + 16-bit rest 3,680; modulation left out.
            let f = facts(
                FP8_SCALED,
                "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors",
                fp8_compute,
            );
            assert_eq!(f.resident_bytes, 14_536.0);
            let dit = f.dit.unwrap();
            assert_eq!(
                (dit.dim, dit.layers),
                (16, 2),
                "the header's shape, not the name's"
            );
            assert!(!f.is_5b);
            assert_eq!(
                facts(I2V_BARE, "x.safetensors", fp8_compute).resident_bytes,
                29_776.0
            );
            // GGUF as stored: 42,240 of tensor data less the F32 modulation.
            assert_eq!(
                facts(
                    GGUF_FILE,
                    "wan2.2_i2v_high_noise_14B_Q4_K_M.gguf",
                    fp8_compute
                )
                .resident_bytes,
                42_240.0
            );
            assert_eq!(
                facts(LORA, "any_lora.safetensors", fp8_compute).resident_bytes,
                0.0
            );
        }
    }

    #[test]
    fn plain_fp8_is_upcast_without_fp8_compute() {
        let mut header = weights::parse_header(FP8_SCALED).unwrap();
        header
            .tensors
            .retain(|t| !t.name.ends_with("scale_weight") && !t.name.ends_with("scaled_fp8"));
        let info = catalogue::recognise("wan2.2_t2v_high_noise_14B_fp8_e4m3fn.safetensors");
        // 12,592 counted parameters: 1 byte each with fp8 compute, else 2.
        assert_eq!(
            header_facts(&header, info.as_ref(), true).resident_bytes,
            12_592.0
        );
        assert_eq!(
            header_facts(&header, info.as_ref(), false).resident_bytes,
            25_184.0
        );
    }
}
