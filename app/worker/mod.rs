//! The window's worker: one tokio runtime on its own thread that does everything slow — open,
//! inspect and plan a workflow; start, watch and stop the server; run generations; sample the
//! GPU; read the history — and reports [`Event`]s. Every event asks the window to repaint (soon,
//! so a burst of events is one repaint). No egui here beyond that request.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::comfy::client::Client;
use crate::comfy::install::{self, Install, SupportedFlags};
use crate::comfy::server::{
    AttachedServer, RestartPolicy, ServerDirs, ServerSettings, ServerState, ServerTimings,
    Supervisor, SupervisorCommand, SupervisorConfig, find_leftovers,
};
use crate::gpu::nvml::GpuProbe;
use crate::gpu::sampler::{Sampler, SamplerEvent};
use crate::logic::{
    Command, Event, GpuReading, RECENT_LIMIT, RunRequest, WindowSettings, WorkflowSummary,
};
use crate::policy::zones::BudgetView;
use crate::presets::store::{BrokenPreset, PRESETS_DIR, PresetId, PresetStore};
use crate::presets::{Preset, PresetDefaults};
use crate::runs::plan::{PlanRequest, Planner};
use crate::runs::run::{CompileChoice, RunSpec, RunTarget};
use crate::workflow::load::LoadedWorkflow;
use crate::workflow::node_defs::NodeDefs;
use crate::workflow::recognise::{self, Family, Inspection};

mod log_tail;

/// Something that can ask the window to repaint: `egui::Context` in the app, a counter in tests.
pub trait Repaint: Send + Sync + 'static {
    /// Asks for a repaint soon; several requests in a burst make one repaint.
    fn repaint_soon(&self);
}

impl Repaint for egui::Context {
    fn repaint_soon(&self) {
        // Batches events that arrive within 10 ms into one frame.
        self.request_repaint_after(Duration::from_millis(10));
    }
}

/// Sends events to the window and asks it to repaint.
#[derive(Clone)]
pub struct EventSender {
    tx: std::sync::mpsc::Sender<Event>,
    repaint: Arc<dyn Repaint>,
}

impl EventSender {
    pub fn send(&self, event: Event) {
        if self.tx.send(event).is_ok() {
            self.repaint.repaint_soon();
        }
    }
}

/// The window's end of the events.
pub struct EventReceiver(std::sync::mpsc::Receiver<Event>);

impl EventReceiver {
    /// The events that arrived since the last call, without waiting.
    pub fn drain(&self) -> Vec<Event> {
        self.0.try_iter().collect()
    }
}

/// The window's end of the commands.
#[derive(Clone)]
pub struct CommandSender(UnboundedSender<Command>);

impl CommandSender {
    pub fn send(&self, command: Command) {
        // The worker only goes away at shutdown, when nothing is sent any more.
        let _ = self.0.send(command);
    }
}

