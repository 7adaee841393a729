//! The preset list: the shipped presets (read-only) and the user's own, one file each in
//! `<data_dir>/presets/`. Save, duplicate, rename, delete, import and export one file.
//!
//! Writes are atomic ([`write_atomically`]): a crash leaves the old file or the new one. A file
//! in the folder that this build cannot use (broken JSON, not a preset, a newer format) is never
//! dropped silently: it is renamed to `<file>.broken` (so it stops being listed but stays on
//! disk) and reported with the reason, so the window can say so.

use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::shipped::{SHIPPED, shipped};
use super::{MAX_PRESET_BYTES, Preset, PresetDefaults, PresetError, clean_name};
use crate::runs::store::{data_dir, write_atomically};
use crate::workflow::load;
use crate::workflow::node_defs::NodeDefs;
use crate::workflow::recognise;

/// The presets folder's name inside the data folder.
pub const PRESETS_DIR: &str = "presets";

/// Which preset: a shipped one or a user file, by file name (stable across renames).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PresetId {
    Shipped(String),
    User(String),
}

impl PresetId {
    pub fn is_shipped(&self) -> bool {
        matches!(self, PresetId::Shipped(_))
    }

    /// The file name (in `workflows/` or the presets folder).
    pub fn file(&self) -> &str {
        match self {
            PresetId::Shipped(file) | PresetId::User(file) => file,
        }
    }
}

impl fmt::Display for PresetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PresetId::Shipped(file) => write!(f, "{file} (shipped)"),
            PresetId::User(file) => f.write_str(file),
        }
    }
}

/// One line of the preset list.
#[derive(Debug, Clone, PartialEq)]
pub struct PresetEntry {
    pub id: PresetId,
    pub name: String,
    pub description: String,
    pub defaults: PresetDefaults,
    /// Shipped presets cannot be renamed, changed or deleted.
    pub read_only: bool,
    /// The user file; `None` for shipped presets.
    pub path: Option<PathBuf>,
}

/// A preset file that could not be used, and where it was kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenPreset {
    pub file: PathBuf,
    /// Why it could not be used, in words.
    pub reason: String,
    /// Where it is now (`<file>.broken`); `None` when it could not be moved (then
    /// `not_moved` says why) or is built in.
    pub kept_as: Option<PathBuf>,
    pub not_moved: Option<String>,
}

impl fmt::Display for BrokenPreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the preset {} could not be used ({})",
            self.file.display(),
            self.reason
        )?;
        match (&self.kept_as, &self.not_moved) {
            (Some(to), _) => write!(
                f,
                "; it was kept as {} — fix it and rename it back to a .json file, or delete it",
                to.display()
            ),
            (None, Some(why)) => write!(
                f,
                "; it could not be moved aside ({why}); move or delete it by hand"
            ),
            (None, None) => Ok(()),
        }
    }
}

/// The preset list, and the files set aside while reading it (show them to the user).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PresetListing {
    /// Shipped presets first (in their fixed order), then the user's by name.
    pub presets: Vec<PresetEntry>,
    /// Files set aside by this listing, with the reasons.
    pub broken: Vec<BrokenPreset>,
    /// Every `*.json.broken*` file in the folder (set aside now or earlier), so the window can
    /// keep pointing at them until the user fixes or deletes them.
    pub kept_aside: Vec<PathBuf>,
}

/// The shipped presets plus the user's presets folder.
#[derive(Debug, Clone)]
pub struct PresetStore {
    dir: PathBuf,
}

impl PresetStore {
    /// The store over `<data_dir>/presets` (see `runs::store::data_dir`).
    pub fn open_default() -> Result<PresetStore, PresetError> {
        Ok(PresetStore::in_dir(data_dir()?.join(PRESETS_DIR)))
    }

    /// The store over a user presets folder (created on the first save).
    pub fn in_dir(dir: impl Into<PathBuf>) -> PresetStore {
        PresetStore { dir: dir.into() }
    }

    /// The user presets folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every preset. Broken user files are moved aside and reported in `broken`; a missing
    /// folder is an empty list. Errors only when the folder exists but cannot be listed.
    pub fn list(&self) -> Result<PresetListing, PresetError> {
        self.scan(true)
    }

