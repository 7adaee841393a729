//! The card: NVML probe without a driver, the sampler thread driven by fake sources, the
//! `/system_stats` parser on a real and a hand-made reply, card lookup, and the fallback chain.
//!
//! Nothing here needs a GPU. Timing is never asserted from above except with a generous
//! minute-long ceiling; rates are checked from below with the sampler's own timestamps, which
//! cannot run ahead of the schedule.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use wan_pilot::budget::cards::{self, ComputeCapability, MemoryFigure};
use wan_pilot::gpu::{
    FactInputs, FactSource, GpuProbe, MemoryReading, MemorySample, MemorySource, ProcessMemory,
    Sampler, SamplerError, SamplerEvent, SourceError, card_facts, parse_system_stats,
};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// Long enough for any loaded CI machine; a test only waits this long when it is failing.
const PATIENCE: Duration = Duration::from_secs(60);

fn data(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/gpu")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn reading(used_bytes: u64) -> MemoryReading {
    MemoryReading {
        total_bytes: 24 * GIB,
        free_bytes: 24 * GIB - used_bytes,
        used_bytes,
        processes: vec![],
    }
}

fn next_sample(events: &Receiver<SamplerEvent>) -> MemorySample {
    match events.recv_timeout(PATIENCE) {
        Ok(SamplerEvent::Sample(sample)) => sample,
        Ok(other) => panic!("expected a sample, got {other:?}"),
        Err(error) => panic!("no sample: {error}"),
    }
}

/// Sets its flag when dropped: the sampler thread owns the source, so the flag says the thread
/// has ended.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Hands out readings the test feeds it, one per read; blocks until the next arrives, so the test
/// decides exactly what the thread sees and when.
struct Scripted {
    feed: Receiver<Result<MemoryReading, SourceError>>,
    reads: Arc<AtomicUsize>,
    _alive: DropFlag,
}

impl MemorySource for Scripted {
    fn read(&mut self) -> Result<MemoryReading, SourceError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        match self.feed.recv_timeout(PATIENCE) {
            Ok(result) => result,
            Err(_) => Err(SourceError::new("script ended")),
        }
    }
}

struct ScriptedSampler {
    sampler: Sampler,
    feed: Sender<Result<MemoryReading, SourceError>>,
    events: Receiver<SamplerEvent>,
    ended: Arc<AtomicBool>,
}

fn scripted(hz: u32) -> ScriptedSampler {
    let (feed, script) = mpsc::channel();
    let (sender, events) = mpsc::channel();
    let ended = Arc::new(AtomicBool::new(false));
    let source = Scripted {
        feed: script,
        reads: Arc::new(AtomicUsize::new(0)),
        _alive: DropFlag(Arc::clone(&ended)),
    };
    let sampler = Sampler::with_source(source, 0, hz, sender).expect("sampler thread starts");
    ScriptedSampler {
        sampler,
        feed,
        events,
        ended,
    }
}

/// Never blocks: a steady stream at whatever rate the sampler asks.
struct Steady {
    used_bytes: u64,
    _alive: DropFlag,
}

impl MemorySource for Steady {
    fn read(&mut self) -> Result<MemoryReading, SourceError> {
        Ok(reading(self.used_bytes))
    }
}

fn steady(hz: u32) -> (Sampler, Receiver<SamplerEvent>, Arc<AtomicBool>) {
    let (sender, events) = mpsc::channel();
    let ended = Arc::new(AtomicBool::new(false));
    let source = Steady {
        used_bytes: 3 * GIB,
        _alive: DropFlag(Arc::clone(&ended)),
    };
    let sampler = Sampler::with_source(source, 1, hz, sender).expect("sampler thread starts");
    (sampler, events, ended)
}

// ---------------------------------------------------------------- probe

