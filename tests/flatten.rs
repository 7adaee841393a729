//! The frontend's link resolution on small hand-made graphs, one rule each: subgraphs (nested,
//! inputs linked from outside, promoted widgets in the three stored forms), bypassed nodes,
//! reroutes, legacy PrimitiveNode, KJNodes Set/Get, muted nodes.

use serde_json::{Value, json};
use wan_pilot::workflow::api::ApiPrompt;
use wan_pilot::workflow::convert::{ConvertOptions, ui_to_api};
use wan_pilot::workflow::node_defs::NodeDefs;
use wan_pilot::workflow::ui::UiWorkflow;

fn convert(workflow: Value) -> ApiPrompt {
    let ui = UiWorkflow::from_json(&workflow).unwrap().unwrap();
    ui_to_api(&ui, NodeDefs::bundled(), &ConvertOptions::default()).unwrap()
}

fn latent_node(id: i64, width_link: Option<i64>, widgets: [i64; 4]) -> Value {
    json!({"id": id, "type": "EmptyHunyuanLatentVideo", "mode": 0,
        "inputs": [{"name": "width", "type": "INT", "widget": {"name": "width"}, "link": width_link}],
        "outputs": [{"name": "LATENT", "type": "LATENT", "links": [21]}],
        "widgets_values": widgets})
}

fn save_latent(id: i64, link: i64) -> Value {
    json!({"id": id, "type": "SaveLatent", "mode": 0,
        "inputs": [{"name": "samples", "type": "LATENT", "link": link}],
        "widgets_values": ["latents/x"]})
}

/// A subgraph whose inner latent node (id 10) takes `width` from subgraph input 0 and whose
/// output 0 is that latent.
fn latent_subgraph(id: &str, inner: Value) -> Value {
    json!({"id": id, "name": "Latent maker", "version": 1,
    "inputs": [{"id": "i0", "name": "width", "type": "INT", "linkIds": [20]}],
    "outputs": [{"id": "o0", "name": "LATENT", "type": "LATENT", "linkIds": [21]}],
    "nodes": [inner],
    "links": [
        {"id": 20, "origin_id": -10, "origin_slot": 0, "target_id": 10, "target_slot": 0, "type": "INT"},
        {"id": 21, "origin_id": 10, "origin_slot": 0, "target_id": -20, "target_slot": 0, "type": "LATENT"}
    ]})
}

fn with_instance(instance: Value, extra_nodes: Vec<Value>, extra_links: Vec<Value>) -> Value {
    let mut nodes = vec![instance, save_latent(6, 1)];
    nodes.extend(extra_nodes);
    let mut links = vec![json!([1, 5, 0, 6, 0, "LATENT"])];
    links.extend(extra_links);
    json!({"version": 0.4, "nodes": nodes, "links": links,
        "definitions": {"subgraphs": [latent_subgraph("sg-1", latent_node(10, Some(20), [640, 480, 81, 1]))]}})
}

#[test]
fn promoted_widget_on_the_instance_with_proxy_widgets() {
    let instance = json!({"id": 5, "type": "sg-1", "mode": 0,
        "inputs": [{"name": "width", "type": "INT", "widget": {"name": "width"}, "link": null}],
        "outputs": [{"name": "LATENT", "type": "LATENT", "links": [1]}],
        "properties": {"proxyWidgets": [["-1", "width"]]}, "widgets_values": [832]});
    let prompt = convert(with_instance(instance, vec![], vec![]));
    assert_eq!(prompt.nodes["5:10"].inputs["width"], json!(832));
    assert_eq!(prompt.nodes["6"].inputs["samples"], json!(["5:10", 0]));
    assert!(
        !prompt.nodes.contains_key("5"),
        "the instance itself is not sent"
    );
}

#[test]
fn promoted_widget_on_the_instance_in_input_order() {
    let instance = json!({"id": 5, "type": "sg-1", "mode": 0,
        "inputs": [{"name": "width", "type": "INT", "widget": {"name": "width"}, "link": null}],
        "outputs": [{"name": "LATENT", "type": "LATENT", "links": [1]}],
        "widgets_values": [1024]});
    let prompt = convert(with_instance(instance, vec![], vec![]));
    assert_eq!(prompt.nodes["5:10"].inputs["width"], json!(1024));
}

#[test]
fn promoted_widget_stored_on_the_inner_node() {
    let instance = json!({"id": 5, "type": "sg-1", "mode": 0, "inputs": [],
        "outputs": [{"name": "LATENT", "type": "LATENT", "links": [1]}],
        "properties": {"proxyWidgets": [["10", "width"]]}, "widgets_values": []});
    let prompt = convert(with_instance(instance, vec![], vec![]));
    assert_eq!(prompt.nodes["5:10"].inputs["width"], json!(640));
}

#[test]
fn subgraph_input_linked_from_outside() {
    let instance = json!({"id": 5, "type": "sg-1", "mode": 0,
        "inputs": [{"name": "width", "type": "INT", "widget": {"name": "width"}, "link": 2}],
        "outputs": [{"name": "LATENT", "type": "LATENT", "links": [1]}], "widgets_values": [999]});
    let primitive = json!({"id": 7, "type": "PrimitiveInt", "mode": 0,
        "outputs": [{"name": "INT", "type": "INT", "links": [2]}], "widgets_values": [768, "fixed"]});
    let prompt = convert(with_instance(
        instance,
        vec![primitive],
        vec![json!([2, 7, 0, 5, 0, "INT"])],
    ));
    assert_eq!(prompt.nodes["5:10"].inputs["width"], json!(["7", 0]));
    assert_eq!(prompt.nodes["7"].inputs["value"], json!(768));
}

