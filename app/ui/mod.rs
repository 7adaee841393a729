//! The window: [`WanPilotApp`] drains the worker's events into [`AppState`] (in `logic`), then
//! draws the state and collects the commands the user gives (in `ui`). Drawing functions are
//! `*_ui(ui, …)`; none does I/O or waits.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use egui::{Key, KeyboardShortcut, Modifiers};

use crate::logic::{self, AppState, Command, Setup, Theme, WindowSettings};
use crate::worker::Worker;

pub mod budget_ui;
pub mod icon;
pub mod panels;
pub mod settings_ui;
pub mod top_bar;

/// What the window keeps for itself between frames (text being typed, which tab is open).
#[derive(Debug, Clone, Default)]
pub struct UiLocal {
    /// The typed workflow path (rfd can fail silently on Linux without a portal).
    pub path_text: String,
    pub log_search: String,
    pub drawer: DrawerTab,
    pub settings_open: bool,
    pub settings_draft: Option<settings_ui::SettingsDraft>,
    /// The attach URL typed in the first-run choice.
    pub attach_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DrawerTab {
    #[default]
    Log,
    History,
    Vram,
}

/// A `--screenshot` in progress: after the window settled, one screenshot, written, then close.
struct ScreenshotJob {
    path: PathBuf,
    started: Instant,
    requested: bool,
    frames: u32,
    result: Arc<Mutex<Option<Result<(), String>>>>,
}

/// The app: state, the worker, and what the window keeps for itself.
pub struct WanPilotApp {
    state: AppState,
    worker: Worker,
    local: UiLocal,
    screenshot: Option<ScreenshotJob>,
    applied_theme: Option<Theme>,
    /// The launch flags last told to the worker.
    sent_launch_flags: Vec<String>,
}

impl WanPilotApp {
    /// Starts the worker; it reports the GPU, the ComfyUI folder and the history at once.
    pub fn new(
        ctx: &egui::Context,
        settings: WindowSettings,
        data_dir: PathBuf,
    ) -> Result<WanPilotApp, String> {
        let worker = Worker::spawn(Arc::new(ctx.clone()), settings.clone(), data_dir)?;
        Ok(WanPilotApp {
            state: AppState::new(settings),
            worker,
            local: UiLocal::default(),
            screenshot: None,
            applied_theme: None,
            sent_launch_flags: Vec::new(),
        })
    }

    /// What the window shows (for tests).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Gives a command as a button would.
    pub fn send(&mut self, command: Command) {
        match command {
            Command::SetFrames(frames) => self.state.set_frames(frames),
            Command::SetCompileOverride(mode) => self.state.set_compile_override(mode),
            other => self.worker.commands.send(other),
        }
        self.sync_launch_flags();
    }

    /// Tells the worker when the chosen mode's server flags change (the next server start or
    /// restart uses them).
    fn sync_launch_flags(&mut self) {
        let wanted = self
            .state
            .plan
            .as_ref()
            .map(|plan| plan.launch_flags.clone())
            .unwrap_or_default();
        if wanted != self.sent_launch_flags {
            self.sent_launch_flags = wanted.clone();
            self.worker.commands.send(Command::SetLaunchFlags(wanted));
        }
    }

    /// Folds the worker's events into the state; keys; the screenshot job.
    fn update_state(&mut self, ctx: &egui::Context) {
        for event in self.worker.events.drain() {
            logic::apply(&mut self.state, event);
        }
        self.sync_launch_flags();
        if self.applied_theme != Some(self.state.settings.theme) {
            ctx.set_theme(match self.state.settings.theme {
                Theme::System => egui::ThemePreference::System,
                Theme::Dark => egui::ThemePreference::Dark,
                Theme::Light => egui::ThemePreference::Light,
            });
            self.applied_theme = Some(self.state.settings.theme);
        }
        let (open, run, cancel, dropped) = ctx.input_mut(|input| {
            (
                input.consume_shortcut(&KeyboardShortcut::new(Modifiers::COMMAND, Key::O)),
                input.consume_shortcut(&KeyboardShortcut::new(Modifiers::COMMAND, Key::Enter)),
                input.consume_key(Modifiers::NONE, Key::Escape),
                input
                    .raw
                    .dropped_files
                    .iter()
                    .map(|file| file.path().to_path_buf())
                    .find(|path| !path.as_os_str().is_empty()),
            )
        });
        if open {
            self.send(Command::BrowseForWorkflow);
        }
        if run {
            self.run_now();
        }
        if cancel && self.state.run.active {
            self.send(Command::Cancel);
        }
        if let Some(path) = dropped {
            self.send(Command::OpenFile(path));
        }
        self.screenshot_step(ctx);
    }