#[test]
fn probe_without_a_driver_is_unavailable_with_a_reason() {
    let probe = wan_pilot::gpu::probe();
    eprintln!("{probe}");
    match &probe {
        GpuProbe::Unavailable { reason } => {
            assert!(!reason.trim().is_empty());
            let message = probe.unavailable_message().expect("a message");
            assert!(message.starts_with("GPU info unavailable: "), "{message}");
            assert_eq!(probe.to_string(), message);
            assert!(probe.devices().is_empty());
        }
        // On a machine with an NVIDIA driver the same call must read sane figures.
        GpuProbe::Devices { devices } => {
            assert!(!devices.is_empty());
            for device in devices {
                assert!(!device.name.is_empty());
                assert!(device.total_bytes > 0);
                assert!(device.free_bytes <= device.total_bytes);
                assert!(device.used_bytes <= device.total_bytes);
            }
        }
    }
    // A second look is as calm as the first (NVML is loaded and released each time).
    let again = wan_pilot::gpu::probe();
    assert_eq!(
        matches!(again, GpuProbe::Unavailable { .. }),
        matches!(probe, GpuProbe::Unavailable { .. })
    );
}

#[test]
fn nvml_sampler_without_a_driver_fails_to_start_with_the_same_words() {
    if !matches!(wan_pilot::gpu::probe(), GpuProbe::Unavailable { .. }) {
        return; // a real GPU: nothing to check here
    }
    let (sender, _events) = mpsc::channel();
    match Sampler::start(0, 2, sender) {
        Err(SamplerError::Unavailable(unavailable)) => {
            let message = unavailable.to_string();
            assert!(message.starts_with("GPU info unavailable: "), "{message}");
        }
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("the NVML sampler started without NVML"),
    }
}

// ---------------------------------------------------------------- sampler

#[test]
fn sampler_peak_follows_marks_exactly() {
    let s = scripted(4);
    assert_eq!(s.sampler.peak_since_mark(), None);

    s.feed.send(Ok(reading(50 * MIB))).expect("feed");
    assert_eq!(next_sample(&s.events).reading.used_bytes, 50 * MIB);
    // The sampler records before it sends, so the peak already holds what we received.
    let peak = s.sampler.peak_since_mark().expect("a peak");
    assert_eq!((peak.used_bytes, peak.samples), (50 * MIB, 1));

    // A new run: the bigger earlier sample no longer counts.
    s.sampler.mark_run_start();
    assert_eq!(s.sampler.peak_since_mark(), None);
    for used in [30, 70, 40] {
        s.feed.send(Ok(reading(used * MIB))).expect("feed");
        assert_eq!(next_sample(&s.events).reading.used_bytes, used * MIB);
    }
    let peak = s.sampler.peak_since_mark().expect("a peak");
    assert_eq!((peak.used_bytes, peak.samples), (70 * MIB, 3));

    s.sampler.mark_run_start();
    s.feed.send(Ok(reading(10 * MIB))).expect("feed");
    next_sample(&s.events);
    assert_eq!(
        s.sampler.peak_since_mark().map(|p| p.used_bytes),
        Some(10 * MIB)
    );
}

#[test]
fn sampler_tracks_each_process_peak() {
    let s = scripted(4);
    let with_processes = |used: u64, processes: &[(u32, u64)]| MemoryReading {
        processes: processes
            .iter()
            .map(|&(pid, used_bytes)| ProcessMemory { pid, used_bytes })
            .collect(),
        ..reading(used)
    };
    s.feed
        .send(Ok(with_processes(
            9 * GIB,
            &[(4242, 8 * GIB), (77, GIB / 2)],
        )))
        .expect("feed");
    s.feed
        .send(Ok(with_processes(12 * GIB, &[(4242, 11 * GIB)])))
        .expect("feed");
    let first = next_sample(&s.events);
    let second = next_sample(&s.events);
    assert_eq!((first.sequence, second.sequence), (0, 1));
    assert_eq!(
        second.reading.processes,
        [ProcessMemory {
            pid: 4242,
            used_bytes: 11 * GIB
        }]
    );
    let peak = s.sampler.peak_since_mark().expect("a peak");
    assert_eq!(peak.used_bytes, 12 * GIB);
    assert_eq!(
        peak.processes,
        [
            ProcessMemory {
                pid: 77,
                used_bytes: GIB / 2
            },
            ProcessMemory {
                pid: 4242,
                used_bytes: 11 * GIB
            },
        ]
    );
}

