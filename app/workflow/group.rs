//! Legacy group nodes (`extra.groupNodes`, node type `workflow>Name` or `workflow/Name`), read the
//! way ComfyUI's frontend (1.35) still does: each instance becomes a subgraph whose inner nodes
//! get execution ids `<group node id>:<index>`, whose inputs and outputs are the group's, and whose
//! inner widgets take the values stored on the instance.
//!
//! The group's inputs follow the frontend's GroupNodeConfig: per inner node in order, its widget
//! inputs, then its socket inputs not linked inside the group; widgets that have a socket
//! ("converted") come after all nodes. Names repeat-proof the frontend's way ("KSampler seed").

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::error::WorkflowError;
use super::node_defs::{NodeDef, NodeDefs, WidgetSlot};
use super::ui::{
    SUBGRAPH_INPUT_NODE, SUBGRAPH_OUTPUT_NODE, SubgraphDef, SubgraphSlot, UiGraph, UiLink, UiNode,
    UiWorkflow, WidgetValues, read_node,
};

/// The group name of a group-node type, for either separator.
pub fn group_name(node_type: &str) -> Option<&str> {
    node_type
        .strip_prefix("workflow>")
        .or_else(|| node_type.strip_prefix("workflow/"))
}

/// One subgraph definition per group-node instance in the workflow (the instance's widget values
/// are baked into its inner nodes), keyed by the instance's place in the file.
pub fn instance_defs(
    workflow: &UiWorkflow,
    defs: &NodeDefs,
) -> Result<HashMap<String, SubgraphDef>, WorkflowError> {
    let mut out = HashMap::new();
    let graphs =
        std::iter::once(&workflow.root).chain(workflow.subgraphs.values().map(|d| &d.graph));
    for graph in graphs {
        for node in &graph.nodes {
            let Some(name) = group_name(&node.node_type) else {
                continue;
            };
            let data = workflow.group_nodes.get(name).ok_or_else(|| {
                WorkflowError::bad_ui(
                    &node.place,
                    format!("group node '{name}' has no definition in extra.groupNodes"),
                )
            })?;
            let config = GroupConfig::read(name, data, defs)?;
            out.insert(node.place.clone(), config.instance(node));
        }
    }
    Ok(out)
}

/// Where one input or widget of the group goes inside it.
#[derive(Debug, Clone)]
struct GroupInput {
    name: String,
    slot_type: String,
    inner: usize,
    inner_input: String,
    is_widget: bool,
    /// Widgets the frontend adds after this one that also take a value (seed control, upload).
    extra_values: usize,
}

struct GroupConfig {
    name: String,
    nodes: Vec<UiNode>,
    node_defs: Vec<NodeDef>,
    /// (origin index, origin slot, target index, target slot)
    links: Vec<(usize, usize, usize, usize, String)>,
    inputs: Vec<GroupInput>,
    /// (inner index, output slot, type, name)
    outputs: Vec<(usize, usize, String, String)>,
}

