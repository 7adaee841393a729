"""Tests of wan-pilot's ComfyUI compile node: it really compiles (inductor, on the CPU) and the
compiled model computes what the eager one does, weight patches (LoRAs) included.

    <python with torch> assets/comfyui/test_compile.py [COMFYUI_DIR]

Without a ComfyUI folder (argument or env WAN_PILOT_COMFYUI) the node runs on a stand-in for
ComfyUI's ModelPatcher. With one, it also runs ComfyUI's real ModelPatcher and sampler on a tiny
random-weight Wan model, through both ways the node attaches compiled code (the apply_model
wrapper of comfy_api.torch_helpers, and object patches for older ComfyUI). Use that install's
Python. A fresh inductor cache is used unless TORCHINDUCTOR_CACHE_DIR is set, so compiles are real.
"""

import json
import os
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # leave no __pycache__ in the checkout


def _comfyui_dir():
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        return sys.argv.pop(1)
    return os.environ.get("WAN_PILOT_COMFYUI") or None


COMFYUI = _comfyui_dir()
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="wan-pilot-inductor-"))

if COMFYUI:
    # ComfyUI reads its flags when comfy.cli_args is imported: the CPU, and PyTorch attention as
    # on a GPU (on the CPU ComfyUI would pick sub-quadratic attention, which asks psutil for free
    # memory on every call: a graph break, and a recompile whenever that number changes).
    sys.path.insert(0, os.path.abspath(COMFYUI))
    _argv, sys.argv = sys.argv, [sys.argv[0], "--cpu", "--use-pytorch-cross-attention"]
    import comfy.options

    comfy.options.enable_args_parsing()
    import comfy.model_management  # noqa: F401  (reads the flags now)
    import comfy.ldm.wan.model
    import comfy.ops
    import comfy.sample
    import comfy.sd

    sys.argv = _argv

import torch
from torch._dynamo.utils import counters

sys.path.insert(0, HERE)
import wan_pilot_nodes as node  # noqa: E402


def inductor_compiles():
    """Graphs inductor compiled or loaded from its cache so far."""
    stats = counters["inductor"]
    return stats["fxgraph_cache_miss"] + stats["fxgraph_cache_hit"]


# --- A stand-in for ComfyUI: a tiny DiT shaped like Wan, and the ModelPatcher calls the node uses.


class TinyBlock(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm = torch.nn.LayerNorm(dim)
        self.cross = torch.nn.Linear(dim, dim)
        self.ffn = torch.nn.Sequential(torch.nn.Linear(dim, 2 * dim), torch.nn.GELU(),
                                       torch.nn.Linear(2 * dim, dim))

    def forward(self, x, e, context, transformer_options={}):
        h = self.norm(x) * (1 + e)
        h = h + self.cross(context).mean(dim=1, keepdim=True)
        return x + self.ffn(h)


class TinyDiT(torch.nn.Module):
    def __init__(self, dim=32, depth=3):
        super().__init__()
        self.embed = torch.nn.Linear(dim, dim)
        self.blocks = torch.nn.ModuleList(TinyBlock(dim) for _ in range(depth))
        self.head = torch.nn.Linear(dim, dim)

    def forward(self, x, t, context, transformer_options={}):
        x = self.embed(x)
        e = torch.sin(t)[:, None, None]
        for i, block in enumerate(self.blocks):
            # As ComfyUI's Wan does: per-block facts travel in transformer_options.
            transformer_options["block_index"] = i
            x = block(x, e, context, transformer_options=transformer_options)
        return self.head(x)


class TinyBaseModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.diffusion_model = TinyDiT()


class StandInPatcher:
    """ModelPatcher's calls the node makes: clone, get_model_object, add_object_patch; plus
    patch/unpatch as ComfyUI does around sampling (setattr along the dotted key, then restore)."""

    def __init__(self, model):
        self.model = model
        self.object_patches = {}
        self._backup = {}

    def clone(self):
        other = StandInPatcher(self.model)
        other.object_patches = dict(self.object_patches)
        return other

    def add_object_patch(self, name, obj):
        self.object_patches[name] = obj

    def get_model_object(self, name):
        if name in self.object_patches:
            return self.object_patches[name]
        obj = self.model
        for part in name.split("."):
            obj = getattr(obj, part)
        return obj

    def _set(self, key, value):
        *path, last = key.split(".")
        obj = self.model
        for part in path:
            obj = getattr(obj, part)
        if value is None:
            delattr(obj, last)  # back to the class attribute
        else:
            setattr(obj, last, value)

    def __enter__(self):
        for key, value in self.object_patches.items():
            *path, last = key.split(".")
            obj = self.model
            for part in path:
                obj = getattr(obj, part)
            self._backup[key] = obj.__dict__.get(last)
            self._set(key, value)
        return self.model.diffusion_model

    def __exit__(self, *_):
        for key, value in self._backup.items():
            self._set(key, value)
        self._backup.clear()


def tiny_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, 16, 32, generator=g), torch.rand(2, generator=g),
            torch.randn(2, 8, 32, generator=g))


