//! Presets: a ComfyUI API prompt with a display name, a description and the defaults the window
//! starts from (size, frames, steps, fps), in one versioned JSON file.
//!
//! The file format (`"wan_pilot_preset": 1`):
//! ```json
//! { "wan_pilot_preset": 1, "name": "…", "description": "…",
//!   "defaults": { "width": 832, "height": 480, "frames": 81, "steps": 20, "fps": 16.0 },
//!   "prompt": { "1": { "class_type": "UNETLoader", "inputs": { … } }, … } }
//! ```
//! The prompt sits under `"prompt"`, so the workflow reader sees a preset file as a `POST /prompt`
//! request body: `wan-pilot inspect preset.json` and Open work on preset files unchanged.
//!
//! [`shipped`] holds the presets built into the binary (from `workflows/`), [`store`] the user's
//! own in `<data_dir>/presets/` with atomic writes and broken files kept aside.

pub mod shipped;
pub mod store;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::runs::store::StoreError;
use crate::workflow::WorkflowError;
use crate::workflow::api::{ApiPrompt, ApiWrapping};
use crate::workflow::load::{self, LoadedWorkflow};
use crate::workflow::recognise::Inspection;

pub use store::{BrokenPreset, PresetEntry, PresetId, PresetListing, PresetStore};

/// The preset format this build writes and the newest it reads.
pub const PRESET_FORMAT_VERSION: u32 = 1;

/// The key that marks a preset file and carries its format version.
pub const PRESET_KEY: &str = "wan_pilot_preset";

/// Larger files are refused unread: a preset is a few kilobytes.
pub const MAX_PRESET_BYTES: u64 = 32 << 20;

/// What the window starts from when a preset is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PresetDefaults {
    pub width: u32,
    pub height: u32,
    /// Frame count (Wan wants 4n+1).
    pub frames: u32,
    /// Sampling steps of the whole schedule (both experts together for the 14B pair).
    pub steps: u32,
    /// Frame rate of the saved video.
    pub fps: f64,
}

impl Default for PresetDefaults {
    /// Wan 2.2 14B's 480p default: 832x480, 81 frames (5 s at 16 fps), 20 steps.
    fn default() -> Self {
        PresetDefaults {
            width: 832,
            height: 480,
            frames: 81,
            steps: 20,
            fps: 16.0,
        }
    }
}

impl PresetDefaults {
    /// The defaults a recognised workflow carries; what the file leaves unknown (a size set at
    /// run time, no fps on the output) comes from `fallback`. Steps: the largest step count of
    /// the active samplers (the two experts of a 14B pair share one schedule).
    pub fn from_inspection(inspection: &Inspection, fallback: PresetDefaults) -> PresetDefaults {
        let whole = |value: Option<f64>| {
            value
                .filter(|v| v.is_finite() && *v >= 1.0 && *v <= f64::from(u32::MAX))
                .map(|v| v.round() as u32)
        };
        let setting = |s: &Option<crate::workflow::recognise::Setting>| {
            whole(s.as_ref().and_then(|s| s.value))
        };
        let steps = inspection
            .samplers
            .iter()
            .filter(|s| s.active)
            .filter_map(|s| whole(s.steps))
            .max();
        let fps = inspection
            .fps
            .as_ref()
            .and_then(|s| s.value)
            .filter(|v| v.is_finite() && *v > 0.0);
        PresetDefaults {
            width: setting(&inspection.width).unwrap_or(fallback.width),
            height: setting(&inspection.height).unwrap_or(fallback.height),
            frames: setting(&inspection.frames).unwrap_or(fallback.frames),
            steps: steps.unwrap_or(fallback.steps),
            fps: fps.unwrap_or(fallback.fps),
        }
    }

    /// Why these defaults cannot be used, or `None`.
    fn problem(&self) -> Option<String> {
        let size = 16..=16384;
        if !size.contains(&self.width) || !size.contains(&self.height) {
            return Some(format!(
                "its default size {}x{} is outside 16–16384 pixels",
                self.width, self.height
            ));
        }
        if self.frames == 0 || self.steps == 0 {
            return Some("its default frames and steps must be at least 1".into());
        }
        if !(self.fps.is_finite() && self.fps > 0.0 && self.fps <= 240.0) {
            return Some(format!(
                "its default fps {} is not between 0 and 240",
                self.fps
            ));
        }
        None
    }
}

/// One preset: what is shown in the list and the prompt that runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    pub name: String,
    pub description: String,
    pub defaults: PresetDefaults,
    /// The ComfyUI API prompt (node id → node), exactly as `POST /prompt` takes it.
    pub prompt: Map<String, Value>,
}

/// The file as serde sees it; [`Preset`] is the checked form.
#[derive(Serialize, Deserialize)]
struct PresetFile {
    wan_pilot_preset: u32,
    name: String,
    #[serde(default)]
    description: String,
    defaults: PresetDefaults,
    prompt: Map<String, Value>,
}