#[test]
fn nested_subgraphs_get_joined_ids() {
    // Outer subgraph "sg-outer" holds an instance (id 7) of "sg-1" and passes its latent out.
    let outer = json!({"id": "sg-outer", "name": "Outer", "version": 1, "inputs": [],
        "outputs": [{"id": "o0", "name": "LATENT", "type": "LATENT", "linkIds": [30]}],
        "nodes": [{"id": 7, "type": "sg-1", "mode": 0, "inputs": [],
            "outputs": [{"name": "LATENT", "type": "LATENT", "links": [30]}], "widgets_values": []}],
        "links": [{"id": 30, "origin_id": 7, "origin_slot": 0, "target_id": -20, "target_slot": 0, "type": "LATENT"}]});
    let workflow = json!({"version": 0.4,
        "nodes": [
            {"id": 5, "type": "sg-outer", "mode": 0, "inputs": [],
             "outputs": [{"name": "LATENT", "type": "LATENT", "links": [1]}], "widgets_values": []},
            save_latent(6, 1)
        ],
        "links": [[1, 5, 0, 6, 0, "LATENT"]],
        "definitions": {"subgraphs": [outer, latent_subgraph("sg-1", latent_node(10, Some(20), [640, 480, 81, 1]))]}});
    let prompt = convert(workflow);
    assert_eq!(prompt.nodes["5:7:10"].class_type, "EmptyHunyuanLatentVideo");
    assert_eq!(prompt.nodes["6"].inputs["samples"], json!(["5:7:10", 0]));
}

fn model_chain(lora_mode: i64) -> Value {
    json!({"version": 0.4, "nodes": [
        {"id": 1, "type": "UNETLoader", "mode": 0,
         "outputs": [{"name": "MODEL", "type": "MODEL", "links": [1]}],
         "widgets_values": ["high.safetensors", "default"]},
        {"id": 2, "type": "LoraLoaderModelOnly", "mode": lora_mode,
         "inputs": [{"name": "model", "type": "MODEL", "link": 1}],
         "outputs": [{"name": "MODEL", "type": "MODEL", "links": [2]}],
         "widgets_values": ["lora.safetensors", 1.0]},
        {"id": 3, "type": "Reroute", "mode": 0,
         "inputs": [{"name": "", "type": "*", "link": 2}],
         "outputs": [{"name": "", "type": "MODEL", "links": [3]}]},
        {"id": 4, "type": "ModelSamplingSD3", "mode": 0,
         "inputs": [{"name": "model", "type": "MODEL", "link": 3}],
         "outputs": [{"name": "MODEL", "type": "MODEL", "links": []}], "widgets_values": [8.0]}
    ], "links": [[1, 1, 0, 2, 0, "MODEL"], [2, 2, 0, 3, 0, "*"], [3, 3, 0, 4, 0, "MODEL"]]})
}

#[test]
fn bypassed_nodes_pass_their_input_through_and_reroutes_vanish() {
    let prompt = convert(model_chain(4));
    assert_eq!(prompt.nodes["4"].inputs["model"], json!(["1", 0]));
    assert!(!prompt.nodes.contains_key("2") && !prompt.nodes.contains_key("3"));
    let prompt = convert(model_chain(0));
    assert_eq!(prompt.nodes["4"].inputs["model"], json!(["2", 0]));
}

#[test]
fn links_from_muted_nodes_are_dropped() {
    let prompt = convert(model_chain(2));
    assert!(!prompt.nodes.contains_key("2"));
    assert!(!prompt.nodes["4"].inputs.contains_key("model"));
}

#[test]
fn primitive_nodes_and_set_get_pairs_feed_widgets_and_links() {
    let workflow = json!({"version": 0.4, "nodes": [
        {"id": 1, "type": "PrimitiveNode", "mode": 0,
         "outputs": [{"name": "INT", "type": "INT", "links": [1], "widget": {"name": "length"}}],
         "widgets_values": [49, "fixed"]},
        {"id": 2, "type": "EmptyHunyuanLatentVideo", "mode": 0,
         "inputs": [{"name": "length", "type": "INT", "widget": {"name": "length"}, "link": 1}],
         "outputs": [{"name": "LATENT", "type": "LATENT", "links": [2]}],
         "widgets_values": [832, 480, 81, 1]},
        {"id": 3, "type": "SetNode", "mode": 0,
         "inputs": [{"name": "LATENT", "type": "LATENT", "link": 2}],
         "outputs": [{"name": "*", "type": "*", "links": []}], "widgets_values": ["latent"]},
        {"id": 4, "type": "GetNode", "mode": 0,
         "outputs": [{"name": "LATENT", "type": "LATENT", "links": [3]}], "widgets_values": ["latent"]},
        save_latent(5, 3)
    ], "links": [[1, 1, 0, 2, 2, "INT"], [2, 2, 0, 3, 0, "LATENT"], [3, 4, 0, 5, 0, "LATENT"]]});
    let prompt = convert(workflow);
    assert_eq!(prompt.nodes["2"].inputs["length"], json!(49));
    assert_eq!(prompt.nodes["5"].inputs["samples"], json!(["2", 0]));
    assert_eq!(prompt.nodes.len(), 2, "virtual nodes are not sent");
}
