//! How wan-pilot starts a ComfyUI server: a free loopback port, and the exact command — the
//! flags this ComfyUI accepts (any other is dropped and reported, never passed), our output
//! folder, the policy's flags, the user's extra arguments, and the environment that keeps
//! compiled kernels across restarts. The output folder carries this session's id, which is the
//! marker the readiness check looks for in `/system_stats` `argv`, so another program on the
//! port is never mistaken for our server.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::install::{Install, PythonSource, SupportedFlags};

/// What the launch needs beyond the install.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchOptions {
    pub port: u16,
    /// Where the server writes outputs; its path holds `session_id` (the readiness marker).
    pub output_dir: PathBuf,
    pub session_id: String,
    /// `--reserve-vram` in GiB, as the budget's policy asks.
    pub reserve_vram_gib: Option<f64>,
    /// CUDA-graph compile modes need PyTorch's native allocator.
    pub disable_cuda_malloc: bool,
    /// Arguments the user added in settings, passed after ours.
    pub extra_args: Vec<String>,
    /// Kept across restarts so compiled kernels are reused (TORCHINDUCTOR_CACHE_DIR).
    pub inductor_cache_dir: PathBuf,
    /// The compile mode, for launch scripts that read TORCH_COMPILE / TORCH_COMPILE_MODE.
    pub compile_mode: Option<String>,
}

/// The command to spawn.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: PathBuf,
    /// Flags wanted but not accepted by this ComfyUI, with their values: reported, not passed.
    pub dropped: Vec<String>,
}

/// Builds the launch command for `install`, keeping only what `flags` (its `--help`) accepts.
pub fn launch_command(
    install: &Install,
    flags: &SupportedFlags,
    options: &LaunchOptions,
) -> LaunchCommand {
    let mut wanted: Vec<String> = vec![
        "--listen".into(),
        "127.0.0.1".into(),
        "--port".into(),
        options.port.to_string(),
        "--disable-auto-launch".into(),
        "--output-directory".into(),
        options.output_dir.display().to_string(),
        "--preview-method".into(),
        "auto".into(),
    ];
    if let Some(gib) = options.reserve_vram_gib {
        wanted.push("--reserve-vram".into());
        wanted.push(format!("{gib}"));
    }
    if options.disable_cuda_malloc {
        wanted.push("--disable-cuda-malloc".into());
    }
    wanted.extend(options.extra_args.iter().cloned());
    let (kept, dropped) = flags.filter(&wanted);
    let mut args = Vec::with_capacity(kept.len() + 2);
    // The portable build runs its embedded Python with -s (no user site-packages), as its
    // own run_nvidia_gpu.bat does.
    if install.python_source == PythonSource::Portable {
        args.push("-s".to_string());
    }
    args.push(install.root.join("main.py").display().to_string());
    args.extend(kept);
    let mut env = vec![
        ("PYTHONUNBUFFERED".to_string(), "1".to_string()),
        ("PYTHONIOENCODING".to_string(), "utf-8".to_string()),
        (
            "TORCHINDUCTOR_CACHE_DIR".to_string(),
            options.inductor_cache_dir.display().to_string(),
        ),
    ];
    if let Some(mode) = &options.compile_mode {
        env.push(("TORCH_COMPILE".to_string(), "1".to_string()));
        env.push(("TORCH_COMPILE_MODE".to_string(), mode.clone()));
    }
    LaunchCommand {
        program: install.python.clone(),
        args,
        env,
        working_dir: install.root.clone(),
        dropped,
    }
}

/// Whether a server's `argv` (from `/system_stats`) is the one this session started.
pub fn is_our_server(argv: &[String], session_id: &str) -> bool {
    !session_id.is_empty() && argv.iter().any(|a| a.contains(session_id))
}

