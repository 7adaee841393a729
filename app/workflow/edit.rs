//! Edits wan-pilot makes before it queues a workflow: frame count, size, seed, prompt text,
//! torch.compile mode, and a frame tap that saves every decoded frame as PNG for the preview.
//!
//! Edits work on the flattened graph, which still knows where each value came from, so a frame
//! count fed by a primitive or a maths chain changes everywhere it is used; the API prompt is
//! produced from the edited graph.
//!
//! Compile nodes already in the graph take the mode; native model paths without one get
//! KJNodes' `TorchCompileModelWanVideoV2` where the server has it, else wan-pilot's own
//! `WanPilotTorchCompile` (its definition is carried here, so no server is needed to insert it).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::OnceLock;

use indexmap::IndexMap;
use serde_json::{Value, json};

use super::error::WorkflowError;
use super::flat::{FlatGraph, FlatInput, FlatNode, Hop, ValueSource};
use super::node_defs::{NodeDefs, WidgetSlot};
use super::recognise;
use super::ui::NodeMode;

/// torch.compile modes, fastest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompileMode {
    MaxAutotune,
    MaxAutotuneNoCudagraphs,
    ReduceOverhead,
    Default,
    Off,
}

impl CompileMode {
    pub const ALL: [CompileMode; 5] = [
        CompileMode::MaxAutotune,
        CompileMode::MaxAutotuneNoCudagraphs,
        CompileMode::ReduceOverhead,
        CompileMode::Default,
        CompileMode::Off,
    ];

    /// The `mode` value torch.compile and the compile nodes take (`off` is ours).
    pub fn as_str(self) -> &'static str {
        match self {
            CompileMode::MaxAutotune => "max-autotune",
            CompileMode::MaxAutotuneNoCudagraphs => "max-autotune-no-cudagraphs",
            CompileMode::ReduceOverhead => "reduce-overhead",
            CompileMode::Default => "default",
            CompileMode::Off => "off",
        }
    }

    pub fn parse(text: &str) -> Option<CompileMode> {
        Self::ALL.into_iter().find(|m| m.as_str() == text)
    }
}

impl fmt::Display for CompileMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to change. `None` leaves a value as the workflow has it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Edits {
    pub frames: Option<u32>,
    pub size: Option<(u32, u32)>,
    pub compile: Option<CompileMode>,
    pub seed: Option<u64>,
    pub prompt: Option<String>,
    /// Filename prefix of the frame tap; `None` adds none.
    pub frame_tap_prefix: Option<String>,
}

/// Id prefix of nodes wan-pilot inserts, so a later edit can find and remove them.
pub const INSERTED_ID_PREFIX: &str = "wan-pilot-";

/// Class of wan-pilot's own compile node (`assets/comfyui/wan_pilot_nodes`), which wan-pilot
/// installs into every ComfyUI it starts: inserted where the server has no KJNodes compile node.
pub const OWN_COMPILE_NODE: &str = "WanPilotTorchCompile";

/// KJNodes compile nodes with a mode, preferred in this order when the server has them.
const KJ_COMPILE_NODES: [&str; 2] = ["TorchCompileModelWanVideoV2", "TorchCompileModelAdvanced"];

/// `/object_info` entries of wan-pilot's own nodes, recorded from a real ComfyUI with them
/// installed; `assets/comfyui/test_compile.py` checks the node's inputs against it.
const OWN_NODE_DEFS: &str = include_str!("../../assets/comfyui/object_info.json");

/// Definitions of wan-pilot's own nodes, so graphs can use them without a server's answer.
pub fn own_node_defs() -> &'static NodeDefs {
    static DEFS: OnceLock<NodeDefs> = OnceLock::new();
    DEFS.get_or_init(|| {
        // Checked by a test; an empty set would make inserting our node report it unknown.
        serde_json::from_str::<Value>(OWN_NODE_DEFS)
            .ok()
            .and_then(|v| NodeDefs::from_object_info(&v, "wan-pilot's own nodes").ok())
            .unwrap_or_default()
    })
}

/// The node classes the server offers (the keys of its `/object_info`); they decide which
/// compile node goes on a native model path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ServerClasses {
    /// Decided from the node definitions in use, as if they were the server's.
    #[default]
    Unknown,
    /// Exactly these classes.
    Known(BTreeSet<String>),
}

