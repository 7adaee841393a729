//! Presets (app/presets) and settings (app/settings.rs).
//!
//! - Every shipped preset is read by the workflow engine exactly as `wan-pilot inspect` reads
//!   it, and declares what it is: family, frame node, size, fps, models, steps.
//! - Every shipped preset's prompt is accepted by `POST /prompt` of the stand-in ComfyUI, and —
//!   ignored by default — of a real ComfyUI 0.8.0:
//!   `WAN_PILOT_COMFYUI_URL=http://127.0.0.1:8199 cargo test --test presets -- --ignored --nocapture`
//!   (a model file the server lacks is reported, not failed; each accepted prompt is interrupted
//!   and taken off the queue at once, so nothing is generated on a real card).
//! - The store: list, save, update, duplicate, rename, delete, import, export; broken and newer
//!   files are reported and kept aside; writes leave no temporary files.
//! - Settings: defaults, round trip, broken and newer files kept aside, bad keys named.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use wan_pilot::comfy::client::{Client, ClientError, new_id};
use wan_pilot::presets::shipped::SHIPPED;
use wan_pilot::presets::{
    PRESET_FORMAT_VERSION, Preset, PresetDefaults, PresetError, PresetId, PresetStore,
};
use wan_pilot::settings::{SETTINGS_FILE, Settings, Theme, load_settings_in, save_settings_in};
use wan_pilot::workflow::load::load;
use wan_pilot::workflow::node_defs::NodeDefs;
use wan_pilot::workflow::recognise::{Family, Inspection, ModelRole, inspect};

use common::standin::{Standin, free_port, standin_install, temp_dir};

// ---------------------------------------------------------------------------------------------
// What each shipped preset must be
// ---------------------------------------------------------------------------------------------

struct Expected {
    file: &'static str,
    family: Family,
    frame_node: &'static str,
    /// (role, file) pairs the graph must load.
    models: &'static [(ModelRole, &'static str)],
    loras: &'static [&'static str],
    steps: u32,
    cfg: f64,
}

const UMT5: (ModelRole, &str) = (
    ModelRole::TextEncoder,
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
);
const VAE21: (ModelRole, &str) = (ModelRole::Vae, "wan_2.1_vae.safetensors");
const VAE22: (ModelRole, &str) = (ModelRole::Vae, "wan2.2_vae.safetensors");
const T2V_HIGH: (ModelRole, &str) = (
    ModelRole::HighNoise,
    "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors",
);
const T2V_LOW: (ModelRole, &str) = (
    ModelRole::LowNoise,
    "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors",
);
const I2V_HIGH: (ModelRole, &str) = (
    ModelRole::HighNoise,
    "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors",
);
const I2V_LOW: (ModelRole, &str) = (
    ModelRole::LowNoise,
    "wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors",
);
const TI2V_5B: (ModelRole, &str) = (ModelRole::Single, "wan2.2_ti2v_5B_fp16.safetensors");
const T2V_LORAS: &[&str] = &[
    "wan2.2_t2v_lightx2v_4steps_lora_v1.1_high_noise.safetensors",
    "wan2.2_t2v_lightx2v_4steps_lora_v1.1_low_noise.safetensors",
];
const I2V_LORAS: &[&str] = &[
    "wan2.2_i2v_lightx2v_4steps_lora_v1_high_noise.safetensors",
    "wan2.2_i2v_lightx2v_4steps_lora_v1_low_noise.safetensors",
];

