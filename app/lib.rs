//! wan-pilot: a desktop front end for Wan 2.2 video generation in ComfyUI.
//!
//! The layers only look down: `workflow` is pure (bytes in, graphs out); the CLI in `main.rs`
//! and, later, the window call the same functions.

pub mod budget;
pub mod cli;
pub mod comfy;
pub mod gpu;
pub mod logic;
pub mod policy;
pub mod presets;
pub mod runs;
pub mod settings;
pub mod ui;
pub mod worker;
pub mod workflow;
