//! A mutation fuzzer over every reader: real workflows and output files, damaged at random
//! (bytes flipped, cut, spliced; JSON values swapped for others), must never panic anything from
//! loading to conversion, inspection and editing. Deterministic for a given seed.
//!
//! CI runs a short pass. A long local run:
//! `WAN_PILOT_FUZZ_SECONDS=600 cargo test --release --test fuzz_readers -- --nocapture`
//! Inputs that panic are written to `target/fuzz-crashes/`.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Rng;
use serde_json::{Map, Value};
use wan_pilot::workflow::convert::{ConvertOptions, flat_to_api, ui_to_api};
use wan_pilot::workflow::edit::{self, CompileMode, Edits};
use wan_pilot::workflow::flat::{self, Strictness};
use wan_pilot::workflow::load::load;
use wan_pilot::workflow::node_defs::NodeDefs;
use wan_pilot::workflow::recognise;

fn seeds() -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs: Vec<PathBuf> = vec![
        root.join("../shared/workflows"),
        root.join("../shared/workflows/community"),
        root.join("../shared/workflows/oracle-api"),
        root.join("tests/data/embedded"),
        root.join("tests/data/frontend-oracle"),
    ];
    dirs.retain(|d| d.is_dir());
    let mut out = Vec::new();
    for dir in dirs {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .filter(|p| {
                p.extension().is_some_and(|e| {
                    ["json", "png", "webp", "mp4", "webm"].contains(&e.to_str().unwrap_or(""))
                })
            })
            .collect();
        entries.sort();
        for path in entries {
            out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    out
}

fn random_value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth > 3 { 6 } else { 9 }) {
        0 => Value::Null,
        1 => Value::from(rng.next() as i64),
        2 => Value::from(-(rng.below(5) as i64)),
        3 => serde_json::json!(f64::from_bits(rng.next() & 0x7FEF_FFFF_FFFF_FFFF)),
        4 => Value::String(
            ["", "-10", "-20", "81", "seed", "*", "MODEL", "0:1"][rng.below(8)].into(),
        ),
        5 => Value::Bool(rng.below(2) == 0),
        6 => Value::Array(
            (0..rng.below(6))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        7 => serde_json::json!([rng.below(50).to_string(), rng.below(4)]),
        _ => {
            let mut m = Map::new();
            for _ in 0..rng.below(4) {
                m.insert(
                    ["id", "type", "link", "inputs", "nodes", "class_type"][rng.below(6)].into(),
                    random_value(rng, depth + 1),
                );
            }
            Value::Object(m)
        }
    }
}

/// Replaces, removes or duplicates one random node of the JSON tree.
fn mutate_json(value: &mut Value, rng: &mut Rng, depth: usize) {
    if depth < 12 && rng.below(4) != 0 {
        match value {
            Value::Array(list) if !list.is_empty() => {
                let i = rng.below(list.len());
                match rng.below(8) {
                    0 => {
                        list.remove(i);
                    }
                    1 => {
                        let copy = list[i].clone();
                        list.push(copy);
                    }
                    _ => mutate_json(&mut list[i], rng, depth + 1),
                }
                return;
            }
            Value::Object(map) if !map.is_empty() => {
                let i = rng.below(map.len());
                let key = map.keys().nth(i).cloned().unwrap();
                if rng.below(8) == 0 {
                    map.remove(&key);
                } else {
                    mutate_json(map.get_mut(&key).unwrap(), rng, depth + 1);
                }
                return;
            }
            _ => {}
        }
    }
    *value = random_value(rng, 0);
}