#[test]
fn source_failures_are_reported_once_per_streak() {
    let s = scripted(4);
    s.feed
        .send(Err(SourceError::new("GPU fell off the bus")))
        .expect("feed");
    s.feed
        .send(Err(SourceError::new("still gone")))
        .expect("feed");
    s.feed.send(Ok(reading(GIB))).expect("feed");
    s.feed
        .send(Err(SourceError::new("gone again")))
        .expect("feed");

    let mut seen = Vec::new();
    while seen.len() < 3 {
        match s.events.recv_timeout(PATIENCE) {
            Ok(event) => seen.push(event),
            Err(error) => panic!("only {} events: {error}", seen.len()),
        }
    }
    assert_eq!(
        seen[0],
        SamplerEvent::SourceFailed {
            device_index: 0,
            reason: "GPU fell off the bus".to_string()
        }
    );
    assert!(matches!(&seen[1], SamplerEvent::Sample(sample) if sample.sequence == 0));
    assert_eq!(
        seen[2],
        SamplerEvent::SourceFailed {
            device_index: 0,
            reason: "gone again".to_string()
        }
    );
    // Failures do not move the peak.
    assert_eq!(s.sampler.peak_since_mark().map(|p| p.samples), Some(1));
}

#[test]
fn sampler_runs_at_its_rate_and_never_faster() {
    let (sampler, events, _ended) = steady(4);
    assert_eq!(sampler.hz(), 4);
    let samples: Vec<MemorySample> = (0..6).map(|_| next_sample(&events)).collect();
    for (k, sample) in samples.iter().enumerate() {
        assert_eq!(sample.sequence, k as u64);
        assert_eq!(sample.device_index, 1);
        // Reads sit on a 250 ms grid from the start; a late tick is skipped, never made up.
        let earliest = Duration::from_millis(250) * k as u32;
        assert!(
            sample.since_start >= earliest,
            "sample {k} at {:?}",
            sample.since_start
        );
    }
    // Not slower than 1/4 of the rate even on a busy machine (5 intervals in under 5 s would be
    // 1 Hz; the real figure is ~1.25 s).
    assert!(samples[5].since_start < Duration::from_secs(5) + PATIENCE);
    let peak = sampler.peak_since_mark().expect("a peak");
    assert_eq!(peak.used_bytes, 3 * GIB);
    assert!(peak.samples >= 6);
}

#[test]
fn hz_is_clamped_to_one_to_four() {
    let (fast, events, _ended) = steady(100);
    assert_eq!(fast.hz(), 4);
    next_sample(&events);
    let second = next_sample(&events);
    assert!(
        second.since_start >= Duration::from_millis(250),
        "{:?}",
        second.since_start
    );
    drop(fast);

    let (slow, events, _ended) = steady(0);
    assert_eq!(slow.hz(), 1);
    next_sample(&events);
    let second = next_sample(&events);
    assert!(
        second.since_start >= Duration::from_secs(1),
        "{:?}",
        second.since_start
    );

    assert_eq!(wan_pilot::gpu::sampler::clamp_hz(3), 3);
}

#[test]
fn dropping_the_sampler_joins_its_thread() {
    let (sampler, events, ended) = steady(1);
    next_sample(&events);
    assert!(!ended.load(Ordering::SeqCst), "thread ended early");
    drop(sampler);
    // Drop returns only after the join, and the source dies with the thread.
    assert!(
        ended.load(Ordering::SeqCst),
        "sampler thread outlived the sampler"
    );
    // The thread's sender is gone too: the channel drains and closes.
    loop {
        match events.recv_timeout(PATIENCE) {
            Ok(SamplerEvent::Sample(_)) => continue,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => panic!("channel still open after drop"),
        }
    }
}

