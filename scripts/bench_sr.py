"""Benchmark the IMDN plugin: speed against a straightforward reference forward, and peak memory of a tiled upscale.

What it measures, in one run:

1. **Speed.** images/second of the plugin's IMDN x4 forward (``zoo_plugins.imdn.arch.IMDN``: channels_last, split
   convolutions instead of split copies, CCA + 1x1 fusion + residual as one GEMM, no 6-way concatenation,
   ``inference_mode``) against a plain reference written below (``nn.Conv2d`` modules, ``torch.split``/``torch.cat``,
   CCA as in the paper, NCHW, ``no_grad``), with the same weights on the same ``[1, 3, S, S]`` input; the two are
   timed alternately (after a warm-up) and the median is used. The outputs must agree within 1e-5.
2. **Memory.** In a fresh subprocess (so nothing else is counted), the peak resident memory
   (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) of a 2048x2048 → 8192x8192 x4 upscale through the IMDN sampler
   with automatic tiling, plus the same process's peak right before the upscale (interpreter, torch, model).

Weights: ``../shared/data/imdn/checkpoints/IMDN_x4.pth`` when present (``--weights`` to change), else a seeded random
IMDN x4 (the timing does not depend on the values).

Command (about 5-10 minutes on 2 CPU threads, mostly the 2048x2048 upscale)::

    .venv/bin/python scripts/bench_sr.py --json bench_sr.json
    .venv/bin/python scripts/bench_sr.py --skip-memory          # speed only (seconds)
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
DEFAULT_WEIGHTS = REPO.parent / "shared" / "data" / "imdn" / "checkpoints" / "IMDN_x4.pth"
TOLERANCE = 1e-5


# ---------------------------------------------------------------------------------------------------------------------
# The straightforward reference: plain modules, exactly as the paper describes the network.
# ---------------------------------------------------------------------------------------------------------------------
class ReferenceCCA(nn.Module):
    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.conv_du = nn.Sequential(nn.Conv2d(channels, channels // reduction, 1), nn.ReLU(),
                                     nn.Conv2d(channels // reduction, channels, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = (x - mean).pow(2).mean(dim=(2, 3), keepdim=True).sqrt()
        return x * self.conv_du(std + mean)


class ReferenceIMDB(nn.Module):
    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        self.d, self.r = channels // 4, channels - channels // 4
        self.c1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.c2 = nn.Conv2d(self.r, channels, 3, padding=1)
        self.c3 = nn.Conv2d(self.r, channels, 3, padding=1)
        self.c4 = nn.Conv2d(self.r, self.d, 3, padding=1)
        self.c5 = nn.Conv2d(4 * self.d, channels, 1)
        self.cca = ReferenceCCA(4 * self.d)
        self.act = nn.LeakyReLU(0.05)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1, r1 = torch.split(self.act(self.c1(x)), (self.d, self.r), dim=1)
        d2, r2 = torch.split(self.act(self.c2(r1)), (self.d, self.r), dim=1)
        d3, r3 = torch.split(self.act(self.c3(r2)), (self.d, self.r), dim=1)
        d4 = self.c4(r3)
        return self.c5(self.cca(torch.cat([d1, d2, d3, d4], dim=1))) + x


class ReferenceIMDN(nn.Module):
    def __init__(self, num_features: int = 64, num_blocks: int = 6, upscale: int = 4) -> None:
        super().__init__()
        self.num_blocks = num_blocks
        self.fea_conv = nn.Conv2d(3, num_features, 3, padding=1)
        for index in range(1, num_blocks + 1):
            self.add_module(f"IMDB{index}", ReferenceIMDB(num_features))
        self.c = nn.Sequential(nn.Conv2d(num_features * num_blocks, num_features, 1), nn.LeakyReLU(0.05))
        self.LR_conv = nn.Conv2d(num_features, num_features, 3, padding=1)
        self.upsampler = nn.Sequential(nn.Conv2d(num_features, 3 * upscale ** 2, 3, padding=1),
                                       nn.PixelShuffle(upscale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.fea_conv(x)
        outputs, hidden = [], features
        for index in range(1, self.num_blocks + 1):
            hidden = getattr(self, f"IMDB{index}")(hidden)
            outputs.append(hidden)
        fused = self.c(torch.cat(outputs, dim=1))
        return self.upsampler(self.LR_conv(fused) + features)


# ---------------------------------------------------------------------------------------------------------------------
def load_weights(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    from zoo_plugins.imdn.arch import IMDN
    from zoo_plugins.imdn.checkpoint import load_state_dict

    if path.is_file():
        state, info = load_state_dict(path)
        if info.variant != "IMDN" or info.scale != 4:
            sys.exit(f"{path} is {info.label}; the benchmark needs IMDN x4 weights")
        return state, str(path)
    torch.manual_seed(0)
    return IMDN(upscale=4).state_dict(), "random (seed 0)"


def bench_speed(state: dict[str, torch.Tensor], size: int, repeats: int) -> dict:
    from zoo_plugins.imdn.arch import IMDN, prepare_for_inference

    reference = ReferenceIMDN()
    reference.load_state_dict(state, strict=True)
    reference.eval()
    plugin = IMDN(upscale=4)
    plugin.load_state_dict(state, strict=True)
    plugin = prepare_for_inference(plugin)
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))

    def run_reference() -> torch.Tensor:
        with torch.no_grad():
            return reference(x)

    def run_plugin() -> torch.Tensor:
        with torch.inference_mode():
            return plugin(x)

    expected, got = run_reference(), run_plugin()  # also the warm-up
    max_abs_diff = float((expected - got).abs().max())
    times = {"reference": [], "plugin": []}
    for _ in range(repeats):
        for name, fn in (("reference", run_reference), ("plugin", run_plugin)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(values) for name, values in times.items()}
    return {
        "input": [1, 3, size, size], "output": list(got.shape), "repeats": repeats,
        "reference_images_per_s": 1.0 / median["reference"], "plugin_images_per_s": 1.0 / median["plugin"],
        "reference_ms": 1000 * median["reference"], "plugin_ms": 1000 * median["plugin"],
        "reference_ms_min": 1000 * min(times["reference"]), "plugin_ms_min": 1000 * min(times["plugin"]),
        "speed_ratio": median["reference"] / median["plugin"],
        "max_abs_diff": max_abs_diff, "outputs_match": max_abs_diff <= TOLERANCE,
    }


def memory_child(weights: Path, size: int, tile: int | None, threads: int) -> None:
    """Runs in the subprocess: one tiled upscale, then print its peak RSS as JSON."""
    torch.set_num_threads(threads)
    from zoo.spec import ResolvedModel
    from zoo_plugins.imdn.sampler import build_sampler

    if weights.is_file():
        model = ResolvedModel(path=weights, ref=str(weights))
    else:  # random weights written to a temporary file
        from safetensors.torch import save_file

        state, _ = load_weights(weights)
        tmp = Path(tempfile.mkdtemp()) / "imdn_x4_random.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
        model = ResolvedModel(path=tmp, ref="random")
    sampler = build_sampler(model, device="cpu")
    sampler.network(sampler.entries[0])
    image = np.random.default_rng(0).random((size, size, 3), dtype=np.float32)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    result = sampler(image, scale=4, tile=tile)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"input": [size, size], "output": list(result.images[0].size), "tile": result.metadata["tile"],
                      "overlap": result.metadata["overlap"], "tiles": result.metadata["tiles"],
                      "seconds": seconds, "rss_before_upscale_mb": before, "peak_rss_mb": peak}))


def bench_memory(weights: Path, size: int, tile: int | None, threads: int) -> dict:
    command = [sys.executable, __file__, "--memory-child", "--weights", str(weights), "--memory-size", str(size),
               "--threads", str(threads)]
    if tile is not None:
        command += ["--tile", str(tile)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"memory subprocess failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="IMDN x4 weights (.pth/.safetensors).")
    parser.add_argument("--size", type=int, default=128, help="Input side for the speed test (default 128).")
    parser.add_argument("--repeats", type=int, default=7, help="Timed runs of each forward (default 7).")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1; same for both).")
    parser.add_argument("--memory-size", type=int, default=2048, help="Input side for the memory test (2048).")
    parser.add_argument("--tile", type=int, default=None, help="Tile for the memory test (default: automatic).")
    parser.add_argument("--skip-memory", action="store_true", help="Only the speed comparison.")
    parser.add_argument("--json", type=Path, default=None, help="Also write the figures to this JSON file.")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(args.weights, args.memory_size, args.tile, args.threads)
        return 0

    torch.set_num_threads(args.threads)
    state, source = load_weights(args.weights)
    report = {"device": "cpu", "cpu": platform.processor() or platform.machine(), "threads": args.threads,
              "torch": torch.__version__, "weights": source}
    speed = bench_speed(state, args.size, args.repeats)
    report["speed"] = speed
    print(f"speed  {args.size}x{args.size} -> x4, {args.threads} thread(s): reference "
          f"{speed['reference_images_per_s']:.2f} img/s, plugin {speed['plugin_images_per_s']:.2f} img/s, "
          f"ratio {speed['speed_ratio']:.2f} (goal >= 1.0); max |diff| {speed['max_abs_diff']:.2e} "
          f"({'ok' if speed['outputs_match'] else 'FAIL'}, tolerance {TOLERANCE:g})")
    if not args.skip_memory:
        memory = bench_memory(args.weights, args.memory_size, args.tile, args.threads)
        memory["goal_mb"] = 2048
        report["memory"] = memory
        print(f"memory {args.memory_size}x{args.memory_size} -> x4 ({memory['tiles']} tiles of {memory['tile']}, "
              f"overlap {memory['overlap']}): peak RSS {memory['peak_rss_mb']:.0f} MB (goal <= 2048 MB; "
              f"{memory['rss_before_upscale_mb']:.0f} MB before the upscale), {memory['seconds']:.1f} s")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if speed["outputs_match"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
