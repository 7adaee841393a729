//! Model files in a ComfyUI install: the folders ComfyUI searches for each loader, a file found by
//! the name a loader node uses, and its safetensors or GGUF header — read without the weights.
//!
//! ComfyUI (`folder_paths.py`, `utils/extra_config.py`) searches, per kind of model, its own
//! `models/<folder>` and every folder that `extra_model_paths.yaml` in its install folder adds:
//! sections (`comfyui:`, `a111:`, …) with an optional `base_path`, an optional `is_default`, and
//! folder keys whose value is one path or several, one per line of a `|` block, relative to
//! `base_path` (which is itself relative to the YAML file's folder). Folders of an `is_default`
//! section go before ComfyUI's own, the others after. The legacy keys `unet` and `clip` add to
//! `diffusion_models` and `text_encoders`.
//!
//! The YAML reader here knows exactly that subset — block mappings two levels deep, plain,
//! single- and double-quoted scalars, `|` block scalars, `#` comments — and says, with the line,
//! what it does not know, rather than guessing.
//!
//! I/O: reads the YAML file, tests which candidate paths are files, and reads model headers.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use crate::budget::weights::{self, WeightsError, WeightsHeader, WeightsSummary};

/// The file ComfyUI reads from its install folder at start-up for extra model folders.
pub const EXTRA_MODEL_PATHS_FILE: &str = "extra_model_paths.yaml";

/// Bytes read first for a header: more than any Wan safetensors header (about 150 KB for a 14B
/// DiT) and most GGUF headers.
pub const FIRST_READ_BYTES: u64 = 1 << 20;

/// The most bytes read for one header; a file whose header claims more is refused.
pub const MAX_HEADER_READ_BYTES: u64 = 256 << 20;

/// `extra_model_paths.yaml` files larger than this are refused before reading.
const MAX_YAML_BYTES: u64 = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Folder kinds

/// A kind of model folder, as ComfyUI registers them; each loader searches one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelFolder {
    /// `diffusion_models` (and the legacy `unet`): `UNETLoader`, `UnetLoaderGGUF`,
    /// `WanVideoModelLoader`.
    DiffusionModels,
    /// `text_encoders` (and the legacy `clip`): `CLIPLoader`, `LoadWanVideoT5TextEncoder`.
    TextEncoders,
    /// `vae`: `VAELoader`, `WanVideoVAELoader`.
    Vae,
    /// `loras`: `LoraLoader`, `LoraLoaderModelOnly`, `WanVideoLoraSelect`.
    Loras,
    /// `clip_vision`: `CLIPVisionLoader`.
    ClipVision,
    /// `audio_encoders`: `AudioEncoderLoader` (S2V).
    AudioEncoders,
}

impl ModelFolder {
    /// Every kind, in the order an unknown loader's file is searched for.
    pub const ALL: [ModelFolder; 6] = [
        Self::DiffusionModels,
        Self::TextEncoders,
        Self::Vae,
        Self::Loras,
        Self::ClipVision,
        Self::AudioEncoders,
    ];

    /// The folder names of this kind, in the order ComfyUI searches them under `models/`; an
    /// `extra_model_paths.yaml` key may be any of them.
    pub fn folder_names(self) -> &'static [&'static str] {
        match self {
            Self::DiffusionModels => &["unet", "diffusion_models"],
            Self::TextEncoders => &["text_encoders", "clip"],
            Self::Vae => &["vae"],
            Self::Loras => &["loras"],
            Self::ClipVision => &["clip_vision"],
            Self::AudioEncoders => &["audio_encoders"],
        }
    }

    /// The kind a loader node searches; `None` for a loader this code does not know (then every
    /// kind is searched).
    pub fn for_loader(class_type: &str) -> Option<Self> {
        Some(match class_type {
            "UNETLoader" | "UnetLoaderGGUF" | "UnetLoaderGGUFAdvanced" | "WanVideoModelLoader" => {
                Self::DiffusionModels
            }
            "CLIPLoader"
            | "DualCLIPLoader"
            | "CLIPLoaderGGUF"
            | "DualCLIPLoaderGGUF"
            | "LoadWanVideoT5TextEncoder" => Self::TextEncoders,
            "VAELoader" | "WanVideoVAELoader" => Self::Vae,
            "LoraLoader" | "LoraLoaderModelOnly" | "WanVideoLoraSelect" => Self::Loras,
            "CLIPVisionLoader" => Self::ClipVision,
            "AudioEncoderLoader" => Self::AudioEncoders,
            _ => return None,
        })
    }

    fn for_key(key: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.folder_names().contains(&key))
    }
}

// ---------------------------------------------------------------------------------------------
// Where ComfyUI looks