#[test]
fn stop_and_a_vanished_listener_both_end_cleanly() {
    // The receiver goes first: the thread keeps sampling for the peak and still stops on request.
    let (sampler, events, ended) = steady(4);
    next_sample(&events);
    drop(events);
    let peak_before = sampler.peak_since_mark().map(|p| p.samples).unwrap_or(0);
    assert!(peak_before >= 1);
    sampler.stop();
    assert!(ended.load(Ordering::SeqCst));

    // A source blocked in `read` when its script ends: the stop still completes.
    let s = scripted(4);
    drop(s.feed);
    let ended = Arc::clone(&s.ended);
    drop(s.sampler);
    assert!(ended.load(Ordering::SeqCst));
}

// ---------------------------------------------------------------- /system_stats

#[test]
fn real_cpu_reply_parses() {
    let bytes = data("system_stats_cpu.json");
    let devices = parse_system_stats(&bytes).expect("the recorded reply parses");
    assert_eq!(devices.len(), 1);
    let cpu = &devices[0];
    assert_eq!(cpu.name, "cpu");
    assert_eq!(cpu.device_type, "cpu");
    assert_eq!(cpu.index, None);
    assert!(!cpu.is_cuda());
    // On the CPU, ComfyUI reports system RAM as "VRAM".
    let root: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(
        Some(cpu.vram_total_bytes),
        root["system"]["ram_total"].as_u64()
    );
    assert!(cpu.vram_free_bytes <= cpu.vram_total_bytes);
    assert_eq!(cpu.torch_vram_total_bytes, Some(cpu.vram_total_bytes));
}

#[test]
fn handmade_cuda_reply_parses_and_adds_up() {
    let devices = parse_system_stats(&data("system_stats_cuda_handmade.json")).expect("parses");
    assert_eq!(devices.len(), 1);
    let gpu = &devices[0];
    assert!(gpu.is_cuda());
    assert_eq!(gpu.index, Some(0));
    assert_eq!(gpu.card_name(), "NVIDIA GeForce RTX 4090");
    assert_eq!(gpu.allocator(), Some("cudaMallocAsync"));
    assert_eq!(gpu.vram_total_bytes, 24564 * MIB);
    let torch_reserved = gpu.torch_vram_total_bytes.expect("torch_vram_total");
    let torch_cached_free = gpu.torch_vram_free_bytes.expect("torch_vram_free");
    assert_eq!(torch_reserved, 14 * GIB);
    // vram_free = driver free + PyTorch's cached-but-unused memory (comfyui-spec §1.7).
    assert_eq!(gpu.vram_free_bytes - torch_cached_free, 8 * GIB);
    let card = cards::lookup_with_memory(gpu.card_name(), gpu.vram_total_bytes);
    assert_eq!(card.map(|c| c.name), Some("GeForce RTX 4090"));
}

#[test]
fn garbage_replies_are_clear_errors() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "not JSON"),
        (b"<html>502 Bad Gateway</html>", "not JSON"),
        (b"[]", "no \"devices\" list"),
        (b"{\"system\": {}}", "no \"devices\" list"),
        (b"{\"devices\": 3}", "no \"devices\" list"),
        (b"{\"devices\": [7]}", "devices[0]"),
        (b"{\"devices\": [{\"type\": \"cuda\", \"vram_total\": 1, \"vram_free\": 1}]}", "devices[0].name: missing"),
        (
            b"{\"devices\": [{\"name\": \"cuda:0 X\", \"type\": \"cuda\", \"vram_total\": \"24GB\", \"vram_free\": 1}]}",
            "devices[0].vram_total: expected a byte count, found \"24GB\"",
        ),
        (
            b"{\"devices\": [{\"name\": \"cuda:0 X\", \"type\": \"cuda\", \"index\": -1, \"vram_total\": 1, \"vram_free\": 1}]}",
            "devices[0].index",
        ),
        (b"{\"devices\": [{\"name\": \"cpu\", \"type\": \"cpu\", \"vram_total\": 1}]}", "vram_free: missing"),
    ];
    for (bytes, expected) in cases {
        let error = parse_system_stats(bytes).expect_err("garbage must not parse");
        let message = error.to_string();
        assert!(
            message.contains(expected),
            "{:?}: {message}",
            String::from_utf8_lossy(bytes)
        );
        assert!(message.starts_with("/system_stats"), "{message}");
    }
    // Every truncation of a real reply is an error or a parse, never a panic.
    let real = data("system_stats_cpu.json");
    for end in 0..real.len() {
        let _ = parse_system_stats(&real[..end]);
    }
    assert!(parse_system_stats(&[0xff, 0xfe, 0x00]).is_err());
}

