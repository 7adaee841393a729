//! What a finished run leaves behind and the list of past runs.
//!
//! Each run folder holds its outputs and a sidecar, `wan-pilot-run.json` ([`Sidecar`]): the
//! workflow and the exact prompt, the parameters, every attempt (out-of-memory retries included),
//! the measured peak VRAM and timings, and what calibration needs to learn from the run again
//! later ([`run_records`]). The sidecars are the truth; the history index `history.json` in the
//! data folder is a cache of them for a quick list, rebuilt from the output folder whenever it is
//! missing, unreadable, or for another folder. A sidecar that cannot be read is reported with its
//! file and the reason, never skipped silently.
//!
//! Files are written atomically (`store::write_atomically`): a crash leaves the old file or the
//! new one.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::store::{StoreError, write_atomically};
use super::track::{Outcome, RunTimings};
use crate::budget::calibrate::{RecordError, RunRecord};
use crate::budget::comfyui::Latent;

/// Version of the sidecar this build writes. Fields are only ever added (and read with
/// defaults), so an older sidecar reads as is; a newer one is read as far as this build
/// understands it and reported.
pub const SIDECAR_VERSION: u32 = 1;

/// The sidecar's name inside a run folder.
pub const SIDECAR_FILE: &str = "wan-pilot-run.json";

/// The history index's name inside the data folder.
pub const HISTORY_FILE: &str = "history.json";

/// Version of the history index this build writes.
pub const HISTORY_VERSION: u32 = 1;

/// The words [`Sidecar::outcome`] and [`Attempt::outcome`] use.
pub const OUTCOME_SUCCESS: &str = "success";
pub const OUTCOME_ERROR: &str = "error";
pub const OUTCOME_OUT_OF_MEMORY: &str = "out of memory";
pub const OUTCOME_INTERRUPTED: &str = "interrupted";

/// The outcome word for a tracked outcome.
pub fn outcome_word(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Success => OUTCOME_SUCCESS,
        Outcome::Error(error) if error.is_out_of_memory() => OUTCOME_OUT_OF_MEMORY,
        Outcome::Error(_) => OUTCOME_ERROR,
        Outcome::Interrupted => OUTCOME_INTERRUPTED,
    }
}

/// What the user asked for (after snapping and editing): the numbers a history list shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Parameters {
    pub frames: Option<u32>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub seed: Option<u64>,
    pub steps: Option<u32>,
    pub fps: Option<f64>,
}

/// One submission of the run's prompt. A run that ran out of memory and was retried has several.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Attempt {
    /// 1 for the first.
    pub number: usize,
    pub prompt_id: String,
    /// torch.compile mode as torch spells it, "off" for none; `None` when the workflow's compile
    /// nodes were left as written.
    pub compile_mode: Option<String>,
    pub frames: Option<u32>,
    /// One of the `OUTCOME_*` words.
    pub outcome: String,
    /// The server's error message, for a failed attempt.
    pub message: Option<String>,
    pub peak_vram_bytes: Option<u64>,
    pub took_ms: u64,
}

/// The server the run went to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerInfo {
    /// `comfyui_version` from `/system_stats`.
    pub version: Option<String>,
    pub url: String,
}

/// What the planner knew about the run that calibration needs and the prompt does not say
/// (see `budget::calibrate::RunRecord`), at the final attempt's length and size.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CalibrationFacts {
    pub card: String,
    pub family: String,
    pub tokens: u64,
    pub batched_samples: u32,
    pub forwards_per_step: u32,
    pub resident_weights_bytes: u64,
    pub offloaded_bytes: u64,
    pub linear_flops_per_forward: f64,
    pub attention_flops_per_forward: f64,
}

/// The record of one run, kept next to its outputs as `wan-pilot-run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Sidecar {
    pub version: u32,
    /// The final attempt's prompt id.
    pub prompt_id: String,
    pub workflow_file: Option<String>,
    /// The API prompt the final attempt ran.
    pub prompt: Value,
    pub parameters: Parameters,
    pub compile_mode: Option<String>,
    /// Every attempt, in order; the last is the one this sidecar's other fields describe.
    pub attempts: Vec<Attempt>,
    /// Peak GPU memory of the final attempt, as the GPU sampler saw it.
    pub peak_vram_bytes: Option<u64>,
    /// The final attempt's timings.
    pub timings: RunTimings,
    /// Output files, relative to the run folder, with `/` separators.
    pub outputs: Vec<String>,
    pub server: ServerInfo,
    /// Seconds since the Unix epoch.
    pub started_at: u64,
    pub finished_at: Option<u64>,
    /// One of the `OUTCOME_*` words.
    pub outcome: String,
    pub message: Option<String>,
    pub wan_pilot_version: String,
    /// `None` for a workflow the planner could not read (not every run is a Wan run).
    pub calibration: Option<CalibrationFacts>,
}

