//! Learning from runs, end to end: records produced by the projection with "true" coefficients
//! that differ from the priors, fitted back, stored on disk and read again; broken and newer
//! files set aside without losing them.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use wan_pilot::budget::calibrate::{CALIBRATION_VERSION, Calibration, Prior, RunRecord, Source};
use wan_pilot::budget::comfyui::{Latent, WanVae};
use wan_pilot::budget::physical::{self, Coefficients, CompileMode, DitSize, TorchGeneration};
use wan_pilot::budget::projection::{self, Card, Expert, FrameProjection, Settings, Workload};
use wan_pilot::budget::time::{self, DitShape, TimeCoefficients};
use wan_pilot::runs::store::{
    self, CALIBRATION_FILE, DATA_DIR_ENV, DataPlatform, StoreError, load_calibration_in,
    save_calibration_in,
};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const CARD_NAME: &str = "NVIDIA GeForce RTX 4090";
const FAMILY: &str = "wan2.2-a14b-fp8";
const A14B: DitShape = DitShape::A14B;

/// A fresh folder per test (tests run in parallel threads): pid, test tag and a counter.
fn temp_data_dir(tag: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "wan-pilot-calibration-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    dir
}

/// The data folder as the app would find it with `WAN_PILOT_DATA_DIR` pointing at `dir`, read
/// through a closure so no test changes the process environment.
fn data_dir_via_env(dir: &Path) -> PathBuf {
    let value = dir.as_os_str().to_os_string();
    store::data_dir_from(DataPlatform::current(), move |name| {
        (name == DATA_DIR_ENV).then(|| value.clone())
    })
    .unwrap()
}

fn a14b_i2v_on_a_4090() -> (Card, Workload, Settings) {
    let card = Card {
        total_bytes: 24_564.0 * 1024.0 * 1024.0,
        free_bytes: 23.0 * GIB,
        fp16_tflops: 330.4,
    };
    let expert = Expert {
        bytes: 13_629.08 * 1024.0 * 1024.0,
        steps: 2,
    };
    let workload = Workload {
        width: 832,
        height: 480,
        dit: A14B,
        is_vace: false,
        vae: WanVae::V21,
        experts: vec![expert, expert],
        text_encoder_bytes: 6.3 * GIB,
        vae_bytes: 0.24 * GIB,
        encodes_clip: true,
        uses_cfg: true,
        compiled_already: true,
    };
    let settings = Settings {
        reserve_bytes: 400.0 * 1024.0 * 1024.0,
        margin_bytes: 2.0 * GIB,
        attention: wan_pilot::budget::comfyui::AttentionEstimate::Efficient,
    };
    (card, workload, settings)
}

fn prior(card: &Card) -> Prior {
    (
        Coefficients::prior(DitSize::B14, TorchGeneration::FusedRmsNorm, WanVae::V21),
        TimeCoefficients::prior(card.fp16_tflops),
    )
}

/// The card as it "really" is: every learnable coefficient away from its prior.
fn truth(card: &Card) -> Prior {
    let (mut c, mut t) = prior(card);
    c.activation_kib_per_token = 96.0;
    c.workspace_gib = 1.6;
    c.compile.default_share = -0.05;
    c.compile.reduce_overhead_share = 0.35;
    t.matmul_tflops = 170.0;
    t.attention_tflops = 110.0;
    t.speedup.default = 0.91;
    t.speedup.reduce_overhead = 0.87;
    (c, t)
}

/// Deterministic noise in [−1, 1].
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 52) as f64 * 2.0 - 1.0
    }
}

