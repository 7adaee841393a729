//! Recognising what a Wan workflow does: the node that carries the frame count and where its
//! value comes from, the size and fps, the model files and the role each plays, the samplers,
//! torch.compile and block-swap nodes, the outputs, and the Wan task family.
//!
//! This is what `wan-pilot inspect FILE --json` prints (the shape of [`Inspection`] is part of the
//! CLI's documented output), and what the planner and the editor start from.
//!
//! Values are followed upstream through links, KJNodes Set/Get pairs, subgraph boundaries,
//! primitive and constant nodes and the common maths nodes of community packs, and computed when
//! every input is in the file. A value only known when the graph runs (a loaded video's frame
//! count, a resize node's output size, a resolution preset) is reported as unknown (`null`, source
//! `run_time`), never guessed.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};

use serde::{Serialize, Serializer};
use serde_json::Value;

use super::error::WorkflowError;
use super::flat::{self, FlatGraph, FlatInput, FlatNode, Hop, Strictness, ValueSource};
use super::load::LoadedWorkflow;
use super::node_defs::{NodeDefs, WidgetSlot};
use super::ui::{MAX_SUBGRAPH_DEPTH, NodeMode, UiGraph, UiWorkflow};

// ---------------------------------------------------------------------------------------------
// The result
// ---------------------------------------------------------------------------------------------

/// Everything `inspect` understood of a workflow. Serialized as the stable `--json` output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inspection {
    /// "ui" (a nodes/links graph) or "api" (a prompt keyed by node id).
    pub format: String,
    pub family: Family,
    /// Why the family was chosen, in words.
    pub family_reason: String,
    /// The primary frame-count input; `None` when no Wan node carries one.
    pub frames: Option<Setting>,
    /// Every other frame-bearing input, active or not, best candidates first.
    pub other_frame_nodes: Vec<Setting>,
    pub width: Option<Setting>,
    pub height: Option<Setting>,
    /// Frame rate of the output video, where an output node sets one.
    pub fps: Option<Setting>,
    pub models: Vec<ModelFile>,
    pub samplers: Vec<Sampler>,
    pub compile: Vec<CompileNode>,
    pub block_swap: Vec<BlockSwapNode>,
    pub outputs: Vec<OutputNode>,
    /// Things a user should know: unknown node types, run-time frame counts, odd lengths.
    pub warnings: Vec<String>,
}

/// The Wan task a workflow performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    T2v,
    I2v,
    /// The 5B text-and-image-to-video model.
    Ti2v,
    /// First-last frame (and first-middle-last / multi-keyframe) to video.
    Flf2v,
    Vace,
    S2v,
    Animate,
    /// Fun Control / Fun Camera / Fun InP and anything unrecognised.
    Other,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::T2v => "t2v",
            Family::I2v => "i2v",
            Family::Ti2v => "ti2v",
            Family::Flf2v => "flf2v",
            Family::Vace => "vace",
            Family::S2v => "s2v",
            Family::Animate => "animate",
            Family::Other => "other",
        }
    }
}

/// Whether a node runs, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Active,
    Muted,
    Bypassed,
}

impl NodeState {
    fn of(mode: NodeMode) -> Self {
        match mode {
            NodeMode::Never => NodeState::Muted,
            NodeMode::Bypass => NodeState::Bypassed,
            _ => NodeState::Active,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Active => "active",
            NodeState::Muted => "muted",
            NodeState::Bypassed => "bypassed",
        }
    }
}

/// How a value reached the input it sets. Later kinds outrank earlier ones when a chain
/// passes through several (a Set/Get pair feeding a maths node is `maths`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// The node's own widget.
    Widget,
    /// A primitive or constant node (PrimitiveNode, PrimitiveInt, INTConstant, a slider).
    Primitive,
    /// A widget promoted to, or an input of, a subgraph.
    SubgraphInput,
    /// A KJNodes Set/Get pair.
    SetGet,
    /// Computed by maths nodes from values in the file.
    Maths,
    /// Only known when the graph runs.
    RunTime,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Source {
    pub kind: SourceKind,
    /// The way upstream, nearest first: "computed easy mathInt#446 <- mxSlider#426".
    pub chain: String,
}

