//! Edits on real workflows: the frame count stays consistent wherever it is used, compile nodes
//! are edited or inserted on every diffusion-model path, and the frame tap saves decoded frames.

mod common;

use serde_json::{Value, json};
use wan_pilot::workflow::api::{ApiPrompt, as_link};
use wan_pilot::workflow::convert::{ConvertOptions, flat_to_api};
use wan_pilot::workflow::edit::{self, CompileMode, Edits};
use wan_pilot::workflow::flat::{self, FlatGraph, FlatInput, Strictness};
use wan_pilot::workflow::load::load;
use wan_pilot::workflow::node_defs::NodeDefs;

/// The flattened graph of a corpus file after the edits, with the notes they made.
fn edited_graph(name: &str, edits: &Edits) -> Result<(FlatGraph, Vec<String>), String> {
    let loaded = load(&std::fs::read(common::corpus_file(name)).unwrap()).unwrap();
    let defs = NodeDefs::bundled();
    let mut graph = match (&loaded.ui, &loaded.api) {
        (Some(ui), _) => flat::flatten(ui, defs, Strictness::Inspect).unwrap(),
        (None, Some((prompt, _))) => flat::from_api(prompt),
        _ => unreachable!(),
    };
    let notes = edit::apply(&mut graph, defs, edits).map_err(|e| e.to_string())?;
    Ok((graph, notes))
}

fn edited(name: &str, edits: &Edits) -> Result<(ApiPrompt, Vec<String>), String> {
    let (graph, notes) = edited_graph(name, edits)?;
    Ok((
        flat_to_api(&graph, NodeDefs::bundled(), &ConvertOptions::default()),
        notes,
    ))
}

fn input<'a>(prompt: &'a ApiPrompt, id: &str, name: &str) -> &'a Value {
    &prompt.nodes[id].inputs[name]
}

/// How many nodes take an output of node `id`.
fn users_of(prompt: &ApiPrompt, id: &str) -> usize {
    prompt
        .nodes
        .values()
        .filter(|n| {
            n.inputs
                .values()
                .any(|v| as_link(v).is_some_and(|(o, _)| o == id))
        })
        .count()
}

fn frames(n: u32) -> Edits {
    Edits {
        frames: Some(n),
        ..Edits::default()
    }
}

#[test]
fn frames_snap_and_land_on_the_frame_node() {
    let (prompt, notes) = edited("official_wan22_14B_t2v_flat.json", &frames(50)).unwrap();
    assert_eq!(input(&prompt, "74", "length"), &json!(49));
    assert!(notes.iter().any(|n| n.contains("4n+1")), "{notes:?}");
}

#[test]
fn a_primitive_node_feeding_two_encoders_changes_both() {
    // One PrimitiveNode drives num_frames of two WanVideoImageToVideoEncode nodes.
    let (prompt, _) = edited("kijai_wrapper_wan22_fun_control_camera.json", &frames(33)).unwrap();
    let counts: Vec<&Value> = prompt
        .nodes
        .values()
        .filter(|n| n.class_type == "WanVideoImageToVideoEncode")
        .map(|n| &n.inputs["num_frames"])
        .collect();
    assert_eq!(counts.len(), 2);
    assert!(counts.iter().all(|v| **v == json!(33)), "{counts:?}");
}

#[test]
fn a_maths_chain_is_replaced_by_the_literal_everywhere_it_was_used() {
    let (prompt, notes) =
        edited("umeairt_wan22_t2v_torchcompile_blockswap.json", &frames(41)).unwrap();
    assert_eq!(input(&prompt, "504", "length"), &json!(41));
    assert!(notes.iter().any(|n| n.contains("computed")), "{notes:?}");
}

#[test]
fn a_run_time_frame_count_is_refused_with_the_reason() {
    let err = edited("kijai_wrapper_wan22_animate.json", &frames(33)).unwrap_err();
    assert!(err.contains("when the workflow runs"), "{err}");
}

#[test]
fn compile_nodes_go_after_the_loras_on_both_experts() {
    let edits = Edits {
        compile: Some(CompileMode::ReduceOverhead),
        ..Edits::default()
    };
    let (prompt, _) = edited("official_wan22_14B_t2v_flat.json", &edits).unwrap();
    let compiles: Vec<(&String, _)> = prompt
        .nodes
        .iter()
        .filter(|(_, n)| n.class_type == "TorchCompileModelWanVideoV2")
        .collect();
    assert_eq!(compiles.len(), 2);
    for (id, node) in compiles {
        assert_eq!(node.inputs["mode"], json!("reduce-overhead"));
        let (origin, _) = as_link(&node.inputs["model"]).unwrap();
        assert_eq!(prompt.nodes[origin].class_type, "LoraLoaderModelOnly");
        // Whatever took the LoRA's model now takes the compiled one.
        assert!(users_of(&prompt, id) >= 1);
    }
    assert!(prompt.find_cycle().is_none());
    assert!(prompt.dangling_links().is_empty());
}

