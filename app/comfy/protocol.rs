//! What ComfyUI 0.8.0 says over HTTP and its websocket, as types: `/prompt` replies and
//! validation errors, every websocket message, binary preview frames, and which execution errors
//! are out-of-memory. Pure: bytes and JSON in, values out; the client that moves them is separate.
//! Shapes follow the server's source and the transcripts recorded from a real server in
//! tests/data/comfy-protocol.

use serde::Deserialize;
use serde_json::{Map, Value};

/// `POST /prompt` accepted (HTTP 200). `node_errors` can still list output nodes that failed
/// validation and will not run.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PromptAccepted {
    pub prompt_id: String,
    #[serde(default)]
    pub number: f64,
    #[serde(default)]
    pub node_errors: Map<String, Value>,
}

/// `POST /prompt` refused (HTTP 400).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PromptRefused {
    pub error: ErrorInfo,
    #[serde(default)]
    pub node_errors: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ErrorInfo {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub details: String,
}

impl PromptRefused {
    /// One line per failing input, for the user: "KSampler #3: steps: Value 0 smaller than min of 1".
    pub fn reasons(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (node, entry) in &self.node_errors {
            let class = entry
                .get("class_type")
                .and_then(Value::as_str)
                .unwrap_or("node");
            for error in entry
                .get("errors")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let message = error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("invalid");
                let details = error
                    .get("details")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                out.push(if details.is_empty() {
                    format!("{class} #{node}: {message}")
                } else {
                    format!("{class} #{node}: {message}: {details}")
                });
            }
        }
        if out.is_empty() {
            out.push(
                format!("{}: {}", self.error.message, self.error.details)
                    .trim_end_matches(": ")
                    .to_string(),
            );
        }
        out
    }
}

/// A websocket text message, by its `type`.
#[derive(Debug, Clone, PartialEq)]
pub enum WsMessage {
    Status {
        queue_remaining: u64,
        session_id: Option<String>,
    },
    ExecutionStart {
        prompt_id: String,
    },
    ExecutionCached {
        prompt_id: String,
        nodes: Vec<String>,
    },
    /// `node: None` means the whole prompt finished and its history is written.
    Executing {
        prompt_id: Option<String>,
        node: Option<String>,
    },
    Progress {
        prompt_id: Option<String>,
        node: Option<String>,
        value: u64,
        max: u64,
    },
    /// A snapshot of every started node's progress (chatty; the UI needs only the latest).
    ProgressState {
        prompt_id: Option<String>,
        nodes: Map<String, Value>,
    },
    Executed {
        prompt_id: String,
        node: String,
        output: Value,
    },
    ExecutionSuccess {
        prompt_id: String,
    },
    ExecutionError(ExecutionError),
    ExecutionInterrupted {
        prompt_id: String,
        node_id: Option<String>,
    },
    FeatureFlags(Value),
    /// A type this client does not know (custom nodes send their own); kept whole.
    Other {
        kind: String,
        data: Value,
    },
}

/// `execution_error`'s data.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ExecutionError {
    pub prompt_id: String,
    #[serde(default, deserialize_with = "id_or_none")]
    pub node_id: Option<String>,
    #[serde(default)]
    pub node_type: String,
    #[serde(default)]
    pub exception_type: String,
    #[serde(default)]
    pub exception_message: String,
    #[serde(default)]
    pub traceback: Vec<String>,
}

impl ExecutionError {
    /// Whether the GPU ran out of memory: torch's OutOfMemoryError under either name, or a plain
    /// RuntimeError saying so (kernel and pinned-memory failures come as those).
    pub fn is_out_of_memory(&self) -> bool {
        let kind = self.exception_type.as_str();
        let message = self.exception_message.to_lowercase();
        kind == "torch.OutOfMemoryError"
            || kind == "torch.cuda.OutOfMemoryError"
            || kind.ends_with("OutOfMemoryError")
            || message.contains("cuda out of memory")
            || message.contains("allocation on device")
            || (kind == "RuntimeError" && message.contains("out of memory"))
    }
}

/// Node ids arrive as strings; accept numbers too.
fn id_or_none<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let value = Option::<Value>::deserialize(deserializer)?;
    Ok(value.and_then(|v| match v {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }))
}

/// A field that holds an id or a name: text, or a number written as text.
fn text(data: &Value, key: &str) -> Option<String> {
    data.get(key).and_then(id_text)
}

/// Why a text frame could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MessageError {
    #[error("websocket message is not JSON: {0}")]
    NotJson(String),
    #[error("websocket message has no \"type\"")]
    NoType,
    #[error("websocket message '{kind}' lacks \"{field}\"")]
    Missing { kind: String, field: &'static str },
}

