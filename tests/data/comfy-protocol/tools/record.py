#!/usr/bin/env python3
"""Record real ComfyUI protocol transcripts (HTTP, websocket, process start/stop) as fixtures.

Needs Python 3.10+ and `websocket-client` (pip install websocket-client) for `session`.
Every transcript line is one JSON object with "t" = seconds since the recorder started (monotonic).

Subcommands (see README.md next to tools/ for the exact invocations used):
  http METHOD PATH OUT.json [--body JSON | --body-file F] [--raw-body TEXT] [--header K:V ...]
        [--max-body N] [--head N]
      one request; OUT.json = {request, status, reason, headers, elapsed_s, body_len, body|body_text|body_head_hex}
  session --out X.jsonl --prompt P.json [options]
      open /ws?clientId=..., optionally negotiate feature flags, POST /api/prompt, record every frame until the
      prompt ends (terminal message + executing{node:null}) and --tail seconds more, then GET /api/history/<id>.
  launch --out X.jsonl --port N --stop SIGINT|SIGTERM|none [--extra ARG ...]
      start a ComfyUI child process, record every stdout/stderr line, poll /api/system_stats until it answers with
      our marker in argv, then stop it with the signal and record the shutdown lines and exit code.
"""
import argparse
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

T0 = time.monotonic()
BASE = os.environ.get("COMFY_URL", "http://127.0.0.1:8199")

BIN_EVENTS = {1: "PREVIEW_IMAGE", 2: "UNENCODED_PREVIEW_IMAGE", 3: "TEXT", 4: "PREVIEW_IMAGE_WITH_METADATA"}
IMG_FORMATS = {1: "JPEG", 2: "PNG"}


def now():
    return round(time.monotonic() - T0, 4)


class Log:
    def __init__(self, path):
        self.f = open(path, "w", encoding="utf-8") if path else None
        self.lock = threading.Lock()

    def write(self, ev, **kw):
        rec = {"t": now(), "ev": ev}
        rec.update(kw)
        line = json.dumps(rec, ensure_ascii=False)
        with self.lock:
            if self.f:
                self.f.write(line + "\n")
                self.f.flush()
            short = line if len(line) < 220 else line[:217] + "..."
            print(short, file=sys.stderr)
        return rec

    def close(self):
        if self.f:
            self.f.close()


def http(method, path, body=None, raw=None, headers=None, base=None, timeout=60):
    """Returns (status, reason, headers list, body bytes, elapsed)."""
    url = (base or BASE) + path
    data = None
    h = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode()
        h.setdefault("Content-Type", "application/json")
    elif raw is not None:
        data = raw.encode() if isinstance(raw, str) else raw
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    t = time.monotonic()
    try:
        r = urllib.request.urlopen(req, timeout=timeout)
        status, reason, hdrs, payload = r.status, r.reason, r.getheaders(), r.read()
    except urllib.error.HTTPError as e:
        status, reason, hdrs, payload = e.code, e.reason, e.headers.items(), e.read()
    return status, reason, [list(x) for x in hdrs], payload, round(time.monotonic() - t, 4)


def decode_body(payload, max_body=None, head=None):
    out = {"body_len": len(payload)}
    if head is not None:
        out["body_head_hex"] = payload[:head].hex()
        return out
    try:
        txt = payload.decode("utf-8")
    except UnicodeDecodeError:
        out["body_head_hex"] = payload[:64].hex()
        return out
    if max_body is not None and len(payload) > max_body:
        out["body_truncated_to"] = max_body
        out["body_text"] = txt[:max_body]
        return out
    try:
        out["body"] = json.loads(txt) if txt.strip() else None
        if out["body"] is None:
            out["body_text"] = txt
            del out["body"]
    except json.JSONDecodeError:
        out["body_text"] = txt
    return out