    /// Run with the current inputs (a new random seed when asked).
    fn run_now(&mut self) {
        if self.state.run_blocker().is_some() {
            return;
        }
        if self.state.inputs.randomise_seed {
            self.state.inputs.seed = random_seed();
        }
        if let Some(request) = self.state.run_request(self.state.inputs.seed) {
            self.send(Command::Run(request));
        }
    }

    fn screenshot_step(&mut self, ctx: &egui::Context) {
        let Some(job) = &mut self.screenshot else {
            return;
        };
        job.frames += 1;
        let settled = self.state.setup != Setup::Checking || job.started.elapsed().as_secs() >= 3;
        if !job.requested && job.frames >= 3 && settled {
            job.requested = true;
            let path = job.path.clone();
            let result = job.result.clone();
            let repaint = ctx.clone();
            ctx.send_viewport_cmd(egui::ViewportCommand::Screenshot(
                egui::ScreenshotCallback::new(move |image: Arc<egui::ColorImage>| {
                    let written = write_png(&path, &image);
                    if let Ok(mut slot) = result.lock() {
                        *slot = Some(written);
                    }
                    repaint.request_repaint();
                }),
            ));
        }
        let done = job.result.lock().map(|r| r.is_some()).unwrap_or(true);
        if done || job.started.elapsed().as_secs() > 60 {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        } else {
            // Until the shot is taken the window keeps painting.
            ctx.request_repaint();
        }
    }
}

impl eframe::App for WanPilotApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.update_state(ctx);
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let mut outbox: Vec<Command> = Vec::new();
        let mut run_clicked = false;
        egui::Panel::top("top_bar").show(ui, |ui| {
            top_bar::top_bar_ui(ui, &self.state, &mut self.local, &mut outbox);
        });
        egui::Panel::bottom("drawer")
            .resizable(true)
            .default_size(200.0)
            .show(ui, |ui| {
                panels::drawer_ui(ui, &self.state, &mut self.local, &mut outbox);
            });
        egui::Panel::left("left")
            .resizable(true)
            .default_size(300.0)
            .show(ui, |ui| {
                panels::left_ui(ui, &mut self.state, &mut self.local, &mut outbox);
            });
        egui::Panel::right("right")
            .resizable(true)
            .default_size(260.0)
            .show(ui, |ui| {
                panels::outputs_ui(ui, &self.state);
            });
        egui::CentralPanel::default().show(ui, |ui| {
            if matches!(self.state.setup, Setup::Missing { .. }) {
                panels::first_run_ui(ui, &self.state, &mut self.local, &mut outbox);
                ui.separator();
            }
            run_clicked = panels::centre_ui(ui, &self.state, &mut outbox);
        });
        settings_ui::settings_window(ui.ctx(), &self.state, &mut self.local, &mut outbox);
        panels::toasts_ui(ui.ctx(), &self.state);
        if run_clicked {
            self.run_now();
        }
        for command in outbox {
            self.send(command);
        }
    }

    fn on_exit(&mut self) {
        self.worker.shutdown();
    }
}

/// A seed from the clock and a counter: different on every click, no extra crate.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    // ComfyUI's seed widget stops at 2^53 in the frontend.
    hasher.finish() & ((1 << 53) - 1)
}

