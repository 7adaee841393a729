//! Follows the managed server's newest session log file and sends its new lines to the window.
//! The supervisor owns the server's in-memory log; the file (written line by line as output
//! arrives) is what the window can read without sharing it.

use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::EventSender;
use crate::comfy::logs::LogFiles;
use crate::logic::Event;

/// How often the file is read.
const POLL: Duration = Duration::from_millis(250);

/// Reads new lines from the session log started after this call, until the task is aborted.
pub async fn follow(dir: PathBuf, events: EventSender) {
    // Sessions already there belong to earlier servers.
    let old: HashSet<PathBuf> = LogFiles::new(&dir).sessions().into_iter().collect();
    let mut current: Option<PathBuf> = None;
    let mut offset = 0u64;
    let mut partial = String::new();
    loop {
        let newest = LogFiles::new(&dir)
            .sessions()
            .into_iter()
            .rfind(|p| !old.contains(p));
        if newest.is_some() && newest != current {
            current = newest;
            offset = 0;
            partial.clear();
        }
        if let Some(path) = &current
            && let Some((text, end)) = read_from(path, offset)
        {
            offset = end;
            partial.push_str(&text);
            if let Some(last_newline) = partial.rfind('\n') {
                let complete: String = partial.drain(..=last_newline).collect();
                let lines: Vec<String> = complete.lines().map(str::to_string).collect();
                if !lines.is_empty() {
                    events.send(Event::LogLines(lines));
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The file's bytes from `offset` and the new end, when there are any.
fn read_from(path: &Path, offset: u64) -> Option<(String, u64)> {
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    if len <= offset {
        return None;
    }
    file.seek(SeekFrom::Start(offset)).ok()?;
    let mut bytes = Vec::new();
    file.take(len - offset).read_to_end(&mut bytes).ok()?;
    Some((String::from_utf8_lossy(&bytes).into_owned(), len))
}
