//! Following one queued prompt through ComfyUI's websocket messages: which Wan stage it is in
//! (text encode, image encode, high-noise / low-noise sampling, VAE decode, save), the sampler
//! step, an overall fraction that never goes back, an ETA from measured step times, and how it
//! ended. Also the timings a finished run leaves for its record.
//!
//! Pure: a prompt and messages in, a [`Progress`] out; whoever owns the socket feeds it.
//!
//! Why it works by node and not by message order: ComfyUI runs nodes lazily (a model loader runs
//! just before the first sampler that needs it), cached nodes send nothing, and after a websocket
//! reconnect everything sent in between is lost. So each node of the prompt is given a stage and
//! a weight up front ([`StageMap`]), and a node that starts implies every node it depends on is
//! finished.

use std::collections::{HashMap, HashSet, VecDeque};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::comfy::protocol::{ExecutionError, WsMessage};
use crate::workflow::api::{ApiPrompt, as_link};
use crate::workflow::load;
use crate::workflow::node_defs::NodeDefs;
use crate::workflow::recognise::{self, Inspection, ModelRole};

// ---------------------------------------------------------------------------------------------
// Stages
// ---------------------------------------------------------------------------------------------

/// Which Wan 2.2 expert a sampler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expert {
    High,
    Low,
    /// One model for every step (5B, Wan 2.1, or a sampler that holds both experts).
    Single,
}

/// Where a run is, as the user thinks of a Wan generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Submitted; the server has not started it.
    Queued,
    /// Started; loaders and supporting nodes before the first real stage.
    Prepare,
    TextEncode,
    /// Start image (and CLIP vision) encoding for image-to-video and its relatives.
    ImageEncode,
    Sampling {
        expert: Expert,
    },
    VaeDecode,
    /// Video assembly and the save nodes.
    Save,
    Done,
}

impl Stage {
    /// The stage in words, for progress lines and the window.
    pub fn label(self) -> &'static str {
        match self {
            Stage::Queued => "queued",
            Stage::Prepare => "preparing",
            Stage::TextEncode => "text encode",
            Stage::ImageEncode => "image encode",
            Stage::Sampling {
                expert: Expert::High,
            } => "high-noise sampling",
            Stage::Sampling {
                expert: Expert::Low,
            } => "low-noise sampling",
            Stage::Sampling {
                expert: Expert::Single,
            } => "sampling",
            Stage::VaeDecode => "VAE decode",
            Stage::Save => "save",
            Stage::Done => "done",
        }
    }

    /// A stable identifier, for files ([`RunTimings`]).
    pub fn key(self) -> &'static str {
        match self {
            Stage::Queued => "queued",
            Stage::Prepare => "prepare",
            Stage::TextEncode => "text_encode",
            Stage::ImageEncode => "image_encode",
            Stage::Sampling {
                expert: Expert::High,
            } => "high_noise_sampling",
            Stage::Sampling {
                expert: Expert::Low,
            } => "low_noise_sampling",
            Stage::Sampling {
                expert: Expert::Single,
            } => "sampling",
            Stage::VaeDecode => "vae_decode",
            Stage::Save => "save",
            Stage::Done => "done",
        }
    }

    /// The stage a [`Stage::key`] names.
    pub fn from_key(key: &str) -> Option<Stage> {
        ALL_STAGES.iter().copied().find(|s| s.key() == key)
    }

    /// Position in a Wan generation, earliest first. The single expert shares the high-noise
    /// expert's place: both are the first sampling.
    pub fn rank(self) -> u8 {
        match self {
            Stage::Queued => 0,
            Stage::Prepare => 1,
            Stage::TextEncode => 2,
            Stage::ImageEncode => 3,
            Stage::Sampling {
                expert: Expert::High | Expert::Single,
            } => 4,
            Stage::Sampling {
                expert: Expert::Low,
            } => 5,
            Stage::VaeDecode => 6,
            Stage::Save => 7,
            Stage::Done => 8,
        }
    }
}

const ALL_STAGES: [Stage; 10] = [
    Stage::Queued,
    Stage::Prepare,
    Stage::TextEncode,
    Stage::ImageEncode,
    Stage::Sampling {
        expert: Expert::High,
    },
    Stage::Sampling {
        expert: Expert::Low,
    },
    Stage::Sampling {
        expert: Expert::Single,
    },
    Stage::VaeDecode,
    Stage::Save,
    Stage::Done,
];

// ---------------------------------------------------------------------------------------------
// Weights: a node's share of the whole run, in "sampler steps". Sampling dominates a Wan run; a
// VAE decode of a long clip costs about one step on a GPU; loading and encoding are small.
// Rough on purpose: they only shape the bar between messages, the ETA comes from measured steps.
// ---------------------------------------------------------------------------------------------

const STEP_WEIGHT: f64 = 1.0;
/// Steps assumed for a sampler whose step count is not in the prompt (a linked value).
const DEFAULT_SAMPLER_STEPS: u64 = 20;
const TEXT_ENCODE_WEIGHT: f64 = 0.25;
const IMAGE_ENCODE_WEIGHT: f64 = 0.5;
const VAE_DECODE_WEIGHT: f64 = 1.0;
const SAVE_WEIGHT: f64 = 0.25;
const DIFFUSION_LOADER_WEIGHT: f64 = 0.5;
const ENCODER_LOADER_WEIGHT: f64 = 0.25;
const SMALL_LOADER_WEIGHT: f64 = 0.1;
const OTHER_WEIGHT: f64 = 0.05;
/// The bar stops short of full until the server says the run succeeded.
const MAX_UNFINISHED: f64 = 0.999;
/// Steady step times averaged for the ETA: recent enough to forget a slow first step.
const RECENT_STEPS: usize = 3;

/// What the map knows about a sampler node.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerPlan {
    pub expert: Expert,
    /// Steps this node runs (its slice of the schedule, e.g. 2 for steps 0–2 of 4).
    pub steps: u64,
    /// `(first step, total steps)` of the whole schedule, when the prompt says: lets a progress
    /// line count the low-noise expert's steps as 3/4 rather than 1/2.
    pub schedule: Option<(u64, u64)>,
    /// Whether `steps` came from the prompt (else [`DEFAULT_SAMPLER_STEPS`] stands in).
    pub steps_known: bool,
}

/// One node of the prompt as the tracker sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct MapNode {
    pub class_type: String,
    /// The node's own stage, or for a supporting node (`folded`) the stage it serves: the nearest
    /// stage node downstream of it ([`Stage::Prepare`] when none).
    pub stage: Stage,
    /// A loader or other supporting node whose stage is borrowed from the node it feeds.
    pub folded: bool,
    /// Share of the run, in sampler steps; 0 for nodes no output needs (they never run).
    pub weight: f64,
    pub sampler: Option<SamplerPlan>,
    /// Nodes this one takes input from.
    inputs: Vec<String>,
}

