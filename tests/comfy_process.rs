//! The server as a real child process: `sh` scripts stand in for ComfyUI, so these test the
//! capture of its output, the stop ladder, its process group, its exit, and that it dies with the
//! app (the test binary re-runs itself as the "app" and is SIGKILLed).
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wan_pilot::comfy::launch::LaunchCommand;
use wan_pilot::comfy::logs::{LogFiles, LogLine, LogStream, ServerLog, explain_exit};
use wan_pilot::comfy::process::{
    ExitInfo, ProcessError, ServerProcess, StopHow, StopReport, StopTimings, group_members,
    kill_group, process_alive,
};

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wan-pilot-process-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A launch command with nothing dropped: the tests build their commands by hand, not through
/// `launch_command`.
fn launch(
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    working_dir: PathBuf,
) -> LaunchCommand {
    LaunchCommand {
        program,
        args,
        env,
        working_dir,
        dropped: vec![],
    }
}

/// A launch command that runs `script` with `sh` in `dir`.
fn sh(dir: &Path, script: &str) -> LaunchCommand {
    let path = dir.join("server.sh");
    std::fs::write(&path, script).unwrap();
    launch(
        PathBuf::from("/bin/sh"),
        vec![path.display().to_string()],
        vec![("WAN_PILOT_TEST_VALUE".into(), "from env".into())],
        dir.to_path_buf(),
    )
}

/// Starts `script` in a fresh `tag` folder and waits for its "ready" line, so its traps are set.
fn spawn_ready(tag: &str, script: &str) -> (ServerProcess, ServerLog) {
    let dir = temp_dir(tag);
    let log = ServerLog::new();
    let server = ServerProcess::spawn(&sh(&dir, script), log.clone()).unwrap();
    wait_for_line(&log, "ready");
    (server, log)
}

/// A normal exit with `code`.
fn exit_code(code: i32) -> ExitInfo {
    ExitInfo {
        code: Some(code),
        signal: None,
    }
}

/// An end by `signal`.
fn killed_by(signal: i32) -> ExitInfo {
    ExitInfo {
        code: None,
        signal: Some(signal),
    }
}

/// Stops `server` with `timings` and checks the ladder stopped at `how`, the server ended as
/// `exit`, and nothing of its group was left.
fn stop_and_check(
    server: &ServerProcess,
    timings: StopTimings,
    how: StopHow,
    exit: ExitInfo,
) -> StopReport {
    let report = server.stop(timings);
    assert_eq!(report.how, how, "{report:?}");
    assert_eq!(report.exit, Some(exit));
    assert!(report.leftover_pids.is_empty(), "{report:?}");
    report
}

/// The exit the server's watch publishes, within 10 s.
async fn watched_exit(server: &ServerProcess) -> ExitInfo {
    let mut watch = server.exit_watch();
    tokio::time::timeout(Duration::from_secs(10), watch.wait_for(|e| e.is_some()))
        .await
        .expect("exit within 10 s")
        .expect("watch open")
        .expect("exit set")
}

