//! PURE: everything the window shows ([`AppState`]), what the window asks for ([`Command`]),
//! what the worker reports ([`Event`]) and the one function that folds events into the state
//! ([`apply`]). No egui, no I/O: the worker does the work, the UI only draws this state.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use crate::budget::physical::uses_cuda_graphs;
use crate::budget::projection::FrameProjection;
use crate::comfy::server::ServerState;
use crate::policy::Choice;
use crate::policy::zones::BudgetView;
use crate::presets::PresetDefaults;
use crate::presets::store::{BrokenPreset, PresetEntry, PresetId};
use crate::runs::history::HistoryItem;
use crate::runs::plan::Planner;
use crate::runs::run::RunEvent;
use crate::workflow::edit::{CompileMode, snap_frames};

/// Server log lines the window keeps (older ones stay in the log files).
pub const LOG_RING_LINES: usize = 2000;
/// VRAM samples kept for the over-time plot of one run (at 2 Hz: over an hour).
pub const VRAM_SAMPLES: usize = 8000;
/// The card the projection uses when no NVIDIA GPU is found and none was picked.
pub const DEFAULT_CARD: &str = "GeForce RTX 5090";
/// Workflow files the "Recent" list keeps.
pub const RECENT_LIMIT: usize = 10;
/// Wan's sizes offered in the size picker (width, height): 480p and 720p, landscape, portrait
/// and square, as the official workflows use them.
pub const WAN_SIZES: &[(u32, u32)] = &[
    (832, 480),
    (480, 832),
    (1280, 720),
    (720, 1280),
    (640, 640),
    (960, 960),
    (1024, 704),
    (704, 1024),
];

/// The window's settings (the settings file's fields the window edits).
#[derive(Debug, Clone, PartialEq)]
pub struct WindowSettings {
    /// The ComfyUI folder to start; `None`: look in the usual places.
    pub comfyui_dir: Option<PathBuf>,
    /// A server the user runs; when set, wan-pilot attaches instead of starting one.
    pub server_url: Option<String>,
    pub extra_args: Vec<String>,
    /// ComfyUI's `--reserve-vram` in GiB; `None`: ComfyUI's default for the platform.
    pub reserve_gib: Option<f64>,
    /// Memory the chosen mode must leave free, in GiB.
    pub margin_gib: f64,
    pub auto_oom_retry: bool,
    /// Where finished runs go; `None`: the data folder's `runs/`.
    pub output_dir: Option<PathBuf>,
    pub theme: Theme,
    /// The card to plan for when no NVIDIA GPU is found.
    pub picked_card: String,
    /// The port tried first for a server wan-pilot starts.
    pub port: u16,
}

impl Default for WindowSettings {
    fn default() -> Self {
        WindowSettings {
            comfyui_dir: None,
            server_url: None,
            extra_args: Vec::new(),
            reserve_gib: None,
            margin_gib: 2.0,
            auto_oom_retry: true,
            output_dir: None,
            theme: Theme::System,
            picked_card: DEFAULT_CARD.to_string(),
            port: 8188,
        }
    }
}

impl WindowSettings {
    /// The settings file's values; the port is not kept in the file (8188 first, then the next
    /// free one).
    pub fn from_file(file: &crate::settings::Settings) -> WindowSettings {
        WindowSettings {
            comfyui_dir: file.comfyui_dir.clone(),
            server_url: file.server_url.clone(),
            extra_args: file.extra_args.clone(),
            reserve_gib: file.reserve_vram_gib,
            margin_gib: file.margin_gib,
            auto_oom_retry: file.oom_retry,
            output_dir: file.output_dir.clone(),
            theme: match file.theme {
                crate::settings::Theme::System => Theme::System,
                crate::settings::Theme::Dark => Theme::Dark,
                crate::settings::Theme::Light => Theme::Light,
            },
            picked_card: file
                .picked_card
                .clone()
                .unwrap_or_else(|| DEFAULT_CARD.to_string()),
            ..WindowSettings::default()
        }
    }

