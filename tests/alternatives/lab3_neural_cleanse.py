'''Independently written correct answers to Lab 3's tasks, in another style than the
instructor's (the mask as ``sigmoid(2 theta)``, which equals ``tanh(theta) / 2 + 1 / 2``;
``log_softmax`` + ``nll_loss``; index ranges instead of ``split``; a small state class for
the schedule; scipy's ``median_abs_deviation``; sorting for the decision; a manual
evaluation loop; NumPy's ``default_rng`` for the unlearning draw). Some of them talk: the
reverse engineering draws a tqdm bar and prints to stderr. Each must keep full marks.
'''

SOLUTIONS: dict[str, str] = {
    "find_candidate_backdoor": """
import sys

from tqdm.auto import tqdm


class _Cost:
    def __init__(self, value, patience, multiplier, threshold):
        self.value, self.patience, self.multiplier, self.threshold = (
            value, patience, multiplier, threshold)
        self.streak_ok = self.streak_bad = 0
        self.raised = self.lowered = False

    def after_epoch(self, success):
        if success >= self.threshold:
            self.streak_ok, self.streak_bad = self.streak_ok + 1, 0
        else:
            self.streak_ok, self.streak_bad = 0, self.streak_bad + 1
        if self.streak_ok >= self.patience:
            self.value, self.streak_ok, self.raised = self.value * self.multiplier, 0, True
        elif self.streak_bad >= self.patience:
            self.value = self.value / self.multiplier ** 1.5
            self.streak_bad, self.lowered = 0, True


def find_candidate_backdoor(model, target, x, y, *, epochs=100, batch_size=32, init_cost=1e-3,
                            lr=0.1, patience=5, cost_multiplier=1.5, attack_threshold=0.99,
                            early_stop_patience=10):
    dev = next(iter(model.parameters())).device
    keep = torch.nonzero(y != target).flatten()
    images = x.index_select(0, keep).to(dev)
    n = images.shape[0]
    raw_mask = torch.zeros(images.shape[2], images.shape[3], device=dev).requires_grad_()
    raw_pattern = torch.zeros(images.shape[1:], device=dev).requires_grad_()
    adam = torch.optim.Adam(params=[raw_mask, raw_pattern], lr=lr, betas=(0.5, 0.9))
    schedule = _Cost(init_cost, patience, cost_multiplier, attack_threshold)
    costs, successes, norms = [], [], []
    kept, smallest, reference, flat = None, float("inf"), float("inf"), 0
    model.eval()
    print(f"reverse engineering class {target} on {n} images", file=sys.stderr)
    with torch.set_grad_enabled(True):
        for epoch in tqdm(range(epochs), desc=f"class {target}"):
            correct = 0
            for lo in range(0, n, batch_size):
                batch = images[lo : lo + batch_size]
                m = torch.sigmoid(2 * raw_mask)
                p = torch.sigmoid(2 * raw_pattern)
                out = model(batch * (1 - m) + p * m)
                wanted = torch.empty(len(batch), dtype=torch.long, device=dev).fill_(target)
                objective = F.nll_loss(F.log_softmax(out, dim=1), wanted) + schedule.value * m.sum()
                adam.zero_grad()
                objective.backward()
                adam.step()
                correct += int((out.argmax(dim=1) == target).sum())
            with torch.no_grad():
                m = torch.sigmoid(2 * raw_mask)
                p = torch.sigmoid(2 * raw_pattern)
            rate, size = correct / n, float(m.sum())
            costs.append(schedule.value)
            successes.append(rate)
            norms.append(size)
            if rate >= attack_threshold and size < smallest:
                smallest, kept = size, (m.clone(), p.clone(), size, rate)
            if smallest != float("inf"):
                flat = flat + 1 if smallest >= 0.99 * reference else 0
            reference = min(reference, smallest)
            if schedule.raised and schedule.lowered and flat >= early_stop_patience:
                break
            schedule.after_epoch(rate)
    if kept is None:
        kept = (m, p, size, rate)
    return dict(mask=kept[0].cpu(), pattern=kept[1].cpu(), norm=kept[2], success=kept[3],
                costs=costs, successes=successes, norms=norms)
""",
    "anomaly_index": """
from scipy.stats import median_abs_deviation


def anomaly_index(norms):
    values = torch.as_tensor(norms, dtype=torch.float64).numpy()
    mad = median_abs_deviation(values, scale=1 / 1.4826)
    distance = np.abs(values - np.median(values))
    if mad > 0:
        return distance / mad
    out = np.full_like(distance, np.inf)
    out[distance == 0] = 0.0
    return out
""",
    "decide": """
def decide(norms, indices):
    candidates = []
    for model_name, model_norms in norms.items():
        order = sorted(range(len(model_norms)), key=lambda k: model_norms[k])
        low = order[0]
        middle = float(np.median(model_norms))
        score = float(indices[model_name][low])
        if model_norms[low] < middle and score > 2:
            candidates.append((score, model_name, low))
    if len(candidates) == 0:
        return None, None
    candidates.sort(reverse=True)
    return candidates[0][1], candidates[0][2]
""",
    "reversed_attack_success": """
def reversed_attack_success(model, x, y, mask, pattern, target):
    device = next(model.parameters()).device
    hits = total = 0
    model.eval()
    with torch.no_grad():
        for lo in range(0, len(x), 17):
            xb, yb = x[lo : lo + 17], y[lo : lo + 17]
            xb = xb[yb != target]
            if len(xb) == 0:
                continue
            stamped = torch.lerp(xb, pattern.expand_as(xb), mask.expand_as(xb)).to(device)
            hits += int((model(stamped).argmax(1) == target).sum())
            total += len(xb)
    return hits / total
""",
    "unlearn": """
def unlearn(model, x, y, mask, pattern, *, fraction=0.2, epochs=1, lr=0.01, batch_size=64,
            seed=0):
    student = copy.deepcopy(model)
    where = next(student.parameters()).device
    rng = np.random.default_rng(seed)
    picked = torch.as_tensor(rng.choice(len(x), size=int(round(fraction * len(x))),
                                        replace=False), dtype=torch.long)
    images = x.clone()
    images[picked] = torch.lerp(x[picked], pattern.expand_as(x[picked]),
                                mask.expand_as(x[picked]))
    sgd = torch.optim.SGD(student.parameters(), lr=lr, momentum=0.9)
    student.train()
    for epoch in range(epochs):
        for xb, yb in make_loader(images, y, batch_size=batch_size, seed=seed + epoch):
            sgd.zero_grad()
            F.cross_entropy(student(xb.to(where)), yb.to(where)).backward()
            sgd.step()
    student.eval()
    return student
""",
}
