//! The protocol types against what a real ComfyUI 0.8.0 said (tests/data/comfy-protocol, recorded
//! from a live server; its README says how): every websocket message of six real sessions, the
//! recorded binary preview frames, and the server's validation refusals.

use std::path::{Path, PathBuf};

use serde_json::Value;
use wan_pilot::comfy::protocol::{
    BinaryFrame, PreviewFormat, PromptAccepted, PromptRefused, WsMessage,
};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/comfy-protocol")
}

fn transcript(name: &str) -> Vec<Value> {
    std::fs::read_to_string(data().join("ws").join(format!("{name}.jsonl")))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn messages(name: &str) -> Vec<WsMessage> {
    transcript(name)
        .iter()
        .filter(|e| e["ev"] == "ws_text")
        .map(|e| {
            let frame = e["msg"].to_string();
            WsMessage::parse(&frame).unwrap_or_else(|err| panic!("{name}: {err}: {frame}"))
        })
        .collect()
}

#[test]
fn every_recorded_message_is_understood() {
    let sessions = [
        "plain_run",
        "compiled_run",
        "cached_rerun",
        "reconnect_mid_run",
        "runtime_error",
        "interrupt_and_clear",
    ];
    let mut total = 0;
    for session in sessions {
        for message in messages(session) {
            total += 1;
            assert!(
                !matches!(message, WsMessage::Other { .. }),
                "{session}: {message:?}"
            );
        }
    }
    assert!(total > 150, "{total} messages");
}

#[test]
fn a_run_ends_with_success_then_executing_null() {
    let run = messages("plain_run");
    let success = run
        .iter()
        .position(|m| matches!(m, WsMessage::ExecutionSuccess { .. }))
        .expect("success");
    let finished = run
        .iter()
        .position(|m| matches!(m, WsMessage::Executing { node: None, .. }))
        .expect("executing null");
    assert!(success < finished);
    let steps = run
        .iter()
        .filter(|m| matches!(m, WsMessage::Progress { .. }))
        .count();
    assert!(steps >= 4, "two experts' steps: {steps}");
    assert!(run.iter().any(|m| matches!(m, WsMessage::Executed { .. })));
}

#[test]
fn errors_and_interrupts_are_told_apart() {
    let errors: Vec<_> = messages("runtime_error")
        .into_iter()
        .filter_map(|m| match m {
            WsMessage::ExecutionError(e) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].exception_type.contains("SafetensorError"),
        "{:?}",
        errors[0]
    );
    assert!(!errors[0].is_out_of_memory());
    assert!(
        messages("interrupt_and_clear")
            .iter()
            .any(|m| matches!(m, WsMessage::ExecutionInterrupted { .. }))
    );
}

#[test]
fn recorded_previews_parse() {
    for (file, metadata) in [
        ("compiled_run_type1_1.bin", false),
        ("compiled_run_type1_2.bin", false),
        ("plain_run_type4_1.bin", true),
    ] {
        let bytes = std::fs::read(data().join("previews").join(file)).unwrap();
        match BinaryFrame::parse(&bytes).unwrap() {
            BinaryFrame::Preview { format, image } => {
                assert!(!metadata, "{file}");
                assert_eq!(format, PreviewFormat::Jpeg);
                assert_eq!(&image[..2], b"\xFF\xD8", "{file}");
            }
            BinaryFrame::PreviewWithMetadata {
                metadata: meta,
                image,
            } => {
                assert!(metadata, "{file}");
                assert_eq!(meta["image_type"], "image/jpeg");
                assert!(meta["node_id"].is_string());
                assert_eq!(&image[..2], b"\xFF\xD8", "{file}");
            }
            other => panic!("{file}: {other:?}"),
        }
    }
}

#[test]
fn validation_replies_become_clear_reasons() {
    let reply = |name: &str| -> Value {
        serde_json::from_slice(&std::fs::read(data().join("http").join(name)).unwrap()).unwrap()
    };
    let missing = reply("post_api_prompt_400_missing_model.json");
    assert_eq!(missing["status"], 400);
    let refused: PromptRefused = serde_json::from_value(missing["body"].clone()).unwrap();
    let reasons = refused.reasons();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("UNETLoader #75") && r.contains("Value not in list")),
        "{reasons:?}"
    );
    let several: PromptRefused =
        serde_json::from_value(reply("post_api_prompt_400_several_reasons.json")["body"].clone())
            .unwrap();
    assert!(several.reasons().len() >= 2);
    let partial = reply("post_api_prompt_200_partial_node_errors.json");
    let accepted: PromptAccepted = serde_json::from_value(partial["body"].clone()).unwrap();
    assert!(!accepted.prompt_id.is_empty());
    assert!(
        !accepted.node_errors.is_empty(),
        "200 with node errors: the invalid outputs will not run"
    );
}