    /// What the settings file keeps of these settings.
    pub fn to_file(&self) -> crate::settings::Settings {
        crate::settings::Settings {
            comfyui_dir: self.comfyui_dir.clone(),
            server_url: self.server_url.clone(),
            extra_args: self.extra_args.clone(),
            reserve_vram_gib: self.reserve_gib,
            margin_gib: self.margin_gib,
            oom_retry: self.auto_oom_retry,
            output_dir: self.output_dir.clone(),
            theme: match self.theme {
                Theme::System => crate::settings::Theme::System,
                Theme::Dark => crate::settings::Theme::Dark,
                Theme::Light => crate::settings::Theme::Light,
            },
            picked_card: (self.picked_card != DEFAULT_CARD).then(|| self.picked_card.clone()),
            ..crate::settings::Settings::default()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Theme {
    System,
    Dark,
    Light,
}

/// What the window understood of the open workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowSummary {
    pub file: PathBuf,
    /// "Wan 2.2 14B text-to-video" style family words ("t2v", "i2v", …).
    pub family: String,
    /// "EmptyHunyuanLatentVideo #74.length", or `None` when no node carries the frame count.
    pub frame_node: Option<String>,
    pub frames: Option<u32>,
    pub size: Option<(u32, u32)>,
    pub fps: Option<f64>,
    /// "role: file" per active model.
    pub models: Vec<String>,
    pub warnings: Vec<String>,
    /// Whether the workflow takes a start image (image-to-video and its relatives).
    pub takes_start_image: bool,
}

/// The plan for the chosen length, derived from the planner (recomputed when the length or the
/// override changes).
#[derive(Debug, Clone, PartialEq)]
pub struct PlanView {
    pub frames: u32,
    pub choice: Choice,
    /// The mode the run will use: the override, else the choice.
    pub mode: String,
    pub predicted_s: Option<f64>,
    /// The sampling peak of the mode used (what decides whether it fits).
    pub peak_gib: Option<f64>,
    pub fits: bool,
    pub projection: FrameProjection,
    /// Server flags the mode used needs (`--disable-cuda-malloc` for the CUDA-graph modes).
    pub launch_flags: Vec<String>,
}

/// The server as the window shows it.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ServerView {
    #[default]
    Stopped,
    Starting {
        phase: Option<String>,
    },
    Ready {
        url: String,
        attached: bool,
    },
    Unresponsive {
        url: String,
    },
    Stalled {
        last_lines: Vec<String>,
    },
    Stopping,
    Crashed {
        explanation: String,
        last_lines: Vec<String>,
    },
    Restarting {
        attempt: u32,
        delay_s: f64,
    },
}

impl ServerView {
    /// The managed server's state, as data the window can show.
    pub fn from_state(state: &ServerState) -> ServerView {
        match state {
            ServerState::Stopped => ServerView::Stopped,
            ServerState::Starting { phase, .. } => ServerView::Starting {
                phase: phase.map(|p| p.label().to_string()),
            },
            ServerState::Ready { url } => ServerView::Ready {
                url: url.clone(),
                attached: false,
            },
            ServerState::Unresponsive { url } => ServerView::Unresponsive { url: url.clone() },
            ServerState::Stalled { last_lines } => ServerView::Stalled {
                last_lines: last_lines.clone(),
            },
            ServerState::Stopping => ServerView::Stopping,
            ServerState::Crashed {
                explanation,
                last_lines,
            } => ServerView::Crashed {
                explanation: explanation.clone(),
                last_lines: last_lines.clone(),
            },
            ServerState::Restarting { attempt, delay } => ServerView::Restarting {
                attempt: *attempt,
                delay_s: delay.as_secs_f64(),
            },
        }
    }

    /// One or two words for the top bar.
    pub fn label(&self, running: bool) -> String {
        match self {
            ServerView::Stopped => "Stopped".into(),
            ServerView::Starting { phase: Some(p) } => format!("Starting — {p}"),
            ServerView::Starting { phase: None } => "Starting".into(),
            ServerView::Ready { .. } if running => "Running".into(),
            ServerView::Ready { attached: true, .. } => "Ready (attached)".into(),
            ServerView::Ready { .. } => "Ready".into(),
            ServerView::Unresponsive { .. } => "Not answering".into(),
            ServerView::Stalled { .. } => "Stalled".into(),
            ServerView::Stopping => "Stopping".into(),
            ServerView::Crashed { .. } => "Crashed".into(),
            ServerView::Restarting { attempt, delay_s } => {
                format!("Restarting ({attempt}) in {delay_s:.0} s")
            }
        }
    }

    pub fn is_ready(&self) -> bool {
        matches!(self, ServerView::Ready { .. })
    }

