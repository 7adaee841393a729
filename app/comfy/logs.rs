//! What the ComfyUI server prints, kept for the user: each stdout and stderr line with the time
//! since spawn, decoded as lossy UTF-8 with ANSI colours and progress-bar overwrites removed, in a
//! bounded ring for the live view and appended to a per-session log file (the last 10 sessions
//! are kept). Also reads the boot phase from the lines ComfyUI prints while it starts, and turns
//! an exit plus the last lines into one sentence that says what went wrong and what to do.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::process::ExitInfo;

/// Lines the live view keeps by default: ComfyUI prints ~80 lines to boot and a few per run.
pub const DEFAULT_RING_LINES: usize = 5000;

/// Removes terminal control sequences from one line: CSI (`ESC [ … final`, also the one-byte
/// C1 form), OSC and the other string sequences (`ESC ] … BEL` or `… ESC \`), two- and three-byte
/// escapes and a lone ESC, and any other control character but tab. A line that a progress bar
/// rewrote with `\r` keeps only its last non-blank state, since that is what a terminal shows;
/// a trailing `\r` (Windows line ends) is dropped.
pub fn strip_ansi(line: &str) -> String {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if !line.contains('\r') {
        return strip_controls(line);
    }
    line.split('\r')
        .map(strip_controls)
        .rfind(|segment| !segment.trim().is_empty())
        .unwrap_or_default()
}

fn strip_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                // CSI: parameters and intermediates up to a final byte in @..~.
                Some('[') => skip_csi(&mut chars),
                // OSC, DCS, SOS, PM, APC: a string ended by BEL or ST (ESC \).
                Some(']' | 'P' | 'X' | '^' | '_') => skip_string(&mut chars),
                // nF escapes (ESC ( B and friends): intermediates, then one final byte.
                Some(' '..='/') => {
                    while chars.next_if(|c| matches!(c, ' '..='/')).is_some() {}
                    chars.next();
                }
                // Two-byte escapes (ESC 7, ESC c, …) and a lone ESC at the end.
                _ => {}
            },
            '\u{9b}' => skip_csi(&mut chars),
            '\u{9d}' => skip_string(&mut chars),
            '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

fn skip_csi(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    for c in chars.by_ref() {
        if matches!(c, '@'..='~') {
            break;
        }
    }
}

fn skip_string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while let Some(c) = chars.next() {
        match c {
            '\u{7}' | '\u{9c}' => break,
            '\u{1b}' => {
                chars.next_if_eq(&'\\');
                break;
            }
            _ => {}
        }
    }
}

/// Which pipe a line came from (ComfyUI logs everything to stderr; stdout is mostly print()).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    /// The three-letter tag used in log files.
    pub fn tag(self) -> &'static str {
        match self {
            LogStream::Stdout => "out",
            LogStream::Stderr => "err",
        }
    }
}

/// One line the server printed, cleaned for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Milliseconds since the server was spawned (since the log was made, before a spawn).
    pub at_ms: u64,
    pub stream: LogStream,
    pub text: String,
}

/// The server's output: a bounded ring of recent lines for the live view, and optionally a log
/// file every line is appended to as it arrives. Cloning shares the same log, so the reader
/// threads, the supervisor and the UI can all hold one.
#[derive(Debug, Clone)]
pub struct ServerLog {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    lines: VecDeque<LogLine>,
    capacity_lines: usize,
    /// Lines ever pushed; the sequence number of the next line.
    pushed: u64,
    clock: Instant,
    file: Option<File>,
    file_error: Option<String>,
}

impl Default for ServerLog {
    fn default() -> Self {
        ServerLog::new()
    }
}

impl ServerLog {
    /// An empty log keeping the last [`DEFAULT_RING_LINES`] lines in memory.
    pub fn new() -> ServerLog {
        ServerLog::with_capacity(DEFAULT_RING_LINES)
    }

    /// An empty log that keeps the last `capacity_lines` lines (at least one) in memory.
    pub fn with_capacity(capacity_lines: usize) -> ServerLog {
        let capacity_lines = capacity_lines.max(1);
        ServerLog {
            inner: Arc::new(Mutex::new(Inner {
                lines: VecDeque::with_capacity(capacity_lines.min(1024)),
                capacity_lines,
                pushed: 0,
                clock: Instant::now(),
                file: None,
                file_error: None,
            })),
        }
    }

    /// Appends every line from now on to `file` too (from [`LogFiles::open_session`]).
    pub fn attach_file(&self, file: File) {
        let mut inner = self.lock();
        inner.file = Some(file);
        inner.file_error = None;
    }

    // A reader thread that panicked while holding the lock leaves consistent data behind (every
    // update is a single push), so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Restarts the clock `at_ms` counts from; the process module calls it at spawn.
    pub fn restart_clock(&self) {
        self.lock().clock = Instant::now();
    }

