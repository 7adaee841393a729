//! What NVML says about the NVIDIA cards in this machine: name, memory, driver, compute
//! capability and which processes hold memory.
//!
//! NVML is loaded at run time (`libnvidia-ml.so.1`, `nvml.dll`), so the app builds and runs on
//! machines without an NVIDIA driver; there [`probe`] answers [`GpuProbe::Unavailable`] with a
//! reason a person can act on — a normal state, not an error.

use std::collections::BTreeMap;

use nvml_wrapper::Nvml;
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::struct_wrappers::device::ProcessInfo;
use serde::Serialize;

use crate::budget::cards::ComputeCapability;

use super::sampler::{MemoryReading, MemorySource, SourceError};

/// Memory one process holds on one GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProcessMemory {
    pub pid: u32,
    pub used_bytes: u64,
}

/// One NVIDIA GPU as NVML saw it at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuInfo {
    /// NVML's device index (not necessarily CUDA's: `CUDA_VISIBLE_DEVICES` reorders).
    pub index: u32,
    /// As NVML spells it, e.g. "NVIDIA GeForce RTX 4090".
    pub name: String,
    pub total_bytes: u64,
    pub free_bytes: u64,
    /// Allocated by processes and contexts. NVML's v2 memory query keeps the driver's own
    /// reservation out of it, so `used_bytes + free_bytes` can be a few hundred MiB short of
    /// `total_bytes`.
    pub used_bytes: u64,
    pub driver_version: String,
    /// `None` when NVML cannot tell (very old drivers).
    pub compute_capability: Option<ComputeCapability>,
    /// Per-process use, by pid. Empty where the driver does not account per process (Windows
    /// WDDM reports no per-process figure) or nothing runs.
    pub processes: Vec<ProcessMemory>,
    /// The card's maximum PCIe generation, when NVML reports it.
    pub pcie_max_gen: Option<u32>,
}

/// The answer to "which NVIDIA GPUs are here?".
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum GpuProbe {
    /// At least one device read; in NVML index order.
    Devices { devices: Vec<GpuInfo> },
    /// No GPU facts from NVML. `reason` says why in words ("no NVIDIA driver …"); the caller falls
    /// back to the server's `/system_stats` or the card table.
    Unavailable { reason: String },
}

impl GpuProbe {
    /// The devices read, empty when unavailable.
    pub fn devices(&self) -> &[GpuInfo] {
        match self {
            GpuProbe::Devices { devices } => devices,
            GpuProbe::Unavailable { .. } => &[],
        }
    }

    /// The device with this NVML index, if it was read.
    pub fn device(&self, index: u32) -> Option<&GpuInfo> {
        self.devices().iter().find(|device| device.index == index)
    }

    /// "GPU info unavailable: …" for the status line, or `None` when devices were read.
    pub fn unavailable_message(&self) -> Option<String> {
        match self {
            GpuProbe::Devices { .. } => None,
            GpuProbe::Unavailable { reason } => Some(unavailable_message(reason)),
        }
    }
}

impl std::fmt::Display for GpuProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GpuProbe::Unavailable { reason } => f.write_str(&unavailable_message(reason)),
            GpuProbe::Devices { devices } => {
                let names: Vec<String> = devices
                    .iter()
                    .map(|d| format!("{}: {} ({} MiB)", d.index, d.name, d.total_bytes >> 20))
                    .collect();
                write!(f, "GPU {}", names.join(", "))
            }
        }
    }
}

/// NVML could not be used; the same wording as [`GpuProbe::Unavailable`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("GPU info unavailable: {reason}")]
pub struct GpuUnavailable {
    pub reason: String,
}

fn unavailable_message(reason: &str) -> String {
    format!("GPU info unavailable: {reason}")
}

#[cfg(target_os = "windows")]
const NVML_LIBRARY: &str = "nvml.dll";
#[cfg(not(target_os = "windows"))]
const NVML_LIBRARY: &str = "libnvidia-ml.so.1";

