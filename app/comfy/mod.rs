//! I/O with a ComfyUI install: where it keeps its model files, and (later) the server process and
//! its HTTP and websocket API.
//!
//! - [`client`]: the server's HTTP API (queue, history, downloads into our folder, upload, free,
//!   interrupt) and its websocket as one ordered event stream that reconnects by itself.
//! - [`custom_node`]: wan-pilot's own ComfyUI node package (the `WanPilotTorchCompile` node),
//!   carried in the binary and written into a ComfyUI's `custom_nodes` before we start it.
//! - [`install`]: where ComfyUI installs live, checking one (`main.py`, `comfy/`, its Python,
//!   version), and the flags its `main.py --help` lists, so a launch never passes one it lacks.
//! - [`launch`]: a free loopback port and the exact launch command (accepted flags only, our
//!   output folder as the readiness marker, the compile cache kept across restarts).
//! - [`logs`]: the server's output as cleaned, timestamped lines (a ring for the live view, one
//!   rotating file per session), its boot phase, and why it exited, in one sentence.
//! - [`models`]: the folders ComfyUI searches for each loader (`models/…` and
//!   `extra_model_paths.yaml`), a model file found by the name a loader node uses, and its
//!   safetensors or GGUF header read without the weights.
//! - [`process`]: the server as a child process that cannot outlive the app (process group and
//!   parent-death signal, Windows job object), its exit, and a graceful-then-certain stop.
//! - [`protocol`]: what the server says over HTTP and its websocket, as types (pure).

pub mod client;
pub mod custom_node;
pub mod install;
pub mod launch;
pub mod logs;
pub mod models;
pub mod process;
pub mod protocol;
pub mod server;