impl Default for Sidecar {
    fn default() -> Self {
        Sidecar {
            version: SIDECAR_VERSION,
            prompt_id: String::new(),
            workflow_file: None,
            prompt: Value::Null,
            parameters: Parameters::default(),
            compile_mode: None,
            attempts: Vec::new(),
            peak_vram_bytes: None,
            timings: RunTimings::default(),
            outputs: Vec::new(),
            server: ServerInfo::default(),
            started_at: 0,
            finished_at: None,
            outcome: String::new(),
            message: None,
            wan_pilot_version: env!("CARGO_PKG_VERSION").to_string(),
            calibration: None,
        }
    }
}

/// What went wrong writing or listing history, naming the file or folder.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot encode {}: {source}", path.display())]
    Encode {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot list the output folder {}: {source}; check that it exists and is readable", path.display())]
    List { path: PathBuf, source: io::Error },
}

/// A sidecar that could not be used as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SidecarProblem {
    pub path: PathBuf,
    /// Why, in words.
    pub reason: String,
    /// Set when a newer wan-pilot wrote it: the run is still listed, as far as this build
    /// understands the file.
    pub newer_version: Option<u32>,
}

impl std::fmt::Display for SidecarProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

/// The sidecar file of a run folder.
pub fn sidecar_path(run_dir: &Path) -> PathBuf {
    run_dir.join(SIDECAR_FILE)
}

/// An output file's name as the sidecar keeps it: relative to the run folder, `/` between
/// folders on every platform (so a run folder can move between machines). `None` for a file
/// outside the run folder.
pub fn output_name(run_dir: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(run_dir).ok()?;
    let parts: Vec<String> = relative
        .components()
        .map(|c| match c {
            std::path::Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Option<Vec<String>>>()?;
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Writes `value` to `path` as pretty JSON ending in a newline, atomically; returns the path.
fn write_json(path: PathBuf, value: &impl Serialize) -> Result<PathBuf, HistoryError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| HistoryError::Encode {
        path: path.clone(),
        source,
    })?;
    bytes.push(b'\n');
    write_atomically(&path, &bytes)?;
    Ok(path)
}

/// Writes the sidecar into `run_dir` (created if missing) atomically, stamped with this build's
/// version; returns its path.
pub fn write_sidecar(run_dir: &Path, sidecar: &Sidecar) -> Result<PathBuf, HistoryError> {
    let path = sidecar_path(run_dir);
    // Only an older sidecar is copied to restamp it: a prompt can be large.
    if sidecar.version == SIDECAR_VERSION {
        write_json(path, sidecar)
    } else {
        let mut current = sidecar.clone();
        current.version = SIDECAR_VERSION;
        write_json(path, &current)
    }
}

/// Reads one sidecar. A newer version is returned too, with the problem saying so; a file that
/// cannot be read or is not a sidecar is only a problem.
pub fn read_sidecar(path: &Path) -> Result<(Sidecar, Option<SidecarProblem>), SidecarProblem> {
    let problem = |reason: String, newer_version: Option<u32>| SidecarProblem {
        path: path.to_path_buf(),
        reason,
        newer_version,
    };
    let bytes = fs::read(path).map_err(|e| problem(format!("cannot be read: {e}"), None))?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| problem(format!("is not valid JSON: {e}"), None))?;
    if !value.is_object() {
        return Err(problem("is not a wan-pilot run record".into(), None));
    }
    let version = match value.get("version") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| problem(format!("has a version that is not a number: {v}"), None))?,
        ),
    };
    let sidecar: Sidecar = serde_json::from_value(value)
        .map_err(|e| problem(format!("is not a wan-pilot run record: {e}"), None))?;
    if sidecar.prompt_id.trim().is_empty() {
        return Err(problem("names no prompt_id".into(), None));
    }
    let newer = version.filter(|v| *v > SIDECAR_VERSION).map(|v| {
        problem(
            format!(
                "was written by a newer wan-pilot (version {v}; this one reads up to {SIDECAR_VERSION}); shown as far as it can be read"
            ),
            Some(v),
        )
    });
    Ok((sidecar, newer))
}

