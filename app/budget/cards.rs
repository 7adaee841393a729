//! The built-in table of NVIDIA cards, for when nothing on the machine says which card it is
//! (no NVIDIA driver, no ComfyUI server yet) and the user picks one by name — and to add the
//! figures NVML does not report (memory bandwidth, tensor throughput) to a card that was detected.
//!
//! Pure data: no NVML, no threads, no I/O. `gpu` fills in what the machine says.
//!
//! # Where the figures come from
//! - `total_bytes`: what NVML (`nvidia-smi`'s "Memory-Usage" total) reports, which is what every
//!   budget must start from — not the marketing "GB". [`MemoryFigure::Measured`] rows are the totals
//!   `nvidia-smi` prints on real cards (public logs and READMEs, several agreeing); the handful of
//!   [`MemoryFigure::Nominal`] rows are GiB × 2³⁰ and will read a few MiB high on Ada and Blackwell,
//!   which keep a little back (an RTX 4090 shows 24564 MiB, not 24576).
//!   Datacenter cards are listed as shipped: ECC on (L40S, A100, H100, H200), and the RTX A6000
//!   with ECC off; turning ECC on for GDDR6 cards costs 1/16 of the memory.
//! - `memory_bandwidth_gb_per_sec`: vendor product pages and datasheets (decimal GB/s).
//! - `bf16_dense_tflops`: dense (no 2:4 sparsity) BF16 tensor throughput with FP32 accumulation,
//!   the mode PyTorch uses. GeForce cards run it at half their FP16-accumulate rate. Figures from
//!   NVIDIA's architecture whitepapers (Ampere GA102, Ada Lovelace, RTX Blackwell) and datasheets
//!   where they are listed; otherwise derived the same way those papers do, as
//!   tensor cores × boost clock × 128 FLOP per clock (marked "derived" in `spec_source`).
//! - `compute_capability`: CUDA's table of compute capabilities. It decides fp8 compute
//!   (sm ≥ 8.9: Ada, Hopper, Blackwell).

use serde::Serialize;

/// A CUDA compute capability ("sm 8.9"). Ordered, so `cc >= ComputeCapability::FP8_MIN` reads as
/// the rule it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ComputeCapability {
    pub major: u32,
    pub minor: u32,
}

impl ComputeCapability {
    /// The first architecture with fp8 tensor cores (Ada, sm 8.9). Below it, fp8 weights are
    /// upcast before every matmul: they save memory, not time.
    pub const FP8_MIN: Self = Self::new(8, 9);

    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }

    /// Whether the card multiplies fp8 natively (what ComfyUI's `--supports-fp8-compute` and the
    /// fp8 fast paths key on).
    pub fn has_fp8_compute(self) -> bool {
        self >= Self::FP8_MIN
    }
}

impl std::fmt::Display for ComputeCapability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// How sure a card's `total_bytes` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryFigure {
    /// The total NVML reports on a real card of this model.
    Measured,
    /// Marketing GiB × 2³⁰: no measurement seen yet; real cards may report a few MiB less.
    Nominal,
}

/// One card the user can pick, with the figures the budget and the time model need.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Card {
    /// The name shown in the picker; [`lookup`] finds the card by it.
    pub name: &'static str,
    /// The model number the fuzzy lookup keys on ("4090", "a6000", "h100").
    #[serde(skip)]
    pub model: &'static str,
    /// Suffix words that make a different card of the same model number ("ti", "super", "pcie").
    #[serde(skip)]
    pub variant: &'static [&'static str],
    /// Marketing memory size in GB, which tells "3080" from "3080 12GB".
    pub nominal_gb: u32,
    /// Total device memory in bytes as NVML reports it (see [`MemoryFigure`]).
    pub total_bytes: u64,
    pub memory_figure: MemoryFigure,
    pub compute_capability: ComputeCapability,
    pub memory_bandwidth_gb_per_sec: f64,
    /// Dense BF16 tensor TFLOP/s with FP32 accumulation.
    pub bf16_dense_tflops: f64,
    /// The card's PCIe generation (offload traffic to and from system RAM crosses it).
    pub pcie_gen: u8,
    /// Where the memory total and the throughput figures come from.
    pub spec_source: &'static str,
}

