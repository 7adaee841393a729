//! The app's settings file, `<data_dir>/settings.json`: where ComfyUI is (a folder to start, or
//! a URL to attach to), extra launch arguments, reserved VRAM, the safety margin, automatic
//! out-of-memory retry, the output folder, the theme and the card picked when none is detected.
//!
//! Read tolerantly: a missing key takes its default, a key with a wrong value takes its default
//! and is named in a message, and a file that is not JSON, not an object or from a newer
//! wan-pilot is renamed aside (`settings.json.broken`) and the app starts from the defaults,
//! saying so. Saved atomically, so a crash never leaves half a file.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::runs::store::{StoreError, data_dir, write_atomically};

/// The settings format this build writes and the newest it reads.
pub const SETTINGS_VERSION: u32 = 1;

/// The settings file's name inside the data folder.
pub const SETTINGS_FILE: &str = "settings.json";

/// The window's colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Theme {
    /// Follow the operating system.
    #[default]
    System,
    Dark,
    Light,
}

/// Everything the settings window edits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub version: u32,
    /// The ComfyUI install wan-pilot starts and stops; `None`: look in the usual places.
    pub comfyui_dir: Option<PathBuf>,
    /// A running server to attach to instead of starting one (`http://host:port`).
    pub server_url: Option<String>,
    /// Extra arguments for the ComfyUI command line, one per entry.
    pub extra_args: Vec<String>,
    /// `--reserve-vram` in GiB; `None`: ComfyUI's own default.
    pub reserve_vram_gib: Option<f64>,
    /// Memory kept free on top of the projected peak before a length counts as fitting (GiB).
    pub margin_gib: f64,
    /// After an out-of-memory error, retry on the next rung (smaller or offloaded) by itself.
    pub oom_retry: bool,
    /// Where finished videos are saved; `None`: the app's data folder.
    pub output_dir: Option<PathBuf>,
    pub theme: Theme,
    /// The card the projection is for when no NVIDIA GPU is detected (a name from the card
    /// table); `None`: the default card.
    pub picked_card: Option<String>,
    /// The workflow files opened last, newest first (the window's "Recent" list, at most 10).
    #[serde(default)]
    pub recent: Vec<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            version: SETTINGS_VERSION,
            comfyui_dir: None,
            server_url: None,
            extra_args: Vec::new(),
            reserve_vram_gib: None,
            margin_gib: 2.0,
            oom_retry: true,
            output_dir: None,
            theme: Theme::System,
            picked_card: None,
            recent: Vec::new(),
        }
    }
}

/// What went wrong reading or writing the settings file, naming it.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "cannot move the unreadable {} aside to {}: {source}; move or delete it by hand",
        path.display(),
        to.display()
    )]
    SetAside {
        path: PathBuf,
        to: PathBuf,
        source: io::Error,
    },
}

/// A settings file that could not be used and was renamed aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsSetAside {
    pub original: PathBuf,
    pub moved_to: PathBuf,
    /// Why it could not be used, in words.
    pub reason: String,
}

/// The settings as loaded, with what had to be put right on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedSettings {
    pub settings: Settings,
    /// One line per key whose value could not be used (it took its default).
    pub problems: Vec<String>,
    /// The whole file, when it could not be used at all.
    pub set_aside: Option<SettingsSetAside>,
}

impl LoadedSettings {
    /// What to tell the user, if anything.
    pub fn message(&self) -> Option<String> {
        if let Some(aside) = &self.set_aside {
            return Some(format!(
                "The settings file {} could not be used ({}). It was kept as {} and wan-pilot \
                 starts from the default settings.",
                aside.original.display(),
                aside.reason,
                aside.moved_to.display()
            ));
        }
        if self.problems.is_empty() {
            return None;
        }
        Some(format!(
            "Some settings could not be used and were reset to their defaults: {}.",
            self.problems.join("; ")
        ))
    }
}

/// The settings file inside a data folder.
pub fn settings_path(dir: &Path) -> PathBuf {
    dir.join(SETTINGS_FILE)
}