    /// Whether Start makes sense (nothing running or starting).
    pub fn can_start(&self) -> bool {
        matches!(
            self,
            ServerView::Stopped | ServerView::Crashed { .. } | ServerView::Stalled { .. }
        )
    }
}

/// One GPU reading, in bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuReading {
    pub name: String,
    pub total_bytes: u64,
    pub free_bytes: u64,
    /// Used by the server wan-pilot runs (its processes), when known.
    pub ours_bytes: u64,
    /// Used by every other program.
    pub others_bytes: u64,
    /// Seconds since the sampler started.
    pub at_s: f64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub enum GpuView {
    /// Not probed yet.
    #[default]
    Unknown,
    Live(GpuReading),
    /// "GPU info unavailable": why, in words.
    Unavailable {
        reason: String,
    },
}

/// The run in progress or the last one.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunView {
    pub active: bool,
    pub stage: Option<String>,
    /// "step 3/4".
    pub step: Option<(u64, u64)>,
    pub overall: f64,
    pub eta_s: Option<f64>,
    pub attempt: usize,
    /// The mode and the sentence why, once planned.
    pub planned: Option<String>,
    /// Notes, out-of-memory messages and retries, in order.
    pub messages: Vec<String>,
    /// "Ran out of GPU memory; retrying with …", shown prominently while it is the latest news.
    pub oom: Option<String>,
    pub outputs: Vec<PathBuf>,
    pub run_dir: Option<PathBuf>,
    pub finished: Option<RunOutcome>,
    /// (seconds since the run started, GiB used) for the VRAM-over-time plot.
    pub vram: Vec<(f64, f64)>,
    pub started_at_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    Done { total_s: f64 },
    Failed { message: String },
}

/// How the first run stands: whether ComfyUI was found.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Setup {
    #[default]
    Checking,
    /// A ComfyUI folder to start, or a URL to attach to.
    Found { description: String },
    /// Nothing found: the window offers locate / bundled runtime / attach.
    Missing { why: String },
}

/// A message for the user in plain words.
#[derive(Debug, Clone, PartialEq)]
pub struct Toast {
    pub text: String,
    pub is_error: bool,
}

/// The bounded server log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogRing {
    pub lines: VecDeque<String>,
    /// Lines dropped from the front since the start.
    pub dropped: u64,
}

impl LogRing {
    pub fn push(&mut self, line: String) {
        if self.lines.len() >= LOG_RING_LINES {
            self.lines.pop_front();
            self.dropped += 1;
        }
        self.lines.push_back(line);
    }
}

/// What the user typed for the next run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunInputs {
    pub prompt: String,
    pub negative_prompt: String,
    pub seed: u64,
    pub randomise_seed: bool,
    pub steps: Option<u32>,
    pub size: Option<(u32, u32)>,
    pub start_image: Option<PathBuf>,
}

/// Everything the window shows.
#[derive(Debug, Clone, Default)]
pub struct AppState {
    pub workflow: Option<WorkflowSummary>,
    /// A file being opened (the worker is reading it).
    pub opening: Option<PathBuf>,
    pub planner: Option<Arc<Planner>>,
    /// Why there is no plan (not a Wan workflow, no card…).
    pub plan_problem: Option<String>,
    pub plan: Option<PlanView>,
    /// The budget panel's numbers for every length (computed by the worker per workflow, card
    /// and settings).
    pub budget: Option<Arc<BudgetView>>,
    /// The chosen length, 4n+1.
    pub frames: u32,
    pub compile_override: Option<CompileMode>,
    pub inputs: RunInputs,
    pub server: ServerView,
    pub gpu: GpuView,
    /// Set when the projection is for a picked card rather than one NVML found.
    pub projection_for_picked_card: Option<String>,
    pub run: RunView,
    pub log: LogRing,
    pub history: Vec<HistoryItem>,
    pub history_problems: Vec<String>,
    /// The flags the managed server was started with (`None`: none started, or attached).
    pub server_launch_flags: Option<Vec<String>>,
    pub settings: WindowSettings,
    pub setup: Setup,
    pub toasts: Vec<Toast>,
    pub presets: PresetsView,
    /// Workflow files opened last, newest first (at most [`RECENT_LIMIT`]).
    pub recent: Vec<PathBuf>,
}

