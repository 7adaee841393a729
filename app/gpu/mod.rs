//! GPU facts from the machine: NVML (name, memory, per-process use, a sampler for run peaks),
//! with fallbacks when there is no NVIDIA driver.
//!
//! - [`nvml`]: one look at every device ([`probe`]), never failing: no driver is
//!   [`GpuProbe::Unavailable`].
//! - [`sampler`]: a worker thread reading one device 1–4 times a second, keeping the run's peak.
//! - [`server`]: the ComfyUI server's `/system_stats`, the fallback when NVML is not there.
//! - [`facts`]: NVML → server → card table → the user's figure, combined into one [`CardFacts`].

pub mod facts;
pub mod nvml;
pub mod sampler;
pub mod server;

pub use facts::{CardFacts, CardFactsError, FactInputs, FactSource, card_facts};
pub use nvml::{GpuInfo, GpuProbe, GpuUnavailable, ProcessMemory, probe};
pub use sampler::{
    MemoryReading, MemorySample, MemorySource, RunPeak, Sampler, SamplerError, SamplerEvent,
    SourceError,
};
pub use server::{ServerDevice, SystemStatsError, parse_system_stats};