impl ServerClasses {
    /// The classes of a server's `/object_info` reply (a map from class name to definition).
    pub fn from_object_info(info: &Value) -> ServerClasses {
        match info.as_object() {
            Some(map) => ServerClasses::Known(map.keys().cloned().collect()),
            None => ServerClasses::Unknown,
        }
    }

    /// Known classes from a list of names (say, kept from an earlier `/object_info`).
    pub fn from_names<I, S>(names: I) -> ServerClasses
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ServerClasses::Known(names.into_iter().map(Into::into).collect())
    }

    /// Whether the server offers `class`; `None` when not known.
    pub fn offers(&self, class: &str) -> Option<bool> {
        match self {
            ServerClasses::Unknown => None,
            ServerClasses::Known(names) => Some(names.contains(class)),
        }
    }
}

/// The compile node inserted on native model paths: KJNodes' where the server has it, else
/// wan-pilot's own. Unknown server classes go by `defs` (the bundled snapshot has KJNodes).
pub fn native_compile_node(
    defs: &NodeDefs,
    server: &ServerClasses,
) -> Result<&'static str, WorkflowError> {
    if let Some(class) = KJ_COMPILE_NODES
        .into_iter()
        .find(|c| server.offers(c).unwrap_or(true) && defs.get(c).is_some())
    {
        return Ok(class);
    }
    if server.offers(OWN_COMPILE_NODE).unwrap_or(true) {
        return Ok(OWN_COMPILE_NODE);
    }
    Err(WorkflowError::Edit(format!(
        "the server offers no compile node with a mode: neither ComfyUI-KJNodes' \
         TorchCompileModelWanVideoV2 nor wan-pilot's {OWN_COMPILE_NODE}, which wan-pilot installs \
         into a ComfyUI it starts; install ComfyUI-KJNodes there, or let wan-pilot start the server"
    )))
}

/// Frame counts Wan can decode exactly are 4n+1; this is the nearest one (ties go up).
pub fn snap_frames(frames: u32) -> u32 {
    if frames <= 1 {
        return 1;
    }
    let below = (frames - 1) / 4 * 4 + 1;
    if frames - below >= 2 {
        below + 4
    } else {
        below
    }
}

/// The nearest multiple of `step` (at least one step).
pub fn snap_size(pixels: u32, step: u32) -> u32 {
    let step = step.max(1);
    ((pixels + step / 2) / step).max(1) * step
}

/// The input that holds the frame count on a Wan node, if it is one.
pub fn frame_input(node: &FlatNode) -> Option<&'static str> {
    recognise::frame_input_name(&node.class_type).filter(|name| node.inputs.contains_key(*name))
}

/// Applies the edits; returns what was done, in words, for the user. The compile node to insert
/// is chosen from `defs` as if they were the server's ([`apply_for_server`] knows better).
pub fn apply(
    flat: &mut FlatGraph,
    defs: &NodeDefs,
    edits: &Edits,
) -> Result<Vec<String>, WorkflowError> {
    apply_for_server(flat, defs, edits, &ServerClasses::Unknown)
}

/// [`apply`] for a server whose node classes are known: where it lacks the KJNodes compile
/// nodes, wan-pilot's own is inserted.
pub fn apply_for_server(
    flat: &mut FlatGraph,
    defs: &NodeDefs,
    edits: &Edits,
    server: &ServerClasses,
) -> Result<Vec<String>, WorkflowError> {
    let mut notes = Vec::new();
    if let Some(frames) = edits.frames {
        set_frames(flat, frames, &mut notes)?;
    }
    if let Some(size) = edits.size {
        set_size(flat, size, &mut notes)?;
    }
    if let Some(seed) = edits.seed {
        set_seed(flat, seed, &mut notes)?;
    }
    if let Some(text) = &edits.prompt {
        set_prompt(flat, text, &mut notes)?;
    }
    if let Some(mode) = edits.compile {
        set_compile(flat, defs, server, mode, &mut notes)?;
    }
    if let Some(prefix) = &edits.frame_tap_prefix {
        add_frame_tap(flat, defs, prefix, &mut notes)?;
    }
    Ok(notes)
}

fn active_ids(flat: &FlatGraph, wanted: impl Fn(&FlatNode) -> bool) -> Vec<String> {
    flat.nodes
        .values()
        .filter(|n| n.mode.is_active() && wanted(n))
        .map(|n| n.id.clone())
        .collect()
}

