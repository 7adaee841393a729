//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod standin;

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The shared workflow corpus beside the checkout.
pub fn shared_workflows() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/workflows")
}

/// A corpus file by name, from the top folder or `community/`.
pub fn corpus_file(name: &str) -> PathBuf {
    let top = shared_workflows().join(name);
    if top.exists() {
        top
    } else {
        shared_workflows().join("community").join(name)
    }
}

/// JSON equality where 1 and 1.0 are the same number (Python and JavaScript write them apart).
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_value(v, w)))
        }
        _ => a == b,
    }
}

/// xorshift64*: enough randomness for fuzzing, deterministic for a seed, without a dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// How `got` differs from the `expected` API prompt: missing, extra and different nodes and
/// inputs, a line each (titles are not compared).
pub fn differences(expected: &Value, got: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let (Some(expected), Some(got)) = (expected.as_object(), got.as_object()) else {
        return vec!["not both objects".into()];
    };
    for (id, node) in expected {
        let Some(ours) = got.get(id) else {
            out.push(format!("node {id} ({}) missing", node["class_type"]));
            continue;
        };
        if node["class_type"] != ours["class_type"] {
            out.push(format!(
                "node {id}: class {} != {}",
                node["class_type"], ours["class_type"]
            ));
        }
        let empty = serde_json::Map::new();
        let want = node["inputs"].as_object().unwrap_or(&empty);
        let have = ours["inputs"].as_object().unwrap_or(&empty);
        for (name, value) in want {
            match have.get(name) {
                None => out.push(format!("node {id}.{name}: missing (want {value})")),
                Some(v) if !same_value(v, value) => {
                    out.push(format!("node {id}.{name}: got {v}, want {value}"))
                }
                _ => {}
            }
        }
        for name in have.keys().filter(|k| !want.contains_key(*k)) {
            out.push(format!("node {id}.{name}: extra input {}", have[name]));
        }
    }
    for id in got.keys() {
        if !expected.contains_key(id) {
            out.push(format!("node {id} ({}) extra", got[id]["class_type"]));
        }
    }
    out
}

/// The real ComfyUI server the ignored tests run against, from `WAN_PILOT_COMFYUI_URL`.
pub fn comfyui_url() -> String {
    std::env::var("WAN_PILOT_COMFYUI_URL")
        .expect("WAN_PILOT_COMFYUI_URL names the ComfyUI server to test against")
}

/// One HTTP/1.1 request to a server on loopback (`base` is `http://HOST:PORT`), with `body` as
/// JSON; returns the status and the JSON reply (null when the reply is not JSON). Plain
/// std::net, so these checks do not go through wan-pilot's own client.
pub fn http_json(base: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    use std::io::{Read, Write};

    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(host).expect("connect to ComfyUI");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let payload = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // aiohttp answers without chunking for JSON replies.
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}
