//! Finding a ComfyUI install, checking it, and learning which command-line flags it accepts.
//!
//! - [`candidates`]: where installs usually live, in priority order — a configured folder, our
//!   bundled runtime, the Windows portable build (`ComfyUI_windows_portable/ComfyUI`), ComfyUI
//!   Desktop's `basePath` (its `config.json`), StabilityMatrix's `Packages/ComfyUI`, `~/ComfyUI`.
//!   Pure: environment and file reads come in as functions.
//! - [`validate`]: `main.py` and `comfy/` present, the Python that runs it (portable
//!   `python_embeded`, a venv inside the folder, else `python3`/`python` on `PATH`), and the
//!   version from `comfyui_version.py`.
//! - [`parse_help`] / [`read_help`]: the long flags that `main.py --help` lists (argparse output),
//!   and [`SupportedFlags::filter`] so a launch never passes a flag this ComfyUI lacks.
//!
//! I/O: [`validate`] checks files, [`read_help`] runs `python main.py --help` once.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long `main.py --help` may take before it is given up on.
pub const HELP_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest config file (`config.json`, `library.json`) [`read_small_file`] reads.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Candidates

/// The operating system whose install locations are searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Os {
    Windows,
    MacOs,
    Linux,
}

impl Os {
    /// The one this program runs on (other Unixes count as Linux).
    pub fn current() -> Self {
        if cfg!(windows) {
            Self::Windows
        } else if cfg!(target_os = "macos") {
            Self::MacOs
        } else {
            Self::Linux
        }
    }
}

/// Where a candidate folder came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandidateSource {
    /// The folder the user chose in the settings.
    Configured,
    /// The runtime shipped with wan-pilot (the packaging owns its path).
    Bundled,
    /// The official Windows portable build (`ComfyUI_windows_portable/ComfyUI`).
    WindowsPortable,
    /// ComfyUI Desktop's `basePath`.
    Desktop,
    /// StabilityMatrix's `Packages/ComfyUI`.
    StabilityMatrix,
    /// `~/ComfyUI`, a plain git clone.
    Home,
}

/// A folder that may hold ComfyUI; [`validate`] says whether it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub dir: PathBuf,
    pub source: CandidateSource,
}

/// Folders given to [`candidates`] besides the well-known ones.
#[derive(Debug, Clone, Copy, Default)]
pub struct KnownFolders<'a> {
    /// The folder from the settings, first when set.
    pub configured: Option<&'a Path>,
    /// The bundled runtime's ComfyUI folder, second when set.
    pub bundled: Option<&'a Path>,
}