/// Why the model folders of a ComfyUI install could not be worked out; names the file (and line).
#[derive(Debug, thiserror::Error)]
pub enum ModelPathsError {
    #[error(
        "{}: not a folder; give ComfyUI's install folder (the one with main.py and models/)",
        path.display()
    )]
    NotAFolder { path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}: larger than {max} bytes, too large for an extra_model_paths.yaml", path.display())]
    TooLarge { path: PathBuf, max: u64 },
    #[error("{}:{line}: {reason}", path.display())]
    Yaml {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// The folders a ComfyUI install searches for each kind of model, in its order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFolders {
    search: Vec<(ModelFolder, Vec<PathBuf>)>,
}

impl ModelFolders {
    /// The folders of the install at `comfy_dir`: its `models/…`, and those its
    /// `extra_model_paths.yaml` adds when there is one.
    pub fn locate(comfy_dir: &Path) -> Result<Self, ModelPathsError> {
        if !comfy_dir.is_dir() {
            return Err(ModelPathsError::NotAFolder {
                path: comfy_dir.to_path_buf(),
            });
        }
        let yaml_path = comfy_dir.join(EXTRA_MODEL_PATHS_FILE);
        let sections = match read_small_text(&yaml_path)? {
            Some(text) => parse_extra_model_paths(&text).map_err(|e| ModelPathsError::Yaml {
                path: yaml_path.clone(),
                line: e.line,
                reason: e.reason,
            })?,
            None => Vec::new(),
        };
        Ok(Self::from_sections(comfy_dir, &sections, |name| {
            std::env::var(name).ok()
        }))
    }

    /// The folders from already parsed sections of a YAML file that sits in `comfy_dir`;
    /// `env` answers for `~` (`HOME`) and `$VAR` in a `base_path`. Touches no file.
    pub fn from_sections(
        comfy_dir: &Path,
        sections: &[ExtraPathsSection],
        env: impl Fn(&str) -> Option<String>,
    ) -> Self {
        let models = comfy_dir.join("models");
        let mut search: Vec<(ModelFolder, Vec<PathBuf>)> = ModelFolder::ALL
            .into_iter()
            .map(|kind| {
                let dirs = kind.folder_names().iter().map(|n| models.join(n)).collect();
                (kind, dirs)
            })
            .collect();
        for section in sections {
            let base = section
                .base_path
                .as_deref()
                .filter(|b| !b.is_empty())
                .map(|b| comfy_dir.join(expand_user_and_vars(b, &env)));
            for (key, lines) in &section.folders {
                let Some(kind) = ModelFolder::for_key(key) else {
                    continue;
                };
                let Some((_, dirs)) = search.iter_mut().find(|(k, _)| *k == kind) else {
                    continue;
                };
                for line in lines {
                    // `Path::join` keeps an absolute line as it is, like Python's os.path.join.
                    let dir = normalize(&base.as_deref().unwrap_or(comfy_dir).join(line));
                    // As `folder_paths.add_model_folder_path`: a default folder moves to the
                    // front, another one already listed keeps its place.
                    let known = dirs.contains(&dir);
                    if section.is_default {
                        dirs.retain(|d| *d != dir);
                        dirs.insert(0, dir);
                    } else if !known {
                        dirs.push(dir);
                    }
                }
            }
        }
        Self { search }
    }

    /// The folders searched for `kind`, in order; every kind's when `None`.
    pub fn dirs(&self, kind: Option<ModelFolder>) -> Vec<&Path> {
        let mut dirs: Vec<&Path> = Vec::new();
        for (k, list) in &self.search {
            if kind.is_none_or(|wanted| wanted == *k) {
                for dir in list {
                    if !dirs.contains(&dir.as_path()) {
                        dirs.push(dir);
                    }
                }
            }
        }
        dirs
    }

    /// The file a loader of `kind` (`None`: unknown, search all) finds under `name`, the name as
    /// the workflow holds it (subfolders with `/`, or `\` as a Windows workflow writes them).
    /// `None` when no folder holds it: not an error, the caller falls back to the name.
    pub fn find(&self, name: &str, kind: Option<ModelFolder>) -> Option<PathBuf> {
        let candidates = name_candidates(name);
        self.dirs(kind)
            .into_iter()
            .flat_map(|dir| candidates.iter().map(move |rel| dir.join(rel)))
            .find(|path| path.is_file())
    }
}