class StandInTests(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(0)
        torch._dynamo.reset()
        self.base = StandInPatcher(TinyBaseModel().eval())

    def run_model(self, patcher, inputs):
        with torch.no_grad(), patcher as dit:
            return dit(*inputs, transformer_options={})

    def test_blocks_compile_with_inductor_and_match_eager(self):
        inputs = tiny_inputs()
        eager = self.run_model(self.base, inputs)
        before = inductor_compiles()
        started = time.monotonic()
        patched, keys, how = node.compile_model(self.base, "default", "inductor", "false", True,
                                                use_wrapper=False)
        self.assertEqual(how, "object patches")
        self.assertEqual(keys, [f"diffusion_model.blocks.{i}" for i in range(3)])
        self.assertEqual(sorted(patched.object_patches),
                         [f"diffusion_model.blocks.{i}.forward" for i in range(3)])
        self.assertEqual(self.base.object_patches, {}, "the input model is left as it was")
        compiled = self.run_model(patched, inputs)
        print(f"\n  stand-in blocks: first compiled call {time.monotonic() - started:.1f} s",
              file=sys.stderr)
        self.assertGreater(inductor_compiles(), before, "inductor compiled nothing")
        torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)
        # The module tree is untouched, so weight names stay as the weight patcher knows them.
        self.assertNotIn("_orig_mod", " ".join(k for k, _ in self.base.model.named_parameters()))

        # Weights patched in place after compiling (what loading a LoRA does) are used.
        with torch.no_grad():
            self.base.model.diffusion_model.blocks[1].ffn[0].weight.add_(0.05)
        changed = self.run_model(self.base, inputs)
        self.assertGreater((changed - eager).abs().max().item(), 1e-3)
        torch.testing.assert_close(self.run_model(patched, inputs), changed, rtol=1e-4, atol=1e-4)

        # Unpatched again, the model runs eager code.
        self.assertNotIn("forward", vars(self.base.model.diffusion_model.blocks[0]))

    def test_whole_model_when_blocks_only_is_off(self):
        inputs = tiny_inputs(1)
        eager = self.run_model(self.base, inputs)
        patched, keys, _ = node.compile_model(self.base, "default", "inductor", "true", False,
                                              use_wrapper=False)
        self.assertEqual(keys, ["diffusion_model"])
        self.assertEqual(list(patched.object_patches), ["diffusion_model.forward"])
        torch.testing.assert_close(self.run_model(patched, inputs), eager, rtol=1e-4, atol=1e-4)

    def test_a_model_without_a_block_list_is_compiled_whole(self):
        patcher = StandInPatcher(torch.nn.Module())
        patcher.model.diffusion_model = torch.nn.Linear(4, 4)
        patched, keys, _ = node.compile_model(patcher, use_wrapper=False)
        self.assertEqual(keys, ["diffusion_model"])
        x = torch.randn(2, 4)
        with torch.no_grad(), patched:
            torch.testing.assert_close(patcher.model.diffusion_model(x),
                                       torch.nn.functional.linear(
                                           x, patcher.model.diffusion_model.weight,
                                           patcher.model.diffusion_model.bias))

    def test_eager_backend_runs_without_inductor(self):
        inputs = tiny_inputs(2)
        eager = self.run_model(self.base, inputs)
        before = inductor_compiles()
        patched, _, _ = node.compile_model(self.base, "max-autotune", "eager", "auto", True,
                                           use_wrapper=False)
        torch.testing.assert_close(self.run_model(patched, inputs), eager)
        self.assertEqual(inductor_compiles(), before)

    def test_bad_choices_are_refused_with_the_choices(self):
        with self.assertRaisesRegex(ValueError, "max-autotune"):
            node.compile_model(self.base, mode="fast", use_wrapper=False)
        with self.assertRaisesRegex(ValueError, "aot_eager"):
            node.compile_model(self.base, backend="tensorrt", use_wrapper=False)
        with self.assertRaisesRegex(ValueError, "auto"):
            node.compile_model(self.base, dynamic="maybe", use_wrapper=False)