// ---------------------------------------------------------------- card table

#[test]
fn every_requested_card_is_in_the_table() {
    let wanted = [
        ("RTX 3060 12GB", 12),
        ("RTX 3080", 10),
        ("RTX 3080 12GB", 12),
        ("RTX 3090", 24),
        ("RTX 3090 Ti", 24),
        ("RTX 4060 Ti 16GB", 16),
        ("RTX 4070", 12),
        ("RTX 4070 Super", 12),
        ("RTX 4070 Ti", 12),
        ("RTX 4070 Ti Super", 16),
        ("RTX 4080", 16),
        ("RTX 4080 Super", 16),
        ("RTX 4090", 24),
        ("RTX 5060 Ti 16GB", 16),
        ("RTX 5070 Ti", 16),
        ("RTX 5080", 16),
        ("RTX 5090", 32),
        ("RTX A6000", 48),
        ("L40S", 48),
        ("A100 40GB", 40),
        ("A100 80GB", 80),
        ("H100 80GB", 80),
        ("H100 PCIe", 80),
        ("H200", 141),
    ];
    for (name, gb) in wanted {
        let card = cards::lookup(name).unwrap_or_else(|| panic!("{name} not found"));
        assert_eq!(card.nominal_gb, gb, "{name} → {}", card.name);
    }
    assert!(cards::cards().len() >= wanted.len());
}

#[test]
fn fuzzy_names_find_the_same_card() {
    let same = |forms: &[&str], expected: &str| {
        for form in forms {
            assert_eq!(
                cards::lookup(form).map(|c| c.name),
                Some(expected),
                "{form:?}"
            );
        }
    };
    same(
        &[
            "4090",
            "RTX 4090",
            "rtx4090",
            "NVIDIA GeForce RTX 4090",
            "GeForce RTX 4090 24GB",
            "cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync",
            "  nvidia  geforce rtx 4090  ",
        ],
        "GeForce RTX 4090",
    );
    same(
        &["3080", "RTX 3080 10GB", "NVIDIA GeForce RTX 3080"],
        "GeForce RTX 3080",
    );
    same(
        &["3080 12GB", "RTX 3080 12 GB", "3080-12G", "rtx 3080 (12gb)"],
        "GeForce RTX 3080 12GB",
    );
    same(
        &[
            "4070 Ti Super",
            "NVIDIA GeForce RTX 4070 Ti SUPER",
            "4070ti super",
        ],
        "GeForce RTX 4070 Ti Super",
    );
    same(&["4070ti", "RTX 4070 Ti"], "GeForce RTX 4070 Ti");
    same(
        &["4060 Ti", "NVIDIA GeForce RTX 4060 Ti"],
        "GeForce RTX 4060 Ti 16GB",
    );
    same(&["A6000", "NVIDIA RTX A6000", "rtxa6000"], "RTX A6000");
    same(
        &["NVIDIA H100 80GB HBM3", "H100", "h100 sxm"],
        "H100 80GB SXM",
    );
    same(&["NVIDIA H100 PCIe"], "H100 PCIe");
    same(&["NVIDIA A100-SXM4-40GB", "A100"], "A100 40GB");
    same(
        &["NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB PCIe"],
        "A100 80GB",
    );
    same(
        &["NVIDIA H200", "cuda:0 NVIDIA H200 : cudaMallocAsync"],
        "H200 141GB",
    );
    same(&["NVIDIA L40S"], "L40S");
    same(&["NVIDIA GeForce RTX 5090"], "GeForce RTX 5090");
}

