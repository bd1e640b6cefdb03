"""Lab 4's pruning sweep: the lab's cached sweep against a full forward pass per step.

What the lab runs is the notebook's own ``prune_sweep`` (with its ``channel_activations``),
executed here from the instructor's solution cells. It computes the layers before the
pruned block's batch norm once (normalisation, ``conv1``, ``conv2`` and the block's
convolution: pruning changes only the batch norm), and at each step runs the batch norm,
ReLU, pooling and the classifier on the cached tensor. Compared with:

- **naive**: one channel a step, the whole network on the validation images at every step
  (a working copy whose batch-norm weight and bias are zeroed one channel at a time);
- **BackdoorBench's schedule** (``defense/fp.py``): ``ceil(C * once_prune_ratio)`` channels a
  step, ``once_prune_ratio = 0.01`` by default, a full forward pass per step. On the lab's
  64-channel block that is one channel a step (the naive sweep); on a 512-channel block
  (ResNet-18's last layer) six.

Both run on the lab's cpu-profile BadNet (``lab4-badnet``, 64 channels, on the synthetic
dataset, 500 validation images like the cpu profile) and on an untrained SimpleCNN with a
wider last block (``--wide``, default 512 channels, on ``--wide-valid`` images; timing only). The curves must be identical: the lab's
``accuracy[k]`` equals the naive sweep's at every k and BackdoorBench's at its k.

Each sweep is timed ``--repeats`` times, interleaved (after a warm-up round when repeats > 1);
the best time is reported (the least disturbed by other jobs on a shared machine).

    .venv-peers/bin/python benchmarks/pruning.py [--repeats 3] [--n-valid 500]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("LABSUPPORT_PROGRESS", "0")

import argparse  # noqa: E402
import copy  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
from datetime import date  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # labsupport from the checkout

import torch  # noqa: E402
from timing import timed  # noqa: E402 (benchmarks/timing.py)

from labsupport.assets import load_asset  # noqa: E402
from labsupport.data import load_course_data  # noqa: E402
from labsupport.models import SimpleCNN  # noqa: E402
from labsupport.runtime import describe_device, get_device  # noqa: E402

NOTEBOOK = ROOT / "notebooks" / "lab4_pruning_defense.py"


def lab_functions() -> dict:
    """The notebook's ``channel_activations`` and ``prune_sweep`` (solution cells), executed."""
    import jupytext

    notebook = jupytext.read(NOTEBOOK)
    cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in notebook.cells}
    imports = [line for line in cells["setup"].splitlines() if line.startswith(("import ", "from "))]
    namespace: dict = {}
    exec("\n".join(imports), namespace)
    for grade_id in ("channel_activations", "prune_sweep"):
        exec(cells[grade_id], namespace)
    return namespace


@torch.no_grad()
def full_forward_sweep(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                       order: list[int], step: int, batch_size: int = 512) -> dict[int, float]:
    """Accuracy after pruning the first k channels of ``order``, k = 0, step, 2 step, ...,
    and all of them; the whole network runs at every step."""
    work = copy.deepcopy(model).eval()
    bn = work.last_conv[1]
    device = next(work.parameters()).device
    labels = y.to(device)
    curve = {}
    ks = [*range(0, len(order), step), len(order)]
    for k in ks:
        index = torch.as_tensor(order[:k], dtype=torch.long, device=device)
        bn.weight[index] = 0
        bn.bias[index] = 0
        preds = torch.cat([work(x[s : s + batch_size].to(device)).argmax(1)
                           for s in range(0, len(x), batch_size)])
        curve[k] = (preds == labels).float().mean().item()
    return curve


def bench(label: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
          lab: dict, device: torch.device, repeats: int) -> list[str]:
    model = model.to(device).eval()
    n_channels = model.last_conv[0].out_channels
    result = lab["prune_sweep"](model, x, y, order="increasing")
    order = [int(c) for c in result["order"]]
    step = math.ceil(n_channels * 0.01)
    naive = full_forward_sweep(model, x, y, order, 1)
    bb = full_forward_sweep(model, x, y, order, step)
    assert [naive[k] for k in range(n_channels + 1)] == list(result["accuracy"]), (
        "the lab's curve differs from the naive sweep's")
    assert all(bb[k] == result["accuracy"][k] for k in bb), "differs from BackdoorBench's points"
    times = timed({
        "lab": lambda: lab["prune_sweep"](model, x, y, order="increasing"),
        "naive": lambda: full_forward_sweep(model, x, y, order, 1),
        "backdoorbench": lambda: full_forward_sweep(model, x, y, order, step),
    }, device, repeats, warmup=min(1, repeats - 1))
    rows = [f"| {label} | {n_channels} | lab (cached, 1 channel/step) | {n_channels + 1} | "
            f"{times['lab']:.3f} | {times['lab'] / times['naive']:.2f} |",
            f"| {label} | {n_channels} | naive (full forward, 1 channel/step) | "
            f"{n_channels + 1} | {times['naive']:.3f} | 1.00 |",
            f"| {label} | {n_channels} | BackdoorBench ({step} channel(s)/step, full forward) | "
            f"{len(bb)} | {times['backdoorbench']:.3f} | "
            f"{times['backdoorbench'] / times['naive']:.2f} |"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-valid", type=int, default=500)
    parser.add_argument("--wide", type=int, default=512, help="channels of the wide block")
    parser.add_argument("--wide-valid", type=int, default=200, help="images for the wide model")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = get_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(2)
    data = load_course_data("synthetic")
    x, y = data.x_test[: args.n_valid], data.y_test[: args.n_valid]
    lab = lab_functions()
    rows = bench("lab4-badnet (cpu asset)", load_asset("lab4-badnet", dataset=data,
                                                        profile="cpu", device=device),
                 x, y, lab, device, args.repeats)
    torch.manual_seed(0)
    wide = SimpleCNN(4, channels=(32, 64, args.wide), hidden=256)
    rows += bench(f"untrained, {args.wide}-channel block ({args.wide_valid} images)", wide,
                  x[: args.wide_valid], y[: args.wide_valid], lab, device, args.repeats)
    print(f"### Lab 4 pruning sweep ({date.today().isoformat()})\n")
    print(f"{len(x)} synthetic validation images; {describe_device(device)}; best of "
          f"{args.repeats}{' after a warm-up' if args.repeats > 1 else ''}; curves checked "
          "identical.\n")
    print("| model | channels | sweep | accuracy measurements | seconds | vs naive |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
