"""What the MNIST examples share: a jitted train loop (value_and_grad + Adam) and the loss/accuracy
plot. The model is a function ``model(params, x) -> logits``."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

import compiler as tj  # noqa: E402
import compiler.numpy as cnp  # noqa: E402
from compiler import nn, optim  # noqa: E402
from datasets import batches  # noqa: E402


def classifier_metrics(model):
    """A jitted ``evaluate(params, x, y) -> (cross-entropy, accuracy)``."""
    @tj.jit
    def evaluate(params, x, y):
        logits = model(params, x)
        return nn.cross_entropy(logits, y), cnp.mean(cnp.equal(cnp.argmax(logits, axis=-1), y))
    return evaluate


def train(model, params, train_set, test_set, epochs: int, batch_size: int = 64, lr: float = 1e-3,
          seed: int = 0, desc: str = "training"):
    """Adam on shuffled minibatches with one jitted train step (forward, gradient, update).

    Returns (params, history, train_step); history has step_losses, epoch_losses, test_accs,
    initial_loss and initial_acc (on the test set) and steps_per_epoch."""
    (x_train, y_train), (x_test, y_test) = train_set, test_set
    evaluate = classifier_metrics(model)
    opt = optim.adam(lr=lr)
    opt_state = opt.init(params)
    loss_fn = lambda params, x, y: nn.cross_entropy(model(params, x), y)

    @tj.jit
    def train_step(params, opt_state, x, y):
        loss, grads = tj.value_and_grad(loss_fn)(params, x, y)
        params, opt_state = opt.update(grads, opt_state, params)
        return params, opt_state, loss

    rng = np.random.default_rng(seed)
    initial_loss, initial_acc = map(float, evaluate(params, x_test, y_test))
    history = {"step_losses": [], "epoch_losses": [], "test_accs": [], "initial_loss": initial_loss,
               "initial_acc": initial_acc, "steps_per_epoch": len(x_train) // batch_size}
    with tqdm(total=epochs * history["steps_per_epoch"], desc=desc, unit="step") as bar:
        for epoch in range(epochs):
            losses = []
            for x, y in batches(x_train, y_train, batch_size, rng):
                params, opt_state, loss = train_step(params, opt_state, x, y)
                losses.append(float(loss))
                bar.update(1)
            _, acc = evaluate(params, x_test, y_test)
            history["step_losses"] += losses
            history["epoch_losses"].append(float(np.mean(losses)))
            history["test_accs"].append(float(acc))
            bar.set_postfix(epoch=epoch + 1, loss=f"{history['epoch_losses'][-1]:.3f}",
                            test_acc=f"{history['test_accs'][-1]:.3f}")
    return params, history, train_step


def plot_curves(path: str, history: dict, title: str) -> None:
    """Training loss per step (and per epoch) beside test accuracy per epoch (epoch 0: untrained)."""
    steps, epochs = history["steps_per_epoch"], len(history["epoch_losses"])
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    losses = history["step_losses"]
    ax_loss.plot(np.arange(1, len(losses) + 1), losses, lw=0.6, alpha=0.5, label="minibatch")
    ax_loss.plot(np.arange(1, epochs + 1) * steps, history["epoch_losses"], "o-", label="epoch mean")
    ax_loss.set(xlabel="step", ylabel="cross-entropy", title="training loss", yscale="log")
    ax_loss.legend()
    accs = [history["initial_acc"]] + history["test_accs"]
    ax_acc.plot(np.arange(0, epochs + 1), accs, "o-")
    ax_acc.axhline(0.1, color="gray", ls=":", label="chance")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title=f"test accuracy (final {accs[-1]:.3f})", ylim=(0, 1))
    ax_acc.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
