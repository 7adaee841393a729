//! Flattening a UI workflow the way ComfyUI's frontend does before it queues a prompt
//! (`graphToPrompt` and `ExecutableNodeDTO`): subgraph instances expanded into `outer:inner`
//! ids, links followed through reroutes, KJNodes Set/Get pairs, bypassed nodes and subgraph
//! boundaries, legacy PrimitiveNode values copied into the widgets they feed, positional widget
//! values given their names.
//!
//! The result keeps where each value came from, so `inspect` can say "81 from PrimitiveNode #135"
//! and the converter can drop that to produce the plain API prompt.

use std::collections::{HashMap, HashSet};

use indexmap::IndexMap;
use serde_json::Value;

use super::error::WorkflowError;
use super::node_defs::{InputKind, NodeDef, NodeDefs, WidgetKind, WidgetSlot};
use super::ui::{
    NodeMode, SUBGRAPH_INPUT_NODE, SUBGRAPH_OUTPUT_NODE, SubgraphDef, UiGraph, UiNode, UiWorkflow,
    WidgetValues,
};

/// Frontend-only node types: they never reach the server.
pub const VIRTUAL_NODE_TYPES: &[&str] = &[
    "Reroute",
    "PrimitiveNode",
    "Note",
    "MarkdownNote",
    "GetNode",
    "SetNode",
    "Fast Groups Bypasser (rgthree)",
    "Fast Groups Muter (rgthree)",
    "Fast Bypasser (rgthree)",
    "Fast Muter (rgthree)",
    "Label (rgthree)",
    "Bookmark (rgthree)",
    "Note Plus (mtb)",
];

/// Where a literal input value came from.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueSource {
    /// The node's own widget.
    Widget,
    /// A literal of an API prompt: sent as it is, without the frontend's value transforms.
    Prompt,
    /// The node's definition default (the file stored fewer widget values).
    Default,
    /// A legacy PrimitiveNode (by execution id) feeding this widget.
    Primitive(String),
    /// A widget promoted to a subgraph instance; `on_inner` when the value is stored on the inner
    /// node rather than on the instance.
    SubgraphWidget { input: String, on_inner: bool },
}