/// Reads every NVIDIA GPU NVML lists. Never panics and never fails: without a driver the answer
/// is [`GpuProbe::Unavailable`].
pub fn probe() -> GpuProbe {
    match open_nvml() {
        Ok(nvml) => probe_with(&nvml),
        Err(unavailable) => GpuProbe::Unavailable {
            reason: unavailable.reason,
        },
    }
}

/// Loads and initialises NVML, turning its errors into a reason in words.
pub fn open_nvml() -> Result<Nvml, GpuUnavailable> {
    Nvml::init().map_err(|error| GpuUnavailable {
        reason: describe_init_error(&error),
    })
}

fn probe_with(nvml: &Nvml) -> GpuProbe {
    let count = match nvml.device_count() {
        Ok(count) => count,
        Err(error) => {
            return GpuProbe::Unavailable {
                reason: format!("NVML could not count the GPUs: {error}"),
            };
        }
    };
    if count == 0 {
        return GpuProbe::Unavailable {
            reason: "the NVIDIA driver is running but lists no GPU".to_string(),
        };
    }
    let driver_version = nvml.sys_driver_version().unwrap_or_default();
    let mut devices = Vec::new();
    let mut first_error = None;
    for index in 0..count {
        match read_device(nvml, index, &driver_version) {
            Ok(info) => devices.push(info),
            Err(error) => {
                first_error.get_or_insert(format!("GPU {index}: {error}"));
            }
        }
    }
    if devices.is_empty() {
        let reason = first_error.unwrap_or_else(|| "no GPU could be read".to_string());
        return GpuProbe::Unavailable {
            reason: format!("NVML lists GPUs but none could be read ({reason})"),
        };
    }
    GpuProbe::Devices { devices }
}

fn read_device(nvml: &Nvml, index: u32, driver_version: &str) -> Result<GpuInfo, NvmlError> {
    let device = nvml.device_by_index(index)?;
    let memory = device.memory_info()?;
    let name = device.name()?;
    let compute_capability = device.cuda_compute_capability().ok().and_then(|cc| {
        let major = u32::try_from(cc.major).ok()?;
        let minor = u32::try_from(cc.minor).ok()?;
        Some(ComputeCapability::new(major, minor))
    });
    Ok(GpuInfo {
        index,
        name,
        total_bytes: memory.total,
        free_bytes: memory.free,
        used_bytes: memory.used,
        driver_version: driver_version.to_string(),
        compute_capability,
        processes: device_processes(&device),
        pcie_max_gen: device.max_pcie_link_gen().ok(),
    })
}

/// Compute and graphics processes together (ComfyUI is a compute process; a desktop is a
/// graphics one). A query the driver does not support gives no processes, not an error.
fn device_processes(device: &nvml_wrapper::Device<'_>) -> Vec<ProcessMemory> {
    let compute = device.running_compute_processes().unwrap_or_default();
    let graphics = device.running_graphics_processes().unwrap_or_default();
    merge_processes(compute.iter().chain(graphics.iter()).map(process_entry))
}

fn process_entry(info: &ProcessInfo) -> (u32, Option<u64>) {
    let used_bytes = match info.used_gpu_memory {
        UsedGpuMemory::Used(bytes) => Some(bytes),
        UsedGpuMemory::Unavailable => None,
    };
    (info.pid, used_bytes)
}

/// One entry per pid, sorted by pid. A process listed both as compute and graphics is one
/// process: NVML gives its whole use in each list, so the larger figure is kept, not the sum.
/// Entries without a figure (WDDM) are dropped.
pub fn merge_processes(
    entries: impl IntoIterator<Item = (u32, Option<u64>)>,
) -> Vec<ProcessMemory> {
    let mut by_pid: BTreeMap<u32, u64> = BTreeMap::new();
    for (pid, used_bytes) in entries {
        let Some(used_bytes) = used_bytes else {
            continue;
        };
        let slot = by_pid.entry(pid).or_insert(0);
        *slot = (*slot).max(used_bytes);
    }
    by_pid
        .into_iter()
        .map(|(pid, used_bytes)| ProcessMemory { pid, used_bytes })
        .collect()
}