/// `a/./b/../c` → `a/c`, without touching the disk, as Python's `os.path.normpath` (which
/// ComfyUI applies to every folder) does.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                let last = out.components().next_back();
                match last {
                    Some(Component::Normal(_)) => {
                        out.pop();
                    }
                    Some(Component::RootDir | Component::Prefix(_)) => {}
                    _ => out.push(".."),
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// The relative paths a loader's file name may stand for: as written (on Unix a `\` may be part
/// of a file name), and with `\` as a separator. Like ComfyUI's
/// `os.path.relpath(os.path.join("/", name), "/")`, a name cannot climb out of its folder.
fn name_candidates(name: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for parts in [
        name.split('/').collect::<Vec<_>>(),
        name.split(['/', '\\']).collect(),
    ] {
        let mut kept: Vec<&str> = Vec::new();
        for part in parts {
            match part {
                "" | "." => {}
                ".." => {
                    kept.pop();
                }
                _ => kept.push(part),
            }
        }
        let path: PathBuf = kept.iter().collect();
        // A part such as `C:` would make the join absolute on Windows.
        let is_relative = path.components().all(|c| matches!(c, Component::Normal(_)));
        if !kept.is_empty() && is_relative && !out.contains(&path) {
            out.push(path);
        }
    }
    out
}

/// `~` and `$VAR` / `${VAR}` in a `base_path`, as Python's `expanduser` and `expandvars` do
/// (unknown variables stay as written).
fn expand_user_and_vars(text: &str, env: &impl Fn(&str) -> Option<String>) -> String {
    let text = match text.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with(['/', '\\']) => {
            match env("HOME").or_else(|| env("USERPROFILE")) {
                Some(home) => format!("{home}{rest}"),
                None => text.to_string(),
            }
        }
        _ => text.to_string(),
    };
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, written_len) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after.find(|c: char| !is_name(c)).unwrap_or(after.len());
            (&after[..end], end)
        };
        match env(name).filter(|_| !name.is_empty()) {
            Some(value) => out.push_str(&value),
            None => {
                out.push('$');
                out.push_str(&after[..written_len]);
            }
        }
        rest = &after[written_len..];
    }
    out.push_str(rest);
    out
}

/// A small text file, or `None` when there is none.
fn read_small_text(path: &Path) -> Result<Option<String>, ModelPathsError> {
    let read_error = |source| ModelPathsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_error(e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_YAML_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_YAML_BYTES {
        return Err(ModelPathsError::TooLarge {
            path: path.to_path_buf(),
            max: MAX_YAML_BYTES,
        });
    }
    String::from_utf8(bytes).map(Some).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        ModelPathsError::Yaml {
            path: path.to_path_buf(),
            line,
            reason: "not UTF-8 text".into(),
        }
    })
}

// ---------------------------------------------------------------------------------------------
// The YAML subset

/// One top-level section of `extra_model_paths.yaml`, as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtraPathsSection {
    pub name: String,
    /// 1-based line of the section's key.
    pub line: usize,
    pub base_path: Option<String>,
    pub is_default: bool,
    /// Every other key in file order with its paths: the value's lines, trimmed, empty ones
    /// dropped (ComfyUI splits the value on newlines).
    pub folders: Vec<(String, Vec<String>)>,
}

/// What the YAML reader could not read, and on which line (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct YamlError {
    pub line: usize,
    pub reason: String,
}

fn yaml_error(line: usize, reason: impl Into<String>) -> YamlError {
    YamlError {
        line,
        reason: reason.into(),
    }
}

/// A scalar value: `None` for an empty (null) one; `is_plain` when written without quotes.
struct Scalar {
    text: Option<String>,
    is_plain: bool,
}

