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
