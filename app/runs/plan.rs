//! A workflow planned for a card: its workload, the card's memory and speed, the settings and what
//! calibration taught, gathered once so `plan` and a run ask the same questions the same way
//! (projection at a length, the mode to choose, the longest safe length per mode).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::budget::calibrate::{Calibrated, Calibration};
use crate::budget::comfyui::{AttentionEstimate, Platform, reserve_bytes};
use crate::budget::physical::{Coefficients, DitSize, TorchGeneration};
use crate::budget::projection::{Card, FrameProjection, Settings, Workload, project};
use crate::budget::time::{TimeCoefficients, fp16_tensor_tflops};
use crate::budget::workload::{ModelFacts, from_inspection};
use crate::gpu::facts::{CardFacts, FactInputs, card_facts};
use crate::gpu::nvml::GpuProbe;
use crate::gpu::server::ServerDevice;
use crate::policy::{Choice, apply_caps, baseline_rule, choose, largest_safe_frames};
use crate::workflow::recognise::{self, Inspection};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// The longest clip the safe-length scan looks at (about 15 s at 16 fps).
pub const MAX_PLANNED_FRAMES: u32 = 241;

/// What the user or the running server says about the card and the settings.
#[derive(Debug, Clone, Default)]
pub struct PlanRequest {
    /// A card name from the table (`--gpu`).
    pub gpu: Option<String>,
    pub vram_gib: Option<f64>,
    pub free_vram_gib: Option<f64>,
    pub reserve_gib: Option<f64>,
    pub margin_gib: f64,
    pub size: Option<(u32, u32)>,
    pub windows: bool,
    pub old_torch: bool,
    /// The server runs with --use-split-cross-attention or --use-quad-cross-attention.
    pub split_attention: bool,
    /// A ComfyUI install folder: model files found there are sized from their headers.
    pub comfyui_dir: Option<PathBuf>,
    /// The running server's devices (`/system_stats`), used when NVML sees no card.
    pub server_devices: Option<Vec<ServerDevice>>,
}

/// Why a workflow could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{0}; name the card with --gpu NAME or its memory with --vram GB")]
    Card(String),
    #[error("{0}")]
    ModelFolders(String),
    #[error(transparent)]
    Workload(#[from] crate::budget::workload::WorkloadError),
}

/// A workflow planned for one card.
#[derive(Debug, Clone)]
pub struct Planner {
    pub family: &'static str,
    pub workflow_frames: Option<u32>,
    pub workload: Workload,
    pub facts: CardFacts,
    pub card: Card,
    pub settings: Settings,
    pub platform: Platform,
    pub old_torch: bool,
    pub split_attention: bool,
    pub prior: (Coefficients, TimeCoefficients),
    pub calibrated: Calibrated,
    /// What the plan assumed where it measured nothing, in words.
    pub assumptions: Vec<String>,
}

