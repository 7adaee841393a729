//! UI → API conversion, equal to what ComfyUI's web frontend sends: the flattened graph's active
//! nodes, their inputs by name, links to removed nodes dropped, and the frontend's own value
//! transforms (dynamic prompts, filename tokens) applied.

use indexmap::IndexMap;
use serde_json::Value;

use super::api::{ApiNode, ApiPrompt, as_link, link_value};
use super::error::WorkflowError;
use super::flat::{FlatGraph, FlatInput, Strictness, ValueSource, flatten};
use super::node_defs::NodeDefs;
use super::ui::UiWorkflow;

/// Choices the frontend makes at queue time that a converter must make too.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvertOptions {
    /// Picks `{a|b|c}` choices in dynamic prompts (the frontend picks at random).
    pub dynamic_prompt_seed: u64,
    /// Date and time for `%date:…%` in filename prefixes: (year, month, day, hour, minute, second).
    pub now: (i64, u32, u32, u32, u32, u32),
}

impl Default for ConvertOptions {
    /// Now, in UTC (the frontend uses the browser's local time).
    fn default() -> Self {
        let seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Self {
            dynamic_prompt_seed: seconds,
            now: civil_time(seconds),
        }
    }
}

/// (year, month, day, hour, minute, second) of a Unix time, by the days-from-civil inverse.
pub fn civil_time(unix_seconds: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (unix_seconds / 86_400) as i64;
    let in_day = unix_seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (in_day / 3600) as u32,
        (in_day / 60 % 60) as u32,
        (in_day % 60) as u32,
    )
}

/// Converts a UI workflow to the API prompt the frontend would queue.
pub fn ui_to_api(
    workflow: &UiWorkflow,
    defs: &NodeDefs,
    options: &ConvertOptions,
) -> Result<ApiPrompt, WorkflowError> {
    let flat = flatten(workflow, defs, Strictness::Convert)?;
    Ok(flat_to_api(&flat, defs, options))
}

/// The API prompt of a flattened graph: active, described nodes only.
pub fn flat_to_api(flat: &FlatGraph, defs: &NodeDefs, options: &ConvertOptions) -> ApiPrompt {
    let mut nodes = IndexMap::new();
    for node in flat.nodes.values() {
        if !node.mode.is_active() || !node.is_described {
            continue;
        }
        let def = defs.get(&node.class_type);
        let mut inputs = IndexMap::new();
        for (name, input) in &node.inputs {
            let value = match input {
                // An API prompt's literals already are what the frontend sends.
                FlatInput::Value {
                    value,
                    source: ValueSource::Prompt,
                } => value.clone(),
                FlatInput::Value { value, .. } => {
                    let dynamic = def
                        .and_then(|d| d.input(name))
                        .is_some_and(|i| i.dynamic_prompts);
                    match value {
                        Value::String(text) if dynamic => {
                            Value::String(resolve_dynamic_prompt(text, options.dynamic_prompt_seed))
                        }
                        Value::String(text) if name == "filename_prefix" => {
                            Value::String(fill_filename_tokens(text, node, flat, options))
                        }
                        other => other.clone(),
                    }
                }
                FlatInput::Link { origin, slot, .. } => link_value(origin, *slot),
            };
            inputs.insert(name.clone(), value);
        }
        nodes.insert(
            node.id.clone(),
            ApiNode {
                class_type: node.class_type.clone(),
                inputs,
                title: Some(
                    node.title
                        .clone()
                        .unwrap_or_else(|| node.class_type.clone()),
                ),
            },
        );
    }
    // Links into nodes that are not sent (muted, bypassed without a pass-through) are dropped,
    // as the frontend does; the server then reports a missing required input if it matters.
    let kept: std::collections::HashSet<String> = nodes.keys().cloned().collect();
    for node in nodes.values_mut() {
        node.inputs
            .retain(|_, value| as_link(value).is_none_or(|(origin, _)| kept.contains(origin)));
    }
    ApiPrompt { nodes }
}

