//! The command-line subcommands: thin wrappers that read files, call the same library functions
//! the window uses, and print. Errors come back as one line naming the file.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::Path;

use serde_json::Value;

use crate::runs::plan::{MAX_PLANNED_FRAMES, PlanError, PlanRequest, Planner};
use crate::workflow::api::ApiPrompt;
use crate::workflow::convert::{ConvertOptions, flat_to_api, repair_for_server};
use crate::workflow::edit::{self, CompileMode, Edits};
use crate::workflow::flat::{self, Strictness};
use crate::workflow::load::{LoadedWorkflow, load};
use crate::workflow::node_defs::NodeDefs;
use crate::workflow::{WorkflowError, recognise};

/// Files larger than this are refused before reading: no workflow or output video is this big.
pub const MAX_INPUT_BYTES: u64 = 1 << 30;

/// Why a subcommand failed; printed as one line after "wan-pilot: ".
#[derive(Debug)]
pub struct Failure {
    message: String,
    exit_code: u8,
}

impl Failure {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            exit_code: 2,
        }
    }

    fn in_file(path: &Path, error: impl fmt::Display) -> Self {
        Self::new(format!("{}: {error}", path.display()))
    }

    pub fn exit_code(&self) -> u8 {
        self.exit_code
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// For subcommands whose work belongs to a later milestone: say so and exit 2, never pretend.
pub fn not_available(what: &str, tracked_in: &str) -> Result<(), Failure> {
    Err(Failure::new(format!(
        "{what} is not available yet in this build (tracked in {tracked_in})"
    )))
}

pub fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let (w, h) = text
        .split_once(['x', 'X', '×'])
        .ok_or_else(|| format!("'{text}' is not a size like 832x480"))?;
    let number = |s: &str| {
        s.trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (16..=16384).contains(n))
            .ok_or_else(|| format!("'{s}' in '{text}' is not a size between 16 and 16384 pixels"))
    };
    Ok((number(w)?, number(h)?))
}

pub fn parse_compile_mode(text: &str) -> Result<CompileMode, String> {
    CompileMode::parse(text).ok_or_else(|| {
        let all: Vec<&str> = CompileMode::ALL.iter().map(|m| m.as_str()).collect();
        format!(
            "'{text}' is not a compile mode; use one of {}",
            all.join(", ")
        )
    })
}

/// `--compile` of `run`: a mode, "auto" or "as-written".
pub fn parse_compile_choice(text: &str) -> Result<crate::runs::run::CompileChoice, Failure> {
    use crate::runs::run::CompileChoice;
    match text {
        "auto" => Ok(CompileChoice::Auto),
        "as-written" => Ok(CompileChoice::AsWritten),
        other => parse_compile_mode(other)
            .map(CompileChoice::Mode)
            .map_err(|e| Failure::new(format!("{e}, auto or as-written"))),
    }
}

fn read_input(path: &Path) -> Result<Vec<u8>, Failure> {
    let meta = fs::metadata(path).map_err(|e| Failure::in_file(path, e))?;
    if meta.is_dir() {
        return Err(Failure::in_file(path, "is a folder, not a workflow file"));
    }
    if meta.len() > MAX_INPUT_BYTES {
        return Err(Failure::in_file(
            path,
            format!(
                "is {} MB; no workflow or output file is that large",
                meta.len() >> 20
            ),
        ));
    }
    fs::read(path).map_err(|e| Failure::in_file(path, e))
}

fn node_defs(object_info: Option<&Path>) -> Result<std::borrow::Cow<'static, NodeDefs>, Failure> {
    match object_info {
        None => Ok(std::borrow::Cow::Borrowed(NodeDefs::bundled())),
        Some(path) => {
            let bytes = read_input(path)?;
            let value: Value = serde_json::from_slice(&bytes)
                .map_err(|e| Failure::in_file(path, WorkflowError::from_json(&e)))?;
            let defs = NodeDefs::from_object_info(&value, &path.display().to_string())
                .map_err(|e| Failure::in_file(path, e))?;
            Ok(std::borrow::Cow::Owned(defs))
        }
    }
}