/// What a link passed through on its way from the origin, nearest the target first.
#[derive(Debug, Clone, PartialEq)]
pub enum Hop {
    Reroute(String),
    SetGet(String),
    Bypassed(String),
    SubgraphInput(String),
    SubgraphOutput(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum FlatInput {
    Value {
        value: Value,
        source: ValueSource,
    },
    Link {
        origin: String,
        slot: usize,
        hops: Vec<Hop>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct FlatNode {
    /// Execution id: "12" at the root, "5:12" inside subgraph instance 5.
    pub id: String,
    pub class_type: String,
    pub title: Option<String>,
    /// The node's own mode. As in ComfyUI's frontend, the mode of a subgraph instance around it
    /// does not count: a bypassed instance is passed through, but its inner nodes are still sent,
    /// and a muted one has no effect.
    pub mode: NodeMode,
    /// Names of the subgraphs around the node, outermost first.
    pub subgraph_path: Vec<String>,
    /// Whether a node definition described it (otherwise widget values have no names).
    pub is_described: bool,
    pub inputs: IndexMap<String, FlatInput>,
    /// Widget values as saved, for node types no definition describes.
    pub raw_widgets: Vec<Value>,
    /// Links that resolved to nothing (their origin is bypassed with no input to pass through,
    /// or is a frontend-only node): kept so an edit that switches the origin on can reconnect.
    pub unresolved_links: Vec<UnresolvedLink>,
    /// Where the node sits in the file, for messages.
    pub place: String,
}

/// A saved link that graphToPrompt drops: input name and the node and output it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct UnresolvedLink {
    pub input: String,
    pub origin: String,
    pub slot: usize,
}

impl FlatNode {
    /// A node that did not come from a UI graph (an API prompt, or one wan-pilot inserts).
    pub fn new(
        id: &str,
        class_type: &str,
        title: Option<String>,
        inputs: IndexMap<String, FlatInput>,
        place: String,
    ) -> FlatNode {
        FlatNode {
            id: id.to_string(),
            class_type: class_type.to_string(),
            title,
            mode: NodeMode::Always,
            subgraph_path: Vec::new(),
            is_described: true,
            inputs,
            raw_widgets: Vec::new(),
            unresolved_links: Vec::new(),
            place,
        }
    }

    pub fn value(&self, name: &str) -> Option<&Value> {
        match self.inputs.get(name)? {
            FlatInput::Value { value, .. } => Some(value),
            FlatInput::Link { .. } => None,
        }
    }
}

/// A flattened workflow: every node the frontend would consider, active or not.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FlatGraph {
    pub nodes: IndexMap<String, FlatNode>,
    /// Problems met on the way that did not stop the flattening (lenient mode only).
    pub warnings: Vec<WorkflowError>,
}

/// How strict flattening is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strictness {
    /// For conversion: every active node must be described, every link must resolve.
    Convert,
    /// For inspection: describe what can be described, note the rest.
    Inspect,
}

/// One graph level: the root or the inside of one subgraph instance.
struct Level<'a> {
    graph: &'a UiGraph,
    /// Instance ids from the root down to this level.
    path: Vec<String>,
    names: Vec<String>,
    /// The instance this level is the inside of, with the level it sits in.
    instance: Option<(&'a UiNode, usize)>,
    def: Option<&'a SubgraphDef>,
}

enum Resolved {
    Link {
        origin: String,
        slot: usize,
        hops: Vec<Hop>,
    },
    Value {
        value: Value,
        source: ValueSource,
    },
    /// The input stays with the node's own widget value (a promoted widget stored on the inner node).
    KeepWidget {
        input: String,
    },
}

struct Flattener<'a> {
    workflow: &'a UiWorkflow,
    /// Legacy group-node instances as subgraphs, by the instance's place in the file.
    groups: &'a HashMap<String, SubgraphDef>,
    defs: &'a NodeDefs,
    strictness: Strictness,
    levels: Vec<Level<'a>>,
    /// Level index of each subgraph instance: (parent level, instance id) → inner level.
    inner_levels: HashMap<(usize, String), usize>,
    warnings: Vec<WorkflowError>,
}

/// Flattens a UI workflow with the given node definitions.
pub fn flatten(
    workflow: &UiWorkflow,
    defs: &NodeDefs,
    strictness: Strictness,
) -> Result<FlatGraph, WorkflowError> {
    let (groups, group_problem) = match super::group::instance_defs(workflow, defs) {
        Ok(groups) => (groups, None),
        Err(e) if strictness == Strictness::Convert => return Err(e),
        Err(e) => (HashMap::new(), Some(e)),
    };
    let mut flattener = Flattener {
        workflow,
        groups: &groups,
        defs,
        strictness,
        levels: Vec::new(),
        inner_levels: HashMap::new(),
        warnings: Vec::new(),
    };
    flattener.levels.push(Level {
        graph: &workflow.root,
        path: Vec::new(),
        names: Vec::new(),
        instance: None,
        def: None,
    });
    flattener.warnings.extend(group_problem);
    flattener.expand(0, 0)?;
    let mut nodes = IndexMap::new();
    for level in 0..flattener.levels.len() {
        let graph = flattener.levels[level].graph;
        for node in &graph.nodes {
            if let Some(flat) = flattener.flat_node(level, node)? {
                nodes.insert(flat.id.clone(), flat);
            }
        }
    }
    Ok(FlatGraph {
        nodes,
        warnings: flattener.warnings,
    })
}

pub fn is_virtual(node_type: &str) -> bool {
    VIRTUAL_NODE_TYPES.contains(&node_type)
}

