#!/usr/bin/env python3
"""Writes random rank-4 LoRAs that fit tiny-wan's random-weight Wan models (dim 128, ffn 256,
2 blocks; see ../shared/tools/tiny-wan/make_tiny_wan.py) under the official lightx2v file names,
so the official Wan 2.2 14B t2v workflow's LoraLoaderModelOnly nodes load for real on a CPU.
Keys use the generic "diffusion_model.<module>.lora_down/lora_up/alpha" format that ComfyUI maps.
usage (with ComfyUI's python, from the ComfyUI folder): make_tiny_loras.py"""
import os, torch
from safetensors.torch import save_file

DIM, FFN, LAYERS, RANK = 128, 256, 2, 4
torch.manual_seed(1)
def lora():
    sd = {}
    for b in range(LAYERS):
        mods = {f"blocks.{b}.{a}.{p}": (DIM, DIM) for a in ("self_attn", "cross_attn") for p in "qkvo"}
        mods[f"blocks.{b}.ffn.0"] = (FFN, DIM)   # (out, in)
        mods[f"blocks.{b}.ffn.2"] = (DIM, FFN)
        for m, (o, i) in mods.items():
            k = f"diffusion_model.{m}"
            sd[k + ".lora_down.weight"] = (torch.randn(RANK, i) * 0.02).to(torch.bfloat16)
            sd[k + ".lora_up.weight"] = (torch.randn(o, RANK) * 0.02).to(torch.bfloat16)
            sd[k + ".alpha"] = torch.tensor(float(RANK))
    return sd
os.makedirs("models/loras", exist_ok=True)
for name in ("wan2.2_t2v_lightx2v_4steps_lora_v1.1_high_noise", "wan2.2_t2v_lightx2v_4steps_lora_v1.1_low_noise",
             "wan2.2_i2v_lightx2v_4steps_lora_v1_high_noise", "wan2.2_i2v_lightx2v_4steps_lora_v1_low_noise"):
    save_file(lora(), f"models/loras/{name}.safetensors")
print("tiny Wan LoRAs written")
