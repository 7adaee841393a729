//! The command-line subcommands: thin wrappers that read files, call the same library functions
//! the window uses, and print. Errors come back as one line naming the file.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::Path;

use serde_json::Value;

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
    pub gpu: Option<String>,
    pub vram_gib: Option<f64>,
    pub free_vram_gib: Option<f64>,
    pub frames: Option<Vec<u32>>,
    pub reserve_gib: Option<f64>,
    pub margin_gib: f64,
    pub size: Option<(u32, u32)>,
    pub windows: bool,
    pub old_torch: bool,
    /// The server runs with --use-split-cross-attention or --use-quad-cross-attention.
    pub split_attention: bool,
    pub json: bool,
    /// A ComfyUI install folder: model files found there are sized from their headers.
    pub comfyui_dir: Option<std::path::PathBuf>,
}

/// Frame counts `plan` shows when none are given: the workflow's own and a ladder around it.
const DEFAULT_FRAMES: [u32; 10] = [17, 33, 49, 61, 81, 97, 121, 145, 161, 201];

/// The longest clip the safe-length scan looks at (about 15 s at 16 fps).
const MAX_PLANNED_FRAMES: u32 = 241;

pub fn plan(path: &Path, options: &PlanOptions, object_info: Option<&Path>) -> Result<(), Failure> {
    use crate::budget::comfyui::{AttentionEstimate, Platform, reserve_bytes};
    use crate::budget::physical::{Coefficients, DitSize, TorchGeneration};
    use crate::budget::projection::{Card, Settings, project};
    use crate::budget::time::{TimeCoefficients, fp16_tensor_tflops};
    use crate::budget::workload::from_inspection;
    use crate::gpu::facts::{FactInputs, card_facts};
    use crate::policy::{baseline_rule, choose};

    let defs = node_defs(object_info)?;
    let loaded = load_file(path)?;
    let inspection = recognise::inspect(&loaded, &defs).map_err(|e| Failure::in_file(path, e))?;

    // The card: what the user named, else what NVML sees.
    let probe = (options.gpu.is_none() && options.vram_gib.is_none()).then(crate::gpu::nvml::probe);
    let facts = card_facts(&FactInputs {
        probe: probe.as_ref(),
        device_index: 0,
        server_devices: None,
        picked_card: options.gpu.as_deref(),
        user_total_bytes: options.vram_gib.map(|g| (g * GIB) as u64),
    })
    .map_err(|e| {
        Failure::new(format!(
            "{e}; name the card with --gpu NAME or its memory with --vram GB"
        ))
    })?;
    let sized = size_models(
        &inspection,
        options.comfyui_dir.as_deref(),
        facts.has_fp8_compute,
    )?;
    let workflow = from_inspection(
        &inspection,
        |file| {
            sized
                .from_header
                .get(file)
                .copied()
                .or_else(|| crate::budget::catalogue_facts(file, facts.has_fp8_compute))
        },
        options.size,
    )
    .map_err(|e| Failure::in_file(path, e))?;
    let total_bytes = facts.total_bytes as f64;
    let platform = if options.windows {
        Platform::Windows
    } else {
        Platform::Linux
    };
    let mut assumptions = sized.notes;
    assumptions.extend(workflow.assumptions.iter().cloned());
    let free_bytes = match (options.free_vram_gib, facts.free_bytes) {
        (Some(gib), _) => gib * GIB,
        (None, Some(free)) => free as f64,
        (None, None) => {
            // The desktop and driver keep some memory back even with nothing else running.
            let desktop = if options.windows {
                0.8 * GIB
            } else {
                0.3 * GIB
            };
            assumptions.push(format!(
                "free memory not measured: {:.1} GiB assumed (total less {:.1} GiB for the desktop); give --free-vram GB",
                (total_bytes - desktop) / GIB,
                desktop / GIB
            ));
            total_bytes - desktop
        }
    };
    let is_geforce = facts.table_card.unwrap_or(&facts.name).contains("GeForce")
        || facts.name.contains("GeForce");
    let bf16 = facts.bf16_dense_tflops.unwrap_or_else(|| {
        assumptions.push("card speed unknown: an RTX 4090's assumed for the time estimate".into());
        165.2
    });
    let card = Card {
        total_bytes,
        free_bytes,
        fp16_tflops: fp16_tensor_tflops(bf16, is_geforce),
    };
    let settings = Settings {
        reserve_bytes: reserve_bytes(platform, facts.total_bytes, options.reserve_gib),
        margin_bytes: options.margin_gib * GIB,
        attention: if options.split_attention {
            AttentionEstimate::SplitOrQuad
        } else {
            AttentionEstimate::Efficient
        },
    };
    let torch = if options.old_torch {
        TorchGeneration::UnfusedRmsNorm
    } else {
        TorchGeneration::FusedRmsNorm
    };
    let workload = &workflow.workload;
    let prior = (
        Coefficients::prior(DitSize::of_dim(workload.dit.dim), torch, workload.vae),
        TimeCoefficients::prior(card.fp16_tflops),
    );
    // What earlier runs on this card taught; the priors where there were none.
    let calibration = match crate::runs::store::load_calibration() {
        Ok(loaded) => {
            if let Some(set_aside) = &loaded.set_aside {
                assumptions.push(format!("calibration file set aside: {set_aside:?}"));
            }
            loaded.calibration
        }
        Err(e) => {
            assumptions.push(format!("calibration not read ({e}); priors used"));
            Default::default()
        }
    };
    let card_key = facts.table_card.unwrap_or(&facts.name).to_string();
    let calibrated = calibration.apply(&card_key, &workload.family_key(), prior);
    let coefficients = calibrated.coefficients;
    let timing = calibrated.timing;
    let project_at = |frames: u32| {
        let mut projection = project(&card, workload, &settings, &coefficients, &timing, frames);
        crate::policy::apply_caps(
            &mut projection,
            &calibrated,
            workload.width,
            workload.height,
        );
        projection
    };

    let mut frame_counts: Vec<u32> = match &options.frames {
        Some(list) => list
            .iter()
            .map(|&f| crate::workflow::edit::snap_frames(f))
            .collect(),
        None => DEFAULT_FRAMES
            .iter()
            .copied()
            .chain(workflow.frames)
            .collect(),
    };
    frame_counts.sort_unstable();
    frame_counts.dedup();

    let rows: Vec<serde_json::Value> = frame_counts
        .iter()
        .map(|&frames| {
            let projection = project_at(frames);
            let choice = choose(&projection);
            serde_json::json!({
                "frames": frames,
                "latent_frames": projection.latent_frames,
                "tokens": projection.tokens,
                "phases": projection.phases,
                "modes": projection.modes,
                "notes": projection.notes,
                "choice": choice,
                "baseline": baseline_rule(frames).as_str(),
            })
        })
        .collect();
    let report = serde_json::json!({
        "file": path.display().to_string(),
        "family": inspection.family.as_str(),
        "workflow_frames": workflow.frames,
        "width": workload.width,
        "height": workload.height,
        "experts": workload.experts.iter().map(|e| serde_json::json!({"bytes": e.bytes, "steps": e.steps})).collect::<Vec<_>>(),
        "uses_cfg": workload.uses_cfg,
        "card": {
            "name": facts.name,
            "source": facts.source,
            "total_bytes": total_bytes,
            "free_bytes": free_bytes,
            "fp16_tflops": card.fp16_tflops,
        },
        "settings": {
            "platform": if options.windows { "windows" } else { "linux" },
            "reserve_bytes": settings.reserve_bytes,
            "margin_bytes": settings.margin_bytes,
            "torch": if options.old_torch { "2.7 or older" } else { "2.8 or newer" },
            "attention": if options.split_attention { "split or quad cross-attention" } else { "SDPA / flash / xformers / Sage" },
        },
        "coefficients": {
            "prior": {"memory": prior.0, "time": prior.1},
            "planned_with": {"memory": coefficients, "time": timing},
            "sources": calibrated.sources,
            "calibration_notes": calibrated.notes,
        },
        "safe_frames": crate::policy::largest_safe_frames(MAX_PLANNED_FRAMES, &project_at)
            .into_iter()
            .map(|(mode, frames)| (mode.to_string(), serde_json::json!(frames)))
            .collect::<serde_json::Map<String, Value>>(),
        "assumptions": assumptions,
        "frames": rows,
    });
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

/// Model facts read from files on disk for `plan`, and what to tell the user about them.
struct SizedModels {
    /// By the name the workflow uses, for the files whose header was read.
    from_header: std::collections::HashMap<String, crate::budget::workload::ModelFacts>,
    /// Which models were sized from their headers and which from their names only.
    notes: Vec<String>,
}

/// Finds the workflow's active models (the ones `plan` sizes) in the ComfyUI folder and reads
/// their headers; the others are left to the catalogue. A folder that cannot be read, or an
/// `extra_model_paths.yaml` that cannot, is an error; a model file that cannot is a note.
fn size_models(
    inspection: &recognise::Inspection,
    comfyui_dir: Option<&Path>,
    has_fp8_compute: bool,
) -> Result<SizedModels, Failure> {
    use crate::comfy::models::{ModelFolder, ModelFolders, read_header};
    use recognise::ModelRole;

    let folders = comfyui_dir
        .map(ModelFolders::locate)
        .transpose()
        .map_err(|e| Failure::new(e.to_string()))?;
    let mut sized = SizedModels {
        from_header: Default::default(),
        notes: Vec::new(),
    };
    let mut seen: Vec<&str> = Vec::new();
    let mut by_name: Vec<&str> = Vec::new();
    let mut by_header: Vec<&str> = Vec::new();
    let sized_roles = inspection
        .models
        .iter()
        .filter(|m| m.active && !matches!(m.role, ModelRole::Lora | ModelRole::ClipVision));
    for model in sized_roles {
        let file = model.file.as_str();
        if seen.contains(&file) {
            continue;
        }
        seen.push(file);
        let found = folders
            .as_ref()
            .and_then(|f| f.find(file, ModelFolder::for_loader(&model.class_type)));
        let Some(found) = found else {
            by_name.push(file);
            continue;
        };
        match read_header(&found) {
            Ok(header) => {
                if header.is_truncated() {
                    sized.notes.push(format!(
                        "{}: shorter than its header says; ComfyUI will fail to load it until it is downloaded again",
                        found.display()
                    ));
                }
                let info = crate::budget::catalogue::recognise(file);
                let facts =
                    crate::budget::header_facts(&header.header, info.as_ref(), has_fp8_compute);
                sized.from_header.insert(file.to_string(), facts);
                by_header.push(file);
            }
            Err(e) => {
                sized
                    .notes
                    .push(format!("{e}; sized from its name instead"));
            }
        }
    }
    if !by_header.is_empty() {
        sized.notes.push(format!(
            "sized from their file headers: {}",
            by_header.join(", ")
        ));
    }
    if !by_name.is_empty() {
        let why = match comfyui_dir {
            Some(dir) => format!("not found under {}", dir.display()),
            None => "no ComfyUI folder given: --comfyui DIR reads their headers".to_string(),
        };
        sized.notes.push(format!(
            "sized from their names only ({why}): {}",
            by_name.join(", ")
        ));
    }
    Ok(sized)
}
