#!/usr/bin/env python3
"""Writes the tiny but real safetensors and GGUF fixtures in this folder, and expected.json: what
the reference Python readers (safetensors, gguf-py's GGUFReader) say about each file.

    pip install safetensors numpy gguf      # tested with safetensors 0.8.0, gguf 0.19.0
    python3 tests/data/weights/make_fixtures.py

Every model is a miniature Wan DiT (or a LoRA for one) with the tensor names and layouts of the
real files, scaled down so each file stays under 50 KB. Values are random (seeded), so the output
is the same on every run with the same library versions.
"""

import json
import os
import struct

import numpy as np

import gguf
from safetensors import safe_open
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
RNG = np.random.default_rng(2025)
MAX_BYTES = 50_000


def rand(*shape, dtype=np.float16):
    return (RNG.standard_normal(shape) * 0.02).astype(dtype)


def dit_tensors(dim, ffn, in_dim, out_dim, text_dim, freq_dim, layers, image=False, clip_dim=24):
    """(name, shape, role) of a Wan DiT in ComfyUI's WanModel layout, outermost dim first."""
    out = []
    for i in range(layers):
        b = f"blocks.{i}."
        attns = ["self_attn", "cross_attn"]
        for a in attns:
            for p in "qkvo":
                out += [(f"{b}{a}.{p}.weight", (dim, dim), "linear"), (f"{b}{a}.{p}.bias", (dim,), "vector")]
            out += [(f"{b}{a}.norm_q.weight", (dim,), "vector"), (f"{b}{a}.norm_k.weight", (dim,), "vector")]
        if image:
            for p in ("k_img", "v_img"):
                out += [(f"{b}cross_attn.{p}.weight", (dim, dim), "linear"), (f"{b}cross_attn.{p}.bias", (dim,), "vector")]
            out += [(f"{b}cross_attn.norm_k_img.weight", (dim,), "vector")]
        out += [
            (f"{b}norm3.weight", (dim,), "vector"),
            (f"{b}norm3.bias", (dim,), "vector"),
            (f"{b}ffn.0.weight", (ffn, dim), "linear"),
            (f"{b}ffn.0.bias", (ffn,), "vector"),
            (f"{b}ffn.2.weight", (dim, ffn), "linear"),
            (f"{b}ffn.2.bias", (dim,), "vector"),
            (f"{b}modulation", (1, 6, dim), "modulation"),
        ]
    out += [
        ("patch_embedding.weight", (dim, in_dim, 1, 2, 2), "conv"),
        ("patch_embedding.bias", (dim,), "vector"),
        ("text_embedding.0.weight", (dim, text_dim), "outer"),
        ("text_embedding.0.bias", (dim,), "vector"),
        ("text_embedding.2.weight", (dim, dim), "outer"),
        ("text_embedding.2.bias", (dim,), "vector"),
        ("time_embedding.0.weight", (dim, freq_dim), "outer"),
        ("time_embedding.0.bias", (dim,), "vector"),
        ("time_embedding.2.weight", (dim, dim), "outer"),
        ("time_embedding.2.bias", (dim,), "vector"),
        ("time_projection.1.weight", (6 * dim, dim), "outer"),
        ("time_projection.1.bias", (6 * dim,), "vector"),
        ("head.head.weight", (out_dim * 4, dim), "outer"),
        ("head.head.bias", (out_dim * 4,), "vector"),
        ("head.modulation", (1, 2, dim), "modulation"),
    ]
    if image:
        out += [
            ("img_emb.proj.0.weight", (clip_dim,), "vector"),
            ("img_emb.proj.0.bias", (clip_dim,), "vector"),
            ("img_emb.proj.1.weight", (clip_dim, clip_dim), "outer"),
            ("img_emb.proj.1.bias", (clip_dim,), "vector"),
            ("img_emb.proj.3.weight", (dim, clip_dim), "outer"),
            ("img_emb.proj.3.bias", (dim,), "vector"),
            ("img_emb.proj.4.weight", (dim,), "vector"),
            ("img_emb.proj.4.bias", (dim,), "vector"),
        ]
    return out