/// One past run, as the history list shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HistoryItem {
    pub run_dir: PathBuf,
    pub prompt_id: String,
    pub started_at: u64,
    pub finished_at: Option<u64>,
    pub outcome: String,
    pub message: Option<String>,
    pub workflow_file: Option<String>,
    pub parameters: Parameters,
    pub compile_mode: Option<String>,
    pub attempts: usize,
    pub total_ms: Option<u64>,
    pub peak_vram_bytes: Option<u64>,
    /// Relative to `run_dir`.
    pub outputs: Vec<String>,
}

impl HistoryItem {
    pub fn from_sidecar(run_dir: &Path, sidecar: &Sidecar) -> HistoryItem {
        HistoryItem {
            run_dir: run_dir.to_path_buf(),
            prompt_id: sidecar.prompt_id.clone(),
            started_at: sidecar.started_at,
            finished_at: sidecar.finished_at,
            outcome: sidecar.outcome.clone(),
            message: sidecar.message.clone(),
            workflow_file: sidecar.workflow_file.clone(),
            parameters: sidecar.parameters.clone(),
            compile_mode: sidecar.compile_mode.clone(),
            attempts: sidecar.attempts.len(),
            total_ms: sidecar.timings.total_ms,
            peak_vram_bytes: sidecar.peak_vram_bytes,
            outputs: sidecar.outputs.clone(),
        }
    }
}

/// Past runs found in an output folder, newest first, and the sidecars that could not be used.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryScan {
    pub items: Vec<HistoryItem>,
    pub problems: Vec<SidecarProblem>,
}

/// Lists the runs under `output_root` from their sidecars: run folders directly under it, or one
/// level further down (folders grouped by hand). A missing folder has no runs. Errors only when
/// the folder exists but cannot be listed.
pub fn rebuild_history(output_root: &Path) -> Result<HistoryScan, HistoryError> {
    let mut scan = HistoryScan::default();
    for path in sidecar_files(output_root, &mut scan.problems)? {
        let run_dir = path.parent().unwrap_or(output_root).to_path_buf();
        match read_sidecar(&path) {
            Ok((sidecar, newer)) => {
                scan.items
                    .push(HistoryItem::from_sidecar(&run_dir, &sidecar));
                scan.problems.extend(newer);
            }
            Err(problem) => scan.problems.push(problem),
        }
    }
    sort_newest_first(&mut scan.items);
    scan.problems.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(scan)
}

fn sort_newest_first(items: &mut [HistoryItem]) {
    items.sort_by(|a, b| {
        b.started_at
            .cmp(&a.started_at)
            .then_with(|| b.run_dir.cmp(&a.run_dir))
    });
}

