//! Orchestration of runs: plan → edit → submit → track → fetch → record, and what the app keeps
//! between runs.
//!
//! - [`store`]: the app's data folder and the calibration file learned from finished runs
//!   (`budget::calibrate`), read tolerantly and written atomically.

pub mod store;
