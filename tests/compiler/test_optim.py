"""compiler.optim step for step against torch.optim (float64) on a small MLP regression loss.

Our gradients come from tj.grad of a compiler.nn loss, torch's from autograd of the same loss written
in torch; parameters must agree after every step.
"""
import numpy as np
import pytest

import compiler as tj
from compiler import nn, optim

torch = pytest.importorskip("torch")

STEPS = 10
ATOL = 1e-12


def initial_params(seed=0):
    rng = np.random.default_rng(seed)
    return {"w1": rng.standard_normal((5, 3)) * 0.7, "b1": rng.standard_normal(5) * 0.1,
            "w2": rng.standard_normal((2, 5)) * 0.7, "b2": rng.standard_normal(2) * 0.1}


def batch(step, seed=1):
    rng = np.random.default_rng(seed + step)
    return rng.standard_normal((8, 3)), rng.standard_normal((8, 2))


def loss(params, x, y):
    h = nn.tanh(nn.linear(x, params["w1"], params["b1"]))
    return nn.mse(nn.linear(h, params["w2"], params["b2"]), y)


def torch_loss(params, x, y):
    h = torch.tanh(torch.nn.functional.linear(torch.tensor(x), params["w1"], params["b1"]))
    return torch.nn.functional.mse_loss(torch.nn.functional.linear(h, params["w2"], params["b2"]), torch.tensor(y))


CONFIGS = {
    "sgd": (lambda: optim.sgd(0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    "sgd_momentum": (lambda: optim.sgd(0.05, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
    "sgd_nesterov": (lambda: optim.sgd(0.05, momentum=0.8, nesterov=True),
                     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True)),
    "sgd_dampening": (lambda: optim.sgd(0.05, momentum=0.9, dampening=0.3),
                      lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, dampening=0.3)),
    "sgd_weight_decay": (lambda: optim.sgd(0.1, weight_decay=0.05),
                         lambda p: torch.optim.SGD(p, lr=0.1, weight_decay=0.05)),
    "sgd_all": (lambda: optim.sgd(0.03, momentum=0.7, weight_decay=0.02, nesterov=True),
                lambda p: torch.optim.SGD(p, lr=0.03, momentum=0.7, weight_decay=0.02, nesterov=True)),
    "sgd_momentum_dampening_decay": (lambda: optim.sgd(0.03, momentum=0.6, dampening=0.5, weight_decay=0.1),
                                     lambda p: torch.optim.SGD(p, lr=0.03, momentum=0.6, dampening=0.5,
                                                               weight_decay=0.1)),
    "momentum": (lambda: optim.momentum(0.05, beta=0.85), lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.85)),
    "momentum_nesterov": (lambda: optim.momentum(0.05, nesterov=True),
                          lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True)),
    "adam": (lambda: optim.adam(0.01), lambda p: torch.optim.Adam(p, lr=0.01, foreach=False)),
    "adam_betas": (lambda: optim.adam(0.02, b1=0.8, b2=0.95, eps=1e-6),
                   lambda p: torch.optim.Adam(p, lr=0.02, betas=(0.8, 0.95), eps=1e-6, foreach=False)),
    "adam_weight_decay": (lambda: optim.adam(0.01, weight_decay=0.1),
                          lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.1, foreach=False)),
    "adamw": (lambda: optim.adamw(0.01), lambda p: torch.optim.AdamW(p, lr=0.01, foreach=False)),
    "adamw_decay": (lambda: optim.adamw(0.02, b1=0.85, weight_decay=0.3),
                    lambda p: torch.optim.AdamW(p, lr=0.02, betas=(0.85, 0.999), weight_decay=0.3, foreach=False)),
}


def run_side_by_side(name, jit: bool):
    make_ours, make_theirs = CONFIGS[name]
    params = initial_params()
    tparams = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt = make_ours()
    topt = make_theirs(list(tparams.values()))
    state = opt.init(params)

    def train_step(params, state, x, y):
        grads = tj.grad(loss)(params, x, y)
        return opt.update(grads, state, params)

    step = tj.jit(train_step) if jit else train_step
    losses = []
    for i in range(STEPS):
        x, y = batch(i)
        topt.zero_grad()
        tl = torch_loss(tparams, x, y)
        tl.backward()
        topt.step()
        losses.append(float(tl.detach()))
        params, state = step(params, state, x, y)
        for k in params:
            np.testing.assert_allclose(params[k], tparams[k].detach().numpy(), rtol=0, atol=ATOL,
                                       err_msg=f"{name}: {k} after step {i + 1}")
    assert losses[-1] < losses[0]            # the run actually trains: parameters move
    return params, state, step


