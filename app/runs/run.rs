//! One generation, start to finish: plan the compile mode, edit the workflow (frames, size, seed,
//! prompt, compile node), check it against the server's nodes, submit it, follow it by stage,
//! fetch its outputs into our folder with a sidecar, and record it for calibration. When it runs
//! out of GPU memory: free the server's memory and retry on the next rung (a lower compile mode,
//! then fewer frames), every attempt visible and recorded.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::sync::watch;

use super::history::{
    Attempt, CalibrationFacts, OUTCOME_ERROR, OUTCOME_INTERRUPTED, OUTCOME_OUT_OF_MEMORY,
    OUTCOME_SUCCESS, Parameters, ServerInfo, Sidecar, add_to_history, run_records, write_sidecar,
};
use super::plan::Planner;
use super::track::{Outcome, Progress, RunTimings, StageMap, Tracker};
use crate::budget::projection::PhaseName;
use crate::comfy::client::{Client, ClientError, EventStream, ServerEvent, new_id};
use crate::comfy::process::ExitInfo;
use crate::comfy::protocol::{ExecutionError, WsMessage};
use crate::gpu::sampler::Sampler;
use crate::policy::{Rung, retry_rungs};
use crate::workflow::WorkflowError;
use crate::workflow::convert::{ConvertOptions, flat_to_api, repair_for_server};
use crate::workflow::edit::{self, CompileMode, Edits, ServerClasses};
use crate::workflow::flat::{self, Strictness};
use crate::workflow::load::LoadedWorkflow;
use crate::workflow::node_defs::NodeDefs;

/// How the compile mode is picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompileChoice {
    /// The budget's choice for this card and length (falls back to the workflow as written when
    /// it cannot be planned).
    Auto,
    Mode(CompileMode),
    /// Leave the workflow's compile nodes as they are.
    AsWritten,
}

/// What to run and how.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub workflow_file: PathBuf,
    pub frames: Option<u32>,
    pub size: Option<(u32, u32)>,
    pub seed: Option<u64>,
    pub prompt: Option<String>,
    pub compile: CompileChoice,
    /// Also save every decoded frame as PNG (the window's frame preview reads them).
    pub frame_tap: bool,
    /// Where finished runs go: `<out_dir>/<run folder>/…` with the sidecar.
    pub out_dir: PathBuf,
    /// Retry on the next rung after an out-of-memory (a setting the user can switch off).
    pub retry_on_oom: bool,
    /// Attempts in all, the first included.
    pub max_attempts: usize,
}

/// File name prefix of the decoded frames a run saves when asked (`RunSpec::frame_tap`).
pub const FRAME_TAP_PREFIX: &str = "wan-pilot-frames/frame";

/// What happens during a run, for progress lines or the window.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEvent {
    Note(String),
    /// The compile mode chosen and why.
    Planned {
        mode: CompileMode,
        summary: String,
    },
    Submitted {
        attempt: usize,
        prompt_id: String,
        rung: Option<Rung>,
    },
    /// Boxed: a progress report is far larger than the other events.
    Progress(Box<Progress>),
    /// The websocket dropped (`lost`) or came back.
    Connection {
        lost: bool,
        detail: String,
    },
    OutOfMemory {
        attempt: usize,
        message: String,
        next: Option<Rung>,
    },
    Saved(PathBuf),
}

/// Why a run did not finish with outputs.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{}: {source}", file.display())]
    Workflow {
        file: PathBuf,
        source: WorkflowError,
    },
    #[error(
        "{}: the server lacks these node types: {}; install the custom nodes that provide them \
         (ComfyUI-Manager can find them) and restart the server",
        file.display(),
        missing.join(", ")
    )]
    MissingNodes { file: PathBuf, missing: Vec<String> },
    #[error("the server refused the workflow: {}", reasons.join("; "))]
    Refused { reasons: Vec<String> },
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the run failed at {where_}: {message}")]
    Failed { where_: String, message: String },
    #[error("the run ran out of GPU memory {attempts} time(s){}", if *retried { ", on every rung tried" } else { "; automatic retry is off" })]
    OutOfMemory { attempts: usize, retried: bool },
    #[error("the run was interrupted")]
    Interrupted,
    #[error("the server stopped during the run ({exit}); the run was not resubmitted")]
    ServerExited { exit: String },
    #[error(
        "the server stopped answering ({probes} probes in a row failed: {detail}); stop and restart it"
    )]
    Unresponsive { probes: u32, detail: String },
    #[error("lost the connection to the server and could not recover the run: {0}")]
    Lost(String),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub run_dir: PathBuf,
    pub outputs: Vec<PathBuf>,
    pub sidecar: PathBuf,
    pub attempts: Vec<Attempt>,
    pub total: Duration,
}

