#!/usr/bin/env python3
"""Snapshot a ComfyUI server's node definitions into assets/node_defs.json.

Stdlib only. Reads GET /object_info (and /system_stats for the version) from a
running ComfyUI server, or from a saved object_info JSON file, keeps the core
nodes plus the custom node packs named with --pack, strips UI text (tooltips,
descriptions, display names, placeholders) and writes the result in
object_info's own shape, wrapped with provenance:

    {"format": "comfyui-object-info", "comfyui_version": ..., "packs": {...},
     "generated": ..., "pack_nodes": {...}, "nodes": {"<class>": {...}, ...}}

One node class per line, classes sorted, so diffs stay readable.

Example:
    python3 assets/snapshot_node_defs.py --url http://127.0.0.1:8199 \
        --comfyui-commit 618b803d314a525faca8f8163d85eaa9ebc1d774 \
        --pack ComfyUI-KJNodes=3f20054214fec9f9234fd3841ae6f1e4287948f6 \
        --pack ComfyUI-VideoHelperSuite=4ee72c065db22c9d96c2427954dc69e7b908444b \
        --pack ComfyUI-WanVideoWrapper=ef95cfa0eef9b5bc8704aec6b7d5963d23ad02a9 \
        --pack ComfyUI-GGUF=795e45156ece99afbc3efef911e63fcb46e6a20d \
        --out assets/node_defs.json
"""

import argparse
import datetime
import json
import sys
import urllib.request

CORE_PACK = "comfyui"

# Per-class keys kept, in this order (object_info's own names).
CLASS_KEYS = ("input", "input_order", "output", "output_name",
              "output_is_list", "output_node", "name", "category")
# Per-class flags kept only when set (true / non-null), as facts.
CLASS_FLAGS = ("output_matchtypes", "deprecated", "experimental", "api_node")
# Input sections kept; "hidden" is dropped.
INPUT_SECTIONS = ("required", "optional")
# Text for humans, dropped from every option dict at any depth.
# ("tool" is a misspelt "tooltip" in one core node.)
TEXT_KEYS = {"tooltip", "tool", "description", "display_name", "placeholder",
             "output_tooltips", "python_module", "search_aliases"}


def fetch_json(url, timeout):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read().decode("utf-8"))


def strip_text(value):
    """Drop human text keys from dicts at any depth (lists are walked)."""
    if isinstance(value, dict):
        return {k: strip_text(v) for k, v in value.items() if k not in TEXT_KEYS}
    if isinstance(value, list):
        return [strip_text(v) for v in value]
    return value


def strip_options(opts):
    out = {}
    for key, val in opts.items():
        if key in TEXT_KEYS:
            continue
        if key == "options" and isinstance(val, list):
            # V3 DynamicCombo: each option carries its own input block.
            val = [strip_dynamic_option(o) for o in val]
        else:
            val = strip_text(val)
        out[key] = val
    return out


def strip_dynamic_option(opt):
    if not isinstance(opt, dict):
        return opt
    out = {}
    for key, val in opt.items():
        if key in TEXT_KEYS:
            continue
        out[key] = strip_input_block(val) if key == "inputs" and isinstance(val, dict) else strip_text(val)
    return out


def strip_spec(spec):
    # An input spec is [type] or [type, {options}]; a few hidden ones are bare strings.
    if not isinstance(spec, list):
        return spec
    if len(spec) >= 2 and isinstance(spec[1], dict):
        return [spec[0], strip_options(spec[1])] + spec[2:]
    return spec


def strip_input_block(block):
    out = {}
    for section in INPUT_SECTIONS:
        if section in block and isinstance(block[section], dict):
            out[section] = {name: strip_spec(spec) for name, spec in block[section].items()}
    return out


def strip_class(info):
    out = {}
    for key in CLASS_KEYS:
        if key not in info:
            continue
        val = info[key]
        if key == "input":
            val = strip_input_block(val)
        elif key == "input_order":
            val = {s: val[s] for s in INPUT_SECTIONS if s in val}
        out[key] = val
    for key in CLASS_FLAGS:
        val = info.get(key)
        if val is True or (isinstance(val, list) and any(v is not None for v in val)):
            out[key] = val
    return out


