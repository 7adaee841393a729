//! Model files in a ComfyUI install, as a user has them: `models/…` and the folders of an
//! `extra_model_paths.yaml`, found by the names workflows use, sized from their headers — and
//! `plan --comfyui DIR` saying so.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use wan_pilot::budget::weights::ArchGuess;
use wan_pilot::comfy::models::{
    ModelFileError, ModelFolder, ModelFolders, ModelPathsError, read_header,
};

const HIGH: &str = "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors";
const LOW: &str = "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors";
/// Bytes ComfyUI holds for the tiny fp8_scaled fixture (see `budget::header_facts`'s tests).
const FP8_SCALED_RESIDENT_BYTES: f64 = 14_536.0;

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path)
}

fn fixture(name: &str) -> PathBuf {
    data("weights").join(name)
}

/// A fresh, empty folder for one test.
fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wan-pilot-models-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn put(from: &Path, to: &Path) {
    fs::create_dir_all(to.parent().unwrap()).unwrap();
    fs::copy(from, to).unwrap();
}

/// `<root>/ComfyUI` with models in its own folders, and the fixture YAML pointing at
/// `<root>/shared models` and `<root>/a111`. Returns the ComfyUI folder.
fn fake_install(tag: &str) -> PathBuf {
    let root = temp_dir(tag);
    let comfy = root.join("ComfyUI");
    let fp8 = fixture("tiny_wan_t2v_fp8_scaled.safetensors");
    let fp16 = fixture("tiny_wan21_i2v_bare_fp16.safetensors");
    put(&fp8, &comfy.join("models/diffusion_models").join(HIGH));
    put(
        &fp16,
        &comfy.join("models/diffusion_models/WAN/wan2.1_i2v_480p_14B_fp16.safetensors"),
    );
    put(
        &fixture("tiny_wan_i2v_mixed.gguf"),
        &comfy.join("models/unet/wan2.2_i2v_high_noise_14B_Q4_K_M.gguf"),
    );
    put(
        &fixture("tiny_wan_lora_rank4.safetensors"),
        &comfy.join("models/loras/lightx2v_rank4.safetensors"),
    );
    put(
        &data("comfy_models/extra_model_paths.yaml"),
        &comfy.join("extra_model_paths.yaml"),
    );
    let shared = root.join("shared models");
    put(&fp8, &shared.join("wan22").join(LOW));
    put(
        &fp16,
        &shared.join("wan22/WanVideo/2_2/wan2.2_i2v_low_noise_14B_fp16.safetensors"),
    );
    put(&fp16, &shared.join("encoders/other/umt5_other.safetensors"));
    put(&fp16, &root.join("a111/models/Unet/from_a111.safetensors"));
    comfy
}

#[test]
fn finds_models_by_the_names_workflows_use() {
    let comfy = fake_install("find");
    let folders = ModelFolders::locate(&comfy).unwrap();
    let diffusion = Some(ModelFolder::DiffusionModels);
    let root = comfy.parent().unwrap();

    // The install's own folder, by plain name.
    let high = folders.find(HIGH, diffusion).unwrap();
    assert_eq!(high, comfy.join("models/diffusion_models").join(HIGH));
    // A subfolder, as the loader lists it.
    let sub = folders
        .find("WAN/wan2.1_i2v_480p_14B_fp16.safetensors", diffusion)
        .unwrap();
    assert!(sub.ends_with("diffusion_models/WAN/wan2.1_i2v_480p_14B_fp16.safetensors"));
    // The legacy `unet` folder counts as diffusion_models.
    assert!(
        folders
            .find("wan2.2_i2v_high_noise_14B_Q4_K_M.gguf", diffusion)
            .is_some()
    );
    // The YAML's single-path folder, under a quoted base path with a space.
    let low = folders.find(LOW, diffusion).unwrap();
    assert_eq!(low, root.join("shared models/wan22").join(LOW));
    // A Windows workflow's backslashes.
    let windows = folders
        .find(
            "WanVideo\\2_2\\wan2.2_i2v_low_noise_14B_fp16.safetensors",
            diffusion,
        )
        .unwrap();
    assert!(windows.ends_with("wan22/WanVideo/2_2/wan2.2_i2v_low_noise_14B_fp16.safetensors"));
    // The second line of a `|` block, and the legacy `unet` key of another section.
    assert!(
        folders
            .find("umt5_other.safetensors", Some(ModelFolder::TextEncoders))
            .is_some()
    );
    assert!(folders.find("from_a111.safetensors", diffusion).is_some());

    // Missing: None, not an error; another kind's folder is not searched, an unknown kind's is.
    assert_eq!(folders.find("no_such_model.safetensors", diffusion), None);
    assert_eq!(folders.find("lightx2v_rank4.safetensors", diffusion), None);
    assert!(folders.find("lightx2v_rank4.safetensors", None).is_some());
    // A name cannot climb out of the models folders.
    assert_eq!(
        folders.find("../extra_model_paths.yaml", Some(ModelFolder::Loras)),
        None
    );
    let _ = fs::remove_dir_all(root);
}

