//! Workflows embedded in output files: PNG, animated PNG, WebP, MP4 and WebM metadata.
//!
//! ComfyUI writes the API prompt it ran and the UI workflow it came from into every output file
//! (spec §4.5), so any output a user drops on wan-pilot can give back the graph that made it.
//! Where each format keeps them:
//! - PNG (`SaveImage`): `tEXt` chunks keyed `prompt` and `workflow` (we also read uncompressed
//!   `iTXt`).
//! - Animated PNG (`SaveAnimatedPNG`): private `comf` chunks after the image data, `key\0json`.
//! - WebP (`SaveAnimatedWEBP`): the `EXIF` chunk, IFD0 strings `prompt:{json}` (tag Model) and
//!   `workflow:{json}` (tag Make, the next extra keys counting down from there).
//! - MP4/MOV (`SaveVideo`): `moov/udta/meta` with an `mdta` key list, values in `ilst`.
//! - WebM/Matroska (`SaveWEBM`): `Segment/Tags/Tag/SimpleTag`, names upper-cased by ffmpeg.
//! - VideoHelperSuite videos: one `comment` tag holding `{"prompt": "...", "workflow": {...}}`,
//!   read as a fallback.
//!
//! Everything is a bounds-checked walk over bytes already in memory. Large payloads (IDAT,
//! `mdat`, Clusters) are stepped over by their declared size, never copied or decoded, so a
//! 50 MB video costs a few hundred header reads. No recursion: each nesting level has its own
//! function, so hostile input cannot deepen the stack.

use std::fmt;

use serde_json::Value;
use thiserror::Error;

/// The file formats ComfyUI saves with metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Container {
    /// A still PNG (`SaveImage`, `PreviewImage`, VideoHelperSuite's first-frame PNG).
    Png,
    /// A PNG with an `acTL` chunk (`SaveAnimatedPNG`).
    AnimatedPng,
    /// RIFF/WebP, still or animated (`SaveAnimatedWEBP`).
    Webp,
    /// ISO base media: MP4, M4V and QuickTime MOV (`SaveVideo`).
    Mp4,
    /// EBML: WebM and Matroska (`SaveWEBM`).
    Webm,
}

impl Container {
    /// A noun phrase for messages and the UI: "PNG image", "MP4 video".
    pub fn describe(self) -> &'static str {
        match self {
            Self::Png => "PNG image",
            Self::AnimatedPng => "animated PNG",
            Self::Webp => "WebP image",
            Self::Mp4 => "MP4 video",
            Self::Webm => "WebM video",
        }
    }
}

impl fmt::Display for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// What an output file says about the graph that made it. The texts are handed over as found
/// (not parsed), so the caller decides how to read them and can quote them in errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Embedded {
    /// The format the bytes turned out to be.
    pub container: Container,
    /// API-format JSON (node id → `class_type`, `inputs`): what the server actually ran.
    pub prompt: Option<String>,
    /// UI-format JSON (`nodes`, `links`, `widgets_values`): the graph as the user drew it.
    pub workflow: Option<String>,
    /// Worth telling the user but not fatal: text that was not UTF-8 and was read as Latin-1,
    /// an entry that could not be read, the file being cut short after the metadata.
    pub notes: Vec<String>,
}

/// Why no metadata could be read. Each message is one line saying what is wrong and at which
/// byte; the caller adds the file name.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EmbeddedError {
    /// The bytes are none of the formats ComfyUI writes metadata into.
    #[error("not a PNG, WebP, MP4/MOV or WebM/Matroska file ({head})")]
    Unrecognised {
        /// "it is empty" or "it starts with" and the first bytes in hex.
        head: String,
    },
    /// A structure claims more bytes than the file has: the file is cut short.
    #[error("{what} at byte {offset} is cut short (the file ends at byte {file_len})")]
    Truncated {
        what: String,
        offset: usize,
        file_len: usize,
    },
    /// A structure that cannot be right, whatever follows it.
    #[error("{what} at byte {offset}: {problem}")]
    Malformed {
        what: String,
        offset: usize,
        problem: String,
    },
    /// The entry is there but zlib-compressed, which this reader does not inflate.
    #[error(
        "{what} at byte {offset} is zlib-compressed, which wan-pilot does not read \
         (ComfyUI writes it uncompressed; save the file from ComfyUI again)"
    )]
    Compressed { what: String, offset: usize },
    /// A well-formed file that carries neither a prompt nor a workflow.
    #[error("no ComfyUI workflow or prompt in this {container} ({detail})")]
    NoMetadata {
        container: Container,
        detail: String,
    },
}

/// Which container these bytes are, from magic bytes (None = not one we read). A PNG counts as
/// animated when an `acTL` chunk precedes its image data, as the APNG spec requires.
pub fn sniff(bytes: &[u8]) -> Option<Container> {
    if bytes.starts_with(PNG_SIGNATURE) {
        return Some(if png_is_animated(bytes) {
            Container::AnimatedPng
        } else {
            Container::Png
        });
    }
    if bytes.get(..4) == Some(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        return Some(Container::Webp);
    }
    if bytes.starts_with(&EBML_MAGIC) {
        return Some(Container::Webm);
    }
    // ISO files start with `ftyp`; old QuickTime files may start with any of these instead.
    match bytes.get(4..8) {
        Some(b"ftyp" | b"moov" | b"mdat" | b"wide" | b"free" | b"skip") => Some(Container::Mp4),
        _ => None,
    }
}

