//! The managed server's life, driven through the real launch path against the stand-in ComfyUI
//! (tests/standin: a real child process speaking the recorded protocol): start and ready, boot
//! phases, slow and silent boots, an early exit explained, a busy port skipped, the whole process
//! tree gone after a stop, a left-over server found, restarts after crashes.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::watch;
use wan_pilot::comfy::install::{self, Install, SupportedFlags};
use wan_pilot::comfy::process::process_alive;
use wan_pilot::comfy::server::{
    ManagedServer, RestartPolicy, ServerDirs, ServerSettings, ServerState, ServerTimings,
    StartError, Supervisor, SupervisorCommand, SupervisorConfig, find_leftovers,
};

struct Fixture {
    dir: PathBuf,
    install: Install,
    flags: SupportedFlags,
    dirs: ServerDirs,
}

fn fixture(name: &str, scenario: serde_json::Value) -> Fixture {
    let dir = common::standin::temp_dir(&format!("lifecycle-{name}"));
    let root = common::standin::standin_install(&dir, scenario);
    let install = install::validate(&root).unwrap();
    let flags = install::read_help(&install).unwrap();
    let dirs = ServerDirs::in_data_dir(&dir.join("data"));
    Fixture {
        dir,
        install,
        flags,
        dirs,
    }
}

fn start(
    rt: &tokio::runtime::Runtime,
    fx: &Fixture,
    settings: &ServerSettings,
    state: &watch::Sender<ServerState>,
) -> Result<ManagedServer, StartError> {
    rt.block_on(ManagedServer::start(
        &fx.install,
        &fx.flags,
        settings,
        &fx.dirs,
        state,
        None,
    ))
}

fn quick_settings() -> ServerSettings {
    ServerSettings {
        // Every test starts at the same port on purpose: parallel starts race for it, and
        // losing the race must end in a start on another port, not an error.
        preferred_port: free_port_hint(),
        timings: ServerTimings {
            stalled_after: Duration::from_secs(3),
            ready_poll: Duration::from_millis(100),
            health_interval: Duration::from_millis(300),
            ..ServerTimings::default()
        },
        ..ServerSettings::default()
    }
}

/// A port region per test process, so parallel tests rarely probe the same ports.
fn free_port_hint() -> u16 {
    20_000 + (std::process::id() % 20_000) as u16
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn read_pid(path: &Path, within: Duration) -> u32 {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "{} never written",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn starts_follows_the_boot_and_stops_without_leftovers() {
    let fx = fixture("normal", json!({}));
    let rt = runtime();
    let (state, mut states) = watch::channel(ServerState::Stopped);
    let seen = std::thread::scope(|scope| {
        let watcher = scope.spawn(move || {
            let mut seen = Vec::new();
            let rt = runtime();
            rt.block_on(async {
                while states.changed().await.is_ok() {
                    let now = states.borrow().clone();
                    let ready = matches!(now, ServerState::Ready { .. });
                    seen.push(now);
                    if ready {
                        break;
                    }
                }
            });
            seen
        });
        let server = start(&rt, &fx, &quick_settings(), &state).unwrap();
        let seen = watcher.join().unwrap();
        let pid = server.pid();
        let port = server.port();
        assert!(process_alive(pid));
        let lock = fx.dirs.locks.join(format!("{}.json", server.session_id()));
        assert!(lock.exists(), "lock file written");
        assert!(server.log_path().is_some_and(|p| p.exists()));
        assert!(
            server
                .log()
                .tail(200)
                .iter()
                .any(|l| l.text.contains("To see the GUI go to")),
            "boot log captured"
        );
        let report = rt.block_on(server.stop());
        assert!(report.is_clean(), "{report:?}");
        assert!(!process_alive(pid));
        assert!(TcpListener::bind(("127.0.0.1", port)).is_ok());
        assert!(!lock.exists(), "lock file removed after a clean stop");
        seen
    });
    assert!(
        seen.iter()
            .any(|s| matches!(s, ServerState::Starting { phase: Some(_), .. })),
        "boot phases reported: {seen:?}"
    );
    assert!(matches!(seen.last(), Some(ServerState::Ready { .. })));
    let _ = std::fs::remove_dir_all(&fx.dir);
}

#[test]
fn a_slow_boot_that_keeps_printing_is_not_stalled() {
    // Prints for longer than `stalled_after` before it listens.
    let fx = fixture("slow", json!({"slow_boot_s": 5.0}));
    let rt = runtime();
    let (state, _) = watch::channel(ServerState::Stopped);
    let started = Instant::now();
    let server = start(&rt, &fx, &quick_settings(), &state).unwrap();
    assert!(started.elapsed() >= Duration::from_secs(5));
    assert!(rt.block_on(server.stop()).is_clean());
    let _ = std::fs::remove_dir_all(&fx.dir);
}

#[test]
fn a_silent_boot_is_reported_stalled_and_stopped() {
    let fx = fixture("silent", json!({"silent_boot": true}));
    let rt = runtime();
    let (state, states) = watch::channel(ServerState::Stopped);
    let error = start(&rt, &fx, &quick_settings(), &state).err().unwrap();
    assert!(matches!(error, StartError::Stalled { .. }), "{error}");
    assert!(error.to_string().contains("did not open its port"));
    assert!(!error.last_lines().is_empty(), "the last lines come along");
    assert!(matches!(&*states.borrow(), ServerState::Stalled { .. }));
    let pid = read_pid(&fx.install.root.join("standin.pid"), Duration::from_secs(1));
    assert!(
        common::standin::gone_within(pid, Duration::from_secs(2)),
        "stalled server stopped"
    );
    let _ = std::fs::remove_dir_all(&fx.dir);
}

#[test]
fn an_early_exit_is_explained_in_one_sentence() {
    let fx = fixture("early", json!({}));
    let rt = runtime();
    let (state, _) = watch::channel(ServerState::Stopped);
    // A flag it accepts with a value it does not: argparse exits 2 at once.
    let settings = ServerSettings {
        extra_args: vec!["--preview-size".into(), "large".into()],
        ..quick_settings()
    };
    let error = start(&rt, &fx, &settings, &state).err().unwrap();
    match &error {
        StartError::ExitedEarly {
            explanation,
            last_lines,
            ..
        } => {
            assert!(explanation.contains("--preview-size"), "{explanation}");
            assert!(
                last_lines.iter().any(|l| l.contains("invalid int value")),
                "{last_lines:?}"
            );
        }
        other => panic!("expected an early exit, got {other}"),
    }
    let _ = std::fs::remove_dir_all(&fx.dir);
}

/// A program that listens on a port and counts the HTTP requests it gets.
fn squatter() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&requests);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let counted = Arc::clone(&counted);
            std::thread::spawn(move || {
                let mut stream = stream;
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buffer = [0u8; 1024];
                if let Ok(n) = stream.read(&mut buffer)
                    && n > 0
                {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let body = br#"{"system":{"argv":["someone-else.py"]},"devices":[]}"#;
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(body);
                }
            });
        }
    });
    (port, requests)
}

