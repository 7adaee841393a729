//! The ComfyUI server as a child process: started from a [`LaunchCommand`] with its output read
//! line by line into a [`ServerLog`], watched until it exits, stopped gracefully then certainly
//! (SIGINT, SIGTERM, then SIGKILL to its whole process group, then a check that nothing of the
//! group is left), and never outliving the app: on Linux it runs in its own process group with a
//! parent-death signal, on Windows in a job object that kills it when the app's handle closes.
//! Other unix systems (macOS) get the process group only.
//!
//! Linux delivers the parent-death signal when the *thread* that forked the child ends, so each
//! server is spawned from a keeper thread that lives until the server has exited (it also waits
//! for it).

use std::fmt;
use std::io::{self, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::launch::LaunchCommand;
use super::logs::{LogStream, ServerLog};

/// How a process ended: an exit code, or (unix) the signal that ended it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl ExitInfo {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The exit code as a Windows NTSTATUS error (0xC0000000 and up: a crash, not a Python
    /// `sys.exit`), if it is one.
    pub fn ntstatus(&self) -> Option<u32> {
        self.code
            .map(|code| code as u32)
            .filter(|code| *code >= 0xC000_0000)
    }
}

impl From<ExitStatus> for ExitInfo {
    fn from(status: ExitStatus) -> Self {
        #[cfg(unix)]
        let signal = std::os::unix::process::ExitStatusExt::signal(&status);
        #[cfg(not(unix))]
        let signal = None;
        ExitInfo {
            code: status.code(),
            signal,
        }
    }
}

impl fmt::Display for ExitInfo {
    /// "exit code 2", "killed by signal 9 (SIGKILL)", "exit code 0xC0000005 (access violation)".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal, self.ntstatus()) {
            (_, Some(signal), _) => match signal_name(signal) {
                Some(name) => write!(f, "killed by signal {signal} ({name})"),
                None => write!(f, "killed by signal {signal}"),
            },
            (_, None, Some(status)) => match ntstatus_meaning(status) {
                Some(meaning) => write!(f, "exit code 0x{status:08X} ({meaning})"),
                None => write!(f, "exit code 0x{status:08X}"),
            },
            (Some(code), None, None) => write!(f, "exit code {code}"),
            (None, None, None) => f.write_str("exit status unknown"),
        }
    }
}

/// The name of a unix signal number on this system (`SIGKILL`), for messages.
pub fn signal_name(signal: i32) -> Option<&'static str> {
    #[cfg(unix)]
    {
        let names = [
            (libc::SIGHUP, "SIGHUP"),
            (libc::SIGINT, "SIGINT"),
            (libc::SIGQUIT, "SIGQUIT"),
            (libc::SIGILL, "SIGILL"),
            (libc::SIGTRAP, "SIGTRAP"),
            (libc::SIGABRT, "SIGABRT"),
            (libc::SIGBUS, "SIGBUS"),
            (libc::SIGFPE, "SIGFPE"),
            (libc::SIGKILL, "SIGKILL"),
            (libc::SIGUSR1, "SIGUSR1"),
            (libc::SIGSEGV, "SIGSEGV"),
            (libc::SIGUSR2, "SIGUSR2"),
            (libc::SIGPIPE, "SIGPIPE"),
            (libc::SIGALRM, "SIGALRM"),
            (libc::SIGTERM, "SIGTERM"),
            (libc::SIGXCPU, "SIGXCPU"),
            (libc::SIGXFSZ, "SIGXFSZ"),
        ];
        names
            .iter()
            .find(|(n, _)| *n == signal)
            .map(|(_, name)| *name)
    }
    #[cfg(not(unix))]
    {
        let _ = signal;
        None
    }
}

/// What the common Windows crash codes mean (python.exe dies with these, not with a signal).
fn ntstatus_meaning(status: u32) -> Option<&'static str> {
    Some(match status {
        0xC000_0005 => "access violation",
        0xC000_0017 => "out of memory",
        0xC000_001D => "illegal instruction",
        0xC000_0094 => "integer division by zero",
        0xC000_00FD => "stack overflow",
        0xC000_0135 => "a DLL was not found",
        0xC000_0139 => "a DLL lacks an entry point",
        0xC000_013A => "stopped by Ctrl+C",
        0xC000_0142 => "a DLL failed to initialise",
        0xC000_0374 => "heap corruption",
        0xC000_0409 => "stack buffer overrun or fail-fast exit",
        _ => return None,
    })
}