/// The preset list as the left panel shows it, and what is being typed there.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PresetsView {
    /// Shipped presets first, then the user's; `None` until the worker listed them.
    pub entries: Option<Vec<PresetEntry>>,
    /// Files that could not be used, with the reasons (kept aside, never dropped).
    pub broken: Vec<BrokenPreset>,
    /// Why the list could not be read at all.
    pub problem: Option<String>,
    /// The preset the open workflow came from.
    pub opened: Option<PresetId>,
    /// The name typed for "Save as preset" (and for a rename).
    pub name_text: String,
    /// The file typed for import or export (empty: a dialog asks).
    pub path_text: String,
}

impl PresetsView {
    /// The listed preset with this id.
    pub fn entry(&self, id: &PresetId) -> Option<&PresetEntry> {
        self.entries.as_ref()?.iter().find(|entry| &entry.id == id)
    }
}

/// What the window asks of the worker (and the two length/mode edits it applies itself).
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Read, inspect and plan a workflow file.
    OpenFile(PathBuf),
    /// Show the native open dialog (off the UI thread), then open the file picked.
    BrowseForWorkflow,
    /// Show the native folder dialog for the ComfyUI install.
    BrowseForComfyUi,
    /// Local: the frame slider moved.
    SetFrames(u32),
    /// Local: Auto (`None`) or a manual compile mode.
    SetCompileOverride(Option<CompileMode>),
    StartServer,
    StopServer,
    RestartServer,
    Run(RunRequest),
    Cancel,
    /// Plan for this card (no NVIDIA GPU found).
    PickCard(String),
    /// The server flags the chosen mode needs; the next (re)start of the managed server uses
    /// them.
    SetLaunchFlags(Vec<String>),
    SaveSettings(WindowSettings),
    ReloadHistory,
    /// List the shipped and user presets (and the files that could not be used).
    ListPresets,
    /// Open a preset like a workflow file; its defaults (length, size) become the inputs.
    OpenPreset(PresetId),
    /// Save the open workflow as a new user preset with this length and size.
    SaveAsPreset {
        name: String,
        frames: u32,
        size: Option<(u32, u32)>,
    },
    DuplicatePreset(PresetId),
    RenamePreset {
        id: PresetId,
        name: String,
    },
    DeletePreset(PresetId),
    /// Import one preset file; `None`: ask with a dialog.
    ImportPreset(Option<PathBuf>),
    /// Export one preset to a file; `None`: ask with a dialog.
    ExportPreset {
        id: PresetId,
        to: Option<PathBuf>,
    },
    /// Stop the server and end the worker.
    Shutdown,
}

impl Command {
    /// Whether the window applies it to its own state (no work to do elsewhere).
    pub fn is_local(&self) -> bool {
        matches!(self, Command::SetFrames(_) | Command::SetCompileOverride(_))
    }
}

/// What a run needs from the window.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRequest {
    pub file: PathBuf,
    pub frames: Option<u32>,
    pub compile: Option<CompileMode>,
    pub size: Option<(u32, u32)>,
    pub seed: Option<u64>,
    pub prompt: Option<String>,
}

/// What the worker reports.
#[derive(Debug, Clone)]
pub enum Event {
    Opening(PathBuf),
    WorkflowLoaded {
        summary: WorkflowSummary,
        planner: Option<Arc<Planner>>,
        /// Every length's budget, when there is a planner.
        budget: Option<Arc<BudgetView>>,
        plan_problem: Option<String>,
        /// The card the plan is for when it was picked, not found.
        picked_card: Option<String>,
    },
    LoadFailed {
        file: PathBuf,
        message: String,
    },
    ServerState(ServerState),
    /// An attached server (the user's own) answered.
    Attached {
        url: String,
    },
    LogLines(Vec<String>),
    GpuSample(GpuReading),
    GpuUnavailable {
        reason: String,
    },
    SetupFound {
        description: String,
    },
    SetupMissing {
        why: String,
    },
    RunStarted,
    RunEvent(RunEvent),
    RunFinished {
        outputs: Vec<PathBuf>,
        run_dir: PathBuf,
        total_s: f64,
    },
    RunFailed {
        message: String,
    },
    HistoryLoaded {
        items: Vec<HistoryItem>,
        problems: Vec<String>,
    },
    SettingsSaved(WindowSettings),
    /// A managed server was set up with these flags (`None`: no managed server any more).
    ServerLaunchFlags(Option<Vec<String>>),
    /// The preset list (`Err`: why the folder could not be read). `broken` names every file
    /// that could not be used, with the reason.
    PresetsListed {
        listing: Result<Vec<PresetEntry>, String>,
        broken: Vec<BrokenPreset>,
    },
    /// The workflow just loaded came from this preset: its defaults become the inputs.
    PresetOpened {
        id: PresetId,
        defaults: PresetDefaults,
    },
    /// The "Recent" list changed.
    RecentChanged(Vec<PathBuf>),
    Notice(String),
    Error(String),
}

