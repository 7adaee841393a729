//! The stand-in ComfyUI (tests/standin) must say what the real ComfyUI 0.8.0 said in the
//! recordings (tests/data/comfy-protocol): its command line, its replies key by key, the order of
//! its websocket messages for the recorded prompts, its files, its exits — so the tests that use
//! it test wan-pilot against the real protocol. Plain HTTP/1.1 and a minimal websocket client
//! over std::net, nothing of wan-pilot's own client.
//!
//! `the_checks_hold_against_a_real_server` (ignored) runs the server-independent checks against
//! a real ComfyUI: `WAN_PILOT_COMFYUI_URL=http://127.0.0.1:8199 cargo test --test
//! standin_protocol -- --ignored`.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::standin::{Standin, free_port, read_pid, standin_install, standin_python, temp_dir};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Recordings

fn rec(path: &str) -> PathBuf {
    common::standin::repo_root()
        .join("tests/data/comfy-protocol")
        .join(path)
}

fn rec_json(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(rec(path)).unwrap()).unwrap()
}

fn rec_jsonl(path: &str) -> Vec<Value> {
    std::fs::read_to_string(rec(path))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A recorded session's websocket traffic from the server: (type or "binary:N", data).
fn recorded_ws(name: &str) -> Vec<(String, Value)> {
    rec_jsonl(&format!("ws/{name}.jsonl"))
        .into_iter()
        .filter_map(|e| match e["ev"].as_str() {
            Some("ws_text") => Some((
                e["msg"]["type"].as_str().unwrap().to_string(),
                e["msg"]["data"].clone(),
            )),
            Some("ws_binary") => Some((
                format!("binary:{}", e["header"]["event_type"]),
                e["header"].clone(),
            )),
            _ => None,
        })
        .collect()
}

/// The one entry of a recorded `/history/{id}` reply (its body is keyed by the prompt id).
fn recorded_history_entry(path: &str) -> Value {
    let body = rec_json(path)["body"].clone();
    body.as_object().unwrap().values().next().unwrap().clone()
}

fn recorded_lines(path: &str) -> Vec<String> {
    rec_jsonl(path)
        .into_iter()
        .filter(|e| e["ev"] == "line")
        .map(|e| e["line"].as_str().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Shapes: same keys, same JSON types, recursively

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn path_matches(pattern: &str, path: &str) -> bool {
    let (p, q): (Vec<_>, Vec<_>) = (pattern.split('/').collect(), path.split('/').collect());
    p.len() == q.len() && p.iter().zip(&q).all(|(a, b)| *a == "*" || a == b)
}

/// Where `got` differs in structure from `expected`: keys missing or extra, values of another
/// JSON type. Objects at a path in `maps` are keyed by data (node or prompt ids): each of their
/// values is compared with the first expected value; a pattern starting with `=` marks a value
/// whose type alone is compared (its content depends on the prompt). Arrays of equal length are
/// compared element by element, others each element against the expected first one.
fn shape_diff(expected: &Value, got: &Value, path: &str, maps: &[&str], out: &mut Vec<String>) {
    if kind(expected) != kind(got) {
        out.push(format!(
            "{path}: {} expected, got {}",
            kind(expected),
            kind(got)
        ));
        return;
    }
    let marked = |opaque: bool| {
        maps.iter().any(|m| match m.strip_prefix('=') {
            Some(p) => opaque && path_matches(p, path),
            None => !opaque && path_matches(m, path),
        })
    };
    if marked(true) {
        return;
    }
    match (expected, got) {
        (Value::Object(e), Value::Object(g)) if marked(false) => {
            if let Some(first) = e.values().next() {
                for (key, value) in g {
                    shape_diff(first, value, &format!("{path}/{key}"), maps, out);
                }
            }
        }
        (Value::Object(e), Value::Object(g)) => {
            for key in e.keys().filter(|k| !g.contains_key(*k)) {
                out.push(format!("{path}/{key}: missing"));
            }
            for key in g.keys().filter(|k| !e.contains_key(*k)) {
                out.push(format!("{path}/{key}: not in the recording"));
            }
            for (key, value) in e {
                if let Some(other) = g.get(key) {
                    shape_diff(value, other, &format!("{path}/{key}"), maps, out);
                }
            }
        }
        (Value::Array(e), Value::Array(g)) if e.len() == g.len() => {
            for (i, (a, b)) in e.iter().zip(g).enumerate() {
                shape_diff(a, b, &format!("{path}/{i}"), maps, out);
            }
        }
        (Value::Array(e), Value::Array(g)) => {
            if let Some(first) = e.first() {
                for (i, b) in g.iter().enumerate() {
                    shape_diff(first, b, &format!("{path}/{i}"), maps, out);
                }
            }
        }
        _ => {}
    }
}

/// Every structural difference of `got` from `expected`, a line each (see [`shape_diff`]).
fn shape_differences(expected: &Value, got: &Value, maps: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    shape_diff(expected, got, "", maps, &mut out);
    out
}

fn assert_shape(expected: &Value, got: &Value, what: &str, maps: &[&str]) {
    let out = shape_differences(expected, got, maps);
    assert!(
        out.is_empty(),
        "{what} differs from the recording:\n{}",
        out.join("\n")
    );
}

#[test]
fn the_shape_comparison_catches_drift() {
    let recorded = json!({"a": 1, "b": [{"c": "x"}], "m": {"1": {"v": 1.0}}, "o": {"x": 1}});
    let out = shape_differences(
        &recorded,
        &json!({"a": 2.5, "b": [{"c": "y"}, {"c": "z"}], "m": {"7": {"v": 3}}, "o": {"y": "2"}}),
        &["/m", "=/o"],
    );
    assert!(out.is_empty(), "{out:?}");
    for drifted in [
        json!({"a": "1", "b": [], "m": {}}),
        json!({"b": [], "m": {}}),
        json!({"a": 1, "b": [{"d": "x"}], "m": {}}),
        json!({"a": 1, "b": [], "m": {"1": {"v": null}}}),
        json!({"a": 1, "b": [], "m": {}, "extra": true}),
        json!({"a": 1, "b": [], "m": {}, "o": []}),
    ] {
        let out = shape_differences(&recorded, &drifted, &["/m", "=/o"]);
        assert!(!out.is_empty(), "{drifted} passed");
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 over TcpStream

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn try_http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Option<Reply> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head += &format!("{name}: {value}\r\n");
    }
    if method == "POST" {
        head += &format!("Content-Length: {}\r\n", body.len());
    }
    head += "\r\n";
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let text = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = text.lines();
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Some(Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

/// A request with extra `headers` that must be answered within 30 s.
fn http_with_headers(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    try_http(port, method, path, headers, body, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("{method} {path} on port {port}: no reply"))
}

fn http(port: u16, method: &str, path: &str, body: &[u8]) -> Reply {
    http_with_headers(port, method, path, &[], body)
}

/// The `/view` path that fetches `file`, an output entry of a history reply.
fn view_path(file: &Value) -> String {
    format!(
        "/api/view?filename={}&subfolder={}&type={}",
        file["filename"].as_str().unwrap(),
        file["subfolder"].as_str().unwrap(),
        file["type"].as_str().unwrap()
    )
}

/// The `/history/{id}` reply: an object keyed by the prompt id, empty until the run ends.
fn fetch_history(port: u16, id: &str) -> Value {
    http(port, "GET", &format!("/api/history/{id}"), b"").json()
}

fn post_json(port: u16, path: &str, body: &Value) -> Reply {
    http(port, "POST", path, body.to_string().as_bytes())
}

// ---------------------------------------------------------------------------------------------
// Websocket client (RFC 6455, enough for these tests)

enum Frame {
    Text(Value),
    Binary(Vec<u8>),
    Closed,
    Silent,
}

struct Ws {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Ws {
    fn connect(port: u16, client_id: &str) -> Ws {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        // RFC 6455's own example key, whose accept value the RFC gives.
        write!(
            stream,
            "GET /ws?clientId={client_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_lowercase();
        assert!(head.starts_with("http/1.1 101"), "{head}");
        assert!(
            head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
            "{head}"
        );
        let reader = BufReader::new(stream.try_clone().unwrap());
        Ws { stream, reader }
    }

    fn send_text(&mut self, value: &Value) {
        let payload = value.to_string().into_bytes();
        let mask = [0x37u8, 0xfa, 0x21, 0x3d];
        let mut frame = vec![0x81u8];
        if payload.len() < 126 {
            frame.push(0x80 | payload.len() as u8);
        } else {
            frame.push(0x80 | 126);
            frame.extend((payload.len() as u16).to_be_bytes());
        }
        frame.extend(mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).unwrap();
    }

    fn set_timeout(&mut self, timeout: Duration) {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
    }

    fn next(&mut self) -> Frame {
        let mut head = [0u8; 2];
        if let Err(e) = self.reader.read_exact(&mut head) {
            return match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => Frame::Silent,
                _ => Frame::Closed,
            };
        }
        let mut len = u64::from(head[1] & 0x7f);
        if len == 126 {
            let mut b = [0u8; 2];
            self.reader.read_exact(&mut b).unwrap();
            len = u64::from(u16::from_be_bytes(b));
        } else if len == 127 {
            let mut b = [0u8; 8];
            self.reader.read_exact(&mut b).unwrap();
            len = u64::from_be_bytes(b);
        }
        let mut data = vec![0u8; len as usize];
        if self.reader.read_exact(&mut data).is_err() {
            return Frame::Closed;
        }
        match head[0] & 0x0f {
            1 => Frame::Text(serde_json::from_slice(&data).unwrap()),
            2 => Frame::Binary(data),
            _ => Frame::Closed,
        }
    }

    /// The next text message (binary frames are kept in `binaries`), or None when closed.
    fn next_text(&mut self) -> Option<Value> {
        loop {
            match self.next() {
                Frame::Text(v) => return Some(v),
                Frame::Binary(_) => {}
                Frame::Closed | Frame::Silent => return None,
            }
        }
    }

    /// Every message until `executing {node: null}` for `prompt_id`, as (type, data).
    fn until_done(&mut self, prompt_id: &str) -> Vec<(String, Value)> {
        let mut seen = Vec::new();
        loop {
            match self.next() {
                Frame::Text(m) => {
                    let done = m["type"] == "executing"
                        && m["data"]["node"].is_null()
                        && m["data"]["prompt_id"] == prompt_id;
                    seen.push(typed(&m));
                    if done {
                        return seen;
                    }
                }
                Frame::Binary(b) => {
                    let event = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                    seen.push((format!("binary:{event}"), binary_header(&b)));
                }
                Frame::Closed | Frame::Silent => {
                    panic!("socket ended before the run did: {seen:?}")
                }
            }
        }
    }
}

/// A binary frame described as the recorder (tools/record.py) describes it.
fn binary_header(frame: &[u8]) -> Value {
    let event = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
    let word = u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]) as usize;
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    if event == 4 {
        let metadata: Value = serde_json::from_slice(&frame[8..8 + word]).unwrap();
        json!({"event_type": 4, "event_name": "PREVIEW_IMAGE_WITH_METADATA", "metadata_len": word,
               "metadata": metadata, "payload_offset": 8 + word,
               "payload_magic_hex": hex(&frame[8 + word..12 + word])})
    } else {
        let format = if word == 1 { "JPEG" } else { "PNG" };
        json!({"event_type": event, "event_name": "PREVIEW_IMAGE", "image_format": word,
               "image_format_name": format, "payload_offset": 8, "payload_magic_hex": hex(&frame[8..12])})
    }
}

/// A text message as (type, data), the form the recordings are compared in.
fn typed(message: &Value) -> (String, Value) {
    (
        message["type"].as_str().unwrap().to_string(),
        message["data"].clone(),
    )
}

/// The data of the first message of type `wanted`.
fn first_of<'a>(messages: &'a [(String, Value)], wanted: &str) -> &'a Value {
    let found = messages.iter().find(|(t, _)| t == wanted);
    &found.unwrap_or_else(|| panic!("no {wanted}")).1
}

/// The nodes `executing` messages named, in order (not the run's final `node: null`).
fn executed_nodes(messages: &[(String, Value)]) -> Vec<&Value> {
    messages
        .iter()
        .filter(|(t, d)| t == "executing" && !d["node"].is_null())
        .map(|(_, d)| &d["node"])
        .collect()
}

fn types(messages: &[(String, Value)]) -> Vec<&str> {
    messages.iter().map(|(t, _)| t.as_str()).collect()
}

// ---------------------------------------------------------------------------------------------
// Running the stand-in

/// A stand-in with `scenario` in a temp folder of its own (removed with it), started on `port`
/// without waiting for it to listen.
fn launched(tag: &str, scenario: Value, port: u16) -> Standin {
    let dir = temp_dir(&format!("standin-{tag}"));
    let root = standin_install(&dir, scenario);
    let mut server = Standin::start(&root, port, &[]);
    server.remove_on_drop = Some(dir);
    server
}

/// A stand-in with `scenario` that listens on a free port.
fn started(tag: &str, scenario: Value) -> Standin {
    let mut server = launched(tag, scenario, free_port());
    assert!(
        server.wait_ready(Duration::from_secs(20)),
        "the stand-in did not listen: {}",
        server.stderr()
    );
    server
}

/// Opens a websocket as `client_id` and reads its first status message, then posts `body` to
/// `/api/prompt`: the socket then sees every message of the run.
fn connect_and_submit(port: u16, client_id: &str, body: &Value) -> (Ws, Reply) {
    let mut ws = Ws::connect(port, client_id);
    ws.next_text();
    (ws, post_json(port, "/api/prompt", body))
}

/// Sends `signal` to the stand-in itself and waits up to 10 s for it to exit.
#[cfg(unix)]
fn exit_on_signal(server: &mut Standin, signal: i32) -> std::process::ExitStatus {
    server.signal(signal);
    server
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no exit on signal {signal}"))
}

fn prompt_file(name: &str) -> Value {
    rec_json(&format!("prompts/{name}"))
}

fn empty_image_prompt(prefix: &str, color: u32) -> Value {
    json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 5, "color": color}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}}
    })
}