    /// Adds one line as the pipe delivered it (without its `\n`): decoded as lossy UTF-8, so
    /// a broken byte never loses the line, then cleaned by [`strip_ansi`].
    pub fn push(&self, stream: LogStream, bytes: &[u8]) {
        let text = strip_ansi(&String::from_utf8_lossy(bytes));
        let mut inner = self.lock();
        let at_ms = u64::try_from(inner.clock.elapsed().as_millis()).unwrap_or(u64::MAX);
        let record = format!(
            "{:>10.3} {} {}\n",
            at_ms as f64 / 1000.0,
            stream.tag(),
            text
        );
        inner.write_file(&record);
        if inner.lines.len() == inner.capacity_lines {
            inner.lines.pop_front();
        }
        inner.lines.push_back(LogLine {
            at_ms,
            stream,
            text,
        });
        inner.pushed += 1;
    }

    /// Writes a line of our own (`# …`) to the log file only, e.g. the command that was spawned
    /// or the signals a stop sent, so the file tells the whole story of the session.
    pub fn note(&self, text: &str) {
        let mut inner = self.lock();
        let at_ms = u64::try_from(inner.clock.elapsed().as_millis()).unwrap_or(u64::MAX);
        let record = format!("{:>10.3} # {}\n", at_ms as f64 / 1000.0, strip_ansi(text));
        inner.write_file(&record);
    }

    /// The last `n` lines, oldest first.
    pub fn tail(&self, n: usize) -> Vec<LogLine> {
        let inner = self.lock();
        let skip = inner.lines.len().saturating_sub(n);
        inner.lines.iter().skip(skip).cloned().collect()
    }

    /// Every line still in the ring, oldest first.
    pub fn snapshot(&self) -> Vec<LogLine> {
        self.lock().lines.iter().cloned().collect()
    }

    /// The lines pushed since sequence number `seq` that are still in the ring, and the sequence
    /// number to ask with next time. Start with 0; lines the ring dropped meanwhile are skipped.
    pub fn lines_since(&self, seq: u64) -> (Vec<LogLine>, u64) {
        let inner = self.lock();
        let first_seq = inner.pushed - inner.lines.len() as u64;
        let skip = usize::try_from(seq.saturating_sub(first_seq)).unwrap_or(usize::MAX);
        let lines = inner.lines.iter().skip(skip).cloned().collect();
        (lines, inner.pushed)
    }

    /// Lines in the ring now.
    pub fn len(&self) -> usize {
        self.lock().lines.len()
    }

    /// Whether nothing has been pushed (or the ring holds nothing).
    pub fn is_empty(&self) -> bool {
        self.lock().lines.is_empty()
    }

    /// Why the log file stopped being written (disk full, folder removed), if it did; the ring
    /// keeps working either way.
    pub fn file_error(&self) -> Option<String> {
        self.lock().file_error.clone()
    }
}

impl Inner {
    /// One write per line, straight to the file (no buffer), so a crash of the app loses nothing
    /// that was already pushed.
    fn write_file(&mut self, record: &str) {
        let Some(file) = &mut self.file else {
            return;
        };
        if let Err(e) = file.write_all(record.as_bytes()) {
            self.file_error = Some(format!(
                "cannot write the server log file ({e}); later lines are only shown in the app"
            ));
            self.file = None;
        }
    }
}

/// Why a session's log file could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LogFileError {
    #[error(
        "{}: cannot create the folder for server logs: {source}; check that the data folder is \
         writable",
        dir.display()
    )]
    CreateDir { dir: PathBuf, source: io::Error },
    #[error(
        "{}: cannot create the server log file: {source}; check that the folder is writable and \
         the disk is not full",
        path.display()
    )]
    Create { path: PathBuf, source: io::Error },
}

/// The folder of per-session server logs, `server-<UTC start>.log`, of which the newest
/// `keep_sessions` are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFiles {
    dir: PathBuf,
    keep_sessions: usize,
}

impl LogFiles {
    /// How many sessions' logs are kept unless the caller says otherwise.
    pub const DEFAULT_KEEP_SESSIONS: usize = 10;

    /// Logs in `dir`, keeping the newest [`LogFiles::DEFAULT_KEEP_SESSIONS`].
    pub fn new(dir: impl AsRef<Path>) -> LogFiles {
        LogFiles::with_keep(dir, LogFiles::DEFAULT_KEEP_SESSIONS)
    }

    /// Logs in `dir`, keeping the newest `keep_sessions` (at least the one being written).
    pub fn with_keep(dir: impl AsRef<Path>, keep_sessions: usize) -> LogFiles {
        LogFiles {
            dir: dir.as_ref().to_path_buf(),
            keep_sessions: keep_sessions.max(1),
        }
    }