/// Every node of a prompt with its stage and weight, built once before the prompt is queued.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageMap {
    nodes: IndexMap<String, MapNode>,
    total_weight: f64,
}

impl StageMap {
    /// Reads the API prompt (any wrapping `ApiPrompt::from_json` accepts). Samplers and their
    /// experts come from the workflow recogniser: a sampler fed by the high-noise model is the
    /// high-noise expert; without model roles, a KSamplerAdvanced starting after step 0 is the
    /// low-noise one. Something that is not a prompt gives an empty map (every node then counts
    /// as a supporting node, and only the outcome is tracked).
    pub fn from_prompt(prompt: &Value) -> StageMap {
        let Ok(Some((api, _))) = ApiPrompt::from_json(prompt) else {
            return StageMap::default();
        };
        let inspection = load::from_value(prompt)
            .ok()
            .and_then(|loaded| recognise::inspect(&loaded, NodeDefs::bundled()).ok());
        build(&api, inspection.as_ref())
    }

    pub fn node(&self, id: &str) -> Option<&MapNode> {
        self.nodes.get(id)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The stage a node belongs to (its own, or the one it serves).
    pub fn stage_of(&self, id: &str) -> Option<Stage> {
        self.nodes.get(id).map(|n| n.stage)
    }

    /// The stages this prompt goes through, in generation order: what a stepper shows.
    pub fn stages(&self) -> Vec<Stage> {
        let mut stages: Vec<Stage> = self
            .nodes
            .values()
            .filter(|n| !n.folded && n.weight > 0.0)
            .map(|n| n.stage)
            .collect();
        stages.sort_by_key(|s| s.rank());
        stages.dedup();
        stages
    }

    /// The sampler nodes with what they run, in prompt order.
    pub fn samplers(&self) -> Vec<(&str, &SamplerPlan)> {
        self.nodes
            .iter()
            .filter_map(|(id, n)| n.sampler.as_ref().map(|s| (id.as_str(), s)))
            .collect()
    }

    /// Sum of the weights of the nodes that will run.
    pub fn total_weight(&self) -> f64 {
        self.total_weight
    }

    /// Every node `id` depends on, directly or not.
    fn ancestors(&self, id: &str) -> Vec<String> {
        let mut seen: HashSet<&str> = HashSet::new();
        let mut queue: VecDeque<&str> = VecDeque::from([id]);
        let mut out = Vec::new();
        while let Some(next) = queue.pop_front() {
            let Some(node) = self.nodes.get(next) else {
                continue;
            };
            for input in &node.inputs {
                if input != id && seen.insert(input.as_str()) {
                    out.push(input.clone());
                    queue.push_back(input.as_str());
                }
            }
        }
        out
    }
}

/// The stage a node type performs on its own, for everything but samplers (which the recogniser
/// finds). `None`: a loader or other supporting node.
fn own_stage(class_type: &str) -> Option<Stage> {
    let base = multigpu_base(class_type);
    if base.contains("VAEDecode") || (base.starts_with("WanVideo") && base.ends_with("Decode")) {
        return Some(Stage::VaeDecode);
    }
    if base.starts_with("Save")
        || base.starts_with("Preview")
        || base.contains("VideoCombine")
        || base == "CreateVideo"
    {
        return Some(Stage::Save);
    }
    if base.contains("VisionEncode")
        || base.contains("ClipEncode")
        || base.contains("VAEEncode")
        || base.contains("VACEEncode")
        || base.contains("ImageToVideo")
        || (base.starts_with("Wan") && base.contains("ToVideo"))
        || base == "WanVideoEncode"
        || base == "WanVideoAnimateEmbeds"
    {
        return Some(Stage::ImageEncode);
    }
    if base.contains("TextEncode") || base.contains("Conditioning") {
        return Some(Stage::TextEncode);
    }
    None
}

/// A node type without a MultiGPU / DisTorch suffix ("UNETLoaderDisTorch2MultiGPU" →
/// "UNETLoader").
fn multigpu_base(class_type: &str) -> &str {
    let base = class_type.strip_suffix("MultiGPU").unwrap_or(class_type);
    let base = base
        .strip_suffix("DisTorch2")
        .or_else(|| base.strip_suffix("DisTorch"))
        .unwrap_or(base);
    if base.is_empty() { class_type } else { base }
}

/// Sampler node types, for when the recogniser could not read the prompt.
fn looks_like_sampler(class_type: &str) -> bool {
    let base = multigpu_base(class_type);
    matches!(
        base,
        "KSampler" | "KSamplerAdvanced" | "SamplerCustom" | "SamplerCustomAdvanced"
    ) || base.starts_with("KSamplerWithNAG")
        || (base.starts_with("Wan") && base.ends_with("Sampler"))
}

fn build(api: &ApiPrompt, inspection: Option<&Inspection>) -> StageMap {
    let inputs: HashMap<&str, Vec<String>> = api
        .nodes
        .iter()
        .map(|(id, node)| {
            let mut origins: Vec<String> = node
                .inputs
                .values()
                .filter_map(as_link)
                .map(|(origin, _)| origin.to_string())
                .filter(|origin| api.nodes.contains_key(origin))
                .collect();
            origins.dedup();
            (id.as_str(), origins)
        })
        .collect();
    let mut consumers: HashMap<&str, Vec<&str>> = HashMap::new();
    for (id, origins) in &inputs {
        for origin in origins {
            consumers.entry(origin.as_str()).or_default().push(id);
        }
    }

    let model_roles: HashMap<&str, ModelRole> = inspection
        .map(|i| i.models.iter().map(|m| (m.node.as_str(), m.role)).collect())
        .unwrap_or_default();
    let sampler_facts: HashMap<&str, &recognise::Sampler> = inspection
        .map(|i| {
            i.samplers
                .iter()
                .filter(|s| s.active)
                .map(|s| (s.node.as_str(), s))
                .collect()
        })
        .unwrap_or_default();
    let output_ids: HashSet<&str> = inspection
        .map(|i| i.outputs.iter().map(|o| o.node.as_str()).collect())
        .unwrap_or_default();

    // Own stages first; samplers need the graph to know their expert.
    let mut own: HashMap<&str, Stage> = HashMap::new();
    let mut samplers: HashMap<&str, SamplerPlan> = HashMap::new();
    for (id, node) in &api.nodes {
        let is_sampler = match inspection {
            Some(_) => sampler_facts.contains_key(id.as_str()),
            None => looks_like_sampler(&node.class_type),
        };
        if is_sampler {
            let plan = sampler_plan(
                id,
                sampler_facts.get(id.as_str()).copied(),
                &inputs,
                api,
                &model_roles,
                &sampler_facts,
            );
            own.insert(
                id.as_str(),
                Stage::Sampling {
                    expert: plan.expert,
                },
            );
            samplers.insert(id.as_str(), plan);
        } else if output_ids.contains(id.as_str()) {
            own.insert(id.as_str(), Stage::Save);
        } else if let Some(stage) = own_stage(&node.class_type) {
            own.insert(id.as_str(), stage);
        }
    }

    // Nodes that some save node needs; the others never run.
    let saves: Vec<&str> = own
        .iter()
        .filter(|(_, s)| **s == Stage::Save)
        .map(|(id, _)| *id)
        .collect();
    let needed: Option<HashSet<&str>> = (!saves.is_empty()).then(|| {
        let mut needed: HashSet<&str> = saves.iter().copied().collect();
        let mut queue: VecDeque<&str> = saves.iter().copied().collect();
        while let Some(id) = queue.pop_front() {
            for origin in inputs.get(id).into_iter().flatten() {
                if needed.insert(origin.as_str()) {
                    queue.push_back(origin.as_str());
                }
            }
        }
        needed
    });

    let mut nodes = IndexMap::new();
    let mut total_weight = 0.0;
    for (id, node) in &api.nodes {
        let (stage, folded) = match own.get(id.as_str()) {
            Some(stage) => (*stage, false),
            None => (
                served_stage(id, &consumers, &own).unwrap_or(Stage::Prepare),
                true,
            ),
        };
        let sampler = samplers.remove(id.as_str());
        let runs = needed.as_ref().is_none_or(|n| n.contains(id.as_str()));
        let weight = if !runs {
            0.0
        } else if let Some(plan) = &sampler {
            plan.steps as f64 * STEP_WEIGHT
        } else if folded {
            match model_roles.get(id.as_str()) {
                Some(ModelRole::HighNoise | ModelRole::LowNoise | ModelRole::Single) => {
                    DIFFUSION_LOADER_WEIGHT
                }
                Some(ModelRole::TextEncoder) => ENCODER_LOADER_WEIGHT,
                Some(ModelRole::Vae | ModelRole::Lora | ModelRole::ClipVision) => {
                    SMALL_LOADER_WEIGHT
                }
                None => OTHER_WEIGHT,
            }
        } else {
            match stage {
                Stage::TextEncode => TEXT_ENCODE_WEIGHT,
                Stage::ImageEncode => IMAGE_ENCODE_WEIGHT,
                Stage::VaeDecode => VAE_DECODE_WEIGHT,
                Stage::Save => SAVE_WEIGHT,
                _ => OTHER_WEIGHT,
            }
        };
        total_weight += weight;
        nodes.insert(
            id.clone(),
            MapNode {
                class_type: node.class_type.clone(),
                stage,
                folded,
                weight,
                sampler,
                inputs: inputs.get(id.as_str()).cloned().unwrap_or_default(),
            },
        );
    }
    StageMap {
        nodes,
        total_weight,
    }
}

/// The stage a supporting node serves: the stage nodes nearest downstream of it, the earliest of
/// them when several are as near (a VAE loader feeding an image encode and a decode serves the
/// encode, which runs first).
fn served_stage(
    id: &str,
    consumers: &HashMap<&str, Vec<&str>>,
    own: &HashMap<&str, Stage>,
) -> Option<Stage> {
    let mut seen: HashSet<&str> = HashSet::from([id]);
    let mut frontier: Vec<&str> = vec![id];
    while !frontier.is_empty() {
        let mut next = Vec::new();
        let mut found: Vec<Stage> = Vec::new();
        for node in frontier {
            for consumer in consumers.get(node).into_iter().flatten() {
                if !seen.insert(consumer) {
                    continue;
                }
                match own.get(consumer) {
                    Some(stage) => found.push(*stage),
                    None => next.push(*consumer),
                }
            }
        }
        if let Some(stage) = found.into_iter().min_by_key(|s| s.rank()) {
            return Some(stage);
        }
        frontier = next;
    }
    None
}

/// A sampler's expert and steps.
fn sampler_plan(
    id: &str,
    facts: Option<&recognise::Sampler>,
    inputs: &HashMap<&str, Vec<String>>,
    api: &ApiPrompt,
    model_roles: &HashMap<&str, ModelRole>,
    sampler_facts: &HashMap<&str, &recognise::Sampler>,
) -> SamplerPlan {
    let whole = |v: Option<f64>| v.filter(|x| x.is_finite() && *x >= 0.0).map(|x| x as u64);
    let total = facts.and_then(|f| whole(f.steps)).filter(|s| *s > 0);
    let start = facts.and_then(|f| whole(f.start)).unwrap_or(0);
    // An end past the schedule (10000 is KSamplerAdvanced's default) or negative (the
    // wrapper's -1) means "to the last step".
    let end = facts
        .and_then(|f| f.end)
        .filter(|e| e.is_finite() && *e >= 0.0);
    let (steps, schedule) = match total {
        Some(total) => {
            let end = end.map_or(total, |e| (e as u64).min(total));
            let slice = end.saturating_sub(start.min(total));
            (slice.max(1), Some((start.min(total), total)))
        }
        None => (DEFAULT_SAMPLER_STEPS, None),
    };

    // The diffusion models that reach this sampler without passing another sampler.
    let mut roles: HashSet<ModelRole> = HashSet::new();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut queue: VecDeque<&str> = inputs
        .get(id)
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    while let Some(node) = queue.pop_front() {
        if !seen.insert(node) {
            continue;
        }
        let is_sampler = sampler_facts.contains_key(node)
            || api
                .nodes
                .get(node)
                .is_some_and(|n| facts.is_none() && looks_like_sampler(&n.class_type));
        if is_sampler {
            continue;
        }
        if let Some(role @ (ModelRole::HighNoise | ModelRole::LowNoise | ModelRole::Single)) =
            model_roles.get(node)
        {
            roles.insert(*role);
            continue;
        }
        queue.extend(inputs.get(node).into_iter().flatten().map(String::as_str));
    }
    let by_model = match (
        roles.contains(&ModelRole::HighNoise),
        roles.contains(&ModelRole::LowNoise),
    ) {
        (true, false) => Some(Expert::High),
        (false, true) => Some(Expert::Low),
        (true, true) => Some(Expert::Single),
        (false, false) => None,
    };
    let expert = by_model.unwrap_or(match schedule {
        Some((first, _)) if first > 0 => Expert::Low,
        Some((_, total)) if steps < total => Expert::High,
        _ => Expert::Single,
    });
    SamplerPlan {
        expert,
        steps,
        schedule,
        steps_known: total.is_some(),
    }
}

// ---------------------------------------------------------------------------------------------
// Tracking
// ---------------------------------------------------------------------------------------------

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Success,
    Error(ExecutionError),
    Interrupted,
}