def pack_of(python_module, pack_names):
    """Map object_info's python_module to a pack name, or None to drop the class."""
    mod = python_module or "nodes"
    if not mod.startswith("custom_nodes."):
        return CORE_PACK  # nodes, comfy_extras.*, comfy_api_nodes.*
    folder = mod.split(".")[1]
    if folder == "websocket_image_save":
        return CORE_PACK  # example node that ships in ComfyUI's own custom_nodes/
    folder_key = folder.lower().split("@")[0]
    for name in pack_names:
        if name.lower() == folder_key:
            return name
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--url", help="ComfyUI server, e.g. http://127.0.0.1:8199")
    src.add_argument("--from-file", help="a saved GET /object_info reply")
    ap.add_argument("--out", required=True, help="output path, e.g. assets/node_defs.json")
    ap.add_argument("--pack", action="append", default=[], metavar="FOLDER=COMMIT",
                    help="custom node pack to keep (its custom_nodes folder name) and its commit")
    ap.add_argument("--comfyui-version", help="default: /system_stats when --url is given")
    ap.add_argument("--comfyui-commit", help="ComfyUI commit, recorded in packs as 'comfyui'")
    ap.add_argument("--generated", help="date to record (default: today, UTC)")
    ap.add_argument("--drop-category", action="append", default=[], metavar="PREFIX",
                    help="drop classes whose category starts with PREFIX (repeatable)")
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()

    packs = {}
    for item in args.pack:
        name, sep, commit = item.partition("=")
        if not sep or not name or not commit:
            ap.error(f"--pack wants FOLDER=COMMIT, got {item!r}")
        packs[name] = commit

    version = args.comfyui_version
    if args.url:
        base = args.url.rstrip("/")
        info = fetch_json(base + "/object_info", args.timeout)
        if not version:
            version = fetch_json(base + "/system_stats", args.timeout)["system"]["comfyui_version"]
    else:
        with open(args.from_file, encoding="utf-8") as f:
            info = json.load(f)
    if not version:
        ap.error("--comfyui-version is needed with --from-file")

    nodes = {}
    pack_nodes = {}
    dropped = {}
    for cls in sorted(info):
        raw = info[cls]
        pack = pack_of(raw.get("python_module"), packs)
        cat = raw.get("category") or ""
        if pack is None or any(cat.startswith(p) for p in args.drop_category):
            key = pack or raw.get("python_module", "?")
            dropped[key] = dropped.get(key, 0) + 1
            continue
        nodes[cls] = strip_class(raw)
        pack_nodes.setdefault(pack, []).append(cls)

    missing = [p for p in packs if p not in pack_nodes]
    if missing:
        print(f"warning: no classes found for pack(s) {missing}", file=sys.stderr)

    recorded_packs = {}
    if args.comfyui_commit:
        recorded_packs[CORE_PACK] = args.comfyui_commit
    recorded_packs.update(dict(sorted(packs.items())))
    generated = args.generated or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")

    def dump(v):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))

    lines = ["{"]
    lines.append(f'"format":{dump("comfyui-object-info")},')
    lines.append(f'"comfyui_version":{dump(version)},')
    lines.append(f'"packs":{dump(recorded_packs)},')
    lines.append(f'"generated":{dump(generated)},')
    lines.append('"pack_nodes":{')
    pn = sorted(pack_nodes.items())
    for i, (pack, classes) in enumerate(pn):
        lines.append(f"{dump(pack)}:{dump(classes)}" + ("," if i + 1 < len(pn) else ""))
    lines.append("},")
    lines.append('"nodes":{')
    names = list(nodes)
    for i, cls in enumerate(names):
        lines.append(f"{dump(cls)}:{dump(nodes[cls])}" + ("," if i + 1 < len(names) else ""))
    lines.append("}")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    json.loads(text)  # sanity: the output is valid JSON
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)

    counts = ", ".join(f"{p}: {len(c)}" for p, c in pn)
    print(f"wrote {args.out}: {len(nodes)} classes ({counts}), {len(text.encode('utf-8'))} bytes")
    if dropped:
        print(f"dropped: {dropped}", file=sys.stderr)


if __name__ == "__main__":
    main()