    /// The folder the logs are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the log file for a session that started at `started` (a header line names the
    /// time) and removes the oldest logs beyond `keep_sessions`. Never overwrites a log: two
    /// sessions in the same millisecond get `_001`, `_002`, … suffixes.
    pub fn open_session(&self, started: SystemTime) -> Result<(PathBuf, File), LogFileError> {
        fs::create_dir_all(&self.dir).map_err(|source| LogFileError::CreateDir {
            dir: self.dir.clone(),
            source,
        })?;
        let stamp = utc_stamp(started);
        let mut attempt = 0u32;
        let (path, mut file) = loop {
            let name = if attempt == 0 {
                format!("server-{}.log", stamp.file_part)
            } else {
                // `_` sorts after `.`, so name order stays age order.
                format!("server-{}_{attempt:03}.log", stamp.file_part)
            };
            let path = self.dir.join(name);
            match OpenOptions::new().append(true).create_new(true).open(&path) {
                Ok(file) => break (path, file),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 999 => {
                    attempt += 1;
                }
                Err(source) => return Err(LogFileError::Create { path, source }),
            }
        };
        let header = format!("# wan-pilot server log, session started {}\n", stamp.iso);
        file.write_all(header.as_bytes())
            .map_err(|source| LogFileError::Create {
                path: path.clone(),
                source,
            })?;
        self.rotate(&path);
        Ok((path, file))
    }

    /// The session logs in the folder, oldest first.
    pub fn sessions(&self) -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut logs: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.path())
            .filter(|path| {
                path.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("server-") && n.ends_with(".log"))
                    && path.is_file()
            })
            .collect();
        // The names start with a fixed-width UTC time, so name order is age order.
        logs.sort();
        logs
    }

    fn rotate(&self, current: &Path) {
        let logs = self.sessions();
        let excess = logs.len().saturating_sub(self.keep_sessions);
        for old in logs.iter().filter(|p| p.as_path() != current).take(excess) {
            // Best effort: a log that cannot be removed now (open elsewhere on Windows) goes at
            // the next start.
            let _ = fs::remove_file(old);
        }
    }
}

struct UtcStamp {
    /// `20260509T073525.123Z`: sortable and valid in file names everywhere.
    file_part: String,
    /// `2026-05-09T07:35:25.123Z`.
    iso: String,
}

fn utc_stamp(at: SystemTime) -> UtcStamp {
    let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let millis = since_epoch.subsec_millis();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    let (hour, minute, second) = (rem / 3600, rem % 3600 / 60, rem % 60);
    UtcStamp {
        file_part: format!(
            "{year:04}{month:02}{day:02}T{hour:02}{minute:02}{second:02}.{millis:03}Z"
        ),
        iso: format!(
            "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{millis:03}Z"
        ),
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (the well-known era/day-of-era method).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// How far a booting ComfyUI has got, from the lines it prints (ComfyUI 0.3 to 0.8 print these
/// in this order). Ordered: keep the greatest seen, since some lines repeat (custom nodes print
/// "Total VRAM" again while they load).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BootPhase {
    /// Spawned; Python has printed nothing yet.
    Starting,
    /// Python runs and parsed the arguments; PyTorch is being imported (the slowest import).
    LoadingTorch,
    /// PyTorch found the device ("Total VRAM …", "Device: …"); ComfyUI's modules load next.
    DeviceReady,
    /// ComfyUI's version is out and its prompt server exists; built-in and custom nodes load.
    LoadingNodes,
    /// "Import times for custom nodes": every node pack has loaded (or failed to).
    NodesLoaded,
    /// "Starting server": binding the port.
    StartingServer,
    /// "To see the GUI go to: …": the port is open.
    Listening,
}

impl BootPhase {
    /// What the user sees while waiting.
    pub fn label(self) -> &'static str {
        match self {
            BootPhase::Starting => "starting Python",
            BootPhase::LoadingTorch => "loading PyTorch",
            BootPhase::DeviceReady => "PyTorch found the device; loading ComfyUI",
            BootPhase::LoadingNodes => "loading nodes and custom nodes",
            BootPhase::NodesLoaded => "custom nodes loaded; preparing the server",
            BootPhase::StartingServer => "starting the web server",
            BootPhase::Listening => "listening",
        }
    }

    /// The phase after `line`: this one, or a later one the line shows.
    pub fn after(self, line: &str) -> BootPhase {
        boot_phase(line).map_or(self, |seen| self.max(seen))
    }
}

