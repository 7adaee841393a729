//! Where wan-pilot keeps what it learns, and how: the data folder per platform, and the
//! calibration file (`budget::calibrate::Calibration`) read tolerantly and written atomically.
//!
//! Nothing the user earned is ever lost: a file this build cannot read (broken JSON, or written
//! by a newer wan-pilot) is renamed aside to `calibration.json.broken-<secs>` and the app starts
//! from the priors, saying so; a save goes to a temporary file in the same folder, is flushed to
//! disk and then renamed over the old one, so a crash leaves either the old file or the new one.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::budget::calibrate::{CALIBRATION_VERSION, Calibration};

/// Environment variable that overrides the data folder (tests, portable installs).
pub const DATA_DIR_ENV: &str = "WAN_PILOT_DATA_DIR";

/// The calibration file's name inside the data folder.
pub const CALIBRATION_FILE: &str = "calibration.json";

/// The folder name under the platform's application-data folder.
const APP_DIR: &str = "wan-pilot";

/// What went wrong reading or writing the app's data, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot tell where to keep wan-pilot's data: {0} is not set; set {DATA_DIR_ENV} to a folder"
    )]
    NoDataDir(&'static str),
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
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
    #[error("cannot encode the calibration for {}: {source}", path.display())]
    Encode {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// The platforms whose data folders differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataPlatform {
    Linux,
    MacOs,
    Windows,
}

impl DataPlatform {
    /// The platform this build runs on (other Unixes follow the XDG rules, as Linux does).
    pub fn current() -> DataPlatform {
        if cfg!(target_os = "windows") {
            DataPlatform::Windows
        } else if cfg!(target_os = "macos") {
            DataPlatform::MacOs
        } else {
            DataPlatform::Linux
        }
    }
}

/// The app's data folder from the process environment. See [`data_dir_from`].
pub fn data_dir() -> Result<PathBuf, StoreError> {
    data_dir_from(DataPlatform::current(), |name| std::env::var_os(name))
}

/// The app's data folder, given a way to read environment variables (so tests need not change
/// the process environment, which other threads read): `WAN_PILOT_DATA_DIR` if set; else Linux
/// `$XDG_DATA_HOME/wan-pilot` (when absolute, as the spec asks) or `~/.local/share/wan-pilot`,
/// macOS `~/Library/Application Support/wan-pilot`, Windows `%APPDATA%\wan-pilot`.
pub fn data_dir_from(
    platform: DataPlatform,
    var: impl Fn(&str) -> Option<OsString>,
) -> Result<PathBuf, StoreError> {
    let set = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set(DATA_DIR_ENV) {
        return Ok(dir);
    }
    match platform {
        DataPlatform::Windows => set("APPDATA")
            .map(|d| d.join(APP_DIR))
            .ok_or(StoreError::NoDataDir("APPDATA")),
        DataPlatform::MacOs => set("HOME")
            .map(|h| h.join("Library").join("Application Support").join(APP_DIR))
            .ok_or(StoreError::NoDataDir("HOME")),
        DataPlatform::Linux => {
            if let Some(xdg) = set("XDG_DATA_HOME").filter(|p| p.is_absolute()) {
                return Ok(xdg.join(APP_DIR));
            }
            set("HOME")
                .map(|h| h.join(".local").join("share").join(APP_DIR))
                .ok_or(StoreError::NoDataDir("HOME"))
        }
    }
}

/// The calibration file inside a data folder.
pub fn calibration_path(dir: &Path) -> PathBuf {
    dir.join(CALIBRATION_FILE)
}

/// A file that could not be read and was moved aside, so the user can still recover it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    pub original: PathBuf,
    pub moved_to: PathBuf,
    /// Why it could not be read, in words.
    pub reason: String,
}

impl std::fmt::Display for SetAside {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} could not be used ({}); it was kept as {} and calibration starts again from the priors",
            self.original.display(),
            self.reason,
            self.moved_to.display()
        )
    }
}

