//! Talking to a ComfyUI server: its HTTP API (queue a prompt, read history, download outputs,
//! upload an input image, free memory, interrupt, edit the queue) and its websocket (every
//! message and preview of our client id, reconnecting by itself).
//!
//! Async (tokio), plain `http://` only (no TLS stack is built in). No `Origin` header is ever sent:
//! ComfyUI answers 403 when one does not match the host. Silence on the websocket is normal
//! (compiling and VAE decoding send nothing for 13–40 s), so liveness is a websocket ping, never a
//! quiet period; when the socket does drop, [`EventStream`] reconnects with backoff and says so,
//! and the run logic recovers the result from `/history`, which the server writes before it sends
//! `executing` with no node.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use reqwest::{RequestBuilder, StatusCode, Url};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::comfy::protocol::{
    BinaryFrame, HistoryEntry, OutputFile, PreviewFormat, PromptAccepted, PromptRefused,
    QueueState, SystemStats, UploadedImage, WsMessage, parse_history,
};

/// How long the client waits. Downloads have no total limit, only one between two chunks, so a
/// large video never times out while it is still arriving.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    /// TCP connect (HTTP and websocket). The server is usually on loopback: 2 s is plenty.
    pub connect: Duration,
    /// A whole ordinary request, reply body included.
    pub request: Duration,
    /// `/object_info`: every node's inputs, with folder scans; MBs and slow on big installs.
    pub object_info: Duration,
    /// Longest pause between two chunks of a download.
    pub download_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(2),
            request: Duration::from_secs(30),
            object_info: Duration::from_secs(120),
            download_idle: Duration::from_secs(60),
        }
    }
}

/// Why a file name from the server is not used as a path on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnsafeReason {
    #[error("the file name is empty")]
    Empty,
    #[error("it contains \"..\", which would leave the download folder")]
    ParentDir,
    #[error("it is an absolute path")]
    Absolute,
    #[error("it is a network (UNC) path")]
    Unc,
    #[error("it contains ':' (a drive letter or a Windows stream name)")]
    Colon,
    #[error("it contains a NUL character")]
    Nul,
}

/// A subfolder and file name from the server that would not stay inside our folder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refusing the file name {name:?}: {reason}")]
pub struct UnsafeName {
    /// `subfolder/filename` as the server sent them.
    pub name: String,
    pub reason: UnsafeReason,
}

/// Everything that can go wrong talking to the server. Each message names the address or
/// endpoint and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "{url:?} is not a ComfyUI address: {problem}. Write it as http://host:port, e.g. http://127.0.0.1:8188"
    )]
    BadUrl { url: String, problem: String },
    #[error(
        "{url}: only plain http:// is supported for now, not https://. Use the server's http:// address"
    )]
    HttpsUnsupported { url: String },
    #[error(
        "could not connect to ComfyUI at {url}: {reason}. Is the server running, and is the address right?"
    )]
    Unreachable { url: String, reason: String },
    #[error(
        "ComfyUI did not answer {url} within {secs} s. It may be busy (loading models) or stuck: look at its log, then try again"
    )]
    Timeout { url: String, secs: u64 },
    #[error(
        "the connection to ComfyUI broke during {url}: {reason}. If the server stopped, start it again and retry"
    )]
    Transport { url: String, reason: String },
    #[error("{url} answered HTTP {status}{detail}. {advice}")]
    Status {
        url: String,
        status: u16,
        /// ": first line of the body", or "".
        detail: String,
        advice: &'static str,
    },
    #[error("ComfyUI refused the prompt ({url}): {}. Fix these inputs in the workflow and queue it again", reasons.join("; "))]
    Refused {
        url: String,
        /// One line per failing input ([`PromptRefused::reasons`]).
        reasons: Vec<String>,
        /// The whole refusal, for pointing at nodes.
        refusal: Box<PromptRefused>,
    },
    #[error(
        "{url} replied with something ComfyUI does not send: {problem}. Is a ComfyUI server (0.8 or newer) at that address?"
    )]
    BadReply { url: String, problem: String },
    #[error(
        "ComfyUI has no {kind} file {name:?} ({url} answered 404). It may have been deleted or moved on the server"
    )]
    FileMissing {
        url: String,
        kind: &'static str,
        name: String,
    },
    #[error("not downloading from {url}: {source}")]
    UnsafeName {
        url: String,
        #[source]
        source: UnsafeName,
    },
    #[error("the download {url} ended after {received_bytes} of {expected_bytes} bytes. Try again")]
    Truncated {
        url: String,
        received_bytes: u64,
        expected_bytes: u64,
    },
    #[error(
        "could not {action} {path}: {source}. Check that the folder is writable and the disk has room"
    )]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "could not open the websocket {url}: {reason}. Is the server running, and is the address right?"
    )]
    WebSocket { url: String, reason: String },
}

/// A ComfyUI server's HTTP API. Cheap to clone: clones share the connection pool and the cached
/// `/object_info`.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    /// `http://host:port/`, nothing after it.
    base: Url,
    /// The same without the trailing `/`, for messages and records.
    base_text: String,
    timeouts: Timeouts,
    object_info: Mutex<Option<Arc<Value>>>,
}

