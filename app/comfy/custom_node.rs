//! wan-pilot's own ComfyUI custom node package (`assets/comfyui/wan_pilot_nodes`: the
//! `WanPilotTorchCompile` node), carried inside the binary and written into a ComfyUI's
//! `custom_nodes` before wan-pilot starts that server, so workflows can be compiled on servers
//! without ComfyUI-KJNodes.
//!
//! A file is written only when its content differs (an unchanged install leaves the server's
//! module cache and file times alone), each one atomically, and nothing outside our own package
//! folder is touched.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::runs::store::{StoreError, write_atomically};

/// Our package's folder name under `custom_nodes`; ComfyUI imports it as a Python package.
pub const PACKAGE_DIR: &str = "wan_pilot_nodes";

/// The node class our package registers (also what workflow edits insert).
pub const COMPILE_NODE_CLASS: &str = crate::workflow::edit::OWN_COMPILE_NODE;

/// The package's files: (name inside the package folder, content).
const FILES: &[(&str, &[u8])] = &[(
    "__init__.py",
    include_bytes!("../../assets/comfyui/wan_pilot_nodes/__init__.py"),
)];

/// The files of our package, as installed: (name inside the package folder, content).
pub fn files() -> &'static [(&'static str, &'static [u8])] {
    FILES
}

/// Where our package lives in the ComfyUI at `comfy_root`.
pub fn package_dir(comfy_root: &Path) -> PathBuf {
    comfy_root.join("custom_nodes").join(PACKAGE_DIR)
}

/// What an install did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInstall {
    /// `<root>/custom_nodes/wan_pilot_nodes`.
    pub dir: PathBuf,
    /// Files written because they were missing or different. A server already running keeps
    /// the old code until it restarts.
    pub written: Vec<PathBuf>,
    /// Files that already had our content.
    pub unchanged: Vec<PathBuf>,
}

impl NodeInstall {
    /// Whether anything was written (a running server would need a restart to see it).
    pub fn changed(&self) -> bool {
        !self.written.is_empty()
    }
}

/// Why our nodes could not be installed, naming the path.
#[derive(Debug, thiserror::Error)]
pub enum CustomNodeError {
    #[error(
        "cannot add wan-pilot's nodes to {}: it is not a folder; check the ComfyUI folder setting",
        root.display()
    )]
    NoComfyUi { root: PathBuf },
    #[error(
        "{} is in the way of wan-pilot's nodes: it should be a folder; move it aside and start again",
        path.display()
    )]
    InTheWay { path: PathBuf },
    #[error("cannot create {}: {source}; check that wan-pilot may write there", path.display())]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot read {}: {source}; check its permissions", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{source}; check that wan-pilot may write into ComfyUI's custom_nodes folder")]
    Write {
        #[from]
        source: StoreError,
    },
}

/// Writes our node package into `<comfy_root>/custom_nodes/wan_pilot_nodes/`, each file only
/// when its content differs, atomically (a temporary file renamed over the old one). Other
/// packs and other files in our folder are left alone.
pub fn install_into(comfy_root: &Path) -> Result<NodeInstall, CustomNodeError> {
    if !comfy_root.is_dir() {
        return Err(CustomNodeError::NoComfyUi {
            root: comfy_root.to_path_buf(),
        });
    }
    let dir = package_dir(comfy_root);
    if dir.exists() && !dir.is_dir() {
        return Err(CustomNodeError::InTheWay { path: dir });
    }
    fs::create_dir_all(&dir).map_err(|source| CustomNodeError::CreateDir {
        path: dir.clone(),
        source,
    })?;
    let mut install = NodeInstall {
        dir: dir.clone(),
        written: Vec::new(),
        unchanged: Vec::new(),
    };
    for (name, content) in FILES {
        let path = dir.join(name);
        let current = match fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => return Err(CustomNodeError::Read { path, source }),
        };
        if current.as_deref() == Some(*content) {
            install.unchanged.push(path);
            continue;
        }
        write_atomically(&path, content)?;
        install.written.push(path);
    }
    Ok(install)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_root(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "wan-pilot-custom-node-{tag}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_package_registers_the_compile_node() {
        let init = files()
            .iter()
            .find(|(name, _)| *name == "__init__.py")
            .map(|(_, bytes)| String::from_utf8_lossy(bytes))
            .unwrap();
        assert!(init.contains(&format!("\"{COMPILE_NODE_CLASS}\": WanPilotTorchCompile")));
        assert!(init.contains("NODE_DISPLAY_NAME_MAPPINGS"));
    }

    #[test]
    fn a_second_install_writes_nothing_and_a_changed_file_is_restored() {
        let root = temp_root("twice");
        let first = install_into(&root).unwrap();
        assert!(first.changed());
        assert_eq!(first.written.len(), files().len());
        let second = install_into(&root).unwrap();
        assert!(!second.changed(), "{second:?}");
        let init = root.join("custom_nodes/wan_pilot_nodes/__init__.py");
        fs::write(&init, "edited by hand").unwrap();
        let third = install_into(&root).unwrap();
        assert_eq!(third.written, vec![init.clone()]);
        assert_eq!(fs::read(&init).unwrap(), files()[0].1);
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn a_file_where_the_folder_goes_is_reported() {
        let root = temp_root("blocked");
        fs::create_dir_all(root.join("custom_nodes")).unwrap();
        fs::write(root.join("custom_nodes/wan_pilot_nodes"), "x").unwrap();
        let err = install_into(&root).unwrap_err();
        assert!(matches!(err, CustomNodeError::InTheWay { .. }), "{err}");
        assert!(err.to_string().contains("wan_pilot_nodes"), "{err}");
        let _ = fs::remove_dir_all(&root);
    }
}