impl Outcome {
    /// The run failed because the GPU ran out of memory (the policy's ladder takes over).
    pub fn is_out_of_memory(&self) -> bool {
        matches!(self, Outcome::Error(e) if e.is_out_of_memory())
    }
}

/// Where a run stands, after the last message.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub stage: Stage,
    /// The node running (or, once finished badly, the node where it stopped).
    pub node: Option<String>,
    pub node_class: Option<String>,
    /// `(value, max)` of the running node's last `progress` message, as the server counts
    /// (a two-pass sampler counts 1..2 in each pass).
    pub step: Option<(u64, u64)>,
    /// The step within the whole sampling schedule when the prompt says where the pass starts
    /// (the low-noise pass of 4 steps shows 3/4, 4/4).
    pub schedule_step: Option<(u64, u64)>,
    /// 0.0–1.0; never decreases; 1.0 only on success.
    pub overall: f64,
    /// Seconds left as of `at_ms`, from measured step times; `None` until a steady step time
    /// is known (the first step of a sampler includes loading and compiling).
    pub eta_secs: Option<f64>,
    /// Nodes the server took from its cache.
    pub cached_nodes: Vec<String>,
    pub finished: Option<Outcome>,
    /// The server is done with the prompt (`executing` with no node): its history can be
    /// fetched, even where the outcome message was lost.
    pub server_done: bool,
    /// The `elapsed_ms` of the last message applied.
    pub at_ms: u64,
}

