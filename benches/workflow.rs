//! Benchmark: load + inspect, and load + convert, on the largest workflows of the corpus.
//! `cargo bench --bench workflow` prints the time per operation (median of many runs).

use std::path::{Path, PathBuf};
use std::time::Instant;

use wan_pilot::workflow::convert::{ConvertOptions, ui_to_api};
use wan_pilot::workflow::load::load;
use wan_pilot::workflow::node_defs::NodeDefs;
use wan_pilot::workflow::recognise;

fn corpus() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/workflows");
    let mut files = Vec::new();
    for dir in [root.clone(), root.join("community")] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json") {
                files.push(path);
            }
        }
    }
    files.sort_by_key(|p| std::cmp::Reverse(std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)));
    files
}

/// Median nanoseconds per call over `rounds` rounds of `batch` calls.
fn measure(rounds: usize, batch: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..batch {
        f();
    }
    let mut samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..batch {
                f();
            }
            start.elapsed().as_nanos() as f64 / batch as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() {
    let defs = NodeDefs::bundled();
    let files = corpus();
    let Some(largest) = files.first() else {
        eprintln!("no corpus at ../shared/workflows; nothing to measure");
        return;
    };
    let bytes = std::fs::read(largest).expect("read the largest workflow");
    let name = largest.file_name().unwrap_or_default().to_string_lossy();
    let ns = measure(30, 20, || {
        let loaded = load(&bytes).expect("loads");
        std::hint::black_box(recognise::inspect(&loaded, defs).expect("inspects"));
    });
    println!(
        "load+inspect  {name} ({} KB): {:.1} µs",
        bytes.len() / 1024,
        ns / 1000.0
    );

    // The largest file whose node types the bundled definitions all describe.
    for path in &files {
        let bytes = std::fs::read(path).expect("read workflow");
        let Ok(loaded) = load(&bytes) else { continue };
        let Some(ui) = loaded.ui else { continue };
        if ui_to_api(&ui, defs, &ConvertOptions::default()).is_err() {
            continue;
        }
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let ns = measure(30, 20, || {
            let loaded = load(&bytes).expect("loads");
            let ui = loaded.ui.expect("ui");
            std::hint::black_box(
                ui_to_api(&ui, defs, &ConvertOptions::default()).expect("converts"),
            );
        });
        println!(
            "load+convert  {name} ({} KB): {:.1} µs",
            bytes.len() / 1024,
            ns / 1000.0
        );
        break;
    }
}