impl Client {
    /// A client for `http://host:port` (a trailing `/` is fine) with the default timeouts.
    pub fn new(base_url: &str) -> Result<Client, ClientError> {
        Client::with_timeouts(base_url, Timeouts::default())
    }

    /// A client with chosen timeouts.
    pub fn with_timeouts(base_url: &str, timeouts: Timeouts) -> Result<Client, ClientError> {
        let base = parse_base_url(base_url)?;
        // No proxy: the websocket cannot use one, and both must reach the same server.
        let http = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .no_proxy()
            .build()
            .map_err(|e| ClientError::BadUrl {
                url: base_url.to_string(),
                problem: format!("the HTTP client could not be set up ({})", root_cause(&e)),
            })?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base_text: base.as_str().trim_end_matches('/').to_string(),
                base,
                timeouts,
                object_info: Mutex::new(None),
            }),
        })
    }

    /// The server address as `http://host:port`.
    pub fn base_url(&self) -> &str {
        &self.inner.base_text
    }

    pub fn timeouts(&self) -> Timeouts {
        self.inner.timeouts
    }

    /// `ws://host:port/ws?clientId=…`: the websocket of one client id.
    pub fn ws_url(&self, client_id: &str) -> String {
        let mut url = self.inner.base.clone();
        // http → ws keeps the host and port; both schemes are "special", so this cannot fail.
        let _ = url.set_scheme("ws");
        url.set_path("ws");
        url.query_pairs_mut().append_pair("clientId", client_id);
        url.to_string()
    }

    /// `/api/<path>` on the server.
    fn endpoint(&self, path: &str) -> Url {
        let mut url = self.inner.base.clone();
        url.set_path(&format!("api/{path}"));
        url
    }

    /// Sends a request and reads the whole reply within `limit`.
    async fn call(
        &self,
        url: &Url,
        request: RequestBuilder,
        limit: Duration,
    ) -> Result<(StatusCode, Vec<u8>), ClientError> {
        let exchange = async {
            let response = request.send().await?;
            let status = response.status();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, body.to_vec()))
        };
        match tokio::time::timeout(limit, exchange).await {
            Err(_) => Err(ClientError::Timeout {
                url: url.to_string(),
                secs: limit.as_secs().max(1),
            }),
            Ok(Err(e)) => Err(transport_error(url, &e, self.inner.timeouts)),
            Ok(Ok(reply)) => Ok(reply),
        }
    }

    async fn get(&self, path: &str) -> Result<(Url, StatusCode, Vec<u8>), ClientError> {
        let url = self.endpoint(path);
        let request = self.inner.http.get(url.clone());
        let (status, body) = self
            .call(&url, request, self.inner.timeouts.request)
            .await?;
        Ok((url, status, body))
    }

    /// POSTs JSON to an endpoint that answers 200 with an empty body.
    async fn post_expecting_ok(&self, path: &str, body: &Value) -> Result<(), ClientError> {
        let url = self.endpoint(path);
        let request = self.inner.http.post(url.clone()).json(body);
        let (status, reply) = self
            .call(&url, request, self.inner.timeouts.request)
            .await?;
        if status != StatusCode::OK {
            return Err(status_error(&url, status, &reply));
        }
        Ok(())
    }

    /// `GET /system_stats`: versions, launch flags (`argv`), devices.
    pub async fn system_stats(&self) -> Result<SystemStats, ClientError> {
        let (url, status, body) = self.get("system_stats").await?;
        if status != StatusCode::OK {
            return Err(status_error(&url, status, &body));
        }
        SystemStats::parse(&body).map_err(|e| bad_reply(&url, e))
    }

    /// `GET /object_info`: every node class and its inputs. Fetched once and kept until
    /// [`Client::forget_object_info`] (call it when the server restarts), since the server
    /// rescans every model folder to answer.
    pub async fn object_info(&self) -> Result<Arc<Value>, ClientError> {
        if let Some(cached) = self.cached_object_info().clone() {
            return Ok(cached);
        }
        let url = self.endpoint("object_info");
        let request = self.inner.http.get(url.clone());
        let (status, body) = self
            .call(&url, request, self.inner.timeouts.object_info)
            .await?;
        if status != StatusCode::OK {
            return Err(status_error(&url, status, &body));
        }
        let info: Value = serde_json::from_slice(&body).map_err(|e| bad_reply(&url, e))?;
        if !info.is_object() {
            return Err(bad_reply(&url, "not an object of node classes"));
        }
        let info = Arc::new(info);
        *self.cached_object_info() = Some(info.clone());
        Ok(info)
    }

    /// Drops the cached `/object_info`; the next call fetches it again.
    pub fn forget_object_info(&self) {
        *self.cached_object_info() = None;
    }

    fn cached_object_info(&self) -> std::sync::MutexGuard<'_, Option<Arc<Value>>> {
        // A panic elsewhere while holding the lock leaves a valid Option behind.
        self.inner
            .object_info
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `POST /prompt`: queues an API prompt under our own `prompt_id` (the websocket can report
    /// on it before this reply arrives) for the websocket client `client_id`. A 400 becomes
    /// [`ClientError::Refused`] with one line per failing input. A 200 can still list output
    /// nodes the server dropped: see [`PromptAccepted::ignored_outputs`].
    pub async fn submit(
        &self,
        prompt: &Value,
        client_id: &str,
        prompt_id: &str,
        extra_data: Option<Value>,
    ) -> Result<PromptAccepted, ClientError> {
        let url = self.endpoint("prompt");
        let mut body = json!({"prompt": prompt, "client_id": client_id, "prompt_id": prompt_id});
        if let Some(extra) = extra_data {
            body["extra_data"] = extra;
        }
        let request = self.inner.http.post(url.clone()).json(&body);
        let (status, reply) = self
            .call(&url, request, self.inner.timeouts.request)
            .await?;
        match status {
            StatusCode::OK => serde_json::from_slice(&reply).map_err(|e| bad_reply(&url, e)),
            StatusCode::BAD_REQUEST => match serde_json::from_slice::<PromptRefused>(&reply) {
                Ok(refusal) => Err(ClientError::Refused {
                    url: url.to_string(),
                    reasons: refusal.reasons(),
                    refusal: Box::new(refusal),
                }),
                Err(_) => Err(status_error(&url, status, &reply)),
            },
            _ => Err(status_error(&url, status, &reply)),
        }
    }

    /// `GET /queue`: what runs and what waits.
    pub async fn queue(&self) -> Result<QueueState, ClientError> {
        let (url, status, body) = self.get("queue").await?;
        if status != StatusCode::OK {
            return Err(status_error(&url, status, &body));
        }
        QueueState::parse(&body).map_err(|e| bad_reply(&url, e))
    }

    /// `GET /history/{prompt_id}`: the finished prompt, or `None` while it is queued, running or
    /// unknown. The server writes it before the websocket's `executing` with no node.
    pub async fn history(&self, prompt_id: &str) -> Result<Option<HistoryEntry>, ClientError> {
        let mut url = self.endpoint("history");
        // Pushing a segment percent-encodes whatever the id holds.
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.push(prompt_id);
        }
        let request = self.inner.http.get(url.clone());
        let (status, body) = self
            .call(&url, request, self.inner.timeouts.request)
            .await?;
        if status != StatusCode::OK {
            return Err(status_error(&url, status, &body));
        }
        let entries = parse_history(&body).map_err(|e| bad_reply(&url, e))?;
        if entries.is_empty() {
            return Ok(None);
        }
        entries
            .into_iter()
            .find(|entry| entry.prompt_id == prompt_id)
            .map(Some)
            .ok_or_else(|| bad_reply(&url, format!("no entry for prompt {prompt_id:?}")))
    }

    /// Downloads one output file through `/view` into `dest_dir`, keeping its subfolder:
    /// streamed to `<name>.part`, renamed when complete, so a file under its real name is always
    /// whole. Returns the final path.
    pub async fn download(
        &self,
        file: &OutputFile,
        dest_dir: &Path,
    ) -> Result<PathBuf, ClientError> {
        let mut url = self.endpoint("view");
        url.query_pairs_mut()
            .append_pair("filename", &file.filename)
            .append_pair("subfolder", &file.subfolder)
            .append_pair("type", file.kind.as_str());
        let relative = safe_relative_path(&file.subfolder, &file.filename).map_err(|source| {
            ClientError::UnsafeName {
                url: url.to_string(),
                source,
            }
        })?;
        let target = dest_dir.join(&relative);
        let partial = part_path(&target);
        let timeouts = self.inner.timeouts;
        let request = self.inner.http.get(url.clone()).send();
        let mut response = match tokio::time::timeout(timeouts.request, request).await {
            Err(_) => {
                return Err(ClientError::Timeout {
                    url: url.to_string(),
                    secs: timeouts.request.as_secs().max(1),
                });
            }
            Ok(Err(e)) => return Err(transport_error(&url, &e, timeouts)),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Err(ClientError::FileMissing {
                url: url.to_string(),
                kind: file.kind.as_str(),
                name: relative.to_string_lossy().into_owned(),
            });
        }
        if status != StatusCode::OK {
            let body = read_short_body(&mut response, timeouts.download_idle).await;
            return Err(status_error(&url, status, &body));
        }
        let expected_bytes = response.content_length();
        if let Some(parent) = partial.parent() {
            std::fs::create_dir_all(parent).map_err(|source| ClientError::Io {
                action: "create the folder",
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let written = stream_to_file(&mut response, &partial, &url, timeouts).await;
        let received_bytes = match written {
            Ok(bytes) => bytes,
            Err(error) => {
                let _ = std::fs::remove_file(&partial);
                return Err(error);
            }
        };
        if let Some(expected_bytes) = expected_bytes
            && expected_bytes != received_bytes
        {
            let _ = std::fs::remove_file(&partial);
            return Err(ClientError::Truncated {
                url: url.to_string(),
                received_bytes,
                expected_bytes,
            });
        }
        std::fs::rename(&partial, &target).map_err(|source| {
            let _ = std::fs::remove_file(&partial);
            ClientError::Io {
                action: "move the finished download to",
                path: target.clone(),
                source,
            }
        })?;
        Ok(target)
    }

    /// `POST /free`: unload models from VRAM (`unload_models`), and also drop every cached node
    /// output (`free_memory`). The server applies it after the current prompt and does not say
    /// when it is done.
    pub async fn free(&self, unload_models: bool, free_memory: bool) -> Result<(), ClientError> {
        // The body must be JSON: an empty one makes the server answer 500.
        self.post_expecting_ok(
            "free",
            &json!({"unload_models": unload_models, "free_memory": free_memory}),
        )
        .await
    }

    /// `POST /interrupt`: stops `prompt_id` if it is the one running (no effect otherwise), or
    /// whatever runs when `None`. Queued prompts stay queued: see [`Client::delete_from_queue`].
    pub async fn interrupt(&self, prompt_id: Option<&str>) -> Result<(), ClientError> {
        let body = match prompt_id {
            Some(id) => json!({"prompt_id": id}),
            None => json!({}),
        };
        self.post_expecting_ok("interrupt", &body).await
    }

    /// `POST /queue {"delete": ids}`: removes waiting prompts (not the running one).
    pub async fn delete_from_queue(&self, ids: &[String]) -> Result<(), ClientError> {
        self.post_expecting_ok("queue", &json!({"delete": ids}))
            .await
    }

    /// `POST /queue {"clear": true}`: removes every waiting prompt, also other clients'.
    pub async fn clear_queue(&self) -> Result<(), ClientError> {
        self.post_expecting_ok("queue", &json!({"clear": true}))
            .await
    }

    /// `POST /upload/image`: puts a local image into the server's input folder for `LoadImage`
    /// (image-to-video). Without `overwrite`, a different file of the same name is stored as
    /// "name (1).png"; use the returned name.
    pub async fn upload_image(
        &self,
        path: &Path,
        overwrite: bool,
    ) -> Result<UploadedImage, ClientError> {
        let url = self.endpoint("upload/image");
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ClientError::Io {
                action: "upload",
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"),
            })?;
        let bytes = std::fs::read(path).map_err(|source| ClientError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        })?;
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name(name)
            .mime_str(image_mime(path))
            .map_err(|e| transport_error(&url, &e, self.inner.timeouts))?;
        let form = reqwest::multipart::Form::new()
            .part("image", part)
            .text("type", "input")
            .text("overwrite", if overwrite { "true" } else { "false" });
        let request = self.inner.http.post(url.clone()).multipart(form);
        let (status, reply) = self
            .call(&url, request, self.inner.timeouts.request)
            .await?;
        if status != StatusCode::OK {
            return Err(status_error(&url, status, &reply));
        }
        serde_json::from_slice(&reply).map_err(|e| bad_reply(&url, e))
    }
}

