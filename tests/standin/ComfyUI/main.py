#!/usr/bin/env python3
"""A stand-in for ComfyUI 0.8.0, for wan-pilot's tests.

It imitates what a real ComfyUI 0.8.0 says, as recorded in tests/data/comfy-protocol/: the
command line (`--help`, argparse errors), the boot log on stderr, the HTTP routes (`/X` and
`/api/X`), the `/ws` websocket with its JSON messages and binary previews, the execution order
and messages of a submitted prompt, `/history` entries, and output files named as ComfyUI names
them. The recordings are read at run time, so they stay the one source of truth.

Nothing is computed: samplers sleep per step, previews are recorded JPEG frames, images are
solid-colour PNGs, videos are a copy of a recorded MP4. `standin-scenario.json` next to this
file makes it misbehave on purpose (slow boot, crash, hang, out of memory, websocket drop,
a grandchild process, signals); tests/standin/README.md lists the keys and every known
difference from the real server.

Python 3.11+ standard library only.
"""

import argparse
import base64
import bisect
import email.utils
import hashlib
import json
import mimetypes
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
COMFYUI_VERSION = "0.8.0"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OOM_TIPS = ("This error means you ran out of memory on your GPU.\n\nTIPS: If the workflow worked "
            "before you might have accidentally set the batch_size to a large number.")


# ---------------------------------------------------------------------------------------------
# Scenario, recordings, state

def load_scenario():
    try:
        with open(os.path.join(HERE, "standin-scenario.json"), encoding="utf-8") as f:
            scenario = json.load(f)
    except FileNotFoundError:
        return {}
    if not isinstance(scenario, dict):
        sys.stderr.write("stand-in: standin-scenario.json must hold a JSON object\n")
        os._exit(3)
    return scenario


SCENARIO = load_scenario()


def opt(key, default):
    value = SCENARIO.get(key)
    return default if value is None else value


def find_repo():
    candidates = [SCENARIO.get("repo_root"), os.environ.get("WAN_PILOT_STANDIN_REPO"),
                  os.path.join(HERE, "..", "..", "..")]
    for candidate in candidates:
        if candidate and os.path.isfile(os.path.join(
                candidate, "tests", "data", "comfy-protocol", "process", "main_help.txt")):
            return os.path.abspath(candidate)
    sys.stderr.write("stand-in: cannot find the wan-pilot checkout with the recordings; set "
                     "repo_root in standin-scenario.json or WAN_PILOT_STANDIN_REPO\n")
    os._exit(3)


REPO = find_repo()
REC = os.path.join(REPO, "tests", "data", "comfy-protocol")


def rec_path(*parts):
    return os.path.join(REC, *parts)


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class State:
    """Counts kept across restarts of one install (boots, runs), for `crash_boots`/`oom_runs`."""
    path = os.path.join(HERE, "standin-state.json")

    def __init__(self):
        try:
            self.data = read_json(self.path)
        except (OSError, ValueError):
            self.data = {}
        self.lock = threading.Lock()

    def bump(self, key):
        with self.lock:
            self.data[key] = int(self.data.get(key, 0)) + 1
            tmp = self.path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(self.data, f)
            os.replace(tmp, self.path)
            return self.data[key]


STATE = State()
HUNG = threading.Event()


def hang_forever():
    # Short sleeps: a signal delivered to another thread only runs its Python handler once the
    # main thread wakes up.
    while True:
        time.sleep(0.1)


# ---------------------------------------------------------------------------------------------
# Logging: ComfyUI logs everything to stderr (stdout with --log-stdout)

LOG_LOCK = threading.RLock()  # re-entrant: the SIGINT handler logs from the main thread
LOG_STREAM = sys.stderr


def log(*lines):
    with LOG_LOCK:
        for line in lines:
            LOG_STREAM.write(line + "\n")
        LOG_STREAM.flush()


def log_raw(text):
    with LOG_LOCK:
        LOG_STREAM.write(text)
        LOG_STREAM.flush()


# ---------------------------------------------------------------------------------------------
# Command line: built from the recorded `main.py --help`, errors print its usage block

HELP_TEXT = open(rec_path("process", "main_help.txt"), encoding="utf-8").read()
USAGE_TEXT = HELP_TEXT[:HELP_TEXT.index("\n\n") + 1]
INT_FLAGS = {"--port", "--preview-size", "--cuda-device", "--default-device", "--cache-lru"}
FLOAT_FLAGS = {"--reserve-vram", "--max-upload-size", "--cache-ram"}
DIRECTORY_FLAGS = {"--user-directory", "--front-end-root"}  # ComfyUI checks these exist


def existing_directory(path):
    if not os.path.exists(path):
        raise argparse.ArgumentTypeError(f"The path '{path}' does not exist.")
    if not os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"'{path}' is not a directory.")
    return path


class RecordedParser(argparse.ArgumentParser):
    def error(self, message):
        sys.stderr.write(USAGE_TEXT)
        sys.stderr.write(f"main.py: error: {message}\n")
        sys.stderr.flush()
        sys.exit(2)


class PrintHelp(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        sys.stdout.write(HELP_TEXT)
        sys.stdout.flush()
        sys.exit(0)


def exclusive_groups(usage):
    """`[--a | --b X | --c]` groups of the usage block, as lists of flags."""
    groups, depth, start = [], 0, 0
    for i, ch in enumerate(usage):
        if ch == "[":
            depth += 1
            if depth == 1:
                start = i + 1
        elif ch == "]":
            depth -= 1
            if depth == 0 and " | " in usage[start:i]:
                groups.append([part.split()[0] for part in usage[start:i].split(" | ")])
    return groups


def build_parser():
    parser = RecordedParser(prog="main.py", add_help=False)
    parser.add_argument("-h", "--help", action=PrintHelp, nargs=0)
    options = HELP_TEXT[HELP_TEXT.index("\noptions:\n"):]
    specs = {}
    for line in options.splitlines():
        match = re.match(r"^  (--[A-Za-z0-9_-]+)((?: [^ ]+)*)(?:  +.*)?$", line)
        if match:
            specs[match.group(1)] = match.group(2).split()
    containers = {}
    for group in exclusive_groups(USAGE_TEXT):
        container = parser.add_mutually_exclusive_group()
        for flag in group:
            containers[flag] = container
    for flag, metavar in specs.items():
        target = containers.get(flag, parser)
        kwargs = {}
        if flag in INT_FLAGS:
            kwargs["type"] = int
        elif flag in FLOAT_FLAGS:
            kwargs["type"] = float
        elif flag in DIRECTORY_FLAGS:
            kwargs["type"] = existing_directory
        text = " ".join(metavar)
        if not metavar:
            target.add_argument(flag, action="store_true")
            continue
        if len(metavar) >= 2 and metavar[-1].endswith("...]"):
            kwargs["nargs"] = "*" if metavar[0].startswith("[") else "+"
        elif text.startswith("[{"):
            kwargs.update(nargs="?", choices=text[2:-2].split(","))
        elif text.startswith("[") and "," in text:
            kwargs["choices"] = text[1:-1].split(",")
        elif text.startswith("["):
            kwargs.update(nargs="?", const="0.0.0.0,::" if flag == "--listen" else True)
        elif text.startswith("{"):
            kwargs["choices"] = text[1:-1].split(",")
        target.add_argument(flag, **kwargs)
    return parser


# ---------------------------------------------------------------------------------------------
# Node definitions (assets/node_defs.json, the recorded /object_info) and validation

def load_node_defs():
    snapshot = read_json(os.path.join(REPO, "assets", "node_defs.json"))
    pack_of = {name: pack for pack, names in snapshot.get("pack_nodes", {}).items() for name in names}
    defs = {}
    for name, entry in snapshot["nodes"].items():
        full = {key: entry[key] for key in ("input", "input_order", "output", "output_is_list",
                                             "output_name") if key in entry}
        full["name"] = name
        full["display_name"] = entry.get("display_name", name)
        full["description"] = entry.get("description", "")
        pack = pack_of.get(name, "comfyui")
        full["python_module"] = "nodes" if pack == "comfyui" else f"custom_nodes.{pack}"
        full["category"] = entry.get("category", "")
        full["output_node"] = bool(entry.get("output_node", False))
        full["output_tooltips"] = []
        for key in ("output_matchtypes", "deprecated", "experimental", "api_node"):
            if key in entry:
                full[key] = entry[key]
        defs[name] = full
    # tiny-wan's test node, installed in the recorded server (its /object_info entry).
    defs["ZeroWanConditioning"] = {
        "input": {"required": {"tokens": ["INT", {"default": 16, "min": 1, "max": 512}],
                               "seed": ["INT", {"default": 0, "min": 0, "max": 2147483648}]}},
        "input_order": {"required": ["tokens", "seed"]}, "output": ["CONDITIONING"],
        "output_is_list": [False], "output_name": ["CONDITIONING"], "name": "ZeroWanConditioning",
        "display_name": "ZeroWanConditioning", "description": "",
        "python_module": "custom_nodes.zero_wan_conditioning", "category": "testing", "output_node": False}
    # Classes in custom_nodes/ (wan-pilot installs its own node there) take their recorded
    # /object_info entry when the checkout has one, else a permissive stand-in definition.
    recorded = {}
    recorded_path = os.path.join(REPO, "assets", "comfyui", "object_info.json")
    if os.path.isfile(recorded_path):
        recorded = read_json(recorded_path)
    for name in custom_node_classes():
        defs.setdefault(name, recorded.get(name) or permissive_def(name))
    return defs


def permissive_def(name):
    """A custom node class this stand-in cannot import: any inputs, one output of any type
    (MODEL for wan-pilot's own compile node, which patches a model)."""
    out = "MODEL" if "Compile" in name else "*"
    return {"input": {"required": {}, "optional": {}}, "input_order": {"required": []},
            "output": [out], "output_is_list": [False], "output_name": [out],
            "name": name, "display_name": name, "description": "", "python_module":
            "custom_nodes", "category": "custom", "output_node": False, "output_tooltips": []}


def custom_node_classes():
    """Class names of NODE_CLASS_MAPPINGS literals in custom_nodes/ (read, never imported)."""
    import ast
    names, folder = [], os.path.join(HERE, "custom_nodes")
    for base, _dirs, files in os.walk(folder):
        for file in files:
            if not file.endswith(".py"):
                continue
            try:
                with open(os.path.join(base, file), encoding="utf-8") as f:
                    tree = ast.parse(f.read())
            except (OSError, SyntaxError, ValueError):
                continue
            for node in ast.walk(tree):
                if not isinstance(node, ast.Assign):
                    continue
                for target in node.targets:
                    if getattr(target, "id", "") == "NODE_CLASS_MAPPINGS" and isinstance(node.value, ast.Dict):
                        names += [k.value for k in node.value.keys
                                  if isinstance(k, ast.Constant) and isinstance(k.value, str)]
                    elif (isinstance(target, ast.Subscript) and getattr(target.value, "id", "")
                          == "NODE_CLASS_MAPPINGS" and isinstance(target.slice, ast.Constant)):
                        names.append(str(target.slice.value))
    return names


def is_link(value):
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], int) and not isinstance(value[1], bool))