impl AppState {
    /// The state before anything is known.
    pub fn new(settings: WindowSettings) -> AppState {
        AppState {
            frames: 81,
            settings,
            inputs: RunInputs {
                randomise_seed: true,
                ..RunInputs::default()
            },
            ..AppState::default()
        }
    }

    /// Sets the length (snapped to 4n+1) and recomputes the plan.
    pub fn set_frames(&mut self, frames: u32) {
        self.frames = match &self.budget {
            Some(budget) => budget.clamp_frames(frames.max(1)),
            None => snap_frames(frames.max(1)),
        };
        self.replan();
    }

    pub fn set_compile_override(&mut self, mode: Option<CompileMode>) {
        self.compile_override = mode;
        self.replan();
    }

    /// Recomputes the plan for the current length from the planner (pure arithmetic).
    pub fn replan(&mut self) {
        self.plan = self
            .planner
            .as_ref()
            .map(|planner| plan_view(planner, self.frames, self.compile_override));
    }

    /// The run request the Run button sends, when a workflow is open.
    pub fn run_request(&self, seed: u64) -> Option<RunRequest> {
        let workflow = self.workflow.as_ref()?;
        let prompt = self.inputs.prompt.trim();
        Some(RunRequest {
            file: workflow.file.clone(),
            frames: Some(self.frames),
            compile: self.compile_override,
            size: self.inputs.size,
            seed: Some(seed),
            prompt: (!prompt.is_empty()).then(|| prompt.to_string()),
        })
    }

    /// The flags the chosen mode needs that the running managed server lacks: a restart applies
    /// them. Empty when nothing runs, the server is attached, or nothing is missing.
    pub fn flags_needing_restart(&self) -> Vec<String> {
        let (Some(plan), Some(running)) = (&self.plan, &self.server_launch_flags) else {
            return Vec::new();
        };
        if matches!(self.server, ServerView::Ready { attached: true, .. }) {
            return Vec::new();
        }
        plan.launch_flags
            .iter()
            .filter(|flag| !running.contains(flag))
            .cloned()
            .collect()
    }

    /// Whether Run is possible now, or why not.
    pub fn run_blocker(&self) -> Option<&'static str> {
        if self.workflow.is_none() {
            Some("open a workflow first")
        } else if self.run.active {
            Some("a run is going on")
        } else {
            None
        }
    }

    fn toast(&mut self, text: impl Into<String>, is_error: bool) {
        self.toasts.push(Toast {
            text: text.into(),
            is_error,
        });
        // Only the latest few matter.
        if self.toasts.len() > 5 {
            self.toasts.remove(0);
        }
    }
}

/// The plan at `frames` with `override_mode` applied.
pub fn plan_view(planner: &Planner, frames: u32, override_mode: Option<CompileMode>) -> PlanView {
    let projection = planner.project_at(frames);
    let choice = crate::policy::choose(&projection);
    let mode = override_mode
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| choice.mode.to_string());
    let chosen = projection.modes.iter().find(|m| m.mode == mode);
    let launch_flags = if CompileMode::parse(&mode).is_some_and(uses_cuda_graphs) {
        vec![DISABLE_CUDA_MALLOC.to_string()]
    } else {
        Vec::new()
    };
    PlanView {
        launch_flags,
        frames,
        mode: mode.clone(),
        predicted_s: chosen.map(|m| m.time.total_s),
        peak_gib: chosen.map(|m| m.sampling_peak_bytes / GIB),
        fits: chosen.is_some_and(|m| m.fits),
        choice,
        projection,
    }
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// The server flag CUDA graphs need (PyTorch's caching allocator instead of cudaMallocAsync).
pub const DISABLE_CUDA_MALLOC: &str = "--disable-cuda-malloc";

