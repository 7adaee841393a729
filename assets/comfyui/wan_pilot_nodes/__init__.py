"""wan-pilot's own ComfyUI nodes.

WanPilotTorchCompile: torch.compile for a diffusion model -- its repeated transformer blocks
(Wan's `blocks`), or the whole model -- applied through the model patcher, so LoRAs and
ComfyUI's weight loading and offloading keep working on the compiled model. wan-pilot writes this
package into the `custom_nodes` of the ComfyUI it starts and inserts the node into workflows when
the server has no KJNodes compile node.

How the compiled code reaches the model, newest ComfyUI first:
- `comfy_api.torch_helpers.set_torch_compile_wrapper`: an apply_model wrapper swaps the compiled
  modules in only while the model runs, so the module tree the weight patcher walks never changes.
- Without it (older ComfyUI): an object patch on each module's `forward`. Replacing the modules
  themselves would rename their weights (`..._orig_mod...`) and LoRA patches would miss them.

torch.compile is lazy: the node only prepares; the first sampling step compiles (minutes on a
14B model, cached by inductor on disk afterwards).
"""

import inspect
import logging

import torch

try:
    from comfy_api.torch_helpers import set_torch_compile_wrapper
except Exception:  # older ComfyUI, or none at all (this package's own test)
    set_torch_compile_wrapper = None
try:
    from comfy.patcher_extension import WrappersMP
except Exception:  # ComfyUI before model wrappers (late 2024)
    WrappersMP = None

LOG = logging.getLogger(__name__)

MODES = ["default", "max-autotune", "max-autotune-no-cudagraphs", "reduce-overhead"]
BACKENDS = ["inductor", "cudagraphs", "eager", "aot_eager"]
# The combo's words and the `dynamic` argument of torch.compile they stand for.
DYNAMIC = {"false": False, "true": True, "auto": None}

# Where diffusion models keep their repeated blocks: Wan has `blocks`; Flux-, Hunyuan- and
# Lumina-style models use the others, so the node is not Wan-only.
BLOCK_LISTS = ("blocks", "double_blocks", "single_blocks", "transformer_blocks", "layers")

# Dynamo keeps its compiled variants per code object, and every block shares one `forward`.
# torch's default limit (8) would send the blocks past the eighth back to eager wherever a
# torch version keeps an entry per block; 64 is what the KJNodes compile nodes use.
MIN_RECOMPILE_LIMIT = 64
# Key of the apply_model wrapper that holds the recompile limit while the model runs.
LIMIT_WRAPPER_KEY = "wan-pilot.recompile-limit"


def block_keys(diffusion_model):
    """Model-object keys ("diffusion_model.blocks.0", ...) of the repeated blocks, or []."""
    keys = []
    for name in BLOCK_LISTS:
        blocks = getattr(diffusion_model, name, None)
        if isinstance(blocks, (torch.nn.ModuleList, torch.nn.Sequential)):
            keys.extend(f"diffusion_model.{name}.{i}" for i in range(len(blocks)))
    return keys


def _guard_filter_supported():
    try:
        return "guard_filter_fn" in inspect.signature(torch._dynamo.optimize).parameters
    except (AttributeError, TypeError, ValueError):
        return False


def _without_transformer_options_guards(guard_entries):
    # ComfyUI passes per-call facts in transformer_options (block index, sigmas, cond/uncond);
    # a guard on them would recompile for every block and every step.
    return ["transformer_options" not in entry.name for entry in guard_entries]


def compile_kwargs(backend, mode, dynamic, filter_guards):
    """Keyword arguments for one torch.compile call.

    A new dict every call: torch.compile takes `guard_filter_fn` out of the options it is given.
    torch refuses `mode` and `options` together, so with the guard filter an inductor mode is
    passed as the options it stands for (what inductor does with a mode itself).
    """
    kwargs = {"backend": backend, "dynamic": dynamic, "fullgraph": False}
    filter_guards = filter_guards and _guard_filter_supported()
    if backend == "inductor":
        if filter_guards:
            from torch._inductor import list_mode_options

            options = dict(list_mode_options(mode, dynamic))
            options["guard_filter_fn"] = _without_transformer_options_guards
            kwargs["options"] = options
        else:
            kwargs["mode"] = mode
    elif filter_guards:
        kwargs["options"] = {"guard_filter_fn": _without_transformer_options_guards}
    return kwargs


def _limit_name():
    config = torch._dynamo.config
    return "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"


def raise_recompile_limit(minimum):
    """Raises dynamo's per-code recompile limit to `minimum`, never lowers it; returns the limit."""
    config = torch._dynamo.config
    name = _limit_name()
    limit = max(getattr(config, name), minimum)
    setattr(config, name, limit)
    for total in ("accumulated_recompile_limit", "accumulated_cache_size_limit"):
        if hasattr(config, total):
            if getattr(config, total) < limit:
                setattr(config, total, limit)
            break
    return limit


def limit_wrapper(minimum):
    """An apply_model wrapper that holds the recompile limit at `minimum` or more while the
    model runs. torch 2.15 keeps dynamo settings per thread and asyncio context, and ComfyUI
    0.8 runs prompts in asyncio: the limit this node set did not reach the sampler of the next
    prompt, which reused the node's cached output."""

    def run_with_limit(executor, *args, **kwargs):
        name = _limit_name()
        limit = max(getattr(torch._dynamo.config, name), minimum)
        with torch._dynamo.config.patch(**{name: limit}):
            return executor(*args, **kwargs)

    return run_with_limit