/// One numeric input of one node, with its value and where that value comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Setting {
    /// Execution id as the API uses it: "74", or "128:74" inside subgraph instance 128.
    pub node: String,
    pub class_type: String,
    pub input: String,
    /// `null` when only known at run time.
    #[serde(serialize_with = "number_or_null")]
    pub value: Option<f64>,
    pub source: Source,
    pub active: bool,
    pub node_state: NodeState,
    /// Name of the subgraph the node sits in (outermost first, joined by " / "), or `null`.
    pub subgraph: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelRole {
    HighNoise,
    LowNoise,
    /// One diffusion model for every step (5B, Wan 2.1, or a loader that holds both experts).
    Single,
    TextEncoder,
    Vae,
    Lora,
    ClipVision,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelFile {
    pub node: String,
    pub class_type: String,
    pub file: String,
    pub role: ModelRole,
    /// What decided the role: "file name", "sampler input", "sampler pass", "loader class".
    pub role_from: String,
    pub active: bool,
    pub node_state: NodeState,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sampler {
    pub node: String,
    pub class_type: String,
    #[serde(serialize_with = "number_or_null")]
    pub steps: Option<f64>,
    #[serde(serialize_with = "number_or_null")]
    pub start: Option<f64>,
    #[serde(serialize_with = "number_or_null")]
    pub end: Option<f64>,
    #[serde(serialize_with = "number_or_null")]
    pub cfg: Option<f64>,
    pub active: bool,
    pub node_state: NodeState,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompileNode {
    pub node: String,
    pub class_type: String,
    /// torch.compile mode, where the node has one (core TorchCompileModel does not).
    pub mode: Option<String>,
    pub backend: Option<String>,
    pub active: bool,
    pub node_state: NodeState,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlockSwapNode {
    pub node: String,
    pub class_type: String,
    #[serde(serialize_with = "number_or_null")]
    pub blocks: Option<f64>,
    pub active: bool,
    pub node_state: NodeState,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputNode {
    pub node: String,
    pub class_type: String,
    pub active: bool,
    pub node_state: NodeState,
}

/// Whole numbers as JSON integers, others as floats, unknown as null.
fn number_or_null<S: Serializer>(value: &Option<f64>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 => {
            serializer.serialize_i64(*v as i64)
        }
        Some(v) if v.is_finite() => serializer.serialize_f64(*v),
        _ => serializer.serialize_none(),
    }
}

fn show_number(value: Option<f64>) -> String {
    match value {
        Some(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => format!("{}", v as i64),
        Some(v) => format!("{v}"),
        None => "?".into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Entry point
// ---------------------------------------------------------------------------------------------

/// Reads what a workflow does: from the UI graph where there is one (it knows about muted and
/// bypassed nodes and where values come from), from the prompt that ran for an output file (see
/// [`LoadedWorkflow::reads_prompt`]), else from the API prompt.
pub fn inspect(loaded: &LoadedWorkflow, defs: &NodeDefs) -> Result<Inspection, WorkflowError> {
    let (flat, widget_names) = match (&loaded.ui, &loaded.api) {
        (_, Some((prompt, _))) if loaded.reads_prompt() => (flat::from_api(prompt), HashMap::new()),
        (Some(ui), _) => (
            flat::flatten(ui, defs, Strictness::Inspect)?,
            ui_widget_names(ui),
        ),
        (None, Some((prompt, _))) => (flat::from_api(prompt), HashMap::new()),
        (None, None) => {
            return Err(WorkflowError::NotAWorkflow(
                "the file holds neither a UI workflow nor an API prompt".into(),
            ));
        }
    };
    let graph = Graph::new(&flat, defs, widget_names);
    Ok(graph.inspect(loaded.format()))
}

// ---------------------------------------------------------------------------------------------
// Widget layouts of node types the bundled definitions do not describe
// ---------------------------------------------------------------------------------------------

/// Widget names in `widgets_values` order for node types outside the bundled definitions (or
/// whose bundled definition is a stub that dropped the widgets). `_control` is the frontend's
/// seed "control after generate" widget. Where each layout was read from:
/// - mxSlider, mxSlider2D: Smirnov75/ComfyUI-mxToolkit `mxtoolkit.py` (7f7a0e5).
/// - easy mathInt / mathFloat / convertAnything / int / float: yolain/ComfyUI-Easy-Use
///   `py/nodes/logic.py` (4de1ab3).
/// - MathExpression|pysssss: pythongosssss/ComfyUI-Custom-Scripts `py/math_expression.py`
///   (609f3af); inputs a, b, c are sockets only.
/// - SimpleMath+ and SimpleMathInt+/Float+: cubiq/ComfyUI_essentials `misc.py` (33ff89f).
/// - ComfyMathExpression: Comfy-Org/ComfyUI `comfy_extras/nodes_math.py` (core after 0.8.0;
///   values arrive as sockets `values.a`, `values.b`, ...).
/// - Int, Float: M1kep/ComfyLiterals `nodes.py` (a STRING widget named `Number`).
/// - VideoX-Fun samplers and loaders: aigc-apps/VideoX-Fun `comfyui/wan2_2/nodes.py`,
///   `comfyui/wan2_2_fun/nodes.py`, `comfyui/wan2_2_vace_fun/nodes.py`, `comfyui/wan2_1/nodes.py`
///   (804a425); `seed` gets a control widget by name.
/// - WanFirstMiddleLastFrameToVideo, WanMultiFrameRefToVideo, WanFourFrameReferenceUltimate:
///   wallen0322/ComfyUI-Wan22FMLF `wan_first_middle_last.py`, `wan_multi_frame.py`,
///   `wan_4_frame_ultimate.py` (7140cd2); only the leading widgets are listed.
/// - wanBlockSwap: the former "native block swap" custom node (NODE_CLASS_MAPPINGS
///   `wanBlockSwap`: model, blocks_to_swap, offload_img_emb, offload_txt_emb, use_non_blocking);
///   ComfyUI core now ships it as a no-op stub without widgets (`comfy_extras/nodes_nop.py`).
/// - TorchCompileModelWanVideo: KJNodes before it became a deprecated pass-through
///   (`DeprecatedCompileNodeKJ`); the same widgets as TorchCompileModelWanVideoV2 minus the
///   optional one.
const LAYOUTS: &[(&str, &[&str])] = &[
    ("mxSlider", &["Xi", "Xf", "isfloatX"]),
    (
        "mxSlider2D",
        &["Xi", "Xf", "Yi", "Yf", "isfloatX", "isfloatY"],
    ),
    ("easy mathInt", &["a", "b", "operation"]),
    ("easy mathFloat", &["a", "b", "operation"]),
    ("easy convertAnything", &["output_type"]),
    ("easy int", &["value"]),
    ("easy float", &["value"]),
    ("MathExpression|pysssss", &["expression"]),
    ("SimpleMath+", &["value"]),
    ("SimpleMathInt+", &["value"]),
    ("SimpleMathFloat+", &["value"]),
    ("ComfyMathExpression", &["expression"]),
    ("Int", &["Number"]),
    ("Float", &["Number"]),
    (
        "Wan2_2T2VSampler",
        &[
            "video_length",
            "width",
            "height",
            "is_image",
            "seed",
            "_control",
            "steps",
            "cfg",
            "scheduler",
            "shift",
            "boundary",
            "teacache_threshold",
            "enable_teacache",
            "num_skip_start_steps",
            "teacache_offload",
            "cfg_skip_ratio",
        ],
    ),
    ("Wan2_2I2VSampler", VIDEOX_FUN_I2V_SAMPLER),
    ("Wan2_2FunInpaintSampler", VIDEOX_FUN_I2V_SAMPLER),
    (
        "Wan2_2VaceFunSampler",
        &[
            "video_length",
            "base_resolution",
            "seed",
            "_control",
            "steps",
            "cfg",
            "scheduler",
            "shift",
            "boundary",
            "teacache_threshold",
            "enable_teacache",
            "num_skip_start_steps",
            "teacache_offload",
            "cfg_skip_ratio",
            "padding_in_subject_ref_images",
        ],
    ),
    (
        "LoadWan2_2Model",
        &["model", "GPU_memory_mode", "config", "precision"],
    ),
    (
        "LoadWan2_2FunModel",
        &[
            "model",
            "model_type",
            "GPU_memory_mode",
            "config",
            "precision",
        ],
    ),
    (
        "LoadWan2_2VaceFunModel",
        &["model", "GPU_memory_mode", "config", "precision"],
    ),
    ("LoadWan2_2TransformerModel", &["model_name", "precision"]),
    ("LoadWanTextEncoderModel", &["model_name", "precision"]),
    ("LoadWanVAEModel", &["model_name", "precision"]),
    ("LoadWanClipEncoderModel", &["model_name", "precision"]),
    (
        "WanFirstMiddleLastFrameToVideo",
        &["width", "height", "length", "batch_size", "mode"],
    ),
    (
        "WanMultiFrameRefToVideo",
        &[
            "width",
            "height",
            "length",
            "batch_size",
            "mode",
            "ref_positions",
        ],
    ),
    (
        "WanFourFrameReferenceUltimate",
        &["width", "height", "length", "batch_size", "mode"],
    ),
    (
        "wanBlockSwap",
        &[
            "blocks_to_swap",
            "offload_img_emb",
            "offload_txt_emb",
            "use_non_blocking",
        ],
    ),
    (
        "TorchCompileModelWanVideo",
        &[
            "backend",
            "fullgraph",
            "mode",
            "dynamic",
            "dynamo_cache_size_limit",
            "compile_transformer_blocks_only",
        ],
    ),
];

const VIDEOX_FUN_I2V_SAMPLER: &[&str] = &[
    "video_length",
    "base_resolution",
    "seed",
    "_control",
    "steps",
    "cfg",
    "scheduler",
    "shift",
    "boundary",
    "teacache_threshold",
    "enable_teacache",
    "num_skip_start_steps",
    "teacache_offload",
    "cfg_skip_ratio",
];

/// The built-in widget layout of a node type outside the bundled definitions, if we know it.
pub fn widget_layout(class_type: &str) -> Option<&'static [&'static str]> {
    LAYOUTS
        .iter()
        .find(|(class, _)| *class == class_type)
        .map(|(_, names)| *names)
}

/// ComfyUI-MultiGPU wraps existing loaders and samplers under new names and appends its device
/// widgets after the original required ones; this is the wrapped class.
fn multigpu_base(class_type: &str) -> Option<&str> {
    let base = class_type.strip_suffix("MultiGPU")?;
    let base = base
        .strip_suffix("DisTorch2")
        .or_else(|| base.strip_suffix("DisTorch"))
        .unwrap_or(base);
    (!base.is_empty()).then_some(base)
}

/// Widget names of every UI node with widget sockets (`inputs[i].widget.name`), by execution id.
fn ui_widget_names(workflow: &UiWorkflow) -> HashMap<String, Vec<String>> {
    fn walk(
        workflow: &UiWorkflow,
        graph: &UiGraph,
        prefix: &str,
        depth: usize,
        out: &mut HashMap<String, Vec<String>>,
    ) {
        if depth > MAX_SUBGRAPH_DEPTH {
            return;
        }
        for node in &graph.nodes {
            let id = if prefix.is_empty() {
                node.id.clone()
            } else {
                format!("{prefix}:{}", node.id)
            };
            if let Some(def) = workflow.subgraph(&node.node_type) {
                walk(workflow, &def.graph, &id, depth + 1, out);
                continue;
            }
            let names: Vec<String> = node
                .inputs
                .iter()
                .filter_map(|i| i.widget_name.clone())
                .collect();
            if !names.is_empty() {
                out.insert(id, names);
            }
        }
    }
    let mut out = HashMap::new();
    walk(workflow, &workflow.root, "", 0, &mut out);
    out
}

// ---------------------------------------------------------------------------------------------
// Node classes
// ---------------------------------------------------------------------------------------------

/// Diffusion-model loaders (after removing a MultiGPU suffix).
const DIFFUSION_LOADERS: &[&str] = &[
    "UNETLoader",
    "UnetLoaderGGUF",
    "UnetLoaderGGUFAdvanced",
    "DiffusionModelLoaderKJ",
    "WanVideoModelLoader",
    "LoadWan2_2Model",
    "LoadWan2_2TransformerModel",
    "LoadWan2_2FunModel",
    "LoadWan2_2VaceFunModel",
    "LoadWanModel",
    "LoadWanFunModel",
    "LoadVaceWanTransformer3DModel",
];
const TEXT_ENCODER_LOADERS: &[&str] = &[
    "CLIPLoader",
    "CLIPLoaderGGUF",
    "ClipLoaderGGUF",
    "LoadWanVideoT5TextEncoder",
    "LoadWanTextEncoderModel",
];
const VAE_LOADERS: &[&str] = &["VAELoader", "WanVideoVAELoader", "LoadWanVAEModel"];
const CLIP_VISION_LOADERS: &[&str] = &[
    "CLIPVisionLoader",
    "LoadWanVideoClipTextEncoder",
    "LoadWanClipEncoderModel",
];
const LORA_LOADERS: &[&str] = &[
    "LoraLoaderModelOnly",
    "LoraLoader",
    "WanVideoLoraSelect",
    "WanVideoLoraSelectMulti",
    "Power Lora Loader (rgthree)",
    "LoadWan2_2Lora",
    "LoadWan2_2FunLora",
    "LoadWanLora",
    "LoadWanFunLora",
];
/// Inputs that name the file a loader reads, in the order they are tried.
const FILE_INPUTS: &[&str] = &[
    "unet_name",
    "model_name",
    "model",
    "clip_name",
    "vae_name",
    "lora_name",
    "lora",
    "lora_high_name",
    "lora_0",
    "lora_1",
    "lora_2",
    "lora_3",
    "lora_4",
];

fn base_class(class_type: &str) -> &str {
    multigpu_base(class_type).unwrap_or(class_type)
}

fn is_sampler(class_type: &str) -> bool {
    let base = base_class(class_type);
    matches!(
        base,
        "KSampler" | "KSamplerAdvanced" | "SamplerCustom" | "SamplerCustomAdvanced"
    ) || base.starts_with("KSamplerWithNAG")
        || (base.starts_with("Wan") && base.ends_with("Sampler"))
}

fn is_compile(class_type: &str) -> bool {
    class_type.contains("TorchCompile")
}

fn is_block_swap(class_type: &str) -> bool {
    class_type.to_lowercase().contains("blockswap")
}

fn is_output(class_type: &str, defs: &NodeDefs) -> bool {
    let media = class_type.starts_with("Save")
        || class_type.starts_with("Preview")
        || class_type == "VHS_VideoCombine";
    media
        && defs
            .get(class_type)
            .is_none_or(|d| d.is_output_node || class_type == "PreviewAny")
}

/// The input carrying the frame count, for node types that can carry one (`length` on core
/// latent/conditioning nodes, `num_frames` on WanVideoWrapper nodes, `video_length` on VideoX-Fun
/// samplers). Whether a given node has it still depends on its definition or layout.
pub fn frame_input_name(class_type: &str) -> Option<&'static str> {
    let base = base_class(class_type);
    if base.starts_with("WanVideo") {
        return Some("num_frames");
    }
    if base == "EmptyHunyuanLatentVideo"
        || base == "Wan22ImageToVideoLatent"
        || (base.starts_with("Wan") && base.contains("ToVideo"))
        || base == "WanFourFrameReferenceUltimate"
        || base == "WanMultiFrameRefToVideo"
    {
        return Some("length");
    }
    if base.starts_with("Wan2_2") && base.ends_with("Sampler") {
        return Some("video_length");
    }
    None
}

// ---------------------------------------------------------------------------------------------
// The graph with value evaluation
// ---------------------------------------------------------------------------------------------

/// An input as found: a literal (with where it came from) or a link.
enum Input<'g> {
    Value {
        value: &'g Value,
        kind: SourceKind,
        chain: String,
    },
    Link {
        origin: &'g str,
        slot: usize,
        hops: &'g [Hop],
    },
}

/// A value traced to its source.
#[derive(Debug, Clone, PartialEq)]
struct Traced {
    value: Option<f64>,
    kind: SourceKind,
    chain: String,
}

impl Traced {
    fn run_time(chain: String) -> Self {
        Traced {
            value: None,
            kind: SourceKind::RunTime,
            chain,
        }
    }
}

/// How deep value tracing may go before it gives up (real chains are under ten nodes).
const MAX_TRACE_DEPTH: usize = 48;

struct Graph<'a> {
    flat: &'a FlatGraph,
    defs: &'a NodeDefs,
    /// Widget socket names from the UI file, by execution id.
    ui_widget_names: HashMap<String, Vec<String>>,
    /// Position of each node in the file.
    order: HashMap<&'a str, usize>,
    /// origin id → (target id, input name), for following models downstream.
    downstream: HashMap<&'a str, Vec<(&'a str, &'a str)>>,
    /// Traced outputs, so maths nodes that reuse one input many times stay linear.
    traced: RefCell<HashMap<(String, usize), Traced>>,
}

impl<'a> Graph<'a> {
    fn new(
        flat: &'a FlatGraph,
        defs: &'a NodeDefs,
        ui_widget_names: HashMap<String, Vec<String>>,
    ) -> Self {
        let order = flat
            .nodes
            .keys()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        let mut downstream: HashMap<&str, Vec<(&str, &str)>> = HashMap::new();
        for node in flat.nodes.values() {
            for (name, input) in &node.inputs {
                if let FlatInput::Link { origin, .. } = input {
                    downstream
                        .entry(origin.as_str())
                        .or_default()
                        .push((node.id.as_str(), name.as_str()));
                }
            }
        }
        Graph {
            flat,
            defs,
            ui_widget_names,
            order,
            downstream,
            traced: RefCell::new(HashMap::new()),
        }
    }

    fn node(&self, id: &str) -> Option<&'a FlatNode> {
        self.flat.nodes.get(id)
    }

    /// Widget names in `widgets_values` order for a node whose values flat could not name.
    fn widget_names(&self, node: &FlatNode) -> Vec<String> {
        if let Some(layout) = widget_layout(&node.class_type) {
            return layout.iter().map(|s| s.to_string()).collect();
        }
        let from_def = |class: &str, required_only: bool| -> Option<Vec<String>> {
            let def = self.defs.get(class).or_else(|| {
                // Some packs registered the same node under another capitalisation.
                None.or_else(|| {
                    let lower = class.to_lowercase();
                    ["CLIPLoaderGGUF", "UnetLoaderGGUF"]
                        .into_iter()
                        .find(|c| c.to_lowercase() == lower)
                        .and_then(|c| self.defs.get(c))
                })
            })?;
            let mut names = Vec::new();
            for slot in def.widget_slots() {
                match slot {
                    WidgetSlot::Input(k) => {
                        let input = def.inputs.get(k)?;
                        if required_only && !input.required {
                            break;
                        }
                        names.push(input.name.clone());
                    }
                    WidgetSlot::Unsent => names.push("_control".into()),
                }
            }
            Some(names)
        };
        if !node.is_described {
            if let Some(base) = multigpu_base(&node.class_type)
                && let Some(names) = from_def(base, true)
            {
                return names;
            }
            if let Some(names) = from_def(&node.class_type, false) {
                return names;
            }
        }
        // The frontend writes a socket per widget; when every widget has one, their order is
        // the widget order.
        match self.ui_widget_names.get(&node.id) {
            Some(names) if names.len() == node.raw_widgets.len() => names.clone(),
            _ => Vec::new(),
        }
    }

    fn input(&self, node: &'a FlatNode, name: &str) -> Option<Input<'a>> {
        if let Some(input) = node.inputs.get(name) {
            return Some(match input {
                FlatInput::Value { value, source } => {
                    let (kind, chain) = describe_source(source);
                    Input::Value { value, kind, chain }
                }
                FlatInput::Link { origin, slot, hops } => Input::Link {
                    origin,
                    slot: *slot,
                    hops,
                },
            });
        }
        let names = self.widget_names(node);
        let index = names.iter().position(|n| n == name)?;
        node.raw_widgets.get(index).map(|value| Input::Value {
            value,
            kind: SourceKind::Widget,
            chain: "widget".into(),
        })
    }

    fn has_input(&self, node: &'a FlatNode, name: &str) -> bool {
        self.input(node, name).is_some()
    }

    /// A literal string input (a file name, a mode), if the input holds one.
    fn text(&self, node: &'a FlatNode, name: &str) -> Option<String> {
        match self.input(node, name)? {
            Input::Value {
                value: Value::String(s),
                ..
            } => Some(s.clone()),
            _ => None,
        }
    }

    fn trace_input(&self, node: &'a FlatNode, name: &str, depth: usize) -> Option<Traced> {
        Some(match self.input(node, name)? {
            Input::Value { value, kind, chain } => Traced {
                value: number(value),
                kind,
                chain,
            },
            Input::Link { origin, slot, hops } => {
                let inner = self.trace_output(origin, slot, depth + 1);
                with_hops(hops, inner)
            }
        })
    }

    /// The value a node's output carries, traced.
    fn trace_output(&self, id: &str, slot: usize, depth: usize) -> Traced {
        let key = (id.to_string(), slot);
        if let Some(known) = self.traced.borrow().get(&key) {
            return known.clone();
        }
        let mut traced = self.trace_output_uncached(id, slot, depth);
        traced.chain = capped(traced.chain);
        self.traced.borrow_mut().insert(key, traced.clone());
        traced
    }

    fn trace_output_uncached(&self, id: &str, slot: usize, depth: usize) -> Traced {
        let Some(node) = self.node(id) else {
            return Traced::run_time(format!("run-time value from node {id}"));
        };
        let here = node_ref(node);
        if depth > MAX_TRACE_DEPTH {
            return Traced::run_time(format!("{here} (chain too long to follow)"));
        }
        let class = node.class_type.as_str();
        if let Some(name) = constant_input(class) {
            let Some(inner) = self.trace_input(node, name, depth) else {
                return Traced::run_time(format!("run-time value from {here}"));
            };
            let value = match class {
                "Int" => inner.value.map(f64::trunc),
                _ => inner.value,
            };
            let chain = if inner.kind == SourceKind::Widget {
                here
            } else {
                format!("{here} <- {}", inner.chain)
            };
            return Traced {
                value,
                kind: inner.kind.max(SourceKind::Primitive),
                chain,
            };
        }
        match class {
            "mxSlider" | "mxSlider2D" => {
                let axis = if class == "mxSlider" || slot == 0 {
                    "X"
                } else {
                    "Y"
                };
                let is_float = self
                    .trace_input(node, &format!("isfloat{axis}"), depth)
                    .and_then(|t| t.value)
                    .unwrap_or(0.0)
                    > 0.0;
                let name = format!("{axis}{}", if is_float { "f" } else { "i" });
                match self.trace_input(node, &name, depth) {
                    Some(inner) if inner.kind == SourceKind::Widget => Traced {
                        value: inner.value,
                        kind: SourceKind::Primitive,
                        chain: here,
                    },
                    Some(inner) => Traced {
                        value: inner.value,
                        kind: inner.kind.max(SourceKind::Primitive),
                        chain: format!("{here} <- {}", inner.chain),
                    },
                    None => Traced::run_time(format!("run-time value from {here}")),
                }
            }
            "ComfySwitchNode" => {
                let switch = self.trace_input(node, "switch", depth);
                match switch.as_ref().and_then(|s| s.value) {
                    Some(on) => {
                        let branch = if on != 0.0 { "on_true" } else { "on_false" };
                        match self.trace_input(node, branch, depth) {
                            Some(inner) => Traced {
                                value: inner.value,
                                kind: inner.kind,
                                chain: format!("{here} ({branch}) <- {}", inner.chain),
                            },
                            None => Traced::run_time(format!("run-time value from {here}")),
                        }
                    }
                    None => Traced::run_time(format!("run-time value from {here}")),
                }
            }
            _ => match maths_kind(class) {
                Some(maths) => self.trace_maths(node, maths, slot, depth),
                None => Traced::run_time(format!("run-time value from {here}")),
            },
        }
    }

    fn trace_maths(&self, node: &'a FlatNode, maths: Maths, slot: usize, depth: usize) -> Traced {
        let here = node_ref(node);
        let var_names: Vec<String> = match maths {
            Maths::EasyInt | Maths::EasyFloat => vec!["a".into(), "b".into()],
            Maths::EasyConvert => vec!["*".into()],
            Maths::Pysssss | Maths::Essentials => vec!["a".into(), "b".into(), "c".into()],
            Maths::Comfy => node
                .inputs
                .keys()
                .filter(|k| k.starts_with("values."))
                .cloned()
                .collect(),
        };
        let mut vars: Vec<(String, Traced)> = Vec::new();
        for name in &var_names {
            if let Some(traced) = self.trace_input(node, name, depth) {
                let short = name.strip_prefix("values.").unwrap_or(name).to_string();
                vars.push((short, traced));
            }
        }
        let mut upstream: Vec<&str> = Vec::new();
        for (_, t) in vars.iter().filter(|(_, t)| t.kind != SourceKind::Widget) {
            if !upstream.contains(&t.chain.as_str()) {
                upstream.push(t.chain.as_str());
            }
        }
        let unknown = vars.iter().any(|(_, t)| t.value.is_none());
        let value = if unknown {
            None
        } else {
            let lookup = |name: &str| -> Option<f64> {
                vars.iter()
                    .find(|(n, _)| n == name)
                    .and_then(|(_, t)| t.value)
            };
            let text = |input: &str| self.text(node, input).unwrap_or_default();
            match maths {
                Maths::EasyInt => easy_maths(lookup("a"), lookup("b"), &text("operation"), false),
                Maths::EasyFloat => easy_maths(lookup("a"), lookup("b"), &text("operation"), true),
                Maths::EasyConvert => {
                    let v = lookup("*");
                    match text("output_type").as_str() {
                        "int" => v.map(f64::trunc),
                        "float" => v,
                        "boolean" => v.map(|x| if x != 0.0 { 1.0 } else { 0.0 }),
                        _ => None,
                    }
                }
                Maths::Pysssss => evaluate(&text("expression"), &lookup)
                    .ok()
                    .map(|r| if slot == 0 { r.trunc() } else { r }),
                Maths::Essentials => evaluate(&text("value"), &lookup)
                    .ok()
                    .map(|r| if slot == 0 { round_half_even(r) } else { r }),
                Maths::Comfy => evaluate(&text("expression"), &lookup)
                    .ok()
                    .map(|r| match slot {
                        1 => r.trunc(),
                        2 => f64::from(u8::from(r != 0.0)),
                        _ => r,
                    }),
            }
        };
        let body = if value.is_some() {
            format!("computed {here}")
        } else {
            here
        };
        let chain = if upstream.is_empty() {
            body
        } else {
            format!("{body} <- {}", upstream.join("; "))
        };
        Traced {
            value,
            kind: if value.is_some() {
                SourceKind::Maths
            } else {
                SourceKind::RunTime
            },
            chain,
        }
    }

    fn setting(&self, node: &'a FlatNode, input: &str) -> Option<Setting> {
        let traced = self.trace_input(node, input, 0)?;
        let kind = if traced.value.is_none() {
            SourceKind::RunTime
        } else {
            traced.kind
        };
        Some(Setting {
            node: node.id.clone(),
            class_type: node.class_type.clone(),
            input: input.to_string(),
            value: tidy(traced.value),
            source: Source {
                kind,
                chain: traced.chain,
            },
            active: node.mode.is_active(),
            node_state: NodeState::of(node.mode),
            subgraph: (!node.subgraph_path.is_empty()).then(|| node.subgraph_path.join(" / ")),
        })
    }

    fn traced_number(&self, node: &'a FlatNode, names: &[&str]) -> Option<f64> {
        tidy(
            names
                .iter()
                .find_map(|name| self.trace_input(node, name, 0))
                .and_then(|t| t.value),
        )
    }

    // -- the parts of an inspection ----------------------------------------------------------

    fn inspect(&self, format: &str) -> Inspection {
        let sampler_distance = self.distance_to_active_samplers();
        let mut candidates: Vec<(&FlatNode, &'static str)> = self
            .flat
            .nodes
            .values()
            .filter_map(|n| {
                let input = frame_input_name(&n.class_type)?;
                self.has_input(n, input).then_some((n, input))
            })
            .collect();
        // Primary: an active node, in the root graph, that feeds an active sampler (the nearest
        // one), then the first in the file.
        candidates.sort_by_key(|(n, _)| {
            (
                !n.mode.is_active(),
                !n.subgraph_path.is_empty(),
                sampler_distance
                    .get(n.id.as_str())
                    .copied()
                    .unwrap_or(usize::MAX),
                self.order.get(n.id.as_str()).copied().unwrap_or(usize::MAX),
            )
        });
        let mut settings = candidates
            .iter()
            .filter_map(|(n, input)| self.setting(n, input));
        let frames = settings.next();
        let other_frame_nodes: Vec<Setting> = settings.collect();

        let (width, height) = self.size(&candidates);
        let fps = self.fps();
        let models = self.models();
        let samplers = self.samplers();
        let compile = self.compile_nodes();
        let block_swap = self.block_swap_nodes();
        let outputs = self
            .flat
            .nodes
            .values()
            .filter(|n| is_output(&n.class_type, self.defs))
            .map(|n| OutputNode {
                node: n.id.clone(),
                class_type: n.class_type.clone(),
                active: n.mode.is_active(),
                node_state: NodeState::of(n.mode),
            })
            .collect();

        let diffusion_files: Vec<&str> = {
            let active: Vec<&str> = models
                .iter()
                .filter(|m| {
                    m.active
                        && matches!(
                            m.role,
                            ModelRole::HighNoise | ModelRole::LowNoise | ModelRole::Single
                        )
                })
                .map(|m| m.file.as_str())
                .collect();
            if active.is_empty() {
                models
                    .iter()
                    .filter(|m| {
                        matches!(
                            m.role,
                            ModelRole::HighNoise | ModelRole::LowNoise | ModelRole::Single
                        )
                    })
                    .map(|m| m.file.as_str())
                    .collect()
            } else {
                active
            }
        };
        let active_classes: Vec<&str> = self
            .flat
            .nodes
            .values()
            .filter(|n| n.mode.is_active())
            .map(|n| n.class_type.as_str())
            .collect();
        let (family, family_reason) = family_of(
            frames.as_ref().map(|f| f.class_type.as_str()),
            &active_classes,
            &diffusion_files,
        );

        let warnings = self.warnings(&frames, &other_frame_nodes, &compile, &block_swap);
        Inspection {
            format: format.to_string(),
            family,
            family_reason,
            frames,
            other_frame_nodes,
            width,
            height,
            fps,
            models,
            samplers,
            compile,
            block_swap,
            outputs,
            warnings,
        }
    }

    /// Link distance from each node to the nearest active sampler it feeds.
    fn distance_to_active_samplers(&self) -> HashMap<&'a str, usize> {
        let mut distance: HashMap<&str, usize> = HashMap::new();
        let mut queue = VecDeque::new();
        for node in self.flat.nodes.values() {
            if node.mode.is_active() && is_sampler(&node.class_type) {
                distance.insert(node.id.as_str(), 0);
                queue.push_back(node.id.as_str());
            }
        }
        while let Some(id) = queue.pop_front() {
            let Some(node) = self.node(id) else {
                continue;
            };
            let next = distance.get(id).copied().unwrap_or(0) + 1;
            for input in node.inputs.values() {
                if let FlatInput::Link { origin, .. } = input
                    && let Some((key, _)) = self.flat.nodes.get_key_value(origin.as_str())
                    && !distance.contains_key(key.as_str())
                {
                    distance.insert(key.as_str(), next);
                    queue.push_back(key.as_str());
                }
            }
        }
        distance
    }

    fn size(
        &self,
        candidates: &[(&'a FlatNode, &'static str)],
    ) -> (Option<Setting>, Option<Setting>) {
        for (node, _) in candidates {
            if self.has_input(node, "width") && self.has_input(node, "height") {
                return (self.setting(node, "width"), self.setting(node, "height"));
            }
            if self.has_input(node, "base_resolution") {
                let base = self.setting(node, "base_resolution");
                return (base.clone(), base);
            }
        }
        (None, None)
    }

    fn fps(&self) -> Option<Setting> {
        let mut found: Vec<(&FlatNode, &str)> = self
            .flat
            .nodes
            .values()
            .filter_map(|n| {
                let input = match n.class_type.as_str() {
                    "CreateVideo" | "SaveAnimatedWEBP" | "SaveWEBM" | "SaveAnimatedPNG" => "fps",
                    "VHS_VideoCombine" => "frame_rate",
                    _ => return None,
                };
                self.has_input(n, input).then_some((n, input))
            })
            .collect();
        found.sort_by_key(|(n, _)| (!n.mode.is_active(), !n.subgraph_path.is_empty()));
        found.first().and_then(|(n, input)| self.setting(n, input))
    }

    fn models(&self) -> Vec<ModelFile> {
        let passes = self.sampler_passes();
        let mut out = Vec::new();
        for node in self.flat.nodes.values() {
            let base = base_class(&node.class_type);
            let fixed_role = if TEXT_ENCODER_LOADERS.contains(&base) {
                Some(ModelRole::TextEncoder)
            } else if VAE_LOADERS.contains(&base) {
                Some(ModelRole::Vae)
            } else if CLIP_VISION_LOADERS.contains(&base) {
                Some(ModelRole::ClipVision)
            } else if LORA_LOADERS.contains(&base) {
                Some(ModelRole::Lora)
            } else if DIFFUSION_LOADERS.contains(&base) {
                None
            } else {
                continue;
            };
            let entry = |file: String, role: ModelRole, role_from: &str, active: bool| ModelFile {
                node: node.id.clone(),
                class_type: node.class_type.clone(),
                file,
                role,
                role_from: role_from.to_string(),
                active,
                node_state: NodeState::of(node.mode),
            };
            let active = node.mode.is_active();
            match fixed_role {
                Some(ModelRole::Lora) => {
                    for (file, enabled) in self.lora_files(node) {
                        out.push(entry(
                            file,
                            ModelRole::Lora,
                            "loader class",
                            active && enabled,
                        ));
                    }
                }
                Some(role) => {
                    if let Some(file) = self.file_of(node) {
                        out.push(entry(file, role, "loader class", active));
                    }
                }
                None => {
                    let Some(file) = self.file_of(node) else {
                        continue;
                    };
                    let (role, from) = match noise_role_from_name(&file) {
                        Some(role) => (role, "file name"),
                        None => self.role_from_samplers(node, &passes),
                    };
                    out.push(entry(file, role, from, active));
                }
            }
        }
        out
    }

    fn file_of(&self, node: &'a FlatNode) -> Option<String> {
        FILE_INPUTS
            .iter()
            .find_map(|name| self.text(node, name))
            .filter(|f| !f.is_empty() && f != "none")
    }

    /// LoRA files of a LoRA node, each with whether it is switched on.
    fn lora_files(&self, node: &'a FlatNode) -> Vec<(String, bool)> {
        let mut files = Vec::new();
        // rgthree's Power Lora Loader keeps one object per LoRA: {on, lora, strength}.
        let objects: Vec<&Value> = node
            .inputs
            .values()
            .filter_map(|i| match i {
                FlatInput::Value { value, .. } => Some(value),
                FlatInput::Link { .. } => None,
            })
            .chain(node.raw_widgets.iter())
            .collect();
        let mut seen = HashSet::new();
        for value in objects {
            if let Some(file) = value.get("lora").and_then(Value::as_str) {
                let on = value.get("on").and_then(Value::as_bool).unwrap_or(true);
                if !file.is_empty() && file != "None" && seen.insert((file.to_string(), on)) {
                    files.push((file.to_string(), on));
                }
            }
        }
        if files.is_empty() {
            for name in [
                "lora_name",
                "lora",
                "lora_high_name",
                "lora_0",
                "lora_1",
                "lora_2",
                "lora_3",
                "lora_4",
            ] {
                if let Some(file) = self.text(node, name)
                    && !file.is_empty()
                    && !file.eq_ignore_ascii_case("none")
                {
                    files.push((file, true));
                }
            }
        }
        files
    }

    /// For each active sampler, whether it is the first pass of a multi-pass chain (`Some(0)`),
    /// a later pass (`Some(n)`), or alone (`None`).
    fn sampler_passes(&self) -> HashMap<&'a str, Option<usize>> {
        let samplers: Vec<&FlatNode> = self
            .flat
            .nodes
            .values()
            .filter(|n| n.mode.is_active() && is_sampler(&n.class_type))
            .collect();
        let mut earlier: HashMap<&str, usize> = HashMap::new();
        let mut has_later: HashSet<&str> = HashSet::new();
        for sampler in &samplers {
            let upstream = self.upstream_samplers(sampler);
            earlier.insert(sampler.id.as_str(), upstream.len());
            for id in upstream {
                has_later.insert(id);
            }
        }
        samplers
            .iter()
            .map(|s| {
                let id = s.id.as_str();
                let before = earlier.get(id).copied().unwrap_or(0);
                let pass = if before > 0 {
                    Some(before)
                } else if has_later.contains(id) {
                    Some(0)
                } else {
                    None
                };
                (id, pass)
            })
            .collect()
    }

    /// Samplers whose latent reaches this sampler's latent input.
    fn upstream_samplers(&self, sampler: &FlatNode) -> HashSet<&'a str> {
        let mut found = HashSet::new();
        let mut seen = HashSet::new();
        let mut queue: VecDeque<&str> = sampler
            .inputs
            .iter()
            .filter(|(name, _)| matches!(name.as_str(), "latent_image" | "samples" | "latent"))
            .filter_map(|(_, i)| match i {
                FlatInput::Link { origin, .. } => Some(origin.as_str()),
                FlatInput::Value { .. } => None,
            })
            .collect();
        while let Some(id) = queue.pop_front() {
            let Some((key, node)) = self.flat.nodes.get_key_value(id) else {
                continue;
            };
            if !seen.insert(key.as_str()) {
                continue;
            }
            if is_sampler(&node.class_type) {
                if node.mode.is_active() {
                    found.insert(key.as_str());
                }
                continue;
            }
            for input in node.inputs.values() {
                if let FlatInput::Link { origin, .. } = input {
                    queue.push_back(origin.as_str());
                }
            }
        }
        found
    }

    /// The active samplers a node's outputs reach (without passing through another sampler),
    /// with the sampler input they arrive at.
    fn samplers_fed_by(&self, start: &str) -> Vec<(&'a str, &'a str)> {
        let mut reached = Vec::new();
        let mut seen = HashSet::new();
        let mut queue = VecDeque::from([start]);
        while let Some(id) = queue.pop_front() {
            if !seen.insert(id) {
                continue;
            }
            for (target, input) in self.downstream.get(id).into_iter().flatten() {
                let Some(node) = self.node(target) else {
                    continue;
                };
                if is_sampler(&node.class_type) {
                    if node.mode.is_active() {
                        reached.push((*target, *input));
                    }
                } else {
                    queue.push_back(target);
                }
            }
        }
        reached
    }

    /// High or low noise from the sampler a diffusion model feeds: an input named for the
    /// expert, or the first / later pass of a two-pass chain.
    fn role_from_samplers(
        &self,
        loader: &FlatNode,
        passes: &HashMap<&'a str, Option<usize>>,
    ) -> (ModelRole, &'static str) {
        let reached = self.samplers_fed_by(&loader.id);
        if reached.is_empty() {
            return (ModelRole::Single, "no active sampler reached");
        }
        let by_input: HashSet<Option<ModelRole>> = reached
            .iter()
            .map(|(_, input)| noise_role_from_name(input))
            .collect();
        if by_input.len() == 1
            && let Some(Some(role)) = by_input.into_iter().next()
        {
            return (role, "sampler input");
        }
        let pass_of = |id: &str| passes.get(id).copied().flatten();
        if reached.iter().all(|(id, _)| pass_of(id) == Some(0)) {
            return (ModelRole::HighNoise, "sampler pass");
        }
        if reached
            .iter()
            .all(|(id, _)| pass_of(id).is_some_and(|p| p > 0))
        {
            return (ModelRole::LowNoise, "sampler pass");
        }
        if reached.iter().all(|(id, _)| pass_of(id).is_none()) {
            return (ModelRole::Single, "single-pass sampler");
        }
        (ModelRole::Single, "feeds every pass")
    }

    fn samplers(&self) -> Vec<Sampler> {
        self.flat
            .nodes
            .values()
            .filter(|n| is_sampler(&n.class_type))
            .map(|n| Sampler {
                node: n.id.clone(),
                class_type: n.class_type.clone(),
                steps: self.traced_number(n, &["steps"]),
                start: self.traced_number(n, &["start_at_step", "start_step"]),
                end: self.traced_number(n, &["end_at_step", "end_step"]),
                cfg: self.traced_number(n, &["cfg", "cfg_high_noise"]),
                active: n.mode.is_active(),
                node_state: NodeState::of(n.mode),
            })
            .collect()
    }

    fn compile_nodes(&self) -> Vec<CompileNode> {
        self.flat
            .nodes
            .values()
            .filter(|n| is_compile(&n.class_type))
            .map(|n| CompileNode {
                node: n.id.clone(),
                class_type: n.class_type.clone(),
                mode: self.text(n, "mode"),
                backend: self.text(n, "backend"),
                active: n.mode.is_active(),
                node_state: NodeState::of(n.mode),
            })
            .collect()
    }

    fn block_swap_nodes(&self) -> Vec<BlockSwapNode> {
        self.flat
            .nodes
            .values()
            .filter(|n| is_block_swap(&n.class_type))
            .map(|n| {
                let mut blocks = self.traced_number(n, &["blocks_to_swap"]);
                if blocks.is_none() {
                    // WanVideoSetBlockSwap takes its settings from a WanVideoBlockSwap node.
                    if let Some(FlatInput::Link { origin, .. }) = n.inputs.get("block_swap_args") {
                        blocks = self
                            .node(origin)
                            .and_then(|o| self.traced_number(o, &["blocks_to_swap"]));
                    }
                }
                BlockSwapNode {
                    node: n.id.clone(),
                    class_type: n.class_type.clone(),
                    blocks,
                    active: n.mode.is_active(),
                    node_state: NodeState::of(n.mode),
                }
            })
            .collect()
    }

    fn warnings(
        &self,
        frames: &Option<Setting>,
        others: &[Setting],
        compile: &[CompileNode],
        block_swap: &[BlockSwapNode],
    ) -> Vec<String> {
        let mut warnings: Vec<String> = self
            .flat
            .warnings
            .iter()
            // Unknown node types are summarised below, once per type.
            .filter(|w| !matches!(w, WorkflowError::UnknownNodeType { .. }))
            .map(ToString::to_string)
            .collect();
        // Unknown node types, once per type.
        let mut unknown: Vec<(&str, usize, bool)> = Vec::new();
        for node in self.flat.nodes.values() {
            if node.is_described || !node.mode.is_active() {
                continue;
            }
            let class = node.class_type.as_str();
            match unknown.iter_mut().find(|(c, _, _)| *c == class) {
                Some(entry) => entry.1 += 1,
                None => unknown.push((class, 1, !self.widget_names(node).is_empty())),
            }
        }
        if !unknown.is_empty() {
            let list: Vec<String> = unknown
                .iter()
                .map(|(class, count, named)| {
                    let count = if *count > 1 {
                        format!(" ×{count}")
                    } else {
                        String::new()
                    };
                    let named = if *named {
                        " (widgets read by position)"
                    } else {
                        ""
                    };
                    format!("{class}{count}{named}")
                })
                .collect();
            warnings.push(format!(
                "node types the node definitions in use do not describe: {}; a server with their \
                 custom node packs is needed to run this workflow",
                list.join(", ")
            ));
        }
        match frames {
            None => warnings.push(
                "no Wan node with a frame count (length, num_frames or video_length) was found"
                    .into(),
            ),
            Some(f) => {
                if !f.active {
                    warnings.push(format!(
                        "the only frame-count nodes are {}; nothing that runs sets the length",
                        f.node_state.as_str()
                    ));
                }
                match f.value {
                    None => warnings.push(format!(
                        "the frame count is only known at run time ({})",
                        f.source.chain
                    )),
                    Some(v) if v >= 1.0 && v.fract() == 0.0 && (v as i64 - 1) % 4 != 0 => {
                        let exact = (v as i64 - 1) / 4 * 4 + 1;
                        warnings.push(format!(
                            "{} frames is not of the form 4n+1; Wan decodes {exact}",
                            v as i64
                        ));
                    }
                    _ => {}
                }
                // Only nodes that shape the same generation must agree (a file may hold several
                // independent pipelines).
                let fed: HashSet<&str> = self
                    .samplers_fed_by(&f.node)
                    .into_iter()
                    .map(|(id, _)| id)
                    .collect();
                let same_pipeline = |other: &Setting| {
                    self.samplers_fed_by(&other.node)
                        .iter()
                        .any(|(id, _)| fed.contains(id))
                };
                for other in others.iter().filter(|o| o.active && same_pipeline(o)) {
                    if let (Some(a), Some(b)) = (f.value, other.value)
                        && a != b
                    {
                        warnings.push(format!(
                            "{} #{} asks for {} frames but {} #{} for {}",
                            f.class_type,
                            f.node,
                            show_number(Some(a)),
                            other.class_type,
                            other.node,
                            show_number(Some(b))
                        ));
                    }
                }
            }
        }
        for c in compile
            .iter()
            .filter(|c| c.class_type == "TorchCompileModelWanVideo")
        {
            warnings.push(format!(
                "TorchCompileModelWanVideo #{} is a deprecated pass-through in current KJNodes and \
                 compiles nothing; TorchCompileModelAdvanced replaces it",
                c.node
            ));
        }
        for b in block_swap.iter().filter(|b| b.class_type == "wanBlockSwap") {
            warnings.push(format!(
                "wanBlockSwap #{} is a no-op in current ComfyUI (comfy_extras/nodes_nop.py); it \
                 swaps no blocks",
                b.node
            ));
        }
        warnings
    }
}

/// "Class#id", with the id inside its subgraph and "@Subgraph" when it sits in one.
fn node_ref(node: &FlatNode) -> String {
    let local = node.id.rsplit(':').next().unwrap_or(&node.id);
    match node.subgraph_path.last() {
        Some(name) => format!("{}#{local}@{name}", node.class_type),
        None => format!("{}#{local}", node.class_type),
    }
}

fn describe_source(source: &ValueSource) -> (SourceKind, String) {
    match source {
        ValueSource::Widget | ValueSource::Prompt => (SourceKind::Widget, "widget".into()),
        ValueSource::Default => (SourceKind::Widget, "default value".into()),
        ValueSource::Primitive(id) => {
            let local = id.rsplit(':').next().unwrap_or(id);
            (SourceKind::Primitive, format!("PrimitiveNode#{local}"))
        }
        ValueSource::SubgraphWidget { input, on_inner } => (
            SourceKind::SubgraphInput,
            if *on_inner {
                format!("promoted subgraph widget '{input}' (value on inner node)")
            } else {
                format!("subgraph input '{input}'")
            },
        ),
    }
}

/// Chain texts longer than this are cut: a graph built to fan out would otherwise grow them
/// exponentially.
const MAX_CHAIN_CHARS: usize = 400;

fn capped(chain: String) -> String {
    if chain.len() <= MAX_CHAIN_CHARS {
        return chain;
    }
    let mut end = MAX_CHAIN_CHARS;
    while !chain.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} …", &chain[..end])
}