/// The signals a stop sends, mildest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StopSignal {
    /// SIGINT to the server: ComfyUI stops its web server and exits (exit code 0).
    Interrupt,
    /// SIGTERM to the server (Windows: terminate the job).
    Terminate,
    /// SIGKILL to the server's whole process group (Windows: terminate the job).
    Kill,
}

impl fmt::Display for StopSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopSignal::Interrupt => "SIGINT",
            StopSignal::Terminate => "SIGTERM",
            StopSignal::Kill => "SIGKILL",
        })
    }
}

/// How long each step of a stop waits for the server to exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopTimings {
    /// After SIGINT: ComfyUI idles out in ~3 s, but a run or a model load can take longer.
    pub interrupt_wait: Duration,
    /// After SIGTERM.
    pub terminate_wait: Duration,
    /// After SIGKILL, for the server and then for what is left of its group.
    pub kill_wait: Duration,
}

impl Default for StopTimings {
    fn default() -> Self {
        StopTimings {
            interrupt_wait: Duration::from_secs(10),
            terminate_wait: Duration::from_secs(5),
            kill_wait: Duration::from_secs(5),
        }
    }
}

/// Which step of the stop ended the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StopHow {
    /// It had exited before the stop began.
    AlreadyExited,
    Interrupted,
    Terminated,
    Killed,
}

/// What a stop did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopReport {
    pub how: StopHow,
    /// How the server ended (None only if it survived even SIGKILL for `kill_wait`).
    pub exit: Option<ExitInfo>,
    /// Members of the server's process group still alive at the end (should be empty).
    pub leftover_pids: Vec<u32>,
    pub took_ms: u64,
}

/// What went wrong starting or signalling the server; each says what to check.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(
        "cannot start {} in {}: {source}; check that ComfyUI's Python exists and that the \
         ComfyUI folder is readable",
        program.display(),
        working_dir.display()
    )]
    Spawn {
        program: PathBuf,
        working_dir: PathBuf,
        source: io::Error,
    },
    #[error(
        "cannot create the thread that starts and watches the server: {source}; the system is short of resources"
    )]
    Thread { source: io::Error },
    #[error(
        "the thread that starts the server ended without saying whether it started; this is a bug in wan-pilot"
    )]
    KeeperLost,
    #[error("the server (pid {pid}) has already exited; there is nothing to signal")]
    NotRunning { pid: u32 },
    #[error("cannot send {signal} to the server (pid {pid}): {source}")]
    Signal {
        pid: u32,
        signal: StopSignal,
        source: io::Error,
    },
    #[error(
        "{signal} cannot be sent to a server without a console on this system; use a stronger signal"
    )]
    Unsupported { signal: StopSignal },
    #[error(
        "refusing to signal process group {pgid}: it is not a server's group (it is ours or the system's)"
    )]
    RefusedGroup { pgid: u32 },
    #[error("cannot {what} the server's job object: {source}")]
    Job {
        what: &'static str,
        source: io::Error,
    },
}

/// A running (or exited) ComfyUI server started by us. Dropping it kills the server's process
/// group if it still runs; call [`ServerProcess::stop`] first for a graceful stop.
#[derive(Debug)]
pub struct ServerProcess {
    pid: u32,
    shared: Arc<Shared>,
    exit_rx: watch::Receiver<Option<ExitInfo>>,
    log: ServerLog,
    #[cfg(windows)]
    job: Arc<windows::Job>,
    /// Kills the server's whole group if the app dies (its grandchildren get no parent-death
    /// signal of their own). `None` when `sh` could not be started: then only the server itself
    /// dies with the app.
    #[cfg(unix)]
    _group_watchdog: Option<GroupWatchdog>,
}

/// A tiny `sh` in its own process group that blocks reading a pipe only the app holds. When the
/// app ends in any way, even SIGKILL, the kernel closes the pipe, `read` returns, and `sh` kills
/// the server's process group. A normal stop disarms it first.
#[cfg(unix)]
#[derive(Debug)]
struct GroupWatchdog {
    child: Child,
}