const EXPECTED: &[Expected] = &[
    Expected {
        file: "wan22-14b-t2v.json",
        family: Family::T2v,
        frame_node: "EmptyHunyuanLatentVideo",
        models: &[T2V_HIGH, T2V_LOW, UMT5, VAE21],
        loras: &[],
        steps: 20,
        cfg: 3.5,
    },
    Expected {
        file: "wan22-14b-t2v-4step.json",
        family: Family::T2v,
        frame_node: "EmptyHunyuanLatentVideo",
        models: &[T2V_HIGH, T2V_LOW, UMT5, VAE21],
        loras: T2V_LORAS,
        steps: 4,
        cfg: 1.0,
    },
    Expected {
        file: "wan22-14b-i2v.json",
        family: Family::I2v,
        frame_node: "WanImageToVideo",
        models: &[I2V_HIGH, I2V_LOW, UMT5, VAE21],
        loras: &[],
        steps: 20,
        cfg: 3.5,
    },
    Expected {
        file: "wan22-14b-i2v-4step.json",
        family: Family::I2v,
        frame_node: "WanImageToVideo",
        models: &[I2V_HIGH, I2V_LOW, UMT5, VAE21],
        loras: I2V_LORAS,
        steps: 4,
        cfg: 1.0,
    },
    Expected {
        file: "wan22-5b-t2v.json",
        family: Family::Ti2v,
        frame_node: "Wan22ImageToVideoLatent",
        models: &[TI2V_5B, UMT5, VAE22],
        loras: &[],
        steps: 30,
        cfg: 5.0,
    },
    Expected {
        file: "wan22-5b-i2v.json",
        family: Family::Ti2v,
        frame_node: "Wan22ImageToVideoLatent",
        models: &[TI2V_5B, UMT5, VAE22],
        loras: &[],
        steps: 30,
        cfg: 5.0,
    },
];