def write_safetensors_by_hand(path, tensors, metadata):
    """safetensors by the spec, for dtypes numpy lacks (F8_E4M3): 8-byte LE header length,
    JSON header padded with spaces to a multiple of 8, then the data in header order."""
    header = {"__metadata__": metadata}
    blobs = []
    offset = 0
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def fp8_bytes(n):
    # Random e4m3fn bit patterns, avoiding the NaN codes 0x7f and 0xff.
    b = RNG.integers(0, 0x7E, size=n, dtype=np.uint8)
    sign = RNG.integers(0, 2, size=n, dtype=np.uint8) << 7
    return (b | sign).tobytes()


def make_fp8_scaled(path):
    """A ComfyUI `*_fp8_scaled` T2V DiT: every linear F8_E4M3 with an F32 scalar `scale_weight`,
    biases/norms/patch conv F16, modulation F32, an empty `scaled_fp8` marker, full prefix."""
    arch = dict(dim=16, ffn=48, in_dim=16, out_dim=16, text_dim=24, freq_dim=8, layers=2)
    prefix = "model.diffusion_model."
    out = []
    for name, shape, role in dit_tensors(**arch):
        n = int(np.prod(shape))
        if role in ("linear", "outer"):
            out.append((prefix + name, "F8_E4M3", shape, fp8_bytes(n)))
            scale = name.rsplit(".", 1)[0] + ".scale_weight"
            out.append((prefix + scale, "F32", (), np.float32(0.01).tobytes()))
        elif role == "modulation":
            out.append((prefix + name, "F32", shape, rand(*shape, dtype=np.float32).tobytes()))
        else:
            out.append((prefix + name, "F16", shape, rand(*shape).tobytes()))
    out.append((prefix + "scaled_fp8", "F8_E4M3", (0,), b""))
    write_safetensors_by_hand(path, out, {"format": "pt", "modelspec.title": "tiny wan fp8_scaled"})
    return {k: v for k, v in arch.items() if k != "freq_dim"} | {"ffn_dim": arch["ffn"]}


def make_i2v_bare(path):
    """A Wan 2.1 I2V-shaped DiT in fp16 with bare names and the CLIP branch, via safetensors."""
    arch = dict(dim=16, ffn=32, in_dim=36, out_dim=16, text_dim=16, freq_dim=8, layers=2)
    tensors = {name: rand(*shape) for name, shape, _ in dit_tensors(**arch, image=True)}
    save_file(tensors, path, metadata={"format": "pt"})
    return {k: v for k, v in arch.items() if k != "freq_dim"} | {"ffn_dim": arch["ffn"]}


def make_lora(path):
    """A rank-4 LoRA for the 32-wide DiT: lora_down/lora_up pairs plus alpha scalars."""
    tensors = {}
    for i in range(2):
        for mod, (out_f, in_f) in (("self_attn.q", (32, 32)), ("ffn.0", (64, 32))):
            base = f"diffusion_model.blocks.{i}.{mod}"
            tensors[f"{base}.lora_down.weight"] = rand(4, in_f)
            tensors[f"{base}.lora_up.weight"] = rand(out_f, 4)
            tensors[f"{base}.alpha"] = np.array(4.0, dtype=np.float32)
    save_file(tensors, path)