/// Sidecar files at depth 1 and 2 below `root`. Symbolic links are not followed (no loops).
fn sidecar_files(
    root: &Path,
    problems: &mut Vec<SidecarProblem>,
) -> Result<Vec<PathBuf>, HistoryError> {
    let top = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(HistoryError::List {
                path: root.to_path_buf(),
                source,
            });
        }
    };
    let mut found = Vec::new();
    for entry in top.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let dir = entry.path();
        if let Some(sidecar) = existing_sidecar(&dir) {
            found.push(sidecar);
            continue;
        }
        let inner = match fs::read_dir(&dir) {
            Ok(inner) => inner,
            Err(e) => {
                problems.push(SidecarProblem {
                    path: dir.clone(),
                    reason: format!("folder cannot be listed: {e}"),
                    newer_version: None,
                });
                continue;
            }
        };
        for inner_entry in inner.flatten() {
            if inner_entry.file_type().is_ok_and(|t| t.is_dir()) {
                found.extend(existing_sidecar(&inner_entry.path()));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The sidecar of `dir`, if it has one.
fn existing_sidecar(dir: &Path) -> Option<PathBuf> {
    Some(sidecar_path(dir)).filter(|sidecar| sidecar.is_file())
}

/// The history index: the list of runs of one output folder, as last scanned or recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HistoryIndex {
    pub version: u32,
    pub output_root: PathBuf,
    /// Newest first.
    pub items: Vec<HistoryItem>,
    /// Sidecars found unusable at the last rebuild, kept so they stay visible.
    pub problems: Vec<SidecarProblem>,
}

impl Default for HistoryIndex {
    fn default() -> Self {
        HistoryIndex {
            version: HISTORY_VERSION,
            output_root: PathBuf::new(),
            items: Vec::new(),
            problems: Vec::new(),
        }
    }
}

/// The history index file inside a data folder.
pub fn index_path(data_dir: &Path) -> PathBuf {
    data_dir.join(HISTORY_FILE)
}

/// Writes `history.json` in `data_dir` atomically; returns its path.
pub fn save_index(data_dir: &Path, index: &HistoryIndex) -> Result<PathBuf, HistoryError> {
    let mut current = index.clone();
    current.version = HISTORY_VERSION;
    write_json(index_path(data_dir), &current)
}

/// A fresh index of `output_root`, from its sidecars.
fn rebuild_index(output_root: &Path) -> Result<HistoryIndex, HistoryError> {
    let scan = rebuild_history(output_root)?;
    Ok(HistoryIndex {
        version: HISTORY_VERSION,
        output_root: output_root.to_path_buf(),
        items: scan.items,
        problems: scan.problems,
    })
}

/// Why the index was not used as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
enum IndexUnusable {
    Missing,
    /// A newer build's file: rebuilt in memory, left as it is on disk.
    Newer(String),
    Other(String),
}

fn read_index(path: &Path, output_root: &Path) -> Result<HistoryIndex, IndexUnusable> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(IndexUnusable::Missing),
        Err(e) => return Err(IndexUnusable::Other(format!("cannot be read: {e}"))),
    };
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| IndexUnusable::Other(format!("is not valid JSON: {e}")))?;
    if let Some(version) = value.get("version").and_then(Value::as_u64)
        && version > u64::from(HISTORY_VERSION)
    {
        return Err(IndexUnusable::Newer(format!(
            "was written by a newer wan-pilot (version {version})"
        )));
    }
    let index: HistoryIndex = serde_json::from_value(value)
        .map_err(|e| IndexUnusable::Other(format!("is not a history index: {e}")))?;
    if index.output_root != output_root {
        return Err(IndexUnusable::Other(format!(
            "lists another output folder ({})",
            index.output_root.display()
        )));
    }
    Ok(index)
}

/// The history as the app starts with it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedHistory {
    /// Newest first.
    pub items: Vec<HistoryItem>,
    /// Sidecars that could not be used (show them).
    pub problems: Vec<SidecarProblem>,
    /// Why the list was rebuilt from the output folder, when it was.
    pub rebuilt: Option<String>,
    pub index: PathBuf,
}

impl LoadedHistory {
    /// The list `index` holds, read from or saved to `index_path`; `rebuilt` says why the list
    /// was rebuilt, when it was.
    fn from_index(
        index: HistoryIndex,
        rebuilt: Option<String>,
        index_path: PathBuf,
    ) -> LoadedHistory {
        LoadedHistory {
            items: index.items,
            problems: index.problems,
            rebuilt,
            index: index_path,
        }
    }
}

/// Loads the history index from `data_dir`, or rebuilds it from `output_root` when it is
/// missing, unreadable, of another folder or of a newer build, and saves the rebuilt one (not
/// over a newer build's file). Runs whose folder has gone are dropped from the list.
pub fn load_history(data_dir: &Path, output_root: &Path) -> Result<LoadedHistory, HistoryError> {
    let path = index_path(data_dir);
    let why = match read_index(&path, output_root) {
        Ok(mut index) => {
            let before = index.items.len();
            index
                .items
                .retain(|item| sidecar_path(&item.run_dir).is_file());
            if index.items.len() != before {
                save_index(data_dir, &index)?;
            }
            return Ok(LoadedHistory::from_index(index, None, path));
        }
        Err(IndexUnusable::Missing) => format!("{} was missing", path.display()),
        Err(IndexUnusable::Newer(reason)) | Err(IndexUnusable::Other(reason)) => {
            format!("{} {reason}", path.display())
        }
    };
    let newer = matches!(read_index(&path, output_root), Err(IndexUnusable::Newer(_)));
    let index = rebuild_index(output_root)?;
    if !newer {
        save_index(data_dir, &index)?;
    }
    let rebuilt = format!(
        "{why}; the list was rebuilt from the run folders in {}",
        output_root.display()
    );
    Ok(LoadedHistory::from_index(index, Some(rebuilt), path))
}

