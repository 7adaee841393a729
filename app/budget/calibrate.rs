//! Learning from runs: every finished run becomes a [`RunRecord`], and per card and model family
//! the records refit the coefficients the research could only guess (vram-budget-data.md §5.4:
//! activation KiB per token, workspace, compile overheads, throughput, compile speed-ups, offload
//! cost), plus a hard cap below any length that ran out of memory.
//!
//! Pure: records in, fitted values out. The store on disk is `runs::store`.
//!
//! How it fits, per (card, family), each part guarded so one bad record cannot poison a plan:
//! - Memory: ordinary least squares of (peak − resident weights) against (samples × tokens) with
//!   an intercept over successful compile-off runs. The model is
//!   `peak = W + ρ·(b·N·α + C_ws)` (physical.rs), so slope/ρ is α and intercept/ρ is the
//!   workspace; ρ (the allocator factor) stays at its prior, since only the products are
//!   identifiable from peaks. Needs two runs at different token counts.
//! - Compile: per mode, the mean of (measured − predicted eager peak − compile transient) /
//!   (ρ · activations), i.e. the share `CompileOverheads` holds.
//! - Time: seconds per forward = linear/R_mm + attention/R_attn, a relative (1/y²-weighted)
//!   least squares over runs without offload; with one point, or points of the same attention
//!   share, one factor scales both prior rates. Then per compile mode the speed-up against the
//!   fitted eager time, and the offload cost per GiB from runs that streamed weights.

use std::fmt;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::physical::{Coefficients, CompileMode, CompileOverheads};
use super::time::{CompileSpeedups, TimeCoefficients};

/// Version of the calibration file this build writes. A file with a higher version is set aside
/// rather than misread.
pub const CALIBRATION_VERSION: u32 = 1;

/// Records kept per (card, family): the oldest go first. Enough for years of normal use, and it
/// keeps the file and the refit small.
pub const MAX_RECORDS_PER_KEY: usize = 512;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// A fitted coefficient more than this many times its prior (or, for rates, less than its prior
/// divided by it) means a wrong record, not a discovery: the fit is rejected.
const ABSURD_FACTOR: f64 = 4.0;

/// Two token counts closer than this (relative) are the same point for the memory fit.
const MIN_RELATIVE_TOKEN_SPREAD: f64 = 0.01;

/// Attention shares of the FLOPs closer than this cannot separate the two rates.
const MIN_ATTENTION_SHARE_SPREAD: f64 = 0.02;

/// Plausible compile-mode shares of the activations: inductor cannot free more than 90% of them,
/// and a pool over twice the activations means the record measured something else too.
const COMPILE_SHARE_RANGE: (f64, f64) = (-0.9, 2.0);

/// Plausible step-time factors of a compile mode against eager.
const SPEEDUP_RANGE: (f64, f64) = (0.3, 1.5);

/// One finished (or failed) run, as much of it as calibration needs. Written by the runs
/// orchestration after a generation; the values of the heaviest sampling phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunRecord {
    /// The card's name as NVML reports it ("NVIDIA GeForce RTX 4090").
    pub card: String,
    /// Model family and precision, e.g. "wan2.2-a14b-fp8", "wan2.2-ti2v-5b-fp16": coefficients
    /// differ between DiT sizes and weight formats.
    pub family: String,
    /// Video frames asked for.
    pub frames: u32,
    pub width: u32,
    pub height: u32,
    /// DiT tokens of one sample (`physical::tokens`).
    pub tokens: u64,
    /// Samples in one forward while sampling: 2 when ComfyUI batched cond and uncond, else 1.
    pub batched_samples: u32,
    /// torch.compile mode as torch spells it ("default", "reduce-overhead", …), "off" for none.
    pub compile_mode: String,
    /// Every model weight on the GPU during sampling: the expert's resident part plus any encoder
    /// or VAE ComfyUI kept cached.
    pub resident_weights_bytes: u64,
    /// Peak memory reserved during sampling as NVML sees it (the process's whole use). `None`
    /// when it was not measured (no NVML).
    pub peak_reserved_bytes: Option<u64>,
    /// Steady-state sampling seconds per step (the first, compiling step excluded). `None` when
    /// the run did not get that far.
    pub sampling_s_per_step: Option<f64>,
    /// DiT forwards per step: 2 with CFG (batched or not), 1 at CFG 1.
    pub forwards_per_step: u32,
    /// Matmul FLOPs of one forward (`time::flops_per_forward`, first part).
    pub linear_flops_per_forward: f64,
    /// Attention FLOPs of one forward (`time::flops_per_forward`, second part).
    pub attention_flops_per_forward: f64,
    /// Weight bytes streamed from RAM per forward, averaged over the run's forwards (0 when the
    /// experts were loaded completely).
    pub offloaded_bytes: u64,
    /// The run failed with CUDA out-of-memory.
    pub out_of_memory: bool,
    /// The wan-pilot version that recorded it, to discard records of a buggy build later.
    pub wan_pilot_version: String,
    /// When the run finished, in seconds since the Unix epoch; orders the out-of-memory caps.
    pub timestamp_secs: u64,
}

/// Why a record was refused: recording it would break the fit or the JSON file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecordError {
    #[error("run record has no {0}")]
    Missing(&'static str),
    #[error("run record's {field} is {value}, which cannot be right")]
    Invalid { field: &'static str, value: String },
    #[error("run record's compile mode {0:?} is not one torch.compile knows")]
    UnknownMode(String),
}

impl RunRecord {
    /// Checks the record is usable (names present, shape non-zero, numbers finite) and returns
    /// its compile mode.
    pub fn check(&self) -> Result<CompileMode, RecordError> {
        if self.card.trim().is_empty() {
            return Err(RecordError::Missing("card name"));
        }
        if self.family.trim().is_empty() {
            return Err(RecordError::Missing("model family"));
        }
        let invalid = |field: &'static str, value: String| RecordError::Invalid { field, value };
        if self.tokens == 0 {
            return Err(invalid("token count", "0".into()));
        }
        if !(1..=2).contains(&self.batched_samples) {
            return Err(invalid("batched samples", self.batched_samples.to_string()));
        }
        if self.forwards_per_step == 0 {
            return Err(invalid("forwards per step", "0".into()));
        }
        for (field, value) in [
            ("linear FLOPs", self.linear_flops_per_forward),
            ("attention FLOPs", self.attention_flops_per_forward),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(invalid(field, value.to_string()));
            }
        }
        if let Some(s) = self.sampling_s_per_step
            && (!s.is_finite() || s <= 0.0)
        {
            return Err(invalid("seconds per step", s.to_string()));
        }
        CompileMode::parse(&self.compile_mode)
            .ok_or_else(|| RecordError::UnknownMode(self.compile_mode.clone()))
    }

    fn mode(&self) -> Option<CompileMode> {
        CompileMode::parse(&self.compile_mode)
    }

    /// samples × tokens: what the activations scale with.
    fn sample_tokens(&self) -> f64 {
        f64::from(self.batched_samples.max(1)) * self.tokens as f64
    }

    fn is_usable_peak(&self) -> bool {
        !self.out_of_memory && self.peak_reserved_bytes.is_some()
    }

    /// Seconds per forward, when this run can teach the time model.
    fn s_per_forward(&self) -> Option<f64> {
        let flops = self.linear_flops_per_forward + self.attention_flops_per_forward;
        if self.out_of_memory || flops <= 0.0 {
            return None;
        }
        self.sampling_s_per_step
            .map(|s| s / f64::from(self.forwards_per_step.max(1)))
    }
}

/// The fitted activation coefficient and workspace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ActivationFit {
    pub activation_kib_per_token: f64,
    pub workspace_gib: f64,
    pub runs: usize,
}