impl Progress {
    /// One line for a terminal: "low-noise sampling — step 3/4 — 57 % — about 12 s left".
    pub fn line(&self) -> String {
        let percent = (self.overall * 100.0).floor().clamp(0.0, 100.0) as u32;
        let at_node = || match (&self.node_class, &self.node) {
            (Some(class), Some(node)) => format!(" ({class} #{node})"),
            (None, Some(node)) => format!(" (node #{node})"),
            _ => String::new(),
        };
        match &self.finished {
            Some(Outcome::Success) => return "done — 100 %".to_string(),
            Some(Outcome::Interrupted) => {
                return format!(
                    "interrupted during {}{} — {percent} %",
                    self.stage.label(),
                    at_node()
                );
            }
            Some(Outcome::Error(error)) => {
                let kind = error
                    .exception_type
                    .rsplit('.')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let message = error.exception_message.lines().next().unwrap_or_default();
                let what = if error.is_out_of_memory() {
                    "out of GPU memory"
                } else {
                    "failed"
                };
                let detail = match (kind.is_empty(), message.trim().is_empty()) {
                    (true, true) => String::new(),
                    (false, true) => format!(": {kind}"),
                    (true, false) => format!(": {}", message.trim()),
                    (false, false) => format!(": {kind}: {}", message.trim()),
                };
                return format!("{what} during {}{}{detail}", self.stage.label(), at_node());
            }
            None => {}
        }
        if self.stage == Stage::Queued {
            return "queued".to_string();
        }
        let mut parts = vec![self.stage.label().to_string()];
        if let Some((value, max)) = self.schedule_step.or(self.step) {
            parts.push(format!("step {value}/{max}"));
        }
        parts.push(format!("{percent} %"));
        if let Some(eta) = self.eta_secs {
            parts.push(describe_eta(eta));
        }
        parts.join(" — ")
    }
}

/// "about 12 s left", "about 3 min left", "about 1 h 5 min left".
pub fn describe_eta(secs: f64) -> String {
    if !secs.is_finite() || secs < 1.0 {
        return "almost done".to_string();
    }
    let secs = secs.round() as u64;
    if secs < 60 {
        format!("about {secs} s left")
    } else if secs < 3600 {
        format!("about {} min left", (secs + 30) / 60)
    } else {
        let minutes = (secs + 30) / 60;
        format!("about {} h {} min left", minutes / 60, minutes % 60)
    }
}

/// Time spent in one stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StageTime {
    /// [`Stage::key`].
    pub stage: String,
    pub ms: u64,
}

/// One sampler's measured pace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplerTime {
    pub node: String,
    pub expert: Expert,
    /// The highest step the server reported.
    pub steps_seen: u64,
    /// From the node's start to its first step: loading, compiling and one step.
    pub first_step_ms: Option<u64>,
    /// Median seconds per step after the first.
    pub s_per_step: Option<f64>,
}

impl Default for SamplerTime {
    fn default() -> Self {
        SamplerTime {
            node: String::new(),
            expert: Expert::Single,
            steps_seen: 0,
            first_step_ms: None,
            s_per_step: None,
        }
    }
}

/// What a run's clock showed: kept in the run's sidecar and what calibration learns speed from.
/// Times count from the tracker's zero (the caller's clock, normally the submission).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunTimings {
    /// From submission to `execution_start`.
    pub queued_ms: Option<u64>,
    /// From `execution_start` to the outcome.
    pub run_ms: Option<u64>,
    /// From submission to the outcome (or the last message, while running).
    pub total_ms: Option<u64>,
    /// Time per stage, in the order first entered.
    pub stages: Vec<StageTime>,
    pub samplers: Vec<SamplerTime>,
    /// Steady sampling seconds per step over every sampler, first steps excluded (median).
    pub sampling_s_per_step: Option<f64>,
}

#[derive(Debug, Clone, Default)]
struct SamplerClock {
    started_ms: u64,
    last_value: u64,
    last_ms: Option<u64>,
    first_step_ms: Option<u64>,
    /// Seconds per step of each measured interval, in order.
    intervals: Vec<f64>,
    steps_seen: u64,
}

impl SamplerClock {
    /// Seconds per step of the latest steps.
    fn recent_rate(&self) -> Option<f64> {
        let recent = &self.intervals[self.intervals.len().saturating_sub(RECENT_STEPS)..];
        median(recent)
    }
}

fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

/// Follows one prompt. Feed it every websocket message (it ignores other prompts) with the
/// milliseconds since the run was submitted.
#[derive(Debug, Clone)]
pub struct Tracker {
    prompt_id: String,
    map: StageMap,
    started_ms: Option<u64>,
    done: HashSet<String>,
    cached: Vec<String>,
    current: Option<String>,
    stage: Stage,
    stage_since_ms: u64,
    stage_ms: IndexMap<&'static str, u64>,
    step: Option<(u64, u64)>,
    clocks: IndexMap<String, SamplerClock>,
    overall: f64,
    finished: Option<Outcome>,
    finished_ms: Option<u64>,
    server_done: bool,
    last_ms: u64,
}

impl Tracker {
    pub fn new(prompt_id: impl Into<String>, map: StageMap) -> Tracker {
        Tracker {
            prompt_id: prompt_id.into(),
            map,
            started_ms: None,
            done: HashSet::new(),
            cached: Vec::new(),
            current: None,
            stage: Stage::Queued,
            stage_since_ms: 0,
            stage_ms: IndexMap::new(),
            step: None,
            clocks: IndexMap::new(),
            overall: 0.0,
            finished: None,
            finished_ms: None,
            server_done: false,
            last_ms: 0,
        }
    }

