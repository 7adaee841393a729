//! Exact facts about a model file from its header alone: tensor names, dtypes, shapes and byte
//! counts from a safetensors or GGUF header, without reading (or even having) the weights.
//!
//! Pure: the caller reads the first bytes of the file (a few MB is plenty for any Wan file) and
//! hands them over. When that was not enough, the error says how many bytes are needed, so the
//! caller can read more and call again ([`WeightsError::TooShort`]).
//!
//! Every parser here takes hostile input: lengths and counts are checked against the bytes
//! available and against [`MAX_HEADER_BYTES`] before anything is allocated, arithmetic is checked,
//! and nothing indexes past a slice. Errors are one line with the byte offset.
//!
//! # Formats
//! - safetensors: an 8-byte little-endian header length `N`, then `N` bytes of JSON mapping each
//!   tensor name to `{dtype, shape, data_offsets: [begin, end]}` (offsets relative to the end of
//!   the header), plus an optional `__metadata__` object of strings.
//! - GGUF (versions 2 and 3, as written by llama.cpp's `gguf-py` and city96's ComfyUI-GGUF
//!   tools): magic `GGUF`, `u32` version, `u64` tensor count, `u64` metadata count, the metadata
//!   key/value pairs (13 value types, arrays included), then per tensor: name, `u32` dimension
//!   count, `u64` dimensions (innermost first), `u32` ggml type, `u64` data offset. Tensor data
//!   starts at the next multiple of `general.alignment` (default 32). Shapes here are given
//!   outermost first, as PyTorch and safetensors write them (GGUF's order reversed), and city96's
//!   `comfy.gguf.orig_shape.<tensor>` arrays restore tensors his converter reshaped.

use indexmap::IndexMap;
use serde::Serialize;

use crate::budget::catalogue::DitArch;

/// The largest header either parser accepts (100 MB). Real headers are far smaller: a Wan 14B
/// safetensors header is about 150 KB, an LLM GGUF with a 256k-token vocabulary about 10 MB.
pub const MAX_HEADER_BYTES: u64 = 100 * 1000 * 1000;

/// Array values kept per GGUF metadata array; longer arrays (tokenizer vocabularies) keep their
/// length and element type but only this many values.
pub const MAX_ARRAY_VALUES_KEPT: usize = 64;

/// How deep GGUF arrays of arrays may nest before the header is called invalid.
const MAX_ARRAY_DEPTH: u32 = 8;

/// Most dimensions a GGUF tensor may have. ggml itself stops at 4; city96's ComfyUI-GGUF
/// `fix_5d_tensors.py` writes Wan's 5-D `patch_embedding.weight` through gguf-py, which allows more.
const MAX_GGUF_DIMS: u32 = 8;

/// Most dimensions a safetensors tensor may have (PyTorch's own limit is 64).
const MAX_SAFETENSORS_DIMS: usize = 64;

/// The smallest possible GGUF metadata pair: `u64` key length, empty key, `u32` type, 1-byte value.
const MIN_GGUF_KV_BYTES: u64 = 8 + 4 + 1;

/// The smallest possible GGUF tensor info: `u64` name length, empty name, `u32` dimension count,
/// `u32` type, `u64` offset.
const MIN_GGUF_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;

/// Why a header could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeightsError {
    /// The bytes given end inside the header. `needed` is exact for safetensors; for GGUF it is
    /// a lower bound (the end of the item being read), so the caller may have to read more again.
    #[error(
        "the header needs at least {needed} bytes but only {available} were given: read at least {needed} bytes of the file and try again"
    )]
    TooShort { needed: u64, available: u64 },
    /// Neither the GGUF magic nor a plausible safetensors header.
    #[error(
        "not a safetensors or GGUF file at byte 0: the file starts with neither `GGUF` nor a safetensors header length followed by `{{`"
    )]
    UnknownFormat,
    /// A header larger than [`MAX_HEADER_BYTES`].
    #[error(
        "{format} header at byte {offset} claims {claimed} bytes, more than the {max}-byte limit: the file is corrupt or not a model"
    )]
    HeaderTooLarge {
        format: &'static str,
        offset: u64,
        claimed: u64,
        max: u64,
    },
    /// A GGUF version other than 2 or 3.
    #[error("unsupported GGUF version {version} at byte 4: only versions 2 and 3 can be read")]
    UnsupportedGgufVersion { version: u32 },
    /// Anything else malformed, with where and what.
    #[error("invalid {format} header at byte {offset}: {reason}")]
    Invalid {
        format: &'static str,
        offset: u64,
        reason: String,
    },
}

impl WeightsError {
    fn invalid(format: &'static str, offset: u64, reason: impl Into<String>) -> Self {
        Self::Invalid {
            format,
            offset,
            reason: reason.into(),
        }
    }
}

/// Which container a header came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "format")]
pub enum WeightsFormat {
    Safetensors,
    Gguf { version: u32 },
}

/// One tensor as the header describes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorInfo {
    /// The name as stored (ComfyUI files often prefix `model.diffusion_model.`).
    pub name: String,
    /// The dtype's own name: safetensors spelling (`F8_E4M3`, `BF16`) or ggml's (`Q4_K`, `F32`).
    pub dtype: String,
    /// Outermost dimension first (PyTorch order), for both formats.
    pub shape: Vec<u64>,
    /// Number of elements (product of `shape`; 1 for a scalar).
    pub elements: u64,
    /// Bytes of data in the file: exact (safetensors `data_offsets`; GGUF block arithmetic).
    pub data_bytes: u64,
    /// Where the data starts, relative to the start of the data section.
    pub data_offset: u64,
}

/// A metadata value: GGUF's typed values, or the strings of safetensors' `__metadata__`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum MetaValue {
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
    String(String),
    /// A GGUF array: element type (GGUF's number for it), full length, and the first
    /// [`MAX_ARRAY_VALUES_KEPT`] values.
    Array {
        element_type: u32,
        len: u64,
        values: Vec<MetaValue>,
    },
}

impl MetaValue {
    /// The value as an unsigned integer, if it is one (any GGUF integer type).
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Self::U64(v) => Some(*v),
            Self::I64(v) => u64::try_from(*v).ok(),
            _ => None,
        }
    }

    /// The value as a string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }
}

/// Everything read from a header.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeightsHeader {
    #[serde(flatten)]
    pub format: WeightsFormat,
    /// Bytes before the tensor data: `8 + N` for safetensors, the aligned data start for GGUF.
    pub header_bytes: u64,
    pub tensors: Vec<TensorInfo>,
    /// safetensors `__metadata__` (strings) or every GGUF key/value pair, in file order.
    pub metadata: IndexMap<String, MetaValue>,
}