fn shipped_preset(file: &str) -> Preset {
    let shipped = SHIPPED
        .iter()
        .find(|s| s.file == file)
        .unwrap_or_else(|| panic!("{file} is not shipped"));
    Preset::parse(shipped.text.as_bytes()).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn value_of(setting: &Option<wan_pilot::workflow::recognise::Setting>) -> Option<f64> {
    setting.as_ref().and_then(|s| s.value)
}

fn check_inspection(file: &str, want: &Expected, preset: &Preset, got: &Inspection) {
    let d = preset.defaults;
    assert_eq!(got.format, "api", "{file}");
    assert_eq!(got.family, want.family, "{file}: {}", got.family_reason);
    let frames = got
        .frames
        .as_ref()
        .unwrap_or_else(|| panic!("{file}: no frame node"));
    assert_eq!(frames.class_type, want.frame_node, "{file}");
    assert_eq!(frames.input, "length", "{file}");
    assert!(frames.active, "{file}");
    assert_eq!(frames.value, Some(f64::from(d.frames)), "{file}: frames");
    assert!(
        got.other_frame_nodes.is_empty(),
        "{file}: {:?}",
        got.other_frame_nodes
    );
    assert_eq!(
        value_of(&got.width),
        Some(f64::from(d.width)),
        "{file}: width"
    );
    assert_eq!(
        value_of(&got.height),
        Some(f64::from(d.height)),
        "{file}: height"
    );
    assert_eq!(value_of(&got.fps), Some(d.fps), "{file}: fps");
    assert_eq!((d.frames - 1) % 4, 0, "{file}: frames are 4n+1");
    assert_eq!(
        (d.width % 16, d.height % 16),
        (0, 0),
        "{file}: size on the 16 grid"
    );
    for (role, name) in want.models {
        assert!(
            got.models
                .iter()
                .any(|m| m.file == *name && m.role == *role && m.active),
            "{file}: no active {role:?} {name}: {:?}",
            got.models
        );
    }
    let loras: Vec<&str> = got
        .models
        .iter()
        .filter(|m| m.role == ModelRole::Lora)
        .map(|m| m.file.as_str())
        .collect();
    assert_eq!(loras, want.loras, "{file}: LoRAs");
    assert_eq!(
        got.models.len(),
        want.models.len() + want.loras.len(),
        "{file}: {:?}",
        got.models
    );
    assert!(!got.samplers.is_empty(), "{file}");
    for sampler in &got.samplers {
        assert_eq!(
            sampler.steps,
            Some(f64::from(want.steps)),
            "{file}: {sampler:?}"
        );
        assert_eq!(sampler.cfg, Some(want.cfg), "{file}: {sampler:?}");
    }
    assert_eq!(d.steps, want.steps, "{file}: declared steps");
    if want.models.iter().any(|(r, _)| *r == ModelRole::HighNoise) {
        // The two experts split one schedule: high noise from 0 to the split, low noise after.
        assert_eq!(got.samplers.len(), 2, "{file}");
        let split = f64::from(want.steps / 2);
        assert_eq!(
            (got.samplers[0].start, got.samplers[0].end),
            (Some(0.0), Some(split))
        );
        assert_eq!(got.samplers[1].start, Some(split), "{file}");
    }
    assert!(
        got.compile.is_empty() && got.block_swap.is_empty(),
        "{file}"
    );
    assert_eq!(got.outputs.len(), 1, "{file}");
    assert_eq!(got.outputs[0].class_type, "SaveVideo", "{file}");
    assert!(got.warnings.is_empty(), "{file}: {:?}", got.warnings);
}

#[test]
fn every_shipped_preset_is_one_of_ours_and_nothing_else() {
    let shipped: Vec<&str> = SHIPPED.iter().map(|s| s.file).collect();
    let expected: Vec<&str> = EXPECTED.iter().map(|e| e.file).collect();
    let mut a = shipped.clone();
    a.sort();
    let mut b = expected;
    b.sort();
    assert_eq!(a, b);
    // Every file in workflows/ is shipped (none forgotten in the include list).
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows");
    let mut on_disk: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    on_disk.sort();
    assert_eq!(on_disk, a);
    for s in SHIPPED {
        let preset = shipped_preset(s.file);
        // The embedded text is the file's text (include_str!), in this build's format.
        assert_eq!(fs::read_to_string(dir.join(s.file)).unwrap(), s.text);
        let raw: Value = serde_json::from_str(s.text).unwrap();
        assert_eq!(raw["wan_pilot_preset"], json!(PRESET_FORMAT_VERSION));
        // Written back, a preset is byte-identical: the format is stable.
        assert_eq!(
            String::from_utf8(preset.to_file_bytes()).unwrap(),
            s.text,
            "{}",
            s.file
        );
    }
}

#[test]
fn shipped_prompts_inspect_as_their_defaults_say() {
    let defs = NodeDefs::bundled();
    for want in EXPECTED {
        let preset = shipped_preset(want.file);
        // The inner prompt, as the window reads a chosen preset…
        let loaded = preset.to_loaded().unwrap();
        assert!(
            loaded.reads_prompt() && loaded.ui.is_none(),
            "{}",
            want.file
        );
        let got = inspect(&loaded, defs).unwrap();
        check_inspection(want.file, want, &preset, &got);
        // …and the whole file, as `wan-pilot inspect FILE` and Open read it: the same facts.
        let text = SHIPPED.iter().find(|s| s.file == want.file).unwrap().text;
        let whole = inspect(&load(text.as_bytes()).unwrap(), defs).unwrap();
        assert_eq!(whole, got, "{}", want.file);
        // The image-to-video presets take their start image from a LoadImage node.
        let prompt = preset.api_prompt().unwrap();
        let loads_image = prompt.nodes.values().any(|n| n.class_type == "LoadImage");
        assert_eq!(loads_image, want.file.contains("i2v"), "{}", want.file);
    }
}

#[test]
fn shipped_model_names_are_the_official_ones_in_the_corpus() {
    // The corpus' EXPECTED.tsv lists the diffusion models real workflows load.
    let mut listed = String::new();
    for tsv in ["EXPECTED.tsv", "community/EXPECTED.tsv"] {
        listed += &fs::read_to_string(common::shared_workflows().join(tsv)).unwrap();
    }
    // LoRA, text encoder and VAE file names appear in the corpus workflows themselves.
    let official =
        fs::read_to_string(common::shared_workflows().join("official_wan22_14B_t2v_flat.json"))
            .unwrap()
            + &fs::read_to_string(
                common::shared_workflows().join("official_wan22_14B_i2v_flat.json"),
            )
            .unwrap()
            + &fs::read_to_string(common::shared_workflows().join("official_wan22_5B_ti2v.json"))
                .unwrap();
    for want in EXPECTED {
        for (role, name) in want.models {
            let source = if matches!(role, ModelRole::TextEncoder | ModelRole::Vae) {
                &official
            } else {
                &listed
            };
            assert!(
                source.contains(name),
                "{}: {name} is not an official name",
                want.file
            );
        }
        for lora in want.loras {
            assert!(official.contains(lora), "{}: {lora}", want.file);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// POST /prompt: the stand-in always, a real ComfyUI when asked
// ---------------------------------------------------------------------------------------------

/// A small PNG to upload as the start image.
fn start_image(dir: &Path) -> PathBuf {
    let path = dir.join("wan-pilot-preset-check.png");
    image::RgbImage::from_pixel(64, 64, image::Rgb([200, 120, 40]))
        .save(&path)
        .unwrap();
    path
}

/// The preset's prompt with its LoadImage pointing at `image` (the uploaded name).
fn prompt_with_image(preset: &Preset, image: &str) -> Value {
    let mut prompt = Value::Object(preset.prompt.clone());
    for node in prompt.as_object_mut().unwrap().values_mut() {
        if node["class_type"] == "LoadImage" {
            node["inputs"]["image"] = json!(image);
        }
    }
    prompt
}

/// Submits every shipped preset. Returns, per preset, the model files the server refused as
/// `value_not_in_list` (empty: accepted). Any other refusal fails the test. Accepted prompts are
/// interrupted and removed from the queue right away.
async fn submit_all(client: &Client, scratch: &Path) -> Vec<(String, Vec<String>)> {
    let uploaded = client
        .upload_image(&start_image(scratch), true)
        .await
        .expect("upload the start image");
    let image = if uploaded.subfolder.is_empty() {
        uploaded.name.clone()
    } else {
        format!("{}/{}", uploaded.subfolder, uploaded.name)
    };
    let client_id = new_id("wan-pilot-presets");
    let mut results = Vec::new();
    for shipped in SHIPPED {
        let preset = shipped_preset(shipped.file);
        let prompt = prompt_with_image(&preset, &image);
        let prompt_id = new_id("preset-check");
        match client.submit(&prompt, &client_id, &prompt_id, None).await {
            Ok(accepted) => {
                assert!(
                    accepted.ignored_outputs().is_empty(),
                    "{}: {:?}",
                    shipped.file,
                    accepted.ignored_outputs()
                );
                // Nothing is to be generated: stop it whether it waits or already runs.
                let _ = client
                    .delete_from_queue(std::slice::from_ref(&prompt_id))
                    .await;
                let _ = client.interrupt(Some(&prompt_id)).await;
                results.push((shipped.file.to_string(), Vec::new()));
            }
            Err(ClientError::Refused {
                refusal, reasons, ..
            }) => {
                let mut missing = Vec::new();
                for (node, entry) in &refusal.node_errors {
                    for error in entry["errors"].as_array().into_iter().flatten() {
                        let input = error["extra_info"]["input_name"].as_str().unwrap_or("");
                        let value = error["extra_info"]["received_value"].as_str().unwrap_or("");
                        let model_file =
                            input.ends_with("_name") && value.ends_with(".safetensors");
                        assert!(
                            error["type"] == "value_not_in_list" && model_file,
                            "{}: node {node} refused for more than a missing model file: {reasons:?}",
                            shipped.file
                        );
                        missing.push(value.to_string());
                    }
                }
                assert!(!missing.is_empty(), "{}: {reasons:?}", shipped.file);
                results.push((shipped.file.to_string(), missing));
            }
            Err(e) => panic!("{}: {e}", shipped.file),
        }
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standin_accepts_every_shipped_prompt() {
    let tmp = temp_dir("presets-standin");
    let root = standin_install(&tmp, json!({}));
    let port = free_port();
    let mut server = Standin::start(&root, port, &[]);
    server.remove_on_drop = Some(tmp.clone());
    assert!(
        server.wait_ready(Duration::from_secs(30)),
        "{}",
        server.stderr()
    );
    let client = Client::new(&format!("http://127.0.0.1:{port}")).unwrap();
    for (file, missing) in submit_all(&client, &tmp).await {
        assert!(
            missing.is_empty(),
            "{file}: the stand-in refused {missing:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_model_file_is_told_apart_from_a_broken_prompt() {
    // The classification the real-server check relies on, against the stand-in's own refusal.
    let tmp = temp_dir("presets-missing");
    let root = standin_install(
        &tmp,
        json!({"missing_models": ["wan2.2_vae.safetensors", T2V_HIGH.1]}),
    );
    let port = free_port();
    let mut server = Standin::start(&root, port, &[]);
    server.remove_on_drop = Some(tmp.clone());
    assert!(
        server.wait_ready(Duration::from_secs(30)),
        "{}",
        server.stderr()
    );
    let client = Client::new(&format!("http://127.0.0.1:{port}")).unwrap();
    let results = submit_all(&client, &tmp).await;
    for (file, missing) in results {
        let want: Vec<&str> = match file.as_str() {
            f if f.starts_with("wan22-5b") => vec!["wan2.2_vae.safetensors"],
            f if f.starts_with("wan22-14b-t2v") => vec![T2V_HIGH.1],
            _ => vec![],
        };
        assert_eq!(missing, want, "{file}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a running ComfyUI 0.8.0: set WAN_PILOT_COMFYUI_URL and pass --ignored"]
async fn a_real_comfyui_validates_every_shipped_prompt() {
    let base = std::env::var("WAN_PILOT_COMFYUI_URL")
        .expect("WAN_PILOT_COMFYUI_URL names the ComfyUI server to check against");
    let client = Client::new(&base).unwrap();
    let stats = client.system_stats().await.expect("the server answers");
    println!("server: {stats:?}");
    let tmp = temp_dir("presets-real");
    let results = submit_all(&client, &tmp).await;
    let _ = fs::remove_dir_all(&tmp);
    for (file, missing) in &results {
        if missing.is_empty() {
            println!("{file}: accepted");
        } else {
            println!(
                "{file}: valid, but this server lacks {}",
                missing.join(", ")
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------------------------

fn user_preset(name: &str) -> Preset {
    let mut preset = shipped_preset("wan22-14b-t2v-4step.json");
    preset.name = name.to_string();
    preset.description = "mine".into();
    preset.defaults.frames = 49;
    preset
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_new_store_lists_the_shipped_presets_read_only() {
    let tmp = temp_dir("presets-empty");
    let store = PresetStore::in_dir(tmp.join("presets"));
    let listing = store.list().unwrap();
    assert!(listing.broken.is_empty() && listing.kept_aside.is_empty());
    assert_eq!(listing.presets.len(), SHIPPED.len());
    for (entry, shipped) in listing.presets.iter().zip(SHIPPED) {
        assert_eq!(entry.id, PresetId::Shipped(shipped.file.into()));
        assert!(entry.read_only && entry.path.is_none());
        assert!(entry.name.starts_with("Wan 2.2"), "{}", entry.name);
    }
    let first = &listing.presets[0].id;
    assert!(matches!(
        store.delete(first),
        Err(PresetError::ReadOnly { .. })
    ));
    assert!(matches!(
        store.rename(first, "x"),
        Err(PresetError::ReadOnly { .. })
    ));
    let err = store.update(first, &user_preset("x")).unwrap_err();
    assert!(err.to_string().contains("duplicate it"), "{err}");
    // Listing created nothing on disk.
    assert!(!tmp.join("presets").exists());
    fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn save_load_update_rename_duplicate_delete() {
    let tmp = temp_dir("presets-crud");
    let dir = tmp.join("presets");
    let store = PresetStore::in_dir(&dir);

    let mine = user_preset("  My fox clip  ");
    let id = store.save_new(&mine).unwrap();
    assert_eq!(id, PresetId::User("my-fox-clip.json".into()));
    let loaded = store.load(&id).unwrap();
    assert_eq!(loaded.name, "My fox clip");
    assert_eq!(loaded.defaults.frames, 49);
    assert_eq!(loaded.prompt, mine.prompt);
    assert_eq!(
        files_in(&dir),
        vec!["my-fox-clip.json"],
        "no temporary files left"
    );

    // Names are unique, case-insensitively, shipped ones included.
    assert!(matches!(
        store.save_new(&user_preset("my FOX clip")),
        Err(PresetError::NameTaken { .. })
    ));
    assert!(matches!(
        store.save_new(&user_preset("Wan 2.2 14B · text to video")),
        Err(PresetError::NameTaken { .. })
    ));
    assert!(matches!(
        store.save_new(&user_preset("   ")),
        Err(PresetError::EmptyName)
    ));

    // Update keeps the file; rename changes the shown name only.
    let mut changed = loaded.clone();
    changed.defaults.frames = 97;
    store.update(&id, &changed).unwrap();
    assert_eq!(store.load(&id).unwrap().defaults.frames, 97);
    store.rename(&id, "Fox, longer").unwrap();
    assert_eq!(store.load(&id).unwrap().name, "Fox, longer");
    store.rename(&id, "Fox, longer").unwrap();

    // Duplicating a shipped preset gives an editable copy.
    let shipped = PresetId::Shipped("wan22-5b-t2v.json".into());
    let copy = store.duplicate(&shipped).unwrap();
    let copy_preset = store.load(&copy).unwrap();
    assert_eq!(copy_preset.name, "Wan 2.2 5B · text to video (copy)");
    assert_eq!(copy_preset.prompt, store.load(&shipped).unwrap().prompt);
    let again = store.duplicate(&shipped).unwrap();
    assert_ne!(again, copy);
    assert_eq!(
        store.load(&again).unwrap().name,
        "Wan 2.2 5B · text to video (copy) (2)"
    );
    assert!(matches!(
        store.rename(&again, "fox, LONGER"),
        Err(PresetError::NameTaken { .. })
    ));

    let listing = store.list().unwrap();
    let users: Vec<&str> = listing
        .presets
        .iter()
        .filter(|p| !p.read_only)
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(
        users,
        vec![
            "Fox, longer",
            "Wan 2.2 5B · text to video (copy)",
            "Wan 2.2 5B · text to video (copy) (2)"
        ]
    );
    let entry = listing.presets.iter().find(|p| p.id == id).unwrap();
    assert_eq!(
        entry.path.as_deref(),
        Some(dir.join("my-fox-clip.json").as_path())
    );

    store.delete(&copy).unwrap();
    assert!(matches!(
        store.update(&copy, &user_preset("Back again")),
        Err(PresetError::NotFound { .. })
    ));
    assert!(matches!(
        store.load(&copy),
        Err(PresetError::NotFound { .. })
    ));
    assert!(matches!(
        store.delete(&copy),
        Err(PresetError::NotFound { .. })
    ));
    // Ids are plain file names: nothing outside the folder is reachable.
    let outside = PresetId::User("../settings.json".into());
    assert!(matches!(
        store.load(&outside),
        Err(PresetError::NotFound { .. })
    ));
    assert!(matches!(
        store.delete(&outside),
        Err(PresetError::NotFound { .. })
    ));
    assert_eq!(store.list().unwrap().presets.len(), SHIPPED.len() + 2);
    fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn export_and_import_one_file() {
    let tmp = temp_dir("presets-io");
    let store = PresetStore::in_dir(tmp.join("presets"));
    let shipped = PresetId::Shipped("wan22-14b-i2v-4step.json".into());

    let exported = tmp.join("out").join("shared.json");
    store.export(&shipped, &exported).unwrap();
    let text = fs::read_to_string(&exported).unwrap();
    assert_eq!(
        Preset::parse(text.as_bytes()).unwrap(),
        store.load(&shipped).unwrap()
    );

    // Importing it back: the name is in use (the shipped preset), so it gets a number.
    let id = store.import(&exported).unwrap();
    let imported = store.load(&id).unwrap();
    assert_eq!(imported.name, "Wan 2.2 14B · image to video · 4 steps (2)");
    assert!(exported.exists(), "the imported file stays where it was");

    // A plain API prompt imports too, named after its file, defaults read from the graph.
    let api = common::shared_workflows().join("api_wan22_14B_i2v_lightning_4step.json");
    let id = store.import(&api).unwrap();
    let preset = store.load(&id).unwrap();
    assert_eq!(preset.name, "api_wan22_14B_i2v_lightning_4step");
    assert_eq!(
        preset.defaults,
        PresetDefaults {
            width: 512,
            height: 512,
            frames: 33,
            steps: 4,
            fps: 16.0
        }
    );
    let got = inspect(&preset.to_loaded().unwrap(), NodeDefs::bundled()).unwrap();
    assert_eq!(got.family, Family::I2v);

    // Something that is neither is refused with the reason, and left alone.
    let junk = tmp.join("junk.json");
    fs::write(&junk, "{\"hello\": 1}").unwrap();
    let err = store.import(&junk).unwrap_err();
    assert!(matches!(err, PresetError::NotImportable { .. }), "{err}");
    assert!(
        err.to_string().contains("junk.json") && err.to_string().contains("not a wan-pilot preset"),
        "{err}"
    );
    assert!(junk.exists());
    let newer = tmp.join("newer.json");
    fs::write(
        &newer,
        text.replace("\"wan_pilot_preset\": 1", "\"wan_pilot_preset\": 9"),
    )
    .unwrap();
    let err = store.import(&newer).unwrap_err();
    assert!(err.to_string().contains("newer wan-pilot"), "{err}");
    fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn broken_and_newer_files_are_reported_and_kept_aside() {
    let tmp = temp_dir("presets-broken");
    let dir = tmp.join("presets");
    let store = PresetStore::in_dir(&dir);
    let good = store.save_new(&user_preset("Good one")).unwrap();
    let good_text = fs::read_to_string(dir.join(good.file())).unwrap();

    fs::write(
        dir.join("truncated.json"),
        &good_text[..good_text.len() / 2],
    )
    .unwrap();
    fs::write(
        dir.join("future.json"),
        good_text.replace("\"wan_pilot_preset\": 1", "\"wan_pilot_preset\": 2"),
    )
    .unwrap();
    fs::write(dir.join("other.json"), "{\"nodes\": []}").unwrap();
    fs::write(
        dir.join("no-defaults.json"),
        "{\"wan_pilot_preset\": 1, \"name\": \"x\", \"prompt\": {}}",
    )
    .unwrap();
    let dangling = good_text.replace("[\n          \"15\",", "[\n          \"999\",");
    assert_ne!(dangling, good_text);
    fs::write(dir.join("dangling.json"), &dangling).unwrap();
    // Not preset files at all: left alone, not listed.
    fs::write(dir.join("notes.txt"), "hello").unwrap();
    fs::write(dir.join("half.json.tmp-1-2"), "{").unwrap();

    let listing = store.list().unwrap();
    assert_eq!(listing.presets.len(), SHIPPED.len() + 1);
    let mut reasons: Vec<(String, String)> = listing
        .broken
        .iter()
        .map(|b| {
            let name = b.file.file_name().unwrap().to_string_lossy().into_owned();
            let kept = b.kept_as.as_ref().expect("moved aside");
            assert_eq!(kept, &dir.join(format!("{name}.broken")));
            assert!(kept.exists() && !b.file.exists());
            (name, b.reason.clone())
        })
        .collect();
    reasons.sort();
    let names: Vec<&str> = reasons.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "dangling.json",
            "future.json",
            "no-defaults.json",
            "other.json",
            "truncated.json"
        ]
    );
    let reason = |file: &str| &reasons.iter().find(|(n, _)| n == file).unwrap().1;
    assert!(reason("truncated.json").contains("not valid JSON"));
    assert!(reason("future.json").contains("newer wan-pilot (preset format 2"));
    assert!(reason("other.json").contains("not a wan-pilot preset"));
    assert!(
        reason("no-defaults.json").contains("defaults"),
        "{}",
        reason("no-defaults.json")
    );
    assert!(
        reason("dangling.json").contains("prompt is broken"),
        "{}",
        reason("dangling.json")
    );
    // The bytes are kept as they were.
    assert_eq!(
        fs::read_to_string(dir.join("truncated.json.broken")).unwrap(),
        good_text[..good_text.len() / 2]
    );
    assert_eq!(listing.kept_aside.len(), 5);
    for broken in &listing.broken {
        let text = broken.to_string();
        assert!(
            text.contains(".json.broken") && text.contains(&broken.reason),
            "{text}"
        );
    }

    // The next listing reports nothing new but still points at the kept files.
    let again = store.list().unwrap();
    assert!(again.broken.is_empty());
    assert_eq!(again.kept_aside, listing.kept_aside);
    assert!(dir.join("notes.txt").exists() && dir.join("half.json.tmp-1-2").exists());

    // A file broken again under the same name goes to `.broken-2`, the first one kept.
    fs::write(dir.join("truncated.json"), "{").unwrap();
    let third = store.list().unwrap();
    assert_eq!(
        third.broken[0].kept_as.as_deref(),
        Some(dir.join("truncated.json.broken-2").as_path())
    );

    // A file that breaks between listing and loading is reported by load.
    fs::write(dir.join(good.file()), "garbage").unwrap();
    match store.load(&good) {
        Err(PresetError::Broken(broken)) => {
            assert!(broken.kept_as.is_some_and(|p| p.exists()));
        }
        other => panic!("{other:?}"),
    }
    // A new preset never takes the name of a kept-aside file.
    let id = store.save_new(&user_preset("Truncated")).unwrap();
    assert_eq!(id, PresetId::User("truncated-2.json".into()));
    fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn a_preset_from_the_current_state() {
    // What "save as preset" does: the window's API prompt plus defaults read from the graph.
    let source = shipped_preset("wan22-5b-i2v.json");
    let prompt = source.api_prompt().unwrap();
    let inspection = inspect(&source.to_loaded().unwrap(), NodeDefs::bundled()).unwrap();
    let defaults = PresetDefaults::from_inspection(&inspection, PresetDefaults::default());
    assert_eq!(defaults, source.defaults);
    let preset = Preset::from_api("Mine", " my notes ", defaults, &prompt).unwrap();
    assert_eq!(preset.description, "my notes");
    assert_eq!(preset.prompt, source.prompt);
    let bad = PresetDefaults {
        width: 0,
        ..defaults
    };
    assert!(matches!(
        Preset::from_api("Mine", "", bad, &prompt),
        Err(PresetError::Invalid(_))
    ));
    assert!(matches!(
        Preset::from_api("\n", "", defaults, &prompt),
        Err(PresetError::EmptyName)
    ));
}

// ---------------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------------

#[test]
fn settings_round_trip_and_start_from_defaults() {
    let tmp = temp_dir("settings");
    let loaded = load_settings_in(&tmp).unwrap();
    assert_eq!(loaded.settings, Settings::default());
    assert!(loaded.message().is_none());

    let settings = Settings {
        comfyui_dir: Some(PathBuf::from("/opt/ComfyUI")),
        server_url: Some("http://127.0.0.1:8188".into()),
        extra_args: vec!["--fast".into(), "--use-sage-attention".into()],
        reserve_vram_gib: Some(1.5),
        margin_gib: 3.0,
        oom_retry: false,
        output_dir: Some(PathBuf::from("/videos")),
        theme: Theme::Light,
        picked_card: Some("RTX 4090".into()),
        ..Settings::default()
    };
    let path = save_settings_in(&tmp, &settings).unwrap();
    assert_eq!(path, tmp.join(SETTINGS_FILE));
    assert_eq!(
        files_in(&tmp),
        vec![SETTINGS_FILE],
        "no temporary files left"
    );
    let text = fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("\"theme\": \"light\"") && text.contains("\"version\": 1"),
        "{text}"
    );
    let loaded = load_settings_in(&tmp).unwrap();
    assert_eq!(loaded.settings, settings);
    assert!(loaded.problems.is_empty() && loaded.set_aside.is_none());
    fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn broken_settings_are_kept_aside_and_defaults_used() {
    let tmp = temp_dir("settings-broken");
    let path = tmp.join(SETTINGS_FILE);
    for (bytes, why) in [
        (&b"{\"theme\": \"dark\""[..], "not valid JSON"),
        (
            &b"{\"version\": 2, \"theme\": \"dark\"}"[..],
            "newer wan-pilot",
        ),
        (&b"\"dark\""[..], "not a JSON object"),
    ] {
        fs::write(&path, bytes).unwrap();
        let loaded = load_settings_in(&tmp).unwrap();
        assert_eq!(loaded.settings, Settings::default());
        let aside = loaded.set_aside.clone().expect("set aside");
        assert!(aside.reason.contains(why), "{}", aside.reason);
        assert_eq!(fs::read(&aside.moved_to).unwrap(), bytes);
        assert!(!path.exists());
        let message = loaded.message().unwrap();
        assert!(
            message.contains(why) && message.contains("default settings"),
            "{message}"
        );
    }
    let kept: Vec<String> = files_in(&tmp);
    assert_eq!(
        kept,
        vec![
            "settings.json.broken",
            "settings.json.broken-2",
            "settings.json.broken-3"
        ]
    );

    // One bad value: the rest is kept, the file stays, the message names the key.
    fs::write(&path, "{\"theme\": \"sepia\", \"margin_gib\": 4.0}").unwrap();
    let loaded = load_settings_in(&tmp).unwrap();
    assert_eq!(loaded.settings.margin_gib, 4.0);
    assert_eq!(loaded.settings.theme, Theme::System);
    assert!(loaded.set_aside.is_none() && path.exists());
    assert!(
        loaded.message().unwrap().contains("theme"),
        "{:?}",
        loaded.message()
    );
    fs::remove_dir_all(&tmp).unwrap();
}