/// Where the run talks to: the server's client and, for a managed server, its exit.
pub struct RunTarget<'a> {
    pub client: &'a Client,
    /// Fires when a managed server exits; `None` for a server the user runs.
    pub server_exit: Option<watch::Receiver<Option<ExitInfo>>>,
    /// The GPU sampler, for the measured peak (none without NVML).
    pub sampler: Option<&'a Sampler>,
    /// How often the server is probed during a run, and how many missed probes mean it hung.
    pub health_interval: Duration,
    pub missed_probes: u32,
}

/// The API prompt for `loaded` with `edits` applied, against the server's node definitions, and
/// the notes the repairs and edits made.
pub fn prepare_prompt(
    loaded: &LoadedWorkflow,
    defs: &NodeDefs,
    edits: &Edits,
    server: &ServerClasses,
) -> Result<(Value, Vec<String>), WorkflowError> {
    let mut graph = match (&loaded.api, &loaded.ui) {
        (Some((prompt, _)), _) if loaded.reads_prompt() => flat::from_api(prompt),
        (_, Some(ui)) => flat::flatten(ui, defs, Strictness::Convert)?,
        (_, None) => return Err(WorkflowError::NotAWorkflow("it holds no workflow".into())),
    };
    let mut notes = repair_for_server(&mut graph, defs);
    notes.extend(edit::apply_for_server(&mut graph, defs, edits, server)?);
    let prompt = flat_to_api(&graph, defs, &ConvertOptions::default());
    if let Some((node, input, origin)) = prompt.dangling_links().into_iter().next() {
        return Err(WorkflowError::DanglingLink {
            link: format!("[\"{origin}\", …]"),
            place: format!("node {node} input {input}"),
            target: format!("node {origin}"),
        });
    }
    if let Some(node) = prompt.find_cycle() {
        return Err(WorkflowError::Cycle { node });
    }
    Ok((prompt.to_json(), notes))
}

/// Node types the prompt uses that the server does not have.
pub fn missing_node_types(prompt: &Value, object_info: &Value) -> Vec<String> {
    let mut missing: Vec<String> = prompt
        .as_object()
        .into_iter()
        .flat_map(|nodes| nodes.values())
        .filter_map(|node| node.get("class_type").and_then(Value::as_str))
        .filter(|class| object_info.get(*class).is_none())
        .map(str::to_string)
        .collect();
    missing.sort();
    missing.dedup();
    missing
}

