//! Where the budget model stands against real measurements (tests/data/measurements.tsv, each
//! row citing its source): the error of our physical peak and time, and beside it the error of
//! ComfyUI's own estimate and of the seed profile on the same rows. Run with `--nocapture` to see
//! the table (the README quotes it).

use std::path::Path;

use wan_pilot::budget::comfyui::{
    AttentionEstimate, Latent, MIB, WanVae, activation_estimate_bytes, memory_usage_factor,
};
use wan_pilot::budget::physical::{self, Coefficients, CompileMode, DitSize, TorchGeneration};
use wan_pilot::budget::projection::{Card, Expert, PhaseName, Settings, Workload, project};
use wan_pilot::budget::seed::seed_peak_bytes;
use wan_pilot::budget::time::{DitShape, TimeCoefficients};

const GIB: f64 = 1024.0 * MIB;

struct Row {
    id: String,
    fields: std::collections::HashMap<String, String>,
}

impl Row {
    fn text(&self, key: &str) -> &str {
        self.fields.get(key).map(String::as_str).unwrap_or("-")
    }

    fn number(&self, key: &str) -> Option<f64> {
        self.text(key).parse().ok()
    }
}

fn rows() -> Vec<Row> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/measurements.tsv");
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let fields: std::collections::HashMap<String, String> = header
                .iter()
                .zip(line.split('\t'))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Row {
                id: fields["id"].clone(),
                fields,
            }
        })
        .collect()
}

/// Relative error in percent.
fn error(predicted: f64, measured: f64) -> f64 {
    (predicted - measured) / measured * 100.0
}

