//! What ComfyUI 0.8.0 says over HTTP and its websocket, as types: `/prompt` replies and
//! validation errors, `/history` entries and the files output nodes wrote, `/queue`,
//! `/system_stats`, `/upload/image`, every websocket message, binary preview frames, and which
//! execution errors are out-of-memory. Pure: bytes and JSON in, values out; the client that moves
//! them is separate. Shapes follow the server's source and the transcripts recorded from a real
//! server in tests/data/comfy-protocol.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::gpu::server::{ServerDevice, SystemStatsError, parse_system_stats};

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

impl PromptAccepted {
    /// One line per failing input of the output nodes the server dropped (it runs the rest);
    /// empty when every output node validated.
    pub fn ignored_outputs(&self) -> Vec<String> {
        node_error_lines(&self.node_errors)
    }
}

/// "Class #id: message: details", one line per reason in a `node_errors` map.
fn node_error_lines(node_errors: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    for (node, entry) in node_errors {
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
    out
}

impl PromptRefused {
    /// One line per failing input, for the user: "KSampler #3: steps: Value 0 smaller than min of 1".
    pub fn reasons(&self) -> Vec<String> {
        let mut out = node_error_lines(&self.node_errors);
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
        WsMessage::from_parts(kind, data)
    }

    /// A message from its type and data: how `/history` keeps a run's messages
    /// (`[type, data]` pairs), and the body of [`WsMessage::parse`].
    pub fn from_parts(kind: String, data: Value) -> Result<WsMessage, MessageError> {
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

/// `GET /system_stats`: the server's versions, how it was started, and its device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SystemStats {
    /// Text fields are `None` when the server leaves them out (older versions lack some).
    /// "linux", "nt", "darwin" (Python's `os.name` or `sys.platform`).
    pub os: Option<String>,
    pub comfyui_version: Option<String>,
    /// As Python writes it: "3.11.7 (main, May  9 2026, 07:35:25) [GCC 12.2.0]".
    pub python_version: Option<String>,
    pub pytorch_version: Option<String>,
    /// The Windows portable build's `python_embeded`.
    pub embedded_python: bool,
    /// `main.py` and its flags, without the interpreter: where a launch marker of ours shows.
    pub argv: Vec<String>,
    pub ram_total_bytes: Option<u64>,
    pub ram_free_bytes: Option<u64>,
    pub devices: Vec<ServerDevice>,
}

impl SystemStats {
    /// Reads a reply. The devices are strict (they feed the VRAM budget); the `system` block is
    /// lenient, since older servers lack some of its fields.
    pub fn parse(bytes: &[u8]) -> Result<SystemStats, SystemStatsError> {
        let devices = parse_system_stats(bytes)?;
        let root: Value = serde_json::from_slice(bytes).map_err(SystemStatsError::NotJson)?;
        let system = root.get("system").cloned().unwrap_or(Value::Null);
        let text = |key: &str| system.get(key).and_then(Value::as_str).map(str::to_string);
        Ok(SystemStats {
            os: text("os"),
            comfyui_version: text("comfyui_version"),
            python_version: text("python_version"),
            pytorch_version: text("pytorch_version"),
            embedded_python: system
                .get("embedded_python")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            argv: system
                .get("argv")
                .and_then(Value::as_array)
                .map(|argv| {
                    argv.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            ram_total_bytes: system.get("ram_total").and_then(Value::as_u64),
            ram_free_bytes: system.get("ram_free").and_then(Value::as_u64),
            devices,
        })
    }
}

/// Which of the server's folders a file is in: the `type` of `/view` and of output lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    Output,
    Temp,
    Input,
}

impl FileKind {
    /// The word the server uses.
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Output => "output",
            FileKind::Temp => "temp",
            FileKind::Input => "input",
        }
    }

    fn from_word(word: &str) -> Option<FileKind> {
        match word {
            "output" => Some(FileKind::Output),
            "temp" => Some(FileKind::Temp),
            "input" => Some(FileKind::Input),
            _ => None,
        }
    }
}

/// One file an output node wrote, as history and `executed` list it; fetch it with `/view`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutputFile {
    /// The name in its folder; may itself hold `/` (the server joins subfolder and name).
    pub filename: String,
    /// "" for the folder itself.
    pub subfolder: String,
    pub kind: FileKind,
    /// VideoHelperSuite's "video/h264-mp4" and the like; `None` from core nodes.
    pub format: Option<String>,
}