impl GroupConfig {
    fn read(name: &str, data: &Value, defs: &NodeDefs) -> Result<GroupConfig, WorkflowError> {
        let base = format!("extra.groupNodes.{name}");
        let list = data
            .get("nodes")
            .and_then(Value::as_array)
            .ok_or_else(|| WorkflowError::bad_ui(&base, "group node definition has no nodes"))?;
        let mut nodes = Vec::with_capacity(list.len());
        let mut node_defs = Vec::with_capacity(list.len());
        for (i, value) in list.iter().enumerate() {
            let place = format!("{base}.nodes[{i}]");
            let mut node = read_node(value, &place)?;
            node.id = i.to_string();
            let def = defs.get(&node.node_type).ok_or_else(|| WorkflowError::UnknownNodeType {
                node: place.clone(),
                class_type: node.node_type.clone(),
                hint: format!(
                    "it is inside group node '{name}'; reroutes and primitives inside group nodes \
                     are not read, and other types need a server that has them"
                ),
            })?;
            nodes.push(node);
            node_defs.push(def.clone());
        }
        let index = |v: &Value| v.as_u64().and_then(|n| usize::try_from(n).ok());
        let mut links = Vec::new();
        for link in data
            .get("links")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(parts) = link.as_array() else {
                continue;
            };
            // A null origin was a link from outside the group when it was made.
            let (Some(from), Some(from_slot), Some(to), Some(to_slot)) = (
                parts.first().and_then(index),
                parts.get(1).and_then(index),
                parts.get(2).and_then(index),
                parts.get(3).and_then(index),
            ) else {
                continue;
            };
            if from >= nodes.len() || to >= nodes.len() {
                return Err(WorkflowError::bad_ui(
                    format!("{base}.links"),
                    format!("link {from}→{to} names a node the group does not have"),
                ));
            }
            let slot_type = parts
                .get(5)
                .and_then(Value::as_str)
                .unwrap_or("*")
                .to_string();
            links.push((from, from_slot, to, to_slot, slot_type));
        }
        let external: HashSet<(usize, usize)> = data
            .get("external")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|e| Some((e.get(0).and_then(index)?, e.get(1).and_then(index)?)))
            .collect();
        let mut config = GroupConfig {
            name: name.to_string(),
            nodes,
            node_defs,
            links,
            inputs: Vec::new(),
            outputs: Vec::new(),
        };
        config.build_inputs();
        config.build_outputs(&external);
        Ok(config)
    }

    fn linked_inside(&self, inner: usize, input: &str) -> bool {
        self.links.iter().any(|(_, _, to, to_slot, _)| {
            *to == inner
                && self
                    .nodes
                    .get(inner)
                    .and_then(|n| n.inputs.get(*to_slot))
                    .is_some_and(|i| i.name == input)
        })
    }

    fn build_inputs(&mut self) {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut converted: Vec<Pending> = Vec::new();
        let mut inputs = Vec::new();
        for (i, (node, def)) in self.nodes.iter().zip(&self.node_defs).enumerate() {
            let mut sockets = Vec::new();
            for input in &def.inputs {
                let has_socket = node
                    .inputs
                    .iter()
                    .any(|s| s.name == input.name && s.widget_name.as_deref() == Some(&input.name));
                if input.is_widget() && !has_socket {
                    let entry = self.group_input(node, i, input, &mut seen);
                    inputs.push(entry);
                } else if input.is_widget() {
                    if !self.linked_inside(i, &input.name) {
                        converted.push(Pending {
                            inner: i,
                            inner_input: input.name.clone(),
                        });
                    }
                } else {
                    sockets.push(input.clone());
                }
            }
            for input in sockets {
                if !self.linked_inside(i, &input.name) {
                    let entry = self.group_input(node, i, &input, &mut seen);
                    inputs.push(entry);
                }
            }
        }
        // Widgets with sockets are named after every node's own inputs, as the frontend does.
        for pending in converted {
            let (Some(node), Some(def)) = (
                self.nodes.get(pending.inner),
                self.node_defs.get(pending.inner),
            ) else {
                continue;
            };
            if let Some(input) = def.input(&pending.inner_input) {
                let entry = self.group_input(node, pending.inner, input, &mut seen);
                inputs.push(entry);
            }
        }
        self.inputs = inputs;
    }

    fn group_input(
        &self,
        node: &UiNode,
        inner: usize,
        input: &super::node_defs::InputDef,
        seen: &mut HashMap<String, usize>,
    ) -> GroupInput {
        let label = node
            .inputs
            .iter()
            .find(|s| s.name == input.name)
            .and_then(|s| s.label.clone())
            .unwrap_or_else(|| input.name.clone());
        let mut name = label.clone();
        let mut key = label;
        if seen.contains_key(&name) {
            let prefix = format!("{} ", node.title.as_deref().unwrap_or(&node.node_type));
            key = format!("{prefix}{}", input.name);
            name = key.clone();
            if let Some(count) = seen.get(&name) {
                name = format!("{prefix}{count} {}", input.name);
            }
        }
        *seen.entry(key).or_insert(1) += 1;
        GroupInput {
            name,
            slot_type: input.type_name().to_string(),
            inner,
            inner_input: input.name.clone(),
            is_widget: input.is_widget(),
            extra_values: usize::from(input.control_after_generate)
                + usize::from(input.upload_widget),
        }
    }

    fn build_outputs(&mut self, external: &HashSet<(usize, usize)>) {
        let mut seen = HashSet::new();
        for (i, (node, def)) in self.nodes.iter().zip(&self.node_defs).enumerate() {
            for (slot, slot_type) in def.output_types.iter().enumerate() {
                let linked = self
                    .links
                    .iter()
                    .any(|(from, from_slot, ..)| *from == i && *from_slot == slot);
                if linked && !external.contains(&(i, slot)) {
                    continue;
                }
                let label = def
                    .output_names
                    .get(slot)
                    .cloned()
                    .unwrap_or_else(|| slot_type.clone());
                let mut name = label.clone();
                if seen.contains(&name) {
                    let prefix = format!("{} ", node.title.as_deref().unwrap_or(&node.node_type));
                    name = format!("{prefix}{label}");
                    if seen.contains(&name) {
                        name = format!("{prefix}{i} {label}");
                    }
                }
                seen.insert(name.clone());
                self.outputs.push((i, slot, slot_type.clone(), name));
            }
        }
    }

    /// The subgraph one instance stands for: inner widgets set from the instance's values.
    fn instance(&self, instance: &UiNode) -> SubgraphDef {
        let mut nodes = self.nodes.clone();
        let values: Vec<Value> = match &instance.widgets_values {
            WidgetValues::List(list) => list.clone(),
            WidgetValues::Named(map) => map.values().cloned().collect(),
        };
        let mut cursor = 0;
        for input in self.inputs.iter().filter(|i| i.is_widget) {
            let value = values.get(cursor).cloned();
            cursor += 1 + input.extra_values;
            let (Some(value), Some(node), Some(def)) = (
                value,
                nodes.get_mut(input.inner),
                self.node_defs.get(input.inner),
            ) else {
                continue;
            };
            set_widget(node, def, &input.inner_input, value);
        }
        let mut links = Vec::new();
        let mut next_id = 1i64;
        let mut add_link = |links: &mut Vec<UiLink>,
                            origin: String,
                            origin_slot,
                            target: String,
                            target_slot,
                            slot_type: String| {
            links.push(UiLink {
                id: next_id,
                origin_id: origin,
                origin_slot,
                target_id: target,
                target_slot,
                slot_type,
            });
            next_id += 1;
            next_id - 1
        };
        for (from, from_slot, to, to_slot, slot_type) in &self.links {
            let id = add_link(
                &mut links,
                from.to_string(),
                *from_slot,
                to.to_string(),
                *to_slot,
                slot_type.clone(),
            );
            if let Some(input) = nodes.get_mut(*to).and_then(|n| n.inputs.get_mut(*to_slot)) {
                input.link = Some(id);
            }
        }
        let mut inputs = Vec::new();
        for (k, input) in self.inputs.iter().enumerate() {
            let linked_outside = instance
                .input_named(&input.name)
                .is_some_and(|(_, i)| i.link.is_some());
            let mut link_ids = Vec::new();
            // An unlinked widget keeps the value set above; a linked one comes from outside.
            if linked_outside {
                let slot = nodes
                    .get(input.inner)
                    .and_then(|n| n.input_named(&input.inner_input).map(|(slot, _)| slot));
                if let Some(slot) = slot {
                    let id = add_link(
                        &mut links,
                        SUBGRAPH_INPUT_NODE.into(),
                        k,
                        input.inner.to_string(),
                        slot,
                        input.slot_type.clone(),
                    );
                    if let Some(target) = nodes
                        .get_mut(input.inner)
                        .and_then(|n| n.inputs.get_mut(slot))
                    {
                        target.link = Some(id);
                    }
                    link_ids.push(id);
                }
            }
            inputs.push(SubgraphSlot {
                name: input.name.clone(),
                slot_type: input.slot_type.clone(),
                link_ids,
                label: None,
            });
        }
        let mut outputs = Vec::new();
        for (k, (inner, slot, slot_type, name)) in self.outputs.iter().enumerate() {
            let id = add_link(
                &mut links,
                inner.to_string(),
                *slot,
                SUBGRAPH_OUTPUT_NODE.into(),
                k,
                slot_type.clone(),
            );
            outputs.push(SubgraphSlot {
                name: name.clone(),
                slot_type: slot_type.clone(),
                link_ids: vec![id],
                label: None,
            });
        }
        SubgraphDef {
            id: instance.node_type.clone(),
            name: self.name.clone(),
            graph: UiGraph::new(nodes, links),
            inputs,
            outputs,
        }
    }
}

/// Puts `value` into the inner node's widget named `input`, at its place in `widgets_values`.
fn set_widget(node: &mut UiNode, def: &NodeDef, input: &str, value: Value) {
    let Some(position) = def.widget_slots().iter().position(|slot| {
        matches!(slot, WidgetSlot::Input(k) if def.inputs.get(*k).is_some_and(|i| i.name == input))
    }) else {
        return;
    };
    match &mut node.widgets_values {
        WidgetValues::List(list) => {
            // Values the definition node did not store take their defaults, as a fresh widget does.
            let slots = def.widget_slots();
            while list.len() <= position {
                let default = match slots.get(list.len()) {
                    Some(WidgetSlot::Input(k)) => {
                        def.inputs.get(*k).and_then(|i| i.default.clone())
                    }
                    _ => None,
                };
                list.push(default.unwrap_or(Value::Null));
            }
            if let Some(slot) = list.get_mut(position) {
                *slot = value;
            }
        }
        WidgetValues::Named(map) => {
            map.insert(input.to_string(), value);
        }
    }
}

/// A converted widget waiting to be named after all nodes' own inputs.
struct Pending {
    inner: usize,
    inner_input: String,
}