/// Where ComfyUI installs usually live, in priority order, without duplicates. `env` reads an
/// environment variable (`APPDATA`, `XDG_CONFIG_HOME`, …); `read` reads a small text file
/// (ComfyUI Desktop's `config.json`, StabilityMatrix's `library.json`) or gives `None`; use
/// [`read_small_file`] in the product. Nothing here checks that a folder exists.
pub fn candidates(
    known: KnownFolders<'_>,
    home: &Path,
    env: impl Fn(&str) -> Option<String>,
    os: Os,
    read: impl Fn(&Path) -> Option<String>,
) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    let mut push = |dir: PathBuf, source: CandidateSource| {
        if !out.iter().any(|c| c.dir == dir) {
            out.push(Candidate { dir, source });
        }
    };
    if let Some(dir) = known.configured {
        push(dir.to_path_buf(), CandidateSource::Configured);
    }
    if let Some(dir) = known.bundled {
        push(dir.to_path_buf(), CandidateSource::Bundled);
    }

    let env_path = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);

    // The Windows portable build is a 7z the user unpacks somewhere; these are the usual places.
    if os == Os::Windows {
        let mut roots = vec![
            home.to_path_buf(),
            home.join("Desktop"),
            home.join("Downloads"),
            home.join("Documents"),
        ];
        let drive = env("SystemDrive").unwrap_or_else(|| "C:".to_string());
        roots.push(PathBuf::from(format!("{drive}\\")));
        for root in roots {
            push(
                root.join("ComfyUI_windows_portable").join("ComfyUI"),
                CandidateSource::WindowsPortable,
            );
        }
    }

    // ComfyUI Desktop keeps `basePath` in `config.json` in its app-data folder.
    let app_data = match os {
        Os::Windows => env_path("APPDATA").unwrap_or_else(|| home.join("AppData").join("Roaming")),
        Os::MacOs => home.join("Library").join("Application Support"),
        Os::Linux => env_path("XDG_CONFIG_HOME").unwrap_or_else(|| home.join(".config")),
    };
    if let Some(base) = read(&app_data.join("ComfyUI").join("config.json"))
        .as_deref()
        .and_then(desktop_base_path)
    {
        push(base, CandidateSource::Desktop);
    }

    // StabilityMatrix: portable (`Data/` next to its executable, usually unpacked in the home
    // folder or Downloads), or its app-data folder, whose `library.json` may move the library.
    let mut sm_roots = vec![
        home.join("StabilityMatrix").join("Data"),
        home.join("Downloads").join("StabilityMatrix").join("Data"),
    ];
    let sm_app_data = match os {
        Os::Windows | Os::MacOs => vec![app_data.join("StabilityMatrix")],
        Os::Linux => vec![
            env_path("XDG_DATA_HOME")
                .unwrap_or_else(|| home.join(".local").join("share"))
                .join("StabilityMatrix"),
            app_data.join("StabilityMatrix"),
        ],
    };
    for dir in &sm_app_data {
        if let Some(library) = read(&dir.join("library.json"))
            .as_deref()
            .and_then(stability_matrix_library_dir)
        {
            sm_roots.push(library);
        }
    }
    for dir in sm_app_data {
        sm_roots.push(dir.join("Data"));
        sm_roots.push(dir);
    }
    for root in sm_roots {
        push(
            root.join("Packages").join("ComfyUI"),
            CandidateSource::StabilityMatrix,
        );
    }

    push(home.join("ComfyUI"), CandidateSource::Home);
    out
}

/// `basePath` from ComfyUI Desktop's `config.json`, if it has a non-empty one.
pub fn desktop_base_path(config_json: &str) -> Option<PathBuf> {
    json_string_field(config_json, "basePath")
}

/// `LibraryDir` from StabilityMatrix's `library.json`, if it has a non-empty one.
pub fn stability_matrix_library_dir(library_json: &str) -> Option<PathBuf> {
    json_string_field(library_json, "LibraryDir")
}

fn json_string_field(text: &str, key: &str) -> Option<PathBuf> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let field = value.get(key)?.as_str()?.trim();
    (!field.is_empty()).then(|| PathBuf::from(field))
}

/// A small text file (at most 1 MiB), or `None` when it is missing, too large or unreadable; the
/// `read` argument of [`candidates`] in the product.
pub fn read_small_file(path: &Path) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .ok()?;
    (text.len() as u64 <= MAX_CONFIG_BYTES).then_some(text)
}

/// The first usable ComfyUI among the [`candidates`] of this machine (the configured folder
/// first); when none validates, the configured folder's error, else a list of where we looked.
pub fn discover(configured: Option<&Path>) -> Result<Install, String> {
    let home = std::env::var_os(if Os::current() == Os::Windows {
        "USERPROFILE"
    } else {
        "HOME"
    })
    .map(PathBuf::from)
    .unwrap_or_default();
    let found = candidates(
        KnownFolders {
            configured,
            bundled: None,
        },
        &home,
        |name| std::env::var(name).ok(),
        Os::current(),
        read_small_file,
    );
    let mut looked = Vec::new();
    for candidate in &found {
        match validate(&candidate.dir) {
            Ok(install) => return Ok(install),
            Err(e) if candidate.source == CandidateSource::Configured => return Err(e.to_string()),
            Err(_) => looked.push(candidate.dir.display().to_string()),
        }
    }
    Err(format!(
        "no ComfyUI found (looked in {})",
        if looked.is_empty() {
            "no known places".to_string()
        } else {
            looked.join(", ")
        }
    ))
}