fn load_file(path: &Path) -> Result<LoadedWorkflow, Failure> {
    let bytes = read_input(path)?;
    load(&bytes).map_err(|e| Failure::in_file(path, e))
}

pub fn inspect(path: &Path, as_json: bool, object_info: Option<&Path>) -> Result<(), Failure> {
    let defs = node_defs(object_info)?;
    let loaded = load_file(path)?;
    let inspection = recognise::inspect(&loaded, &defs).map_err(|e| Failure::in_file(path, e))?;
    let json = serde_json::to_value(&inspection).map_err(|e| Failure::new(e.to_string()))?;
    let text = if as_json {
        serde_json::to_string_pretty(&json).map_err(|e| Failure::new(e.to_string()))?
    } else {
        summary(&json)
    };
    print_out(&text)
}

/// The human-readable `inspect`: the same facts as the JSON, a line each.
fn summary(json: &Value) -> String {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "?".to_string(),
        other => other.to_string(),
    };
    let place = |v: &Value| {
        let mut s = format!("{} #{}", text(&v["class_type"]), text(&v["node"]));
        if v["active"] == Value::Bool(false) {
            s.push_str(" (off)");
        }
        s
    };
    let quantity = |name: &str, v: &Value| {
        if v.is_null() || v.get("node").is_none() {
            return format!("{name:<9} not found");
        }
        let source = v["source"]["chain"]
            .as_str()
            .or_else(|| v["source"].as_str())
            .unwrap_or("");
        format!(
            "{name:<9} {} on {}.{}  [{}]",
            text(&v["value"]),
            place(v),
            text(&v["input"]),
            source
        )
    };
    let mut lines = vec![format!(
        "{:<9} {} workflow, {}",
        "format",
        text(&json["format"]),
        text(&json["family"])
    )];
    lines.push(quantity("frames", &json["frames"]));
    lines.push(quantity("width", &json["width"]));
    lines.push(quantity("height", &json["height"]));
    lines.push(quantity("fps", &json["fps"]));
    for model in json["models"].as_array().into_iter().flatten() {
        lines.push(format!(
            "{:<9} {:<12} {}  ({})",
            "model",
            text(&model["role"]),
            text(&model["file"]),
            place(model)
        ));
    }
    for sampler in json["samplers"].as_array().into_iter().flatten() {
        lines.push(format!(
            "{:<9} {}: steps {}, {}–{}, cfg {}",
            "sampler",
            place(sampler),
            text(&sampler["steps"]),
            text(&sampler["start"]),
            text(&sampler["end"]),
            text(&sampler["cfg"])
        ));
    }
    for node in json["compile"].as_array().into_iter().flatten() {
        lines.push(format!(
            "{:<9} {} mode {}",
            "compile",
            place(node),
            text(&node["mode"])
        ));
    }
    for node in json["block_swap"].as_array().into_iter().flatten() {
        lines.push(format!("{:<9} {}", "blockswap", place(node)));
    }
    for node in json["outputs"].as_array().into_iter().flatten() {
        lines.push(format!("{:<9} {}", "output", place(node)));
    }
    for warning in json["warnings"].as_array().into_iter().flatten() {
        lines.push(format!("{:<9} {}", "warning", text(warning)));
    }
    lines.join("\n")
}