@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_torch_step_for_step(name):
    run_side_by_side(name, jit=False)


@pytest.mark.parametrize("name", ["sgd", "sgd_all", "adam_weight_decay", "adamw_decay"])
def test_jitted_train_step_matches_torch(name):
    _, state, step = run_side_by_side(name, jit=True)
    assert step.trace_count <= 2        # the first state (Python int step) may trace once more
    assert int(np.asarray(state["step"])) == STEPS


@pytest.mark.parametrize("name", ["sgd", "sgd_momentum", "adam", "adamw"])
def test_state_pytree_round_trips(name):
    opt = CONFIGS[name][0]()
    params = initial_params()
    state = opt.init(params)
    grads = tj.grad(loss)(params, *batch(0))
    params, state = opt.update(grads, state, params)
    leaves, tree = tj.tree_flatten(state)
    rebuilt = tj.tree_unflatten(tree, [np.array(leaf) for leaf in leaves])
    assert tj.tree_structure(rebuilt) == tree
    # continuing from the rebuilt state is the same as continuing from the original
    grads = tj.grad(loss)(params, *batch(1))
    a, sa = opt.update(grads, state, params)
    b, sb = opt.update(grads, rebuilt, params)
    for x, y in zip(tj.tree_leaves((a, sa)), tj.tree_leaves((b, sb))):
        np.testing.assert_array_equal(x, y)
    # the state goes through jit as an input and comes back with the same structure
    jitted = tj.jit(opt.update)(grads, rebuilt, params)
    assert tj.tree_structure(jitted[1]) == tree
    for x, y in zip(tj.tree_leaves((a, sa)), tj.tree_leaves(jitted)):
        np.testing.assert_allclose(x, y, rtol=1e-15, atol=0)


def test_state_has_parameter_structure():
    params = initial_params()
    state = optim.adam().init(params)
    assert tj.tree_structure(state["m"]) == tj.tree_structure(params)
    for k in params:
        np.testing.assert_array_equal(state["m"][k], np.zeros_like(params[k]))
        np.testing.assert_array_equal(state["v"][k], np.zeros_like(params[k]))


def test_update_on_list_and_float32_params():
    params = [np.array([1.0, -2.0], np.float32), np.array(3.0, np.float32)]
    grads = [np.array([0.5, 0.25], np.float32), np.array(-1.0, np.float32)]
    opt = optim.adam(0.1)
    new, _ = opt.update(grads, opt.init(params), params)
    assert isinstance(new, list)
    assert all(np.asarray(p).dtype == np.float32 for p in new)
    # Adam's first step moves every coordinate by lr * g / (|g| + eps / sqrt(1 - b2)) ~ lr * sign(g)
    np.testing.assert_allclose(new[0], [0.9, -2.1], rtol=1e-6)
    np.testing.assert_allclose(new[1], 3.1, rtol=1e-6)


def test_plain_sgd_hand_values():
    params = {"a": np.array([1.0, 2.0])}
    opt = optim.sgd(0.5, weight_decay=0.1)
    new, _ = opt.update({"a": np.array([2.0, -4.0])}, opt.init(params), params)
    np.testing.assert_allclose(new["a"], [1.0 - 0.5 * (2.0 + 0.1), 2.0 - 0.5 * (-4.0 + 0.2)], rtol=1e-15)


def test_errors():
    with pytest.raises(ValueError):
        optim.sgd(0.1, momentum=0.9, dampening=0.1, nesterov=True)
    with pytest.raises(ValueError):
        optim.sgd(0.1, nesterov=True)
    opt = optim.sgd(0.1)
    params = {"a": np.ones(2)}
    with pytest.raises(TypeError):
        opt.update({"b": np.ones(2)}, opt.init(params), params)
