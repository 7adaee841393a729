//! I/O with a ComfyUI install: where it keeps its model files, and (later) the server process and
//! its HTTP and websocket API.
//!
//! - [`install`]: where ComfyUI installs live, checking one (`main.py`, `comfy/`, its Python,
//!   version), and the flags its `main.py --help` lists, so a launch never passes one it lacks.
//! - [`launch`]: a free loopback port and the exact launch command (accepted flags only, our
//!   output folder as the readiness marker, the compile cache kept across restarts).
//! - [`models`]: the folders ComfyUI searches for each loader (`models/…` and
//!   `extra_model_paths.yaml`), a model file found by the name a loader node uses, and its
//!   safetensors or GGUF header read without the weights.
//! - [`protocol`]: what the server says over HTTP and its websocket, as types (pure).

pub mod install;
pub mod launch;
pub mod models;
pub mod protocol;
