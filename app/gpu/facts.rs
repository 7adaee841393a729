//! One answer to "what card do we plan for?", from whatever is known, in order of trust:
//! NVML on this machine → the ComfyUI server's `/system_stats` → a card the user picked from the
//! built-in table → a memory size the user typed.
//!
//! Pure: it combines facts already gathered (a [`GpuProbe`], parsed server devices, the user's
//! choice); gathering them is the caller's I/O.

use serde::Serialize;

use crate::budget::cards::{self, Card, ComputeCapability};

use super::nvml::{GpuInfo, GpuProbe};
use super::server::ServerDevice;

/// Which source the facts came from; the UI shows it beside the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FactSource {
    /// This machine's driver: exact total and free memory.
    Nvml,
    /// The ComfyUI server's `/system_stats`: exact total; free counts PyTorch's cache as free.
    Server,
    /// A card picked from the built-in table: total as NVML reports on that model, free unknown.
    Table,
    /// A memory size the user typed (with or without a picked card).
    User,
}

/// What the budget needs to know about the card.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CardFacts {
    pub name: String,
    pub total_bytes: u64,
    /// Free memory now, where a live source reported it.
    pub free_bytes: Option<u64>,
    pub source: FactSource,
    pub compute_capability: Option<ComputeCapability>,
    /// fp8 matmuls run natively (sm ≥ 8.9). `false` when the card is unknown: planning for the
    /// slower path is the safe mistake.
    pub has_fp8_compute: bool,
    /// From the card table when the card was recognised.
    pub memory_bandwidth_gb_per_sec: Option<f64>,
    pub bf16_dense_tflops: Option<f64>,
    pub pcie_gen: Option<u8>,
    /// The table card these facts were matched to, if any.
    pub table_card: Option<&'static str>,
    /// Why each more trusted source was passed over, for the UI's "why this number" line.
    pub skipped: Vec<String>,
}

/// Everything known, gathered by the caller. Leave out what should not count: to plan for a
/// card other than the one installed, pass only `picked_card` / `user_total_bytes`.
#[derive(Debug, Clone, Copy, Default)]
pub struct FactInputs<'a> {
    /// What NVML said on this machine.
    pub probe: Option<&'a GpuProbe>,
    /// The NVML device to plan for (ComfyUI's `--cuda-device`), usually 0.
    pub device_index: u32,
    /// The server's devices from `/system_stats`; the first CUDA device is used.
    pub server_devices: Option<&'a [ServerDevice]>,
    /// A card name the user picked ("RTX 4090").
    pub picked_card: Option<&'a str>,
    /// A memory total the user gave, in bytes.
    pub user_total_bytes: Option<u64>,
}

/// No source gave a card.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardFactsError {
    #[error(
        "no GPU facts ({}); pick a card from the built-in list or give the VRAM size",
        skipped.join("; ")
    )]
    NothingKnown { skipped: Vec<String> },
    #[error(
        "unknown card \"{name}\": pick one of the built-in cards (e.g. \"RTX 4090\") or give the VRAM size"
    )]
    UnknownCard { name: String },
}

/// Combines the sources in order of trust; see the module notes.
pub fn card_facts(inputs: &FactInputs<'_>) -> Result<CardFacts, CardFactsError> {
    let mut skipped = Vec::new();

    match inputs.probe {
        Some(probe) => match probe.device(inputs.device_index) {
            Some(info) => return Ok(from_nvml(info, skipped)),
            None => skipped.push(match probe.unavailable_message() {
                Some(message) => message,
                None => format!("NVML lists no GPU {}", inputs.device_index),
            }),
        },
        None => skipped.push("NVML not asked".to_string()),
    }

    match inputs.server_devices {
        Some(devices) => match devices.iter().find(|device| device.is_cuda()) {
            Some(device) => return Ok(from_server(device, skipped)),
            None => skipped.push(format!(
                "the ComfyUI server has no CUDA device (it reports {})",
                describe_devices(devices)
            )),
        },
        None => skipped.push("no ComfyUI server stats".to_string()),
    }

    let picked = match inputs.picked_card {
        Some(name) => match cards::lookup(name) {
            Some(card) => Some(card),
            None if inputs.user_total_bytes.is_some() => None,
            None => {
                return Err(CardFactsError::UnknownCard {
                    name: name.to_string(),
                });
            }
        },
        None => None,
    };

    match (picked, inputs.user_total_bytes) {
        (Some(card), None) => Ok(from_card(
            card,
            FactSource::Table,
            card.total_bytes,
            skipped,
        )),
        (Some(card), Some(total_bytes)) => {
            Ok(from_card(card, FactSource::User, total_bytes, skipped))
        }
        (None, Some(total_bytes)) => Ok(CardFacts {
            name: inputs
                .picked_card
                .map(str::to_string)
                .unwrap_or_else(|| format!("GPU with {:.1} GiB", gib(total_bytes))),
            total_bytes,
            free_bytes: None,
            source: FactSource::User,
            compute_capability: None,
            has_fp8_compute: false,
            memory_bandwidth_gb_per_sec: None,
            bf16_dense_tflops: None,
            pcie_gen: None,
            table_card: None,
            skipped,
        }),
        (None, None) => Err(CardFactsError::NothingKnown { skipped }),
    }
}

