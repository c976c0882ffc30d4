"""GPU readiness in one prepared command (issue #22): the xformers and fp16/bf16 paths, checked in one short GPU window.

    python scripts/check_gpu.py [--json gpu_check.json] [--only GROUP ...] [--require-xformers]
                                [--timeout-per-check S] [--dry-run]

Row groups (``--only`` takes any of them):

``unet``     an SD1.5-shaped ``UNet2DConditionModel`` with random weights (built from config, no download): one
             denoising call at 512x512, batch 4 with CFG (8 UNet rows, 64x64 latents); fp32/SDPA is the reference,
             then SDPA and xformers in fp16 and bf16: max |difference|, images/s (= 4 / seconds per call), peak memory.
``testbed``  the testbed teacher (``pkg:zoo.testbed/weights/teacher``): one CFG UNet call compared like ``unet``,
             images/s of the full DDIM pipeline (batch 4, CFG, 25 steps, decode).
``nasa``     SNOOPI's NASA cross-attention processors (``zoo.negative_attention``) on the SD1.5-shaped UNet, batch 4
             (one call, no CFG), on both backends; the reference row also checks that NASA changes the output.
``agd``      AGD's cross-attention adapters (``zoo_plugins.agd.adapters``: ``AGDAdapters.for_unet``, ``attach``,
             ``sampling_loop``/``at_step`` as the AGD sampler uses them) on the same UNet, both backends; the adapters'
             output projections get random weights so that they are not the identity (checked on the reference row).
``train``    ``zoo train swiftbrush train.steps=3 train.mixed_precision=fp16`` (subprocess): exit 0, finite losses at
             every step, an export with finite weights.
``fsdp``     ``torchrun --nproc_per_node 1 -m zoo train swiftbrush train.steps=2 train.distributed=fsdp
             train.mixed_precision=bf16`` (NCCL), and, in the same process group, FSDP2 ``fully_shard``
             (``zoo.train.parallel.shard``) of the testbed UNet with the bf16 policy: forward against the unsharded
             fp32 forward, backward, an AdamW step (the runtime shards only with more than one process, so this second
             row is what exercises ``fully_shard`` on one GPU).

It prints one table (columns: check, backend, dtype, max_abs_diff, images_per_s, peak_mem_GiB, status) and exits 1
when any row FAILED, 0 otherwise (``skipped`` rows do not fail: xformers not installed, unless --require-xformers).
Every check is isolated: an exception or a timeout becomes a FAILED row with one line of reason, and the script goes
on. Nothing is installed or downloaded. Without a CUDA device it prints one line and exits 2, unless ``--dry-run``:
then every check it can runs on the CPU with tiny sizes (a tiny UNet, fp32 and bf16, SDPA only, 1 training step,
the FSDP rows on gloo), in the same table format, so that this script's own logic is tested without a GPU
(``tests/test_check_gpu.py``). How to run it and what to do when a row fails: docs/HARDWARE.md.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `import zoo` from a plain checkout too (the plugins still need `pip install -e .`)
    sys.path.append(str(REPO))

NO_CUDA_LINE = "no CUDA device: nothing to check; run this on a GPU machine"
NO_CUDA_EXIT = 2
GROUPS = ("unet", "nasa", "agd", "testbed", "train", "fsdp")
COLUMNS = ("check", "backend", "dtype", "max_abs_diff", "images_per_s", "peak_mem_GiB", "status")
BACKENDS = ("sdpa", "xformers")
TESTBED_REF = "pkg:zoo.testbed/weights/teacher"

# -- tolerances --------------------------------------------------------------------------------------------------------
# max |output - reference| must stay below REL_TOL[dtype] * max |reference output|. Relative to the output's scale
# because a random-weight UNet's outputs have no fixed size (SD1.5-shaped, random init: max |eps| ~ 1.3, std ~ 0.33).
# Calibrated on that UNet (CPU, 16x16 latents, SDPA): fp16 vs fp32 reached 1.6e-3 and bf16 vs fp32 1.7e-2 of the
# scale (the 8-bit mantissa of bf16 against the 11-bit one of fp16, accumulated through ~70 layers). The tolerances
# leave about 5x headroom for the longer 4096-token attention rows at 512x512 and for the GPU kernels' different
# accumulation order, and stay well below what a real bug gives (an attention kernel returning its heads in the
# wrong order moved the outputs by 0.26x the scale on the tiny dry-run UNet and 0.33x on the testbed teacher; a
# missing scale, mask or residual moves them more).
REL_TOL = {"fp16": 1e-2, "bf16": 8e-2}
# xformers against SDPA at the same dtype: both kernels accumulate in fp32 and round once to fp16/bf16, so they differ
# by rounding noise that the rest of the network propagates exactly as it propagates the dtype's own error against
# fp32; each is within REL_TOL of the fp32 reference, so the same bound is used (a layout/scale bug is ~30x above it).
XFORMERS_REL_TOL = dict(REL_TOL)
# NASA (alpha 0.5, a random negative embedding) and AGD (random adapter output projections) must move the fp32 output
# by more than this share of its scale, or the processors / hooks are not active: inactive, the output is the plain
# one computed by the same kernels (a difference of 0, at most fp32 noise ~1e-6); active, they moved it by 1.6-2.2 %
# on the tiny dry-run UNet (cross-attention is a small part of a random UNet's residual stream).
ACTIVE_MIN_REL = 1e-4

# Rough seconds per group on an H200 (imports, model builds on the GPU, warm-up, timed calls, subprocess start-up),
# printed as the run-time estimate; the whole script is meant to take under ~5 minutes there.
ESTIMATE_S = {"startup": 15, "unet": 25, "testbed": 25, "nasa": 15, "agd": 20, "train": 60, "fsdp": 80}
ESTIMATE_DRY_S = {"startup": 10, "unet": 4, "testbed": 6, "nasa": 2, "agd": 3, "train": 20, "fsdp": 25}

DTYPE_NAMES = ("fp32", "fp16", "bf16")


def _torch_dtype(name: str):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


@dataclass
class Sizes:
    """What the checks run at: SD1.5 shape at 512x512 batch 4 on a GPU, tiny sizes on the CPU (--dry-run)."""

    label: str
    unet_config: dict
    batch: int  # images per call (the CFG call has 2 * batch UNet rows)
    latent: int  # latent height and width
    tokens: int
    agd_hidden: int
    testbed_batch: int
    testbed_steps: int
    warmup: int
    iters: int
    train_steps: int
    train_precision: str
    train_extra: tuple[str, ...]
    fsdp_steps: int


SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280, 1280),
                 down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                   "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                 cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32)
TINY_UNET = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
                 down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32, attention_head_dim=8,
                 norm_num_groups=8)

GPU_SIZES = Sizes("SD1.5-shaped UNet (random weights), 512x512, batch 4 (8 UNet rows with CFG)", SD15_UNET, batch=4,
                  latent=64, tokens=77, agd_hidden=320, testbed_batch=4, testbed_steps=25, warmup=2, iters=5,
                  train_steps=3, train_precision="fp16", train_extra=(), fsdp_steps=2)
DRY_SIZES = Sizes("tiny UNet (random weights), 8x8 latents, batch 2 (dry run on the CPU)", TINY_UNET, batch=2,
                  latent=8, tokens=77, agd_hidden=16, testbed_batch=2, testbed_steps=1, warmup=0, iters=1,
                  train_steps=1, train_precision="bf16", train_extra=("train.batch_size=1",), fsdp_steps=1)


@dataclass
class Row:
    group: str
    check: str
    backend: str
    dtype: str
    max_abs_diff: float | None = None
    images_per_s: float | None = None
    peak_mem_GiB: float | None = None
    status: str = "not run"
    reference: str = ""
    seconds: float | None = None
    detail: dict = field(default_factory=dict)
    is_reference: bool = False


class CheckFailed(Exception):
    """A check's verdict (one line), as opposed to an unexpected error."""