impl OutputFile {
    /// A list entry, or `None` when the entry is not a file reference.
    fn from_value(value: &Value) -> Option<OutputFile> {
        let object = value.as_object()?;
        let filename = object.get("filename")?.as_str()?.to_string();
        let subfolder = match object.get("subfolder") {
            None | Some(Value::Null) => String::new(),
            Some(value) => value.as_str()?.to_string(),
        };
        // The server's own default for `/view`.
        let kind = match object.get("type") {
            None | Some(Value::Null) => FileKind::Output,
            Some(value) => FileKind::from_word(value.as_str()?)?,
        };
        let format = object
            .get("format")
            .and_then(Value::as_str)
            .map(str::to_string);
        Some(OutputFile {
            filename,
            subfolder,
            kind,
            format,
        })
    }
}

/// What one output node reported: its file lists by key ("images" — also SaveVideo's videos —,
/// "gifs" from VideoHelperSuite, "audio", "latents", …) and everything else as sent.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct NodeOutput {
    /// Every top-level list whose entries are all file references, in the server's order.
    pub files: IndexMap<String, Vec<OutputFile>>,
    /// `"animated": [true]`: the images form one animation or video.
    pub animated: bool,
    /// Keys that are not file lists (text a node shows, custom data), unchanged.
    pub other: Map<String, Value>,
}

impl NodeOutput {
    /// Reads an `outputs` entry or an `executed` message's `output`. Never fails: what is not a
    /// file list is kept in `other`.
    pub fn from_value(value: &Value) -> NodeOutput {
        let mut output = NodeOutput::default();
        let Some(object) = value.as_object() else {
            return output;
        };
        for (key, value) in object {
            if key == "animated" {
                output.animated = value
                    .as_array()
                    .is_some_and(|flags| flags.iter().any(|f| f.as_bool() == Some(true)));
                continue;
            }
            let files = value.as_array().and_then(|entries| {
                entries
                    .iter()
                    .map(OutputFile::from_value)
                    .collect::<Option<Vec<_>>>()
            });
            match files {
                Some(files) if !files.is_empty() => {
                    output.files.insert(key.clone(), files);
                }
                _ => {
                    output.other.insert(key.clone(), value.clone());
                }
            }
        }
        output
    }

    /// One file list ("images", "gifs", …); empty when absent.
    pub fn list(&self, key: &str) -> &[OutputFile] {
        self.files.get(key).map(Vec::as_slice).unwrap_or_default()
    }

    /// Every file, list after list.
    pub fn all_files(&self) -> impl Iterator<Item = &OutputFile> {
        self.files.values().flatten()
    }
}

/// How a finished prompt ended, as its history says.
#[derive(Debug, Clone, PartialEq)]
pub enum HistoryOutcome {
    Success,
    Error(ExecutionError),
    Interrupted {
        node_id: Option<String>,
    },
    /// No end message and a `status_str` other than "success" (kept as sent).
    Unknown(String),
}

/// A history entry's `status`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HistoryStatus {
    /// "success" or "error" (interrupted runs say "error" too).
    pub status_str: String,
    pub completed: bool,
    /// The run's start, cached, success / error / interrupted messages, in order.
    pub messages: Vec<WsMessage>,
    /// `execution_start`'s timestamp, ms since the Unix epoch.
    pub started_at_ms: Option<u64>,
    /// The last message's timestamp (the end of the run), ms since the Unix epoch.
    pub finished_at_ms: Option<u64>,
}

/// One finished prompt from `GET /history/{id}`: what ran, what it wrote, how it ended. The run
/// logic reads it after `executing` with no node, and after a lost websocket.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub prompt_id: String,
    /// The queue number; `None` when the entry has no `prompt` list.
    pub number: Option<f64>,
    /// The API prompt that ran.
    pub prompt: Value,
    /// `client_id`, `create_time`, `preview_method`, `extra_pnginfo`, … as the server kept them.
    pub extra_data: Map<String, Value>,
    /// The output nodes the server meant to run.
    pub outputs_to_execute: Vec<String>,
    /// Output node id → what it wrote, in the server's order.
    pub outputs: IndexMap<String, NodeOutput>,
    pub status: HistoryStatus,
}