impl Card {
    /// Whether the card multiplies fp8 natively (sm ≥ 8.9).
    pub fn has_fp8_compute(&self) -> bool {
        self.compute_capability.has_fp8_compute()
    }
}

const MIB: u64 = 1024 * 1024;

const AMPERE_WP: &str = "NVIDIA Ampere GA102 whitepaper (dense FP16/BF16 tensor, FP32 accumulate)";
const ADA_WP: &str = "NVIDIA Ada Lovelace whitepaper (dense FP16/BF16 tensor, FP32 accumulate)";
const BLACKWELL_WP: &str =
    "NVIDIA RTX Blackwell whitepaper (dense FP16/BF16 tensor, FP32 accumulate)";
const DERIVED: &str = "derived: tensor cores x boost clock x 128 FLOP/clk (FP32 accumulate); bandwidth from NVIDIA's product page";

/// The built-in cards. Order matters only among cards of one model number and variant: the first
/// is what a bare name picks ("3080" is the 10 GB card, "A100" the 40 GB one).
pub static CARDS: &[Card] = &[
    // ---- Ampere GeForce (sm 8.6, PCIe 4.0) ----
    Card {
        name: "GeForce RTX 3060 12GB",
        model: "3060",
        variant: &[],
        nominal_gb: 12,
        total_bytes: 12288 * MIB,
        memory_figure: MemoryFigure::Measured,
        compute_capability: ComputeCapability::new(8, 6),
        memory_bandwidth_gb_per_sec: 360.0,
        // 112 tensor cores x 1.777 GHz x 128.
        bf16_dense_tflops: 25.5,
        pcie_gen: 4,
        spec_source: DERIVED,
    },
    Card {
        name: "GeForce RTX 3080",
        model: "3080",
        variant: &[],
        nominal_gb: 10,
        total_bytes: 10240 * MIB,
        memory_figure: MemoryFigure::Measured,
        compute_capability: ComputeCapability::new(8, 6),
        memory_bandwidth_gb_per_sec: 760.0,
        bf16_dense_tflops: 59.5,
        pcie_gen: 4,
        spec_source: AMPERE_WP,
    },
    Card {
        // NVML names it "NVIDIA GeForce RTX 3080" like the 10 GB card: the memory total decides.
        name: "GeForce RTX 3080 12GB",
        model: "3080",
        variant: &[],
        nominal_gb: 12,
        total_bytes: 12288 * MIB,
        memory_figure: MemoryFigure::Nominal,
        compute_capability: ComputeCapability::new(8, 6),
        memory_bandwidth_gb_per_sec: 912.0,
        // 280 tensor cores x 1.71 GHz x 128.
        bf16_dense_tflops: 61.3,
        pcie_gen: 4,
        spec_source: DERIVED,
    },
    Card {
        name: "GeForce RTX 3090",
        model: "3090",
        variant: &[],
        nominal_gb: 24,
        total_bytes: 24576 * MIB,
        memory_figure: MemoryFigure::Measured,
        compute_capability: ComputeCapability::new(8, 6),
        memory_bandwidth_gb_per_sec: 936.0,
        bf16_dense_tflops: 71.0,
        pcie_gen: 4,
        spec_source: AMPERE_WP,
    },
    Card {
        name: "GeForce RTX 3090 Ti",
        model: "3090",
        variant: &["ti"],
        nominal_gb: 24,
        total_bytes: 24564 * MIB,
        memory_figure: MemoryFigure::Measured,
        compute_capability: ComputeCapability::new(8, 6),
        memory_bandwidth_gb_per_sec: 1008.0,
        // 336 tensor cores x 1.86 GHz x 128.
        bf16_dense_tflops: 80.0,
        pcie_gen: 4,
        spec_source: DERIVED,
    },
    // ---- Ada GeForce (sm 8.9, PCIe 4.0) ----
    Card {
        name: "GeForce RTX 4060 Ti 16GB",
        model: "4060",
        variant: &["ti"],
        nominal_gb: 16,
        total_bytes: 16380 * MIB,
        memory_figure: MemoryFigure::Measured,
        compute_capability: ComputeCapability::new(8, 9),
        memory_bandwidth_gb_per_sec: 288.0,
        // 136 tensor cores x 2.535 GHz x 128. PCIe 4.0 x8.
        bf16_dense_tflops: 44.1,
        pcie_gen: 4,
        spec_source: DERIVED,
    },
    Card {
        name: "GeForce RTX 4070",
        model: "4070",
        variant: &[],
        nominal_gb: 12,
        total_bytes: 12282 * MIB,
        memory_figure: MemoryFigure::Measured,
        compute_capability: ComputeCapability::new(8, 9),
        memory_bandwidth_gb_per_sec: 504.0,
        // 184 tensor cores x 2.475 GHz x 128.
        bf16_dense_tflops: 58.3,
        pcie_gen: 4,
        spec_source: DERIVED,
    },
    Card {
        name: "GeForce RTX 4070 Super",
        model: "4070",
        variant: &["super"],
        nominal_gb: 12,
        total_bytes: 12288 * MIB,
        memory_figure: MemoryFigure::Nominal,
        compute_capability: ComputeCapability::new(8, 9),
        memory_bandwidth_gb_per_sec: 504.0,
        // 224 tensor cores x 2.475 GHz x 128.
        bf16_dense_tflops: 71.0,
        pcie_gen: 4,
        spec_source: DERIVED,
    },
    Card {
        name: "GeForce RTX 4070 Ti",
        model: "4070",
        variant: &["ti"],
        nominal_gb: 12,
        total_bytes: 12282 * MIB,
        memory_figure: MemoryFigure::Measured,
        compute_capability: ComputeCapability::new(8, 9),
        memory_bandwidth_gb_per_sec: 504.0,
        // The whitepaper's "RTX 4080 12GB" (240 tensor cores x 2.61 GHz x 128).
        bf16_dense_tflops: 80.2,
        pcie_gen: 4,
        spec_source: ADA_WP,
    },
    Card {
        name: "GeForce RTX 4070 Ti Super",
        model: "4070",
        variant: &["ti", "super"],
        nominal_gb: 16,
        total_bytes: 16376 * MIB,
        memory_figure: MemoryFigure::Measured,
        compute_capability: ComputeCapability::new(8, 9),
        memory_bandwidth_gb_per_sec: 672.0,
        // 264 tensor cores x 2.61 GHz x 128.
        bf16_dense_tflops: 88.2,
        pcie_gen: 4,
        spec_source: DERIVED,
    },
    Card {
        name: "GeForce RTX 4080",
        model: "4080",
        variant: &[],
        nominal_gb: 16,
        total_bytes: 16376 * MIB,
        memory_figure: MemoryFigure::Measured,
        compute_capability: ComputeCapability::new(8, 9),
        memory_bandwidth_gb_per_sec: 716.8,
        bf16_dense_tflops: 97.5,
        pcie_gen: 4,
        spec_source: ADA_WP,
    },
    Card {
        name: "GeForce RTX 4080 Super",
        model: "4080",
        variant: &["super"],
        nominal_gb: 16,
        total_bytes: 16376 * MIB,
        memory_figure: MemoryFigure::Measured,
        compute_capability: ComputeCapability::new(8, 9),
        memory_bandwidth_gb_per_sec: 736.0,
        // 320 tensor cores x 2.55 GHz x 128.
        bf16_dense_tflops: 104.4,
        pcie_gen: 4,
        spec_source: DERIVED,
    },
    Card {
        name: "GeForce RTX 4090",
        model: "4090",
        variant: &[],
        nominal_gb: 24,
        total_bytes: 24564 * MIB,
        memory_figure: MemoryFigure::Measured,
        compute_capability: ComputeCapability::new(8, 9),
        memory_bandwidth_gb_per_sec: 1008.0,
        bf16_dense_tflops: 165.2,
        pcie_gen: 4,
        spec_source: ADA_WP,
    },
    // ---- Blackwell GeForce (sm 12.0, PCIe 5.0) ----
    Card {
        name: "GeForce RTX 5060 Ti 16GB",
        model: "5060",
        variant: &["ti"],
        nominal_gb: 16,
        total_bytes: 16311 * MIB,
        memory_figure: MemoryFigure::Measured,
        compute_capability: ComputeCapability::new(12, 0),
        memory_bandwidth_gb_per_sec: 448.0,
        // 144 tensor cores x 2.572 GHz x 128. PCIe 5.0 x8.
        bf16_dense_tflops: 47.4,
        pcie_gen: 5,
        spec_source: DERIVED,
    },
    Card {
        name: "GeForce RTX 5070 Ti",
        model: "5070",
        variant: &["ti"],
        nominal_gb: 16,
        total_bytes: 16303 * MIB,
        memory_figure: MemoryFigure::Measured,
        compute_capability: ComputeCapability::new(12, 0),
        memory_bandwidth_gb_per_sec: 896.0,
        // 280 tensor cores x 2.452 GHz x 128.
        bf16_dense_tflops: 87.9,
        pcie_gen: 5,
        spec_source: DERIVED,
    },
    Card {
        name: "GeForce RTX 5080",
        model: "5080",
        variant: &[],
        nominal_gb: 16,
        total_bytes: 16303 * MIB,
        memory_figure: MemoryFigure::Measured,
        compute_capability: ComputeCapability::new(12, 0),
        memory_bandwidth_gb_per_sec: 960.0,
        // 336 tensor cores x 2.617 GHz x 128.
        bf16_dense_tflops: 112.6,
        pcie_gen: 5,
        spec_source: DERIVED,
    },
    Card {
        name: "GeForce RTX 5090",
        model: "5090",
        variant: &[],
        nominal_gb: 32,
        total_bytes: 32607 * MIB,
        memory_figure: MemoryFigure::Measured,
        compute_capability: ComputeCapability::new(12, 0),
        memory_bandwidth_gb_per_sec: 1792.0,
        bf16_dense_tflops: 209.5,
        pcie_gen: 5,
        spec_source: BLACKWELL_WP,
    },
    // ---- Workstation and datacenter ----
    Card {
        // ECC off, as shipped; with ECC on NVML reports 1/16 less.
        name: "RTX A6000",
        model: "a6000",
        variant: &[],
        nominal_gb: 48,
        total_bytes: 49140 * MIB,
        memory_figure: MemoryFigure::Measured,
        compute_capability: ComputeCapability::new(8, 6),
        memory_bandwidth_gb_per_sec: 768.0,
        // Datasheet: 309.7 TFLOPS tensor with sparsity; workstation GA102 keeps the full
        // FP32-accumulate rate.
        bf16_dense_tflops: 154.8,
        pcie_gen: 4,
        spec_source: "NVIDIA RTX A6000 datasheet (309.7 sparse / 2)",
    },
    Card {
        // ECC on, as shipped.
        name: "L40S",
        model: "l40s",
        variant: &[],
        nominal_gb: 48,
        total_bytes: 46068 * MIB,
        memory_figure: MemoryFigure::Measured,
        compute_capability: ComputeCapability::new(8, 9),
        memory_bandwidth_gb_per_sec: 864.0,
        bf16_dense_tflops: 362.05,
        pcie_gen: 4,
        spec_source: "NVIDIA L40S datasheet (BF16 tensor 362.05 dense, 733 sparse)",
    },
    Card {
        name: "A100 40GB",
        model: "a100",
        variant: &[],
        nominal_gb: 40,
        total_bytes: 40960 * MIB,
        memory_figure: MemoryFigure::Measured,
        compute_capability: ComputeCapability::new(8, 0),
        memory_bandwidth_gb_per_sec: 1555.0,
        bf16_dense_tflops: 312.0,
        pcie_gen: 4,
        spec_source: "NVIDIA A100 datasheet (SXM4 40GB: BF16 tensor 312 dense)",
    },
    Card {
        // The SXM4 figures; the 80 GB PCIe card has 1935 GB/s.
        name: "A100 80GB",
        model: "a100",
        variant: &[],
        nominal_gb: 80,
        total_bytes: 81920 * MIB,
        memory_figure: MemoryFigure::Measured,
        compute_capability: ComputeCapability::new(8, 0),
        memory_bandwidth_gb_per_sec: 2039.0,
        bf16_dense_tflops: 312.0,
        pcie_gen: 4,
        spec_source: "NVIDIA A100 datasheet (SXM4 80GB: BF16 tensor 312 dense)",
    },
    Card {
        // NVML: "NVIDIA H100 80GB HBM3".
        name: "H100 80GB SXM",
        model: "h100",
        variant: &[],
        nominal_gb: 80,
        total_bytes: 81559 * MIB,
        memory_figure: MemoryFigure::Measured,
        compute_capability: ComputeCapability::new(9, 0),
        memory_bandwidth_gb_per_sec: 3350.0,
        bf16_dense_tflops: 989.5,
        pcie_gen: 5,
        spec_source: "NVIDIA H100 datasheet (SXM: BF16 tensor 1979 sparse / 2)",
    },
    Card {
        name: "H100 PCIe",
        model: "h100",
        variant: &["pcie"],
        nominal_gb: 80,
        total_bytes: 81559 * MIB,
        memory_figure: MemoryFigure::Measured,
        compute_capability: ComputeCapability::new(9, 0),
        memory_bandwidth_gb_per_sec: 2000.0,
        bf16_dense_tflops: 756.5,
        pcie_gen: 5,
        spec_source: "NVIDIA H100 datasheet (PCIe: BF16 tensor 1513 sparse / 2)",
    },
    Card {
        name: "H200 141GB",
        model: "h200",
        variant: &[],
        nominal_gb: 141,
        total_bytes: 143771 * MIB,
        memory_figure: MemoryFigure::Measured,
        compute_capability: ComputeCapability::new(9, 0),
        memory_bandwidth_gb_per_sec: 4800.0,
        bf16_dense_tflops: 989.5,
        pcie_gen: 5,
        spec_source: "NVIDIA H200 datasheet (SXM: BF16 tensor 1979 sparse / 2)",
    },
];

