"""The quantization x pruning sweep: every configuration measured, the front is exactly the
non-dominated set, and the numbers behave as the formats predict."""
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    pytest.importorskip("matplotlib")
    pytest.importorskip("tqdm")
    pytest.importorskip("mlxtend")
    sys.path.insert(0, str(EXAMPLES))
    try:
        import pareto_sweep
        out = tmp_path_factory.mktemp("pareto")
        return pareto_sweep.main(["--quick", "--out", str(out), "--repeats", "2"]), out
    finally:
        sys.path.remove(str(EXAMPLES))


def test_every_configuration_is_reported_and_the_plot_written(sweep):
    result, out = sweep
    assert len(result["rows"]) == 30 and (out / "pareto_sweep.png").exists()
    assert result["base_accuracy"] >= 0.8


def test_front_is_the_non_dominated_set(sweep):
    rows = sweep[0]["rows"]
    points = np.array([[r["accuracy"], r["speedup"]] for r in rows])
    dominated = [any(np.all(points[j] >= points[i]) and np.any(points[j] > points[i]) for j in range(len(rows)))
                 for i in range(len(rows))]
    assert sweep[0]["front"] == [i for i, d in enumerate(dominated) if not d]


def test_numbers_follow_the_formats(sweep):
    by_name = {r["config"]: r for r in sweep[0]["rows"]}
    dense = by_name["f32/dense"]
    assert dense["loss"] == 0 and dense["error"] == 0
    # fewer bits, fewer weight bytes; pruning more loses more accuracy
    assert by_name["int4/dense"]["weight_bytes"] < by_name["int8/dense"]["weight_bytes"] < \
        by_name["fp16/dense"]["weight_bytes"] < dense["weight_bytes"]
    assert by_name["fp16/dense"]["error"] < by_name["int8/dense"]["error"] < by_name["int4/dense"]["error"]
    assert by_name["f32/90%"]["accuracy"] < by_name["f32/50%"]["accuracy"]