impl Preset {
    /// A preset from an API prompt (the current state of the window, say). Fails when the name
    /// is empty or the defaults are out of range.
    pub fn from_api(
        name: &str,
        description: &str,
        defaults: PresetDefaults,
        prompt: &ApiPrompt,
    ) -> Result<Preset, PresetError> {
        let prompt = match prompt.to_json() {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        let preset = Preset {
            name: clean_name(name)?,
            description: description.trim().to_string(),
            defaults,
            prompt,
        };
        preset.check().map_err(PresetError::Invalid)?;
        Ok(preset)
    }

    /// Reads a preset file's bytes, or says in words why they are not a preset this build can use
    /// (not JSON, not a preset, a newer format, no name, defaults out of range, a broken prompt).
    pub fn parse(bytes: &[u8]) -> Result<Preset, String> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
        let version = match value.get(PRESET_KEY) {
            None => {
                return Err(format!(
                    "not a wan-pilot preset (no \"{PRESET_KEY}\" format number)"
                ));
            }
            Some(v) => v
                .as_u64()
                .ok_or_else(|| format!("its \"{PRESET_KEY}\" is {v}, not a format number"))?,
        };
        if version > u64::from(PRESET_FORMAT_VERSION) {
            return Err(format!(
                "written by a newer wan-pilot (preset format {version}; this one reads up to {PRESET_FORMAT_VERSION})"
            ));
        }
        if version == 0 {
            return Err(format!("its \"{PRESET_KEY}\" format number is 0"));
        }
        let file: PresetFile =
            serde_json::from_value(value).map_err(|e| format!("not a complete preset: {e}"))?;
        let preset = Preset {
            name: file.name.trim().to_string(),
            description: file.description,
            defaults: file.defaults,
            prompt: file.prompt,
        };
        preset.check()?;
        Ok(preset)
    }

    /// The preset file's bytes (pretty JSON, this build's format version, a final newline).
    pub fn to_file_bytes(&self) -> Vec<u8> {
        let file = PresetFile {
            wan_pilot_preset: PRESET_FORMAT_VERSION,
            name: self.name.clone(),
            description: self.description.clone(),
            defaults: self.defaults,
            prompt: self.prompt.clone(),
        };
        // A struct of strings, numbers and JSON values always encodes.
        let mut bytes = serde_json::to_vec_pretty(&file).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// The prompt alone, as the bytes of a plain API prompt file.
    pub fn prompt_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(&self.prompt).unwrap_or_default()
    }

    /// The prompt read by the workflow engine, ready for `recognise::inspect`, planning and
    /// editing like any opened file.
    pub fn to_loaded(&self) -> Result<LoadedWorkflow, WorkflowError> {
        load::load(&self.prompt_bytes())
    }

    /// The prompt as the workflow engine's [`ApiPrompt`].
    pub fn api_prompt(&self) -> Result<ApiPrompt, WorkflowError> {
        match ApiPrompt::from_json(&Value::Object(self.prompt.clone()))? {
            Some((prompt, _)) => Ok(prompt),
            None => Err(WorkflowError::NotAWorkflow(
                "the preset's prompt has no node with a \"class_type\"".into(),
            )),
        }
    }

    /// Why this preset cannot be used, or Ok.
    fn check(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("it has no name".into());
        }
        if let Some(problem) = self.defaults.problem() {
            return Err(problem);
        }
        match ApiPrompt::from_json(&Value::Object(self.prompt.clone())) {
            Ok(Some((prompt, ApiWrapping::Plain))) => {
                // The server would refuse these; better to say so when the file is read.
                if let Some((node, input, target)) = prompt.dangling_links().into_iter().next() {
                    return Err(format!(
                        "its prompt is broken: node {node} input {input} links to node {target}, which is not in the prompt"
                    ));
                }
                if let Some(node) = prompt.find_cycle() {
                    return Err(format!(
                        "its prompt is broken: node {node} is on a cycle of links"
                    ));
                }
                Ok(())
            }
            Ok(_) => Err(
                "its \"prompt\" is not a ComfyUI API prompt (node id → {class_type, inputs})"
                    .into(),
            ),
            Err(e) => Err(format!("its prompt is broken: {e}")),
        }
    }
}

/// A display name as stored: trimmed, never empty, one line.
fn clean_name(name: &str) -> Result<String, PresetError> {
    let name: String = name
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if name.is_empty() {
        return Err(PresetError::EmptyName);
    }
    Ok(name)
}

/// What went wrong with a preset, naming the preset or file and saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum PresetError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot list the presets folder {}: {source}", path.display())]
    List {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot delete {}: {source}", path.display())]
    Delete {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "there is no preset {id} any more; it may have been deleted or renamed outside wan-pilot"
    )]
    NotFound { id: String },
    #[error(
        "\"{name}\" ships with wan-pilot and cannot be changed or deleted; duplicate it and change the copy"
    )]
    ReadOnly { name: String },
    #[error("a preset named \"{name}\" exists already; choose another name")]
    NameTaken { name: String },
    #[error("a preset needs a name")]
    EmptyName,
    #[error("this preset cannot be saved: {0}")]
    Invalid(String),
    #[error("{} is not a preset wan-pilot can import: {reason}", path.display())]
    NotImportable { path: PathBuf, reason: String },
    #[error("{0}")]
    Broken(BrokenPreset),
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
}