def error_entry(kind, message, details, extra=None):
    return {"type": kind, "message": message, "details": details, "extra_info": extra or {}}


FILE_EXTENSIONS = (".safetensors", ".gguf", ".pt", ".pth", ".ckpt", ".bin", ".sft", ".onnx")


class Validator:
    """What ComfyUI's /prompt checks before queueing, with the same error shapes."""

    def __init__(self, comfy, prompt):
        self.comfy, self.prompt, self.done = comfy, prompt, {}

    def node(self, node_id):
        """(valid, own errors); upstream failures make a node invalid without errors of its own."""
        if node_id in self.done:
            return self.done[node_id]
        self.done[node_id] = (True, [])  # cycles are not followed twice
        node = self.prompt[node_id]
        definition = self.comfy.defs[node["class_type"]]
        inputs = node.get("inputs", {})
        errors, valid = [], True
        for section in ("required", "optional"):
            for name, spec in definition["input"].get(section, {}).items():
                kind = spec[0] if spec else "*"
                options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                config = [kind, options]
                if name not in inputs:
                    if section == "required":
                        errors.append(error_entry("required_input_missing", "Required input is missing",
                                                  name, {"input_name": name}))
                    continue
                value = inputs[name]
                if isinstance(value, list):
                    if len(value) != 2:
                        errors.append(error_entry(
                            "bad_linked_input", "Bad linked input, must be a length-2 list of "
                            "[node_id, slot_index]", name,
                            {"input_name": name, "input_config": config, "received_value": value}))
                        continue
                    source = self.prompt[str(value[0])]  # KeyError: reported by the caller
                    outputs = self.comfy.defs[source["class_type"]]["output"]
                    received = outputs[value[1]] if 0 <= value[1] < len(outputs) else "*"
                    if not types_match(received, kind):
                        errors.append(error_entry(
                            "return_type_mismatch", "Return type mismatch between linked nodes",
                            f"{name}, received_type({received}) mismatch input_type({kind})",
                            {"input_name": name, "input_config": config, "received_type": received,
                             "linked_node": value}))
                        continue
                    if not self.node(str(value[0]))[0]:
                        valid = False
                    continue
                error = self.value_error(node["class_type"], name, kind, options, config, value, inputs)
                if error:
                    errors.append(error)
        result = (valid and not errors, errors)
        self.done[node_id] = result
        return result

    def value_error(self, class_type, name, kind, options, config, value, inputs):
        converters = {"INT": int, "FLOAT": float}
        if isinstance(kind, str) and kind in converters:
            try:
                value = inputs[name] = converters[kind](value)
            except (TypeError, ValueError) as ex:
                return error_entry("invalid_input_type",
                                   f"Failed to convert an input value to a {kind} value",
                                   f"{name}, {value}, {ex}",
                                   {"input_name": name, "input_config": config,
                                    "received_value": value, "exception_message": str(ex)})
            for bound, word, kind_name in (("min", "smaller than min", "value_smaller_than_min"),
                                           ("max", "bigger than max", "value_bigger_than_max")):
                limit = options.get(bound)
                if limit is not None and (value < limit if bound == "min" else value > limit):
                    return error_entry(kind_name, f"Value {value} {word} of {limit}", name,
                                       {"input_name": name, "input_config": config,
                                        "received_value": value})
            return None
        choices = kind if isinstance(kind, list) else options.get("options") if kind == "COMBO" else None
        if class_type == "LoadImage" and name == "image":
            path = self.comfy.annotated_path(str(value), "input")
            if not (path and os.path.isfile(path)):
                return error_entry("custom_validation_failed", "Custom validation failed for node",
                                   f"image - Invalid image file: {value}", {"input_name": name})
            return None
        if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
            return None
        missing = value in opt("missing_models", [])
        file_like = isinstance(value, str) and value.lower().endswith(FILE_EXTENSIONS)
        if missing or (value not in choices and choices and not file_like):
            listed = f"(list of length {len(choices)})" if len(choices) > 20 else str(choices)
            return error_entry("value_not_in_list", "Value not in list", f"{name}: '{value}' not in {listed}",
                               {"input_name": name, "input_config": None if len(choices) > 20 else config,
                                "received_value": value})
        return None

    def run(self):
        """(error or None, good outputs, node_errors), as POST /prompt reports them."""
        prompt = self.prompt
        if isinstance(prompt, list):
            prompt = self.prompt = {}
        if not isinstance(prompt, dict):
            raise ValueError("the prompt is not an object")
        for node_id, node in prompt.items():
            if not isinstance(node, dict) or "class_type" not in node:
                return error_entry("invalid_prompt", "Cannot execute because a node is missing the "
                                   "class_type property.", f"Node ID '#{node_id}'"), [], {}
            if node["class_type"] not in self.comfy.defs:
                return error_entry("invalid_prompt", f"Cannot execute because node {node['class_type']} "
                                   "does not exist.", f"Node ID '#{node_id}'"), [], {}
        outputs = [n for n, node in prompt.items() if self.comfy.defs[node["class_type"]]["output_node"]]
        if not outputs:
            return error_entry("prompt_no_outputs", "Prompt has no outputs", ""), [], {}
        good, node_errors, own_reasons = [], {}, []
        for output in outputs:
            try:
                valid, reasons = self.node(output)
            except (KeyError, IndexError, TypeError) as ex:
                valid, reasons = False, [error_entry(
                    "exception_during_validation", "Exception when validating node", str(ex),
                    {"exception_type": type(ex).__name__, "traceback": []})]
                self.done[output] = (False, reasons)
            if valid:
                good.append(output)
                continue
            own_reasons += reasons
            log(f"Failed to validate prompt for output {output}:")
            for node_id, (ok, errors) in self.done.items():
                if not ok and errors:
                    entry = node_errors.setdefault(node_id, {
                        "errors": errors, "dependent_outputs": [],
                        "class_type": prompt[node_id]["class_type"]})
                    entry["dependent_outputs"].append(output)
            log("Output will be ignored")
        if not good:
            details = "\n".join(f"{r['message']}: {r['details']}" for r in own_reasons)
            return error_entry("prompt_outputs_failed_validation", "Prompt outputs failed validation",
                               details), [], node_errors
        return None, good, node_errors


