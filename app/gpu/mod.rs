//! GPU facts from the machine: NVML (name, memory, per-process use, a sampler for run peaks),
//! with fallbacks when there is no NVIDIA driver.