def make_gguf(path):
    """A city96-style GGUF of a Wan DiT: bare names, a mix of ggml types (Q8_0, Q4_0, Q4_1, Q5_0,
    Q5_1 quantized by gguf-py; a Q4_K tensor written as raw blocks), 1-D tensors in F32, the 5-D
    patch conv, 3-D modulations, a `comfy.gguf.orig_shape` entry, and metadata of every type."""
    arch = dict(dim=32, ffn=64, in_dim=16, out_dim=16, text_dim=256, freq_dim=8, layers=2)
    T = gguf.GGMLQuantizationType
    w = gguf.GGUFWriter(path, "wan")
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -5)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4_000_000_000)
    w.add_int32("test.i32", -2_000_000_000)
    w.add_uint64("test.u64", 1 << 40)
    w.add_int64("test.i64", -(1 << 40))
    w.add_float32("test.f32", 0.5)
    w.add_float64("test.f64", -0.25)
    w.add_bool("test.bool", True)
    w.add_string("test.string", "héllo")
    w.add_array("test.long_array", list(range(200)))
    w.add_array("test.strings", ["one", "two", "three"])
    w.add_array("test.nested", [[1, 2, 3], [4, 5]])
    w.add_array("comfy.gguf.orig_shape.head.modulation", [1, 2, arch["dim"]])

    block_types = {0: [T.Q8_0, T.Q4_0, T.Q5_1], 1: [T.Q4_0, T.Q5_0, T.Q4_1]}
    for name, shape, role in dit_tensors(**arch):
        data = rand(*shape, dtype=np.float32)
        if role == "linear":
            i = int(name.split(".")[1])
            kind = 1 if ".ffn.0." in name else 2 if ".ffn.2." in name else 0
            qt = block_types[i][kind]
            w.add_tensor(name, gguf.quants.quantize(data, qt), raw_dtype=qt)
        elif name == "text_embedding.0.weight":
            # K-quants need rows of 256: raw Q4_K blocks (144 bytes each), random content.
            rows = RNG.integers(0, 256, size=(shape[0], shape[1] // 256 * 144), dtype=np.uint8)
            w.add_tensor(name, rows, raw_dtype=T.Q4_K)
        elif name == "time_projection.1.weight":
            w.add_tensor(name, gguf.quants.quantize(data, T.Q4_0), raw_dtype=T.Q4_0)
        elif name == "head.head.weight":
            w.add_tensor(name, gguf.quants.quantize(data, T.Q8_0), raw_dtype=T.Q8_0)
        elif name == "text_embedding.2.weight":
            w.add_tensor(name, gguf.quants.quantize(data, T.Q4_1), raw_dtype=T.Q4_1)
        elif name == "time_embedding.2.weight":
            w.add_tensor(name, gguf.quants.quantize(data, T.BF16), raw_dtype=T.BF16)
        elif name == "head.modulation":
            w.add_tensor(name, data.reshape(2, arch["dim"]))  # reshaped; orig_shape restores it
        elif role in ("vector", "modulation"):
            w.add_tensor(name, data)
        else:
            w.add_tensor(name, data.astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return {k: v for k, v in arch.items() if k != "freq_dim"} | {"ffn_dim": arch["ffn"]}


def expected_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    with safe_open(path, framework="numpy") as f:  # the reference reader agrees on the names
        assert set(f.keys()) == set(header) - {"__metadata__"}
    tensors, by_dtype, params = {}, {}, 0
    for name, t in header.items():
        if name == "__metadata__":
            continue
        begin, end = t["data_offsets"]
        tensors[name] = {"dtype": t["dtype"], "shape": t["shape"], "bytes": end - begin, "offset": begin}
        by_dtype[t["dtype"]] = by_dtype.get(t["dtype"], 0) + end - begin
        params += int(np.prod(t["shape"], dtype=np.int64)) if t["shape"] else 1
    return {"header_bytes": 8 + n, "tensor_count": len(tensors), "params": params,
            "bytes_by_dtype": by_dtype, "tensors": tensors}


def expected_gguf(path):
    r = gguf.GGUFReader(path)
    tensors, by_dtype, params = {}, {}, 0
    for t in r.tensors:
        shape = [int(d) for d in reversed(t.shape.tolist())]
        orig = r.fields.get(f"comfy.gguf.orig_shape.{t.name}")
        if orig is not None:
            shape = [int(orig.parts[i][0]) for i in orig.data]
        name = t.tensor_type.name
        tensors[t.name] = {"dtype": name, "shape": shape, "bytes": int(t.n_bytes),
                           "offset": int(t.data_offset) - r.data_offset}
        by_dtype[name] = by_dtype.get(name, 0) + int(t.n_bytes)
        params += int(t.n_elements)
    return {"header_bytes": r.data_offset, "tensor_count": len(tensors), "params": params,
            "bytes_by_dtype": by_dtype, "tensors": tensors}


def main():
    expected = {}
    jobs = [
        ("tiny_wan_t2v_fp8_scaled.safetensors", make_fp8_scaled, expected_safetensors),
        ("tiny_wan21_i2v_bare_fp16.safetensors", make_i2v_bare, expected_safetensors),
        ("tiny_wan_lora_rank4.safetensors", make_lora, expected_safetensors),
        ("tiny_wan_i2v_mixed.gguf", make_gguf, expected_gguf),
    ]
    for file, make, read in jobs:
        path = os.path.join(HERE, file)
        arch = make(path)
        size = os.path.getsize(path)
        assert size < MAX_BYTES, f"{file} is {size} bytes"
        os.chmod(path, 0o644)
        expected[file] = read(path)
        if arch:
            arch.pop("ffn", None)
            expected[file]["arch"] = arch
        print(f"{file}: {size} bytes, {expected[file]['tensor_count']} tensors")
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