/// Puts what a link passed through in front of the traced value.
fn with_hops(hops: &[Hop], inner: Traced) -> Traced {
    let mut parts = Vec::new();
    let mut kind = inner.kind;
    for hop in hops {
        match hop {
            Hop::SetGet(name) => {
                parts.push(format!("Get/Set '{name}'"));
                kind = kind.max(SourceKind::SetGet);
            }
            Hop::SubgraphInput(name) => {
                parts.push(format!("subgraph input '{name}'"));
                kind = kind.max(SourceKind::SubgraphInput);
            }
            Hop::SubgraphOutput(name) => parts.push(format!("subgraph output '{name}'")),
            Hop::Reroute(_) | Hop::Bypassed(_) => {}
        }
    }
    parts.push(inner.chain);
    Traced {
        value: inner.value,
        kind,
        chain: parts.join(" <- "),
    }
}

/// Drops the float noise the frontend's widget rounding leaves (16.000000000000004 → 16).
fn tidy(value: Option<f64>) -> Option<f64> {
    value.map(|v| {
        let near = (v * 1e6).round() / 1e6;
        if (v - near).abs() < 1e-9 { near } else { v }
    })
}

/// A JSON value as a number, the way Python nodes would take it.
fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|v| v.is_finite()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Maths nodes
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Maths {
    /// Easy-Use `easy mathInt`: a, b, operation (divide is floor division).
    EasyInt,
    /// Easy-Use `easy mathFloat`: a, b, operation; results rounded to 3 decimals.
    EasyFloat,
    /// Easy-Use `easy convertAnything`: `*` converted to `output_type`.
    EasyConvert,
    /// `MathExpression|pysssss`: expression over a, b, c; outputs int(r), float(r).
    Pysssss,
    /// `SimpleMath+`: expression `value` over a, b, c; outputs round(r), r.
    Essentials,
    /// Core `ComfyMathExpression`: expression over values.a.. ; outputs float, int, bool.
    Comfy,
}