/// What the run's record would say if the card behaved as `truth`: the projection's phases give
/// the loader's decisions, the physical model the peak, the time model the step time; then
/// ±32 MiB and ±0.5% of measurement noise.
fn record_from_projection(
    truth: &Prior,
    frames: u32,
    mode: CompileMode,
    timestamp_secs: u64,
    noise: &mut Noise,
) -> RunRecord {
    let (card, workload, settings) = a14b_i2v_on_a_4090();
    let p: FrameProjection =
        projection::project(&card, &workload, &settings, &truth.0, &truth.1, frames);
    let m = p.modes.iter().find(|m| m.mode == mode.as_str()).unwrap();
    let latent = Latent::of_video(frames, workload.width, workload.height, 8);
    // The sampling phase that sets the peak: its weights on the GPU and its batch.
    let (peak, weights, samples) = p
        .phases
        .iter()
        .filter(|ph| ph.batches_cfg.is_some())
        .map(|ph| {
            let samples = if ph.batches_cfg == Some(true) { 2 } else { 1 };
            let sampling =
                physical::sampling_peak(&truth.0, latent, ph.resident_bytes, samples, mode);
            let others = ph.weights_on_gpu_bytes - ph.resident_bytes;
            (
                others + sampling.total_bytes,
                ph.weights_on_gpu_bytes,
                samples,
            )
        })
        .fold((0.0, 0.0, 1), |a, b| if b.0 > a.0 { b } else { a });
    assert!(
        (peak - m.sampling_peak_bytes).abs() < 1.0,
        "projection and physical agree"
    );
    let forwards_per_step = if workload.uses_cfg { 2 } else { 1 };
    let forwards: u32 = workload.experts.iter().map(|e| e.steps).sum::<u32>() * forwards_per_step;
    let s_per_forward = (m.time.sampling_s + m.time.offload_s) / f64::from(forwards);
    let offloaded: f64 = p
        .phases
        .iter()
        .filter(|ph| ph.batches_cfg.is_some())
        .map(|ph| ph.offloaded_bytes)
        .sum::<f64>()
        / workload.experts.len() as f64;
    let (linear, attention) = time::flops_per_forward(workload.dit, p.tokens);
    RunRecord {
        card: CARD_NAME.into(),
        family: FAMILY.into(),
        frames,
        width: workload.width,
        height: workload.height,
        tokens: p.tokens,
        batched_samples: samples,
        compile_mode: mode.as_str().into(),
        resident_weights_bytes: weights as u64,
        peak_reserved_bytes: Some((peak + 32.0 * 1024.0 * 1024.0 * noise.next()) as u64),
        sampling_s_per_step: Some(
            s_per_forward * f64::from(forwards_per_step) * (1.0 + 0.005 * noise.next()),
        ),
        forwards_per_step,
        linear_flops_per_forward: linear,
        attention_flops_per_forward: attention,
        offloaded_bytes: offloaded as u64,
        out_of_memory: false,
        wan_pilot_version: env!("CARGO_PKG_VERSION").into(),
        timestamp_secs,
    }
}

fn some_calibration() -> Calibration {
    let (card, _, _) = a14b_i2v_on_a_4090();
    let truth = truth(&card);
    let mut noise = Noise(1);
    let mut cal = Calibration::default();
    for (i, frames) in [33, 61, 81].into_iter().enumerate() {
        let r = record_from_projection(&truth, frames, CompileMode::Off, i as u64, &mut noise);
        cal.record(r, prior(&card)).unwrap();
    }
    cal
}

#[test]
fn a_fit_over_projected_runs_predicts_held_out_lengths() {
    let (card, workload, settings) = a14b_i2v_on_a_4090();
    let truth = truth(&card);
    let mut noise = Noise(0x5eed);
    let mut cal = Calibration::default();
    let mut ts = 0;
    for (mode, lengths) in [
        (CompileMode::Off, &[33, 49, 65, 81][..]),
        (CompileMode::ReduceOverhead, &[49, 81][..]),
        (CompileMode::Default, &[61][..]),
    ] {
        for &frames in lengths {
            let r = record_from_projection(&truth, frames, mode, ts, &mut noise);
            cal.record(r, prior(&card)).unwrap();
            ts += 1;
        }
    }
    let calibrated = cal.apply(CARD_NAME, FAMILY, prior(&card));
    for frames in [97, 113] {
        let real = projection::project(&card, &workload, &settings, &truth.0, &truth.1, frames);
        let ours = projection::project(
            &card,
            &workload,
            &settings,
            &calibrated.coefficients,
            &calibrated.timing,
            frames,
        );
        let before = projection::project(
            &card,
            &workload,
            &settings,
            &prior(&card).0,
            &prior(&card).1,
            frames,
        );
        for mode in [
            CompileMode::Off,
            CompileMode::ReduceOverhead,
            CompileMode::Default,
        ] {
            let pick = |p: &FrameProjection| {
                let m = p.modes.iter().find(|m| m.mode == mode.as_str()).unwrap();
                (m.sampling_peak_bytes, m.time.sampling_s)
            };
            let (real_peak, real_s) = pick(&real);
            let (our_peak, our_s) = pick(&ours);
            let (prior_peak, prior_s) = pick(&before);
            let peak_error = (our_peak - real_peak).abs() / real_peak;
            let time_error = (our_s - real_s).abs() / real_s;
            assert!(
                peak_error < 0.02,
                "{frames} {mode}: peak {:.2} GiB vs {:.2}",
                our_peak / GIB,
                real_peak / GIB
            );
            assert!(
                time_error < 0.03,
                "{frames} {mode}: {our_s:.1} s vs {real_s:.1}"
            );
            // Learning helped: the prior was further off.
            assert!(peak_error < (prior_peak - real_peak).abs() / real_peak);
            assert!(time_error < (prior_s - real_s).abs() / real_s);
        }
    }
    let source = |name: &str| {
        calibrated
            .sources
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.source)
            .unwrap()
    };
    assert_eq!(
        source("activation_kib_per_token"),
        Source::Calibrated { runs: 4 }
    );
    assert_eq!(
        source("compile_share.reduce-overhead"),
        Source::Calibrated { runs: 2 }
    );
    assert_eq!(source("compile_share.max-autotune"), Source::Prior);
}