/// A compile mode's fitted share of the activations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompileShareFit {
    pub mode: String,
    pub share: f64,
    pub runs: usize,
}

/// How the throughputs were fitted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateMethod {
    /// Matmul and attention rates separately (points at different attention shares).
    #[default]
    TwoRates,
    /// One factor on both prior rates (one point, or one attention share).
    OneEffectiveRate,
}

/// Fitted throughputs (TFLOP/s).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RateFit {
    pub matmul_tflops: f64,
    pub attention_tflops: f64,
    pub runs: usize,
    pub method: RateMethod,
}

/// A compile mode's fitted step-time factor against eager.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SpeedupFit {
    pub mode: String,
    pub factor: f64,
    pub runs: usize,
}

/// The fitted cost of streaming weights.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OffloadFit {
    pub offload_s_per_gib: f64,
    pub runs: usize,
}

/// Every length from `frames_from` up ran out of memory with this mode at this size (or is longer
/// than one that did): the projection must treat it as not fitting, whatever the model says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HardCap {
    pub mode: String,
    pub width: u32,
    pub height: u32,
    pub frames_from: u32,
    /// Out-of-memory runs still standing behind the cap (not outdone by a later success).
    pub out_of_memory_runs: usize,
}

/// What the records of one (card, family) taught, against the prior given when they were fitted.
/// Missing parts keep the prior; `notes` says why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Fit {
    pub activation: Option<ActivationFit>,
    pub compile: Vec<CompileShareFit>,
    pub rates: Option<RateFit>,
    pub speedups: Vec<SpeedupFit>,
    pub offload: Option<OffloadFit>,
    pub caps: Vec<HardCap>,
    pub notes: Vec<String>,
}

/// One card and model family: its records and what they fitted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CalibrationEntry {
    pub card: String,
    pub family: String,
    /// Oldest first, at most [`MAX_RECORDS_PER_KEY`].
    pub records: Vec<RunRecord>,
    pub fit: Fit,
}

/// Everything learned from runs, per (card, family). The app keeps one in its data folder
/// (`runs::store`); `version` guards against reading a newer build's file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Calibration {
    pub version: u32,
    pub entries: Vec<CalibrationEntry>,
}

impl Default for Calibration {
    fn default() -> Self {
        Self {
            version: CALIBRATION_VERSION,
            entries: Vec::new(),
        }
    }
}

/// The priors `apply` and `record` work against: the physical and the time coefficients.
pub type Prior = (Coefficients, TimeCoefficients);

impl Calibration {
    /// The entry of one card and family, if any run was recorded for it.
    pub fn entry(&self, card: &str, family: &str) -> Option<&CalibrationEntry> {
        self.entries
            .iter()
            .find(|e| e.card == card && e.family == family)
    }

    /// Adds a finished run and refits its (card, family) against `prior` (the coefficients the
    /// run was planned with). Refuses a record that would break the fit or the file.
    pub fn record(&mut self, record: RunRecord, prior: Prior) -> Result<&Fit, RecordError> {
        record.check()?;
        let index = match self
            .entries
            .iter()
            .position(|e| e.card == record.card && e.family == record.family)
        {
            Some(index) => index,
            None => {
                self.entries.push(CalibrationEntry {
                    card: record.card.clone(),
                    family: record.family.clone(),
                    ..CalibrationEntry::default()
                });
                self.entries.len() - 1
            }
        };
        let entry = &mut self.entries[index];
        entry.records.push(record);
        if entry.records.len() > MAX_RECORDS_PER_KEY {
            let excess = entry.records.len() - MAX_RECORDS_PER_KEY;
            entry.records.drain(..excess);
        }
        entry.fit = fit(&entry.records, prior);
        Ok(&entry.fit)
    }

    /// Refits one (card, family) against a new prior (after an update changed the priors).
    pub fn refit(&mut self, card: &str, family: &str, prior: Prior) {
        if let Some(entry) = self
            .entries
            .iter_mut()
            .find(|e| e.card == card && e.family == family)
        {
            entry.fit = fit(&entry.records, prior);
        }
    }

    /// The coefficients to plan with on this card and family: the prior with every fitted value
    /// laid over it, the hard caps, and per coefficient its prior, its value and where it came
    /// from, so `plan` can show them side by side.
    pub fn apply(&self, card: &str, family: &str, prior: Prior) -> Calibrated {
        let (prior_c, prior_t) = prior;
        let mut coefficients = prior_c;
        let mut timing = prior_t;
        let Some(entry) = self.entry(card, family) else {
            return Calibrated {
                coefficients,
                timing,
                caps: Vec::new(),
                sources: sources(&prior_c, &prior_t, &Fit::default()),
                notes: vec![format!(
                    "no runs recorded for {family} on {card}: every coefficient is the prior"
                )],
            };
        };
        let fit = &entry.fit;
        if let Some(a) = fit.activation {
            coefficients.activation_kib_per_token = a.activation_kib_per_token;
            coefficients.workspace_gib = a.workspace_gib;
        }
        for share in &fit.compile {
            if let Some(mode) = CompileMode::parse(&share.mode) {
                set_share(&mut coefficients.compile, mode, share.share);
            }
        }
        if let Some(r) = fit.rates {
            timing.matmul_tflops = r.matmul_tflops;
            timing.attention_tflops = r.attention_tflops;
        }
        for speedup in &fit.speedups {
            if let Some(mode) = CompileMode::parse(&speedup.mode) {
                set_speedup(&mut timing.speedup, mode, speedup.factor);
            }
        }
        if let Some(o) = fit.offload {
            timing.offload_s_per_gib = o.offload_s_per_gib;
        }
        Calibrated {
            coefficients,
            timing,
            caps: fit.caps.clone(),
            sources: sources(&prior_c, &prior_t, fit),
            notes: fit.notes.clone(),
        }
    }
}

/// Where a coefficient's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Prior,
    Calibrated { runs: usize },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Prior => f.write_str("prior"),
            Source::Calibrated { runs: 1 } => f.write_str("calibrated from 1 run"),
            Source::Calibrated { runs } => write!(f, "calibrated from {runs} runs"),
        }
    }
}

impl Serialize for Source {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// One coefficient, prior and planned-with value side by side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CoefficientSource {
    /// The coefficient's field name ("activation_kib_per_token", "compile.reduce-overhead", …).
    pub name: String,
    pub prior: f64,
    pub value: f64,
    pub source: Source,
}

/// The coefficients to plan with on one card and family.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calibrated {
    pub coefficients: Coefficients,
    pub timing: TimeCoefficients,
    /// Lengths known to run out of memory, per mode and size.
    pub caps: Vec<HardCap>,
    pub sources: Vec<CoefficientSource>,
    /// Why a part kept its prior or was rejected, in words.
    pub notes: Vec<String>,
}

impl Calibrated {
    /// The first frame count known not to fit with `mode` at `width`×`height`, if any.
    pub fn cap(&self, mode: CompileMode, width: u32, height: u32) -> Option<u32> {
        self.caps
            .iter()
            .filter(|c| c.mode == mode.as_str() && c.width == width && c.height == height)
            .map(|c| c.frames_from)
            .min()
    }

    /// Whether `frames` with `mode` at `width`×`height` is at or over a hard cap.
    pub fn is_capped(&self, mode: CompileMode, width: u32, height: u32, frames: u32) -> bool {
        self.cap(mode, width, height)
            .is_some_and(|from| frames >= from)
    }
}