pub fn convert(
    path: &Path,
    output: Option<&Path>,
    edits: &Edits,
    object_info: Option<&Path>,
) -> Result<(), Failure> {
    let defs = node_defs(object_info)?;
    let loaded = load_file(path)?;
    let mut graph = match (&loaded.api, &loaded.ui) {
        (Some((prompt, _)), _) if loaded.reads_prompt() => {
            check_links(path, prompt)?;
            flat::from_api(prompt)
        }
        (_, Some(ui)) => {
            flat::flatten(ui, &defs, Strictness::Convert).map_err(|e| Failure::in_file(path, e))?
        }
        (_, None) => return Err(Failure::in_file(path, "holds no workflow")),
    };
    let mut notes = repair_for_server(&mut graph, &defs);
    notes.extend(edit::apply(&mut graph, &defs, edits).map_err(|e| Failure::in_file(path, e))?);
    for note in notes {
        eprintln!("wan-pilot: {note}");
    }
    let prompt = flat_to_api(&graph, &defs, &ConvertOptions::default());
    check_links(path, &prompt)?;
    let mut text =
        serde_json::to_string_pretty(&prompt.to_json()).map_err(|e| Failure::new(e.to_string()))?;
    text.push('\n');
    match output {
        Some(out) => write_atomically(out, text.as_bytes()).map_err(|e| Failure::in_file(out, e)),
        None => print_out(&text),
    }
}

/// A prompt with a link to a missing node or a cycle would be refused by the server; say so here.
fn check_links(path: &Path, prompt: &ApiPrompt) -> Result<(), Failure> {
    if let Some((node, input, origin)) = prompt.dangling_links().into_iter().next() {
        return Err(Failure::in_file(
            path,
            WorkflowError::DanglingLink {
                link: format!("[\"{origin}\", …]"),
                place: format!("node {node} input {input}"),
                target: format!("node {origin}"),
            },
        ));
    }
    match prompt.find_cycle() {
        Some(node) => Err(Failure::in_file(path, WorkflowError::Cycle { node })),
        None => Ok(()),
    }
}

fn print_out(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    let result = if text.ends_with('\n') {
        stdout.write_all(text.as_bytes())
    } else {
        writeln!(stdout, "{text}")
    };
    match result {
        // A closed pipe (`| head`) is the reader's choice, not a failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(|e| Failure::new(format!("cannot write to standard output: {e}"))),
    }
}

/// Writes through a temporary file in the same folder and renames it, so a reader never sees half
/// a file and a failure leaves the old one intact.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_x_or_times() {
        assert_eq!(parse_size("832x480"), Ok((832, 480)));
        assert_eq!(parse_size("832×480"), Ok((832, 480)));
        assert!(parse_size("832").is_err());
        assert!(parse_size("0x480").is_err());
    }

    #[test]
    fn atomic_writes_replace_the_file() {
        let dir = std::env::temp_dir().join(format!("wan-pilot-cli-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.json");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}

/// Options of `wan-pilot plan`.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    pub request: PlanRequest,
    pub frames: Option<Vec<u32>>,
    pub json: bool,
}

/// Frame counts `plan` shows when none are given: the workflow's own and a ladder around it.
const DEFAULT_FRAMES: [u32; 10] = [17, 33, 49, 61, 81, 97, 121, 145, 161, 201];