// ---------------------------------------------------------------------------------------------
// Validation

/// Where the Python that runs an install came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PythonSource {
    /// `python_embeded/python.exe` next to the ComfyUI folder (the Windows portable build).
    Portable,
    /// A virtual environment inside the ComfyUI folder (`.venv` or `venv`; StabilityMatrix and
    /// ComfyUI Desktop 2.0 use these).
    Venv { name: String },
    /// Found on `PATH` under this command name (`python3`, `python`): the user's own Python,
    /// which may lack ComfyUI's requirements.
    Path { command: String },
}

impl fmt::Display for PythonSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Portable => write!(f, "the portable build's python_embeded"),
            Self::Venv { name } => write!(f, "the virtual environment {name}"),
            Self::Path { command } => write!(f, "`{command}` on PATH"),
        }
    }
}

/// A checked ComfyUI install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Install {
    /// The folder with `main.py`.
    pub root: PathBuf,
    /// The Python executable that runs it.
    pub python: PathBuf,
    pub python_source: PythonSource,
    /// `__version__` from `comfyui_version.py` (absent before ComfyUI 0.3).
    pub version: Option<String>,
}

/// Why a folder is not a usable ComfyUI, or why `main.py --help` could not be read. Each message
/// names the folder, what is missing, and what the user can do.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(
        "{}: no such folder; choose the ComfyUI folder (the one that holds main.py)",
        dir.display()
    )]
    NotAFolder { dir: PathBuf },
    #[error(
        "{}: not a ComfyUI folder, it has no main.py; choose the folder that holds main.py \
         (for the Windows portable build, the ComfyUI folder inside ComfyUI_windows_portable)",
        dir.display()
    )]
    NoMainPy { dir: PathBuf },
    #[error(
        "{}: has main.py but no comfy/ folder, so the ComfyUI copy is incomplete; download or \
         clone ComfyUI again",
        dir.display()
    )]
    NoComfyPackage { dir: PathBuf },
    #[error(
        "{}: no Python to run ComfyUI with: no python_embeded next to it, no .venv or venv inside \
         it, and no python3 or python on PATH; create one with `python -m venv .venv` in that \
         folder and install ComfyUI's requirements.txt into it",
        dir.display()
    )]
    NoPython { dir: PathBuf },
    #[error("{}: cannot start {} to read `main.py --help`: {source}", dir.display(), python.display())]
    Spawn {
        dir: PathBuf,
        python: PathBuf,
        source: io::Error,
    },
    #[error(
        "{}: `main.py --help` did not finish within {} s; check that this ComfyUI starts at all",
        dir.display(),
        timeout.as_secs()
    )]
    HelpTimeout { dir: PathBuf, timeout: Duration },
    #[error(
        "{}: `main.py --help` failed ({status}); its Python probably lacks ComfyUI's requirements \
         (install requirements.txt): {stderr_tail}",
        dir.display()
    )]
    HelpFailed {
        dir: PathBuf,
        status: String,
        stderr_tail: String,
    },
    #[error(
        "{}: `main.py --help` printed no options list; this does not look like ComfyUI's main.py",
        dir.display()
    )]
    HelpUnreadable { dir: PathBuf },
}

/// Checks that `dir` holds ComfyUI and finds its Python, looking on this process's `PATH` last.
/// A folder that only holds `ComfyUI/main.py` (the portable build's top folder, a Desktop 2.0
/// install) is taken as that `ComfyUI` folder.
pub fn validate(dir: &Path) -> Result<Install, InstallError> {
    validate_with_path(dir, std::env::var_os("PATH"), Os::current())
}