/// Totals for one dtype.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DtypeTotals {
    pub tensors: u64,
    pub elements: u64,
    pub bytes: u64,
}

/// What a header adds up to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeightsSummary {
    pub tensor_count: u64,
    /// Sum of elements over all tensors (scale scalars and marker tensors included).
    pub params: u64,
    /// Sum of tensor data bytes: the file size minus the header, exactly (padding aside).
    pub data_bytes: u64,
    /// Per dtype, in order of first appearance.
    pub by_dtype: IndexMap<String, DtypeTotals>,
    pub arch: ArchGuess,
}

/// What the tensor names and shapes say the file is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ArchGuess {
    /// A Wan diffusion transformer (any size or variant). `arch.heads` assumes ComfyUI's
    /// head_dim 128 (`comfy/ldm/wan/model.py`).
    WanDit {
        arch: DitArch,
        /// The prefix stripped from tensor names (`model.diffusion_model.`, or empty).
        prefix: String,
        /// fp8 weights with per-tensor scales (`scale_weight`/`weight_scale`, or a `scaled_fp8`
        /// marker): ComfyUI keeps these fp8 on every GPU.
        is_scaled_fp8: bool,
    },
    /// The umT5-XXL text encoder (24 `encoder.block.N.` layers, 256k-token embedding).
    UmT5 { layers: u64, d_model: u64 },
    /// A Wan VAE: `z_dim` 16 is the Wan 2.1 VAE, 48 the Wan 2.2 VAE.
    WanVae { z_dim: u64 },
    /// A LoRA: the rank of its first low-rank pair.
    Lora { rank: u64, pairs: u64 },
    /// Nothing recognisable.
    Unknown,
}

/// Parses whichever header `bytes` starts with (GGUF magic, else safetensors).
pub fn parse_header(bytes: &[u8]) -> Result<WeightsHeader, WeightsError> {
    match bytes.get(..4) {
        Some(b"GGUF") => parse_gguf_header(bytes),
        Some(_) => parse_safetensors_header(bytes),
        // Fewer than 4 bytes: either format needs at least 8 to say anything.
        None => Err(WeightsError::TooShort {
            needed: 8,
            available: len_u64(bytes),
        }),
    }
}

fn len_u64(bytes: &[u8]) -> u64 {
    u64::try_from(bytes.len()).unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------------------------
// safetensors

const ST: &str = "safetensors";

/// Size in bits of one element of a safetensors dtype (the spellings of safetensors ≥ 0.4,
/// including the sub-byte `F4`/`F6_*` types of 0.6). `None` for a dtype this code does not know;
/// such tensors are still counted, with the byte count taken from `data_offsets`.
pub fn safetensors_dtype_bits(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 8,
        "I16" | "U16" | "F16" | "BF16" => 16,
        "I32" | "U32" | "F32" => 32,
        "I64" | "U64" | "F64" | "C64" => 64,
        "F6_E2M3" | "F6_E3M2" => 6,
        "F4" => 4,
        _ => return None,
    })
}

/// Parses a safetensors header from the first bytes of the file.
pub fn parse_safetensors_header(bytes: &[u8]) -> Result<WeightsHeader, WeightsError> {
    let available = len_u64(bytes);
    let Some(len_bytes) = bytes.get(..8) else {
        return Err(WeightsError::TooShort {
            needed: 8,
            available,
        });
    };
    let mut len_le = [0u8; 8];
    len_le.copy_from_slice(len_bytes);
    let json_len = u64::from_le_bytes(len_le);
    // A first byte that is not `{` (after optional spaces) means this is not safetensors at all;
    // check it before trusting the length, so random files get `UnknownFormat`.
    if bytes
        .get(8)
        .is_some_and(|&first| first != b'{' && first != b' ')
    {
        return Err(WeightsError::UnknownFormat);
    }
    if json_len > MAX_HEADER_BYTES {
        return Err(WeightsError::HeaderTooLarge {
            format: ST,
            offset: 0,
            claimed: json_len,
            max: MAX_HEADER_BYTES,
        });
    }
    if json_len < 2 {
        return Err(WeightsError::invalid(
            ST,
            0,
            format!("header length {json_len} is too small for a JSON object"),
        ));
    }
    let header_bytes = 8 + json_len; // ≤ 8 + MAX_HEADER_BYTES: no overflow
    let json_end = usize::try_from(header_bytes).map_err(|_| WeightsError::TooShort {
        needed: header_bytes,
        available,
    })?;
    let Some(json) = bytes.get(8..json_end) else {
        return Err(WeightsError::TooShort {
            needed: header_bytes,
            available,
        });
    };
    let root: IndexMap<String, serde_json::Value> = serde_json::from_slice(json)
        .map_err(|e| WeightsError::invalid(ST, 8 + json_error_offset(json, &e), e.to_string()))?;

    let mut tensors = Vec::with_capacity(root.len());
    let mut metadata = IndexMap::new();
    // Offsets in errors point at the tensor's key; found only when there is an error.
    let at = |name: &str| 8 + find_key_offset(json, name);
    for (name, value) in root {
        if name == "__metadata__" {
            let serde_json::Value::Object(map) = value else {
                return Err(WeightsError::invalid(
                    ST,
                    at(&name),
                    "`__metadata__` is not an object",
                ));
            };
            for (k, v) in map {
                let text = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                metadata.insert(k, MetaValue::String(text));
            }
            continue;
        }
        let tensor = safetensors_tensor(&name, &value)
            .map_err(|reason| WeightsError::invalid(ST, at(&name), reason))?;
        tensors.push(tensor);
    }
    Ok(WeightsHeader {
        format: WeightsFormat::Safetensors,
        header_bytes,
        tensors,
        metadata,
    })
}