/// A loopback port nothing listens on and we can bind: `preferred` if it is free, else the next
/// free one within `tries`, else one the OS picks. Both probes matter: a connect finds a server
/// that listens on another address family's wildcard, a bind finds one we could not share.
pub fn free_port(preferred: u16, tries: u16) -> Option<u16> {
    let free = |port: u16| {
        let address = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        let answered =
            TcpStream::connect_timeout(&address.into(), Duration::from_millis(200)).is_ok();
        !answered && TcpListener::bind(address).is_ok()
    };
    (0..tries)
        .filter_map(|i| preferred.checked_add(i))
        .find(|port| *port != 0 && free(*port))
        .or_else(|| {
            TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
                .ok()
                .and_then(|l| l.local_addr().ok())
                .map(|a| a.port())
        })
}

/// Our output folder for one session: `<base>/<session id>`.
pub fn session_output_dir(base: &Path, session_id: &str) -> PathBuf {
    base.join(session_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comfy::install::parse_help;

    const HELP_080: &str = include_str!("../../tests/data/comfy-protocol/process/main_help.txt");

    fn install(source: PythonSource) -> Install {
        Install {
            root: PathBuf::from("/opt/ComfyUI"),
            python: PathBuf::from("/opt/ComfyUI/.venv/bin/python"),
            python_source: source,
            version: Some("0.8.0".into()),
        }
    }

    fn options() -> LaunchOptions {
        LaunchOptions {
            port: 8199,
            output_dir: PathBuf::from("/data/wan-pilot/out/s-1234"),
            session_id: "s-1234".into(),
            reserve_vram_gib: Some(1.5),
            disable_cuda_malloc: true,
            extra_args: vec!["--use-sage-attention".into(), "--no-such-flag".into()],
            inductor_cache_dir: PathBuf::from("/cache/inductor"),
            compile_mode: Some("reduce-overhead".into()),
        }
    }

    #[test]
    fn the_command_carries_what_this_comfyui_accepts() {
        let flags = parse_help(HELP_080);
        let command = launch_command(
            &install(PythonSource::Venv {
                name: ".venv".into(),
            }),
            &flags,
            &options(),
        );
        let args = command.args.join(" ");
        assert!(
            args.starts_with("/opt/ComfyUI/main.py --listen 127.0.0.1 --port 8199"),
            "{args}"
        );
        for expected in [
            "--reserve-vram 1.5",
            "--disable-cuda-malloc",
            "--output-directory /data/wan-pilot/out/s-1234",
            "--use-sage-attention",
        ] {
            assert!(args.contains(expected), "{expected} in {args}");
        }
        assert_eq!(command.dropped, vec!["--no-such-flag".to_string()]);
        assert!(
            command
                .env
                .contains(&("TORCHINDUCTOR_CACHE_DIR".into(), "/cache/inductor".into()))
        );
        assert!(
            command
                .env
                .contains(&("TORCH_COMPILE_MODE".into(), "reduce-overhead".into()))
        );
        assert!(is_our_server(&command.args, "s-1234"));
        assert!(!is_our_server(
            &["main.py".into(), "--port".into(), "8199".into()],
            "s-1234"
        ));
    }

    #[test]
    fn an_older_comfyui_never_gets_flags_it_lacks() {
        let old_help = HELP_080.replace("--reserve-vram", "--other-flag");
        let flags = parse_help(&old_help);
        let command = launch_command(&install(PythonSource::Portable), &flags, &options());
        assert_eq!(command.args.first().map(String::as_str), Some("-s"));
        assert!(!command.args.iter().any(|a| a == "--reserve-vram"));
        assert!(
            command
                .dropped
                .starts_with(&["--reserve-vram".to_string(), "1.5".to_string()])
        );
    }

    #[test]
    fn a_taken_port_is_skipped() {
        let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).unwrap();
        let taken = listener.local_addr().unwrap().port();
        let port = free_port(taken, 20).unwrap();
        assert_ne!(port, taken);
        assert!(TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).is_ok());
    }
}