/// Checks and normalises a server address: `http://host[:port][/]`, nothing else.
fn parse_base_url(text: &str) -> Result<Url, ClientError> {
    let bad = |problem: &str| ClientError::BadUrl {
        url: text.to_string(),
        problem: problem.to_string(),
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(bad("it is empty"));
    }
    if !trimmed.contains("://") {
        return Err(bad("it has no http:// in front"));
    }
    let url = Url::parse(trimmed).map_err(|e| bad(&e.to_string()))?;
    match url.scheme() {
        "http" => {}
        "https" => {
            return Err(ClientError::HttpsUnsupported {
                url: text.to_string(),
            });
        }
        other => return Err(bad(&format!("it starts with {other}://, not http://"))),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("it has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "user names and passwords in the address are not supported",
        ));
    }
    if url.path() != "/" && !url.path().is_empty() {
        return Err(bad(&format!(
            "it has a path ({}) after host:port; servers behind a path prefix are not supported",
            url.path()
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("it has a ?query or #fragment"));
    }
    let mut base = url;
    base.set_path("/");
    Ok(base)
}

/// The path under a download folder for a server file: its subfolders kept, anything that could
/// leave the folder refused (`..`, absolute and UNC paths, drive letters, NUL, empty names).
/// Both `/` and `\` separate folders, whatever this machine uses.
pub fn safe_relative_path(subfolder: &str, filename: &str) -> Result<PathBuf, UnsafeName> {
    let name = if subfolder.is_empty() {
        filename.to_string()
    } else {
        format!("{subfolder}/{filename}")
    };
    let refuse = |reason| {
        Err(UnsafeName {
            name: name.clone(),
            reason,
        })
    };
    if name.contains('\0') {
        return refuse(UnsafeReason::Nul);
    }
    for part in [subfolder, filename] {
        if part.starts_with("\\\\") || part.starts_with("//") {
            return refuse(UnsafeReason::Unc);
        }
        if part.starts_with('/') || part.starts_with('\\') {
            return refuse(UnsafeReason::Absolute);
        }
    }
    if name.contains(':') {
        return refuse(UnsafeReason::Colon);
    }
    let mut path = PathBuf::new();
    for piece in name.split(['/', '\\']) {
        match piece {
            "" | "." => continue,
            ".." => return refuse(UnsafeReason::ParentDir),
            piece => path.push(piece),
        }
    }
    let names_a_file = filename
        .split(['/', '\\'])
        .any(|piece| !matches!(piece, "" | "." | ".."));
    if !names_a_file {
        return refuse(UnsafeReason::Empty);
    }
    // Belt and braces: only plain names may remain.
    if !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return refuse(UnsafeReason::Absolute);
    }
    Ok(path)
}