/// One tensor entry of a safetensors header; the error is the reason, without the offset.
fn safetensors_tensor(name: &str, value: &serde_json::Value) -> Result<TensorInfo, String> {
    let bad = |reason: String| reason;
    let dtype = value
        .get("dtype")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| bad(format!("tensor `{name}` has no string `dtype`")))?
        .to_string();
    let shape_json = value
        .get("shape")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| bad(format!("tensor `{name}` has no `shape` array")))?;
    if shape_json.len() > MAX_SAFETENSORS_DIMS {
        return Err(bad(format!(
            "tensor `{name}` has {} dimensions (at most {MAX_SAFETENSORS_DIMS})",
            shape_json.len()
        )));
    }
    let shape = shape_json
        .iter()
        .map(serde_json::Value::as_u64)
        .collect::<Option<Vec<u64>>>()
        .ok_or_else(|| {
            bad(format!(
                "tensor `{name}` has a shape entry that is not a whole number"
            ))
        })?;
    let elements = shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(format!("tensor `{name}` has a shape whose size overflows")))?;
    let offsets = value
        .get("data_offsets")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| bad(format!("tensor `{name}` has no `data_offsets`")))?;
    let (begin, end) = match offsets.as_slice() {
        [b, e] => match (b.as_u64(), e.as_u64()) {
            (Some(b), Some(e)) if b <= e => (b, e),
            _ => {
                return Err(bad(format!(
                    "tensor `{name}` has `data_offsets` that are not two ordered whole numbers"
                )));
            }
        },
        _ => {
            return Err(bad(format!(
                "tensor `{name}` has `data_offsets` that are not two numbers"
            )));
        }
    };
    let data_bytes = end - begin;
    if let Some(bits) = safetensors_dtype_bits(&dtype) {
        let expected = elements
            .checked_mul(bits)
            .map(|b| b.div_ceil(8))
            .ok_or_else(|| bad(format!("tensor `{name}` is too large")))?;
        if expected != data_bytes {
            return Err(bad(format!(
                "tensor `{name}` ({dtype} {shape:?}) should hold {expected} bytes but its data_offsets span {data_bytes}"
            )));
        }
    }
    Ok(TensorInfo {
        name: name.to_string(),
        dtype,
        shape,
        elements,
        data_bytes,
        data_offset: begin,
    })
}

/// The byte offset (within `json`) that a serde_json error points at.
fn json_error_offset(json: &[u8], e: &serde_json::Error) -> u64 {
    let (line, column) = (e.line(), e.column());
    if line == 0 {
        return 0;
    }
    let mut current_line = 1usize;
    let mut line_start = 0usize;
    for (i, &b) in json.iter().enumerate() {
        if current_line == line {
            break;
        }
        if b == b'\n' {
            current_line += 1;
            line_start = i + 1;
        }
    }
    u64::try_from(line_start.saturating_add(column.saturating_sub(1))).unwrap_or(0)
}

/// Where `"key"` first appears in the JSON text, for error offsets (0 if not found verbatim).
fn find_key_offset(json: &[u8], key: &str) -> u64 {
    let needle = format!("\"{key}\"");
    let needle = needle.as_bytes();
    if needle.len() > json.len() {
        return 0;
    }
    json.windows(needle.len())
        .position(|w| w == needle)
        .and_then(|p| u64::try_from(p).ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// GGUF

const GG: &str = "GGUF";

/// ggml tensor types, with the numbers GGUF stores (ggml.h `enum ggml_type`).
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    TQ1_0,
    TQ2_0,
    MXFP4,
}

impl GgmlType {
    /// The type for GGUF's stored number. Types ggml removed (4, 5: Q4_2/Q4_3; 31–33 and 36–38:
    /// the repacked Q4_0_4_4 … IQ4_NL_8_8 layouts) are `None`, as are numbers beyond MXFP4 (39).
    pub fn from_id(id: u32) -> Option<Self> {
        use GgmlType::*;
        Some(match id {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Q8_1,
            10 => Q2_K,
            11 => Q3_K,
            12 => Q4_K,
            13 => Q5_K,
            14 => Q6_K,
            15 => Q8_K,
            16 => IQ2_XXS,
            17 => IQ2_XS,
            18 => IQ3_XXS,
            19 => IQ1_S,
            20 => IQ4_NL,
            21 => IQ3_S,
            22 => IQ2_S,
            23 => IQ4_XS,
            24 => I8,
            25 => I16,
            26 => I32,
            27 => I64,
            28 => F64,
            29 => IQ1_M,
            30 => BF16,
            34 => TQ1_0,
            35 => TQ2_0,
            39 => MXFP4,
            _ => return None,
        })
    }

    /// (elements per block, bytes per block), from ggml's `type_traits` (ggml.c) and the block
    /// structs in ggml-common.h. Super-blocks of the K-quants hold 256 elements (`QK_K`).
    /// Examples: Q8_0 = 32 int8 + one f16 scale = 34 bytes (8.5 bits per weight); Q4_K = 256
    /// 4-bit + 12 bytes of 6-bit sub-block scales/mins + f16 d and dmin = 144 bytes (4.5 bpw);
    /// Q6_K = 210 bytes (6.5625 bpw); Q5_K = 176 (5.5); Q3_K = 110 (3.4375); Q2_K = 84 (2.625).
    /// Q8_1 is 36 bytes as ggml defines it (f16 d and s); gguf-py's table says 40, an older layout
    /// no Wan file uses.
    pub fn block(self) -> (u64, u64) {
        use GgmlType::*;
        match self {
            F32 | I32 => (1, 4),
            F16 | BF16 | I16 => (1, 2),
            I8 => (1, 1),
            I64 | F64 => (1, 8),
            Q4_0 => (32, 18),
            Q4_1 => (32, 20),
            Q5_0 => (32, 22),
            Q5_1 => (32, 24),
            Q8_0 => (32, 34),
            Q8_1 => (32, 36),
            Q2_K => (256, 84),
            Q3_K => (256, 110),
            Q4_K => (256, 144),
            Q5_K => (256, 176),
            Q6_K => (256, 210),
            Q8_K => (256, 292),
            IQ2_XXS => (256, 66),
            IQ2_XS => (256, 74),
            IQ3_XXS => (256, 98),
            IQ1_S => (256, 50),
            IQ4_NL => (32, 18),
            IQ3_S => (256, 110),
            IQ2_S => (256, 82),
            IQ4_XS => (256, 136),
            IQ1_M => (256, 56),
            TQ1_0 => (256, 54),
            TQ2_0 => (256, 66),
            MXFP4 => (32, 17),
        }
    }

    /// Bits per weight (bytes per block × 8 / elements per block).
    pub fn bits_per_weight(self) -> f64 {
        let (elements, bytes) = self.block();
        (bytes * 8) as f64 / elements as f64
    }

    /// Bytes that `elements` weights take, rounded up to whole blocks.
    pub fn bytes_for(self, elements: u64) -> u64 {
        let (per_block, bytes) = self.block();
        elements.div_ceil(per_block).saturating_mul(bytes)
    }

    /// ggml's name for the type (`Q4_K`), as llama.cpp prints it.
    pub fn name(self) -> &'static str {
        use GgmlType::*;
        match self {
            F32 => "F32",
            F16 => "F16",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q8_1 => "Q8_1",
            Q2_K => "Q2_K",
            Q3_K => "Q3_K",
            Q4_K => "Q4_K",
            Q5_K => "Q5_K",
            Q6_K => "Q6_K",
            Q8_K => "Q8_K",
            IQ2_XXS => "IQ2_XXS",
            IQ2_XS => "IQ2_XS",
            IQ3_XXS => "IQ3_XXS",
            IQ1_S => "IQ1_S",
            IQ4_NL => "IQ4_NL",
            IQ3_S => "IQ3_S",
            IQ2_S => "IQ2_S",
            IQ4_XS => "IQ4_XS",
            I8 => "I8",
            I16 => "I16",
            I32 => "I32",
            I64 => "I64",
            F64 => "F64",
            IQ1_M => "IQ1_M",
            BF16 => "BF16",
            TQ1_0 => "TQ1_0",
            TQ2_0 => "TQ2_0",
            MXFP4 => "MXFP4",
        }
    }
}