fn set_share(overheads: &mut CompileOverheads, mode: CompileMode, share: f64) {
    match mode {
        CompileMode::Off => {}
        CompileMode::Default => overheads.default_share = share,
        CompileMode::ReduceOverhead => overheads.reduce_overhead_share = share,
        CompileMode::MaxAutotune => overheads.max_autotune_share = share,
        CompileMode::MaxAutotuneNoCudagraphs => overheads.max_autotune_no_cudagraphs_share = share,
    }
}

fn set_speedup(speedups: &mut CompileSpeedups, mode: CompileMode, factor: f64) {
    match mode {
        CompileMode::Off => {}
        CompileMode::Default => speedups.default = factor,
        CompileMode::ReduceOverhead => speedups.reduce_overhead = factor,
        CompileMode::MaxAutotune => speedups.max_autotune = factor,
        CompileMode::MaxAutotuneNoCudagraphs => speedups.max_autotune_no_cudagraphs = factor,
    }
}

/// The compile modes, eager excluded, in a fixed order for the sources list.
const COMPILED_MODES: [CompileMode; 4] = [
    CompileMode::Default,
    CompileMode::ReduceOverhead,
    CompileMode::MaxAutotune,
    CompileMode::MaxAutotuneNoCudagraphs,
];

fn sources(
    prior_c: &Coefficients,
    prior_t: &TimeCoefficients,
    fit: &Fit,
) -> Vec<CoefficientSource> {
    let mut out = Vec::with_capacity(14);
    let mut push = |name: String, prior: f64, fitted: Option<(f64, usize)>| {
        out.push(CoefficientSource {
            name,
            prior,
            value: fitted.map_or(prior, |(v, _)| v),
            source: fitted.map_or(Source::Prior, |(_, runs)| Source::Calibrated { runs }),
        });
    };
    let a = fit.activation;
    push(
        "activation_kib_per_token".into(),
        prior_c.activation_kib_per_token,
        a.map(|a| (a.activation_kib_per_token, a.runs)),
    );
    push(
        "workspace_gib".into(),
        prior_c.workspace_gib,
        a.map(|a| (a.workspace_gib, a.runs)),
    );
    for mode in COMPILED_MODES {
        let fitted = fit
            .compile
            .iter()
            .find(|s| s.mode == mode.as_str())
            .map(|s| (s.share, s.runs));
        push(
            format!("compile_share.{mode}"),
            prior_c.compile.share(mode),
            fitted,
        );
    }
    let r = fit.rates;
    push(
        "matmul_tflops".into(),
        prior_t.matmul_tflops,
        r.map(|r| (r.matmul_tflops, r.runs)),
    );
    push(
        "attention_tflops".into(),
        prior_t.attention_tflops,
        r.map(|r| (r.attention_tflops, r.runs)),
    );
    for mode in COMPILED_MODES {
        let fitted = fit
            .speedups
            .iter()
            .find(|s| s.mode == mode.as_str())
            .map(|s| (s.factor, s.runs));
        push(
            format!("speedup.{mode}"),
            prior_t.speedup.factor(mode),
            fitted,
        );
    }
    push(
        "offload_s_per_gib".into(),
        prior_t.offload_s_per_gib,
        fit.offload.map(|o| (o.offload_s_per_gib, o.runs)),
    );
    out
}

/// Fits one (card, family)'s records against `prior`. Every part that cannot be fitted, or fits
/// to something absurd, keeps the prior and leaves a note saying why.
pub fn fit(records: &[RunRecord], prior: Prior) -> Fit {
    let (prior_c, prior_t) = prior;
    let mut notes = Vec::new();
    let skipped = records.iter().filter(|r| r.mode().is_none()).count();
    if skipped > 0 {
        notes.push(format!(
            "{skipped} run(s) with an unknown compile mode were left out"
        ));
    }
    let activation = fit_activation(records, &prior_c, &mut notes);
    let mut eager = prior_c;
    if let Some(a) = activation {
        eager.activation_kib_per_token = a.activation_kib_per_token;
        eager.workspace_gib = a.workspace_gib;
    }
    let compile = fit_compile_shares(records, &eager, &mut notes);
    let time = fit_time(records, &prior_t, &mut notes);
    Fit {
        activation,
        compile,
        rates: time.rates,
        speedups: time.speedups,
        offload: time.offload,
        caps: hard_caps(records),
        notes,
    }
}

/// The allocator factor the memory fit divides by (never below 1: the allocator cannot hold less
/// than what is live).
fn allocator_factor(c: &Coefficients) -> f64 {
    if c.allocator_factor_sampling.is_finite() {
        c.allocator_factor_sampling.max(1.0)
    } else {
        1.0
    }
}

/// Least squares of (peak − resident weights) = ρ·α·x + ρ·C_ws over compile-off successes.
fn fit_activation(
    records: &[RunRecord],
    prior: &Coefficients,
    notes: &mut Vec<String>,
) -> Option<ActivationFit> {
    let points: Vec<(f64, f64)> = records
        .iter()
        .filter(|r| r.mode() == Some(CompileMode::Off) && r.is_usable_peak())
        .filter_map(|r| {
            let peak = r.peak_reserved_bytes? as f64;
            Some((r.sample_tokens(), peak - r.resident_weights_bytes as f64))
        })
        .collect();
    let keep = |notes: &mut Vec<String>, why: String| {
        notes.push(format!(
            "activation and workspace: kept the prior ({:.1} KiB/token, {:.2} GiB): {why}",
            prior.activation_kib_per_token, prior.workspace_gib
        ));
        None
    };
    if points.len() < 2 {
        return keep(
            notes,
            format!(
                "{} successful compile-off run(s) with a measured peak; 2 at different lengths are needed",
                points.len()
            ),
        );
    }
    let (min_x, max_x) = points
        .iter()
        .fold((f64::INFINITY, 0.0_f64), |(lo, hi), &(x, _)| {
            (lo.min(x), hi.max(x))
        });
    if max_x - min_x <= MIN_RELATIVE_TOKEN_SPREAD * max_x {
        return keep(
            notes,
            format!(
                "all {} compile-off runs have the same token count; a run at another length is needed",
                points.len()
            ),
        );
    }
    let Some((intercept_bytes, slope_bytes_per_token)) = line_fit(&points) else {
        return keep(notes, "the least-squares system is degenerate".into());
    };
    let rho = allocator_factor(prior);
    let activation_kib_per_token = slope_bytes_per_token / (rho * 1024.0);
    let workspace_gib = intercept_bytes / (rho * GIB);
    let runs = points.len();
    if !activation_kib_per_token.is_finite() || !workspace_gib.is_finite() {
        return keep(notes, "the fit did not give finite numbers".into());
    }
    if activation_kib_per_token <= 0.0 {
        return keep(
            notes,
            format!(
                "{runs} runs fit {activation_kib_per_token:.1} KiB/token, not positive: peaks do not grow with length, so a record is wrong"
            ),
        );
    }
    if activation_kib_per_token > ABSURD_FACTOR * prior.activation_kib_per_token {
        return keep(
            notes,
            format!(
                "{runs} runs fit {activation_kib_per_token:.1} KiB/token, over {ABSURD_FACTOR}× the prior"
            ),
        );
    }
    if workspace_gib < 0.0 {
        return keep(
            notes,
            format!("{runs} runs fit a negative workspace ({workspace_gib:.2} GiB)"),
        );
    }
    if workspace_gib > ABSURD_FACTOR * prior.workspace_gib.max(0.25) {
        return keep(
            notes,
            format!(
                "{runs} runs fit a {workspace_gib:.2} GiB workspace, over {ABSURD_FACTOR}× the prior"
            ),
        );
    }
    Some(ActivationFit {
        activation_kib_per_token,
        workspace_gib,
        runs,
    })
}

