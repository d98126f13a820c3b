"""The load bench's report: bridge/floor ratios pair the steps of the same N and repeat."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parent.parent / "bench"


def load_bench() -> ModuleType:
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("bench_load", BENCH / "load.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_load"] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


def step(load: ModuleType, target: str, repeat: int, cpu_ms: float) -> object:
    return load.Step(target=target, mode="pcm16", calls=100, repeat=repeat, cpu_ms=cpu_ms)


def test_repeated_pairs_give_one_ratio_each_and_their_median() -> None:
    load = load_bench()
    steps = [
        step(load, "bridge", 0, 6.0),
        step(load, "floor", 0, 3.0),  # 2.00
        step(load, "bridge", 1, 4.2),
        step(load, "floor", 1, 3.0),  # 1.40
        step(load, "bridge", 2, 4.4),
        step(load, "floor", 2, 3.2),  # 1.375
    ]
    lines = load.summary(steps)
    ratios = [line for line in lines if " = " in line and "target ≤" in line]
    assert [line.split(" = ")[1][:4] for line in ratios] == ["2.00", "1.40", "1.38"]
    (median,) = [line for line in lines if "median of" in line]
    assert "median of 3 pairs 1.40 (range 1.38–2.00): pass" in median


def test_a_single_run_reports_no_median() -> None:
    load = load_bench()
    lines = load.summary([step(load, "bridge", 0, 4.8), step(load, "floor", 0, 3.0)])
    assert any("4.80 / 3.00 = 1.60" in line for line in lines)
    assert not any("median of" in line for line in lines)