/// [`validate`] with the `PATH` value and the platform given (for tests).
pub fn validate_with_path(
    dir: &Path,
    path_var: Option<OsString>,
    os: Os,
) -> Result<Install, InstallError> {
    if !dir.is_dir() {
        return Err(InstallError::NotAFolder {
            dir: dir.to_path_buf(),
        });
    }
    let root = if !dir.join("main.py").is_file() && dir.join("ComfyUI").join("main.py").is_file() {
        dir.join("ComfyUI")
    } else {
        dir.to_path_buf()
    };
    if !root.join("main.py").is_file() {
        return Err(InstallError::NoMainPy { dir: root });
    }
    if !root.join("comfy").is_dir() {
        return Err(InstallError::NoComfyPackage { dir: root });
    }
    let (python, python_source) = find_python(&root, path_var, os)
        .ok_or_else(|| InstallError::NoPython { dir: root.clone() })?;
    let version = std::fs::read_to_string(root.join("comfyui_version.py"))
        .ok()
        .and_then(|text| parse_version_file(&text));
    Ok(Install {
        root,
        python,
        python_source,
        version,
    })
}

fn find_python(root: &Path, path_var: Option<OsString>, os: Os) -> Option<(PathBuf, PythonSource)> {
    if let Some(parent) = root.parent() {
        let embedded = parent.join("python_embeded").join("python.exe");
        if embedded.is_file() {
            return Some((embedded, PythonSource::Portable));
        }
    }
    for venv in [".venv", "venv"] {
        let dir = root.join(venv);
        let inside = [
            dir.join("Scripts").join("python.exe"),
            dir.join("bin").join("python"),
            dir.join("bin").join("python3"),
        ];
        if let Some(python) = inside.into_iter().find(|p| p.is_file()) {
            let name = venv.to_string();
            return Some((python, PythonSource::Venv { name }));
        }
    }
    let commands = ["python3", "python"];
    let dirs: Vec<PathBuf> = path_var
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for command in commands {
        let file = if os == Os::Windows {
            format!("{command}.exe")
        } else {
            (*command).to_string()
        };
        for dir in &dirs {
            let python = dir.join(&file);
            if python.is_file() {
                let command = (*command).to_string();
                return Some((python, PythonSource::Path { command }));
            }
        }
    }
    None
}

/// `__version__ = "0.8.0"` from `comfyui_version.py`.
pub fn parse_version_file(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("__version__")?.trim_start();
        let rest = rest.strip_prefix('=')?.trim();
        let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
        let inner = &rest[1..];
        let end = inner.find(quote)?;
        let version = inner[..end].trim();
        (!version.is_empty()).then(|| version.to_string())
    })
}

// ---------------------------------------------------------------------------------------------
// Supported flags

/// Whether a flag takes a value, as its `--help` line shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagValue {
    /// `--cpu`.
    None,
    /// `--listen [IP]`, `--fast [FAST ...]`: the value may be left out.
    Optional,
    /// `--port PORT`, `--extra-model-paths-config PATH [PATH ...]`.
    Required,
}

/// The option strings one ComfyUI's `main.py` accepts (long `--` flags and short `-h`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SupportedFlags {
    flags: BTreeMap<String, FlagValue>,
}

impl SupportedFlags {
    /// Whether `flag` (`--port`) is accepted.
    pub fn accepts(&self, flag: &str) -> bool {
        self.flags.contains_key(flag)
    }

    /// Whether `flag` takes a value, if it is accepted.
    pub fn value(&self, flag: &str) -> Option<FlagValue> {
        self.flags.get(flag).copied()
    }

    pub fn len(&self) -> usize {
        self.flags.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flags.is_empty()
    }