#[test]
fn the_model_against_real_measurements() {
    let rows = rows();
    assert!(rows.len() >= 6);
    let mut report = vec![format!(
        "{:<4} {:>10} {:>14} {:>14} {:>14} {:>10} {:>12}",
        "row", "peak GiB", "ours", "ComfyUI est.", "seed", "s/step", "ours"
    )];
    let (mut ours_peak_err, mut comfy_peak_err, mut seed_peak_err, mut peaks) = (0.0, 0.0, 0.0, 0);
    let mut time_err = Vec::new();
    for row in &rows {
        let frames = row.number("frames").unwrap() as u32;
        let width = row.number("width").unwrap() as u32;
        let height = row.number("height").unwrap() as u32;
        let dit = DitShape {
            block_params: row.number("block_params").unwrap(),
            layers: row.number("layers").unwrap() as u32,
            dim: row.number("dim").unwrap() as u32,
        };
        let latent = Latent::of_video(frames, width, height, 8);
        let coefficients = Coefficients::prior(
            DitSize::of_dim(dit.dim),
            TorchGeneration::FusedRmsNorm,
            WanVae::V21,
        );
        let timing = TimeCoefficients::prior(row.number("fp16_tflops").unwrap());
        let cfg = row.number("cfg").unwrap();
        let steps = row.number("steps_per_expert").unwrap() as u32;
        let experts = row.number("experts").unwrap() as usize;
        let expert_bytes = row.number("expert_mib").unwrap() * MIB;
        let card = Card {
            total_bytes: row.number("free_mib").unwrap() * MIB,
            free_bytes: row.number("free_mib").unwrap() * MIB,
            fp16_tflops: row.number("fp16_tflops").unwrap(),
        };
        let workload = Workload {
            width,
            height,
            dit,
            is_vace: false,
            vae: WanVae::V21,
            experts: vec![
                Expert {
                    bytes: expert_bytes,
                    steps
                };
                experts
            ],
            text_encoder_bytes: row.number("text_encoder_gib").unwrap() * GIB,
            vae_bytes: 0.24 * GIB,
            encodes_clip: row.text("model").contains("I2V"),
            uses_cfg: cfg > 1.0,
            compiled_already: true,
        };
        let settings = Settings {
            reserve_bytes: row.number("reserve_gib").unwrap() * GIB,
            margin_bytes: 0.0,
            attention: wan_pilot::budget::comfyui::AttentionEstimate::Efficient,
        };
        let projection = project(&card, &workload, &settings, &coefficients, &timing, frames);
        let off = projection.modes.iter().find(|m| m.mode == "off").unwrap();

        // Peak: ours, ComfyUI's estimate (weights on the GPU + its activation estimate), the seed.
        let (ours, comfy) = match row.number("resident_gib") {
            // Rows outside ComfyUI's loader (block swap): the weights the log says were resident.
            Some(resident) => {
                let peak = physical::sampling_peak(
                    &coefficients,
                    latent,
                    resident * GIB,
                    1,
                    CompileMode::Off,
                );
                let allocated = peak.total_bytes - peak.allocator_cache_bytes;
                let factor = memory_usage_factor(dit.dim, false);
                let estimate =
                    activation_estimate_bytes(latent, 1, factor, 2, AttentionEstimate::Efficient);
                (allocated, resident * GIB + estimate)
            }
            None => {
                // ComfyUI's batch-1 estimate (its sampling estimate is for batch 2) on top of the
                // weights it keeps on the GPU while the first expert samples.
                let sampling = projection.phases.iter().find(|p| {
                    matches!(p.phase, PhaseName::HighNoiseSampling | PhaseName::Sampling)
                });
                let comfy = sampling.map_or(0.0, |p| {
                    p.weights_on_gpu_bytes + p.comfy_estimate_bytes / 2.0
                });
                (off.sampling_peak_bytes, comfy)
            }
        };
        let seed = seed_peak_bytes(latent, CompileMode::Off);
        let measured_peak = row.number("measured_peak_gib");
        if let Some(measured) = measured_peak {
            ours_peak_err += error(ours / GIB, measured).abs();
            comfy_peak_err += error(comfy / GIB, measured).abs();
            seed_peak_err += error(seed / GIB, measured).abs();
            peaks += 1;
        }
        // Time per step (all passes' steps together).
        let total_steps = f64::from(steps) * experts as f64;
        let ours_step = (off.time.sampling_s + off.time.offload_s) / total_steps;
        let measured_step = row.number("measured_s_per_step");
        if let (Some(m), "yes") = (measured_step, row.text("compare_time")) {
            time_err.push((row.id.clone(), error(ours_step, m)));
        }
        let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        let with_error = |p: f64| match measured_peak {
            Some(m) => format!("{:.1} ({:+.0}%)", p / GIB, error(p / GIB, m)),
            None => format!("{:.1}", p / GIB),
        };
        report.push(format!(
            "{:<4} {:>10} {:>14} {:>14} {:>14} {:>10} {:>12}",
            row.id,
            show(measured_peak),
            with_error(ours),
            with_error(comfy),
            with_error(seed),
            show(measured_step),
            match measured_step {
                Some(m) if row.text("compare_time") == "yes" =>
                    format!("{:.1} ({:+.0}%)", ours_step, error(ours_step, m)),
                _ => format!("{ours_step:.1}"),
            }
        ));
    }
    let n = f64::from(peaks);
    report.push(format!(
        "mean |peak error|: ours {:.0}%, ComfyUI's estimate {:.0}%, seed {:.0}% over {peaks} rows",
        ours_peak_err / n,
        comfy_peak_err / n,
        seed_peak_err / n
    ));
    let mean_time = time_err.iter().map(|(_, e)| e.abs()).sum::<f64>() / time_err.len() as f64;
    report.push(format!(
        "mean |time error|: ours {mean_time:.0}% over {} rows",
        time_err.len()
    ));
    println!("{}", report.join("\n"));
    assert!(peaks >= 2 && time_err.len() >= 4, "{}", report.join("\n"));
    // What the model claims: closer than the seed's constants and than ComfyUI's estimate.
    assert!(
        ours_peak_err < seed_peak_err && ours_peak_err < comfy_peak_err,
        "{}",
        report.join("\n")
    );
}
