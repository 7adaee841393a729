//! The ComfyUI client (app/comfy/client.rs) against servers.
//!
//! Error paths a real server cannot produce on demand (a 500, a refused connection, a websocket
//! that drops mid-run and comes back, one that hangs, a reader too slow for the previews) run
//! against a tiny scripted server in this file whose replies are the bytes recorded from a real
//! ComfyUI 0.8.0 (tests/data/comfy-protocol).
//!
//! Everything else runs against a real ComfyUI, ignored by default:
//! `WAN_PILOT_COMFYUI_URL=http://127.0.0.1:8199 cargo test --test comfy_client -- --ignored --nocapture`.
//! Those tests need the tiny-wan models and custom node the recordings used (see the recordings'
//! README); they only touch their own prompts, except `/free` and a `/queue` clear made only
//! while no one else's prompt waits.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, Notify};
use tokio_tungstenite::tungstenite::Message;
use wan_pilot::comfy::client::{
    Client, ClientError, EventStream, ServerEvent, StreamOptions, new_id,
};
use wan_pilot::comfy::protocol::{FileKind, HistoryOutcome, OutputFile, PreviewFormat, WsMessage};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/comfy-protocol")
}

fn recorded(path: &str) -> Value {
    serde_json::from_slice(&std::fs::read(data().join(path)).unwrap()).unwrap()
}

fn transcript(name: &str) -> Vec<Value> {
    std::fs::read_to_string(data().join("ws").join(format!("{name}.jsonl")))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// JSON as Python's `json.dumps` writes it (", " and ": ", non-ASCII escaped): the bytes
/// aiohttp sent, rebuilt from the recorded value.
fn python_json(value: &Value) -> Vec<u8> {
    /// Python puts ", " between array items and between object members alike.
    fn item_separator<W: ?Sized + std::io::Write>(
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }
    struct Python;
    impl serde_json::ser::Formatter for Python {
        fn begin_array_value<W: ?Sized + std::io::Write>(
            &mut self,
            writer: &mut W,
            first: bool,
        ) -> std::io::Result<()> {
            item_separator(writer, first)
        }
        fn begin_object_key<W: ?Sized + std::io::Write>(
            &mut self,
            writer: &mut W,
            first: bool,
        ) -> std::io::Result<()> {
            item_separator(writer, first)
        }
        fn begin_object_value<W: ?Sized + std::io::Write>(
            &mut self,
            writer: &mut W,
        ) -> std::io::Result<()> {
            writer.write_all(b": ")
        }
        fn write_string_fragment<W: ?Sized + std::io::Write>(
            &mut self,
            writer: &mut W,
            fragment: &str,
        ) -> std::io::Result<()> {
            for c in fragment.chars() {
                if c.is_ascii() {
                    writer.write_all(&[c as u8])?;
                } else {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        write!(writer, "\\u{unit:04x}")?;
                    }
                }
            }
            Ok(())
        }
    }
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, Python);
    serde::Serialize::serialize(value, &mut serializer).unwrap();
    out
}

