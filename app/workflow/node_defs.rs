//! Node definitions: what `/object_info` says about each node class — input order, which inputs
//! are widgets, defaults, seed-control widgets, output types. The converter needs them to give
//! positional widget values their names.
//!
//! One reader serves both sources: a live server's `/object_info`, and the snapshot bundled in
//! `assets/node_defs.json` (same shape, wrapped with the versions it came from).

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::{Map, Value};

use super::error::WorkflowError;

/// What kind of value an input takes.
#[derive(Debug, Clone, PartialEq)]
pub enum InputKind {
    /// Shown as a widget; the frontend stores its value in `widgets_values`.
    Widget(WidgetKind),
    /// A socket only: the value arrives by link.
    Socket(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum WidgetKind {
    Int,
    Float,
    String,
    Boolean,
    Combo(Vec<Value>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct InputDef {
    pub name: String,
    pub kind: InputKind,
    pub required: bool,
    pub default: Option<Value>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub step: Option<f64>,
    /// The frontend adds a "control after generate" widget right after this one.
    pub control_after_generate: bool,
    /// A STRING whose `{a|b}` choices and comments the frontend resolves before sending.
    pub dynamic_prompts: bool,
    /// The frontend adds an upload button widget after this one (not sent to the server).
    pub upload_widget: bool,
}

impl InputDef {
    pub fn is_widget(&self) -> bool {
        matches!(self.kind, InputKind::Widget(_))
    }

    /// The type name a socket for this input carries ("INT", "MODEL", "COMBO").
    pub fn type_name(&self) -> &str {
        match &self.kind {
            InputKind::Socket(t) => t,
            InputKind::Widget(WidgetKind::Int) => "INT",
            InputKind::Widget(WidgetKind::Float) => "FLOAT",
            InputKind::Widget(WidgetKind::String) => "STRING",
            InputKind::Widget(WidgetKind::Boolean) => "BOOLEAN",
            InputKind::Widget(WidgetKind::Combo(_)) => "COMBO",
        }
    }
}

/// One widget slot on a node as the frontend builds it, in `widgets_values` order.
#[derive(Debug, Clone, PartialEq)]
pub enum WidgetSlot {
    /// The widget of the input with this index in [`NodeDef::inputs`].
    Input(usize),
    /// A frontend-only widget (seed control, upload button): it has a value in
    /// `widgets_values` but is never sent.
    Unsent,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodeDef {
    pub class_type: String,
    /// Required inputs, then optional ones, each in `input_order`.
    pub inputs: Vec<InputDef>,
    pub output_types: Vec<String>,
    pub output_names: Vec<String>,
    pub is_output_node: bool,
    pub category: String,
}

impl NodeDef {
    /// The widgets the frontend creates for this node, in the order of `widgets_values`.
    pub fn widget_slots(&self) -> Vec<WidgetSlot> {
        let mut slots = Vec::new();
        for (i, input) in self.inputs.iter().enumerate() {
            if !input.is_widget() {
                continue;
            }
            slots.push(WidgetSlot::Input(i));
            if input.control_after_generate || input.upload_widget {
                slots.push(WidgetSlot::Unsent);
            }
        }
        slots
    }

    pub fn input(&self, name: &str) -> Option<&InputDef> {
        self.inputs.iter().find(|i| i.name == name)
    }
}

/// A set of node definitions, by class type.
#[derive(Debug, Clone, Default)]
pub struct NodeDefs {
    classes: HashMap<String, NodeDef>,
    /// Where they came from, for messages ("bundled ComfyUI 0.8.0 snapshot", a server URL).
    pub source: String,
}

const BUNDLED_NODE_DEFS: &str = include_str!("../../assets/node_defs.json");

impl NodeDefs {
    /// The snapshot shipped with the app, for when no server is connected, plus wan-pilot's own
    /// nodes.
    pub fn bundled() -> &'static NodeDefs {
        static DEFS: OnceLock<NodeDefs> = OnceLock::new();
        DEFS.get_or_init(|| {
            // The snapshot is checked by a test, so a failure here means a broken build; an
            // empty set then makes every conversion report unknown node types instead of panicking.
            let mut defs = serde_json::from_str::<Value>(BUNDLED_NODE_DEFS)
                .ok()
                .and_then(|v| NodeDefs::from_object_info(&v, "bundled node definitions").ok())
                .unwrap_or_default();
            // wan-pilot's own nodes: every server it starts has them, and the snapshot does not.
            for (class, def) in &super::edit::own_node_defs().classes {
                defs.classes
                    .entry(class.clone())
                    .or_insert_with(|| def.clone());
            }
            defs
        })
    }

    pub fn get(&self, class_type: &str) -> Option<&NodeDef> {
        self.classes.get(class_type)
    }

    pub fn len(&self) -> usize {
        self.classes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }

    /// Reads `/object_info` (the whole map), or the bundled wrapper `{"nodes": map, ...}`.
    pub fn from_object_info(value: &Value, source: &str) -> Result<NodeDefs, WorkflowError> {
        let map = value
            .get("nodes")
            .and_then(Value::as_object)
            .or_else(|| value.as_object())
            .ok_or_else(|| {
                WorkflowError::NotAWorkflow("node definitions must be a JSON object".into())
            })?;
        let mut classes = HashMap::with_capacity(map.len());
        for (class_type, def) in map {
            if let Some(def) = read_def(class_type, def) {
                classes.insert(class_type.clone(), def);
            }
        }
        Ok(NodeDefs {
            classes,
            source: source.to_string(),
        })
    }
}

fn read_def(class_type: &str, def: &Value) -> Option<NodeDef> {
    let def = def.as_object()?;
    let input = def.get("input").and_then(Value::as_object);
    let order = def.get("input_order").and_then(Value::as_object);
    let mut inputs = Vec::new();
    for (section, required) in [("required", true), ("optional", false)] {
        let Some(specs) = input
            .and_then(|i| i.get(section))
            .and_then(Value::as_object)
        else {
            continue;
        };
        // input_order is authoritative where present; object key order is the fallback.
        let names: Vec<&str> = match order.and_then(|o| o.get(section)).and_then(Value::as_array) {
            Some(list) => list.iter().filter_map(Value::as_str).collect(),
            None => specs.keys().map(String::as_str).collect(),
        };
        for name in names {
            if let Some(spec) = specs.get(name) {
                inputs.push(read_input(name, spec, required));
            }
        }
    }
    let strings = |key: &str| -> Vec<String> {
        def.get(key)
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .map(|v| match v {
                        Value::String(s) => s.clone(),
                        // A combo output is written as the list of its options.
                        Value::Array(_) => "COMBO".to_string(),
                        other => other.to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    Some(NodeDef {
        class_type: class_type.to_string(),
        inputs,
        output_types: strings("output"),
        output_names: strings("output_name"),
        is_output_node: def
            .get("output_node")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        category: def
            .get("category")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    })
}

fn read_input(name: &str, spec: &Value, required: bool) -> InputDef {
    let empty = Map::new();
    let (type_value, options) = match spec {
        Value::Array(parts) => (
            parts.first().cloned().unwrap_or(Value::Null),
            parts.get(1).and_then(Value::as_object).unwrap_or(&empty),
        ),
        other => (other.clone(), &empty),
    };
    let flag = |key: &str| options.get(key).and_then(Value::as_bool).unwrap_or(false);
    let number = |key: &str| options.get(key).and_then(Value::as_f64);
    let force_input = flag("forceInput");
    let widget = match &type_value {
        Value::Array(choices) => Some(WidgetKind::Combo(choices.clone())),
        Value::String(t) => match t.as_str() {
            "INT" => Some(WidgetKind::Int),
            "FLOAT" => Some(WidgetKind::Float),
            "STRING" => Some(WidgetKind::String),
            "BOOLEAN" => Some(WidgetKind::Boolean),
            "COMBO" => Some(WidgetKind::Combo(
                options
                    .get("options")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            )),
            _ => None,
        },
        _ => None,
    };
    let kind = match widget {
        Some(w) if !force_input => InputKind::Widget(w),
        Some(w) => InputKind::Socket(
            InputDef {
                name: String::new(),
                kind: InputKind::Widget(w),
                required,
                default: None,
                min: None,
                max: None,
                step: None,
                control_after_generate: false,
                dynamic_prompts: false,
                upload_widget: false,
            }
            .type_name()
            .to_string(),
        ),
        None => InputKind::Socket(match &type_value {
            Value::String(t) => t.clone(),
            _ => "*".to_string(),
        }),
    };
    // The frontend adds a seed-control widget when the flag says so, or, with no flag, to
    // INT inputs named like a seed (useIntWidget).
    let is_int_or_combo = matches!(
        kind,
        InputKind::Widget(WidgetKind::Int) | InputKind::Widget(WidgetKind::Combo(_))
    );
    let control_after_generate = is_int_or_combo
        && match options.get("control_after_generate") {
            Some(Value::Bool(b)) => *b,
            Some(Value::Null) | None => {
                matches!(kind, InputKind::Widget(WidgetKind::Int))
                    && (name == "seed" || name == "noise_seed")
            }
            Some(_) => true,
        };
    let upload_widget = matches!(kind, InputKind::Widget(WidgetKind::Combo(_)))
        && [
            "image_upload",
            "video_upload",
            "audio_upload",
            "animated_image_upload",
        ]
        .iter()
        .any(|k| flag(k));
    InputDef {
        name: name.to_string(),
        kind,
        required,
        default: options.get("default").cloned(),
        min: number("min"),
        max: number("max"),
        step: number("step"),
        control_after_generate,
        dynamic_prompts: flag("dynamicPrompts"),
        upload_widget,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seed_inputs_get_a_control_widget() {
        let info = json!({
            "KSamplerAdvanced": {
                "input": {"required": {
                    "model": ["MODEL"],
                    "add_noise": [["enable", "disable"]],
                    "noise_seed": ["INT", {"default": 0}],
                    "steps": ["INT", {"default": 20}],
                    "latent_image": ["LATENT"]
                }},
                "input_order": {"required": ["model", "add_noise", "noise_seed", "steps", "latent_image"]},
                "output": ["LATENT"], "output_name": ["LATENT"]
            }
        });
        let defs = NodeDefs::from_object_info(&info, "test").unwrap();
        let def = defs.get("KSamplerAdvanced").unwrap();
        assert_eq!(
            def.widget_slots(),
            vec![
                WidgetSlot::Input(1),
                WidgetSlot::Input(2),
                WidgetSlot::Unsent,
                WidgetSlot::Input(3)
            ]
        );
    }

    #[test]
    fn force_input_makes_a_socket() {
        let info = json!({"X": {"input": {"required": {"n": ["INT", {"forceInput": true}]}}}});
        let defs = NodeDefs::from_object_info(&info, "test").unwrap();
        assert_eq!(
            defs.get("X").unwrap().inputs[0].kind,
            InputKind::Socket("INT".into())
        );
        assert!(defs.get("X").unwrap().widget_slots().is_empty());
    }
}