/// `<file>.part` beside the target.
fn part_path(target: &Path) -> PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    target.with_file_name(name)
}

/// Writes the body chunk by chunk; each chunk must come within the idle timeout.
async fn stream_to_file(
    response: &mut reqwest::Response,
    path: &Path,
    url: &Url,
    timeouts: Timeouts,
) -> Result<u64, ClientError> {
    let io_error = |action, source| ClientError::Io {
        action,
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::create(path).map_err(|e| io_error("create", e))?;
    let mut written: u64 = 0;
    loop {
        let chunk = match tokio::time::timeout(timeouts.download_idle, response.chunk()).await {
            Err(_) => {
                return Err(ClientError::Timeout {
                    url: url.to_string(),
                    secs: timeouts.download_idle.as_secs().max(1),
                });
            }
            Ok(Err(e)) => return Err(transport_error(url, &e, timeouts)),
            Ok(Ok(None)) => break,
            Ok(Ok(Some(chunk))) => chunk,
        };
        file.write_all(&chunk).map_err(|e| io_error("write", e))?;
        written += chunk.len() as u64;
    }
    file.flush().map_err(|e| io_error("write", e))?;
    Ok(written)
}

/// Up to 4 KiB of an error reply, for its message.
async fn read_short_body(response: &mut reqwest::Response, limit: Duration) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < 4096 {
        match tokio::time::timeout(limit, response.chunk()).await {
            Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body
}

fn image_mime(path: &Path) -> &'static str {
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "bmp" => "image/bmp",
        _ => "application/octet-stream",
    }
}

