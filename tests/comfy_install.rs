//! Finding and checking ComfyUI installs (`wan_pilot::comfy::install`): candidate folders, fake
//! installs in temp folders, and the flags read from the real ComfyUI 0.8.0 `main.py --help`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use wan_pilot::comfy::install::{
    self, Candidate, CandidateSource, FlagValue, InstallError, KnownFolders, Os, PythonSource,
};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wan-pilot-install-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn touch(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// `main.py`, `comfy/` and `comfyui_version.py` in `dir`.
fn fake_comfy(dir: &Path) {
    touch(&dir.join("main.py"), "print('hi')\n");
    touch(&dir.join("comfy").join("__init__.py"), "");
    touch(
        &dir.join("comfyui_version.py"),
        "# generated\n__version__ = \"0.8.0\"\n",
    );
}

fn no_path() -> Option<OsString> {
    None
}

// ---------------------------------------------------------------------------------------------
// Candidates

fn dirs(list: &[Candidate]) -> Vec<(PathBuf, CandidateSource)> {
    list.iter().map(|c| (c.dir.clone(), c.source)).collect()
}

#[test]
fn linux_candidates_in_priority_order() {
    let home = Path::new("/home/me");
    let files: HashMap<PathBuf, String> = [(
        home.join(".config/ComfyUI/config.json"),
        fs::read_to_string(data("comfy-install/desktop_config.json")).unwrap(),
    )]
    .into();
    let known = KnownFolders {
        configured: Some(Path::new("/opt/mine/ComfyUI")),
        bundled: Some(Path::new("/opt/wan-pilot/runtime/ComfyUI")),
    };
    let list = install::candidates(known, home, |_| None, Os::Linux, |p| files.get(p).cloned());
    let got = dirs(&list);
    use CandidateSource::*;
    assert_eq!(got[0], (PathBuf::from("/opt/mine/ComfyUI"), Configured));
    assert_eq!(
        got[1],
        (PathBuf::from("/opt/wan-pilot/runtime/ComfyUI"), Bundled)
    );
    assert_eq!(
        got[2],
        (PathBuf::from("/home/me/Documents/ComfyUI"), Desktop)
    );
    assert!(got.contains(&(
        PathBuf::from("/home/me/.local/share/StabilityMatrix/Packages/ComfyUI"),
        StabilityMatrix
    )));
    assert!(got.contains(&(
        PathBuf::from("/home/me/StabilityMatrix/Data/Packages/ComfyUI"),
        StabilityMatrix
    )));
    assert_eq!(got.last(), Some(&(PathBuf::from("/home/me/ComfyUI"), Home)));
    assert!(!got.iter().any(|(_, s)| *s == WindowsPortable));
    // Sources never go backwards in priority.
    let rank = |s: CandidateSource| {
        [
            Configured,
            Bundled,
            WindowsPortable,
            Desktop,
            StabilityMatrix,
            Home,
        ]
        .iter()
        .position(|x| *x == s)
        .unwrap()
    };
    assert!(got.windows(2).all(|w| rank(w[0].1) <= rank(w[1].1)));
}

#[test]
fn windows_candidates_use_appdata_and_portable_folders() {
    let home = Path::new("/Users/me");
    let env = |name: &str| match name {
        "APPDATA" => Some("/Users/me/AppData/Roaming".to_string()),
        "SystemDrive" => Some("D:".to_string()),
        _ => None,
    };
    let files: HashMap<PathBuf, String> = [
        (
            PathBuf::from("/Users/me/AppData/Roaming/ComfyUI/config.json"),
            r#"{"basePath": "E:\\AI\\ComfyUI"}"#.to_string(),
        ),
        (
            PathBuf::from("/Users/me/AppData/Roaming/StabilityMatrix/library.json"),
            r#"{"LibraryDir": "F:/SM"}"#.to_string(),
        ),
    ]
    .into();
    let list = install::candidates(KnownFolders::default(), home, env, Os::Windows, |p| {
        files.get(p).cloned()
    });
    let got = dirs(&list);
    use CandidateSource::*;
    assert_eq!(
        got[0],
        (
            home.join("ComfyUI_windows_portable").join("ComfyUI"),
            WindowsPortable
        )
    );
    assert!(got.contains(&(
        home.join("Desktop/ComfyUI_windows_portable/ComfyUI"),
        WindowsPortable
    )));
    assert!(
        got.contains(&(
            PathBuf::from("D:\\")
                .join("ComfyUI_windows_portable")
                .join("ComfyUI"),
            WindowsPortable
        ))
    );
    assert!(got.contains(&(PathBuf::from("E:\\AI\\ComfyUI"), Desktop)));
    assert!(got.contains(&(PathBuf::from("F:/SM/Packages/ComfyUI"), StabilityMatrix)));
    assert!(got.contains(&(
        PathBuf::from("/Users/me/AppData/Roaming/StabilityMatrix/Packages/ComfyUI"),
        StabilityMatrix
    )));
    // No duplicates.
    let mut unique = got.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), got.len());
}