#[test]
fn a_port_held_by_another_program_is_skipped_and_never_called() {
    let (held, requests) = squatter();
    let fx = fixture("port", json!({}));
    let rt = runtime();
    let (state, _) = watch::channel(ServerState::Stopped);
    let settings = ServerSettings {
        preferred_port: held,
        ..quick_settings()
    };
    let server = start(&rt, &fx, &settings, &state).unwrap();
    assert_ne!(server.port(), held);
    assert_eq!(
        requests.load(Ordering::SeqCst),
        0,
        "the other program got no request"
    );
    assert!(rt.block_on(server.stop()).is_clean());
    let _ = std::fs::remove_dir_all(&fx.dir);
}

#[test]
fn a_grandchild_dies_with_the_server() {
    let fx = fixture("grandchild", json!({"grandchild": true}));
    let rt = runtime();
    let (state, _) = watch::channel(ServerState::Stopped);
    let server = start(&rt, &fx, &quick_settings(), &state).unwrap();
    let grandchild = read_pid(
        &fx.install.root.join("grandchild.pid"),
        Duration::from_secs(5),
    );
    assert!(process_alive(grandchild));
    let report = rt.block_on(server.stop());
    assert!(report.is_clean(), "{report:?}");
    assert!(
        common::standin::gone_within(grandchild, Duration::from_secs(2)),
        "grandchild {grandchild} left"
    );
    let _ = std::fs::remove_dir_all(&fx.dir);
}

#[test]
fn a_server_whose_app_died_is_found_and_stopped_at_the_next_start() {
    let fx = fixture("leftover", json!({}));
    let rt = runtime();
    let (state, _) = watch::channel(ServerState::Stopped);
    let server = start(&rt, &fx, &quick_settings(), &state).unwrap();
    let pid = server.pid();
    // Pretend the app that started it died: its lock names a pid that no longer runs.
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    let lock = fx.dirs.locks.join(format!("{}.json", server.session_id()));
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&lock).unwrap()).unwrap();
    record["app_pid"] = json!(dead_pid);
    std::fs::write(&lock, serde_json::to_vec(&record).unwrap()).unwrap();

    let leftovers = find_leftovers(&fx.dirs.locks);
    assert_eq!(leftovers.len(), 1);
    assert_eq!(leftovers[0].record.server_pid, pid);
    assert!(rt.block_on(leftovers[0].stop(Duration::from_secs(5))));
    assert!(common::standin::gone_within(pid, Duration::from_secs(2)));
    assert!(!lock.exists());
    assert!(find_leftovers(&fx.dirs.locks).is_empty());
    let _ = rt.block_on(server.stop());
    let _ = std::fs::remove_dir_all(&fx.dir);
}

#[test]
fn a_crashing_server_is_restarted_three_times_then_left_down() {
    let fx = fixture("restarts", json!({"exit_after_boot_s": 1.0}));
    let rt = runtime();
    let config = SupervisorConfig {
        install: fx.install.clone(),
        flags: fx.flags.clone(),
        settings: quick_settings(),
        dirs: fx.dirs.clone(),
        restart: RestartPolicy::new(3, Duration::from_secs(600), Duration::from_millis(300)),
    };
    let states = rt.block_on(async {
        let supervisor = Supervisor::spawn(config);
        let mut state = supervisor.state();
        supervisor.send(SupervisorCommand::Start);
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let changed = tokio::time::timeout_at(deadline, state.changed()).await;
            assert!(changed.is_ok(), "timed out; states so far: {seen:?}");
            let now = state.borrow().clone();
            let done = matches!(&now, ServerState::Crashed { explanation, .. } if explanation.contains("not restarted again"));
            seen.push(now);
            if done {
                break;
            }
        }
        supervisor.shutdown().await;
        seen
    });
    let readies = states
        .iter()
        .filter(|s| matches!(s, ServerState::Ready { .. }))
        .count();
    let restarts: Vec<u32> = states
        .iter()
        .filter_map(|s| match s {
            ServerState::Restarting { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(restarts, vec![1, 2, 3], "{states:?}");
    assert_eq!(readies, 4, "the first start and three restarts: {states:?}");
    let _ = std::fs::remove_dir_all(&fx.dir);
}
