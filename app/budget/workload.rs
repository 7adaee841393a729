//! From a recognised workflow to what the projection needs: the experts and their bytes and
//! steps, the text encoder and VAE, the size, CFG, whether the clip is encoded. Model sizes come
//! from a lookup the caller provides (the catalogue by file name, or file headers on disk), so
//! this stays pure.

use super::comfyui::WanVae;
use super::projection::{Expert, Workload};
use super::time::DitShape;
use crate::workflow::recognise::{Family, Inspection, ModelRole};

const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;

/// What the caller knows about one model file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelFacts {
    /// Bytes ComfyUI holds on the GPU when the model is fully loaded.
    pub resident_bytes: f64,
    pub dit: Option<DitShape>,
    /// The 5B TI2V model (48-channel latents, the Wan 2.2 VAE).
    pub is_5b: bool,
}

/// The A14B expert when nothing better is known: 13,629.08 MiB as ComfyUI logs an fp8_scaled one.
const DEFAULT_EXPERT_BYTES: f64 = 13_629.08 * MIB;
/// umt5_xxl_fp8_e4m3fn_scaled, as Hugging Face lists it (6.74 GB; the embedding stays 16-bit).
const UMT5_FP8_SCALED_BYTES: f64 = 6.74e9;

/// The workload and the frame count the workflow has, with warnings about what was assumed.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowWorkload {
    pub workload: Workload,
    /// The frame count the workflow itself holds, when known before it runs.
    pub frames: Option<u32>,
    pub assumptions: Vec<String>,
}

/// Why a workflow cannot be projected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorkloadError {
    #[error("the workflow has no active diffusion-model loader to size")]
    NoDiffusionModel,
    #[error("the {0} is only known when the workflow runs; give it with --size WxH")]
    SizeAtRunTime(&'static str),
}

/// Builds the projection's workload from an inspection; `facts` sizes model files by name.
pub fn from_inspection(
    inspection: &Inspection,
    facts: impl Fn(&str) -> Option<ModelFacts>,
    size_override: Option<(u32, u32)>,
) -> Result<WorkflowWorkload, WorkloadError> {
    let mut assumptions = Vec::new();
    let active = |role: ModelRole| {
        inspection
            .models
            .iter()
            .filter(move |m| m.active && m.role == role)
    };
    let mut diffusion: Vec<&str> = active(ModelRole::HighNoise)
        .map(|m| m.file.as_str())
        .collect();
    diffusion.extend(active(ModelRole::LowNoise).map(|m| m.file.as_str()));
    if diffusion.is_empty() {
        diffusion.extend(active(ModelRole::Single).map(|m| m.file.as_str()).take(1));
    }
    if diffusion.is_empty() {
        return Err(WorkloadError::NoDiffusionModel);
    }
    let is_5b_family = inspection.family == Family::Ti2v;
    let mut dit = None;
    let mut is_5b = is_5b_family;
    let mut expert_bytes = Vec::with_capacity(diffusion.len());
    for file in &diffusion {
        match facts(file) {
            Some(f) => {
                expert_bytes.push(f.resident_bytes);
                dit = dit.or(f.dit);
                is_5b |= f.is_5b;
            }
            None => {
                let (bytes, what) = if is_5b_family {
                    (9_537.0 * MIB, "the 5B fp16 model (9,537 MiB)")
                } else {
                    (DEFAULT_EXPERT_BYTES, "a 14B fp8 expert (13,629 MiB)")
                };
                assumptions.push(format!("{file}: size unknown, taken as {what}"));
                expert_bytes.push(bytes);
            }
        }
    }
    let dit = dit.unwrap_or(if is_5b {
        DitShape::TI2V_5B
    } else {
        DitShape::A14B
    });

    // Steps each expert runs: a two-pass graph has a sampler per expert; one sampler for two
    // experts (WanMoeKSampler) splits its steps.
    let samplers: Vec<_> = inspection.samplers.iter().filter(|s| s.active).collect();
    let steps_of = |s: &crate::workflow::recognise::Sampler| -> u32 {
        let total = s.steps.unwrap_or(20.0).max(0.0);
        let start = s.start.unwrap_or(0.0).max(0.0);
        let end = s.end.filter(|e| *e >= 0.0).unwrap_or(total).min(total);
        (end - start).max(0.0) as u32
    };
    let experts: Vec<Expert> = if samplers.len() >= expert_bytes.len() {
        expert_bytes
            .iter()
            .zip(&samplers)
            .map(|(bytes, s)| Expert {
                bytes: *bytes,
                steps: steps_of(s),
            })
            .collect()
    } else {
        let total: u32 = samplers.first().map_or(20, |s| steps_of(s));
        let share = total / expert_bytes.len().max(1) as u32;
        if samplers.is_empty() {
            assumptions.push("no sampler found: 20 steps assumed".into());
        }
        expert_bytes
            .iter()
            .map(|bytes| Expert {
                bytes: *bytes,
                steps: share.max(1),
            })
            .collect()
    };
    let uses_cfg = samplers.iter().any(|s| s.cfg.unwrap_or(1.0) > 1.0);

    let (width, height) = match size_override {
        Some(size) => size,
        None => {
            let width = inspection.width.as_ref().and_then(|w| w.value);
            let height = inspection.height.as_ref().and_then(|h| h.value);
            match (width, height) {
                (Some(w), Some(h)) => (w as u32, h as u32),
                (None, _) => return Err(WorkloadError::SizeAtRunTime("width")),
                (_, None) => return Err(WorkloadError::SizeAtRunTime("height")),
            }
        }
    };
    let text_encoder_bytes = active(ModelRole::TextEncoder)
        .next()
        .and_then(|m| facts(&m.file))
        .map_or(UMT5_FP8_SCALED_BYTES, |f| f.resident_bytes);
    let vae = if is_5b { WanVae::V22 } else { WanVae::V21 };
    let vae_bytes = active(ModelRole::Vae)
        .next()
        .and_then(|m| facts(&m.file))
        .map_or(if is_5b { 1.31 * GIB } else { 0.24 * GIB }, |f| {
            f.resident_bytes
        });
    let encodes_clip = matches!(
        inspection.family,
        Family::I2v | Family::Flf2v | Family::S2v | Family::Animate
    );
    let frames = inspection
        .frames
        .as_ref()
        .and_then(|f| f.value)
        .map(|v| v as u32);
    Ok(WorkflowWorkload {
        workload: Workload {
            width,
            height,
            dit,
            is_vace: inspection.family == Family::Vace,
            vae,
            experts,
            text_encoder_bytes,
            vae_bytes,
            encodes_clip,
            uses_cfg,
            compiled_already: false,
        },
        frames,
        assumptions,
    })
}
