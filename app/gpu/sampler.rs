//! A worker thread that reads one GPU's memory 1–4 times a second, sends each reading through a
//! channel and keeps the peak since the last mark — the measured peak a run records and the
//! budget calibrates against.
//!
//! Where readings come from is the [`MemorySource`] trait: NVML in the app
//! ([`super::nvml::NvmlSource`]), a scripted source in tests, which then go through the same
//! thread, channel and peak code as the real one.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::nvml::{GpuUnavailable, NvmlSource, ProcessMemory};

/// Slowest sampling rate: slower would miss the short peaks of a VAE decode.
pub const MIN_HZ: u32 = 1;
/// Fastest sampling rate: NVML memory queries cost about a millisecond; faster buys nothing a
/// person can see.
pub const MAX_HZ: u32 = 4;

/// The rate a sampler really runs at: `hz` held to [`MIN_HZ`]..=[`MAX_HZ`].
pub fn clamp_hz(hz: u32) -> u32 {
    hz.clamp(MIN_HZ, MAX_HZ)
}

/// One reading of a device's memory.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct MemoryReading {
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub used_bytes: u64,
    /// Per-process use, sorted by pid; empty where the driver does not report it.
    pub processes: Vec<ProcessMemory>,
}

/// A reading could not be taken (the GPU fell off the bus, the driver was unloaded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct SourceError {
    pub reason: String,
}

impl SourceError {
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

/// Where the sampler's readings come from. `read` is called on the sampler's thread, once per
/// tick; it may block, but the sampler can only stop between reads.
pub trait MemorySource: Send + 'static {
    fn read(&mut self) -> Result<MemoryReading, SourceError>;
}

/// A reading with when and where it was taken.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemorySample {
    pub device_index: u32,
    /// 0 for the first reading of this sampler, then 1, 2, … (failed reads take no number).
    pub sequence: u64,
    /// Time since the sampler started, when the read began.
    pub since_start: Duration,
    pub reading: MemoryReading,
}

/// What the sampler thread sends.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum SamplerEvent {
    Sample(MemorySample),
    /// A read failed. Sent once per run of failures, so a lost GPU does not flood the channel;
    /// samples resume when reads succeed again.
    SourceFailed {
        device_index: u32,
        reason: String,
    },
}

/// The highest use seen since [`Sampler::mark_run_start`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunPeak {
    /// Device-wide used bytes at its highest sample.
    pub used_bytes: u64,
    /// Samples taken since the mark; few samples mean a short peak may have been missed.
    pub samples: u64,
    /// Each process's highest use since the mark, sorted by pid (ComfyUI's own peak is here).
    pub processes: Vec<ProcessMemory>,
}