/// A cursor over the header bytes that reports exactly how far it needed to read.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: u64,
}

impl<'a> Reader<'a> {
    fn available(&self) -> u64 {
        len_u64(self.bytes)
    }

    /// The next `n` bytes, or `TooShort` (or `HeaderTooLarge` when `n` is absurd).
    fn take(&mut self, n: u64) -> Result<&'a [u8], WeightsError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(WeightsError::HeaderTooLarge {
                format: GG,
                offset: self.pos,
                claimed: u64::MAX,
                max: MAX_HEADER_BYTES,
            })?;
        if end > MAX_HEADER_BYTES {
            return Err(WeightsError::HeaderTooLarge {
                format: GG,
                offset: self.pos,
                claimed: end,
                max: MAX_HEADER_BYTES,
            });
        }
        let slice = usize::try_from(self.pos)
            .ok()
            .zip(usize::try_from(end).ok())
            .and_then(|(a, b)| self.bytes.get(a..b))
            .ok_or(WeightsError::TooShort {
                needed: end,
                available: self.available(),
            })?;
        self.pos = end;
        Ok(slice)
    }

    /// Asks for `n` more bytes without consuming them (used to size counts before looping).
    fn require(&self, n: u64) -> Result<(), WeightsError> {
        let end = self.pos.saturating_add(n);
        if end > MAX_HEADER_BYTES {
            return Err(WeightsError::HeaderTooLarge {
                format: GG,
                offset: self.pos,
                claimed: end,
                max: MAX_HEADER_BYTES,
            });
        }
        if end > self.available() {
            return Err(WeightsError::TooShort {
                needed: end,
                available: self.available(),
            });
        }
        Ok(())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WeightsError> {
        let slice = self.take(N as u64)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, WeightsError> {
        let [b] = self.array::<1>()?;
        Ok(b)
    }
    fn u16(&mut self) -> Result<u16, WeightsError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, WeightsError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, WeightsError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn string(&mut self) -> Result<String, WeightsError> {
        let len = self.u64()?;
        let bytes = self.take(len)?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }
}

/// GGUF metadata value types (gguf.md `gguf_metadata_value_type`).
mod value_type {
    pub const UINT8: u32 = 0;
    pub const INT8: u32 = 1;
    pub const UINT16: u32 = 2;
    pub const INT16: u32 = 3;
    pub const UINT32: u32 = 4;
    pub const INT32: u32 = 5;
    pub const FLOAT32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const UINT64: u32 = 10;
    pub const INT64: u32 = 11;
    pub const FLOAT64: u32 = 12;
}

/// Size of a fixed-size GGUF value type, `None` for strings and arrays.
fn fixed_value_size(t: u32) -> Option<u64> {
    use value_type::*;
    match t {
        UINT8 | INT8 | BOOL => Some(1),
        UINT16 | INT16 => Some(2),
        UINT32 | INT32 | FLOAT32 => Some(4),
        UINT64 | INT64 | FLOAT64 => Some(8),
        _ => None,
    }
}

fn read_value(r: &mut Reader<'_>, t: u32, depth: u32) -> Result<MetaValue, WeightsError> {
    use value_type::*;
    let at = r.pos;
    Ok(match t {
        UINT8 => MetaValue::U64(u64::from(r.u8()?)),
        INT8 => MetaValue::I64(i64::from(r.u8()? as i8)),
        UINT16 => MetaValue::U64(u64::from(r.u16()?)),
        INT16 => MetaValue::I64(i64::from(r.u16()? as i16)),
        UINT32 => MetaValue::U64(u64::from(r.u32()?)),
        INT32 => MetaValue::I64(i64::from(r.u32()? as i32)),
        FLOAT32 => MetaValue::F64(f64::from(f32::from_bits(r.u32()?))),
        BOOL => MetaValue::Bool(r.u8()? != 0),
        STRING => MetaValue::String(r.string()?),
        UINT64 => MetaValue::U64(r.u64()?),
        INT64 => MetaValue::I64(r.u64()? as i64),
        FLOAT64 => MetaValue::F64(f64::from_bits(r.u64()?)),
        ARRAY => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(WeightsError::invalid(
                    GG,
                    at,
                    format!("arrays nested more than {MAX_ARRAY_DEPTH} deep"),
                ));
            }
            let element_type = r.u32()?;
            let len = r.u64()?;
            let mut values = Vec::new();
            if let Some(size) = fixed_value_size(element_type) {
                let total = len.checked_mul(size).ok_or(WeightsError::HeaderTooLarge {
                    format: GG,
                    offset: r.pos,
                    claimed: u64::MAX,
                    max: MAX_HEADER_BYTES,
                })?;
                r.require(total)?;
                let kept = len.min(MAX_ARRAY_VALUES_KEPT as u64);
                for _ in 0..kept {
                    values.push(read_value(r, element_type, depth + 1)?);
                }
                r.take(total - kept * size)?;
            } else if element_type == STRING || element_type == ARRAY {
                // Each element takes at least 8 bytes (a length or a type + count), so a count
                // the bytes cannot hold fails here instead of looping.
                r.require(len.saturating_mul(8))?;
                for i in 0..len {
                    let v = read_value(r, element_type, depth + 1)?;
                    if i < MAX_ARRAY_VALUES_KEPT as u64 {
                        values.push(v);
                    }
                }
            } else {
                return Err(WeightsError::invalid(
                    GG,
                    at,
                    format!("array of unknown value type {element_type}"),
                ));
            }
            MetaValue::Array {
                element_type,
                len,
                values,
            }
        }
        other => {
            return Err(WeightsError::invalid(
                GG,
                at,
                format!("unknown metadata value type {other}"),
            ));
        }
    })
}