/// All built-in cards, in picker order.
pub fn cards() -> &'static [Card] {
    CARDS
}

/// How far a reported memory total may sit from a card's to still be that card: covers ECC on
/// versus off (1/16) and driver reservations, and stays well below the gap between variants
/// (3080 10 vs 12 GB is 20 %).
const MEMORY_TOLERANCE: f64 = 0.08;

/// The card a name means, however it is spelled: "4090", "RTX 4090", "NVIDIA GeForce RTX 4090",
/// ComfyUI's "cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync", "3080 12GB",
/// "NVIDIA A100-SXM4-80GB". `None` for cards not in the table, including laptop and regional
/// variants ("RTX 4090 Laptop GPU", "4090 D"): their figures differ, and a wrong card is worse
/// than asking.
pub fn lookup(name: &str) -> Option<&'static Card> {
    candidates(name).into_iter().next()
}

/// Like [`lookup`], with the memory total the device reports deciding between cards one name
/// covers (NVML calls both 3080s "NVIDIA GeForce RTX 3080") and rejecting a card whose memory does
/// not fit any listed variant (a 4060 Ti 8GB is not the 16 GB card).
pub fn lookup_with_memory(name: &str, total_bytes: u64) -> Option<&'static Card> {
    candidates(name)
        .into_iter()
        .map(|card| (relative_gap(card.total_bytes, total_bytes), card))
        .filter(|(gap, _)| *gap <= MEMORY_TOLERANCE)
        .min_by(|(a, _), (b, _)| a.total_cmp(b))
        .map(|(_, card)| card)
}