#[test]
fn existing_compile_nodes_get_the_mode_and_off_bypasses_them() {
    let name = "community_wan22_i2v_torchcompile_native.json";
    let edits = Edits {
        compile: Some(CompileMode::MaxAutotuneNoCudagraphs),
        ..Edits::default()
    };
    let (prompt, _) = edited(name, &edits).unwrap();
    let modes: Vec<&Value> = prompt
        .nodes
        .values()
        .filter(|n| n.class_type == "TorchCompileModelWanVideoV2")
        .map(|n| &n.inputs["mode"])
        .collect();
    assert_eq!(modes, vec![&json!("max-autotune-no-cudagraphs"); 2]);

    let edits = Edits {
        compile: Some(CompileMode::Off),
        ..Edits::default()
    };
    let (prompt, _) = edited(name, &edits).unwrap();
    assert!(
        prompt
            .nodes
            .values()
            .all(|n| n.class_type != "TorchCompileModelWanVideoV2")
    );
    assert!(
        prompt.dangling_links().is_empty(),
        "{:?}",
        prompt.dangling_links()
    );
}

#[test]
fn the_wrapper_compile_settings_take_the_mode() {
    let edits = Edits {
        compile: Some(CompileMode::Default),
        ..Edits::default()
    };
    let (prompt, _) = edited("kijai_wrapper_wan22_i2v_A14B.json", &edits).unwrap();
    let settings: Vec<&Value> = prompt
        .nodes
        .values()
        .filter(|n| n.class_type == "WanVideoTorchCompileSettings")
        .map(|n| &n.inputs["mode"])
        .collect();
    assert_eq!(settings, vec![&json!("default")]);
}

#[test]
fn the_frame_tap_saves_the_decoded_frames() {
    let edits = Edits {
        frame_tap_prefix: Some("wan-pilot/run-1".into()),
        ..Edits::default()
    };
    let (prompt, _) = edited("official_wan22_14B_t2v_flat.json", &edits).unwrap();
    let tap = prompt
        .nodes
        .values()
        .find(|n| n.class_type == "SaveImage")
        .expect("a SaveImage tap");
    assert_eq!(tap.inputs["filename_prefix"], json!("wan-pilot/run-1"));
    let (origin, slot) = as_link(&tap.inputs["images"]).unwrap();
    assert_eq!(
        (prompt.nodes[origin].class_type.as_str(), slot),
        ("VAEDecode", 0)
    );
}

#[test]
fn size_snaps_to_32_on_the_5b_model() {
    let edits = Edits {
        size: Some((1280, 720)),
        ..Edits::default()
    };
    let (prompt, notes) = edited("official_wan22_5B_ti2v.json", &edits).unwrap();
    assert_eq!(input(&prompt, "55", "width"), &json!(1280));
    assert_eq!(input(&prompt, "55", "height"), &json!(736));
    assert!(
        notes.iter().any(|n| n.contains("multiple of 32")),
        "{notes:?}"
    );
}

#[test]
fn seed_and_prompt_reach_the_samplers_and_text_encoders() {
    let edits = Edits {
        seed: Some(1234),
        prompt: Some("a red fox in snow".into()),
        ..Edits::default()
    };
    let (prompt, _) = edited("examples_wan22_14B_t2v.json", &edits).unwrap();
    let seeds: Vec<&Value> = prompt
        .nodes
        .values()
        .filter_map(|n| n.inputs.get("noise_seed"))
        .collect();
    assert!(!seeds.is_empty() && seeds.iter().all(|s| **s == json!(1234)));
    let positive = prompt
        .nodes
        .values()
        .filter(|n| {
            n.class_type == "CLIPTextEncode" && n.inputs["text"] == json!("a red fox in snow")
        })
        .count();
    assert_eq!(positive, 1, "only the positive encoder changes");
}

#[test]
fn repairs_rename_moved_inputs_and_windows_model_paths() {
    use wan_pilot::workflow::convert::repair_for_server;
    // WanVideoEncode's `image` input is `driving_video` in the wrapper this server runs.
    let loaded =
        load(&std::fs::read(common::corpus_file("kijai_wrapper_wan22_5B_i2v.json")).unwrap())
            .unwrap();
    let defs = NodeDefs::bundled();
    let mut graph = flat::flatten(loaded.ui.as_ref().unwrap(), defs, Strictness::Convert).unwrap();
    let notes = repair_for_server(&mut graph, defs);
    assert!(
        notes.iter().any(|n| n.contains("'driving_video'")),
        "{notes:?}"
    );
    let prompt = flat_to_api(&graph, defs, &ConvertOptions::default());
    assert!(as_link(&prompt.nodes["70"].inputs["driving_video"]).is_some());
    assert!(!prompt.nodes["70"].inputs.contains_key("image"));

    // A model saved on Windows in a subfolder, offered by a Linux server with `/`.
    let info = json!({"UNETLoader": {
        "input": {"required": {
            "unet_name": [["WanVideo/2_2/high.safetensors", "other.safetensors"]],
            "weight_dtype": [["default", "fp8_e4m3fn"]]
        }},
        "input_order": {"required": ["unet_name", "weight_dtype"]},
        "output": ["MODEL"], "output_name": ["MODEL"]
    }});
    let server = NodeDefs::from_object_info(&info, "test server").unwrap();
    let windows = json!({"1": {"class_type": "UNETLoader",
        "inputs": {"unet_name": "wanvideo\\2_2\\high.safetensors", "weight_dtype": "default"}}});
    let (prompt, _) = ApiPrompt::from_json(&windows).unwrap().unwrap();
    let mut graph = flat::from_api(&prompt);
    let notes = repair_for_server(&mut graph, &server);
    assert_eq!(notes.len(), 1, "{notes:?}");
    let fixed = flat_to_api(&graph, &server, &ConvertOptions::default());
    assert_eq!(
        fixed.nodes["1"].inputs["unet_name"],
        json!("WanVideo/2_2/high.safetensors")
    );
}