/// The input that holds a constant node's value (PrimitiveInt, INTConstant, Easy-Use int, …):
/// editing it edits every use of the constant.
pub fn constant_input(class_type: &str) -> Option<&'static str> {
    match class_type {
        "PrimitiveInt"
        | "PrimitiveFloat"
        | "PrimitiveBoolean"
        | "PrimitiveString"
        | "PrimitiveStringMultiline"
        | "INTConstant"
        | "FloatConstant"
        | "easy int"
        | "easy float"
        | "SimpleMathInt+"
        | "SimpleMathFloat+" => Some("value"),
        "StringConstant" | "StringConstantMultiline" => Some("string"),
        "Int" | "Float" => Some("Number"),
        _ => None,
    }
}

/// Nodes whose output the graph computes from other values (maths, sliders): a value they
/// feed can be replaced by a literal without changing what else the graph does.
pub fn is_computed(class_type: &str) -> bool {
    maths_kind(class_type).is_some()
        || matches!(class_type, "mxSlider" | "mxSlider2D" | "CM_FloatToInt")
}

fn maths_kind(class_type: &str) -> Option<Maths> {
    Some(match class_type {
        "easy mathInt" => Maths::EasyInt,
        "easy mathFloat" => Maths::EasyFloat,
        "easy convertAnything" => Maths::EasyConvert,
        "MathExpression|pysssss" => Maths::Pysssss,
        "SimpleMath+" => Maths::Essentials,
        "ComfyMathExpression" => Maths::Comfy,
        _ => return None,
    })
}

