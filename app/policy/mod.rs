//! The torch.compile mode wan-pilot runs with: the fastest mode whose projected peak fits the free
//! memory with a margin, the reasons in plain words, the server flags it implies, the largest safe
//! frame count per mode (the slider's zones), and the ladder to step down after an out-of-memory.
//! Pure: it reads projections, it measures nothing.

pub mod zones;

use serde::Serialize;

use crate::budget::calibrate::Calibrated;
use crate::budget::physical::{CompileMode, uses_cuda_graphs};
use crate::budget::projection::{FrameProjection, ModeProjection};

const GB: f64 = 1024.0 * 1024.0 * 1024.0;

/// The decision for one frame count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Choice {
    pub mode: &'static str,
    /// The sentence the window shows next to the mode.
    pub summary: String,
    /// One line per mode: why it was taken or passed over.
    pub reasons: Vec<String>,
    /// Server flags the mode needs (`--disable-cuda-malloc` for CUDA-graph modes).
    pub launch_flags: Vec<String>,
    /// Modes to retry with, in order, if this one still runs out of memory.
    pub oom_ladder: Vec<&'static str>,
    /// Whether any mode fits; when none does, the mode is the least bad and the run will likely
    /// run out of memory.
    pub fits: bool,
}

/// Chooses the mode for one projected frame count.
pub fn choose(projection: &FrameProjection) -> Choice {
    let fitting: Vec<&ModeProjection> = projection.modes.iter().filter(|m| m.fits).collect();
    let chosen = fitting
        .iter()
        .min_by(|a, b| a.time.total_s.total_cmp(&b.time.total_s))
        .copied()
        .or_else(|| {
            // Nothing fits: the mode with the lowest sampling peak that has no structural
            // blocker (CUDA graphs with streamed weights), the safest first on ties.
            projection
                .modes
                .iter()
                .rev()
                .filter(|m| !m.is_ruled_out)
                .min_by(|a, b| a.sampling_peak_bytes.total_cmp(&b.sampling_peak_bytes))
                .or_else(|| projection.modes.last())
        });
    let Some(chosen) = chosen else {
        return Choice {
            mode: CompileMode::Off.as_str(),
            summary: "no projection".into(),
            reasons: Vec::new(),
            launch_flags: Vec::new(),
            oom_ladder: Vec::new(),
            fits: false,
        };
    };
    let mode = CompileMode::parse(chosen.mode).unwrap_or(CompileMode::Off);
    let frames = projection.frames;
    let summary = if chosen.fits {
        format!(
            "{frames} frames: {} fits with {:.1} GiB spare, about {:.0} s",
            chosen.mode,
            chosen.spare_bytes / GB,
            chosen.time.total_s
        )
    } else {
        format!(
            "{frames} frames: nothing fits; {} needs the least memory ({:.1} GiB short) — fewer frames or a smaller size would fit",
            chosen.mode,
            (-chosen.spare_bytes).max(0.0) / GB
        )
    };
    let reasons = projection
        .modes
        .iter()
        .map(|m| {
            let compiling = if m.time.compile_s > 0.0 {
                format!(", {:.0} s of it compiling (a new size)", m.time.compile_s)
            } else {
                String::new()
            };
            if m.mode == chosen.mode {
                format!(
                    "{}: chosen — {:.1} GiB spare, about {:.0} s{compiling}",
                    m.mode,
                    m.spare_bytes / GB,
                    m.time.total_s
                )
            } else if m.fits {
                format!(
                    "{}: fits ({:.1} GiB spare) but slower, about {:.0} s{compiling}",
                    m.mode,
                    m.spare_bytes / GB,
                    m.time.total_s
                )
            } else {
                format!("{}: {}", m.mode, m.blockers.join("; "))
            }
        })
        .collect();
    let launch_flags = if uses_cuda_graphs(mode) {
        vec!["--disable-cuda-malloc".to_string()]
    } else {
        Vec::new()
    };
    Choice {
        mode: chosen.mode,
        summary,
        reasons,
        launch_flags,
        oom_ladder: oom_ladder(mode)
            .into_iter()
            .map(CompileMode::as_str)
            .collect(),
        fits: chosen.fits,
    }
}

/// Marks the modes that already ran out of memory at this length (or a shorter one) on this card
/// as not fitting, whatever the projection says: measured failures outrank the model.
pub fn apply_caps(
    projection: &mut FrameProjection,
    calibrated: &Calibrated,
    width: u32,
    height: u32,
) {
    for mode in &mut projection.modes {
        let Some(parsed) = CompileMode::parse(mode.mode) else {
            continue;
        };
        if let Some(from) = calibrated.cap(parsed, width, height)
            && projection.frames >= from
        {
            mode.fits = false;
            mode.blockers.push(format!(
                "it ran out of memory at {from} frames at this size on this card before"
            ));
        }
    }
}

/// After an out-of-memory with `mode`, the modes to try next: drop CUDA graphs first (their pool),
/// then autotuning, then compiling at all.
pub fn oom_ladder(mode: CompileMode) -> Vec<CompileMode> {
    let order = [
        CompileMode::MaxAutotune,
        CompileMode::ReduceOverhead,
        CompileMode::MaxAutotuneNoCudagraphs,
        CompileMode::Default,
        CompileMode::Off,
    ];
    match order.iter().position(|m| *m == mode) {
        Some(at) => order.iter().skip(at + 1).copied().collect(),
        None => Vec::new(),
    }
}

/// The rule the seed documents recommend, kept as a named baseline to compare against:
/// reduce-overhead up to 49 frames, compile off above.
pub fn baseline_rule(frames: u32) -> CompileMode {
    if frames <= 49 {
        CompileMode::ReduceOverhead
    } else {
        CompileMode::Off
    }
}