/// Runs `spec` on the server behind `target`, reporting through `on_event`.
pub async fn run(
    target: RunTarget<'_>,
    spec: &RunSpec,
    loaded: &LoadedWorkflow,
    planner: Option<&Planner>,
    on_event: &mut (dyn FnMut(RunEvent) + Send),
) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    let started_at = SystemTime::now();
    let client = target.client;
    let object_info = client.object_info().await?;
    let server_classes = ServerClasses::from_object_info(&object_info);
    let server_version = client
        .system_stats()
        .await
        .ok()
        .and_then(|stats| stats.comfyui_version);
    let defs = NodeDefs::from_object_info(&object_info, client.base_url()).map_err(|source| {
        RunError::Workflow {
            file: spec.workflow_file.clone(),
            source,
        }
    })?;

    // The first rung: the chosen mode at the asked length.
    let frames = spec.frames.map(edit::snap_frames);
    let planned_frames = frames.or_else(|| planner.and_then(|p| p.workflow_frames));
    let mut rung: Option<Rung> = match (spec.compile, planner, planned_frames) {
        (CompileChoice::Mode(mode), _, Some(frames)) => Some(Rung { mode, frames }),
        (CompileChoice::Auto, Some(planner), Some(frames)) => {
            let choice = planner.choose_at(frames);
            let mode = CompileMode::parse(choice.mode).unwrap_or(CompileMode::Off);
            on_event(RunEvent::Planned {
                mode,
                summary: choice.summary.clone(),
            });
            Some(Rung { mode, frames })
        }
        (CompileChoice::Auto, None, _) => {
            on_event(RunEvent::Note(
                "no plan for this workflow on this card: its compile nodes are left as written"
                    .into(),
            ));
            None
        }
        (CompileChoice::Auto, Some(_), None) => {
            on_event(RunEvent::Note(
                "the frame count is only known when the workflow runs: give --frames for a \
                 compile mode chosen by the budget; compile nodes are left as written"
                    .into(),
            ));
            None
        }
        _ => None,
    };
    let fixed_mode = match spec.compile {
        CompileChoice::Mode(mode) if rung.is_none() => Some(mode),
        _ => None,
    };
    let mut rungs_left: Vec<Rung> = Vec::new();
    let mut attempts: Vec<Attempt> = Vec::new();
    let run_name = run_folder_name(&spec.workflow_file, started_at);
    let run_dir = spec.out_dir.join(&run_name);

    loop {
        let attempt_number = attempts.len() + 1;
        let edits = Edits {
            frames: rung.map(|r| r.frames).or(frames),
            size: spec.size,
            compile: rung.map(|r| r.mode).or(fixed_mode),
            seed: spec.seed,
            prompt: spec.prompt.clone(),
            frame_tap_prefix: spec.frame_tap.then(|| FRAME_TAP_PREFIX.to_string()),
        };
        let (prompt, notes) =
            prepare_prompt(loaded, &defs, &edits, &server_classes).map_err(|source| {
                RunError::Workflow {
                    file: spec.workflow_file.clone(),
                    source,
                }
            })?;
        for note in notes {
            on_event(RunEvent::Note(note));
        }
        let missing = missing_node_types(&prompt, &object_info);
        if !missing.is_empty() {
            return Err(RunError::MissingNodes {
                file: spec.workflow_file.clone(),
                missing,
            });
        }
        let attempt_started = Instant::now();
        if let Some(sampler) = target.sampler {
            sampler.mark_run_start();
        }
        let result = submit_and_follow(&target, &prompt, attempt_number, rung, on_event).await;
        let peak = target
            .sampler
            .and_then(|s| s.peak_since_mark())
            .map(|p| p.used_bytes);
        let took_ms = attempt_started.elapsed().as_millis() as u64;
        let followed = result?;
        let mut attempt = Attempt {
            number: attempt_number,
            prompt_id: followed.prompt_id.clone(),
            compile_mode: rung.map(|r| r.mode.as_str().to_string()),
            frames: rung.map(|r| r.frames).or(frames),
            outcome: String::new(),
            message: None,
            peak_vram_bytes: peak,
            took_ms,
        };
        let mut record = RunRecordInputs {
            spec,
            planner,
            rung,
            prompt: &prompt,
            server_url: client.base_url(),
            server_version: server_version.as_deref(),
            started_at,
            timings: followed.timings.clone(),
            run_dir: &run_dir,
            out_dir: &spec.out_dir,
        };
        match followed.end {
            End::Success => {
                attempt.outcome = OUTCOME_SUCCESS.into();
                attempts.push(attempt);
                let outputs =
                    fetch_outputs(client, &followed.prompt_id, &run_dir, on_event).await?;
                let sidecar = finish(&mut record, &attempts, &outputs, on_event);
                return Ok(RunSummary {
                    run_dir,
                    outputs,
                    sidecar,
                    attempts,
                    total: started.elapsed(),
                });
            }
            End::Interrupted => {
                attempt.outcome = OUTCOME_INTERRUPTED.into();
                attempts.push(attempt);
                finish(&mut record, &attempts, &[], on_event);
                return Err(RunError::Interrupted);
            }
            End::Error(error) if error.is_out_of_memory() => {
                let message = error.exception_message.trim().to_string();
                attempt.outcome = OUTCOME_OUT_OF_MEMORY.into();
                attempt.message = Some(message.clone());
                attempts.push(attempt);
                if attempts.len() == 1
                    && let Some(current) = rung
                {
                    let safe_off = planner.and_then(|p| {
                        p.safe_frames()
                            .into_iter()
                            .find(|(mode, _)| *mode == CompileMode::Off.as_str())
                            .and_then(|(_, frames)| frames)
                    });
                    rungs_left = retry_rungs(current.mode, current.frames, safe_off);
                }
                let can_retry = spec.retry_on_oom && attempts.len() < spec.max_attempts.max(1);
                let next = if can_retry && !rungs_left.is_empty() {
                    Some(rungs_left.remove(0))
                } else {
                    None
                };
                on_event(RunEvent::OutOfMemory {
                    attempt: attempt_number,
                    message,
                    next,
                });
                match next {
                    Some(next) => {
                        // What the failed attempt left loaded must go before the next one.
                        client.free(true, true).await?;
                        rung = Some(next);
                    }
                    None => {
                        finish(&mut record, &attempts, &[], on_event);
                        return Err(RunError::OutOfMemory {
                            attempts: attempts.len(),
                            retried: spec.retry_on_oom,
                        });
                    }
                }
            }
            End::Error(error) => {
                attempt.outcome = OUTCOME_ERROR.into();
                attempt.message = Some(format!(
                    "{}: {}",
                    error.exception_type,
                    error.exception_message.trim()
                ));
                attempts.push(attempt);
                finish(&mut record, &attempts, &[], on_event);
                return Err(RunError::Failed {
                    where_: format!(
                        "node {} ({})",
                        error.node_id.clone().unwrap_or_default(),
                        error.node_type
                    ),
                    message: format!(
                        "{}: {}",
                        error.exception_type,
                        error.exception_message.trim()
                    ),
                });
            }
        }
    }
}