fn relative_gap(card_bytes: u64, reported_bytes: u64) -> f64 {
    let card = card_bytes as f64;
    if card <= 0.0 {
        return f64::INFINITY;
    }
    (card - reported_bytes as f64).abs() / card
}

/// Words that say nothing about which card it is.
const NOISE: &[&str] = &[
    "nvidia", "geforce", "rtx", "tesla", "gpu", "graphics", "card", "hbm2", "hbm2e", "hbm3",
    "hbm3e", "sxm", "sxm2", "sxm4", "sxm5",
];
/// Words that make a different card of the same model number.
const VARIANT_WORDS: &[&str] = &["ti", "super", "pcie"];
/// Units after a memory size.
const MEMORY_UNITS: &[&str] = &["gb", "g", "gib"];

/// What a name says: the model number, variant words, an optional memory size, and whether it
/// has words no card in the table carries.
#[derive(Debug, Default, PartialEq)]
struct ParsedName {
    model: Option<String>,
    variant: Vec<String>,
    memory_gb: Option<u32>,
    has_unknown_words: bool,
}

fn candidates(name: &str) -> Vec<&'static Card> {
    let parsed = parse_name(name);
    let Some(model) = parsed.model.as_deref() else {
        return Vec::new();
    };
    if parsed.has_unknown_words {
        return Vec::new();
    }
    let matching = |variant: &[String]| -> Vec<&'static Card> {
        CARDS
            .iter()
            .filter(|card| card.model == model)
            .filter(|card| same_words(card.variant, variant))
            .filter(|card| parsed.memory_gb.is_none_or(|gb| card.nominal_gb == gb))
            .collect()
    };
    let found = matching(&parsed.variant);
    if !found.is_empty() {
        return found;
    }
    // "NVIDIA A100 80GB PCIe": where the table does not split a model by form factor, the form
    // factor word does not make it another card.
    let without_form_factor: Vec<String> = parsed
        .variant
        .iter()
        .filter(|word| word.as_str() != "pcie")
        .cloned()
        .collect();
    if without_form_factor.len() != parsed.variant.len() {
        return matching(&without_form_factor);
    }
    Vec::new()
}