/// The largest frame count (4n+1, up to `max_frames`) at which each mode still fits, given a
/// projection function; `None` for a mode that fits at no length. For the slider's zones.
pub fn largest_safe_frames(
    max_frames: u32,
    mut project: impl FnMut(u32) -> FrameProjection,
) -> Vec<(&'static str, Option<u32>)> {
    let mut best: Vec<(&'static str, Option<u32>)> = CompileMode::ALL
        .iter()
        .map(|m| (m.as_str(), None))
        .collect();
    let mut frames = 1;
    while frames <= max_frames {
        let projection = project(frames);
        for (entry, mode) in best.iter_mut().zip(&projection.modes) {
            if mode.fits {
                entry.1 = Some(frames);
            }
        }
        frames += 4;
    }
    best
}

/// The settings of one retry after an out-of-memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rung {
    pub mode: CompileMode,
    pub frames: u32,
}

/// After an out-of-memory at `mode` and `frames`: the lower compile modes at the same length
/// (the [`oom_ladder`]), then compile off at fewer frames — the longest length calibrated safe
/// without compiling when that is shorter, else three quarters of the length (4n+1). Bounded by
/// its construction: at most five rungs.
pub fn retry_rungs(mode: CompileMode, frames: u32, safe_frames_off: Option<u32>) -> Vec<Rung> {
    let mut rungs: Vec<Rung> = oom_ladder(mode)
        .into_iter()
        .map(|mode| Rung { mode, frames })
        .collect();
    let fewer = match safe_frames_off {
        Some(safe) if safe < frames => safe,
        _ => crate::workflow::edit::snap_frames(frames * 3 / 4),
    };
    if fewer < frames && fewer >= 1 {
        rungs.push(Rung {
            mode: CompileMode::Off,
            frames: fewer,
        });
    }
    rungs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ladder_steps_down_to_off() {
        assert_eq!(
            oom_ladder(CompileMode::MaxAutotune),
            vec![
                CompileMode::ReduceOverhead,
                CompileMode::MaxAutotuneNoCudagraphs,
                CompileMode::Default,
                CompileMode::Off
            ]
        );
        assert!(oom_ladder(CompileMode::Off).is_empty());
    }

    fn projection_at(frames: u32, free_gib: f64) -> FrameProjection {
        use crate::budget::comfyui::WanVae;
        use crate::budget::physical::{Coefficients, DitSize, TorchGeneration};
        use crate::budget::projection::{project, tests::a14b_i2v_on_a_4090};
        use crate::budget::time::TimeCoefficients;
        let (mut card, workload, settings) = a14b_i2v_on_a_4090();
        card.free_bytes = free_gib * GB;
        let c = Coefficients::prior(DitSize::B14, TorchGeneration::FusedRmsNorm, WanVae::V21);
        let t = TimeCoefficients::prior(card.fp16_tflops);
        project(&card, &workload, &settings, &c, &t, frames)
    }

    #[test]
    fn the_fastest_fitting_mode_wins_and_every_mode_gets_a_reason() {
        let projection = projection_at(49, 23.0);
        let choice = choose(&projection);
        assert!(choice.fits, "{choice:?}");
        assert_eq!(choice.reasons.len(), 5);
        let chosen = projection
            .modes
            .iter()
            .find(|m| m.mode == choice.mode)
            .unwrap();
        for m in projection.modes.iter().filter(|m| m.fits) {
            assert!(chosen.time.total_s <= m.time.total_s);
        }
        assert!(
            choice.summary.starts_with("49 frames: "),
            "{}",
            choice.summary
        );
    }

    #[test]
    fn streamed_weights_rule_out_cuda_graphs() {
        let choice = choose(&projection_at(81, 15.0));
        let mode = CompileMode::parse(choice.mode).unwrap();
        assert!(!uses_cuda_graphs(mode), "{choice:?}");
        assert!(choice.launch_flags.is_empty());
    }

    #[test]
    fn safe_lengths_shrink_with_memory() {
        let roomy = largest_safe_frames(161, |f| projection_at(f, 23.0));
        let tight = largest_safe_frames(161, |f| projection_at(f, 14.0));
        for ((mode, a), (_, b)) in roomy.iter().zip(&tight) {
            assert!(a.unwrap_or(0) >= b.unwrap_or(0), "{mode}: {a:?} < {b:?}");
        }
    }

    #[test]
    fn the_baseline_switches_at_49_frames() {
        assert_eq!(baseline_rule(49), CompileMode::ReduceOverhead);
        assert_eq!(baseline_rule(53), CompileMode::Off);
    }

    #[test]
    fn retries_lower_modes_then_fewer_frames() {
        let rungs = retry_rungs(CompileMode::ReduceOverhead, 81, Some(49));
        let modes: Vec<(CompileMode, u32)> = rungs.iter().map(|r| (r.mode, r.frames)).collect();
        assert_eq!(
            modes,
            vec![
                (CompileMode::MaxAutotuneNoCudagraphs, 81),
                (CompileMode::Default, 81),
                (CompileMode::Off, 81),
                (CompileMode::Off, 49),
            ]
        );
        // Calibration thinks 81 is safe, yet it failed: three quarters, as 4n+1.
        let last = retry_rungs(CompileMode::Off, 81, Some(121));
        assert_eq!(
            last,
            vec![Rung {
                mode: CompileMode::Off,
                frames: 61
            }]
        );
        // A single frame has nowhere lower to go.
        assert!(retry_rungs(CompileMode::Off, 1, None).is_empty());
    }
}