/// Easy-Use's two-operand maths nodes.
fn easy_maths(a: Option<f64>, b: Option<f64>, operation: &str, is_float: bool) -> Option<f64> {
    let (a, b) = (a?, b?);
    let result = match operation {
        "add" => a + b,
        "subtract" => a - b,
        "multiply" => a * b,
        "divide" if b == 0.0 => return None,
        "divide" if is_float => a / b,
        "divide" => (a / b).floor(),
        "modulo" if b == 0.0 => return None,
        "modulo" => python_mod(a, b),
        "power" => a.powf(b),
        _ => return None,
    };
    let result = if is_float {
        round_half_even(result * 1000.0) / 1000.0
    } else {
        result
    };
    result.is_finite().then_some(result)
}

fn python_mod(a: f64, b: f64) -> f64 {
    a - b * (a / b).floor()
}

/// Python's `round`: halves go to the even neighbour.
fn round_half_even(x: f64) -> f64 {
    let rounded = x.round();
    if (x - x.trunc()).abs() == 0.5 {
        2.0 * (x / 2.0).round()
    } else {
        rounded
    }
}

// ---------------------------------------------------------------------------------------------
// A small, safe expression evaluator
// ---------------------------------------------------------------------------------------------

/// Why an expression could not be evaluated.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprError {
    Syntax(String),
    /// A name that is no variable and no function we know.
    UnknownName(String),
    /// A variable whose value is not known (only at run time).
    UnknownValue(String),
    /// Division by zero and the like.
    Maths(String),
}