#[cfg(unix)]
impl GroupWatchdog {
    fn arm(pgid: u32) -> io::Result<GroupWatchdog> {
        use std::os::unix::process::CommandExt;
        let child = Command::new("sh")
            .args([
                "-c",
                // dash, the usual sh, takes neither "-KILL" nor "--" here.
                "read _ignored; kill -9 \"-$1\" 2>/dev/null",
                "wan-pilot-watchdog",
                &pgid.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Out of the terminal's group: a Ctrl-C meant for the app must not end it.
            .process_group(0)
            .spawn()?;
        Ok(GroupWatchdog { child })
    }
}

#[cfg(unix)]
impl Drop for GroupWatchdog {
    /// Disarmed: killed before its pipe closes, so it never signals a group id that may be
    /// reused later.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Set under the lock as the keeper reaps the child: from then on its pid may be reused, so
    /// nothing may signal it.
    reaped: bool,
    /// Published once the output has been read to its end (or for at most [`DRAIN_WAIT`]).
    exit: Option<ExitInfo>,
}

impl Shared {
    // The state is two plain fields written at once, so a poisoned lock still holds valid data.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// How long the keeper waits for the output readers after the server exits, so that the exit is
/// published with the last lines already in the log. A grandchild holding the pipes open must
/// not delay the exit longer than this.
const DRAIN_WAIT: Duration = Duration::from_millis(500);

/// A line longer than this is cut; a progress bar that rewrites itself with `\r` keeps only its
/// latest state instead.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// Polling interval while waiting for a process group to empty.
const GROUP_POLL: Duration = Duration::from_millis(20);

impl ServerProcess {
    /// Starts the server `cmd` describes: stdin empty, stdout and stderr read into `log` (whose
    /// clock restarts now), in its own process group that dies with the app. Returns once the
    /// process exists; readiness is the supervisor's business.
    pub fn spawn(cmd: &LaunchCommand, log: ServerLog) -> Result<ServerProcess, ProcessError> {
        let command = build_command(cmd);
        log.restart_clock();
        #[cfg(windows)]
        let job = Arc::new(windows::Job::new().map_err(|source| ProcessError::Job {
            what: "create",
            source,
        })?);

        let shared = Arc::new(Shared::default());
        let (exit_tx, exit_rx) = watch::channel(None);
        let (started_tx, started_rx) = mpsc::channel();
        let keeper = Keeper {
            command,
            program: cmd.program.clone(),
            working_dir: cmd.working_dir.clone(),
            log: log.clone(),
            shared: Arc::clone(&shared),
            exit_tx,
            started_tx,
            #[cfg(windows)]
            job: Arc::clone(&job),
        };
        thread::Builder::new()
            .name("comfyui-keeper".into())
            .spawn(move || keeper.run())
            .map_err(|source| ProcessError::Thread { source })?;
        let pid = started_rx.recv().map_err(|_| ProcessError::KeeperLost)??;

        log.note(&format!(
            "spawned pid {pid}: {} {}",
            cmd.program.display(),
            cmd.args.join(" ")
        ));
        if !cmd.dropped.is_empty() {
            log.note(&format!(
                "not passed (this ComfyUI does not accept them): {}",
                cmd.dropped.join(" ")
            ));
        }
        #[cfg(unix)]
        let watchdog = match GroupWatchdog::arm(pid) {
            Ok(watchdog) => Some(watchdog),
            Err(e) => {
                log.note(&format!(
                    "no watchdog for the server's group ({e}): if wan-pilot is killed, processes \
                     the server started may be left running"
                ));
                None
            }
        };
        Ok(ServerProcess {
            pid,
            shared,
            exit_rx,
            log,
            #[cfg(windows)]
            job,
            #[cfg(unix)]
            _group_watchdog: watchdog,
        })
    }

    /// The server's process id (on unix also its process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The log its output goes to.
    pub fn log(&self) -> &ServerLog {
        &self.log
    }

    /// Becomes `Some` once, when the server has exited and its output has been read.
    pub fn exit_watch(&self) -> watch::Receiver<Option<ExitInfo>> {
        self.exit_rx.clone()
    }

    /// How it exited, if it has.
    pub fn try_exit(&self) -> Option<ExitInfo> {
        self.shared.lock().exit
    }

    /// Blocks until it exits or `timeout` passes.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<ExitInfo> {
        let state = self.shared.lock();
        let (state, _) = self
            .shared
            .changed
            .wait_timeout_while(state, timeout, |s| s.exit.is_none())
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.exit
    }

    /// Sends one stop signal. Fails with [`ProcessError::NotRunning`] once the server has been
    /// reaped (its pid may then belong to another process).
    pub fn signal(&self, signal: StopSignal) -> Result<(), ProcessError> {
        let state = self.shared.lock();
        if state.reaped {
            return Err(ProcessError::NotRunning { pid: self.pid });
        }
        // The lock is held while signalling, so the keeper cannot reap meanwhile.
        self.send(signal)
    }

    #[cfg(unix)]
    fn send(&self, signal: StopSignal) -> Result<(), ProcessError> {
        let pid = self.pid as libc::pid_t;
        // SAFETY: kill/killpg take plain integers; the pid is our unreaped child.
        let rc = unsafe {
            match signal {
                StopSignal::Interrupt => libc::kill(pid, libc::SIGINT),
                StopSignal::Terminate => libc::kill(pid, libc::SIGTERM),
                StopSignal::Kill => libc::killpg(pid, libc::SIGKILL),
            }
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(ProcessError::Signal {
                pid: self.pid,
                signal,
                source: io::Error::last_os_error(),
            })
        }
    }

    #[cfg(windows)]
    fn send(&self, signal: StopSignal) -> Result<(), ProcessError> {
        match signal {
            // A process without a console gets no Ctrl+C or Ctrl+Break we could send.
            StopSignal::Interrupt => Err(ProcessError::Unsupported { signal }),
            StopSignal::Terminate | StopSignal::Kill => {
                self.job.terminate().map_err(|source| ProcessError::Signal {
                    pid: self.pid,
                    signal,
                    source,
                })
            }
        }
    }

    #[cfg(not(any(unix, windows)))]
    fn send(&self, signal: StopSignal) -> Result<(), ProcessError> {
        Err(ProcessError::Unsupported { signal })
    }

    /// Stops the server gracefully, then certainly: SIGINT and `interrupt_wait`, SIGTERM and
    /// `terminate_wait`, SIGKILL to the group and `kill_wait`; then whatever is left of its
    /// process group (grandchildren) is killed and waited for. Blocks for up to the sum of the
    /// waits plus `kill_wait` (call it from `spawn_blocking`).
    pub fn stop(&self, timings: StopTimings) -> StopReport {
        let started = Instant::now();
        let mut exit = self.try_exit();
        let mut how = StopHow::AlreadyExited;
        if exit.is_none() {
            let ladder = [
                (
                    StopSignal::Interrupt,
                    timings.interrupt_wait,
                    StopHow::Interrupted,
                ),
                (
                    StopSignal::Terminate,
                    timings.terminate_wait,
                    StopHow::Terminated,
                ),
                (StopSignal::Kill, timings.kill_wait, StopHow::Killed),
            ];
            for (signal, wait, step) in ladder {
                match self.signal(signal) {
                    Ok(()) => {
                        self.log.note(&format!("stop: sent {signal}"));
                        how = step;
                    }
                    // Exited meanwhile: the wait below returns at once.
                    Err(ProcessError::NotRunning { .. }) => {}
                    Err(e) => {
                        self.log.note(&format!("stop: {e}"));
                        continue;
                    }
                }
                exit = self.wait_timeout(wait);
                if exit.is_some() {
                    break;
                }
            }
        }
        let leftover_pids = self.clear_group(timings.kill_wait);
        let took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let ended = exit.map_or_else(|| "still running".to_string(), |e| e.to_string());
        self.log.note(&format!(
            "stop: {how:?} ({ended}) after {took_ms} ms; left in its group: {leftover_pids:?}"
        ));
        StopReport {
            how,
            exit,
            leftover_pids,
            took_ms,
        }
    }

    /// Kills what is left of the server's group and waits up to `wait` for it to go.
    #[cfg(unix)]
    fn clear_group(&self, wait: Duration) -> Vec<u32> {
        let deadline = Instant::now() + wait;
        loop {
            let members = group_members(self.pid);
            if members.is_empty() || Instant::now() >= deadline {
                return members;
            }
            let _ = kill_group(self.pid);
            thread::sleep(GROUP_POLL);
        }
    }

    #[cfg(not(unix))]
    fn clear_group(&self, wait: Duration) -> Vec<u32> {
        #[cfg(windows)]
        let _ = self.job.terminate();
        let deadline = Instant::now() + wait;
        while process_alive(self.pid) && Instant::now() < deadline {
            thread::sleep(GROUP_POLL);
        }
        group_members(self.pid)
    }
}

impl Drop for ServerProcess {
    /// The server must not outlive its handle: kill the group if anything of it is left.
    fn drop(&mut self) {
        let running = !self.shared.lock().reaped;
        if running {
            let _ = self.signal(StopSignal::Kill);
        }
        #[cfg(target_os = "linux")]
        if !group_members(self.pid).is_empty() {
            let _ = kill_group(self.pid);
        }
        // Windows: dropping the last handle to the job kills what is in it.
    }
}

fn build_command(cmd: &LaunchCommand) -> Command {
    let mut command = Command::new(&cmd.program);
    command
        .args(&cmd.args)
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&cmd.working_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // Its own group, so a stop reaches the grandchildren too and a Ctrl+C in the terminal
        // the app runs in reaches only the app.
        command.process_group(0);
        #[cfg(target_os = "linux")]
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the closure runs between fork and exec, so it only calls async-signal-safe libc
        // functions and neither allocates nor locks.
        unsafe {
            command.pre_exec(move || {
                // An app started with SIGINT ignored (nohup, some launchers) would pass that on,
                // and Python keeps an ignored SIGINT ignored: the graceful stop would not work.
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                libc::signal(libc::SIGTERM, libc::SIG_DFL);
                #[cfg(target_os = "linux")]
                {
                    let sigkill = libc::SIGKILL as libc::c_ulong;
                    if libc::prctl(libc::PR_SET_PDEATHSIG, sigkill, 0, 0, 0) == -1 {
                        return Err(io::Error::last_os_error());
                    }
                    // The app died between fork and prctl: the signal will never come.
                    if libc::getppid() != parent {
                        libc::_exit(1);
                    }
                }
                Ok(())
            });
        }
    }
    #[cfg(windows)]
    {
        use std::os::windows::process::CommandExt;
        use windows_sys::Win32::System::Threading::{CREATE_NEW_PROCESS_GROUP, CREATE_NO_WINDOW};
        command.creation_flags(CREATE_NO_WINDOW | CREATE_NEW_PROCESS_GROUP);
    }
    command
}

/// Everything the keeper thread owns.
struct Keeper {
    command: Command,
    program: PathBuf,
    working_dir: PathBuf,
    log: ServerLog,
    shared: Arc<Shared>,
    exit_tx: watch::Sender<Option<ExitInfo>>,
    started_tx: mpsc::Sender<Result<u32, ProcessError>>,
    #[cfg(windows)]
    job: Arc<windows::Job>,
}

impl Keeper {
    /// Spawns the server, reports its pid, reads its output, waits for it and publishes the exit.
    /// This thread is the server's parent thread on Linux: it must live as long as the server.
    fn run(mut self) {
        let mut child = match self.command.spawn() {
            Ok(child) => child,
            Err(source) => {
                let _ = self.started_tx.send(Err(ProcessError::Spawn {
                    program: self.program,
                    working_dir: self.working_dir,
                    source,
                }));
                return;
            }
        };
        #[cfg(windows)]
        {
            let assigned = self.job.assign(&child);
            // Only the handle in ServerProcess may keep the job open.
            drop(self.job);
            if let Err(source) = assigned {
                let _ = child.kill();
                let _ = child.wait();
                let _ = self.started_tx.send(Err(ProcessError::Job {
                    what: "put the server into",
                    source,
                }));
                return;
            }
        }
        let pid = child.id();
        let (done_tx, done_rx) = mpsc::channel();
        let mut readers = 0;
        if let Some(out) = child.stdout.take() {
            readers += start_reader(out, LogStream::Stdout, &self.log, done_tx.clone());
        }
        if let Some(err) = child.stderr.take() {
            readers += start_reader(err, LogStream::Stderr, &self.log, done_tx);
        }
        let _ = self.started_tx.send(Ok(pid));

        let exit = reap(&mut child, &self.shared);
        let deadline = Instant::now() + DRAIN_WAIT;
        for _ in 0..readers {
            let left = deadline.saturating_duration_since(Instant::now());
            if done_rx.recv_timeout(left).is_err() {
                break;
            }
        }
        self.log.note(&format!("exited: {exit}"));
        self.shared.lock().exit = Some(exit);
        self.shared.changed.notify_all();
        self.exit_tx.send_replace(Some(exit));
    }
}

/// Waits for the child and reaps it, marking it reaped under the lock in the same step.
fn reap(child: &mut Child, shared: &Shared) -> ExitInfo {
    let status = |child: &mut Child| match child.wait() {
        Ok(status) => ExitInfo::from(status),
        Err(_) => ExitInfo {
            code: None,
            signal: None,
        },
    };
    #[cfg(unix)]
    if wait_without_reaping(child.id()) {
        // The child is a zombie now, so this wait returns at once.
        let mut state = shared.lock();
        let exit = status(child);
        state.reaped = true;
        return exit;
    }
    // Windows signals the job, not the pid, so reaping needs no lock there.
    let exit = status(child);
    shared.lock().reaped = true;
    exit
}

/// Blocks until the child has exited but leaves it a zombie, so its pid stays ours until
/// [`reap`] takes the lock that [`ServerProcess::signal`] holds while signalling.
#[cfg(unix)]
fn wait_without_reaping(pid: u32) -> bool {
    loop {
        // SAFETY: siginfo_t is plain data that waitid fills in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: a valid pointer to siginfo_t; P_PID with our child's pid.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 {
            return true;
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return false;
        }
    }
}

