//! The VRAM and time budget: what ComfyUI will decide, what the GPU will really hold, and how
//! long a run takes — per phase, per frame count, per torch.compile mode.
//!
//! Pure: plain data in, plain data out. I/O (NVML, model files on disk) lives in `gpu`.

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

/// Model facts for the workload, from the catalogue by file name (the file on disk is not read).
pub fn catalogue_facts(_file: &str) -> Option<workload::ModelFacts> {
    None
}