#[test]
fn macos_desktop_config_and_broken_configs() {
    let home = Path::new("/Users/me");
    let config = home.join("Library/Application Support/ComfyUI/config.json");
    let with = |text: &'static str| {
        let config = config.clone();
        install::candidates(
            KnownFolders::default(),
            home,
            |_| None,
            Os::MacOs,
            move |p| (p == config).then(|| text.to_string()),
        )
    };
    let found = with(r#"{"basePath": "/Users/me/Documents/ComfyUI"}"#);
    assert!(found.iter().any(|c| c.source == CandidateSource::Desktop
        && c.dir == Path::new("/Users/me/Documents/ComfyUI")));
    assert!(found.iter().any(
        |c| c.dir == home.join("Library/Application Support/StabilityMatrix/Packages/ComfyUI")
    ));
    for broken in [
        "",
        "not json",
        r#"{"basePath": ""}"#,
        r#"{"basePath": 3}"#,
        "[]",
    ] {
        let list = with(broken);
        assert!(
            !list.iter().any(|c| c.source == CandidateSource::Desktop),
            "{broken}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Validation

#[test]
fn portable_layout_uses_python_embeded() {
    let top = temp_dir("portable").join("ComfyUI_windows_portable");
    let comfy = top.join("ComfyUI");
    fake_comfy(&comfy);
    touch(&top.join("python_embeded").join("python.exe"), "");
    let found = install::validate_with_path(&comfy, no_path(), Os::Windows).unwrap();
    assert_eq!(found.root, comfy);
    assert_eq!(found.python, top.join("python_embeded").join("python.exe"));
    assert_eq!(found.python_source, PythonSource::Portable);
    assert_eq!(found.version.as_deref(), Some("0.8.0"));
    // The portable build's top folder is taken as its ComfyUI folder.
    let from_top = install::validate_with_path(&top, no_path(), Os::Windows).unwrap();
    assert_eq!(from_top, found);
}

#[test]
fn venv_layouts_inside_the_folder() {
    let unix = temp_dir("venv-unix");
    fake_comfy(&unix);
    touch(&unix.join(".venv/bin/python"), "");
    touch(&unix.join("venv/bin/python"), "");
    let found = install::validate_with_path(&unix, no_path(), Os::Linux).unwrap();
    assert_eq!(found.python, unix.join(".venv/bin/python"));
    assert_eq!(
        found.python_source,
        PythonSource::Venv {
            name: ".venv".into()
        }
    );

    // StabilityMatrix: Data/Packages/ComfyUI with a Windows `venv`.
    let sm = temp_dir("sm").join("Data/Packages/ComfyUI");
    fake_comfy(&sm);
    touch(&sm.join("venv/Scripts/python.exe"), "");
    let found = install::validate_with_path(&sm, no_path(), Os::Windows).unwrap();
    assert_eq!(found.python, sm.join("venv/Scripts/python.exe"));
    assert_eq!(
        found.python_source,
        PythonSource::Venv {
            name: "venv".into()
        }
    );
}

#[test]
fn python_on_path_is_the_last_resort_and_reported() {
    let dir = temp_dir("path");
    let comfy = dir.join("ComfyUI");
    fake_comfy(&comfy);
    fs::remove_file(comfy.join("comfyui_version.py")).unwrap();
    let bin_a = dir.join("bin-a");
    let bin_b = dir.join("bin-b");
    touch(&bin_a.join("python"), "");
    touch(&bin_b.join("python3"), "");
    let path = std::env::join_paths([&bin_a, &bin_b]).unwrap();
    let found = install::validate_with_path(&comfy, Some(path), Os::Linux).unwrap();
    assert_eq!(found.python, bin_b.join("python3"));
    assert_eq!(
        found.python_source,
        PythonSource::Path {
            command: "python3".into()
        }
    );
    assert_eq!(found.version, None);
    assert!(found.python_source.to_string().contains("python3"));

    let err = install::validate_with_path(&comfy, None, Os::Linux).unwrap_err();
    assert!(matches!(err, InstallError::NoPython { .. }));
    let message = err.to_string();
    assert!(message.contains(&comfy.display().to_string()), "{message}");
    assert!(message.contains("venv"), "{message}");
}

#[test]
fn missing_pieces_are_clear_errors() {
    let dir = temp_dir("missing");
    let message = |err: InstallError| err.to_string();

    let gone = dir.join("nowhere");
    let err = install::validate_with_path(&gone, None, Os::Linux).unwrap_err();
    assert!(matches!(err, InstallError::NotAFolder { .. }));
    assert!(message(err).contains("nowhere"));

    let empty = dir.join("empty");
    fs::create_dir_all(&empty).unwrap();
    let err = install::validate_with_path(&empty, None, Os::Linux).unwrap_err();
    assert!(matches!(err, InstallError::NoMainPy { .. }));
    let text = message(err);
    assert!(
        text.contains(&empty.display().to_string()) && text.contains("main.py"),
        "{text}"
    );
    assert!(text.contains("choose"), "{text}");

    let half = dir.join("half");
    touch(&half.join("main.py"), "");
    touch(&half.join(".venv/bin/python"), "");
    let err = install::validate_with_path(&half, None, Os::Linux).unwrap_err();
    assert!(matches!(err, InstallError::NoComfyPackage { .. }));
    assert!(message(err).contains("comfy/"));
}

#[test]
fn version_file_variants() {
    assert_eq!(
        install::parse_version_file("__version__ = '0.3.40'\n").as_deref(),
        Some("0.3.40")
    );
    assert_eq!(
        install::parse_version_file("__version__=\"1.0\"").as_deref(),
        Some("1.0")
    );
    assert_eq!(install::parse_version_file("version = '1'\n"), None);
    assert_eq!(install::parse_version_file("__version__ = ''"), None);
    assert_eq!(install::parse_version_file("__version__ = \"0.8"), None);
}

// ---------------------------------------------------------------------------------------------
// Flags

fn real_help() -> String {
    fs::read_to_string(data("comfy-protocol/process/main_help.txt")).unwrap()
}

#[test]
fn parses_the_recorded_comfyui_0_8_0_help() {
    let flags = install::parse_help(&real_help());
    let expect = [
        ("--listen", FlagValue::Optional),
        ("--port", FlagValue::Required),
        ("--reserve-vram", FlagValue::Required),
        ("--disable-cuda-malloc", FlagValue::None),
        ("--cuda-malloc", FlagValue::None),
        ("--preview-method", FlagValue::Optional),
        ("--output-directory", FlagValue::Required),
        ("--disable-auto-launch", FlagValue::None),
        ("--cpu", FlagValue::None),
        ("--extra-model-paths-config", FlagValue::Required),
        ("--fast", FlagValue::Optional),
        ("--default-hashing-function", FlagValue::Required),
        ("--fp8_e4m3fn-unet", FlagValue::None),
        ("--verbose", FlagValue::Optional),
        ("--database-url", FlagValue::Required),
        ("--help", FlagValue::None),
        ("-h", FlagValue::None),
    ];
    for (flag, value) in expect {
        assert_eq!(flags.value(flag), Some(value), "{flag}");
    }
    // Words from descriptions and the usage block are not flags.
    assert!(!flags.accepts("--base-"));
    assert!(!flags.accepts("--fast with"));
    assert!(!flags.accepts("--enable-manager-ui"));
    // Every option line of the list, and no more: count the flags the usage block names.
    let text = real_help();
    let usage_flags: std::collections::BTreeSet<&str> = text
        .split("options:")
        .next()
        .unwrap()
        .split(|c: char| c.is_whitespace() || c == '[' || c == ']' || c == '|')
        .filter(|w| w.starts_with('-') && w.len() > 1)
        .collect::<Vec<_>>()
        .into_iter()
        .collect();
    let parsed: std::collections::BTreeSet<&str> = flags.iter().map(|(f, _)| f).collect();
    let mut usage_plus_help = usage_flags.clone();
    usage_plus_help.insert("--help");
    assert_eq!(parsed, usage_plus_help);
}

#[test]
fn parses_older_argparse_headings_and_short_forms() {
    let text = "usage: main.py [-h] [-o OUT]\n\noptional arguments:\n  -h, --help  show\n  \
                -o OUT, --out OUT\n                        where\n  --cpu                 To \
                use the CPU.\n";
    let flags = install::parse_help(text);
    assert_eq!(flags.value("--out"), Some(FlagValue::Required));
    assert_eq!(flags.value("-o"), Some(FlagValue::Required));
    assert_eq!(flags.value("--cpu"), Some(FlagValue::None));
    assert_eq!(flags.len(), 5);
    assert!(install::parse_help("").is_empty());
    assert!(
        install::parse_help("Traceback (most recent call last):\n  File \"main.py\"").is_empty()
    );
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn filter_keeps_known_flags_with_their_values_and_drops_the_rest() {
    let flags = install::parse_help(&real_help());
    let wanted = args(&[
        "--listen",
        "127.0.0.1",
        "--port",
        "8199",
        "--disable-auto-launch",
        "--output-directory",
        "/out",
        "--preview-method",
        "auto",
        "--reserve-vram",
        "1.5",
        "--disable-cuda-malloc",
        "--from-the-future",
        "x",
        "y",
        "--also-new",
        "--cpu",
        "--extra-model-paths-config",
        "a.yaml",
        "b.yaml",
        "--port=8200",
        "--nope=1",
    ]);
    let (kept, dropped) = flags.filter(&wanted);
    assert_eq!(
        kept,
        args(&[
            "--listen",
            "127.0.0.1",
            "--port",
            "8199",
            "--disable-auto-launch",
            "--output-directory",
            "/out",
            "--preview-method",
            "auto",
            "--reserve-vram",
            "1.5",
            "--disable-cuda-malloc",
            "--cpu",
            "--extra-model-paths-config",
            "a.yaml",
            "b.yaml",
            "--port=8200",
        ])
    );
    assert_eq!(
        dropped,
        args(&["--from-the-future", "x", "y", "--also-new", "--nope=1"])
    );
}

#[test]
fn an_older_comfyui_loses_the_flags_it_lacks() {
    // A ComfyUI from before --reserve-vram, --disable-cuda-malloc and --preview-method.
    let old = "options:\n  -h, --help            show\n  --listen [IP]         ip\n  --port PORT           \
               port\n  --output-directory OUTPUT_DIRECTORY\n                        out\n  \
               --disable-auto-launch\n                        no browser\n";
    let flags = install::parse_help(old);
    let wanted = args(&[
        "--listen",
        "127.0.0.1",
        "--port",
        "8188",
        "--disable-auto-launch",
        "--output-directory",
        "/o",
        "--preview-method",
        "auto",
        "--reserve-vram",
        "2",
        "--disable-cuda-malloc",
    ]);
    let (kept, dropped) = flags.filter(&wanted);
    assert_eq!(
        kept,
        args(&[
            "--listen",
            "127.0.0.1",
            "--port",
            "8188",
            "--disable-auto-launch",
            "--output-directory",
            "/o"
        ])
    );
    assert_eq!(
        dropped,
        args(&[
            "--preview-method",
            "auto",
            "--reserve-vram",
            "2",
            "--disable-cuda-malloc"
        ])
    );
    // Bare optional-value flags and a required value that looks like a number.
    let (kept, dropped) = install::parse_help(&real_help()).filter(&args(&[
        "--listen",
        "--reserve-vram",
        "-1",
        "--cpu",
    ]));
    assert_eq!(kept, args(&["--listen", "--reserve-vram", "-1", "--cpu"]));
    assert!(dropped.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Running main.py --help

#[cfg(unix)]
#[test]
fn read_help_runs_the_python_and_reports_failures() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("run");
    fake_comfy(&dir);
    let script = dir.join(".venv/bin/python");
    let help = data("comfy-protocol/process/main_help.txt");
    touch(&script, &format!("#!/bin/sh\ncat '{}'\n", help.display()));
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let found = install::validate_with_path(&dir, None, Os::Linux).unwrap();
    let flags = install::read_help(&found).unwrap();
    assert!(flags.accepts("--reserve-vram"));

    touch(
        &script,
        "#!/bin/sh\necho 'ModuleNotFoundError: No module named torch' >&2\nexit 1\n",
    );
    let err = install::read_help(&found).unwrap_err();
    assert!(matches!(err, InstallError::HelpFailed { .. }));
    assert!(err.to_string().contains("No module named torch"), "{err}");

    touch(&script, "#!/bin/sh\necho hello\n");
    let err = install::read_help(&found).unwrap_err();
    assert!(matches!(err, InstallError::HelpUnreadable { .. }), "{err}");

    touch(&script, "#!/bin/sh\nexec sleep 30\n");
    let started = std::time::Instant::now();
    let err = install::read_help_within(&found, std::time::Duration::from_millis(300)).unwrap_err();
    assert!(matches!(err, InstallError::HelpTimeout { .. }), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));

    let mut missing = found.clone();
    missing.python = dir.join("no-such-python");
    assert!(matches!(
        install::read_help(&missing),
        Err(InstallError::Spawn { .. })
    ));
}

/// Needs a real ComfyUI with its Python environment. Run with
/// `WAN_PILOT_COMFYUI=<ComfyUI folder> cargo test --test comfy_install -- --ignored`.
#[test]
#[ignore = "needs a real ComfyUI: set WAN_PILOT_COMFYUI=DIR and pass --ignored"]
fn real_comfyui_help_matches_the_recording() {
    let dir = std::env::var_os("WAN_PILOT_COMFYUI")
        .map(PathBuf::from)
        .expect("WAN_PILOT_COMFYUI names the ComfyUI folder to check");
    let found = install::validate(&dir).unwrap();
    eprintln!("{found:?}");
    let flags = install::read_help(&found).unwrap();
    for flag in [
        "--listen",
        "--port",
        "--reserve-vram",
        "--disable-cuda-malloc",
        "--preview-method",
        "--output-directory",
        "--disable-auto-launch",
        "--cpu",
    ] {
        assert!(flags.accepts(flag), "{flag}");
    }
    if found.version.as_deref() == Some("0.8.0") {
        assert_eq!(flags, install::parse_help(&real_help()));
    }
}