/// Evaluates the arithmetic the maths nodes accept, with Python's meaning: `+ - * / // % **`,
/// comparisons (1 or 0), parentheses, and `floor ceil round min max abs int float sqrt pow
/// sum`. Names are looked up with `var`; nothing else is reachable.
pub fn evaluate(expression: &str, var: &dyn Fn(&str) -> Option<f64>) -> Result<f64, ExprError> {
    let tokens = tokenize(expression)?;
    let mut parser = Parser {
        tokens: &tokens,
        pos: 0,
        var,
        depth: 0,
    };
    let value = parser.comparison()?;
    if parser.pos != tokens.len() {
        return Err(ExprError::Syntax(format!(
            "unexpected {:?} in '{expression}'",
            tokens.get(parser.pos)
        )));
    }
    if value.is_finite() {
        Ok(value)
    } else {
        Err(ExprError::Maths(format!(
            "'{expression}' is not a finite number"
        )))
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(f64),
    Name(String),
    Op(&'static str),
    Open,
    Close,
    Comma,
}

fn tokenize(text: &str) -> Result<Vec<Token>, ExprError> {
    const OPS: &[&str] = &[
        "**", "//", "<=", ">=", "==", "!=", "+", "-", "*", "/", "%", "<", ">",
    ];
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() || c == '.' {
            let start = i;
            while chars
                .get(i)
                .is_some_and(|c| c.is_ascii_digit() || *c == '.' || *c == '_')
            {
                i += 1;
            }
            // Exponent: 1e3, 2.5E-2.
            if chars.get(i).is_some_and(|c| *c == 'e' || *c == 'E')
                && chars.get(i + 1).is_some_and(|c| {
                    c.is_ascii_digit()
                        || ((*c == '-' || *c == '+')
                            && chars.get(i + 2).is_some_and(char::is_ascii_digit))
                })
            {
                i += 2;
                while chars.get(i).is_some_and(char::is_ascii_digit) {
                    i += 1;
                }
            }
            let literal: String = chars[start..i].iter().filter(|c| **c != '_').collect();
            let value = literal
                .parse::<f64>()
                .map_err(|_| ExprError::Syntax(format!("bad number '{literal}'")))?;
            tokens.push(Token::Number(value));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while chars
                .get(i)
                .is_some_and(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
            {
                i += 1;
            }
            tokens.push(Token::Name(chars[start..i].iter().collect()));
        } else if c == '(' {
            tokens.push(Token::Open);
            i += 1;
        } else if c == ')' {
            tokens.push(Token::Close);
            i += 1;
        } else if c == ',' {
            tokens.push(Token::Comma);
            i += 1;
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) else {
                return Err(ExprError::Syntax(format!("unexpected character '{c}'")));
            };
            tokens.push(Token::Op(op));
            i += op.len();
        }
    }
    Ok(tokens)
}

struct Parser<'t, 'v> {
    tokens: &'t [Token],
    pos: usize,
    var: &'v dyn Fn(&str) -> Option<f64>,
    depth: usize,
}

impl Parser<'_, '_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn eat_op(&mut self, ops: &[&str]) -> Option<&'static str> {
        match self.peek() {
            Some(Token::Op(op)) if ops.contains(op) => {
                let op = *op;
                self.pos += 1;
                Some(op)
            }
            _ => None,
        }
    }

    fn comparison(&mut self) -> Result<f64, ExprError> {
        self.depth += 1;
        if self.depth > 64 {
            return Err(ExprError::Syntax("expression nested too deeply".into()));
        }
        let left = self.arith()?;
        let result = match self.eat_op(&["<", ">", "<=", ">=", "==", "!="]) {
            Some(op) => {
                let right = self.arith()?;
                let holds = match op {
                    "<" => left < right,
                    ">" => left > right,
                    "<=" => left <= right,
                    ">=" => left >= right,
                    "==" => left == right,
                    _ => left != right,
                };
                f64::from(u8::from(holds))
            }
            None => left,
        };
        self.depth -= 1;
        Ok(result)
    }

    fn arith(&mut self) -> Result<f64, ExprError> {
        let mut value = self.term()?;
        while let Some(op) = self.eat_op(&["+", "-"]) {
            let right = self.term()?;
            value = if op == "+" {
                value + right
            } else {
                value - right
            };
        }
        Ok(value)
    }

    fn term(&mut self) -> Result<f64, ExprError> {
        let mut value = self.unary()?;
        while let Some(op) = self.eat_op(&["*", "/", "//", "%"]) {
            let right = self.unary()?;
            if op != "*" && right == 0.0 {
                return Err(ExprError::Maths("division by zero".into()));
            }
            value = match op {
                "*" => value * right,
                "/" => value / right,
                "//" => (value / right).floor(),
                _ => python_mod(value, right),
            };
        }
        Ok(value)
    }

    fn unary(&mut self) -> Result<f64, ExprError> {
        match self.eat_op(&["-", "+"]) {
            Some("-") => Ok(-self.unary()?),
            Some(_) => self.unary(),
            None => self.power(),
        }
    }

    fn power(&mut self) -> Result<f64, ExprError> {
        let base = self.atom()?;
        if self.eat_op(&["**"]).is_some() {
            let exponent = self.unary()?;
            return Ok(base.powf(exponent));
        }
        Ok(base)
    }

    fn atom(&mut self) -> Result<f64, ExprError> {
        let token = self.peek().cloned();
        self.pos += 1;
        match token {
            Some(Token::Number(n)) => Ok(n),
            Some(Token::Open) => {
                let value = self.comparison()?;
                match self.peek() {
                    Some(Token::Close) => {
                        self.pos += 1;
                        Ok(value)
                    }
                    _ => Err(ExprError::Syntax("missing ')'".into())),
                }
            }
            Some(Token::Name(name)) => {
                if self.peek() == Some(&Token::Open) {
                    self.pos += 1;
                    let args = self.arguments()?;
                    return call(&name, &args);
                }
                match name.as_str() {
                    "True" => Ok(1.0),
                    "False" => Ok(0.0),
                    _ => (self.var)(&name).ok_or(ExprError::UnknownValue(name)),
                }
            }
            other => Err(ExprError::Syntax(format!("unexpected {other:?}"))),
        }
    }

    fn arguments(&mut self) -> Result<Vec<f64>, ExprError> {
        let mut args = Vec::new();
        if self.peek() == Some(&Token::Close) {
            self.pos += 1;
            return Ok(args);
        }
        loop {
            args.push(self.comparison()?);
            match self.peek() {
                Some(Token::Comma) => self.pos += 1,
                Some(Token::Close) => {
                    self.pos += 1;
                    return Ok(args);
                }
                _ => return Err(ExprError::Syntax("missing ')' after arguments".into())),
            }
        }
    }
}

