//! I/O with a ComfyUI install: where it keeps its model files, and (later) the server process and
//! its HTTP and websocket API.
//!
//! - [`models`]: the folders ComfyUI searches for each loader (`models/…` and
//!   `extra_model_paths.yaml`), a model file found by the name a loader node uses, and its
//!   safetensors or GGUF header read without the weights.

pub mod models;