/// The innermost cause of an error ("Connection refused (os error 111)"): reqwest's own
/// message only says that sending failed.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

fn transport_error(url: &Url, error: &reqwest::Error, timeouts: Timeouts) -> ClientError {
    let reason = root_cause(error);
    if error.is_connect() {
        let reason = if error.is_timeout() {
            format!("no answer within {} s", timeouts.connect.as_secs().max(1))
        } else {
            reason
        };
        ClientError::Unreachable {
            url: url.to_string(),
            reason,
        }
    } else if error.is_timeout() {
        ClientError::Timeout {
            url: url.to_string(),
            secs: timeouts.request.as_secs().max(1),
        }
    } else {
        ClientError::Transport {
            url: url.to_string(),
            reason,
        }
    }
}

fn status_error(url: &Url, status: StatusCode, body: &[u8]) -> ClientError {
    let text = String::from_utf8_lossy(body);
    let first_line = text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or_default();
    let detail = if first_line.is_empty() {
        String::new()
    } else {
        format!(": {}", first_line.chars().take(200).collect::<String>())
    };
    let advice = match status.as_u16() {
        403 => {
            "The server refused access; it checks the Origin header and its own access settings. If a proxy sits in front of it, use the server's direct address"
        }
        404 => "This address has no such ComfyUI endpoint: is it a ComfyUI server, 0.8 or newer?",
        413 => "The request is larger than the server's --max-upload-size allows",
        500..=599 => "ComfyUI hit an internal error; its log says why",
        _ => "See the server's log for why",
    };
    ClientError::Status {
        url: url.to_string(),
        status: status.as_u16(),
        detail,
        advice,
    }
}

fn bad_reply(url: &Url, problem: impl std::fmt::Display) -> ClientError {
    ClientError::BadReply {
        url: url.to_string(),
        problem: problem.to_string(),
    }
}

/// A fresh id for a prompt or a websocket client: `prefix-<ms>-<pid>-<counter>-<random>`, unique
/// across processes and calls. The server uses a client-chosen prompt id verbatim, so ours is
/// known before `/prompt` answers.
pub fn new_id(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    // std's hasher keys are random per process and change with every RandomState.
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(count);
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    let random = hasher.finish();
    let id = format!(
        "{millis:x}-{:x}-{count:x}-{random:016x}",
        std::process::id()
    );
    if prefix.is_empty() {
        id
    } else {
        format!("{prefix}-{id}")
    }
}

/// What the websocket delivers, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    /// A text message (unknown types arrive as [`WsMessage::Other`]).
    Message(WsMessage),
    /// A sampler preview. `node` and `prompt_id` come only with previews that carry metadata
    /// (negotiated, type 4). Previews may be dropped when the reader falls behind.
    Preview {
        format: PreviewFormat,
        image: Vec<u8>,
        node: Option<String>,
        prompt_id: Option<String>,
    },
    /// Progress text a custom node sent for one of its nodes (binary type 3).
    NodeText { node: String, text: String },
    /// The socket dropped; reconnecting. Messages sent meanwhile are lost: after
    /// [`ServerEvent::Reconnected`], ask `/history` how the prompt is doing. A second one right
    /// before the stream ends means reconnecting was given up.
    Disconnected { reason: String },
    /// Connected again with the same client id.
    Reconnected,
}