impl<'a> Flattener<'a> {
    /// The subgraph a node stands for: a subgraph instance, or a legacy group node.
    fn subgraph_of(&self, node: &UiNode) -> Option<&'a SubgraphDef> {
        self.workflow
            .subgraph(&node.node_type)
            .or_else(|| self.groups.get(&node.place))
    }

    fn expand(&mut self, level: usize, depth: usize) -> Result<(), WorkflowError> {
        if depth > super::ui::MAX_SUBGRAPH_DEPTH {
            return Err(WorkflowError::TooDeep {
                what: "subgraph instances".into(),
                limit: super::ui::MAX_SUBGRAPH_DEPTH,
            });
        }
        let graph = self.levels[level].graph;
        for node in &graph.nodes {
            let Some(def) = self.subgraph_of(node) else {
                continue;
            };
            let parent = &self.levels[level];
            let mut path = parent.path.clone();
            path.push(node.id.clone());
            let mut names = parent.names.clone();
            names.push(node.title.clone().unwrap_or_else(|| def.name.clone()));
            let inner = self.levels.len();
            self.levels.push(Level {
                graph: &def.graph,
                path,
                names,
                instance: Some((node, level)),
                def: Some(def),
            });
            self.inner_levels.insert((level, node.id.clone()), inner);
            self.expand(inner, depth + 1)?;
        }
        Ok(())
    }

    fn exec_id(&self, level: usize, node_id: &str) -> String {
        let mut parts = self.levels[level].path.clone();
        parts.push(node_id.to_string());
        parts.join(":")
    }

    fn problem(&mut self, error: WorkflowError) -> Result<(), WorkflowError> {
        match self.strictness {
            Strictness::Convert => Err(error),
            Strictness::Inspect => {
                self.warnings.push(error);
                Ok(())
            }
        }
    }

    fn flat_node(
        &mut self,
        level: usize,
        node: &'a UiNode,
    ) -> Result<Option<FlatNode>, WorkflowError> {
        if is_virtual(&node.node_type) || self.subgraph_of(node).is_some() {
            return Ok(None);
        }
        // A group node whose definition could not be read (already reported as a warning).
        if super::group::group_name(&node.node_type).is_some() {
            return Ok(None);
        }
        let mode = node.mode;
        let id = self.exec_id(level, &node.id);
        let def = self.defs.get(&node.node_type);
        if def.is_none() && mode.is_active() {
            self.problem(WorkflowError::UnknownNodeType {
                node: id.clone(),
                class_type: node.node_type.clone(),
                hint: format!(
                    "install the custom node pack that provides it in ComfyUI and connect wan-pilot \
                     to that server (node definitions in use: {})",
                    self.defs.source
                ),
            })?;
        }
        let mut inputs = IndexMap::new();
        let mut unresolved_links = Vec::new();
        if let Some(def) = def {
            self.widget_inputs(level, node, def, &mut inputs);
        }
        for (slot, input) in node.inputs.iter().enumerate() {
            if input.link.is_none() {
                continue;
            }
            let mut visited = HashSet::new();
            match self.resolve_input(level, node, slot, None, &mut visited)? {
                Some(Resolved::Link { origin, slot, hops }) => {
                    inputs.insert(input.name.clone(), FlatInput::Link { origin, slot, hops });
                }
                Some(Resolved::Value { value, source }) => {
                    inputs.insert(input.name.clone(), FlatInput::Value { value, source });
                }
                Some(Resolved::KeepWidget { input: promoted }) => {
                    if let Some(FlatInput::Value { source, .. }) = inputs.get_mut(&input.name) {
                        *source = ValueSource::SubgraphWidget {
                            input: promoted,
                            on_inner: true,
                        };
                    }
                }
                None => {
                    let graph = self.levels[level].graph;
                    if let Some(link) = input.link.and_then(|id| graph.link(id))
                        && link.origin_id != SUBGRAPH_INPUT_NODE
                    {
                        unresolved_links.push(UnresolvedLink {
                            input: input.name.clone(),
                            origin: self.exec_id(level, &link.origin_id),
                            slot: link.origin_slot,
                        });
                    }
                }
            }
        }
        let raw_widgets = match &node.widgets_values {
            WidgetValues::List(list) => list.clone(),
            WidgetValues::Named(map) => map.values().cloned().collect(),
        };
        Ok(Some(FlatNode {
            id,
            class_type: node.node_type.clone(),
            title: node.title.clone(),
            mode,
            subgraph_path: self.levels[level].names.clone(),
            is_described: def.is_some(),
            inputs,
            raw_widgets,
            unresolved_links,
            place: node.place.clone(),
        }))
    }

    /// Widget values by name, as `graphToPrompt` writes them before links override them.
    fn widget_inputs(
        &mut self,
        level: usize,
        node: &UiNode,
        def: &NodeDef,
        inputs: &mut IndexMap<String, FlatInput>,
    ) {
        let primitives = self.primitive_values(level, node);
        let mut put = |name: &str, value: Value, source: ValueSource| {
            let (value, source) = match primitives.get(name) {
                Some((v, from)) => (v.clone(), ValueSource::Primitive(from.clone())),
                None => (value, source),
            };
            let value = if value.is_array() {
                serde_json::json!({ "__value__": value })
            } else {
                value
            };
            inputs.insert(name.to_string(), FlatInput::Value { value, source });
        };
        match &node.widgets_values {
            WidgetValues::Named(map) => {
                // VideoHelperSuite keeps widget values by name, including format-dependent
                // widgets its definition does not list; the preview state is frontend-only.
                for (name, value) in map {
                    if name == "videopreview" {
                        continue;
                    }
                    put(name, value.clone(), ValueSource::Widget);
                }
                for input in def.inputs.iter().filter(|i| i.is_widget()) {
                    if !map.contains_key(&input.name) {
                        put(&input.name, default_value(input), ValueSource::Default);
                    }
                }
            }
            WidgetValues::List(values) => {
                for (index, slot) in def.widget_slots().iter().enumerate() {
                    let WidgetSlot::Input(k) = slot else {
                        continue;
                    };
                    let Some(input) = def.inputs.get(*k) else {
                        continue;
                    };
                    match values.get(index) {
                        Some(value) => put(&input.name, value.clone(), ValueSource::Widget),
                        None => put(&input.name, default_value(input), ValueSource::Default),
                    }
                }
            }
        }
    }

    /// Values that legacy PrimitiveNodes push into this node's widgets (their `applyToGraph`).
    fn primitive_values(&self, level: usize, node: &UiNode) -> HashMap<String, (Value, String)> {
        let mut out = HashMap::new();
        let graph = self.levels[level].graph;
        for input in &node.inputs {
            let (Some(link), Some(widget)) = (input.link, input.widget_name.as_ref()) else {
                continue;
            };
            let mut link = graph.link(link);
            // Follow reroutes up to the primitive, as applyToGraph does.
            let mut guard = 0;
            while let Some(l) = link {
                let Some(origin) = graph.node(&l.origin_id) else {
                    break;
                };
                if origin.node_type == "PrimitiveNode" {
                    if let Some(value) = origin.widgets_values.get(0) {
                        out.insert(
                            widget.clone(),
                            (value.clone(), self.exec_id(level, &origin.id)),
                        );
                    }
                    break;
                }
                guard += 1;
                if origin.node_type != "Reroute" || guard > 64 {
                    break;
                }
                link = origin
                    .inputs
                    .first()
                    .and_then(|i| i.link)
                    .and_then(|id| graph.link(id));
            }
        }
        out
    }

    fn resolve_input(
        &mut self,
        level: usize,
        node: &'a UiNode,
        slot: usize,
        wanted_type: Option<&str>,
        visited: &mut HashSet<(usize, String, usize, bool)>,
    ) -> Result<Option<Resolved>, WorkflowError> {
        if !visited.insert((level, node.id.clone(), slot, true)) {
            return Err(WorkflowError::Cycle {
                node: self.exec_id(level, &node.id),
            });
        }
        let Some(input) = node.inputs.get(slot) else {
            return Ok(None);
        };
        let Some(link_id) = input.link else {
            return Ok(None);
        };
        let graph = self.levels[level].graph;
        let Some(link) = graph.link(link_id) else {
            self.problem(WorkflowError::MissingLink {
                link: link_id,
                place: format!("{}.inputs[{slot}] ({})", node.place, input.name),
            })?;
            return Ok(None);
        };
        let wanted = wanted_type.unwrap_or(&input.slot_type).to_string();
        if link.origin_id == SUBGRAPH_INPUT_NODE {
            return self.resolve_subgraph_input(
                level,
                node,
                slot,
                link.origin_slot,
                &wanted,
                visited,
            );
        }
        let Some(origin) = graph.node(&link.origin_id) else {
            self.problem(WorkflowError::DanglingLink {
                link: link_id.to_string(),
                place: format!("{}.inputs[{slot}] ({})", node.place, input.name),
                target: format!("node {}", link.origin_id),
            })?;
            return Ok(None);
        };
        self.resolve_output(level, origin, link.origin_slot, &wanted, visited)
    }

    fn resolve_subgraph_input(
        &mut self,
        level: usize,
        node: &'a UiNode,
        slot: usize,
        def_slot: usize,
        wanted: &str,
        visited: &mut HashSet<(usize, String, usize, bool)>,
    ) -> Result<Option<Resolved>, WorkflowError> {
        let (Some((instance, parent)), Some(def)) =
            (self.levels[level].instance, self.levels[level].def)
        else {
            return Ok(None);
        };
        let Some(def_input) = def.inputs.get(def_slot) else {
            self.problem(WorkflowError::bad_ui(
                &node.place,
                format!("input {slot} is linked to subgraph input {def_slot}, which the definition lacks"),
            ))?;
            return Ok(None);
        };
        // Saved instances drop unlinked widget sockets, so match the instance's input by name.
        let instance_input = instance.input_named(&def_input.name);
        if let Some((index, outer)) = instance_input
            && outer.link.is_some()
        {
            let resolved = self.resolve_input(parent, instance, index, Some(wanted), visited)?;
            return Ok(resolved.map(|r| match r {
                Resolved::Link {
                    origin,
                    slot,
                    mut hops,
                } => {
                    hops.insert(0, Hop::SubgraphInput(def_input.name.clone()));
                    Resolved::Link { origin, slot, hops }
                }
                other => other,
            }));
        }
        if let Some(value) = promoted_value(instance, def, def_slot, node, slot) {
            return Ok(Some(Resolved::Value {
                value,
                source: ValueSource::SubgraphWidget {
                    input: def_input.name.clone(),
                    on_inner: false,
                },
            }));
        }
        Ok(Some(Resolved::KeepWidget {
            input: def_input.name.clone(),
        }))
    }

    fn resolve_output(
        &mut self,
        level: usize,
        node: &'a UiNode,
        slot: usize,
        wanted: &str,
        visited: &mut HashSet<(usize, String, usize, bool)>,
    ) -> Result<Option<Resolved>, WorkflowError> {
        if !visited.insert((level, node.id.clone(), slot, false)) {
            return Err(WorkflowError::Cycle {
                node: self.exec_id(level, &node.id),
            });
        }
        let with_hop = |resolved: Option<Resolved>, hop: Hop| {
            resolved.map(|r| match r {
                Resolved::Link {
                    origin,
                    slot,
                    mut hops,
                } => {
                    hops.insert(0, hop);
                    Resolved::Link { origin, slot, hops }
                }
                other => other,
            })
        };
        if node.mode == NodeMode::Bypass {
            let Some(index) = bypass_input_index(node, slot, wanted) else {
                return Ok(None);
            };
            let resolved = self.resolve_input(level, node, index, Some(wanted), visited)?;
            return Ok(with_hop(
                resolved,
                Hop::Bypassed(self.exec_id(level, &node.id)),
            ));
        }
        if let Some(def) = self.subgraph_of(node) {
            let Some(&inner) = self.inner_levels.get(&(level, node.id.clone())) else {
                return Ok(None);
            };
            let Some(link) = def
                .graph
                .links
                .values()
                .find(|l| l.target_id == SUBGRAPH_OUTPUT_NODE && l.target_slot == slot)
            else {
                return Ok(None);
            };
            let Some(inner_node) = def.graph.node(&link.origin_id) else {
                return Ok(None);
            };
            let name = def
                .outputs
                .get(slot)
                .map(|o| o.name.clone())
                .unwrap_or_default();
            let resolved =
                self.resolve_output(inner, inner_node, link.origin_slot, wanted, visited)?;
            return Ok(with_hop(resolved, Hop::SubgraphOutput(name)));
        }
        if is_virtual(&node.node_type) {
            if node.inputs.get(slot).is_some() {
                let hop = match node.node_type.as_str() {
                    "SetNode" => Hop::SetGet(set_get_name(node)),
                    _ => Hop::Reroute(self.exec_id(level, &node.id)),
                };
                let resolved = self.resolve_input(level, node, slot, Some(wanted), visited)?;
                return Ok(with_hop(resolved, hop));
            }
            if node.node_type == "GetNode" {
                let name = set_get_name(node);
                let graph = self.levels[level].graph;
                let setter = graph
                    .nodes
                    .iter()
                    .find(|n| n.node_type == "SetNode" && set_get_name(n) == name);
                let Some(setter) = setter else {
                    self.problem(WorkflowError::bad_ui(
                        &node.place,
                        format!("Get node reads '{name}', but no Set node of that name exists"),
                    ))?;
                    return Ok(None);
                };
                let link = setter
                    .inputs
                    .first()
                    .and_then(|i| i.link)
                    .and_then(|id| graph.link(id));
                let Some(link) = link else {
                    return Ok(None);
                };
                let Some(origin) = graph.node(&link.origin_id) else {
                    return Ok(None);
                };
                let resolved =
                    self.resolve_output(level, origin, link.origin_slot, wanted, visited)?;
                return Ok(with_hop(resolved, Hop::SetGet(name)));
            }
            return Ok(None);
        }
        Ok(Some(Resolved::Link {
            origin: self.exec_id(level, &node.id),
            slot,
            hops: Vec::new(),
        }))
    }
}

