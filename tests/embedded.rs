//! Reading workflows back out of real ComfyUI 0.8.0 output files (tests/data/embedded, made as
//! its README says), plus cut, corrupted and random inputs that must never panic.

mod common;

use std::path::PathBuf;

use common::Rng;
use serde_json::Value;
use wan_pilot::workflow::embedded::{Container, EmbeddedError, extract, sniff};

fn data_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/embedded")
        .join(name)
}

fn fixture(name: &str) -> Vec<u8> {
    let path = data_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The request body posted to the server that made the fixtures.
fn posted() -> (Value, Value) {
    let body: Value = serde_json::from_slice(&fixture("posted.json")).unwrap();
    (
        body["prompt"].clone(),
        body["extra_data"]["extra_pnginfo"]["workflow"].clone(),
    )
}

/// Real server outputs: file, what it should sniff as, the save node that wrote it.
const REAL: [(&str, Container, &str); 5] = [
    ("SaveImage.png", Container::Png, "SaveImage"),
    (
        "SaveAnimatedPNG.png",
        Container::AnimatedPng,
        "SaveAnimatedPNG",
    ),
    ("SaveAnimatedWEBP.webp", Container::Webp, "SaveAnimatedWEBP"),
    ("SaveWEBM.webm", Container::Webm, "SaveWEBM"),
    ("SaveVideo.mp4", Container::Mp4, "SaveVideo"),
];

/// Every fixture that carries metadata, for the robustness tests.
const ALL: [&str; 7] = [
    "SaveImage.png",
    "SaveAnimatedPNG.png",
    "SaveAnimatedWEBP.webp",
    "SaveWEBM.webm",
    "SaveVideo.mp4",
    "vhs-comment.mp4",
    "vhs-comment.mov",
];

fn class_types(prompt: &Value) -> Vec<&str> {
    prompt
        .as_object()
        .unwrap()
        .values()
        .map(|node| node["class_type"].as_str().unwrap())
        .collect()
}

#[test]
fn real_outputs_give_back_the_posted_prompt_and_workflow() {
    let (posted_prompt, posted_workflow) = posted();
    for (name, container, save_node) in REAL {
        let bytes = fixture(name);
        assert_eq!(sniff(&bytes), Some(container), "{name}");
        let found = extract(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(found.container, container, "{name}");
        assert!(found.notes.is_empty(), "{name}: {:?}", found.notes);

        let prompt: Value = serde_json::from_str(found.prompt.as_deref().unwrap()).unwrap();
        let types = class_types(&prompt);
        for expected in ["EmptyImage", "ImageBatch", save_node] {
            assert!(types.contains(&expected), "{name}: {types:?}");
        }
        assert_eq!(prompt, posted_prompt, "{name}");

        let workflow: Value = serde_json::from_str(found.workflow.as_deref().unwrap()).unwrap();
        assert_eq!(workflow["nodes"].as_array().unwrap().len(), 11, "{name}");
        assert_eq!(workflow, posted_workflow, "{name}");
    }
}

#[test]
fn non_ascii_text_survives_json_escaping() {
    // The graph carries a Chinese node title; ComfyUI's json.dumps escapes it to \uXXXX.
    let found = extract(&fixture("SaveImage.png")).unwrap();
    let prompt: Value = serde_json::from_str(&found.prompt.unwrap()).unwrap();
    assert_eq!(prompt["1"]["_meta"]["title"], "空图像 EmptyImage");
}

#[test]
fn video_helper_suite_comment_is_read_as_a_fallback() {
    let (posted_prompt, posted_workflow) = posted();
    for name in ["vhs-comment.mp4", "vhs-comment.mov"] {
        let found = extract(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(found.container, Container::Mp4, "{name}");
        let prompt: Value = serde_json::from_str(found.prompt.as_deref().unwrap()).unwrap();
        let workflow: Value = serde_json::from_str(found.workflow.as_deref().unwrap()).unwrap();
        assert_eq!(prompt, posted_prompt, "{name}");
        assert_eq!(workflow, posted_workflow, "{name}");
        assert!(
            found.notes.iter().any(|n| n.contains("comment")),
            "{name}: {:?}",
            found.notes
        );
    }
}

#[test]
fn png_without_metadata_says_so() {
    let bytes = fixture("no-metadata.png");
    assert_eq!(sniff(&bytes), Some(Container::Png));
    let error = extract(&bytes).unwrap_err();
    assert!(
        matches!(error, EmbeddedError::NoMetadata { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "no ComfyUI workflow or prompt in this PNG image \
         (it has no tEXt chunk named 'prompt' or 'workflow')"
    );
}

#[test]
fn other_files_are_not_recognised() {
    for bytes in [
        &b""[..],
        b"GIF89a\x01\x00\x01\x00",
        b"{\"nodes\": []}",
        b"RIFF\x04\x00\x00\x00WAVE",
    ] {
        assert_eq!(sniff(bytes), None);
        let error = extract(bytes).unwrap_err();
        assert!(
            matches!(error, EmbeddedError::Unrecognised { .. }),
            "{error:?}"
        );
    }
    assert_eq!(
        extract(b"GIF89a").unwrap_err().to_string(),
        "not a PNG, WebP, MP4/MOV or WebM/Matroska file (it starts with 47 49 46 38 39 61)"
    );
}

/// An error must be one line that says where.
fn assert_clear(error: &EmbeddedError, context: &str) {
    let message = error.to_string();
    assert!(!message.contains('\n'), "{context}: {message}");
    match error {
        EmbeddedError::Truncated { .. }
        | EmbeddedError::Malformed { .. }
        | EmbeddedError::Compressed { .. } => {
            assert!(message.contains(" at byte "), "{context}: {message}")
        }
        EmbeddedError::NoMetadata { .. } | EmbeddedError::Unrecognised { .. } => {}
    }
}

#[test]
fn every_cut_gives_less_or_a_clear_error() {
    for name in ALL {
        let bytes = fixture(name);
        let whole = extract(&bytes).unwrap();
        let mut ok_cuts = 0;
        // The fixtures are a few KB: try every cut, not a sample.
        for len in 0..bytes.len() {
            let context = format!("{name} cut at {len}");
            match extract(&bytes[..len]) {
                // A cut can lose a text but never change one.
                Ok(found) => {
                    ok_cuts += 1;
                    assert!(
                        found.prompt.is_none() || found.prompt == whole.prompt,
                        "{context}"
                    );
                    assert!(
                        found.workflow.is_none() || found.workflow == whole.workflow,
                        "{context}"
                    );
                    assert!(
                        found.notes.iter().any(|n| n.contains("cut short")),
                        "{context}: {:?}",
                        found.notes
                    );
                }
                Err(error) => assert_clear(&error, &context),
            }
        }
        // PNG text sits before the image end and the last chunk is IEND: most cuts keep it.
        if name.ends_with(".png") {
            assert!(ok_cuts > 0, "{name}");
        }
    }
}

#[test]
fn a_cut_is_named_with_its_byte() {
    let bytes = fixture("SaveVideo.mp4");
    // ffmpeg writes `moov` last, so a cut inside `mdat` loses the metadata.
    let error = extract(&bytes[..200]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "MP4 box 'mdat' at byte 40 is cut short (the file ends at byte 200)"
    );
    let bytes = fixture("SaveImage.png");
    let error = extract(&bytes[..60]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "PNG chunk 'tEXt' at byte 33 is cut short (the file ends at byte 60)"
    );
}

#[test]
fn random_garbage_never_panics() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Behind each magic, so the garbage reaches every parser.
    let magics: [&[u8]; 6] = [
        b"",
        b"\x89PNG\r\n\x1a\n",
        b"RIFF\xff\xff\xff\x7fWEBP",
        b"\x1a\x45\xdf\xa3",
        b"\x00\x00\x00\x18ftyp",
        b"\x00\x00\x00\x00moov",
    ];
    for round in 0..20_000 {
        let mut bytes = magics[round % magics.len()].to_vec();
        let len = rng.below(600);
        bytes.extend((0..len).map(|_| rng.next() as u8));
        if let Err(error) = extract(&bytes) {
            assert_clear(&error, &format!("round {round}"));
        }
        let _ = sniff(&bytes);
    }
}

#[test]
fn corrupted_fixtures_never_panic() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for name in ALL {
        let original = fixture(name);
        for round in 0..3_000 {
            let mut bytes = original.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes.len());
                // Size fields are where parsers break: favour extreme values.
                bytes[at] = match rng.below(4) {
                    0 => 0x00,
                    1 => 0xff,
                    2 => 0x01,
                    _ => rng.next() as u8,
                };
            }
            if let Err(error) = extract(&bytes) {
                assert_clear(&error, &format!("{name} round {round}"));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Big files: the big payloads must be stepped over, not read.

const BIG: usize = 50 * 1024 * 1024;

/// How fast this is lives in `benches/workflow.rs`; here only that it works.
fn read_big(bytes: &[u8], what: &str) -> wan_pilot::workflow::embedded::Embedded {
    extract(bytes).unwrap_or_else(|e| panic!("{what}: {e}"))
}

#[test]
fn a_50_mb_mp4_is_read() {
    let real = fixture("SaveVideo.mp4");
    // Rebuild the file with a 50 MB `mdat` (a 64-bit size, as big files use) before its `moov`.
    let moov_at = real.windows(4).position(|w| w == b"moov").unwrap() - 4;
    let mut bytes = real[..32].to_vec(); // ftyp
    bytes.extend(1u32.to_be_bytes());
    bytes.extend(b"mdat");
    bytes.extend((16 + BIG as u64).to_be_bytes());
    bytes.resize(bytes.len() + BIG, 0);
    bytes.extend(&real[moov_at..]);
    let found = read_big(&bytes, "big mp4");
    assert_eq!(found.prompt, extract(&real).unwrap().prompt);
}

#[test]
fn a_50_mb_png_is_read() {
    let real = fixture("SaveImage.png");
    // A 50 MB private chunk between IHDR and the text chunks.
    let mut bytes = real[..33].to_vec();
    bytes.extend((BIG as u32).to_be_bytes());
    bytes.extend(b"raRe");
    bytes.resize(bytes.len() + BIG + 4, 0);
    bytes.extend(&real[33..]);
    let found = read_big(&bytes, "big png");
    assert_eq!(found.workflow, extract(&real).unwrap().workflow);
}

/// An EBML element with an 8-byte size field.
fn ebml(id: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = id.to_vec();
    out.push(0x01);
    out.extend(&(payload.len() as u64).to_be_bytes()[1..]);
    out.extend(payload);
    out
}

fn webm_with_clusters(clusters: &[u8]) -> Vec<u8> {
    let simple_tag = [
        ebml(&[0x45, 0xa3], b"PROMPT"),
        ebml(&[0x44, 0x87], b"{\"1\": {}}"),
    ]
    .concat();
    let tags = ebml(
        &[0x12, 0x54, 0xc3, 0x67],
        &ebml(&[0x73, 0x73], &ebml(&[0x67, 0xc8], &simple_tag)),
    );
    let mut bytes = ebml(&[0x1a, 0x45, 0xdf, 0xa3], &ebml(&[0x42, 0x82], b"webm"));
    // Segment of unknown size, as a live recording writes it; Tags after the Clusters.
    bytes.extend([
        0x18, 0x53, 0x80, 0x67, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ]);
    bytes.extend(clusters);
    bytes.extend(tags);
    bytes
}

#[test]
fn a_50_mb_webm_is_read() {
    let cluster = ebml(&[0x1f, 0x43, 0xb6, 0x75], &vec![0; BIG]);
    let found = read_big(&webm_with_clusters(&cluster), "big webm");
    assert_eq!(found.prompt.as_deref(), Some("{\"1\": {}}"));

    // Clusters of unknown size are walked block by block up to the next top-level element.
    let block = ebml(&[0xa3], &vec![0; 64 * 1024]);
    let mut cluster = vec![0x1f, 0x43, 0xb6, 0x75, 0xff];
    for _ in 0..BIG / block.len() {
        cluster.extend(&block);
    }
    let found = read_big(
        &webm_with_clusters(&cluster),
        "big webm, unknown-size cluster",
    );
    assert_eq!(found.prompt.as_deref(), Some("{\"1\": {}}"));
}