/// How [`EventStream`] keeps its connection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamOptions {
    /// Reconnect for this long after a drop, then end the stream.
    pub give_up_after: Duration,
    /// The first wait before reconnecting; doubles after each failed try.
    pub first_retry_delay: Duration,
    pub max_retry_delay: Duration,
    /// Events buffered for a slow reader; beyond it previews are dropped, messages wait.
    pub channel_capacity: usize,
    /// How often to ping the server; `None` for never. Silence alone never ends a connection.
    pub ping_interval: Option<Duration>,
    /// The connection counts as dead when nothing, not even a pong, arrived this long after a ping.
    pub pong_timeout: Duration,
    /// Ask for previews with metadata (type 4: they name their node and prompt).
    pub preview_metadata: bool,
}

impl Default for StreamOptions {
    fn default() -> StreamOptions {
        StreamOptions {
            give_up_after: Duration::from_secs(60),
            first_retry_delay: Duration::from_millis(250),
            max_retry_delay: Duration::from_secs(5),
            channel_capacity: 256,
            ping_interval: Some(Duration::from_secs(15)),
            pong_timeout: Duration::from_secs(45),
            preview_metadata: true,
        }
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Debug, Default)]
struct Counters {
    dropped_previews: AtomicU64,
    unreadable_frames: AtomicU64,
}

