//! The ComfyUI server wan-pilot manages: start it on a free loopback port, know when it is ready
//! (and that it is ours), follow its boot, stop it for certain, restart it after a crash when it
//! had been healthy, and find a server a previous session left behind. Attach mode uses a server
//! the user runs, at a URL, without managing it.

use std::collections::VecDeque;
use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::client::{Client, ClientError, EventStream, new_id};
use super::install::{Install, SupportedFlags};
use super::launch::{LaunchOptions, free_port, is_our_server, launch_command, session_output_dir};
use super::logs::{
    BootPhase, ExitCause, LogFiles, LogLine, ServerLog, boot_phase, exit_cause, explain_exit,
};
use super::process::{
    ExitInfo, ProcessError, ServerProcess, StopReport, StopTimings, group_members, kill_group,
    process_alive,
};
use crate::runs::store::write_atomically;

/// Where a managed server keeps its files, all inside the app's data folder.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerDirs {
    /// Per-session output folders the server writes into (`<output_root>/<session id>`).
    pub output_root: PathBuf,
    /// TORCHINDUCTOR_CACHE_DIR: compiled kernels survive restarts.
    pub inductor_cache: PathBuf,
    /// Rotating server logs.
    pub logs: PathBuf,
    /// One lock file per running server, so the next start finds one left behind.
    pub locks: PathBuf,
}

impl ServerDirs {
    /// The standard layout under the app's data folder.
    pub fn in_data_dir(data_dir: &Path) -> ServerDirs {
        ServerDirs {
            output_root: data_dir.join("server-output"),
            inductor_cache: data_dir.join("inductor-cache"),
            logs: data_dir.join("logs"),
            locks: data_dir.join("servers"),
        }
    }
}

/// How long things may take; the defaults suit a real ComfyUI, tests shorten them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerTimings {
    /// "Stalled" only after this long with no log output and no answer on the port: a first
    /// start that imports many custom nodes or builds caches can be slow but keeps printing.
    pub stalled_after: Duration,
    pub ready_poll: Duration,
    pub health_interval: Duration,
    /// Missed health probes while idle before the server is called unresponsive.
    pub missed_probes: u32,
    pub stop: StopTimings,
    /// How long the port may stay taken after the server exited.
    pub port_release: Duration,
}

impl Default for ServerTimings {
    fn default() -> Self {
        ServerTimings {
            stalled_after: Duration::from_secs(180),
            ready_poll: Duration::from_millis(250),
            health_interval: Duration::from_secs(2),
            missed_probes: 3,
            stop: StopTimings::default(),
            port_release: Duration::from_secs(15),
        }
    }
}

/// What the user and the policy ask of the launch.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    /// Tried first; the next free port is taken when it is busy.
    pub preferred_port: u16,
    /// `--reserve-vram` in GiB.
    pub reserve_vram_gib: Option<f64>,
    /// CUDA-graph compile modes need PyTorch's own allocator.
    pub disable_cuda_malloc: bool,
    /// For launch scripts that read TORCH_COMPILE / TORCH_COMPILE_MODE.
    pub compile_mode: Option<String>,
    /// The user's own arguments, passed after ours when this ComfyUI accepts them.
    pub extra_args: Vec<String>,
    pub timings: ServerTimings,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            preferred_port: 8188,
            reserve_vram_gib: None,
            disable_cuda_malloc: false,
            compile_mode: None,
            extra_args: Vec::new(),
            timings: ServerTimings::default(),
        }
    }
}

/// The server as the window shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerState {
    Stopped,
    Starting {
        phase: Option<BootPhase>,
        since: Instant,
    },
    /// Answering, and the one we started (or the one the user attached to).
    Ready {
        url: String,
    },
    /// No answer for several probes while no run was going on.
    Unresponsive {
        url: String,
    },
    /// Still starting, but silent and not listening for a long time.
    Stalled {
        last_lines: Vec<String>,
    },
    Stopping,
    /// It exited on its own; `explanation` is one sentence, `last_lines` the log's end.
    Crashed {
        explanation: String,
        last_lines: Vec<String>,
    },
    /// Waiting `delay` before restart number `attempt` after a crash.
    Restarting {
        attempt: u32,
        delay: Duration,
    },
}