#[test]
fn unknown_cards_are_none() {
    for name in [
        "",
        "cpu",
        "GPU",
        "RTX 4090 Laptop GPU",
        "RTX 4090 D",
        "RTX 3070",
        "GTX 1080 Ti",
        "NVIDIA H100 NVL",
        "NVIDIA L40",
        "RTX 4090 48GB",
        "AMD Radeon RX 7900 XTX",
        "4090 4080",
        "Apple M3 Max",
    ] {
        assert_eq!(cards::lookup(name).map(|c| c.name), None, "{name:?}");
    }
}

#[test]
fn memory_total_decides_between_variants_and_rejects_misfits() {
    let pick =
        |name: &str, total_bytes: u64| cards::lookup_with_memory(name, total_bytes).map(|c| c.name);
    assert_eq!(
        pick("NVIDIA GeForce RTX 3080", 10240 * MIB),
        Some("GeForce RTX 3080")
    );
    assert_eq!(
        pick("NVIDIA GeForce RTX 3080", 12288 * MIB),
        Some("GeForce RTX 3080 12GB")
    );
    // The 8 GB 4060 Ti is not in the table; its name alone must not pass for the 16 GB card.
    assert_eq!(pick("NVIDIA GeForce RTX 4060 Ti", 8188 * MIB), None);
    assert_eq!(
        pick("NVIDIA GeForce RTX 4060 Ti", 16380 * MIB),
        Some("GeForce RTX 4060 Ti 16GB")
    );
    // ECC on an A6000 takes 1/16: still the A6000.
    assert_eq!(pick("NVIDIA RTX A6000", 46068 * MIB), Some("RTX A6000"));
    assert_eq!(
        pick("NVIDIA A100-PCIE-40GB", 40960 * MIB),
        Some("A100 40GB")
    );
    assert_eq!(pick("NVIDIA A100", 81920 * MIB), Some("A100 80GB"));
}

#[test]
fn card_figures_match_the_brief() {
    let card = |name: &str| cards::lookup(name).unwrap_or_else(|| panic!("{name}"));
    assert_eq!(card("4090").total_bytes, 24564 * MIB);
    assert_eq!(card("3090").total_bytes, 24576 * MIB);
    assert_eq!(card("5090").total_bytes, 32607 * MIB);
    assert_eq!(card("H100").total_bytes, 81559 * MIB);
    for measured in ["4090", "3090", "5090", "H100", "H200", "L40S"] {
        assert_eq!(
            card(measured).memory_figure,
            MemoryFigure::Measured,
            "{measured}"
        );
    }
    assert_eq!(card("3080 12GB").memory_figure, MemoryFigure::Nominal);
    assert_eq!(
        card("3060").compute_capability,
        ComputeCapability::new(8, 6)
    );
    assert_eq!(
        card("4060 Ti").compute_capability,
        ComputeCapability::new(8, 9)
    );
    assert_eq!(
        card("5070 Ti").compute_capability,
        ComputeCapability::new(12, 0)
    );
    assert_eq!(
        card("H100").compute_capability,
        ComputeCapability::new(9, 0)
    );
    assert!(!card("3090").has_fp8_compute());
    assert!(!card("A6000").has_fp8_compute());
    assert!(!card("A100").has_fp8_compute());
    assert!(card("4070").has_fp8_compute());
    assert!(card("L40S").has_fp8_compute());
    assert!(card("H200").has_fp8_compute());
    assert!(card("5080").has_fp8_compute());
    assert_eq!(card("5090").pcie_gen, 5);
    assert_eq!(card("4090").pcie_gen, 4);
    assert_eq!(card("4090").bf16_dense_tflops, 165.2);
    assert_eq!(card("5090").memory_bandwidth_gb_per_sec, 1792.0);
}