    /// The list; broken user files are moved aside only when `set_aside_broken` (name checks
    /// skip them without touching them, so nothing is moved without being reported).
    fn scan(&self, set_aside_broken: bool) -> Result<PresetListing, PresetError> {
        let mut listing = PresetListing::default();
        for file in SHIPPED {
            match Preset::parse(file.text.as_bytes()) {
                Ok(preset) => listing.presets.push(entry(
                    PresetId::Shipped(file.file.to_string()),
                    &preset,
                    None,
                )),
                // Only a build with a broken workflows/ file gets here; tests prevent it.
                Err(reason) => listing.broken.push(BrokenPreset {
                    file: Path::new("workflows").join(file.file),
                    reason,
                    kept_as: None,
                    not_moved: None,
                }),
            }
        }
        let mut user = Vec::new();
        for file in self.user_files()? {
            match self.read_user(&file, set_aside_broken) {
                Ok(preset) => {
                    let path = self.dir.join(&file);
                    user.push(entry(PresetId::User(file), &preset, Some(path)));
                }
                Err(PresetError::Broken(broken)) => listing.broken.push(broken),
                // Unreadable (permissions): report it the same way, left where it is.
                Err(e) => listing.broken.push(BrokenPreset {
                    file: self.dir.join(&file),
                    reason: e.to_string(),
                    kept_as: None,
                    not_moved: Some("it could not be read".into()),
                }),
            }
        }
        user.sort_by(|a, b| {
            (a.name.to_lowercase(), a.id.file()).cmp(&(b.name.to_lowercase(), b.id.file()))
        });
        listing.presets.extend(user);
        listing.kept_aside = self.kept_aside_files();
        Ok(listing)
    }

    /// One preset in full. A user file that has become unusable is moved aside and reported as
    /// [`PresetError::Broken`].
    pub fn load(&self, id: &PresetId) -> Result<Preset, PresetError> {
        match id {
            PresetId::Shipped(file) => {
                let shipped = shipped(file).ok_or_else(|| not_found(id))?;
                Preset::parse(shipped.text.as_bytes()).map_err(|reason| {
                    PresetError::Broken(BrokenPreset {
                        file: Path::new("workflows").join(file),
                        reason,
                        kept_as: None,
                        not_moved: None,
                    })
                })
            }
            PresetId::User(file) => {
                check_file_name(file).ok_or_else(|| not_found(id))?;
                self.read_user(file, true)
            }
        }
    }

    /// Saves `preset` as a new user preset; its file name comes from its name. The name must not
    /// be taken by another preset (shipped or user).
    pub fn save_new(&self, preset: &Preset) -> Result<PresetId, PresetError> {
        let mut preset = preset.clone();
        preset.name = clean_name(&preset.name)?;
        self.ensure_name_free(&preset.name, None)?;
        self.write_new(&preset)
    }

    /// Replaces the content of a user preset (keeping its file), e.g. "update this preset from
    /// the current state".
    pub fn update(&self, id: &PresetId, preset: &Preset) -> Result<(), PresetError> {
        let file = self.user_file(id)?;
        if !self.dir.join(file).is_file() {
            return Err(not_found(id));
        }
        let mut preset = preset.clone();
        preset.name = clean_name(&preset.name)?;
        self.ensure_name_free(&preset.name, Some(id))?;
        write_atomically(&self.dir.join(file), &preset.to_file_bytes())?;
        Ok(())
    }

    /// Gives a user preset a new display name (the file keeps its name, so the id stays).
    pub fn rename(&self, id: &PresetId, new_name: &str) -> Result<(), PresetError> {
        let file = self.user_file(id)?;
        let name = clean_name(new_name)?;
        let mut preset = self.read_user(file, true)?;
        if preset.name == name {
            return Ok(());
        }
        self.ensure_name_free(&name, Some(id))?;
        preset.name = name;
        write_atomically(&self.dir.join(file), &preset.to_file_bytes())?;
        Ok(())
    }

    /// Copies any preset (shipped ones too) to a new user preset named "<name> (copy)".
    pub fn duplicate(&self, id: &PresetId) -> Result<PresetId, PresetError> {
        let mut preset = self.load(id)?;
        preset.name = self.free_name(&format!("{} (copy)", preset.name))?;
        self.write_new(&preset)
    }