/// Parses a GGUF header (version 2 or 3) from the first bytes of the file.
pub fn parse_gguf_header(bytes: &[u8]) -> Result<WeightsHeader, WeightsError> {
    let mut r = Reader { bytes, pos: 0 };
    if r.take(4)? != b"GGUF" {
        return Err(WeightsError::UnknownFormat);
    }
    let version = r.u32()?;
    if version != 2 && version != 3 {
        return Err(WeightsError::UnsupportedGgufVersion { version });
    }
    let tensor_count = r.u64()?;
    let kv_count = r.u64()?;
    // Counts the header could not hold even at the smallest item size are refused before any
    // allocation; plausible ones just need the bytes.
    let min_bytes = kv_count
        .saturating_mul(MIN_GGUF_KV_BYTES)
        .saturating_add(tensor_count.saturating_mul(MIN_GGUF_TENSOR_INFO_BYTES));
    r.require(min_bytes)?;

    let mut metadata = IndexMap::new();
    for _ in 0..kv_count {
        let key = r.string()?;
        let t = r.u32()?;
        let value = read_value(&mut r, t, 0)?;
        metadata.insert(key, value);
    }

    let capacity =
        usize::try_from(tensor_count.min(r.available() / MIN_GGUF_TENSOR_INFO_BYTES)).unwrap_or(0);
    let mut tensors = Vec::with_capacity(capacity);
    for _ in 0..tensor_count {
        let at = r.pos;
        let name = r.string()?;
        let n_dims = r.u32()?;
        if n_dims > MAX_GGUF_DIMS {
            return Err(WeightsError::invalid(
                GG,
                at,
                format!("tensor `{name}` has {n_dims} dimensions (at most {MAX_GGUF_DIMS})"),
            ));
        }
        let mut ne = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            ne.push(r.u64()?);
        }
        let type_id = r.u32()?;
        let data_offset = r.u64()?;
        let ggml = GgmlType::from_id(type_id).ok_or_else(|| {
            WeightsError::invalid(
                GG,
                at,
                format!("tensor `{name}` has unknown ggml type {type_id}"),
            )
        })?;
        let elements = ne
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| {
                WeightsError::invalid(GG, at, format!("tensor `{name}` has a size that overflows"))
            })?;
        let (per_block, block_bytes) = ggml.block();
        let row = ne.first().copied().unwrap_or(1);
        if row % per_block != 0 {
            return Err(WeightsError::invalid(
                GG,
                at,
                format!(
                    "tensor `{name}` rows of {row} are not a multiple of the {} block size {per_block}",
                    ggml.name()
                ),
            ));
        }
        let data_bytes = (elements / per_block)
            .checked_mul(block_bytes)
            .ok_or_else(|| {
                WeightsError::invalid(GG, at, format!("tensor `{name}` is too large"))
            })?;
        data_offset.checked_add(data_bytes).ok_or_else(|| {
            WeightsError::invalid(GG, at, format!("tensor `{name}` data ends past 2^64"))
        })?;
        let mut shape = ne;
        shape.reverse();
        tensors.push(TensorInfo {
            name,
            dtype: ggml.name().to_string(),
            shape,
            elements,
            data_bytes,
            data_offset,
        });
    }

    let alignment = match metadata.get("general.alignment") {
        None => 32,
        Some(v) => match v.as_u64() {
            Some(a) if a > 0 && a.is_power_of_two() => a,
            _ => {
                return Err(WeightsError::invalid(
                    GG,
                    0,
                    "`general.alignment` is not a power of two",
                ));
            }
        },
    };
    let header_bytes = r.pos.div_ceil(alignment).saturating_mul(alignment);

    // city96's converter reshapes some tensors and records the original shape.
    for t in &mut tensors {
        let key = format!("comfy.gguf.orig_shape.{}", t.name);
        if let Some(MetaValue::Array { values, len, .. }) = metadata.get(&key) {
            let shape: Option<Vec<u64>> = values.iter().map(MetaValue::as_u64).collect();
            if let Some(shape) = shape {
                let product = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
                if len_matches(*len, shape.len()) && product == Some(t.elements) {
                    t.shape = shape;
                }
            }
        }
    }

    Ok(WeightsHeader {
        format: WeightsFormat::Gguf { version },
        header_bytes,
        tensors,
        metadata,
    })
}

fn len_matches(len: u64, kept: usize) -> bool {
    u64::try_from(kept).is_ok_and(|k| k == len)
}

// ---------------------------------------------------------------------------------------------
// Summaries and architecture guesses

/// Prefixes stripped before matching tensor names (ComfyUI checkpoints, DataParallel, compile).
const NAME_PREFIXES: [&str; 5] = [
    "model.diffusion_model.",
    "diffusion_model.",
    "model.",
    "module.",
    "_orig_mod.",
];

fn strip_prefixes(name: &str) -> (&str, usize) {
    let mut rest = name;
    loop {
        let before = rest.len();
        for p in NAME_PREFIXES {
            if let Some(r) = rest.strip_prefix(p) {
                rest = r;
            }
        }
        if rest.len() == before {
            break;
        }
    }
    (rest, name.len() - rest.len())
}

/// The block index in `blocks.N.…` (or `vace_blocks.N.…` with that prefix).
fn block_index(name: &str, prefix: &str) -> Option<u64> {
    let rest = name.strip_prefix(prefix)?;
    let (n, _) = rest.split_once('.')?;
    n.parse().ok()
}

impl WeightsHeader {
    /// Totals per dtype, parameter and tensor counts, and an architecture guess.
    pub fn summary(&self) -> WeightsSummary {
        let mut by_dtype: IndexMap<String, DtypeTotals> = IndexMap::new();
        let mut params = 0u64;
        let mut data_bytes = 0u64;
        for t in &self.tensors {
            let entry = by_dtype.entry(t.dtype.clone()).or_default();
            entry.tensors += 1;
            entry.elements = entry.elements.saturating_add(t.elements);
            entry.bytes = entry.bytes.saturating_add(t.data_bytes);
            params = params.saturating_add(t.elements);
            data_bytes = data_bytes.saturating_add(t.data_bytes);
        }
        WeightsSummary {
            tensor_count: len_u64_usize(self.tensors.len()),
            params,
            data_bytes,
            by_dtype,
            arch: self.guess_arch(),
        }
    }