/// Why a server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot prepare {}: {source}", path.display())]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no free port on 127.0.0.1 near {preferred}; close the programs that use them")]
    NoFreePort { preferred: u16 },
    #[error(transparent)]
    Spawn(#[from] ProcessError),
    #[error("{explanation}")]
    ExitedEarly {
        explanation: String,
        last_lines: Vec<String>,
        /// What the exit and the log's end say happened, when it is known.
        cause: Option<ExitCause>,
    },
    #[error(
        "port {port} answers as another program's server ({who}), not the ComfyUI wan-pilot started; \
         it was left alone — start again to use another port"
    )]
    PortTaken { port: u16, who: String },
    #[error(
        "ComfyUI printed nothing and did not open its port for {} s, so it was stopped; \
         its last lines are in the server log",
        after.as_secs()
    )]
    Stalled {
        after: Duration,
        last_lines: Vec<String>,
    },
    #[error("the start was cancelled")]
    Cancelled,
}

impl StartError {
    /// Whether the port was taken under us (by a program that started at the same moment).
    pub fn is_port_race(&self) -> bool {
        match self {
            StartError::PortTaken { .. } => true,
            StartError::ExitedEarly { cause, .. } => {
                matches!(cause, Some(ExitCause::PortInUse { .. }))
            }
            _ => false,
        }
    }

    /// The log's last lines, where the error has them.
    pub fn last_lines(&self) -> &[String] {
        match self {
            StartError::ExitedEarly { last_lines, .. } | StartError::Stalled { last_lines, .. } => {
                last_lines
            }
            _ => &[],
        }
    }
}

/// Launches tried when the port is taken between the probe and the server's bind.
const PORT_ATTEMPTS: usize = 3;

/// How many log lines an error or a crash carries.
const TAIL_LINES: usize = 100;

/// A ComfyUI process wan-pilot started and owns.
pub struct ManagedServer {
    process: ServerProcess,
    client: Client,
    log: ServerLog,
    session_id: String,
    port: u16,
    output_dir: PathBuf,
    log_path: Option<PathBuf>,
    lock_path: PathBuf,
    /// Flags wanted but not accepted by this ComfyUI.
    dropped_flags: Vec<String>,
    notes: Vec<String>,
    timings: ServerTimings,
}