/// How one submitted prompt ended.
enum End {
    Success,
    Interrupted,
    Error(ExecutionError),
}

/// One followed prompt: its id, its end and the tracker's timings.
struct Followed {
    prompt_id: String,
    end: End,
    timings: RunTimings,
}

async fn submit_and_follow(
    target: &RunTarget<'_>,
    prompt: &Value,
    attempt: usize,
    rung: Option<Rung>,
    on_event: &mut (dyn FnMut(RunEvent) + Send),
) -> Result<Followed, RunError> {
    let client = target.client;
    let client_id = new_id("wan-pilot-client");
    let prompt_id = new_id("wan-pilot-run");
    // Listen before submitting: the first messages can arrive before the POST's reply.
    let mut events = EventStream::connect(client, &client_id).await?;
    match client.submit(prompt, &client_id, &prompt_id, None).await {
        Ok(_) => {}
        Err(ClientError::Refused { reasons, .. }) => return Err(RunError::Refused { reasons }),
        Err(e) => return Err(e.into()),
    }
    on_event(RunEvent::Submitted {
        attempt,
        prompt_id: prompt_id.clone(),
        rung,
    });
    let mut tracker = Tracker::new(prompt_id.clone(), StageMap::from_prompt(prompt));
    let clock = Instant::now();
    let mut server_exit = target.server_exit.clone();
    let mut health = tokio::time::interval(target.health_interval);
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut missed_probes = 0u32;
    let done = |tracker: &Tracker, end: End| Followed {
        prompt_id: prompt_id.clone(),
        end,
        timings: tracker.timings(),
    };
    loop {
        let exit_changed = async {
            match server_exit.as_mut() {
                Some(exit) => {
                    let _ = exit.changed().await;
                    Some(*exit.borrow())
                }
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            event = events.next() => event,
            exit = exit_changed => {
                match exit.flatten() {
                    Some(exit) => return Err(RunError::ServerExited { exit: exit.to_string() }),
                    None => {
                        // The process handle is gone without an exit status: treat as exited.
                        if server_exit.as_ref().is_some_and(|e| e.has_changed().is_err()) {
                            return Err(RunError::ServerExited { exit: "it exited".into() });
                        }
                        continue;
                    }
                }
            }
            _ = health.tick() => {
                // A busy ComfyUI still answers HTTP; one that does not has hung.
                match crate::comfy::server::probe(client).await {
                    Ok(()) => missed_probes = 0,
                    Err(detail) => {
                        missed_probes += 1;
                        if missed_probes >= target.missed_probes {
                            return Err(RunError::Unresponsive {
                                probes: missed_probes,
                                detail,
                            });
                        }
                    }
                }
                continue;
            }
        };
        let Some(event) = event else {
            // The websocket gave up reconnecting: the history may still know the end.
            return match recover_from_history(client, &prompt_id).await? {
                Some(end) => Ok(done(&tracker, end)),
                None => Err(RunError::Lost("the websocket stayed closed".into())),
            };
        };
        match event {
            ServerEvent::Message(message) => {
                let finished_here = matches!(
                    &message,
                    WsMessage::Executing { node: None, prompt_id: Some(id) } if *id == prompt_id
                );
                if tracker.apply(&message, clock.elapsed().as_millis() as u64) {
                    on_event(RunEvent::Progress(Box::new(tracker.progress())));
                }
                match tracker.progress().finished {
                    Some(Outcome::Error(error)) => return Ok(done(&tracker, End::Error(error))),
                    Some(Outcome::Interrupted) => return Ok(done(&tracker, End::Interrupted)),
                    _ => {}
                }
                if finished_here {
                    let end = recover_from_history(client, &prompt_id)
                        .await?
                        .unwrap_or(End::Success);
                    return Ok(done(&tracker, end));
                }
            }
            ServerEvent::Preview { .. } | ServerEvent::NodeText { .. } => {}
            ServerEvent::Disconnected { reason } => {
                on_event(RunEvent::Connection {
                    lost: true,
                    detail: reason,
                });
            }
            ServerEvent::Reconnected => {
                on_event(RunEvent::Connection {
                    lost: false,
                    detail: "reconnected".into(),
                });
                // Messages sent while we were away are lost: the history tells whether it ended.
                if let Some(end) = recover_from_history(client, &prompt_id).await? {
                    let outcome = match &end {
                        End::Success => Outcome::Success,
                        End::Interrupted => Outcome::Interrupted,
                        End::Error(error) => Outcome::Error(error.clone()),
                    };
                    tracker.finish(outcome, clock.elapsed().as_millis() as u64);
                    on_event(RunEvent::Progress(Box::new(tracker.progress())));
                    return Ok(done(&tracker, end));
                }
            }
        }
    }
}

/// The end of a prompt from `/history`, when it has one.
async fn recover_from_history(client: &Client, prompt_id: &str) -> Result<Option<End>, RunError> {
    let Some(entry) = client.history(prompt_id).await? else {
        return Ok(None);
    };
    if let Some(error) = entry.execution_error() {
        return Ok(Some(End::Error(error)));
    }
    if entry.was_interrupted() {
        return Ok(Some(End::Interrupted));
    }
    if entry.status.completed {
        return Ok(Some(End::Success));
    }
    Ok(None)
}

/// Downloads every output file of the prompt into `run_dir`.
async fn fetch_outputs(
    client: &Client,
    prompt_id: &str,
    run_dir: &Path,
    on_event: &mut (dyn FnMut(RunEvent) + Send),
) -> Result<Vec<PathBuf>, RunError> {
    let entry = client
        .history(prompt_id)
        .await?
        .ok_or_else(|| RunError::Lost(format!("the server has no history for {prompt_id}")))?;
    std::fs::create_dir_all(run_dir).map_err(|source| RunError::Write {
        path: run_dir.to_path_buf(),
        source,
    })?;
    let mut saved = Vec::new();
    for file in entry.output_files() {
        let path = client.download(&file, run_dir).await?;
        on_event(RunEvent::Saved(path.clone()));
        saved.push(path);
    }
    Ok(saved)
}

/// What the sidecar and the calibration record of a run are built from.
struct RunRecordInputs<'a> {
    spec: &'a RunSpec,
    planner: Option<&'a Planner>,
    rung: Option<Rung>,
    prompt: &'a Value,
    server_url: &'a str,
    server_version: Option<&'a str>,
    started_at: SystemTime,
    timings: RunTimings,
    run_dir: &'a Path,
    out_dir: &'a Path,
}

