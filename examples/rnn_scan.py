"""A recurrent network with lax.scan, trained with tracejit through the scan.

Task: read a sequence of random numbers x_1, x_2, ... one at a time and say, at every step t,
whether the running sum x_1 + ... + x_t is positive. The answer depends on the whole past, so the
network has to carry it in its state. An Elman RNN cell

    h_t = tanh(W_x x_t + W_h h_{t-1} + b),    logit_t = w_o . h_t + b_o

is applied by ``lax.scan`` (the loop is one equation of the program); tj.value_and_grad
differentiates through it (the reverse pass is a reverse scan) and the whole Adam step is jitted.

    python examples/rnn_scan.py [--quick] [--out DIR]

Writes rnn_scan.png into --out and ends with ``RESULT test_accuracy=... final_loss=... initial_loss=...``.
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
from compiler import lax, nn, optim, random  # noqa: E402
from datasets import running_sum_sign  # noqa: E402


def init_params(key, hidden: int):
    kx, kh, ko = random.split(key, 3)
    return {"cell": {"w_x": nn.xavier_normal(kx, (hidden, 1)),
                     "w_h": nn.xavier_normal(kh, (hidden, hidden)),
                     "b": np.zeros(hidden, np.float32)},
            "readout": {"w": nn.xavier_normal(ko, (1, hidden)), "b": np.zeros(1, np.float32)}}


def rnn(params, xs):
    """xs: (T, N, 1) time-major -> logits (T, N), one per step."""
    cell, readout = params["cell"], params["readout"]
    hidden = cnp.shape(cell["b"])[0]

    def step(h, x):
        h = nn.tanh(nn.linear(x, cell["w_x"]) + nn.linear(h, cell["w_h"], cell["b"]))
        return h, nn.linear(h, readout["w"], readout["b"])[:, 0]

    h0 = cnp.zeros((cnp.shape(xs)[1], hidden), cnp.result_type(xs))
    _, logits = lax.scan(step, h0, xs)
    return logits


evaluate_one = tj.jit(rnn)


def bce_with_logits(z, y):
    return cnp.mean(nn.softplus(z) - y * z)


def loss_fn(params, xs, ys):
    return bce_with_logits(rnn(params, xs), ys)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps, shorter sequences (for tests)")
    parser.add_argument("--out", default=".", help="folder for the plot (default: current directory)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--length", type=int, default=None, help="sequence length")
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=None, help="Adam's step size (1e-2 quick, 3e-3 full)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    steps = args.steps or (60 if args.quick else 600)
    length = args.length or (10 if args.quick else 20)
    lr = args.lr or (1e-2 if args.quick else 3e-3)
    eval_every = 10 if args.quick else 25
    start = time.perf_counter()

    x_train, y_train = running_sum_sign(2000, length, seed=args.seed)
    x_test, y_test = running_sum_sign(1000, length, seed=args.seed + 1)
    print(f"{x_train.shape[1]} training and {x_test.shape[1]} test sequences of length {length}; "
          f"label at each step: running sum > 0")

    params = init_params(random.PRNGKey(args.seed), args.hidden)
    for layer, leaves in params.items():
        print(f"  {layer:<8} " + ", ".join(f"{k} {np.shape(v)}" for k, v in leaves.items()))
    print(f"  {sum(np.size(v) for leaves in params.values() for v in leaves.values())} parameters")
    opt = optim.adam(lr=lr)
    opt_state = opt.init(params)

    @tj.jit
    def train_step(params, opt_state, xs, ys):
        loss, grads = tj.value_and_grad(loss_fn)(params, xs, ys)
        params, opt_state = opt.update(grads, opt_state, params)
        return params, opt_state, loss

    @tj.jit
    def evaluate(params, xs, ys):
        logits = rnn(params, xs)
        correct = cnp.equal(cnp.greater(logits, 0), cnp.greater(ys, 0.5))
        return bce_with_logits(logits, ys), cnp.mean(correct), cnp.mean(correct[-1])

    rng = np.random.default_rng(args.seed)
    initial_loss, initial_acc, _ = map(float, evaluate(params, x_test, y_test))
    train_losses, evals = [], [(0, initial_loss, initial_acc)]
    for step in tqdm(range(1, steps + 1), desc="rnn_scan", unit="step"):
        idx = rng.choice(x_train.shape[1], args.batch_size, replace=False)
        params, opt_state, loss = train_step(params, opt_state, x_train[:, idx], y_train[:, idx])
        train_losses.append(float(loss))
        if step % eval_every == 0 or step == steps:
            test_loss, test_acc, _ = map(float, evaluate(params, x_test, y_test))
            evals.append((step, test_loss, test_acc))
    test_loss, test_acc, last_acc = map(float, evaluate(params, x_test, y_test))
    # a memoryless reader that sees only the current number: sign(x_t) (right whenever it agrees
    # with the running sum's sign; always right at t = 1)
    baseline = float(np.mean((x_test[..., 0] > 0) == (y_test > 0.5)))
    seconds = time.perf_counter() - start

    os.makedirs(args.out, exist_ok=True)
    plot_path = os.path.join(args.out, "rnn_scan.png")
    fig, (ax_loss, ax_acc, ax_seq) = plt.subplots(1, 3, figsize=(15, 4))
    ax_loss.plot(np.arange(1, steps + 1), train_losses, lw=0.7, alpha=0.6, label="train minibatch")
    ax_loss.plot([e[0] for e in evals], [e[1] for e in evals], "o-", ms=3, label="test")
    ax_loss.set(xlabel="step", ylabel="binary cross-entropy", title="loss", yscale="log")
    ax_loss.legend()
    ax_acc.plot([e[0] for e in evals], [e[2] for e in evals], "o-", ms=3, label="RNN")
    ax_acc.axhline(baseline, color="gray", ls=":", label=f"sign(x_t) only ({baseline:.2f})")
    ax_acc.set(xlabel="step", ylabel="accuracy (every step of every sequence)", title="test accuracy",
               ylim=(0.4, 1.0))
    ax_acc.legend()
    # show the test sequence (of the first 100) whose running sum changes sign most often
    pick = int(np.argmax(np.abs(np.diff(y_test[:, :100], axis=0)).sum(axis=0)))
    seq = x_test[:, pick:pick + 1]
    probs = 1 / (1 + np.exp(-np.asarray(evaluate_one(params, seq), np.float64)))
    t = np.arange(1, length + 1)
    ax_seq.bar(t, seq[:, 0, 0], color="lightgray", label="x_t")
    ax_seq.plot(t, np.cumsum(seq[:, 0, 0]), "k.-", label="running sum")
    ax_seq.plot(t, probs[:, 0] * 2 - 1, "r.-", label="2 P(sum > 0) - 1")
    ax_seq.axhline(0, color="gray", lw=0.5)
    ax_seq.set(xlabel="t", title="one test sequence")
    ax_seq.legend(fontsize=8)
    fig.suptitle(f"tracejit: Elman RNN (hidden {args.hidden}) under lax.scan, running-sum sign")
    fig.tight_layout()
    fig.savefig(plot_path, dpi=90)
    plt.close(fig)

    print(f"train step traced {train_step.trace_count} time(s); {steps} Adam steps of {args.batch_size} sequences")
    print(f"test loss {initial_loss:.4f} -> {test_loss:.4f}; mean train loss of the last 10 steps "
          f"{np.mean(train_losses[-10:]):.4f}")
    print(f"test accuracy {initial_acc:.4f} -> {test_acc:.4f} over all steps ({last_acc:.4f} at the last step); "
          f"memoryless baseline sign(x_t): {baseline:.4f}")
    print(f"plot: {plot_path}   time: {seconds:.1f} s")
    print(f"RESULT test_accuracy={test_acc:.4f} last_step_accuracy={last_acc:.4f} final_loss={test_loss:.4f} "
          f"initial_loss={initial_loss:.4f} baseline_accuracy={baseline:.4f} seconds={seconds:.1f}")


if __name__ == "__main__":
    main()