fn label(node: &FlatNode) -> String {
    format!("{} #{}", node.class_type, node.id)
}

fn set_frames(
    flat: &mut FlatGraph,
    frames: u32,
    notes: &mut Vec<String>,
) -> Result<(), WorkflowError> {
    let snapped = snap_frames(frames);
    if snapped != frames {
        notes.push(format!(
            "{frames} frames is not of the form 4n+1 that Wan decodes exactly; using {snapped}"
        ));
    }
    let targets = active_ids(flat, |n| frame_input(n).is_some());
    if targets.is_empty() {
        return Err(WorkflowError::Edit(
            "no active node in this workflow holds a Wan frame count (length, num_frames or video_length)".into(),
        ));
    }
    for id in targets {
        let Some(input) = flat.nodes.get(&id).and_then(frame_input) else {
            continue;
        };
        set_consistent(flat, &id, input, json!(snapped), notes)?;
    }
    Ok(())
}

fn set_size(
    flat: &mut FlatGraph,
    (width, height): (u32, u32),
    notes: &mut Vec<String>,
) -> Result<(), WorkflowError> {
    // The 5B model's VAE compresses 16× and its patches are 2×2, so it needs multiples of 32.
    let is_5b = flat.nodes.values().any(|n| {
        n.mode.is_active()
            && (n.class_type == "Wan22ImageToVideoLatent"
                || n.inputs.values().any(|i| match i {
                    FlatInput::Value {
                        value: Value::String(s),
                        ..
                    } => {
                        let s = s.to_lowercase();
                        s.contains("ti2v_5b")
                            || s.contains("2_2-ti2v-5b")
                            || s.contains("wan2.2_5b")
                    }
                    _ => false,
                }))
    });
    let step = if is_5b { 32 } else { 16 };
    let (w, h) = (snap_size(width, step), snap_size(height, step));
    if (w, h) != (width, height) {
        notes.push(format!(
            "{width}×{height} is not a multiple of {step} (what this model needs); using {w}×{h}"
        ));
    }
    let targets = active_ids(flat, |n| {
        frame_input(n).is_some()
            && (n.inputs.contains_key("width") || n.inputs.contains_key("base_resolution"))
    });
    if targets.is_empty() {
        return Err(WorkflowError::Edit(
            "no active Wan latent or encode node with a width and height".into(),
        ));
    }
    for id in targets {
        let has_base = flat
            .nodes
            .get(&id)
            .is_some_and(|n| !n.inputs.contains_key("width"));
        if has_base {
            // VideoX-Fun samplers take one base resolution and keep the image's aspect.
            set_consistent(flat, &id, "base_resolution", json!(w.max(h)), notes)?;
            continue;
        }
        set_consistent(flat, &id, "width", json!(w), notes)?;
        set_consistent(flat, &id, "height", json!(h), notes)?;
    }
    Ok(())
}