def _compile_takes_recompile_limit():
    try:
        return "recompile_limit" in inspect.signature(torch.compile).parameters
    except (TypeError, ValueError):
        return False


def _model_object(patcher, key):
    get = getattr(patcher, "get_model_object", None)
    if get is not None:
        return get(key)
    obj = patcher.model
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def compile_model(model, mode="default", backend="inductor", dynamic="false", blocks_only=True,
                  use_wrapper=None):
    """Returns (a clone of the ModelPatcher `model` set up to run compiled, compiled keys, how).

    `use_wrapper`: None picks the apply_model wrapper when this ComfyUI has it; False forces the
    object-patch path (tests); True demands the wrapper.
    """
    if mode not in MODES:
        raise ValueError(f"unknown compile mode {mode!r}; use one of {', '.join(MODES)}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if dynamic not in DYNAMIC:
        raise ValueError(f"unknown dynamic setting {dynamic!r}; use one of {', '.join(DYNAMIC)}")
    if use_wrapper and set_torch_compile_wrapper is None:
        raise RuntimeError("this ComfyUI has no comfy_api.torch_helpers.set_torch_compile_wrapper")
    wrapper = set_torch_compile_wrapper if use_wrapper is not False else None
    if backend != "inductor" and mode != "default":
        LOG.info("wan-pilot compile: mode %s only applies to inductor; ignored for %s", mode, backend)
        mode = "default"

    patched = model.clone()
    keys = block_keys(_model_object(patched, "diffusion_model")) if blocks_only else []
    if blocks_only and not keys:
        LOG.warning("wan-pilot compile: no transformer block list found; compiling the whole "
                    "diffusion model")
    keys = keys or ["diffusion_model"]
    limit = raise_recompile_limit(max(MIN_RECOMPILE_LIMIT, 2 * len(keys)))
    as_bool = DYNAMIC[dynamic]

    if wrapper is not None:
        # The helper hands one kwargs dict to every torch.compile call, and the first call takes
        # the guard filter out of it; so the filter only goes along when there is one key.
        kwargs = compile_kwargs(backend, mode, as_bool, filter_guards=len(keys) == 1)
        wrapper(model=patched, keys=keys, **kwargs)
        how = "apply_model wrapper"
    else:
        for key in keys:
            module = _model_object(patched, key)
            # The class's forward, not an instance attribute a previous compile may have left.
            forward = type(module).forward.__get__(module)
            kwargs = compile_kwargs(backend, mode, as_bool, True)
            if _compile_takes_recompile_limit():
                kwargs["recompile_limit"] = limit
            patched.add_object_patch(f"{key}.forward", torch.compile(forward, **kwargs))
        how = "object patches"
    if WrappersMP is not None and hasattr(patched, "add_wrapper_with_key"):
        patched.remove_wrappers_with_key(WrappersMP.APPLY_MODEL, LIMIT_WRAPPER_KEY)
        patched.add_wrapper_with_key(WrappersMP.APPLY_MODEL, LIMIT_WRAPPER_KEY, limit_wrapper(limit))
    LOG.info("wan-pilot compile: %d module(s) via %s, backend %s, mode %s, dynamic %s, "
             "recompile limit %d", len(keys), how, backend, mode, dynamic, limit)
    return patched, keys, how


class WanPilotTorchCompile:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The diffusion model, after its LoRAs."}),
                "mode": (MODES, {
                    "default": "default",
                    "tooltip": "torch.compile mode (inductor only). max-autotune compiles longest "
                               "and runs fastest; the cudagraphs modes hold extra VRAM.",
                }),
                "backend": (BACKENDS, {
                    "default": "inductor",
                    "tooltip": "inductor generates kernels; cudagraphs only records CUDA graphs; "
                               "eager and aot_eager are for finding compile problems.",
                }),
                "dynamic": (list(DYNAMIC), {
                    "default": "false",
                    "tooltip": "Dynamic shapes: false compiles per size (fastest kernels), true "
                               "once for all sizes, auto lets torch decide after a size changes.",
                }),
                "blocks_only": ("BOOLEAN", {
                    "default": True,
                    "tooltip": "Compile only the repeated transformer blocks: one compile serves "
                               "them all, faster and less error prone than the whole model.",
                }),
            }
        }

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "compile"
    CATEGORY = "wan-pilot"
    DESCRIPTION = ("torch.compile for the diffusion model, through the model patcher so LoRAs "
                   "keep working. The first sampling step compiles.")

    def compile(self, model, mode, backend, dynamic, blocks_only):
        try:
            patched, _, _ = compile_model(model, mode, backend, dynamic, blocks_only)
        except Exception as error:
            raise RuntimeError(f"wan-pilot could not set up torch.compile: {error}") from error
        return (patched,)


NODE_CLASS_MAPPINGS = {"WanPilotTorchCompile": WanPilotTorchCompile}
NODE_DISPLAY_NAME_MAPPINGS = {"WanPilotTorchCompile": "Torch Compile (wan-pilot)"}