/// Loads the settings from the app's data folder. See [`load_settings_in`].
pub fn load_settings() -> Result<LoadedSettings, SettingsError> {
    load_settings_in(&data_dir()?)
}

/// Loads `settings.json` from `dir`: no file gives the defaults. Errors only when the file
/// exists but cannot be read, or cannot be moved aside (then nothing overwrites it either).
pub fn load_settings_in(dir: &Path) -> Result<LoadedSettings, SettingsError> {
    let path = settings_path(dir);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(LoadedSettings {
                settings: Settings::default(),
                problems: Vec::new(),
                set_aside: None,
            });
        }
        Err(source) => return Err(SettingsError::Read { path, source }),
    };
    match parse_settings(&bytes) {
        Ok((settings, problems)) => Ok(LoadedSettings {
            settings,
            problems,
            set_aside: None,
        }),
        Err(reason) => {
            let moved_to = set_aside(&path)?;
            Ok(LoadedSettings {
                settings: Settings::default(),
                problems: Vec::new(),
                set_aside: Some(SettingsSetAside {
                    original: path,
                    moved_to,
                    reason,
                }),
            })
        }
    }
}

/// The settings in `bytes` with one line per key that took its default, or why the whole file
/// cannot be used.
pub fn parse_settings(bytes: &[u8]) -> Result<(Settings, Vec<String>), String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Object(map) = value else {
        return Err("not a settings file (not a JSON object)".into());
    };
    if let Some(version) = map.get("version") {
        match version.as_u64() {
            Some(v) if v > u64::from(SETTINGS_VERSION) => {
                return Err(format!(
                    "written by a newer wan-pilot (settings version {v}; this one reads up to {SETTINGS_VERSION})"
                ));
            }
            Some(_) => {}
            None => return Err(format!("its \"version\" is {version}, not a number")),
        }
    }
    let mut s = Settings::default();
    let mut problems = Vec::new();
    let p = &mut problems;
    take(&map, "comfyui_dir", &mut s.comfyui_dir, p);
    take(&map, "server_url", &mut s.server_url, p);
    take(&map, "extra_args", &mut s.extra_args, p);
    take(&map, "reserve_vram_gib", &mut s.reserve_vram_gib, p);
    take(&map, "margin_gib", &mut s.margin_gib, p);
    take(&map, "oom_retry", &mut s.oom_retry, p);
    take(&map, "output_dir", &mut s.output_dir, p);
    take(&map, "theme", &mut s.theme, p);
    take(&map, "picked_card", &mut s.picked_card, p);
    take(&map, "recent", &mut s.recent, p);
    // Numbers the budget divides by or adds: a negative or infinite one would mislead it.
    if !(s.margin_gib.is_finite() && (0.0..=1024.0).contains(&s.margin_gib)) {
        problems.push(format!(
            "margin_gib {} is not between 0 and 1024 GiB",
            s.margin_gib
        ));
        s.margin_gib = Settings::default().margin_gib;
    }
    if let Some(reserve) = s.reserve_vram_gib
        && !(reserve.is_finite() && (0.0..=1024.0).contains(&reserve))
    {
        problems.push(format!(
            "reserve_vram_gib {reserve} is not between 0 and 1024 GiB"
        ));
        s.reserve_vram_gib = None;
    }
    // Empty strings mean "not set" (a cleared text field).
    s.server_url = s.server_url.filter(|u| !u.trim().is_empty());
    s.picked_card = s.picked_card.filter(|c| !c.trim().is_empty());
    s.comfyui_dir = s.comfyui_dir.filter(|d| !d.as_os_str().is_empty());
    s.output_dir = s.output_dir.filter(|d| !d.as_os_str().is_empty());
    s.version = SETTINGS_VERSION;
    Ok((s, problems))
}

/// Reads `key` into `slot` when present and of the right shape; else records why and keeps the
/// default already in `slot`.
fn take<T: DeserializeOwned>(
    map: &Map<String, Value>,
    key: &str,
    slot: &mut T,
    problems: &mut Vec<String>,
) {
    let Some(value) = map.get(key) else {
        return;
    };
    match serde_json::from_value::<T>(value.clone()) {
        Ok(v) => *slot = v,
        Err(e) => problems.push(format!("{key} {value} ({e})")),
    }
}