/// The frontend's dynamic prompts: `//` and `/* */` comments removed, `{a|b|c}` resolved (innermost
/// first), picking with `seed` where the frontend picks at random.
pub fn resolve_dynamic_prompt(text: &str, seed: u64) -> String {
    let stripped = strip_comments(text);
    let mut out = stripped;
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    // Bounded: each pass removes one brace pair.
    for _ in 0..10_000 {
        let Some(close) = out.find('}') else {
            break;
        };
        let Some(open) = out[..close].rfind('{') else {
            break;
        };
        let choices: Vec<&str> = out[open + 1..close].split('|').collect();
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let pick = choices
            .get(((state >> 33) as usize) % choices.len().max(1))
            .copied()
            .unwrap_or_default()
            .to_string();
        out.replace_range(open..=close, &pick);
    }
    out
}

fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("/*") {
            rest = after.find("*/").map_or("", |end| &after[end + 2..]);
        } else if let Some(after) = rest.strip_prefix("//") {
            rest = after.find('\n').map_or("", |end| &after[end..]);
        } else {
            let mut chars = rest.chars();
            if let Some(c) = chars.next() {
                out.push(c);
            }
            rest = chars.as_str();
        }
    }
    out
}

/// `%date:yyyy-MM-dd%` and `%NodeTitle.widget%` in filename prefixes, filled in by the frontend.
fn fill_filename_tokens(
    text: &str,
    node: &super::flat::FlatNode,
    flat: &FlatGraph,
    options: &ConvertOptions,
) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('%') {
        let Some(len) = rest[start + 1..].find('%') else {
            break;
        };
        let token = &rest[start + 1..start + 1 + len];
        out.push_str(&rest[..start]);
        match fill_token(token, node, flat, options) {
            Some(value) => out.push_str(&value),
            None => {
                out.push('%');
                out.push_str(token);
                out.push('%');
            }
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

fn fill_token(
    token: &str,
    node: &super::flat::FlatNode,
    flat: &FlatGraph,
    options: &ConvertOptions,
) -> Option<String> {
    if let Some(format) = token.strip_prefix("date:") {
        let (y, mo, d, h, mi, s) = options.now;
        let mut out = format.to_string();
        for (pattern, value) in [
            ("yyyy", format!("{y:04}")),
            ("yy", format!("{:02}", y.rem_euclid(100))),
            ("MM", format!("{mo:02}")),
            ("M", mo.to_string()),
            ("dd", format!("{d:02}")),
            ("d", d.to_string()),
            ("hh", format!("{h:02}")),
            ("h", h.to_string()),
            ("mm", format!("{mi:02}")),
            ("m", mi.to_string()),
            ("ss", format!("{s:02}")),
            ("s", s.to_string()),
        ] {
            out = out.replace(pattern, &value);
        }
        return Some(out);
    }
    let (title, widget) = token.split_once('.')?;
    // The server fills %width% and friends; only Title.widget pairs are the frontend's.
    let source = flat
        .nodes
        .values()
        .find(|n| n.title.as_deref() == Some(title) || (n.title.is_none() && n.class_type == title))
        .unwrap_or(node);
    match source.value(widget)? {
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Mends what a workflow saved against older node versions or another OS gets wrong for this
/// server, where the fix is unambiguous; returns what it changed, in words.
///
/// - A linked input the node no longer has (renamed upstream, e.g. WanVideoEncode `image` →
///   `driving_video`) moves to the one unconnected socket input of the same type.
/// - A combo value that is not among the server's options but matches one with `/` for `\` (a
///   Windows model subfolder) or in another letter case takes that option.
pub fn repair_for_server(flat: &mut FlatGraph, defs: &NodeDefs) -> Vec<String> {
    let mut notes = Vec::new();
    let output_types: std::collections::HashMap<String, Vec<String>> = flat
        .nodes
        .values()
        .filter_map(|n| Some((n.id.clone(), defs.get(&n.class_type)?.output_types.clone())))
        .collect();
    for node in flat.nodes.values_mut().filter(|n| n.mode.is_active()) {
        let Some(def) = defs.get(&node.class_type) else {
            continue;
        };
        let unknown: Vec<String> = node
            .inputs
            .keys()
            .filter(|name| def.input(name).is_none())
            .cloned()
            .collect();
        for name in unknown {
            let Some(FlatInput::Link { origin, slot, .. }) = node.inputs.get(&name) else {
                continue;
            };
            let Some(link_type) = output_types.get(origin).and_then(|t| t.get(*slot)) else {
                continue;
            };
            let candidates: Vec<&str> = def
                .inputs
                .iter()
                .filter(|i| {
                    !i.is_widget()
                        && i.type_name() == link_type
                        && !node.inputs.contains_key(&i.name)
                })
                .map(|i| i.name.as_str())
                .collect();
            if let [only] = candidates.as_slice() {
                let only = (*only).to_string();
                if let Some(link) = node.inputs.shift_remove(&name) {
                    notes.push(format!(
                        "{} #{}: input '{name}' is now called '{only}' on this server; connected it there",
                        node.class_type, node.id
                    ));
                    node.inputs.insert(only, link);
                }
            }
        }
        for input in def.inputs.iter() {
            let super::node_defs::InputKind::Widget(super::node_defs::WidgetKind::Combo(options)) =
                &input.kind
            else {
                continue;
            };
            let Some(FlatInput::Value {
                value: Value::String(current),
                ..
            }) = node.inputs.get_mut(&input.name)
            else {
                continue;
            };
            if options.is_empty() || options.iter().any(|o| o.as_str() == Some(current.as_str())) {
                continue;
            }
            let wanted = current.replace('\\', "/").to_lowercase();
            let matching: Vec<&str> = options
                .iter()
                .filter_map(Value::as_str)
                .filter(|o| o.replace('\\', "/").to_lowercase() == wanted)
                .collect();
            if let [only] = matching.as_slice() {
                notes.push(format!(
                    "{} #{}: {} '{current}' is '{only}' on this server",
                    node.class_type, node.id, input.name
                ));
                *current = (*only).to_string();
            }
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frontend_transforms_apply_to_ui_widgets_but_not_to_api_literals() {
        use crate::workflow::api::ApiPrompt;
        use crate::workflow::ui::UiWorkflow;
        use serde_json::json;

        let options = ConvertOptions {
            dynamic_prompt_seed: 1,
            now: (2026, 11, 29, 8, 5, 0),
        };
        let defs = NodeDefs::bundled();
        let ui = json!({"nodes": [
            {"id": 1, "type": "SaveImage", "mode": 0, "widgets_values": ["wan/%date:yyyy-MM-dd%/clip"]},
            {"id": 2, "type": "CLIPTextEncode", "mode": 0, "widgets_values": ["a fox // a note"]}
        ], "links": []});
        let ui = UiWorkflow::from_json(&ui).unwrap().unwrap();
        let prompt = ui_to_api(&ui, defs, &options).unwrap();
        assert_eq!(
            prompt.nodes["1"].inputs["filename_prefix"],
            json!("wan/2026-11-29/clip")
        );
        assert_eq!(prompt.nodes["2"].inputs["text"], json!("a fox "));

        let api = json!({
            "1": {"class_type": "SaveImage", "inputs": {"filename_prefix": "wan/%date:yyyy%"}},
            "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a {red|blue} fox"}}
        });
        let (api, _) = ApiPrompt::from_json(&api).unwrap().unwrap();
        let sent = flat_to_api(&crate::workflow::flat::from_api(&api), defs, &options);
        for (id, node) in &api.nodes {
            assert_eq!(
                sent.nodes[id].inputs, node.inputs,
                "node {id} is sent as written"
            );
        }
    }

    #[test]
    fn unix_times_become_calendar_dates() {
        assert_eq!(civil_time(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil_time(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(civil_time(1_795_955_696), (2026, 11, 29, 12, 34, 56));
    }

    #[test]
    fn dynamic_prompts_strip_comments_and_pick_choices() {
        assert_eq!(
            resolve_dynamic_prompt("a cat // note\nruns /* x */", 1),
            "a cat \nruns "
        );
        let picked = resolve_dynamic_prompt("a {red|blue} car", 3);
        assert!(picked == "a red car" || picked == "a blue car", "{picked}");
        assert_eq!(resolve_dynamic_prompt("{a|{b|b}}", 9).len(), 1);
    }
}