pub fn plan(path: &Path, options: &PlanOptions, object_info: Option<&Path>) -> Result<(), Failure> {
    let defs = node_defs(object_info)?;
    let loaded = load_file(path)?;
    let inspection = recognise::inspect(&loaded, &defs).map_err(|e| Failure::in_file(path, e))?;
    let request = &options.request;
    // The card: what the user named, else what NVML sees.
    let probe = (request.gpu.is_none() && request.vram_gib.is_none()).then(crate::gpu::nvml::probe);
    // What earlier runs on this card taught; the priors where there were none.
    let mut calibration_notes = Vec::new();
    let calibration = match crate::runs::store::load_calibration() {
        Ok(loaded) => {
            if let Some(set_aside) = &loaded.set_aside {
                calibration_notes.push(format!("calibration file set aside: {set_aside:?}"));
            }
            loaded.calibration
        }
        Err(e) => {
            calibration_notes.push(format!("calibration not read ({e}); priors used"));
            Default::default()
        }
    };
    let mut planner =
        Planner::new(&inspection, request, probe.as_ref(), &calibration).map_err(|e| match e {
            PlanError::Workload(_) => Failure::in_file(path, e),
            _ => Failure::new(e.to_string()),
        })?;
    planner.assumptions.extend(calibration_notes);

    let mut frame_counts: Vec<u32> = match &options.frames {
        Some(list) => list
            .iter()
            .map(|&f| crate::workflow::edit::snap_frames(f))
            .collect(),
        None => DEFAULT_FRAMES
            .iter()
            .copied()
            .chain(planner.workflow_frames)
            .collect(),
    };
    frame_counts.sort_unstable();
    frame_counts.dedup();
    let report = planner.report(path, &frame_counts);
    let text = if options.json {
        serde_json::to_string_pretty(&report).map_err(|e| Failure::new(e.to_string()))?
    } else {
        plan_summary(&report)
    };
    print_out(&text)
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// The human-readable `plan`: one line per frame count with the peak per mode and the choice.
fn plan_summary(report: &Value) -> String {
    let gib = |v: &Value| {
        v.as_f64()
            .map_or("?".to_string(), |b| format!("{:.1}", b / GIB))
    };
    let mut lines = vec![
        format!(
            "{} — {}, {}×{}, {} expert(s), CFG {}",
            report["file"].as_str().unwrap_or_default(),
            report["family"].as_str().unwrap_or_default(),
            report["width"],
            report["height"],
            report["experts"].as_array().map_or(0, Vec::len),
            if report["uses_cfg"] == Value::Bool(true) {
                "on"
            } else {
                "off"
            }
        ),
        format!(
            "card: {} ({} GiB, {} GiB free), reserve {} GiB, margin {} GiB",
            report["card"]["name"].as_str().unwrap_or_default(),
            gib(&report["card"]["total_bytes"]),
            gib(&report["card"]["free_bytes"]),
            gib(&report["settings"]["reserve_bytes"]),
            gib(&report["settings"]["margin_bytes"]),
        ),
    ];
    if let Some(safe) = report["safe_frames"].as_object() {
        let zones: Vec<String> = safe
            .iter()
            .map(|(mode, frames)| match frames.as_u64() {
                Some(f) if f >= u64::from(MAX_PLANNED_FRAMES) => format!("{mode} {f}+"),
                Some(f) => format!("{mode} {f}"),
                None => format!("{mode} none"),
            })
            .collect();
        lines.push(format!("longest safe length: {}", zones.join(", ")));
    }
    for assumption in report["assumptions"].as_array().into_iter().flatten() {
        lines.push(format!(
            "assumed: {}",
            assumption.as_str().unwrap_or_default()
        ));
    }
    lines.push(String::new());
    lines.push(format!(
        "{:>6} {:>7} {:>15} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7}  {:<32} {}",
        "frames",
        "tokens",
        "usable/offload",
        "off",
        "dflt",
        "r-o",
        "m-a",
        "m-a-nc",
        "decode",
        "chosen (time)",
        "baseline"
    ));
    let free = report["card"]["free_bytes"].as_f64().unwrap_or(f64::MAX);
    for row in report["frames"].as_array().into_iter().flatten() {
        let phases = row["phases"].as_array();
        let phase = |suffix: &str| {
            phases.and_then(|p| {
                p.iter()
                    .find(|p| p["phase"].as_str().is_some_and(|n| n.ends_with(suffix)))
            })
        };
        let loader = phase("sampling").map_or("-".to_string(), |p| {
            format!("{}/{}", gib(&p["usable_bytes"]), gib(&p["offloaded_bytes"]))
        });
        let decode = phase("decode").map_or("-".to_string(), |p| {
            let tiled = p["peak_bytes"].as_f64().unwrap_or(0.0) > free;
            format!("{}{}", gib(&p["peak_bytes"]), if tiled { "~" } else { "" })
        });
        let modes = row["modes"].as_array();
        let mode = |name: &str| modes.and_then(|m| m.iter().find(|m| m["mode"] == name));
        let peak_of = |name: &str| {
            mode(name).map_or("?".to_string(), |m| {
                let mark = if m["fits"] == Value::Bool(true) {
                    ""
                } else {
                    "!"
                };
                format!("{}{mark}", gib(&m["sampling_peak_bytes"]))
            })
        };
        let chosen = row["choice"]["mode"].as_str().unwrap_or("?");
        let time = mode(chosen)
            .and_then(|m| m["time"]["total_s"].as_f64())
            .unwrap_or(0.0);
        lines.push(format!(
            "{:>6} {:>7} {:>15} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7}  {:<32} {}",
            row["frames"].to_string(),
            row["tokens"].to_string(),
            loader,
            peak_of("off"),
            peak_of("default"),
            peak_of("reduce-overhead"),
            peak_of("max-autotune"),
            peak_of("max-autotune-no-cudagraphs"),
            decode,
            format!("{chosen} ({time:.0} s)"),
            row["baseline"].as_str().unwrap_or("?")
        ));
    }
    lines.push(String::new());
    lines.push(
        "GiB. usable/offload: ComfyUI's weight budget and streamed weights (first expert); mode \
         columns: sampling peak, ! = does not fit or not allowed; decode ~ = ComfyUI decodes in \
         tiles; --json gives every phase, the parts of each peak and the reasons."
            .into(),
    );
    lines.join("\n")
}

/// Options of `wan-pilot run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub file: std::path::PathBuf,
    pub frames: Option<u32>,
    pub size: Option<(u32, u32)>,
    pub seed: Option<u64>,
    pub prompt: Option<String>,
    pub compile: crate::runs::run::CompileChoice,
    pub frame_tap: bool,
    /// The ComfyUI folder to start (else the usual places are searched).
    pub comfyui_dir: Option<std::path::PathBuf>,
    /// A server the user runs; used as it is, never started or stopped.
    pub server_url: Option<String>,
    pub out_dir: Option<std::path::PathBuf>,
    pub retry_on_oom: bool,
    /// Arguments added to the server's command line (when it accepts them).
    pub server_args: Vec<String>,
    /// The port tried first for a server wan-pilot starts.
    pub port: u16,
    /// The card and settings, as for `plan`.
    pub request: PlanRequest,
}

