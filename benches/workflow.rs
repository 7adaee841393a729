//! Benchmark: load + inspect, and load + convert, on the largest workflows of the corpus.
//! `cargo bench --bench workflow` prints the time per operation (median of many runs).

#[path = "support/timing.rs"]
mod timing;

use std::path::{Path, PathBuf};

use wan_pilot::workflow::convert::{ConvertOptions, flat_to_api, ui_to_api};
use wan_pilot::workflow::embedded;
use wan_pilot::workflow::flat::{Strictness, flatten};
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

fn main() {
    let defs = NodeDefs::bundled();
    let files = corpus();
    let Some(largest) = files.first() else {
        eprintln!("no corpus at ../shared/workflows; nothing to measure");
        return;
    };
    let bytes = std::fs::read(largest).expect("read the largest workflow");
    let name = largest.file_name().unwrap_or_default().to_string_lossy();
    let ns = timing::median_ns(30, 20, || {
        let loaded = load(&bytes).expect("loads");
        std::hint::black_box(recognise::inspect(&loaded, defs).expect("inspects"));
    });
    println!(
        "load+inspect  {name} ({} KB): {:.1} µs",
        bytes.len() / 1024,
        ns / 1000.0
    );

    // Conversion's work on the largest file, which names custom node types the bundled
    // definitions lack (with a server that has them, this is what convert does).
    let ns = timing::median_ns(30, 20, || {
        let loaded = load(&bytes).expect("loads");
        let ui = loaded.ui.expect("ui");
        let flat = flatten(&ui, defs, Strictness::Inspect).expect("flattens");
        std::hint::black_box(flat_to_api(&flat, defs, &ConvertOptions::default()));
    });
    println!(
        "load+flatten+to_api  {name} ({} KB): {:.1} µs",
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
        let ns = timing::median_ns(30, 20, || {
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

    // A 50 MB output video: the metadata sits in `moov` after the media, which must be
    // stepped over, not read.
    let video_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny-wan/official_t2v_edited.mp4");
    if let Ok(video) = std::fs::read(&video_path) {
        let padding = 50usize << 20;
        let mut big = Vec::with_capacity(video.len() + padding + 8);
        // ftyp first, then a 50 MB `free` box, then the rest of the file.
        let ftyp_len = u32::from_be_bytes([video[0], video[1], video[2], video[3]]) as usize;
        big.extend_from_slice(&video[..ftyp_len]);
        big.extend_from_slice(&((padding + 8) as u32).to_be_bytes());
        big.extend_from_slice(b"free");
        big.resize(big.len() + padding, 0);
        big.extend_from_slice(&video[ftyp_len..]);
        let ns = timing::median_ns(30, 20, || {
            std::hint::black_box(embedded::extract(&big).expect("reads the metadata"));
        });
        println!(
            "embedded metadata of a {} MB MP4: {:.1} µs",
            big.len() >> 20,
            ns / 1000.0
        );
    }
}
