//! The UI ("workflow") format the ComfyUI web frontend saves: nodes with positional widget
//! values, links between slots, and subgraph definitions. Schema 0.4 (links as arrays) and 1
//! (links as objects) read into the same [`UiWorkflow`].

use std::collections::HashMap;

use indexmap::IndexMap;
use serde_json::{Map, Value};

use super::error::WorkflowError;

/// Node id inside one graph, as text ("12"; ids are numbers in files but strings in the API).
pub type NodeId = String;

/// Subgraphs inside subgraphs deeper than this are refused (real workflows use two or three).
pub const MAX_SUBGRAPH_DEPTH: usize = 16;

/// The frontend's node modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeMode {
    Always,
    OnEvent,
    /// Muted: not run, its outputs cut.
    Never,
    OnTrigger,
    /// Bypassed: not run, its inputs passed through to its outputs.
    Bypass,
}

impl NodeMode {
    fn from_number(n: i64) -> Self {
        match n {
            1 => NodeMode::OnEvent,
            2 => NodeMode::Never,
            3 => NodeMode::OnTrigger,
            4 => NodeMode::Bypass,
            _ => NodeMode::Always,
        }
    }

    /// Whether the node runs when the graph is queued.
    pub fn is_active(self) -> bool {
        !matches!(self, NodeMode::Never | NodeMode::Bypass)
    }

    pub fn describe(self) -> &'static str {
        match self {
            NodeMode::Never => "muted",
            NodeMode::Bypass => "bypassed",
            _ => "active",
        }
    }
}

/// Widget values as saved: positional (the usual), or keyed by widget name (VideoHelperSuite).
#[derive(Debug, Clone, PartialEq)]
pub enum WidgetValues {
    List(Vec<Value>),
    Named(IndexMap<String, Value>),
}