// ---------------------------------------------------------------------------------------------
// Checks that hold for the stand-in and for a real ComfyUI alike

fn check_idle_replies(port: u16) {
    let stats = http(port, "GET", "/api/system_stats", b"");
    assert_eq!(stats.status, 200);
    assert_eq!(
        stats.header("Content-Type"),
        Some("application/json; charset=utf-8")
    );
    assert_shape(
        &rec_json("http/get_api_system_stats.json")["body"],
        &stats.json(),
        "/system_stats",
        &[],
    );
    let plain = http(port, "GET", "/system_stats", b"");
    assert_shape(
        &stats.json(),
        &plain.json(),
        "/system_stats without /api",
        &[],
    );
    let ksampler = http(port, "GET", "/api/object_info/KSampler", b"");
    assert_shape(
        &rec_json("http/get_api_object_info_KSampler.json")["body"],
        &ksampler.json(),
        "/object_info/KSampler",
        // Input options: node_defs.json keeps facts, not tooltips.
        &["=/KSampler/input/required/*/1"],
    );
    for (path, recording) in [
        (
            "/api/object_info/NoSuchNode",
            "http/get_api_object_info_unknown_class.json",
        ),
        (
            "/api/history/00000000-0000-0000-0000-000000000000",
            "http/get_api_history_unknown_id.json",
        ),
        ("/api/prompt", "http/get_api_prompt_idle.json"),
        ("/api/queue", "http/get_api_queue_idle.json"),
        ("/api/embeddings", "http/get_api_embeddings.json"),
        ("/api/features", "http/get_api_features.json"),
    ] {
        let reply = http(port, "GET", path, b"");
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.json(), rec_json(recording)["body"], "{path}");
    }
    let foreign = http_with_headers(
        port,
        "GET",
        "/api/system_stats",
        &[("Origin", "http://evil.example:1234")],
        b"",
    );
    assert_eq!((foreign.status, foreign.body.len()), (403, 0));
}