/// Writes the run's sidecar and history entry and folds it into calibration; returns the
/// sidecar's path. Failing to write these is reported, never allowed to hide the run's result.
fn finish(
    inputs: &mut RunRecordInputs<'_>,
    attempts: &[Attempt],
    outputs: &[PathBuf],
    on_event: &mut (dyn FnMut(RunEvent) + Send),
) -> PathBuf {
    let last = attempts.last();
    let frames = last.and_then(|a| a.frames);
    let calibration = match (inputs.planner, inputs.rung) {
        (Some(planner), Some(rung)) => Some(calibration_facts(planner, rung.frames)),
        _ => None,
    };
    let sidecar = Sidecar {
        prompt_id: last.map(|a| a.prompt_id.clone()).unwrap_or_default(),
        workflow_file: Some(inputs.spec.workflow_file.display().to_string()),
        prompt: inputs.prompt.clone(),
        parameters: Parameters {
            frames,
            width: inputs
                .spec
                .size
                .map(|s| s.0)
                .or(inputs.planner.map(|p| p.workload.width)),
            height: inputs
                .spec
                .size
                .map(|s| s.1)
                .or(inputs.planner.map(|p| p.workload.height)),
            seed: inputs.spec.seed,
            steps: inputs
                .planner
                .map(|p| p.workload.experts.iter().map(|e| e.steps).sum()),
            fps: None,
        },
        compile_mode: last.and_then(|a| a.compile_mode.clone()),
        attempts: attempts.to_vec(),
        peak_vram_bytes: last.and_then(|a| a.peak_vram_bytes),
        timings: inputs.timings.clone(),
        outputs: outputs
            .iter()
            .filter_map(|p| super::history::output_name(inputs.run_dir, p))
            .collect(),
        server: ServerInfo {
            version: inputs.server_version.map(str::to_string),
            url: inputs.server_url.to_string(),
        },
        started_at: unix_secs(inputs.started_at),
        finished_at: Some(unix_secs(SystemTime::now())),
        outcome: last.map(|a| a.outcome.clone()).unwrap_or_default(),
        message: last.and_then(|a| a.message.clone()),
        calibration,
        ..Sidecar::default()
    };
    let path = match write_sidecar(inputs.run_dir, &sidecar) {
        Ok(path) => path,
        Err(e) => {
            on_event(RunEvent::Note(format!("run record not written: {e}")));
            return super::history::sidecar_path(inputs.run_dir);
        }
    };
    if let Ok(data_dir) = crate::runs::store::data_dir()
        && let Err(e) = add_to_history(&data_dir, inputs.out_dir, inputs.run_dir, &sidecar)
    {
        on_event(RunEvent::Note(format!("history list not updated: {e}")));
    }
    if let Some(planner) = inputs.planner {
        record_for_calibration(planner, &sidecar, on_event);
    }
    path
}