#[test]
fn an_out_of_memory_length_caps_the_plan() {
    let (card, _, _) = a14b_i2v_on_a_4090();
    let truth = truth(&card);
    let mut cal = some_calibration();
    let mut failed =
        record_from_projection(&truth, 129, CompileMode::ReduceOverhead, 100, &mut Noise(2));
    failed.out_of_memory = true;
    failed.peak_reserved_bytes = None;
    failed.sampling_s_per_step = None;
    cal.record(failed, prior(&card)).unwrap();
    let c = cal.apply(CARD_NAME, FAMILY, prior(&card));
    assert!(c.is_capped(CompileMode::ReduceOverhead, 832, 480, 129));
    assert!(c.is_capped(CompileMode::ReduceOverhead, 832, 480, 161));
    assert!(!c.is_capped(CompileMode::ReduceOverhead, 832, 480, 125));
    assert!(!c.is_capped(CompileMode::Off, 832, 480, 129));
}

#[test]
fn record_save_load_round_trip() {
    let dir = data_dir_via_env(&temp_data_dir("round-trip"));
    let cal = some_calibration();
    let path = save_calibration_in(&dir, &cal).unwrap();
    assert_eq!(path, dir.join(CALIBRATION_FILE));
    let loaded = load_calibration_in(&dir).unwrap();
    assert!(loaded.set_aside.is_none());
    let back = loaded.calibration;
    assert_eq!(back.version, CALIBRATION_VERSION);
    assert_eq!(back.entries.len(), 1);
    let (a, b) = (&back.entries[0], &cal.entries[0]);
    assert_eq!(a.records.len(), b.records.len());
    for (x, y) in a.records.iter().zip(&b.records) {
        assert_eq!(
            (x.frames, x.tokens, x.peak_reserved_bytes, &x.compile_mode),
            (y.frames, y.tokens, y.peak_reserved_bytes, &y.compile_mode)
        );
    }
    assert_eq!(a.fit.caps, b.fit.caps);
    assert_eq!(a.fit.notes, b.fit.notes);
    // The loaded store plans exactly like the saved one (floats may move by their last bit).
    let (card, _, _) = a14b_i2v_on_a_4090();
    let before = cal.apply(CARD_NAME, FAMILY, prior(&card));
    let after = back.apply(CARD_NAME, FAMILY, prior(&card));
    let close = |x: f64, y: f64| (x - y).abs() <= 1e-12 * y.abs();
    assert!(close(
        after.coefficients.activation_kib_per_token,
        before.coefficients.activation_kib_per_token
    ));
    assert!(close(
        after.timing.matmul_tflops,
        before.timing.matmul_tflops
    ));
    // A second save replaces the first and leaves no temporary file behind.
    let mut more = back.clone();
    let mut extra = more.entries[0].records[0].clone();
    extra.timestamp_secs = 50;
    more.record(extra, prior(&card)).unwrap();
    save_calibration_in(&dir, &more).unwrap();
    let names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, [CALIBRATION_FILE]);
    assert_eq!(
        load_calibration_in(&dir).unwrap().calibration.entries[0]
            .records
            .len(),
        4
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_file_carries_its_version() {
    let dir = temp_data_dir("version");
    save_calibration_in(&dir, &some_calibration()).unwrap();
    let text = fs::read_to_string(dir.join(CALIBRATION_FILE)).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["version"], CALIBRATION_VERSION);
    assert_eq!(json["entries"][0]["card"], CARD_NAME);
    // An older in-memory version is written as this build's.
    let mut old = some_calibration();
    old.version = 0;
    save_calibration_in(&dir, &old).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join(CALIBRATION_FILE)).unwrap()).unwrap();
    assert_eq!(json["version"], CALIBRATION_VERSION);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_missing_file_is_an_empty_calibration() {
    let dir = temp_data_dir("missing");
    let loaded = load_calibration_in(&dir).unwrap();
    assert_eq!(loaded.calibration, Calibration::default());
    assert!(loaded.set_aside.is_none());
    assert!(!dir.exists(), "loading creates nothing");
}