impl HistoryEntry {
    /// Success, the execution error, or the interruption.
    pub fn outcome(&self) -> HistoryOutcome {
        for message in self.status.messages.iter().rev() {
            match message {
                WsMessage::ExecutionError(error) => return HistoryOutcome::Error(error.clone()),
                WsMessage::ExecutionInterrupted { node_id, .. } => {
                    return HistoryOutcome::Interrupted {
                        node_id: node_id.clone(),
                    };
                }
                WsMessage::ExecutionSuccess { .. } => return HistoryOutcome::Success,
                _ => {}
            }
        }
        if self.status.status_str == "success" {
            HistoryOutcome::Success
        } else {
            HistoryOutcome::Unknown(self.status.status_str.clone())
        }
    }

    /// The execution error that ended the run, if one did.
    pub fn execution_error(&self) -> Option<ExecutionError> {
        match self.outcome() {
            HistoryOutcome::Error(error) => Some(error),
            _ => None,
        }
    }

    /// Whether `/interrupt` ended the run.
    pub fn was_interrupted(&self) -> bool {
        matches!(self.outcome(), HistoryOutcome::Interrupted { .. })
    }

    /// Every file the output nodes wrote, node after node: what to download.
    pub fn output_files(&self) -> Vec<OutputFile> {
        self.files().map(|(_, file)| file.clone()).collect()
    }

    /// Every file every output node wrote, with the node's id.
    pub fn files(&self) -> impl Iterator<Item = (&str, &OutputFile)> {
        self.outputs
            .iter()
            .flat_map(|(node, output)| output.all_files().map(move |file| (node.as_str(), file)))
    }

    /// Reads one entry (the value under its prompt id).
    pub fn from_value(prompt_id: &str, entry: &Value) -> Result<HistoryEntry, HistoryError> {
        let bad = |field: &'static str, problem: String| HistoryError::BadEntry {
            prompt_id: prompt_id.to_string(),
            field,
            problem,
        };
        let object = entry
            .as_object()
            .ok_or_else(|| bad("", "expected an object".to_string()))?;
        let queued = match object.get("prompt") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items.clone(),
            Some(_) => return Err(bad("prompt", "expected a list".to_string())),
        };
        let outputs = match object.get("outputs") {
            None | Some(Value::Null) => IndexMap::new(),
            Some(Value::Object(outputs)) => outputs
                .iter()
                .map(|(node, output)| (node.clone(), NodeOutput::from_value(output)))
                .collect(),
            Some(_) => return Err(bad("outputs", "expected an object".to_string())),
        };
        let status = match object.get("status") {
            None | Some(Value::Null) => HistoryStatus::default(),
            Some(status @ Value::Object(_)) => {
                read_history_status(status).map_err(|problem| bad("status", problem))?
            }
            Some(_) => return Err(bad("status", "expected an object".to_string())),
        };
        Ok(HistoryEntry {
            prompt_id: prompt_id.to_string(),
            number: queued.first().and_then(Value::as_f64),
            prompt: queued.get(2).cloned().unwrap_or(Value::Null),
            extra_data: queued
                .get(3)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            outputs_to_execute: queued
                .get(4)
                .and_then(Value::as_array)
                .map(|ids| ids.iter().filter_map(id_text).collect())
                .unwrap_or_default(),
            outputs,
            status,
        })
    }
}

fn read_history_status(status: &Value) -> Result<HistoryStatus, String> {
    let mut out = HistoryStatus {
        status_str: status
            .get("status_str")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        completed: status
            .get("completed")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        ..HistoryStatus::default()
    };
    let messages = match status.get("messages") {
        None | Some(Value::Null) => return Ok(out),
        Some(Value::Array(messages)) => messages,
        Some(_) => return Err("\"messages\" is not a list".to_string()),
    };
    for (index, pair) in messages.iter().enumerate() {
        let (Some(kind), Some(data)) = (
            pair.get(0).and_then(Value::as_str),
            pair.get(1)
                .filter(|_| pair.as_array().is_some_and(|p| p.len() == 2)),
        ) else {
            return Err(format!("messages[{index}] is not a [type, data] pair"));
        };
        let timestamp = data.get("timestamp").and_then(Value::as_u64);
        if kind == "execution_start" {
            out.started_at_ms = timestamp.or(out.started_at_ms);
        }
        out.finished_at_ms = timestamp.or(out.finished_at_ms);
        // A message this client cannot read is kept whole rather than dropped.
        let message = WsMessage::from_parts(kind.to_string(), data.clone()).unwrap_or_else(|_| {
            WsMessage::Other {
                kind: kind.to_string(),
                data: data.clone(),
            }
        });
        out.messages.push(message);
    }
    Ok(out)
}