/// Starts a thread that reads `source` line by line into `log`; returns how many threads
/// started (0 or 1). Each signals `done` at end of file.
fn start_reader(
    source: impl Read + Send + 'static,
    stream: LogStream,
    log: &ServerLog,
    done: mpsc::Sender<()>,
) -> usize {
    let thread_log = log.clone();
    let started = thread::Builder::new()
        .name(format!("comfyui-{}", stream.tag()))
        .spawn(move || {
            read_lines(source, stream, &thread_log);
            let _ = done.send(());
        });
    match started {
        Ok(_) => 1,
        Err(e) => {
            log.note(&format!(
                "cannot read the server's std{}: {e}",
                stream.tag()
            ));
            0
        }
    }
}

/// Splits raw output into lines at `\n` (a `\r` before it is left for the log to drop).
pub(crate) fn read_lines(mut source: impl Read, stream: LogStream, log: &ServerLog) {
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = match source.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        pending.extend_from_slice(&chunk[..n]);
        let mut start = 0;
        while let Some(pos) = pending[start..].iter().position(|b| *b == b'\n') {
            log.push(stream, &pending[start..start + pos]);
            start += pos + 1;
        }
        pending.drain(..start);
        if pending.len() > MAX_LINE_BYTES {
            if let Some(cr) = pending.iter().rposition(|b| *b == b'\r') {
                pending.drain(..cr);
            }
            if pending.len() > MAX_LINE_BYTES {
                log.push(stream, &pending);
                pending.clear();
            }
        }
    }
    if !pending.is_empty() {
        log.push(stream, &pending);
    }
}