#[test]
fn headers_are_read_without_the_weights() {
    let comfy = fake_install("headers");
    let folders = ModelFolders::locate(&comfy).unwrap();
    let high = folders
        .find(HIGH, Some(ModelFolder::DiffusionModels))
        .unwrap();
    let header = read_header(&high).unwrap();
    assert_eq!(header.file_bytes, 25_984);
    assert_eq!(header.summary.tensor_count, 96);
    assert_eq!(header.header.header_bytes, 10_552);
    assert!(!header.is_truncated());
    match &header.summary.arch {
        ArchGuess::WanDit {
            arch,
            is_scaled_fp8,
            ..
        } => {
            assert!(is_scaled_fp8);
            assert_eq!((arch.dim, arch.layers), (16, 2));
        }
        other => panic!("{other:?}"),
    }
    let gguf = folders
        .find(
            "wan2.2_i2v_high_noise_14B_Q4_K_M.gguf",
            Some(ModelFolder::DiffusionModels),
        )
        .unwrap();
    assert_eq!(read_header(&gguf).unwrap().summary.tensor_count, 69);

    // Only the header: the same answer when the weights are cut off, which it then notices.
    let cut = comfy.join("models/diffusion_models/cut.safetensors");
    let bytes = fs::read(&high).unwrap();
    fs::write(&cut, &bytes[..10_552 + 100]).unwrap();
    let partial = read_header(&cut).unwrap();
    assert_eq!(partial.header, header.header);
    assert!(partial.is_truncated());
    let _ = fs::remove_dir_all(comfy.parent().unwrap());
}