/// Reads `extra_model_paths.yaml`: top-level keys are sections; their keys, indented alike, hold
/// plain, quoted (`'…'`, `"…"`) or `|` block values. Anything else (lists, flow collections,
/// anchors, folded `>` blocks, deeper nesting, tabs in indentation) is an error with its line.
/// A repeated key replaces the earlier one, as in PyYAML.
pub fn parse_extra_model_paths(text: &str) -> Result<Vec<ExtraPathsSection>, YamlError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.lines().collect();
    let mut sections: Vec<ExtraPathsSection> = Vec::new();
    // The indentation of the open section's keys, once seen.
    let mut key_indent: Option<usize> = None;
    let mut i = 0;
    while i < lines.len() {
        let line_no = i + 1;
        let line = lines[i];
        i += 1;
        let indent = line.len() - line.trim_start_matches(' ').len();
        let content = line[indent..].trim_end();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if content.starts_with('\t') {
            return Err(yaml_error(
                line_no,
                "a tab in the indentation: YAML indents with spaces",
            ));
        }
        if indent == 0 && (content == "---" || content.starts_with("--- ")) {
            if sections.is_empty() {
                continue;
            }
            return Err(yaml_error(
                line_no,
                "a second YAML document (`---`): ComfyUI reads only one",
            ));
        }
        if indent == 0 && content == "..." {
            break;
        }
        let (key, rest) = split_key(content, line_no)?;
        if indent == 0 {
            let value = parse_scalar(rest, line_no)?;
            if value.text.is_some() {
                return Err(yaml_error(
                    line_no,
                    format!(
                        "`{key}` at the top level must be a section: `{key}:` alone on its line, with `base_path:` and folder keys indented below it"
                    ),
                ));
            }
            sections.retain(|s| s.name != key);
            sections.push(ExtraPathsSection {
                name: key.to_string(),
                line: line_no,
                ..ExtraPathsSection::default()
            });
            key_indent = None;
            continue;
        }
        let Some(section) = sections.last_mut() else {
            return Err(yaml_error(
                line_no,
                format!("`{key}` is indented but not inside a section"),
            ));
        };
        match key_indent {
            None => key_indent = Some(indent),
            Some(expected) if indent > expected => {
                return Err(yaml_error(
                    line_no,
                    format!(
                        "`{key}` is indented more than the keys above it: nested mappings are not supported here (a value spanning lines needs `|`)"
                    ),
                ));
            }
            Some(expected) if indent < expected => {
                return Err(yaml_error(
                    line_no,
                    format!(
                        "`{key}` is indented less than the keys above it ({indent} spaces, not {expected})"
                    ),
                ));
            }
            Some(_) => {}
        }
        let value = if rest.starts_with('|') {
            let (block, next) = block_scalar(rest, &lines, i, indent, line_no)?;
            i = next;
            Scalar {
                text: Some(block),
                is_plain: false,
            }
        } else {
            parse_scalar(rest, line_no)?
        };
        match key {
            "base_path" => section.base_path = value.text.map(|t| t.trim().to_string()),
            "is_default" => section.is_default = parse_bool(&value, line_no)?,
            _ => {
                let paths = value
                    .text
                    .iter()
                    .flat_map(|t| t.split('\n'))
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect();
                section.folders.retain(|(k, _)| k != key);
                section.folders.push((key.to_string(), paths));
            }
        }
    }
    Ok(sections)
}

/// `key: rest` (or `key:` alone) → the key and what follows the colon, trimmed.
fn split_key(content: &str, line_no: usize) -> Result<(&str, &str), YamlError> {
    if content == "-" || content.starts_with("- ") {
        return Err(yaml_error(
            line_no,
            "lists (`- …`) are not supported here: give one path, or several on the lines of a `|` block",
        ));
    }
    if content.starts_with([
        '"', '\'', '?', '[', '{', '&', '*', '!', '|', '>', '%', '@', '`',
    ]) {
        return Err(yaml_error(
            line_no,
            format!("expected `key: value`, found `{content}`"),
        ));
    }
    let colon = content
        .char_indices()
        .find(|&(at, c)| {
            c == ':' && (content[at + 1..].is_empty() || content[at + 1..].starts_with([' ', '\t']))
        })
        .map(|(at, _)| at);
    match colon {
        Some(at) if !content[..at].trim().is_empty() => {
            Ok((content[..at].trim_end(), content[at + 1..].trim()))
        }
        _ => Err(yaml_error(
            line_no,
            format!("expected `key: value`, found `{content}`"),
        )),
    }
}

/// A one-line value: empty, plain, or quoted, with an optional `# comment` after it.
fn parse_scalar(rest: &str, line_no: usize) -> Result<Scalar, YamlError> {
    if rest.is_empty() || rest.starts_with('#') || rest == "~" || rest == "null" {
        return Ok(Scalar {
            text: None,
            is_plain: true,
        });
    }
    let (text, after) = match rest.chars().next() {
        Some('\'') => single_quoted(rest, line_no)?,
        Some('"') => double_quoted(rest, line_no)?,
        Some('>') => {
            return Err(yaml_error(
                line_no,
                "folded blocks (`>`) are not supported: use `|` with one path per line",
            ));
        }
        Some('[' | '{') => {
            return Err(yaml_error(
                line_no,
                "flow lists and mappings (`[…]`, `{…}`) are not supported: give one path, or several on the lines of a `|` block",
            ));
        }
        Some(c @ ('&' | '*' | '!' | '%' | '@' | '`')) => {
            return Err(yaml_error(
                line_no,
                format!(
                    "a value starting with `{c}` (anchors, aliases, tags) is not supported: quote it"
                ),
            ));
        }
        _ => {
            let end = rest
                .char_indices()
                .find(|&(at, c)| c == '#' && rest[..at].ends_with([' ', '\t']))
                .map_or(rest.len(), |(at, _)| at);
            let plain = rest[..end].trim_end();
            if plain.contains(": ") || plain.ends_with(':') {
                return Err(yaml_error(
                    line_no,
                    format!("`{plain}` holds `: `, which YAML reads as a mapping: quote the value"),
                ));
            }
            return Ok(Scalar {
                text: Some(plain.to_string()),
                is_plain: true,
            });
        }
    };
    let after = after.trim_start();
    if !after.is_empty() && !after.starts_with('#') {
        return Err(yaml_error(
            line_no,
            format!("unexpected `{after}` after the quoted value"),
        ));
    }
    Ok(Scalar {
        text: Some(text),
        is_plain: false,
    })
}