    pub fn prompt_id(&self) -> &str {
        &self.prompt_id
    }

    pub fn map(&self) -> &StageMap {
        &self.map
    }

    pub fn is_finished(&self) -> bool {
        self.finished.is_some()
    }

    /// Applies one message received `elapsed_ms` after submission. Returns whether it concerned
    /// this run. Messages of other prompts are ignored; the ones without a prompt id (the
    /// `executing` a server replays after a reconnect) count once the run has started.
    pub fn apply(&mut self, message: &WsMessage, elapsed_ms: u64) -> bool {
        let ours = |id: &str| id == self.prompt_id;
        let running = self.started_ms.is_some() && self.finished.is_none();
        let maybe_ours = |id: &Option<String>| id.as_deref().map_or(running, ours);
        let concerned = match message {
            WsMessage::ExecutionStart { prompt_id } => ours(prompt_id),
            WsMessage::ExecutionCached { prompt_id, .. }
            | WsMessage::Executed { prompt_id, .. }
            | WsMessage::ExecutionSuccess { prompt_id }
            | WsMessage::ExecutionInterrupted { prompt_id, .. } => ours(prompt_id),
            WsMessage::ExecutionError(error) => ours(&error.prompt_id),
            WsMessage::Executing { prompt_id, node } => match node {
                Some(_) => maybe_ours(prompt_id),
                None => prompt_id.as_deref().is_some_and(ours),
            },
            WsMessage::Progress { prompt_id, .. } | WsMessage::ProgressState { prompt_id, .. } => {
                maybe_ours(prompt_id)
            }
            WsMessage::Status { .. } | WsMessage::FeatureFlags(_) | WsMessage::Other { .. } => {
                false
            }
        };
        if !concerned {
            return false;
        }
        self.last_ms = self.last_ms.max(elapsed_ms);
        if let WsMessage::Executing { node: None, .. } = message {
            self.server_done = true;
            return true;
        }
        if self.finished.is_some() {
            return true;
        }
        match message {
            WsMessage::ExecutionStart { .. } => self.start(elapsed_ms),
            WsMessage::ExecutionCached { nodes, .. } => {
                self.start(elapsed_ms);
                for node in nodes {
                    if !self.cached.contains(node) {
                        self.cached.push(node.clone());
                    }
                    self.done.insert(node.clone());
                }
            }
            WsMessage::Executing {
                node: Some(node), ..
            } => {
                self.start(elapsed_ms);
                self.begin_node(node, elapsed_ms);
            }
            WsMessage::Progress {
                node, value, max, ..
            } => {
                self.start(elapsed_ms);
                self.on_progress(node.as_deref(), *value, *max, elapsed_ms);
            }
            WsMessage::ProgressState { nodes, .. } => {
                self.start(elapsed_ms);
                self.on_progress_state(nodes, elapsed_ms);
            }
            WsMessage::Executed { node, .. } => {
                self.start(elapsed_ms);
                for ancestor in self.map.ancestors(node) {
                    self.done.insert(ancestor);
                }
                if self.map.node(node).is_some() {
                    self.done.insert(node.clone());
                }
            }
            WsMessage::ExecutionSuccess { .. } => self.end(Outcome::Success, elapsed_ms),
            WsMessage::ExecutionError(error) => {
                if let Some(node) = &error.node_id {
                    self.stop_at(node, elapsed_ms);
                }
                self.end(Outcome::Error(error.clone()), elapsed_ms);
            }
            WsMessage::ExecutionInterrupted { node_id, .. } => {
                if let Some(node) = node_id {
                    self.stop_at(node, elapsed_ms);
                }
                self.end(Outcome::Interrupted, elapsed_ms);
            }
            _ => {}
        }
        self.update_overall();
        true
    }

    /// Ends the run with an outcome learnt elsewhere (the server's `/history` after a lost
    /// connection). Does nothing once the run has an outcome; returns whether it took this one.
    pub fn finish(&mut self, outcome: Outcome, elapsed_ms: u64) -> bool {
        if self.finished.is_some() {
            return false;
        }
        self.last_ms = self.last_ms.max(elapsed_ms);
        self.start(elapsed_ms);
        if let Outcome::Error(ExecutionError {
            node_id: Some(node),
            ..
        }) = &outcome
        {
            self.stop_at(node, elapsed_ms);
        }
        self.end(outcome, elapsed_ms);
        self.update_overall();
        true
    }

    fn start(&mut self, at_ms: u64) {
        if self.started_ms.is_none() {
            self.started_ms = Some(at_ms);
            self.switch_stage(Stage::Prepare, at_ms);
        }
    }

    fn switch_stage(&mut self, stage: Stage, at_ms: u64) {
        if stage == self.stage {
            return;
        }
        let spent = at_ms.saturating_sub(self.stage_since_ms);
        *self.stage_ms.entry(self.stage.key()).or_insert(0) += spent;
        self.stage = stage;
        self.stage_since_ms = at_ms.max(self.stage_since_ms);
    }

    /// A node started: the one before it is finished, and so is everything it depends on.
    /// A node already finished is a late or replayed message and changes nothing.
    fn begin_node(&mut self, node: &str, at_ms: u64) {
        if self.current.as_deref() == Some(node) || self.done.contains(node) {
            return;
        }
        let Some(entry) = self.map.node(node) else {
            // Not in the prompt: a node expanded at run time, which belongs to the running one.
            return;
        };
        let is_sampler = entry.sampler.is_some();
        if let Some(previous) = self.current.take() {
            self.done.insert(previous);
        }
        for ancestor in self.map.ancestors(node) {
            self.done.insert(ancestor);
        }
        self.current = Some(node.to_string());
        self.step = None;
        if is_sampler {
            self.clocks
                .entry(node.to_string())
                .or_insert_with(|| SamplerClock {
                    started_ms: at_ms,
                    ..SamplerClock::default()
                });
        }
        let stage = self.display_stage(node);
        self.switch_stage(stage, at_ms);
    }

    /// Where a failed or interrupted run stopped.
    fn stop_at(&mut self, node: &str, at_ms: u64) {
        if self.current.as_deref() != Some(node) && self.map.node(node).is_some() {
            self.done.remove(node);
            self.begin_node(node, at_ms);
        }
    }