/// Adds (or replaces, by run folder) one run in the history index after its sidecar was
/// written. An unusable index is rebuilt first, which already finds the new sidecar.
pub fn add_to_history(
    data_dir: &Path,
    output_root: &Path,
    run_dir: &Path,
    sidecar: &Sidecar,
) -> Result<PathBuf, HistoryError> {
    let path = index_path(data_dir);
    let mut index = match read_index(&path, output_root) {
        Ok(index) => index,
        Err(IndexUnusable::Newer(_)) => return Ok(path),
        Err(_) => rebuild_index(output_root)?,
    };
    index.items.retain(|item| item.run_dir != run_dir);
    index
        .items
        .push(HistoryItem::from_sidecar(run_dir, sidecar));
    sort_newest_first(&mut index.items);
    save_index(data_dir, &index)
}

// ---------------------------------------------------------------------------------------------
// Back to calibration
// ---------------------------------------------------------------------------------------------

/// Why a sidecar cannot become calibration records.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SidecarRecordError {
    #[error(
        "the run record was written by a newer wan-pilot (version {0}); it is not used for calibration"
    )]
    Newer(u32),
    #[error(
        "the run record has no calibration facts (the workflow was not planned); it cannot teach calibration"
    )]
    NoFacts,
    #[error("the run record lacks {0}; it cannot teach calibration")]
    Missing(&'static str),
    #[error("the run record's attempt {attempt} gives an unusable calibration record: {source}")]
    Invalid { attempt: usize, source: RecordError },
}