fn same_words(card: &[&str], query: &[String]) -> bool {
    card.len() == query.len() && card.iter().all(|word| query.iter().any(|q| q == word))
}

/// Drops what ComfyUI wraps a device name in: "cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync".
pub fn strip_device_decoration(name: &str) -> &str {
    let mut name = name.trim();
    if let Some((head, _allocator)) = name.split_once(" : ") {
        name = head.trim();
    }
    if let Some((first, rest)) = name.split_once(' ') {
        let is_device_prefix = first.split_once(':').is_some_and(|(kind, index)| {
            !kind.is_empty() && index.chars().all(|c| c.is_ascii_digit())
        });
        if is_device_prefix {
            name = rest.trim();
        }
    }
    name
}

fn words(name: &str) -> Vec<String> {
    let lower = strip_device_decoration(name).to_ascii_lowercase();
    let mut out = Vec::new();
    for raw in lower.split(|c: char| !c.is_ascii_alphanumeric()) {
        if raw.is_empty() {
            continue;
        }
        // "rtx4090" → "4090", "rtxa6000" → "a6000".
        let raw = match raw.strip_prefix("rtx") {
            Some(rest) if !rest.is_empty() => rest,
            _ => raw,
        };
        // "4070ti" → "4070" "ti", "12gb" → "12" "gb"; "l40s" and "a100" start with a letter and
        // stay whole.
        let digits_end = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
        if digits_end > 0 && digits_end < raw.len() {
            out.push(raw[..digits_end].to_string());
            out.push(raw[digits_end..].to_string());
        } else {
            out.push(raw.to_string());
        }
    }
    out
}