impl Planner {
    /// Plans `inspection` for the card the request names, else the one NVML (`probe`) or the
    /// server sees. `probe` is taken only when the request names no card.
    pub fn new(
        inspection: &Inspection,
        request: &PlanRequest,
        probe: Option<&GpuProbe>,
        calibration: &Calibration,
    ) -> Result<Planner, PlanError> {
        let facts = card_facts(&FactInputs {
            probe,
            device_index: 0,
            server_devices: request.server_devices.as_deref(),
            picked_card: request.gpu.as_deref(),
            user_total_bytes: request.vram_gib.map(|g| (g * GIB) as u64),
        })
        .map_err(|e| PlanError::Card(e.to_string()))?;
        let sized = size_models(
            inspection,
            request.comfyui_dir.as_deref(),
            facts.has_fp8_compute,
        )?;
        let workflow = from_inspection(
            inspection,
            |file| {
                sized
                    .from_header
                    .get(file)
                    .copied()
                    .or_else(|| crate::budget::catalogue_facts(file, facts.has_fp8_compute))
            },
            request.size,
        )?;
        let total_bytes = facts.total_bytes as f64;
        let platform = if request.windows {
            Platform::Windows
        } else {
            Platform::Linux
        };
        let mut assumptions = sized.notes;
        assumptions.extend(workflow.assumptions.iter().cloned());
        let free_bytes = match (request.free_vram_gib, facts.free_bytes) {
            (Some(gib), _) => gib * GIB,
            (None, Some(free)) => free as f64,
            (None, None) => {
                // The desktop and driver keep some memory back even with nothing else running.
                let desktop = if request.windows {
                    0.8 * GIB
                } else {
                    0.3 * GIB
                };
                assumptions.push(format!(
                    "free memory not measured: {:.1} GiB assumed (total less {:.1} GiB for the desktop); give --free-vram GB",
                    (total_bytes - desktop) / GIB,
                    desktop / GIB
                ));
                total_bytes - desktop
            }
        };
        let is_geforce = facts.table_card.unwrap_or(&facts.name).contains("GeForce")
            || facts.name.contains("GeForce");
        let bf16 = facts.bf16_dense_tflops.unwrap_or_else(|| {
            assumptions
                .push("card speed unknown: an RTX 4090's assumed for the time estimate".into());
            165.2
        });
        let card = Card {
            total_bytes,
            free_bytes,
            fp16_tflops: fp16_tensor_tflops(bf16, is_geforce),
        };
        let settings = Settings {
            reserve_bytes: reserve_bytes(platform, facts.total_bytes, request.reserve_gib),
            margin_bytes: request.margin_gib * GIB,
            attention: if request.split_attention {
                AttentionEstimate::SplitOrQuad
            } else {
                AttentionEstimate::Efficient
            },
        };
        let torch = if request.old_torch {
            TorchGeneration::UnfusedRmsNorm
        } else {
            TorchGeneration::FusedRmsNorm
        };
        let workload = workflow.workload;
        let prior = (
            Coefficients::prior(DitSize::of_dim(workload.dit.dim), torch, workload.vae),
            TimeCoefficients::prior(card.fp16_tflops),
        );
        let card_key = facts.table_card.unwrap_or(&facts.name).to_string();
        let calibrated = calibration.apply(&card_key, &workload.family_key(), prior);
        Ok(Planner {
            family: inspection.family.as_str(),
            workflow_frames: workflow.frames,
            workload,
            facts,
            card,
            settings,
            platform,
            old_torch: request.old_torch,
            split_attention: request.split_attention,
            prior,
            calibrated,
            assumptions,
        })
    }

    /// The key calibration records for this card are filed under.
    pub fn card_key(&self) -> &str {
        self.facts.table_card.unwrap_or(&self.facts.name)
    }

    /// The projection at `frames`, with the lengths earlier runs ran out of memory at applied.
    pub fn project_at(&self, frames: u32) -> FrameProjection {
        let mut projection = project(
            &self.card,
            &self.workload,
            &self.settings,
            &self.calibrated.coefficients,
            &self.calibrated.timing,
            frames,
        );
        apply_caps(
            &mut projection,
            &self.calibrated,
            self.workload.width,
            self.workload.height,
        );
        projection
    }

    /// The mode to run `frames` with, and why.
    pub fn choose_at(&self, frames: u32) -> Choice {
        choose(&self.project_at(frames))
    }

    /// The longest length that fits, per mode (`None`: not even the shortest).
    pub fn safe_frames(&self) -> Vec<(&'static str, Option<u32>)> {
        largest_safe_frames(MAX_PLANNED_FRAMES, |frames| self.project_at(frames))
    }