/// `'…'` with `''` for a quote; returns the text and what follows the closing quote.
fn single_quoted(rest: &str, line_no: usize) -> Result<(String, &str), YamlError> {
    let body = &rest[1..];
    let mut text = String::new();
    let mut chars = body.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c == '\'' {
            if chars.peek().is_some_and(|&(_, next)| next == '\'') {
                chars.next();
                text.push('\'');
            } else {
                return Ok((text, &body[at + 1..]));
            }
        } else {
            text.push(c);
        }
    }
    Err(yaml_error(
        line_no,
        "a single-quoted value without its closing `'` (values spanning lines need `|`)",
    ))
}

/// `"…"` with YAML's escapes; returns the text and what follows the closing quote.
fn double_quoted(rest: &str, line_no: usize) -> Result<(String, &str), YamlError> {
    let body = &rest[1..];
    let mut text = String::new();
    let mut chars = body.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Ok((text, &body[at + 1..])),
            '\\' => {
                let escaped = match chars.next().map(|(_, e)| e) {
                    Some('\\') => '\\',
                    Some('"') => '"',
                    Some('/') => '/',
                    Some(' ') => ' ',
                    Some('t') => '\t',
                    Some('n') => '\n',
                    Some('r') => '\r',
                    Some('0') => '\0',
                    Some('x' | 'u' | 'U') => {
                        return Err(yaml_error(
                            line_no,
                            "numeric escapes (`\\x`, `\\u`) are not supported; for a Windows path use single quotes or `/`",
                        ));
                    }
                    Some(other) => {
                        return Err(yaml_error(
                            line_no,
                            format!(
                                "`\\{other}` is not a YAML escape; for a Windows path use single quotes ('C:\\models') or `/`, or double the backslash"
                            ),
                        ));
                    }
                    None => break,
                };
                text.push(escaped);
            }
            _ => text.push(c),
        }
    }
    Err(yaml_error(
        line_no,
        "a double-quoted value without its closing `\"` (values spanning lines need `|`)",
    ))
}

/// A `|` block scalar whose header is `rest` on the key's line (`key_indent`); its lines start at
/// `lines[start]`. Returns the text (lines joined by `\n`) and the index of the first line after.
fn block_scalar(
    rest: &str,
    lines: &[&str],
    start: usize,
    key_indent: usize,
    line_no: usize,
) -> Result<(String, usize), YamlError> {
    let header = &rest[1..];
    let (indicators, comment) = match header.find(char::is_whitespace) {
        Some(at) => (&header[..at], header[at..].trim_start()),
        None => (header, ""),
    };
    if !comment.is_empty() && !comment.starts_with('#') {
        return Err(yaml_error(
            line_no,
            format!("unexpected `{comment}` after `|`: the block's lines go below it, indented"),
        ));
    }
    let mut explicit_indent = None;
    for c in indicators.chars() {
        match c {
            '-' | '+' => {}
            '1'..='9' if explicit_indent.is_none() => {
                explicit_indent = c.to_digit(10).map(|d| key_indent + d as usize);
            }
            _ => {
                return Err(yaml_error(
                    line_no,
                    format!(
                        "`|{indicators}` is not a block header this reader knows (`|`, `|-`, `|+`)"
                    ),
                ));
            }
        }
    }
    let is_blank = |l: &str| l.trim_start_matches(' ').is_empty();
    let indent_of = |l: &str| l.len() - l.trim_start_matches(' ').len();
    let block_indent = explicit_indent.or_else(|| {
        lines[start.min(lines.len())..]
            .iter()
            .find(|l| !is_blank(l))
            .map(|l| indent_of(l))
            .filter(|&n| n > key_indent)
    });
    let Some(block_indent) = block_indent else {
        return Ok((String::new(), start));
    };
    let mut text_lines = Vec::new();
    let mut next = start;
    while let Some(line) = lines.get(next) {
        if is_blank(line) {
            text_lines.push("");
        } else if indent_of(line) >= block_indent {
            text_lines.push(&line[block_indent..]);
        } else {
            break;
        }
        next += 1;
    }
    Ok((text_lines.join("\n"), next))
}

/// `is_default`: YAML 1.1's booleans (what PyYAML reads), or empty for false.
fn parse_bool(value: &Scalar, line_no: usize) -> Result<bool, YamlError> {
    let Some(text) = &value.text else {
        return Ok(false);
    };
    if value.is_plain {
        match text.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => return Ok(true),
            "false" | "no" | "off" => return Ok(false),
            _ => {}
        }
    }
    Err(yaml_error(
        line_no,
        format!("`is_default` must be true or false (without quotes), not `{text}`"),
    ))
}

// ---------------------------------------------------------------------------------------------
// Headers

