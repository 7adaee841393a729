//! Reading a workflow from whatever a user drops on the window: UI or API JSON in any wrapping,
//! or an image or video that carries one in its metadata.

use serde_json::Value;

use super::api::{ApiPrompt, ApiWrapping};
use super::embedded;
use super::error::WorkflowError;
use super::ui::UiWorkflow;

/// Where the workflow text was found.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    Json,
    /// Metadata of a PNG, WebP, MP4 or WebM file.
    Embedded(embedded::Container),
}

/// A workflow as read: the UI graph, the API prompt, or both (output files carry both).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedWorkflow {
    pub origin: Origin,
    pub ui: Option<UiWorkflow>,
    pub api: Option<(ApiPrompt, ApiWrapping)>,
}

impl LoadedWorkflow {
    /// Whether to read the API prompt rather than the UI graph. An output file's prompt is exactly
    /// what ran (with the edits made at queue time); its UI workflow is the graph it was queued
    /// from. Elsewhere the UI graph is the richer form: it knows muted nodes and value sources.
    pub fn reads_prompt(&self) -> bool {
        self.api.is_some() && (self.ui.is_none() || matches!(self.origin, Origin::Embedded(_)))
    }

    /// "api" when the API prompt is what gets read, else "ui".
    pub fn format(&self) -> &'static str {
        if self.reads_prompt() { "api" } else { "ui" }
    }
}

/// Reads a workflow from the bytes of a file.
pub fn load(bytes: &[u8]) -> Result<LoadedWorkflow, WorkflowError> {
    if let Some(container) = embedded::sniff(bytes) {
        let found = embedded::extract(bytes).map_err(|e| WorkflowError::Embedded(e.to_string()))?;
        let origin = Origin::Embedded(container);
        let ui = match &found.workflow {
            Some(text) => UiWorkflow::from_json(&parse_json(text.as_bytes())?)?,
            None => None,
        };
        let api = match &found.prompt {
            Some(text) => ApiPrompt::from_json(&parse_json(text.as_bytes())?)?,
            None => None,
        };
        if ui.is_none() && api.is_none() {
            return Err(WorkflowError::Embedded(format!(
                "the {container} carries metadata, but neither a ComfyUI workflow nor a prompt"
            )));
        }
        return Ok(LoadedWorkflow { origin, ui, api });
    }
    let value = parse_json(bytes)?;
    from_value(&value)
}

/// Reads a workflow from parsed JSON.
pub fn from_value(value: &Value) -> Result<LoadedWorkflow, WorkflowError> {
    if let Some(ui) = UiWorkflow::from_json(value)? {
        return Ok(LoadedWorkflow {
            origin: Origin::Json,
            ui: Some(ui),
            api: None,
        });
    }
    // Worker inputs and request bodies sometimes carry a UI workflow instead of a prompt.
    for wrapped in [
        value.get("workflow"),
        value.get("input").and_then(|i| i.get("workflow")),
        value
            .get("extra_data")
            .and_then(|e| e.get("extra_pnginfo"))
            .and_then(|e| e.get("workflow")),
    ]
    .into_iter()
    .flatten()
    {
        if let Some(ui) = UiWorkflow::from_json(wrapped)? {
            let api = ApiPrompt::from_json(value)?;
            return Ok(LoadedWorkflow {
                origin: Origin::Json,
                ui: Some(ui),
                api,
            });
        }
    }
    if let Some(api) = ApiPrompt::from_json(value)? {
        return Ok(LoadedWorkflow {
            origin: Origin::Json,
            ui: None,
            api: Some(api),
        });
    }
    Err(WorkflowError::NotAWorkflow(describe_json(value)))
}

fn parse_json(bytes: &[u8]) -> Result<Value, WorkflowError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(WorkflowError::NotAWorkflow("the file is empty".into()));
    }
    serde_json::from_slice(bytes).map_err(|e| WorkflowError::from_json(&e))
}

fn describe_json(value: &Value) -> String {
    match value {
        Value::Object(map) if map.is_empty() => "an empty JSON object".into(),
        Value::Object(map) => {
            let keys: Vec<&str> = map.keys().take(5).map(String::as_str).collect();
            format!(
                "a JSON object with keys {} but no \"nodes\" list and no node with a \"class_type\"",
                keys.join(", ")
            )
        }
        Value::Array(_) => "a JSON list that is not a queue/history entry".into(),
        _ => "a single JSON value, not an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_what_is_no_workflow() {
        let err = load(b"{\"a\": 1}").unwrap_err();
        assert!(err.to_string().contains("no \"nodes\" list"), "{err}");
        let err = load(b"{\"nodes\": [").unwrap_err();
        assert!(matches!(err, WorkflowError::Json { line: 1, .. }), "{err}");
        assert!(load(b"  ").is_err());
        assert!(load(b"[1,2]").is_err());
    }
}