/// Whether a process with this pid exists and has not exited (a zombie counts as gone).
pub fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(raw) = libc::pid_t::try_from(pid) else {
            return false;
        };
        if raw <= 0 {
            return false;
        }
        // SAFETY: signal 0 only checks that the process exists and may be signalled.
        let exists = unsafe { libc::kill(raw, 0) } == 0
            || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        #[cfg(target_os = "linux")]
        if exists {
            return !matches!(proc_state(pid), Some((b'Z' | b'X', _)) | None);
        }
        exists
    }
    #[cfg(windows)]
    {
        windows::process_alive(pid)
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = pid;
        false
    }
}

/// The live members of process group `pgid` (zombies are dead and left out). On Windows, where
/// there are no process groups, the process `pgid` itself if it is alive.
pub fn group_members(pgid: u32) -> Vec<u32> {
    #[cfg(target_os = "linux")]
    {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut members: Vec<u32> = entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                matches!(proc_state(*pid), Some((state, group)) if group == pgid && state != b'Z' && state != b'X')
            })
            .collect();
        members.sort_unstable();
        members
    }
    #[cfg(all(unix, not(target_os = "linux")))]
    {
        // No /proc: ask ps, which every unix has.
        let Ok(out) = Command::new("ps")
            .args(["-A", "-o", "pid=", "-o", "pgid=", "-o", "stat="])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
        else {
            return Vec::new();
        };
        let mut members: Vec<u32> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let pid = fields.next()?.parse::<u32>().ok()?;
                let group = fields.next()?.parse::<u32>().ok()?;
                let zombie = fields.next().is_some_and(|s| s.starts_with('Z'));
                (group == pgid && !zombie).then_some(pid)
            })
            .collect();
        members.sort_unstable();
        members
    }
    #[cfg(not(unix))]
    {
        if process_alive(pgid) {
            vec![pgid]
        } else {
            Vec::new()
        }
    }
}

