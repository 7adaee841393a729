//! The model catalogue against every model file name in the workflow corpus
//! (`../shared/workflows/*.json` and `community/*.json`, UI and API format alike).
//!
//! Names are collected with the loader that loads them (node `type` + `widgets_values` in UI
//! files, `class_type` + `inputs` in API files, and the `models` lists with their `directory`),
//! so the test knows what each file must be. Every diffusion model, text encoder and VAE name
//! must be recognised from its name alone, as that kind; LoRAs must be recognised under their
//! loader; names the catalogue does not cover (upscalers, RIFE, SAM, depth models) are ignored.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use wan_pilot::budget::catalogue::{Family, ModelKind, Role, recognise, recognise_as};

const MODEL_EXTENSIONS: [&str; 7] = [
    ".safetensors",
    ".gguf",
    ".pt",
    ".pth",
    ".ckpt",
    ".bin",
    ".sft",
];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/workflows")
}

fn corpus_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in [corpus_dir(), corpus_dir().join("community")] {
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("the workflow corpus {} is missing: {e}", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// What a loader node (or a `models` directory) loads.
fn kind_of_loader(node_type: &str) -> Option<ModelKind> {
    let t = node_type.to_ascii_lowercase();
    if t.contains("lora") {
        return Some(ModelKind::Lora);
    }
    if t.contains("controlnet") {
        return None;
    }
    if t.contains("clipvision") || t == "clip_vision" || t == "loadwanvideocliptextencoder" {
        return Some(ModelKind::ClipVision);
    }
    if t.contains("vae") {
        return Some(ModelKind::Vae);
    }
    if t.starts_with("cliploader")
        || t.contains("t5textencoder")
        || t == "loadwantextencodermodel"
        || t == "wanvideotextencodecached"
        || t == "text_encoders"
        || t == "clip"
    {
        return Some(ModelKind::TextEncoder);
    }
    if t.contains("unetloader")
        || t.starts_with("wanvideomodelloader")
        || t == "loadwan2_2transformermodel"
        || t == "wanvideovacemodelselect"
        || t == "diffusion_models"
        || t == "unet"
    {
        return Some(ModelKind::Diffusion);
    }
    if t.contains("audioencoder") || t == "audio_encoders" {
        return Some(ModelKind::AudioEncoder);
    }
    if t == "loras" {
        return Some(ModelKind::Lora);
    }
    if t == "vae" {
        return Some(ModelKind::Vae);
    }
    None
}

fn is_model_name(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    MODEL_EXTENSIONS.iter().any(|e| lower.ends_with(e))
}

fn strings_in(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if is_model_name(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings_in(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings_in(x, out)),
        _ => {}
    }
}

/// (loader kind, file name) for every model name a workflow document mentions under a loader.
fn collect(doc: &Value, out: &mut BTreeSet<(String, String)>) {
    match doc {
        Value::Object(o) => {
            let loader = match (o.get("class_type"), o.get("type")) {
                (Some(Value::String(t)), _) if o.contains_key("inputs") => {
                    Some((t.as_str(), o.get("inputs")))
                }
                (_, Some(Value::String(t))) if o.contains_key("widgets_values") => {
                    Some((t.as_str(), o.get("widgets_values")))
                }
                _ => None,
            };
            if let Some((node_type, Some(values))) = loader {
                let mut names = Vec::new();
                strings_in(values, &mut names);
                for n in names {
                    out.insert((node_type.to_string(), n));
                }
            }
            // The frontend's `models` list: {name, url, directory}.
            if let (Some(Value::String(name)), Some(Value::String(dir))) =
                (o.get("name"), o.get("directory"))
                && is_model_name(name)
            {
                out.insert((dir.clone(), name.clone()));
            }
            o.values().for_each(|v| collect(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| collect(v, out)),
        _ => {}
    }
}

fn corpus_names() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for path in corpus_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        let doc: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        collect(&doc, &mut out);
    }
    out
}

#[test]
fn every_wan_model_text_encoder_and_vae_in_the_corpus_is_recognised() {
    let names = corpus_names();
    let mut checked = 0;
    let mut failures = Vec::new();
    for (loader, name) in &names {
        let Some(kind) = kind_of_loader(loader) else {
            continue;
        };
        match kind {
            ModelKind::Diffusion
            | ModelKind::TextEncoder
            | ModelKind::Vae
            | ModelKind::ClipVision
            | ModelKind::AudioEncoder => {
                checked += 1;
                match recognise(name) {
                    Some(m) if m.kind == kind => {
                        assert!(m.params > 0, "{name}: no parameter count");
                        assert!(m.estimated_file_bytes > 0, "{name}: no size");
                        if kind == ModelKind::Diffusion {
                            assert!(m.arch.is_some(), "{name}: a DiT without architecture");
                            assert!(m.resident_bytes(true) > 0, "{name}");
                        }
                    }
                    Some(m) => failures.push(format!(
                        "{name} (under {loader}): recognised as {:?} {:?}, expected {kind:?}",
                        m.kind, m.family
                    )),
                    None => failures.push(format!("{name} (under {loader}): not recognised")),
                }
            }
            ModelKind::Lora => {
                checked += 1;
                match recognise_as(name, ModelKind::Lora) {
                    Some(m) if m.kind == ModelKind::Lora && m.lora.is_some() => {}
                    other => failures.push(format!("{name} (under {loader}): {other:?}")),
                }
            }
        }
    }
    eprintln!("{checked} (loader, name) pairs checked");
    assert!(
        checked > 100,
        "the corpus should give well over 100 loader names, got {checked}"
    );
    assert!(
        failures.is_empty(),
        "{} of {checked} corpus model names were not recognised as their loader's kind:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_a14b_expert_in_the_corpus_knows_whether_it_is_high_or_low() {
    let names = corpus_names();
    let mut experts = 0;
    for (_, name) in &names {
        let Some(m) = recognise(name) else { continue };
        if m.kind == ModelKind::Diffusion && m.family.is_a14b_expert() {
            experts += 1;
            assert_ne!(m.role, Role::Unknown, "{name}");
        }
    }
    assert!(
        experts >= 20,
        "only {experts} A14B expert names in the corpus"
    );
}

#[test]
fn the_corpus_names_land_in_the_right_families() {
    let names: BTreeSet<String> = corpus_names().into_iter().map(|(_, n)| n).collect();
    let family = |needle: &str| -> Family {
        let name = names
            .iter()
            .find(|n| n.contains(needle))
            .unwrap_or_else(|| panic!("no corpus name contains {needle}"));
        recognise(name).unwrap_or_else(|| panic!("{name}")).family
    };
    assert_eq!(
        family("wan2.2_t2v_high_noise_14B_fp8_scaled"),
        Family::Wan22T2vA14b
    );
    assert_eq!(
        family("Wan2_2-I2V-A14B-HIGH_fp8_e4m3fn_scaled_KJ"),
        Family::Wan22I2vA14b
    );
    assert_eq!(family("wan2.2_ti2v_5B_fp16"), Family::Wan22Ti2v5b);
    assert_eq!(family("wan2.2_s2v_14B_fp8_scaled"), Family::Wan22S2v14b);
    assert_eq!(family("Wan2.2-Animate-14B-Q3_K_M"), Family::Wan22Animate14b);
    assert_eq!(family("Wan2_2-Fun-Control-A14B-LOW"), Family::Wan22FunA14b);
    assert_eq!(family("wan2.1_i2v_720p_14B_fp16"), Family::Wan21I2v14b720p);
    assert_eq!(
        family("wan2.1_i2v_480p_14B_fp8_e4m3fn"),
        Family::Wan21I2v14b480p
    );
    assert_eq!(
        family("Wan2_1-T2V-14B_fp8_e4m3fn_scaled_KJ"),
        Family::Wan21T2v14b
    );
    assert_eq!(family("wan2.1_t2v_1.3B_fp16"), Family::Wan21T2v1_3b);
    assert_eq!(family("wan2.1_vace_14B_fp16"), Family::Wan21Vace14b);
    assert_eq!(family("umt5_xxl_fp8_e4m3fn_scaled"), Family::UmT5Xxl);
    assert_eq!(family("umt5-xxl-enc-bf16"), Family::UmT5Xxl);
    assert_eq!(family("wan_2.1_vae"), Family::Wan21Vae);
    assert_eq!(family("Wan2_2_VAE_bf16"), Family::Wan22Vae);
    assert_eq!(family("clip_vision_h"), Family::ClipVisionH);
}