impl std::fmt::Display for BootPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// The boot phase a cleaned log line marks, if it marks one.
pub fn boot_phase(line: &str) -> Option<BootPhase> {
    let line = line.trim();
    let starts = |prefix: &str| line.starts_with(prefix);
    if starts("To see the GUI go to:") {
        Some(BootPhase::Listening)
    } else if line == "Starting server" {
        Some(BootPhase::StartingServer)
    } else if starts("Import times for custom nodes") {
        Some(BootPhase::NodesLoaded)
    } else if starts("ComfyUI version:") || starts("[Prompt Server] web root:") {
        Some(BootPhase::LoadingNodes)
    } else if starts("Total VRAM ") || starts("Device: ") || starts("pytorch version:") {
        Some(BootPhase::DeviceReady)
    } else if starts("Setting output directory to:")
        || starts("Setting user directory to:")
        || starts("Checkpoint files will always be loaded safely")
        || starts("** ComfyUI startup time:")
        || starts("Prestartup times for custom nodes")
    {
        Some(BootPhase::LoadingTorch)
    } else {
        None
    }
}

/// Why a server exited, as far as its exit and last lines tell; the supervisor acts on it (a new
/// port, dropping a flag, repairing the environment) and [`ExitCause::explain`] words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitCause {
    /// It printed "Stopped server" (it got SIGINT or Ctrl+C); `aborted` when it then died of
    /// SIGABRT ("terminate called without an active exception"), which happens when it is
    /// interrupted during a run and is harmless.
    StoppedByInterrupt { aborted: bool },
    /// The port was taken (`port` when the message names it).
    PortInUse { port: Option<u16> },
    /// `ModuleNotFoundError: No module named '…'` ended the start.
    MissingModule { module: String },
    /// PyTorch found no NVIDIA driver.
    NoNvidiaDriver,
    /// The installed PyTorch is a CPU-only build.
    TorchWithoutCuda,
    /// argparse refused flags it does not know.
    UnknownFlags { flags: Vec<String> },
    /// argparse refused the command line for another reason (a folder that does not exist, …).
    BadArguments { message: String },
    /// Out of memory (GPU or system) while starting.
    OutOfMemory { line: String },
    /// Some other Python exception ended it; its last line.
    PythonError { line: String },
    /// Nothing in the log explains it: the exit itself is all there is.
    Unexplained,
}

/// How many of the last non-blank lines may hold the fatal error: a traceback's last line is its
/// exception, and a real failure prints little or nothing after it. Earlier tracebacks (custom
/// nodes that fail to import) do not stop ComfyUI.
const FATAL_WINDOW_LINES: usize = 6;

/// Finds the cause of an exit in the last lines the server printed.
pub fn exit_cause(exit: &ExitInfo, tail: &[LogLine]) -> ExitCause {
    let recent: Vec<&str> = tail
        .iter()
        .rev()
        .map(|l| l.text.trim())
        .filter(|t| !t.is_empty())
        .take(FATAL_WINDOW_LINES)
        .collect();
    // "Stopped server" is ComfyUI's own answer to SIGINT; what follows is its shutdown.
    if recent.contains(&"Stopped server") {
        let aborted = exit.signal == Some(SIGABRT)
            || recent.contains(&"terminate called without an active exception");
        return ExitCause::StoppedByInterrupt { aborted };
    }
    // Python ends with exit code 1 on an uncaught exception and 2 on bad arguments; after a
    // signal, a clean exit or a native crash, a traceback at the end is one the server survived
    // (a failed request) and not the cause.
    let python_exit = matches!(exit.code, Some(c) if c != 0) && exit.ntstatus().is_none();
    if !python_exit {
        return ExitCause::Unexplained;
    }
    recent
        .iter()
        .find_map(|line| cause_in_line(line))
        .unwrap_or(ExitCause::Unexplained)
}

#[cfg(unix)]
const SIGABRT: i32 = libc::SIGABRT;
#[cfg(not(unix))]
const SIGABRT: i32 = 6;

fn cause_in_line(line: &str) -> Option<ExitCause> {
    let lower = line.to_ascii_lowercase();
    if let Some(rest) = line.split_once("error: unrecognized arguments:") {
        let flags = rest.1.split_whitespace().map(str::to_string).collect();
        return Some(ExitCause::UnknownFlags { flags });
    }
    if lower.contains("address already in use")
        || lower.contains("only one usage of each socket address")
        || line.contains("[Errno 98]")
        || line.contains("[Errno 48]")
        || line.contains("[WinError 10048]")
    {
        return Some(ExitCause::PortInUse {
            port: port_in_bind_error(line),
        });
    }
    if let Some(rest) = line.split_once("ModuleNotFoundError: No module named ") {
        let module = rest.1.trim().trim_matches(['\'', '"']).to_string();
        return Some(ExitCause::MissingModule { module });
    }
    if line.contains("Found no NVIDIA driver") {
        return Some(ExitCause::NoNvidiaDriver);
    }
    if line.contains("Torch not compiled with CUDA enabled") {
        return Some(ExitCause::TorchWithoutCuda);
    }
    if lower.contains("out of memory")
        || line.contains("OutOfMemoryError")
        || line.starts_with("MemoryError")
    {
        return Some(ExitCause::OutOfMemory {
            line: line.to_string(),
        });
    }
    // argparse: "<prog>: error: <message>" after the usage text.
    if let Some((prog, message)) = line.split_once(": error: ")
        && !prog.contains(' ')
        && prog.ends_with(".py")
    {
        return Some(ExitCause::BadArguments {
            message: message.to_string(),
        });
    }
    if is_exception_line(line) {
        return Some(ExitCause::PythonError {
            line: line.to_string(),
        });
    }
    None
}

