"""Worked problem: a system of components in series and in parallel, by exact enumeration.

Default system: (A || B) -- C -- (D || E): the redundant pair A, B, then C, then the redundant pair
D, E; component i fails independently with probability q_i. All 2^n outcomes (1 = the component
works) form a table; one program, tj.vmap over its rows, gives each outcome's probability and whether
the system works. From it:
  P(system correct),
  P(component i reliable | system correct) for each i (Bayes: sum over the outcomes where both hold),
  which component to inspect first, and (when the system has failed) which most likely failed;
and tj.grad of P(system correct) gives each component's Birnbaum importance dP/d(reliability_i).

    python examples/reliability.py [--out DIR] [--q 0.1,0.2,0.05,0.3,0.15]
"""
from __future__ import annotations

import argparse
import itertools
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import compiler as tj  # noqa: E402
import compiler.numpy as cnp  # noqa: E402

NAMES = ("A", "B", "C", "D", "E")
# a structure is a component index, or ("series" | "parallel", [parts])
SYSTEM = ("series", [("parallel", [0, 1]), 2, ("parallel", [3, 4])])
DEFAULT_Q = (0.1, 0.2, 0.05, 0.3, 0.15)


def describe(structure) -> str:
    if isinstance(structure, int):
        return NAMES[structure]
    kind, parts = structure
    sep = " -- " if kind == "series" else " || "
    return "(" + sep.join(describe(p) for p in parts) + ")"


def works(structure, state):
    """1.0 if the system works for the 0/1 component states, else 0.0 (series: all parts work,
    a product; parallel: at least one works, 1 - prod(1 - part))."""
    if isinstance(structure, int):
        return state[structure]
    kind, parts = structure
    values = [works(p, state) for p in parts]
    out = values[0] if kind == "series" else 1.0 - values[0]
    for v in values[1:]:
        out = out * v if kind == "series" else out * (1.0 - v)
    return out if kind == "series" else 1.0 - out


def outcome(state, q):
    """Probability of one outcome row and whether the system works in it."""
    per_component = state * (1.0 - q) + (1.0 - state) * q
    return cnp.prod(per_component), works(SYSTEM, state)


def outcome_table(n: int) -> np.ndarray:
    return np.array(list(itertools.product((1.0, 0.0), repeat=n)), np.float64)


def system_reliability(q, table):
    probs, ok = tj.vmap(outcome, in_axes=(0, None))(table, q)
    return cnp.sum(probs * ok)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".", help="folder for reliability.png")
    parser.add_argument("--q", default=",".join(map(str, DEFAULT_Q)),
                        help="failure probabilities of A,B,C,D,E")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    q = np.array([float(v) for v in args.q.split(",")], np.float64)
    n = len(NAMES)
    if q.shape != (n,) or np.any(q < 0) or np.any(q > 1):
        parser.error(f"--q needs {n} probabilities in [0, 1]")

    table = outcome_table(n)
    print(f"system {describe(SYSTEM)}; failure probabilities " +
          ", ".join(f"q_{a} = {v:g}" for a, v in zip(NAMES, q)))
    print(f"\nthe outcome program, vmapped over the {len(table)} rows of the outcome table:")
    print(tj.make_jaxpr(tj.vmap(outcome, in_axes=(0, None)))(table, q))
    probs, ok = (np.asarray(a) for a in tj.vmap(outcome, in_axes=(0, None))(table, q))
    p_sys = float(np.sum(probs * ok))
    p_rel_given_ok = (probs * ok) @ table / p_sys
    p_fail_given_fail = (probs * (1 - ok)) @ (1 - table) / (1 - p_sys) if p_sys < 1 else np.zeros(n)
    importance = -np.asarray(tj.grad(system_reliability)(q, table))      # dP/d(1 - q_i)

    print(f"\nP(system correct) = {p_sys:.6f}   (sum of the probabilities of the {int(ok.sum())} working "
          f"outcomes; total probability {probs.sum():.6f})")
    print(f"\n{'component':<10}{'P(reliable)':>12}{'P(reliable | system ok)':>25}{'change':>9}"
          f"{'P(failed | system failed)':>27}{'dP_sys/dr_i':>13}")
    for i, a in enumerate(NAMES):
        print(f"{a:<10}{1 - q[i]:>12.4f}{p_rel_given_ok[i]:>25.4f}{p_rel_given_ok[i] - (1 - q[i]):>+9.4f}"
              f"{p_fail_given_fail[i]:>27.4f}{importance[i]:>13.4f}")
    inspect = int(np.argmin(p_rel_given_ok))
    most_changed = int(np.argmax(np.abs(p_rel_given_ok - (1 - q))))
    culprit = int(np.argmax(p_fail_given_fail))
    print(f"\ninspect first: {NAMES[inspect]} — the least reliable component even knowing the system "
          f"works (P = {p_rel_given_ok[inspect]:.4f}); knowing the system works changes "
          f"{NAMES[most_changed]}'s reliability the most ({p_rel_given_ok[most_changed] - (1 - q[most_changed]):+.4f})")
    print(f"if the system has failed, the most likely failed component is {NAMES[culprit]} "
          f"(P = {p_fail_given_fail[culprit]:.4f}); the most important for reliability (Birnbaum) is "
          f"{NAMES[int(np.argmax(importance))]}")

    fig, ax = plt.subplots(figsize=(7, 3.8))
    pos = np.arange(n)
    ax.bar(pos - 0.27, 1 - q, 0.27, label="P(reliable)")
    ax.bar(pos, p_rel_given_ok, 0.27, label="P(reliable | system correct)")
    ax.bar(pos + 0.27, p_fail_given_fail, 0.27, label="P(failed | system failed)")
    ax.set_xticks(pos, NAMES)
    ax.set_ylim(0, 1.3)
    ax.set_title(f"{describe(SYSTEM)}: P(system correct) = {p_sys:.4f}")
    ax.legend(fontsize=8, loc="upper center", ncol=3)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = os.path.join(args.out, "reliability.png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(f"plot written to {path}")
    return {"q": q, "names": NAMES, "system": SYSTEM, "p_system": p_sys,
            "p_reliable_given_ok": p_rel_given_ok, "p_failed_given_failed": p_fail_given_fail,
            "birnbaum": importance, "inspect_first": NAMES[inspect], "most_changed": NAMES[most_changed],
            "likely_failed": NAMES[culprit], "plot": path}


if __name__ == "__main__":
    main()