/// SIGKILL to every process in group `pgid` (Windows: terminates the process `pgid`). A group
/// with no members left is not an error. Refuses our own group and the system's.
pub fn kill_group(pgid: u32) -> Result<(), ProcessError> {
    #[cfg(unix)]
    {
        let raw = libc::pid_t::try_from(pgid).map_err(|_| ProcessError::RefusedGroup { pgid })?;
        // SAFETY: getpgrp has no preconditions.
        let own = unsafe { libc::getpgrp() };
        if raw <= 1 || raw == own {
            return Err(ProcessError::RefusedGroup { pgid });
        }
        // SAFETY: killpg takes plain integers; the group is checked above.
        if unsafe { libc::killpg(raw, libc::SIGKILL) } == 0 {
            return Ok(());
        }
        let source = io::Error::last_os_error();
        if source.raw_os_error() == Some(libc::ESRCH) {
            Ok(())
        } else {
            Err(ProcessError::Signal {
                pid: pgid,
                signal: StopSignal::Kill,
                source,
            })
        }
    }
    #[cfg(windows)]
    {
        if pgid == 0 || pgid == std::process::id() {
            return Err(ProcessError::RefusedGroup { pgid });
        }
        windows::terminate_pid(pgid).map_err(|source| ProcessError::Signal {
            pid: pgid,
            signal: StopSignal::Kill,
            source,
        })
    }
    #[cfg(not(any(unix, windows)))]
    {
        Err(ProcessError::Unsupported {
            signal: StopSignal::Kill,
        })
    }
}

