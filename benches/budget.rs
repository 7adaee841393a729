//! Benchmark: one projection of every compile mode for one frame count, the work the slider
//! repeats on every frame (target: under 50 µs), and the safe-length scan for the slider's zones.
//! `cargo bench --bench budget`.

#[path = "support/timing.rs"]
mod timing;

use wan_pilot::budget::comfyui::WanVae;
use wan_pilot::budget::physical::{Coefficients, DitSize, TorchGeneration};
use wan_pilot::budget::projection::{Card, Expert, Settings, Workload, project};
use wan_pilot::budget::time::{DitShape, TimeCoefficients, fp16_tensor_tflops};
use wan_pilot::policy::zones::{BudgetView, CardLines};
use wan_pilot::policy::{choose, largest_safe_frames};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

fn main() {
    // The research's 5090 case: I2V A14B fp8, 832×1216, --reserve-vram 4.
    let card = Card {
        total_bytes: 32_607.0 * 1024.0 * 1024.0,
        free_bytes: 30_723.6 * 1024.0 * 1024.0,
        fp16_tflops: fp16_tensor_tflops(209.5, true),
    };
    let expert = Expert {
        bytes: 13_629.08 * 1024.0 * 1024.0,
        steps: 2,
    };
    let workload = Workload {
        width: 832,
        height: 1216,
        dit: DitShape::A14B,
        is_vace: false,
        vae: WanVae::V21,
        experts: vec![expert, expert],
        text_encoder_bytes: 6.74e9,
        vae_bytes: 0.24 * GIB,
        encodes_clip: true,
        uses_cfg: false,
        compiled_already: false,
    };
    let settings = Settings {
        reserve_bytes: 4.0 * GIB,
        margin_bytes: 2.0 * GIB,
        attention: wan_pilot::budget::comfyui::AttentionEstimate::Efficient,
    };
    let coefficients =
        Coefficients::prior(DitSize::B14, TorchGeneration::FusedRmsNorm, WanVae::V21);
    let timing = TimeCoefficients::prior(card.fp16_tflops);

    let ns = timing::median_ns(50, 2000, || {
        let projection = project(&card, &workload, &settings, &coefficients, &timing, 61);
        std::hint::black_box(choose(&projection));
    });
    println!(
        "plan of all 5 modes at one frame count (+ choice): {:.2} µs",
        ns / 1000.0
    );

    let ns = timing::median_ns(20, 20, || {
        std::hint::black_box(largest_safe_frames(241, |frames| {
            project(&card, &workload, &settings, &coefficients, &timing, frames)
        }));
    });
    println!(
        "safe length per mode over 61 frame counts (1..=241): {:.1} µs",
        ns / 1000.0
    );

    // The budget panel's data: every mode's parts, zone and reasons at all 61 lengths, plus the
    // slider's zone ranges; a worker computes it once per workflow/card/settings change.
    let lines = CardLines {
        name: "RTX 5090".into(),
        total_bytes: card.total_bytes,
        free_bytes: card.free_bytes,
        reserve_bytes: settings.reserve_bytes,
        margin_bytes: settings.margin_bytes,
    };
    let ns = timing::median_ns(20, 10, || {
        std::hint::black_box(BudgetView::compute(lines.clone(), None, |frames| {
            project(&card, &workload, &settings, &coefficients, &timing, frames)
        }));
    });
    println!(
        "budget view with slider zones over 61 frame counts (1..=241): {:.1} µs",
        ns / 1000.0
    );
}