/// Folds one worker event into the state.
pub fn apply(state: &mut AppState, event: Event) {
    match event {
        Event::Opening(file) => state.opening = Some(file),
        Event::WorkflowLoaded {
            summary,
            planner,
            budget,
            plan_problem,
            picked_card,
        } => {
            state.opening = None;
            state.presets.opened = None;
            if let Some(frames) = summary.frames {
                state.frames = snap_frames(frames.max(1));
            }
            state.inputs.size = summary.size;
            state.workflow = Some(summary);
            state.planner = planner;
            state.budget = budget;
            state.plan_problem = plan_problem;
            state.projection_for_picked_card = picked_card;
            state.replan();
        }
        Event::LoadFailed { file, message } => {
            state.opening = None;
            state.toast(
                format!("Could not open {}: {message}", file.display()),
                true,
            );
        }
        Event::ServerState(server) => {
            // An attached server has no supervisor; keep its state.
            state.server = ServerView::from_state(&server);
            if let ServerView::Crashed { explanation, .. } = &state.server {
                let text = format!("The server stopped: {explanation}");
                state.toast(text, true);
            }
        }
        Event::Attached { url } => {
            state.server = ServerView::Ready {
                url,
                attached: true,
            }
        }
        Event::LogLines(lines) => {
            for line in lines {
                state.log.push(line);
            }
        }
        Event::GpuSample(reading) => {
            if state.run.active {
                let start = *state.run.started_at_s.get_or_insert(reading.at_s);
                let used = (reading.total_bytes.saturating_sub(reading.free_bytes)) as f64 / GIB;
                if state.run.vram.len() >= VRAM_SAMPLES {
                    state.run.vram.remove(0);
                }
                state.run.vram.push((reading.at_s - start, used));
            }
            state.gpu = GpuView::Live(reading);
        }
        Event::GpuUnavailable { reason } => state.gpu = GpuView::Unavailable { reason },
        Event::SetupFound { description } => state.setup = Setup::Found { description },
        Event::SetupMissing { why } => state.setup = Setup::Missing { why },
        Event::RunStarted => {
            state.run = RunView {
                active: true,
                stage: Some("starting".into()),
                ..RunView::default()
            };
        }
        Event::RunEvent(event) => apply_run_event(&mut state.run, event),
        Event::RunFinished {
            outputs,
            run_dir,
            total_s,
        } => {
            state.run.active = false;
            state.run.overall = 1.0;
            state.run.eta_s = None;
            state.run.stage = Some("done".into());
            state.run.outputs = outputs;
            state.run.run_dir = Some(run_dir);
            state.run.finished = Some(RunOutcome::Done { total_s });
        }
        Event::RunFailed { message } => {
            state.run.active = false;
            state.run.eta_s = None;
            state.run.finished = Some(RunOutcome::Failed {
                message: message.clone(),
            });
            state.toast(format!("The run failed: {message}"), true);
        }
        Event::HistoryLoaded { items, problems } => {
            state.history = items;
            state.history_problems = problems;
        }
        Event::SettingsSaved(settings) => {
            state.settings = settings;
            state.toast("Settings saved", false);
        }
        Event::ServerLaunchFlags(flags) => state.server_launch_flags = flags,
        Event::PresetsListed { listing, broken } => {
            match listing {
                Ok(entries) => {
                    state.presets.entries = Some(entries);
                    state.presets.problem = None;
                }
                Err(why) => state.presets.problem = Some(why),
            }
            state.presets.broken = broken;
        }
        Event::PresetOpened { id, defaults } => {
            state.set_frames(defaults.frames);
            state.inputs.size = Some((defaults.width, defaults.height));
            state.presets.opened = Some(id);
        }
        Event::RecentChanged(recent) => state.recent = recent,
        Event::Notice(text) => state.toast(text, false),
        Event::Error(text) => state.toast(text, true),
    }
}