    /// Deletes a user preset's file.
    pub fn delete(&self, id: &PresetId) -> Result<(), PresetError> {
        let path = self.dir.join(self.user_file(id)?);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(not_found(id)),
            Err(source) => Err(PresetError::Delete { path, source }),
        }
    }

    /// Imports one file as a new user preset: a preset file, or a plain ComfyUI API prompt
    /// (named after the file, defaults read from the graph). A name already in use gets " (2)",
    /// " (3)"… The file itself is only read, never moved.
    pub fn import(&self, path: &Path) -> Result<PresetId, PresetError> {
        let bytes = read_limited(path)?;
        let not_importable = |reason| PresetError::NotImportable {
            path: path.to_path_buf(),
            reason,
        };
        let mut preset = match Preset::parse(&bytes) {
            Ok(preset) => preset,
            // A preset file this build cannot use (newer, broken) is never read as a bare
            // prompt instead: that would drop what it says about itself.
            Err(reason) if is_preset_file(&bytes) => return Err(not_importable(reason)),
            Err(reason) => prompt_as_preset(path, &bytes).ok_or_else(|| not_importable(reason))?,
        };
        preset.name = self.free_name(&preset.name)?;
        self.write_new(&preset)
    }

    /// Writes a preset (shipped or user) to `to` as a preset file, atomically.
    pub fn export(&self, id: &PresetId, to: &Path) -> Result<(), PresetError> {
        let preset = self.load(id)?;
        write_atomically(to, &preset.to_file_bytes())?;
        Ok(())
    }

    // -----------------------------------------------------------------------------------------

    /// The `*.json` files of the folder, sorted; none when the folder does not exist.
    fn user_files(&self) -> Result<Vec<String>, PresetError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(PresetError::List {
                    path: self.dir.clone(),
                    source,
                });
            }
        };
        let mut files: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| check_file_name(name).is_some())
            .collect();
        files.sort();
        Ok(files)
    }

    /// The files set aside so far, sorted.
    fn kept_aside_files(&self) -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.contains(".json.broken"))
            })
            .map(|e| e.path())
            .collect();
        files.sort();
        files
    }

    /// Reads a user file; an unusable one is returned as `Broken`, moved aside if `set_aside`.
    fn read_user(&self, file: &str, set_aside: bool) -> Result<Preset, PresetError> {
        let path = self.dir.join(file);
        let broken = |reason: String| {
            if set_aside {
                set_aside_file(&path, reason)
            } else {
                BrokenPreset {
                    file: path.clone(),
                    reason,
                    kept_as: None,
                    not_moved: None,
                }
            }
        };
        let bytes = match read_limited(&path) {
            Ok(bytes) => bytes,
            Err(PresetError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Err(not_found(&PresetId::User(file.to_string())));
            }
            Err(PresetError::NotImportable { reason, .. }) => {
                return Err(PresetError::Broken(broken(reason)));
            }
            Err(e) => return Err(e),
        };
        Preset::parse(&bytes).map_err(|reason| PresetError::Broken(broken(reason)))
    }

    /// The file name of a user preset id; shipped ids are read-only.
    fn user_file<'a>(&self, id: &'a PresetId) -> Result<&'a str, PresetError> {
        match id {
            PresetId::Shipped(file) => Err(PresetError::ReadOnly {
                name: shipped(file)
                    .and_then(|s| Preset::parse(s.text.as_bytes()).ok())
                    .map_or_else(|| file.clone(), |p| p.name),
            }),
            PresetId::User(file) => check_file_name(file).ok_or_else(|| not_found(id)),
        }
    }

    /// Names in use, except the preset `except`'s own.
    fn names_in_use(&self, except: Option<&PresetId>) -> Result<Vec<String>, PresetError> {
        let listing = self.scan(false)?;
        Ok(listing
            .presets
            .into_iter()
            .filter(|p| Some(&p.id) != except)
            .map(|p| p.name.to_lowercase())
            .collect())
    }

    fn ensure_name_free(&self, name: &str, except: Option<&PresetId>) -> Result<(), PresetError> {
        if self.names_in_use(except)?.contains(&name.to_lowercase()) {
            return Err(PresetError::NameTaken {
                name: name.to_string(),
            });
        }
        Ok(())
    }

    /// `wanted`, or `wanted (2)`, `wanted (3)`… whichever is free.
    fn free_name(&self, wanted: &str) -> Result<String, PresetError> {
        let wanted = clean_name(wanted)?;
        let taken = self.names_in_use(None)?;
        let mut name = wanted.clone();
        let mut n = 2;
        while taken.contains(&name.to_lowercase()) {
            name = format!("{wanted} ({n})");
            n += 1;
        }
        Ok(name)
    }

    /// Writes a new file named after the preset (`my-preset.json`, `my-preset-2.json`, …).
    fn write_new(&self, preset: &Preset) -> Result<PresetId, PresetError> {
        let stem = slug(&preset.name);
        let mut file = format!("{stem}.json");
        let mut n = 2;
        // `.broken` copies count as taken too, so a fixed file can be renamed back.
        while self.dir.join(&file).exists() || self.dir.join(format!("{file}.broken")).exists() {
            file = format!("{stem}-{n}.json");
            n += 1;
        }
        write_atomically(&self.dir.join(&file), &preset.to_file_bytes())?;
        Ok(PresetId::User(file))
    }
}