/// The `prompt` (API JSON) and `workflow` (UI JSON) texts the file carries.
///
/// A file cut short after its metadata still gives what came before the cut, with a note; an
/// error comes back only when neither text was found.
pub fn extract(bytes: &[u8]) -> Result<Embedded, EmbeddedError> {
    match sniff(bytes) {
        Some(Container::Png | Container::AnimatedPng) => read_png(bytes),
        Some(Container::Webp) => read_webp(bytes),
        Some(Container::Mp4) => read_mp4(bytes),
        Some(Container::Webm) => read_webm(bytes),
        None => Err(EmbeddedError::Unrecognised {
            head: if bytes.is_empty() {
                "it is empty".to_owned()
            } else {
                format!("it starts with {}", hex(bytes.get(..8).unwrap_or(bytes)))
            },
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// What the walks collect

/// The metadata keys we look for. Matched ASCII-case-insensitively: ffmpeg upper-cases
/// Matroska tag names, everything else keeps ComfyUI's lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Prompt,
    Workflow,
    /// VideoHelperSuite's one-tag bundle of both.
    Comment,
}

fn key_of(name: &[u8]) -> Option<Key> {
    if name.eq_ignore_ascii_case(b"prompt") {
        Some(Key::Prompt)
    } else if name.eq_ignore_ascii_case(b"workflow") {
        Some(Key::Workflow)
    } else if name.eq_ignore_ascii_case(b"comment") {
        Some(Key::Comment)
    } else {
        None
    }
}

/// Enough notes to explain a damaged file without echoing every bad entry.
const MAX_NOTES: usize = 16;

#[derive(Debug, Default)]
struct Found {
    prompt: Option<String>,
    workflow: Option<String>,
    /// From a VideoHelperSuite `comment`; used only where the direct key is missing.
    comment_prompt: Option<String>,
    comment_workflow: Option<String>,
    notes: Vec<String>,
    /// The first entry we saw but could not read: the best explanation if nothing else is found.
    unreadable: Option<EmbeddedError>,
}

impl Found {
    /// Takes the first value for each key: ComfyUI writes each once, and a later copy is
    /// someone else's addition.
    fn offer(&mut self, key: Key, raw: &[u8], place: impl FnOnce() -> String) {
        let slot = match key {
            Key::Prompt => &mut self.prompt,
            Key::Workflow => &mut self.workflow,
            Key::Comment => {
                let text = decode_text(raw, &mut self.notes, place);
                self.offer_comment(&text);
                return;
            }
        };
        if slot.is_none() {
            *slot = Some(decode_text(raw, &mut self.notes, place));
        }
    }

    /// VideoHelperSuite writes `{"prompt": "<API JSON as a string>", "workflow": {...}}`. Only
    /// values that are JSON objects count, so an unrelated comment mentioning "prompt" is
    /// not mistaken for a graph.
    fn offer_comment(&mut self, text: &str) {
        let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text) else {
            return;
        };
        let as_object_json = |value: Option<&Value>| match value {
            Some(Value::Object(_)) => value.map(Value::to_string),
            Some(Value::String(inner)) => {
                matches!(serde_json::from_str::<Value>(inner), Ok(Value::Object(_)))
                    .then(|| inner.clone())
            }
            _ => None,
        };
        if self.comment_prompt.is_none() {
            self.comment_prompt = as_object_json(map.get("prompt"));
        }
        if self.comment_workflow.is_none() {
            self.comment_workflow = as_object_json(map.get("workflow"));
        }
    }

    /// Remembers an entry that could not be read, and carries on with the rest of the file.
    fn skip(&mut self, error: EmbeddedError) {
        // A hostile file can hold thousands of bad entries; a few tell the story.
        if self.notes.len() < MAX_NOTES {
            self.notes.push(error.to_string());
        }
        if self.unreadable.is_none() {
            self.unreadable = Some(error);
        }
    }

    /// Turns the walk's outcome into the answer: whatever was found wins over a later error.
    fn finish(
        mut self,
        container: Container,
        walk: Result<(), EmbeddedError>,
        missing: impl FnOnce() -> String,
    ) -> Result<Embedded, EmbeddedError> {
        if (self.prompt.is_none() && self.comment_prompt.is_some())
            || (self.workflow.is_none() && self.comment_workflow.is_some())
        {
            self.notes
                .push("read from a VideoHelperSuite-style 'comment' tag".to_owned());
        }
        let prompt = self.prompt.or(self.comment_prompt);
        let workflow = self.workflow.or(self.comment_workflow);
        if prompt.is_none() && workflow.is_none() {
            // An entry named prompt/workflow that we could not read explains more than a
            // damaged byte further on.
            return Err(match (self.unreadable, walk) {
                (Some(error), _) | (None, Err(error)) => error,
                (None, Ok(())) => EmbeddedError::NoMetadata {
                    container,
                    detail: missing(),
                },
            });
        }
        let mut notes = self.notes;
        if let Err(error) = walk {
            notes.push(format!("stopped reading after the metadata: {error}"));
        }
        Ok(Embedded {
            container,
            prompt,
            workflow,
            notes,
        })
    }
}

/// UTF-8 as is; anything else read as Latin-1 (what PNG `tEXt` is by spec), with a note.
fn decode_text(raw: &[u8], notes: &mut Vec<String>, place: impl FnOnce() -> String) -> String {
    match std::str::from_utf8(raw) {
        Ok(text) => text.to_owned(),
        Err(_) => {
            notes.push(format!("{} is not UTF-8; read it as Latin-1", place()));
            raw.iter().copied().map(char::from).collect()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Byte helpers: every read is a `get`, so a short input gives `None`, never a panic.

fn array<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    array(bytes, at).map(u32::from_be_bytes)
}

/// Splits `name\0rest`, the layout of PNG text chunks and `comf` chunks.
fn split_nul(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let nul = bytes.iter().position(|&b| b == 0)?;
    Some((bytes.get(..nul)?, bytes.get(nul.checked_add(1)?..)?))
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A four-character code for messages; bytes ≥ 0x80 are shown as Latin-1 (`©nam`).
fn fourcc(code: [u8; 4]) -> String {
    code.iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' || b >= 0xa0 {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect()
}

fn end_of(start: usize, len: u64) -> Option<usize> {
    start.checked_add(usize::try_from(len).ok()?)
}

// ---------------------------------------------------------------------------------------------
// PNG and animated PNG

const PNG_SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";
/// The PNG spec caps chunk lengths at 2^31 − 1.
const PNG_MAX_CHUNK_LEN: u32 = 0x7fff_ffff;

struct PngChunk<'a> {
    kind: [u8; 4],
    data: &'a [u8],
    /// Where the chunk's length field starts.
    offset: usize,
}

impl PngChunk<'_> {
    fn what(&self) -> String {
        format!("PNG chunk '{}'", fourcc(self.kind))
    }
}

/// Walks the chunks after the signature; ends after `IEND` or with the first error.
struct PngChunks<'a> {
    bytes: &'a [u8],
    pos: usize,
    is_done: bool,
}

impl<'a> PngChunks<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            pos: PNG_SIGNATURE.len(),
            is_done: false,
        }
    }

    fn read(&mut self) -> Result<PngChunk<'a>, EmbeddedError> {
        let offset = self.pos;
        let file_len = self.bytes.len();
        if offset >= file_len {
            return Err(EmbeddedError::Malformed {
                what: "PNG".to_owned(),
                offset,
                problem: "the file ends here without an IEND chunk, so it is cut short".to_owned(),
            });
        }
        let truncated = |what: String| EmbeddedError::Truncated {
            what,
            offset,
            file_len,
        };
        let [l0, l1, l2, l3, k0, k1, k2, k3] = array::<8>(self.bytes, offset)
            .ok_or_else(|| truncated("PNG chunk header".to_owned()))?;
        let len = u32::from_be_bytes([l0, l1, l2, l3]);
        let kind = [k0, k1, k2, k3];
        if !kind.iter().all(u8::is_ascii_alphabetic) {
            return Err(EmbeddedError::Malformed {
                what: "PNG chunk".to_owned(),
                offset,
                problem: format!(
                    "its type bytes {} are not letters, so the file is damaged",
                    hex(&kind)
                ),
            });
        }
        let what = || format!("PNG chunk '{}'", fourcc(kind));
        if len > PNG_MAX_CHUNK_LEN {
            return Err(EmbeddedError::Malformed {
                what: what(),
                offset,
                problem: format!("its length {len} is over the PNG limit of 2^31 - 1"),
            });
        }
        // Data, then a 4-byte CRC (not checked: a bad CRC does not make the text unreadable).
        let data_start = offset.saturating_add(8);
        let Some((data, next)) = end_of(data_start, u64::from(len)).and_then(|data_end| {
            let next = data_end.checked_add(4).filter(|&next| next <= file_len)?;
            Some((self.bytes.get(data_start..data_end)?, next))
        }) else {
            return Err(truncated(what()));
        };
        self.pos = next;
        Ok(PngChunk { kind, data, offset })
    }
}

impl<'a> Iterator for PngChunks<'a> {
    type Item = Result<PngChunk<'a>, EmbeddedError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.is_done {
            return None;
        }
        let item = self.read();
        self.is_done = !matches!(&item, Ok(chunk) if &chunk.kind != b"IEND");
        Some(item)
    }
}