fn from_nvml(info: &GpuInfo, skipped: Vec<String>) -> CardFacts {
    let card = cards::lookup_with_memory(&info.name, info.total_bytes);
    // NVML's own compute capability wins; the table only fills a gap.
    let compute_capability = info
        .compute_capability
        .or(card.map(|card| card.compute_capability));
    CardFacts {
        name: info.name.clone(),
        total_bytes: info.total_bytes,
        free_bytes: Some(info.free_bytes),
        source: FactSource::Nvml,
        compute_capability,
        has_fp8_compute: compute_capability.is_some_and(ComputeCapability::has_fp8_compute),
        memory_bandwidth_gb_per_sec: card.map(|card| card.memory_bandwidth_gb_per_sec),
        bf16_dense_tflops: card.map(|card| card.bf16_dense_tflops),
        pcie_gen: info
            .pcie_max_gen
            .and_then(|gen_number| u8::try_from(gen_number).ok())
            .or(card.map(|card| card.pcie_gen)),
        table_card: card.map(|card| card.name),
        skipped,
    }
}

fn from_server(device: &ServerDevice, skipped: Vec<String>) -> CardFacts {
    let card = cards::lookup_with_memory(device.card_name(), device.vram_total_bytes);
    let compute_capability = card.map(|card| card.compute_capability);
    CardFacts {
        name: device.card_name().to_string(),
        total_bytes: device.vram_total_bytes,
        free_bytes: Some(device.vram_free_bytes),
        source: FactSource::Server,
        compute_capability,
        has_fp8_compute: compute_capability.is_some_and(ComputeCapability::has_fp8_compute),
        memory_bandwidth_gb_per_sec: card.map(|card| card.memory_bandwidth_gb_per_sec),
        bf16_dense_tflops: card.map(|card| card.bf16_dense_tflops),
        pcie_gen: card.map(|card| card.pcie_gen),
        table_card: card.map(|card| card.name),
        skipped,
    }
}

fn from_card(
    card: &'static Card,
    source: FactSource,
    total_bytes: u64,
    skipped: Vec<String>,
) -> CardFacts {
    CardFacts {
        name: card.name.to_string(),
        total_bytes,
        free_bytes: None,
        source,
        compute_capability: Some(card.compute_capability),
        has_fp8_compute: card.has_fp8_compute(),
        memory_bandwidth_gb_per_sec: Some(card.memory_bandwidth_gb_per_sec),
        bf16_dense_tflops: Some(card.bf16_dense_tflops),
        pcie_gen: Some(card.pcie_gen),
        table_card: Some(card.name),
        skipped,
    }
}

fn describe_devices(devices: &[ServerDevice]) -> String {
    if devices.is_empty() {
        return "no devices".to_string();
    }
    devices
        .iter()
        .map(|device| format!("{} ({})", device.name, device.device_type))
        .collect::<Vec<_>>()
        .join(", ")
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 30)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable() -> GpuProbe {
        GpuProbe::Unavailable {
            reason: "no NVIDIA driver".to_string(),
        }
    }

    #[test]
    fn nvml_wins_and_is_enriched_from_the_table() {
        let probe = GpuProbe::Devices {
            devices: vec![GpuInfo {
                index: 0,
                name: "NVIDIA GeForce RTX 3080".to_string(),
                total_bytes: 12288 << 20,
                free_bytes: 11000 << 20,
                used_bytes: 1288 << 20,
                driver_version: "580.95.05".to_string(),
                compute_capability: Some(ComputeCapability::new(8, 6)),
                processes: vec![],
                pcie_max_gen: Some(4),
            }],
        };
        let facts = card_facts(&FactInputs {
            probe: Some(&probe),
            picked_card: Some("RTX 4090"),
            ..FactInputs::default()
        })
        .expect("facts");
        assert_eq!(facts.source, FactSource::Nvml);
        assert_eq!(facts.table_card, Some("GeForce RTX 3080 12GB"));
        assert_eq!(facts.memory_bandwidth_gb_per_sec, Some(912.0));
        assert!(!facts.has_fp8_compute);
        assert_eq!(facts.free_bytes, Some(11000 << 20));
        assert!(facts.skipped.is_empty());
    }

    #[test]
    fn user_size_without_a_card_is_a_plain_figure() {
        let facts = card_facts(&FactInputs {
            probe: Some(&unavailable()),
            user_total_bytes: Some(20 << 30),
            ..FactInputs::default()
        })
        .expect("facts");
        assert_eq!(facts.source, FactSource::User);
        assert_eq!(facts.name, "GPU with 20.0 GiB");
        assert!(!facts.has_fp8_compute);
        assert_eq!(facts.skipped[0], "GPU info unavailable: no NVIDIA driver");
    }

    #[test]
    fn picked_card_with_a_size_keeps_the_card_traits() {
        let facts = card_facts(&FactInputs {
            picked_card: Some("5090"),
            user_total_bytes: Some(28 << 30),
            ..FactInputs::default()
        })
        .expect("facts");
        assert_eq!(facts.source, FactSource::User);
        assert_eq!(facts.total_bytes, 28 << 30);
        assert!(facts.has_fp8_compute);
        assert_eq!(facts.table_card, Some("GeForce RTX 5090"));
    }

    #[test]
    fn nothing_known_says_what_to_do() {
        let error = card_facts(&FactInputs {
            probe: Some(&unavailable()),
            ..FactInputs::default()
        })
        .expect_err("nothing");
        let message = error.to_string();
        assert!(
            message.contains("GPU info unavailable: no NVIDIA driver"),
            "{message}"
        );
        assert!(message.contains("pick a card"), "{message}");
    }
}
