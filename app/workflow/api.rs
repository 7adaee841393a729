//! The API ("prompt") format: what ComfyUI's `POST /prompt` runs, keyed by node id.
//!
//! Users meet it in four wrappings: the plain map, `{"prompt": map}` (a request body), the
//! queue/history tuple `[number, prompt_id, map, extra, outputs]`, and `{"input": {"workflow": map}}`
//! (serverless workers). All of them read into one [`ApiPrompt`].

use indexmap::IndexMap;
use serde_json::{Map, Value, json};

use super::error::WorkflowError;

/// One node of an API prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiNode {
    pub class_type: String,
    /// Input name → a literal value, or a link `[origin_id, output_index]`.
    pub inputs: IndexMap<String, Value>,
    /// `_meta.title`, which the backend ignores but people read.
    pub title: Option<String>,
}

/// How an API prompt was wrapped in the file it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiWrapping {
    Plain,
    RequestBody,
    QueueTuple,
    WorkerInput,
}

impl ApiWrapping {
    pub fn describe(self) -> &'static str {
        match self {
            ApiWrapping::Plain => "plain",
            ApiWrapping::RequestBody => "request body {\"prompt\": …}",
            ApiWrapping::QueueTuple => "queue/history tuple [number, id, prompt, extra, outputs]",
            ApiWrapping::WorkerInput => "worker input {\"input\": {\"workflow\": …}}",
        }
    }
}

/// An API prompt: node id → node, in the order the file had them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ApiPrompt {
    pub nodes: IndexMap<String, ApiNode>,
}

/// A link as the API writes it: `[origin_id, output_index]`.
pub fn as_link(value: &Value) -> Option<(&str, usize)> {
    let pair = value.as_array()?;
    if pair.len() != 2 {
        return None;
    }
    let slot = pair[1].as_u64().or_else(|| {
        pair[1]
            .as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0)
            .map(|f| f as u64)
    })?;
    let origin = pair[0].as_str()?;
    Some((origin, usize::try_from(slot).ok()?))
}

/// A link value in API form.
pub fn link_value(origin: &str, slot: usize) -> Value {
    json!([origin, slot])
}

impl ApiPrompt {
    /// The prompt as the JSON object `POST /prompt` takes.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        for (id, node) in &self.nodes {
            let mut entry = Map::new();
            entry.insert(
                "inputs".into(),
                Value::Object(node.inputs.clone().into_iter().collect()),
            );
            entry.insert("class_type".into(), Value::String(node.class_type.clone()));
            if let Some(title) = &node.title {
                entry.insert("_meta".into(), json!({ "title": title }));
            }
            out.insert(id.clone(), Value::Object(entry));
        }
        Value::Object(out)
    }

    /// Reads an API prompt in any of its wrappings. `Ok(None)` means the JSON is some other thing
    /// (a UI workflow, say); `Err` means it looks like an API prompt but is broken.
    pub fn from_json(value: &Value) -> Result<Option<(ApiPrompt, ApiWrapping)>, WorkflowError> {
        if let Some(tuple) = value.as_array() {
            // [number, prompt_id, prompt, extra_data, outputs_to_execute]
            if tuple.len() >= 3
                && tuple[0].is_number()
                && tuple[1].is_string()
                && let Some(map) = tuple[2].as_object().filter(|m| looks_like_api(m))
            {
                let prompt = Self::from_map(map, "[2]")?;
                return Ok(Some((prompt, ApiWrapping::QueueTuple)));
            }
            return Ok(None);
        }
        let Some(map) = value.as_object() else {
            return Ok(None);
        };
        if let Some(inner) = map
            .get("prompt")
            .and_then(Value::as_object)
            .filter(|m| looks_like_api(m))
        {
            return Ok(Some((
                Self::from_map(inner, "prompt")?,
                ApiWrapping::RequestBody,
            )));
        }
        if let Some(inner) = map
            .get("input")
            .and_then(|i| i.get("workflow"))
            .and_then(Value::as_object)
            .filter(|m| looks_like_api(m))
        {
            return Ok(Some((
                Self::from_map(inner, "input.workflow")?,
                ApiWrapping::WorkerInput,
            )));
        }
        if looks_like_api(map) {
            return Ok(Some((Self::from_map(map, "")?, ApiWrapping::Plain)));
        }
        Ok(None)
    }

    fn from_map(map: &Map<String, Value>, base: &str) -> Result<ApiPrompt, WorkflowError> {
        let mut nodes = IndexMap::new();
        for (id, node) in map {
            let place = if base.is_empty() {
                format!("node \"{id}\"")
            } else {
                format!("{base}.node \"{id}\"")
            };
            let obj = node
                .as_object()
                .ok_or_else(|| WorkflowError::bad_api(&place, "a node must be a JSON object"))?;
            let class_type = obj
                .get("class_type")
                .and_then(Value::as_str)
                .ok_or_else(|| WorkflowError::bad_api(&place, "no \"class_type\" text"))?;
            let inputs = match obj.get("inputs") {
                None | Some(Value::Null) => IndexMap::new(),
                Some(Value::Object(inputs)) => {
                    inputs.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
                }
                Some(_) => {
                    return Err(WorkflowError::bad_api(
                        &place,
                        "\"inputs\" must be a JSON object",
                    ));
                }
            };
            let title = obj
                .get("_meta")
                .and_then(|m| m.get("title"))
                .and_then(Value::as_str)
                .map(str::to_string);
            nodes.insert(
                id.clone(),
                ApiNode {
                    class_type: class_type.to_string(),
                    inputs,
                    title,
                },
            );
        }
        Ok(ApiPrompt { nodes })
    }

    /// Every link whose origin is missing: (node id, input name, origin id).
    pub fn dangling_links(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for (id, node) in &self.nodes {
            for (name, value) in &node.inputs {
                if let Some((origin, _)) = as_link(value)
                    && !self.nodes.contains_key(origin)
                {
                    out.push((id.clone(), name.clone(), origin.to_string()));
                }
            }
        }
        out
    }

    /// A node id on a cycle of links, if there is one (the server would refuse the prompt).
    pub fn find_cycle(&self) -> Option<String> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            Fresh,
            Active,
            Done,
        }
        let index: IndexMap<&str, usize> = self
            .nodes
            .keys()
            .enumerate()
            .map(|(i, k)| (k.as_str(), i))
            .collect();
        let mut marks = vec![Mark::Fresh; self.nodes.len()];
        for start in 0..self.nodes.len() {
            if marks[start] != Mark::Fresh {
                continue;
            }
            // Iterative depth-first search: (node, next input to look at).
            let mut stack = vec![(start, 0usize)];
            marks[start] = Mark::Active;
            while let Some((at, next)) = stack.pop() {
                let Some((id, node)) = self.nodes.get_index(at) else {
                    continue;
                };
                let upstream: Vec<usize> = node
                    .inputs
                    .values()
                    .filter_map(as_link)
                    .filter_map(|(origin, _)| index.get(origin).copied())
                    .collect();
                if let Some(&up) = upstream.get(next) {
                    stack.push((at, next + 1));
                    match marks[up] {
                        Mark::Active => return Some(id.clone()),
                        Mark::Fresh => {
                            marks[up] = Mark::Active;
                            stack.push((up, 0));
                        }
                        Mark::Done => {}
                    }
                } else {
                    marks[at] = Mark::Done;
                }
            }
        }
        None
    }
}