impl ManagedServer {
    /// Starts ComfyUI from `install` and waits until it is ready, reporting boot phases on
    /// `state`. `cancel` turning true stops the start.
    pub async fn start(
        install: &Install,
        flags: &SupportedFlags,
        settings: &ServerSettings,
        dirs: &ServerDirs,
        state: &watch::Sender<ServerState>,
        cancel: Option<watch::Receiver<bool>>,
    ) -> Result<ManagedServer, StartError> {
        let since = Instant::now();
        state.send_replace(ServerState::Starting { phase: None, since });
        for dir in [
            &dirs.output_root,
            &dirs.inductor_cache,
            &dirs.logs,
            &dirs.locks,
        ] {
            fs::create_dir_all(dir).map_err(|source| StartError::Folder {
                path: dir.clone(),
                source,
            })?;
        }
        let mut notes = Vec::new();
        match super::custom_node::install_into(&install.root) {
            Ok(outcome) if outcome.changed() => notes.push(format!(
                "wan-pilot's compile node installed in {}",
                outcome.dir.display()
            )),
            Ok(_) => {}
            // Without our node the compile edit uses KJNodes' (when present): say so, go on.
            Err(e) => notes.push(format!("wan-pilot's compile node was not installed: {e}")),
        }
        // Another program (or a second wan-pilot) can take the port between our probe and the
        // server's bind: then try the next free one.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::launch_once(
                install,
                flags,
                settings,
                dirs,
                &notes,
                state,
                since,
                cancel.clone(),
            )
            .await
            {
                Err(error) if attempt < PORT_ATTEMPTS && error.is_port_race() => continue,
                other => return other,
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn launch_once(
        install: &Install,
        flags: &SupportedFlags,
        settings: &ServerSettings,
        dirs: &ServerDirs,
        notes: &[String],
        state: &watch::Sender<ServerState>,
        since: Instant,
        cancel: Option<watch::Receiver<bool>>,
    ) -> Result<ManagedServer, StartError> {
        let mut notes = notes.to_vec();
        let session_id = new_id("wan-pilot");
        let port = free_port(settings.preferred_port, 50).ok_or(StartError::NoFreePort {
            preferred: settings.preferred_port,
        })?;
        let output_dir = session_output_dir(&dirs.output_root, &session_id);
        fs::create_dir_all(&output_dir).map_err(|source| StartError::Folder {
            path: output_dir.clone(),
            source,
        })?;
        let command = launch_command(
            install,
            flags,
            &LaunchOptions {
                port,
                output_dir: output_dir.clone(),
                session_id: session_id.clone(),
                reserve_vram_gib: settings.reserve_vram_gib,
                disable_cuda_malloc: settings.disable_cuda_malloc,
                extra_args: settings.extra_args.clone(),
                inductor_cache_dir: dirs.inductor_cache.clone(),
                compile_mode: settings.compile_mode.clone(),
            },
        );
        let log = ServerLog::new();
        let log_path = match LogFiles::new(&dirs.logs).open_session(SystemTime::now()) {
            Ok((path, file)) => {
                log.attach_file(file);
                Some(path)
            }
            Err(e) => {
                notes.push(format!(
                    "server log not written to {}: {e}",
                    dirs.logs.display()
                ));
                None
            }
        };
        let process = ServerProcess::spawn(&command, log.clone())?;
        let url = format!("http://127.0.0.1:{port}");
        let client = Client::new(&url).map_err(|e| StartError::ExitedEarly {
            explanation: e.to_string(),
            last_lines: Vec::new(),
            cause: None,
        })?;
        let lock_path = dirs.locks.join(format!("{session_id}.json"));
        let lock = LockRecord {
            version: LOCK_VERSION,
            app_pid: std::process::id(),
            server_pid: process.pid(),
            port,
            session_id: session_id.clone(),
            url: url.clone(),
            started_at_unix_secs: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            log_path: log_path.clone(),
        };
        if let Err(e) = write_lock(&lock_path, &lock) {
            notes.push(format!("lock file not written: {e}"));
        }
        let server = ManagedServer {
            process,
            client,
            log,
            session_id,
            port,
            output_dir,
            log_path,
            lock_path,
            dropped_flags: command.dropped,
            notes,
            timings: settings.timings,
        };
        match server.wait_ready(state, since, cancel).await {
            Ok(()) => {
                state.send_replace(ServerState::Ready { url });
                Ok(server)
            }
            Err(error) => {
                server.stop_quietly().await;
                Err(error)
            }
        }
    }

    async fn wait_ready(
        &self,
        state: &watch::Sender<ServerState>,
        since: Instant,
        mut cancel: Option<watch::Receiver<bool>>,
    ) -> Result<(), StartError> {
        let mut seen_lines = 0u64;
        let mut last_output = Instant::now();
        let mut phase = None;
        loop {
            let (lines, next) = self.log.lines_since(seen_lines);
            if !lines.is_empty() {
                last_output = Instant::now();
                seen_lines = next;
                for line in &lines {
                    // Phases only move forward: "Total VRAM" prints again while nodes load.
                    if let Some(found) = boot_phase(&line.text)
                        && phase.is_none_or(|current| found > current)
                    {
                        phase = Some(found);
                        state.send_replace(ServerState::Starting {
                            phase: Some(found),
                            since,
                        });
                    }
                }
            }
            if let Some(exit) = self.process.try_exit() {
                return Err(self.early_exit(&exit));
            }
            match self.client.system_stats().await {
                Ok(stats) if is_our_server(&stats.argv, &self.session_id) => {
                    // The websocket must open too: the UI and runs depend on it.
                    if EventStream::connect(&self.client, &new_id("ready"))
                        .await
                        .is_ok()
                    {
                        return Ok(());
                    }
                }
                Ok(stats) => {
                    return Err(StartError::PortTaken {
                        port: self.port,
                        who: describe_argv(&stats.argv),
                    });
                }
                Err(_) => {
                    if last_output.elapsed() >= self.timings.stalled_after {
                        state.send_replace(ServerState::Stalled {
                            last_lines: self.tail_text(50),
                        });
                        return Err(StartError::Stalled {
                            after: self.timings.stalled_after,
                            last_lines: self.tail_text(TAIL_LINES),
                        });
                    }
                }
            }
            let tick = tokio::time::sleep(self.timings.ready_poll);
            match cancel.as_mut() {
                Some(cancel) => {
                    tokio::select! {
                        _ = tick => {}
                        changed = cancel.changed() => {
                            if changed.is_err() || *cancel.borrow() {
                                return Err(StartError::Cancelled);
                            }
                        }
                    }
                }
                None => tick.await,
            }
        }
    }

    fn early_exit(&self, exit: &ExitInfo) -> StartError {
        let tail = self.log.tail(TAIL_LINES);
        StartError::ExitedEarly {
            explanation: explain_exit(exit, &tail),
            cause: Some(exit_cause(exit, &tail)),
            last_lines: tail.into_iter().map(|l| l.text).collect(),
        }
    }

    fn tail_text(&self, lines: usize) -> Vec<String> {
        self.log.tail(lines).into_iter().map(|l| l.text).collect()
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The folder this server writes outputs into.
    pub fn output_dir(&self) -> &Path {
        &self.output_dir
    }

    pub fn log(&self) -> &ServerLog {
        &self.log
    }

    pub fn log_path(&self) -> Option<&Path> {
        self.log_path.as_deref()
    }

    /// Flags that were wanted but this ComfyUI does not accept (not passed).
    pub fn dropped_flags(&self) -> &[String] {
        &self.dropped_flags
    }

    /// Things worth telling the user about this start (our node installed, log not written…).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Fires once when the process exits, for whoever must notice a crash.
    pub fn exit_watch(&self) -> watch::Receiver<Option<ExitInfo>> {
        self.process.exit_watch()
    }

    /// Why the server exited, in one sentence, and its last lines; `None` while it runs.
    pub fn crash_report(&self) -> Option<(String, Vec<String>)> {
        let exit = self.process.try_exit()?;
        let tail = self.log.tail(TAIL_LINES);
        Some((
            explain_exit(&exit, &tail),
            tail.into_iter().map(|l| l.text).collect(),
        ))
    }

    /// Stops the server for certain: interrupt a running prompt, then SIGINT, SIGTERM, and kill
    /// the whole process group; then checks that no process of it is left and the port is free.
    pub async fn stop(self) -> ServerStopReport {
        self.stop_and_check(true).await
    }

    /// `check_port`: wait for the port to be free. A start that failed may have failed because
    /// another program holds the port, which we must not wait for.
    async fn stop_and_check(self, check_port: bool) -> ServerStopReport {
        let started = Instant::now();
        if self.process.try_exit().is_none() {
            // A hung server must not hold the stop up: short waits, then signals.
            let queue = tokio::time::timeout(PROBE_TIMEOUT, self.client.queue()).await;
            let busy = matches!(queue, Ok(Ok(queue)) if !queue.running.is_empty());
            if busy {
                let _ = tokio::time::timeout(PROBE_TIMEOUT, self.client.interrupt(None)).await;
            }
        }
        let process = self.process;
        let timings = self.timings.stop;
        let pid = process.pid();
        let process_report = match tokio::task::spawn_blocking(move || process.stop(timings)).await
        {
            Ok(report) => Some(report),
            Err(_) => {
                // The stopping thread died: make sure anyway.
                let _ = kill_group(pid);
                None
            }
        };
        let port_free = !check_port || wait_port_free(self.port, self.timings.port_release).await;
        let leftover_pids = group_members(pid);
        if leftover_pids.is_empty() {
            let _ = fs::remove_file(&self.lock_path);
        }
        ServerStopReport {
            process: process_report,
            port_free,
            leftover_pids,
            took: started.elapsed(),
        }
    }

    async fn stop_quietly(self) {
        let _ = self.stop_and_check(false).await;
    }
}

/// What a stop did.
#[derive(Debug)]
pub struct ServerStopReport {
    pub process: Option<StopReport>,
    pub port_free: bool,
    /// Processes of the server's group still alive after the stop (should be none).
    pub leftover_pids: Vec<u32>,
    pub took: Duration,
}

impl ServerStopReport {
    /// Whether nothing of the server is left: no process and the port free.
    pub fn is_clean(&self) -> bool {
        self.port_free && self.leftover_pids.is_empty()
    }
}

async fn wait_port_free(port: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).is_ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Another program's server described by its command line, for messages.
fn describe_argv(argv: &[String]) -> String {
    if argv.is_empty() {
        "no command line reported".to_string()
    } else {
        let mut text = argv.join(" ");
        if text.len() > 160 {
            let mut cut = 160;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        text
    }
}

/// A server the user already runs, used at its URL and never started or stopped by us.
#[derive(Debug, Clone)]
pub struct AttachedServer {
    client: Client,
    url: String,
    pub comfyui_version: Option<String>,
}

/// Why an attach failed.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl AttachedServer {
    /// Checks that `url` answers as a ComfyUI server and opens its websocket.
    pub async fn attach(url: &str) -> Result<AttachedServer, AttachError> {
        let client = Client::new(url)?;
        let stats = client.system_stats().await?;
        EventStream::connect(&client, &new_id("attach")).await?;
        Ok(AttachedServer {
            url: client.base_url().to_string(),
            client,
            comfyui_version: stats.comfyui_version,
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

// ---------------------------------------------------------------------------------------------
// Lock files: a server left behind by a session that died is found at the next start.

const LOCK_VERSION: u32 = 1;

/// What a lock file records about a running server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockRecord {
    pub version: u32,
    /// The wan-pilot process that started it.
    pub app_pid: u32,
    /// The server process; it leads its own process group.
    pub server_pid: u32,
    pub port: u16,
    /// The marker in the server's command line.
    pub session_id: String,
    pub url: String,
    pub started_at_unix_secs: u64,
    #[serde(default)]
    pub log_path: Option<PathBuf>,
}

fn write_lock(path: &Path, record: &LockRecord) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
    write_atomically(path, &bytes).map_err(std::io::Error::other)
}

/// A server whose wan-pilot is gone but which still runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Leftover {
    pub record: LockRecord,
    pub lock_path: PathBuf,
}

impl Leftover {
    /// Stops the left-over server's whole process group and removes its lock file.
    pub async fn stop(&self, within: Duration) -> bool {
        let pid = self.record.server_pid;
        if still_ours(&self.record) {
            let _ = kill_group(pid);
        }
        let deadline = Instant::now() + within;
        while process_alive(pid) && still_ours(&self.record) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let gone = !process_alive(pid) || !still_ours(&self.record);
        if gone {
            let _ = fs::remove_file(&self.lock_path);
        }
        gone
    }

    /// A client for it, to use it as it is ("attach").
    pub fn client(&self) -> Result<Client, ClientError> {
        Client::new(&self.record.url)
    }
}

/// Servers started by wan-pilot sessions that are no longer running. Lock files of servers that
/// are gone are removed; unreadable ones are set aside with a `.broken` suffix.
pub fn find_leftovers(locks_dir: &Path) -> Vec<Leftover> {
    let Ok(entries) = fs::read_dir(locks_dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let record: LockRecord = match fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        {
            Some(record) => record,
            None => {
                let _ = fs::rename(&path, path.with_extension("json.broken"));
                continue;
            }
        };
        let app_alive = record.app_pid != std::process::id() && process_alive(record.app_pid);
        if app_alive {
            continue;
        }
        if record.app_pid == std::process::id() {
            // Our own session's servers are not left over.
            continue;
        }
        if process_alive(record.server_pid) && still_ours(&record) {
            found.push(Leftover {
                record,
                lock_path: path,
            });
        } else {
            let _ = fs::remove_file(&path);
        }
    }
    found.sort_by_key(|l| l.record.started_at_unix_secs);
    found
}

/// Whether the process with the recorded pid is still the server we started (a pid can be
/// reused): its command line carries our session marker. Where the command line cannot be read
/// the pid is trusted.
fn still_ours(record: &LockRecord) -> bool {
    #[cfg(target_os = "linux")]
    {
        match fs::read(format!("/proc/{}/cmdline", record.server_pid)) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).contains(&record.session_id),
            Err(_) => false,
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        process_alive(record.server_pid)
    }
}

// ---------------------------------------------------------------------------------------------
// Restarts after a crash.

/// SwarmUI's rule, bounded: restart only a server that had been healthy, after a growing delay,
/// at most `max_restarts` times within `window`.
#[derive(Debug, Clone, PartialEq)]
pub struct RestartPolicy {
    pub max_restarts: usize,
    pub window: Duration,
    pub first_delay: Duration,
    pub max_delay: Duration,
    restarts: VecDeque<Instant>,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy::new(3, Duration::from_secs(600), Duration::from_secs(2))
    }
}

impl RestartPolicy {
    pub fn new(max_restarts: usize, window: Duration, first_delay: Duration) -> Self {
        RestartPolicy {
            max_restarts,
            window,
            first_delay,
            max_delay: Duration::from_secs(30),
            restarts: VecDeque::new(),
        }
    }