/// Per compile mode, the mean of (measured − eager − transient) / (ρ · activations).
fn fit_compile_shares(
    records: &[RunRecord],
    eager: &Coefficients,
    notes: &mut Vec<String>,
) -> Vec<CompileShareFit> {
    let rho = allocator_factor(eager);
    let workspace_bytes = eager.workspace_gib * GIB;
    let mut out = Vec::new();
    for mode in COMPILED_MODES {
        let shares: Vec<f64> = records
            .iter()
            .filter(|r| r.mode() == Some(mode) && r.is_usable_peak())
            .filter_map(|r| {
                let peak = r.peak_reserved_bytes? as f64;
                let activations = r.sample_tokens() * eager.activation_kib_per_token * 1024.0;
                if activations <= 0.0 {
                    return None;
                }
                let eager_peak =
                    r.resident_weights_bytes as f64 + rho * (activations + workspace_bytes);
                let extra = peak - eager_peak - eager.compile.transient_bytes(mode);
                Some(extra / (rho * activations))
            })
            .collect();
        if shares.is_empty() {
            continue;
        }
        let share = mean(&shares);
        let runs = shares.len();
        let (lo, hi) = COMPILE_SHARE_RANGE;
        if !share.is_finite() || share < lo || share > hi {
            notes.push(format!(
                "{mode}: kept the prior compile share ({:+.2}): {runs} run(s) fit {share:+.2} of the activations, outside {lo}…{hi}",
                eager.compile.share(mode)
            ));
            continue;
        }
        out.push(CompileShareFit {
            mode: mode.as_str().to_string(),
            share,
            runs,
        });
    }
    out
}

struct TimeFit {
    rates: Option<RateFit>,
    speedups: Vec<SpeedupFit>,
    offload: Option<OffloadFit>,
}

/// One timed run: FLOPs in PFLOP (for conditioning) and seconds per forward.
#[derive(Clone, Copy)]
struct TimePoint {
    linear_pflop: f64,
    attention_pflop: f64,
    s_per_forward: f64,
}

impl TimePoint {
    fn of(record: &RunRecord) -> Option<TimePoint> {
        Some(TimePoint {
            linear_pflop: record.linear_flops_per_forward / 1e15,
            attention_pflop: record.attention_flops_per_forward / 1e15,
            s_per_forward: record.s_per_forward()?,
        })
    }

    fn attention_share(&self) -> f64 {
        self.attention_pflop / (self.linear_pflop + self.attention_pflop)
    }

    /// Eager seconds per forward with these rates (TFLOP/s).
    fn eager_s(&self, matmul_tflops: f64, attention_tflops: f64) -> f64 {
        self.linear_pflop * 1000.0 / matmul_tflops
            + self.attention_pflop * 1000.0 / attention_tflops
    }
}

fn fit_time(records: &[RunRecord], prior: &TimeCoefficients, notes: &mut Vec<String>) -> TimeFit {
    let timed = |r: &&RunRecord| r.offloaded_bytes == 0 && r.s_per_forward().is_some();
    let eager: Vec<TimePoint> = records
        .iter()
        .filter(timed)
        .filter(|r| r.mode() == Some(CompileMode::Off))
        .filter_map(TimePoint::of)
        .collect();
    // Without eager runs, compiled ones teach the rates, normalised by the prior speed-ups; the
    // speed-ups themselves then cannot be learned from the same runs.
    let (points, from_eager) = if eager.is_empty() {
        let compiled: Vec<TimePoint> = records
            .iter()
            .filter(timed)
            .filter_map(|r| {
                let factor = prior.speedup.factor(r.mode()?);
                let mut p = TimePoint::of(r)?;
                p.s_per_forward /= factor;
                Some(p)
            })
            .collect();
        (compiled, false)
    } else {
        (eager, true)
    };
    let rates = fit_rates(&points, prior, notes);
    if rates.is_some() && !from_eager {
        notes.push(
            "throughput: fitted from compiled runs divided by the prior compile speed-ups (no compile-off run without offload yet)".into(),
        );
    }
    let (matmul, attention) = rates.map_or((prior.matmul_tflops, prior.attention_tflops), |r| {
        (r.matmul_tflops, r.attention_tflops)
    });
    let mut speedups = Vec::new();
    if rates.is_some() && from_eager {
        for mode in COMPILED_MODES {
            let factors: Vec<f64> = records
                .iter()
                .filter(timed)
                .filter(|r| r.mode() == Some(mode))
                .filter_map(TimePoint::of)
                .map(|p| p.s_per_forward / p.eager_s(matmul, attention))
                .collect();
            if factors.is_empty() {
                continue;
            }
            let factor = mean(&factors);
            let runs = factors.len();
            let (lo, hi) = SPEEDUP_RANGE;
            if !factor.is_finite() || factor < lo || factor > hi {
                notes.push(format!(
                    "{mode}: kept the prior speed-up ({:.2}): {runs} run(s) fit {factor:.2} of eager time, outside {lo}…{hi}",
                    prior.speedup.factor(mode)
                ));
                continue;
            }
            speedups.push(SpeedupFit {
                mode: mode.as_str().to_string(),
                factor,
                runs,
            });
        }
    }
    let offload = if rates.is_some() {
        fit_offload(records, prior, matmul, attention, &speedups, notes)
    } else {
        None
    };
    TimeFit {
        rates,
        speedups,
        offload,
    }
}

/// Relative least squares of s_fwd = L/R_mm + A/R_attn, or one factor on the prior rates.
fn fit_rates(
    points: &[TimePoint],
    prior: &TimeCoefficients,
    notes: &mut Vec<String>,
) -> Option<RateFit> {
    if points.is_empty() {
        notes.push(format!(
            "throughput: kept the prior ({:.0} / {:.0} TFLOP/s matmul / attention): no timed run without offload yet",
            prior.matmul_tflops, prior.attention_tflops
        ));
        return None;
    }
    let runs = points.len();
    let in_range = |rate: f64, prior_rate: f64| {
        rate.is_finite() && rate >= prior_rate / ABSURD_FACTOR && rate <= prior_rate * ABSURD_FACTOR
    };
    let (min_share, max_share) = points.iter().fold((1.0_f64, 0.0_f64), |(lo, hi), p| {
        let s = p.attention_share();
        (lo.min(s), hi.max(s))
    });
    if runs >= 2 && max_share - min_share >= MIN_ATTENTION_SHARE_SPREAD {
        match two_rates(points) {
            Some((matmul_tflops, attention_tflops))
                if in_range(matmul_tflops, prior.matmul_tflops)
                    && in_range(attention_tflops, prior.attention_tflops) =>
            {
                return Some(RateFit {
                    matmul_tflops,
                    attention_tflops,
                    runs,
                    method: RateMethod::TwoRates,
                });
            }
            Some((m, a)) => notes.push(format!(
                "throughput: the two-rate fit gave {m:.0} / {a:.0} TFLOP/s, implausible against the prior; scaled one rate instead"
            )),
            None => notes.push(
                "throughput: the two-rate system is degenerate; scaled one rate instead".into(),
            ),
        }
    } else if runs >= 2 {
        notes.push(format!(
            "throughput: {runs} runs share one attention share ({:.0}%), which cannot separate matmul from attention; scaled one rate",
            min_share * 100.0
        ));
    } else {
        notes.push(
            "throughput: one timed run; scaled one rate (a second length would separate matmul from attention)".into(),
        );
    }
    // y ≈ k · predicted: relative least squares gives k = Σ(p/y) / Σ(p/y)².
    let (num, den) = points.iter().fold((0.0, 0.0), |(num, den), p| {
        let ratio = p.eager_s(prior.matmul_tflops, prior.attention_tflops) / p.s_per_forward;
        (num + ratio, den + ratio * ratio)
    });
    let k = num / den;
    let matmul_tflops = prior.matmul_tflops / k;
    let attention_tflops = prior.attention_tflops / k;
    if !in_range(matmul_tflops, prior.matmul_tflops) {
        notes.push(format!(
            "throughput: kept the prior: {runs} run(s) put the card at {:.2}× its prior rate",
            1.0 / k
        ));
        return None;
    }
    Some(RateFit {
        matmul_tflops,
        attention_tflops,
        runs,
        method: RateMethod::OneEffectiveRate,
    })
}