    /// The documented `plan --json` report for `frame_counts`.
    pub fn report(&self, file: &Path, frame_counts: &[u32]) -> Value {
        let rows: Vec<Value> = frame_counts
            .iter()
            .map(|&frames| {
                let projection = self.project_at(frames);
                let choice = choose(&projection);
                serde_json::json!({
                    "frames": frames,
                    "latent_frames": projection.latent_frames,
                    "tokens": projection.tokens,
                    "phases": projection.phases,
                    "modes": projection.modes,
                    "notes": projection.notes,
                    "choice": choice,
                    "baseline": baseline_rule(frames).as_str(),
                })
            })
            .collect();
        let workload = &self.workload;
        serde_json::json!({
            "file": file.display().to_string(),
            "family": self.family,
            "workflow_frames": self.workflow_frames,
            "width": workload.width,
            "height": workload.height,
            "experts": workload.experts.iter().map(|e| serde_json::json!({"bytes": e.bytes, "steps": e.steps})).collect::<Vec<_>>(),
            "uses_cfg": workload.uses_cfg,
            "card": {
                "name": self.facts.name,
                "source": self.facts.source,
                "total_bytes": self.card.total_bytes,
                "free_bytes": self.card.free_bytes,
                "fp16_tflops": self.card.fp16_tflops,
            },
            "settings": {
                "platform": if self.platform == Platform::Windows { "windows" } else { "linux" },
                "reserve_bytes": self.settings.reserve_bytes,
                "margin_bytes": self.settings.margin_bytes,
                "torch": if self.old_torch { "2.7 or older" } else { "2.8 or newer" },
                "attention": if self.split_attention { "split or quad cross-attention" } else { "SDPA / flash / xformers / Sage" },
            },
            "coefficients": {
                "prior": {"memory": self.prior.0, "time": self.prior.1},
                "planned_with": {"memory": self.calibrated.coefficients, "time": self.calibrated.timing},
                "sources": self.calibrated.sources,
                "calibration_notes": self.calibrated.notes,
            },
            "safe_frames": self.safe_frames()
                .into_iter()
                .map(|(mode, frames)| (mode.to_string(), serde_json::json!(frames)))
                .collect::<serde_json::Map<String, Value>>(),
            "assumptions": self.assumptions,
            "frames": rows,
        })
    }
}

struct SizedModels {
    /// By the name the workflow uses, for the files whose header was read.
    from_header: HashMap<String, ModelFacts>,
    /// Which models were sized from their headers and which from their names only.
    notes: Vec<String>,
}

/// Finds the workflow's active models in the ComfyUI folder and reads their headers; the others
/// are left to the catalogue. A folder that cannot be read, or an `extra_model_paths.yaml` that
/// cannot, is an error; a model file that cannot is a note.
fn size_models(
    inspection: &Inspection,
    comfyui_dir: Option<&Path>,
    has_fp8_compute: bool,
) -> Result<SizedModels, PlanError> {
    use crate::comfy::models::{ModelFolder, ModelFolders, read_header};
    use recognise::ModelRole;

    let folders = comfyui_dir
        .map(ModelFolders::locate)
        .transpose()
        .map_err(|e| PlanError::ModelFolders(e.to_string()))?;
    let mut sized = SizedModels {
        from_header: HashMap::new(),
        notes: Vec::new(),
    };
    let mut seen: Vec<&str> = Vec::new();
    let mut by_name: Vec<&str> = Vec::new();
    let mut by_header: Vec<&str> = Vec::new();
    let sized_roles = inspection
        .models
        .iter()
        .filter(|m| m.active && !matches!(m.role, ModelRole::Lora | ModelRole::ClipVision));
    for model in sized_roles {
        let file = model.file.as_str();
        if seen.contains(&file) {
            continue;
        }
        seen.push(file);
        let found = folders
            .as_ref()
            .and_then(|f| f.find(file, ModelFolder::for_loader(&model.class_type)));
        let Some(found) = found else {
            by_name.push(file);
            continue;
        };
        match read_header(&found) {
            Ok(header) => {
                if header.is_truncated() {
                    sized.notes.push(format!(
                        "{}: shorter than its header says; ComfyUI will fail to load it until it is downloaded again",
                        found.display()
                    ));
                }
                let info = crate::budget::catalogue::recognise(file);
                let facts =
                    crate::budget::header_facts(&header.header, info.as_ref(), has_fp8_compute);
                sized.from_header.insert(file.to_string(), facts);
                by_header.push(file);
            }
            Err(e) => {
                sized
                    .notes
                    .push(format!("{e}; sized from its name instead"));
            }
        }
    }
    if !by_header.is_empty() {
        sized.notes.push(format!(
            "sized from their file headers: {}",
            by_header.join(", ")
        ));
    }
    if !by_name.is_empty() {
        let why = match comfyui_dir {
            Some(dir) => format!("not found under {}", dir.display()),
            None => "no ComfyUI folder given: --comfyui DIR reads their headers".to_string(),
        };
        sized.notes.push(format!(
            "sized from their names only ({why}): {}",
            by_name.join(", ")
        ));
    }
    Ok(sized)
}