class SettingsTests(unittest.TestCase):
    def test_the_recompile_limit_is_raised_never_lowered(self):
        config = torch._dynamo.config
        name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
        saved = getattr(config, name)
        try:
            setattr(config, name, 8)
            self.assertEqual(node.raise_recompile_limit(64), 64)
            self.assertEqual(getattr(config, name), 64)
            setattr(config, name, 200)
            self.assertEqual(node.raise_recompile_limit(64), 200)
            self.assertEqual(getattr(config, name), 200)
        finally:
            setattr(config, name, saved)

    def test_the_limit_wrapper_holds_the_limit_in_another_thread(self):
        # Where dynamo settings are per thread (torch 2.15), a fresh thread starts at the default.
        name = node._limit_name()
        seen = {}

        def executor(*args, **kwargs):
            seen["inside"] = getattr(torch._dynamo.config, name)
            return args, kwargs

        def sampler_thread():
            seen["before"] = getattr(torch._dynamo.config, name)
            seen["result"] = node.limit_wrapper(96)(executor, 1, x=2)
            seen["after"] = getattr(torch._dynamo.config, name)

        worker = threading.Thread(target=sampler_thread)
        worker.start()
        worker.join()
        self.assertEqual(seen["inside"], max(96, seen["before"]))
        self.assertEqual(seen["after"], seen["before"])
        self.assertEqual(seen["result"], ((1,), {"x": 2}))

    def test_a_mode_with_the_guard_filter_becomes_its_inductor_options(self):
        kwargs = node.compile_kwargs("inductor", "max-autotune-no-cudagraphs", False, True)
        if "options" in kwargs:  # torch with guard filters
            self.assertNotIn("mode", kwargs)
            self.assertTrue(kwargs["options"]["max_autotune"])
            self.assertIn("guard_filter_fn", kwargs["options"])
        else:
            self.assertEqual(kwargs["mode"], "max-autotune-no-cudagraphs")
        plain = node.compile_kwargs("inductor", "reduce-overhead", None, False)
        self.assertEqual(plain, {"backend": "inductor", "dynamic": None, "fullgraph": False,
                                 "mode": "reduce-overhead"})
        self.assertNotIn("mode", node.compile_kwargs("eager", "default", False, False))

    def test_inputs_match_the_definition_wan_pilot_carries(self):
        # wan-pilot converts and edits workflows with this recorded /object_info entry.
        with open(os.path.join(HERE, "object_info.json"), encoding="utf-8") as f:
            recorded = json.load(f)["WanPilotTorchCompile"]
        ours = json.loads(json.dumps(node.WanPilotTorchCompile.INPUT_TYPES()))
        self.assertEqual(ours, recorded["input"])
        self.assertEqual(list(ours["required"]), recorded["input_order"]["required"])
        self.assertEqual(recorded["output"], list(node.WanPilotTorchCompile.RETURN_TYPES))
        self.assertEqual(recorded["category"], node.WanPilotTorchCompile.CATEGORY)
        self.assertEqual(recorded["display_name"],
                         node.NODE_DISPLAY_NAME_MAPPINGS["WanPilotTorchCompile"])


# --- ComfyUI's own ModelPatcher and sampler, on a tiny random-weight Wan model.


