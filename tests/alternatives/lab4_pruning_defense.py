'''Independently written correct answers to Lab 4's tasks, in another style than the
instructor's (forward hooks instead of calling the blocks, a channel mask on the cached
pooled activations instead of pruning the batch norm at each step, the state dict, NumPy
sorting, softmax scores for G, a manual loop over the data with torch.randperm-free
make_loader, a tqdm bar and stderr prints). Each must keep full marks.
'''

SOLUTIONS: dict[str, str] = {
    "channel_activations": """
import sys


def channel_activations(model, x, batch_size=100):
    outputs = []
    handle = model.last_conv.register_forward_hook(lambda m, i, o: outputs.append(o.detach()))
    mode = model.training
    try:
        model.train(False)
        with torch.inference_mode():
            for chunk in torch.split(x, batch_size):
                model(chunk.to(next(model.parameters()).device))
    finally:
        handle.remove()
        model.train(mode)
    print(f"{len(outputs)} batches", file=sys.stderr)
    per_image = torch.cat([o.mean(dim=(2, 3)) for o in outputs]).double()
    return per_image.mean(0).float().cpu()
""",
    "prune_channels": """
def prune_channels(model, channels):
    out = type(model)(**model.config)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for c in [int(c) for c in channels]:
        state["conv3.1.weight"][c] = 0.0
        state["conv3.1.bias"][c] = 0.0
    out.load_state_dict(state)
    return out.to(next(model.parameters()).device).train(model.training)
""",
    "prune_sweep": """
import numpy as np
from tqdm.auto import tqdm


def prune_sweep(model, x_valid, y_valid, order="increasing", drops=(2, 4, 10), batch_size=512):
    acts = np.asarray(channel_activations(model, x_valid), dtype=np.float64)
    if order == "increasing":
        ranking = [int(c) for c in np.argsort(acts, kind="stable")]
    elif order == "decreasing":
        ranking = [int(c) for c in np.argsort(-acts, kind="stable")]
    else:
        raise ValueError("unknown order " + repr(order))
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    pooled = []
    with torch.no_grad():
        for i in range(0, len(x_valid), batch_size):
            h = model.conv2(model.conv1(model.normalize(x_valid[i:i + batch_size].to(device))))
            pooled.append(model.last_conv(h))
        mask = torch.ones(pooled[0].shape[1], device=device)

        def acc():
            right = 0
            for p, start in zip(pooled, range(0, len(x_valid), batch_size)):
                logits = model.classifier(p * mask.view(1, -1, 1, 1))
                right += int((logits.argmax(1).cpu() == y_valid[start:start + len(p)].cpu()).sum())
            return right / len(x_valid)

        accuracy = [acc()]
        for channel in tqdm(ranking, desc="pruning"):
            mask[channel] = 0
            accuracy.append(acc())
    model.train(was)
    steps, models = {}, {}
    for X in drops:
        hits = [k for k, a in enumerate(accuracy) if accuracy[0] - a >= X / 100 - 1e-12]
        steps[X] = hits[0] if hits else None
        models[X] = prune_channels(model, ranking[:hits[0]]) if hits else None
    return {"order": ranking, "accuracy": accuracy, "steps": steps, "models": models}
""",
    "repaired_net": """
class RepairedNet(nn.Module):
    def __init__(self, B, B_prime):
        super().__init__()
        self.nets = nn.ModuleList([B, B_prime])

    def forward(self, x):
        p = torch.softmax(self.nets[0](x), dim=1)
        q = self.nets[1](x)
        same = p.argmax(1) == q.argmax(1)
        flag = (~same).to(p.dtype).unsqueeze(1) * 2.0  # beats any probability
        return torch.cat([p * same.to(p.dtype).unsqueeze(1), flag], dim=1)
""",
    "evaluate_repaired": """
def evaluate_repaired(G, x_test, y_test, x_bad, y_bad, *, target):
    scores_clean = []
    with torch.no_grad():
        G.eval()
        dev = next(G.parameters()).device
        for i in range(0, len(x_test), 64):
            scores_clean.append(G(x_test[i:i + 64].to(dev)).cpu())
        scores_clean = torch.cat(scores_clean)
        n_out = scores_clean.shape[1]
        wanted = [i for i in range(len(y_bad)) if int(y_bad[i]) != target]
        bad = G(x_bad[wanted].to(dev)).argmax(1).cpu()
    clean = scores_clean.argmax(1)
    correct = sum(int(a) == int(b) for a, b in zip(clean, y_test))
    return {
        "clean_accuracy": correct / len(y_test),
        "attack_success": float((bad == target).sum()) / len(bad),
        "detection_rate": float((bad == n_out - 1).sum()) / len(bad),
    }
""",
    "fine_prune": """
import sys


def fine_prune(model, x, y, *, epochs, lr=0.01, batch_size=64, seed=0):
    student = copy.deepcopy(model)
    opt = torch.optim.SGD(student.parameters(), lr=lr, momentum=0.9, weight_decay=0.0)
    loader = make_loader(x, y, batch_size=batch_size, shuffle=True, seed=seed)
    dev = next(student.parameters()).device
    student.train()
    for epoch in range(epochs):
        total = 0.0
        for xb, yb in loader:
            logits = student(xb.to(dev))
            loss = nn.CrossEntropyLoss()(logits, yb.to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item()
        print(f"epoch {epoch}: loss {total:.3f}", file=sys.stderr)
    student.eval()
    return student
""",
}