fn check_refusals(port: u16) {
    for (body, recording) in [
        (
            "prompts/invalid_unknown_class.body.json",
            "http/post_api_prompt_400_unknown_class.json",
        ),
        (
            "prompts/invalid_no_outputs.body.json",
            "http/post_api_prompt_400_no_outputs.json",
        ),
    ] {
        let reply = post_json(port, "/api/prompt", &rec_json(body));
        assert_eq!(reply.status, 400, "{body}");
        assert_eq!(reply.json(), rec_json(recording)["body"], "{body}");
    }
    let reply = post_json(port, "/api/prompt", &json!({"client_id": "x"}));
    assert_eq!(
        (reply.status, reply.json()),
        (
            400,
            rec_json("http/post_api_prompt_400_no_prompt_key.json")["body"].clone()
        )
    );
    let malformed = http(port, "POST", "/api/prompt", b"{\"prompt\": {");
    let recorded = rec_json("http/post_api_prompt_malformed_json.json");
    assert_eq!(malformed.status, 500);
    assert_eq!(
        String::from_utf8_lossy(&malformed.body),
        recorded["body_text"].as_str().unwrap()
    );
    let reasons = post_json(
        port,
        "/api/prompt",
        &rec_json("prompts/invalid_several_reasons.body.json"),
    );
    let recorded = &rec_json("http/post_api_prompt_400_several_reasons.json")["body"];
    assert_eq!(reasons.status, 400);
    let got = reasons.json();
    assert_shape(
        recorded,
        &got,
        "several reasons",
        &["/node_errors", "=/node_errors/*/errors/*/extra_info"],
    );
    let error_types = |v: &Value| -> Vec<(String, Vec<String>)> {
        let mut all: Vec<_> = v["node_errors"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(id, e)| {
                let mut kinds: Vec<String> = e["errors"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x["type"].as_str().unwrap().to_string())
                    .collect();
                kinds.sort();
                (id.clone(), kinds)
            })
            .collect();
        all.sort();
        all
    };
    assert_eq!(error_types(&got), error_types(recorded));
    for (status, query) in [
        (400, "filename=..%2Fcomfy.db&type=output"),
        (403, "filename=x.png&subfolder=..%2F..&type=output"),
        (404, "filename=does_not_exist.png&type=output"),
    ] {
        let reply = http(port, "GET", &format!("/api/view?{query}"), b"");
        assert_eq!((reply.status, reply.body.len()), (status, 0), "{query}");
    }
}