#[test]
fn a_broken_file_is_kept_aside_and_calibration_starts_again() {
    let dir = temp_data_dir("broken");
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join(CALIBRATION_FILE);
    for attempt in 0..2 {
        fs::write(&path, b"{\"version\": 1, \"entries\": [").unwrap();
        let loaded = load_calibration_in(&dir).unwrap();
        assert_eq!(loaded.calibration, Calibration::default());
        let aside = loaded.set_aside.unwrap();
        assert_eq!(aside.original, path);
        assert!(!path.exists());
        // Nothing lost: the bytes are still there, under a name that says why.
        assert_eq!(
            fs::read(&aside.moved_to).unwrap(),
            b"{\"version\": 1, \"entries\": ["
        );
        let name = aside
            .moved_to
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(name.starts_with("calibration.json.broken-"), "{name}");
        if attempt == 1 {
            // Two in the same second do not overwrite each other.
            assert_eq!(fs::read_dir(&dir).unwrap().count(), 2);
        }
        let message = aside.to_string();
        assert!(
            message.contains("not valid JSON") && message.contains("priors"),
            "{message}"
        );
    }
    // Saving afterwards works as usual.
    save_calibration_in(&dir, &some_calibration()).unwrap();
    assert_eq!(
        load_calibration_in(&dir).unwrap().calibration.entries.len(),
        1
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_newer_file_is_kept_not_misread() {
    let dir = temp_data_dir("newer");
    fs::create_dir_all(&dir).unwrap();
    let newer = format!(
        "{{\"version\": {}, \"entries\": [], \"future\": true}}",
        CALIBRATION_VERSION + 1
    );
    fs::write(dir.join(CALIBRATION_FILE), &newer).unwrap();
    let loaded = load_calibration_in(&dir).unwrap();
    assert_eq!(loaded.calibration, Calibration::default());
    let aside = loaded.set_aside.unwrap();
    assert!(aside.reason.contains("newer wan-pilot"), "{}", aside.reason);
    assert_eq!(fs::read_to_string(&aside.moved_to).unwrap(), newer);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_file_of_the_wrong_shape_is_kept_aside() {
    let dir = temp_data_dir("shape");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(CALIBRATION_FILE), "{\"entries\": 3}").unwrap();
    let loaded = load_calibration_in(&dir).unwrap();
    assert!(
        loaded
            .set_aside
            .unwrap()
            .reason
            .contains("not a calibration")
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn errors_name_the_file() {
    // The calibration "file" is a folder: it cannot be read.
    let dir = temp_data_dir("unreadable");
    fs::create_dir_all(dir.join(CALIBRATION_FILE)).unwrap();
    let err = load_calibration_in(&dir).unwrap_err();
    assert!(matches!(err, StoreError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains(CALIBRATION_FILE), "{err}");
    let err = save_calibration_in(&dir, &Calibration::default()).unwrap_err();
    assert!(matches!(err, StoreError::Write { .. }), "{err:?}");
    assert!(err.to_string().contains(CALIBRATION_FILE), "{err}");
    // The failed save left no temporary file.
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
    fs::remove_dir_all(&dir).unwrap();
}