/// NVML's start-up errors in words a user can act on.
pub fn describe_init_error(error: &NvmlError) -> String {
    match error {
        NvmlError::LibloadingError(_) | NvmlError::LibraryNotFound => format!(
            "no NVIDIA driver (the NVML library {NVML_LIBRARY} could not be loaded); \
             install the NVIDIA driver, or pick your card by name"
        ),
        NvmlError::DriverNotLoaded => {
            "the NVIDIA driver is installed but not loaded; reboot or load the kernel module"
                .to_string()
        }
        NvmlError::NoPermission => {
            "no permission to talk to the NVIDIA driver; check access to /dev/nvidia*".to_string()
        }
        NvmlError::FailedToLoadSymbol(symbol) => format!(
            "the NVIDIA driver is too old for this app (its NVML lacks {symbol}); update the driver"
        ),
        other => format!("NVML failed to start: {other}"),
    }
}

/// The sampler's NVML source: one device's memory and processes, read each tick.
pub struct NvmlSource {
    nvml: Nvml,
    device_index: u32,
}

impl NvmlSource {
    /// Opens NVML and checks that the device exists, so a bad index fails here and not on every
    /// tick.
    pub fn open(device_index: u32) -> Result<Self, GpuUnavailable> {
        let nvml = open_nvml()?;
        nvml.device_by_index(device_index)
            .map_err(|error| GpuUnavailable {
                reason: format!("no GPU with NVML index {device_index}: {error}"),
            })?;
        Ok(Self { nvml, device_index })
    }
}

impl MemorySource for NvmlSource {
    fn read(&mut self) -> Result<MemoryReading, SourceError> {
        // The device handle borrows NVML; fetching it per tick is a table lookup in the driver
        // and keeps the source free of self-references.
        let device = self
            .nvml
            .device_by_index(self.device_index)
            .map_err(|error| SourceError::new(format!("GPU {}: {error}", self.device_index)))?;
        let memory = device.memory_info().map_err(|error| {
            SourceError::new(format!("GPU {} memory: {error}", self.device_index))
        })?;
        Ok(MemoryReading {
            total_bytes: memory.total,
            free_bytes: memory.free,
            used_bytes: memory.used,
            processes: device_processes(&device),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_merge_by_pid_keeping_the_larger_figure() {
        let merged = merge_processes([(7, Some(100)), (3, Some(5)), (7, Some(80)), (9, None)]);
        assert_eq!(
            merged,
            [
                ProcessMemory {
                    pid: 3,
                    used_bytes: 5
                },
                ProcessMemory {
                    pid: 7,
                    used_bytes: 100
                },
            ]
        );
    }

    #[test]
    fn init_errors_read_as_sentences() {
        let reason = describe_init_error(&NvmlError::DriverNotLoaded);
        assert!(reason.contains("not loaded"), "{reason}");
        let reason = describe_init_error(&NvmlError::LibraryNotFound);
        assert!(reason.starts_with("no NVIDIA driver"), "{reason}");
        let reason = describe_init_error(&NvmlError::NoPermission);
        assert!(reason.contains("permission"), "{reason}");
    }

    #[test]
    fn unavailable_probe_says_so() {
        let probe = GpuProbe::Unavailable {
            reason: "no NVIDIA driver".to_string(),
        };
        assert_eq!(
            probe.unavailable_message().as_deref(),
            Some("GPU info unavailable: no NVIDIA driver")
        );
        assert_eq!(probe.to_string(), "GPU info unavailable: no NVIDIA driver");
        assert!(probe.devices().is_empty());
        assert!(probe.device(0).is_none());
    }
}