/// The calibration as loaded, and the file set aside on the way, if any (show it to the user).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedCalibration {
    pub calibration: Calibration,
    pub set_aside: Option<SetAside>,
}

/// Loads the calibration from the app's data folder. See [`load_calibration_in`].
pub fn load_calibration() -> Result<LoadedCalibration, StoreError> {
    load_calibration_in(&data_dir()?)
}

/// Loads `calibration.json` from `dir`: no file is an empty calibration; a file that is not
/// valid JSON, not a calibration, or of a newer version is renamed aside and an empty
/// calibration returned with a [`SetAside`] saying so. Errors only when the file cannot be read
/// or moved aside (then nothing is overwritten later either).
pub fn load_calibration_in(dir: &Path) -> Result<LoadedCalibration, StoreError> {
    let path = calibration_path(dir);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(LoadedCalibration {
                calibration: Calibration::default(),
                set_aside: None,
            });
        }
        Err(source) => return Err(StoreError::Read { path, source }),
    };
    let reason = match parse_calibration(&bytes) {
        Ok(calibration) => {
            return Ok(LoadedCalibration {
                calibration,
                set_aside: None,
            });
        }
        Err(reason) => reason,
    };
    let moved_to = set_aside(&path)?;
    Ok(LoadedCalibration {
        calibration: Calibration::default(),
        set_aside: Some(SetAside {
            original: path,
            moved_to,
            reason,
        }),
    })
}

/// The calibration in `bytes`, or why it cannot be used.
fn parse_calibration(bytes: &[u8]) -> Result<Calibration, String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    let version = value.get("version").and_then(serde_json::Value::as_u64);
    if let Some(version) = version
        && version > u64::from(CALIBRATION_VERSION)
    {
        return Err(format!(
            "written by a newer wan-pilot (version {version}; this one reads up to {CALIBRATION_VERSION})"
        ));
    }
    serde_json::from_value(value).map_err(|e| format!("not a calibration file: {e}"))
}

/// Where a broken file is kept: `<name>.broken`, or `<name>.broken-2`, `-3`, … when taken.
/// Settings and preset files are set aside under these names (the calibration file adds the
/// time, see `set_aside`).
pub fn broken_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let mut to = path.with_file_name(format!("{name}.broken"));
    let mut n = 2;
    while to.exists() {
        to = path.with_file_name(format!("{name}.broken-{n}"));
        n += 1;
    }
    to
}

/// Renames `path` to `<name>.broken-<secs>` (with a counter if that exists) and returns the new
/// path.
fn set_aside(path: &Path) -> Result<PathBuf, StoreError> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = path
        .file_name()
        .map_or_else(|| OsString::from(CALIBRATION_FILE), |n| n.to_os_string());
    let mut attempt = 0u32;
    loop {
        let mut aside = name.clone();
        aside.push(format!(".broken-{secs}"));
        if attempt > 0 {
            aside.push(format!("-{attempt}"));
        }
        let to = path.with_file_name(aside);
        if !to.exists() {
            return match fs::rename(path, &to) {
                Ok(()) => Ok(to),
                Err(source) => Err(StoreError::SetAside {
                    path: path.to_path_buf(),
                    to,
                    source,
                }),
            };
        }
        attempt += 1;
    }
}

/// Saves the calibration to the app's data folder. See [`save_calibration_in`].
pub fn save_calibration(calibration: &Calibration) -> Result<PathBuf, StoreError> {
    save_calibration_in(&data_dir()?, calibration)
}