#[test]
fn switching_on_a_bypassed_compile_node_puts_it_back_on_the_model_path() {
    // KJNodes TorchCompileModelWanVideoV2, bypassed in the workflow.
    let edits = Edits {
        compile: Some(CompileMode::ReduceOverhead),
        ..Edits::default()
    };
    let (prompt, notes) = edited("umeairt_wan21_vace_torchcompile_v2.json", &edits).unwrap();
    assert!(notes.iter().any(|n| n.contains("switched on")), "{notes:?}");
    let (id, node) = prompt
        .nodes
        .iter()
        .find(|(_, n)| n.class_type == "TorchCompileModelWanVideoV2")
        .expect("the compile node is sent");
    assert_eq!(node.inputs["mode"], json!("reduce-overhead"));
    assert!(
        users_of(&prompt, id) >= 1,
        "something takes the compiled model"
    );

    // WanVideoWrapper compile settings, bypassed: the loaders get their compile_args back.
    let edits = Edits {
        compile: Some(CompileMode::Default),
        ..Edits::default()
    };
    // (Its MultiGPU loaders are outside the bundled definitions, so look at the edited graph.)
    let (graph, _) = edited_graph("multigpu_wrapper_wan22_i2v_gguf.json", &edits).unwrap();
    let settings = &graph.nodes["35"];
    assert!(settings.mode.is_active());
    for loader in ["108", "109"] {
        assert!(
            matches!(&graph.nodes[loader].inputs["compile_args"], FlatInput::Link { origin, .. } if origin == "35"),
            "loader {loader}: {:?}",
            graph.nodes[loader].inputs.get("compile_args")
        );
    }
}

#[test]
fn only_the_expert_without_a_compile_node_gets_one() {
    let prompt = json!({
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "high.safetensors", "weight_dtype": "default"}},
        "2": {"class_type": "UNETLoader", "inputs": {"unet_name": "low.safetensors", "weight_dtype": "default"}},
        "3": {"class_type": "TorchCompileModelWanVideoV2", "inputs": {"model": ["1", 0], "backend": "inductor",
              "fullgraph": false, "mode": "default", "dynamic": false, "compile_transformer_blocks_only": true,
              "dynamo_cache_size_limit": 64}},
        "4": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["3", 0], "shift": 8.0}},
        "5": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["2", 0], "shift": 8.0}},
        "6": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 832, "height": 480, "length": 81, "batch_size": 1}},
        "7": {"class_type": "KSamplerAdvanced", "inputs": {"model": ["4", 0], "latent_image": ["6", 0]}},
        "8": {"class_type": "KSamplerAdvanced", "inputs": {"model": ["5", 0], "latent_image": ["7", 0]}}
    });
    let (prompt, _) = ApiPrompt::from_json(&prompt).unwrap().unwrap();
    let mut graph = flat::from_api(&prompt);
    let defs = NodeDefs::bundled();
    let edits = Edits {
        compile: Some(CompileMode::MaxAutotune),
        ..Edits::default()
    };
    edit::apply(&mut graph, defs, &edits).unwrap();
    let out = flat_to_api(&graph, defs, &ConvertOptions::default());
    let compiles: Vec<&str> = out
        .nodes
        .iter()
        .filter(|(_, n)| n.class_type == "TorchCompileModelWanVideoV2")
        .map(|(id, _)| id.as_str())
        .collect();
    assert_eq!(compiles.len(), 2, "{compiles:?}");
    assert!(
        out.nodes
            .values()
            .filter(|n| n.class_type == "TorchCompileModelWanVideoV2")
            .all(|n| n.inputs["mode"] == json!("max-autotune"))
    );
    let (low_path, _) = as_link(&out.nodes["5"].inputs["model"]).unwrap();
    assert!(low_path.starts_with("wan-pilot-compile"), "{low_path}");
    assert_eq!(as_link(&out.nodes["4"].inputs["model"]), Some(("3", 0)));
}