/// The websocket of one client id: events in order, reconnecting with backoff by itself (0.25 s
/// doubling to 5 s, for up to a minute by default). Dropping it closes the connection.
#[derive(Debug)]
pub struct EventStream {
    events: mpsc::Receiver<ServerEvent>,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl EventStream {
    /// Opens `/ws?clientId=client_id` with the default options. Use the same id in
    /// [`Client::submit`]: the server sends a prompt's messages only to its client.
    pub async fn connect(client: &Client, client_id: &str) -> Result<EventStream, ClientError> {
        EventStream::connect_with(client, client_id, StreamOptions::default()).await
    }

    /// Opens the websocket with chosen options. The first connection must succeed; later drops
    /// are retried.
    pub async fn connect_with(
        client: &Client,
        client_id: &str,
        options: StreamOptions,
    ) -> Result<EventStream, ClientError> {
        let url = client.ws_url(client_id);
        let connect_timeout = client.timeouts().connect;
        let socket = open_socket(&url, connect_timeout, options.preview_metadata)
            .await
            .map_err(|reason| ClientError::WebSocket {
                url: url.clone(),
                reason,
            })?;
        let (sender, events) = mpsc::channel(options.channel_capacity.max(1));
        let counters = Arc::new(Counters::default());
        let reader = Reader {
            url,
            connect_timeout,
            options,
            sender,
            counters: counters.clone(),
        };
        let task = tokio::spawn(reader.run(socket));
        Ok(EventStream {
            events,
            counters,
            task,
        })
    }

    /// The next event; `None` once reconnecting was given up (after a last `Disconnected`).
    pub async fn next(&mut self) -> Option<ServerEvent> {
        self.events.recv().await
    }

    /// Previews dropped because the reader fell behind.
    pub fn dropped_previews(&self) -> u64 {
        self.counters.dropped_previews.load(Ordering::Relaxed)
    }

    /// Frames that could not be read (not JSON, a message lacking a field, a broken binary
    /// header) and were skipped.
    pub fn unreadable_frames(&self) -> u64 {
        self.counters.unreadable_frames.load(Ordering::Relaxed)
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn open_socket(
    url: &str,
    connect_timeout: Duration,
    preview_metadata: bool,
) -> Result<Socket, String> {
    // tungstenite's request carries no Origin header, which is what ComfyUI wants.
    let (mut socket, _) =
        match tokio::time::timeout(connect_timeout, tokio_tungstenite::connect_async(url)).await {
            Err(_) => {
                return Err(format!(
                    "no answer within {} s",
                    connect_timeout.as_secs().max(1)
                ));
            }
            Ok(Err(e)) => return Err(describe_ws_error(&e)),
            Ok(Ok(opened)) => opened,
        };
    if preview_metadata {
        // Must be the first frame the client sends, or the server ignores it.
        let flags = json!({"type": "feature_flags", "data": {"supports_preview_metadata": true}});
        socket
            .send(Message::text(flags.to_string()))
            .await
            .map_err(|e| describe_ws_error(&e))?;
    }
    Ok(socket)
}

fn describe_ws_error(error: &tungstenite::Error) -> String {
    match error {
        tungstenite::Error::Http(response) => {
            let status = response.status();
            if status.as_u16() == 403 {
                "the server answered 403 Forbidden (its Origin check or access settings)".into()
            } else {
                format!("the server answered HTTP {status} instead of opening a websocket")
            }
        }
        tungstenite::Error::Io(io) => io.to_string(),
        other => root_cause(other),
    }
}

/// The task behind [`EventStream`].
struct Reader {
    url: String,
    connect_timeout: Duration,
    options: StreamOptions,
    sender: mpsc::Sender<ServerEvent>,
    counters: Arc<Counters>,
}

/// Why reading one connection stopped.
enum Stop {
    Broken(String),
    /// The [`EventStream`] is gone.
    NoReader,
}

impl Reader {
    async fn run(self, mut socket: Socket) {
        loop {
            let reason = match self.read(&mut socket).await {
                Stop::NoReader => return,
                Stop::Broken(reason) => reason,
            };
            drop(socket);
            if self
                .sender
                .send(ServerEvent::Disconnected {
                    reason: reason.clone(),
                })
                .await
                .is_err()
            {
                return;
            }
            match self.reconnect().await {
                Ok(fresh) => {
                    socket = fresh;
                    if self.sender.send(ServerEvent::Reconnected).await.is_err() {
                        return;
                    }
                }
                Err(last_error) => {
                    let reason = format!(
                        "gave up reconnecting to {} after {} s (last try: {last_error}); lost connection because {reason}",
                        self.url,
                        self.options.give_up_after.as_secs_f64()
                    );
                    let _ = self.sender.send(ServerEvent::Disconnected { reason }).await;
                    return;
                }
            }
        }
    }

    /// Reads one connection until it breaks or the reader goes away.
    async fn read(&self, socket: &mut Socket) -> Stop {
        let period = self
            .options
            .ping_interval
            .unwrap_or(Duration::from_secs(3600));
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ping_sent: Option<Instant> = None;
        loop {
            tokio::select! {
                // Frames first, so a pong that waited behind a slow reader counts before the
                // ping's deadline is checked.
                biased;
                frame = socket.next() => {
                    let message = match frame {
                        None => return Stop::Broken("the server closed the connection".into()),
                        Some(Err(e)) => return Stop::Broken(describe_ws_error(&e)),
                        Some(Ok(message)) => message,
                    };
                    ping_sent = None;
                    match message {
                        Message::Text(text) => {
                            match WsMessage::parse(text.as_str()) {
                                Ok(message) => {
                                    if self.sender.send(ServerEvent::Message(message)).await.is_err() {
                                        return Stop::NoReader;
                                    }
                                }
                                Err(_) => self.unreadable(),
                            }
                        }
                        Message::Binary(bytes) => {
                            if let Some(stop) = self.binary(&bytes).await {
                                return stop;
                            }
                        }
                        Message::Close(frame) => {
                            let why = frame
                                .map(|f| format!(" (code {}, {:?})", u16::from(f.code), f.reason.as_str()))
                                .unwrap_or_default();
                            return Stop::Broken(format!("the server closed the connection{why}"));
                        }
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                    }
                }
                _ = ticks.tick(), if self.options.ping_interval.is_some() => {
                    match ping_sent {
                        Some(sent) if sent.elapsed() >= self.options.pong_timeout => {
                            return Stop::Broken(format!(
                                "no answer to a websocket ping for {} s",
                                sent.elapsed().as_secs()
                            ));
                        }
                        Some(_) => {}
                        None => {
                            if let Err(e) = socket.send(Message::Ping(Default::default())).await {
                                return Stop::Broken(describe_ws_error(&e));
                            }
                            ping_sent = Some(Instant::now());
                        }
                    }
                }
            }
        }
    }

    /// Decodes a binary frame; previews are dropped rather than waited for.
    async fn binary(&self, bytes: &[u8]) -> Option<Stop> {
        let event = match BinaryFrame::parse(bytes) {
            Err(_) => {
                self.unreadable();
                return None;
            }
            Ok(BinaryFrame::Other { .. }) => return None,
            Ok(BinaryFrame::Text { node_id, text }) => {
                return self
                    .sender
                    .send(ServerEvent::NodeText {
                        node: node_id,
                        text,
                    })
                    .await
                    .is_err()
                    .then_some(Stop::NoReader);
            }
            Ok(BinaryFrame::Preview { format, image }) => ServerEvent::Preview {
                format,
                image: image.to_vec(),
                node: None,
                prompt_id: None,
            },
            Ok(BinaryFrame::PreviewWithMetadata { metadata, image }) => {
                let field = |key: &str| {
                    metadata.get(key).and_then(|v| match v {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    })
                };
                let format = match metadata.get("image_type").and_then(Value::as_str) {
                    Some("image/png") => PreviewFormat::Png,
                    _ => PreviewFormat::Jpeg,
                };
                ServerEvent::Preview {
                    format,
                    image: image.to_vec(),
                    node: field("node_id"),
                    prompt_id: field("prompt_id"),
                }
            }
        };
        match self.sender.try_send(event) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.counters
                    .dropped_previews
                    .fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Some(Stop::NoReader),
        }
    }

    fn unreadable(&self) {
        self.counters
            .unreadable_frames
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Tries again and again with growing waits until connected or the time is up.
    async fn reconnect(&self) -> Result<Socket, String> {
        let started = Instant::now();
        let mut delay = self.options.first_retry_delay;
        let mut last_error = String::from("no try was made");
        loop {
            let left = self.options.give_up_after.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(last_error);
            }
            tokio::time::sleep(delay.min(left)).await;
            match open_socket(
                &self.url,
                self.connect_timeout,
                self.options.preview_metadata,
            )
            .await
            {
                Ok(socket) => return Ok(socket),
                Err(error) => last_error = error,
            }
            delay = (delay * 2).min(self.options.max_retry_delay);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_and_normalised() {
        for good in [
            "http://127.0.0.1:8188",
            "http://127.0.0.1:8188/",
            " http://localhost:8188 ",
        ] {
            let client = Client::new(good).unwrap();
            assert!(client.base_url().starts_with("http://"), "{good}");
            assert!(client.base_url().ends_with(":8188"), "{good}");
        }
        let client = Client::new("http://[::1]:8199/").unwrap();
        assert_eq!(client.base_url(), "http://[::1]:8199");
        assert_eq!(client.ws_url("a b"), "ws://[::1]:8199/ws?clientId=a+b");
        assert_eq!(
            client.endpoint("prompt").as_str(),
            "http://[::1]:8199/api/prompt"
        );
        assert_eq!(
            Client::new("http://example.org").unwrap().base_url(),
            "http://example.org"
        );
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        let message = |url: &str| Client::new(url).unwrap_err().to_string();
        assert!(message("https://127.0.0.1:8188").contains("only plain http://"));
        assert!(message("127.0.0.1:8188").contains("no http://"));
        assert!(message("").contains("empty"));
        assert!(message("ws://127.0.0.1:8188").contains("ws://"));
        assert!(message("http://127.0.0.1:8188/comfy").contains("path prefix"));
        assert!(message("http://user:pw@127.0.0.1:8188").contains("passwords"));
        assert!(message("http://127.0.0.1:99999").contains("Write it as http://host:port"));
        assert!(message("http://127.0.0.1:8188/?x=1").contains("query"));
    }

    #[test]
    fn safe_paths_keep_subfolders() {
        assert_eq!(
            safe_relative_path("", "ComfyUI_00001_.png").unwrap(),
            PathBuf::from("ComfyUI_00001_.png")
        );
        assert_eq!(
            safe_relative_path("video", "tiny_00002_.mp4").unwrap(),
            Path::new("video").join("tiny_00002_.mp4")
        );
        assert_eq!(
            safe_relative_path("a\\b/", "./c.png").unwrap(),
            Path::new("a").join("b").join("c.png")
        );
        assert_eq!(
            safe_relative_path("wan-pilot", "name with spaces (1).png").unwrap(),
            Path::new("wan-pilot").join("name with spaces (1).png")
        );
    }

    #[test]
    fn unsafe_paths_are_refused_with_the_reason() {
        let reason = |sub: &str, name: &str| safe_relative_path(sub, name).unwrap_err().reason;
        assert_eq!(reason("", "../x.png"), UnsafeReason::ParentDir);
        assert_eq!(reason("a/../../b", "x.png"), UnsafeReason::ParentDir);
        assert_eq!(reason("..", "x.png"), UnsafeReason::ParentDir);
        assert_eq!(reason("a\\..\\..", "x.png"), UnsafeReason::ParentDir);
        assert_eq!(reason("", "/etc/passwd"), UnsafeReason::Absolute);
        assert_eq!(reason("/tmp", "x.png"), UnsafeReason::Absolute);
        assert_eq!(reason("\\Windows", "x.png"), UnsafeReason::Absolute);
        assert_eq!(reason("", "C:\\x.png"), UnsafeReason::Colon);
        assert_eq!(reason("C:", "x.png"), UnsafeReason::Colon);
        assert_eq!(reason("", "x.png:stream"), UnsafeReason::Colon);
        assert_eq!(reason("\\\\server\\share", "x.png"), UnsafeReason::Unc);
        assert_eq!(reason("", "//server/share/x.png"), UnsafeReason::Unc);
        assert_eq!(reason("", "x\0.png"), UnsafeReason::Nul);
        assert_eq!(reason("", ""), UnsafeReason::Empty);
        assert_eq!(reason("video", ""), UnsafeReason::Empty);
        assert_eq!(reason("video", "."), UnsafeReason::Empty);
        assert_eq!(reason("video", "./"), UnsafeReason::Empty);
        let error = safe_relative_path("a", "../b.png").unwrap_err();
        assert_eq!(
            error.to_string(),
            "refusing the file name \"a/../b.png\": it contains \"..\", which would leave the download folder"
        );
    }

    #[test]
    fn ids_are_unique_and_carry_the_prefix() {
        let ids: std::collections::HashSet<String> =
            (0..10_000).map(|_| new_id("wan-pilot")).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|id| id.starts_with("wan-pilot-")));
        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..1000).map(|_| new_id("")).collect::<Vec<_>>()))
            .collect();
        let mut all = std::collections::HashSet::new();
        for thread in threads {
            for id in thread.join().unwrap() {
                assert!(!id.starts_with('-'));
                assert!(all.insert(id));
            }
        }
        // The random part differs even for ids made in the same millisecond.
        let a = new_id("p");
        let b = new_id("p");
        assert_ne!(a.rsplit('-').next(), b.rsplit('-').next());
    }

    #[test]
    fn part_files_sit_beside_their_target() {
        assert_eq!(
            part_path(Path::new("out/video/a.mp4")),
            PathBuf::from("out/video/a.mp4.part")
        );
    }
}