/// Weighted (1/y²) least squares of y = a·L + b·A; returns (R_mm, R_attn) in TFLOP/s.
fn two_rates(points: &[TimePoint]) -> Option<(f64, f64)> {
    let (mut ll, mut la, mut aa, mut ly, mut ay) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for p in points {
        let w = 1.0 / (p.s_per_forward * p.s_per_forward);
        let (l, a, y) = (p.linear_pflop, p.attention_pflop, p.s_per_forward);
        ll += w * l * l;
        la += w * l * a;
        aa += w * a * a;
        ly += w * l * y;
        ay += w * a * y;
    }
    let det = ll * aa - la * la;
    if !det.is_finite() || det <= 1e-9 * ll * aa {
        return None;
    }
    // Seconds per PFLOP; a negative one gives a negative rate, which the caller rejects.
    let s_per_pflop_matmul = (ly * aa - ay * la) / det;
    let s_per_pflop_attention = (ay * ll - ly * la) / det;
    Some((1000.0 / s_per_pflop_matmul, 1000.0 / s_per_pflop_attention))
}

/// Mean extra seconds per forward per GiB streamed, over runs that offloaded.
fn fit_offload(
    records: &[RunRecord],
    prior: &TimeCoefficients,
    matmul: f64,
    attention: f64,
    speedups: &[SpeedupFit],
    notes: &mut Vec<String>,
) -> Option<OffloadFit> {
    let costs: Vec<f64> = records
        .iter()
        .filter(|r| r.offloaded_bytes > 0)
        .filter_map(|r| {
            let mode = r.mode()?;
            let p = TimePoint::of(r)?;
            let factor = speedups
                .iter()
                .find(|s| s.mode == mode.as_str())
                .map_or(prior.speedup.factor(mode), |s| s.factor);
            let extra = p.s_per_forward - factor * p.eager_s(matmul, attention);
            Some(extra / (r.offloaded_bytes as f64 / GIB))
        })
        .collect();
    if costs.is_empty() {
        return None;
    }
    let offload_s_per_gib = mean(&costs);
    let runs = costs.len();
    if !offload_s_per_gib.is_finite()
        || offload_s_per_gib < 0.0
        || offload_s_per_gib > ABSURD_FACTOR * prior.offload_s_per_gib
    {
        notes.push(format!(
            "offload: kept the prior ({:.1} s/GiB): {runs} run(s) fit {offload_s_per_gib:.2} s per GiB per forward",
            prior.offload_s_per_gib
        ));
        return None;
    }
    Some(OffloadFit {
        offload_s_per_gib,
        runs,
    })
}

/// Per (mode, size), in the order the runs finished: an out-of-memory run caps every length from
/// its own; a later success at a length L lifts every cap at or below L (the conditions changed,
/// or the earlier failure was a fluke), so the cap only rises when a longer run succeeds.
fn hard_caps(records: &[RunRecord]) -> Vec<HardCap> {
    let mut ordered: Vec<&RunRecord> = records.iter().filter(|r| r.mode().is_some()).collect();
    ordered.sort_by_key(|r| r.timestamp_secs);
    // (mode, width, height) → standing out-of-memory lengths, in first-seen order.
    let mut standing: IndexMap<(&str, u32, u32), Vec<u32>> = IndexMap::new();
    for r in ordered {
        let lengths = standing
            .entry((r.compile_mode.as_str(), r.width, r.height))
            .or_default();
        if r.out_of_memory {
            lengths.push(r.frames);
        } else {
            lengths.retain(|&f| f > r.frames);
        }
    }
    standing
        .into_iter()
        .filter_map(|((mode, width, height), lengths)| {
            let frames_from = lengths.iter().copied().min()?;
            Some(HardCap {
                mode: mode.to_string(),
                width,
                height,
                frames_from,
                out_of_memory_runs: lengths.len(),
            })
        })
        .collect()
}