/// Runs EmptyImage 64×48 ×5 → SaveImage; returns the messages and the history entry.
fn run_empty_images(port: u16, prefix: &str, color: u32) -> (Vec<(String, Value)>, Value) {
    let client = format!("standin-check-{color}");
    let mut ws = Ws::connect(port, &client);
    let mut messages = vec![];
    messages.push(typed(&ws.next_text().unwrap()));
    let accepted = post_json(
        port,
        "/api/prompt",
        &json!({"prompt": empty_image_prompt(prefix, color), "client_id": client,
                "extra_data": {"preview_method": "auto"}}),
    );
    assert_eq!(
        accepted.status,
        200,
        "{}",
        String::from_utf8_lossy(&accepted.body)
    );
    let accepted = accepted.json();
    assert_shape(
        &json!({"prompt_id": "x", "number": 0, "node_errors": {}}),
        &accepted,
        "POST /prompt",
        &[],
    );
    let id = accepted["prompt_id"].as_str().unwrap().to_string();
    messages.extend(ws.until_done(&id));
    (messages, fetch_history(port, &id)[id.as_str()].clone())
}

fn check_history_entry(entry: &Value) {
    let recorded = recorded_history_entry("ws/plain_run.history.json");
    assert_shape(
        &recorded,
        entry,
        "history entry",
        &["=/prompt/2", "/outputs", "/meta"],
    );
}

fn check_pngs(port: u16, entry: &Value) -> usize {
    let images = entry["outputs"]["2"]["images"].as_array().unwrap();
    for image in images {
        let query = view_path(image);
        let reply = http(port, "GET", &query, b"");
        assert_eq!(reply.status, 200, "{query}");
        assert_eq!(reply.header("Content-Type"), Some("image/png"));
        let png = &reply.body;
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let width = u32::from_be_bytes([png[16], png[17], png[18], png[19]]);
        let height = u32::from_be_bytes([png[20], png[21], png[22], png[23]]);
        assert_eq!((width, height), (64, 48), "{query}");
    }
    images.len()
}

// ---------------------------------------------------------------------------------------------
// The stand-in's own tests