    /// After a crash at `now`: the delay before the next restart, or `None` to stay down.
    pub fn after_crash(&mut self, now: Instant, was_healthy: bool) -> Option<Duration> {
        if !was_healthy {
            return None;
        }
        while self
            .restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            self.restarts.pop_front();
        }
        if self.restarts.len() >= self.max_restarts {
            return None;
        }
        let doublings = u32::try_from(self.restarts.len())
            .unwrap_or(u32::MAX)
            .min(8);
        let delay = self
            .first_delay
            .saturating_mul(1 << doublings)
            .min(self.max_delay);
        self.restarts.push_back(now);
        Some(delay)
    }

    /// Restarts counted in the current window.
    pub fn restarts_in_window(&self) -> usize {
        self.restarts.len()
    }
}

// ---------------------------------------------------------------------------------------------
// The supervisor: one task that owns the managed server for the window.

/// What the window asks of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SupervisorCommand {
    Start,
    Stop,
    Restart,
}

/// Everything a start needs, kept for restarts.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    pub install: Install,
    pub flags: SupportedFlags,
    pub settings: ServerSettings,
    pub dirs: ServerDirs,
    pub restart: RestartPolicy,
}

/// A handle on the task that starts, watches, restarts and stops the managed server.
pub struct Supervisor {
    commands: tokio::sync::mpsc::UnboundedSender<SupervisorCommand>,
    state: watch::Receiver<ServerState>,
    client: watch::Receiver<Option<Client>>,
    task: tokio::task::JoinHandle<()>,
}