/// APNG puts `acTL` before the first `IDAT`, so the walk stops there.
fn png_is_animated(bytes: &[u8]) -> bool {
    for chunk in PngChunks::new(bytes) {
        match chunk {
            Ok(chunk) if &chunk.kind == b"acTL" => return true,
            Ok(chunk) if &chunk.kind == b"IDAT" => return false,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

fn read_png(bytes: &[u8]) -> Result<Embedded, EmbeddedError> {
    let mut found = Found::default();
    let walk = walk_png(bytes, &mut found);
    let is_animated = png_is_animated(bytes);
    let container = if is_animated {
        Container::AnimatedPng
    } else {
        Container::Png
    };
    found.finish(container, walk, || {
        if is_animated {
            "it has no 'comf' or tEXt chunk named 'prompt' or 'workflow'".to_owned()
        } else {
            "it has no tEXt chunk named 'prompt' or 'workflow'".to_owned()
        }
    })
}

fn walk_png(bytes: &[u8], found: &mut Found) -> Result<(), EmbeddedError> {
    for chunk in PngChunks::new(bytes) {
        let chunk = chunk?;
        match &chunk.kind {
            // `comf` is SaveAnimatedPNG's private chunk with the same layout as tEXt.
            b"tEXt" | b"comf" => read_png_text(&chunk, found),
            b"iTXt" => read_png_itxt(&chunk, found),
            b"zTXt" => {
                if let Some((keyword, _)) = split_nul(chunk.data)
                    && key_of(keyword).is_some()
                {
                    found.skip(EmbeddedError::Compressed {
                        what: format!("{} '{}'", chunk.what(), keyword.escape_ascii()),
                        offset: chunk.offset,
                    });
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn no_nul(chunk: &PngChunk<'_>) -> EmbeddedError {
    EmbeddedError::Malformed {
        what: chunk.what(),
        offset: chunk.offset,
        problem: "it has no NUL byte after its keyword".to_owned(),
    }
}

/// `keyword\0text`, text in Latin-1 by spec (ComfyUI's JSON is plain ASCII).
fn read_png_text(chunk: &PngChunk<'_>, found: &mut Found) {
    let Some((keyword, text)) = split_nul(chunk.data) else {
        found.skip(no_nul(chunk));
        return;
    };
    if let Some(key) = key_of(keyword) {
        found.offer(key, text, || {
            format!(
                "{} '{}' at byte {}",
                chunk.what(),
                keyword.escape_ascii(),
                chunk.offset
            )
        });
    }
}

/// `keyword\0 flag method language\0 translated-keyword\0 text`, text in UTF-8.
fn read_png_itxt(chunk: &PngChunk<'_>, found: &mut Found) {
    let Some((keyword, rest)) = split_nul(chunk.data) else {
        found.skip(no_nul(chunk));
        return;
    };
    let Some(key) = key_of(keyword) else {
        return;
    };
    let what = || format!("{} '{}'", chunk.what(), keyword.escape_ascii());
    let text = rest
        .split_first()
        .and_then(|(&flag, rest)| Some((flag, rest.get(1..)?)))
        .and_then(|(flag, rest)| {
            let (_language, rest) = split_nul(rest)?;
            let (_translated, text) = split_nul(rest)?;
            Some((flag, text))
        });
    match text {
        Some((0, text)) => {
            found.offer(key, text, || format!("{} at byte {}", what(), chunk.offset))
        }
        Some(_) => found.skip(EmbeddedError::Compressed {
            what: what(),
            offset: chunk.offset,
        }),
        None => found.skip(EmbeddedError::Malformed {
            what: what(),
            offset: chunk.offset,
            problem: "its language and translated-keyword fields are not NUL-terminated".to_owned(),
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// WebP: RIFF chunks, metadata in the EXIF chunk's TIFF IFDs

/// Enough for any real file: ComfyUI writes IFD0 only; the cap stops IFD loops.
const MAX_IFDS: usize = 8;

fn read_webp(bytes: &[u8]) -> Result<Embedded, EmbeddedError> {
    let mut found = Found::default();
    let mut has_exif = false;
    let walk = walk_webp(bytes, &mut found, &mut has_exif);
    found.finish(Container::Webp, walk, || {
        if has_exif {
            "its EXIF has no 'prompt:' or 'workflow:' entry".to_owned()
        } else {
            "it has no EXIF chunk".to_owned()
        }
    })
}

fn walk_webp(bytes: &[u8], found: &mut Found, has_exif: &mut bool) -> Result<(), EmbeddedError> {
    let file_len = bytes.len();
    // "RIFF", little-endian size of what follows, "WEBP"; sniff checked the tags.
    let riff_size = array(bytes, 4).map(u32::from_le_bytes).unwrap_or(0);
    let riff_end = end_of(8, u64::from(riff_size)).unwrap_or(usize::MAX);
    let end = riff_end.min(file_len);
    let mut pos = 12;
    while pos < end {
        let truncated = |what: String| EmbeddedError::Truncated {
            what,
            offset: pos,
            file_len,
        };
        let header = pos
            .checked_add(8)
            .filter(|&header_end| header_end <= end)
            .and_then(|_| array::<8>(bytes, pos));
        let Some([c0, c1, c2, c3, s0, s1, s2, s3]) = header else {
            if end < file_len {
                // Stray bytes inside the RIFF size: the declared size is off, not our problem.
                break;
            }
            return Err(truncated("WebP chunk header".to_owned()));
        };
        let kind = [c0, c1, c2, c3];
        let size = u32::from_le_bytes([s0, s1, s2, s3]);
        let what = || format!("WebP chunk '{}'", fourcc(kind));
        let data_start = pos.saturating_add(8);
        let data_end = end_of(data_start, u64::from(size)).unwrap_or(usize::MAX);
        let Some(data) = bytes.get(data_start..data_end) else {
            return Err(truncated(what()));
        };
        if data_end > riff_end {
            return Err(EmbeddedError::Malformed {
                what: what(),
                offset: pos,
                problem: format!("its size {size} runs past the RIFF size {riff_size}"),
            });
        }
        if &kind == b"EXIF" {
            *has_exif = true;
            if let Err(error) = read_exif(data, data_start, found) {
                found.skip(error);
            }
        }
        // Chunks are padded to an even length.
        pos = data_end.saturating_add(usize::from(size % 2 == 1));
    }
    if riff_end > file_len {
        return Err(EmbeddedError::Truncated {
            what: "WebP RIFF".to_owned(),
            offset: 0,
            file_len,
        });
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum ByteOrder {
    Little,
    Big,
}

impl ByteOrder {
    fn u16(self, bytes: &[u8], at: usize) -> Option<u16> {
        let raw = array(bytes, at)?;
        Some(match self {
            Self::Little => u16::from_le_bytes(raw),
            Self::Big => u16::from_be_bytes(raw),
        })
    }

    fn u32(self, bytes: &[u8], at: usize) -> Option<u32> {
        let raw = array(bytes, at)?;
        Some(match self {
            Self::Little => u32::from_le_bytes(raw),
            Self::Big => u32::from_be_bytes(raw),
        })
    }
}

/// Reads the TIFF structure inside an EXIF block (`Exif\0\0` prefix optional) and offers every
/// text entry shaped `key:value`. The tag numbers are not trusted: ComfyUI puts `prompt` at
/// 0x0110 but counts extra keys down from 0x010F, so `workflow` moves if other keys come first.
fn read_exif(data: &[u8], offset: usize, found: &mut Found) -> Result<(), EmbeddedError> {
    let tiff = data.strip_prefix(b"Exif\0\0").unwrap_or(data);
    let tiff_offset = offset.saturating_add(data.len().saturating_sub(tiff.len()));
    let malformed = |at: usize, problem: String| EmbeddedError::Malformed {
        what: "WebP EXIF".to_owned(),
        offset: tiff_offset.saturating_add(at),
        problem,
    };
    let order = match tiff.get(..4) {
        Some(b"II*\0") => ByteOrder::Little,
        Some(b"MM\0*") => ByteOrder::Big,
        _ => {
            return Err(malformed(
                0,
                "it does not start with a TIFF header ('II*' or 'MM*')".to_owned(),
            ));
        }
    };
    let mut ifd = order.u32(tiff, 4).unwrap_or(0);
    let mut visited = Vec::new();
    while ifd != 0 && visited.len() < MAX_IFDS {
        if visited.contains(&ifd) {
            return Err(malformed(
                ifd as usize,
                "its IFDs point back into a loop".to_owned(),
            ));
        }
        visited.push(ifd);
        let start = ifd as usize;
        let count = order
            .u16(tiff, start)
            .ok_or_else(|| malformed(start, "the IFD offset points past the end".to_owned()))?;
        let entries = start.saturating_add(2);
        let entries_end = entries.saturating_add(usize::from(count).saturating_mul(12));
        if entries_end > tiff.len() {
            return Err(malformed(
                start,
                format!("IFD entry count {count} runs past the end of the EXIF chunk"),
            ));
        }
        for index in 0..usize::from(count) {
            let entry = entries.saturating_add(index.saturating_mul(12));
            read_ifd_entry(tiff, tiff_offset, entry, order, found);
        }
        // A short or missing next-IFD pointer just ends the chain.
        ifd = order.u32(tiff, entries_end).unwrap_or(0);
    }
    Ok(())
}

/// One 12-byte IFD entry: tag, type, count, then the value or its offset.
fn read_ifd_entry(
    tiff: &[u8],
    tiff_offset: usize,
    entry: usize,
    order: ByteOrder,
    found: &mut Found,
) {
    const BYTE: u16 = 1;
    const ASCII: u16 = 2;
    const UNDEFINED: u16 = 7;
    let (Some(tag), Some(kind), Some(count)) = (
        order.u16(tiff, entry),
        order.u16(tiff, entry.saturating_add(2)),
        order.u32(tiff, entry.saturating_add(4)),
    ) else {
        return;
    };
    if !matches!(kind, BYTE | ASCII | UNDEFINED) {
        return;
    }
    let len = count as usize;
    let value_at = if len <= 4 {
        Some(entry.saturating_add(8))
    } else {
        order
            .u32(tiff, entry.saturating_add(8))
            .map(|at| at as usize)
    };
    let Some(value) = value_at.and_then(|at| tiff.get(at..at.checked_add(len)?)) else {
        found.skip(EmbeddedError::Malformed {
            what: "WebP EXIF".to_owned(),
            offset: tiff_offset.saturating_add(entry),
            problem: format!("tag 0x{tag:04x} claims {len} bytes past the end of the chunk"),
        });
        return;
    };
    // ASCII values end in a NUL that is not part of the text.
    let value = value.strip_suffix(b"\0").unwrap_or(value);
    let Some(colon) = value.iter().position(|&b| b == b':') else {
        return;
    };
    let (Some(name), Some(text)) = (value.get(..colon), value.get(colon.saturating_add(1)..))
    else {
        return;
    };
    if let Some(key) = key_of(name) {
        found.offer(key, text, || {
            format!(
                "WebP EXIF tag 0x{tag:04x} at byte {}",
                tiff_offset.saturating_add(entry)
            )
        });
    }
}

// ---------------------------------------------------------------------------------------------
// MP4 / MOV: ISO boxes

/// One box: the header has been checked to fit inside its parent.
struct Atom<'a> {
    kind: [u8; 4],
    payload: &'a [u8],
    /// Absolute offset of the box header.
    offset: usize,
    /// Absolute offset of the payload.
    payload_offset: usize,
}

impl Atom<'_> {
    fn what(&self) -> String {
        format!("MP4 box '{}'", fourcc(self.kind))
    }
}

/// Walks sibling boxes inside `data`; ends with the first error.
struct Atoms<'a> {
    data: &'a [u8],
    /// Absolute offset of `data[0]`, for messages.
    base: usize,
    pos: usize,
    /// None at the top level, where running past the end means the file is cut short.
    parent: Option<[u8; 4]>,
    file_len: usize,
    is_done: bool,
}

impl<'a> Atoms<'a> {
    fn top(bytes: &'a [u8]) -> Self {
        Self {
            data: bytes,
            base: 0,
            pos: 0,
            parent: None,
            file_len: bytes.len(),
            is_done: false,
        }
    }

    fn children(parent: &Atom<'a>, skip: usize, file_len: usize) -> Self {
        Self {
            data: parent.payload.get(skip..).unwrap_or_default(),
            base: parent.payload_offset.saturating_add(skip),
            pos: 0,
            parent: Some(parent.kind),
            file_len,
            is_done: false,
        }
    }

    fn overrun(&self, what: String, offset: usize, size: u64) -> EmbeddedError {
        match self.parent {
            None => EmbeddedError::Truncated {
                what,
                offset,
                file_len: self.file_len,
            },
            Some(parent) => EmbeddedError::Malformed {
                what,
                offset,
                problem: format!(
                    "its size {size} runs past the end of its parent '{}'",
                    fourcc(parent)
                ),
            },
        }
    }

    fn read(&mut self) -> Option<Result<Atom<'a>, EmbeddedError>> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        if rest.is_empty() {
            return None;
        }
        let offset = self.base.saturating_add(self.pos);
        let Some([s0, s1, s2, s3, k0, k1, k2, k3]) = array::<8>(rest, 0) else {
            // QuickTime may end a `udta` list with a 32-bit zero.
            if self.parent.is_some() && rest.iter().all(|&b| b == 0) {
                return None;
            }
            return Some(Err(self.overrun("MP4 box header".to_owned(), offset, 8)));
        };
        let kind = [k0, k1, k2, k3];
        let what = || format!("MP4 box '{}'", fourcc(kind));
        let (size, header_len) = match u32::from_be_bytes([s0, s1, s2, s3]) {
            // Size 0: the box runs to the end of its container (an `mdat` being written).
            0 => (rest.len() as u64, 8),
            // Size 1: a 64-bit size follows the type.
            1 => match array(rest, 8) {
                Some(large) => (u64::from_be_bytes(large), 16),
                None => return Some(Err(self.overrun(what(), offset, 16))),
            },
            size => (u64::from(size), 8),
        };
        if size < header_len as u64 {
            return Some(Err(EmbeddedError::Malformed {
                what: what(),
                offset,
                problem: format!("its size {size} is smaller than its {header_len}-byte header"),
            }));
        }
        let Some(payload) = usize::try_from(size)
            .ok()
            .and_then(|size| rest.get(header_len..size))
        else {
            return Some(Err(self.overrun(what(), offset, size)));
        };
        let payload_offset = offset.saturating_add(header_len);
        self.pos = self
            .pos
            .saturating_add(header_len)
            .saturating_add(payload.len());
        Some(Ok(Atom {
            kind,
            payload,
            offset,
            payload_offset,
        }))
    }
}

impl<'a> Iterator for Atoms<'a> {
    type Item = Result<Atom<'a>, EmbeddedError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.is_done {
            return None;
        }
        let item = self.read();
        self.is_done = !matches!(item, Some(Ok(_)));
        item
    }
}

fn read_mp4(bytes: &[u8]) -> Result<Embedded, EmbeddedError> {
    let mut found = Found::default();
    let mut has_moov = false;
    let walk = walk_mp4(bytes, &mut found, &mut has_moov);
    found.finish(Container::Mp4, walk, || {
        if has_moov {
            "its 'moov' has no 'prompt' or 'workflow' metadata key".to_owned()
        } else {
            "it has no 'moov' box, so it is cut short or was never finished".to_owned()
        }
    })
}

fn walk_mp4(bytes: &[u8], found: &mut Found, has_moov: &mut bool) -> Result<(), EmbeddedError> {
    let file_len = bytes.len();
    for atom in Atoms::top(bytes) {
        let atom = atom?;
        if &atom.kind == b"moov" {
            *has_moov = true;
            // A damaged `moov` child should not hide what its siblings hold.
            if let Err(error) = read_moov(&atom, file_len, found) {
                found.skip(error);
            }
        }
    }
    Ok(())
}

fn read_moov(moov: &Atom<'_>, file_len: usize, found: &mut Found) -> Result<(), EmbeddedError> {
    for atom in Atoms::children(moov, 0, file_len) {
        let atom = atom?;
        match &atom.kind {
            b"udta" => read_udta(&atom, file_len, found)?,
            b"meta" => read_meta(&atom, file_len, found)?,
            _ => {}
        }
    }
    Ok(())
}

fn read_udta(udta: &Atom<'_>, file_len: usize, found: &mut Found) -> Result<(), EmbeddedError> {
    for atom in Atoms::children(udta, 0, file_len) {
        let atom = atom?;
        match &atom.kind {
            b"meta" => read_meta(&atom, file_len, found)?,
            // QuickTime user-data text (what ffmpeg writes for `comment` in a .mov):
            // 16-bit length, 16-bit language, text.
            b"\xa9cmt" => {
                let len = array(atom.payload, 0).map(u16::from_be_bytes).unwrap_or(0);
                if let Some(text) = atom.payload.get(4..4usize.saturating_add(usize::from(len))) {
                    found.offer(Key::Comment, text, || {
                        format!("{} at byte {}", atom.what(), atom.offset)
                    });
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// `meta` holds `hdlr`, `keys` (mdta style, what `use_metadata_tags` writes) and `ilst`. In ISO
/// files it is a full box (4 bytes of version and flags first); QuickTime's is not.
fn read_meta(meta: &Atom<'_>, file_len: usize, found: &mut Found) -> Result<(), EmbeddedError> {
    let skip = if meta.payload.get(4..8) == Some(b"hdlr") {
        0
    } else {
        4
    };
    let mut keys: Vec<&[u8]> = Vec::new();
    let mut items: Vec<(Vec<u8>, &[u8], usize)> = Vec::new();
    for atom in Atoms::children(meta, skip, file_len) {
        let atom = atom?;
        match &atom.kind {
            b"keys" => keys = read_keys(&atom)?,
            b"ilst" => read_ilst(&atom, file_len, &mut items)?,
            _ => {}
        }
    }
    for (name, value, offset) in items {
        // mdta items are typed by their 1-based index into `keys`; iTunes items by 4cc.
        let index = array(&name, 0).map(u32::from_be_bytes).unwrap_or(0) as usize;
        let key_name = match index.checked_sub(1).and_then(|i| keys.get(i)) {
            Some(key) => *key,
            None if name.as_slice() == b"\xa9cmt" => b"comment".as_slice(),
            None => name.as_slice(),
        };
        if let Some(key) = key_of(key_name) {
            found.offer(key, value, || {
                format!(
                    "MP4 metadata '{}' at byte {offset}",
                    key_name.escape_ascii()
                )
            });
        }
    }
    Ok(())
}

/// `keys`: version and flags, entry count, then (size, namespace, name) entries.
fn read_keys<'a>(atom: &Atom<'a>) -> Result<Vec<&'a [u8]>, EmbeddedError> {
    let count = be_u32(atom.payload, 4).unwrap_or(0);
    let mut keys = Vec::new();
    let mut pos = 8usize;
    for _ in 0..count {
        let entry = be_u32(atom.payload, pos)
            .and_then(|size| atom.payload.get(pos..end_of(pos, u64::from(size))?))
            .filter(|entry| entry.len() >= 8);
        let Some(entry) = entry else {
            return Err(EmbeddedError::Malformed {
                what: atom.what(),
                offset: atom.offset,
                problem: format!("its {count} key entries run past its end"),
            });
        };
        keys.push(entry.get(8..).unwrap_or_default());
        pos = pos.saturating_add(entry.len());
    }
    Ok(keys)
}

/// `ilst` items: each is named by a key index or 4cc (or `----` with a `name` box) and holds
/// a `data` box: 4 bytes type, 4 bytes locale, then the value.
fn read_ilst<'a>(
    ilst: &Atom<'a>,
    file_len: usize,
    items: &mut Vec<(Vec<u8>, &'a [u8], usize)>,
) -> Result<(), EmbeddedError> {
    for item in Atoms::children(ilst, 0, file_len) {
        let item = item?;
        let mut name = item.kind.to_vec();
        let mut value = None;
        for child in Atoms::children(&item, 0, file_len) {
            let child = child?;
            match &child.kind {
                b"data" if value.is_none() => value = child.payload.get(8..),
                b"name" if &item.kind == b"----" => {
                    name = child.payload.get(4..).unwrap_or_default().to_vec();
                }
                _ => {}
            }
        }
        if let Some(value) = value {
            items.push((name, value, item.offset));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// WebM / Matroska: EBML elements

const EBML_MAGIC: [u8; 4] = [0x1a, 0x45, 0xdf, 0xa3];
const ID_EBML: u32 = 0x1a45_dfa3;
const ID_SEGMENT: u32 = 0x1853_8067;
const ID_CLUSTER: u32 = 0x1f43_b675;
const ID_TAGS: u32 = 0x1254_c367;
const ID_TAG: u32 = 0x7373;
const ID_SIMPLE_TAG: u32 = 0x67c8;
const ID_TAG_NAME: u32 = 0x45a3;
const ID_TAG_STRING: u32 = 0x4487;
/// Children of Segment. An element of unknown size ends where one of these begins.
const SEGMENT_CHILDREN: [u32; 8] = [
    0x114d_9b74, // SeekHead
    0x1549_a966, // Info
    0x1654_ae6b, // Tracks
    ID_CLUSTER,
    0x1c53_bb6b, // Cues
    ID_TAGS,
    0x1043_a770, // Chapters
    0x1941_a469, // Attachments
];

/// An element header; positions are absolute offsets into the file.
struct Element {
    id: u32,
    offset: usize,
    data_start: usize,
    /// None: unknown size (live streams), the element ends where the next sibling begins.
    size: Option<u64>,
}

impl Element {
    fn what(&self) -> String {
        format!("WebM element {}", ebml_name(self.id))
    }
}

fn ebml_name(id: u32) -> String {
    let name = match id {
        ID_EBML => "EBML",
        ID_SEGMENT => "Segment",
        0x114d_9b74 => "SeekHead",
        0x1549_a966 => "Info",
        0x1654_ae6b => "Tracks",
        ID_CLUSTER => "Cluster",
        0x1c53_bb6b => "Cues",
        ID_TAGS => "Tags",
        0x1043_a770 => "Chapters",
        0x1941_a469 => "Attachments",
        ID_TAG => "Tag",
        ID_SIMPLE_TAG => "SimpleTag",
        ID_TAG_NAME => "TagName",
        ID_TAG_STRING => "TagString",
        0xec => "Void",
        0xa3 => "SimpleBlock",
        0xa0 => "BlockGroup",
        other => return format!("0x{other:X}"),
    };
    name.to_owned()
}

/// Why an EBML number could not be read.
enum VintError {
    /// The first byte announces a longer number than this field allows (or is zero).
    Invalid,
    /// The number runs past the end of the file.
    Short,
}

/// An EBML variable-length integer: the count of leading zero bits in the first byte gives
/// the length (1..=`max_len`). Returns the raw value (marker bit kept, as IDs are written) and
/// the length.
fn read_vint(bytes: &[u8], at: usize, max_len: u32) -> Result<(u64, usize), VintError> {
    let first = *bytes.get(at).ok_or(VintError::Short)?;
    let len = first.leading_zeros().saturating_add(1);
    if len > max_len {
        return Err(VintError::Invalid);
    }
    let len = len as usize;
    let raw = at
        .checked_add(len)
        .and_then(|end| bytes.get(at..end))
        .ok_or(VintError::Short)?;
    Ok((
        raw.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
        len,
    ))
}

/// Reads an element header at `at`, which must lie before `end`.
fn read_element(bytes: &[u8], at: usize, end: usize) -> Result<Element, EmbeddedError> {
    let file_len = bytes.len();
    let error = |problem: VintError, field: &str| match problem {
        VintError::Short => EmbeddedError::Truncated {
            what: "WebM element header".to_owned(),
            offset: at,
            file_len,
        },
        VintError::Invalid => EmbeddedError::Malformed {
            what: "WebM element".to_owned(),
            offset: at,
            problem: format!("its {field} is not a valid EBML number, so the file is damaged"),
        },
    };
    let (id, id_len) = read_vint(bytes, at, 4).map_err(|e| error(e, "ID"))?;
    let size_at = at.saturating_add(id_len);
    let (raw_size, size_len) = read_vint(bytes, size_at, 8).map_err(|e| error(e, "size"))?;
    let data_start = size_at.saturating_add(size_len);
    if data_start > end {
        return Err(EmbeddedError::Malformed {
            what: "WebM element".to_owned(),
            offset: at,
            problem: "its header runs past the end of its parent".to_owned(),
        });
    }
    // Drop the length-marker bit; all value bits set means "unknown size".
    let value_bits = 7u32.saturating_mul(size_len as u32);
    let mask = 1u64.checked_shl(value_bits).map_or(u64::MAX, |bit| bit - 1);
    let value = raw_size & mask;
    Ok(Element {
        id: u32::try_from(id).unwrap_or(0),
        offset: at,
        data_start,
        size: (value != mask).then_some(value),
    })
}

/// Where an element of known size ends; an error when it overruns its parent or the file.
fn element_end(
    element: &Element,
    size: u64,
    parent_end: usize,
    file_len: usize,
) -> Result<usize, EmbeddedError> {
    match end_of(element.data_start, size) {
        Some(end) if end <= parent_end => Ok(end),
        Some(end) if end <= file_len || parent_end < file_len => Err(EmbeddedError::Malformed {
            what: element.what(),
            offset: element.offset,
            problem: format!("its size {size} runs past the end of its parent"),
        }),
        _ => Err(EmbeddedError::Truncated {
            what: element.what(),
            offset: element.offset,
            file_len,
        }),
    }
}

fn read_webm(bytes: &[u8]) -> Result<Embedded, EmbeddedError> {
    let mut found = Found::default();
    let mut seen = WebmSeen::default();
    let walk = walk_webm(bytes, &mut found, &mut seen);
    found.finish(Container::Webm, walk, || {
        if seen.has_tags {
            "its Tags have no PROMPT or WORKFLOW SimpleTag".to_owned()
        } else if seen.has_segment {
            "it has no Tags element".to_owned()
        } else {
            "it has no Segment, so it is cut short or was never finished".to_owned()
        }
    })
}

/// What the walk met, to say what is missing when no metadata turns up.
#[derive(Debug, Default)]
struct WebmSeen {
    has_segment: bool,
    has_tags: bool,
}

/// Top level: the EBML header, then Segments (normally one).
fn walk_webm(bytes: &[u8], found: &mut Found, seen: &mut WebmSeen) -> Result<(), EmbeddedError> {
    let file_len = bytes.len();
    let mut pos = 0;
    while pos < file_len {
        let element = read_element(bytes, pos, file_len)?;
        let end = match element.size {
            // A Segment's declared size often outlives a cut file: read up to the cut, and
            // let the element the cut falls in report it.
            Some(size) if element.id == ID_SEGMENT => {
                end_of(element.data_start, size).map_or(file_len, |end| end.min(file_len))
            }
            Some(size) => element_end(&element, size, file_len, file_len)?,
            None if element.id == ID_SEGMENT => file_len,
            None => {
                return Err(EmbeddedError::Malformed {
                    what: element.what(),
                    offset: pos,
                    problem: "a top-level element other than Segment has an unknown size"
                        .to_owned(),
                });
            }
        };
        if element.id == ID_SEGMENT {
            seen.has_segment = true;
            walk_segment(bytes, element.data_start, end, found, &mut seen.has_tags)?;
            let declared_end = element
                .size
                .and_then(|size| end_of(element.data_start, size));
            if declared_end.is_some_and(|declared| declared > file_len) {
                // Cut between two children: nothing failed above, but the rest is missing.
                return Err(EmbeddedError::Truncated {
                    what: element.what(),
                    offset: element.offset,
                    file_len,
                });
            }
        }
        pos = end;
    }
    Ok(())
}

fn walk_segment(
    bytes: &[u8],
    start: usize,
    end: usize,
    found: &mut Found,
    has_tags: &mut bool,
) -> Result<(), EmbeddedError> {
    let file_len = bytes.len();
    let mut pos = start;
    while pos < end {
        let element = read_element(bytes, pos, end)?;
        let element_stop = match element.size {
            Some(size) => element_end(&element, size, end, file_len)?,
            // Unknown size (a live recording's Clusters): step over its children until the
            // next Segment-level element.
            None => skip_unknown_size(bytes, &element, end)?,
        };
        if element.id == ID_TAGS {
            *has_tags = true;
            read_tags(bytes, element.data_start, element_stop, found)?;
        }
        pos = element_stop;
    }
    Ok(())
}

fn skip_unknown_size(bytes: &[u8], element: &Element, end: usize) -> Result<usize, EmbeddedError> {
    let file_len = bytes.len();
    let mut pos = element.data_start;
    while pos < end {
        let child = read_element(bytes, pos, end)?;
        if SEGMENT_CHILDREN.contains(&child.id) || child.id == ID_SEGMENT || child.id == ID_EBML {
            return Ok(pos);
        }
        let Some(size) = child.size else {
            return Err(EmbeddedError::Malformed {
                what: child.what(),
                offset: pos,
                problem: format!(
                    "an element of unknown size inside {} of unknown size",
                    ebml_name(element.id)
                ),
            });
        };
        pos = element_end(&child, size, end, file_len)?;
    }
    Ok(end)
}

/// Calls `visit` for each child element of known size in `start..end`.
fn for_each_child(
    bytes: &[u8],
    start: usize,
    end: usize,
    mut visit: impl FnMut(&Element, usize) -> Result<(), EmbeddedError>,
) -> Result<(), EmbeddedError> {
    let file_len = bytes.len();
    let mut pos = start;
    while pos < end {
        let element = read_element(bytes, pos, end)?;
        let stop = match element.size {
            Some(size) => element_end(&element, size, end, file_len)?,
            None => {
                return Err(EmbeddedError::Malformed {
                    what: element.what(),
                    offset: pos,
                    problem: "unknown size is not allowed here".to_owned(),
                });
            }
        };
        visit(&element, stop)?;
        pos = stop;
    }
    Ok(())
}

/// Tags → Tag → SimpleTag (TagName, TagString). ffmpeg writes container metadata as global
/// tags with names upper-cased: `PROMPT`, `WORKFLOW`.
fn read_tags(
    bytes: &[u8],
    start: usize,
    end: usize,
    found: &mut Found,
) -> Result<(), EmbeddedError> {
    for_each_child(bytes, start, end, |tag, tag_end| {
        if tag.id != ID_TAG {
            return Ok(());
        }
        for_each_child(bytes, tag.data_start, tag_end, |simple, simple_end| {
            if simple.id != ID_SIMPLE_TAG {
                return Ok(());
            }
            let mut name = None;
            let mut value = None;
            for_each_child(bytes, simple.data_start, simple_end, |field, field_end| {
                let data = bytes.get(field.data_start..field_end);
                match field.id {
                    ID_TAG_NAME => name = data,
                    ID_TAG_STRING => value = data,
                    _ => {}
                }
                Ok(())
            })?;
            if let (Some(name), Some(value)) = (name, value)
                && let Some(key) = key_of(name)
            {
                found.offer(key, value, || {
                    format!(
                        "WebM tag '{}' at byte {}",
                        name.escape_ascii(),
                        simple.offset
                    )
                });
            }
            Ok(())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMPT: &str = r#"{"1": {"class_type": "EmptyImage", "inputs": {}}}"#;
    const WORKFLOW: &str = r#"{"nodes": [], "links": [], "version": 0.4}"#;

    // --- builders ------------------------------------------------------------------------------

    /// A PNG from chunks; CRCs are zero because the reader does not check them.
    fn png(chunks: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
        let mut out = PNG_SIGNATURE.to_vec();
        for (kind, data) in chunks {
            out.extend((data.len() as u32).to_be_bytes());
            out.extend(*kind);
            out.extend(*data);
            out.extend([0; 4]);
        }
        out
    }

    fn text(keyword: &str, value: &[u8]) -> Vec<u8> {
        [keyword.as_bytes(), b"\0", value].concat()
    }

    fn mp4_box(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut out = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend(kind);
        out.extend(payload);
        out
    }

    fn data_box(value: &str) -> Vec<u8> {
        mp4_box(
            b"data",
            &[&[0, 0, 0, 1, 0, 0, 0, 0], value.as_bytes()].concat(),
        )
    }

    /// `ftyp` then `moov` holding `children`.
    fn mp4(moov_children: &[u8]) -> Vec<u8> {
        [
            mp4_box(b"ftyp", b"isom\0\0\x02\0"),
            mp4_box(b"moov", moov_children),
        ]
        .concat()
    }

    /// What ffmpeg writes with `movflags=use_metadata_tags`.
    fn mdta_meta(full_box: bool, entries: &[(&str, &str)]) -> Vec<u8> {
        let mut keys = vec![0, 0, 0, 0];
        keys.extend((entries.len() as u32).to_be_bytes());
        let mut ilst = Vec::new();
        for (index, (key, value)) in entries.iter().enumerate() {
            keys.extend(((key.len() + 8) as u32).to_be_bytes());
            keys.extend(b"mdta");
            keys.extend(key.as_bytes());
            ilst.extend(mp4_box(&(index as u32 + 1).to_be_bytes(), &data_box(value)));
        }
        let hdlr = mp4_box(b"hdlr", &[&[0; 8][..], b"mdta", &[0; 13]].concat());
        let version = if full_box { &[0u8; 4][..] } else { &[] };
        let children = [hdlr, mp4_box(b"keys", &keys), mp4_box(b"ilst", &ilst)].concat();
        mp4_box(b"meta", &[version, &children].concat())
    }

    fn tiff(order: ByteOrder, entries: &[(u16, &str)]) -> Vec<u8> {
        let u16b = |v: u16| match order {
            ByteOrder::Little => v.to_le_bytes(),
            ByteOrder::Big => v.to_be_bytes(),
        };
        let u32b = |v: u32| match order {
            ByteOrder::Little => v.to_le_bytes(),
            ByteOrder::Big => v.to_be_bytes(),
        };
        let mut out = match order {
            ByteOrder::Little => b"II*\0".to_vec(),
            ByteOrder::Big => b"MM\0*".to_vec(),
        };
        out.extend(u32b(8));
        out.extend(u16b(entries.len() as u16));
        let mut values = Vec::new();
        let values_at = 8 + 2 + entries.len() * 12 + 4;
        for (tag, value) in entries {
            let value = [value.as_bytes(), b"\0"].concat();
            out.extend(u16b(*tag));
            out.extend(u16b(2));
            out.extend(u32b(value.len() as u32));
            out.extend(u32b((values_at + values.len()) as u32));
            values.extend(value);
        }
        out.extend(u32b(0));
        out.extend(values);
        out
    }

    fn webp(exif: &[u8]) -> Vec<u8> {
        let mut body = b"WEBP".to_vec();
        for (kind, data) in [(b"VP8X", &[0u8; 10][..]), (b"EXIF", exif)] {
            body.extend(kind);
            body.extend((data.len() as u32).to_le_bytes());
            body.extend(data);
            if data.len() % 2 == 1 {
                body.push(0);
            }
        }
        [
            b"RIFF".as_slice(),
            &(body.len() as u32).to_le_bytes(),
            &body,
        ]
        .concat()
    }

    fn ebml(id: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut out = id.to_vec();
        out.push(0x01);
        out.extend(&(payload.len() as u64).to_be_bytes()[1..]);
        out.extend(payload);
        out
    }

    fn webm(tags: &[(&str, &str)]) -> Vec<u8> {
        let mut tag = ebml(&[0x63, 0xc0], &[]); // empty Targets: a global tag
        for (name, value) in tags {
            let simple = [
                ebml(&[0x45, 0xa3], name.as_bytes()),
                ebml(&[0x44, 0x87], value.as_bytes()),
            ]
            .concat();
            tag.extend(ebml(&[0x67, 0xc8], &simple));
        }
        let tags = ebml(&[0x12, 0x54, 0xc3, 0x67], &ebml(&[0x73, 0x73], &tag));
        let segment = ebml(&[0x18, 0x53, 0x80, 0x67], &tags);
        [
            ebml(&[0x1a, 0x45, 0xdf, 0xa3], &ebml(&[0x42, 0x82], b"webm")),
            segment,
        ]
        .concat()
    }

    // --- PNG -----------------------------------------------------------------------------------

    #[test]
    fn png_reads_text_and_uncompressed_itxt() {
        let itxt = [b"workflow\0\0\0en\0\0".as_slice(), WORKFLOW.as_bytes()].concat();
        let bytes = png(&[
            (b"IHDR", &[0; 13]),
            (b"tEXt", &text("prompt", PROMPT.as_bytes())),
            (b"iTXt", &itxt),
            (b"IEND", &[]),
        ]);
        let found = extract(&bytes).unwrap();
        assert_eq!(found.container, Container::Png);
        assert_eq!(found.prompt.as_deref(), Some(PROMPT));
        assert_eq!(found.workflow.as_deref(), Some(WORKFLOW));
        assert!(found.notes.is_empty());
    }

    #[test]
    fn png_compressed_text_is_named_not_misread() {
        let bytes = png(&[
            (b"IHDR", &[0; 13]),
            (b"zTXt", b"workflow\0\0x\x9c"),
            (b"IEND", &[]),
        ]);
        assert_eq!(
            extract(&bytes).unwrap_err().to_string(),
            "PNG chunk 'zTXt' 'workflow' at byte 33 is zlib-compressed, which wan-pilot does not \
             read (ComfyUI writes it uncompressed; save the file from ComfyUI again)"
        );
        // Compressed iTXt alongside a plain prompt: the prompt comes back, with a note.
        let bytes = png(&[
            (b"IHDR", &[0; 13]),
            (b"tEXt", &text("prompt", PROMPT.as_bytes())),
            (b"iTXt", b"workflow\0\x01\0\0\0x\x9c"),
            (b"IEND", &[]),
        ]);
        let found = extract(&bytes).unwrap();
        assert_eq!(found.prompt.as_deref(), Some(PROMPT));
        assert_eq!(found.workflow, None);
        assert!(found.notes[0].contains("iTXt"), "{:?}", found.notes);
    }

    #[test]
    fn png_latin1_text_is_decoded_with_a_note() {
        let bytes = png(&[
            (b"IHDR", &[0; 13]),
            (b"tEXt", &text("prompt", b"{\"t\": \"caf\xe9\"}")),
            (b"IEND", &[]),
        ]);
        let found = extract(&bytes).unwrap();
        assert_eq!(found.prompt.as_deref(), Some("{\"t\": \"café\"}"));
        assert!(found.notes[0].contains("Latin-1"), "{:?}", found.notes);
    }

    #[test]
    fn png_animated_only_when_actl_precedes_idat() {
        let comf = text("prompt", PROMPT.as_bytes());
        let apng = png(&[
            (b"IHDR", &[0; 13]),
            (b"acTL", &[0; 8]),
            (b"IDAT", &[0; 4]),
            (b"comf", &comf),
            (b"IEND", &[]),
        ]);
        assert_eq!(sniff(&apng), Some(Container::AnimatedPng));
        assert_eq!(extract(&apng).unwrap().container, Container::AnimatedPng);
        let late = png(&[(b"IHDR", &[0; 13]), (b"IDAT", &[0; 4]), (b"acTL", &[0; 8])]);
        assert_eq!(sniff(&late), Some(Container::Png));
    }

    #[test]
    fn png_damage_is_named_with_its_byte() {
        let mut bytes = png(&[(b"IHDR", &[0; 13]), (b"IEND", &[])]);
        bytes[37..41].copy_from_slice(b"\x00\x01\x02\x03");
        assert_eq!(
            extract(&bytes).unwrap_err().to_string(),
            "PNG chunk at byte 33: its type bytes 00 01 02 03 are not letters, so the file is \
             damaged"
        );
        let huge = png(&[(b"IHDR", &[0; 13])]);
        let mut huge = huge[..33].to_vec();
        huge.extend(0xffff_fff0u32.to_be_bytes());
        huge.extend(b"tEXt");
        assert!(
            extract(&huge)
                .unwrap_err()
                .to_string()
                .contains("over the PNG limit")
        );
    }

    // --- WebP / EXIF ---------------------------------------------------------------------------

    #[test]
    fn exif_little_endian_without_prefix_and_a_moved_workflow_tag() {
        // Two extra_pnginfo keys: the first takes 0x010F, so `workflow` lands on 0x010E.
        let exif = tiff(
            ByteOrder::Little,
            &[
                (0x010e, &format!("workflow:{WORKFLOW}")),
                (0x010f, "note:{\"a\": 1}"),
                (0x0110, &format!("prompt:{PROMPT}")),
            ],
        );
        let found = extract(&webp(&exif)).unwrap();
        assert_eq!(found.container, Container::Webp);
        assert_eq!(found.prompt.as_deref(), Some(PROMPT));
        assert_eq!(found.workflow.as_deref(), Some(WORKFLOW));
    }

    #[test]
    fn exif_big_endian_with_prefix_and_short_inline_value() {
        let mut exif = b"Exif\0\0".to_vec();
        exif.extend(tiff(
            ByteOrder::Big,
            &[(0x010f, "abc"), (0x0110, &format!("prompt:{PROMPT}"))],
        ));
        let found = extract(&webp(&exif)).unwrap();
        assert_eq!(found.prompt.as_deref(), Some(PROMPT));
        assert_eq!(found.workflow, None);
    }

    #[test]
    fn exif_entry_count_past_the_end_is_named() {
        let mut exif = tiff(ByteOrder::Big, &[(0x0110, "prompt:{}")]);
        exif[8..10].copy_from_slice(&9000u16.to_be_bytes());
        // RIFF(12) + VP8X chunk(18) + EXIF header(8) = 38; the IFD is 8 bytes into the TIFF.
        assert_eq!(
            extract(&webp(&exif)).unwrap_err().to_string(),
            "WebP EXIF at byte 46: IFD entry count 9000 runs past the end of the EXIF chunk"
        );
    }

    #[test]
    fn exif_ifd_loop_ends() {
        let mut exif = tiff(ByteOrder::Little, &[(0x0110, &format!("prompt:{PROMPT}"))]);
        // The next-IFD pointer (after the one entry) points back at IFD0.
        exif[22..26].copy_from_slice(&8u32.to_le_bytes());
        let found = extract(&webp(&exif)).unwrap();
        assert_eq!(found.prompt.as_deref(), Some(PROMPT));
        assert!(
            found.notes.iter().any(|n| n.contains("loop")),
            "{:?}",
            found.notes
        );
    }

    #[test]
    fn webp_without_exif_says_so() {
        let mut bytes = webp(&[]);
        bytes[30..34].copy_from_slice(b"XMP ");
        assert_eq!(
            extract(&bytes).unwrap_err().to_string(),
            "no ComfyUI workflow or prompt in this WebP image (it has no EXIF chunk)"
        );
    }

    // --- MP4 -----------------------------------------------------------------------------------

    #[test]
    fn mp4_mdta_keys_in_udta_meta() {
        let meta = mdta_meta(
            true,
            &[("prompt", PROMPT), ("workflow", WORKFLOW), ("encoder", "x")],
        );
        let found = extract(&mp4(&mp4_box(b"udta", &meta))).unwrap();
        assert_eq!(found.container, Container::Mp4);
        assert_eq!(found.prompt.as_deref(), Some(PROMPT));
        assert_eq!(found.workflow.as_deref(), Some(WORKFLOW));
    }

    #[test]
    fn quicktime_meta_directly_in_moov_without_version_field() {
        let meta = mdta_meta(false, &[("workflow", WORKFLOW)]);
        let found = extract(&mp4(&meta)).unwrap();
        assert_eq!(found.workflow.as_deref(), Some(WORKFLOW));
    }

    #[test]
    fn mp4_itunes_freeform_item() {
        let item = [
            mp4_box(b"mean", b"\0\0\0\0com.apple.iTunes"),
            mp4_box(b"name", b"\0\0\0\0prompt"),
            data_box(PROMPT),
        ]
        .concat();
        let meta = [
            &[0u8; 4][..],
            &mp4_box(b"hdlr", &[&[0; 8][..], b"mdir", &[0; 13]].concat()),
            &mp4_box(b"ilst", &mp4_box(b"----", &item)),
        ]
        .concat();
        let found = extract(&mp4(&mp4_box(b"udta", &mp4_box(b"meta", &meta)))).unwrap();
        assert_eq!(found.prompt.as_deref(), Some(PROMPT));
    }

    #[test]
    fn mp4_64_bit_and_to_the_end_sizes() {
        let moov = mp4_box(b"moov", &mdta_meta(true, &[("prompt", PROMPT)]));
        // A 64-bit `mdat` before `moov`, then a trailing `free` of size 0 ("to the end").
        let mut bytes = mp4_box(b"ftyp", b"isom");
        bytes.extend(1u32.to_be_bytes());
        bytes.extend(b"mdat");
        bytes.extend(20u64.to_be_bytes());
        bytes.extend([0; 4]);
        bytes.extend(moov);
        bytes.extend([0, 0, 0, 0]);
        bytes.extend(b"free");
        bytes.extend([0xaa; 5]);
        let found = extract(&bytes).unwrap();
        assert_eq!(found.prompt.as_deref(), Some(PROMPT));
        assert!(found.notes.is_empty(), "{:?}", found.notes);
    }

    #[test]
    fn mp4_box_smaller_than_its_header_is_named() {
        let mut bytes = mp4_box(b"ftyp", b"isom");
        bytes.extend(4u32.to_be_bytes());
        bytes.extend(b"moov");
        assert_eq!(
            extract(&bytes).unwrap_err().to_string(),
            "MP4 box 'moov' at byte 12: its size 4 is smaller than its 8-byte header"
        );
    }

    #[test]
    fn mp4_child_past_its_parent_is_malformed_not_cut() {
        let mut udta = mp4_box(b"udta", &mp4_box(b"meta", &[0; 8]));
        udta[11] = 200; // meta claims 200 bytes inside a 24-byte udta
        let error = extract(&mp4(&udta)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "MP4 box 'meta' at byte 32: its size 200 runs past the end of its parent 'udta'"
        );
    }

    #[test]
    fn mp4_without_moov_says_so() {
        let bytes = mp4_box(b"ftyp", b"isom");
        assert!(
            extract(&bytes)
                .unwrap_err()
                .to_string()
                .ends_with("(it has no 'moov' box, so it is cut short or was never finished)")
        );
    }

    // --- WebM ----------------------------------------------------------------------------------

    #[test]
    fn vints() {
        assert!(matches!(read_vint(&[0x81], 0, 8), Ok((0x81, 1))));
        assert!(matches!(read_vint(&[0x40, 0x02], 0, 8), Ok((0x4002, 2))));
        assert!(matches!(
            read_vint(&[0x1a, 0x45, 0xdf, 0xa3], 0, 4),
            Ok((0x1a45_dfa3, 4))
        ));
        assert!(matches!(
            read_vint(&[0x00, 0x01], 0, 8),
            Err(VintError::Invalid)
        ));
        // An ID may be at most 4 bytes.
        assert!(matches!(
            read_vint(&[0x08, 0, 0, 0, 0], 0, 4),
            Err(VintError::Invalid)
        ));
        assert!(matches!(
            read_vint(&[0x1a, 0x45], 0, 4),
            Err(VintError::Short)
        ));
        assert!(matches!(read_vint(&[], 0, 4), Err(VintError::Short)));
    }

    #[test]
    fn element_sizes_known_and_unknown() {
        let known = read_element(&[0xec, 0x88], 0, 2).unwrap();
        assert_eq!((known.id, known.size, known.data_start), (0xec, Some(8), 2));
        let unknown = read_element(&[0xec, 0xff], 0, 2).unwrap();
        assert_eq!(unknown.size, None);
        let unknown8 = read_element(
            &[0xec, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            0,
            9,
        )
        .unwrap();
        assert_eq!(unknown8.size, None);
        // All ones only in the value bits of a longer field is a real size.
        let big = read_element(&[0xec, 0x40, 0x7f], 0, 3).unwrap();
        assert_eq!(big.size, Some(0x7f));
    }

    #[test]
    fn webm_tags_any_case_and_comment_fallback() {
        let found = extract(&webm(&[("prompt", PROMPT), ("WORKFLOW", WORKFLOW)])).unwrap();
        assert_eq!(found.container, Container::Webm);
        assert_eq!(found.prompt.as_deref(), Some(PROMPT));
        assert_eq!(found.workflow.as_deref(), Some(WORKFLOW));

        // VideoHelperSuite: prompt as a JSON string inside the comment, workflow as an object.
        let comment = serde_json::json!({
            "prompt": PROMPT,
            "workflow": serde_json::from_str::<Value>(WORKFLOW).unwrap(),
        })
        .to_string();
        let found = extract(&webm(&[("ENCODER", "Lavf"), ("COMMENT", &comment)])).unwrap();
        assert_eq!(found.prompt.as_deref(), Some(PROMPT));
        let workflow: Value = serde_json::from_str(found.workflow.as_deref().unwrap()).unwrap();
        assert_eq!(workflow, serde_json::from_str::<Value>(WORKFLOW).unwrap());
        assert!(found.notes[0].contains("VideoHelperSuite"));
    }

    #[test]
    fn direct_keys_win_over_the_comment() {
        let comment = serde_json::json!({"prompt": r#"{"9": {}}"#}).to_string();
        let found = extract(&webm(&[("COMMENT", &comment), ("PROMPT", PROMPT)])).unwrap();
        assert_eq!(found.prompt.as_deref(), Some(PROMPT));
        assert!(found.notes.is_empty(), "{:?}", found.notes);
    }

    #[test]
    fn a_comment_that_is_not_a_graph_is_ignored() {
        let comment = r#"{"prompt": "a cat in the snow"}"#;
        let error = extract(&webm(&[("COMMENT", comment)])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "no ComfyUI workflow or prompt in this WebM video \
             (its Tags have no PROMPT or WORKFLOW SimpleTag)"
        );
    }

    #[test]
    fn webm_invalid_id_is_named() {
        let mut bytes = webm(&[("PROMPT", PROMPT)]);
        // EBML header (26 bytes), Segment header (12): the first byte of Tags becomes 0x00,
        // never a valid ID.
        bytes[38] = 0;
        assert_eq!(
            extract(&bytes).unwrap_err().to_string(),
            "WebM element at byte 38: its ID is not a valid EBML number, so the file is damaged"
        );
    }
}