    /// The stage to show while `node` runs. A stage node shows its own. A supporting node shows
    /// the stage it serves once nothing of the stages before that one is left to run (the
    /// high-noise model loads right before high-noise sampling); otherwise the stage stays.
    fn display_stage(&self, node: &str) -> Stage {
        let current = match self.stage {
            Stage::Queued => Stage::Prepare,
            stage => stage,
        };
        let Some(entry) = self.map.node(node) else {
            return current;
        };
        if !entry.folded {
            return entry.stage;
        }
        let served = entry.stage;
        if served == Stage::Prepare || served.rank() <= current.rank() {
            return current;
        }
        let blocked = self.map.nodes.iter().any(|(id, n)| {
            !n.folded
                && n.weight > 0.0
                && id != node
                && !self.done.contains(id)
                && (current.rank()..served.rank()).contains(&n.stage.rank())
        });
        if blocked { current } else { served }
    }

    fn on_progress(&mut self, node: Option<&str>, value: u64, max: u64, at_ms: u64) {
        // Progress of a node not in the prompt (expanded at run time) is the running node's.
        let node = match node {
            Some(id) if self.map.node(id).is_some() => id.to_string(),
            _ => match &self.current {
                Some(current) => current.clone(),
                None => return,
            },
        };
        if self.done.contains(&node) {
            return;
        }
        if self.current.as_deref() != Some(node.as_str()) {
            self.begin_node(&node, at_ms);
        }
        let value = value.min(max);
        self.step = Some((value, max));
        let Some(clock) = self.clocks.get_mut(&node) else {
            return;
        };
        clock.steps_seen = clock.steps_seen.max(value);
        match clock.last_ms {
            _ if value == 0 => {}
            None => {
                let spent = at_ms.saturating_sub(clock.started_ms);
                clock.first_step_ms = Some(spent / value.max(1));
                if value > 1 {
                    // The first message came late (a reconnect): only an average is known.
                    clock.intervals.push(spent as f64 / 1000.0 / value as f64);
                }
                clock.last_value = value;
                clock.last_ms = Some(at_ms);
            }
            Some(last_ms) if value > clock.last_value => {
                let spent = at_ms.saturating_sub(last_ms) as f64 / 1000.0;
                clock
                    .intervals
                    .push(spent / (value - clock.last_value) as f64);
                clock.last_value = value;
                clock.last_ms = Some(at_ms);
            }
            Some(_) if value < clock.last_value => {
                // A new pass inside the same node: restart the count, keep the rates.
                clock.last_value = value;
                clock.last_ms = Some(at_ms);
            }
            Some(_) => {}
        }
    }

    fn on_progress_state(&mut self, nodes: &serde_json::Map<String, Value>, at_ms: u64) {
        let mut running = None;
        for (id, state) in nodes {
            match state.get("state").and_then(Value::as_str) {
                Some("finished")
                    if self.map.node(id).is_some()
                        && self.current.as_deref() != Some(id.as_str()) =>
                {
                    self.done.insert(id.clone());
                }
                Some("running") => running = Some(id.clone()),
                _ => {}
            }
        }
        if self.current.is_none()
            && let Some(id) = running
        {
            self.begin_node(&id, at_ms);
        }
    }

    fn end(&mut self, outcome: Outcome, at_ms: u64) {
        if outcome == Outcome::Success {
            if let Some(current) = self.current.take() {
                self.done.insert(current);
            }
            self.done.extend(self.map.nodes.keys().cloned());
            self.step = None;
            self.switch_stage(Stage::Done, at_ms);
        } else {
            let spent = at_ms.saturating_sub(self.stage_since_ms);
            *self.stage_ms.entry(self.stage.key()).or_insert(0) += spent;
            self.stage_since_ms = at_ms.max(self.stage_since_ms);
        }
        self.finished = Some(outcome);
        self.finished_ms = Some(at_ms);
    }

    fn update_overall(&mut self) {
        if self.finished == Some(Outcome::Success) {
            self.overall = 1.0;
            return;
        }
        let total = self.map.total_weight;
        if total <= 0.0 {
            return;
        }
        let done: f64 = self
            .map
            .nodes
            .iter()
            .filter(|(id, _)| self.done.contains(*id))
            .map(|(_, n)| n.weight)
            .sum();
        let partial = match (&self.current, self.step) {
            (Some(current), Some((value, max))) if max > 0 && !self.done.contains(current) => {
                self.map.node(current).map_or(0.0, |n| n.weight) * value as f64 / max as f64
            }
            _ => 0.0,
        };
        let raw = ((done + partial) / total).clamp(0.0, MAX_UNFINISHED);
        self.overall = self.overall.max(raw);
    }

    /// The steady seconds per step to expect of `node`: its own recent steps, else the latest
    /// other sampler's (the low-noise expert runs at about the high-noise expert's pace).
    fn rate_for(&self, node: &str) -> Option<f64> {
        self.clocks
            .get(node)
            .and_then(SamplerClock::recent_rate)
            .or_else(|| self.latest_rate())
    }

    fn latest_rate(&self) -> Option<f64> {
        self.clocks
            .values()
            .rev()
            .find_map(SamplerClock::recent_rate)
    }

    fn eta_secs(&self) -> Option<f64> {
        if self.finished.is_some() {
            return None;
        }
        let base = self.latest_rate()?;
        let mut secs = 0.0;
        for (id, node) in &self.map.nodes {
            if self.done.contains(id) || node.weight <= 0.0 {
                continue;
            }
            let is_current = self.current.as_deref() == Some(id.as_str());
            match &node.sampler {
                Some(plan) => {
                    let (left, rate) = if is_current {
                        let left = match self.step {
                            Some((value, max)) => max.saturating_sub(value),
                            None => plan.steps,
                        };
                        (left, self.rate_for(id).unwrap_or(base))
                    } else {
                        (plan.steps, base)
                    };
                    secs += left as f64 * rate;
                }
                None => {
                    let share = match (is_current, self.step) {
                        (true, Some((value, max))) if max > 0 => 1.0 - value as f64 / max as f64,
                        _ => 1.0,
                    };
                    secs += node.weight * share * base;
                }
            }
        }
        Some(secs)
    }

    /// Where the run stands now.
    pub fn progress(&self) -> Progress {
        let node_class = self
            .current
            .as_deref()
            .and_then(|id| self.map.node(id))
            .map(|n| n.class_type.clone());
        let schedule_step = match (&self.current, self.step) {
            (Some(current), Some((value, max))) => self
                .map
                .node(current)
                .and_then(|n| n.sampler.as_ref())
                .and_then(|plan| {
                    let (first, total) = plan.schedule?;
                    (max == plan.steps).then_some(((first + value).min(total), total))
                }),
            _ => None,
        };
        Progress {
            stage: self.stage,
            node: self.current.clone(),
            node_class,
            step: self.step,
            schedule_step,
            overall: self.overall,
            eta_secs: self.eta_secs(),
            cached_nodes: self.cached.clone(),
            finished: self.finished.clone(),
            server_done: self.server_done,
            at_ms: self.last_ms,
        }
    }