fn write_png(path: &std::path::Path, image: &egui::ColorImage) -> Result<(), String> {
    let [width, height] = image.size;
    let mut bytes = Vec::with_capacity(width * height * 4);
    for pixel in &image.pixels {
        bytes.extend_from_slice(&pixel.to_array());
    }
    let buffer = image::RgbaImage::from_raw(width as u32, height as u32, bytes)
        .ok_or_else(|| "the screenshot had an unexpected size".to_string())?;
    buffer
        .save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// How the window is opened.
#[derive(Debug, Clone, Default)]
pub struct WindowOptions {
    /// Render the window, write a PNG here, and exit.
    pub screenshot: Option<PathBuf>,
}

/// Opens the window and returns when it is closed. With `screenshot`, exits after writing it.
pub fn run_window(options: WindowOptions) -> Result<(), String> {
    let data_dir = crate::runs::store::data_dir().map_err(|e| e.to_string())?;
    // One small file, read before the window opens (the UI thread never reads files).
    let (mut settings, settings_notice) = match crate::settings::load_settings_in(&data_dir) {
        Ok(loaded) => (
            WindowSettings::from_file(&loaded.settings),
            loaded
                .message()
                .map(|text| (text, loaded.set_aside.is_some())),
        ),
        Err(e) => (
            WindowSettings::default(),
            Some((
                format!("The settings could not be read ({e}); using the defaults."),
                true,
            )),
        ),
    };
    if let Some(dir) = std::env::var_os("WAN_PILOT_COMFYUI_DIR").filter(|dir| !dir.is_empty()) {
        settings.comfyui_dir = Some(PathBuf::from(dir));
    }
    let mut viewport = egui::ViewportBuilder::default()
        .with_title("wan-pilot")
        .with_app_id("wan-pilot")
        .with_inner_size([1280.0, 800.0])
        .with_min_inner_size([900.0, 600.0]);
    if let Some(icon) = icon::icon_data() {
        viewport = viewport.with_icon(icon);
    }
    let native = eframe::NativeOptions {
        viewport,
        renderer: eframe::Renderer::Wgpu,
        // The integrated GPU where there is one: the NVIDIA card's memory is ComfyUI's.
        wgpu_options: egui_wgpu_low_power(),
        ..eframe::NativeOptions::default()
    };
    let result: Arc<Mutex<Option<Result<(), String>>>> = Arc::new(Mutex::new(None));
    let job_result = result.clone();
    let screenshot = options.screenshot.clone();
    eframe::run_native(
        "wan-pilot",
        native,
        Box::new(move |cc| {
            let mut app = WanPilotApp::new(&cc.egui_ctx, settings, data_dir)?;
            if let Some((text, is_error)) = settings_notice {
                let event = if is_error {
                    logic::Event::Error(text)
                } else {
                    logic::Event::Notice(text)
                };
                logic::apply(&mut app.state, event);
            }
            app.screenshot = screenshot.map(|path| ScreenshotJob {
                path,
                started: Instant::now(),
                requested: false,
                frames: 0,
                result: job_result,
            });
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| format!("the window could not open: {e}"))?;
    if options.screenshot.is_some() {
        return match result.lock().ok().and_then(|mut r| r.take()) {
            Some(outcome) => outcome,
            None => Err("the window closed before the screenshot was taken".into()),
        };
    }
    Ok(())
}

/// wgpu set up for the low-power adapter (`WGPU_POWER_PREF` still overrides it).
fn egui_wgpu_low_power() -> eframe::egui_wgpu::WgpuConfiguration {
    use eframe::egui_wgpu::{WgpuConfiguration, WgpuSetup};
    let mut config = WgpuConfiguration::default();
    if let WgpuSetup::CreateNew(create) = &mut config.wgpu_setup {
        create.power_preference = eframe::wgpu::PowerPreference::from_env()
            .unwrap_or(eframe::wgpu::PowerPreference::LowPower);
    }
    config
}
