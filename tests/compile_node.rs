//! wan-pilot's own compile node: the workflow engine inserts `WanPilotTorchCompile` where the
//! server has no KJNodes compile node, converts and inspects graphs that hold it without a server,
//! and installs its Python package into a ComfyUI without touching other packs.
//!
//! The `#[ignore]` tests need a real ComfyUI:
//! - `WAN_PILOT_COMFYUI=DIR`: install the package into that ComfyUI, and run the package's own
//!   Python test (`assets/comfyui/test_compile.py`: inductor compiles a tiny model on the CPU) with
//!   that install's Python.
//! - `WAN_PILOT_COMFYUI_URL=http://127.0.0.1:PORT`: a server started after the install (with the
//!   tiny-wan models and `ZeroWanConditioning`, see tests/data/tiny-wan/README.md): the node is in
//!   `/object_info` as recorded, the server validates its inputs, and the official 14B t2v
//!   workflow edited with our node runs to success.
//!
//! `cargo test --test compile_node -- --ignored --nocapture --test-threads 1`

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wan_pilot::comfy::custom_node::{self, CustomNodeError, install_into};
use wan_pilot::workflow::api::{ApiPrompt, as_link};
use wan_pilot::workflow::convert::{ConvertOptions, flat_to_api, repair_for_server, ui_to_api};
use wan_pilot::workflow::edit::{
    self, CompileMode, Edits, OWN_COMPILE_NODE, ServerClasses, own_node_defs,
};
use wan_pilot::workflow::flat::{self, Strictness};
use wan_pilot::workflow::load::load;
use wan_pilot::workflow::node_defs::{InputKind, NodeDefs, WidgetKind};
use wan_pilot::workflow::recognise;
use wan_pilot::workflow::ui::UiWorkflow;

const KJ_COMPILE_NODES: [&str; 2] = ["TorchCompileModelWanVideoV2", "TorchCompileModelAdvanced"];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The classes of the bundled snapshot, less `without`, plus `with`: a server's class list.
fn server_classes(without: &[&str], with: &[&str]) -> ServerClasses {
    let snapshot: Value =
        serde_json::from_slice(&fs::read(repo("assets/node_defs.json")).unwrap()).unwrap();
    let mut names: BTreeSet<String> = snapshot["nodes"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    for class in without {
        assert!(names.remove(*class), "{class} is in the snapshot");
    }
    names.extend(with.iter().map(|c| c.to_string()));
    ServerClasses::Known(names)
}

/// The official 14B t2v workflow, converted and edited for a server with `server` classes.
fn edited_official(
    edits: &Edits,
    server: &ServerClasses,
) -> Result<(ApiPrompt, Vec<String>), String> {
    let loaded =
        load(&fs::read(common::corpus_file("official_wan22_14B_t2v_flat.json")).unwrap()).unwrap();
    let defs = NodeDefs::bundled();
    let mut graph = flat::flatten(loaded.ui.as_ref().unwrap(), defs, Strictness::Convert).unwrap();
    let mut notes = repair_for_server(&mut graph, defs);
    notes.extend(
        edit::apply_for_server(&mut graph, defs, edits, server).map_err(|e| e.to_string())?,
    );
    Ok((flat_to_api(&graph, defs, &ConvertOptions::default()), notes))
}

fn compile(mode: CompileMode) -> Edits {
    Edits {
        compile: Some(mode),
        ..Edits::default()
    }
}

fn nodes_of<'a>(
    prompt: &'a ApiPrompt,
    class: &str,
) -> Vec<(&'a String, &'a wan_pilot::workflow::api::ApiNode)> {
    prompt
        .nodes
        .iter()
        .filter(|(_, n)| n.class_type == class)
        .collect()
}