def cmd_http(a):
    body = None
    if a.body is not None:
        body = json.loads(a.body)
    if a.body_file:
        body = json.load(open(a.body_file))
    headers = dict(h.split(":", 1) for h in a.header)
    st, reason, hdrs, payload, el = http(a.method, a.path, body=body, raw=a.raw_body, headers=headers)
    rec = {"request": {"method": a.method, "url": BASE + a.path, "headers": headers}}
    if body is not None:
        rec["request"]["body"] = body if not a.body_file else {"from_file": os.path.basename(a.body_file)}
    if a.raw_body is not None:
        rec["request"]["raw_body"] = a.raw_body
    rec.update({"status": st, "reason": reason, "headers": hdrs, "elapsed_s": el})
    rec.update(decode_body(payload, a.max_body, a.head))
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(rec, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(a.method, a.path, st, len(payload), "bytes", el, "s", file=sys.stderr)


# ----------------------------------------------------------------------------------------------- websocket session
def describe_binary(data):
    d = {"binary": True, "len": len(data), "first_bytes_hex": data[:32].hex()}
    if len(data) >= 4:
        et = struct.unpack(">I", data[:4])[0]
        hdr = {"event_type": et, "event_name": BIN_EVENTS.get(et, "?")}
        if et in (1, 2) and len(data) >= 8:
            fmt = struct.unpack(">I", data[4:8])[0]
            hdr.update(image_format=fmt, image_format_name=IMG_FORMATS.get(fmt, "?"), payload_offset=8,
                       payload_magic_hex=data[8:12].hex())
        elif et == 4 and len(data) >= 8:
            ml = struct.unpack(">I", data[4:8])[0]
            hdr.update(metadata_len=ml, metadata=json.loads(data[8:8 + ml]), payload_offset=8 + ml,
                       payload_magic_hex=data[8 + ml:12 + ml].hex())
        elif et == 3 and len(data) >= 8:
            nl = struct.unpack(">I", data[4:8])[0]
            hdr.update(node_id=data[8:8 + nl].decode("utf-8", "replace"),
                       text=data[8 + nl:].decode("utf-8", "replace"))
        d["header"] = hdr
    return d


class Session:
    def __init__(self, a, log):
        import websocket  # websocket-client
        self.websocket = websocket
        self.a = a
        self.log = log
        self.client_id = a.client_id or str(uuid.uuid4())
        self.cond = threading.Condition()
        self.msgs = []  # parsed text messages (for waiting)
        self.previews_saved = {}
        self.ws = None
        self.reader = None

    def connect(self):
        url = BASE.replace("http", "ws", 1) + "/ws?clientId=" + self.client_id
        self.log.write("ws_connect", url=url)
        # suppress_origin: a native client sends no Origin header (server.py origin check)
        self.ws = self.websocket.create_connection(url, suppress_origin=True, timeout=None)
        self.log.write("ws_open", status=self.ws.getstatus(), headers=self.ws.getheaders())
        if self.a.feature_flags:
            msg = {"type": "feature_flags", "data": {"supports_preview_metadata": True}}
            self.ws.send(json.dumps(msg))
            self.log.write("ws_send", msg=msg)
        ws = self.ws
        self.reader = threading.Thread(target=self.read_loop, args=(ws,), daemon=True)
        self.reader.start()

    def read_loop(self, ws):
        WS = self.websocket.ABNF
        try:
            while True:
                op, data = ws.recv_data()
                if op == WS.OPCODE_TEXT:
                    txt = data.decode("utf-8")
                    msg = json.loads(txt)
                    self.log.write("ws_text", msg=msg)
                    with self.cond:
                        self.msgs.append(msg)
                        self.cond.notify_all()
                elif op == WS.OPCODE_BINARY:
                    d = describe_binary(data)
                    et = d.get("header", {}).get("event_type")
                    if self.a.save_previews and self.previews_saved.get(et, 0) < self.a.max_previews:
                        n = self.previews_saved.get(et, 0) + 1
                        self.previews_saved[et] = n
                        name = f"{self.a.save_previews}_type{et}_{n}.bin"
                        with open(name, "wb") as f:
                            f.write(data)
                        d["saved_as"] = os.path.basename(name)
                    self.log.write("ws_binary", **d)
                    with self.cond:
                        self.msgs.append({"type": "__binary__", "event_type": et})
                        self.cond.notify_all()
                elif op == WS.OPCODE_CLOSE:
                    self.log.write("ws_close_frame", data_hex=data.hex())
                    break
        except Exception as e:  # closed by us or by the server
            self.log.write("ws_reader_end", error=f"{type(e).__name__}: {e}")

    def close(self, note=""):
        self.log.write("ws_client_close", note=note)
        try:
            self.ws.close()
        except Exception:
            pass
        self.reader.join(5)

    def wait_for(self, pred, timeout):
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                for m in self.msgs:
                    if pred(m):
                        return m
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def http(self, method, path, body=None, raw=None, log_body=True, body_note=None, head=None):
        req = {"method": method, "path": path}
        if body is not None:
            req["body"] = body if log_body else body_note
        if raw is not None:
            req["raw_body"] = raw
        self.log.write("http_request", **req)
        st, reason, hdrs, payload, el = http(method, path, body=body, raw=raw)
        rec = {"method": method, "path": path, "status": st, "reason": reason, "elapsed_s": el,
               "headers": hdrs}
        rec.update(decode_body(payload, head=head))
        self.log.write("http_response", **rec)
        return st, rec


def load_prompt(path, sets):
    p = json.load(open(path))
    if "prompt" in p and isinstance(p["prompt"], dict):
        p = p["prompt"]
    for s in sets:
        k, v = s.split("=", 1)
        node, inp = k.rsplit(".", 1)
        if inp == "class_type":  # NODE.class_type=TYPE (creates the node if needed)
            p.setdefault(node, {"inputs": {}})["class_type"] = v
            continue
        try:
            v = json.loads(v)
        except json.JSONDecodeError:
            pass
        if inp == "__delete__":
            del p[node]
        else:
            p.setdefault(node, {"inputs": {}})["inputs"][inp] = v
    return p


def cmd_session(a):
    log = Log(a.out)
    prompts = [load_prompt(a.prompt, a.set)]
    if a.second_prompt:
        prompts.append(load_prompt(a.second_prompt, a.second_set))
    if a.save_prompt:
        json.dump(prompts[0], open(a.save_prompt, "w"), indent=1)
    s = Session(a, log)
    log.write("note", text=a.note or "", client_id=s.client_id)
    s.connect()
    s.wait_for(lambda m: m.get("type") == "status", 10)
    if a.feature_flags:
        s.wait_for(lambda m: m.get("type") == "feature_flags", 10)
    time.sleep(a.pre)
    ids = []
    for i, p in enumerate(prompts):
        body = {"prompt": p, "client_id": s.client_id}
        if a.prompt_id and i == 0:
            body["prompt_id"] = a.prompt_id
        if a.preview_method:
            body["extra_data"] = {"preview_method": a.preview_method}
        note = dict(body)
        note["prompt"] = f"<API prompt, {len(p)} nodes: see {os.path.basename(a.save_prompt or a.prompt)}>"
        st, rec = s.http("POST", "/api/prompt", body=body, log_body=False, body_note=note)
        if st != 200:
            log.write("note", text="prompt rejected; stopping")
            s.close()
            log.close()
            return
        ids.append(rec["body"]["prompt_id"])
    pid = ids[0]

    if a.on_progress:
        m = s.wait_for(lambda m: m.get("type") == "progress" and m["data"].get("prompt_id") == pid, a.timeout)
        for act in a.on_progress.split(","):
            if act == "get_queue":
                s.http("GET", "/api/queue")
            elif act == "get_prompt":
                s.http("GET", "/api/prompt")
            elif act == "clear_queue":
                s.http("POST", "/api/queue", body={"clear": True})
            elif act == "interrupt":
                s.http("POST", "/api/interrupt", body={"prompt_id": pid})
            elif act == "interrupt_global":
                s.http("POST", "/api/interrupt", raw=b"")
            elif act == "reconnect":
                s.close(note="simulated drop")
                time.sleep(a.reconnect_gap)
                s.msgs.clear()
                s.connect()
            elif act.startswith("sleep"):
                time.sleep(float(act[5:]))

    terminal = ("execution_success", "execution_error", "execution_interrupted")
    m = s.wait_for(lambda m: m.get("type") in terminal and m["data"].get("prompt_id") == pid, a.timeout)
    if m is None:
        log.write("note", text="TIMEOUT waiting for terminal message")
    m = s.wait_for(lambda m: m.get("type") == "executing" and m["data"].get("node") is None
                   and m["data"].get("prompt_id") == pid, 30)
    time.sleep(a.tail)
    for act in (a.after or "").split(","):
        if act == "free":
            s.http("POST", "/api/free", body={"unload_models": True, "free_memory": True})
        elif act == "get_queue":
            s.http("GET", "/api/queue")
        elif act.startswith("sleep"):
            time.sleep(float(act[5:]))
    if a.after:
        time.sleep(a.tail)
    s.close(note="end of recording")
    log.close()

    # history and one /view, as separate files
    if a.history_out:
        st, reason, hdrs, payload, el = http("GET", f"/api/history/{pid}")
        rec = {"request": {"method": "GET", "url": f"{BASE}/api/history/{pid}"}, "status": st, "reason": reason,
               "headers": hdrs, "elapsed_s": el}
        rec.update(decode_body(payload))
        json.dump(rec, open(a.history_out, "w"), indent=1, ensure_ascii=False)
        if a.view_out and st == 200:
            outs = rec["body"].get(pid, {}).get("outputs", {})
            files = [f for o in outs.values() for k, v in o.items() if k != "animated" for f in v
                     if isinstance(f, dict) and "filename" in f]
            if a.view_ext:
                files = [f for f in files if f["filename"].endswith(a.view_ext)] or files
            if files:
                f = files[0]
                q = urllib.parse.urlencode({"filename": f["filename"], "subfolder": f.get("subfolder", ""),
                                            "type": f.get("type", "output")})
                st, reason, hdrs, payload, el = http("GET", "/api/view?" + q)
                rec = {"request": {"method": "GET", "url": f"{BASE}/api/view?{q}"}, "status": st, "reason": reason,
                       "headers": hdrs, "elapsed_s": el}
                rec.update(decode_body(payload, head=64))
                json.dump(rec, open(a.view_out, "w"), indent=1)
    print("prompt_ids", ids, file=sys.stderr)


# ----------------------------------------------------------------------------------------------- process lifecycle
def cmd_launch(a):
    log = Log(a.out)
    marker_dir = a.marker_dir or f"/tmp/comfy-recorder-{a.port}"
    os.makedirs(os.path.join(marker_dir, "user"), exist_ok=True)
    argv = [a.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(a.port), "--disable-auto-launch",
            "--temp-directory", marker_dir, "--output-directory", os.path.join(marker_dir, "output"),
            "--user-directory", os.path.join(marker_dir, "user")] + a.extra
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8")
    log.write("spawn", argv=argv, cwd=a.comfy, env_added={"PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"})
    p = subprocess.Popen(argv, cwd=a.comfy, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    log.write("spawned", pid=p.pid)
    first_line = {}

    def pump(stream, name):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            first_line.setdefault(name, now())
            log.write("line", stream=name, line=line)
            if "To see the GUI go to" in line:
                first_line.setdefault("gui_line", now())
        log.write("eof", stream=name)

    th = [threading.Thread(target=pump, args=(p.stdout, "stdout"), daemon=True),
          threading.Thread(target=pump, args=(p.stderr, "stderr"), daemon=True)]
    for t in th:
        t.start()
    base = f"http://127.0.0.1:{a.port}"
    ready = None
    foreign_logged = False
    deadline = time.monotonic() + a.ready_timeout
    while time.monotonic() < deadline and p.poll() is None:
        try:
            st, reason, hdrs, payload, el = http("GET", "/api/system_stats", base=base, timeout=2)
            body = json.loads(payload)
            sargv = body.get("system", {}).get("argv", [])
            if marker_dir in sargv:
                ready = now()
                log.write("ready", via="/api/system_stats", status=st, argv=sargv)
                if a.stats_out:
                    json.dump(body, open(a.stats_out, "w"), indent=1)
                break
            elif not foreign_logged:
                foreign_logged = True
                log.write("port_answered_by_other_server", status=st, argv=sargv,
                          note="system_stats answered but argv lacks our marker")
        except Exception as e:
            pass
        time.sleep(a.poll)
    if p.poll() is not None:
        for t in th:
            t.join(5)
        log.write("exited_before_ready", returncode=p.returncode)
    elif ready is not None and a.stop != "none":
        if a.post_prompt:  # a run in flight when the signal comes
            body = {"prompt": load_prompt(a.post_prompt, []), "client_id": "wan-pilot-recorder"}
            st, reason, hdrs, payload, el = http("POST", "/api/prompt", body=body, base=base)
            log.write("http_post_prompt", status=st, body=json.loads(payload))
        time.sleep(a.hold)
        try:  # which signals the child ignores / catches (hex masks from /proc/PID/status), and its threads
            st = dict(l.split(":\t", 1) for l in open(f"/proc/{p.pid}/status").read().splitlines() if ":\t" in l)
            log.write("proc_status", pid=p.pid, SigIgn=st.get("SigIgn"), SigCgt=st.get("SigCgt"),
                      Threads=st.get("Threads"), VmRSS=st.get("VmRSS", "").strip())
        except OSError:
            pass
        sig = getattr(signal, a.stop)
        log.write("send_signal", signal=a.stop, pid=p.pid)
        ts = now()
        p.send_signal(sig)
        try:
            rc = p.wait(a.stop_timeout)
            for t in th:
                t.join(5)
            log.write("exited", returncode=rc, seconds_after_signal=round(now() - ts, 3))
        except subprocess.TimeoutExpired:
            log.write("still_running_after", seconds=a.stop_timeout)
            os.killpg(p.pid, signal.SIGKILL)
            log.write("exited", returncode=p.wait(), after="SIGKILL to process group")
    else:
        log.write("not_ready_in_time", seconds=a.ready_timeout)
        os.killpg(p.pid, signal.SIGKILL)
        log.write("exited", returncode=p.wait(), after="SIGKILL to process group")
    # port free again?
    try:
        http("GET", "/api/system_stats", base=base, timeout=2)
        port_state = "answering"
    except Exception as e:
        port_state = f"refused ({type(e).__name__})"
    log.write("summary", first_stderr_line_s=first_line.get("stderr"), gui_line_s=first_line.get("gui_line"),
              ready_s=ready, port_after=port_state, returncode=p.returncode)
    log.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("http")
    h.add_argument("method")
    h.add_argument("path")
    h.add_argument("out")
    h.add_argument("--body")
    h.add_argument("--body-file")
    h.add_argument("--raw-body")
    h.add_argument("--header", action="append", default=[])
    h.add_argument("--max-body", type=int)
    h.add_argument("--head", type=int, help="store only the first N bytes (hex)")
    s = sub.add_parser("session")
    s.add_argument("--out", required=True)
    s.add_argument("--prompt", required=True)
    s.add_argument("--set", action="append", default=[], help="NODE.INPUT=JSON_VALUE (NODE.__delete__=1 drops a node)")
    s.add_argument("--save-prompt", help="write the exact prompt that was POSTed here")
    s.add_argument("--second-prompt", help="queue this right after the first (to have a pending item)")
    s.add_argument("--second-set", action="append", default=[])
    s.add_argument("--client-id")
    s.add_argument("--prompt-id", help="our own prompt_id (else the server makes one)")
    s.add_argument("--preview-method", help="extra_data.preview_method")
    s.add_argument("--feature-flags", action="store_true", help="send feature_flags first (binary type 4 previews)")
    s.add_argument("--on-progress", help="actions at the first progress message: get_queue,get_prompt,clear_queue,"
                                         "interrupt,interrupt_global,reconnect,sleepN")
    s.add_argument("--reconnect-gap", type=float, default=1.0)
    s.add_argument("--after", help="actions after the prompt ended: free,get_queue,sleepN")
    s.add_argument("--pre", type=float, default=0.5)
    s.add_argument("--tail", type=float, default=3.0)
    s.add_argument("--timeout", type=float, default=600)
    s.add_argument("--save-previews", help="path prefix for the first --max-previews binary frames of each type")
    s.add_argument("--max-previews", type=int, default=1)
    s.add_argument("--history-out")
    s.add_argument("--view-out")
    s.add_argument("--view-ext")
    s.add_argument("--note")
    l = sub.add_parser("launch")
    l.add_argument("--out", required=True)
    l.add_argument("--port", type=int, required=True)
    l.add_argument("--stop", default="SIGINT", choices=["SIGINT", "SIGTERM", "none"])
    l.add_argument("--comfy", required=True, help="the ComfyUI folder")
    l.add_argument("--python", default=".venv/bin/python")
    l.add_argument("--marker-dir", help="temp/output/user root; also the argv marker (default /tmp/comfy-recorder-PORT)")
    l.add_argument("--extra", nargs="*", default=[])
    l.add_argument("--ready-timeout", type=float, default=180)
    l.add_argument("--poll", type=float, default=0.25)
    l.add_argument("--hold", type=float, default=2.0)
    l.add_argument("--stop-timeout", type=float, default=20)
    l.add_argument("--stats-out")
    l.add_argument("--post-prompt", help="once ready, POST this API prompt, then wait --hold s and send the signal")
    a = ap.parse_args()
    {"http": cmd_http, "session": cmd_session, "launch": cmd_launch}[a.cmd](a)


if __name__ == "__main__":
    main()