class CheckSkipped(Exception):
    pass


class CheckTimeout(Exception):
    pass


def one_line(exc: BaseException, limit: int = 200) -> str:
    chain, seen = [], set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        chain.append(link)
        link = link.__cause__ or link.__context__
    timeout = next((e for e in chain if isinstance(e, CheckTimeout)), None)
    if timeout is not None and timeout is not exc:  # e.g. wrapped by a lazy import that the alarm interrupted
        return one_line(timeout, limit)
    if "look up to see its traceback" in str(exc) and len(chain) > 1:  # diffusers' lazy-import wrapper
        return one_line(chain[1], limit)
    text = str(exc).strip().splitlines()
    message = text[0] if text else ""
    if isinstance(exc, (CheckFailed, CheckSkipped, CheckTimeout)):
        line = message
    else:
        line = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise CheckTimeout in the main thread after ``seconds`` (between Python bytecodes, so also after a kernel)."""
    def handler(signum, frame):
        raise CheckTimeout(f"timed out after {seconds:g} s (--timeout-per-check)")

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- the run's context -------------------------------------------------------------------------------------------------
class Context:
    def __init__(self, args, sizes: Sizes, device) -> None:
        import torch

        self.args = args
        self.sizes = sizes
        self.device = device
        self.cuda = device.type == "cuda"
        self.dry = bool(args.dry_run)
        self.xformers = _xformers_version()
        self.outputs: dict[tuple, Any] = {}  # (group, dtype, backend) -> output tensor (float32)
        self.torch = torch

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize(self.device)

    def free(self) -> None:
        gc.collect()
        if self.cuda:
            self.torch.cuda.empty_cache()

    def skip_reason(self, backend: str, dtype: str) -> tuple[str, str] | None:
        """("skipped"|"FAILED", reason) for a row that cannot run here, else None."""
        if self.dry and dtype == "fp16":
            return "skipped", "dry run: fp16 is checked on CUDA only (the CPU runs fp32 and bf16)"
        if backend == "xformers":
            if self.dry:
                return "skipped", "dry run: xformers kernels need CUDA"
            if self.xformers is not None and self.xformers.startswith("broken"):
                return "FAILED", f"xformers is installed but does not import ({self.xformers[8:]})"
            if self.xformers is None:
                if self.args.require_xformers:
                    return "FAILED", "xformers not installed (--require-xformers)"
                return "skipped", "xformers not installed"
        return None

    def timed(self, call: Callable[[], Any], warmup: int | None = None, iters: int | None = None):
        """(last output, seconds per call, peak GiB or None): warm-up calls, then the mean of timed calls."""
        torch = self.torch
        warmup = self.sizes.warmup if warmup is None else warmup
        iters = self.sizes.iters if iters is None else iters
        for _ in range(warmup):
            call()
        self.sync()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        started = time.perf_counter()
        out = None
        for _ in range(iters):
            out = call()
        self.sync()
        seconds = (time.perf_counter() - started) / iters
        peak = torch.cuda.max_memory_allocated(self.device) / 2**30 if self.cuda else None
        return out, seconds, peak


def _xformers_version() -> str | None:
    """Its version; None when not installed; "broken: ..." when installed but ``xformers.ops`` does not import."""
    import importlib
    import importlib.util

    from zoo.attention import xformers_available

    if importlib.util.find_spec("xformers") is None:
        return None
    if not xformers_available():
        try:
            importlib.import_module("xformers.ops")
        except Exception as exc:  # noqa: BLE001
            return f"broken: {one_line(exc, 120)}"
    import xformers

    return getattr(xformers, "__version__", "?")


REQUIRED = ("diffusers", "transformers", "accelerate", "peft", "omegaconf", "safetensors", "pluggy", "click")


def missing_packages() -> list[str]:
    """Packages the checks need that do not import, and the zoo's own plugins when the project is not installed."""
    import importlib.util
    from importlib import metadata

    missing = [name for name in REQUIRED if importlib.util.find_spec(name) is None]
    try:
        names = {ep.name for ep in metadata.entry_points(group="distill_zoo")}
    except Exception:  # noqa: BLE001
        names = set()
    if "swiftbrush" not in names or importlib.util.find_spec("zoo_plugins") is None:
        missing.append("distill-zoo itself (pip install --no-deps --no-build-isolation -e .)")
    return missing