fn call(name: &str, args: &[f64]) -> Result<f64, ExprError> {
    let one = || match args {
        [x] => Ok(*x),
        _ => Err(ExprError::Syntax(format!("{name}() takes one argument"))),
    };
    match name {
        "floor" => Ok(one()?.floor()),
        "ceil" => Ok(one()?.ceil()),
        "abs" => Ok(one()?.abs()),
        "int" => Ok(one()?.trunc()),
        "float" => one(),
        "sqrt" => {
            let x = one()?;
            if x < 0.0 {
                Err(ExprError::Maths("sqrt of a negative number".into()))
            } else {
                Ok(x.sqrt())
            }
        }
        "round" => match args {
            [x] => Ok(round_half_even(*x)),
            [x, digits] => {
                let scale = 10f64.powi(digits.trunc().clamp(-15.0, 15.0) as i32);
                Ok(round_half_even(x * scale) / scale)
            }
            _ => Err(ExprError::Syntax(
                "round() takes one or two arguments".into(),
            )),
        },
        "min" | "max" if args.is_empty() => {
            Err(ExprError::Syntax(format!("{name}() needs arguments")))
        }
        "min" => Ok(args.iter().copied().fold(f64::INFINITY, f64::min)),
        "max" => Ok(args.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
        "sum" => Ok(args.iter().sum()),
        "pow" => match args {
            [x, y] => Ok(x.powf(*y)),
            _ => Err(ExprError::Syntax("pow() takes two arguments".into())),
        },
        _ => Err(ExprError::UnknownName(name.to_string())),
    }
}

// ---------------------------------------------------------------------------------------------
// Model roles and the family
// ---------------------------------------------------------------------------------------------

/// Words of a file or input name: split at non-alphanumerics and lower→upper case changes
/// ("i2vHigh" → i2v, high; "A14B-HighNoise" → a14b, high, noise).
fn name_words(name: &str) -> Vec<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let mut words = Vec::new();
    let mut current = String::new();
    let mut previous: Option<char> = None;
    for c in base.chars() {
        if !c.is_alphanumeric() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current).to_lowercase());
            }
            previous = None;
            continue;
        }
        if c.is_uppercase() && previous.is_some_and(|p| p.is_lowercase() || p.is_ascii_digit()) {
            words.push(std::mem::take(&mut current).to_lowercase());
        }
        current.push(c);
        previous = Some(c);
    }
    if !current.is_empty() {
        words.push(current.to_lowercase());
    }
    words
}

/// High- or low-noise expert from a name ("…high_noise…", "…-HIGH_…", "…HighNoise…").
fn noise_role_from_name(name: &str) -> Option<ModelRole> {
    let words = name_words(name);
    let high = words.iter().any(|w| w == "high" || w == "highnoise");
    let low = words.iter().any(|w| w == "low" || w == "lownoise");
    match (high, low) {
        (true, false) => Some(ModelRole::HighNoise),
        (false, true) => Some(ModelRole::LowNoise),
        _ => None,
    }
}