/// Polls until `test` holds or `limit` passes; true if it held.
fn within(limit: Duration, mut test: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if test() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn texts(lines: &[LogLine]) -> Vec<&str> {
    lines.iter().map(|l| l.text.as_str()).collect()
}

/// Waits until the server printed `marker` (its signal handlers are in place by then).
fn wait_for_line(log: &ServerLog, marker: &str) {
    assert!(
        within(Duration::from_secs(10), || log
            .snapshot()
            .iter()
            .any(|l| l.text == marker)),
        "no {marker:?} in {:?}",
        texts(&log.snapshot())
    );
}

fn short_timings() -> StopTimings {
    StopTimings {
        interrupt_wait: Duration::from_millis(1500),
        terminate_wait: Duration::from_millis(1500),
        kill_wait: Duration::from_secs(5),
    }
}

#[test]
fn captures_both_streams_lossy_clean_and_timestamped() {
    let dir = temp_dir("capture");
    let files = LogFiles::new(dir.join("logs"));
    let (path, file) = files.open_session(SystemTime::now()).unwrap();
    let log = ServerLog::with_capacity(100);
    log.attach_file(file);
    let cmd = sh(
        &dir,
        r#"printf 'plain out\n'
printf 'colour \033[1;32mgreen\033[0m text\n'
printf 'bad \377\376 bytes\n'
printf 'err line\n' >&2
printf 'windows line\r\n' >&2
printf '\r 10%%|#   |\r 50%%|##  |\r100%%|####|\n' >&2
printf '%s\n' "$WAN_PILOT_TEST_VALUE"
pwd -P
printf 'no newline at the end'
exit 0
"#,
    );
    let server = ServerProcess::spawn(&cmd, log.clone()).unwrap();
    let exit = server.wait_timeout(Duration::from_secs(10)).expect("exits");
    assert_eq!(exit, exit_code(0));

    let lines = log.snapshot();
    let of = |stream: LogStream| -> Vec<&str> {
        lines
            .iter()
            .filter(|l| l.stream == stream)
            .map(|l| l.text.as_str())
            .collect()
    };
    assert_eq!(
        of(LogStream::Stdout),
        [
            "plain out",
            "colour green text",
            "bad \u{fffd}\u{fffd} bytes",
            "from env",
            &dir.canonicalize().unwrap().display().to_string(),
            "no newline at the end",
        ]
    );
    assert_eq!(
        of(LogStream::Stderr),
        ["err line", "windows line", "100%|####|"]
    );
    // Each stream's lines arrive in order, so their times never go back.
    for stream in [LogStream::Stdout, LogStream::Stderr] {
        let times: Vec<u64> = lines
            .iter()
            .filter(|l| l.stream == stream)
            .map(|l| l.at_ms)
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    }

    // The session file has every line with its stream, plus our notes.
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(written.starts_with("# wan-pilot server log, session started "));
    assert!(written.contains(&format!("# spawned pid {}: /bin/sh ", server.pid())));
    assert!(written.contains(" out colour green text\n"), "{written}");
    assert!(written.contains(" err 100%|####|\n"), "{written}");
    assert!(
        written.contains(" out bad \u{fffd}\u{fffd} bytes\n"),
        "{written}"
    );
    assert!(written.contains("# exited: exit code 0\n"), "{written}");
    assert!(!written.contains('\u{1b}'));
    assert_eq!(log.file_error(), None);
}

#[test]
fn ring_buffer_keeps_only_the_newest_lines() {
    let dir = temp_dir("ring");
    let log = ServerLog::with_capacity(100);
    let cmd = sh(
        &dir,
        "i=1\nwhile [ $i -le 1000 ]; do echo \"line $i\"; i=$((i+1)); done\n",
    );
    let server = ServerProcess::spawn(&cmd, log.clone()).unwrap();
    server.wait_timeout(Duration::from_secs(20)).expect("exits");
    assert_eq!(log.len(), 100);
    let all = log.snapshot();
    assert_eq!(all.first().map(|l| l.text.as_str()), Some("line 901"));
    assert_eq!(all.last().map(|l| l.text.as_str()), Some("line 1000"));
    let (since, next) = log.lines_since(990);
    assert_eq!(
        texts(&since),
        (991..=1000)
            .map(|i| format!("line {i}"))
            .collect::<Vec<_>>()
    );
    assert_eq!(next, 1000);
    // A reader far behind gets what is left, not lines that were dropped.
    let (behind, _) = log.lines_since(3);
    assert_eq!(behind.len(), 100);
}

#[test]
fn log_rotation_keeps_the_last_ten_sessions() {
    let dir = temp_dir("rotation");
    let files = LogFiles::new(&dir);
    // Something else in the folder is left alone.
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    let hour = Duration::from_secs(3600);
    let start = UNIX_EPOCH + Duration::from_secs(1_778_312_125);
    let mut opened = Vec::new();
    for i in 0..12u32 {
        let (path, _) = files.open_session(start + hour * i).unwrap();
        opened.push(path);
    }
    let kept = files.sessions();
    assert_eq!(kept, opened[2..].to_vec());
    assert!(!opened[0].exists() && !opened[1].exists());
    assert!(dir.join("notes.txt").exists());
    let first_kept = kept[0].file_name().unwrap().to_str().unwrap();
    assert_eq!(first_kept, "server-20260509T093525.000Z.log");

    // Two sessions in the same millisecond get two files.
    let (a, _) = files.open_session(start + hour * 20).unwrap();
    let (b, _) = files.open_session(start + hour * 20).unwrap();
    assert_ne!(a, b);
    assert_eq!(files.sessions().len(), 10);

    let fewer = LogFiles::with_keep(&dir, 2);
    let (newest, _) = fewer.open_session(start + hour * 30).unwrap();
    assert_eq!(fewer.sessions(), [b, newest]);
}

#[test]
fn stop_interrupts_a_server_that_exits_on_sigint() {
    let (server, log) = spawn_ready(
        "sigint",
        "trap 'echo \"Stopped server\"; exit 0' INT\necho ready\nwhile :; do sleep 0.05; done\n",
    );
    let report = stop_and_check(&server, short_timings(), StopHow::Interrupted, exit_code(0));
    assert!(group_members(server.pid()).is_empty());
    let explained = explain_exit(&report.exit.unwrap(), &log.tail(50));
    assert!(explained.contains("interrupt"), "{explained}");
    // Signals after the exit are refused: the pid may belong to another process by now.
    assert!(matches!(
        server.signal(wan_pilot::comfy::process::StopSignal::Interrupt),
        Err(ProcessError::NotRunning { .. })
    ));
}

#[test]
fn stop_terminates_a_server_that_ignores_sigint() {
    let (server, _log) = spawn_ready(
        "sigterm",
        "trap '' INT\necho ready\nwhile :; do sleep 0.05; done\n",
    );
    let report = stop_and_check(
        &server,
        short_timings(),
        StopHow::Terminated,
        killed_by(libc::SIGTERM),
    );
    assert!(report.took_ms >= 1500, "{report:?}");
}

#[test]
fn stop_kills_a_server_that_ignores_sigint_and_sigterm() {
    let (server, _log) = spawn_ready(
        "sigkill",
        "trap '' INT TERM\necho ready\nwhile :; do sleep 0.05; done\n",
    );
    stop_and_check(
        &server,
        short_timings(),
        StopHow::Killed,
        killed_by(libc::SIGKILL),
    );
    assert!(group_members(server.pid()).is_empty());
}

#[test]
fn stop_leaves_no_grandchild_behind() {
    // The grandchild keeps the output pipes open and (as a background job of a non-interactive
    // shell) ignores SIGINT: only the group kill can end it.
    let (server, log) = spawn_ready(
        "grandchild",
        "sleep 300 &\necho \"grandchild $!\"\necho ready\nwait\n",
    );
    let grandchild: u32 = log
        .snapshot()
        .iter()
        .find_map(|l| l.text.strip_prefix("grandchild ")?.parse().ok())
        .expect("grandchild pid");
    assert!(process_alive(grandchild));
    let members = group_members(server.pid());
    assert!(
        members.contains(&server.pid()) && members.contains(&grandchild),
        "{members:?}"
    );

    stop_and_check(
        &server,
        short_timings(),
        StopHow::Interrupted,
        killed_by(libc::SIGINT),
    );
    assert!(!process_alive(grandchild));
    assert!(group_members(server.pid()).is_empty());
}

#[test]
fn stop_of_an_exited_server_reports_it() {
    let dir = temp_dir("exited");
    let server = ServerProcess::spawn(&sh(&dir, "exit 0\n"), ServerLog::new()).unwrap();
    server.wait_timeout(Duration::from_secs(10)).expect("exits");
    let report = server.stop(short_timings());
    assert_eq!(report.how, StopHow::AlreadyExited);
    assert_eq!(report.exit, Some(exit_code(0)));
}

#[tokio::test]
async fn exit_watch_reports_an_exit_code() {
    let dir = temp_dir("exit3");
    let log = ServerLog::new();
    let cmd = sh(
        &dir,
        "echo 'Traceback (most recent call last):' >&2\necho 'ValueError: bad' >&2\nexit 3\n",
    );
    let server = ServerProcess::spawn(&cmd, log.clone()).unwrap();
    let exit = watched_exit(&server).await;
    assert_eq!(exit, exit_code(3));
    assert_eq!(server.try_exit(), Some(exit));
    // The exit is published after the output was read to its end.
    let explained = explain_exit(&exit, &log.tail(50));
    assert_eq!(
        explained,
        "ComfyUI stopped with a Python error (exit code 3): ValueError: bad; the server log has \
         the full traceback."
    );
}

#[tokio::test]
async fn exit_watch_reports_a_signal() {
    let dir = temp_dir("signal");
    let cmd = sh(&dir, "kill -SEGV $$\nsleep 5\n");
    let server = ServerProcess::spawn(&cmd, ServerLog::new()).unwrap();
    let exit = watched_exit(&server).await;
    assert_eq!(exit, killed_by(libc::SIGSEGV));
    assert_eq!(
        exit.to_string(),
        format!("killed by signal {} (SIGSEGV)", libc::SIGSEGV)
    );
}

#[test]
fn a_missing_program_is_a_spawn_error() {
    let dir = temp_dir("missing");
    let cmd = launch(dir.join("no-such-python"), vec![], vec![], dir.clone());
    let err = ServerProcess::spawn(&cmd, ServerLog::new()).unwrap_err();
    assert!(matches!(err, ProcessError::Spawn { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-python"), "{err}");
}

#[test]
fn dropping_the_handle_kills_the_server() {
    let dir = temp_dir("drop");
    let log = ServerLog::new();
    let server =
        ServerProcess::spawn(&sh(&dir, "echo ready\nexec sleep 60\n"), log.clone()).unwrap();
    wait_for_line(&log, "ready");
    let pid = server.pid();
    assert!(process_alive(pid));
    drop(server);
    assert!(within(Duration::from_secs(2), || !process_alive(pid)));
}

/// Linux sends the parent-death signal when the thread that forked exits, not the process:
/// a server spawned from a short-lived thread must keep running.
#[test]
fn server_outlives_the_thread_that_spawned_it() {
    let dir = temp_dir("thread");
    let cmd = sh(&dir, "exec sleep 60\n");
    let server = std::thread::spawn(move || ServerProcess::spawn(&cmd, ServerLog::new()).unwrap())
        .join()
        .unwrap();
    assert_eq!(server.wait_timeout(Duration::from_millis(500)), None);
    assert!(process_alive(server.pid()));
    let report = server.stop(short_timings());
    assert_eq!(report.how, StopHow::Interrupted);
}

#[test]
fn group_helpers_refuse_our_own_group() {
    // SAFETY: getpgrp has no preconditions.
    let own = unsafe { libc::getpgrp() } as u32;
    assert!(matches!(
        kill_group(own),
        Err(ProcessError::RefusedGroup { .. })
    ));
    assert!(matches!(
        kill_group(1),
        Err(ProcessError::RefusedGroup { .. })
    ));
    assert!(matches!(
        kill_group(0),
        Err(ProcessError::RefusedGroup { .. })
    ));
    assert!(process_alive(std::process::id()));
    assert!(!process_alive(0));
    assert!(group_members(own).contains(&std::process::id()));
}

/// The app is SIGKILLed: nothing of it runs any more, yet its server must go within 2 s. This test
/// re-runs its own binary as the "app" (marked by an environment variable); that process starts a
/// server, prints its pid and waits to be killed.
#[cfg(target_os = "linux")]
#[test]
fn server_dies_with_the_app() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::sync::mpsc;

    const PARENT_MODE: &str = "WAN_PILOT_TEST_PROCESS_PARENT";
    if std::env::var_os(PARENT_MODE).is_some() {
        let dir = temp_dir("app");
        let cmd = launch(PathBuf::from("sleep"), vec!["120".into()], vec![], dir);
        let server = ServerProcess::spawn(&cmd, ServerLog::new()).unwrap();
        println!("server pid {}", server.pid());
        // Waits for the SIGKILL (or gives up after a while if the outer test died).
        let _ = server.wait_timeout(Duration::from_secs(60));
        return;
    }

    let mut app = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "server_dies_with_the_app",
            "--nocapture",
            "--include-ignored",
        ])
        .env(PARENT_MODE, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = app.stdout.take().unwrap();
    let (pid_tx, pid_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(pid) = line
                .strip_prefix("server pid ")
                .and_then(|p| p.trim().parse::<u32>().ok())
            {
                let _ = pid_tx.send(pid);
            }
        }
    });
    let server_pid = pid_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the app printed the server pid");
    assert!(process_alive(server_pid));
    app.kill().unwrap(); // SIGKILL: the app gets no chance to clean up.
    app.wait().unwrap();
    let gone = within(Duration::from_secs(2), || !process_alive(server_pid));
    if !gone {
        // Do not leave it running when the test fails.
        // SAFETY: a plain kill of the pid we started.
        unsafe { libc::kill(server_pid as libc::pid_t, libc::SIGKILL) };
    }
    assert!(gone, "server {server_pid} outlived the app");
}

