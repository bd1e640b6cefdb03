"""Benchmark: PyTorch on the CPU with glibc's default allocator thresholds and with
``labsupport.allocator.keep_freed_memory`` (what ``get_device`` applies).

The setting is per process, so each round starts two child processes, one each way, and
they take turns; the ratio of their throughputs is what to record. Workloads: the course
CNN's forward pass at Lab 2's certification batch (288), Lab 2's denoiser + classifier at
that batch, and a training step (forward and backward) at batch 128. One thread, so the
ratio shows the allocator and not thread scheduling.

    .venv/bin/python benchmarks/allocator.py [--rounds 3] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import torch
from torch import nn
from labsupport.allocator import keep_freed_memory
from labsupport.models import SimpleCNN

applied = keep_freed_memory()
torch.set_num_threads(1)
torch.manual_seed(0)
seconds = float(sys.argv[1])


def denoiser(channels=32, depth=4):  # Lab 2's SmallDenoiser, as a plain residual stack
    layers = [nn.Conv2d(3, channels, 3, padding=1), nn.ReLU()]
    for _ in range(depth - 2):
        layers += [nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                   nn.BatchNorm2d(channels), nn.ReLU()]
    layers.append(nn.Conv2d(channels, 3, 3, padding=1))
    return nn.Sequential(*layers).eval()


model, noise = SimpleCNN(num_classes=4).eval(), denoiser()
x288, x128, y128 = torch.rand(288, 3, 32, 32), torch.rand(128, 3, 32, 32), torch.randint(0, 4, (128,))


def train_step():
    model.zero_grad()
    nn.functional.cross_entropy(model(x128), y128).backward()


work = {"classifier forward, batch 288": (288, lambda: model(x288)),
        "denoiser + classifier, batch 288": (288, lambda: model(x288 - noise(x288))),
        "training step, batch 128": (128, train_step)}
out = {"applied": applied}
for name, (batch, fn) in work.items():
    with torch.set_grad_enabled(name.startswith("training")):
        fn()
        usage, start, images = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            fn()
            images += batch
        wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    out[name] = {"images_per_s": images / wall,
                 "system_share": (after.ru_stime - usage.ru_stime) / wall}
print(json.dumps(out))
"""


def child(keep: bool, seconds: float) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["LABSUPPORT_KEEP_FREED_MEMORY"] = "1" if keep else "0"
    result = subprocess.run([sys.executable, "-c", CHILD, str(seconds)], env=env, check=True,
                            capture_output=True, text=True)
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    best: dict[bool, dict] = {}
    for _ in range(args.rounds):
        for keep in (False, True):
            run = child(keep, args.seconds)
            assert run.pop("applied") is keep, "the allocator setting did not take effect"
            for name, row in run.items():
                old = best.setdefault(keep, {}).get(name)
                if old is None or row["images_per_s"] > old["images_per_s"]:
                    best[keep][name] = row
    print(f"{'workload (1 thread)':<34} | {'default':>14} | {'kept':>14} | speed-up")
    for name in best[True]:
        d, k = best[False][name], best[True][name]
        print(f"{name:<34} | {d['images_per_s']:>7.0f} img/s | {k['images_per_s']:>7.0f} img/s | "
              f"{k['images_per_s'] / d['images_per_s']:.2f}x   (kernel time {d['system_share']:.0%}"
              f" -> {k['system_share']:.0%})")


if __name__ == "__main__":
    main()