impl WidgetValues {
    pub fn get(&self, index: usize) -> Option<&Value> {
        match self {
            WidgetValues::List(list) => list.get(index),
            WidgetValues::Named(map) => map.get_index(index).map(|(_, v)| v),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            WidgetValues::List(list) => list.len(),
            WidgetValues::Named(map) => map.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UiInput {
    pub name: String,
    pub slot_type: String,
    pub link: Option<i64>,
    /// Set when this socket stands for a widget (a "converted" widget input).
    pub widget_name: Option<String>,
    pub label: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UiOutput {
    pub name: String,
    pub slot_type: String,
    pub links: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UiNode {
    pub id: NodeId,
    /// The class type, a subgraph definition id, or a frontend-only type.
    pub node_type: String,
    pub mode: NodeMode,
    pub title: Option<String>,
    pub inputs: Vec<UiInput>,
    pub outputs: Vec<UiOutput>,
    pub widgets_values: WidgetValues,
    pub properties: Map<String, Value>,
    /// Where the node sits in the file, for messages: `nodes[3]` or `definitions.subgraphs[0].nodes[5]`.
    pub place: String,
}

impl UiNode {
    /// The input whose socket receives `link`.
    pub fn input_with_link(&self, link: i64) -> Option<(usize, &UiInput)> {
        self.inputs
            .iter()
            .enumerate()
            .find(|(_, input)| input.link == Some(link))
    }

    pub fn input_named(&self, name: &str) -> Option<(usize, &UiInput)> {
        self.inputs
            .iter()
            .enumerate()
            .find(|(_, input)| input.name == name)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UiLink {
    pub id: i64,
    pub origin_id: NodeId,
    pub origin_slot: usize,
    pub target_id: NodeId,
    pub target_slot: usize,
    pub slot_type: String,
}

/// One graph: the root, or the inside of a subgraph definition.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UiGraph {
    pub nodes: Vec<UiNode>,
    pub links: HashMap<i64, UiLink>,
    index: HashMap<NodeId, usize>,
}

impl UiGraph {
    /// A graph of these nodes and links (node ids must be unique; a later duplicate is dropped).
    pub fn new(nodes: Vec<UiNode>, links: Vec<UiLink>) -> UiGraph {
        let mut graph = UiGraph::default();
        for node in nodes {
            if graph.index.contains_key(&node.id) {
                continue;
            }
            graph.index.insert(node.id.clone(), graph.nodes.len());
            graph.nodes.push(node);
        }
        graph.links = links.into_iter().map(|l| (l.id, l)).collect();
        graph
    }

    pub fn node(&self, id: &str) -> Option<&UiNode> {
        self.index.get(id).and_then(|&i| self.nodes.get(i))
    }

    pub fn link(&self, id: i64) -> Option<&UiLink> {
        self.links.get(&id)
    }
}

/// A subgraph's input or output slot.
#[derive(Debug, Clone, PartialEq)]
pub struct SubgraphSlot {
    pub name: String,
    pub slot_type: String,
    pub link_ids: Vec<i64>,
    pub label: Option<String>,
}

/// A subgraph definition (`definitions.subgraphs[i]`); instances are nodes whose type is its id.
#[derive(Debug, Clone, PartialEq)]
pub struct SubgraphDef {
    pub id: String,
    pub name: String,
    pub graph: UiGraph,
    pub inputs: Vec<SubgraphSlot>,
    pub outputs: Vec<SubgraphSlot>,
}

/// Ids of the pseudo-nodes that stand for a subgraph's inputs and outputs in its links.
pub const SUBGRAPH_INPUT_NODE: &str = "-10";
pub const SUBGRAPH_OUTPUT_NODE: &str = "-20";

/// A whole UI workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct UiWorkflow {
    pub root: UiGraph,
    pub subgraphs: HashMap<String, SubgraphDef>,
    /// `version` as written (0.4 or 1).
    pub schema_version: f64,
    /// Legacy group nodes (`extra.groupNodes`): name → definition, expanded by the converter.
    pub group_nodes: Map<String, Value>,
}

impl UiWorkflow {
    /// `Ok(None)` when the JSON has no `nodes` list (so it is not a UI workflow at all).
    pub fn from_json(value: &Value) -> Result<Option<UiWorkflow>, WorkflowError> {
        let Some(map) = value.as_object() else {
            return Ok(None);
        };
        if !map.contains_key("nodes") {
            return Ok(None);
        }
        let root = read_graph(map, "")?;
        let mut subgraphs = HashMap::new();
        collect_subgraphs(map, "", 0, &mut subgraphs)?;
        let schema_version = map.get("version").and_then(Value::as_f64).unwrap_or(0.4);
        let group_nodes = map
            .get("extra")
            .and_then(|e| e.get("groupNodes"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        Ok(Some(UiWorkflow {
            root,
            subgraphs,
            schema_version,
            group_nodes,
        }))
    }

    pub fn subgraph(&self, node_type: &str) -> Option<&SubgraphDef> {
        self.subgraphs.get(node_type)
    }
}

fn collect_subgraphs(
    map: &Map<String, Value>,
    base: &str,
    depth: usize,
    out: &mut HashMap<String, SubgraphDef>,
) -> Result<(), WorkflowError> {
    let Some(list) = map
        .get("definitions")
        .and_then(|d| d.get("subgraphs"))
        .and_then(Value::as_array)
    else {
        return Ok(());
    };
    if depth > MAX_SUBGRAPH_DEPTH {
        return Err(WorkflowError::TooDeep {
            what: "subgraph definitions".into(),
            limit: MAX_SUBGRAPH_DEPTH,
        });
    }
    for (i, def) in list.iter().enumerate() {
        let place = format!("{base}definitions.subgraphs[{i}]");
        let def_map = def.as_object().ok_or_else(|| {
            WorkflowError::bad_ui(&place, "a subgraph definition must be an object")
        })?;
        let id = def_map
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| WorkflowError::bad_ui(&place, "subgraph definition has no \"id\""))?;
        let name = def_map
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(id)
            .to_string();
        let graph = read_graph(def_map, &format!("{place}."))?;
        let inputs = read_subgraph_slots(def_map.get("inputs"), &format!("{place}.inputs"))?;
        let outputs = read_subgraph_slots(def_map.get("outputs"), &format!("{place}.outputs"))?;
        out.insert(
            id.to_string(),
            SubgraphDef {
                id: id.to_string(),
                name,
                graph,
                inputs,
                outputs,
            },
        );
        collect_subgraphs(def_map, &format!("{place}."), depth + 1, out)?;
    }
    Ok(())
}

fn read_subgraph_slots(
    value: Option<&Value>,
    place: &str,
) -> Result<Vec<SubgraphSlot>, WorkflowError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let list = value
        .as_array()
        .ok_or_else(|| WorkflowError::bad_ui(place, "must be a list"))?;
    let mut slots = Vec::with_capacity(list.len());
    for (i, slot) in list.iter().enumerate() {
        let name = slot.get("name").and_then(Value::as_str).ok_or_else(|| {
            WorkflowError::bad_ui(format!("{place}[{i}]"), "slot has no \"name\"")
        })?;
        slots.push(SubgraphSlot {
            name: name.to_string(),
            slot_type: type_text(slot.get("type")),
            link_ids: slot
                .get("linkIds")
                .and_then(Value::as_array)
                .map(|ids| ids.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default(),
            label: slot
                .get("label")
                .and_then(Value::as_str)
                .map(str::to_string),
        });
    }
    Ok(slots)
}

/// Node ids are numbers in files (sometimes strings); both become the same text.
pub fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::Number(n) => n.as_i64().map(|i| i.to_string()).or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0)
                .map(|f| format!("{}", f as i64))
        }),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// Slot types are usually text; some files write `0` or `-1` for "any".
fn type_text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        _ => "*".to_string(),
    }
}

fn slot_number(value: Option<&Value>) -> Option<usize> {
    let v = value?;
    v.as_u64()
        .or_else(|| {
            v.as_f64()
                .filter(|f| *f >= 0.0 && f.fract() == 0.0)
                .map(|f| f as u64)
        })
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .and_then(|n| usize::try_from(n).ok())
}

fn read_graph(map: &Map<String, Value>, base: &str) -> Result<UiGraph, WorkflowError> {
    let nodes_value = map.get("nodes").unwrap_or(&Value::Null);
    let list = nodes_value
        .as_array()
        .ok_or_else(|| WorkflowError::bad_ui(format!("{base}nodes"), "must be a list of nodes"))?;
    let mut graph = UiGraph::default();
    for (i, node) in list.iter().enumerate() {
        let place = format!("{base}nodes[{i}]");
        let node = read_node(node, &place)?;
        if graph.index.contains_key(&node.id) {
            return Err(WorkflowError::bad_ui(
                &place,
                format!("node id {} appears twice", node.id),
            ));
        }
        graph.index.insert(node.id.clone(), graph.nodes.len());
        graph.nodes.push(node);
    }
    if let Some(links) = map.get("links") {
        let links = links
            .as_array()
            .ok_or_else(|| WorkflowError::bad_ui(format!("{base}links"), "must be a list"))?;
        for (i, link) in links.iter().enumerate() {
            let place = format!("{base}links[{i}]");
            if link.is_null() {
                continue;
            }
            let link = read_link(link, &place)?;
            graph.links.insert(link.id, link);
        }
    }
    Ok(graph)
}

fn read_link(value: &Value, place: &str) -> Result<UiLink, WorkflowError> {
    let broken = |what: &str| WorkflowError::bad_ui(place, what.to_string());
    match value {
        Value::Array(a) => {
            if a.len() < 5 {
                return Err(broken(
                    "a link needs [id, origin, origin_slot, target, target_slot, type]",
                ));
            }
            Ok(UiLink {
                id: a[0]
                    .as_i64()
                    .ok_or_else(|| broken("link id is not a number"))?,
                origin_id: id_text(&a[1]).ok_or_else(|| broken("link origin is not a node id"))?,
                origin_slot: slot_number(a.get(2))
                    .ok_or_else(|| broken("link origin slot is not a number"))?,
                target_id: id_text(&a[3]).ok_or_else(|| broken("link target is not a node id"))?,
                target_slot: slot_number(a.get(4))
                    .ok_or_else(|| broken("link target slot is not a number"))?,
                slot_type: type_text(a.get(5)),
            })
        }
        Value::Object(o) => Ok(UiLink {
            id: o
                .get("id")
                .and_then(Value::as_i64)
                .ok_or_else(|| broken("link id is not a number"))?,
            origin_id: o
                .get("origin_id")
                .and_then(id_text)
                .ok_or_else(|| broken("link origin_id is not a node id"))?,
            origin_slot: slot_number(o.get("origin_slot"))
                .ok_or_else(|| broken("link origin_slot is not a number"))?,
            target_id: o
                .get("target_id")
                .and_then(id_text)
                .ok_or_else(|| broken("link target_id is not a node id"))?,
            target_slot: slot_number(o.get("target_slot"))
                .ok_or_else(|| broken("link target_slot is not a number"))?,
            slot_type: type_text(o.get("type")),
        }),
        _ => Err(broken("a link must be a list or an object")),
    }
}

pub(crate) fn read_node(value: &Value, place: &str) -> Result<UiNode, WorkflowError> {
    let obj = value
        .as_object()
        .ok_or_else(|| WorkflowError::bad_ui(place, "a node must be a JSON object"))?;
    let id = obj
        .get("id")
        .and_then(id_text)
        .ok_or_else(|| WorkflowError::bad_ui(place, "node has no \"id\""))?;
    let node_type = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| WorkflowError::bad_ui(place, format!("node {id} has no \"type\"")))?
        .to_string();
    let mode = NodeMode::from_number(obj.get("mode").and_then(Value::as_i64).unwrap_or(0));
    let title = obj.get("title").and_then(Value::as_str).map(str::to_string);
    let mut inputs = Vec::new();
    if let Some(list) = obj.get("inputs").and_then(Value::as_array) {
        for (i, input) in list.iter().enumerate() {
            let name = input.get("name").and_then(Value::as_str).ok_or_else(|| {
                WorkflowError::bad_ui(format!("{place}.inputs[{i}]"), "input has no \"name\"")
            })?;
            inputs.push(UiInput {
                name: name.to_string(),
                slot_type: type_text(input.get("type")),
                link: input.get("link").and_then(Value::as_i64),
                widget_name: input
                    .get("widget")
                    .and_then(|w| w.get("name"))
                    .and_then(Value::as_str)
                    .map(str::to_string),
                label: input
                    .get("label")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            });
        }
    }
    let mut outputs = Vec::new();
    if let Some(list) = obj.get("outputs").and_then(Value::as_array) {
        for output in list {
            outputs.push(UiOutput {
                name: output
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                slot_type: type_text(output.get("type")),
                links: output
                    .get("links")
                    .and_then(Value::as_array)
                    .map(|l| l.iter().filter_map(Value::as_i64).collect())
                    .unwrap_or_default(),
            });
        }
    }
    let widgets_values = match obj.get("widgets_values") {
        Some(Value::Array(list)) => WidgetValues::List(list.clone()),
        Some(Value::Object(map)) => {
            WidgetValues::Named(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        }
        _ => WidgetValues::List(Vec::new()),
    };
    let properties = obj
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    Ok(UiNode {
        id,
        node_type,
        mode,
        title,
        inputs,
        outputs,
        widgets_values,
        properties,
        place: place.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_both_link_forms() {
        let v = json!({
            "nodes": [
                {"id": 1, "type": "A", "mode": 4, "outputs": [{"name": "X", "type": "X", "links": [7]}]},
                {"id": 2, "type": "B", "inputs": [{"name": "x", "type": "X", "link": 7}]}
            ],
            "links": [[7, 1, 0, 2, 0, "X"]]
        });
        let wf = UiWorkflow::from_json(&v).unwrap().unwrap();
        assert_eq!(wf.root.link(7).unwrap().target_id, "2");
        assert_eq!(wf.root.node("1").unwrap().mode, NodeMode::Bypass);
        let v = json!({
            "version": 1,
            "nodes": [{"id": 1, "type": "A"}, {"id": 2, "type": "B"}],
            "links": [{"id": 7, "origin_id": 1, "origin_slot": 0, "target_id": 2, "target_slot": 0, "type": "X"}]
        });
        let wf = UiWorkflow::from_json(&v).unwrap().unwrap();
        assert_eq!(wf.root.link(7).unwrap().origin_id, "1");
    }

    #[test]
    fn broken_nodes_name_their_place() {
        let v = json!({"nodes": [{"id": 1, "type": "A"}, {"type": "B"}], "links": []});
        let err = UiWorkflow::from_json(&v).unwrap_err();
        assert!(err.to_string().contains("nodes[1]"), "{err}");
    }
}