impl WsMessage {
    /// Reads one text frame.
    pub fn parse(frame: &str) -> Result<WsMessage, MessageError> {
        let value: Value =
            serde_json::from_str(frame).map_err(|e| MessageError::NotJson(e.to_string()))?;
        let kind = value
            .get("type")
            .and_then(Value::as_str)
            .ok_or(MessageError::NoType)?
            .to_string();
        let data = value.get("data").cloned().unwrap_or(Value::Null);
        let need = |field: &'static str| {
            text(&data, field).ok_or_else(|| MessageError::Missing {
                kind: kind.clone(),
                field,
            })
        };
        let number = |field: &str| data.get(field).and_then(Value::as_u64).unwrap_or(0);
        Ok(match kind.as_str() {
            "status" => WsMessage::Status {
                queue_remaining: data
                    .pointer("/status/exec_info/queue_remaining")
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
                session_id: text(&data, "sid"),
            },
            "execution_start" => WsMessage::ExecutionStart {
                prompt_id: need("prompt_id")?,
            },
            "execution_cached" => WsMessage::ExecutionCached {
                prompt_id: need("prompt_id")?,
                nodes: data
                    .get("nodes")
                    .and_then(Value::as_array)
                    .map(|n| n.iter().filter_map(id_text).collect())
                    .unwrap_or_default(),
            },
            "executing" => WsMessage::Executing {
                prompt_id: text(&data, "prompt_id"),
                node: text(&data, "node"),
            },
            "progress" => WsMessage::Progress {
                prompt_id: text(&data, "prompt_id"),
                node: text(&data, "node"),
                value: number("value"),
                max: number("max"),
            },
            "progress_state" => WsMessage::ProgressState {
                prompt_id: text(&data, "prompt_id"),
                nodes: data
                    .get("nodes")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default(),
            },
            "executed" => WsMessage::Executed {
                prompt_id: need("prompt_id")?,
                node: need("node")?,
                output: data.get("output").cloned().unwrap_or(Value::Null),
            },
            "execution_success" => WsMessage::ExecutionSuccess {
                prompt_id: need("prompt_id")?,
            },
            "execution_error" => {
                WsMessage::ExecutionError(serde_json::from_value(data).map_err(|_| {
                    MessageError::Missing {
                        kind: kind.clone(),
                        field: "prompt_id",
                    }
                })?)
            }
            "execution_interrupted" => WsMessage::ExecutionInterrupted {
                prompt_id: need("prompt_id")?,
                node_id: text(&data, "node_id"),
            },
            "feature_flags" => WsMessage::FeatureFlags(data),
            _ => WsMessage::Other { kind, data },
        })
    }
}

/// Node ids are strings in the protocol; older messages and custom nodes send numbers.
fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The image format of a preview.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreviewFormat {
    Jpeg,
    Png,
}

/// A binary websocket frame.
#[derive(Debug, Clone, PartialEq)]
pub enum BinaryFrame<'a> {
    /// Type 1: a sampler preview.
    Preview {
        format: PreviewFormat,
        image: &'a [u8],
    },
    /// Type 3: progress text a custom node sends for one node.
    Text { node_id: String, text: String },
    /// Type 4: a preview with its metadata (only after feature negotiation).
    PreviewWithMetadata { metadata: Value, image: &'a [u8] },
    /// A type this client does not know.
    Other { event: u32 },
}

/// Why a binary frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("binary websocket frame of {0} bytes is too short for its header")]
    TooShort(usize),
    #[error("binary preview frame has unknown image format {0}")]
    UnknownFormat(u32),
    #[error("binary frame's metadata is not JSON")]
    BadMetadata,
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let part = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([part[0], part[1], part[2], part[3]]))
}

