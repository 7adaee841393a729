//! The VRAM and time budget: what ComfyUI will decide, what the GPU will really hold, and how
//! long a run takes — per phase, per frame count, per torch.compile mode.
//!
//! Pure: plain data in, plain data out. I/O (NVML, model files on disk) lives in `gpu`.

pub mod calibrate;
pub mod cards;
pub mod comfyui;
pub mod physical;
pub mod projection;
pub mod seed;
pub mod time;