def compare(ctx: Context, row: Row, out, group_key: str) -> None:
    """Fill max_abs_diff and decide the status of a non-reference row (raises CheckFailed)."""
    torch = ctx.torch
    if not bool(torch.isfinite(out).all()):
        raise CheckFailed(f"non-finite output ({int((~torch.isfinite(out)).sum())} values)")
    reference = ctx.outputs.get((group_key, "fp32", "sdpa"))
    if reference is None:
        raise CheckFailed("no fp32/SDPA reference (its row failed or was not run)")
    scale = float(reference.abs().max())
    tol = REL_TOL[row.dtype] * scale
    vs_ref = float((out - reference).abs().max())
    row.detail.update(vs_fp32_sdpa=vs_ref, scale=scale, tolerance=tol, rel_tolerance=REL_TOL[row.dtype])
    if row.backend == "xformers":
        same = ctx.outputs.get((group_key, row.dtype, "sdpa"))
        if same is not None:
            vs_sdpa = float((out - same).abs().max())
            row.max_abs_diff = vs_sdpa
            row.reference = f"sdpa/{row.dtype}"
            row.detail["vs_sdpa_same_dtype"] = vs_sdpa
            xtol = XFORMERS_REL_TOL[row.dtype] * scale
            if vs_sdpa > xtol:
                raise CheckFailed(f"xformers differs from SDPA ({row.dtype}) by {vs_sdpa:.3g} > {xtol:.3g} "
                                  f"({XFORMERS_REL_TOL[row.dtype]:g} x output scale {scale:.3g})")
        else:
            row.max_abs_diff = vs_ref
            row.reference = "fp32/sdpa (the SDPA row of this dtype failed)"
    else:
        row.max_abs_diff = vs_ref
        row.reference = "fp32/sdpa"
    if vs_ref > tol:
        raise CheckFailed(f"{row.dtype} differs from the fp32 reference by {vs_ref:.3g} > {tol:.3g} "
                          f"({REL_TOL[row.dtype]:g} x output scale {scale:.3g})")