impl<'a> BinaryFrame<'a> {
    /// Reads one binary frame: a big-endian u32 event type, then its payload.
    pub fn parse(bytes: &'a [u8]) -> Result<BinaryFrame<'a>, FrameError> {
        let event = be_u32(bytes, 0).ok_or(FrameError::TooShort(bytes.len()))?;
        match event {
            1 => {
                let format = match be_u32(bytes, 4).ok_or(FrameError::TooShort(bytes.len()))? {
                    1 => PreviewFormat::Jpeg,
                    2 => PreviewFormat::Png,
                    other => return Err(FrameError::UnknownFormat(other)),
                };
                Ok(BinaryFrame::Preview {
                    format,
                    image: bytes.get(8..).unwrap_or_default(),
                })
            }
            3 => {
                let length = be_u32(bytes, 4).ok_or(FrameError::TooShort(bytes.len()))? as usize;
                let end = 8usize
                    .checked_add(length)
                    .ok_or(FrameError::TooShort(bytes.len()))?;
                let node = bytes.get(8..end).ok_or(FrameError::TooShort(bytes.len()))?;
                Ok(BinaryFrame::Text {
                    node_id: String::from_utf8_lossy(node).into_owned(),
                    text: String::from_utf8_lossy(bytes.get(end..).unwrap_or_default())
                        .into_owned(),
                })
            }
            4 => {
                let length = be_u32(bytes, 4).ok_or(FrameError::TooShort(bytes.len()))? as usize;
                let end = 8usize
                    .checked_add(length)
                    .ok_or(FrameError::TooShort(bytes.len()))?;
                let metadata = bytes.get(8..end).ok_or(FrameError::TooShort(bytes.len()))?;
                let metadata =
                    serde_json::from_slice(metadata).map_err(|_| FrameError::BadMetadata)?;
                Ok(BinaryFrame::PreviewWithMetadata {
                    metadata,
                    image: bytes.get(end..).unwrap_or_default(),
                })
            }
            event => Ok(BinaryFrame::Other { event }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_of_a_run_parse() {
        let status = WsMessage::parse(r#"{"type":"status","data":{"status":{"exec_info":{"queue_remaining":1}},"sid":"abc"}}"#).unwrap();
        assert_eq!(
            status,
            WsMessage::Status {
                queue_remaining: 1,
                session_id: Some("abc".into())
            }
        );
        let progress = WsMessage::parse(
            r#"{"type":"progress","data":{"value":3,"max":10,"prompt_id":"p","node":"81"}}"#,
        )
        .unwrap();
        assert_eq!(
            progress,
            WsMessage::Progress {
                prompt_id: Some("p".into()),
                node: Some("81".into()),
                value: 3,
                max: 10
            }
        );
        let done = WsMessage::parse(r#"{"type":"executing","data":{"node":null,"prompt_id":"p"}}"#)
            .unwrap();
        assert_eq!(
            done,
            WsMessage::Executing {
                prompt_id: Some("p".into()),
                node: None
            }
        );
        let custom = WsMessage::parse(r#"{"type":"crystools.monitor","data":{"cpu":3}}"#).unwrap();
        assert!(matches!(custom, WsMessage::Other { .. }));
        assert!(WsMessage::parse("not json").is_err());
        assert!(WsMessage::parse(r#"{"type":"execution_start","data":{}}"#).is_err());
    }

    #[test]
    fn out_of_memory_is_recognised_under_every_name() {
        let error = |kind: &str, message: &str| ExecutionError {
            prompt_id: "p".into(),
            node_id: Some("3".into()),
            node_type: "KSamplerAdvanced".into(),
            exception_type: kind.into(),
            exception_message: message.into(),
            traceback: Vec::new(),
        };
        assert!(error("torch.OutOfMemoryError", "Allocation on device").is_out_of_memory());
        assert!(
            error(
                "torch.cuda.OutOfMemoryError",
                "CUDA out of memory. Tried to allocate 2 GiB"
            )
            .is_out_of_memory()
        );
        assert!(error("RuntimeError", "CUDA error: out of memory").is_out_of_memory());
        assert!(!error("RuntimeError", "shape mismatch").is_out_of_memory());
        assert!(!error("ValueError", "bad value").is_out_of_memory());
    }

    #[test]
    fn binary_frames_parse_and_never_panic() {
        let mut jpeg = vec![0, 0, 0, 1, 0, 0, 0, 1];
        jpeg.extend_from_slice(b"\xFF\xD8jpeg");
        assert_eq!(
            BinaryFrame::parse(&jpeg).unwrap(),
            BinaryFrame::Preview {
                format: PreviewFormat::Jpeg,
                image: b"\xFF\xD8jpeg"
            }
        );
        let mut text_frame = vec![0, 0, 0, 3, 0, 0, 0, 2];
        text_frame.extend_from_slice(b"42step 3/10");
        assert_eq!(
            BinaryFrame::parse(&text_frame).unwrap(),
            BinaryFrame::Text {
                node_id: "42".into(),
                text: "step 3/10".into()
            }
        );
        for cut in 0..jpeg.len() {
            let _ = BinaryFrame::parse(&jpeg[..cut]);
        }
        assert!(BinaryFrame::parse(&[0, 0, 0, 4, 255, 255, 255, 255]).is_err());
    }

    #[test]
    fn refusals_become_one_line_per_input() {
        let body = r#"{"error":{"type":"prompt_outputs_failed_validation","message":"Prompt outputs failed validation","details":"","extra_info":{}},
            "node_errors":{"70":{"errors":[{"type":"required_input_missing","message":"Required input is missing","details":"driving_video","extra_info":{"input_name":"driving_video"}}],"dependent_outputs":["92"],"class_type":"WanVideoEncode"}}}"#;
        let refused: PromptRefused = serde_json::from_str(body).unwrap();
        assert_eq!(
            refused.reasons(),
            vec!["WanVideoEncode #70: Required input is missing: driving_video"]
        );
    }
}
