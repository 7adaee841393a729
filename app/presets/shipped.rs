//! The presets built into the binary, from `workflows/`: written for wan-pilot with the official
//! Comfy-Org model file names (Wan_2.2_ComfyUI_Repackaged). Read-only: the user duplicates one to
//! change it.

/// A shipped preset file: its name in `workflows/` and its text.
#[derive(Debug, Clone, Copy)]
pub struct ShippedPreset {
    pub file: &'static str,
    pub text: &'static str,
}

macro_rules! shipped {
    ($($file:literal),* $(,)?) => {
        &[$(ShippedPreset { file: $file, text: include_str!(concat!("../../workflows/", $file)) }),*]
    };
}

/// Every shipped preset, in the order the list shows them.
pub const SHIPPED: &[ShippedPreset] = shipped![
    "wan22-14b-t2v-4step.json",
    "wan22-14b-t2v.json",
    "wan22-14b-i2v-4step.json",
    "wan22-14b-i2v.json",
    "wan22-5b-t2v.json",
    "wan22-5b-i2v.json",
];

/// The shipped preset with this file name.
pub fn shipped(file: &str) -> Option<&'static ShippedPreset> {
    SHIPPED.iter().find(|p| p.file == file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presets::Preset;

    #[test]
    fn every_shipped_preset_parses_and_names_are_unique() {
        let mut names = std::collections::HashSet::new();
        for shipped in SHIPPED {
            let preset = Preset::parse(shipped.text.as_bytes())
                .unwrap_or_else(|e| panic!("{}: {e}", shipped.file));
            assert!(names.insert(preset.name.clone()), "{} repeats", preset.name);
            assert!(!preset.description.is_empty(), "{}", shipped.file);
        }
        assert_eq!(names.len(), 6);
    }
}