/// The worker thread and both ends of its channels.
pub struct Worker {
    pub commands: CommandSender,
    pub events: EventReceiver,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    /// Starts the worker thread with its runtime. `data_dir` holds the server's folders, the
    /// runs and the history.
    pub fn spawn(
        repaint: Arc<dyn Repaint>,
        settings: WindowSettings,
        data_dir: PathBuf,
    ) -> Result<Worker, String> {
        let (command_tx, command_rx) = unbounded_channel();
        let (event_tx, event_rx) = std::sync::mpsc::channel();
        let events = EventSender {
            tx: event_tx,
            repaint,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("wan-pilot-worker")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the worker's async runtime: {e}"))?;
        let self_tx = command_tx.clone();
        let thread = std::thread::Builder::new()
            .name("wan-pilot-worker".into())
            .spawn(move || {
                runtime.block_on(serve(command_rx, self_tx, events, settings, data_dir));
                // Tasks still running (a log tail, a dialog) get a moment, then go.
                runtime.shutdown_timeout(Duration::from_secs(2));
            })
            .map_err(|e| format!("cannot start the worker thread: {e}"))?;
        Ok(Worker {
            commands: CommandSender(command_tx),
            events: EventReceiver(event_rx),
            thread: Some(thread),
        })
    }

    /// Stops the server (when wan-pilot started it) and ends the worker; waits for both.
    pub fn shutdown(&mut self) {
        self.commands.send(Command::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The run in progress: its task and, once it talks to a server, that server's client.
struct ActiveRun {
    task: tokio::task::JoinHandle<()>,
    client: Arc<Mutex<Option<Client>>>,
}

/// The worker's own state, owned by the command loop.
struct Core {
    events: EventSender,
    self_tx: UnboundedSender<Command>,
    settings: WindowSettings,
    data_dir: PathBuf,
    dirs: ServerDirs,
    supervisor: Option<Supervisor>,
    watchers: Vec<tokio::task::JoinHandle<()>>,
    attached: Option<AttachedServer>,
    run: Option<ActiveRun>,
    probe: Arc<GpuProbe>,
    sampler: Option<Arc<Sampler>>,
    /// The managed server's pids, for "ours" in the VRAM meter.
    server_pids: Arc<Mutex<Vec<u32>>>,
    opened: Option<PathBuf>,
    /// The flags the chosen mode needs (from the window).
    wanted_flags: Vec<String>,
    /// The flags the managed server's supervisor was set up with.
    supervisor_flags: Vec<String>,
    /// The preset the open workflow came from, with its defaults (re-applied on a re-open).
    opened_preset: Option<(PresetId, PresetDefaults)>,
    presets: PresetStore,
    /// The "Recent" list, newest first; shared with the open tasks that add to it.
    recent: Arc<Mutex<Vec<PathBuf>>>,
}

async fn serve(
    mut commands: UnboundedReceiver<Command>,
    self_tx: UnboundedSender<Command>,
    events: EventSender,
    settings: WindowSettings,
    data_dir: PathBuf,
) {
    let probe = tokio::task::spawn_blocking(crate::gpu::nvml::probe)
        .await
        .unwrap_or_else(|e| GpuProbe::Unavailable {
            reason: e.to_string(),
        });
    let dirs = ServerDirs::in_data_dir(&data_dir);
    let data_dir_presets = data_dir.join(PRESETS_DIR);
    let mut core = Core {
        events,
        self_tx,
        settings,
        dirs,
        data_dir,
        supervisor: None,
        watchers: Vec::new(),
        attached: None,
        run: None,
        probe: Arc::new(probe),
        sampler: None,
        server_pids: Arc::new(Mutex::new(Vec::new())),
        opened: None,
        wanted_flags: Vec::new(),
        supervisor_flags: Vec::new(),
        opened_preset: None,
        presets: PresetStore::in_dir(data_dir_presets),
        recent: Arc::new(Mutex::new(Vec::new())),
    };
    core.load_recent().await;
    core.list_presets();
    core.start_gpu_sampler();
    core.check_setup().await;
    core.reload_history();
    while let Some(command) = commands.recv().await {
        if command == Command::Shutdown {
            break;
        }
        core.handle(command).await;
    }
    core.shutdown().await;
}

impl Core {
    async fn handle(&mut self, command: Command) {
        match command {
            Command::OpenFile(path) => {
                self.opened_preset = None;
                self.open(path);
            }
            Command::ListPresets => self.list_presets(),
            Command::OpenPreset(id) => self.open_preset(id).await,
            Command::SaveAsPreset { name, frames, size } => {
                self.save_as_preset(name, frames, size).await;
            }
            Command::DuplicatePreset(id) => {
                self.preset_change(move |store| store.duplicate(&id).map(|_| "Duplicated".into()))
                    .await;
            }
            Command::RenamePreset { id, name } => {
                self.preset_change(move |store| {
                    store
                        .rename(&id, &name)
                        .map(|()| format!("Renamed to \"{name}\""))
                })
                .await;
            }
            Command::DeletePreset(id) => {
                self.preset_change(move |store| store.delete(&id).map(|()| "Deleted".into()))
                    .await;
            }
            Command::ImportPreset(None) => {
                // The dialog waits for the user: on its own thread, then back as a command.
                let tx = self.self_tx.clone();
                tokio::task::spawn_blocking(move || {
                    if let Some(path) = dialog_path(false) {
                        let _ = tx.send(Command::ImportPreset(Some(path)));
                    }
                });
            }
            Command::ImportPreset(Some(path)) => {
                self.preset_change(move |store| {
                    store
                        .import(&path)
                        .map(|id| format!("Imported {} as {}", path.display(), id.file()))
                })
                .await;
            }
            Command::ExportPreset { id, to: None } => {
                let tx = self.self_tx.clone();
                tokio::task::spawn_blocking(move || {
                    if let Some(to) = dialog_path(true) {
                        let _ = tx.send(Command::ExportPreset { id, to: Some(to) });
                    }
                });
            }
            Command::ExportPreset { id, to: Some(to) } => {
                self.preset_change(move |store| {
                    store
                        .export(&id, &to)
                        .map(|()| format!("Exported to {}", to.display()))
                })
                .await;
            }
            Command::BrowseForWorkflow => {
                let tx = self.self_tx.clone();
                tokio::task::spawn_blocking(move || {
                    let picked = rfd::FileDialog::new()
                        .set_title("Open a ComfyUI workflow")
                        .add_filter("Workflows", &["json", "png", "webp", "mp4", "webm"])
                        .pick_file();
                    if let Some(path) = picked {
                        let _ = tx.send(Command::OpenFile(path));
                    }
                });
            }
            Command::BrowseForComfyUi => {
                let tx = self.self_tx.clone();
                let mut settings = self.settings.clone();
                tokio::task::spawn_blocking(move || {
                    if let Some(dir) = rfd::FileDialog::new()
                        .set_title("Locate your ComfyUI folder (the one with main.py)")
                        .pick_folder()
                    {
                        settings.comfyui_dir = Some(dir);
                        settings.server_url = None;
                        let _ = tx.send(Command::SaveSettings(settings));
                    }
                });
            }
            // Applied by the window itself.
            Command::SetFrames(_) | Command::SetCompileOverride(_) => {}
            Command::StartServer => self.start_server().await,
            Command::StopServer => self.stop_server().await,
            Command::RestartServer => match &self.supervisor {
                // New flags need a new launch configuration: stop, then start afresh.
                Some(_) if self.supervisor_flags != self.wanted_flags => {
                    self.stop_server().await;
                    self.start_server().await;
                }
                Some(supervisor) => supervisor.send(SupervisorCommand::Restart),
                None => self.start_server().await,
            },
            Command::SetLaunchFlags(flags) => self.wanted_flags = flags,
            Command::Run(request) => self.start_run(request).await,
            Command::Cancel => self.cancel_run().await,
            Command::PickCard(name) => {
                self.settings.picked_card = name;
                if let Some(file) = self.opened.clone() {
                    self.open(file);
                }
            }
            Command::SaveSettings(settings) => {
                let server_changed = settings.comfyui_dir != self.settings.comfyui_dir
                    || settings.server_url != self.settings.server_url
                    || settings.extra_args != self.settings.extra_args
                    || settings.reserve_gib != self.settings.reserve_gib
                    || settings.port != self.settings.port;
                self.settings = settings.clone();
                if server_changed && self.supervisor.is_some() {
                    // The next start uses the new folder and arguments.
                    self.stop_server().await;
                }
                // Awaited, so the file is written before the next command (a quit) runs.
                let mut file = settings.to_file();
                let dir = self.data_dir.clone();
                let recent = self.recent.clone();
                let saved = tokio::task::spawn_blocking(move || {
                    // The recent list's lock also keeps this write apart from a recent-list
                    // write (neither loses the other's change).
                    let recent = recent.lock().unwrap_or_else(|p| p.into_inner());
                    file.recent = recent.clone();
                    crate::settings::save_settings_in(&dir, &file).map_err(|e| e.to_string())
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|saved| saved);
                self.events.send(Event::SettingsSaved(settings));
                if let Err(why) = saved {
                    self.events.send(Event::Error(format!(
                        "The settings apply now but were not saved: {why}. Check that the data \
                         folder is writable."
                    )));
                }
                self.check_setup().await;
                if let Some(file) = self.opened.clone() {
                    self.open(file);
                }
            }
            Command::ReloadHistory => self.reload_history(),
            Command::Shutdown => {}
        }
    }

    /// Reads, inspects and plans `path` on a blocking thread. A workflow file (not a preset)
    /// goes to the front of the "Recent" list once it opened.
    fn open(&mut self, path: PathBuf) {
        self.opened = Some(path.clone());
        self.events.send(Event::Opening(path.clone()));
        let events = self.events.clone();
        let settings = self.settings.clone();
        let probe = self.probe.clone();
        let data_dir = self.data_dir.clone();
        let preset = self.opened_preset.clone();
        let recent = self.recent.clone();
        tokio::task::spawn_blocking(move || {
            let opened = open_and_plan(&path, &settings, &probe, &data_dir);
            let loaded = opened.is_ok();
            let event = match opened {
                Ok(opened) => {
                    // Every length at once (milliseconds), so the slider only looks numbers up.
                    let budget = opened.planner.as_ref().ok().map(|planner| {
                        Arc::new(BudgetView::for_planner(planner, opened.summary.fps))
                    });
                    Event::WorkflowLoaded {
                        plan_problem: opened.planner.as_ref().err().cloned(),
                        planner: opened.planner.ok().map(Arc::new),
                        budget,
                        summary: opened.summary,
                        picked_card: opened.picked_card,
                    }
                }
                Err(message) => Event::LoadFailed {
                    file: path.clone(),
                    message,
                },
            };
            events.send(event);
            match preset {
                Some((id, defaults)) if loaded => events.send(Event::PresetOpened { id, defaults }),
                Some(_) => {}
                None if loaded => remember_recent(&recent, &path, &data_dir, &events),
                None => {}
            }
        });
    }

    /// Reads the "Recent" list from the settings file and shows it.
    async fn load_recent(&mut self) {
        let dir = self.data_dir.clone();
        let recent = tokio::task::spawn_blocking(move || {
            crate::settings::load_settings_in(&dir)
                .map(|loaded| loaded.settings.recent)
                .unwrap_or_default()
        })
        .await
        .unwrap_or_default();
        *self.recent.lock().unwrap_or_else(|p| p.into_inner()) = recent.clone();
        self.events.send(Event::RecentChanged(recent));
    }

    /// Lists the presets on a blocking thread and reports them.
    fn list_presets(&self) {
        let store = self.presets.clone();
        let events = self.events.clone();
        tokio::task::spawn_blocking(move || events.send(listing_event(&store)));
    }

    /// Writes the preset's prompt where the workflow reader finds it, then opens it like a file;
    /// its defaults follow the load.
    async fn open_preset(&mut self, id: PresetId) {
        let store = self.presets.clone();
        let dir = self.data_dir.join("opened-presets");
        let wanted = id.clone();
        let written = tokio::task::spawn_blocking(move || {
            let preset = store.load(&wanted).map_err(|e| e.to_string())?;
            let prefix = if wanted.is_shipped() {
                "shipped"
            } else {
                "user"
            };
            let path = dir.join(format!("{prefix}-{}", wanted.file()));
            crate::runs::store::write_atomically(&path, &preset.prompt_bytes())
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((path, preset.defaults))
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|written| written);
        match written {
            Ok((path, defaults)) => {
                self.opened_preset = Some((id, defaults));
                self.open(path);
            }
            Err(why) => self.events.send(Event::Error(format!(
                "Could not open the preset {id}: {why}. Choose another one, or re-import it."
            ))),
        }
    }

    /// Saves the open workflow, with this length and size, as a new user preset.
    async fn save_as_preset(&mut self, name: String, frames: u32, size: Option<(u32, u32)>) {
        let Some(file) = self.opened.clone() else {
            self.events.send(Event::Error(
                "Open a workflow first, then save it as a preset.".into(),
            ));
            return;
        };
        self.preset_change(move |store| {
            let preset = preset_from_file(&file, &name, frames, size)
                .map_err(crate::presets::PresetError::Invalid)?;
            store
                .save_new(&preset)
                .map(|id| format!("Saved the preset \"{}\" ({})", preset.name, id.file()))
        })
        .await;
    }

    /// Runs one change to the presets on a blocking thread, says how it went, and lists again.
    async fn preset_change(
        &mut self,
        change: impl FnOnce(&PresetStore) -> Result<String, crate::presets::PresetError>
        + Send
        + 'static,
    ) {
        let store = self.presets.clone();
        let done = tokio::task::spawn_blocking(move || change(&store))
            .await
            .map_err(|e| e.to_string())
            .and_then(|done| done.map_err(|e| e.to_string()));
        match done {
            Ok(text) => self.events.send(Event::Notice(text)),
            Err(why) => self
                .events
                .send(Event::Error(format!("The preset was not changed: {why}"))),
        }
        self.list_presets();
    }

    /// Whether a ComfyUI folder (or a URL) is known; the first-run choice otherwise.
    async fn check_setup(&mut self) {
        if let Some(url) = &self.settings.server_url {
            self.events.send(Event::SetupFound {
                description: format!("the server at {url}"),
            });
            return;
        }
        let configured = self.settings.comfyui_dir.clone();
        let found =
            tokio::task::spawn_blocking(move || install::discover(configured.as_deref())).await;
        match found {
            Ok(Ok(install)) => self.events.send(Event::SetupFound {
                description: format!("ComfyUI in {}", install.root.display()),
            }),
            Ok(Err(why)) => self.events.send(Event::SetupMissing { why }),
            Err(e) => self.events.send(Event::SetupMissing { why: e.to_string() }),
        }
    }

    fn reload_history(&self) {
        let events = self.events.clone();
        let data_dir = self.data_dir.clone();
        let out_dir = self.out_dir();
        tokio::task::spawn_blocking(move || {
            match crate::runs::history::load_history(&data_dir, &out_dir) {
                Ok(history) => events.send(Event::HistoryLoaded {
                    items: history.items,
                    problems: history.problems.iter().map(|p| p.to_string()).collect(),
                }),
                Err(e) => events.send(Event::Error(format!(
                    "The run history could not be read: {e}"
                ))),
            }
        });
    }

    fn out_dir(&self) -> PathBuf {
        self.settings
            .output_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("runs"))
    }

    fn start_gpu_sampler(&mut self) {
        let Some(device) = self.probe.device(0).cloned() else {
            let reason = self
                .probe
                .unavailable_message()
                .unwrap_or_else(|| "GPU info unavailable".into());
            self.events.send(Event::GpuUnavailable { reason });
            return;
        };
        let (tx, rx) = std::sync::mpsc::channel();
        match Sampler::start(0, 2, tx) {
            Ok(sampler) => {
                self.sampler = Some(Arc::new(sampler));
                let events = self.events.clone();
                let pids = self.server_pids.clone();
                let name = device.name.clone();
                // The sampler is a thread of its own; its samples become events here.
                let _ = std::thread::Builder::new()
                    .name("wan-pilot-gpu-events".into())
                    .spawn(move || {
                        for event in rx {
                            if let SamplerEvent::Sample(sample) = event {
                                let ours_pids = pids.lock().map(|p| p.clone()).unwrap_or_default();
                                let reading = &sample.reading;
                                let ours: u64 = reading
                                    .processes
                                    .iter()
                                    .filter(|p| ours_pids.contains(&p.pid))
                                    .map(|p| p.used_bytes)
                                    .sum();
                                events.send(Event::GpuSample(GpuReading {
                                    name: name.clone(),
                                    total_bytes: reading.total_bytes,
                                    free_bytes: reading.free_bytes,
                                    ours_bytes: ours,
                                    others_bytes: reading.used_bytes.saturating_sub(ours),
                                    at_s: sample.since_start.as_secs_f64(),
                                }));
                            }
                        }
                    });
            }
            Err(e) => self.events.send(Event::GpuUnavailable {
                reason: format!("GPU info unavailable: {e}"),
            }),
        }
    }

    async fn start_server(&mut self) {
        if let Some(url) = self.settings.server_url.clone() {
            match AttachedServer::attach(&url).await {
                Ok(server) => {
                    self.events.send(Event::Attached {
                        url: server.url().to_string(),
                    });
                    self.attached = Some(server);
                }
                Err(e) => self.events.send(Event::Error(format!(
                    "The server at {url} did not answer: {e}. Check the address in Settings, \
                     or start that server."
                ))),
            }
            return;
        }
        if self.supervisor.is_none() {
            match self.make_supervisor().await {
                Ok(supervisor) => {
                    self.watch(&supervisor);
                    self.supervisor = Some(supervisor);
                    self.events.send(Event::ServerLaunchFlags(Some(
                        self.supervisor_flags.clone(),
                    )));
                }
                Err(message) => {
                    self.events.send(Event::SetupMissing {
                        why: message.clone(),
                    });
                    self.events.send(Event::Error(message));
                    return;
                }
            }
        }
        if let Some(supervisor) = &self.supervisor {
            supervisor.send(SupervisorCommand::Start);
        }
    }

    /// Finds and checks the ComfyUI folder, stops servers an earlier session left, and spawns
    /// the supervisor (which starts nothing until told).
    async fn make_supervisor(&mut self) -> Result<Supervisor, String> {
        let configured = self.settings.comfyui_dir.clone();
        let (install, flags): (Install, SupportedFlags) = tokio::task::spawn_blocking(move || {
            let install = install::discover(configured.as_deref())?;
            let flags = install::read_help(&install).map_err(|e| e.to_string())?;
            Ok::<_, String>((install, flags))
        })
        .await
        .map_err(|e| e.to_string())??;
        for leftover in find_leftovers(&self.dirs.locks) {
            self.events.send(Event::Notice(format!(
                "Stopping a server an earlier wan-pilot left running (port {})",
                leftover.record.port
            )));
            leftover.stop(Duration::from_secs(10)).await;
        }
        self.supervisor_flags = self.wanted_flags.clone();
        let config = SupervisorConfig {
            install,
            flags,
            settings: ServerSettings {
                preferred_port: self.settings.port,
                reserve_vram_gib: self.settings.reserve_gib,
                disable_cuda_malloc: self
                    .supervisor_flags
                    .iter()
                    .any(|flag| flag == crate::logic::DISABLE_CUDA_MALLOC),
                extra_args: self.settings.extra_args.clone(),
                timings: ServerTimings::default(),
                ..ServerSettings::default()
            },
            dirs: self.dirs.clone(),
            restart: RestartPolicy::default(),
        };
        Ok(Supervisor::spawn(config))
    }

    /// Forwards the supervisor's state and the server's log to the window.
    fn watch(&mut self, supervisor: &Supervisor) {
        let mut state = supervisor.state();
        let events = self.events.clone();
        let pids = self.server_pids.clone();
        let locks = self.dirs.locks.clone();
        self.watchers.push(tokio::spawn(async move {
            loop {
                let current = state.borrow_and_update().clone();
                if matches!(current, ServerState::Ready { .. }) {
                    let found: Vec<u32> = find_leftovers(&locks)
                        .iter()
                        .map(|l| l.record.server_pid)
                        .collect();
                    if let Ok(mut p) = pids.lock() {
                        *p = found;
                    }
                }
                events.send(Event::ServerState(current));
                if state.changed().await.is_err() {
                    break;
                }
            }
        }));
        self.watchers.push(tokio::spawn(log_tail::follow(
            self.dirs.logs.clone(),
            self.events.clone(),
        )));
    }

    async fn stop_server(&mut self) {
        if self.attached.take().is_some() {
            self.events.send(Event::ServerState(ServerState::Stopped));
            return;
        }
        if let Some(supervisor) = self.supervisor.take() {
            supervisor.shutdown().await;
            // The state watcher saw the last state; the log tail has nothing more to read.
            for watcher in self.watchers.drain(..) {
                watcher.abort();
            }
            self.events.send(Event::ServerState(ServerState::Stopped));
            self.events.send(Event::ServerLaunchFlags(None));
        }
    }

    /// Starts a run: it waits for the server (starting a managed one when none runs), then
    /// plans, submits and follows it in a task of its own.
    async fn start_run(&mut self, request: RunRequest) {
        if self.run.as_ref().is_some_and(|r| !r.task.is_finished()) {
            self.events.send(Event::Error(
                "A run is already going on; cancel it first.".into(),
            ));
            return;
        }
        if self.attached.is_none() {
            let stopped = self.supervisor.as_ref().is_none_or(|s| {
                matches!(
                    *s.state().borrow(),
                    ServerState::Stopped
                        | ServerState::Crashed { .. }
                        | ServerState::Stalled { .. }
                )
            });
            if stopped {
                self.start_server().await;
            }
        }
        let source = match (&self.attached, &self.supervisor) {
            (Some(attached), _) => ClientSource::Ready(attached.client().clone()),
            (None, Some(supervisor)) => ClientSource::Managed(supervisor.state()),
            (None, None) => {
                self.events.send(Event::RunFailed {
                    message: "there is no server to run on: locate ComfyUI or give a server \
                              URL in Settings"
                        .into(),
                });
                return;
            }
        };
        self.events.send(Event::RunStarted);
        let client_slot = Arc::new(Mutex::new(None));
        let context = RunContext {
            events: self.events.clone(),
            settings: self.settings.clone(),
            probe: self.probe.clone(),
            sampler: self.sampler.clone(),
            data_dir: self.data_dir.clone(),
            out_dir: self.out_dir(),
            client_slot: client_slot.clone(),
            commands: self.self_tx.clone(),
        };
        let task = tokio::spawn(run_task(context, source, request));
        self.run = Some(ActiveRun {
            task,
            client: client_slot,
        });
    }

    async fn cancel_run(&mut self) {
        let Some(run) = &self.run else {
            return;
        };
        if run.task.is_finished() {
            return;
        }
        let client = run.client.lock().ok().and_then(|c| c.clone());
        match client {
            Some(client) => {
                if let Err(e) = client.interrupt(None).await {
                    self.events.send(Event::Error(format!(
                        "The server did not take the cancel: {e}"
                    )));
                }
            }
            None => {
                // Still waiting for the server: nothing was submitted.
                run.task.abort();
                self.events.send(Event::RunFailed {
                    message: "cancelled before it started".into(),
                });
            }
        }
    }

    async fn shutdown(&mut self) {
        if let Some(run) = self.run.take() {
            let client = run.client.lock().ok().and_then(|c| c.clone());
            if let Some(client) = client {
                let _ = tokio::time::timeout(Duration::from_secs(2), client.interrupt(None)).await;
            }
            run.task.abort();
        }
        self.stop_server().await;
        for watcher in self.watchers.drain(..) {
            watcher.abort();
        }
    }
}

/// Where a run gets its server's client.
enum ClientSource {
    /// The user's own server, already answering.
    Ready(Client),
    /// The managed server: wait until it is ready, then talk to its URL.
    Managed(tokio::sync::watch::Receiver<ServerState>),
}

/// What a run task needs from the worker (owned copies, so the task stands alone).
struct RunContext {
    events: EventSender,
    settings: WindowSettings,
    probe: Arc<GpuProbe>,
    sampler: Option<Arc<Sampler>>,
    data_dir: PathBuf,
    out_dir: PathBuf,
    client_slot: Arc<Mutex<Option<Client>>>,
    /// For asking the worker to reload the history once the run is recorded.
    commands: UnboundedSender<Command>,
}

/// How long a run waits for the managed server to become ready (a first start of a real
/// ComfyUI with many custom nodes can take minutes).
const SERVER_WAIT: Duration = Duration::from_secs(600);

async fn run_task(context: RunContext, source: ClientSource, request: RunRequest) {
    let events = context.events.clone();
    let outcome = run_inner(&context, source, request).await;
    match outcome {
        Ok(summary) => events.send(Event::RunFinished {
            outputs: summary.outputs,
            run_dir: summary.run_dir,
            total_s: summary.total.as_secs_f64(),
        }),
        Err(message) => events.send(Event::RunFailed { message }),
    }
    let _ = context.commands.send(Command::ReloadHistory);
}

async fn run_inner(
    context: &RunContext,
    source: ClientSource,
    request: RunRequest,
) -> Result<crate::runs::run::RunSummary, String> {
    let client = match source {
        ClientSource::Ready(client) => client,
        ClientSource::Managed(mut state) => {
            let url = tokio::time::timeout(SERVER_WAIT, async {
                loop {
                    let current = state.borrow_and_update().clone();
                    match current {
                        ServerState::Ready { url } => return Ok(url),
                        ServerState::Crashed { explanation, .. } => {
                            return Err(format!("the server did not start: {explanation}"));
                        }
                        ServerState::Stalled { .. } => {
                            return Err("the server stalled while starting; see its log".into());
                        }
                        _ => {}
                    }
                    if state.changed().await.is_err() {
                        return Err("the server was stopped".to_string());
                    }
                }
            })
            .await
            .map_err(|_| {
                format!(
                    "the server was not ready within {} minutes",
                    SERVER_WAIT.as_secs() / 60
                )
            })??;
            Client::new(&url).map_err(|e| e.to_string())?
        }
    };
    if let Ok(mut slot) = context.client_slot.lock() {
        *slot = Some(client.clone());
    }
    let file = request.file.clone();
    let settings = context.settings.clone();
    let probe = context.probe.clone();
    let data_dir = context.data_dir.clone();
    let opened =
        tokio::task::spawn_blocking(move || open_and_plan(&file, &settings, &probe, &data_dir))
            .await
            .map_err(|e| e.to_string())??;
    let spec = RunSpec {
        workflow_file: request.file.clone(),
        frames: request.frames,
        size: request.size,
        seed: request.seed,
        prompt: request.prompt.clone(),
        compile: request
            .compile
            .map_or(CompileChoice::Auto, CompileChoice::Mode),
        // The decoded frames are what the output panel lists (and, later, previews).
        frame_tap: true,
        out_dir: context.out_dir.clone(),
        retry_on_oom: context.settings.auto_oom_retry,
        max_attempts: 6,
    };
    let timings = ServerTimings::default();
    let target = RunTarget {
        client: &client,
        server_exit: None,
        sampler: context.sampler.as_deref(),
        health_interval: timings.health_interval,
        missed_probes: timings.missed_probes,
    };
    let events = context.events.clone();
    let mut on_event = move |event| events.send(Event::RunEvent(event));
    crate::runs::run::run(
        target,
        &spec,
        &opened.loaded,
        opened.planner.as_ref().ok(),
        &mut on_event,
    )
    .await
    .map_err(|e| e.to_string())
}

/// A workflow read, inspected and planned.
pub struct Opened {
    pub loaded: LoadedWorkflow,
    pub summary: WorkflowSummary,
    /// The plan, or why there is none.
    pub planner: Result<Planner, String>,
    /// The picked card's name when NVML found none.
    pub picked_card: Option<String>,
}

/// Reads `path`, inspects it with the bundled node definitions and plans it for the GPU NVML
/// found, else for the card picked in the settings. Blocking: call it off the UI thread.
pub fn open_and_plan(
    path: &Path,
    settings: &WindowSettings,
    probe: &GpuProbe,
    data_dir: &Path,
) -> Result<Opened, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it ({e})"))?;
    let loaded = crate::workflow::load::load(&bytes).map_err(|e| e.to_string())?;
    let inspection = recognise::inspect(&loaded, NodeDefs::bundled()).map_err(|e| e.to_string())?;
    let summary = summarise(path, &inspection);
    let picked_card = probe
        .devices()
        .is_empty()
        .then(|| settings.picked_card.clone());
    let request = PlanRequest {
        gpu: picked_card.clone(),
        reserve_gib: settings.reserve_gib,
        margin_gib: settings.margin_gib,
        comfyui_dir: settings.comfyui_dir.clone(),
        ..PlanRequest::default()
    };
    let calibration = crate::runs::store::load_calibration_in(data_dir)
        .map(|loaded| loaded.calibration)
        .unwrap_or_default();
    let planner = Planner::new(
        &inspection,
        &request,
        picked_card.is_none().then_some(probe),
        &calibration,
    )
    .map_err(|e| e.to_string());
    Ok(Opened {
        loaded,
        summary,
        planner,
        picked_card,
    })
}

/// What the window shows of an inspection.
pub fn summarise(path: &Path, inspection: &Inspection) -> WorkflowSummary {
    let value = |setting: &Option<recognise::Setting>| setting.as_ref().and_then(|s| s.value);
    WorkflowSummary {
        file: path.to_path_buf(),
        family: inspection.family.as_str().to_string(),
        frame_node: inspection
            .frames
            .as_ref()
            .map(|s| format!("{} #{}.{}", s.class_type, s.node, s.input)),
        frames: value(&inspection.frames).map(|v| v.max(1.0) as u32),
        size: value(&inspection.width)
            .zip(value(&inspection.height))
            .map(|(w, h)| (w as u32, h as u32)),
        fps: value(&inspection.fps),
        models: inspection
            .models
            .iter()
            .filter(|m| m.active)
            .map(|m| format!("{:?}: {}", m.role, m.file))
            .collect(),
        warnings: inspection.warnings.clone(),
        takes_start_image: matches!(
            inspection.family,
            Family::I2v | Family::Ti2v | Family::Flf2v
        ),
    }
}

/// The preset list as an event; files set aside earlier are read again for their reasons, so
/// the window can say why each is unusable.
fn listing_event(store: &PresetStore) -> Event {
    match store.list() {
        Ok(listing) => {
            let mut broken = listing.broken;
            for path in listing.kept_aside {
                if broken.iter().any(|b| b.kept_as.as_ref() == Some(&path)) {
                    continue;
                }
                let reason = match std::fs::read(&path) {
                    Ok(bytes) => Preset::parse(&bytes)
                        .err()
                        .unwrap_or_else(|| "set aside earlier; it reads well now".into()),
                    Err(e) => format!("cannot read it ({e})"),
                };
                broken.push(BrokenPreset {
                    file: path.clone(),
                    reason,
                    kept_as: Some(path),
                    not_moved: None,
                });
            }
            Event::PresetsListed {
                listing: Ok(listing.presets),
                broken,
            }
        }
        Err(e) => Event::PresetsListed {
            listing: Err(e.to_string()),
            broken: Vec::new(),
        },
    }
}

/// The preset a workflow file makes, with the window's length and size as its defaults.
fn preset_from_file(
    file: &Path,
    name: &str,
    frames: u32,
    size: Option<(u32, u32)>,
) -> Result<Preset, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read {} ({e})", file.display()))?;
    let loaded = crate::workflow::load::load(&bytes).map_err(|e| e.to_string())?;
    let inspection = recognise::inspect(&loaded, NodeDefs::bundled()).map_err(|e| e.to_string())?;
    let mut defaults = PresetDefaults::from_inspection(&inspection, PresetDefaults::default());
    defaults.frames = frames;
    if let Some((width, height)) = size {
        defaults.width = width;
        defaults.height = height;
    }
    let prompt = match (&loaded.api, &loaded.ui) {
        (Some((prompt, _)), _) if loaded.reads_prompt() => prompt.clone(),
        (_, Some(ui)) => crate::workflow::convert::ui_to_api(
            ui,
            NodeDefs::bundled(),
            &crate::workflow::convert::ConvertOptions::default(),
        )
        .map_err(|e| e.to_string())?,
        (Some((prompt, _)), None) => prompt.clone(),
        (None, None) => return Err("it holds no workflow".into()),
    };
    Preset::from_api(name, "", defaults, &prompt).map_err(|e| e.to_string())
}

/// Puts `path` at the front of the "Recent" list, keeps it in the settings file and shows it.
fn remember_recent(
    recent: &Mutex<Vec<PathBuf>>,
    path: &Path,
    data_dir: &Path,
    events: &EventSender,
) {
    // Held until the file is written: a settings save waits for it (and the other way round).
    let mut list = recent.lock().unwrap_or_else(|p| p.into_inner());
    list.retain(|p| p != path);
    list.insert(0, path.to_path_buf());
    list.truncate(RECENT_LIMIT);
    events.send(Event::RecentChanged(list.clone()));
    // The other settings stay as the file has them (the last save wrote them).
    if let Ok(loaded) = crate::settings::load_settings_in(data_dir)
        && loaded.settings.recent != *list
    {
        let mut file = loaded.settings;
        file.recent = list.clone();
        if let Err(e) = crate::settings::save_settings_in(data_dir, &file) {
            events.send(Event::Error(format!(
                "The recent workflows were not saved: {e}. Check that the data folder is writable."
            )));
        }
    }
}

/// The native file dialog for a preset file (blocking: call it off the UI thread).
fn dialog_path(save: bool) -> Option<PathBuf> {
    let dialog = rfd::FileDialog::new()
        .set_title(if save {
            "Export the preset to"
        } else {
            "Import a preset file"
        })
        .add_filter("Presets", &["json"]);
    if save {
        dialog.set_file_name("preset.json").save_file()
    } else {
        dialog.pick_file()
    }
}