#[test]
fn a_header_larger_than_the_first_read_is_read_in_full() {
    // The fixture's JSON padded with spaces (the safetensors format allows it) to 1.5 MiB.
    let bytes = fs::read(fixture("tiny_wan_t2v_fp8_scaled.safetensors")).unwrap();
    let json_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let padded_len = 3 << 19;
    let mut padded = (padded_len as u64).to_le_bytes().to_vec();
    padded.extend_from_slice(&bytes[8..8 + json_len]);
    padded.resize(8 + padded_len, b' ');
    padded.extend_from_slice(&bytes[8 + json_len..]);
    let dir = temp_dir("big-header");
    let file = dir.join("big_header.safetensors");
    fs::write(&file, &padded).unwrap();
    let header = read_header(&file).unwrap();
    assert_eq!(header.header.header_bytes, 8 + padded_len as u64);
    assert_eq!(header.summary.tensor_count, 96);
    assert!(!header.is_truncated());
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn files_that_are_not_models_get_a_clear_error() {
    let dir = temp_dir("not-models");
    let html = dir.join("wan2.2_download_failed.safetensors");
    fs::write(
        &html,
        "<!DOCTYPE html><html><body>Access denied</body></html>",
    )
    .unwrap();
    let message = read_header(&html).unwrap_err().to_string();
    assert!(
        message.starts_with(&html.display().to_string()),
        "{message}"
    );
    assert!(
        message.contains("not a safetensors or GGUF file"),
        "{message}"
    );

    // A header that claims more than the file holds: cut short.
    let short = dir.join("short.safetensors");
    let mut bytes = 5_000u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{\"a\": ");
    fs::write(&short, &bytes).unwrap();
    let error = read_header(&short).unwrap_err();
    assert!(
        matches!(
            error,
            ModelFileError::Truncated {
                needed: 5_008,
                file_bytes: 14,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains(&short.display().to_string()));

    let missing = read_header(&dir.join("gone.safetensors")).unwrap_err();
    assert!(matches!(missing, ModelFileError::Read { .. }), "{missing}");
    assert!(matches!(
        read_header(&dir).unwrap_err(),
        ModelFileError::NotAFile { .. }
    ));
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn a_broken_yaml_names_its_file_and_line() {
    let comfy = temp_dir("broken-yaml");
    let yaml = comfy.join("extra_model_paths.yaml");
    fs::write(
        &yaml,
        "comfyui:\n  base_path: /models   # fine\n  vae: [one, two]\n",
    )
    .unwrap();
    let error = ModelFolders::locate(&comfy).unwrap_err();
    assert!(
        matches!(error, ModelPathsError::Yaml { line: 3, .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("{}:3: ", yaml.display())),
        "{message}"
    );
    assert!(
        matches!(
            ModelFolders::locate(&comfy.join("nowhere")),
            Err(ModelPathsError::NotAFolder { .. })
        ),
        "a folder that is not there"
    );
    // No YAML at all is fine: only models/… is searched.
    fs::remove_file(&yaml).unwrap();
    let folders = ModelFolders::locate(&comfy).unwrap();
    assert_eq!(
        folders.dirs(Some(ModelFolder::Vae)),
        vec![comfy.join("models/vae")]
    );
    let _ = fs::remove_dir_all(comfy);
}

fn plan(comfy: Option<&Path>, env_dir: Option<&Path>, data_dir: &Path) -> Output {
    let workflow = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/workflows/official_wan22_14B_t2v_flat.json");
    let mut command = Command::new(env!("CARGO_BIN_EXE_wan-pilot"));
    command.args([
        "plan",
        workflow.to_str().unwrap(),
        "--gpu",
        "RTX 4090",
        "--frames",
        "49",
        "--json",
    ]);
    if let Some(dir) = comfy {
        command.arg("--comfyui").arg(dir);
    }
    command.env_remove("WAN_PILOT_COMFYUI_DIR");
    if let Some(dir) = env_dir {
        command.env("WAN_PILOT_COMFYUI_DIR", dir);
    }
    command.env("WAN_PILOT_DATA_DIR", data_dir);
    command.output().expect("run wan-pilot")
}

fn plan_json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn assumptions(json: &Value) -> Vec<String> {
    json["assumptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn plan_sizes_the_models_it_finds_from_their_headers() {
    let comfy = fake_install("plan");
    let data_dir = comfy.parent().unwrap().join("data");
    for (flag, env) in [(Some(comfy.as_path()), None), (None, Some(comfy.as_path()))] {
        let json = plan_json(&plan(flag, env, &data_dir));
        let notes = assumptions(&json);
        let from_header = notes
            .iter()
            .find(|a| a.starts_with("sized from their file headers"))
            .unwrap_or_else(|| panic!("{notes:?}"));
        assert!(
            from_header.contains(HIGH) && from_header.contains(LOW),
            "{from_header}"
        );
        let from_name = notes
            .iter()
            .find(|a| a.starts_with("sized from their names only"))
            .unwrap_or_else(|| panic!("{notes:?}"));
        assert!(from_name.contains("not found under"), "{from_name}");
        assert!(
            from_name.contains("umt5_xxl_fp8_e4m3fn_scaled.safetensors")
                && from_name.contains("wan_2.1_vae.safetensors"),
            "{from_name}"
        );
        // Both experts are the tiny fp8_scaled file, at the bytes ComfyUI would hold.
        let experts = json["experts"].as_array().unwrap();
        assert_eq!(experts.len(), 2);
        for expert in experts {
            assert_eq!(expert["bytes"].as_f64(), Some(FP8_SCALED_RESIDENT_BYTES));
        }
    }

    // Without a ComfyUI folder every model is sized from its name, and plan says how to do better.
    let json = plan_json(&plan(None, None, &data_dir));
    let notes = assumptions(&json);
    assert!(
        notes
            .iter()
            .any(|a| a.starts_with("sized from their names only") && a.contains("--comfyui")),
        "{notes:?}"
    );
    assert!(
        !notes.iter().any(|a| a.contains("file headers")),
        "{notes:?}"
    );
    assert!(json["experts"][0]["bytes"].as_f64().unwrap() > 1e10);
    let _ = fs::remove_dir_all(comfy.parent().unwrap());
}

#[test]
fn plan_refuses_a_broken_yaml_in_one_line() {
    let comfy = temp_dir("plan-broken");
    let yaml = comfy.join("extra_model_paths.yaml");
    fs::write(&yaml, "comfyui:\n  base_path: \"C:\\ComfyUI\"\n").unwrap();
    let output = plan(Some(&comfy), None, &comfy.join("data"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("{}:2: ", yaml.display())),
        "{stderr}"
    );
    assert!(stderr.contains("single quotes"), "{stderr}");
    assert!(output.stdout.is_empty());
    let _ = fs::remove_dir_all(comfy);
}
