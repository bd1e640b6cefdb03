'''Independently written correct answers to Lab 5's tasks, in another style than the
instructor's (NumPy random streams, ``torch.lerp``, a seeded ``default_rng`` choice, a manual
evaluation loop, seeds drawn from a generator, ``loss.backward()``, a generator over the
loader, pruning through the state dict). Some of them talk: the Gaussian trigger prints to
stderr and the mask learning draws its own tqdm bar. Each must keep full marks.
'''

SOLUTIONS: dict[str, str] = {
    "triggers": """
import sys

import numpy as np


def _board(size):
    rows, cols = np.indices((size, size))
    return torch.from_numpy(((rows + cols) % 2 == 0).astype(np.float32))


def make_bottom_right_trigger(image_shape=(3, 32, 32), size=3):
    channels, height, width = image_shape
    mask = torch.zeros(channels, height, width)  # a per-channel mask this time
    mask[..., -size:, -size:] = 1.0
    pattern = torch.zeros(channels, height, width)
    pattern[..., -size:, -size:] = _board(size)
    return Trigger(mask=mask, pattern=pattern, alpha=1, name="badnets")


def make_four_corner_trigger(image_shape=(3, 32, 32), size=3):
    channels, height, width = image_shape
    board, where = torch.zeros(height, width), torch.zeros(height, width)
    board[:size, :size] = _board(size)
    where[:size, :size] = 1.0
    flips = ([], [0], [1], [0, 1])  # mirror the top-left corner into the other three
    pattern = torch.stack([board.flip(f) if f else board for f in flips]).amax(0)
    mask = torch.stack([where.flip(f) if f else where for f in flips]).amax(0)
    return Trigger(mask[None], pattern.expand(channels, -1, -1).clone(), 1.0, "corners")


def make_gaussian_trigger(image_shape=(3, 32, 32), *, seed=0, alpha=0.2):
    rng = np.random.RandomState(seed)
    noise = np.clip(rng.normal(0.5, 0.25, size=tuple(image_shape)), 0.0, 1.0)
    print(f"gaussian trigger: seed {seed}, alpha {alpha}", file=sys.stderr)
    return Trigger(torch.ones(1, *image_shape[1:]), torch.from_numpy(noise.astype(np.float32)),
                   alpha, "blend")
""",
    "stamp": """
def stamp(x, trigger):
    weight = (trigger.alpha * trigger.mask).to(x)  # x's dtype and device
    return torch.lerp(x, trigger.pattern.to(x).expand_as(x), weight.expand_as(x))
""",
    "poison_dataset": """
import numpy as np


def poison_dataset(x, y, trigger, *, target, rate, eligible="non-target", relabel=True,
                   transform=None, seed=0):
    labels = y.cpu().numpy()
    if not 0.0 <= float(rate) <= 1.0:
        raise ValueError(f"the poison rate {rate} is not a fraction")
    if target not in set(labels.tolist()):
        raise ValueError(f"no sample has the target label {target}")
    pools = {"non-target": labels != target, "target": labels == target}
    if eligible not in pools:
        raise ValueError(f"unknown eligibility {eligible!r}")
    pool = np.flatnonzero(pools[eligible])
    wanted = int(round(rate * len(labels)))
    if wanted > pool.size:
        raise ValueError(f"{wanted} poisoned samples asked for, {pool.size} eligible")
    chosen = np.sort(np.random.default_rng(seed).choice(pool, size=wanted, replace=False))
    chosen = torch.as_tensor(chosen, dtype=torch.long)
    images = x[chosen]
    if transform is not None:
        images = transform(images, y[chosen])
    x_out = x.clone()
    x_out.index_copy_(0, chosen, stamp(images, trigger).to(x.dtype))
    y_out = y.clone()
    if relabel:
        y_out[chosen] = target
    return x_out, y_out, chosen
""",
    "attack_success": """
import itertools


def attack_success_rate(model, x, y, trigger, *, target):
    device = next(itertools.chain(model.parameters(), model.buffers())).device
    was_training = model.training
    model.eval()
    hits = total = 0
    with torch.no_grad():
        for start in range(0, len(x), 16):
            xb, yb = x[start:start + 16], y[start:start + 16]
            others = yb != target
            if not bool(others.any()):
                continue
            logits = model(stamp(xb[others], trigger).to(device))
            hits += int((logits.argmax(dim=1).cpu() == target).sum())
            total += int(others.sum())
    model.train(was_training)
    return hits / total
""",
    "clean_label": """
def clean_label_perturb(model, x, y, *, eps, steps=10, restarts=3, seed=0):
    seeds = torch.randint(0, 2**31 - 1, (restarts,),
                          generator=torch.Generator().manual_seed(seed)).tolist()
    result = x.clone()
    done = torch.zeros(len(x), dtype=torch.bool)
    for run_seed in seeds:
        left = torch.nonzero(~done).flatten()
        if left.numel() == 0:
            break
        adversarial = pgd(model, x[left], y[left], eps=eps, steps=steps, random_start=True,
                          seed=run_seed)
        result[left] = adversarial
        done[left] = predict(model, adversarial) != y[left].cpu()
    return result
""",
    "anp_perturb": """
def anp_forward(model, x, mask, noise=None):
    overrides = {}
    for name, bn in neuron_layers(model).items():
        delta, xi = noise[name] if noise is not None else (0.0, 0.0)
        overrides[name + ".weight"] = bn.weight * (mask[name] + delta)
        overrides[name + ".bias"] = bn.bias * (1 + xi)
    return torch.func.functional_call(model, overrides, x)


def anp_perturb(model, x, y, mask, *, eps, steps=1, generator=None):
    fixed = {name: m.detach() for name, m in mask.items()}

    def uniform(like):
        return ((torch.rand(len(like), generator=generator) * 2 - 1) * eps).to(like.device)

    deltas = {name: uniform(m).requires_grad_() for name, m in fixed.items()}
    xis = {name: uniform(m).requires_grad_() for name, m in fixed.items()}
    for _ in range(steps):
        noise = {name: (deltas[name], xis[name]) for name in fixed}
        F.cross_entropy(anp_forward(model, x, fixed, noise), y).backward()
        with torch.no_grad():
            for t in [*deltas.values(), *xis.values()]:
                t.add_(eps / steps * t.grad.sign()).clamp_(-eps, eps)
                t.grad = None
    return {name: (deltas[name].detach(), xis[name].detach()) for name in fixed}
""",
    "anp_mask": """
from tqdm import tqdm


def anp_mask(model, x, y, *, eps, alpha, iters, lr=0.2, batch_size=128, steps=1, seed=0):
    net = copy.deepcopy(model)
    net.train()
    device = next(net.parameters()).device
    masks = {name: torch.ones(bn.num_features, device=device).requires_grad_()
             for name, bn in neuron_layers(net).items()}
    optimizer = torch.optim.SGD(masks.values(), lr=lr, momentum=0.9)
    rng = torch.Generator().manual_seed(seed)
    loader = make_loader(x, y, batch_size=batch_size, shuffle=True, seed=seed)

    def minibatches():
        while True:
            yield from loader  # a new (seeded) shuffle each pass

    stream = minibatches()
    for _ in tqdm(range(iters), desc="ANP masks", leave=False):
        xb, yb = (t.to(device) for t in next(stream))
        perturbation = anp_perturb(net, xb, yb, masks, eps=eps, steps=steps, generator=rng)
        optimizer.zero_grad()
        objective = alpha * F.cross_entropy(anp_forward(net, xb, masks), yb)
        objective = objective + (1 - alpha) * F.cross_entropy(
            anp_forward(net, xb, masks, perturbation), yb)
        objective.backward()
        optimizer.step()
        with torch.no_grad():
            for m in masks.values():
                m.clamp_(0.0, 1.0)
    return {name: m.detach().clone() for name, m in masks.items()}
""",
    "anp_prune": """
def anp_prune(model, mask, threshold):
    state = {key: value.clone() for key, value in model.state_dict().items()}
    for name, m in mask.items():
        weight = state[f"{name}.weight"]
        state[f"{name}.weight"] = weight * (m.to(weight.device) >= threshold).to(weight.dtype)
    pruned = copy.deepcopy(model)
    pruned.load_state_dict(state)
    return pruned
""",
}