def types_match(received, wanted):
    if not isinstance(received, str) or not isinstance(wanted, str):
        return True  # combos and dynamic V3 inputs are not type-checked
    if "*" in (received, wanted) or wanted.startswith("COMFY_"):
        return True
    return bool(set(received.split(",")) & set(wanted.split(",")))


# ---------------------------------------------------------------------------------------------
# Output files

def png_bytes(width, height, rgb, texts):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    row = b"\x00" + bytes(rgb) * width
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    for key, value in texts:
        out += chunk(b"tEXt", key.encode("latin-1") + b"\x00" + value.encode("latin-1", "replace"))
    return out + chunk(b"IDAT", zlib.compress(row * height, 6)) + chunk(b"IEND", b"")


def png_size(path):
    try:
        with open(path, "rb") as f:
            head = f.read(24)
        if head[:8] == b"\x89PNG\r\n\x1a\n":
            return struct.unpack(">II", head[16:24])
    except OSError:
        pass
    return None


def next_counter(folder, base):
    pattern = re.compile(re.escape(base) + r"_(\d+)(?=[_.-]|$)")
    best = 0
    for name in os.listdir(folder) if os.path.isdir(folder) else []:
        match = pattern.match(name)
        if match:
            best = max(best, int(match.group(1)))
    return best + 1


def save_location(prefix, root, width, height):
    """(subfolder, base name, folder) for a filename_prefix, refusing to leave `root`."""
    now = time.localtime()
    for key, value in (("%width%", width), ("%height%", height), ("%year%", now.tm_year),
                       ("%month%", f"{now.tm_mon:02}"), ("%day%", f"{now.tm_mday:02}"),
                       ("%hour%", f"{now.tm_hour:02}"), ("%minute%", f"{now.tm_min:02}"),
                       ("%second%", f"{now.tm_sec:02}")):
        prefix = prefix.replace(key, str(value))
    normal = os.path.normpath(prefix)
    subfolder, base = os.path.dirname(normal), os.path.basename(normal)
    folder = os.path.abspath(os.path.join(root, subfolder))
    if os.path.commonpath((root, folder)) != root:
        raise NodeFailure("Exception", "**** ERROR: Saving image outside the output folder is not allowed.")
    os.makedirs(folder, exist_ok=True)
    return subfolder.replace(os.sep, "/"), base, folder


# ---------------------------------------------------------------------------------------------
# Websocket (RFC 6455), one per /ws connection

class WsConn:
    def __init__(self, sock, sid):
        self.sock, self.sid = sock, sid
        self.lock = threading.Lock()
        self.flags = {}
        self.alive = True

    def send_frame(self, opcode, payload):
        size = len(payload)
        if size < 126:
            header = struct.pack(">BB", 0x80 | opcode, size)
        elif size < 65536:
            header = struct.pack(">BBH", 0x80 | opcode, 126, size)
        else:
            header = struct.pack(">BBQ", 0x80 | opcode, 127, size)
        with self.lock:
            if not self.alive:
                return
            try:
                self.sock.sendall(header + payload)
            except OSError:
                self.alive = False

    def send_json(self, message):
        self.send_frame(1, json.dumps(message).encode("utf-8"))

    def drop(self):
        """The connection dies without a close frame, as when a network path fails."""
        with self.lock:
            self.alive = False
            try:
                self.sock.shutdown(2)
            except OSError:
                pass


def read_frame(rfile):
    """(opcode, payload, fin) of the next client frame, or None at end of stream."""
    head = rfile.read(2)
    if len(head) < 2:
        return None
    fin, opcode, masked, size = head[0] >> 7, head[0] & 0x0F, head[1] >> 7, head[1] & 0x7F
    if size == 126:
        size = struct.unpack(">H", rfile.read(2))[0]
    elif size == 127:
        size = struct.unpack(">Q", rfile.read(8))[0]
    mask = rfile.read(4) if masked else b"\x00\x00\x00\x00"
    data = rfile.read(size)
    if len(data) < size:
        return None
    if masked:
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return opcode, data, fin


# ---------------------------------------------------------------------------------------------
# The server: queue, history, websocket fan-out, execution

SAMPLERS = {"KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced",
            "WanVideoSampler", "WanMoeKSampler", "WanMoeKSamplerAdvanced"}
IMAGE_SAVERS = {"SaveImage": ("output", "ComfyUI"), "PreviewImage": ("temp", None),
                "SaveImageKJ": ("output", "ComfyUI")}
VIDEO_SAVERS = {"SaveVideo": ("video/ComfyUI", "mp4"), "SaveWEBM": ("ComfyUI", "webm"),
                "SaveAnimatedWEBP": ("ComfyUI", "webp"), "SaveAnimatedPNG": ("ComfyUI", "png")}


class Interrupted(Exception):
    def __init__(self, node_id):
        super().__init__(node_id)
        self.node_id = node_id


class NodeFailure(Exception):
    def __init__(self, exception_type, message, traceback_lines=None):
        super().__init__(message)
        self.exception_type, self.message = exception_type, message
        self.traceback = traceback_lines or []


class Run:
    """One prompt's execution: what was executed, the progress_state map, the step count."""

    def __init__(self, item):
        self.number, self.prompt_id, self.prompt, self.extra, self.outputs = item
        self.client = self.extra.get("client_id")
        self.executed, self.messages, self.ui, self.meta, self.state = [], [], {}, {}, {}
        self.step = 0
        self.failed_node = next(iter(self.prompt), None)
        self.first_sampler = True
        self.has_sampler = False