/// Ordinary least squares y = a + b·x; `None` when all x are equal.
fn line_fit(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (sxx, sxy) = points.iter().fold((0.0, 0.0), |(sxx, sxy), &(x, y)| {
        (
            sxx + (x - mean_x) * (x - mean_x),
            sxy + (x - mean_x) * (y - mean_y),
        )
    });
    if sxx.is_nan() || sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    Some((mean_y - slope * mean_x, slope))
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::comfyui::{Latent, WanVae};
    use crate::budget::physical::{self, DitSize, TorchGeneration};
    use crate::budget::time::{self, DitShape, Pass};

    const A14B: DitShape = DitShape::A14B;
    const CARD: &str = "NVIDIA GeForce RTX 4090";
    const FAMILY: &str = "wan2.2-a14b-fp8";
    const EXPERT_BYTES: f64 = 13_629.08 * 1024.0 * 1024.0;

    fn prior() -> Prior {
        (
            Coefficients::prior(DitSize::B14, TorchGeneration::FusedRmsNorm, WanVae::V21),
            TimeCoefficients::prior(330.4),
        )
    }

    /// The "real" card: every calibrated coefficient moved away from its prior.
    fn truth() -> Prior {
        let (mut c, mut t) = prior();
        c.activation_kib_per_token = 93.0;
        c.workspace_gib = 1.45;
        c.compile.default_share = -0.04;
        c.compile.reduce_overhead_share = 0.33;
        c.compile.max_autotune_share = 0.27;
        t.matmul_tflops = 180.0;
        t.attention_tflops = 120.0;
        t.speedup.default = 0.90;
        t.speedup.reduce_overhead = 0.86;
        t.offload_s_per_gib = 3.1;
        (c, t)
    }

    /// Deterministic noise in [−1, 1] (xorshift64).
    struct Noise(u64);

    impl Noise {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 52) as f64 * 2.0 - 1.0
        }
    }

    /// Peak and step time of a run as the model with `truth` predicts them, plus noise: ±64 MiB on
    /// the peak, ±1% on the time.
    #[allow(clippy::too_many_arguments)]
    fn synth(
        truth: &Prior,
        frames: u32,
        mode: CompileMode,
        batched_samples: u32,
        offloaded_bytes: f64,
        noise: &mut Noise,
        timestamp_secs: u64,
    ) -> RunRecord {
        let (width, height) = (832, 480);
        let latent = Latent::of_video(frames, width, height, 8);
        let tokens = physical::tokens(latent);
        let resident = EXPERT_BYTES - offloaded_bytes;
        let peak = physical::sampling_peak(&truth.0, latent, resident, batched_samples, mode)
            .total_bytes
            + 64.0 * 1024.0 * 1024.0 * noise.next();
        let pass = Pass {
            steps: 1,
            forwards_per_step: 2,
            offloaded_bytes,
        };
        let t = time::run_time(&truth.1, A14B, tokens, 0.0, &[pass], mode, false);
        let s_per_step = (t.sampling_s + t.offload_s) * (1.0 + 0.01 * noise.next());
        let (linear, attention) = time::flops_per_forward(A14B, tokens);
        RunRecord {
            card: CARD.into(),
            family: FAMILY.into(),
            frames,
            width,
            height,
            tokens,
            batched_samples,
            compile_mode: mode.as_str().into(),
            resident_weights_bytes: resident as u64,
            peak_reserved_bytes: Some(peak as u64),
            sampling_s_per_step: Some(s_per_step),
            forwards_per_step: 2,
            linear_flops_per_forward: linear,
            attention_flops_per_forward: attention,
            offloaded_bytes: offloaded_bytes as u64,
            out_of_memory: false,
            wan_pilot_version: "0.1.0".into(),
            timestamp_secs,
        }
    }

    fn oom(frames: u32, mode: CompileMode, width: u32, timestamp_secs: u64) -> RunRecord {
        let latent = Latent::of_video(frames, width, 480, 8);
        RunRecord {
            card: CARD.into(),
            family: FAMILY.into(),
            frames,
            width,
            height: 480,
            tokens: physical::tokens(latent),
            batched_samples: 1,
            compile_mode: mode.as_str().into(),
            resident_weights_bytes: EXPERT_BYTES as u64,
            forwards_per_step: 2,
            out_of_memory: true,
            timestamp_secs,
            ..RunRecord::default()
        }
    }

    fn calibrate(records: Vec<RunRecord>) -> (Calibration, Calibrated) {
        let mut cal = Calibration::default();
        for r in records {
            cal.record(r, prior()).unwrap();
        }
        let applied = cal.apply(CARD, FAMILY, prior());
        (cal, applied)
    }

    fn near(value: f64, expected: f64, relative: f64) -> bool {
        (value - expected).abs() <= relative * expected.abs()
    }

    fn source(c: &Calibrated, name: &str) -> String {
        c.sources
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.source.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn recovers_activation_and_workspace_from_noisy_eager_runs() {
        let truth = truth();
        let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
        let records = [33, 49, 61, 81, 97, 121]
            .iter()
            .enumerate()
            .map(|(i, &f)| {
                synth(
                    &truth,
                    f,
                    CompileMode::Off,
                    1 + (i as u32 % 2),
                    0.0,
                    &mut noise,
                    i as u64,
                )
            })
            .collect();
        let (_, c) = calibrate(records);
        let k = c.coefficients;
        assert!(
            near(k.activation_kib_per_token, 93.0, 0.02),
            "{}",
            k.activation_kib_per_token
        );
        // ±64 MiB of noise extrapolated to zero tokens: the intercept is the looser part.
        assert!((k.workspace_gib - 1.45).abs() < 0.25, "{}", k.workspace_gib);
        // What matters: a held-out length, batched, predicted within 1%.
        let latent = Latent::of_video(161, 832, 480, 8);
        let predicted = physical::sampling_peak(&k, latent, EXPERT_BYTES, 2, CompileMode::Off);
        let real = physical::sampling_peak(&truth.0, latent, EXPERT_BYTES, 2, CompileMode::Off);
        assert!(
            near(predicted.total_bytes, real.total_bytes, 0.01),
            "{} vs {}",
            predicted.total_bytes / GIB,
            real.total_bytes / GIB
        );
        assert_eq!(
            source(&c, "activation_kib_per_token"),
            "calibrated from 6 runs"
        );
        assert_eq!(source(&c, "workspace_gib"), "calibrated from 6 runs");
        // The prior stays beside it.
        let a = c
            .sources
            .iter()
            .find(|s| s.name == "activation_kib_per_token")
            .unwrap();
        assert_eq!(a.prior, 85.2);
    }

    #[test]
    fn recovers_both_rates_from_runs_at_different_lengths() {
        let truth = truth();
        let mut noise = Noise(42);
        let records = [17, 33, 61, 81, 121]
            .iter()
            .enumerate()
            .map(|(i, &f)| synth(&truth, f, CompileMode::Off, 1, 0.0, &mut noise, i as u64))
            .collect();
        let (cal, c) = calibrate(records);
        assert!(
            near(c.timing.matmul_tflops, 180.0, 0.05),
            "{}",
            c.timing.matmul_tflops
        );
        assert!(
            near(c.timing.attention_tflops, 120.0, 0.05),
            "{}",
            c.timing.attention_tflops
        );
        let fit = &cal.entry(CARD, FAMILY).unwrap().fit;
        assert_eq!(fit.rates.unwrap().method, RateMethod::TwoRates);
        assert_eq!(source(&c, "matmul_tflops"), "calibrated from 5 runs");
    }

    #[test]
    fn recovers_compile_shares_and_speed_ups_per_mode_with_counts() {
        let truth = truth();
        let mut noise = Noise(7);
        let mut records = Vec::new();
        let mut ts = 0;
        for f in [33, 61, 81, 121] {
            records.push(synth(&truth, f, CompileMode::Off, 1, 0.0, &mut noise, ts));
            ts += 1;
        }
        for (mode, lengths) in [
            (CompileMode::ReduceOverhead, &[49, 81, 97][..]),
            (CompileMode::Default, &[61][..]),
            (CompileMode::MaxAutotune, &[65, 81][..]),
        ] {
            for &f in lengths {
                records.push(synth(&truth, f, mode, 1, 0.0, &mut noise, ts));
                ts += 1;
            }
        }
        let (cal, c) = calibrate(records);
        let share = &c.coefficients.compile;
        assert!(
            (share.reduce_overhead_share - 0.33).abs() < 0.04,
            "{}",
            share.reduce_overhead_share
        );
        assert!(
            (share.max_autotune_share - 0.27).abs() < 0.04,
            "{}",
            share.max_autotune_share
        );
        assert!(
            (share.default_share + 0.04).abs() < 0.05,
            "{}",
            share.default_share
        );
        // No max-autotune-no-cudagraphs run: its prior stays.
        assert_eq!(share.max_autotune_no_cudagraphs_share, -0.10);
        assert_eq!(
            source(&c, "compile_share.reduce-overhead"),
            "calibrated from 3 runs"
        );
        assert_eq!(source(&c, "compile_share.default"), "calibrated from 1 run");
        assert_eq!(
            source(&c, "compile_share.max-autotune-no-cudagraphs"),
            "prior"
        );
        let fit = &cal.entry(CARD, FAMILY).unwrap().fit;
        let ro = fit
            .compile
            .iter()
            .find(|s| s.mode == "reduce-overhead")
            .unwrap();
        assert_eq!(ro.runs, 3);
        assert!(
            near(c.timing.speedup.reduce_overhead, 0.86, 0.03),
            "{}",
            c.timing.speedup.reduce_overhead
        );
        assert!(
            near(c.timing.speedup.default, 0.90, 0.03),
            "{}",
            c.timing.speedup.default
        );
        assert_eq!(source(&c, "speedup.max-autotune"), "calibrated from 2 runs");
    }

    #[test]
    fn recovers_the_offload_cost() {
        let truth = truth();
        let mut noise = Noise(99);
        let mut records: Vec<RunRecord> = [33, 61, 121]
            .iter()
            .enumerate()
            .map(|(i, &f)| synth(&truth, f, CompileMode::Off, 1, 0.0, &mut noise, i as u64))
            .collect();
        records.push(synth(
            &truth,
            81,
            CompileMode::Off,
            1,
            2.3 * GIB,
            &mut noise,
            10,
        ));
        records.push(synth(
            &truth,
            97,
            CompileMode::Default,
            1,
            4.0 * GIB,
            &mut noise,
            11,
        ));
        let (_, c) = calibrate(records);
        assert!(
            near(c.timing.offload_s_per_gib, 3.1, 0.15),
            "{}",
            c.timing.offload_s_per_gib
        );
        assert_eq!(source(&c, "offload_s_per_gib"), "calibrated from 2 runs");
        // Offloaded runs teach neither rate.
        assert_eq!(source(&c, "matmul_tflops"), "calibrated from 3 runs");
    }

    #[test]
    fn one_run_keeps_the_memory_prior_and_scales_one_rate() {
        let truth = truth();
        let record = synth(&truth, 81, CompileMode::Off, 1, 0.0, &mut Noise(3), 0);
        let (cal, c) = calibrate(vec![record.clone()]);
        let (p, pt) = prior();
        assert_eq!(
            c.coefficients.activation_kib_per_token,
            p.activation_kib_per_token
        );
        assert_eq!(source(&c, "activation_kib_per_token"), "prior");
        assert!(
            c.notes
                .iter()
                .any(|n| n.contains("kept the prior") && n.contains("2 at different lengths"))
        );
        let fit = cal.entry(CARD, FAMILY).unwrap().fit.rates.unwrap();
        assert_eq!(fit.method, RateMethod::OneEffectiveRate);
        // The prior's matmul/attention ratio is kept and the one run is reproduced.
        assert!(near(
            c.timing.matmul_tflops / c.timing.attention_tflops,
            pt.matmul_tflops / pt.attention_tflops,
            1e-9
        ));
        let p = TimePoint::of(&record).unwrap();
        let predicted = p.eager_s(c.timing.matmul_tflops, c.timing.attention_tflops);
        assert!(near(predicted, p.s_per_forward, 1e-9));
    }

    #[test]
    fn one_token_count_is_degenerate_for_both_fits() {
        let truth = truth();
        let mut noise = Noise(5);
        let records = (0..4)
            .map(|i| synth(&truth, 81, CompileMode::Off, 1, 0.0, &mut noise, i))
            .collect();
        let (cal, c) = calibrate(records);
        assert_eq!(source(&c, "activation_kib_per_token"), "prior");
        assert!(c.notes.iter().any(|n| n.contains("same token count")));
        assert!(c.notes.iter().any(|n| n.contains("cannot separate")));
        let rates = cal.entry(CARD, FAMILY).unwrap().fit.rates.unwrap();
        assert_eq!(
            (rates.method, rates.runs),
            (RateMethod::OneEffectiveRate, 4)
        );
    }

    #[test]
    fn absurd_memory_fits_are_rejected_with_a_reason() {
        let truth = truth();
        let mut noise = Noise(11);
        // Peaks that fall as length grows: a record measured something else.
        let mut shrinking: Vec<RunRecord> = [33, 81]
            .iter()
            .map(|&f| synth(&truth, f, CompileMode::Off, 1, 0.0, &mut noise, 0))
            .collect();
        shrinking[1].peak_reserved_bytes = Some(EXPERT_BYTES as u64 + 1024);
        let (_, c) = calibrate(shrinking);
        assert_eq!(source(&c, "activation_kib_per_token"), "prior");
        assert!(
            c.notes.iter().any(|n| n.contains("not positive")),
            "{:?}",
            c.notes
        );

        // Five times the prior per token.
        let mut huge = truth;
        huge.0.activation_kib_per_token = 5.0 * 85.2;
        let records = [33, 81]
            .iter()
            .map(|&f| synth(&huge, f, CompileMode::Off, 1, 0.0, &mut noise, 0))
            .collect();
        let (_, c) = calibrate(records);
        assert_eq!(source(&c, "activation_kib_per_token"), "prior");
        assert!(
            c.notes.iter().any(|n| n.contains("4× the prior")),
            "{:?}",
            c.notes
        );

        // A negative workspace: the intercept below zero.
        let mut negative = truth;
        negative.0.workspace_gib = -2.0;
        let records = [33, 81]
            .iter()
            .map(|&f| synth(&negative, f, CompileMode::Off, 1, 0.0, &mut noise, 0))
            .collect();
        let (_, c) = calibrate(records);
        assert_eq!(source(&c, "workspace_gib"), "prior");
        assert!(
            c.notes.iter().any(|n| n.contains("negative workspace")),
            "{:?}",
            c.notes
        );
    }

    #[test]
    fn absurd_compile_speed_and_offload_fits_keep_the_prior() {
        let truth = truth();
        let mut noise = Noise(13);
        let mut records: Vec<RunRecord> = [33, 81]
            .iter()
            .map(|&f| synth(&truth, f, CompileMode::Off, 1, 0.0, &mut noise, 0))
            .collect();
        let mut pool = synth(
            &truth,
            61,
            CompileMode::ReduceOverhead,
            1,
            0.0,
            &mut noise,
            1,
        );
        pool.peak_reserved_bytes = pool.peak_reserved_bytes.map(|p| p + 40 * GIB as u64);
        pool.sampling_s_per_step = pool.sampling_s_per_step.map(|s| s * 5.0);
        records.push(pool);
        let mut streamed = synth(&truth, 61, CompileMode::Off, 1, 2.0 * GIB, &mut noise, 2);
        streamed.sampling_s_per_step = Some(1.0);
        records.push(streamed);
        let (_, c) = calibrate(records);
        assert_eq!(source(&c, "compile_share.reduce-overhead"), "prior");
        assert_eq!(source(&c, "speedup.reduce-overhead"), "prior");
        assert_eq!(source(&c, "offload_s_per_gib"), "prior");
        assert!(
            c.notes
                .iter()
                .any(|n| n.starts_with("reduce-overhead: kept the prior compile share"))
        );
        assert!(
            c.notes
                .iter()
                .any(|n| n.starts_with("reduce-overhead: kept the prior speed-up"))
        );
        assert!(
            c.notes
                .iter()
                .any(|n| n.starts_with("offload: kept the prior"))
        );
    }

    #[test]
    fn implausible_two_rate_fit_falls_back_to_one_rate() {
        let truth = truth();
        let mut noise = Noise(17);
        let mut records: Vec<RunRecord> = [33, 121]
            .iter()
            .map(|&f| synth(&truth, f, CompileMode::Off, 1, 0.0, &mut noise, 0))
            .collect();
        // The short run as slow as the long one: attention would have to be free.
        records[0].sampling_s_per_step = records[1].sampling_s_per_step;
        let (cal, c) = calibrate(records);
        let rates = cal.entry(CARD, FAMILY).unwrap().fit.rates;
        assert!(rates.is_none_or(|r| r.method == RateMethod::OneEffectiveRate));
        assert!(
            c.notes.iter().any(|n| n.contains("two-rate")),
            "{:?}",
            c.notes
        );
    }

    #[test]
    fn compiled_runs_alone_teach_the_rates_through_the_prior_speed_ups() {
        let (c0, mut t0) = truth();
        t0.speedup = prior().1.speedup;
        let truth = (c0, t0);
        let mut noise = Noise(19);
        let records = [33, 81, 121]
            .iter()
            .map(|&f| synth(&truth, f, CompileMode::Default, 1, 0.0, &mut noise, 0))
            .collect();
        let (_, c) = calibrate(records);
        assert!(
            near(c.timing.matmul_tflops, 180.0, 0.05),
            "{}",
            c.timing.matmul_tflops
        );
        assert_eq!(source(&c, "speedup.default"), "prior");
        assert!(
            c.notes
                .iter()
                .any(|n| n.contains("divided by the prior compile speed-ups"))
        );
        // Compiled runs alone cannot teach the eager activations.
        assert_eq!(source(&c, "activation_kib_per_token"), "prior");
    }

    #[test]
    fn out_of_memory_runs_teach_nothing_but_the_cap() {
        let truth = truth();
        let mut noise = Noise(23);
        let mut records: Vec<RunRecord> = [33, 81]
            .iter()
            .map(|&f| synth(&truth, f, CompileMode::Off, 1, 0.0, &mut noise, 0))
            .collect();
        let mut failed = synth(&truth, 121, CompileMode::Off, 1, 0.0, &mut noise, 1);
        failed.out_of_memory = true;
        failed.peak_reserved_bytes = Some(1);
        failed.sampling_s_per_step = Some(1000.0);
        records.push(failed);
        let (_, c) = calibrate(records);
        assert_eq!(
            source(&c, "activation_kib_per_token"),
            "calibrated from 2 runs"
        );
        assert_eq!(source(&c, "matmul_tflops"), "calibrated from 2 runs");
        assert_eq!(c.cap(CompileMode::Off, 832, 480), Some(121));
    }

    #[test]
    fn out_of_memory_caps_every_longer_length_and_rise_only_on_a_longer_success() {
        let truth = truth();
        let mut noise = Noise(29);
        let ro = CompileMode::ReduceOverhead;
        let mut cal = Calibration::default();
        let mut add = |r: RunRecord| {
            cal.record(r, prior()).unwrap();
            cal.apply(CARD, FAMILY, prior())
        };
        let c = add(oom(121, ro, 832, 1));
        assert_eq!(c.cap(ro, 832, 480), Some(121));
        let c = add(oom(81, ro, 832, 2));
        assert_eq!(c.cap(ro, 832, 480), Some(81));
        assert!(c.is_capped(ro, 832, 480, 81) && c.is_capped(ro, 832, 480, 161));
        assert!(!c.is_capped(ro, 832, 480, 77));
        // Other modes and sizes are not capped.
        assert_eq!(c.cap(CompileMode::Off, 832, 480), None);
        assert_eq!(c.cap(ro, 1280, 480), None);
        // A shorter success changes nothing.
        let c = add(synth(&truth, 61, ro, 1, 0.0, &mut noise, 3));
        assert_eq!(c.cap(ro, 832, 480), Some(81));
        // A longer success lifts the cap to the next failure still standing.
        let c = add(synth(&truth, 97, ro, 1, 0.0, &mut noise, 4));
        assert_eq!(c.cap(ro, 832, 480), Some(121));
        assert_eq!(c.caps[0].out_of_memory_runs, 1);
        let c = add(synth(&truth, 121, ro, 1, 0.0, &mut noise, 5));
        assert_eq!(c.cap(ro, 832, 480), None);
        // A newer failure below an older success caps again.
        let c = add(oom(65, ro, 832, 6));
        assert_eq!(c.cap(ro, 832, 480), Some(65));
    }

    #[test]
    fn caps_follow_the_order_runs_finished_not_the_order_recorded() {
        let truth = truth();
        let ro = CompileMode::ReduceOverhead;
        let records = vec![
            synth(&truth, 97, ro, 1, 0.0, &mut Noise(31), 20),
            oom(81, ro, 832, 10),
        ];
        let (_, c) = calibrate(records);
        assert_eq!(c.cap(ro, 832, 480), None);
    }

    #[test]
    fn no_runs_means_every_coefficient_is_the_prior() {
        let c = Calibration::default().apply(CARD, FAMILY, prior());
        assert_eq!(c.coefficients, prior().0);
        assert_eq!(c.timing, prior().1);
        assert!(c.caps.is_empty());
        assert_eq!(c.sources.len(), 13);
        assert!(
            c.sources
                .iter()
                .all(|s| s.source == Source::Prior && s.value == s.prior)
        );
        assert!(c.notes[0].contains("no runs recorded"));
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["sources"][0]["source"], "prior");
    }

    #[test]
    fn invalid_records_are_refused() {
        let mut cal = Calibration::default();
        let good = synth(&truth(), 81, CompileMode::Off, 1, 0.0, &mut Noise(37), 0);
        type Spoil = fn(&mut RunRecord);
        let cases: [(Spoil, &str); 6] = [
            (|r| r.card.clear(), "card"),
            (|r| r.tokens = 0, "token"),
            (|r| r.batched_samples = 3, "batched"),
            (|r| r.linear_flops_per_forward = f64::NAN, "linear"),
            (|r| r.sampling_s_per_step = Some(-1.0), "seconds"),
            (|r| r.compile_mode = "turbo".into(), "turbo"),
        ];
        for (spoil, word) in cases {
            let mut r = good.clone();
            spoil(&mut r);
            let err = cal.record(r, prior()).unwrap_err();
            assert!(err.to_string().contains(word), "{err}");
        }
        assert!(cal.entries.is_empty());
        cal.record(good, prior()).unwrap();
        assert_eq!(cal.entries.len(), 1);
    }

    #[test]
    fn records_are_kept_per_card_and_family_and_trimmed() {
        let truth = truth();
        let mut noise = Noise(41);
        let mut cal = Calibration::default();
        for i in 0..(MAX_RECORDS_PER_KEY as u64 + 5) {
            let r = synth(
                &truth,
                33 + 4 * (i as u32 % 10),
                CompileMode::Off,
                1,
                0.0,
                &mut noise,
                i,
            );
            cal.record(r, prior()).unwrap();
        }
        let mut other = synth(&truth, 81, CompileMode::Off, 1, 0.0, &mut noise, 0);
        other.family = "wan2.2-ti2v-5b-fp16".into();
        cal.record(other, prior()).unwrap();
        assert_eq!(cal.entries.len(), 2);
        let entry = cal.entry(CARD, FAMILY).unwrap();
        assert_eq!(entry.records.len(), MAX_RECORDS_PER_KEY);
        assert_eq!(entry.records[0].timestamp_secs, 5);
        // The 5B family learned nothing from the 14B runs.
        let five = cal.apply(CARD, "wan2.2-ti2v-5b-fp16", prior());
        assert_eq!(source(&five, "activation_kib_per_token"), "prior");
    }

    #[test]
    fn refit_uses_the_new_prior() {
        let truth = truth();
        let mut noise = Noise(43);
        let records = [33, 81]
            .iter()
            .map(|&f| synth(&truth, f, CompileMode::Off, 1, 0.0, &mut noise, 0))
            .collect();
        let (mut cal, before) = calibrate(records);
        let (mut c, t) = prior();
        c.allocator_factor_sampling = 1.0;
        cal.refit(CARD, FAMILY, (c, t));
        let after = cal.apply(CARD, FAMILY, (c, t));
        // Same product ρ·α: the fit moved into α.
        assert!(near(
            after.coefficients.activation_kib_per_token,
            before.coefficients.activation_kib_per_token * 1.11,
            1e-9
        ));
    }

    #[test]
    fn the_store_reads_old_and_partial_files() {
        let cal: Calibration = serde_json::from_str("{}").unwrap();
        assert_eq!(cal.version, CALIBRATION_VERSION);
        let cal: Calibration = serde_json::from_str(
            r#"{"version":1,"entries":[{"card":"x","family":"y","records":[{"frames":81}]}]}"#,
        )
        .unwrap();
        assert_eq!(cal.entries[0].records[0].frames, 81);
        assert_eq!(cal.entries[0].fit, Fit::default());
        let mut full = Calibration::default();
        full.record(
            synth(&truth(), 81, CompileMode::Off, 1, 0.0, &mut Noise(47), 0),
            prior(),
        )
        .unwrap();
        let json = serde_json::to_string(&full).unwrap();
        // serde_json may move a float's last bit when reading it back (no `float_roundtrip`
        // feature); everything else comes back as written.
        let back: Calibration = serde_json::from_str(&json).unwrap();
        assert_eq!(back.version, CALIBRATION_VERSION);
        assert_eq!(back.entries[0].fit.notes, full.entries[0].fit.notes);
        let (a, b) = (&back.entries[0].records[0], &full.entries[0].records[0]);
        assert_eq!(
            (a.tokens, a.peak_reserved_bytes),
            (b.tokens, b.peak_reserved_bytes)
        );
        assert!(near(
            a.sampling_s_per_step.unwrap(),
            b.sampling_s_per_step.unwrap(),
            1e-12
        ));
    }
}
