//! The stand-in ComfyUI (`tests/standin/ComfyUI`, a Python stdlib imitation of ComfyUI 0.8.0
//! that replays the recordings in `tests/data/comfy-protocol`): copy it into a test's own
//! temporary folder with a scenario, start it, wait for its port, stop it.
//!
//! Each test gets its own copy because the stand-in keeps files beside `main.py`
//! (`standin-scenario.json`, `standin.pid`, `grandchild.pid`, `standin-state.json`, `output/`),
//! so tests can run in parallel.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Files the stand-in writes at run time; never copied from the source folder.
const RUNTIME_FILES: &[&str] = &[
    "standin-scenario.json",
    "standin.pid",
    "grandchild.pid",
    "standin-state.json",
    "standin-state.json.tmp",
    "output",
    "input",
    "temp",
    "user",
    "__pycache__",
];

/// The checkout (where the recordings and `assets/node_defs.json` live).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The stand-in install folder in the checkout.
pub fn standin_source() -> PathBuf {
    repo_root().join("tests").join("standin").join("ComfyUI")
}

/// Whether process `pid` has ended (or is a zombie) within `within`.
pub fn gone_within(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while wan_pilot::comfy::process::process_alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// A new empty folder under the system temp dir, unique per process and call.
pub fn temp_dir(tag: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("wan-pilot-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}

/// Copies the stand-in into `tmp/ComfyUI`, writes `scenario` (a JSON object; `{}` for a
/// well-behaved server) as its `standin-scenario.json` with `repo_root` added so the copy finds
/// the recordings, and returns the install root (the folder holding `main.py`).
pub fn standin_install(tmp: &Path, scenario: Value) -> PathBuf {
    let root = tmp.join("ComfyUI");
    copy_tree(&standin_source(), &root);
    let mut scenario = match scenario {
        Value::Object(map) => map,
        Value::Null => serde_json::Map::new(),
        other => panic!("a stand-in scenario is a JSON object, not {other}"),
    };
    scenario
        .entry("repo_root")
        .or_insert_with(|| Value::String(repo_root().display().to_string()));
    std::fs::write(
        root.join("standin-scenario.json"),
        serde_json::to_string_pretty(&Value::Object(scenario)).expect("scenario JSON"),
    )
    .expect("write standin-scenario.json");
    root
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the install copy");
    for entry in std::fs::read_dir(from).expect("read the stand-in folder") {
        let entry = entry.expect("stand-in folder entry");
        let name = entry.file_name();
        if RUNTIME_FILES.iter().any(|skip| name == *skip) {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy_tree(&path, &to.join(&name));
        } else {
            std::fs::copy(&path, to.join(&name)).expect("copy a stand-in file");
        }
    }
}

/// The Python that runs the stand-in: `python3` (else `python`) from `PATH`, as install
/// validation finds it for a folder without a venv.
pub fn standin_python() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["python3", "python"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from("python3")
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A pid the stand-in wrote beside `main.py` (`standin.pid`, `grandchild.pid`).
pub fn read_pid(root: &Path, file: &str) -> Option<u32> {
    std::fs::read_to_string(root.join(file))
        .ok()
        .and_then(|text| text.trim().parse().ok())
}

/// The arguments wan-pilot passes (without `--preview-method`, which the recordings' server
/// did not have either): listen on loopback at `port`, outputs in `output_dir`.
pub fn standin_args(root: &Path, port: u16, output_dir: &Path) -> Vec<String> {
    vec![
        root.join("main.py").display().to_string(),
        "--listen".into(),
        "127.0.0.1".into(),
        "--port".into(),
        port.to_string(),
        "--disable-auto-launch".into(),
        "--output-directory".into(),
        output_dir.display().to_string(),
    ]
}

/// A running stand-in, killed (with its process group) when dropped.
pub struct Standin {
    pub root: PathBuf,
    pub port: u16,
    pub output_dir: PathBuf,
    pub stderr_file: PathBuf,
    pub child: Child,
    /// A folder removed after the process is gone (the test's temp dir), if set.
    pub remove_on_drop: Option<PathBuf>,
}

impl Standin {
    /// Starts `root/main.py` with [`standin_args`] plus `extra`, in its own process group,
    /// stderr to `<root>/../stderr.txt`.
    pub fn start(root: &Path, port: u16, extra: &[&str]) -> Standin {
        let output_dir = root.parent().unwrap_or(root).join("output");
        let stderr_file = root.parent().unwrap_or(root).join("stderr.txt");
        let mut command = Command::new(standin_python());
        command
            .args(standin_args(root, port, &output_dir))
            .args(extra)
            .current_dir(root)
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONIOENCODING", "utf-8")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_file).expect("stderr file"));
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            command.process_group(0);
        }
        let child = command.spawn().expect("spawn the stand-in");
        Standin {
            root: root.to_path_buf(),
            port,
            output_dir,
            stderr_file,
            child,
            remove_on_drop: None,
        }
    }

    /// Waits until the port accepts connections (true) or the process exits / time runs out.
    pub fn wait_ready(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let address = SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port);
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&address.into(), Duration::from_millis(200)).is_ok() {
                return true;
            }
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        false
    }

    /// Waits for the process to exit within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal to the stand-in itself (not its group).
    #[cfg(unix)]
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    /// What it printed to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_file).unwrap_or_default()
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        #[cfg(unix)]
        // SAFETY: the group was created for this child (process_group(0)); killing it also
        // ends a grandchild it started.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.remove_on_drop {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