/// A recorded HTTP reply as the bytes on the wire; checks the rebuilt body has the recorded length.
fn recorded_reply(path: &str) -> Vec<u8> {
    let reply = recorded(path);
    let body = match reply.get("body_text") {
        Some(text) => text.as_str().unwrap().as_bytes().to_vec(),
        None => python_json(&reply["body"]),
    };
    assert_eq!(
        body.len() as u64,
        reply["body_len"].as_u64().unwrap(),
        "{path}"
    );
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        reply["status"],
        reply["reason"].as_str().unwrap()
    )
    .into_bytes();
    for header in reply["headers"].as_array().unwrap() {
        out.extend_from_slice(
            format!(
                "{}: {}\r\n",
                header[0].as_str().unwrap(),
                header[1].as_str().unwrap()
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    out
}

/// The text frames of a recorded session, split at each reconnect: one list per connection.
fn recorded_connections(name: &str) -> Vec<Vec<Vec<u8>>> {
    let mut connections: Vec<Vec<Vec<u8>>> = Vec::new();
    for event in transcript(name) {
        match event["ev"].as_str().unwrap() {
            "ws_open" => connections.push(Vec::new()),
            "ws_text" => connections
                .last_mut()
                .unwrap()
                .push(python_json(&event["msg"])),
            _ => {}
        }
    }
    connections
}

fn preview_frame(name: &str) -> Vec<u8> {
    std::fs::read(data().join("previews").join(name)).unwrap()
}

/// What a scripted connection does.
#[derive(Clone)]
enum Script {
    /// Answer an HTTP request with these bytes.
    Http(Vec<u8>),
    /// Accept the websocket, send these frames, then drop the TCP connection.
    WsThenDrop(Vec<Message>),
    /// Accept the websocket, send these frames, wait for the notify, send more, keep it open.
    WsWaitThen(Vec<Message>, Arc<Notify>, Vec<Message>),
    /// Accept the websocket, then never read or write again (a hung server).
    WsHang,
    /// Close the TCP connection before any handshake.
    Refuse,
}

/// A loopback port whose connections a background task serves; the task ends when this drops.
struct Loopback {
    address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Loopback {
    async fn start<Serve>(serve: impl FnOnce(TcpListener) -> Serve) -> Loopback
    where
        Serve: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(serve(listener));
        Loopback { address, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A loopback server that answers the n-th websocket connection with `ws[n]` (the last repeats)
/// and every HTTP request by its path.
struct Scripted {
    listening: Loopback,
    websocket_connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl Scripted {
    async fn start(ws: Vec<Script>, http: Vec<(&'static str, Vec<u8>)>) -> Scripted {
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = count.clone();
        let listening = Loopback::start(|listener| async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let head = peek_head(&stream).await;
                let script = if head.to_ascii_lowercase().contains("upgrade: websocket") {
                    let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    ws[n.min(ws.len() - 1)].clone()
                } else {
                    let path = head
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or_default()
                        .to_string();
                    http.iter()
                        .find(|(prefix, _)| path.starts_with(prefix))
                        .map(|(_, reply)| Script::Http(reply.clone()))
                        .unwrap_or(Script::Refuse)
                };
                tokio::spawn(serve(stream, script));
            }
        })
        .await;
        Scripted {
            listening,
            websocket_connections: count,
        }
    }

    /// A server that answers only HTTP requests under `path`, with the recorded reply `recording`.
    async fn http_only(path: &'static str, recording: &str) -> Scripted {
        Scripted::start(
            vec![Script::Refuse],
            vec![(path, recorded_reply(recording))],
        )
        .await
    }

    fn url(&self) -> String {
        self.listening.url()
    }
}

/// The request head, left unread in the socket.
async fn peek_head(stream: &TcpStream) -> String {
    let mut buffer = vec![0u8; 8192];
    for _ in 0..200 {
        let n = stream.peek(&mut buffer).await.unwrap_or(0);
        let text = String::from_utf8_lossy(&buffer[..n]).to_string();
        if text.contains("\r\n\r\n") || n == 0 {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    String::new()
}

async fn serve(mut stream: TcpStream, script: Script) {
    match script {
        Script::Refuse => drop(stream),
        Script::Http(reply) => {
            // Read the head and any body the request announced, then answer.
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buffer).await.unwrap_or(0);
                if n == 0 {
                    return;
                }
                request.extend_from_slice(&buffer[..n]);
            }
            let text = String::from_utf8_lossy(&request).to_lowercase();
            let head_end = text.find("\r\n\r\n").unwrap() + 4;
            let length: usize = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let mut have = request.len() - head_end;
            while have < length {
                let n = stream.read(&mut buffer).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                have += n;
            }
            let _ = stream.write_all(&reply).await;
            let _ = stream.shutdown().await;
        }
        Script::WsThenDrop(frames) => {
            let socket = accept_and_send(stream, frames).await;
            // No close frame: the connection just dies, as when a server or network fails.
            drop(socket);
        }
        Script::WsWaitThen(first, go, then) => {
            let mut socket = accept_and_send(stream, first).await;
            // Keep reading meanwhile, so pings are answered: a quiet server, not a dead one.
            loop {
                tokio::select! {
                    _ = go.notified() => break,
                    frame = socket.next() => if frame.is_none() { return },
                }
            }
            for frame in then {
                socket.send(frame).await.unwrap();
            }
            while socket.next().await.is_some() {}
        }
        Script::WsHang => {
            let socket = tokio_tungstenite::accept_async(stream).await.unwrap();
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(socket);
        }
    }
}

/// Accepts the websocket handshake on `stream` and sends `frames`.
async fn accept_and_send(
    stream: TcpStream,
    frames: Vec<Message>,
) -> tokio_tungstenite::WebSocketStream<TcpStream> {
    let mut socket = tokio_tungstenite::accept_async(stream).await.unwrap();
    for frame in frames {
        socket.send(frame).await.unwrap();
    }
    socket
}

fn text_frames(frames: &[Vec<u8>]) -> Vec<Message> {
    frames
        .iter()
        .map(|f| Message::text(String::from_utf8(f.clone()).unwrap()))
        .collect()
}

async fn next_event(stream: &mut EventStream, within: Duration) -> Option<ServerEvent> {
    tokio::time::timeout(within, stream.next())
        .await
        .expect("an event within the deadline")
}

#[tokio::test]
async fn a_server_error_names_the_endpoint_and_says_what_to_do() {
    let server =
        Scripted::http_only("/api/prompt", "http/post_api_prompt_malformed_json.json").await;
    let client = Client::new(&server.url()).unwrap();
    let error = client
        .submit(&json!({}), "c", "p", None)
        .await
        .expect_err("a 500");
    let message = error.to_string();
    assert!(
        matches!(error, ClientError::Status { status: 500, .. }),
        "{message}"
    );
    assert!(
        message.contains(&format!("{}/api/prompt", server.url())),
        "{message}"
    );
    assert!(message.contains("500 Internal Server Error"), "{message}");
    assert!(message.contains("its log says why"), "{message}");
}

#[tokio::test]
async fn a_refusal_becomes_one_line_per_input() {
    let server = Scripted::http_only(
        "/api/prompt",
        "http/post_api_prompt_400_several_reasons.json",
    )
    .await;
    let client = Client::new(&server.url()).unwrap();
    match client.submit(&json!({}), "c", "p", None).await {
        Err(ClientError::Refused { reasons, .. }) => assert_eq!(
            reasons,
            [
                "EmptyHunyuanLatentVideo #74: Required input is missing: length",
                "KSamplerAdvanced #81: Failed to convert an input value to a FLOAT value: cfg, abc, could not convert string to float: 'abc'",
                "KSamplerAdvanced #81: Value 0 smaller than min of 1: steps",
            ]
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_missing_file_and_an_unsafe_name_are_refused_before_writing() {
    let server = Scripted::http_only("/api/view", "http/get_api_view_404.json").await;
    let client = Client::new(&server.url()).unwrap();
    let dest = std::env::temp_dir().join(new_id("wan-pilot-client-missing"));
    let missing = OutputFile {
        filename: "does_not_exist.png".into(),
        subfolder: String::new(),
        kind: FileKind::Output,
        format: None,
    };
    let error = client.download(&missing, &dest).await.unwrap_err();
    assert!(matches!(error, ClientError::FileMissing { .. }), "{error}");
    assert!(error.to_string().contains("does_not_exist.png"), "{error}");
    let escaping = OutputFile {
        subfolder: "../..".into(),
        ..missing
    };
    let error = client.download(&escaping, &dest).await.unwrap_err();
    assert!(matches!(error, ClientError::UnsafeName { .. }), "{error}");
    assert!(!dest.exists(), "nothing was written");
}

#[tokio::test]
async fn a_refused_connection_names_the_address() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let client = Client::new(&format!("http://{address}")).unwrap();
    let error = client.system_stats().await.unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, ClientError::Unreachable { .. }),
        "{message}"
    );
    assert!(
        message.contains(&format!("{address}/api/system_stats")),
        "{message}"
    );
    assert!(message.contains("Is the server running"), "{message}");
    let error = EventStream::connect(&client, "c").await.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, ClientError::WebSocket { .. }), "{message}");
    assert!(
        message.contains(&format!("ws://{address}/ws?clientId=c")),
        "{message}"
    );
}

/// The recorded reconnect session: the socket dies at the first progress, the server refuses
/// twice, then takes the client back; the run's end and its history arrive as recorded.
#[tokio::test]
async fn a_dropped_websocket_reconnects_with_backoff_and_history_recovers_the_run() {
    let connections = recorded_connections("reconnect_mid_run");
    assert_eq!(connections.len(), 2);
    let server = Scripted::start(
        vec![
            Script::WsThenDrop(text_frames(&connections[0])),
            Script::Refuse,
            Script::Refuse,
            Script::WsWaitThen(
                text_frames(&connections[1]),
                Arc::new(Notify::new()),
                vec![],
            ),
        ],
        vec![(
            "/api/history/wan-pilot-rec-reconnect-0001",
            recorded_reply("ws/reconnect_mid_run.history.json"),
        )],
    )
    .await;
    let client = Client::new(&server.url()).unwrap();
    let mut stream = EventStream::connect(&client, "5b0d6a8e-6f1e-4c55-9a63-2f4f3d0c1a04")
        .await
        .unwrap();
    let mut before = Vec::new();
    let dropped_at = loop {
        match next_event(&mut stream, Duration::from_secs(5))
            .await
            .unwrap()
        {
            ServerEvent::Message(message) => before.push(message),
            ServerEvent::Disconnected { reason } => {
                assert!(!reason.is_empty());
                break Instant::now();
            }
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(before.len(), connections[0].len());
    assert!(matches!(before.last(), Some(WsMessage::Progress { .. })));
    assert_eq!(
        next_event(&mut stream, Duration::from_secs(10)).await,
        Some(ServerEvent::Reconnected)
    );
    // Two refused tries after waits of 0.25 s and 0.5 s, the third after 1 s more.
    let waited = dropped_at.elapsed();
    assert!(waited >= Duration::from_millis(1700), "{waited:?}");
    assert_eq!(
        server
            .websocket_connections
            .load(std::sync::atomic::Ordering::SeqCst),
        4
    );
    let mut after = Vec::new();
    while after.len() < connections[1].len() {
        match next_event(&mut stream, Duration::from_secs(5))
            .await
            .unwrap()
        {
            ServerEvent::Message(message) => after.push(message),
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(after[0], WsMessage::Status { .. }));
    assert_eq!(
        after[1],
        WsMessage::Executing {
            prompt_id: None,
            node: Some("87".into())
        }
    );
    assert_eq!(
        after.last(),
        Some(&WsMessage::Executing {
            prompt_id: Some("wan-pilot-rec-reconnect-0001".into()),
            node: None
        })
    );
    let entry = client
        .history("wan-pilot-rec-reconnect-0001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.outcome(), HistoryOutcome::Success);
    assert_eq!(entry.outputs["90"].list("images").len(), 33);
    assert_eq!(stream.unreadable_frames(), 0);
}

#[tokio::test]
async fn reconnecting_gives_up_after_the_configured_time() {
    let status = text_frames(&recorded_connections("plain_run")[0][..1]);
    let server = Scripted::start(vec![Script::WsThenDrop(status), Script::Refuse], vec![]).await;
    let client = Client::new(&server.url()).unwrap();
    let options = StreamOptions {
        give_up_after: Duration::from_millis(1500),
        ..StreamOptions::default()
    };
    let mut stream = EventStream::connect_with(&client, "c", options)
        .await
        .unwrap();
    assert!(matches!(
        next_event(&mut stream, Duration::from_secs(5)).await,
        Some(ServerEvent::Message(WsMessage::Status { .. }))
    ));
    assert!(matches!(
        next_event(&mut stream, Duration::from_secs(5)).await,
        Some(ServerEvent::Disconnected { .. })
    ));
    let started = Instant::now();
    match next_event(&mut stream, Duration::from_secs(10)).await {
        Some(ServerEvent::Disconnected { reason }) => {
            assert!(reason.contains("gave up reconnecting"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(1000));
    assert_eq!(next_event(&mut stream, Duration::from_secs(5)).await, None);
}

/// Silence is not death while the server answers pings; a server that stops answering is.
#[tokio::test]
async fn pings_tell_a_quiet_server_from_a_hung_one() {
    let status = text_frames(&recorded_connections("compiled_run")[0][..1]);
    let go = Arc::new(Notify::new());
    let later = text_frames(&recorded_connections("compiled_run")[0][1..2]);
    let quiet = Scripted::start(
        vec![Script::WsWaitThen(status.clone(), go.clone(), later)],
        vec![],
    )
    .await;
    let options = StreamOptions {
        ping_interval: Some(Duration::from_millis(200)),
        pong_timeout: Duration::from_millis(1500),
        ..StreamOptions::default()
    };
    let client = Client::new(&quiet.url()).unwrap();
    let mut stream = EventStream::connect_with(&client, "c", options)
        .await
        .unwrap();
    assert!(matches!(
        next_event(&mut stream, Duration::from_secs(5)).await,
        Some(ServerEvent::Message(_))
    ));
    // Fifteen ping intervals, twice the pong timeout, of silence: nothing may arrive, in
    // particular no Disconnected.
    assert!(
        tokio::time::timeout(Duration::from_millis(3000), stream.next())
            .await
            .is_err()
    );
    go.notify_one();
    assert!(matches!(
        next_event(&mut stream, Duration::from_secs(5)).await,
        Some(ServerEvent::Message(WsMessage::Status { .. }))
    ));

    let hung = Scripted::start(vec![Script::WsHang], vec![]).await;
    let client = Client::new(&hung.url()).unwrap();
    let mut stream = EventStream::connect_with(&client, "c", options)
        .await
        .unwrap();
    let started = Instant::now();
    match next_event(&mut stream, Duration::from_secs(15)).await {
        Some(ServerEvent::Disconnected { reason }) => {
            assert!(reason.contains("no answer to a websocket ping"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(1500));
}

/// A reader that falls behind loses previews, never messages; previews decode with their node.
#[tokio::test]
async fn a_slow_reader_loses_previews_but_no_message() {
    let session = &recorded_connections("plain_run")[0];
    let with_metadata = preview_frame("plain_run_type4_1.bin");
    let plain = preview_frame("compiled_run_type1_1.bin");
    let mut frames = text_frames(&session[..1]);
    for _ in 0..10 {
        frames.push(Message::binary(with_metadata.clone()));
        frames.push(Message::binary(plain.clone()));
    }
    frames.extend(text_frames(&session[1..]));
    let server = Scripted::start(
        vec![Script::WsWaitThen(frames, Arc::new(Notify::new()), vec![])],
        vec![],
    )
    .await;
    let client = Client::new(&server.url()).unwrap();
    let options = StreamOptions {
        channel_capacity: 4,
        ..StreamOptions::default()
    };
    let mut stream = EventStream::connect_with(&client, "c", options)
        .await
        .unwrap();
    // The status and three previews fill the buffer; the other 17 previews find it full.
    let deadline = Instant::now() + Duration::from_secs(10);
    while stream.dropped_previews() < 17 {
        assert!(
            Instant::now() < deadline,
            "{} dropped",
            stream.dropped_previews()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut messages = Vec::new();
    let mut previews = Vec::new();
    while messages.len() < session.len() {
        match next_event(&mut stream, Duration::from_secs(5))
            .await
            .unwrap()
        {
            ServerEvent::Message(message) => messages.push(message),
            ServerEvent::Preview {
                format,
                image,
                node,
                prompt_id,
            } => previews.push((format, image, node, prompt_id)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(stream.dropped_previews(), 17);
    assert_eq!(previews.len(), 3);
    let expected: Vec<WsMessage> = session
        .iter()
        .map(|f| WsMessage::parse(std::str::from_utf8(f).unwrap()).unwrap())
        .collect();
    assert_eq!(messages, expected);
    let (format, image, node, prompt_id) = &previews[0];
    assert_eq!(*format, PreviewFormat::Jpeg);
    assert_eq!(&image[..3], b"\xFF\xD8\xFF");
    assert_eq!(node.as_deref(), Some("81"));
    assert_eq!(
        prompt_id.as_deref(),
        Some("8cdb1a71-9c8c-4af0-b378-69b7a949306e")
    );
    let (format, image, node, _) = &previews[1];
    assert_eq!(*format, PreviewFormat::Jpeg);
    assert_eq!(image.len(), plain.len() - 8);
    assert_eq!(*node, None);
}

// ---- Against a real ComfyUI -------------------------------------------------------------------

/// One real-server test at a time: they share the server's queue.
static REAL_SERVER: Mutex<()> = Mutex::const_new(());

fn real_client() -> Client {
    Client::new(&common::comfyui_url()).unwrap()
}

fn ms(since: Instant) -> String {
    format!("{:.1} ms", since.elapsed().as_secs_f64() * 1000.0)
}

/// A PNG's size from its IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    (be(16), be(20))
}

/// The next event before `deadline`; `missed` says what did not come when it passes.
async fn next_before(
    stream: &mut EventStream,
    deadline: Instant,
    missed: impl FnOnce() -> String,
) -> ServerEvent {
    let left = deadline.saturating_duration_since(Instant::now());
    tokio::time::timeout(left, stream.next())
        .await
        .unwrap_or_else(|_| panic!("{}", missed()))
        .expect("the stream stays open")
}

/// Events until `executing` with no node for `prompt_id`, with a deadline.
async fn follow(stream: &mut EventStream, prompt_id: &str, within: Duration) -> Vec<ServerEvent> {
    let deadline = Instant::now() + within;
    let mut events = Vec::new();
    loop {
        let event = next_before(stream, deadline, || {
            format!("{prompt_id} did not finish in {within:?}: {events:?}")
        })
        .await;
        let done = matches!(&event, ServerEvent::Message(WsMessage::Executing { prompt_id: Some(p), node: None }) if p == prompt_id);
        events.push(event);
        if done {
            return events;
        }
    }
}

/// Waits for the first event that `pick` accepts.
async fn wait_for(
    stream: &mut EventStream,
    within: Duration,
    what: &str,
    pick: impl Fn(&ServerEvent) -> bool,
) {
    let deadline = Instant::now() + within;
    loop {
        let event = next_before(stream, deadline, || format!("no {what} within {within:?}")).await;
        if pick(&event) {
            return;
        }
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(new_id(&format!("wan-pilot-client-{tag}")));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
#[ignore = "needs a running ComfyUI: set WAN_PILOT_COMFYUI_URL and pass --ignored"]
async fn real_system_stats_and_cached_object_info() {
    let _serial = REAL_SERVER.lock().await;
    let client = real_client();
    let started = Instant::now();
    let stats = client.system_stats().await.unwrap();
    println!("system_stats: {}", ms(started));
    assert!(stats.comfyui_version.is_some_and(|v| !v.is_empty()));
    assert!(stats.pytorch_version.is_some());
    assert!(!stats.devices.is_empty());
    assert!(stats.argv.iter().any(|a| a == "--port"), "{:?}", stats.argv);

    let started = Instant::now();
    let info = client.object_info().await.unwrap();
    println!("object_info (fetched): {}", ms(started));
    assert!(info.get("EmptyImage").is_some() && info.get("SaveImage").is_some());
    let started = Instant::now();
    let again = client.clone().object_info().await.unwrap();
    println!("object_info (cached, from a clone): {}", ms(started));
    assert!(Arc::ptr_eq(&info, &again));
    client.forget_object_info();
    let fresh = client.object_info().await.unwrap();
    assert!(!Arc::ptr_eq(&info, &fresh));
    assert_eq!(info, fresh);
}

#[tokio::test]
#[ignore = "needs a running ComfyUI: set WAN_PILOT_COMFYUI_URL and pass --ignored"]
async fn real_run_history_download_and_upload() {
    let _serial = REAL_SERVER.lock().await;
    let client = real_client();
    let client_id = new_id("wan-pilot-test");
    let prompt_id = new_id("wan-pilot-test-run");
    // A colour of its own, so the server runs it instead of replaying a cached result.
    let color = u64::from(std::process::id()) * 7919 % 0xFF_FFFF;
    let prompt = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 3, "color": color}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "wan-pilot-test/client"}}
    });
    let started = Instant::now();
    let mut stream = EventStream::connect(&client, &client_id).await.unwrap();
    println!("websocket open: {}", ms(started));
    let started = Instant::now();
    let accepted = client
        .submit(&prompt, &client_id, &prompt_id, None)
        .await
        .unwrap();
    println!("submit: {}", ms(started));
    assert_eq!(accepted.prompt_id, prompt_id);
    assert!(accepted.ignored_outputs().is_empty());
    let events = follow(&mut stream, &prompt_id, Duration::from_secs(60)).await;
    println!(
        "submit → executing null: {} ({} events)",
        ms(started),
        events.len()
    );
    let messages: Vec<&WsMessage> = events
        .iter()
        .filter_map(|e| match e {
            ServerEvent::Message(m) => Some(m),
            _ => None,
        })
        .collect();
    assert!(messages.contains(&&WsMessage::ExecutionStart {
        prompt_id: prompt_id.clone()
    }));
    assert!(messages.contains(&&WsMessage::ExecutionSuccess {
        prompt_id: prompt_id.clone()
    }));
    assert!(
        messages
            .iter()
            .any(|m| matches!(m, WsMessage::Executed { node, .. } if node == "2"))
    );

    let started = Instant::now();
    let entry = client
        .history(&prompt_id)
        .await
        .unwrap()
        .expect("history is written");
    println!("history: {}", ms(started));
    assert_eq!(entry.outcome(), HistoryOutcome::Success);
    let files: Vec<OutputFile> = entry.files().map(|(_, f)| f.clone()).collect();
    assert_eq!(files.len(), 3);
    assert!(
        files
            .iter()
            .all(|f| f.subfolder == "wan-pilot-test" && f.kind == FileKind::Output)
    );

    let dest = temp_dir("run");
    let started = Instant::now();
    let mut saved = Vec::new();
    for file in &files {
        saved.push(client.download(file, &dest).await.unwrap());
    }
    println!("download of 3 PNGs: {}", ms(started));
    for (path, file) in saved.iter().zip(&files) {
        assert_eq!(path, &dest.join("wan-pilot-test").join(&file.filename));
        assert_eq!(png_size(&std::fs::read(path).unwrap()), (64, 48));
    }
    let leftovers: Vec<_> = std::fs::read_dir(dest.join("wan-pilot-test"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // One fixed name in the server's input folder, overwritten each time.
    let upload = dest.join("wan-pilot-client-test.png");
    std::fs::copy(&saved[0], &upload).unwrap();
    let started = Instant::now();
    let uploaded = client.upload_image(&upload, true).await.unwrap();
    println!("upload_image: {}", ms(started));
    assert_eq!(uploaded.name, "wan-pilot-client-test.png");
    assert_eq!(uploaded.kind, FileKind::Input);
    // Same name and content without overwrite: the server keeps the name (no " (1)").
    let again = client.upload_image(&upload, false).await.unwrap();
    assert_eq!(again.name, uploaded.name);
    let back = client
        .download(
            &OutputFile {
                filename: uploaded.name.clone(),
                subfolder: uploaded.subfolder.clone(),
                kind: FileKind::Input,
                format: None,
            },
            &dest.join("back"),
        )
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(back).unwrap(),
        std::fs::read(&upload).unwrap()
    );
    std::fs::remove_dir_all(&dest).unwrap();
}

/// The tiny Wan prompt the recordings used, smaller, with its own seed.
fn tiny_wan_prompt(seed: u64) -> Value {
    let mut prompt: Value = recorded("prompts/interrupt_and_clear.api.json");
    prompt["81"]["inputs"]["noise_seed"] = json!(seed);
    prompt["74"]["inputs"]["width"] = json!(160);
    prompt["74"]["inputs"]["height"] = json!(96);
    prompt["74"]["inputs"]["length"] = json!(9);
    prompt
}

#[tokio::test]
#[ignore = "needs a running ComfyUI with the tiny-wan models: set WAN_PILOT_COMFYUI_URL and pass --ignored"]
async fn real_interrupt_queue_delete_clear_and_free() {
    let _serial = REAL_SERVER.lock().await;
    let client = real_client();
    let client_id = new_id("wan-pilot-test");
    let mut stream = EventStream::connect(&client, &client_id).await.unwrap();
    let seed = u64::from(std::process::id());
    let ids: Vec<String> = (0..4)
        .map(|i| new_id(&format!("wan-pilot-test-{i}")))
        .collect();
    let (a, b, c, d) = (&ids[0], &ids[1], &ids[2], &ids[3]);
    for (i, id) in [a, b, c].into_iter().enumerate() {
        client
            .submit(&tiny_wan_prompt(seed + i as u64), &client_id, id, None)
            .await
            .unwrap();
    }
    let started = Instant::now();
    wait_for(&mut stream, Duration::from_secs(120), "progress of A", |e| {
        matches!(e, ServerEvent::Message(WsMessage::Progress { prompt_id: Some(p), .. }) if p == a)
    })
    .await;
    println!("submit → first sampler step: {}", ms(started));
    let queue = client.queue().await.unwrap();
    assert!(queue.running.iter().any(|item| &item.prompt_id == a));
    assert!(queue.pending.iter().any(|item| &item.prompt_id == b));

    let started = Instant::now();
    client
        .delete_from_queue(std::slice::from_ref(b))
        .await
        .unwrap();
    println!("queue delete: {}", ms(started));
    assert!(!client.queue().await.unwrap().contains(b));

    let started = Instant::now();
    client.interrupt(Some(a)).await.unwrap();
    wait_for(&mut stream, Duration::from_secs(30), "A interrupted", |e| {
        matches!(e, ServerEvent::Message(WsMessage::ExecutionInterrupted { prompt_id, .. }) if prompt_id == a)
    })
    .await;
    println!("interrupt → execution_interrupted: {}", ms(started));
    follow(&mut stream, a, Duration::from_secs(30)).await;
    assert!(matches!(
        client.history(a).await.unwrap().unwrap().outcome(),
        HistoryOutcome::Interrupted { .. }
    ));

    // C runs next; D waits behind it and goes with a queue clear, made only while no one
    // else's prompt waits.
    wait_for(&mut stream, Duration::from_secs(60), "C started", |e| {
        matches!(e, ServerEvent::Message(WsMessage::ExecutionStart { prompt_id }) if prompt_id == c)
    })
    .await;
    client
        .submit(&tiny_wan_prompt(seed + 3), &client_id, d, None)
        .await
        .unwrap();
    let queue = client.queue().await.unwrap();
    if queue.pending.iter().all(|item| &item.prompt_id == d) {
        client.clear_queue().await.unwrap();
    } else {
        println!("someone else's prompt waits: deleting D instead of clearing the queue");
        client
            .delete_from_queue(std::slice::from_ref(d))
            .await
            .unwrap();
    }
    assert!(!client.queue().await.unwrap().contains(d));
    client.interrupt(Some(c)).await.unwrap();
    follow(&mut stream, c, Duration::from_secs(60)).await;
    assert!(matches!(
        client.history(c).await.unwrap().unwrap().outcome(),
        HistoryOutcome::Interrupted { .. }
    ));
    assert!(client.history(b).await.unwrap().is_none());
    assert!(client.history(d).await.unwrap().is_none());

    // A global interrupt only while nothing runs, so no one else's run is stopped.
    if client.queue().await.unwrap().running.is_empty() {
        client.interrupt(None).await.unwrap();
    }
    let started = Instant::now();
    client.free(true, true).await.unwrap();
    println!("free: {}", ms(started));
}

#[tokio::test]
#[ignore = "needs a running ComfyUI: set WAN_PILOT_COMFYUI_URL and pass --ignored"]
async fn real_refusals_read_as_one_line_per_input() {
    let _serial = REAL_SERVER.lock().await;
    let client = real_client();
    let prompt = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 0, "height": 48, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "wan-pilot-test/refused"}}
    });
    let started = Instant::now();
    let error = client
        .submit(
            &prompt,
            "wan-pilot-test",
            &new_id("wan-pilot-test-refused"),
            None,
        )
        .await
        .unwrap_err();
    println!("refused submit: {}", ms(started));
    match &error {
        ClientError::Refused { reasons, .. } => assert_eq!(
            reasons,
            &["EmptyImage #1: Value 0 smaller than min of 1: width"]
        ),
        other => panic!("{other}"),
    }
    assert!(error.to_string().contains("Fix these inputs"), "{error}");
    let unknown = json!({"9": {"class_type": "NoSuchNodeFromAMissingPack", "inputs": {}}});
    match client
        .submit(&unknown, "wan-pilot-test", &new_id("p"), None)
        .await
    {
        Err(ClientError::Refused { reasons, .. }) => assert!(
            reasons[0].contains("NoSuchNodeFromAMissingPack does not exist"),
            "{reasons:?}"
        ),
        other => panic!("{other:?}"),
    }
}

/// A real run through a TCP relay that is cut at the first sampler step: the stream reconnects
/// to the same server, the run's end arrives, and history has the result. Previews come with
/// their node (type 4).
#[tokio::test]
#[ignore = "needs a running ComfyUI with the tiny-wan models: set WAN_PILOT_COMFYUI_URL and pass --ignored"]
async fn real_reconnect_through_a_cut_connection() {
    let _serial = REAL_SERVER.lock().await;
    let target = real_client()
        .base_url()
        .trim_start_matches("http://")
        .to_string();
    let relay = Relay::start(target).await;
    let client = Client::new(&relay.url()).unwrap();
    let client_id = new_id("wan-pilot-test");
    let prompt_id = new_id("wan-pilot-test-reconnect");
    let mut stream = EventStream::connect(&client, &client_id).await.unwrap();
    let started = Instant::now();
    client
        .submit(
            &tiny_wan_prompt(u64::from(std::process::id()) + 100),
            &client_id,
            &prompt_id,
            Some(json!({"preview_method": "auto"})),
        )
        .await
        .unwrap();
    // Until the first sampler step; its preview comes just before it (type 4).
    let mut previews = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let event = next_before(&mut stream, deadline, || "no sampler step in time".into()).await;
        match event {
            ServerEvent::Message(WsMessage::Progress { .. }) => break,
            preview @ ServerEvent::Preview { .. } => previews.push(preview),
            _ => {}
        }
    }
    relay.cut().await;
    let cut_at = Instant::now();
    // After the reconnect, history tells whether the end was missed while away.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut events = Vec::new();
    let mut reconnected = false;
    loop {
        let event = next_before(&mut stream, deadline, || {
            "the run did not end in time".into()
        })
        .await;
        match &event {
            ServerEvent::Disconnected { reason } => {
                assert!(!reconnected);
                println!(
                    "cut reported after {} ms: {reason}",
                    cut_at.elapsed().as_millis()
                );
            }
            ServerEvent::Reconnected => {
                reconnected = true;
                println!(
                    "reconnected {} ms after the cut",
                    cut_at.elapsed().as_millis()
                );
                if client.history(&prompt_id).await.unwrap().is_some() {
                    println!("the run ended while the socket was down");
                    break;
                }
            }
            ServerEvent::Message(WsMessage::Executing {
                prompt_id: Some(p),
                node: None,
            }) if *p == prompt_id => break,
            _ => {}
        }
        events.push(event);
    }
    assert!(reconnected);
    println!(
        "submit → end across a cut: {}; {} events after the cut",
        ms(started),
        events.len()
    );
    let before_cut = previews.len();
    previews.extend(
        events
            .into_iter()
            .filter(|e| matches!(e, ServerEvent::Preview { .. })),
    );
    println!(
        "previews: {before_cut} before the cut, {} after",
        previews.len() - before_cut
    );
    assert!(!previews.is_empty());
    for preview in &previews {
        if let ServerEvent::Preview {
            format,
            image,
            node,
            prompt_id: p,
        } = preview
        {
            assert_eq!(*format, PreviewFormat::Jpeg);
            assert_eq!(&image[..2], b"\xFF\xD8");
            assert!(node.is_some());
            assert_eq!(p.as_deref(), Some(prompt_id.as_str()));
        }
    }
    let entry = client.history(&prompt_id).await.unwrap().unwrap();
    assert_eq!(entry.outcome(), HistoryOutcome::Success);
    assert!(entry.files().count() > 0);
}

/// A TCP relay to the real server whose open connections can be cut.
struct Relay {
    listening: Loopback,
    connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Relay {
    async fn start(target: String) -> Relay {
        let connections = Arc::new(Mutex::new(Vec::new()));
        let open = connections.clone();
        let listening = Loopback::start(|listener| async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let relay = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                open.lock().await.push(relay);
            }
        })
        .await;
        Relay {
            listening,
            connections,
        }
    }

    fn url(&self) -> String {
        self.listening.url()
    }

    /// Drops every open connection at once, as a network failure would.
    async fn cut(&self) {
        for connection in self.connections.lock().await.drain(..) {
            connection.abort();
        }
    }
}