/// Why a model file's header could not be read; names the file.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}: not a file", path.display())]
    NotAFile { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Header { path: PathBuf, source: WeightsError },
    #[error(
        "{}: the file ends at byte {file_bytes}, inside its header (which needs at least {needed} bytes): too short to be a model, or a download that did not finish",
        path.display()
    )]
    Truncated {
        path: PathBuf,
        needed: u64,
        file_bytes: u64,
    },
    #[error(
        "{}: the header needs {needed} bytes, more than the {max} read at most: not a model file, or a corrupt one",
        path.display()
    )]
    HeaderTooLarge {
        path: PathBuf,
        needed: u64,
        max: u64,
    },
}

/// A model file's header, as read from disk.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelHeader {
    pub path: PathBuf,
    /// The file's size on disk.
    pub file_bytes: u64,
    pub header: WeightsHeader,
    pub summary: WeightsSummary,
}

impl ModelHeader {
    /// Whether the file is shorter than its header says (a download that stopped part-way):
    /// ComfyUI would fail to load it.
    pub fn is_truncated(&self) -> bool {
        let data_end = self
            .header
            .tensors
            .iter()
            .map(|t| t.data_offset.saturating_add(t.data_bytes))
            .max()
            .unwrap_or(0);
        self.header.header_bytes.saturating_add(data_end) > self.file_bytes
    }
}