    /// The tensor whose name, prefixes stripped, is `bare`.
    fn find(&self, bare: &str) -> Option<&TensorInfo> {
        self.tensors
            .iter()
            .find(|t| strip_prefixes(&t.name).0 == bare)
    }

    /// What the tensor names and shapes say the file is.
    pub fn guess_arch(&self) -> ArchGuess {
        if let Some(g) = self.guess_wan_dit() {
            return g;
        }
        if let Some(g) = self.guess_lora() {
            return g;
        }
        if let Some(g) = self.guess_umt5() {
            return g;
        }
        if let Some(g) = self.guess_wan_vae() {
            return g;
        }
        ArchGuess::Unknown
    }

    fn guess_wan_dit(&self) -> Option<ArchGuess> {
        let mut layers: Option<u64> = None;
        let mut vace_layers: Option<u64> = None;
        let mut prefix = None;
        let mut image_cross_attn = false;
        let mut is_scaled_fp8 = false;
        let mut is_lora = false;
        for t in &self.tensors {
            let (bare, cut) = strip_prefixes(&t.name);
            if bare.contains("lora_") || bare.contains(".lora.") {
                is_lora = true;
            }
            if let Some(n) = block_index(bare, "blocks.") {
                layers = Some(layers.map_or(n + 1, |l| l.max(n + 1)));
                if prefix.is_none() {
                    prefix = t.name.get(..cut).map(str::to_string);
                }
            }
            if let Some(n) = block_index(bare, "vace_blocks.") {
                vace_layers = Some(vace_layers.map_or(n + 1, |l| l.max(n + 1)));
            }
            if bare.starts_with("img_emb.") || bare.contains(".k_img.") {
                image_cross_attn = true;
            }
            if bare == "scaled_fp8"
                || bare.ends_with(".scale_weight")
                || bare.ends_with(".weight_scale")
            {
                is_scaled_fp8 = true;
            }
        }
        if is_lora {
            return None;
        }
        let patch = self.find("patch_embedding.weight");
        let q = self.find("blocks.0.self_attn.q.weight");
        // Either the patch embedding or a block's q projection must be there to call it a Wan DiT
        // (a VACE module file has only vace blocks; it has a `vace_patch_embedding`).
        let vace_patch = self.find("vace_patch_embedding.weight");
        if patch.is_none() && q.is_none() && vace_patch.is_none() {
            return None;
        }
        let dim = patch
            .and_then(|t| t.shape.first().copied())
            .or_else(|| q.and_then(|t| t.shape.first().copied()))
            .or_else(|| vace_patch.and_then(|t| t.shape.first().copied()))?;
        let in_dim = patch.and_then(|t| t.shape.get(1).copied()).unwrap_or(0);
        let patch_volume: u64 = patch
            .map(|t| t.shape.iter().skip(2).product::<u64>())
            .filter(|&v| v > 0)
            .unwrap_or(4);
        let out_dim = self
            .find("head.head.weight")
            .and_then(|t| t.shape.first().copied())
            .map(|rows| rows / patch_volume)
            .unwrap_or(0);
        let ffn_dim = self
            .find("blocks.0.ffn.0.weight")
            .or_else(|| self.find("vace_blocks.0.ffn.0.weight"))
            .and_then(|t| t.shape.first().copied())
            .unwrap_or(0);
        let text_dim = self
            .find("text_embedding.0.weight")
            .and_then(|t| t.shape.get(1).copied())
            .unwrap_or(0);
        let to_u32 = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        Some(ArchGuess::WanDit {
            arch: DitArch {
                dim: to_u32(dim),
                layers: to_u32(layers.unwrap_or(0)),
                heads: to_u32(dim / 128),
                ffn_dim: to_u32(ffn_dim),
                in_dim: to_u32(in_dim),
                out_dim: to_u32(out_dim),
                text_dim: to_u32(text_dim),
                image_cross_attn,
                vace_layers: to_u32(vace_layers.unwrap_or(0)),
            },
            prefix: prefix.unwrap_or_default(),
            is_scaled_fp8,
        })
    }

    fn guess_lora(&self) -> Option<ArchGuess> {
        let mut rank = None;
        let mut pairs = 0u64;
        for t in &self.tensors {
            let down = t.name.contains("lora_down.weight")
                || t.name.contains("lora_A.weight")
                || t.name.contains("lora.down.weight");
            if down {
                pairs += 1;
                if rank.is_none() {
                    rank = t.shape.first().copied();
                }
            }
        }
        rank.map(|rank| ArchGuess::Lora { rank, pairs })
    }

    fn guess_umt5(&self) -> Option<ArchGuess> {
        let mut layers: Option<u64> = None;
        for t in &self.tensors {
            let (bare, _) = strip_prefixes(&t.name);
            let bare = bare.strip_prefix("umt5xxl.transformer.").unwrap_or(bare);
            let bare = bare.strip_prefix("transformer.").unwrap_or(bare);
            if let Some(n) = block_index(bare, "encoder.block.") {
                layers = Some(layers.map_or(n + 1, |l| l.max(n + 1)));
            }
        }
        let layers = layers?;
        let d_model = self
            .tensors
            .iter()
            .find(|t| t.name.ends_with("shared.weight") || t.name.ends_with("token_embd.weight"))
            .and_then(|t| t.shape.get(1).copied())
            .unwrap_or(0);
        Some(ArchGuess::UmT5 { layers, d_model })
    }

    fn guess_wan_vae(&self) -> Option<ArchGuess> {
        // The decoder's first conv takes z_dim channels: `decoder.conv1.weight` [C, z_dim, …].
        let conv = self.find("decoder.conv1.weight")?;
        let z_dim = conv.shape.get(1).copied()?;
        self.find("encoder.conv1.weight")?;
        Some(ArchGuess::WanVae { z_dim })
    }
}