/// The real ComfyUI: boots through every phase on the CPU and stops on SIGINT with exit code 0.
/// Ignored by default; run with
/// `WAN_PILOT_COMFYUI_DIR=/path/to/ComfyUI cargo test --test comfy_process -- --ignored`
/// (the folder needs its Python in `.venv`). It starts its own server on a free port.
#[test]
#[ignore]
fn real_comfyui_boots_and_stops_on_sigint() {
    use wan_pilot::comfy::launch::free_port;
    use wan_pilot::comfy::logs::BootPhase;

    let root =
        PathBuf::from(std::env::var("WAN_PILOT_COMFYUI_DIR").expect("WAN_PILOT_COMFYUI_DIR"));
    let dir = temp_dir("real");
    std::fs::create_dir_all(dir.join("out")).unwrap();
    std::fs::create_dir_all(dir.join("user")).unwrap();
    let port = free_port(8390, 50).expect("a free port");
    let arg = |p: PathBuf| p.display().to_string();
    let cmd = launch(
        root.join(".venv/bin/python"),
        vec![
            "main.py".into(),
            "--cpu".into(),
            "--listen".into(),
            "127.0.0.1".into(),
            "--port".into(),
            port.to_string(),
            "--disable-auto-launch".into(),
            "--temp-directory".into(),
            arg(dir.join("temp")),
            "--output-directory".into(),
            arg(dir.join("out")),
            "--user-directory".into(),
            arg(dir.join("user")),
        ],
        vec![
            ("PYTHONUNBUFFERED".into(), "1".into()),
            ("PYTHONIOENCODING".into(), "utf-8".into()),
        ],
        root,
    );
    let log = ServerLog::new();
    let server = ServerProcess::spawn(&cmd, log.clone()).unwrap();
    let mut phases = vec![BootPhase::Starting];
    let mut seen = 0;
    let listening = within(Duration::from_secs(180), || {
        let (lines, next) = log.lines_since(seen);
        seen = next;
        for line in lines {
            let phase = phases
                .last()
                .copied()
                .unwrap_or(BootPhase::Starting)
                .after(&line.text);
            if Some(&phase) != phases.last() {
                phases.push(phase);
            }
        }
        phases.last() == Some(&BootPhase::Listening) || server.try_exit().is_some()
    });
    assert!(
        listening,
        "no GUI line; last lines {:?}",
        texts(&log.tail(20))
    );
    assert_eq!(
        phases.last(),
        Some(&BootPhase::Listening),
        "{:?}",
        texts(&log.tail(20))
    );
    assert!(phases.len() >= 5, "{phases:?}");
    let report = stop_and_check(
        &server,
        StopTimings::default(),
        StopHow::Interrupted,
        exit_code(0),
    );
    let explained = explain_exit(&report.exit.unwrap(), &log.tail(50));
    assert!(explained.contains("interrupt"), "{explained}");
    eprintln!("phases {phases:?}; stop took {} ms", report.took_ms);
}