/// The sampler could not start.
#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    #[error(transparent)]
    Unavailable(#[from] GpuUnavailable),
    #[error("could not start the GPU sampler thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// Peak bookkeeping shared by the thread (writes) and the owner (marks and reads).
#[derive(Debug, Default)]
struct PeakState {
    used_bytes: Option<u64>,
    samples: u64,
    processes: BTreeMap<u32, u64>,
}

impl PeakState {
    fn record(&mut self, reading: &MemoryReading) {
        self.used_bytes = Some(self.used_bytes.unwrap_or(0).max(reading.used_bytes));
        self.samples += 1;
        for process in &reading.processes {
            let slot = self.processes.entry(process.pid).or_insert(0);
            *slot = (*slot).max(process.used_bytes);
        }
    }

    fn peak(&self) -> Option<RunPeak> {
        let used_bytes = self.used_bytes?;
        Some(RunPeak {
            used_bytes,
            samples: self.samples,
            processes: self
                .processes
                .iter()
                .map(|(&pid, &used_bytes)| ProcessMemory { pid, used_bytes })
                .collect(),
        })
    }
}

/// A poisoned lock only means a panic elsewhere mid-update of plain numbers; the numbers are
/// still the best we have.
fn lock(state: &Mutex<PeakState>) -> MutexGuard<'_, PeakState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running sampler. Dropping it stops the thread and waits for it (no orphan thread).
#[derive(Debug)]
pub struct Sampler {
    device_index: u32,
    hz: u32,
    peak: Arc<Mutex<PeakState>>,
    /// Dropping this sender is the stop signal: the thread's wait ends at once.
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    /// Samples NVML device `device_index` at `hz` (held to 1–4) on a new thread, sending events to
    /// `sender`. Fails when NVML is unavailable; callers then fall back (see `gpu::facts`).
    pub fn start(
        device_index: u32,
        hz: u32,
        sender: Sender<SamplerEvent>,
    ) -> Result<Sampler, SamplerError> {
        let source = NvmlSource::open(device_index)?;
        Self::with_source(source, device_index, hz, sender)
    }

    /// Samples any [`MemorySource`] — how tests drive the real thread without a GPU.
    /// The first read happens at once, then one every `1/hz` seconds.
    pub fn with_source<S: MemorySource>(
        source: S,
        device_index: u32,
        hz: u32,
        sender: Sender<SamplerEvent>,
    ) -> Result<Sampler, SamplerError> {
        let hz = clamp_hz(hz);
        let period = Duration::from_secs(1) / hz;
        let peak = Arc::new(Mutex::new(PeakState::default()));
        let (stop, stopped) = mpsc::channel::<()>();
        let thread_peak = Arc::clone(&peak);
        let thread = std::thread::Builder::new()
            .name(format!("gpu-sampler-{device_index}"))
            .spawn(move || {
                run(
                    source,
                    device_index,
                    period,
                    &sender,
                    &thread_peak,
                    &stopped,
                );
            })
            .map_err(SamplerError::Spawn)?;
        Ok(Sampler {
            device_index,
            hz,
            peak,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn device_index(&self) -> u32 {
        self.device_index
    }

    /// The rate it runs at, after clamping.
    pub fn hz(&self) -> u32 {
        self.hz
    }

    /// Starts a new peak window (call when a run is submitted). Samples already recorded no
    /// longer count.
    pub fn mark_run_start(&self) {
        *lock(&self.peak) = PeakState::default();
    }

    /// The peak since the last mark (or since start), `None` until a sample arrives.
    pub fn peak_since_mark(&self) -> Option<RunPeak> {
        lock(&self.peak).peak()
    }

    /// Stops the thread and waits for it; the same as dropping the sampler, spelled out.
    pub fn stop(self) {}
}

impl Drop for Sampler {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // A panicking source has already ended the thread; nothing is left to clean up.
            let _ = thread.join();
        }
    }
}

/// The sampler thread: read, record, send, wait for the next tick or the stop signal.
fn run<S: MemorySource>(
    mut source: S,
    device_index: u32,
    period: Duration,
    sender: &Sender<SamplerEvent>,
    peak: &Mutex<PeakState>,
    stopped: &mpsc::Receiver<()>,
) {
    let started = Instant::now();
    let mut due = started;
    let mut sequence = 0u64;
    let mut failing = false;
    loop {
        let since_start = Instant::now().saturating_duration_since(started);
        match source.read() {
            Ok(reading) => {
                failing = false;
                // Record before sending: whoever sees the sample also sees it in the peak.
                lock(peak).record(&reading);
                // The receiver may be gone (nobody watching); the peak is still wanted.
                let _ = sender.send(SamplerEvent::Sample(MemorySample {
                    device_index,
                    sequence,
                    since_start,
                    reading,
                }));
                sequence += 1;
            }
            Err(error) => {
                if !failing {
                    failing = true;
                    let _ = sender.send(SamplerEvent::SourceFailed {
                        device_index,
                        reason: error.reason,
                    });
                }
            }
        }
        // Ticks stay on the 1/hz grid; a slow read skips ticks rather than bursting to catch
        // up, so reads never come faster than the rate.
        due += period;
        let now = Instant::now();
        while due < now {
            due += period;
        }
        match stopped.recv_timeout(due - now) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Constant(u64);

    impl MemorySource for Constant {
        fn read(&mut self) -> Result<MemoryReading, SourceError> {
            Ok(MemoryReading {
                total_bytes: 100,
                free_bytes: 100 - self.0,
                used_bytes: self.0,
                processes: vec![],
            })
        }
    }

    #[test]
    fn hz_is_clamped() {
        assert_eq!(clamp_hz(0), 1);
        assert_eq!(clamp_hz(1), 1);
        assert_eq!(clamp_hz(3), 3);
        assert_eq!(clamp_hz(60), 4);
    }

    #[test]
    fn peak_state_keeps_maxima_per_process() {
        let mut state = PeakState::default();
        assert_eq!(state.peak(), None);
        let process = |pid, used_bytes| ProcessMemory { pid, used_bytes };
        state.record(&MemoryReading {
            used_bytes: 10,
            processes: vec![process(1, 4), process(2, 6)],
            ..MemoryReading::default()
        });
        state.record(&MemoryReading {
            used_bytes: 8,
            processes: vec![process(1, 7)],
            ..MemoryReading::default()
        });
        let peak = state.peak();
        assert_eq!(
            peak,
            Some(RunPeak {
                used_bytes: 10,
                samples: 2,
                processes: vec![process(1, 7), process(2, 6)],
            })
        );
    }

    #[test]
    fn first_sample_arrives_and_drop_joins() {
        let (sender, receiver) = mpsc::channel();
        let sampler = Sampler::with_source(Constant(42), 3, 4, sender).expect("spawn");
        let event = receiver
            .recv_timeout(Duration::from_secs(30))
            .expect("a sample");
        let SamplerEvent::Sample(sample) = event else {
            panic!("expected a sample, got {event:?}");
        };
        assert_eq!(sample.device_index, 3);
        assert_eq!(sample.sequence, 0);
        assert_eq!(sample.reading.used_bytes, 42);
        drop(sampler);
        // The thread held the only other sender: after the join the channel is closed.
        loop {
            match receiver.recv_timeout(Duration::from_secs(30)) {
                Ok(_) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("sampler thread still running"),
            }
        }
    }
}
