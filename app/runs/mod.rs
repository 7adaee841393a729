//! Orchestration of runs: plan → edit → submit → track → fetch → record, and what the app keeps
//! between runs.
//!
//! - [`plan`]: a workflow planned for a card (projection, chosen mode, safe lengths), shared by
//!   `plan` and runs.
//! - [`store`]: the app's data folder and the calibration file learned from finished runs
//!   (`budget::calibrate`), read tolerantly and written atomically.

pub mod history;
pub mod plan;
pub mod run;
pub mod store;
pub mod track;