    /// The run's timings so far (complete once it finished).
    pub fn timings(&self) -> RunTimings {
        let end_ms = self.finished_ms.unwrap_or(self.last_ms);
        let mut stages: Vec<StageTime> = self
            .stage_ms
            .iter()
            .map(|(key, ms)| StageTime {
                stage: (*key).to_string(),
                ms: *ms,
            })
            .collect();
        if self.finished.is_none() {
            let open = end_ms.saturating_sub(self.stage_since_ms);
            match stages.iter_mut().find(|s| s.stage == self.stage.key()) {
                Some(time) => time.ms += open,
                None => stages.push(StageTime {
                    stage: self.stage.key().to_string(),
                    ms: open,
                }),
            }
        }
        stages.retain(|s| s.stage != Stage::Done.key());
        let samplers: Vec<SamplerTime> = self
            .clocks
            .iter()
            .map(|(id, clock)| SamplerTime {
                node: id.clone(),
                expert: self
                    .map
                    .node(id)
                    .and_then(|n| n.sampler.as_ref())
                    .map_or(Expert::Single, |p| p.expert),
                steps_seen: clock.steps_seen,
                first_step_ms: clock.first_step_ms,
                s_per_step: median(&clock.intervals),
            })
            .collect();
        let all_intervals: Vec<f64> = self
            .clocks
            .values()
            .flat_map(|c| c.intervals.iter().copied())
            .collect();
        RunTimings {
            queued_ms: self.started_ms,
            run_ms: self.started_ms.map(|s| end_ms.saturating_sub(s)),
            total_ms: Some(end_ms),
            stages,
            samplers,
            sampling_s_per_step: median(&all_intervals),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn two_pass_prompt() -> Value {
        json!({
            "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors"}},
            "2": {"class_type": "UNETLoader", "inputs": {"unet_name": "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors"}},
            "3": {"class_type": "CLIPLoader", "inputs": {"clip_name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "type": "wan"}},
            "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["3", 0]}},
            "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["3", 0]}},
            "6": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 832, "height": 480, "length": 81, "batch_size": 1}},
            "7": {"class_type": "KSamplerAdvanced", "inputs": {"model": ["1", 0], "positive": ["4", 0], "negative": ["5", 0], "latent_image": ["6", 0], "steps": 20, "start_at_step": 0, "end_at_step": 10, "cfg": 3.5}},
            "8": {"class_type": "KSamplerAdvanced", "inputs": {"model": ["2", 0], "positive": ["4", 0], "negative": ["5", 0], "latent_image": ["7", 0], "steps": 20, "start_at_step": 10, "end_at_step": 10000, "cfg": 3.5}},
            "9": {"class_type": "VAELoader", "inputs": {"vae_name": "wan_2.1_vae.safetensors"}},
            "10": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["9", 0]}},
            "11": {"class_type": "CreateVideo", "inputs": {"images": ["10", 0], "fps": 16}},
            "12": {"class_type": "SaveVideo", "inputs": {"video": ["11", 0], "filename_prefix": "video/x"}},
            "13": {"class_type": "Note", "inputs": {}}
        })
    }

    fn executing(node: &str) -> WsMessage {
        WsMessage::Executing {
            prompt_id: Some("p".into()),
            node: Some(node.into()),
        }
    }

    fn progress(node: &str, value: u64, max: u64) -> WsMessage {
        WsMessage::Progress {
            prompt_id: Some("p".into()),
            node: Some(node.into()),
            value,
            max,
        }
    }

    #[test]
    fn nodes_get_stages_experts_and_weights() {
        let map = StageMap::from_prompt(&two_pass_prompt());
        let stage = |id: &str| map.stage_of(id).unwrap();
        assert_eq!(stage("4"), Stage::TextEncode);
        assert_eq!(
            stage("3"),
            Stage::TextEncode,
            "a CLIP loader serves the encode"
        );
        assert_eq!(
            stage("7"),
            Stage::Sampling {
                expert: Expert::High
            }
        );
        assert_eq!(
            stage("8"),
            Stage::Sampling {
                expert: Expert::Low
            }
        );
        assert_eq!(
            stage("1"),
            Stage::Sampling {
                expert: Expert::High
            }
        );
        assert_eq!(stage("9"), Stage::VaeDecode);
        assert_eq!(stage("11"), Stage::Save);
        let high = map.node("7").unwrap().sampler.clone().unwrap();
        assert_eq!((high.steps, high.schedule), (10, Some((0, 20))));
        let low = map.node("8").unwrap().sampler.clone().unwrap();
        assert_eq!((low.steps, low.schedule), (10, Some((10, 20))));
        // A note feeds nothing and never runs.
        assert_eq!(map.node("13").unwrap().weight, 0.0);
        // Sampling dominates.
        let sampling: f64 = map.samplers().iter().map(|(_, p)| p.steps as f64).sum();
        assert!(
            sampling / map.total_weight() > 0.8,
            "{}",
            map.total_weight()
        );
        assert_eq!(
            map.stages(),
            vec![
                Stage::TextEncode,
                Stage::Sampling {
                    expert: Expert::High
                },
                Stage::Sampling {
                    expert: Expert::Low
                },
                Stage::VaeDecode,
                Stage::Save
            ]
        );
    }

    #[test]
    fn experts_from_the_schedule_when_files_say_nothing() {
        let mut prompt = two_pass_prompt();
        prompt["1"]["inputs"]["unet_name"] = json!("model_a.safetensors");
        prompt["2"]["inputs"]["unet_name"] = json!("model_b.safetensors");
        let map = StageMap::from_prompt(&prompt);
        assert_eq!(
            map.stage_of("7"),
            Some(Stage::Sampling {
                expert: Expert::High
            })
        );
        assert_eq!(
            map.stage_of("8"),
            Some(Stage::Sampling {
                expert: Expert::Low
            })
        );
        // One KSampler over every step is the single expert.
        let single = json!({
            "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "wan2.2_ti2v_5B_fp16.safetensors"}},
            "2": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "steps": 30}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0]}}
        });
        let map = StageMap::from_prompt(&single);
        assert_eq!(
            map.stage_of("2"),
            Some(Stage::Sampling {
                expert: Expert::Single
            })
        );
        assert_eq!(map.node("2").unwrap().sampler.as_ref().unwrap().steps, 30);
    }

    #[test]
    fn wrapper_and_image_to_video_nodes_have_stages() {
        for (class, stage) in [
            ("WanVideoTextEncode", Stage::TextEncode),
            ("WanVideoTextEncodeCached", Stage::TextEncode),
            ("CLIPTextEncode", Stage::TextEncode),
            ("WanImageToVideo", Stage::ImageEncode),
            ("CLIPVisionEncode", Stage::ImageEncode),
            ("WanVideoImageToVideoEncode", Stage::ImageEncode),
            ("WanVideoClipVisionEncode", Stage::ImageEncode),
            ("WanFirstLastFrameToVideo", Stage::ImageEncode),
            ("VAEDecode", Stage::VaeDecode),
            ("VAEDecodeTiled", Stage::VaeDecode),
            ("WanVideoDecode", Stage::VaeDecode),
            ("SaveImage", Stage::Save),
            ("SaveVideo", Stage::Save),
            ("VHS_VideoCombine", Stage::Save),
            ("CreateVideo", Stage::Save),
        ] {
            assert_eq!(own_stage(class), Some(stage), "{class}");
        }
        for class in [
            "UNETLoader",
            "ModelSamplingSD3",
            "TorchCompileModelWanVideoV2",
            "EmptyHunyuanLatentVideo",
            "WanVideoModelLoader",
        ] {
            assert_eq!(own_stage(class), None, "{class}");
        }
        assert_eq!(multigpu_base("UNETLoaderDisTorch2MultiGPU"), "UNETLoader");
    }

    #[test]
    fn steps_time_and_eta_forget_a_slow_first_step() {
        let mut tracker = Tracker::new("p", StageMap::from_prompt(&two_pass_prompt()));
        tracker.apply(
            &WsMessage::ExecutionStart {
                prompt_id: "p".into(),
            },
            0,
        );
        for (i, node) in ["3", "4", "5", "1", "6"].iter().enumerate() {
            tracker.apply(&executing(node), 100 * i as u64);
        }
        tracker.apply(&executing("7"), 1_000);
        // First step: 60 s of compiling, then 2 s per step.
        tracker.apply(&progress("7", 1, 10), 61_000);
        let p = tracker.progress();
        assert_eq!(
            p.stage,
            Stage::Sampling {
                expert: Expert::High
            }
        );
        assert_eq!(p.eta_secs, None, "no steady step time yet");
        let mut at = 61_000;
        let mut etas = Vec::new();
        for step in 2..=10 {
            at += 2_000;
            tracker.apply(&progress("7", step, 10), at);
            etas.push(tracker.progress().eta_secs.unwrap());
        }
        // After step 2 of 20 (plus a decode and small things) about 18 steps × 2 s are left.
        assert!((36.0..=42.0).contains(&etas[0]), "{etas:?}");
        assert!(etas.windows(2).all(|w| w[1] < w[0]), "{etas:?}");
        // The low-noise expert starts with the high-noise pace, then its own.
        tracker.apply(&executing("2"), at + 500);
        assert_eq!(
            tracker.progress().stage,
            Stage::Sampling {
                expert: Expert::Low
            }
        );
        tracker.apply(&executing("8"), at + 1_000);
        let eta = tracker.progress().eta_secs.unwrap();
        assert!((20.0..=24.0).contains(&eta), "{eta}");
        tracker.apply(&progress("8", 1, 10), at + 5_000);
        tracker.apply(&progress("8", 2, 10), at + 6_000);
        tracker.apply(&progress("8", 3, 10), at + 7_000);
        let p = tracker.progress();
        assert_eq!(p.schedule_step, Some((13, 20)));
        let eta = p.eta_secs.unwrap();
        assert!(
            (7.0..=9.0).contains(&eta),
            "7 steps at 1 s and a decode: {eta}"
        );
        assert!(
            p.line().starts_with("low-noise sampling — step 13/20 — "),
            "{}",
            p.line()
        );
        assert!(p.line().ends_with("s left"), "{}", p.line());
        let timings = tracker.timings();
        assert_eq!(timings.samplers.len(), 2);
        assert_eq!(timings.samplers[0].first_step_ms, Some(60_000));
        assert_eq!(timings.samplers[0].s_per_step, Some(2.0));
        assert_eq!(timings.samplers[1].s_per_step, Some(1.0));
    }

    #[test]
    fn messages_of_other_prompts_and_after_the_end_change_nothing() {
        let mut tracker = Tracker::new("p", StageMap::from_prompt(&two_pass_prompt()));
        let foreign = WsMessage::ExecutionStart {
            prompt_id: "q".into(),
        };
        assert!(!tracker.apply(&foreign, 5));
        // Before our run starts, a node without prompt id is not ours.
        let replay = WsMessage::Executing {
            prompt_id: None,
            node: Some("7".into()),
        };
        assert!(!tracker.apply(&replay, 6));
        assert_eq!(tracker.progress().stage, Stage::Queued);
        assert!(tracker.apply(&executing("7"), 10));
        assert!(
            tracker.apply(&replay, 11),
            "a replay during our run is ours"
        );
        assert!(!tracker.apply(
            &WsMessage::ExecutionSuccess {
                prompt_id: "q".into()
            },
            12
        ));
        assert!(tracker.progress().finished.is_none());
        assert!(tracker.finish(Outcome::Interrupted, 20));
        assert!(!tracker.finish(Outcome::Success, 21));
        assert_eq!(tracker.progress().finished, Some(Outcome::Interrupted));
        assert!(tracker.progress().overall < 1.0);
    }

    #[test]
    fn lines_for_every_state() {
        let mut p = Progress {
            stage: Stage::Sampling {
                expert: Expert::Low,
            },
            node: Some("78".into()),
            node_class: Some("KSamplerAdvanced".into()),
            step: Some((1, 2)),
            schedule_step: Some((3, 4)),
            overall: 0.575,
            eta_secs: Some(12.2),
            cached_nodes: Vec::new(),
            finished: None,
            server_done: false,
            at_ms: 0,
        };
        assert_eq!(
            p.line(),
            "low-noise sampling — step 3/4 — 57 % — about 12 s left"
        );
        p.finished = Some(Outcome::Error(ExecutionError {
            prompt_id: "p".into(),
            node_id: Some("78".into()),
            node_type: "KSamplerAdvanced".into(),
            exception_type: "torch.OutOfMemoryError".into(),
            exception_message: "Allocation on device\nmore".into(),
            traceback: Vec::new(),
        }));
        assert_eq!(
            p.line(),
            "out of GPU memory during low-noise sampling (KSamplerAdvanced #78): OutOfMemoryError: Allocation on device"
        );
        assert!(p.finished.as_ref().unwrap().is_out_of_memory());
        p.finished = Some(Outcome::Interrupted);
        assert_eq!(
            p.line(),
            "interrupted during low-noise sampling (KSamplerAdvanced #78) — 57 %"
        );
        assert_eq!(describe_eta(0.4), "almost done");
        assert_eq!(describe_eta(200.0), "about 3 min left");
        assert_eq!(describe_eta(3_900.0), "about 1 h 5 min left");
    }

    #[test]
    fn stage_keys_round_trip() {
        for stage in ALL_STAGES {
            assert_eq!(Stage::from_key(stage.key()), Some(stage));
        }
        assert_eq!(Stage::from_key("nonsense"), None);
    }
}