// ---------------------------------------------------------------- the fallback chain

#[test]
fn fallback_chain_nvml_then_server_then_table_then_user() {
    let no_driver = GpuProbe::Unavailable {
        reason: "no NVIDIA driver".to_string(),
    };
    let cuda = parse_system_stats(&data("system_stats_cuda_handmade.json")).expect("parses");
    let cpu = parse_system_stats(&data("system_stats_cpu.json")).expect("parses");

    // Server with a CUDA device: its numbers, the table's traits.
    let facts = card_facts(&FactInputs {
        probe: Some(&no_driver),
        server_devices: Some(&cuda),
        picked_card: Some("RTX 3060"),
        ..FactInputs::default()
    })
    .expect("facts");
    assert_eq!(facts.source, FactSource::Server);
    assert_eq!(facts.name, "NVIDIA GeForce RTX 4090");
    assert_eq!(facts.total_bytes, 24564 * MIB);
    assert_eq!(facts.free_bytes, Some(9 * GIB));
    assert!(facts.has_fp8_compute);
    assert_eq!(facts.bf16_dense_tflops, Some(165.2));
    assert_eq!(facts.skipped, ["GPU info unavailable: no NVIDIA driver"]);

    // A CPU-only server is passed over; the picked card answers.
    let facts = card_facts(&FactInputs {
        probe: Some(&no_driver),
        server_devices: Some(&cpu),
        picked_card: Some("3060"),
        ..FactInputs::default()
    })
    .expect("facts");
    assert_eq!(facts.source, FactSource::Table);
    assert_eq!(facts.name, "GeForce RTX 3060 12GB");
    assert_eq!(facts.total_bytes, 12288 * MIB);
    assert_eq!(facts.free_bytes, None);
    assert!(!facts.has_fp8_compute);
    assert_eq!(facts.skipped.len(), 2);
    assert!(
        facts.skipped[1].contains("no CUDA device"),
        "{:?}",
        facts.skipped
    );

    // Nothing at all, or a name we do not know: errors that say what to do.
    let error = card_facts(&FactInputs {
        probe: Some(&no_driver),
        server_devices: Some(&cpu),
        ..FactInputs::default()
    })
    .expect_err("nothing known");
    assert!(error.to_string().contains("pick a card"), "{error}");
    let error = card_facts(&FactInputs {
        picked_card: Some("Voodoo 5"),
        ..FactInputs::default()
    })
    .expect_err("unknown card");
    assert!(
        error.to_string().contains("unknown card \"Voodoo 5\""),
        "{error}"
    );

    // The user's own figure for an unknown name.
    let facts = card_facts(&FactInputs {
        picked_card: Some("Voodoo 5"),
        user_total_bytes: Some(22 * GIB),
        ..FactInputs::default()
    })
    .expect("facts");
    assert_eq!(
        (facts.source, facts.name.as_str()),
        (FactSource::User, "Voodoo 5")
    );
    assert_eq!(facts.total_bytes, 22 * GIB);
}

#[test]
fn this_machine_falls_back_to_the_real_server_reply() {
    // The probe as it is here, plus the recorded server reply: no panic, and a readable chain.
    let probe = wan_pilot::gpu::probe();
    let cpu = parse_system_stats(&data("system_stats_cpu.json")).expect("parses");
    let result = card_facts(&FactInputs {
        probe: Some(&probe),
        server_devices: Some(&cpu),
        picked_card: Some("RTX 4090"),
        ..FactInputs::default()
    });
    let facts = result.expect("a card is always found when one is picked");
    if matches!(probe, GpuProbe::Unavailable { .. }) {
        assert_eq!(facts.source, FactSource::Table);
        assert!(facts.skipped[0].starts_with("GPU info unavailable: "));
    } else {
        assert_eq!(facts.source, FactSource::Nvml);
    }
}