fn parse_name(name: &str) -> ParsedName {
    let words = words(name);
    let mut parsed = ParsedName::default();
    let mut index = 0;
    while index < words.len() {
        let word = words[index].as_str();
        index += 1;
        if NOISE.contains(&word) {
            continue;
        }
        if VARIANT_WORDS.contains(&word) {
            if !parsed.variant.iter().any(|v| v == word) {
                parsed.variant.push(word.to_string());
            }
            continue;
        }
        let next_is_unit = words
            .get(index)
            .is_some_and(|next| MEMORY_UNITS.contains(&next.as_str()));
        if next_is_unit && let Ok(gb) = word.parse::<u32>() {
            parsed.memory_gb = Some(gb);
            index += 1;
            continue;
        }
        if CARDS.iter().any(|card| card.model == word) && parsed.model.is_none() {
            parsed.model = Some(word.to_string());
            continue;
        }
        parsed.has_unknown_words = true;
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_card_finds_itself_by_its_own_name() {
        for card in CARDS {
            let found = lookup(card.name).map(|c| c.name);
            assert_eq!(found, Some(card.name), "lookup({:?})", card.name);
            let by_memory = lookup_with_memory(card.name, card.total_bytes).map(|c| c.name);
            assert_eq!(by_memory, Some(card.name));
        }
    }

    #[test]
    fn names_are_unique_and_figures_plausible() {
        for (i, card) in CARDS.iter().enumerate() {
            assert!(CARDS[..i].iter().all(|other| other.name != card.name));
            let nominal_bytes = u64::from(card.nominal_gb) * 1024 * MIB;
            // NVML totals sit at or below the marketing GiB (H200's "141 GB" reads 140.4 GiB).
            assert!(card.total_bytes <= nominal_bytes, "{}", card.name);
            assert!(
                card.total_bytes as f64 > nominal_bytes as f64 * 0.9,
                "{}",
                card.name
            );
            assert!(card.memory_bandwidth_gb_per_sec > 100.0);
            assert!(card.bf16_dense_tflops > 10.0);
            assert!((4..=5).contains(&card.pcie_gen));
        }
    }

    #[test]
    fn fp8_compute_starts_at_ada() {
        assert!(!ComputeCapability::new(8, 6).has_fp8_compute());
        assert!(!ComputeCapability::new(8, 0).has_fp8_compute());
        assert!(ComputeCapability::new(8, 9).has_fp8_compute());
        assert!(ComputeCapability::new(9, 0).has_fp8_compute());
        assert!(ComputeCapability::new(12, 0).has_fp8_compute());
        assert_eq!(ComputeCapability::new(12, 0).to_string(), "12.0");
    }

    #[test]
    fn words_split_glued_suffixes() {
        assert_eq!(words("RTX4070Ti"), ["4070", "ti"]);
        assert_eq!(words("A100-SXM4-40GB"), ["a100", "sxm4", "40", "gb"]);
        assert_eq!(words("L40S"), ["l40s"]);
    }

    #[test]
    fn device_decoration_is_stripped() {
        assert_eq!(
            strip_device_decoration("cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync"),
            "NVIDIA GeForce RTX 4090"
        );
        assert_eq!(strip_device_decoration("NVIDIA H200"), "NVIDIA H200");
        assert_eq!(strip_device_decoration("cpu"), "cpu");
    }

    #[test]
    fn parse_reads_memory_and_variants() {
        let parsed = parse_name("RTX 3080 12 GB");
        assert_eq!(parsed.model.as_deref(), Some("3080"));
        assert_eq!(parsed.memory_gb, Some(12));
        assert!(!parsed.has_unknown_words);
        let parsed = parse_name("4070 Ti SUPER");
        assert_eq!(parsed.variant, ["ti", "super"]);
        assert!(parse_name("RTX 4090 Laptop GPU").has_unknown_words);
    }
}