/// `wan-pilot run`: a real generation with progress lines on stderr; the output paths on stdout.
pub fn run(options: &RunOptions) -> Result<(), Failure> {
    let loaded = load_file(&options.file)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::new(format!("cannot start the async runtime: {e}")))?;
    let outputs = runtime.block_on(run_async(options, &loaded))?;
    let mut text = String::new();
    for path in outputs {
        text.push_str(&path.display().to_string());
        text.push('\n');
    }
    print_out(&text)
}

async fn run_async(
    options: &RunOptions,
    loaded: &LoadedWorkflow,
) -> Result<Vec<std::path::PathBuf>, Failure> {
    use crate::comfy::server::{
        AttachedServer, ManagedServer, ServerDirs, ServerSettings, find_leftovers,
    };
    use crate::runs::run::{RunSpec, RunTarget};

    let say = |line: &str| eprintln!("wan-pilot: {line}");
    let timings = crate::comfy::server::ServerTimings::default();
    let data_dir = crate::runs::store::data_dir().map_err(|e| Failure::new(e.to_string()))?;
    let out_dir = options
        .out_dir
        .clone()
        .unwrap_or_else(|| data_dir.join("runs"));

    // Plan before a launch: CUDA-graph modes need a launch flag.
    let planner = plan_for_run(options, loaded, None);
    let spec = RunSpec {
        workflow_file: options.file.clone(),
        frames: options.frames,
        size: options.size,
        seed: options.seed,
        prompt: options.prompt.clone(),
        compile: options.compile,
        frame_tap: options.frame_tap,
        out_dir,
        retry_on_oom: options.retry_on_oom,
        max_attempts: 6,
    };
    let sampler = crate::gpu::sampler::Sampler::start(0, 2, std::sync::mpsc::channel().0).ok();

    let (mut managed, attached) = match &options.server_url {
        Some(url) => {
            let server = AttachedServer::attach(url)
                .await
                .map_err(|e| Failure::new(e.to_string()))?;
            say(&format!(
                "using the server at {} (ComfyUI {})",
                server.url(),
                server
                    .comfyui_version
                    .as_deref()
                    .unwrap_or("of unknown version")
            ));
            (None, Some(server))
        }
        None => {
            let install = crate::comfy::install::discover(options.comfyui_dir.as_deref())
                .map_err(|e| {
                    Failure::new(format!(
                        "{e}; give its folder with --comfyui DIR or a running server with --server URL"
                    ))
                })?;
            let flags = {
                let install = install.clone();
                tokio::task::spawn_blocking(move || crate::comfy::install::read_help(&install))
                    .await
                    .map_err(|e| Failure::new(e.to_string()))?
                    .map_err(|e| Failure::new(e.to_string()))?
            };
            let dirs = ServerDirs::in_data_dir(&data_dir);
            for leftover in find_leftovers(&dirs.locks) {
                say(&format!(
                    "stopping a server an earlier wan-pilot left running (pid {}, port {})",
                    leftover.record.server_pid, leftover.record.port
                ));
                leftover.stop(std::time::Duration::from_secs(10)).await;
            }
            let launch_flags = planner
                .as_ref()
                .ok()
                .zip(options.frames)
                .map(|(p, frames)| {
                    p.choose_at(crate::workflow::edit::snap_frames(frames))
                        .launch_flags
                })
                .unwrap_or_default();
            let settings = ServerSettings {
                disable_cuda_malloc: launch_flags.iter().any(|f| f == "--disable-cuda-malloc"),
                reserve_vram_gib: options.request.reserve_gib,
                extra_args: options.server_args.clone(),
                preferred_port: options.port,
                ..ServerSettings::default()
            };
            say(&format!("starting ComfyUI in {}", install.root.display()));
            let (state, mut state_rx) =
                tokio::sync::watch::channel(crate::comfy::server::ServerState::Stopped);
            let phases = tokio::spawn(async move {
                let mut last = None;
                while state_rx.changed().await.is_ok() {
                    let phase = match &*state_rx.borrow() {
                        crate::comfy::server::ServerState::Starting { phase: Some(p), .. } => {
                            Some(*p)
                        }
                        _ => None,
                    };
                    if phase.is_some() && phase != last {
                        if let Some(p) = phase {
                            eprintln!("wan-pilot: server: {}", p.label());
                        }
                        last = phase;
                    }
                }
            });
            let started = std::time::Instant::now();
            let server = ManagedServer::start(&install, &flags, &settings, &dirs, &state, None)
                .await
                .map_err(|e| {
                    let mut message = e.to_string();
                    if let Some(last) = e.last_lines().last() {
                        message.push_str(&format!(" (last line: {last})"));
                    }
                    Failure::new(message)
                })?;
            phases.abort();
            for flag in server.dropped_flags() {
                say(&format!(
                    "not passed to this ComfyUI (it does not accept it): {flag}"
                ));
            }
            for note in server.notes() {
                say(note);
            }
            say(&format!(
                "server ready at {} after {:.1} s (log: {})",
                server.url(),
                started.elapsed().as_secs_f64(),
                server
                    .log_path()
                    .map_or("not written".into(), |p| p.display().to_string())
            ));
            (Some(server), None)
        }
    };
    let client = match (&managed, &attached) {
        (Some(server), _) => server.client().clone(),
        (None, Some(server)) => server.client().clone(),
        (None, None) => return Err(Failure::new("no server")),
    };
    let planner = match planner {
        Ok(planner) => Some(planner),
        // NVML saw no card: the server's own devices may say more.
        Err(_) => {
            let devices = client.system_stats().await.ok().map(|s| s.devices);
            match plan_for_run(options, loaded, devices) {
                Ok(planner) => Some(planner),
                Err(why) => {
                    if options.compile == crate::runs::run::CompileChoice::Auto {
                        say(&format!("not planned: {why}"));
                    }
                    None
                }
            }
        }
    };
    let target = RunTarget {
        client: &client,
        server_exit: managed.as_ref().map(|s| s.exit_watch()),
        sampler: sampler.as_ref(),
        health_interval: timings.health_interval,
        missed_probes: timings.missed_probes,
    };
    let mut printer = ProgressPrinter::default();
    let mut show = |event: crate::runs::run::RunEvent| printer.show(&event);
    let outcome = tokio::select! {
        outcome = crate::runs::run::run(target, &spec, loaded, planner.as_ref(), &mut show) => outcome.map_err(|e| Failure::new(e.to_string())),
        _ = tokio::signal::ctrl_c() => {
            say("interrupted: stopping the run");
            let _ = client.interrupt(None).await;
            Err(Failure::new("interrupted by the user"))
        }
    };
    if let Some(server) = managed.take() {
        let report = server.stop().await;
        if !report.is_clean() {
            say(&format!(
                "the server did not stop cleanly: port free {}, processes left {:?}",
                report.port_free, report.leftover_pids
            ));
        }
    }
    let summary = outcome?;
    say(&format!(
        "done in {:.1} s, {} attempt(s); record: {}",
        summary.total.as_secs_f64(),
        summary.attempts.len(),
        summary.sidecar.display()
    ));
    Ok(summary.outputs)
}