/// Writes `calibration.json` in `dir` (created if missing) atomically, stamped with this build's
/// version; returns the file's path.
pub fn save_calibration_in(dir: &Path, calibration: &Calibration) -> Result<PathBuf, StoreError> {
    let path = calibration_path(dir);
    let mut bytes = if calibration.version == CALIBRATION_VERSION {
        serde_json::to_vec_pretty(calibration)
    } else {
        let mut current = calibration.clone();
        current.version = CALIBRATION_VERSION;
        serde_json::to_vec_pretty(&current)
    }
    .map_err(|source| StoreError::Encode {
        path: path.clone(),
        source,
    })?;
    bytes.push(b'\n');
    write_atomically(&path, &bytes)?;
    Ok(path)
}

/// Distinguishes temporary files of concurrent saves within one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` so that readers see the old file or the new one, never half of
/// one: a temporary file in the same folder (same file system, so the rename is atomic),
/// flushed to disk, renamed over `path`, then the folder flushed so the rename survives a crash.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let write_error = |source| StoreError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(write_error)?;
    let mut temp_name = path
        .file_name()
        .map_or_else(|| OsString::from("data"), |n| n.to_os_string());
    temp_name.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let temp = dir.join(temp_name);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, path)
    })();
    if let Err(source) = written {
        // Best effort: the temporary file is ours and useless now.
        let _ = fs::remove_file(&temp);
        return Err(write_error(source));
    }
    sync_dir(&dir);
    Ok(())
}

/// Flushes a folder's entries (the rename) to disk where the platform allows it; a failure only
/// weakens crash safety, so it is not an error.
fn sync_dir(dir: &Path) {
    if cfg!(unix)
        && let Ok(handle) = File::open(dir)
    {
        let _ = handle.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn data_folders_per_platform() {
        let home = [("HOME", "/home/ann")];
        assert_eq!(
            data_dir_from(DataPlatform::Linux, env(&home)).unwrap(),
            Path::new("/home/ann/.local/share/wan-pilot")
        );
        let xdg = [("HOME", "/home/ann"), ("XDG_DATA_HOME", "/data")];
        assert_eq!(
            data_dir_from(DataPlatform::Linux, env(&xdg)).unwrap(),
            Path::new("/data/wan-pilot")
        );
        // A relative XDG_DATA_HOME is invalid by the spec and ignored.
        let relative = [("HOME", "/home/ann"), ("XDG_DATA_HOME", "data")];
        assert_eq!(
            data_dir_from(DataPlatform::Linux, env(&relative)).unwrap(),
            Path::new("/home/ann/.local/share/wan-pilot")
        );
        assert_eq!(
            data_dir_from(DataPlatform::MacOs, env(&home)).unwrap(),
            Path::new("/home/ann/Library/Application Support/wan-pilot")
        );
        let appdata = [("APPDATA", "C:/Users/ann/AppData/Roaming")];
        assert_eq!(
            data_dir_from(DataPlatform::Windows, env(&appdata)).unwrap(),
            Path::new("C:/Users/ann/AppData/Roaming").join("wan-pilot")
        );
        let both = [("HOME", "/home/ann"), (DATA_DIR_ENV, "/tmp/x")];
        for platform in [
            DataPlatform::Linux,
            DataPlatform::MacOs,
            DataPlatform::Windows,
        ] {
            assert_eq!(
                data_dir_from(platform, env(&both)).unwrap(),
                Path::new("/tmp/x")
            );
        }
        let err = data_dir_from(DataPlatform::Linux, env(&[])).unwrap_err();
        assert!(err.to_string().contains("HOME") && err.to_string().contains(DATA_DIR_ENV));
    }

    #[test]
    fn newer_versions_and_garbage_are_refused_with_a_reason() {
        assert!(
            parse_calibration(b"{\"version\": 99}")
                .unwrap_err()
                .contains("newer")
        );
        assert!(
            parse_calibration(b"{\"version\": ")
                .unwrap_err()
                .contains("JSON")
        );
        assert!(
            parse_calibration(b"[1, 2]")
                .unwrap_err()
                .contains("not a calibration")
        );
        assert_eq!(parse_calibration(b"{}").unwrap(), Calibration::default());
    }
}