class Comfy:
    def __init__(self, args, dirs):
        self.args, self.dirs = args, dirs
        self.defs = load_node_defs()
        self.object_info = None
        self.lock = threading.RLock()
        self.wake = threading.Condition(self.lock)
        self.pending, self.running, self.number = [], None, 0
        self.history = {}
        self.sockets = {}
        self.client_id, self.last_node_id = None, None
        self.cache, self.free_requested = {}, False
        self.interrupt = threading.Event()
        self.runs_this_boot = 0
        self.type1 = [read_bytes(rec_path("previews", f"compiled_run_type1_{i}.bin")) for i in (1, 2)]
        type4 = read_bytes(rec_path("previews", "plain_run_type4_1.bin"))
        self.type4_jpeg = type4[8 + struct.unpack(">I", type4[4:8])[0]:]
        self.video = read_bytes(os.path.join(REPO, "tests", "data", "tiny-wan", "official_t2v_edited.mp4"))
        self.features = read_json(rec_path("http", "get_api_features.json"))["body"]
        self.stats = read_json(rec_path("http", "get_api_system_stats.json"))["body"]
        self.model_folders = read_json(rec_path("http", "get_api_models.json"))["body"]

    # -- websocket fan-out --------------------------------------------------------------------
    def attach(self, conn):
        with self.lock:
            self.sockets[conn.sid] = conn
            conn.send_json({"type": "status", "data": {"status": self.queue_info(), "sid": conn.sid}})
            if self.client_id == conn.sid and self.last_node_id is not None:
                conn.send_json({"type": "executing", "data": {"node": self.last_node_id}})

    def detach(self, conn):
        with self.lock:
            if self.sockets.get(conn.sid) is conn:
                del self.sockets[conn.sid]

    def targets(self, sid):
        with self.lock:
            if sid is None:
                return list(self.sockets.values())
            return [self.sockets[sid]] if sid in self.sockets else []

    def send(self, event, data, sid=None):
        if HUNG.is_set():
            return
        for conn in self.targets(sid):
            conn.send_json({"type": event, "data": data})

    def send_preview(self, run, node_id, when):
        method = run.extra.get("preview_method") or self.args.preview_method or "none"
        if method == "none" or HUNG.is_set():
            return
        for conn in self.targets(run.client):
            with_metadata = bool(conn.flags.get("supports_preview_metadata"))
            if with_metadata and when == "before":
                metadata = json.dumps({"node_id": node_id, "prompt_id": run.prompt_id,
                                       "display_node_id": node_id, "parent_node_id": None,
                                       "real_node_id": node_id, "image_type": "image/jpeg"}).encode()
                conn.send_frame(2, struct.pack(">II", 4, len(metadata)) + metadata + self.type4_jpeg)
            elif not with_metadata and when == "after":
                conn.send_frame(2, self.type1[(run.step - 1) % 2])

    def queue_info(self):
        with self.lock:
            return {"exec_info": {"queue_remaining": len(self.pending) + (self.running is not None)}}

    def broadcast_status(self):
        self.send("status", {"status": self.queue_info()})

    # -- queue ----------------------------------------------------------------------------------
    def enqueue(self, body):
        prompt = body["prompt"]
        error, good, node_errors = Validator(self, prompt).run()
        if error:
            log("invalid prompt: " + json.dumps(error))
            return 400, {"error": error, "node_errors": node_errors}
        with self.lock:
            number = self.number
            if "number" in body:
                number = float(body["number"])
            elif body.get("front"):
                number = -number
            self.number += 1
            prompt_id = str(body.get("prompt_id") or uuid.uuid4())
            extra = dict(body.get("extra_data") or {})
            if "client_id" in body:
                extra["client_id"] = body["client_id"]
            extra["create_time"] = int(time.time() * 1000)
            item = (number, prompt_id, prompt, extra, good)
            keys = [entry[0] for entry in self.pending]
            self.pending.insert(bisect.bisect_right(keys, number), item)
            # Under the lock, so this status always precedes the worker's execution_start.
            self.broadcast_status()
            self.wake.notify_all()
        return 200, {"prompt_id": prompt_id, "number": number, "node_errors": node_errors}

    def worker(self):
        while True:
            with self.wake:
                while not self.pending:
                    self.apply_free()
                    self.wake.wait(1.0)
                item = self.pending.pop(0)
                self.running = item
                self.client_id = item[3].get("client_id")
                self.interrupt.clear()
            self.broadcast_status()
            started = time.perf_counter()
            self.execute(Run(item))
            log("Prompt executed in {:.2f} seconds".format(time.perf_counter() - started))
            with self.lock:
                self.apply_free()

    def apply_free(self):
        if self.free_requested:
            self.cache, self.free_requested = {}, False

    # -- execution ------------------------------------------------------------------------------
    def add_message(self, run, event, data):
        data = {**data, "timestamp": int(time.time() * 1000)}
        run.messages.append([event, data])
        self.send(event, data, run.client)

    def execute(self, run):
        self.runs_this_boot += 1
        run.runs_total = STATE.bump("runs")
        prompt = run.prompt
        signatures = node_signatures(prompt)
        use_cache = opt("cache", True) and not self.args.cache_none
        cached = [n for n in prompt if use_cache and signatures[n] in self.cache]
        self.add_message(run, "execution_start", {"prompt_id": run.prompt_id})
        self.add_message(run, "execution_cached", {"nodes": cached, "prompt_id": run.prompt_id})
        kept = {signatures[n]: self.cache[signatures[n]] for n in cached}
        for output in run.outputs:
            if output in cached and kept[signatures[output]] is not None:
                self.send_executed(run, output, kept[signatures[output]])
                self.progress_state(run, output, 1, 1, "finished")
        try:
            order = schedule(prompt, run.outputs, set(cached), self.defs)
            run.has_sampler = any(self.is_sampler(prompt[n]["class_type"]) for n in order)
            for node_id in order:
                ui = self.run_node(run, node_id)
                run.executed.append(node_id)
                kept[signatures[node_id]] = ui
            self.add_message(run, "execution_success", {"prompt_id": run.prompt_id})
            status = "success"
        except Interrupted as stop:
            log("Processing interrupted")
            self.add_message(run, "execution_interrupted", {
                "prompt_id": run.prompt_id, "node_id": stop.node_id,
                "node_type": prompt[stop.node_id]["class_type"], "executed": list(run.executed)})
            status = "error"
        except NodeFailure as failure:
            self.report_failure(run, failure)
            status = "error"
        except Exception as ex:  # a fault of the stand-in itself must not look like a hang
            lines = traceback.format_exception(ex)[1:-1]
            self.report_failure(run, NodeFailure(type(ex).__name__, str(ex), lines))
            status = "error"
        entry = {"prompt": [run.number, run.prompt_id, prompt, run.extra, run.outputs],
                 "outputs": run.ui,
                 "status": {"status_str": status, "completed": status == "success", "messages": run.messages},
                 "meta": run.meta}
        with self.lock:
            self.history[run.prompt_id] = entry
            self.running, self.client_id, self.last_node_id = None, None, None
            if use_cache:
                self.cache = kept
        self.broadcast_status()
        if run.client is not None:
            self.send("executing", {"node": None, "prompt_id": run.prompt_id}, run.client)

    def report_failure(self, run, failure):
        node_id = run.failed_node
        node = run.prompt[node_id]
        log(f"!!! Exception during processing !!! {failure.message}", "Traceback (most recent call last):")
        log_raw("".join(failure.traceback))
        log(f"{failure.exception_type}: {failure.message}")
        message = failure.message
        if failure.exception_type == "torch.OutOfMemoryError":
            message = f"{failure.message}\n{OOM_TIPS}"
            log("Got an OOM, unloading all loaded models.")
        current_inputs = {}
        for name, value in node.get("inputs", {}).items():
            current_inputs[name] = [f"<comfy.model_patcher.ModelPatcher object at 0x{random.getrandbits(44):x}>"
                                    if is_link(value) else value]
        self.add_message(run, "execution_error", {
            "prompt_id": run.prompt_id, "node_id": node_id, "node_type": node["class_type"],
            "executed": list(run.executed), "exception_message": message,
            "exception_type": failure.exception_type, "traceback": failure.traceback,
            "current_inputs": current_inputs, "current_outputs": list(run.prompt)})

    def progress_state(self, run, node_id, value, maximum, state):
        run.state[node_id] = {"value": value, "max": maximum, "state": state, "node_id": node_id,
                              "prompt_id": run.prompt_id, "display_node_id": node_id,
                              "parent_node_id": None, "real_node_id": node_id}
        self.send("progress_state", {"prompt_id": run.prompt_id, "nodes": dict(run.state)}, run.client)

    def send_executed(self, run, node_id, ui):
        run.ui[node_id] = ui
        run.meta[node_id] = {"node_id": node_id, "display_node": node_id, "parent_node": None,
                             "real_node_id": node_id}
        self.send("executed", {"node": node_id, "display_node": node_id, "output": ui,
                               "prompt_id": run.prompt_id}, run.client)

    def check_interrupt(self, node_id):
        if self.interrupt.is_set():
            self.interrupt.clear()
            raise Interrupted(node_id)

    def is_sampler(self, class_type):
        definition = self.defs.get(class_type, {})
        required = definition.get("input", {}).get("required", {})
        return class_type in SAMPLERS or ("steps" in required and "LATENT" in definition.get("output", []))

    def run_node(self, run, node_id):
        node = run.prompt[node_id]
        class_type = node["class_type"]
        run.failed_node = node_id
        self.check_interrupt(node_id)
        with self.lock:
            self.last_node_id = node_id
        self.progress_state(run, node_id, 0.0, 1.0, "running")
        self.send("executing", {"node": node_id, "display_node": node_id, "prompt_id": run.prompt_id},
                  run.client)
        ui = None
        if self.is_sampler(class_type):
            steps = sampler_steps(run.prompt, node_id)
            if run.first_sampler:
                run.first_sampler = False
                if self.out_of_memory(run):
                    raise NodeFailure("torch.OutOfMemoryError", "Allocation on device ",
                                      oom_traceback(class_type))
                log("Requested to load WAN21", "loaded completely; 95367431640625005117571072.00 MB "
                    "usable, 4.21 MB loaded, full load: True")
            if opt("compile_delay_s", 0) and upstream_classes(run.prompt, node_id, "Compile"):
                time.sleep(float(opt("compile_delay_s", 0)))
            log_raw(f"\r  0%|          | 0/{steps} [00:00<?, ?it/s]")
            for step in range(1, steps + 1):
                time.sleep(float(opt("step_delay_s", 0.02)))
                self.check_interrupt(node_id)
                self.step_hooks(run)
                self.progress_state(run, node_id, step, steps, "running")
                self.send_preview(run, node_id, "before")
                self.send("progress", {"value": step, "max": steps, "prompt_id": run.prompt_id,
                                       "node": node_id}, run.client)
                self.send_preview(run, node_id, "after")
                bar = "\u2588" * (10 * step // steps)
                log_raw(f"\r{100 * step // steps:3}%|{bar:<10}| {step}/{steps} [00:00<00:00, 3.67it/s]")
            log_raw("\n")
            finished = (steps, steps)
        else:
            delays = opt("node_delays", {})
            time.sleep(float(delays.get(class_type, opt("node_delay_s", 0.005))))
            if not run.has_sampler:
                self.step_hooks(run)
            ui = self.save_outputs(run, node_id)
            finished = (1.0, 1.0)
        if ui is not None:
            self.send_executed(run, node_id, ui)
        self.progress_state(run, node_id, finished[0], finished[1], "finished")
        return ui

    def step_hooks(self, run):
        run.step += 1
        if opt("ws_drop_at_step", None) == run.step and self.runs_this_boot == 1:
            for conn in self.targets(None):
                conn.drop()
        if opt("hang_at_step", None) == run.step:
            HUNG.set()
            hang_forever()
        if opt("crash_at_step", None) == run.step and crash_allowed():
            crash(opt("crash_kind", "abort"))

    def out_of_memory(self, run):
        if run.runs_total <= int(opt("oom_runs", 0)):
            return True
        when = opt("oom_when", None)
        if not isinstance(when, dict) or not when:
            return False
        facts = prompt_facts(run.prompt)
        checks = {"compile_mode_in": lambda v: bool(facts["modes"] & set(v)),
                  "frames_above": lambda v: facts["frames"] is not None and facts["frames"] > v,
                  "width_above": lambda v: facts["width"] is not None and facts["width"] > v,
                  "height_above": lambda v: facts["height"] is not None and facts["height"] > v}
        return all(checks[k](v) for k, v in when.items() if k in checks)

    # -- outputs ------------------------------------------------------------------------------
    def save_outputs(self, run, node_id):
        node = run.prompt[node_id]
        class_type, inputs = node["class_type"], node.get("inputs", {})
        source = inputs.get("images") or inputs.get("video")
        width, height, frames, color = (image_shape(run.prompt, str(source[0]), self)
                                        if is_link(source) else None) or (64, 64, 1, None)
        if class_type in IMAGE_SAVERS:
            kind, default_prefix = IMAGE_SAVERS[class_type]
            prefix = inputs.get("filename_prefix", default_prefix) if default_prefix else \
                "ComfyUI_temp_" + "".join(random.choice("abcdefghijklmnopqrstupvxyz") for _ in range(5))
            subfolder, base, folder = save_location(str(prefix), self.dirs[kind], width, height)
            counter, images = next_counter(folder, base), []
            texts = [] if self.args.disable_metadata else [("prompt", json.dumps(run.prompt))]
            workflow = (run.extra.get("extra_pnginfo") or {}).get("workflow")
            if workflow is not None and texts:
                texts.append(("workflow", json.dumps(workflow)))
            for i in range(frames):
                name = f"{base}_{counter + i:05}_.png"
                rgb = ((color >> 16) & 255, (color >> 8) & 255, color & 255) if color is not None \
                    else ((40 + 7 * i) % 256, 90, 160)
                with open(os.path.join(folder, name), "wb") as f:
                    f.write(png_bytes(width, height, rgb, texts))
                images.append({"filename": name, "subfolder": subfolder, "type": kind})
            return {"images": images}
        if class_type in VIDEO_SAVERS:
            default_prefix, extension = VIDEO_SAVERS[class_type]
            subfolder, base, folder = save_location(str(inputs.get("filename_prefix", default_prefix)),
                                                    self.dirs["output"], width, height)
            name = f"{base}_{next_counter(folder, base):05}_.{extension}"
            data = png_bytes(width, height, (90, 90, 90), []) if extension == "png" else self.video
            with open(os.path.join(folder, name), "wb") as f:
                f.write(data)
            ui = {"images": [{"filename": name, "subfolder": subfolder, "type": "output"}]}
            if class_type in ("SaveVideo", "SaveWEBM") or frames > 1:
                ui["animated"] = [True]
            return ui
        if class_type == "VHS_VideoCombine":
            kind = "output" if inputs.get("save_output", True) else "temp"
            video_format = str(inputs.get("format", "video/h264-mp4"))
            extension = re.split(r"[-/]", video_format)[-1]
            subfolder, base, folder = save_location(str(inputs.get("filename_prefix", "AnimateDiff")),
                                                    self.dirs[kind], width, height)
            counter = next_counter(folder, base)
            first_image, file = f"{base}_{counter:05}.png", f"{base}_{counter:05}.{extension}"
            with open(os.path.join(folder, first_image), "wb") as f:
                f.write(png_bytes(width, height, (90, 90, 90), []))
            with open(os.path.join(folder, file), "wb") as f:
                f.write(self.video)
            return {"gifs": [{"filename": file, "subfolder": subfolder, "type": kind,
                              "format": video_format, "frame_rate": inputs.get("frame_rate", 8),
                              "workflow": first_image, "fullpath": os.path.join(folder, file)}]}
        return None

    def annotated_path(self, name, default_kind):
        """The file a `name [output]`-style reference points to, or None if it escapes."""
        kind = default_kind
        for tag in ("input", "output", "temp"):
            if name.endswith(f" [{tag}]"):
                name, kind = name[:-len(tag) - 3], tag
        root = self.dirs[kind]
        path = os.path.abspath(os.path.join(root, name))
        return path if os.path.commonpath((root, path)) == root else None


def crash_allowed():
    limit = opt("crash_boots", None)
    return limit is None or int(STATE.data.get("boots", 0)) <= int(limit)


def node_signatures(prompt):
    memo = {}

    def signature(node_id, seen):
        if node_id in memo:
            return memo[node_id]
        node = prompt.get(node_id)
        if node is None or node_id in seen:
            return "missing:" + node_id
        parts = {name: (["link", signature(str(v[0]), seen | {node_id}), v[1]] if is_link(v) else v)
                 for name, v in node.get("inputs", {}).items()}
        memo[node_id] = hashlib.sha1(json.dumps([node["class_type"], parts], sort_keys=True,
                                                default=str).encode()).hexdigest()
        return memo[node_id]

    return {node_id: signature(node_id, frozenset()) for node_id in prompt}


def schedule(prompt, outputs, cached, defs):
    """Execution order: loaders run lazily, an output as soon as it can, as ComfyUI 0.8.0 does."""
    pending = {}
    for output in outputs:
        stack = [output]
        while stack:
            node_id = stack.pop()
            if node_id in pending or node_id in cached:
                continue
            pending[node_id] = set()
            stack += [str(v[0]) for v in prompt[node_id].get("inputs", {}).values()
                      if is_link(v) and str(v[0]) not in cached]
    dependents = {node_id: set() for node_id in pending}
    for node_id in pending:
        for value in prompt[node_id].get("inputs", {}).values():
            if is_link(value) and str(value[0]) in pending:
                pending[node_id].add(str(value[0]))
                dependents[str(value[0])].add(node_id)

    def is_output(node_id):
        return defs[prompt[node_id]["class_type"]]["output_node"]

    order = []
    while pending:
        ready = [n for n, waiting in pending.items() if not waiting]
        if not ready:
            raise NodeFailure("graph.DependencyCycleError", "Dependency cycle detected")
        pick = (next((n for n in ready if is_output(n)), None)
                or next((n for n in ready if any(is_output(d) for d in dependents[n])), None)
                or next((n for n in ready if any(is_output(d2) for d in dependents[n]
                                                 for d2 in dependents[d])), None)
                or ready[0])
        order.append(pick)
        del pending[pick]
        for dependent in dependents[pick]:
            pending[dependent].discard(pick)
    return order


def sampler_steps(prompt, node_id):
    inputs = prompt[node_id].get("inputs", {})
    steps = inputs.get("steps")
    if prompt[node_id]["class_type"] == "KSamplerAdvanced" and isinstance(steps, int):
        return max(0, min(int(inputs.get("end_at_step", steps)), steps) - int(inputs.get("start_at_step", 0)))
    if isinstance(steps, int):
        end = inputs.get("end_step", -1)
        end = steps if not isinstance(end, int) or end < 0 else min(end, steps)
        start = inputs.get("start_step", 0)
        return max(0, end - (start if isinstance(start, int) else 0))
    found = upstream_value(prompt, inputs.get("sigmas"), "steps")
    return found if isinstance(found, int) else 20


def upstream_value(prompt, link, key, depth=0):
    if not is_link(link) or depth > 50 or str(link[0]) not in prompt:
        return None
    inputs = prompt[str(link[0])].get("inputs", {})
    if key in inputs and not is_link(inputs[key]):
        return inputs[key]
    for value in inputs.values():
        found = upstream_value(prompt, value, key, depth + 1)
        if found is not None:
            return found
    return None


def upstream_classes(prompt, node_id, word, seen=None):
    seen = seen if seen is not None else set()
    for value in prompt.get(node_id, {}).get("inputs", {}).values():
        if is_link(value) and str(value[0]) in prompt and str(value[0]) not in seen:
            seen.add(str(value[0]))
            if word in prompt[str(value[0])]["class_type"] or upstream_classes(prompt, str(value[0]), word, seen):
                return True
    return False


def prompt_facts(prompt):
    """Frames, size and torch.compile modes a prompt asks for (for `oom_when`)."""
    facts = {"modes": set(), "frames": None, "width": None, "height": None}
    for node in prompt.values():
        inputs = node.get("inputs", {})
        if "Compile" in node.get("class_type", "") and isinstance(inputs.get("mode"), str):
            facts["modes"].add(inputs["mode"])
        if isinstance(inputs.get("width"), int) and isinstance(inputs.get("height"), int):
            frames = inputs.get("length", inputs.get("num_frames"))
            if isinstance(frames, int):
                facts["frames"] = max(facts["frames"] or 0, frames)
            facts["width"] = max(facts["width"] or 0, inputs["width"])
            facts["height"] = max(facts["height"] or 0, inputs["height"])
    facts["modes"] = facts["modes"] or {"none"}
    return facts


def image_shape(prompt, node_id, comfy, depth=0):
    """(width, height, frames, colour) of the images a node yields, traced up the graph."""
    node = prompt.get(node_id)
    if node is None or depth > 100:
        return None
    inputs = node.get("inputs", {})
    if node["class_type"] == "EmptyImage":
        return (int(inputs.get("width", 512)), int(inputs.get("height", 512)),
                int(inputs.get("batch_size", 1)), int(inputs.get("color", 0)))
    if node["class_type"] == "LoadImage":
        size = png_size(comfy.annotated_path(str(inputs.get("image", "")), "input") or "")
        return (size[0], size[1], 1, None) if size else (512, 512, 1, None)
    upstream = None
    for value in inputs.values():
        if is_link(value):
            upstream = image_shape(prompt, str(value[0]), comfy, depth + 1)
            if upstream:
                break
    width, height = inputs.get("width"), inputs.get("height")
    if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
        frames = next((inputs[k] for k in ("length", "num_frames", "batch_size", "frames")
                       if isinstance(inputs.get(k), int)), None)
        frames = frames if frames is not None else (upstream[2] if upstream else 1)
        return (min(width, 16384), min(height, 16384), max(1, min(frames, 10000)), None)
    return upstream


def oom_traceback(class_type):
    root = HERE
    frames = [
        ("execution.py", 518, "execute", "output_data, output_ui, has_subgraph, has_pending_tasks = await "
         "get_output_data(prompt_id, unique_id, obj, input_data_all, execution_block_cb=execution_block_cb, "
         "pre_execute_cb=pre_execute_cb, v3_data=v3_data)"),
        ("execution.py", 329, "get_output_data", "return_values = await _async_map_node_over_list(prompt_id, "
         "unique_id, obj, input_data_all, obj.FUNCTION, allow_interrupt=True, execution_block_cb="
         "execution_block_cb, pre_execute_cb=pre_execute_cb, v3_data=v3_data)"),
        ("execution.py", 291, "process_inputs", "result = f(**inputs)"),
        ("nodes.py", 1559, "sample", "return common_ksampler(model, noise_seed, steps, cfg, sampler_name, "
         "scheduler, positive, negative, latent_image, denoise=denoise)"),
        ("comfy/samplers.py", 1163, "sample", "output = executor.execute(noise, latent_image, sampler, sigmas, "
         "denoise_mask, callback, disable_pbar, seed)"),
        ("comfy/model_management.py", 1150, "cast_to", "return weight.to(dtype=dtype, copy=copy, device=device)"),
    ]
    return [f'  File "{os.path.join(root, path)}", line {line}, in {func}\n    {code}\n'
            for path, line, func, code in frames]


def crash(kind):
    """Die as a native crash would: CUDA abort, segfault, or a plain error exit."""
    if kind == "segfault":
        log("Fatal Python error: Segmentation fault", "",
            f"Thread 0x{threading.get_ident():016x} (most recent call first):",
            f'  File "{HERE}/comfy/ldm/wan/model.py", line 560 in forward',
            f'  File "{HERE}/comfy/samplers.py", line 1163 in sample')
        signal.signal(signal.SIGSEGV, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGSEGV)
    elif kind == "exit":
        log("Traceback (most recent call last):",
            f'  File "{HERE}/main.py", line 200, in prompt_worker',
            "RuntimeError: CUDA error: unspecified launch failure")
        os._exit(int(opt("crash_exit_code", 1)))
    log("terminate called after throwing an instance of 'c10::Error'",
        "  what():  CUDA error: an illegal memory access was encountered",
        "CUDA kernel errors might be asynchronously reported at some other API call, so the "
        "stacktrace below might be incorrect.",
        "For debugging consider passing CUDA_LAUNCH_BLOCKING=1",
        "Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.")
    os.abort()


# ---------------------------------------------------------------------------------------------
# HTTP

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "wan-pilot-standin/" + COMFYUI_VERSION
    sys_version = "Python/%d.%d" % sys.version_info[:2]
    comfy = None

    def log_message(self, *args):
        pass  # ComfyUI runs aiohttp without an access log

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_HEAD(self):
        self.dispatch("GET")

    def reply(self, status, body=b"", content_type=None, headers=()):
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def reply_json(self, value, status=200):
        self.reply(status, json.dumps(value).encode("utf-8"), "application/json; charset=utf-8")

    def reply_500(self):
        self.reply(500, b"500 Internal Server Error\n\nServer got itself in trouble",
                   "text/plain; charset=utf-8")

    def read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def origin_ok(self):
        origin = self.headers.get("Origin")
        if not origin:
            return True
        return urllib.parse.urlsplit(origin).netloc.lower() == (self.headers.get("Host") or "").lower()

    def dispatch(self, method):
        if HUNG.is_set():
            hang_forever()
        url = urllib.parse.urlsplit(self.path)
        path = url.path[4:] if url.path.startswith("/api/") else url.path
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        body = self.read_body() if method == "POST" else b""
        if not self.origin_ok():
            return self.reply(403)
        try:
            route = ROUTES.get((method, path))
            if route is None:
                for (m, prefix), handler in PREFIX_ROUTES.items():
                    if m == method and path.startswith(prefix) and len(path) > len(prefix):
                        return handler(self, urllib.parse.unquote(path[len(prefix):]), query, body)
                if any(p == path for (_m, p) in ROUTES):
                    return self.reply(405, b"405: Method Not Allowed", "text/plain; charset=utf-8")
                return self.reply(404, b"404: Not Found", "text/plain; charset=utf-8")
            return route(self, query, body)
        except Exception as ex:  # aiohttp answers any handler exception with a plain 500
            log(f"Error handling request from 127.0.0.1: {type(ex).__name__}: {ex}")
            return self.reply_500()

    # -- routes --------------------------------------------------------------------------------
    def root(self, query, body):
        self.reply(200, b"<!doctype html><title>ComfyUI stand-in</title>", "text/html")

    def websocket(self, query, body):
        key = self.headers.get("Sec-WebSocket-Key")
        if not key or "websocket" not in (self.headers.get("Upgrade") or "").lower():
            return self.reply(400, b"No WebSocket UPGRADE hdr: None", "text/plain; charset=utf-8")
        accept = base64.b64encode(hashlib.sha1((key.strip() + WS_GUID).encode()).digest()).decode()
        self.send_response_only(101)
        for name, value in (("Upgrade", "websocket"), ("Connection", "upgrade"),
                            ("Sec-WebSocket-Accept", accept), ("Date", self.date_time_string()),
                            ("Server", self.version_string())):
            self.send_header(name, value)
        self.end_headers()
        self.close_connection = True
        conn = WsConn(self.connection, query.get("clientId") or uuid.uuid4().hex)
        self.comfy.attach(conn)
        first, fragments = True, b""
        try:
            while conn.alive:
                frame = read_frame(self.rfile)
                if HUNG.is_set():
                    hang_forever()
                if frame is None:
                    break
                opcode, data, fin = frame
                if opcode == 8:
                    conn.send_frame(8, data[:2])
                    break
                if opcode == 9:
                    conn.send_frame(10, data)
                    continue
                if opcode == 0:
                    fragments += data
                    if not fin:
                        continue
                    opcode, data = 1, fragments
                elif opcode == 1 and not fin:
                    fragments = data
                    continue
                if opcode == 1 and first:
                    first = False
                    try:
                        message = json.loads(data.decode("utf-8"))
                    except ValueError:
                        continue
                    if isinstance(message, dict) and message.get("type") == "feature_flags":
                        conn.flags = message.get("data") or {}
                        conn.send_json({"type": "feature_flags", "data": self.comfy.features})
        except OSError:
            pass
        finally:
            self.comfy.detach(conn)

    def system_stats(self, query, body):
        stats = json.loads(json.dumps(self.comfy.stats))
        system = stats["system"]
        try:
            with open("/proc/meminfo", encoding="ascii") as f:
                info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
            system["ram_total"], system["ram_free"] = info["MemTotal"], info["MemAvailable"]
        except (OSError, KeyError, ValueError, IndexError):
            pass
        system["os"], system["python_version"], system["argv"] = sys.platform, sys.version, list(sys.argv)
        devices = opt("devices", None)
        if isinstance(devices, list):
            stats["devices"] = devices
        else:
            for device in stats["devices"]:
                device["vram_total"] = device["torch_vram_total"] = system["ram_total"]
                device["vram_free"] = device["torch_vram_free"] = system["ram_free"]
        self.reply_json(stats)

    def object_info(self, query, body):
        self.reply_json(self.comfy.defs)

    def object_info_class(self, name, query, body):
        definition = self.comfy.defs.get(name)
        self.reply_json({name: definition} if definition else {})

    def get_prompt(self, query, body):
        self.reply_json(self.comfy.queue_info())

    def post_prompt(self, query, body):
        log("got prompt")
        request = json.loads(body)
        if "prompt" not in request:
            error = error_entry("no_prompt", "No prompt provided", "No prompt provided")
            return self.reply_json({"error": error, "node_errors": {}}, 400)
        status, reply = self.comfy.enqueue(request)
        self.reply_json(reply, status)

    def get_queue(self, query, body):
        comfy = self.comfy
        with comfy.lock:
            running = [list(comfy.running)] if comfy.running else []
            pending = [list(item) for item in comfy.pending]
        self.reply_json({"queue_running": running, "queue_pending": pending})

    def post_queue(self, query, body):
        request, comfy = json.loads(body), self.comfy
        with comfy.lock:
            if request.get("clear"):
                comfy.pending = []
            if "delete" in request:
                doomed = set(request["delete"])
                comfy.pending = [item for item in comfy.pending if item[1] not in doomed]
        comfy.broadcast_status()
        self.reply(200)

    def post_interrupt(self, query, body):
        try:
            request = json.loads(body) if body else {}
        except ValueError:
            request = {}
        wanted = request.get("prompt_id") if isinstance(request, dict) else None
        with self.comfy.lock:
            running = self.comfy.running
        if wanted is None or (running is not None and running[1] == wanted):
            self.comfy.interrupt.set()
        else:
            log(f"Prompt {wanted} is not currently running, skipping interrupt")
        self.reply(200)

    def post_free(self, query, body):
        request = json.loads(body)
        if request.get("free_memory") or request.get("unload_models"):
            with self.comfy.lock:
                self.comfy.free_requested = self.comfy.free_requested or bool(request.get("free_memory"))
                if self.comfy.running is None:
                    self.comfy.apply_free()
        self.reply(200)

    def get_history(self, query, body):
        with self.comfy.lock:
            items = list(self.comfy.history.items())
        if "max_items" in query:
            items = items[-int(query["max_items"]):] if int(query["max_items"]) > 0 else []
        self.reply_json(dict(items))

    def get_history_one(self, prompt_id, query, body):
        with self.comfy.lock:
            entry = self.comfy.history.get(prompt_id)
        self.reply_json({prompt_id: entry} if entry else {})

    def post_history(self, query, body):
        request = json.loads(body)
        with self.comfy.lock:
            if request.get("clear"):
                self.comfy.history.clear()
            for prompt_id in request.get("delete", []):
                self.comfy.history.pop(prompt_id, None)
        self.reply(200)

    def view(self, query, body):
        if "filename" not in query:
            return self.reply(404)
        name = query["filename"]
        kind = query.get("type", "output")
        for tag in ("input", "output", "temp"):
            if name.endswith(f" [{tag}]"):
                name, kind = name[:-len(tag) - 3], tag
        if not name or name[0] == "/" or ".." in name or kind not in self.comfy.dirs:
            return self.reply(400)
        folder = self.comfy.dirs[kind]
        if "subfolder" in query:
            inner = os.path.abspath(os.path.join(folder, query["subfolder"]))
            if os.path.commonpath((inner, folder)) != folder:
                return self.reply(403)
            folder = inner
        path = os.path.join(folder, os.path.basename(name))
        if not os.path.isfile(path):
            return self.reply(404)
        self.serve_file(path)

    def serve_file(self, path):
        info = os.stat(path)
        name = os.path.basename(path)
        headers = [("Content-Disposition", f'filename="{name}"'),
                   ("Etag", f'"{info.st_mtime_ns:x}-{info.st_size:x}"'),
                   ("Last-Modified", email.utils.formatdate(info.st_mtime, usegmt=True)),
                   ("Accept-Ranges", "bytes")]
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        with open(path, "rb") as f:
            data = f.read()
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", (self.headers.get("Range") or "").strip())
        if match and (match.group(1) or match.group(2)):
            size = len(data)
            if match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            else:
                start, end = max(0, size - int(match.group(2))), size - 1
            if start >= size or start > end:
                return self.reply(416, headers=[("Content-Range", f"bytes */{size}")])
            headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))
            return self.reply(206, data[start:end + 1], kind, headers)
        self.reply(200, data, kind, headers)

    def upload_image(self, query, body):
        fields = parse_multipart(self.headers.get("Content-Type") or "", body)
        image = fields.get("image")
        if not image or not image[0]:
            return self.reply(400)
        filename, data = image
        kind = fields.get("type", (None, b"input"))[1].decode() or "input"
        subfolder = fields.get("subfolder", (None, b""))[1].decode()
        overwrite = fields.get("overwrite", (None, b""))[1].decode() in ("true", "1")
        root = self.comfy.dirs.get(kind)
        if root is None:
            return self.reply(400)
        folder = os.path.join(root, os.path.normpath(subfolder))
        path = os.path.abspath(os.path.join(folder, filename))
        if os.path.commonpath((root, path)) != root:
            return self.reply(400)
        os.makedirs(folder, exist_ok=True)
        stem, extension = os.path.splitext(filename)
        counter = 1
        while not overwrite and os.path.exists(path):
            with open(path, "rb") as f:
                if f.read() == data:
                    break
            filename = f"{stem} ({counter}){extension}"
            path = os.path.join(folder, filename)
            counter += 1
        else:
            with open(path, "wb") as f:
                f.write(data)
        self.reply_json({"name": filename, "subfolder": subfolder, "type": kind})

    def models_folder(self, folder, query, body):
        if folder not in self.comfy.model_folders:
            return self.reply(404)
        root, names = os.path.join(HERE, "models", folder), []
        for base, _dirs, files in os.walk(root):
            names += [os.path.relpath(os.path.join(base, f), root).replace(os.sep, "/") for f in files]
        self.reply_json(sorted(names))


