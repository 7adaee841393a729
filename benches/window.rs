//! Benchmark: the window's cold start to its first painted frame (`--screenshot`), the frame
//! time while the length slider moves (egui_kittest, the budget panel with a real planner), and
//! the CPU the idle window uses (should be near zero: it repaints only when something changed).
//! Needs a display for the first and last parts:
//! `xvfb-run -a -s "-screen 0 1280x800x24" cargo bench --bench window`. Prints, asserts nothing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use wan_pilot::budget::calibrate::Calibration;
use wan_pilot::budget::physical::CompileMode;
use wan_pilot::policy::zones::BudgetView;
use wan_pilot::runs::plan::{PlanRequest, Planner};
use wan_pilot::ui::budget_ui::budget_ui;
use wan_pilot::workflow::load::load;
use wan_pilot::workflow::node_defs::NodeDefs;
use wan_pilot::workflow::recognise;

const WORKFLOW: &str = "api_wan22_14B_i2v_lightning_4step.json";

fn main() {
    let tmp = std::env::temp_dir().join(format!("wan-pilot-bench-window-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("a temporary folder");
    let binary = app_binary();
    let display = std::env::var_os("DISPLAY").is_some();
    match (&binary, display) {
        (None, _) => println!(
            "cold start, idle CPU: skipped: no wan-pilot binary beside the bench (run `cargo build --release` first)"
        ),
        (Some(_), false) => {
            println!("cold start, idle CPU: skipped: DISPLAY is unset (run under xvfb-run)")
        }
        (Some(binary), true) => cold_start(binary, &tmp),
    }
    slider_frames();
    if let (Some(binary), true) = (&binary, display) {
        idle_cpu(binary, &tmp);
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

/// `target/<profile>/wan-pilot`: the bench runs from `target/<profile>/deps/`.
fn app_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let name = format!("wan-pilot{}", std::env::consts::EXE_SUFFIX);
    exe.ancestors()
        .skip(1)
        .take(3)
        .map(|dir| dir.join(&name))
        .find(|path| path.is_file())
}

fn profile_of(binary: &Path) -> String {
    binary
        .parent()
        .and_then(Path::file_name)
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn spawn(binary: &Path, data_dir: &Path, screenshot: Option<&Path>) -> Child {
    let mut command = Command::new(binary);
    command
        .env("WAN_PILOT_DATA_DIR", data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(shot) = screenshot {
        command.arg("--screenshot").arg(shot);
    }
    command.spawn().expect("the app starts")
}

/// Spawn → the `--screenshot` PNG written (the first painted frame, read back), 5 runs.
fn cold_start(binary: &Path, tmp: &Path) {
    let mut samples = Vec::new();
    for run in 0..5 {
        let data_dir = tmp.join(format!("cold-{run}"));
        std::fs::create_dir_all(&data_dir).expect("a data folder");
        let shot = data_dir.join("shot.png");
        let started = Instant::now();
        let mut child = spawn(binary, &data_dir, Some(&shot));
        let deadline = started + Duration::from_secs(60);
        let elapsed = loop {
            if shot.metadata().is_ok_and(|m| m.len() > 0) {
                break Some(started.elapsed());
            }
            if let Ok(Some(status)) = child.try_wait() {
                if shot.exists() {
                    break Some(started.elapsed());
                }
                println!("cold start run {run}: the app exited ({status}) without a screenshot");
                break None;
            }
            if Instant::now() > deadline {
                println!("cold start run {run}: no screenshot within 60 s");
                break None;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let _ = child.wait_timeout_or_kill(Duration::from_secs(10));
        if let Some(elapsed) = elapsed {
            samples.push(elapsed.as_secs_f64() * 1000.0);
        }
    }
    if samples.is_empty() {
        return;
    }
    samples.sort_by(f64::total_cmp);
    println!(
        "cold start to first painted frame ({} build, {} runs): min {:.0} ms, median {:.0} ms",
        profile_of(binary),
        samples.len(),
        samples[0],
        samples[samples.len() / 2]
    );
}

/// Waits for the child to exit on its own, and kills it if it does not.
trait WaitOrKill {
    fn wait_timeout_or_kill(&mut self, within: Duration) -> std::io::Result<()>;
}

impl WaitOrKill for Child {
    fn wait_timeout_or_kill(&mut self, within: Duration) -> std::io::Result<()> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill()?;
        self.wait().map(|_| ())
    }
}

struct Panel {
    view: BudgetView,
    frames: u32,
    mode_override: Option<CompileMode>,
}

fn budget_view() -> BudgetView {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/workflows");
    let top = dir.join(WORKFLOW);
    let path = if top.exists() {
        top
    } else {
        dir.join("community").join(WORKFLOW)
    };
    let bytes = std::fs::read(&path).expect("the shared corpus is beside the checkout");
    let loaded = load(&bytes).expect("loads");
    let inspection = recognise::inspect(&loaded, NodeDefs::bundled()).expect("inspects");
    let request = PlanRequest {
        gpu: Some("RTX 4090".into()),
        free_vram_gib: Some(18.0),
        margin_gib: 2.0,
        ..Default::default()
    };
    let planner = Planner::new(&inspection, &request, None, &Calibration::default())
        .expect("plans for a named card");
    let fps = inspection.fps.as_ref().and_then(|s| s.value);
    BudgetView::for_planner(&planner, fps)
}

/// The budget panel in egui_kittest (its lazy renderer draws nothing: the UI pass only),
/// frames stepped 1..241 by 4, one harness step each.
fn slider_frames() {
    let panel = Panel {
        view: budget_view(),
        frames: 1,
        mode_override: None,
    };
    let mut harness = Harness::builder()
        .with_size(egui::vec2(820.0, 560.0))
        .build_ui_state(
            |ui, panel: &mut Panel| {
                egui::Frame::central_panel(ui.style()).show(ui, |ui| {
                    budget_ui(ui, &panel.view, &mut panel.frames, &mut panel.mode_override);
                });
            },
            panel,
        );
    harness.run();
    let mut samples: Vec<f64> = (1..=241)
        .step_by(4)
        .map(|frames| {
            harness.state_mut().frames = frames;
            let started = Instant::now();
            harness.step();
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    let p95 = samples[((samples.len() as f64 * 0.95).ceil() as usize - 1).min(samples.len() - 1)];
    println!(
        "frame time while the slider moves (budget panel, {} steps of 4 frames, egui_kittest): median {:.2} ms, p95 {:.2} ms",
        samples.len(),
        samples[samples.len() / 2],
        p95
    );
}

/// The real window, idle: utime + stime over 5 s after 2 s to settle.
fn idle_cpu(binary: &Path, tmp: &Path) {
    if !cfg!(target_os = "linux") {
        println!("idle CPU: skipped (reads /proc, Linux only)");
        return;
    }
    let data_dir = tmp.join("idle");
    std::fs::create_dir_all(&data_dir).expect("a data folder");
    let mut child = spawn(binary, &data_dir, None);
    std::thread::sleep(Duration::from_secs(2));
    let pid = child.id();
    let before = cpu_ticks(pid);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let after = cpu_ticks(pid);
    let wall = started.elapsed().as_secs_f64();
    let exited = child.try_wait().ok().flatten();
    let _ = child.kill();
    let _ = child.wait();
    match (before, after, exited) {
        (_, _, Some(status)) => println!("idle CPU: the window exited early ({status})"),
        (Some(before), Some(after), None) => {
            let hz = clock_ticks_per_second();
            let cpu = (after - before) as f64 / hz / wall * 100.0;
            println!(
                "idle CPU ({} build, 5 s after 2 s to settle): {cpu:.2} % of one core ({} ticks at {hz} Hz)",
                profile_of(binary),
                after - before
            );
        }
        _ => println!("idle CPU: could not read /proc/{pid}/stat"),
    }
}

/// utime + stime of a process, in clock ticks, from `/proc/<pid>/stat`.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15 (1-based, whole line).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(unix)]
fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

#[cfg(not(unix))]
fn clock_ticks_per_second() -> f64 {
    100.0
}