#[test]
fn our_definition_has_the_five_inputs_with_their_choices() {
    let def = own_node_defs()
        .get(OWN_COMPILE_NODE)
        .expect("our node's definition");
    let names: Vec<&str> = def.inputs.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        ["model", "mode", "backend", "dynamic", "blocks_only"]
    );
    assert_eq!(def.inputs[0].kind, InputKind::Socket("MODEL".into()));
    let combo = |name: &str| match &def.input(name).unwrap().kind {
        InputKind::Widget(WidgetKind::Combo(choices)) => choices.clone(),
        other => panic!("{name}: {other:?}"),
    };
    let modes: Vec<Value> = CompileMode::ALL
        .into_iter()
        .filter(|m| *m != CompileMode::Off)
        .map(|m| json!(m.as_str()))
        .collect();
    let mut listed = combo("mode");
    listed.sort_by_key(|v| v.to_string());
    let mut expected = modes.clone();
    expected.sort_by_key(|v| v.to_string());
    assert_eq!(
        listed, expected,
        "every compile mode wan-pilot chooses, and no other"
    );
    assert_eq!(
        combo("backend"),
        vec![
            json!("inductor"),
            json!("cudagraphs"),
            json!("eager"),
            json!("aot_eager")
        ]
    );
    assert_eq!(
        combo("dynamic"),
        vec![json!("false"), json!("true"), json!("auto")]
    );
    assert_eq!(
        def.input("blocks_only").unwrap().kind,
        InputKind::Widget(WidgetKind::Boolean)
    );
    assert_eq!(def.input("mode").unwrap().default, Some(json!("default")));
    assert_eq!(def.output_types, ["MODEL"]);
    // The converter knows it without a server.
    assert!(NodeDefs::bundled().get(OWN_COMPILE_NODE).is_some());
}

#[test]
fn without_kjnodes_our_node_goes_after_the_loras_of_both_experts() {
    let server = server_classes(&KJ_COMPILE_NODES, &[OWN_COMPILE_NODE]);
    let (prompt, notes) =
        edited_official(&compile(CompileMode::MaxAutotuneNoCudagraphs), &server).unwrap();
    assert!(nodes_of(&prompt, "TorchCompileModelWanVideoV2").is_empty());
    let ours = nodes_of(&prompt, OWN_COMPILE_NODE);
    assert_eq!(ours.len(), 2, "{notes:?}");
    for (id, node) in ours {
        assert_eq!(node.inputs["mode"], json!("max-autotune-no-cudagraphs"));
        assert_eq!(node.inputs["backend"], json!("inductor"));
        assert_eq!(node.inputs["dynamic"], json!("false"));
        assert_eq!(node.inputs["blocks_only"], json!(true));
        let (origin, _) = as_link(&node.inputs["model"]).unwrap();
        assert_eq!(prompt.nodes[origin].class_type, "LoraLoaderModelOnly");
        let users: Vec<&str> = prompt
            .nodes
            .values()
            .filter(|n| {
                n.inputs
                    .values()
                    .any(|v| as_link(v).is_some_and(|(o, _)| o == id))
            })
            .map(|n| n.class_type.as_str())
            .collect();
        assert_eq!(users, ["ModelSamplingSD3"], "{id}");
    }
    assert!(
        notes
            .iter()
            .any(|n| n.contains(&format!("inserted {OWN_COMPILE_NODE}"))),
        "{notes:?}"
    );
    assert!(prompt.find_cycle().is_none());
    assert!(prompt.dangling_links().is_empty());
}

#[test]
fn with_kjnodes_or_unknown_classes_the_kjnodes_node_stays_the_choice() {
    let defs = NodeDefs::bundled();
    let everything = server_classes(&[], &[OWN_COMPILE_NODE]);
    assert_eq!(
        edit::native_compile_node(defs, &everything).unwrap(),
        "TorchCompileModelWanVideoV2"
    );
    assert_eq!(
        edit::native_compile_node(defs, &ServerClasses::Unknown).unwrap(),
        "TorchCompileModelWanVideoV2"
    );
    let only_advanced = server_classes(&["TorchCompileModelWanVideoV2"], &[]);
    assert_eq!(
        edit::native_compile_node(defs, &only_advanced).unwrap(),
        "TorchCompileModelAdvanced"
    );
    let (prompt, _) = edited_official(&compile(CompileMode::Default), &everything).unwrap();
    assert_eq!(nodes_of(&prompt, "TorchCompileModelWanVideoV2").len(), 2);
    assert!(nodes_of(&prompt, OWN_COMPILE_NODE).is_empty());
}

#[test]
fn a_server_with_no_compile_node_at_all_is_refused_with_what_to_do() {
    let bare = server_classes(&KJ_COMPILE_NODES, &[]);
    let err = edited_official(&compile(CompileMode::Default), &bare).unwrap_err();
    assert!(
        err.contains("ComfyUI-KJNodes") && err.contains(OWN_COMPILE_NODE),
        "{err}"
    );
    // Compile off needs no node.
    assert!(edited_official(&compile(CompileMode::Off), &bare).is_ok());
}