/// Every value is an object with a `class_type` text: the shape of an API prompt.
fn looks_like_api(map: &Map<String, Value>) -> bool {
    !map.is_empty()
        && map
            .values()
            .all(|v| v.get("class_type").is_some_and(Value::is_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_wrapping() {
        let plain =
            json!({"3": {"class_type": "KSampler", "inputs": {"seed": 1, "model": ["4", 0]}}});
        let (p, w) = ApiPrompt::from_json(&plain).unwrap().unwrap();
        assert_eq!(w, ApiWrapping::Plain);
        assert_eq!(p.nodes["3"].inputs["seed"], json!(1));
        let body = json!({"prompt": plain, "client_id": "x"});
        assert_eq!(
            ApiPrompt::from_json(&body).unwrap().unwrap().1,
            ApiWrapping::RequestBody
        );
        let tuple = json!([4, "abc", plain, {}, ["9"]]);
        assert_eq!(
            ApiPrompt::from_json(&tuple).unwrap().unwrap().1,
            ApiWrapping::QueueTuple
        );
        let worker = json!({"input": {"workflow": plain}});
        assert_eq!(
            ApiPrompt::from_json(&worker).unwrap().unwrap().1,
            ApiWrapping::WorkerInput
        );
        assert!(
            ApiPrompt::from_json(&json!({"nodes": []}))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn finds_cycles_and_dangling_links() {
        let v = json!({
            "1": {"class_type": "A", "inputs": {"x": ["2", 0]}},
            "2": {"class_type": "B", "inputs": {"x": ["1", 0], "y": ["9", 0]}}
        });
        let (p, _) = ApiPrompt::from_json(&v).unwrap().unwrap();
        assert!(p.find_cycle().is_some());
        assert_eq!(
            p.dangling_links(),
            vec![("2".into(), "y".into(), "9".into())]
        );
        let v = json!({
            "1": {"class_type": "A", "inputs": {}},
            "2": {"class_type": "B", "inputs": {"x": ["1", 0]}},
            "3": {"class_type": "B", "inputs": {"x": ["1", 0], "y": ["2", 0]}}
        });
        let (p, _) = ApiPrompt::from_json(&v).unwrap().unwrap();
        assert_eq!(p.find_cycle(), None);
    }

    #[test]
    fn links_are_two_element_arrays() {
        assert_eq!(as_link(&json!(["5", 1])), Some(("5", 1)));
        assert_eq!(as_link(&json!(["5", 1, 2])), None);
        assert_eq!(as_link(&json!([5, 1])), None);
    }
}