fn apply_run_event(run: &mut RunView, event: RunEvent) {
    match event {
        RunEvent::Note(text) => run.messages.push(text),
        RunEvent::Planned { mode, summary } => {
            run.planned = Some(format!("compile mode {}: {summary}", mode.as_str()));
        }
        RunEvent::Submitted { attempt, rung, .. } => {
            run.attempt = attempt;
            run.stage = Some("queued".into());
            if let Some(rung) = rung {
                run.messages.push(format!(
                    "attempt {attempt}: {} frames, compile {}",
                    rung.frames,
                    rung.mode.as_str()
                ));
            }
        }
        RunEvent::Progress(progress) => {
            run.stage = Some(progress.stage.label().to_string());
            run.step = progress.schedule_step.or(progress.step);
            // Never backwards within an attempt; a retry starts its own bar.
            run.overall = progress.overall.clamp(0.0, 1.0);
            run.eta_s = progress.eta_secs;
        }
        RunEvent::Connection { lost, detail } => run.messages.push(if lost {
            format!("lost the server's connection ({detail}); reconnecting")
        } else {
            "reconnected to the server".to_string()
        }),
        RunEvent::OutOfMemory {
            attempt,
            message,
            next,
        } => {
            let text = match next {
                Some(next) => format!(
                    "Attempt {attempt} ran out of GPU memory ({message}). Retrying with compile \
                     {} at {} frames.",
                    next.mode.as_str(),
                    next.frames
                ),
                None => format!(
                    "Attempt {attempt} ran out of GPU memory ({message}). No retry left: try \
                     fewer frames or a smaller size."
                ),
            };
            run.messages.push(text.clone());
            run.oom = Some(text);
            run.overall = 0.0;
        }
        RunEvent::Saved(path) => run.outputs.push(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comfy::logs::BootPhase;
    use std::time::{Duration, Instant};

    fn summary() -> WorkflowSummary {
        WorkflowSummary {
            file: PathBuf::from("/w/t2v.json"),
            family: "t2v".into(),
            frame_node: Some("EmptyHunyuanLatentVideo #74.length".into()),
            frames: Some(80),
            size: Some((640, 640)),
            fps: Some(16.0),
            models: vec![],
            warnings: vec![],
            takes_start_image: false,
        }
    }

    #[test]
    fn a_loaded_workflow_sets_length_and_size() {
        let mut state = AppState::new(WindowSettings::default());
        apply(&mut state, Event::Opening(PathBuf::from("/w/t2v.json")));
        assert!(state.opening.is_some());
        apply(
            &mut state,
            Event::WorkflowLoaded {
                summary: summary(),
                planner: None,
                budget: None,
                plan_problem: Some("no card".into()),
                picked_card: None,
            },
        );
        assert!(state.opening.is_none());
        assert_eq!(state.frames, 81, "snapped to 4n+1");
        assert_eq!(state.inputs.size, Some((640, 640)));
        assert!(state.plan.is_none());
        assert!(state.run_request(7).is_some());
        state.set_frames(50);
        assert_eq!(state.frames, 49);
    }

    #[test]
    fn a_preset_sets_length_and_size_and_broken_files_are_kept_in_view() {
        let mut state = AppState::new(WindowSettings::default());
        apply(
            &mut state,
            Event::PresetsListed {
                listing: Ok(Vec::new()),
                broken: vec![BrokenPreset {
                    file: PathBuf::from("/p/bad.json"),
                    reason: "not valid JSON".into(),
                    kept_as: Some(PathBuf::from("/p/bad.json.broken")),
                    not_moved: None,
                }],
            },
        );
        assert_eq!(state.presets.entries, Some(Vec::new()));
        assert_eq!(state.presets.broken.len(), 1);
        apply(
            &mut state,
            Event::WorkflowLoaded {
                summary: summary(),
                planner: None,
                budget: None,
                plan_problem: None,
                picked_card: None,
            },
        );
        let id = PresetId::Shipped("wan22-14b-t2v.json".into());
        apply(
            &mut state,
            Event::PresetOpened {
                id: id.clone(),
                defaults: PresetDefaults {
                    frames: 50,
                    ..PresetDefaults::default()
                },
            },
        );
        assert_eq!(state.frames, 49, "snapped to 4n+1");
        assert_eq!(state.inputs.size, Some((832, 480)));
        assert_eq!(state.presets.opened, Some(id));
        apply(
            &mut state,
            Event::PresetsListed {
                listing: Err("cannot read the folder".into()),
                broken: Vec::new(),
            },
        );
        assert_eq!(
            state.presets.entries,
            Some(Vec::new()),
            "the last list stays"
        );
        assert!(state.presets.problem.is_some());
        apply(
            &mut state,
            Event::RecentChanged(vec![PathBuf::from("/w/a.json")]),
        );
        assert_eq!(state.recent, vec![PathBuf::from("/w/a.json")]);
    }

    #[test]
    fn window_settings_map_to_the_file_and_back() {
        let settings = WindowSettings {
            comfyui_dir: Some(PathBuf::from("/c")),
            server_url: Some("http://h:1".into()),
            extra_args: vec!["--lowvram".into()],
            reserve_gib: Some(1.5),
            margin_gib: 3.0,
            auto_oom_retry: false,
            output_dir: Some(PathBuf::from("/o")),
            theme: Theme::Dark,
            picked_card: "GeForce RTX 4090".into(),
            port: 8188,
        };
        assert_eq!(WindowSettings::from_file(&settings.to_file()), settings);
        let defaults = WindowSettings::default();
        assert_eq!(defaults.to_file().picked_card, None);
        assert_eq!(WindowSettings::from_file(&defaults.to_file()), defaults);
    }

    #[test]
    fn server_states_read_in_words() {
        let mut state = AppState::new(WindowSettings::default());
        apply(
            &mut state,
            Event::ServerState(ServerState::Starting {
                phase: Some(BootPhase::LoadingTorch),
                since: Instant::now(),
            }),
        );
        assert!(state.server.label(false).starts_with("Starting — "));
        apply(
            &mut state,
            Event::ServerState(ServerState::Ready {
                url: "http://127.0.0.1:8188".into(),
            }),
        );
        assert_eq!(state.server.label(false), "Ready");
        assert_eq!(state.server.label(true), "Running");
        apply(
            &mut state,
            Event::ServerState(ServerState::Crashed {
                explanation: "it segfaulted".into(),
                last_lines: vec!["Fatal".into()],
            }),
        );
        assert_eq!(state.server.label(false), "Crashed");
        assert!(state.server.can_start());
        assert!(state.toasts.last().is_some_and(|t| t.is_error));
        apply(
            &mut state,
            Event::ServerState(ServerState::Restarting {
                attempt: 1,
                delay: Duration::from_secs(2),
            }),
        );
        assert_eq!(state.server.label(false), "Restarting (1) in 2 s");
    }

    #[test]
    fn out_of_memory_is_shown_with_the_retry() {
        use crate::policy::Rung;
        let mut state = AppState::new(WindowSettings::default());
        apply(&mut state, Event::RunStarted);
        assert!(state.run.active);
        assert_eq!(state.run_blocker(), Some("open a workflow first"));
        apply(
            &mut state,
            Event::RunEvent(RunEvent::OutOfMemory {
                attempt: 1,
                message: "CUDA out of memory".into(),
                next: Some(Rung {
                    mode: CompileMode::ReduceOverhead,
                    frames: 13,
                }),
            }),
        );
        let oom = state.run.oom.clone().unwrap_or_default();
        assert!(oom.contains("Retrying with compile reduce-overhead at 13 frames"));
        apply(
            &mut state,
            Event::RunEvent(RunEvent::Saved(PathBuf::from("/out/a.mp4"))),
        );
        apply(
            &mut state,
            Event::RunFinished {
                outputs: vec![PathBuf::from("/out/a.mp4")],
                run_dir: PathBuf::from("/out"),
                total_s: 3.0,
            },
        );
        assert!(!state.run.active);
        assert_eq!(state.run.outputs.len(), 1);
        assert_eq!(state.run.finished, Some(RunOutcome::Done { total_s: 3.0 }));
    }

    #[test]
    fn the_log_ring_is_bounded_and_vram_is_kept_during_runs() {
        let mut state = AppState::new(WindowSettings::default());
        apply(
            &mut state,
            Event::LogLines((0..LOG_RING_LINES + 5).map(|i| i.to_string()).collect()),
        );
        assert_eq!(state.log.lines.len(), LOG_RING_LINES);
        assert_eq!(state.log.dropped, 5);
        let reading = |at_s: f64| GpuReading {
            name: "GPU".into(),
            total_bytes: 8 << 30,
            free_bytes: 6 << 30,
            ours_bytes: 1 << 30,
            others_bytes: 1 << 30,
            at_s,
        };
        apply(&mut state, Event::GpuSample(reading(1.0)));
        assert!(state.run.vram.is_empty(), "no run, no plot");
        apply(&mut state, Event::RunStarted);
        apply(&mut state, Event::GpuSample(reading(5.0)));
        apply(&mut state, Event::GpuSample(reading(5.5)));
        assert_eq!(state.run.vram, vec![(0.0, 2.0), (0.5, 2.0)]);
    }
}