/// State letter and process group of `pid` from `/proc/<pid>/stat`.
#[cfg(target_os = "linux")]
fn proc_state(pid: u32) -> Option<(u8, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself hold spaces and parentheses.
    let (_, after) = stat.rsplit_once(')')?;
    let mut fields = after.split_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    let _ppid = fields.next()?;
    let group = fields.next()?.parse().ok()?;
    Some((state, group))
}

#[cfg(windows)]
mod windows {
    //! The job object that ties the server's process tree to the app, and process checks.

    use std::io;
    use std::os::windows::io::AsRawHandle;
    use std::process::Child;

    use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, STILL_ACTIVE};
    use windows_sys::Win32::System::JobObjects::{
        AssignProcessToJobObject, CreateJobObjectW, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
        JOBOBJECT_EXTENDED_LIMIT_INFORMATION, JobObjectExtendedLimitInformation,
        SetInformationJobObject, TerminateJobObject,
    };
    use windows_sys::Win32::System::Threading::{
        GetExitCodeProcess, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_TERMINATE,
        TerminateProcess,
    };

    /// The exit code of processes ended by a stop.
    const STOPPED_EXIT_CODE: u32 = 1;

    /// A job object whose processes are killed when its last handle closes: on drop, or by the
    /// system when the app dies.
    #[derive(Debug)]
    pub struct Job(HANDLE);

    // SAFETY: a kernel handle may be used and closed from any thread.
    unsafe impl Send for Job {}
    // SAFETY: the job functions used here are thread-safe on a shared handle.
    unsafe impl Sync for Job {}

    impl Job {
        pub fn new() -> io::Result<Job> {
            // SAFETY: null attributes and name make an anonymous job with default security.
            let handle = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
            if handle.is_null() {
                return Err(io::Error::last_os_error());
            }
            let job = Job(handle);
            let mut limits = JOBOBJECT_EXTENDED_LIMIT_INFORMATION::default();
            limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
            // SAFETY: `limits` is a JOBOBJECT_EXTENDED_LIMIT_INFORMATION of the size passed.
            let ok = unsafe {
                SetInformationJobObject(
                    job.0,
                    JobObjectExtendedLimitInformation,
                    (&raw const limits).cast(),
                    size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
                )
            };
            if ok == 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(job)
        }

        pub fn assign(&self, child: &Child) -> io::Result<()> {
            // SAFETY: both handles are open: the job's is ours, the child's is held by `child`.
            let ok = unsafe { AssignProcessToJobObject(self.0, child.as_raw_handle() as HANDLE) };
            if ok == 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        }

        pub fn terminate(&self) -> io::Result<()> {
            // SAFETY: the job handle is open.
            let ok = unsafe { TerminateJobObject(self.0, STOPPED_EXIT_CODE) };
            if ok == 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        }
    }

    impl Drop for Job {
        fn drop(&mut self) {
            // SAFETY: the handle is open and owned by this value alone.
            unsafe { CloseHandle(self.0) };
        }
    }

    pub fn process_alive(pid: u32) -> bool {
        // SAFETY: OpenProcess takes plain values; a null result means no such process (or no
        // right to look at it).
        let handle = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
        if handle.is_null() {
            return false;
        }
        let mut code = 0u32;
        // SAFETY: an open process handle and a valid pointer; the handle is closed once.
        let ok = unsafe { GetExitCodeProcess(handle, &mut code) };
        unsafe { CloseHandle(handle) };
        ok != 0 && code == STILL_ACTIVE as u32
    }

    pub fn terminate_pid(pid: u32) -> io::Result<()> {
        // SAFETY: as in process_alive.
        let handle = unsafe { OpenProcess(PROCESS_TERMINATE, 0, pid) };
        if handle.is_null() {
            // Gone already is what the caller wants.
            return if process_alive(pid) {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            };
        }
        // SAFETY: an open process handle with terminate rights, closed once.
        let ok = unsafe { TerminateProcess(handle, STOPPED_EXIT_CODE) };
        let result = if ok == 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        };
        unsafe { CloseHandle(handle) };
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_info_display() {
        let code = |c: i32| ExitInfo {
            code: Some(c),
            signal: None,
        };
        assert_eq!(code(2).to_string(), "exit code 2");
        assert_eq!(code(0).to_string(), "exit code 0");
        assert_eq!(
            code(0xC000_0005_u32 as i32).to_string(),
            "exit code 0xC0000005 (access violation)"
        );
        assert_eq!(
            code(0xC000_0409_u32 as i32).to_string(),
            "exit code 0xC0000409 (stack buffer overrun or fail-fast exit)"
        );
        assert_eq!(
            code(0xC000_0123_u32 as i32).to_string(),
            "exit code 0xC0000123"
        );
        assert_eq!(code(-1).ntstatus(), Some(0xFFFF_FFFF));
        assert_eq!(code(255).ntstatus(), None);
        assert!(code(0).success() && !code(1).success());
        assert_eq!(
            ExitInfo {
                code: None,
                signal: None
            }
            .to_string(),
            "exit status unknown"
        );
    }

    #[cfg(unix)]
    #[test]
    fn signal_exits_are_named() {
        let signal = |s: i32| ExitInfo {
            code: None,
            signal: Some(s),
        };
        assert_eq!(signal(9).to_string(), "killed by signal 9 (SIGKILL)");
        assert_eq!(signal(15).to_string(), "killed by signal 15 (SIGTERM)");
        assert_eq!(
            signal(libc::SIGABRT).to_string(),
            "killed by signal 6 (SIGABRT)"
        );
        assert_eq!(signal(64).to_string(), "killed by signal 64");
    }

    #[test]
    fn lines_are_split_and_progress_bars_bounded() {
        let log = ServerLog::with_capacity(100);
        let mut input = b"first\nsecond\r\nno newline at end".to_vec();
        read_lines(&input[..], LogStream::Stdout, &log);
        let texts: Vec<String> = log.snapshot().into_iter().map(|l| l.text).collect();
        assert_eq!(texts, ["first", "second", "no newline at end"]);

        // A progress bar far longer than a line may be, without a newline: memory stays bounded
        // and its latest state survives.
        let log = ServerLog::with_capacity(100);
        input.clear();
        for i in 0..20_000 {
            input.extend_from_slice(format!("\r{i:>5}/20000 steps").as_bytes());
        }
        read_lines(&input[..], LogStream::Stderr, &log);
        let last = log.tail(1);
        assert_eq!(last[0].text, "19999/20000 steps");
        assert!(log.len() <= 3, "{}", log.len());
    }
}