    /// Every accepted flag, sorted, with whether it takes a value.
    pub fn iter(&self) -> impl Iterator<Item = (&str, FlagValue)> {
        self.flags.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// Splits launch arguments into those this ComfyUI accepts and those it lacks. A flag goes
    /// with its values: the next argument when it requires one, and any further arguments that do
    /// not start with `-`; `--flag=value` is one argument. Arguments before any flag are kept.
    /// Returns `(kept, dropped)`, each in the order given.
    pub fn filter(&self, wanted: &[String]) -> (Vec<String>, Vec<String>) {
        let mut kept = Vec::new();
        let mut dropped = Vec::new();
        let mut i = 0;
        while i < wanted.len() {
            let arg = &wanted[i];
            if !arg.starts_with('-') {
                kept.push(arg.clone());
                i += 1;
                continue;
            }
            let (name, inline_value) = match arg.split_once('=') {
                Some((name, _)) if name.starts_with("--") => (name, true),
                _ => (arg.as_str(), false),
            };
            let value = self.value(name);
            let mut end = i + 1;
            if !inline_value {
                if value == Some(FlagValue::Required) && end < wanted.len() {
                    end += 1;
                }
                if value != Some(FlagValue::None) {
                    while end < wanted.len() && !wanted[end].starts_with('-') {
                        end += 1;
                    }
                }
            }
            let group = wanted[i..end].iter().cloned();
            if value.is_some() {
                kept.extend(group);
            } else {
                dropped.extend(group);
            }
            i = end;
        }
        (kept, dropped)
    }
}

/// The option strings in argparse `--help` output: the lines of its options list, each indented
/// by two spaces (`  --port PORT   Set the listen port.`, `  -h, --help`). Descriptions and the
/// usage block are indented further and ignored.
pub fn parse_help(text: &str) -> SupportedFlags {
    let mut flags = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("  ") else {
            continue;
        };
        if !rest.starts_with('-') {
            continue;
        }
        // The invocation ends where two spaces start the description (metavars hold one space).
        let invocation = rest.split("  ").next().unwrap_or(rest).trim_end();
        for part in invocation.split(", ") {
            let mut words = part.splitn(2, ' ');
            let Some(flag) = words.next().filter(|f| is_flag(f)) else {
                continue;
            };
            let value = match words.next().map(str::trim) {
                None | Some("") => FlagValue::None,
                Some(metavar) if metavar.starts_with('[') => FlagValue::Optional,
                Some(_) => FlagValue::Required,
            };
            flags.insert(flag.to_string(), value);
        }
    }
    SupportedFlags { flags }
}

fn is_flag(word: &str) -> bool {
    let name = word.trim_start_matches('-');
    word.starts_with('-')
        && !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Runs `python main.py --help` in the install folder once (no console window, at most
/// [`HELP_TIMEOUT`]) and reads the flags it lists.
pub fn read_help(install: &Install) -> Result<SupportedFlags, InstallError> {
    read_help_within(install, HELP_TIMEOUT)
}

/// [`read_help`] with its time limit given.
pub fn read_help_within(
    install: &Install,
    timeout: Duration,
) -> Result<SupportedFlags, InstallError> {
    let dir = install.root.clone();
    let mut command = Command::new(&install.python);
    if install.python_source == PythonSource::Portable {
        // As the portable build's own launch scripts do: ignore the user's site-packages.
        command.arg("-s");
    }
    command
        .arg(install.root.join("main.py"))
        .arg("--help")
        .current_dir(&install.root)
        .env("PYTHONIOENCODING", "utf-8")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(windows)]
    {
        use std::os::windows::process::CommandExt;
        const CREATE_NO_WINDOW: u32 = 0x0800_0000;
        command.creation_flags(CREATE_NO_WINDOW);
    }
    let mut child = command.spawn().map_err(|source| InstallError::Spawn {
        dir: dir.clone(),
        python: install.python.clone(),
        source,
    })?;
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(InstallError::HelpTimeout { dir, timeout });
            }
            Err(source) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(InstallError::Spawn {
                    dir,
                    python: install.python.clone(),
                    source,
                });
            }
        }
    };
    let collect = |handle: Option<std::thread::JoinHandle<Vec<u8>>>| {
        handle
            .and_then(|h| h.join().ok())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    };
    let out = collect(stdout);
    let err = collect(stderr);
    if !status.success() {
        return Err(InstallError::HelpFailed {
            dir,
            status: status.to_string(),
            stderr_tail: last_lines(&err, 5),
        });
    }
    let flags = parse_help(&out);
    if !flags.accepts("--port") {
        return Err(InstallError::HelpUnreadable { dir });
    }
    Ok(flags)
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}