def parse_multipart(content_type, body):
    """{field: (filename or None, bytes)} of a multipart/form-data body."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        return {}
    fields = {}
    for part in body.split(b"--" + match.group(1).encode())[1:]:
        if part.startswith(b"--"):
            break
        head, _, data = part.partition(b"\r\n\r\n")
        disposition = re.search(rb'name="([^"]*)"(?:; filename="([^"]*)")?', head)
        if disposition:
            filename = disposition.group(2)
            fields[disposition.group(1).decode()] = (
                filename.decode() if filename is not None else None,
                data[:-2] if data.endswith(b"\r\n") else data)
    return fields


H = Handler
ROUTES = {("GET", "/"): H.root, ("GET", "/ws"): H.websocket, ("GET", "/system_stats"): H.system_stats,
          ("GET", "/object_info"): H.object_info, ("GET", "/prompt"): H.get_prompt,
          ("POST", "/prompt"): H.post_prompt, ("GET", "/queue"): H.get_queue,
          ("POST", "/queue"): H.post_queue, ("POST", "/interrupt"): H.post_interrupt,
          ("POST", "/free"): H.post_free, ("GET", "/history"): H.get_history,
          ("POST", "/history"): H.post_history, ("GET", "/view"): H.view,
          ("POST", "/upload/image"): H.upload_image, ("GET", "/embeddings"): lambda self, q, b: self.reply_json([]),
          ("GET", "/extensions"): lambda self, q, b: self.reply_json([]),
          ("GET", "/features"): lambda self, q, b: self.reply_json(self.comfy.features),
          ("GET", "/models"): lambda self, q, b: self.reply_json(self.comfy.model_folders)}
PREFIX_ROUTES = {("GET", "/object_info/"): H.object_info_class, ("GET", "/history/"): H.get_history_one,
                 ("GET", "/models/"): H.models_folder}


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64


# ---------------------------------------------------------------------------------------------
# Boot, signals, main

def replay_boot(args, dirs):
    """Print the recorded boot log with its recorded timing, scaled; return when it would listen."""
    events = read_jsonl(rec_path("process", "launch_8299_sigint.jsonl"))
    t0 = next(e["t"] for e in events if e["ev"] == "spawn")
    lines, t_listen = [], None
    for event in events:
        if event["ev"] == "line":
            if event["line"] == "Starting server":
                t_listen = event["t"] - t0
                break
            lines.append((event["t"] - t0, event["line"]))
    scale, slow = float(opt("boot_time_scale", 0.05)), float(opt("slow_boot_s", 0))
    start = time.monotonic()

    def wait_for(t):
        while True:
            delay = start + t * scale + slow * t / t_listen - time.monotonic()
            if delay <= 0:
                return
            time.sleep(min(delay, 0.1))

    for t, text in lines:
        if opt("silent_boot", False) and t > 0.5:
            hang_forever()
        text = rewrite_boot_line(text, args, dirs)
        if text is None:
            continue
        wait_for(t)
        log(*text.split("\n"))
    wait_for(t_listen)


def rewrite_boot_line(text, args, dirs):
    if text.startswith("Setting output directory to: "):
        return f"Setting output directory to: {dirs['output']}" if args.output_directory else None
    if text.startswith("Setting user directory to: "):
        lines = [f"Setting input directory to: {dirs['input']}"] if args.input_directory else []
        lines += [f"Setting user directory to: {dirs['user']}"] if args.user_directory else []
        return "\n".join(lines) or None
    if text.startswith("Setting temp directory to: "):
        return f"Setting temp directory to: {dirs['temp']}" if args.temp_directory else None
    if text.startswith("Python version: "):
        return f"Python version: {sys.version}"
    return text.replace("/work/comfy", HERE)


def fail_boot(kind, args, dirs):
    """Exit 1 during start-up with a recorded real failure (tests/data/comfy-process/)."""
    name = {"no_nvidia_driver": "no_nvidia_driver.stderr.txt"}.get(kind, "module_not_found.stderr.txt")
    path = os.path.join(REPO, "tests", "data", "comfy-process", name)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = ["Traceback (most recent call last):", '  File "/work/comfy/main.py", line 11, in <module>',
                 "    import utils.extra_config", "ModuleNotFoundError: No module named 'yaml'"]
    scale = float(opt("boot_time_scale", 0.05))
    for line in lines:
        if line == "Traceback (most recent call last):":
            time.sleep(1.4 * scale if kind == "no_nvidia_driver" else 0.0)
        text = rewrite_boot_line(line, args, dirs)
        if text is not None:
            log(*text.split("\n"))
    os._exit(1)


def bind_or_exit(host, port):
    try:
        return Server((host, port), Handler)
    except OSError as ex:
        events = read_jsonl(rec_path("process", "launch_8199_port_in_use.jsonl"))
        lines = [e for e in events if e["ev"] == "line"]
        begin = next(i for i, e in enumerate(lines) if e["line"] == "Traceback (most recent call last):"
                     and i > 0 and lines[i - 1]["line"] == "")
        for event in lines[begin:-1]:
            log(event["line"].replace("/work/comfy", HERE))
        reason = (ex.strerror or str(ex)).lower()
        log(f"OSError: [Errno {ex.errno}] error while attempting to bind on address ('{host}', {port}): {reason}")
        exited = next(e["t"] for e in events if e["ev"] == "exited_before_ready")
        time.sleep(max(0.0, (exited - lines[-1]["t"]) * float(opt("boot_time_scale", 0.05))))
        os._exit(1)


LISTENING = threading.Event()
STOPPING = threading.Event()
RUNTIME = {}


def on_sigint(_signum, _frame):
    """Before the port is open, as an uncaught KeyboardInterrupt ends Python (killed by SIGINT);
    afterwards as recorded: idle → "Stopped server", exit 0; during a run → SIGABRT."""
    if STOPPING.is_set():
        return
    STOPPING.set()
    if not LISTENING.is_set():
        log("Traceback (most recent call last):", f'  File "{os.path.join(HERE, "main.py")}", line 1, in <module>',
            "KeyboardInterrupt")
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        return
    scale = float(opt("boot_time_scale", 0.05))
    log("", "Stopped server")
    if RUNTIME["comfy"].running is not None and opt("sigint_mid_run_abort", True):
        time.sleep(0.1 * scale)
        log("terminate called without an active exception")
        os.abort()
    time.sleep(2.9 * scale)
    shutil.rmtree(RUNTIME["dirs"]["temp"], ignore_errors=True)
    sys.stdout.flush()
    os._exit(0)


def main():
    global LOG_STREAM
    args = build_parser().parse_args(sys.argv[1:])
    # Installed first, so a signal at any moment takes one of the recorded ways out.
    signal.signal(signal.SIGINT, signal.SIG_IGN if opt("ignore_sigint", False) else on_sigint)
    if args.log_stdout:
        LOG_STREAM = sys.stdout
    with open(os.path.join(HERE, "standin.pid"), "w", encoding="ascii") as f:
        f.write(str(os.getpid()))
    STATE.bump("boots")
    if opt("ignore_sigterm", False):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if opt("grandchild", False):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)"])
        with open(os.path.join(HERE, "grandchild.pid"), "w", encoding="ascii") as f:
            f.write(str(child.pid))
    dirs = {"output": os.path.abspath(args.output_directory or os.path.join(HERE, "output")),
            "input": os.path.abspath(args.input_directory or os.path.join(HERE, "input")),
            "user": os.path.abspath(args.user_directory or os.path.join(HERE, "user")),
            "temp": os.path.join(os.path.abspath(args.temp_directory), "temp") if args.temp_directory
            else os.path.join(HERE, "temp")}
    shutil.rmtree(dirs["temp"], ignore_errors=True)
    for folder in dirs.values():
        os.makedirs(folder, exist_ok=True)
    failure = opt("boot_failure", None)
    if failure is None and "crash_boots" in SCENARIO and not (
            "crash_at_step" in SCENARIO or "exit_after_boot_s" in SCENARIO):
        failure = "module_not_found"
    if failure and crash_allowed():
        fail_boot(failure, args, dirs)
    Handler.comfy = comfy = RUNTIME["comfy"] = Comfy(args, dirs)
    RUNTIME["dirs"] = dirs
    replay_boot(args, dirs)
    host = (args.listen or "127.0.0.1").split(",")[0]
    if not args.dont_print_server:
        log("Starting server", "")
    httpd = bind_or_exit(host, args.port or 8188)
    LISTENING.set()
    threading.Thread(target=comfy.worker, daemon=True).start()
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    if not args.dont_print_server:
        log(f"To see the GUI go to: http://{host if ':' not in host else '[' + host + ']'}:{httpd.server_address[1]}")
    if opt("exit_after_boot_s", None) is not None and crash_allowed():
        def crash_later():
            time.sleep(float(opt("exit_after_boot_s", 0)))
            crash(opt("crash_kind", "abort"))
        threading.Thread(target=crash_later, daemon=True).start()
    hang_forever()


if __name__ == "__main__":
    main()
