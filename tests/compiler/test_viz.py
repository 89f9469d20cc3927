"""Graph pictures: DOT text structure, values and adjoints on nodes, rendering through graphviz."""
import shutil

import pytest

import compiler as tj
from compiler import viz


def test_dot_has_inputs_left_outputs_right_and_every_equation():
    j = tj.make_jaxpr(lambda w1, w2, w3: (w1 + w2) * w3)(1.0, 2.0, 3.0)
    dot = viz.to_dot(j)
    assert "rankdir=LR" in dot and "rank=source" in dot and "rank=sink" in dot
    assert dot.count("shape=ellipse") == len(j.eqns) == 2
    assert "a -> eqn0" in dot and "b -> eqn0" in dot and "eqn0 -> eqn1" in dot and "eqn1 -> out0" in dot


def test_nodes_carry_the_values_and_gradients_of_a_backward_pass(capsys):
    e = tj.explain_grad(lambda w1, w2, w3: (w1 + w2) * w3, argnums=(0, 1, 2))(1.0, 2.0, 3.0)
    # hand backprop: d = w1 + w2 = 3, L = 9; dL/dd = w3 = 3, dL/dw3 = d = 3, dL/dw1 = dL/dw2 = 3
    assert float(e.values["d"]) == 3.0 and float(e.values["e"]) == 9.0
    assert float(e.adjoints["d"]) == 3.0 and float(e.adjoints["c"]) == 3.0
    dot = viz.to_dot(e.jaxpr, e.values, e.adjoints)
    assert 'label="d = add\\nvalue 3\\ngrad 3"' in dot


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz 'dot' program not installed")
def test_render_writes_a_png(tmp_path):
    pytest.importorskip("graphviz")
    j = tj.make_jaxpr(lambda x: x * 2.0 + 1.0)(1.0)
    path = viz.render(j, str(tmp_path / "graph.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_missing_graphviz_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(viz.shutil, "which", lambda name: None)
    pytest.importorskip("graphviz")
    with pytest.raises(viz.GraphvizMissing, match="apt-get install graphviz"):
        viz.render(tj.make_jaxpr(lambda x: x)(1.0), "/tmp/never.png")