impl Supervisor {
    /// Spawns the task on the current runtime; the server starts on [`SupervisorCommand::Start`].
    pub fn spawn(config: SupervisorConfig) -> Supervisor {
        let (commands, command_rx) = tokio::sync::mpsc::unbounded_channel();
        let (state_tx, state) = watch::channel(ServerState::Stopped);
        let (client_tx, client) = watch::channel(None);
        let task = tokio::spawn(supervise(config, command_rx, state_tx, client_tx));
        Supervisor {
            commands,
            state,
            client,
            task,
        }
    }

    pub fn send(&self, command: SupervisorCommand) {
        // The task only ends when every handle is gone, so a send cannot fail while we exist.
        let _ = self.commands.send(command);
    }

    pub fn state(&self) -> watch::Receiver<ServerState> {
        self.state.clone()
    }

    /// The ready server's client, `None` while none is ready.
    pub fn client(&self) -> Option<Client> {
        self.client.borrow().clone()
    }

    /// Stops the server and waits for the task to finish.
    pub async fn shutdown(self) {
        let _ = self.commands.send(SupervisorCommand::Stop);
        drop(self.commands);
        let _ = self.task.await;
    }
}

async fn supervise(
    config: SupervisorConfig,
    mut commands: tokio::sync::mpsc::UnboundedReceiver<SupervisorCommand>,
    state: watch::Sender<ServerState>,
    client: watch::Sender<Option<Client>>,
) {
    let mut policy = config.restart.clone();
    let mut wanted = false;
    let mut pending_delay: Option<Duration> = None;
    loop {
        if !wanted {
            match commands.recv().await {
                Some(SupervisorCommand::Start | SupervisorCommand::Restart) => wanted = true,
                Some(SupervisorCommand::Stop) => continue,
                None => return,
            }
        }
        if let Some(delay) = pending_delay.take() {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                command = commands.recv() => match command {
                    Some(SupervisorCommand::Stop) | None => {
                        wanted = false;
                        state.send_replace(ServerState::Stopped);
                        if command.is_none() { return; }
                        continue;
                    }
                    Some(_) => {}
                }
            }
        }
        let server = match ManagedServer::start(
            &config.install,
            &config.flags,
            &config.settings,
            &config.dirs,
            &state,
            None,
        )
        .await
        {
            Ok(server) => server,
            Err(error) => {
                // A server that never became healthy is not restarted.
                wanted = false;
                state.send_replace(ServerState::Crashed {
                    explanation: error.to_string(),
                    last_lines: error.last_lines().to_vec(),
                });
                continue;
            }
        };
        client.send_replace(Some(server.client().clone()));
        let ended = watch_running(&server, &config.settings.timings, &mut commands, &state).await;
        client.send_replace(None);
        match ended {
            RunningEnded::Command(command) => {
                state.send_replace(ServerState::Stopping);
                let _ = server.stop().await;
                state.send_replace(ServerState::Stopped);
                match command {
                    Some(SupervisorCommand::Restart) => wanted = true,
                    Some(_) => wanted = false,
                    None => return,
                }
            }
            RunningEnded::Exited => {
                let (explanation, last_lines) = server
                    .crash_report()
                    .unwrap_or_else(|| ("the server exited".to_string(), Vec::new()));
                let _ = server.stop().await;
                state.send_replace(ServerState::Crashed {
                    explanation: explanation.clone(),
                    last_lines: last_lines.clone(),
                });
                match policy.after_crash(Instant::now(), true) {
                    Some(delay) => {
                        state.send_replace(ServerState::Restarting {
                            attempt: u32::try_from(policy.restarts_in_window()).unwrap_or(u32::MAX),
                            delay,
                        });
                        pending_delay = Some(delay);
                    }
                    None => {
                        wanted = false;
                        state.send_replace(ServerState::Crashed {
                            explanation: format!(
                                "{explanation}; not restarted again: it crashed {} times in {} minutes",
                                policy.max_restarts + 1,
                                policy.window.as_secs() / 60
                            ),
                            last_lines,
                        });
                    }
                }
            }
        }
    }
}