/// A `/history` reply that does not have the shape ComfyUI sends.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HistoryError {
    #[error("/history reply is not JSON: {0}")]
    NotJson(String),
    #[error("/history reply is not an object of prompt ids")]
    NotAnObject,
    #[error("/history entry {prompt_id}: \"{field}\" {problem}")]
    BadEntry {
        prompt_id: String,
        field: &'static str,
        problem: String,
    },
}

/// Reads `GET /history` or `GET /history/{id}` (`{}` when the prompt is unknown or unfinished):
/// the entries in the server's order, oldest first.
pub fn parse_history(bytes: &[u8]) -> Result<Vec<HistoryEntry>, HistoryError> {
    let root: Value =
        serde_json::from_slice(bytes).map_err(|e| HistoryError::NotJson(e.to_string()))?;
    let entries = root.as_object().ok_or(HistoryError::NotAnObject)?;
    entries
        .iter()
        .map(|(prompt_id, entry)| HistoryEntry::from_value(prompt_id, entry))
        .collect()
}

/// One queued prompt in `GET /queue`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueItem {
    /// The queue priority: lower runs first.
    pub number: f64,
    pub prompt_id: String,
    /// The websocket client that queued it; `None` for prompts queued without one.
    pub client_id: Option<String>,
    pub outputs_to_execute: Vec<String>,
}

/// `GET /queue`: what runs now and what waits, pending sorted by queue number.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueueState {
    pub running: Vec<QueueItem>,
    pub pending: Vec<QueueItem>,
}

impl QueueState {
    /// Whether a prompt is running or waiting.
    pub fn contains(&self, prompt_id: &str) -> bool {
        self.running
            .iter()
            .chain(&self.pending)
            .any(|item| item.prompt_id == prompt_id)
    }

    /// Reads a reply; items are `[number, prompt_id, prompt, extra_data, outputs_to_execute]`.
    pub fn parse(bytes: &[u8]) -> Result<QueueState, String> {
        let root: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        let list = |key: &str| -> Result<Vec<QueueItem>, String> {
            let items = root
                .get(key)
                .and_then(Value::as_array)
                .ok_or_else(|| format!("no \"{key}\" list"))?;
            items
                .iter()
                .enumerate()
                .map(|(index, item)| {
                    let prompt_id = item
                        .get(1)
                        .and_then(id_text)
                        .ok_or_else(|| format!("{key}[{index}] has no prompt id"))?;
                    Ok(QueueItem {
                        number: item.get(0).and_then(Value::as_f64).unwrap_or(0.0),
                        prompt_id,
                        client_id: item
                            .get(3)
                            .and_then(|extra| extra.get("client_id"))
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        outputs_to_execute: item
                            .get(4)
                            .and_then(Value::as_array)
                            .map(|ids| ids.iter().filter_map(id_text).collect())
                            .unwrap_or_default(),
                    })
                })
                .collect()
        };
        let mut pending = list("queue_pending")?;
        // The server sends its heap as stored, not in run order.
        pending.sort_by(|a, b| a.number.total_cmp(&b.number));
        Ok(QueueState {
            running: list("queue_running")?,
            pending,
        })
    }
}

/// `POST /upload/image`'s reply: the name to put in `LoadImage` (the server may rename).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct UploadedImage {
    pub name: String,
    #[serde(default)]
    pub subfolder: String,
    #[serde(rename = "type", default = "input_kind")]
    pub kind: FileKind,
}

fn input_kind() -> FileKind {
    FileKind::Input
}

impl UploadedImage {
    /// How `LoadImage` names it: "sub/name.png" or "name.png".
    pub fn load_image_name(&self) -> String {
        if self.subfolder.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.subfolder, self.name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(path: &str) -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/comfy-protocol")
            .join(path);
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
    }