/// What calibration needs from the plan at `frames`.
fn calibration_facts(planner: &Planner, frames: u32) -> CalibrationFacts {
    let projection = planner.project_at(frames);
    let sampling = projection
        .phases
        .iter()
        .filter(|p| {
            matches!(
                p.phase,
                PhaseName::HighNoiseSampling | PhaseName::LowNoiseSampling | PhaseName::Sampling
            )
        })
        .max_by(|a, b| a.peak_bytes.total_cmp(&b.peak_bytes));
    let (linear, attention) =
        crate::budget::time::flops_per_forward(planner.workload.dit, projection.tokens);
    CalibrationFacts {
        card: planner.card_key().to_string(),
        family: planner.workload.family_key(),
        tokens: projection.tokens,
        batched_samples: match sampling.and_then(|p| p.batches_cfg) {
            Some(true) => 2,
            _ => 1,
        },
        forwards_per_step: if planner.workload.uses_cfg { 2 } else { 1 },
        resident_weights_bytes: sampling.map_or(0, |p| p.weights_on_gpu_bytes as u64),
        offloaded_bytes: sampling.map_or(0, |p| p.offloaded_bytes as u64),
        linear_flops_per_forward: linear,
        attention_flops_per_forward: attention,
    }
}

/// Folds the run's attempts into the calibration file (out-of-memory lengths become caps).
fn record_for_calibration(
    planner: &Planner,
    sidecar: &Sidecar,
    on_event: &mut (dyn FnMut(RunEvent) + Send),
) {
    let records = match run_records(sidecar) {
        Ok(records) => records,
        Err(e) => {
            on_event(RunEvent::Note(format!("run not used for calibration: {e}")));
            return;
        }
    };
    if records.is_empty() {
        return;
    }
    let mut loaded = match crate::runs::store::load_calibration() {
        Ok(loaded) => loaded,
        Err(e) => {
            on_event(RunEvent::Note(format!("calibration not updated: {e}")));
            return;
        }
    };
    for record in records {
        if let Err(e) = loaded.calibration.record(record, planner.prior) {
            on_event(RunEvent::Note(format!("run not used for calibration: {e}")));
        }
    }
    if let Err(e) = crate::runs::store::save_calibration(&loaded.calibration) {
        on_event(RunEvent::Note(format!("calibration not saved: {e}")));
    }
}

fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `<workflow stem>-<UTC date and time>`, safe on every file system.
fn run_folder_name(workflow_file: &Path, at: SystemTime) -> String {
    let stem: String = workflow_file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into())
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect();
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (year, month, day, hour, minute, second) = crate::workflow::convert::civil_time(secs);
    // Two runs of one workflow within a second still get their own folders.
    let unique = new_id("");
    let suffix: String = unique
        .chars()
        .rev()
        .filter(char::is_ascii_alphanumeric)
        .take(4)
        .collect();
    format!("{stem}-{year:04}{month:02}{day:02}-{hour:02}{minute:02}{second:02}-{suffix}")
}