/// Reads the safetensors or GGUF header of the file at `path`, never its weights: the first
/// [`FIRST_READ_BYTES`], then more while the parser asks for more, up to
/// [`MAX_HEADER_READ_BYTES`].
pub fn read_header(path: &Path) -> Result<ModelHeader, ModelFileError> {
    let read_error = |source| ModelFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(read_error)?;
    let metadata = file.metadata().map_err(read_error)?;
    if !metadata.is_file() {
        return Err(ModelFileError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let file_bytes = metadata.len();
    let mut bytes = Vec::new();
    let mut want = FIRST_READ_BYTES;
    loop {
        let missing = want.saturating_sub(bytes.len() as u64);
        (&mut file)
            .take(missing)
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        let have = bytes.len() as u64;
        match weights::parse_header(&bytes) {
            Ok(header) => {
                let summary = header.summary();
                return Ok(ModelHeader {
                    path: path.to_path_buf(),
                    file_bytes,
                    header,
                    summary,
                });
            }
            Err(WeightsError::TooShort { needed, .. }) if needed > have => {
                if have < want {
                    // The file ended before what was asked for.
                    return Err(ModelFileError::Truncated {
                        path: path.to_path_buf(),
                        needed,
                        file_bytes: have,
                    });
                }
                if needed > MAX_HEADER_READ_BYTES {
                    return Err(ModelFileError::HeaderTooLarge {
                        path: path.to_path_buf(),
                        needed,
                        max: MAX_HEADER_READ_BYTES,
                    });
                }
                // GGUF's `needed` is a lower bound: grow at least twofold to keep reads few.
                want = needed
                    .max(have.saturating_mul(2))
                    .min(MAX_HEADER_READ_BYTES);
            }
            Err(source) => {
                return Err(ModelFileError::Header {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<ExtraPathsSection> {
        parse_extra_model_paths(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    fn error(text: &str) -> YamlError {
        match parse_extra_model_paths(text) {
            Ok(s) => panic!("expected an error, got {s:?}"),
            Err(e) => e,
        }
    }

    fn folders(pairs: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|p| p.to_string()).collect()))
            .collect()
    }

    #[test]
    fn reads_comfyuis_example_file() {
        // The shape of ComfyUI's extra_model_paths.yaml.example, shortened.
        let text = "\
#Rename this to extra_model_paths.yaml and ComfyUI will load it


#config for a1111 ui
#all you have to do is change the base_path to where yours is installed
a111:
    base_path: path/to/stable-diffusion-webui/

    checkpoints: models/Stable-diffusion
    configs: models/Stable-diffusion
    vae: models/VAE
    loras: |
         models/Lora
         models/LyCORIS
    upscale_models: |
                  models/ESRGAN
                  models/RealESRGAN
                  models/SwinIR
    embeddings: embeddings
    hypernetworks: models/hypernetworks
    controlnet: models/ControlNet

#comfyui:
#     base_path: path/to/comfyui/
#     # You can use is_default to mark that these folders should be listed first
#     is_default: true
#     checkpoints: models/checkpoints/
";
        let sections = parse(text);
        assert_eq!(sections.len(), 1);
        let a111 = &sections[0];
        assert_eq!(a111.name, "a111");
        assert_eq!(a111.line, 6);
        assert_eq!(
            a111.base_path.as_deref(),
            Some("path/to/stable-diffusion-webui/")
        );
        assert!(!a111.is_default);
        assert_eq!(a111.folders.len(), 8);
        assert_eq!(a111.folders[2], folders(&[("vae", &["models/VAE"])])[0]);
        assert_eq!(
            a111.folders[3],
            folders(&[("loras", &["models/Lora", "models/LyCORIS"])])[0]
        );
        assert_eq!(a111.folders[4].1.len(), 3);
        assert_eq!(a111.folders[5].1, vec!["embeddings"]);
    }

    #[test]
    fn quotes_comments_defaults_and_block_variants() {
        let text = "\
comfyui:   # the shared drive
  base_path: '/mnt/models/it''s here'   # single quotes
  is_default: True
  diffusion_models: \"WAN/diffusion # not a comment\"
  unet: plain/path#not-a-comment # a comment
  text_encoders: |-   # strip the final newline

    te/one

    te/two
  clip:
  vae: ~
second:
  base_path: \"C:\\\\ComfyUI\\\\models\"
  loras: |2
     indented/more
";
        let sections = parse(text);
        assert_eq!(sections.len(), 2);
        let c = &sections[0];
        assert_eq!(c.base_path.as_deref(), Some("/mnt/models/it's here"));
        assert!(c.is_default);
        assert_eq!(
            c.folders,
            folders(&[
                ("diffusion_models", &["WAN/diffusion # not a comment"]),
                ("unet", &["plain/path#not-a-comment"]),
                ("text_encoders", &["te/one", "te/two"]),
                ("clip", &[]),
                ("vae", &[]),
            ])
        );
        let s = &sections[1];
        assert_eq!(s.line, 13);
        assert_eq!(s.base_path.as_deref(), Some("C:\\ComfyUI\\models"));
        assert_eq!(s.folders, folders(&[("loras", &["indented/more"])]));
    }

    #[test]
    fn block_ends_at_the_next_key_and_keeps_hash_lines_as_text() {
        // In a `|` block a `#` line is text (PyYAML gives it to ComfyUI as a path).
        let text = "s:\n  loras: |\n    a\n    # b\n\n  vae: v\n# trailing comment\n";
        let sections = parse(text);
        assert_eq!(
            sections[0].folders,
            folders(&[("loras", &["a", "# b"]), ("vae", &["v"])])
        );
    }

    #[test]
    fn empty_files_sections_and_repeats() {
        assert!(parse("").is_empty());
        assert!(parse("# nothing\n\n").is_empty());
        let sections = parse("---\na:\nb:\n  vae: x\n  vae: y\nb:\n  loras: z\n");
        assert_eq!(sections.len(), 2, "{sections:?}");
        assert_eq!(sections[0].name, "a");
        assert!(sections[0].folders.is_empty());
        // The second `b` replaces the first, as PyYAML does.
        assert_eq!(sections[1].folders, folders(&[("loras", &["z"])]));
        let crlf = parse("a:\r\n  vae: x\r\n");
        assert_eq!(crlf[0].folders, folders(&[("vae", &["x"])]));
    }

    #[test]
    fn what_it_does_not_read_is_an_error_with_the_line() {
        let cases: [(&str, usize, &str); 14] = [
            ("a:\n  vae: [x, y]\n", 2, "flow lists"),
            ("a:\n  vae:\n    - x\n", 3, "lists"),
            ("a:\n  vae: >\n    x\n", 2, "folded"),
            ("a:\n  b:\n    vae: x\n", 3, "nested"),
            ("a:\n    vae: x\n  loras: y\n", 3, "indented less"),
            ("vae: models/vae\n", 1, "must be a section"),
            ("  vae: x\n", 1, "not inside a section"),
            ("a:\n  vae: 'x\n", 2, "closing `'`"),
            ("a:\n  vae: \"x\n", 2, "closing `\"`"),
            ("a:\n  base_path: \"C:\\ComfyUI\"\n", 2, "single quotes"),
            ("a:\n  is_default: maybe\n", 2, "true or false"),
            ("a:\n\tvae: x\n", 2, "tab"),
            ("a:\n  just text\n", 2, "expected `key: value`"),
            ("a:\n  vae: C: /x\n", 2, "quote the value"),
        ];
        for (text, line, what) in cases {
            let e = error(text);
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.reason.contains(what), "{text:?}: {e}");
        }
    }

    #[test]
    fn folders_follow_comfyuis_order() {
        let sections = parse(
            "extra:\n  base_path: ../shared\n  unet: wan\n  checkpoints: ckpt\nfirst:\n  base_path: /fast\n  is_default: true\n  diffusion_models: dm\n  clip: |\n    te\n",
        );
        let comfy = Path::new("/opt/ComfyUI");
        let folders = ModelFolders::from_sections(comfy, &sections, |_| None);
        let dirs = folders.dirs(Some(ModelFolder::DiffusionModels));
        assert_eq!(
            dirs,
            vec![
                Path::new("/fast/dm"),
                Path::new("/opt/ComfyUI/models/unet"),
                Path::new("/opt/ComfyUI/models/diffusion_models"),
                Path::new("/opt/shared/wan"),
            ]
        );
        assert_eq!(
            folders.dirs(Some(ModelFolder::TextEncoders)),
            vec![
                Path::new("/fast/te"),
                Path::new("/opt/ComfyUI/models/text_encoders"),
                Path::new("/opt/ComfyUI/models/clip"),
            ]
        );
        // Every kind when the loader is unknown; `checkpoints` is not one wan-pilot reads.
        let all = folders.dirs(None);
        assert_eq!(all.len(), 4 + 3 + 4);
        assert!(!all.iter().any(|d| d.ends_with("ckpt")));
    }

    #[test]
    fn base_paths_expand_home_and_variables() {
        let env = |name: &str| match name {
            "HOME" => Some("/home/ann".to_string()),
            "MODELS" => Some("/data/models".to_string()),
            _ => None,
        };
        assert_eq!(expand_user_and_vars("~/ai", &env), "/home/ann/ai");
        assert_eq!(expand_user_and_vars("~bob/ai", &env), "~bob/ai");
        assert_eq!(
            expand_user_and_vars("$MODELS/wan", &env),
            "/data/models/wan"
        );
        assert_eq!(
            expand_user_and_vars("${MODELS}x/$NOPE/${NOPE}/$", &env),
            "/data/modelsx/$NOPE/${NOPE}/$"
        );
        let sections = parse("a:\n  base_path: ~/comfy\n  vae: v\nb:\n  vae: /abs/v\n");
        let folders = ModelFolders::from_sections(Path::new("/c"), &sections, env);
        assert_eq!(
            folders.dirs(Some(ModelFolder::Vae)),
            vec![
                Path::new("/c/models/vae"),
                Path::new("/home/ann/comfy/v"),
                Path::new("/abs/v"),
            ]
        );
    }

    #[test]
    fn hostile_text_is_an_error_or_a_result_never_a_panic() {
        // Cut and spliced bits of a real file, and odd characters, at seeded random.
        let pieces = [
            "a111:\n",
            "  base_path: ",
            "'q''x'",
            "\"C:\\\\x\\u00e9\"",
            " # c\n",
            "  loras: |",
            "|2-",
            "\n     p/ä\n",
            "\t",
            "  ",
            "\r\n",
            ":",
            "- ",
            "${HOME",
            "~",
            "é: ",
            ">",
            "\u{feff}",
            "    vae: [x]\n",
            "\n",
            "is_default: ",
            "yes",
            "\"",
            "'",
            "#",
        ];
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        for _ in 0..5_000 {
            let mut text = String::new();
            for _ in 0..12 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                text.push_str(pieces[(state % pieces.len() as u64) as usize]);
            }
            if let Ok(sections) = parse_extra_model_paths(&text) {
                let _ = ModelFolders::from_sections(Path::new("/c"), &sections, |_| None);
            }
        }
    }

    #[test]
    fn folders_are_normalized_like_normpath() {
        assert_eq!(normalize(Path::new("/a/./b/../c/")), Path::new("/a/c"));
        assert_eq!(normalize(Path::new("/../a")), Path::new("/a"));
        assert_eq!(normalize(Path::new("../a/../../b")), Path::new("../../b"));
    }

    #[test]
    fn names_stay_inside_their_folder() {
        assert_eq!(
            name_candidates("WAN/x.safetensors"),
            vec![PathBuf::from("WAN/x.safetensors")]
        );
        let windows = name_candidates("WanVideo\\2_2\\x.safetensors");
        assert_eq!(windows.len(), 2);
        assert_eq!(windows[1], PathBuf::from("WanVideo/2_2/x.safetensors"));
        assert_eq!(name_candidates("../../etc/x"), vec![PathBuf::from("etc/x")]);
        assert_eq!(name_candidates("/abs/./x"), vec![PathBuf::from("abs/x")]);
        assert!(name_candidates("..").is_empty());
        assert!(name_candidates("").is_empty());
    }

    #[test]
    fn loaders_map_to_their_folders() {
        assert_eq!(
            ModelFolder::for_loader("UnetLoaderGGUF"),
            Some(ModelFolder::DiffusionModels)
        );
        assert_eq!(
            ModelFolder::for_loader("CLIPLoader"),
            Some(ModelFolder::TextEncoders)
        );
        assert_eq!(ModelFolder::for_loader("VAELoader"), Some(ModelFolder::Vae));
        assert_eq!(ModelFolder::for_loader("SomeCustomLoader"), None);
        assert_eq!(
            ModelFolder::for_key("clip"),
            Some(ModelFolder::TextEncoders)
        );
        assert_eq!(ModelFolder::for_key("checkpoints"), None);
    }
}
