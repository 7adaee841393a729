//! The workflow corpus as an acceptance test: every row of `shared/workflows/EXPECTED.tsv` and
//! `shared/workflows/community/EXPECTED.tsv` is inspected with the bundled node definitions and
//! compared column by column. All disagreements are collected and reported in one table, so a
//! single run shows everything that is off.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use wan_pilot::workflow::load::load;
use wan_pilot::workflow::node_defs::NodeDefs;
use wan_pilot::workflow::recognise::{Inspection, NodeState, Setting, inspect};

/// The columns this test checks, in report order.
const COLUMNS: &[&str] = &[
    "format",
    "family",
    "frame_node",
    "frame_input",
    "frame_value",
    "width",
    "height",
    "compile_node",
];

fn corpus_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/workflows");
    vec![root.clone(), root.join("community")]
}

struct Mismatch {
    file: String,
    column: String,
    expected: String,
    got: String,
}

#[test]
fn corpus_agrees_with_expected() {
    let defs = NodeDefs::bundled();
    let mut mismatches: Vec<Mismatch> = Vec::new();
    let mut checked: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut rows = 0;
    for dir in corpus_dirs() {
        let table = dir.join("EXPECTED.tsv");
        let text = std::fs::read_to_string(&table)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", table.display()));
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().expect("a header row").split('\t').collect();
        let col = |name: &str| {
            header
                .iter()
                .position(|h| *h == name)
                .unwrap_or_else(|| panic!("{} has no column {name}", table.display()))
        };
        for line in lines.filter(|l| !l.trim().is_empty()) {
            rows += 1;
            let cells: Vec<&str> = line.split('\t').collect();
            let row: BTreeMap<String, String> = header
                .iter()
                .map(|h| {
                    let value = cells.get(col(h)).copied().unwrap_or("").trim();
                    (h.to_string(), value.to_string())
                })
                .collect();
            let cell = |name: &str| row.get(name).cloned().unwrap_or_default();
            let file = cell("file");
            let mut report = |column: &str, expected: String, got: String| {
                let entry = checked
                    .entry(
                        COLUMNS
                            .iter()
                            .find(|c| **c == column)
                            .copied()
                            .unwrap_or("load"),
                    )
                    .or_default();
                entry.1 += 1;
                if expected == got {
                    entry.0 += 1;
                } else {
                    mismatches.push(Mismatch {
                        file: file.clone(),
                        column: column.to_string(),
                        expected,
                        got,
                    });
                }
            };
            let inspection = std::fs::read(dir.join(&file))
                .map_err(|e| e.to_string())
                .and_then(|bytes| load(&bytes).map_err(|e| e.to_string()))
                .and_then(|loaded| inspect(&loaded, defs).map_err(|e| e.to_string()));
            let inspection = match inspection {
                Ok(i) => i,
                Err(e) => {
                    for column in COLUMNS {
                        report(column, cell(column), format!("error: {e}"));
                    }
                    continue;
                }
            };
            compare_row(&inspection, &row, &mut report);
        }
    }
    assert!(rows > 50, "expected the whole corpus, read {rows} rows");

    let mut summary = String::new();
    let _ = writeln!(summary, "{rows} rows; per column: ");
    for column in COLUMNS {
        let (pass, total) = checked.get(column).copied().unwrap_or_default();
        let _ = writeln!(summary, "  {column:<13} {pass}/{total}");
    }
    eprintln!("{summary}");
    if !mismatches.is_empty() {
        let mut table = String::new();
        let _ = writeln!(
            table,
            "{} disagreements with EXPECTED.tsv:",
            mismatches.len()
        );
        let _ = writeln!(
            table,
            "{:<52} {:<13} {:<45} GOT",
            "FILE", "COLUMN", "EXPECTED"
        );
        for m in &mismatches {
            let _ = writeln!(
                table,
                "{:<52} {:<13} {:<45} {}",
                m.file, m.column, m.expected, m.got
            );
        }
        panic!("{summary}\n{table}");
    }
}

fn compare_row(
    inspection: &Inspection,
    row: &BTreeMap<String, String>,
    report: &mut dyn FnMut(&str, String, String),
) {
    let cell = |name: &str| row.get(name).map(String::as_str).unwrap_or("");
    report(
        "format",
        cell("format").to_string(),
        inspection.format.clone(),
    );
    report(
        "family",
        cell("family").to_string(),
        inspection.family.as_str().to_string(),
    );

    let frames = inspection.frames.as_ref();
    report(
        "frame_node",
        cell("frame_node").to_string(),
        frames.map(frame_node).unwrap_or_else(|| "none".into()),
    );
    report(
        "frame_input",
        cell("frame_input").to_string(),
        frames
            .map(|f| f.input.clone())
            .unwrap_or_else(|| "none".into()),
    );
    report(
        "frame_value",
        cell("frame_value").to_string(),
        frames
            .map(|f| show(f.value))
            .unwrap_or_else(|| "none".into()),
    );

    let width_cell = cell("width");
    let expected_width = leading_value(width_cell, None);
    let expected_height = leading_value(cell("height"), base_resolution(width_cell));
    report("width", expected_width, shown(&inspection.width));
    report("height", expected_height, shown(&inspection.height));

    report(
        "compile_node",
        normalise_compile(cell("compile_node")),
        normalise_compile(&describe_compile(inspection)),
    );
}