#[test]
fn the_server_classes_come_from_object_info() {
    let info = json!({"UNETLoader": {}, OWN_COMPILE_NODE: {}});
    let server = ServerClasses::from_object_info(&info);
    assert_eq!(server.offers(OWN_COMPILE_NODE), Some(true));
    assert_eq!(server.offers("TorchCompileModelWanVideoV2"), Some(false));
    assert_eq!(
        ServerClasses::from_object_info(&json!([])),
        ServerClasses::Unknown
    );
    assert_eq!(ServerClasses::Unknown.offers("UNETLoader"), None);
}

#[test]
fn node_definitions_without_kjnodes_make_convert_insert_ours() {
    // `wan-pilot convert --compile default --object-info FILE` for a server without KJNodes.
    let snapshot: Value =
        serde_json::from_slice(&fs::read(repo("assets/node_defs.json")).unwrap()).unwrap();
    let mut nodes = snapshot["nodes"].as_object().unwrap().clone();
    for class in KJ_COMPILE_NODES {
        nodes.remove(class);
    }
    let dir = std::env::temp_dir().join(format!("wan-pilot-compile-node-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let info = dir.join("object_info.json");
    fs::write(&info, serde_json::to_vec(&Value::Object(nodes)).unwrap()).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wan-pilot"))
        .arg("convert")
        .arg(common::corpus_file("official_wan22_14B_t2v_flat.json"))
        .args(["--compile", "reduce-overhead", "--object-info"])
        .arg(&info)
        .output()
        .unwrap();
    let _ = fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let prompt: Value = serde_json::from_slice(&output.stdout).unwrap();
    let ours: Vec<&Value> = prompt
        .as_object()
        .unwrap()
        .values()
        .filter(|n| n["class_type"] == OWN_COMPILE_NODE)
        .collect();
    assert_eq!(ours.len(), 2, "{stderr}");
    assert!(
        ours.iter()
            .all(|n| n["inputs"]["mode"] == "reduce-overhead")
    );
    assert!(
        stderr.contains(&format!("inserted {OWN_COMPILE_NODE}")),
        "{stderr}"
    );
}

/// A UI workflow holding our node: UNETLoader → WanPilotTorchCompile → ModelSamplingSD3.
fn ui_with_our_node(mode: u8) -> Value {
    json!({
        "last_node_id": 3, "last_link_id": 2, "version": 0.4,
        "nodes": [
            {"id": 1, "type": "UNETLoader", "mode": 0, "order": 0, "inputs": [],
             "outputs": [{"name": "MODEL", "type": "MODEL", "links": [1]}],
             "widgets_values": ["wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors", "default"]},
            {"id": 2, "type": OWN_COMPILE_NODE, "mode": mode, "order": 1,
             "inputs": [{"name": "model", "type": "MODEL", "link": 1}],
             "outputs": [{"name": "MODEL", "type": "MODEL", "links": [2]}],
             "widgets_values": ["max-autotune", "inductor", "auto", false]},
            {"id": 3, "type": "ModelSamplingSD3", "mode": 0, "order": 2,
             "inputs": [{"name": "model", "type": "MODEL", "link": 2}],
             "outputs": [{"name": "MODEL", "type": "MODEL", "links": []}],
             "widgets_values": [8.0]}
        ],
        "links": [[1, 1, 0, 2, 0, "MODEL"], [2, 2, 0, 3, 0, "MODEL"]]
    })
}

#[test]
fn a_ui_workflow_with_our_node_converts_and_inspects_without_a_server() {
    let bytes = serde_json::to_vec(&ui_with_our_node(0)).unwrap();
    let loaded = load(&bytes).unwrap();
    let ui: &UiWorkflow = loaded.ui.as_ref().unwrap();
    let prompt = ui_to_api(ui, NodeDefs::bundled(), &ConvertOptions::default()).unwrap();
    let node = &prompt.nodes["2"];
    assert_eq!(node.class_type, OWN_COMPILE_NODE);
    assert_eq!(node.inputs["mode"], json!("max-autotune"));
    assert_eq!(node.inputs["backend"], json!("inductor"));
    assert_eq!(node.inputs["dynamic"], json!("auto"));
    assert_eq!(node.inputs["blocks_only"], json!(false));
    assert_eq!(as_link(&node.inputs["model"]), Some(("1", 0)));

    let inspection = recognise::inspect(&loaded, NodeDefs::bundled()).unwrap();
    assert_eq!(inspection.compile.len(), 1);
    let found = &inspection.compile[0];
    assert_eq!(found.class_type, OWN_COMPILE_NODE);
    assert_eq!(found.mode.as_deref(), Some("max-autotune"));
    assert_eq!(found.backend.as_deref(), Some("inductor"));
    assert!(found.active);
}

#[test]
fn our_node_in_the_graph_takes_the_mode_and_is_switched_on_or_off() {
    // Bypassed (mode 4) in the workflow: a compile edit switches it on with the new mode.
    let loaded = load(&serde_json::to_vec(&ui_with_our_node(4)).unwrap()).unwrap();
    let defs = NodeDefs::bundled();
    let server = server_classes(&KJ_COMPILE_NODES, &[OWN_COMPILE_NODE]);
    let mut graph = flat::flatten(loaded.ui.as_ref().unwrap(), defs, Strictness::Convert).unwrap();
    let notes = edit::apply_for_server(
        &mut graph,
        defs,
        &compile(CompileMode::ReduceOverhead),
        &server,
    )
    .unwrap();
    assert!(notes.iter().any(|n| n.contains("switched on")), "{notes:?}");
    let prompt = flat_to_api(&graph, defs, &ConvertOptions::default());
    assert_eq!(prompt.nodes["2"].inputs["mode"], json!("reduce-overhead"));
    assert_eq!(as_link(&prompt.nodes["3"].inputs["model"]), Some(("2", 0)));
    assert!(
        nodes_of(&prompt, OWN_COMPILE_NODE).len() == 1,
        "no second node inserted"
    );

    // Off: bypassed again, the sampler path takes the loader's model.
    edit::apply_for_server(&mut graph, defs, &compile(CompileMode::Off), &server).unwrap();
    let prompt = flat_to_api(&graph, defs, &ConvertOptions::default());
    assert!(nodes_of(&prompt, OWN_COMPILE_NODE).is_empty());
    assert_eq!(as_link(&prompt.nodes["3"].inputs["model"]), Some(("1", 0)));
}

fn temp_comfy_root(tag: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("wan-pilot-comfy-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(root.join("custom_nodes/SomeoneElsesPack")).unwrap();
    fs::write(
        root.join("custom_nodes/SomeoneElsesPack/__init__.py"),
        "NODE_CLASS_MAPPINGS = {}\n",
    )
    .unwrap();
    root
}

#[test]
fn install_writes_our_package_once_and_leaves_other_packs_alone() {
    let root = temp_comfy_root("install");
    let other = root.join("custom_nodes/SomeoneElsesPack/__init__.py");
    let first = install_into(&root).unwrap();
    assert_eq!(first.dir, root.join("custom_nodes/wan_pilot_nodes"));
    let init = first.dir.join("__init__.py");
    assert_eq!(first.written, vec![init.clone()]);
    assert_eq!(
        fs::read(&init).unwrap(),
        fs::read(repo("assets/comfyui/wan_pilot_nodes/__init__.py")).unwrap()
    );
    // A file of the user's in our folder, and the other pack, survive; nothing is rewritten.
    fs::write(first.dir.join("notes.txt"), "mine").unwrap();
    let modified = fs::metadata(&init).unwrap().modified().unwrap();
    let second = install_into(&root).unwrap();
    assert!(!second.changed(), "{second:?}");
    assert_eq!(second.unchanged, vec![init.clone()]);
    assert_eq!(fs::metadata(&init).unwrap().modified().unwrap(), modified);
    assert_eq!(
        fs::read_to_string(first.dir.join("notes.txt")).unwrap(),
        "mine"
    );
    assert_eq!(
        fs::read_to_string(&other).unwrap(),
        "NODE_CLASS_MAPPINGS = {}\n"
    );
    // Nothing but our folder and the other pack under custom_nodes, and no temporary files left.
    let mut entries: Vec<String> = fs::read_dir(root.join("custom_nodes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(entries, ["SomeoneElsesPack", "wan_pilot_nodes"]);
    let mut ours: Vec<String> = fs::read_dir(&first.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    ours.sort();
    assert_eq!(ours, ["__init__.py", "notes.txt"]);
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn install_into_a_missing_folder_says_so() {
    let root = std::env::temp_dir().join(format!("wan-pilot-no-comfy-{}", std::process::id()));
    let err = install_into(&root).unwrap_err();
    assert!(matches!(err, CustomNodeError::NoComfyUi { .. }), "{err}");
    assert!(err.to_string().contains("ComfyUI folder"), "{err}");
    assert!(
        !root.exists(),
        "nothing is created for a folder that is not there"
    );
}

// ---------------------------------------------------------------------------------------------
// Against a real ComfyUI

fn comfyui_dir() -> PathBuf {
    PathBuf::from(
        std::env::var_os("WAN_PILOT_COMFYUI").expect("WAN_PILOT_COMFYUI names a ComfyUI folder"),
    )
}

#[test]
#[ignore = "installs into a real ComfyUI: set WAN_PILOT_COMFYUI=DIR and pass --ignored"]
fn install_into_a_real_comfyui() {
    let root = comfyui_dir();
    let install = install_into(&root).unwrap();
    println!(
        "installed into {}: written {:?}, unchanged {:?}",
        install.dir.display(),
        install.written,
        install.unchanged
    );
    for (name, bytes) in custom_node::files() {
        assert_eq!(fs::read(install.dir.join(name)).unwrap(), *bytes);
    }
    assert!(!install_into(&root).unwrap().changed());
}

#[test]
#[ignore = "needs a ComfyUI with torch: set WAN_PILOT_COMFYUI=DIR and pass --ignored"]
fn the_package_test_compiles_with_inductor_on_the_cpu() {
    let install = wan_pilot::comfy::install::validate(&comfyui_dir()).unwrap();
    let started = Instant::now();
    let output = std::process::Command::new(&install.python)
        .arg(repo("assets/comfyui/test_compile.py"))
        .arg(&install.root)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    println!(
        "{log}\n(the Python test took {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    assert!(output.status.success(), "{log}");
    // Every test ran, the real ModelPatcher ones included.
    assert!(log.contains("\nOK"), "{log}");
    assert!(!log.contains("skipped"), "{log}");
}

#[test]
#[ignore = "needs a running ComfyUI with our node: set WAN_PILOT_COMFYUI_URL and pass --ignored"]
fn the_server_lists_our_node_as_recorded() {
    let (status, info) = common::http_json(
        &common::comfyui_url(),
        "GET",
        &format!("/api/object_info/{OWN_COMPILE_NODE}"),
        None,
    );
    assert_eq!(status, 200);
    let live = &info[OWN_COMPILE_NODE];
    let recorded: Value =
        serde_json::from_slice(&fs::read(repo("assets/comfyui/object_info.json")).unwrap())
            .unwrap();
    println!("{}", serde_json::to_string_pretty(live).unwrap());
    assert!(
        common::same_value(live, &recorded[OWN_COMPILE_NODE]),
        "the recorded definition is out of date"
    );
    assert_eq!(live["display_name"], "Torch Compile (wan-pilot)");
}

#[test]
#[ignore = "needs a running ComfyUI with our node: set WAN_PILOT_COMFYUI_URL and pass --ignored"]
fn the_server_checks_our_nodes_inputs() {
    let prompt = json!({
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors", "weight_dtype": "default"}},
        "2": {"class_type": OWN_COMPILE_NODE, "inputs": {"model": ["1", 0], "mode": "turbo", "backend": "inductor", "dynamic": "maybe", "blocks_only": true}},
        "3": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["2", 0], "shift": 8.0}},
        "4": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 64, "height": 64, "length": 5, "batch_size": 1}},
        "5": {"class_type": "ZeroWanConditioning", "inputs": {"tokens": 16, "seed": 1}},
        "6": {"class_type": "KSamplerAdvanced", "inputs": {"model": ["3", 0], "add_noise": "enable", "noise_seed": 1, "steps": 1, "cfg": 1.0,
              "sampler_name": "euler", "scheduler": "simple", "positive": ["5", 0], "negative": ["5", 0], "latent_image": ["4", 0],
              "start_at_step": 0, "end_at_step": 1, "return_with_leftover_noise": "disable"}},
        "7": {"class_type": "VAELoader", "inputs": {"vae_name": "wan_2.1_vae.safetensors"}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["7", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "wan-pilot-test/refused"}}
    });
    let (status, reply) = common::http_json(
        &common::comfyui_url(),
        "POST",
        "/api/prompt",
        Some(&json!({"prompt": prompt, "client_id": "wan-pilot-test"})),
    );
    println!("HTTP {status}: {reply}");
    assert_eq!(status, 400);
    let errors = reply["node_errors"]["2"]["errors"]
        .as_array()
        .expect("errors on our node");
    let refused: BTreeSet<&str> = errors
        .iter()
        .filter_map(|e| e["extra_info"]["input_name"].as_str())
        .collect();
    assert_eq!(refused, BTreeSet::from(["dynamic", "mode"]));
    assert!(
        errors.iter().all(|e| e["type"] == "value_not_in_list"),
        "{errors:?}"
    );
}

/// The official 14B t2v workflow edited as for a server without KJNodes (frames 17, 64×64, our
/// compile node in `mode`), with tiny-wan's ZeroWanConditioning for the text encoders.
fn tiny_official_prompt(live: &Value, mode: CompileMode, seed: u64) -> Value {
    let mut names: BTreeSet<String> = live.as_object().unwrap().keys().cloned().collect();
    for class in KJ_COMPILE_NODES {
        names.remove(class);
    }
    assert!(
        names.contains(OWN_COMPILE_NODE),
        "the server has not loaded our node"
    );
    let edits = Edits {
        frames: Some(17),
        size: Some((64, 64)),
        seed: Some(seed),
        compile: Some(mode),
        ..Edits::default()
    };
    let (prompt, notes) = edited_official(&edits, &ServerClasses::Known(names)).unwrap();
    println!("edits: {notes:?}");
    let mut json = prompt.to_json();
    let map = json.as_object_mut().unwrap();
    let encoders: Vec<String> = map
        .iter()
        .filter(|(_, n)| n["class_type"] == "CLIPTextEncode")
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(encoders.len(), 2);
    for (i, id) in encoders.iter().enumerate() {
        map.insert(
            id.clone(),
            json!({"class_type": "ZeroWanConditioning", "inputs": {"tokens": 16, "seed": i + 1}}),
        );
    }
    map.retain(|_, n| n["class_type"] != "CLIPLoader");
    json
}

/// Queues `prompt` and polls its history until it ends; returns (status, seconds, entry).
fn run_to_the_end(base: &str, prompt: &Value) -> (String, f64, Value) {
    let started = Instant::now();
    let (status, reply) = common::http_json(
        base,
        "POST",
        "/api/prompt",
        Some(&json!({"prompt": prompt, "client_id": "wan-pilot-test"})),
    );
    assert_eq!(status, 200, "{reply}");
    assert!(
        reply["node_errors"]
            .as_object()
            .is_none_or(|m| m.is_empty()),
        "{reply}"
    );
    let id = reply["prompt_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let (_, history) = common::http_json(base, "GET", &format!("/api/history/{id}"), None);
        let entry = &history[&id];
        if let Some(done) = entry["status"]["status_str"]
            .as_str()
            .filter(|s| *s == "success" || *s == "error")
        {
            return (
                done.to_string(),
                started.elapsed().as_secs_f64(),
                entry.clone(),
            );
        }
        assert!(
            Instant::now() < deadline,
            "prompt {id} still running after 15 minutes"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
#[ignore = "needs a running ComfyUI with our node and tiny-wan: set WAN_PILOT_COMFYUI_URL and pass --ignored"]
fn the_official_workflow_runs_with_our_node_on_a_tiny_wan() {
    let base = common::comfyui_url();
    let (status, live) = common::http_json(&base, "GET", "/api/object_info", None);
    assert_eq!(status, 200);
    // The compiled runs, then the same graph uncompiled for comparison.
    let runs = [
        ("first compiled run", CompileMode::Default, 42, 2),
        ("second run, new seed", CompileMode::Default, 43, 2),
        ("uncompiled, new seed", CompileMode::Off, 44, 0),
    ];
    for (label, mode, seed, compile_nodes) in runs {
        let prompt = tiny_official_prompt(&live, mode, seed);
        let ours = prompt
            .as_object()
            .unwrap()
            .values()
            .filter(|n| n["class_type"] == OWN_COMPILE_NODE)
            .count();
        assert_eq!(ours, compile_nodes);
        let (status, seconds, entry) = run_to_the_end(&base, &prompt);
        let messages = &entry["status"]["messages"];
        println!("{label}: {status} in {seconds:.1} s");
        assert_eq!(status, "success", "{messages}");
        let outputs = entry["outputs"].as_object().unwrap();
        assert!(!outputs.is_empty(), "no outputs: {entry}");
    }
}