/// `OSError: …` / `torch.cuda.OutOfMemoryError: …` / `KeyboardInterrupt`: a traceback's last
/// line, which is never indented and starts with a dotted Python name ending in Error,
/// Exception or Interrupt.
fn is_exception_line(line: &str) -> bool {
    let name = line.split_once(':').map_or(line, |(name, _)| name);
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        && (name.ends_with("Error") || name.ends_with("Exception") || name.ends_with("Interrupt"))
}

/// The port in "… bind on address ('127.0.0.1', 8199): address already in use".
fn port_in_bind_error(line: &str) -> Option<u16> {
    let (_, after) = line.split_once("address ('")?;
    let (_, port) = after.split_once("', ")?;
    port.split(')').next()?.trim().parse().ok()
}

impl ExitCause {
    /// One sentence for the user: what happened, how the process ended, what to do.
    pub fn explain(&self, exit: &ExitInfo) -> String {
        match self {
            ExitCause::StoppedByInterrupt { aborted: false } => {
                format!("ComfyUI stopped after an interrupt request ({exit}).")
            }
            ExitCause::StoppedByInterrupt { aborted: true } => format!(
                "ComfyUI stopped after an interrupt request and aborted while shutting down \
                 ({exit}); this happens when it is stopped during a run and is harmless."
            ),
            ExitCause::PortInUse { port: Some(port) } => format!(
                "ComfyUI could not listen on port {port} because another program already uses \
                 it ({exit}); start it on another port or close the other program."
            ),
            ExitCause::PortInUse { port: None } => format!(
                "ComfyUI could not listen on its port because another program already uses it \
                 ({exit}); start it on another port or close the other program."
            ),
            ExitCause::MissingModule { module } => format!(
                "ComfyUI's Python lacks the module '{module}' ({exit}); repair its environment \
                 by installing ComfyUI's requirements.txt (and those of the custom node that \
                 needs it) into that Python."
            ),
            ExitCause::NoNvidiaDriver => format!(
                "PyTorch found no NVIDIA driver ({exit}); install or repair the NVIDIA driver, \
                 or start ComfyUI with --cpu."
            ),
            ExitCause::TorchWithoutCuda => format!(
                "The PyTorch in ComfyUI's Python is a CPU-only build ({exit}); install a CUDA \
                 build of PyTorch into it, or start ComfyUI with --cpu."
            ),
            ExitCause::UnknownFlags { flags } => format!(
                "This ComfyUI does not know the flag{} {} ({exit}); remove {} from the extra \
                 arguments or update ComfyUI.",
                if flags.len() == 1 { "" } else { "s" },
                flags.join(" "),
                if flags.len() == 1 { "it" } else { "them" },
            ),
            ExitCause::BadArguments { message } => format!(
                "ComfyUI refused its command line: {message} ({exit}); fix that setting or the \
                 extra arguments."
            ),
            ExitCause::OutOfMemory { line } => format!(
                "ComfyUI ran out of memory while starting ({exit}; \"{line}\"); close other \
                 programs that use the GPU, or start it with --lowvram or a larger \
                 --reserve-vram."
            ),
            ExitCause::PythonError { line } => format!(
                "ComfyUI stopped with a Python error ({exit}): {line}; the server log has the \
                 full traceback."
            ),
            ExitCause::Unexplained => unexplained(exit),
        }
    }
}

fn unexplained(exit: &ExitInfo) -> String {
    match (exit.code, exit.signal) {
        (Some(0), _) => format!("ComfyUI exited by itself ({exit}) without reporting an error."),
        (_, Some(9)) => format!(
            "ComfyUI was killed ({exit}); if nothing here stopped it, the system probably ran \
             out of memory (the kernel's out-of-memory killer sends SIGKILL)."
        ),
        (_, Some(_)) => format!("ComfyUI was stopped by a signal ({exit})."),
        _ if exit.ntstatus() == Some(0xC000_013A) => {
            format!("ComfyUI was stopped with Ctrl+C or Ctrl+Break ({exit}).")
        }
        _ if exit.ntstatus().is_some() => format!(
            "ComfyUI crashed ({exit}); the server log may show what it did last, and updating \
             the GPU driver and PyTorch often helps."
        ),
        _ => format!("ComfyUI exited ({exit}); the server log may show why."),
    }
}