@unittest.skipUnless(COMFYUI, "needs a ComfyUI folder (argument or WAN_PILOT_COMFYUI)")
class ComfyUITests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        torch.manual_seed(0)
        dit = comfy.ldm.wan.model.WanModel(
            # ComfyUI reads the head count as dim // 128.
            model_type="t2v", patch_size=(1, 2, 2), text_len=512, in_dim=16, dim=128, ffn_dim=256,
            freq_dim=256, text_dim=4096, out_dim=16, num_heads=1, num_layers=3,
            window_size=(-1, -1), qk_norm=True, cross_attn_norm=True, eps=1e-6,
            operations=comfy.ops.disable_weight_init)
        state = {k: torch.randn_like(v) * 0.05 for k, v in dit.state_dict().items()}
        cls.base = comfy.sd.load_diffusion_model_state_dict(state)
        # A LoRA-like weight patch on two blocks: the compiled model must use patched weights.
        cls.lora = cls.base.clone()
        delta = {}
        for key in ("diffusion_model.blocks.0.ffn.0.weight",
                    "diffusion_model.blocks.2.self_attn.q.weight"):
            delta[key] = (torch.randn_like(cls.base.get_model_object(key)) * 0.5,)
        added = cls.lora.add_patches(delta, 1.0)
        assert len(added) == 2, added
        cls.eager = cls.sample(cls.lora)
        started = time.monotonic()
        cls.sample(cls.lora)
        cls.eager_seconds = time.monotonic() - started
        cls.unpatched = cls.sample(cls.base)

    @staticmethod
    def sample(patcher):
        g = torch.Generator().manual_seed(7)
        latent = torch.zeros(1, 16, 2, 8, 8)
        noise = torch.randn(latent.shape, generator=g)
        cond = [[torch.randn(1, 16, 4096, generator=g) * 0.1, {}]]
        return comfy.sample.sample(patcher, noise, 3, 1.0, "euler", "simple", cond, cond, latent,
                                   disable_pbar=True, seed=7)

    def check(self, use_wrapper, how):
        self.assertGreater((self.eager - self.unpatched).abs().max().item(), 1e-2,
                           "the weight patch must change the result for this test to mean much")
        torch._dynamo.reset()
        counters.clear()
        before = inductor_compiles()
        patched, keys, used = node.compile_model(self.lora, "default", "inductor", "false", True,
                                                 use_wrapper=use_wrapper)
        self.assertEqual(used, how)
        self.assertEqual(keys, [f"diffusion_model.blocks.{i}" for i in range(3)])
        limits = patched.get_wrappers(node.WrappersMP.APPLY_MODEL, node.LIMIT_WRAPPER_KEY)
        self.assertEqual(len(limits), 1, "the recompile limit travels with the model")
        started = time.monotonic()
        compiled = self.sample(patched)
        seconds = time.monotonic() - started
        again = time.monotonic()
        self.sample(patched)
        print(f"\n  ComfyUI {how}: 3 steps {seconds:.1f} s with compiling, "
              f"{time.monotonic() - again:.2f} s compiled ({self.eager_seconds:.2f} s eager); "
              f"dynamo frames {counters['frames']['ok']}, graphs {counters['stats']['unique_graphs']}",
              file=sys.stderr)
        self.assertGreater(inductor_compiles(), before, "inductor compiled nothing")
        torch.testing.assert_close(compiled, self.eager, rtol=1e-3, atol=1e-3)
        # The input model stays eager.
        torch.testing.assert_close(self.sample(self.lora), self.eager)

    @unittest.skipIf(node.set_torch_compile_wrapper is None,
                     "this ComfyUI has no comfy_api.torch_helpers")
    def test_apply_model_wrapper(self):
        self.check(None, "apply_model wrapper")

    def test_object_patches(self):
        self.check(False, "object patches")

    def test_the_node_class_returns_a_model(self):
        (patched,) = node.WanPilotTorchCompile().compile(self.lora, "default", "inductor", "false",
                                                         True)
        self.assertIsNot(patched, self.lora)
        self.assertIsInstance(patched, type(self.lora))


if __name__ == "__main__":
    unittest.main(verbosity=2)