# -- SD1.5-shaped UNet: plain CFG call, NASA, AGD ----------------------------------------------------------------------
class UNetBench:
    """One random-weight UNet at a time (so that peak memory is that of the model under test), its inputs, and the
    three kinds of call: ``unet`` (CFG batch), ``nasa`` and ``agd`` (batch of images, one call)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._model = None
        self._model_dtype = None
        self._inputs = None
        self._agd_master = None

    def model(self, dtype: str):
        torch = self.ctx.torch
        if self._model_dtype == dtype:
            return self._model
        self._model = None
        self._model_dtype = None
        self.ctx.free()
        from diffusers import UNet2DConditionModel

        torch.manual_seed(0)  # the same random weights for every dtype (built on the device, then cast)
        with torch.device(self.ctx.device):
            model = UNet2DConditionModel(**self.ctx.sizes.unet_config)
        model = model.to(dtype=_torch_dtype(dtype)).eval().requires_grad_(False)
        self._model, self._model_dtype = model, dtype
        return model

    def inputs(self):
        """CPU fp32 tensors, identical for every dtype and backend."""
        if self._inputs is None:
            torch = self.ctx.torch
            s = self.ctx.sizes
            g = torch.Generator().manual_seed(1)
            cond_dim = s.unet_config["cross_attention_dim"]
            self._inputs = {
                "latents": torch.randn(2 * s.batch, 4, s.latent, s.latent, generator=g),
                "text": torch.randn(2 * s.batch, s.tokens, cond_dim, generator=g),  # cond rows, then uncond rows
                "negative": torch.randn(s.batch, s.tokens, cond_dim, generator=g),
            }
        return self._inputs

    def agd_master(self, model):
        """AGD adapters for this UNet shape, fp32 on the CPU, seeded; output projections random (not identity)."""
        if self._agd_master is None:
            torch = self.ctx.torch
            from zoo_plugins.agd.adapters import AGDAdapters

            torch.manual_seed(2)
            adapters = AGDAdapters.for_unet(model, hidden_dim=self.ctx.sizes.agd_hidden)
            g = torch.Generator().manual_seed(3)
            with torch.no_grad():
                for adapter in adapters.layers.values():
                    adapter.out_proj.weight.copy_(torch.randn(adapter.out_proj.weight.shape, generator=g) * 0.02)
            self._agd_master = adapters.to(device="cpu", dtype=torch.float32)
        return self._agd_master

    def run(self, row: Row) -> None:
        ctx, torch = self.ctx, self.ctx.torch
        from zoo.attention import set_attention_backend

        dtype = _torch_dtype(row.dtype)
        model = self.model(row.dtype)
        concrete = set_attention_backend(model, row.backend)
        if concrete != row.backend:
            raise CheckFailed(f"set_attention_backend chose {concrete!r} instead of {row.backend!r}")
        s = ctx.sizes
        data = {k: v.to(ctx.device, dtype) for k, v in self.inputs().items()}
        t = torch.tensor(500, device=ctx.device)
        with torch.no_grad(), contextlib.ExitStack() as stack:
            if row.group == "unet":
                latents, text = data["latents"], data["text"]
                call = lambda: model(latents, t, encoder_hidden_states=text).sample  # noqa: E731
                base_call = None
            else:
                latents, text = data["latents"][: s.batch], data["text"][: s.batch]
                plain = lambda: model(latents, t, encoder_hidden_states=text).sample  # noqa: E731
                base_call = plain
                if row.group == "nasa":
                    from zoo.negative_attention import NASAAttnProcessor, negative_attention

                    installed = stack.enter_context(negative_attention(model, data["negative"], 0.5))
                    kinds = {type(p).__name__ for p in model.attn_processors.values()}
                    wrong = [n for n, p in installed.items() if getattr(p, "backend", None) != row.backend]
                    if not installed or wrong or not all(isinstance(p, NASAAttnProcessor) for p in installed.values()):
                        raise CheckFailed(f"NASA processors not installed on the {row.backend} backend ({kinds})")
                    row.detail["nasa_layers"] = len(installed)
                    call = plain
                    base_call = None  # computed below, outside the NASA context
                else:  # agd
                    adapters = copy.deepcopy(self.agd_master(model)).to(device=ctx.device, dtype=dtype)
                    adapters.eval().requires_grad_(False)
                    adapters.attach(model)
                    stack.callback(adapters.detach)
                    adapters.set_guidance(5.0)
                    timesteps = torch.tensor([500], device=ctx.device)
                    stack.enter_context(adapters.sampling_loop(model, timesteps, text))

                    def call():
                        adapters.at_step(0)  # as the AGD sampler does before each UNet call of its loop
                        return model(latents, timesteps[0], encoder_hidden_states=text).sample

                    def base_call():
                        with adapters.disabled():
                            return model(latents, timesteps[0], encoder_hidden_states=text).sample

                    row.detail["agd_layers"] = len(adapters.layers)
            out, seconds, peak = ctx.timed(call)
            out = out.float()
            base = base_call().float() if (row.is_reference and base_call is not None) else None
        if row.is_reference and row.group == "nasa":
            with torch.no_grad():
                base = model(latents, t, encoder_hidden_states=text).sample.float()
        row.images_per_s = s.batch / seconds
        row.peak_mem_GiB = peak
        row.detail["seconds_per_call"] = seconds
        row.detail["unet_rows_per_call"] = int(latents.shape[0])
        ctx.outputs[(row.group, row.dtype, row.backend)] = out
        if row.is_reference:
            row.reference = "this row (fp32, SDPA)"
            if not bool(torch.isfinite(out).all()):
                raise CheckFailed("non-finite fp32 output")
            if base is not None:
                scale = float(out.abs().max())
                moved = float((out - base).abs().max())
                row.detail["change_vs_plain"] = moved
                if moved <= ACTIVE_MIN_REL * scale:
                    what = "NASA processors" if row.group == "nasa" else "AGD adapters"
                    raise CheckFailed(f"{what} did not change the output ({moved:.3g} <= {ACTIVE_MIN_REL:g} x "
                                      f"{scale:.3g}): not active")
            return
        compare(ctx, row, out, row.group)


# -- testbed teacher ---------------------------------------------------------------------------------------------------
class TestbedBench:
    PROMPTS = ("a red circle", "a blue square", "a green triangle", "a yellow circle")

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._sampler = None
        self._dtype = None
        self._inputs = None

    def sampler(self, dtype: str):
        if self._dtype == dtype:
            return self._sampler
        self._sampler = self._dtype = None
        self.ctx.free()
        from zoo.t2i import DDIMSampler

        self._sampler = DDIMSampler.from_model(TESTBED_REF, device=str(self.ctx.device), dtype=_torch_dtype(dtype),
                                               attention="sdpa")
        self._dtype = dtype
        return self._sampler

    def inputs(self):
        """fp32 CPU latents and text embeddings (from the fp32 text encoder), so that the dtypes see the same input."""
        if self._inputs is None:
            torch = self.ctx.torch
            from zoo.t2i import SDComponents
            from zoo.hub import resolve_model

            c = SDComponents.from_folder(resolve_model(TESTBED_REF).path, device="cpu", dtype=torch.float32)
            b = self.ctx.sizes.testbed_batch
            prompts = list((self.PROMPTS * b)[:b])
            cond = c.encode_prompt(prompts)
            uncond = c.encode_prompt([""] * b)
            latents = torch.randn(c.latent_shape(b, c.default_size, c.default_size),
                                  generator=torch.Generator().manual_seed(4))
            self._inputs = {"latents": torch.cat([latents, latents]), "text": torch.cat([cond, uncond]),
                            "prompts": prompts}
        return self._inputs

    def run(self, row: Row) -> None:
        ctx, torch = self.ctx, self.ctx.torch
        from zoo.attention import set_attention_backend

        dtype = _torch_dtype(row.dtype)
        sampler = self.sampler(row.dtype)
        unet = sampler.components.unet
        concrete = set_attention_backend(unet, row.backend)
        if concrete != row.backend:
            raise CheckFailed(f"set_attention_backend chose {concrete!r} instead of {row.backend!r}")
        data = self.inputs()
        latents, text = data["latents"].to(ctx.device, dtype), data["text"].to(ctx.device, dtype)
        with torch.no_grad():
            eps = unet(latents, torch.tensor(500, device=ctx.device), encoder_hidden_states=text).sample.float()
        steps = ctx.sizes.testbed_steps

        def pipeline():
            return sampler(data["prompts"], steps=steps, guidance_scale=5.0, seed=0, output_type="pt").images

        images, seconds, peak = ctx.timed(pipeline, warmup=min(1, ctx.sizes.warmup), iters=min(3, ctx.sizes.iters))
        if not bool(torch.isfinite(images).all()):
            raise CheckFailed("the pipeline's images are not finite")
        row.images_per_s = len(data["prompts"]) / seconds
        row.peak_mem_GiB = peak
        row.detail.update(seconds_per_pipeline_call=seconds, steps=steps, images=len(data["prompts"]),
                          size=int(images.shape[-1]))
        ctx.outputs[("testbed", row.dtype, row.backend)] = eps
        if row.is_reference:
            row.reference = "this row (fp32, SDPA)"
            if not bool(torch.isfinite(eps).all()):
                raise CheckFailed("non-finite fp32 UNet output")
            return
        compare(ctx, row, eps, "testbed")


# -- training under the runtime (subprocesses) -------------------------------------------------------------------------
def distributed_key_present() -> bool:
    """True when the runtime's config has ``train.distributed`` (the lead's FSDP work, zoo/train/config.py)."""
    import dataclasses

    from zoo.train.config import TrainingConfig

    return "distributed" in {f.name for f in dataclasses.fields(TrainingConfig)}


def _child_env(ctx: Context) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH", ""), str(REPO)) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if ctx.dry:
        env["CUDA_VISIBLE_DEVICES"] = ""  # a dry run stays on the CPU even on a GPU machine
        env.setdefault("OMP_NUM_THREADS", "1")
    return env


def run_worker(ctx: Context, launcher: list[str], kind: str, zoo_args: list[str], workdir: Path,
               timeout: float) -> tuple[dict, str]:
    """Run this script as a worker (``--worker KIND``) under ``launcher``; return (its JSON result, output tail)."""
    out_file = workdir / f"{kind}-worker.json"
    command = [*launcher, str(Path(__file__).resolve()), "--worker", kind, "--worker-out", str(out_file)]
    if ctx.dry:
        command.append("--dry-run")
    command += ["--", *zoo_args]
    process = subprocess.Popen(command, cwd=str(workdir), env=_child_env(ctx), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the launcher and its workers (their own session)
        process.communicate()
        raise CheckTimeout(f"timed out after {timeout:g} s (--timeout-per-check)") from None
    tail = "\n".join(output.strip().splitlines()[-15:])
    (workdir / f"{kind}-output.log").write_text(output)
    result = json.loads(out_file.read_text()) if out_file.is_file() else {}
    result["launcher_rc"] = process.returncode
    return result, tail


def _last_error_line(tail: str) -> str:
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith(("Error", "RuntimeError", "torch.", "ValueError", "TypeError", "zoo.", "ImportError",
                            "ModuleNotFoundError", "AssertionError", "OSError", "KeyError", "AttributeError")):
            return line[:160]
    return lines[-1][:160] if lines else "no output"


def check_run_folder(row: Row, run_dir: Path, steps: int) -> None:
    """Losses finite at every logged step, the export present with finite weights."""
    import torch

    metrics = run_dir / "metrics.jsonl"
    if not metrics.is_file():
        raise CheckFailed(f"no {metrics.name} in the run folder")
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    losses = {k: v for r in records for k, v in r.items() if k.endswith("loss")}
    if not losses:
        raise CheckFailed("no loss was logged")
    bad = [(r.get("step"), k, v) for r in records for k, v in r.items()
           if k.endswith("loss") and not (isinstance(v, (int, float)) and math.isfinite(v))]
    if bad:
        raise CheckFailed(f"non-finite loss: step {bad[0][0]} {bad[0][1]} = {bad[0][2]}")
    logged = sorted(r.get("step") for r in records if "step" in r)
    if not logged or logged[-1] != steps:
        raise CheckFailed(f"the run logged steps {logged}, not up to {steps}")
    row.detail["losses"] = {r.get("step"): {k: v for k, v in r.items() if k.endswith("loss")} for r in records}
    export = run_dir / "export"
    if not (export / "zoo.json").is_file():
        raise CheckFailed("no export/zoo.json: the run did not export")
    weights = sorted(export.rglob("*.safetensors"))
    if not weights:
        raise CheckFailed("the export holds no safetensors weights")
    from safetensors.torch import load_file

    for file in weights:
        for name, tensor in load_file(str(file)).items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise CheckFailed(f"exported weight {name} in {file.name} is not finite")
    row.detail["export"] = [str(f.relative_to(run_dir)) for f in weights]


class TrainBench:
    def __init__(self, ctx: Context, workdir: Path) -> None:
        self.ctx = ctx
        self.workdir = workdir
        self._fsdp: tuple[dict, str] | Exception | None = None

    def zoo_args(self, run_dir: Path, steps: int, precision: str, extra: tuple[str, ...] = ()) -> list[str]:
        return ["train", "swiftbrush", f"train.steps={steps}", f"train.mixed_precision={precision}",
                "train.log_every=1", "train.checkpoint_every=0", "train.tensorboard=false", *self.ctx.sizes.train_extra,
                *extra, "--no-progress", "--output-dir", str(run_dir)]

    def run_train(self, row: Row) -> None:
        s = self.ctx.sizes
        run_dir = self.workdir / "train-swiftbrush"
        args = self.zoo_args(run_dir, s.train_steps, s.train_precision)
        row.detail["command"] = "zoo " + " ".join(args)
        result, tail = run_worker(self.ctx, [sys.executable], "train", args, self.workdir,
                                  self.ctx.args.timeout_per_check)
        self._finish(row, result.get("train", {}), result, tail, run_dir, s.train_steps)

    def _finish(self, row: Row, part: dict, result: dict, tail: str, run_dir: Path, steps: int) -> None:
        row.peak_mem_GiB = part.get("peak_mem_GiB")
        row.detail["seconds_in_worker"] = part.get("seconds")
        if part.get("rc") != 0:
            reason = part.get("error") or _last_error_line(tail)
            raise CheckFailed(f"zoo train exited {part.get('rc', result.get('launcher_rc'))}: {reason}")
        check_run_folder(row, run_dir, steps)

    def fsdp(self):
        """Both FSDP rows come from one torchrun worker (one process group): run it once."""
        if self._fsdp is None:
            s = self.ctx.sizes
            run_dir = self.workdir / "fsdp-swiftbrush"
            args = self.zoo_args(run_dir, s.fsdp_steps, "bf16", ("train.distributed=fsdp",))
            launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--master_port",
                        str(_free_port())]
            try:
                self._fsdp = (*run_worker(self.ctx, launcher, "fsdp", args, self.workdir,
                                          2 * self.ctx.args.timeout_per_check), run_dir, args)
            except Exception as exc:  # noqa: BLE001 - both rows report it
                self._fsdp = exc
        if isinstance(self._fsdp, Exception):
            raise self._fsdp
        return self._fsdp

    def run_fsdp_train(self, row: Row) -> None:
        if not distributed_key_present():
            raise CheckFailed("train.distributed is not in zoo/train/config.py yet (the runtime's fsdp mode has not "
                              "landed): update the checkout and run again")
        result, tail, run_dir, args = self.fsdp()
        row.detail["command"] = "torchrun --nproc_per_node 1 -m zoo " + " ".join(args)
        row.detail["note"] = ("one process: the runtime runs its fsdp mode (per-micro-batch data and RNG streams) but "
                              "calls fully_shard only with more than one process; the 'fsdp2 shard' row shards")
        self._finish(row, result.get("train", {}), result, tail, run_dir, self.ctx.sizes.fsdp_steps)
        config = (run_dir / "config.yaml").read_text() if (run_dir / "config.yaml").is_file() else ""
        if "distributed: fsdp" not in config:
            raise CheckFailed("the run's config.yaml does not say distributed: fsdp")
        info = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
        row.detail["run_json"] = info
        if info.get("mixed_precision") != "bf16":
            raise CheckFailed(f"run.json says mixed_precision={info.get('mixed_precision')!r}, not bf16")

    def run_fsdp_shard(self, row: Row) -> None:
        result, tail, _, _ = self.fsdp()
        part = result.get("shard")
        if not part:
            raise CheckFailed(f"the fsdp worker wrote no shard result (exit {result.get('launcher_rc')}): "
                              f"{_last_error_line(tail)}")
        row.detail.update(part.get("detail", {}))
        row.max_abs_diff = part.get("max_abs_diff")
        row.peak_mem_GiB = part.get("peak_mem_GiB")
        row.reference = "unsharded fp32 forward"
        if part.get("error"):
            raise CheckFailed(part["error"])


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- the worker (a subprocess: `zoo train` in-process, then peak memory; FSDP2 shard smoke) ----------------------------
def worker_main(kind: str, out_path: str, zoo_args: list[str], dry: bool) -> int:
    import torch

    cuda = torch.cuda.is_available() and not dry
    rank = int(os.environ.get("RANK", "0"))
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.reset_peak_memory_stats()
    result: dict[str, Any] = {}
    started = time.perf_counter()
    part: dict[str, Any] = {}
    try:
        from zoo.cli import main as zoo_main

        zoo_main(args=zoo_args, prog_name="zoo", standalone_mode=True)
        part["rc"] = 0
    except SystemExit as exc:
        part["rc"] = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException as exc:  # noqa: BLE001
        part["rc"] = 1
        part["error"] = one_line(exc)
    part["seconds"] = time.perf_counter() - started
    part["peak_mem_GiB"] = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    result["train"] = part
    if kind == "fsdp":
        result["shard"] = fsdp_shard_smoke(cuda)
    if rank == 0:
        Path(out_path).write_text(json.dumps(result, indent=1, default=str))
    with contextlib.suppress(Exception):
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


def fsdp_shard_smoke(cuda: bool) -> dict:
    """FSDP2 (``zoo.train.parallel.shard``: per block, then whole; bf16 MixedPrecisionPolicy) on the testbed UNet in
    this process group: forward against the unsharded fp32 forward, backward, one AdamW step, a second forward."""
    import torch

    out: dict[str, Any] = {"detail": {}}
    try:
        import torch.distributed as dist
        from diffusers import UNet2DConditionModel

        from zoo.hub import resolve_model
        from zoo.train import parallel

        backend = "nccl" if cuda else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend)
        out["detail"]["process_group"] = dist.get_backend()
        out["detail"]["world_size"] = dist.get_world_size()
        device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        unet = UNet2DConditionModel.from_pretrained(resolve_model(TESTBED_REF).path / "unet", local_files_only=True)
        unet = unet.to(device).train()
        reference = copy.deepcopy(unet)
        g = torch.Generator().manual_seed(5)
        size = unet.config.sample_size
        x = torch.randn(4, unet.config.in_channels, size, size, generator=g).to(device)
        text = torch.randn(4, 77, unet.config.cross_attention_dim, generator=g).to(device)
        target = torch.randn(x.shape, generator=g).to(device)
        t = torch.tensor([100, 400, 700, 900], device=device)
        with torch.no_grad():
            ref_out = reference(x, t, encoder_hidden_states=text).sample.float()
        del reference
        mapping = parallel.shard({"unet": unet}, "bf16")
        from torch.distributed.tensor import DTensor

        sharded = sum(1 for p in unet.parameters() if isinstance(p, DTensor))
        out["detail"]["sharded_parameters"] = sharded
        out["detail"]["replaced_parameters"] = len(mapping)
        if not sharded:
            raise CheckFailed("fully_shard left no DTensor parameter")
        optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4)
        started = time.perf_counter()
        sample = unet(x, t, encoder_hidden_states=text).sample
        out["detail"]["forward_dtype"] = str(sample.dtype).replace("torch.", "")
        diff = float((sample.detach().float() - ref_out).abs().max())
        scale = float(ref_out.abs().max())
        out["max_abs_diff"] = diff
        out["detail"].update(scale=scale, tolerance=REL_TOL["bf16"] * scale)
        loss = torch.nn.functional.mse_loss(sample.float(), target)
        loss.backward()
        grads = [p.grad for p in unet.parameters() if p.grad is not None]
        if not grads:
            raise CheckFailed("no gradient after backward")
        local = [grad.to_local() if hasattr(grad, "to_local") else grad for grad in grads]
        if not all(bool(torch.isfinite(grad).all()) for grad in local):
            raise CheckFailed("non-finite gradient after backward")
        optimizer.step()
        optimizer.zero_grad()
        again = unet(x, t, encoder_hidden_states=text).sample
        if cuda:
            torch.cuda.synchronize()
        out["detail"]["seconds_step"] = time.perf_counter() - started
        out["detail"]["loss"] = float(loss.detach())
        out["peak_mem_GiB"] = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
        if not math.isfinite(float(loss.detach())) or not bool(torch.isfinite(again).all()):
            raise CheckFailed("non-finite loss or output after the optimizer step")
        if diff > REL_TOL["bf16"] * scale:
            raise CheckFailed(f"sharded bf16 forward differs from the unsharded fp32 one by {diff:.3g} > "
                              f"{REL_TOL['bf16'] * scale:.3g}")
    except Exception as exc:  # noqa: BLE001
        out["error"] = one_line(exc)
    return out


# -- the plan ----------------------------------------------------------------------------------------------------------
def plan(ctx: Context, only: tuple[str, ...], workdir: Path) -> list[tuple[Row, Callable[[Row], None], tuple]]:
    """(row, check function, execution-order key) for every row of the selected groups, in table order. Execution
    runs the subprocess checks first (the GPU is still empty), then one dtype at a time (one model in memory)."""
    unet, testbed, train = UNetBench(ctx), TestbedBench(ctx), TrainBench(ctx, workdir)
    variants = [("fp32", "sdpa")] + [(d, b) for d in ("fp16", "bf16") for b in BACKENDS]
    names = {"unet": "unet", "nasa": "unet+nasa", "agd": "unet+agd", "testbed": "testbed"}
    items = []
    for group in GROUPS:
        if group not in only:
            continue
        if group in ("unet", "nasa", "agd", "testbed"):
            bench = testbed if group == "testbed" else unet
            phase = 2 if group == "testbed" else 1
            for dtype, backend in variants:
                row = Row(group, names[group], backend, dtype, is_reference=(dtype == "fp32"))
                key = (phase, DTYPE_NAMES.index(dtype), GROUPS.index(group), BACKENDS.index(backend))
                items.append((row, bench.run, key))
        elif group == "train":
            row = Row("train", "train swiftbrush", "-", ctx.sizes.train_precision)
            items.append((row, train.run_train, (0, 0, 0, 0)))
        elif group == "fsdp":
            pg = "gloo" if ctx.dry else "nccl"
            items.append((Row("fsdp", "fsdp train", pg, "bf16"), train.run_fsdp_train, (0, 1, 0, 0)))
            items.append((Row("fsdp", "fsdp2 shard", pg, "bf16"), train.run_fsdp_shard, (0, 1, 1, 0)))
    return items


def run_row(ctx: Context, row: Row, check: Callable[[Row], None]) -> None:
    skip = ctx.skip_reason(row.backend, row.dtype) if row.group in ("unet", "nasa", "agd", "testbed") else None
    if skip is not None:
        status, reason = skip
        row.status = f"{status}: {reason}"
        return
    started = time.perf_counter()
    # In-process checks get an alarm; the subprocess checks have their own timeouts (an alarm there would orphan the
    # child processes instead of killing them).
    limit = contextlib.nullcontext() if row.group in ("train", "fsdp") else time_limit(ctx.args.timeout_per_check)
    try:
        with limit:
            check(row)
        row.status = "ok"
    except CheckSkipped as exc:
        row.status = f"skipped: {one_line(exc)}"
    except BaseException as exc:  # noqa: BLE001 - every row is isolated
        if isinstance(exc, KeyboardInterrupt):
            raise
        row.status = f"FAILED: {one_line(exc)}"
        with contextlib.suppress(Exception):
            ctx.free()
    finally:
        row.seconds = time.perf_counter() - started


# -- output ------------------------------------------------------------------------------------------------------------
def _fmt(value, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "diff":
        return f"{value:.2e}"
    return f"{value:.1f}" if kind == "ips" else f"{value:.2f}"


def table_lines(rows: list[Row]) -> list[str]:
    cells = [list(COLUMNS)]
    for row in rows:
        diff = "ref" if row.is_reference and row.status == "ok" else _fmt(row.max_abs_diff, "diff")
        cells.append([row.check, row.backend, row.dtype, diff, _fmt(row.images_per_s, "ips"),
                      _fmt(row.peak_mem_GiB, "mem"), row.status])
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS) - 1)]
    lines = []
    for index, line in enumerate(cells):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(line, widths)) + "  " + line[-1])
        if index == 0:
            lines.append("  ".join("-" * width for width in widths) + "  " + "-" * len("status"))
    return lines


LEGEND = ("max_abs_diff: fp32/sdpa rows are the references ('ref'); sdpa fp16/bf16 rows vs that reference; xformers "
          "rows vs sdpa at the same dtype (also held to the fp32 tolerance); fsdp2 shard vs the unsharded fp32 "
          "forward. Tolerance: {tol} x max|reference output|. images_per_s: unet/nasa/agd = images per UNet call "
          "(unet: CFG, 2 rows per image); testbed = full {steps}-step pipeline.")


def write_json(path: str | None, header: dict, rows: list[Row], complete: bool) -> None:
    if not path:
        return
    document = {**header, "complete": complete, "columns": list(COLUMNS),
                "tolerances": {"rel_tol_vs_fp32": REL_TOL, "rel_tol_xformers_vs_sdpa": XFORMERS_REL_TOL,
                               "active_min_rel": ACTIVE_MIN_REL},
                "ok": complete and not any(r.status.startswith("FAILED") for r in rows),
                "rows": [{k: v for k, v in asdict(r).items()} for r in rows]}
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps(document, indent=1, default=str))
    tmp.replace(target)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    zoo_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, zoo_args = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", dest="json_path", metavar="PATH", help="also write the table (and details) as JSON")
    parser.add_argument("--only", nargs="+", choices=GROUPS, metavar="ROW-GROUP",
                        help=f"run only these row groups: {', '.join(GROUPS)}")
    parser.add_argument("--require-xformers", action="store_true",
                        help="xformers rows FAIL (instead of being skipped) when xformers is not installed")
    parser.add_argument("--dry-run", action="store_true",
                        help="no GPU needed: run every check it can on the CPU with tiny sizes (tests this script)")
    parser.add_argument("--timeout-per-check", type=float, default=150.0, metavar="S",
                        help="seconds one check may take; the torchrun worker behind the two fsdp rows gets twice "
                             "as long (default 150)")
    parser.add_argument("--keep", metavar="DIR", help="keep the training runs and worker logs in DIR")
    parser.add_argument("--worker", choices=("train", "fsdp"), help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(args.worker, args.worker_out, zoo_args, args.dry_run)

    try:
        import torch
    except Exception as exc:  # noqa: BLE001
        print(f"torch does not import ({one_line(exc)}): nothing to check")
        return NO_CUDA_EXIT
    if not torch.cuda.is_available() and not args.dry_run:
        print(NO_CUDA_LINE)
        return NO_CUDA_EXIT
    total_started = time.perf_counter()
    with contextlib.suppress(Exception):
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.set_verbosity_error()  # e.g. "Casting directly with `to()`" on every dtype cast
    if args.dry_run:
        device, sizes = torch.device("cpu"), DRY_SIZES
    else:
        device, sizes = torch.device("cuda", torch.cuda.current_device()), GPU_SIZES
        # The fp32 reference is true fp32: no TF32 in matmuls or convolutions.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    ctx = Context(args, sizes, device)
    only = tuple(args.only or GROUPS)
    estimates = ESTIMATE_DRY_S if ctx.dry else ESTIMATE_S
    estimate = estimates["startup"] + sum(estimates[g] for g in only)
    device_name = torch.cuda.get_device_name(device) if ctx.cuda else "cpu"
    header = {"mode": "dry-run" if ctx.dry else "gpu", "device": device_name, "torch": torch.__version__,
              "cuda": torch.version.cuda, "xformers": ctx.xformers, "sizes": sizes.label, "groups": list(only),
              "estimate_s": estimate, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    with contextlib.suppress(Exception):
        import diffusers

        header["diffusers"] = diffusers.__version__
    print(f"check_gpu: {header['mode']} on {device_name} | torch {torch.__version__} (CUDA {torch.version.cuda}) | "
          f"xformers {ctx.xformers or 'not installed'} | {sizes.label}")
    where = "on this CPU" if ctx.dry else "on an H200"
    missing = missing_packages()
    header["missing"] = missing
    if missing:
        print(f"WARNING: not importable here: {', '.join(missing)}; the rows that need them will fail (nothing is "
              f"installed by this script; docs/HARDWARE.md says how to bring them)")
    print(f"estimated run time: ~{estimate / 60:.1f} min {where} ({len(only)} row groups: {', '.join(only)})",
          flush=True)

    with contextlib.ExitStack() as stack:
        if args.keep:
            workdir = Path(args.keep).resolve()
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="check_gpu-")))
        items = plan(ctx, only, workdir)
        rows = [row for row, _, _ in items]
        for row, check, _ in sorted(items, key=lambda item: item[2]):
            run_row(ctx, row, check)
            print(f"  [{time.perf_counter() - total_started:6.1f} s] {row.check} {row.backend} {row.dtype}: "
                  f"{row.status}", file=sys.stderr, flush=True)
            write_json(args.json_path, header, rows, complete=False)
        header["seconds"] = time.perf_counter() - total_started
        write_json(args.json_path, header, rows, complete=True)
    print()
    for line in table_lines(rows):
        print(line)
    failed = sum(1 for r in rows if r.status.startswith("FAILED"))
    skipped = sum(1 for r in rows if r.status.startswith("skipped"))
    print()
    print(LEGEND.format(tol=", ".join(f"{k} {v:g}" for k, v in REL_TOL.items()), steps=sizes.testbed_steps))
    print(f"{len(rows)} rows: {len(rows) - failed - skipped} ok, {skipped} skipped, {failed} FAILED in "
          f"{header['seconds']:.0f} s (estimate {estimate} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