/// The constant name a KJNodes Set/Get node carries in its first widget.
fn set_get_name(node: &UiNode) -> String {
    node.widgets_values
        .get(0)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The value a subgraph instance holds for definition input `def_slot`, if the file stores it on
/// the instance (`widgets_values` paired with `proxyWidgets`, or in definition-input order).
fn promoted_value(
    instance: &UiNode,
    def: &SubgraphDef,
    def_slot: usize,
    inner: &UiNode,
    inner_slot: usize,
) -> Option<Value> {
    let values = match &instance.widgets_values {
        WidgetValues::List(list) if !list.is_empty() => list,
        _ => return None,
    };
    let name = &def.inputs.get(def_slot)?.name;
    if let Some(proxies) = instance
        .properties
        .get("proxyWidgets")
        .and_then(Value::as_array)
    {
        let inner_widget = inner
            .inputs
            .get(inner_slot)
            .and_then(|i| i.widget_name.clone());
        let index = proxies.iter().position(|p| {
            let source = p.get(0).map(|s| match s {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
            let widget = p.get(1).and_then(Value::as_str);
            match source.as_deref() {
                Some("-1") => widget == Some(name.as_str()),
                Some(id) => id == inner.id && widget.is_some() && widget == inner_widget.as_deref(),
                None => false,
            }
        })?;
        return values.get(index).cloned();
    }
    // Without proxyWidgets the instance's widgets follow the widget-bearing definition inputs.
    let widget_inputs: Vec<&str> = instance
        .inputs
        .iter()
        .filter(|i| i.widget_name.is_some())
        .map(|i| i.name.as_str())
        .collect();
    let index = widget_inputs.iter().position(|n| n == name)?;
    values.get(index).cloned()
}

/// Which input of a bypassed node stands in for output `slot` (ExecutableNodeDTO's rule).
fn bypass_input_index(node: &UiNode, slot: usize, wanted: &str) -> Option<usize> {
    let inputs = &node.inputs;
    if wanted == "*" || wanted.is_empty() {
        return if inputs.len() > slot {
            Some(slot)
        } else if inputs.is_empty() {
            None
        } else {
            Some(0)
        };
    }
    let output_type = node
        .outputs
        .get(slot)
        .map(|o| o.slot_type.as_str())
        .unwrap_or("*");
    if let Some(opposite) = inputs.get(slot)
        && types_connect(&opposite.slot_type, output_type)
        && types_connect(&opposite.slot_type, wanted)
    {
        return Some(slot);
    }
    if let Some(exact) = inputs.iter().position(|i| i.slot_type == wanted) {
        return Some(exact);
    }
    inputs.iter().position(|i| {
        types_connect(&i.slot_type, output_type) && types_connect(&i.slot_type, wanted)
    })
}

/// LiteGraph's `isValidConnection`: equal types, a wildcard, or overlapping comma lists.
pub fn types_connect(a: &str, b: &str) -> bool {
    let wild = |t: &str| t.is_empty() || t == "*" || t == "0";
    if wild(a) || wild(b) || a == b {
        return true;
    }
    let (a, b) = (a.to_lowercase(), b.to_lowercase());
    a.split(',')
        .any(|x| b.split(',').any(|y| x.trim() == y.trim()))
}

/// The value a fresh widget holds before the file's values are applied.
fn default_value(input: &super::node_defs::InputDef) -> Value {
    if let Some(default) = &input.default {
        return default.clone();
    }
    match &input.kind {
        InputKind::Widget(WidgetKind::Int) | InputKind::Widget(WidgetKind::Float) => Value::from(0),
        InputKind::Widget(WidgetKind::Boolean) => Value::Bool(false),
        InputKind::Widget(WidgetKind::Combo(options)) => {
            options.first().cloned().unwrap_or(Value::Null)
        }
        _ => Value::String(String::new()),
    }
}

/// An API prompt seen as a flat graph: every node active, every literal a widget value.
pub fn from_api(prompt: &super::api::ApiPrompt) -> FlatGraph {
    let mut nodes = IndexMap::new();
    for (id, node) in &prompt.nodes {
        let inputs = node
            .inputs
            .iter()
            .map(|(name, value)| {
                let input = match super::api::as_link(value) {
                    Some((origin, slot)) => FlatInput::Link {
                        origin: origin.to_string(),
                        slot,
                        hops: Vec::new(),
                    },
                    None => FlatInput::Value {
                        value: value.clone(),
                        source: ValueSource::Prompt,
                    },
                };
                (name.clone(), input)
            })
            .collect();
        nodes.insert(
            id.clone(),
            FlatNode::new(
                id,
                &node.class_type,
                node.title.clone(),
                inputs,
                format!("node \"{id}\""),
            ),
        );
    }
    FlatGraph {
        nodes,
        warnings: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_lists_connect() {
        assert!(types_connect("FLOAT,INT", "INT"));
        assert!(types_connect("*", "MODEL"));
        assert!(!types_connect("MODEL", "CLIP"));
    }
}