/// The calibration records a sidecar holds: one per out-of-memory attempt (at that attempt's
/// length: tokens scale with the latent frames, attention FLOPs with their square) and one for
/// the final attempt when it succeeded. Interrupted and other failed attempts teach nothing.
pub fn run_records(sidecar: &Sidecar) -> Result<Vec<RunRecord>, SidecarRecordError> {
    if sidecar.version > SIDECAR_VERSION {
        return Err(SidecarRecordError::Newer(sidecar.version));
    }
    let facts = sidecar
        .calibration
        .as_ref()
        .ok_or(SidecarRecordError::NoFacts)?;
    let width = sidecar
        .parameters
        .width
        .ok_or(SidecarRecordError::Missing("the width"))?;
    let height = sidecar
        .parameters
        .height
        .ok_or(SidecarRecordError::Missing("the height"))?;
    // A sidecar written without its attempts still describes one run.
    let synthesized;
    let attempts: &[Attempt] = if sidecar.attempts.is_empty() {
        synthesized = [Attempt {
            number: 1,
            prompt_id: sidecar.prompt_id.clone(),
            compile_mode: sidecar.compile_mode.clone(),
            frames: sidecar.parameters.frames,
            outcome: sidecar.outcome.clone(),
            message: sidecar.message.clone(),
            peak_vram_bytes: sidecar.peak_vram_bytes,
            took_ms: sidecar.timings.total_ms.unwrap_or(0),
        }];
        &synthesized
    } else {
        &sidecar.attempts
    };
    let final_frames = attempts
        .last()
        .and_then(|a| a.frames)
        .or(sidecar.parameters.frames)
        .ok_or(SidecarRecordError::Missing("the frame count"))?;
    let latent_frames = |frames: u32| f64::from(Latent::of_video(frames, 1, 1, 1).frames);
    let mut elapsed_ms = 0u64;
    let mut records = Vec::new();
    for (index, attempt) in attempts.iter().enumerate() {
        elapsed_ms = elapsed_ms.saturating_add(attempt.took_ms);
        let out_of_memory = attempt.outcome == OUTCOME_OUT_OF_MEMORY;
        let success = attempt.outcome == OUTCOME_SUCCESS && index + 1 == attempts.len();
        if !out_of_memory && !success {
            continue;
        }
        let frames = attempt.frames.unwrap_or(final_frames);
        let scale = latent_frames(frames) / latent_frames(final_frames);
        let compile_mode = attempt
            .compile_mode
            .clone()
            .or_else(|| sidecar.compile_mode.clone())
            .ok_or(SidecarRecordError::Missing("the compile mode"))?;
        let attempt_end_secs = sidecar.started_at + elapsed_ms / 1000;
        let record = RunRecord {
            card: facts.card.clone(),
            family: facts.family.clone(),
            frames,
            width,
            height,
            tokens: (facts.tokens as f64 * scale).round() as u64,
            batched_samples: facts.batched_samples,
            compile_mode,
            resident_weights_bytes: facts.resident_weights_bytes,
            peak_reserved_bytes: if success {
                attempt.peak_vram_bytes.or(sidecar.peak_vram_bytes)
            } else {
                attempt.peak_vram_bytes
            },
            sampling_s_per_step: if success {
                sidecar.timings.sampling_s_per_step
            } else {
                None
            },
            forwards_per_step: facts.forwards_per_step,
            linear_flops_per_forward: facts.linear_flops_per_forward * scale,
            attention_flops_per_forward: facts.attention_flops_per_forward * scale * scale,
            offloaded_bytes: facts.offloaded_bytes,
            out_of_memory,
            wan_pilot_version: sidecar.wan_pilot_version.clone(),
            timestamp_secs: if success {
                sidecar.finished_at.unwrap_or(attempt_end_secs)
            } else {
                attempt_end_secs
            },
        };
        record
            .check()
            .map_err(|source| SidecarRecordError::Invalid {
                attempt: attempt.number,
                source,
            })?;
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comfy::protocol::ExecutionError;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "wan-pilot-history-unit-{tag}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn unusable_sidecars_say_why() {
        let dir = scratch("why");
        let path = dir.join(SIDECAR_FILE);
        for (text, why) in [
            ("[1, 2]", "is not a wan-pilot run record"),
            ("{\"version\": 1}", "names no prompt_id"),
            (
                "{\"version\": \"one\", \"prompt_id\": \"p\"}",
                "version that is not a number",
            ),
            ("{\"prompt_id\": 5}", "is not a wan-pilot run record"),
            ("", "is not valid JSON"),
        ] {
            fs::write(&path, text).unwrap();
            let problem = read_sidecar(&path).unwrap_err();
            assert!(problem.reason.contains(why), "{text}: {problem}");
            assert_eq!(problem.path, path);
        }
        let missing = read_sidecar(&dir.join("nothing.json")).unwrap_err();
        assert!(missing.reason.contains("cannot be read"), "{missing}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn outcome_words_follow_the_tracker() {
        let error = |kind: &str| {
            Outcome::Error(ExecutionError {
                prompt_id: "p".into(),
                node_id: None,
                node_type: String::new(),
                exception_type: kind.into(),
                exception_message: String::new(),
                traceback: Vec::new(),
            })
        };
        assert_eq!(outcome_word(&Outcome::Success), OUTCOME_SUCCESS);
        assert_eq!(outcome_word(&Outcome::Interrupted), OUTCOME_INTERRUPTED);
        assert_eq!(
            outcome_word(&error("torch.OutOfMemoryError")),
            OUTCOME_OUT_OF_MEMORY
        );
        assert_eq!(outcome_word(&error("ValueError")), OUTCOME_ERROR);
    }

    #[test]
    fn output_names_are_relative_with_slashes() {
        let run = Path::new("/out/run-1");
        assert_eq!(
            output_name(run, &run.join("video").join("a.mp4")).as_deref(),
            Some("video/a.mp4")
        );
        assert_eq!(
            output_name(run, &run.join("a.png")).as_deref(),
            Some("a.png")
        );
        assert_eq!(output_name(run, Path::new("/elsewhere/a.png")), None);
        assert_eq!(output_name(run, run), None);
    }

    #[test]
    fn a_written_sidecar_carries_this_version() {
        let dir = scratch("version");
        let old = Sidecar {
            version: 0,
            prompt_id: "p".into(),
            ..Sidecar::default()
        };
        let path = write_sidecar(&dir, &old).unwrap();
        let (read, problem) = read_sidecar(&path).unwrap();
        assert_eq!((read.version, problem), (SIDECAR_VERSION, None));
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.ends_with("}\n"));
        let _ = fs::remove_dir_all(&dir);
    }
}