fn len_u64_usize(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP8_SCALED: &[u8] =
        include_bytes!("../../tests/data/weights/tiny_wan_t2v_fp8_scaled.safetensors");
    const I2V_BARE: &[u8] =
        include_bytes!("../../tests/data/weights/tiny_wan21_i2v_bare_fp16.safetensors");
    const LORA: &[u8] = include_bytes!("../../tests/data/weights/tiny_wan_lora_rank4.safetensors");
    const GGUF_FILE: &[u8] = include_bytes!("../../tests/data/weights/tiny_wan_i2v_mixed.gguf");
    const EXPECTED: &str = include_str!("../../tests/data/weights/expected.json");

    fn fixtures() -> [(&'static str, &'static [u8]); 4] {
        [
            ("tiny_wan_t2v_fp8_scaled.safetensors", FP8_SCALED),
            ("tiny_wan21_i2v_bare_fp16.safetensors", I2V_BARE),
            ("tiny_wan_lora_rank4.safetensors", LORA),
            ("tiny_wan_i2v_mixed.gguf", GGUF_FILE),
        ]
    }

    fn expected(file: &str) -> serde_json::Value {
        let all: serde_json::Value = serde_json::from_str(EXPECTED).expect("expected.json parses");
        all[file].clone()
    }

    #[test]
    fn fixtures_match_what_python_wrote() {
        for (file, bytes) in fixtures() {
            let exp = expected(file);
            let header = parse_header(bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
            let summary = header.summary();
            assert_eq!(
                summary.tensor_count,
                exp["tensor_count"].as_u64().unwrap(),
                "{file} tensor count"
            );
            assert_eq!(
                summary.params,
                exp["params"].as_u64().unwrap(),
                "{file} params"
            );
            assert_eq!(
                header.header_bytes,
                exp["header_bytes"].as_u64().unwrap(),
                "{file} header bytes"
            );
            assert_eq!(
                header.header_bytes + summary.data_bytes,
                bytes.len() as u64,
                "{file}: header + data must be the whole file (fixtures have no trailing padding)"
            );
            let by_dtype = exp["bytes_by_dtype"].as_object().unwrap();
            assert_eq!(summary.by_dtype.len(), by_dtype.len(), "{file} dtypes");
            for (dtype, bytes) in by_dtype {
                assert_eq!(
                    summary.by_dtype[dtype.as_str()].bytes,
                    bytes.as_u64().unwrap(),
                    "{file} {dtype}"
                );
            }
            for (name, t) in exp["tensors"].as_object().unwrap() {
                let info = header
                    .tensors
                    .iter()
                    .find(|x| &x.name == name)
                    .unwrap_or_else(|| panic!("{file}: no tensor {name}"));
                let shape: Vec<u64> = t["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap())
                    .collect();
                assert_eq!(info.shape, shape, "{file} {name} shape");
                assert_eq!(
                    info.dtype,
                    t["dtype"].as_str().unwrap(),
                    "{file} {name} dtype"
                );
                assert_eq!(
                    info.data_bytes,
                    t["bytes"].as_u64().unwrap(),
                    "{file} {name} bytes"
                );
                assert_eq!(
                    info.data_offset,
                    t["offset"].as_u64().unwrap(),
                    "{file} {name} offset"
                );
            }
        }
    }

    #[test]
    fn dit_architecture_is_read_from_names_and_shapes() {
        let exp = expected("tiny_wan_t2v_fp8_scaled.safetensors");
        let ArchGuess::WanDit {
            arch,
            prefix,
            is_scaled_fp8,
        } = parse_header(FP8_SCALED).unwrap().guess_arch()
        else {
            panic!("fp8 fixture is a Wan DiT");
        };
        assert_eq!(prefix, "model.diffusion_model.");
        assert!(is_scaled_fp8);
        let a = &exp["arch"];
        assert_eq!(arch.dim, a["dim"].as_u64().unwrap() as u32);
        assert_eq!(arch.layers, a["layers"].as_u64().unwrap() as u32);
        assert_eq!(arch.ffn_dim, a["ffn_dim"].as_u64().unwrap() as u32);
        assert_eq!(arch.in_dim, a["in_dim"].as_u64().unwrap() as u32);
        assert_eq!(arch.out_dim, a["out_dim"].as_u64().unwrap() as u32);
        assert_eq!(arch.text_dim, a["text_dim"].as_u64().unwrap() as u32);
        assert!(!arch.image_cross_attn);

        let ArchGuess::WanDit {
            arch,
            prefix,
            is_scaled_fp8,
        } = parse_header(I2V_BARE).unwrap().guess_arch()
        else {
            panic!("bare fixture is a Wan DiT");
        };
        assert_eq!(prefix, "");
        assert!(!is_scaled_fp8);
        assert!(
            arch.image_cross_attn,
            "img_emb and k_img mean a CLIP branch"
        );
        assert_eq!(arch.in_dim, 36);
        assert_eq!(arch.layers, 2);

        let ArchGuess::WanDit { arch, .. } = parse_header(GGUF_FILE).unwrap().guess_arch() else {
            panic!("gguf fixture is a Wan DiT");
        };
        let a = &expected("tiny_wan_i2v_mixed.gguf")["arch"];
        assert_eq!(arch.dim, a["dim"].as_u64().unwrap() as u32);
        assert_eq!(arch.in_dim, a["in_dim"].as_u64().unwrap() as u32);
        assert_eq!(arch.ffn_dim, a["ffn_dim"].as_u64().unwrap() as u32);
        assert_eq!(arch.layers, 2);
        assert_eq!(arch.out_dim, a["out_dim"].as_u64().unwrap() as u32);
    }

    #[test]
    fn lora_rank_is_read_from_the_down_projection() {
        let guess = parse_header(LORA).unwrap().guess_arch();
        assert_eq!(guess, ArchGuess::Lora { rank: 4, pairs: 4 });
    }

    #[test]
    fn gguf_metadata_of_every_type_is_read() {
        let header = parse_header(GGUF_FILE).unwrap();
        assert_eq!(header.format, WeightsFormat::Gguf { version: 3 });
        let m = &header.metadata;
        assert_eq!(m["general.architecture"].as_str(), Some("wan"));
        assert_eq!(m["test.u8"], MetaValue::U64(200));
        assert_eq!(m["test.i8"], MetaValue::I64(-5));
        assert_eq!(m["test.u16"], MetaValue::U64(60000));
        assert_eq!(m["test.i16"], MetaValue::I64(-30000));
        assert_eq!(m["test.i32"], MetaValue::I64(-2_000_000_000));
        assert_eq!(m["test.u64"], MetaValue::U64(1 << 40));
        assert_eq!(m["test.i64"], MetaValue::I64(-(1 << 40)));
        assert_eq!(m["test.f32"], MetaValue::F64(0.5));
        assert_eq!(m["test.f64"], MetaValue::F64(-0.25));
        assert_eq!(m["test.bool"], MetaValue::Bool(true));
        let MetaValue::Array { len, values, .. } = &m["test.long_array"] else {
            panic!("array");
        };
        assert_eq!(*len, 200);
        assert_eq!(values.len(), MAX_ARRAY_VALUES_KEPT);
        let MetaValue::Array { len, values, .. } = &m["test.strings"] else {
            panic!("string array");
        };
        assert_eq!(*len, 3);
        assert_eq!(values[2].as_str(), Some("three"));
        let MetaValue::Array { values, .. } = &m["test.nested"] else {
            panic!("nested array");
        };
        assert!(matches!(&values[1], MetaValue::Array { len: 2, .. }));
    }

    #[test]
    fn every_truncation_is_an_error_or_a_header_never_a_panic() {
        for (file, bytes) in fixtures() {
            let full = parse_header(bytes).unwrap();
            // Every prefix inside the header (and a little past it, where GGUF's alignment
            // padding ends); beyond that the parser sees the same bytes, so every 97th prefix.
            let header_end = full.header_bytes as usize + 64;
            let lengths = (0..=bytes.len()).filter(|&n| n <= header_end || n % 97 == 0);
            for n in lengths {
                match parse_header(&bytes[..n]) {
                    Ok(h) => {
                        // GGUF may parse before its alignment padding; never before the infos.
                        assert!(n as u64 + 64 >= full.header_bytes, "{file} {n}");
                        assert_eq!(h.tensors, full.tensors, "{file}: ok at {n} must be whole");
                    }
                    Err(WeightsError::TooShort { needed, available }) => {
                        assert_eq!(available, n as u64);
                        assert!(needed > available, "{file} at {n}: needed {needed}");
                    }
                    Err(e) => panic!("{file} truncated to {n}: unexpected {e}"),
                }
            }
        }
    }

    #[test]
    fn reading_what_too_short_asks_for_converges() {
        for (file, bytes) in fixtures() {
            let mut n = 8usize;
            let mut rounds = 0;
            loop {
                rounds += 1;
                assert!(rounds < 10_000, "{file} did not converge");
                match parse_header(&bytes[..n.min(bytes.len())]) {
                    Ok(_) => break,
                    Err(WeightsError::TooShort { needed, .. }) => {
                        assert!(needed as usize > n, "{file}: no progress at {n}");
                        n = needed as usize;
                    }
                    Err(e) => panic!("{file}: {e}"),
                }
            }
        }
    }

    #[test]
    fn corrupted_headers_never_panic() {
        // A small deterministic generator (xorshift) so failures reproduce.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for (_, bytes) in fixtures() {
            let header_len = parse_header(bytes).unwrap().header_bytes as usize;
            for _ in 0..3000 {
                let mut copy = bytes[..header_len].to_vec();
                let flips = 1 + (next() % 4) as usize;
                for _ in 0..flips {
                    let at = (next() % header_len as u64) as usize;
                    copy[at] = next() as u8;
                }
                let _ = parse_header(&copy).map(|h| h.summary());
            }
        }
    }

    #[test]
    fn hostile_counts_and_lengths_are_refused_without_allocating() {
        // GGUF claiming 2^60 tensors.
        let mut g = b"GGUF".to_vec();
        g.extend(3u32.to_le_bytes());
        g.extend((1u64 << 60).to_le_bytes());
        g.extend(0u64.to_le_bytes());
        assert!(matches!(
            parse_gguf_header(&g),
            Err(WeightsError::HeaderTooLarge { .. })
        ));
        // A string length of 2^63.
        let mut g = b"GGUF".to_vec();
        g.extend(3u32.to_le_bytes());
        g.extend(0u64.to_le_bytes());
        g.extend(1u64.to_le_bytes());
        g.extend((1u64 << 63).to_le_bytes());
        g.extend([0u8; 16]);
        assert!(matches!(
            parse_gguf_header(&g),
            Err(WeightsError::HeaderTooLarge { .. })
        ));
        // Version 1.
        let mut g = b"GGUF".to_vec();
        g.extend(1u32.to_le_bytes());
        g.extend([0u8; 16]);
        assert_eq!(
            parse_gguf_header(&g),
            Err(WeightsError::UnsupportedGgufVersion { version: 1 })
        );
        // A safetensors header claiming 2^40 bytes.
        let mut s = (1u64 << 40).to_le_bytes().to_vec();
        s.extend(b"{}");
        assert!(matches!(
            parse_safetensors_header(&s),
            Err(WeightsError::HeaderTooLarge { .. })
        ));
        // Not a model at all.
        assert_eq!(
            parse_header(b"PK\x03\x04 some zip file"),
            Err(WeightsError::UnknownFormat)
        );
    }

    #[test]
    fn safetensors_inconsistencies_are_reported_with_the_offset() {
        let json = br#"{"a":{"dtype":"F16","shape":[2,3],"data_offsets":[0,10]}}"#;
        let mut s = (json.len() as u64).to_le_bytes().to_vec();
        s.extend(json);
        let err = parse_safetensors_header(&s).unwrap_err();
        let WeightsError::Invalid { offset, reason, .. } = &err else {
            panic!("{err}");
        };
        assert_eq!(*offset, 9, "points at the tensor's key");
        assert!(reason.contains("should hold 12 bytes"), "{reason}");
        assert!(!err.to_string().contains('\n'));

        let json = br#"{"a":{"dtype":"F16","shape":[2,3],"data_offsets":[0,12]},}"#;
        let mut s = (json.len() as u64).to_le_bytes().to_vec();
        s.extend(json);
        let err = parse_safetensors_header(&s).unwrap_err();
        assert!(
            matches!(err, WeightsError::Invalid { offset, .. } if offset > 8),
            "{err}"
        );
    }

    #[test]
    fn ggml_block_sizes_give_the_documented_bits_per_weight() {
        assert_eq!(GgmlType::Q4_K.bits_per_weight(), 4.5);
        assert_eq!(GgmlType::Q8_0.bits_per_weight(), 8.5);
        assert_eq!(GgmlType::Q6_K.bits_per_weight(), 6.5625);
        assert_eq!(GgmlType::Q5_K.bits_per_weight(), 5.5);
        assert_eq!(GgmlType::Q3_K.bits_per_weight(), 3.4375);
        assert_eq!(GgmlType::Q2_K.bits_per_weight(), 2.625);
        assert_eq!(GgmlType::Q4_0.bits_per_weight(), 4.5);
        assert_eq!(GgmlType::Q5_0.bits_per_weight(), 5.5);
        for id in 0..64 {
            if let Some(t) = GgmlType::from_id(id) {
                assert_eq!(GgmlType::from_id(id).map(GgmlType::name), Some(t.name()));
            }
        }
    }
}