fn mutate_bytes(bytes: &mut Vec<u8>, other: &[u8], rng: &mut Rng) {
    for _ in 0..1 + rng.below(4) {
        if bytes.is_empty() {
            bytes.push(rng.next() as u8);
        }
        let len = bytes.len();
        match rng.below(6) {
            0 => {
                let i = rng.below(len);
                bytes[i] ^= 1 << rng.below(8);
            }
            1 => bytes.truncate(rng.below(len)),
            2 => {
                let start = rng.below(len);
                let end = (start + rng.below(64)).min(len);
                bytes.drain(start..end);
            }
            3 => {
                let i = rng.below(len);
                let v = [0u8, 0xFF, b'{', b'[', b'"', b'0', 0x7F][rng.below(7)];
                bytes.insert(i, v);
            }
            4 if !other.is_empty() => {
                let from = rng.below(other.len());
                let take = rng.below(256).min(other.len() - from);
                let at = rng.below(len);
                bytes.splice(at..at, other[from..from + take].iter().copied());
            }
            _ => {
                let i = rng.below(len);
                let n = [0u8, 0xFF][rng.below(2)];
                for b in bytes.iter_mut().skip(i).take(8) {
                    *b = n;
                }
            }
        }
    }
}

/// Everything a dropped file goes through; any panic is a defect.
fn exercise(bytes: &[u8], defs: &NodeDefs) {
    let Ok(loaded) = load(bytes) else { return };
    let _ = recognise::inspect(&loaded, defs);
    let mut graph = match (&loaded.ui, &loaded.api) {
        (Some(ui), _) => {
            let _ = ui_to_api(ui, defs, &ConvertOptions::default());
            match flat::flatten(ui, defs, Strictness::Inspect) {
                Ok(g) => g,
                Err(_) => return,
            }
        }
        (None, Some((prompt, _))) => flat::from_api(prompt),
        (None, None) => return,
    };
    let edits = Edits {
        frames: Some(49),
        size: Some((832, 480)),
        compile: Some(CompileMode::ReduceOverhead),
        seed: Some(7),
        prompt: Some("a fox".into()),
        frame_tap_prefix: Some("tap".into()),
    };
    let _ = edit::apply(&mut graph, defs, &edits);
    let prompt = flat_to_api(&graph, defs, &ConvertOptions::default());
    let _ = prompt.find_cycle();
    let _ = prompt.dangling_links();
}

#[test]
fn damaged_inputs_never_panic() {
    let seeds = seeds();
    assert!(
        seeds.len() > 50,
        "the corpus should give many seeds, got {}",
        seeds.len()
    );
    let defs = NodeDefs::bundled();
    let seconds: Option<u64> = std::env::var("WAN_PILOT_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok());
    let iterations: u64 = std::env::var("WAN_PILOT_FUZZ_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1500);
    let mut rng = Rng(std::env::var("WAN_PILOT_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_2026));
    let deadline = seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let crash_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-crashes");
    let mut executions = 0u64;
    let mut crashes = Vec::new();
    let mut slowest = (Duration::ZERO, String::new());
    loop {
        let done = match deadline {
            Some(deadline) => Instant::now() >= deadline,
            None => executions >= iterations,
        };
        if done {
            break;
        }
        let (name, seed) = &seeds[rng.below(seeds.len())];
        let other = &seeds[rng.below(seeds.len())].1;
        let mut input = seed.clone();
        let structured = rng.below(3) != 0;
        if structured {
            if let Ok(mut value) = serde_json::from_slice::<Value>(seed) {
                for _ in 0..1 + rng.below(3) {
                    mutate_json(&mut value, &mut rng, 0);
                }
                input = serde_json::to_vec(&value).unwrap();
            } else {
                mutate_bytes(&mut input, other, &mut rng);
            }
        } else {
            mutate_bytes(&mut input, other, &mut rng);
        }
        executions += 1;
        let started = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| exercise(&input, defs)));
        // Reported, not asserted: a slow input is worth a look, timing is no pass/fail test.
        let took = started.elapsed();
        if took > slowest.0 {
            slowest = (took, name.clone());
        }
        if outcome.is_err() {
            std::fs::create_dir_all(&crash_dir).unwrap();
            let path = crash_dir.join(format!("crash-{executions}.bin"));
            std::fs::write(&path, &input).unwrap();
            crashes.push(format!("{} (from {name})", path.display()));
        }
    }
    println!(
        "fuzz: {executions} executions, {} crashes; slowest input {:.1} ms (from {})",
        crashes.len(),
        slowest.0.as_secs_f64() * 1000.0,
        slowest.1
    );
    assert!(
        crashes.is_empty(),
        "inputs that panicked:\n{}",
        crashes.join("\n")
    );
}