/// Our primary frame node in EXPECTED's notation: `Type#id`, or `Type#inner@Subgraph`.
fn frame_node(setting: &Setting) -> String {
    match &setting.subgraph {
        Some(name) => {
            // A subgraph node's execution id is "outer:inner"; EXPECTED names the inner id.
            let inner = setting.node.rsplit(':').next().unwrap_or(&setting.node);
            let id = if setting.node.contains(':') {
                inner.to_string()
            } else {
                format!("{inner}(no outer id)")
            };
            format!("{}#{id}@{name}", setting.class_type)
        }
        None => format!("{}#{}", setting.class_type, setting.node),
    }
}

fn show(value: Option<f64>) -> String {
    match value {
        Some(v) if v.fract() == 0.0 => format!("{}", v as i64),
        Some(v) => format!("{v}"),
        None => "?".into(),
    }
}

fn shown(setting: &Option<Setting>) -> String {
    match setting {
        Some(s) => show(s.value),
        None => "none".into(),
    }
}

/// `base_resolution=640` in the width column.
fn base_resolution(width_cell: &str) -> Option<String> {
    width_cell
        .strip_prefix("base_resolution=")
        .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
}

/// The leading value of a width/height cell: "640", "896 [PrimitiveInt#100]", "? [...]",
/// "base_resolution=640", or "(from base_resolution)" (the width's base value).
fn leading_value(cell: &str, base: Option<String>) -> String {
    if let Some(v) = base_resolution(cell) {
        return v;
    }
    if cell.starts_with("(from base_resolution)") {
        return base.unwrap_or_else(|| "base_resolution missing from width".into());
    }
    cell.split_whitespace().next().unwrap_or("none").to_string()
}

/// EXPECTED's compile column for our compile nodes: "Class xN, Other [Class:bypassed, ...]".
fn describe_compile(inspection: &Inspection) -> String {
    if inspection.compile.is_empty() {
        return "none".into();
    }
    let mut counts: Vec<(String, usize)> = Vec::new();
    for c in &inspection.compile {
        match counts.iter_mut().find(|(class, _)| *class == c.class_type) {
            Some(entry) => entry.1 += 1,
            None => counts.push((c.class_type.clone(), 1)),
        }
    }
    let main: Vec<String> = counts
        .iter()
        .map(|(class, n)| {
            if *n > 1 {
                format!("{class} x{n}")
            } else {
                class.clone()
            }
        })
        .collect();
    let off: Vec<String> = inspection
        .compile
        .iter()
        .filter(|c| c.node_state != NodeState::Active)
        .map(|c| format!("{}:{}", c.class_type, c.node_state.as_str()))
        .collect();
    if off.is_empty() {
        main.join(", ")
    } else {
        format!("{} [{}]", main.join(", "), off.join(", "))
    }
}

/// Order-independent form of a compile cell: counts per class, then the sorted inactive list.
fn normalise_compile(cell: &str) -> String {
    let cell = cell.trim();
    if cell == "none" || cell.is_empty() {
        return "none".into();
    }
    let (main, off) = match cell.split_once('[') {
        Some((main, rest)) => (main.trim(), rest.trim_end_matches(']').trim()),
        None => (cell, ""),
    };
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for part in main.split(", ").map(str::trim).filter(|p| !p.is_empty()) {
        let (class, n) = match part.rsplit_once(" x") {
            Some((class, n)) if n.parse::<usize>().is_ok() => (class, n.parse().unwrap_or(1)),
            _ => (part, 1),
        };
        *counts.entry(class.to_string()).or_default() += n;
    }
    let mut off: Vec<&str> = off
        .split(", ")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    off.sort_unstable();
    let counts: Vec<String> = counts.iter().map(|(c, n)| format!("{c} x{n}")).collect();
    format!("{} [{}]", counts.join(", "), off.join(", "))
}

#[test]
fn compile_cells_normalise_alike() {
    assert_eq!(
        normalise_compile(
            "TorchCompileModelWanVideo x2 [TorchCompileModelWanVideo:bypassed, TorchCompileModelWanVideo:bypassed]"
        ),
        "TorchCompileModelWanVideo x2 [TorchCompileModelWanVideo:bypassed, TorchCompileModelWanVideo:bypassed]"
    );
    assert_eq!(
        normalise_compile("WanVideoTorchCompileSettings"),
        "WanVideoTorchCompileSettings x1 []"
    );
    assert_eq!(normalise_compile("none"), "none");
    assert_ne!(
        normalise_compile("TorchCompileModelWanVideoV2 x2"),
        normalise_compile("TorchCompileModelWanVideoV2 x2 [TorchCompileModelWanVideoV2:bypassed]")
    );
    assert_eq!(
        leading_value("? [run-time value from ImageResizeKJv2#68]", None),
        "?"
    );
    assert_eq!(leading_value("896 [PrimitiveInt#100]", None), "896");
    assert_eq!(
        leading_value(
            "(from base_resolution)",
            base_resolution("base_resolution=640")
        ),
        "640"
    );
}

/// Without node definitions (a server that could not be asked, an empty snapshot) inspection
/// still succeeds on every file, and API prompts, which name their inputs, read the same.
#[test]
fn corpus_inspects_without_node_definitions() {
    let none = NodeDefs::default();
    let mut files = 0;
    for dir in corpus_dirs() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            files += 1;
            let bytes = std::fs::read(&path).unwrap();
            let loaded = load(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let bare =
                inspect(&loaded, &none).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if bare.format == "api" {
                let full = inspect(&loaded, NodeDefs::bundled()).unwrap();
                assert_eq!(bare.frames, full.frames, "{}", path.display());
                assert_eq!(bare.family, full.family, "{}", path.display());
            }
        }
    }
    assert!(files > 50, "read {files} files");
}