#[test]
fn help_and_an_unknown_flag_print_what_comfyui_printed() {
    let dir = temp_dir("standin-cli");
    let root = standin_install(&dir, json!({}));
    let help = std::process::Command::new(standin_python())
        .arg(root.join("main.py"))
        .arg("--help")
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(help.status.success());
    assert_eq!(
        String::from_utf8(help.stdout).unwrap(),
        std::fs::read_to_string(rec("process/main_help.txt")).unwrap()
    );
    let recorded = rec_jsonl("process/launch_unknown_flag.jsonl");
    let mut args: Vec<String> = recorded[0]["argv"].as_array().unwrap()[2..]
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    for arg in &mut args {
        *arg = arg.replace(
            "/tmp/comfy-recorder-8299",
            &root.parent().unwrap().display().to_string(),
        );
    }
    // ComfyUI checks that --user-directory exists; the recorder had made it.
    std::fs::create_dir_all(root.parent().unwrap().join("user")).unwrap();
    let refused = std::process::Command::new(standin_python())
        .arg(root.join("main.py"))
        .args(&args)
        .current_dir(&root)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(refused.stdout.is_empty());
    let stderr: Vec<String> = String::from_utf8(refused.stderr)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(stderr, recorded_lines("process/launch_unknown_flag.jsonl"));
    assert!(
        read_pid(&root, "standin.pid").is_none(),
        "no pid file before the arguments parse"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn boot_prints_the_recorded_log_and_a_taken_port_fails_as_recorded() {
    let server = started("boot", json!({}));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.stderr().contains("To see the GUI") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = server.stderr();
    // The recording passed --user-directory and --temp-directory; wan-pilot does not.
    let recorded: Vec<String> = recorded_lines("process/launch_8299_sigint.jsonl")
        .into_iter()
        .take_while(|l| !l.starts_with("To see the GUI"))
        .filter(|l| {
            !l.starts_with("Setting user directory") && !l.starts_with("Setting temp directory")
        })
        .collect();
    let ours: Vec<&str> = log.lines().collect();
    assert_eq!(ours.len(), recorded.len() + 1, "boot log lines:\n{log}");
    for (a, b) in ours.iter().zip(&recorded).skip(1) {
        if !b.starts_with("Python version") {
            assert_eq!(
                a.replace(&server.root.display().to_string(), "/work/comfy"),
                *b
            );
        }
    }
    assert_eq!(
        ours[0],
        format!(
            "Setting output directory to: {}",
            server.output_dir.display()
        )
    );
    assert_eq!(
        ours.last().copied(),
        Some(format!("To see the GUI go to: http://127.0.0.1:{}", server.port).as_str())
    );
    assert_eq!(
        read_pid(&server.root, "standin.pid"),
        Some(server.child.id())
    );

    let mut second = launched("taken", json!({}), server.port);
    let status = second
        .wait_exit(Duration::from_secs(20))
        .expect("the second server exits");
    assert_eq!(status.code(), Some(1), "exit status as recorded");
    let stderr = second.stderr();
    let tail: Vec<&str> = stderr.lines().rev().take(2).collect();
    assert_eq!(
        tail[0],
        format!(
            "OSError: [Errno 98] error while attempting to bind on address ('127.0.0.1', {}): address already in use",
            server.port
        )
    );
    let recorded = recorded_lines("process/launch_8199_port_in_use.jsonl");
    assert_eq!(tail[1], recorded[recorded.len() - 2]);
    assert!(!stderr.contains("To see the GUI"));
}

#[test]
fn recorded_sessions_replay_message_for_message() {
    let server = started("sessions", json!({"step_delay_s": 0.01}));
    let port = server.port;
    check_idle_replies(port);
    let stats = http(port, "GET", "/api/system_stats", b"").json();
    let argv: Vec<String> = stats["system"]["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        argv,
        common::standin::standin_args(&server.root, port, &server.output_dir)
    );
    let free = post_json(
        port,
        "/api/free",
        &json!({"unload_models": true, "free_memory": true}),
    );
    assert_eq!((free.status, free.body.len()), (200, 0));

    // The recorder's order: compiled_run after /free, plain_run (feature flags), cached_rerun.
    let sessions = [
        (
            "compiled_run",
            "compiled_run.api.json",
            "5b0d6a8e-6f1e-4c55-9a63-2f4f3d0c1a01",
            Some("wan-pilot-rec-compiled-0001"),
            false,
        ),
        (
            "plain_run",
            "plain_run.api.json",
            "5b0d6a8e-6f1e-4c55-9a63-2f4f3d0c1a02",
            None,
            true,
        ),
        (
            "cached_rerun",
            "plain_run.api.json",
            "5b0d6a8e-6f1e-4c55-9a63-2f4f3d0c1a03",
            Some("wan-pilot-rec-cached-0001"),
            false,
        ),
    ];
    let mut plain_outputs = Value::Null;
    for (name, prompt, client, prompt_id, flags) in sessions {
        let mut ws = Ws::connect(port, client);
        let mut messages = vec![];
        let mut take = |ws: &mut Ws| messages.push(typed(&ws.next_text().unwrap()));
        if flags {
            ws.send_text(
                &json!({"type": "feature_flags", "data": {"supports_preview_metadata": true}}),
            );
            take(&mut ws);
        }
        take(&mut ws);
        let mut body = json!({"prompt": prompt_file(prompt), "client_id": client,
                              "extra_data": {"preview_method": "auto"}});
        if let Some(id) = prompt_id {
            body["prompt_id"] = json!(id);
        }
        let reply = post_json(port, "/api/prompt", &body);
        assert_eq!(reply.status, 200, "{name}");
        let id = reply.json()["prompt_id"].as_str().unwrap().to_string();
        if let Some(wanted) = prompt_id {
            assert_eq!(id, wanted, "the client's prompt_id is used verbatim");
        }
        messages.extend(ws.until_done(&id));

        let recorded = recorded_ws(name);
        assert_eq!(types(&messages), types(&recorded), "{name}: message order");
        for (i, ((kind, ours), (_, theirs))) in messages.iter().zip(&recorded).enumerate() {
            let out = shape_differences(theirs, ours, &[]);
            assert!(
                out.is_empty(),
                "{name} message {i} ({kind}):\n{}",
                out.join("\n")
            );
            if kind.starts_with("binary") {
                assert_eq!(
                    theirs["payload_magic_hex"], ours["payload_magic_hex"],
                    "{name} {i}"
                );
                assert_eq!(theirs["image_format"], ours["image_format"], "{name} {i}");
            }
        }
        assert_eq!(
            executed_nodes(&messages),
            executed_nodes(&recorded),
            "{name}: execution order"
        );

        let history = fetch_history(port, &id);
        let recorded_entry = recorded_history_entry(&format!("ws/{name}.history.json"));
        assert_shape(
            &recorded_entry,
            &history[id.as_str()],
            &format!("{name} history"),
            &[],
        );
        match name {
            "plain_run" => plain_outputs = history[id.as_str()]["outputs"].clone(),
            "cached_rerun" => assert_eq!(
                history[id.as_str()]["outputs"],
                plain_outputs,
                "a cached run replays the old file names"
            ),
            _ => {}
        }
    }

    let first_png = &plain_outputs["90"]["images"][0];
    let view = http(port, "GET", &view_path(first_png), b"");
    let recorded = rec_json("ws/plain_run.view_png.json");
    assert_eq!(view.status, 200);
    for pair in recorded["headers"].as_array().unwrap() {
        let name = pair[0].as_str().unwrap();
        assert!(view.header(name).is_some(), "/view reply lacks {name}");
    }
    assert_eq!(view.header("Content-Type"), Some("image/png"));
    let video = &plain_outputs["80"]["images"][0];
    let range = http_with_headers(
        port,
        "GET",
        &view_path(video),
        &[("Range", "bytes=0-31")],
        b"",
    );
    let recorded = rec_json("http/get_api_view_range.json");
    assert_eq!(range.status, 206);
    assert_eq!(range.body.len(), 32);
    assert_eq!(range.header("Content-Type"), Some("video/mp4"));
    assert!(
        range
            .header("Content-Range")
            .unwrap()
            .starts_with("bytes 0-31/")
    );
    let magic: String = range.body.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(magic, recorded["body_head_hex"].as_str().unwrap());
}

#[test]
fn refused_prompts_carry_the_recorded_errors() {
    let server = started("refusals", json!({}));
    check_refusals(server.port);
    let partial = post_json(
        server.port,
        "/api/prompt",
        &rec_json("prompts/partial_invalid_200.body.json"),
    );
    let recorded = rec_json("http/post_api_prompt_200_partial_node_errors.json")["body"].clone();
    assert_eq!(partial.status, 200);
    let got = partial.json();
    assert_eq!(got["prompt_id"], recorded["prompt_id"]);
    assert_eq!(got["node_errors"], recorded["node_errors"]);
}

#[test]
fn an_empty_image_batch_becomes_real_pngs() {
    let server = started("pngs", json!({}));
    let (messages, entry) = run_empty_images(server.port, "standin/check", 0x336699);
    check_history_entry(&entry);
    assert_eq!(entry["status"]["status_str"], "success");
    assert_eq!(check_pngs(server.port, &entry), 5);
    let on_disk = std::fs::read_dir(server.output_dir.join("standin"))
        .unwrap()
        .count();
    assert_eq!(on_disk, 5);
    assert_eq!(
        types(&messages),
        [
            "status",
            "status",
            "status",
            "execution_start",
            "execution_cached",
            "progress_state",
            "executing",
            "progress_state",
            "progress_state",
            "executing",
            "executed",
            "progress_state",
            "execution_success",
            "status",
            "executing"
        ]
    );
}

#[test]
fn uploads_are_named_as_the_real_server_names_them() {
    let server = started("upload", json!({}));
    let upload = |name: &str, data: &[u8], extra: &str| {
        let boundary = "standinboundary";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n\
             Content-Type: image/png\r\n\r\n"
        )
        .into_bytes();
        body.extend(data);
        body.extend(format!("\r\n{extra}--{boundary}--\r\n").into_bytes());
        http_with_headers(
            server.port,
            "POST",
            "/api/upload/image",
            &[(
                "Content-Type",
                &format!("multipart/form-data; boundary={boundary}"),
            )],
            &body,
        )
    };
    let first = upload("start.png", b"one", "");
    assert_eq!(
        first.json(),
        json!({"name": "start.png", "subfolder": "", "type": "input"})
    );
    assert_eq!(
        upload("start.png", b"one", "").json()["name"],
        "start.png",
        "same bytes: same file"
    );
    assert_eq!(
        upload("start.png", b"two", "").json()["name"],
        "start (1).png"
    );
    let field =
        "--standinboundary\r\nContent-Disposition: form-data; name=\"overwrite\"\r\n\r\ntrue\r\n";
    assert_eq!(
        upload("start.png", b"three", field).json()["name"],
        "start.png"
    );
    assert_eq!(
        std::fs::read(server.root.join("input/start.png")).unwrap(),
        b"three"
    );
    assert_eq!(upload("../evil.png", b"x", "").status, 400);
}

#[cfg(unix)]
#[test]
fn signals_end_the_server_as_recorded() {
    use std::os::unix::process::ExitStatusExt;

    let mut idle = started("sigint", json!({}));
    let status = exit_on_signal(&mut idle, libc::SIGINT);
    assert_eq!(status.code(), Some(0), "idle SIGINT: exit 0 as recorded");
    assert!(
        idle.stderr().ends_with("\n\nStopped server\n"),
        "{}",
        idle.stderr()
    );

    let mut term = started("sigterm", json!({}));
    assert_eq!(
        exit_on_signal(&mut term, libc::SIGTERM).signal(),
        Some(libc::SIGTERM),
        "killed by the signal, as recorded"
    );

    let mut busy = started("sigint-run", json!({"step_delay_s": 0.5}));
    let (mut ws, _) = connect_and_submit(
        busy.port,
        "busy",
        &json!({"prompt": prompt_file("plain_run.api.json"), "client_id": "busy"}),
    );
    while let Some(m) = ws.next_text() {
        if m["type"] == "executing" && m["data"]["node"] == "81" {
            break;
        }
    }
    assert_eq!(
        exit_on_signal(&mut busy, libc::SIGINT).signal(),
        Some(libc::SIGABRT),
        "SIGINT mid-run aborts, as recorded"
    );
    assert!(
        busy.stderr()
            .contains("Stopped server\nterminate called without an active exception\n")
    );
}

#[test]
fn out_of_memory_fails_as_comfyui_reports_it_then_a_lower_rung_succeeds() {
    let server = started(
        "oom",
        json!({"oom_when": {"compile_mode_in": ["max-autotune"], "frames_above": 9}}),
    );
    let run = |mode: &str, length: u64, id: &str| {
        let mut prompt = prompt_file("compiled_run.api.json");
        for node in ["wan-pilot-compile-1", "wan-pilot-compile-2"] {
            prompt[node]["inputs"]["mode"] = json!(mode);
        }
        prompt["74"]["inputs"]["length"] = json!(length);
        let (mut ws, reply) = connect_and_submit(
            server.port,
            id,
            &json!({"prompt": prompt, "client_id": id, "prompt_id": id}),
        );
        assert_eq!(reply.status, 200);
        let messages = ws.until_done(id);
        (messages, fetch_history(server.port, id)[id].clone())
    };
    let (messages, entry) = run("max-autotune", 13, "oom-1");
    let error = first_of(&messages, "execution_error");
    assert_shape(
        first_of(&recorded_ws("runtime_error"), "execution_error"),
        error,
        "execution_error",
        &["=/current_inputs"],
    );
    assert_eq!(error["exception_type"], "torch.OutOfMemoryError");
    assert!(
        error["exception_message"]
            .as_str()
            .unwrap()
            .starts_with("Allocation on device")
    );
    assert_eq!(error["node_type"], "KSamplerAdvanced");
    let after: Vec<&str> = types(&messages)
        .into_iter()
        .skip_while(|t| *t != "execution_error")
        .collect();
    assert_eq!(
        after,
        ["execution_error", "status", "executing"],
        "as in ws/runtime_error.jsonl"
    );
    assert_shape(
        &recorded_history_entry("ws/runtime_error.history.json"),
        &entry,
        "error history",
        &["=/prompt/2", "=/status/messages/2/1/current_inputs"],
    );
    assert_eq!(entry["status"]["status_str"], "error");

    let (messages, entry) = run("default", 13, "oom-2");
    assert!(types(&messages).contains(&"execution_success"));
    assert_eq!(entry["status"]["status_str"], "success");
    let (messages, _) = run("max-autotune", 9, "oom-3");
    assert!(
        types(&messages).contains(&"execution_success"),
        "9 frames fit"
    );

    let counted = started("oom-runs", json!({"oom_runs": 1}));
    let outcome = |id: &str| {
        let reply = post_json(
            counted.port,
            "/api/prompt",
            &json!({"prompt": prompt_file("plain_run.api.json"), "prompt_id": id}),
        );
        assert_eq!(reply.status, 200);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) =
                fetch_history(counted.port, id)[id]["status"]["status_str"].as_str()
            {
                return status.to_string();
            }
            assert!(Instant::now() < deadline, "no history for {id}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert_eq!(outcome("first"), "error");
    assert_eq!(outcome("second"), "success");
}

#[test]
fn interrupt_and_clear_behave_as_recorded() {
    let server = started("interrupt", json!({"step_delay_s": 0.3}));
    let port = server.port;
    let recorded = rec_jsonl("ws/interrupt_and_clear.jsonl");
    let recorded_queues: Vec<&Value> = recorded
        .iter()
        .filter(|e| e["ev"] == "http_response" && e["path"] == "/api/queue" && e["method"] == "GET")
        .map(|e| &e["body"])
        .collect();
    let client = "5b0d6a8e-6f1e-4c55-9a63-2f4f3d0c1a06";
    let a = "wan-pilot-rec-interrupt-0001";
    let prompt = prompt_file("interrupt_and_clear.api.json");
    let (mut ws, first) = connect_and_submit(
        port,
        client,
        &json!({"prompt": prompt, "client_id": client, "prompt_id": a}),
    );
    assert_eq!(first.status, 200);
    let mut second_prompt = prompt.clone();
    second_prompt["81"]["inputs"]["noise_seed"] = json!(15);
    let second = post_json(
        port,
        "/api/prompt",
        &json!({"prompt": second_prompt, "client_id": client}),
    );
    assert_eq!(
        second.json()["number"],
        first.json()["number"].as_u64().unwrap() + 1
    );
    let mut messages = vec![];
    loop {
        let m = ws.next_text().unwrap();
        messages.push(typed(&m));
        if m["type"] == "progress" {
            break;
        }
    }
    let both = http(port, "GET", "/api/queue", b"").json();
    assert_shape(
        recorded_queues[0],
        &both,
        "GET /queue, one running, one pending",
        &[],
    );
    assert_eq!(both["queue_running"][0][1], a);
    let cleared = post_json(port, "/api/queue", &json!({"clear": true}));
    assert_eq!((cleared.status, cleared.body.len()), (200, 0));
    let one = http(port, "GET", "/api/queue", b"").json();
    assert_shape(recorded_queues[1], &one, "GET /queue after clear", &[]);
    assert_eq!(one["queue_pending"], json!([]));
    let stopped = post_json(port, "/api/interrupt", &json!({"prompt_id": a}));
    assert_eq!((stopped.status, stopped.body.len()), (200, 0));
    messages.extend(ws.until_done(a));
    let tail: Vec<&str> = types(&messages).into_iter().rev().take(4).collect();
    assert_eq!(
        tail,
        ["executing", "status", "execution_interrupted", "status"]
    );
    let recorded_ws = recorded_ws("interrupt_and_clear");
    let theirs = first_of(&recorded_ws, "execution_interrupted");
    let ours = first_of(&messages, "execution_interrupted");
    assert_shape(theirs, ours, "execution_interrupted", &[]);
    assert_eq!(ours["node_id"], "81");
    let history = fetch_history(port, a);
    let recorded_history = rec_json("ws/interrupt_and_clear.history.json")["body"][a].clone();
    assert_shape(&recorded_history, &history[a], "interrupted history", &[]);
    assert_eq!(history[a]["status"]["completed"], false);
    let idle = http(port, "GET", "/api/queue", b"").json();
    assert_eq!(&idle, recorded_queues[2]);
    let free = post_json(
        port,
        "/api/free",
        &json!({"unload_models": true, "free_memory": true}),
    );
    assert_eq!(free.status, 200);
    let refused = http(port, "POST", "/api/free", b"");
    assert_eq!(refused.status, 500, "as recorded: /free needs a JSON body");
}

#[test]
fn a_dropped_websocket_recovers_as_recorded() {
    let server = started("drop", json!({"ws_drop_at_step": 1, "step_delay_s": 0.3}));
    let client = "dropped-client";
    let (mut ws, reply) = connect_and_submit(
        server.port,
        client,
        &json!({"prompt": prompt_file("plain_run.api.json"), "client_id": client, "prompt_id": "drop-1"}),
    );
    assert_eq!(reply.status, 200);
    loop {
        match ws.next() {
            Frame::Closed => break,
            Frame::Silent => panic!("the socket was not dropped"),
            _ => {}
        }
    }
    let mut again = Ws::connect(server.port, client);
    let recorded = recorded_ws("reconnect_mid_run");
    let reconnect_at = recorded
        .iter()
        .position(|(t, d)| t == "executing" && d.get("display_node").is_none())
        .unwrap();
    let status = again.next_text().unwrap();
    assert_eq!(status["type"], "status");
    assert_shape(
        &recorded[reconnect_at - 1].1,
        &status["data"],
        "status on reconnect",
        &[],
    );
    let current = again.next_text().unwrap();
    assert_eq!(current["type"], "executing");
    assert_shape(
        &recorded[reconnect_at].1,
        &current["data"],
        "executing on reconnect",
        &[],
    );
    let rest = again.until_done("drop-1");
    assert!(types(&rest).contains(&"execution_success"));
    assert_eq!(
        fetch_history(server.port, "drop-1")["drop-1"]["status"]["status_str"],
        "success"
    );
}

#[cfg(unix)]
#[test]
fn a_crash_a_hang_and_a_grandchild() {
    use std::os::unix::process::ExitStatusExt;

    let mut crashing = started("crash", json!({"crash_at_step": 2}));
    post_json(
        crashing.port,
        "/api/prompt",
        &json!({"prompt": prompt_file("plain_run.api.json")}),
    );
    let status = crashing
        .wait_exit(Duration::from_secs(20))
        .expect("it crashes");
    assert_eq!(status.signal(), Some(libc::SIGABRT));
    assert!(
        crashing
            .stderr()
            .contains("CUDA error: an illegal memory access was encountered")
    );

    let hanging = started("hang", json!({"hang_at_step": 1, "step_delay_s": 0.05}));
    let (mut ws, _) = connect_and_submit(
        hanging.port,
        "hung",
        &json!({"prompt": prompt_file("plain_run.api.json"), "client_id": "hung"}),
    );
    ws.set_timeout(Duration::from_secs(2));
    let mut last = None;
    loop {
        match ws.next() {
            Frame::Text(m) => last = Some(m["type"].clone()),
            Frame::Binary(_) => {}
            Frame::Silent => break,
            Frame::Closed => panic!("a hung server keeps its sockets open"),
        }
    }
    assert_ne!(last, Some(json!("execution_success")));
    let answer = try_http(
        hanging.port,
        "GET",
        "/api/queue",
        &[],
        b"",
        Duration::from_secs(1),
    );
    assert!(answer.is_none(), "a hung server does not answer");
    let mut hanging = hanging;
    assert!(
        hanging.child.try_wait().unwrap().is_none(),
        "and stays alive"
    );

    let parent = started("grandchild", json!({"grandchild": true}));
    let grandchild = read_pid(&parent.root, "grandchild.pid").expect("grandchild.pid");
    let group = |pid: u32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let after = stat.rsplit_once(") ")?.1;
        after.split(' ').nth(2)?.parse::<u32>().ok()
    };
    assert_eq!(
        group(grandchild),
        Some(parent.child.id()),
        "same process group"
    );
    drop(parent);
    let deadline = Instant::now() + Duration::from_secs(2);
    while group(grandchild).is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let state = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
    assert!(
        state.is_empty() || state.contains(") Z "),
        "killing the group ended the grandchild"
    );
}

#[test]
fn boots_that_are_slow_silent_or_short_lived() {
    let started_at = Instant::now();
    let mut slow = launched("slow", json!({"slow_boot_s": 1.5}), free_port());
    assert!(slow.wait_ready(Duration::from_secs(20)));
    assert!(started_at.elapsed() >= Duration::from_millis(1500));

    let mut silent = launched("silent", json!({"silent_boot": true}), free_port());
    assert!(!silent.wait_ready(Duration::from_secs(2)), "never listens");
    assert!(
        silent.child.try_wait().unwrap().is_none(),
        "but stays alive"
    );
    assert_eq!(
        silent.stderr().lines().count(),
        1,
        "after its first line: {}",
        silent.stderr()
    );

    let mut failed = launched(
        "no-driver",
        json!({"boot_failure": "no_nvidia_driver"}),
        free_port(),
    );
    assert_eq!(
        failed
            .wait_exit(Duration::from_secs(20))
            .and_then(|s| s.code()),
        Some(1)
    );
    assert!(failed.stderr().trim_end().ends_with(
        "RuntimeError: Found no NVIDIA driver on your system. Please check that you have an NVIDIA GPU \
         and installed a driver from http://www.nvidia.com/Download/index.aspx"
    ));

    let mut short = launched(
        "short",
        json!({"exit_after_boot_s": 0.3, "crash_kind": "exit", "crash_boots": 1}),
        free_port(),
    );
    assert!(short.wait_ready(Duration::from_secs(20)));
    assert_eq!(
        short
            .wait_exit(Duration::from_secs(10))
            .and_then(|s| s.code()),
        Some(1)
    );
    // The same install again: it counts its boots across restarts, so this one stays up.
    let mut second = Standin::start(&short.root, short.port, &[]);
    assert!(second.wait_ready(Duration::from_secs(20)));
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        second.child.try_wait().unwrap().is_none(),
        "crash_boots: only the first boot crashes"
    );
}

// ---------------------------------------------------------------------------------------------
// The same checks against a real ComfyUI (ignored: needs one running)

#[test]
#[ignore]
fn the_checks_hold_against_a_real_server() {
    let url = common::comfyui_url();
    let port: u16 = url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap();
    check_idle_replies(port);
    check_refusals(port);
    // A colour of its own, so the real server has nothing cached for it.
    let color = (std::process::id() * 7919) % 0xff_ffff;
    let (real_messages, real_entry) = run_empty_images(port, "standin-check/real", color);
    check_history_entry(&real_entry);
    assert_eq!(check_pngs(port, &real_entry), 5);
    let server = started("real-compare", json!({}));
    let (ours, _) = run_empty_images(server.port, "standin-check/real", color);
    assert_eq!(
        types(&ours),
        types(&real_messages),
        "the same prompt, the same messages"
    );
    for (i, ((kind, a), (_, b))) in real_messages.iter().zip(&ours).enumerate() {
        let out = shape_differences(a, b, &["/nodes"]);
        assert!(out.is_empty(), "message {i} ({kind}):\n{}", out.join("\n"));
    }
}