fn entry(id: PresetId, preset: &Preset, path: Option<PathBuf>) -> PresetEntry {
    PresetEntry {
        read_only: id.is_shipped(),
        id,
        name: preset.name.clone(),
        description: preset.description.clone(),
        defaults: preset.defaults,
        path,
    }
}

fn not_found(id: &PresetId) -> PresetError {
    PresetError::NotFound { id: id.to_string() }
}

/// A plain file name ending in `.json` (no folders, not hidden): what the store lists and
/// accepts as an id.
fn check_file_name(name: &str) -> Option<&str> {
    let plain = !name.contains(['/', '\\']) && !name.starts_with('.');
    (plain && name.len() > ".json".len() && name.ends_with(".json")).then_some(name)
}

/// A file's bytes, refusing anything larger than a preset could be.
fn read_limited(path: &Path) -> Result<Vec<u8>, PresetError> {
    let read_error = |source| PresetError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_PRESET_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_PRESET_BYTES {
        return Err(PresetError::NotImportable {
            path: path.to_path_buf(),
            reason: format!(
                "larger than {} MiB, too large for a preset",
                MAX_PRESET_BYTES >> 20
            ),
        });
    }
    Ok(bytes)
}

/// Whether `bytes` are JSON carrying the preset marker (of any version).
fn is_preset_file(bytes: &[u8]) -> bool {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    serde_json::from_slice::<serde_json::Value>(bytes)
        .is_ok_and(|v| v.get(super::PRESET_KEY).is_some())
}

/// A plain API prompt file (any wrapping the workflow reader knows) as a preset named after the
/// file, with the defaults its graph carries.
fn prompt_as_preset(path: &Path, bytes: &[u8]) -> Option<Preset> {
    let loaded = load::load(bytes).ok()?;
    let (prompt, _) = loaded.api.as_ref().filter(|_| loaded.reads_prompt())?;
    let defaults = recognise::inspect(&loaded, NodeDefs::bundled())
        .map(|i| PresetDefaults::from_inspection(&i, PresetDefaults::default()))
        .unwrap_or_default();
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "Imported workflow".into());
    Preset::from_api(&name, "", defaults, prompt).ok()
}

/// Renames `path` to `<file>.broken` (or `.broken-2`, … if taken) and says so.
fn set_aside_file(path: &Path, reason: String) -> BrokenPreset {
    let to = crate::runs::store::broken_path(path);
    let (kept_as, not_moved) = match fs::rename(path, &to) {
        Ok(()) => (Some(to), None),
        Err(e) => (None, Some(e.to_string())),
    };
    BrokenPreset {
        file: path.to_path_buf(),
        reason,
        kept_as,
        not_moved,
    }
}

/// A file-name stem from a display name: lowercase ASCII letters and digits joined by '-'.
fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
        if out.len() >= 48 {
            break;
        }
    }
    let out = out.trim_end_matches('-');
    if out.is_empty() {
        "preset".into()
    } else {
        out.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_plain_file_names() {
        assert_eq!(
            slug("Wan 2.2 14B · text to video"),
            "wan-2-2-14b-text-to-video"
        );
        assert_eq!(slug("  --  "), "preset");
        assert_eq!(slug("狐狸"), "preset");
        assert_eq!(slug("../../etc/passwd"), "etc-passwd");
        assert!(slug(&"x".repeat(200)).len() <= 48);
    }

    #[test]
    fn only_plain_json_names_are_ids() {
        assert!(check_file_name("a.json").is_some());
        assert!(check_file_name("../a.json").is_none());
        assert!(check_file_name("a\\b.json").is_none());
        assert!(check_file_name(".hidden.json").is_none());
        assert!(check_file_name("a.json.broken").is_none());
        assert!(check_file_name("a.json.tmp-1-2").is_none());
        assert!(check_file_name(".json").is_none());
    }

    #[test]
    fn a_broken_preset_says_where_it_went() {
        let broken = BrokenPreset {
            file: "/p/a.json".into(),
            reason: "not valid JSON".into(),
            kept_as: Some("/p/a.json.broken".into()),
            not_moved: None,
        };
        let text = broken.to_string();
        assert!(
            text.contains("/p/a.json") && text.contains("a.json.broken"),
            "{text}"
        );
        assert!(text.contains("not valid JSON"), "{text}");
    }
}