/// Lower-case words of a model file split at non-alphanumerics only ("Wan2_2-TI2V-5B" → wan2,
/// 2, ti2v, 5b).
fn file_tokens(file: &str) -> Vec<String> {
    let base = file.rsplit(['/', '\\']).next().unwrap_or(file);
    base.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The Wan task family, from the primary frame node's type (or, without one, every active node
/// type) and the diffusion model files. Rules, first match wins:
/// 1. node types that only exist for one task: sound → s2v, animate → animate, VACE → vace,
///    first-last / first-middle-last / multi-keyframe → flf2v, Fun control / inpaint / camera →
///    other, Wan22ImageToVideoLatent → ti2v;
/// 2. model files: 5B / TI2V → ti2v, Fun → other, FLF2V → flf2v, VACE → vace, Animate →
///    animate, S2V → s2v (the wrapper's generic encode nodes serve all of these);
/// 3. the generic node's own task: image-to-video encode → i2v, empty latent / embeds → t2v;
/// 4. model files saying I2V or T2V; otherwise other.
pub fn family_of(
    primary: Option<&str>,
    active_classes: &[&str],
    model_files: &[&str],
) -> (Family, String) {
    let by_node = |class: &str| -> Option<Family> {
        let base = base_class(class);
        let lower = base.to_lowercase();
        if lower.contains("sound") || lower.contains("s2v") {
            Some(Family::S2v)
        } else if base == "WanAnimateToVideo" || base == "WanVideoAnimateEmbeds" {
            Some(Family::Animate)
        } else if lower.contains("vace") {
            Some(Family::Vace)
        } else if matches!(
            base,
            "WanFirstLastFrameToVideo"
                | "WanFirstMiddleLastFrameToVideo"
                | "WanMultiFrameRefToVideo"
                | "WanFourFrameReferenceUltimate"
        ) {
            Some(Family::Flf2v)
        } else if base.starts_with("Wan")
            && (base.contains("Fun") || base.contains("Camera"))
            && (base.contains("ToVideo") || base.ends_with("Sampler"))
        {
            Some(Family::Other)
        } else if base == "Wan22ImageToVideoLatent" {
            Some(Family::Ti2v)
        } else {
            None
        }
    };
    let classes: Vec<&str> = match primary {
        Some(p) => vec![p],
        None => active_classes.to_vec(),
    };
    for class in &classes {
        if let Some(family) = by_node(class) {
            return (family, format!("{class} node"));
        }
    }
    let tokens: Vec<(String, Vec<String>)> = model_files
        .iter()
        .map(|f| (f.to_string(), file_tokens(f)))
        .collect();
    let file_with = |wanted: &[&str]| {
        tokens
            .iter()
            .find(|(_, t)| t.iter().any(|w| wanted.contains(&w.as_str())))
            .map(|(f, _)| f.clone())
    };
    for (wanted, family) in [
        (&["ti2v", "5b"][..], Family::Ti2v),
        (&["fun"][..], Family::Other),
        (&["flf2v"][..], Family::Flf2v),
        (&["vace"][..], Family::Vace),
        (&["animate"][..], Family::Animate),
        (&["s2v"][..], Family::S2v),
    ] {
        if let Some(file) = file_with(wanted) {
            return (family, format!("model file {file}"));
        }
    }
    for class in &classes {
        let base = base_class(class);
        let family = if base == "WanImageToVideo"
            || base.starts_with("WanVideoImageToVideoEncode")
            || base == "Wan2_2I2VSampler"
        {
            Some(Family::I2v)
        } else if base == "EmptyHunyuanLatentVideo"
            || base == "WanVideoEmptyEmbeds"
            || base == "Wan2_2T2VSampler"
        {
            Some(Family::T2v)
        } else {
            None
        };
        if let Some(family) = family {
            return (family, format!("{class} node"));
        }
    }
    if let Some(file) = file_with(&["i2v"]) {
        return (Family::I2v, format!("model file {file}"));
    }
    if let Some(file) = file_with(&["t2v"]) {
        return (Family::T2v, format!("model file {file}"));
    }
    (
        Family::Other,
        "no Wan node or model file names a known task".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(text: &str) -> Result<f64, ExprError> {
        let vars = |name: &str| match name {
            "a" => Some(5.0),
            "b" => Some(16.0),
            "c" => Some(2.5),
            _ => None,
        };
        evaluate(text, &vars)
    }

    #[test]
    fn expressions_follow_python() {
        assert_eq!(eval("floor(a * b) + 1"), Ok(81.0));
        assert_eq!(eval("a * 16 + 1"), Ok(81.0));
        assert_eq!(eval("(a*b)+1"), Ok(81.0));
        assert_eq!(eval("ceil(a/b)"), Ok(1.0));
        assert_eq!(eval("7 // 2"), Ok(3.0));
        assert_eq!(eval("-7 // 2"), Ok(-4.0));
        assert_eq!(eval("-7 % 3"), Ok(2.0));
        assert_eq!(eval("2 ** 3 ** 2"), Ok(512.0));
        assert_eq!(eval("-2 ** 2"), Ok(-4.0));
        assert_eq!(eval("round(c)"), Ok(2.0));
        assert_eq!(eval("round(3.5)"), Ok(4.0));
        assert_eq!(eval("round(1.2345, 2)"), Ok(1.23));
        assert_eq!(eval("min(a, b, 3)"), Ok(3.0));
        assert_eq!(eval("max(a, b)"), Ok(16.0));
        assert_eq!(eval("a/100*40"), Ok(2.0));
        assert_eq!(eval("b - a - c"), Ok(8.5));
        assert_eq!(eval("a > 3"), Ok(1.0));
        assert_eq!(eval("1e2 + 0.5"), Ok(100.5));
    }

    #[test]
    fn expressions_refuse_what_they_cannot_do() {
        assert!(matches!(eval("a / 0"), Err(ExprError::Maths(_))));
        assert!(matches!(eval("d + 1"), Err(ExprError::UnknownValue(_))));
        assert!(eval("__import__('os')").is_err());
        assert!(matches!(eval("exec(1)"), Err(ExprError::UnknownName(_))));
        assert!(matches!(eval("a.b"), Err(ExprError::UnknownValue(_))));
        assert!(matches!(eval("(a + 1"), Err(ExprError::Syntax(_))));
        assert!(matches!(eval("a +"), Err(ExprError::Syntax(_))));
        assert!(matches!(eval("a $ b"), Err(ExprError::Syntax(_))));
        assert!(matches!(eval(""), Err(ExprError::Syntax(_))));
        let deep = format!("{}1{}", "(".repeat(500), ")".repeat(500));
        assert!(matches!(eval(&deep), Err(ExprError::Syntax(_))));
    }

    #[test]
    fn easy_use_maths() {
        // easy mathFloat rounds to 3 decimals; 24.000000000000004 * 3 is 72.
        assert_eq!(
            easy_maths(Some(3.0), Some(24.000000000000004), "multiply", true),
            Some(72.0)
        );
        assert_eq!(easy_maths(Some(7.0), Some(2.0), "divide", false), Some(3.0));
        assert_eq!(easy_maths(Some(7.0), Some(2.0), "divide", true), Some(3.5));
        assert_eq!(easy_maths(Some(1.0), Some(0.0), "divide", false), None);
        assert_eq!(easy_maths(Some(72.0), Some(1.0), "add", false), Some(73.0));
        assert_eq!(easy_maths(Some(1.0), None, "add", false), None);
    }

    #[test]
    fn noise_roles_from_names() {
        use ModelRole::*;
        for (name, role) in [
            (
                "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors",
                Some(HighNoise),
            ),
            (
                "WanVideo\\2_2\\Wan2_2-I2V-A14B-LOW_fp8_e4m3fn_scaled_KJ.safetensors",
                Some(LowNoise),
            ),
            ("Wan2.2-I2V-A14B-HighNoise-Q5_K_M.gguf", Some(HighNoise)),
            ("smoothMixWan22I2VT2V_i2vLow.safetensors", Some(LowNoise)),
            ("Artius-Wan22-14b-I2V-high-Q4_K_M-v2.gguf", Some(HighNoise)),
            ("wan2.2_ti2v_5B_fp16.safetensors", None),
            ("highres_wan.safetensors", None),
        ] {
            assert_eq!(noise_role_from_name(name), role, "{name}");
        }
        assert_eq!(noise_role_from_name("model_high_noise"), Some(HighNoise));
        assert_eq!(noise_role_from_name("model"), None);
    }

    #[test]
    fn family_rules() {
        let f = |primary: Option<&str>, files: &[&str]| family_of(primary, &[], files).0;
        assert_eq!(f(Some("WanSoundImageToVideo"), &[]), Family::S2v);
        assert_eq!(f(Some("WanVideoAnimateEmbeds"), &[]), Family::Animate);
        assert_eq!(f(Some("WanVideoVACEEncode"), &[]), Family::Vace);
        assert_eq!(f(Some("Wan2_2VaceFunSampler"), &[]), Family::Vace);
        assert_eq!(
            f(Some("WanFirstMiddleLastFrameToVideo"), &[]),
            Family::Flf2v
        );
        assert_eq!(f(Some("Wan2_2FunInpaintSampler"), &[]), Family::Other);
        assert_eq!(f(Some("Wan22ImageToVideoLatent"), &[]), Family::Ti2v);
        assert_eq!(
            f(
                Some("WanImageToVideo"),
                &["wan2.2_i2v_high_noise_14B.safetensors"]
            ),
            Family::I2v
        );
        assert_eq!(f(Some("EmptyHunyuanLatentVideo"), &[]), Family::T2v);
        assert_eq!(
            f(
                Some("WanVideoEmptyEmbeds"),
                &["WanVideo\\wan2.2_ti2v_5B_fp16.safetensors"]
            ),
            Family::Ti2v
        );
        assert_eq!(
            f(
                Some("WanVideoImageToVideoEncode"),
                &["Wan2_2-Fun-Control-A14B-HIGH.safetensors"]
            ),
            Family::Other
        );
        assert_eq!(
            f(
                Some("WanVideoImageToVideoEncode"),
                &["Wan2_1-FLF2V-14B-720P_fp8.safetensors"]
            ),
            Family::Flf2v
        );
        assert_eq!(
            f(
                Some("WanVideoImageToVideoEncodeMultiGPU"),
                &["Wan2.2-I2V-A14B-HighNoise.gguf"]
            ),
            Family::I2v
        );
        assert_eq!(f(None, &["Wan2.2-T2V-A14B"]), Family::T2v);
        assert_eq!(f(None, &[]), Family::Other);
        assert_eq!(
            family_of(None, &["KSampler", "WanImageToVideo"], &[]).0,
            Family::I2v
        );
    }

    #[test]
    fn layouts_and_multigpu_names() {
        assert_eq!(
            widget_layout("mxSlider"),
            Some(&["Xi", "Xf", "isfloatX"][..])
        );
        assert_eq!(
            widget_layout("Wan2_2I2VSampler").and_then(|l| l.get(1)),
            Some(&"base_resolution")
        );
        assert_eq!(
            widget_layout("Wan2_2T2VSampler").and_then(|l| l.get(6)),
            Some(&"steps")
        );
        assert_eq!(widget_layout("KSampler"), None);
        assert_eq!(
            multigpu_base("UNETLoaderDisTorch2MultiGPU"),
            Some("UNETLoader")
        );
        assert_eq!(
            multigpu_base("WanVideoModelLoaderMultiGPU"),
            Some("WanVideoModelLoader")
        );
        assert_eq!(multigpu_base("UNETLoader"), None);
        assert_eq!(multigpu_base("MultiGPU"), None);
        assert_eq!(
            frame_input_name("WanVideoImageToVideoEncodeMultiGPU"),
            Some("num_frames")
        );
        assert_eq!(frame_input_name("Wan2_2T2VSampler"), Some("video_length"));
        assert_eq!(frame_input_name("WanFirstLastFrameToVideo"), Some("length"));
        assert_eq!(frame_input_name("KSampler"), None);
        assert!(is_sampler("WanVideoSamplerMultiGPU"));
        assert!(is_sampler("WanMoeKSampler"));
        assert!(is_sampler("KSamplerWithNAG (Advanced)"));
        assert!(!is_sampler("KSamplerSelect"));
        assert!(!is_sampler("MoeSamplerBreakout"));
    }

    #[test]
    fn numbers_serialize_as_integers_when_whole() {
        let out = OutputNode {
            node: "1".into(),
            class_type: "SaveVideo".into(),
            active: true,
            node_state: NodeState::Active,
        };
        let json = serde_json::to_value(&out).unwrap_or_default();
        assert_eq!(json["node_state"], "active");
        let sampler = Sampler {
            node: "2".into(),
            class_type: "KSampler".into(),
            steps: Some(20.0),
            start: None,
            end: None,
            cfg: Some(3.5),
            active: true,
            node_state: NodeState::Active,
        };
        let json = serde_json::to_string(&sampler).unwrap_or_default();
        assert!(json.contains("\"steps\":20,"), "{json}");
        assert!(json.contains("\"start\":null"), "{json}");
        assert!(json.contains("\"cfg\":3.5"), "{json}");
    }
    fn inspect_api(prompt: serde_json::Value) -> Inspection {
        let loaded = super::super::load::from_value(&prompt).expect("an API prompt");
        inspect(&loaded, &NodeDefs::default()).expect("inspects")
    }

    #[test]
    fn traces_maths_chains_in_api_prompts() {
        let inspection = inspect_api(serde_json::json!({
            "1": {"class_type": "mxSlider", "inputs": {"Xi": 5, "Xf": 5.0, "isfloatX": 0}},
            "2": {"class_type": "MathExpression|pysssss", "inputs": {"a": ["1", 0], "expression": "a * 16 + 1"}},
            "3": {"class_type": "WanImageToVideo", "inputs": {"length": ["2", 0], "width": 832, "height": ["9", 0]}},
            "4": {"class_type": "KSampler", "inputs": {"latent_image": ["3", 2], "steps": 20, "cfg": 5}},
            "5": {"class_type": "UNETLoader", "inputs": {"unet_name": "wan2.1_i2v_480p_14B.safetensors"}},
            "6": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["5", 0]}},
            "7": {"class_type": "WanImageToVideo", "inputs": {"length": 33, "width": 1, "height": 1}},
            "9": {"class_type": "ImageResizeKJv2", "inputs": {}}
        }));
        let frames = inspection.frames.expect("a frame node");
        assert_eq!((frames.node.as_str(), frames.value), ("3", Some(81.0)));
        assert_eq!(frames.source.kind, SourceKind::Maths);
        assert_eq!(
            frames.source.chain,
            "computed MathExpression|pysssss#2 <- mxSlider#1"
        );
        assert_eq!(inspection.width.and_then(|w| w.value), Some(832.0));
        let height = inspection.height.expect("a height");
        assert_eq!(height.value, None);
        assert_eq!(height.source.kind, SourceKind::RunTime);
        assert_eq!(height.source.chain, "run-time value from ImageResizeKJv2#9");
        assert_eq!(inspection.other_frame_nodes.len(), 1);
        assert_eq!(inspection.family, Family::I2v);
    }

    #[test]
    fn wide_maths_fan_out_stays_fast() {
        let mut prompt = serde_json::Map::new();
        prompt.insert(
            "0".into(),
            serde_json::json!({"class_type": "PrimitiveInt", "inputs": {"value": 1}}),
        );
        for i in 1_usize..200 {
            let prev = (i - 1).to_string();
            let older = i.saturating_sub(2).to_string();
            prompt.insert(
                i.to_string(),
                serde_json::json!({"class_type": "SimpleMath+", "inputs": {"a": [prev, 1], "b": [older, 1], "c": [prev, 1], "value": "a + b - c"}}),
            );
        }
        prompt.insert(
            "x".into(),
            serde_json::json!({"class_type": "EmptyHunyuanLatentVideo", "inputs": {"length": ["199", 0]}}),
        );
        let started = std::time::Instant::now();
        let inspection = inspect_api(serde_json::Value::Object(prompt));
        assert!(started.elapsed().as_secs() < 5);
        // Deeper than we follow: reported as unknown, not guessed.
        let frames = inspection.frames.expect("a frame node");
        assert_eq!(frames.value, None);
    }
}
