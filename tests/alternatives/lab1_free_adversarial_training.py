"""Independently written correct answers to Lab 1's tasks (task grade_id -> answer cell).

Written in another style than the instructor's: ``standard_train`` clears the gradients
parameter by parameter, computes the cross-entropy as NLL of log-softmax and reports each
epoch's loss on stderr; ``free_adv_train`` keeps its state in a small class and, like the
authors' code, takes the gradient for delta from a leaf perturbation through the clipping.
Each must keep full marks.
"""

SOLUTIONS: dict[str, str] = {
    "standard_train": '''\
import sys


def standard_train(model, loader, optimizer, *, epochs):
    def one_minibatch(net, images, labels):
        for parameter in net.parameters():  # forget the previous minibatch's gradients
            parameter.grad = None
        log_probs = torch.log_softmax(net(images), dim=1)
        loss = torch.nn.functional.nll_loss(log_probs, labels)  # = mean cross-entropy
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    def report(epoch, history):
        print(f"epoch {epoch + 1}: loss {history.loss[-1]:.4f}", file=sys.stderr)

    return fit(model, loader, one_minibatch, epochs=epochs, desc="standard (mine)",
               on_epoch_end=report)
''',
    "free_adv_train": '''\
class _FreeAdversary:
    """Algorithm 1's state: the global perturbation, and the step that updates it."""

    def __init__(self, optimizer, eps, hops):
        self.optimizer, self.eps, self.hops = optimizer, eps, hops
        self.noise = None

    def __call__(self, model, x, y):
        if self.noise is None:
            self.noise = x.new_zeros(x.shape)
        rows = x.shape[0]
        for _hop in range(self.hops):
            leaf = self.noise[:rows].clone().requires_grad_(True)
            logits = model(torch.clamp(x + leaf, min=0.0, max=1.0))
            loss = F.cross_entropy(logits, y)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            ascent = self.eps * torch.sign(leaf.grad)
            self.noise[:rows] = torch.clamp(leaf.detach() + ascent, -self.eps, self.eps)
        return loss.item()


def free_adv_train(model, loader, optimizer, *, epochs, eps, m):
    rounds = -(-epochs // m)  # ceil(epochs / m)
    return fit(model, loader, _FreeAdversary(optimizer, eps, m), epochs=rounds,
               desc="free AT (mine)")
''',
}
