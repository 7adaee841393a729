//! The Wan workflow engine: read every form a workflow arrives in, convert the UI graph to the
//! API prompt the server runs, recognise what a Wan graph does, and edit it.
//!
//! Pure: no I/O beyond the bytes handed in.

pub mod api;
pub mod convert;
pub mod edit;
pub mod embedded;
pub mod error;
pub mod ui;

pub use error::WorkflowError;
pub mod flat;
pub mod group;
pub mod load;
pub mod node_defs;
pub mod recognise;