/// Renames `path` to `<name>.broken` (or `.broken-2`, … if taken) and returns the new path.
fn set_aside(path: &Path) -> Result<PathBuf, SettingsError> {
    let to = crate::runs::store::broken_path(path);
    match fs::rename(path, &to) {
        Ok(()) => Ok(to),
        Err(source) => Err(SettingsError::SetAside {
            path: path.to_path_buf(),
            to,
            source,
        }),
    }
}

/// Saves the settings to the app's data folder. See [`save_settings_in`].
pub fn save_settings(settings: &Settings) -> Result<PathBuf, SettingsError> {
    save_settings_in(&data_dir()?, settings)
}

/// Writes `settings.json` in `dir` (created if missing) atomically, stamped with this build's
/// version; returns the file's path.
pub fn save_settings_in(dir: &Path, settings: &Settings) -> Result<PathBuf, SettingsError> {
    let path = settings_path(dir);
    let mut current = settings.clone();
    current.version = SETTINGS_VERSION;
    // JSON cannot hold a non-UTF-8 path: such a path is written lossily rather than not at all.
    let mut bytes = serde_json::to_vec_pretty(&current).unwrap_or_else(|_| {
        let mut lossy = current.clone();
        lossy.comfyui_dir = lossy
            .comfyui_dir
            .map(|d| PathBuf::from(d.to_string_lossy().into_owned()));
        lossy.output_dir = lossy
            .output_dir
            .map(|d| PathBuf::from(d.to_string_lossy().into_owned()));
        serde_json::to_vec_pretty(&lossy).unwrap_or_default()
    });
    bytes.push(b'\n');
    write_atomically(&path, &bytes)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_design() {
        let s = Settings::default();
        assert_eq!(s.version, SETTINGS_VERSION);
        assert_eq!(s.margin_gib, 2.0);
        assert!(s.oom_retry);
        assert_eq!(s.theme, Theme::System);
        assert!(s.comfyui_dir.is_none() && s.server_url.is_none() && s.extra_args.is_empty());
        // serde's own default (the `#[serde(default)]` path) agrees.
        let from_empty: Settings = serde_json::from_str("{}").unwrap();
        assert_eq!(from_empty, s);
    }

    #[test]
    fn missing_keys_take_defaults_and_bad_values_are_named() {
        let (s, problems) = parse_settings(br#"{"theme": "dark", "margin_gib": 3.5}"#).unwrap();
        assert_eq!(s.theme, Theme::Dark);
        assert_eq!(s.margin_gib, 3.5);
        assert!(s.oom_retry && problems.is_empty());

        let (s, problems) = parse_settings(
            br#"{"theme": "purple", "margin_gib": -1, "oom_retry": "yes", "server_url": "",
                 "reserve_vram_gib": 1.5, "extra_args": ["--fast"], "future_key": 1}"#,
        )
        .unwrap();
        assert_eq!(s.theme, Theme::System);
        assert_eq!(s.margin_gib, 2.0);
        assert!(s.oom_retry);
        assert_eq!(s.server_url, None);
        assert_eq!(s.reserve_vram_gib, Some(1.5));
        assert_eq!(s.extra_args, vec!["--fast".to_string()]);
        assert_eq!(problems.len(), 3, "{problems:?}");
        for key in ["theme", "margin_gib", "oom_retry"] {
            assert!(problems.iter().any(|p| p.starts_with(key)), "{problems:?}");
        }
    }

    #[test]
    fn unusable_files_are_refused_with_a_reason() {
        assert!(
            parse_settings(b"{\"version\": 7}")
                .unwrap_err()
                .contains("newer")
        );
        assert!(
            parse_settings(b"{\"theme\": ")
                .unwrap_err()
                .contains("JSON")
        );
        assert!(
            parse_settings(b"[1]")
                .unwrap_err()
                .contains("not a settings")
        );
        assert!(parse_settings(b"{\"version\": \"x\"}").is_err());
    }
}
