//! The ComfyUI server's own view of its device, from `GET /system_stats` — the first fallback
//! when NVML is unavailable (a remote server, a container without the NVML library).
//!
//! Pure parsing: bytes in, devices out. Fetching the reply is the HTTP client's job.
//!
//! What the figures mean (ComfyUI 0.8.0 `model_management.py`, see `comfyui-spec.md` §1.7):
//! `vram_total` is the device total from `torch.cuda.mem_get_info`; `vram_free` is the driver's
//! free memory PLUS what PyTorch's allocator has cached but not handed out, so after a run it
//! reads higher than NVML's free; `torch_vram_total` is what PyTorch has reserved (not the device
//! total) and `torch_vram_free` the reserved-but-unused part. No figure subtracts
//! `--reserve-vram`. Only the server's current torch device is listed.

use serde::Serialize;
use serde_json::Value;

use crate::budget::cards::strip_device_decoration;

/// One device as `/system_stats` lists it. All sizes in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerDevice {
    /// As ComfyUI writes it: "cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync", or "cpu".
    pub name: String,
    /// torch's device type: "cuda" (NVIDIA, and AMD under ROCm), "cpu", "mps", "xpu", …
    pub device_type: String,
    /// torch's device index; `None` for the CPU.
    pub index: Option<u32>,
    pub vram_total_bytes: u64,
    /// Driver-free plus PyTorch's cached-but-unused memory (see the module notes).
    pub vram_free_bytes: u64,
    /// Bytes PyTorch's allocator holds; `None` when the server leaves the field out.
    pub torch_vram_total_bytes: Option<u64>,
    /// The unused part of `torch_vram_total_bytes`.
    pub torch_vram_free_bytes: Option<u64>,
}

impl ServerDevice {
    /// A CUDA device (NVIDIA, or AMD through ROCm's CUDA names); the CPU fallback and Apple's MPS
    /// report system RAM here, which is no GPU budget.
    pub fn is_cuda(&self) -> bool {
        self.device_type == "cuda"
    }

    /// The card's name without ComfyUI's "cuda:0 " prefix and " : allocator" suffix.
    pub fn card_name(&self) -> &str {
        strip_device_decoration(&self.name)
    }

    /// The allocator after " : " ("cudaMallocAsync", "native"), if ComfyUI named one.
    pub fn allocator(&self) -> Option<&str> {
        self.name
            .split_once(" : ")
            .map(|(_, allocator)| allocator.trim())
            .filter(|allocator| !allocator.is_empty())
    }
}

/// A `/system_stats` reply that does not have the shape ComfyUI sends.
#[derive(Debug, thiserror::Error)]
pub enum SystemStatsError {
    #[error("/system_stats reply is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("/system_stats reply has no \"devices\" list; is this a ComfyUI server?")]
    NoDevices,
    #[error("/system_stats devices[{index}].{field}: {problem}")]
    BadDevice {
        index: usize,
        field: &'static str,
        problem: String,
    },
}

/// Reads the devices out of a `GET /system_stats` reply.
pub fn parse_system_stats(bytes: &[u8]) -> Result<Vec<ServerDevice>, SystemStatsError> {
    let root: Value = serde_json::from_slice(bytes).map_err(SystemStatsError::NotJson)?;
    let devices = root
        .get("devices")
        .and_then(Value::as_array)
        .ok_or(SystemStatsError::NoDevices)?;
    devices
        .iter()
        .enumerate()
        .map(|(index, device)| parse_device(index, device))
        .collect()
}

fn parse_device(index: usize, device: &Value) -> Result<ServerDevice, SystemStatsError> {
    let bad = |field: &'static str, problem: String| SystemStatsError::BadDevice {
        index,
        field,
        problem,
    };
    if !device.is_object() {
        return Err(bad(
            "",
            format!("expected an object, found {}", kind(device)),
        ));
    }
    let text = |field: &'static str| -> Result<String, SystemStatsError> {
        match device.get(field) {
            Some(Value::String(text)) => Ok(text.clone()),
            Some(other) => Err(bad(field, format!("expected text, found {}", kind(other)))),
            None => Err(bad(field, "missing".to_string())),
        }
    };
    let bytes = |field: &'static str| -> Result<Option<u64>, SystemStatsError> {
        match device.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => byte_count(value).map(Some).ok_or_else(|| {
                bad(
                    field,
                    format!("expected a byte count, found {}", shown(value)),
                )
            }),
        }
    };
    let required = |field: &'static str| -> Result<u64, SystemStatsError> {
        bytes(field)?.ok_or_else(|| bad(field, "missing".to_string()))
    };
    let device_index = match device.get("index") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            value
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    bad(
                        "index",
                        format!("expected a device number, found {}", shown(value)),
                    )
                })?,
        ),
    };
    Ok(ServerDevice {
        name: text("name")?,
        device_type: text("type")?,
        index: device_index,
        vram_total_bytes: required("vram_total")?,
        vram_free_bytes: required("vram_free")?,
        torch_vram_total_bytes: bytes("torch_vram_total")?,
        torch_vram_free_bytes: bytes("torch_vram_free")?,
    })
}

/// A non-negative whole number of bytes; Python may send it as a float (`1.0e10`).
fn byte_count(value: &Value) -> Option<u64> {
    if let Some(n) = value.as_u64() {
        return Some(n);
    }
    let float = value.as_f64()?;
    let is_whole_and_in_range =
        float.is_finite() && float >= 0.0 && float.fract() == 0.0 && float < 1.8e19;
    is_whole_and_in_range.then_some(float as u64)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The value itself when short, else its kind — enough to recognise it in an error line.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    if text.len() <= 40 {
        text
    } else {
        kind(value).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_byte_counts_are_accepted_when_whole() {
        let reply = br#"{"devices": [{"name": "cpu", "type": "cpu", "index": null,
            "vram_total": 1.0e10, "vram_free": 5}]}"#;
        let devices = parse_system_stats(reply).expect("parses");
        assert_eq!(devices[0].vram_total_bytes, 10_000_000_000);
        assert_eq!(devices[0].torch_vram_total_bytes, None);
        assert!(!devices[0].is_cuda());
    }

    #[test]
    fn negative_sizes_are_rejected_with_the_field() {
        let reply =
            br#"{"devices": [{"name": "cpu", "type": "cpu", "vram_total": -1, "vram_free": 5}]}"#;
        let error = parse_system_stats(reply).expect_err("negative");
        assert_eq!(
            error.to_string(),
            "/system_stats devices[0].vram_total: expected a byte count, found -1"
        );
    }

    #[test]
    fn allocator_and_card_name_split() {
        let device = ServerDevice {
            name: "cuda:0 NVIDIA H200 : cudaMallocAsync".to_string(),
            device_type: "cuda".to_string(),
            index: Some(0),
            vram_total_bytes: 0,
            vram_free_bytes: 0,
            torch_vram_total_bytes: None,
            torch_vram_free_bytes: None,
        };
        assert_eq!(device.card_name(), "NVIDIA H200");
        assert_eq!(device.allocator(), Some("cudaMallocAsync"));
        assert!(device.is_cuda());
    }
}