    /// The body of a recorded HTTP reply, as the bytes a client reads.
    fn body(path: &str) -> Vec<u8> {
        serde_json::to_vec(&recorded(path)["body"]).unwrap()
    }

    /// File references in a recorded `outputs` block, counted without the parser.
    fn count_files(outputs: &Value) -> usize {
        outputs
            .as_object()
            .unwrap()
            .values()
            .flat_map(|node| node.as_object().unwrap().values())
            .filter_map(Value::as_array)
            .flatten()
            .filter(|entry| entry.get("filename").is_some())
            .count()
    }

    #[test]
    fn every_recorded_history_parses() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/comfy-protocol");
        let mut files: Vec<String> = Vec::new();
        for sub in ["ws", "http"] {
            for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
                let name = entry.unwrap().file_name().to_string_lossy().to_string();
                if name.contains("history") && name.ends_with(".json") {
                    files.push(format!("{sub}/{name}"));
                }
            }
        }
        files.sort();
        assert_eq!(files.len(), 10, "{files:?}");
        for file in &files {
            let raw = recorded(file);
            let entries = parse_history(&body(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            let ids: Vec<&String> = raw["body"].as_object().unwrap().keys().collect();
            assert_eq!(entries.len(), ids.len(), "{file}");
            for (entry, id) in entries.iter().zip(ids) {
                assert_eq!(&entry.prompt_id, id, "{file}");
                let recorded_entry = &raw["body"][id];
                assert_eq!(
                    entry.files().count(),
                    count_files(&recorded_entry["outputs"]),
                    "{file}"
                );
                assert_eq!(entry.prompt, recorded_entry["prompt"][2], "{file}");
                assert!(entry.status.started_at_ms.is_some(), "{file}");
                assert!(
                    entry.status.finished_at_ms >= entry.status.started_at_ms,
                    "{file}"
                );
                assert!(
                    entry
                        .status
                        .messages
                        .iter()
                        .all(|m| !matches!(m, WsMessage::Other { .. })),
                    "{file}"
                );
                let success = recorded_entry["status"]["status_str"] == "success";
                assert_eq!(
                    entry.outcome() == HistoryOutcome::Success,
                    success,
                    "{file}"
                );
                assert_eq!(entry.status.completed, success, "{file}");
            }
        }
    }

    #[test]
    fn a_video_run_lists_its_video_and_frames() {
        let entries = parse_history(&body("ws/compiled_run.history.json")).unwrap();
        let entry = &entries[0];
        assert_eq!(entry.prompt_id, "wan-pilot-rec-compiled-0001");
        assert_eq!(entry.number, Some(17.0));
        assert_eq!(
            entry.outputs_to_execute,
            vec!["80", "wan-pilot-frame-tap-1"]
        );
        assert_eq!(
            entry.extra_data.get("client_id"),
            Some(&Value::from("5b0d6a8e-6f1e-4c55-9a63-2f4f3d0c1a01"))
        );
        let video = &entry.outputs["80"];
        assert!(video.animated);
        assert_eq!(
            video.list("images"),
            [OutputFile {
                filename: "ComfyUI_00003_.mp4".into(),
                subfolder: "video".into(),
                kind: FileKind::Output,
                format: None
            }]
        );
        let frames = &entry.outputs["wan-pilot-frame-tap-1"];
        assert_eq!(frames.list("images").len(), 13);
        assert!(frames.all_files().all(|f| f.subfolder == "wan-pilot"));
        assert_eq!(entry.status.started_at_ms, Some(1795958151221));
        assert_eq!(entry.status.finished_at_ms, Some(1795958166536));
    }

    #[test]
    fn failed_and_interrupted_runs_say_how_they_ended() {
        let error = parse_history(&body("ws/runtime_error.history.json")).unwrap();
        match error[0].outcome() {
            HistoryOutcome::Error(e) => {
                assert_eq!(e.node_id.as_deref(), Some("95"));
                assert_eq!(
                    e.exception_type,
                    "safetensors._safetensors_rust.SafetensorError"
                );
                assert!(!e.is_out_of_memory());
            }
            other => panic!("{other:?}"),
        }
        assert!(error[0].outputs.is_empty());
        let interrupted = parse_history(&body("ws/interrupt_and_clear.history.json")).unwrap();
        assert_eq!(
            interrupted[0].outcome(),
            HistoryOutcome::Interrupted {
                node_id: Some("81".into())
            }
        );
        let two = parse_history(&body("http/get_api_history_max_items_2.json")).unwrap();
        assert!(matches!(two[0].outcome(), HistoryOutcome::Error(_)));
        assert!(matches!(
            two[1].outcome(),
            HistoryOutcome::Interrupted { .. }
        ));
        assert!(
            parse_history(&body("http/get_api_history_unknown_id.json"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn odd_output_lists_are_kept_not_lost() {
        let output = NodeOutput::from_value(&serde_json::json!({
            "gifs": [{"filename": "a.mp4", "subfolder": "", "type": "temp",
                      "format": "video/h264-mp4", "frame_rate": 16.0}],
            "text": ["a caption"],
            "images": [{"filename": "b.png", "type": "nowhere"}],
            "animated": [false]
        }));
        assert_eq!(output.list("gifs")[0].kind, FileKind::Temp);
        assert_eq!(
            output.list("gifs")[0].format.as_deref(),
            Some("video/h264-mp4")
        );
        assert!(output.list("images").is_empty());
        assert!(output.other.contains_key("images") && output.other.contains_key("text"));
        assert!(!output.animated);
        let broken = parse_history(br#"{"p": {"outputs": [], "status": {}}}"#).unwrap_err();
        assert_eq!(
            broken.to_string(),
            "/history entry p: \"outputs\" expected an object"
        );
        assert!(matches!(
            parse_history(b"[]"),
            Err(HistoryError::NotAnObject)
        ));
    }

    #[test]
    fn queue_replies_parse() {
        let idle = QueueState::parse(&body("http/get_api_queue_idle.json")).unwrap();
        assert_eq!(idle, QueueState::default());
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/comfy-protocol/ws/interrupt_and_clear.jsonl");
        let busy = std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .find(|e| {
                e["ev"] == "http_response" && e["path"] == "/api/queue" && e["method"] == "GET"
            })
            .unwrap();
        let state = QueueState::parse(&serde_json::to_vec(&busy["body"]).unwrap()).unwrap();
        assert_eq!(state.running.len(), 1);
        assert_eq!(state.running[0].prompt_id, "wan-pilot-rec-interrupt-0001");
        assert_eq!(
            state.running[0].client_id.as_deref(),
            Some("5b0d6a8e-6f1e-4c55-9a63-2f4f3d0c1a06")
        );
        assert_eq!(state.pending.len(), 1);
        assert!(state.contains("wan-pilot-rec-interrupt-0001"));
        assert!(QueueState::parse(b"{}").is_err());
    }

    #[test]
    fn system_stats_are_typed() {
        let stats = SystemStats::parse(&body("http/get_api_system_stats.json")).unwrap();
        assert_eq!(stats.comfyui_version.as_deref(), Some("0.8.0"));
        assert_eq!(stats.pytorch_version.as_deref(), Some("2.15.0+cu132"));
        assert!(stats.python_version.unwrap().starts_with("3.11.7"));
        assert_eq!(stats.os.as_deref(), Some("linux"));
        assert_eq!(stats.argv[0], "main.py");
        assert!(stats.argv.contains(&"--disable-auto-launch".to_string()));
        assert_eq!(stats.devices.len(), 1);
        assert_eq!(stats.ram_total_bytes, Some(25276502016));
        assert!(SystemStats::parse(b"{\"system\": {}}").is_err());
        let bare = SystemStats::parse(b"{\"devices\": []}").unwrap();
        assert_eq!(bare.comfyui_version, None);
        assert!(bare.argv.is_empty());
    }

    #[test]
    fn partially_valid_prompts_name_the_dropped_outputs() {
        let accepted: PromptAccepted =
            serde_json::from_slice(&body("http/post_api_prompt_200_partial_node_errors.json"))
                .unwrap();
        let ignored = accepted.ignored_outputs();
        assert!(!ignored.is_empty());
        assert!(ignored[0].starts_with("SaveImage #3: "), "{ignored:?}");
        let uploaded: UploadedImage =
            serde_json::from_str(r#"{"name": "a (1).png", "subfolder": "wp", "type": "input"}"#)
                .unwrap();
        assert_eq!(uploaded.load_image_name(), "wp/a (1).png");
    }

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