enum RunningEnded {
    /// A command (or `None`: every handle dropped) ended the running phase.
    Command(Option<SupervisorCommand>),
    Exited,
}

/// Watches a ready server: its exit, health probes, and commands.
async fn watch_running(
    server: &ManagedServer,
    timings: &ServerTimings,
    commands: &mut tokio::sync::mpsc::UnboundedReceiver<SupervisorCommand>,
    state: &watch::Sender<ServerState>,
) -> RunningEnded {
    let mut exit = server.exit_watch();
    let mut missed = 0u32;
    let url = server.url();
    loop {
        if exit.borrow().is_some() {
            return RunningEnded::Exited;
        }
        tokio::select! {
            changed = exit.changed() => {
                if changed.is_err() || exit.borrow().is_some() {
                    return RunningEnded::Exited;
                }
            }
            command = commands.recv() => match command {
                Some(SupervisorCommand::Start) => {}
                other => return RunningEnded::Command(other),
            },
            _ = tokio::time::sleep(timings.health_interval) => {
                match probe(server.client()).await {
                    Ok(()) => {
                        missed = 0;
                        if !matches!(&*state.borrow(), ServerState::Ready { .. }) {
                            state.send_replace(ServerState::Ready { url: url.clone() });
                        }
                    }
                    Err(_) => {
                        missed += 1;
                        if missed >= timings.missed_probes {
                            state.send_replace(ServerState::Unresponsive { url: url.clone() });
                        }
                    }
                }
            }
        }
    }
}