fn set_seed(flat: &mut FlatGraph, seed: u64, notes: &mut Vec<String>) -> Result<(), WorkflowError> {
    let targets: Vec<(String, &'static str)> = flat
        .nodes
        .values()
        .filter(|n| n.mode.is_active())
        .flat_map(|n| {
            ["seed", "noise_seed"]
                .into_iter()
                .filter(|name| n.inputs.contains_key(*name))
                .map(|name| (n.id.clone(), name))
                .collect::<Vec<_>>()
        })
        .collect();
    if targets.is_empty() {
        return Err(WorkflowError::Edit(
            "no active node in this workflow takes a seed".into(),
        ));
    }
    for (id, input) in targets {
        set_consistent(flat, &id, input, json!(seed), notes)?;
    }
    Ok(())
}

fn set_prompt(
    flat: &mut FlatGraph,
    text: &str,
    notes: &mut Vec<String>,
) -> Result<(), WorkflowError> {
    let mut targets: Vec<(String, &'static str)> = Vec::new();
    // Native graphs: the text encoders that feed a `positive` input, through conditioning nodes.
    let mut queue: Vec<String> = flat
        .nodes
        .values()
        .filter(|n| n.mode.is_active())
        .filter_map(|n| match n.inputs.get("positive") {
            Some(FlatInput::Link { origin, .. }) => Some(origin.clone()),
            _ => None,
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    while let Some(id) = queue.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        let Some(node) = flat.nodes.get(&id) else {
            continue;
        };
        if node.inputs.contains_key("text") && node.class_type.starts_with("CLIPTextEncode") {
            targets.push((id, "text"));
            continue;
        }
        for name in [
            "positive",
            "conditioning",
            "conditioning_to",
            "conditioning_1",
        ] {
            if let Some(FlatInput::Link { origin, .. }) = node.inputs.get(name) {
                queue.push(origin.clone());
            }
        }
    }
    // WanVideoWrapper: its text encoders take the positive prompt directly.
    for node in flat.nodes.values().filter(|n| n.mode.is_active()) {
        if node.class_type.starts_with("WanVideoTextEncode")
            && node.inputs.contains_key("positive_prompt")
        {
            targets.push((node.id.clone(), "positive_prompt"));
        }
    }
    if targets.is_empty() {
        return Err(WorkflowError::Edit(
            "found no positive prompt text in this workflow".into(),
        ));
    }
    for (id, input) in targets {
        set_consistent(flat, &id, input, json!(text), notes)?;
    }
    Ok(())
}

/// Sets `input` of node `id` so that every place sharing its value changes with it.
fn set_consistent(
    flat: &mut FlatGraph,
    id: &str,
    input: &str,
    value: Value,
    notes: &mut Vec<String>,
) -> Result<(), WorkflowError> {
    let Some(node) = flat.nodes.get(id) else {
        return Ok(());
    };
    let Some(current) = node.inputs.get(input).cloned() else {
        return Ok(());
    };
    match current {
        FlatInput::Value { source, .. } => {
            let shared = matches!(
                source,
                ValueSource::Primitive(_) | ValueSource::SubgraphWidget { .. }
            );
            if shared {
                for node in flat.nodes.values_mut() {
                    for v in node.inputs.values_mut() {
                        if let FlatInput::Value {
                            value: old,
                            source: s,
                        } = v
                            && *s == source
                        {
                            *old = value.clone();
                        }
                    }
                }
            } else if let Some(FlatInput::Value { value: old, .. }) =
                flat.nodes.get_mut(id).and_then(|n| n.inputs.get_mut(input))
            {
                *old = value;
            }
            Ok(())
        }
        FlatInput::Link { origin, slot, .. } => {
            let Some(source) = flat.nodes.get(&origin) else {
                return Ok(());
            };
            let source_label = label(source);
            if let Some(widget) = recognise::constant_input(&source.class_type)
                && source.inputs.contains_key(widget)
            {
                return set_consistent(flat, &origin, widget, value, notes);
            }
            // A resize or size node with a widget of the same name: the size is set there.
            if matches!(source.inputs.get(input), Some(FlatInput::Value { .. })) {
                notes.push(format!(
                    "{input} of {} set on {source_label}, which feeds it",
                    label_of(flat, id)
                ));
                return set_consistent(flat, &origin, input, value, notes);
            }
            if recognise::is_computed(&source.class_type) {
                // Every use of the computed value gets the literal, so they stay equal.
                let mut replaced = 0;
                for node in flat.nodes.values_mut() {
                    for v in node.inputs.values_mut() {
                        if matches!(v, FlatInput::Link { origin: o, slot: s, .. } if *o == origin && *s == slot)
                        {
                            *v = FlatInput::Value {
                                value: value.clone(),
                                source: ValueSource::Widget,
                            };
                            replaced += 1;
                        }
                    }
                }
                notes.push(format!(
                    "{input} was computed by {source_label}; its {replaced} use(s) now get {value} directly"
                ));
                return Ok(());
            }
            Err(WorkflowError::Edit(format!(
                "{input} of {} comes from {source_label} when the workflow runs (a loaded file or \
                 image decides it), so it cannot be set here; change it on that node",
                label_of(flat, id)
            )))
        }
    }
}

fn label_of(flat: &FlatGraph, id: &str) -> String {
    flat.nodes
        .get(id)
        .map(label)
        .unwrap_or_else(|| id.to_string())
}

const COMPILE_NODES_WITH_MODE: &[&str] = &[
    "TorchCompileModelWanVideoV2",
    "TorchCompileModelAdvanced",
    "WanVideoTorchCompileSettings",
    OWN_COMPILE_NODE,
];

/// Diffusion-model loaders of native graphs, whose MODEL path gets a compile node.
const NATIVE_MODEL_LOADERS: &[&str] = &[
    "UNETLoader",
    "UnetLoaderGGUF",
    "UnetLoaderGGUFAdvanced",
    "UNETLoaderDisTorch2MultiGPU",
    "UnetLoaderGGUFDisTorch2MultiGPU",
    "DiffusionModelLoaderKJ",
    "CheckpointLoaderSimple",
];

/// Nodes a compile node goes after: they patch weights, which compiling must see.
const LORA_LOADERS: &[&str] = &[
    "LoraLoaderModelOnly",
    "LoraLoader",
    "Power Lora Loader (rgthree)",
];

fn set_compile(
    flat: &mut FlatGraph,
    defs: &NodeDefs,
    server: &ServerClasses,
    mode: CompileMode,
    notes: &mut Vec<String>,
) -> Result<(), WorkflowError> {
    let existing: Vec<String> = flat
        .nodes
        .values()
        .filter(|n| COMPILE_NODES_WITH_MODE.contains(&n.class_type.as_str()))
        .map(|n| n.id.clone())
        .collect();
    if mode == CompileMode::Off {
        for id in existing {
            if flat.nodes.get(&id).is_some_and(|n| n.mode.is_active()) {
                if !id.starts_with(INSERTED_ID_PREFIX) {
                    notes.push(format!("bypassed {}", label_of(flat, &id)));
                }
                remove_passing_through(flat, &id);
            }
        }
        return Ok(());
    }
    // Compile nodes already in the graph take the mode, and are switched on: the mode is ours
    // to choose now, whatever the workflow had.
    for id in &existing {
        let Some(node) = flat.nodes.get_mut(id) else {
            continue;
        };
        node.inputs.insert(
            "mode".into(),
            FlatInput::Value {
                value: json!(mode.as_str()),
                source: ValueSource::Widget,
            },
        );
        if !node.mode.is_active() {
            node.mode = NodeMode::Always;
            notes.push(format!(
                "switched on {} (it was off in the workflow)",
                label(node)
            ));
            reconnect(flat, id);
        }
    }
    if !existing.is_empty() {
        notes.push(format!(
            "compile mode {mode} set on {} node(s)",
            existing.len()
        ));
    }
    compile_wrapper_loaders(flat, defs, mode, &existing, notes)?;
    compile_native_paths(flat, defs, server, mode, notes)
}

/// WanVideoWrapper: every model loader takes compile settings through `compile_args`.
fn compile_wrapper_loaders(
    flat: &mut FlatGraph,
    defs: &NodeDefs,
    mode: CompileMode,
    existing: &[String],
    notes: &mut Vec<String>,
) -> Result<(), WorkflowError> {
    let bare: Vec<String> = active_ids(flat, |n| {
        n.class_type.starts_with("WanVideoModelLoader")
            && !matches!(n.inputs.get("compile_args"), Some(FlatInput::Link { .. }))
    });
    if bare.is_empty() {
        return Ok(());
    }
    let settings = match existing.iter().find(|id| {
        flat.nodes
            .get(*id)
            .is_some_and(|n| n.class_type == "WanVideoTorchCompileSettings")
    }) {
        Some(id) => id.clone(),
        None => {
            let id = insert_node(
                flat,
                defs,
                "WanVideoTorchCompileSettings",
                "compile-settings",
                &[("mode", json!(mode.as_str()))],
            )?;
            notes.push(format!("inserted WanVideoTorchCompileSettings ({mode})"));
            id
        }
    };
    for loader in bare {
        if let Some(node) = flat.nodes.get_mut(&loader) {
            node.inputs.insert(
                "compile_args".into(),
                FlatInput::Link {
                    origin: settings.clone(),
                    slot: 0,
                    hops: Vec::new(),
                },
            );
            notes.push(format!("{} now compiles ({mode})", label(node)));
        }
    }
    Ok(())
}

/// Native graphs: each diffusion model's path without a compile node gets one, after its LoRA
/// loaders (compiling must see the patched weights), before ModelSamplingSD3 and the sampler.
fn compile_native_paths(
    flat: &mut FlatGraph,
    defs: &NodeDefs,
    server: &ServerClasses,
    mode: CompileMode,
    notes: &mut Vec<String>,
) -> Result<(), WorkflowError> {
    let loaders = active_ids(flat, |n| {
        NATIVE_MODEL_LOADERS.contains(&n.class_type.as_str())
    });
    let uncompiled: Vec<String> = loaders
        .into_iter()
        .filter(|loader| !path_has_compile(flat, loader))
        .collect();
    if uncompiled.is_empty() {
        return Ok(());
    }
    let class = native_compile_node(defs, server)?;
    let mut values = vec![("mode", json!(mode.as_str()))];
    if class == OWN_COMPILE_NODE {
        // Blocks only: one compile serves every block, and it fails less than the whole model.
        values.extend([
            ("backend", json!("inductor")),
            ("dynamic", json!("false")),
            ("blocks_only", json!(true)),
        ]);
    }
    for loader in uncompiled {
        // Walk down the MODEL path past the LoRA loaders.
        let mut at = (loader.clone(), 0usize);
        for _ in 0..64 {
            let next = consumers(flat, &at).into_iter().find(|(id, _)| {
                flat.nodes
                    .get(id)
                    .is_some_and(|n| LORA_LOADERS.contains(&n.class_type.as_str()))
            });
            match next {
                Some((id, _)) => at = (id, 0),
                None => break,
            }
        }
        let users = consumers(flat, &at);
        if users.is_empty() {
            continue;
        }
        let id = insert_node(flat, defs, class, "compile", &values)?;
        if let Some(node) = flat.nodes.get_mut(&id) {
            node.inputs.insert(
                "model".into(),
                FlatInput::Link {
                    origin: at.0.clone(),
                    slot: at.1,
                    hops: Vec::new(),
                },
            );
        }
        for (user, input) in users {
            if let Some(node) = flat.nodes.get_mut(&user) {
                node.inputs.insert(
                    input,
                    FlatInput::Link {
                        origin: id.clone(),
                        slot: 0,
                        hops: Vec::new(),
                    },
                );
            }
        }
        notes.push(format!(
            "inserted {class} ({mode}) after {}",
            label_of(flat, &at.0)
        ));
    }
    Ok(())
}

/// Whether an active compile node already sits downstream of this model loader.
fn path_has_compile(flat: &FlatGraph, loader: &str) -> bool {
    let mut queue = vec![loader.to_string()];
    let mut seen = std::collections::HashSet::new();
    while let Some(id) = queue.pop() {
        if !seen.insert(id.clone()) || seen.len() > 256 {
            continue;
        }
        for (user, _) in consumers(flat, &(id, 0)) {
            let Some(node) = flat.nodes.get(&user) else {
                continue;
            };
            if COMPILE_NODES_WITH_MODE.contains(&node.class_type.as_str()) {
                return true;
            }
            // Past the sampler the MODEL is spent.
            if !node.inputs.contains_key("latent_image") {
                queue.push(user);
            }
        }
    }
    false
}

/// Gives a node that was bypassed or muted its outgoing links back: inputs that were resolved
/// through it, or that lost their link because of it, take its output again.
fn reconnect(flat: &mut FlatGraph, id: &str) {
    for node in flat.nodes.values_mut() {
        for input in node.inputs.values_mut() {
            if let FlatInput::Link { hops, .. } = input
                && hops
                    .iter()
                    .any(|h| matches!(h, Hop::Bypassed(b) if b == id))
            {
                // Compile nodes have one output.
                *input = FlatInput::Link {
                    origin: id.to_string(),
                    slot: 0,
                    hops: Vec::new(),
                };
            }
        }
        let (back, rest): (Vec<_>, Vec<_>) = node
            .unresolved_links
            .drain(..)
            .partition(|l| l.origin == id);
        node.unresolved_links = rest;
        for link in back {
            node.inputs.insert(
                link.input,
                FlatInput::Link {
                    origin: link.origin,
                    slot: link.slot,
                    hops: Vec::new(),
                },
            );
        }
    }
}

/// Active inputs that take output `(id, slot)`: (node id, input name).
fn consumers(flat: &FlatGraph, (id, slot): &(String, usize)) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for node in flat.nodes.values().filter(|n| n.mode.is_active()) {
        for (name, input) in &node.inputs {
            if matches!(input, FlatInput::Link { origin, slot: s, .. } if origin == id && s == slot)
            {
                out.push((node.id.clone(), name.clone()));
            }
        }
    }
    out
}

/// Takes a pass-through node (compile) out: its users get its `model` input, or lose the link.
fn remove_passing_through(flat: &mut FlatGraph, id: &str) {
    let upstream = flat
        .nodes
        .get(id)
        .and_then(|n| n.inputs.get("model").cloned());
    for node in flat.nodes.values_mut() {
        let names: Vec<String> = node
            .inputs
            .iter()
            .filter(|(_, v)| matches!(v, FlatInput::Link { origin, .. } if origin == id))
            .map(|(k, _)| k.clone())
            .collect();
        for name in names {
            match &upstream {
                Some(link @ FlatInput::Link { .. }) => {
                    node.inputs.insert(name, link.clone());
                }
                _ => {
                    node.inputs.shift_remove(&name);
                }
            }
        }
    }
    if id.starts_with(INSERTED_ID_PREFIX) {
        flat.nodes.shift_remove(id);
    } else if let Some(node) = flat.nodes.get_mut(id) {
        node.mode = NodeMode::Bypass;
    }
}

/// Adds a node of `class` with every widget input set (defaults, then `values`); returns its id.
fn insert_node(
    flat: &mut FlatGraph,
    defs: &NodeDefs,
    class: &str,
    tag: &str,
    values: &[(&str, Value)],
) -> Result<String, WorkflowError> {
    let def = defs
        .get(class)
        .or_else(|| own_node_defs().get(class))
        .ok_or_else(|| WorkflowError::Edit(format!("the server does not offer {class}")))?;
    let mut n = 1;
    let id = loop {
        let candidate = format!("{INSERTED_ID_PREFIX}{tag}-{n}");
        if !flat.nodes.contains_key(&candidate) {
            break candidate;
        }
        n += 1;
    };
    let mut inputs = IndexMap::new();
    for slot in def.widget_slots() {
        let WidgetSlot::Input(k) = slot else { continue };
        let Some(input) = def.inputs.get(k) else {
            continue;
        };
        if let Some(default) = &input.default {
            inputs.insert(
                input.name.clone(),
                FlatInput::Value {
                    value: default.clone(),
                    source: ValueSource::Default,
                },
            );
        }
    }
    for (name, value) in values {
        inputs.insert(
            (*name).to_string(),
            FlatInput::Value {
                value: value.clone(),
                source: ValueSource::Widget,
            },
        );
    }
    flat.nodes.insert(
        id.clone(),
        FlatNode::new(
            &id,
            class,
            Some(format!("wan-pilot {tag}")),
            inputs,
            "inserted by wan-pilot".into(),
        ),
    );
    Ok(id)
}

const DECODERS: &[&str] = &[
    "VAEDecode",
    "VAEDecodeTiled",
    "WanVideoDecode",
    "WanVideoDecodeMultiGPU",
];

fn add_frame_tap(
    flat: &mut FlatGraph,
    defs: &NodeDefs,
    prefix: &str,
    notes: &mut Vec<String>,
) -> Result<(), WorkflowError> {
    let decoders = active_ids(flat, |n| DECODERS.contains(&n.class_type.as_str()));
    // The decoder whose frames reach an output: the last one in a chain of decodes.
    let Some(decoder) = decoders
        .iter()
        .find(|id| !consumers(flat, &((*id).clone(), 0)).is_empty())
        .or(decoders.first())
        .cloned()
    else {
        return Err(WorkflowError::Edit(
            "found no VAE decode node whose frames could be saved".into(),
        ));
    };
    let id = insert_node(
        flat,
        defs,
        "SaveImage",
        "frame-tap",
        &[("filename_prefix", json!(prefix))],
    )?;
    if let Some(node) = flat.nodes.get_mut(&id) {
        node.inputs.insert(
            "images".into(),
            FlatInput::Link {
                origin: decoder.clone(),
                slot: 0,
                hops: Vec::new(),
            },
        );
    }
    notes.push(format!(
        "frames of {} also saved as PNG ({prefix}_*.png)",
        label_of(flat, &decoder)
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_snap_to_the_nearest_4n_plus_1() {
        assert_eq!(snap_frames(81), 81);
        assert_eq!(snap_frames(80), 81);
        assert_eq!(snap_frames(79), 81);
        assert_eq!(snap_frames(78), 77);
        assert_eq!(snap_frames(0), 1);
        assert_eq!(snap_frames(2), 1);
        assert_eq!(snap_frames(3), 5);
    }

    #[test]
    fn sizes_snap_to_the_model_step() {
        assert_eq!(snap_size(832, 16), 832);
        assert_eq!(snap_size(833, 16), 832);
        assert_eq!(snap_size(720, 32), 736);
        assert_eq!(snap_size(1, 32), 32);
    }
}