/// The plan for a run, or why there is none (not a Wan workflow, no card known…).
fn plan_for_run(
    options: &RunOptions,
    loaded: &LoadedWorkflow,
    server_devices: Option<Vec<crate::gpu::server::ServerDevice>>,
) -> Result<Planner, String> {
    let inspection = recognise::inspect(loaded, NodeDefs::bundled()).map_err(|e| e.to_string())?;
    let mut request = options.request.clone();
    request.size = request.size.or(options.size);
    let from_server = server_devices.is_some();
    request.server_devices = server_devices;
    let probe = (request.gpu.is_none() && request.vram_gib.is_none() && !from_server)
        .then(crate::gpu::nvml::probe);
    let calibration = crate::runs::store::load_calibration()
        .map(|l| l.calibration)
        .unwrap_or_default();
    Planner::new(&inspection, &request, probe.as_ref(), &calibration).map_err(|e| e.to_string())
}

/// Prints a run's events as lines on stderr, one per stage or step change.
#[derive(Default)]
struct ProgressPrinter {
    last: String,
}

impl ProgressPrinter {
    fn show(&mut self, event: &crate::runs::run::RunEvent) {
        use crate::runs::run::RunEvent;
        let line = match event {
            RunEvent::Note(text) => text.clone(),
            RunEvent::Planned { mode, summary } => {
                format!("compile mode {}: {summary}", mode.as_str())
            }
            RunEvent::Submitted {
                attempt,
                prompt_id,
                rung,
            } => match rung {
                Some(rung) => format!(
                    "attempt {attempt}: submitted {prompt_id} ({} frames, compile {})",
                    rung.frames,
                    rung.mode.as_str()
                ),
                None => format!("attempt {attempt}: submitted {prompt_id}"),
            },
            RunEvent::Progress(progress) => progress.line(),
            RunEvent::Connection { lost: true, detail } => {
                format!("lost the server's websocket ({detail}); reconnecting")
            }
            RunEvent::Connection { lost: false, .. } => "websocket reconnected".to_string(),
            RunEvent::OutOfMemory {
                attempt,
                message,
                next,
            } => match next {
                Some(next) => format!(
                    "attempt {attempt} ran out of GPU memory ({message}); freeing memory and retrying with compile {} at {} frames",
                    next.mode.as_str(),
                    next.frames
                ),
                None => {
                    format!("attempt {attempt} ran out of GPU memory ({message}); no retry left")
                }
            },
            RunEvent::Saved(path) => format!("saved {}", path.display()),
        };
        if line != self.last {
            eprintln!("wan-pilot: {line}");
            self.last = line;
        }
    }
}