/// One sentence on why the server exited, from how it exited and its last lines (pass at least
/// the last 50): port in use, a missing Python module, no NVIDIA driver, a CPU-only PyTorch, an
/// unknown flag, out of memory, an interrupt, a signal or an exit code (Windows crash codes are
/// named).
pub fn explain_exit(exit: &ExitInfo, tail: &[LogLine]) -> String {
    exit_cause(exit, tail).explain(exit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(stream: LogStream, text: &str) -> Vec<LogLine> {
        text.lines()
            .enumerate()
            .map(|(i, t)| LogLine {
                at_ms: i as u64,
                stream,
                text: strip_ansi(t),
            })
            .collect()
    }

    /// The `line` events of a recorded launch (`tests/data/comfy-protocol/process/*.jsonl`).
    fn recorded(jsonl: &str) -> Vec<LogLine> {
        jsonl
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|event| event["ev"] == "line")
            .map(|event| LogLine {
                at_ms: (event["t"].as_f64().unwrap_or(0.0) * 1000.0) as u64,
                stream: if event["stream"] == "stdout" {
                    LogStream::Stdout
                } else {
                    LogStream::Stderr
                },
                text: strip_ansi(event["line"].as_str().unwrap_or("")),
            })
            .collect()
    }

    const SIGINT_LOG: &str =
        include_str!("../../tests/data/comfy-protocol/process/launch_8299_sigint.jsonl");
    const SIGINT_RUN_LOG: &str =
        include_str!("../../tests/data/comfy-protocol/process/launch_8299_sigint_during_run.jsonl");
    const SIGTERM_LOG: &str =
        include_str!("../../tests/data/comfy-protocol/process/launch_8299_sigterm.jsonl");
    const PORT_LOG: &str =
        include_str!("../../tests/data/comfy-protocol/process/launch_8199_port_in_use.jsonl");
    const FLAG_LOG: &str =
        include_str!("../../tests/data/comfy-protocol/process/launch_unknown_flag.jsonl");
    const MISSING_MODULE: &str =
        include_str!("../../tests/data/comfy-process/module_not_found.stderr.txt");
    const NO_DRIVER: &str =
        include_str!("../../tests/data/comfy-process/no_nvidia_driver.stderr.txt");
    const SERVER_LOG: &str = include_str!("../../tests/data/comfy-process/server_8199.log");

    fn code(code: i32) -> ExitInfo {
        ExitInfo {
            code: Some(code),
            signal: None,
        }
    }

    fn signal(signal: i32) -> ExitInfo {
        ExitInfo {
            code: None,
            signal: Some(signal),
        }
    }

    #[test]
    fn strip_ansi_removes_colours_and_cursor_codes() {
        assert_eq!(strip_ansi("\u{1b}[32mgreen\u{1b}[0m ok"), "green ok");
        assert_eq!(strip_ansi("\u{1b}[1;31;40mbold red\u{1b}[m"), "bold red");
        assert_eq!(strip_ansi("\u{1b}[2K\u{1b}[1Gcleared"), "cleared");
        assert_eq!(strip_ansi("\u{9b}31mC1 CSI\u{9b}0m"), "C1 CSI");
    }

    #[test]
    fn strip_ansi_removes_osc_and_lone_escapes() {
        assert_eq!(strip_ansi("\u{1b}]0;title\u{7}text"), "text");
        assert_eq!(
            strip_ansi("\u{1b}]8;;http://x\u{1b}\\link\u{1b}]8;;\u{1b}\\"),
            "link"
        );
        assert_eq!(strip_ansi("\u{1b}(Bcharset\u{1b}7 saved"), "charset saved");
        assert_eq!(
            strip_ansi("lone escape at the end\u{1b}"),
            "lone escape at the end"
        );
        assert_eq!(
            strip_ansi("bell\u{7} and\u{8} backspace"),
            "bell and backspace"
        );
        assert_eq!(strip_ansi("tab\tkept"), "tab\tkept");
        assert_eq!(strip_ansi("plain ünïcode ✓"), "plain ünïcode ✓");
    }

    #[test]
    fn strip_ansi_keeps_the_last_state_of_a_progress_bar() {
        // As recorded: tqdm's sampler progress during a run (launch_8299_sigint_during_run).
        let tqdm = "\r  0%|          | 0/2 [00:00<?, ?it/s]\r 50%|█████     | 1/2 [00:00<00:00,  3.60it/s]\r100%|██████████| 2/2 [00:00<00:00,  3.66it/s]\r100%|██████████| 2/2 [00:00<00:00,  3.65it/s]";
        assert_eq!(
            strip_ansi(tqdm),
            "100%|██████████| 2/2 [00:00<00:00,  3.65it/s]"
        );
        assert_eq!(strip_ansi("windows line\r"), "windows line");
        assert_eq!(strip_ansi("50%\r\u{1b}[K"), "50%");
        assert_eq!(strip_ansi("\r"), "");
    }

    #[test]
    fn boot_phases_of_a_recorded_start_run_in_order() {
        let log = recorded(SIGINT_LOG);
        let mut phase = BootPhase::Starting;
        let mut seen = vec![phase];
        for line in &log {
            let next = phase.after(&line.text);
            if next != phase {
                seen.push(next);
                phase = next;
            }
        }
        assert_eq!(
            seen,
            [
                BootPhase::Starting,
                BootPhase::LoadingTorch,
                BootPhase::DeviceReady,
                BootPhase::LoadingNodes,
                BootPhase::NodesLoaded,
                BootPhase::StartingServer,
                BootPhase::Listening,
            ]
        );
        // "Total VRAM" comes again while custom nodes load: it must not move the phase back.
        let repeats = log
            .iter()
            .filter(|l| boot_phase(&l.text) == Some(BootPhase::DeviceReady))
            .count();
        assert!(repeats > 3, "{repeats}");
    }

    #[test]
    fn boot_phase_reads_the_running_server_log() {
        let phases: Vec<BootPhase> = SERVER_LOG.lines().filter_map(boot_phase).collect();
        assert_eq!(phases.first(), Some(&BootPhase::LoadingTorch));
        assert_eq!(phases.last(), Some(&BootPhase::Listening));
        assert_eq!(boot_phase("Stopped server"), None);
        assert_eq!(boot_phase("got prompt"), None);
        assert_eq!(BootPhase::Listening.to_string(), "listening");
    }

    #[test]
    fn explains_a_port_in_use() {
        let tail = recorded(PORT_LOG);
        let exit = code(1);
        assert_eq!(
            exit_cause(&exit, &tail),
            ExitCause::PortInUse { port: Some(8199) }
        );
        let text = explain_exit(&exit, &tail);
        assert!(text.contains("port 8199"), "{text}");
        assert!(text.contains("exit code 1"), "{text}");
        assert_eq!(
            port_in_bind_error(
                "OSError: [Errno 48] error while attempting to bind on address ('::1', 8188): address already in use"
            ),
            Some(8188)
        );
    }

    #[test]
    fn explains_an_unknown_flag() {
        let tail = recorded(FLAG_LOG);
        let exit = code(2);
        assert_eq!(
            exit_cause(&exit, &tail),
            ExitCause::UnknownFlags {
                flags: vec!["--no-such-flag".into()]
            }
        );
        let text = explain_exit(&exit, &tail);
        assert!(text.contains("the flag --no-such-flag"), "{text}");
        assert!(text.contains("exit code 2"), "{text}");
    }

    #[test]
    fn explains_other_argument_errors() {
        // Recorded: --user-directory naming a folder that does not exist.
        let tail = lines(
            LogStream::Stderr,
            "usage: main.py [-h] [--listen [IP]]\n               [--comfy-api-base COMFY_API_BASE]\nmain.py: error: argument --user-directory: The path '/tmp/wpfix/t2/user' does not exist.",
        );
        let cause = exit_cause(&code(2), &tail);
        assert_eq!(
            cause,
            ExitCause::BadArguments {
                message: "argument --user-directory: The path '/tmp/wpfix/t2/user' does not exist."
                    .into()
            }
        );
    }

    #[test]
    fn explains_stops_by_interrupt_without_blaming_earlier_tracebacks() {
        // This log holds a custom node's ModuleNotFoundError; ComfyUI went on and was stopped.
        let tail = recorded(SIGINT_LOG);
        assert!(
            tail.iter()
                .any(|l| l.text.starts_with("ModuleNotFoundError"))
        );
        assert_eq!(
            exit_cause(&code(0), &tail),
            ExitCause::StoppedByInterrupt { aborted: false }
        );
        let text = explain_exit(&code(0), &tail);
        assert!(
            text.contains("interrupt") && text.contains("exit code 0"),
            "{text}"
        );

        let during_run = recorded(SIGINT_RUN_LOG);
        let abort = signal(SIGABRT);
        assert_eq!(
            exit_cause(&abort, &during_run),
            ExitCause::StoppedByInterrupt { aborted: true }
        );
        assert!(explain_exit(&abort, &during_run).contains("harmless"));
    }

    #[test]
    fn explains_a_signal_with_a_clean_log() {
        // SIGTERM printed nothing; the last lines are the normal boot.
        let tail = recorded(SIGTERM_LOG);
        let exit = signal(15);
        assert_eq!(exit_cause(&exit, &tail), ExitCause::Unexplained);
        let text = explain_exit(&exit, &tail);
        assert!(text.contains("signal 15 (SIGTERM)"), "{text}");
        let killed = explain_exit(&signal(9), &tail);
        assert!(killed.contains("out-of-memory killer"), "{killed}");
    }

    #[test]
    fn a_traceback_the_server_survived_is_not_blamed_for_a_kill() {
        // The running server's log ends with a request handler's traceback; it kept serving.
        let tail = lines(LogStream::Stderr, SERVER_LOG);
        assert_eq!(exit_cause(&signal(9), &tail), ExitCause::Unexplained);
        assert_eq!(exit_cause(&code(0), &tail), ExitCause::Unexplained);
        assert_eq!(
            exit_cause(&code(0xC000_0005_u32 as i32), &tail),
            ExitCause::Unexplained
        );
        // Exit code 1 is how Python ends on an uncaught exception: the last one is the cause.
        assert!(matches!(
            exit_cause(&code(1), &tail),
            ExitCause::PythonError { line } if line.starts_with("TypeError: string indices")
        ));
    }

    #[test]
    fn explains_a_missing_module() {
        let tail = lines(LogStream::Stderr, MISSING_MODULE);
        let exit = code(1);
        assert_eq!(
            exit_cause(&exit, &tail),
            ExitCause::MissingModule {
                module: "yaml".into()
            }
        );
        let text = explain_exit(&exit, &tail);
        assert!(
            text.contains("'yaml'") && text.contains("requirements.txt"),
            "{text}"
        );
    }

    #[test]
    fn explains_no_nvidia_driver() {
        let tail = lines(LogStream::Stderr, NO_DRIVER);
        let exit = code(1);
        assert_eq!(exit_cause(&exit, &tail), ExitCause::NoNvidiaDriver);
        assert!(explain_exit(&exit, &tail).contains("NVIDIA driver"));
    }

    #[test]
    fn explains_cpu_torch_out_of_memory_and_other_errors() {
        let cpu = lines(
            LogStream::Stderr,
            "Traceback (most recent call last):\n  File \"main.py\", line 1\nAssertionError: Torch not compiled with CUDA enabled",
        );
        assert_eq!(exit_cause(&code(1), &cpu), ExitCause::TorchWithoutCuda);
        let oom = lines(
            LogStream::Stderr,
            "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
        );
        assert!(matches!(
            exit_cause(&code(1), &oom),
            ExitCause::OutOfMemory { .. }
        ));
        let other = lines(
            LogStream::Stderr,
            "Traceback (most recent call last):\n  File \"x.py\", line 3\nPermissionError: [Errno 13] Permission denied: '/data/out'",
        );
        let cause = exit_cause(&code(1), &other);
        assert_eq!(
            cause,
            ExitCause::PythonError {
                line: "PermissionError: [Errno 13] Permission denied: '/data/out'".into()
            }
        );
        assert!(cause.explain(&code(1)).contains("Permission denied"));
    }

    #[test]
    fn explains_windows_crash_codes_and_bare_exits() {
        let exit = code(0xC000_0005_u32 as i32);
        let text = explain_exit(&exit, &[]);
        assert!(text.contains("0xC0000005 (access violation)"), "{text}");
        assert!(text.starts_with("ComfyUI crashed"), "{text}");
        let text = explain_exit(&code(3), &lines(LogStream::Stderr, "all fine\nstill fine"));
        assert_eq!(
            text,
            "ComfyUI exited (exit code 3); the server log may show why."
        );
    }

    #[test]
    fn ring_keeps_the_newest_lines_and_counts_sequence() {
        let log = ServerLog::with_capacity(3);
        assert!(log.is_empty());
        for i in 0..5 {
            log.push(LogStream::Stdout, format!("line {i}").as_bytes());
        }
        let texts = |v: Vec<LogLine>| v.into_iter().map(|l| l.text).collect::<Vec<_>>();
        assert_eq!(texts(log.snapshot()), ["line 2", "line 3", "line 4"]);
        assert_eq!(texts(log.tail(2)), ["line 3", "line 4"]);
        assert_eq!(texts(log.tail(10)).len(), 3);
        let (since, next) = log.lines_since(0);
        assert_eq!(
            (texts(since), next),
            (vec!["line 2".into(), "line 3".into(), "line 4".into()], 5)
        );
        let (since, next) = log.lines_since(4);
        assert_eq!((texts(since), next), (vec!["line 4".to_string()], 5));
        let (since, next) = log.lines_since(5);
        assert!(since.is_empty());
        assert_eq!(next, 5);
    }

    #[test]
    fn utc_stamps_are_right() {
        // 2026-05-09T07:35:25.123Z
        let at = UNIX_EPOCH + std::time::Duration::from_millis(1_778_312_125_123);
        let stamp = utc_stamp(at);
        assert_eq!(stamp.iso, "2026-05-09T07:35:25.123Z");
        assert_eq!(stamp.file_part, "20260509T073525.123Z");
        assert_eq!(utc_stamp(UNIX_EPOCH).iso, "1970-01-01T00:00:00.000Z");
        // A leap day.
        let leap = UNIX_EPOCH + std::time::Duration::from_secs(951_782_400);
        assert_eq!(utc_stamp(leap).iso, "2000-02-29T00:00:00.000Z");
    }
}