/// How long a health probe may take: a ComfyUI that is busy sampling still answers at once.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// One health probe: `/system_stats` within [`PROBE_TIMEOUT`]; the failure in words.
pub async fn probe(client: &Client) -> Result<(), String> {
    match tokio::time::timeout(PROBE_TIMEOUT, client.system_stats()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "{}/system_stats gave no answer within {} s",
            client.base_url(),
            PROBE_TIMEOUT.as_secs()
        )),
    }
}

/// The log's last lines as text, for a crash message.
pub fn tail_text(lines: &[LogLine]) -> Vec<String> {
    lines.iter().map(|l| l.text.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_only_a_healthy_server() {
        let mut policy = RestartPolicy::default();
        assert_eq!(policy.after_crash(Instant::now(), false), None);
        assert_eq!(policy.restarts_in_window(), 0);
    }

    #[test]
    fn at_most_three_restarts_in_ten_minutes_with_growing_delays() {
        let mut policy = RestartPolicy::default();
        let start = Instant::now();
        let delays: Vec<Option<Duration>> = (0..4)
            .map(|i| policy.after_crash(start + Duration::from_secs(60 * i), true))
            .collect();
        assert_eq!(
            delays,
            vec![
                Some(Duration::from_secs(2)),
                Some(Duration::from_secs(4)),
                Some(Duration::from_secs(8)),
                None
            ]
        );
        // At 11 min 1 s the restarts at 0 and 1 min are out of the window: the delay shrinks.
        assert_eq!(
            policy.after_crash(start + Duration::from_secs(661), true),
            Some(Duration::from_secs(4))
        );
    }

    #[test]
    fn long_command_lines_are_shortened_for_messages() {
        let argv: Vec<String> = (0..100).map(|i| format!("--flag{i}")).collect();
        let text = describe_argv(&argv);
        assert!(text.chars().count() <= 161);
        assert!(text.ends_with('…'));
        assert_eq!(describe_argv(&[]), "no command line reported");
    }

    #[test]
    fn lock_records_round_trip() {
        let dir = std::env::temp_dir().join(format!("wan-pilot-lock-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let gone_pid = gone.id();
        gone.wait().unwrap();
        let record = LockRecord {
            version: LOCK_VERSION,
            app_pid: gone_pid,
            server_pid: u32::MAX - 1,
            port: 8188,
            session_id: "wan-pilot-x".into(),
            url: "http://127.0.0.1:8188".into(),
            started_at_unix_secs: 5,
            log_path: None,
        };
        let path = dir.join("wan-pilot-x.json");
        write_lock(&path, &record).unwrap();
        let read: LockRecord = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(read, record);
        // Neither its app nor its server runs: not a leftover, and the stale file goes away.
        assert!(find_leftovers(&dir).is_empty());
        assert!(!path.exists());
        fs::write(dir.join("garbage.json"), b"{").unwrap();
        assert!(find_leftovers(&dir).is_empty());
        assert!(dir.join("garbage.json.broken").exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
