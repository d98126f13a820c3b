"""The load bench's report: bridge/floor ratios pair the steps of the same N and repeat, each
mode against its own target; what a step leaves behind is counted in TCP sockets."""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
import tempfile
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


def test_a_pair_whose_bridge_step_has_no_cpu_figure_is_left_out_of_the_ratios() -> None:
    load = load_bench()
    steps = [
        step(load, "bridge", 0, 4.2),
        step(load, "floor", 0, 3.0),  # 1.40
        load.Step(target="bridge", mode="pcm16", calls=100, repeat=1),  # CPU not measured: NaN
        step(load, "floor", 1, 3.0),
    ]
    ratios = [line for line in load.summary(steps) if " = " in line and "target ≤" in line]
    assert len(ratios) == 1 and "4.20 / 3.00 = 1.40" in ratios[0]
    assert load.markdown_table(steps)[-1].endswith("pcm16 1.40 (N = 100)")


def test_a_single_run_reports_no_median() -> None:
    load = load_bench()
    lines = load.summary([step(load, "bridge", 0, 4.8), step(load, "floor", 0, 3.0)])
    assert any("4.80 / 3.00 = 1.60" in line for line in lines)
    assert not any("median of" in line for line in lines)


def full_step(
    load: ModuleType, target: str, calls: int, repeat: int, cpu_ms: float, **kw: object
) -> object:
    """A step with CPU split 60/40, p99 in = CPU, p99 out = twice it, RSS 0.07 MiB per call."""
    fields = dict(cpu_user_ms=cpu_ms * 0.6, cpu_sys_ms=cpu_ms * 0.4, server_cpu=cpu_ms * calls / 10)
    fields |= dict(in_p50=0.3, in_p99=cpu_ms, out_p50=0.4, out_p99=2 * cpu_ms, rss_idle=250.0)
    fields |= dict(rss=250.0 + 0.07 * calls)
    fields |= kw
    return load.Step(
        target=target, mode="pcm16", calls=calls, repeat=repeat, cpu_ms=cpu_ms, **fields
    )


def test_the_readme_table_is_each_ns_median_step_with_its_own_latency() -> None:
    load = load_bench()
    steps = [
        full_step(load, "bridge", 100, 0, 6.0, late_in=3),
        full_step(load, "floor", 100, 0, 3.0),
        full_step(load, "bridge", 100, 1, 4.2, late_out=2, dropped_in=1),
        full_step(load, "floor", 100, 1, 3.0),
        full_step(load, "bridge", 100, 2, 4.4),
        full_step(load, "floor", 100, 2, 3.2),
        # two steps: the lower middle by CPU is the median; one of them invalid
        full_step(load, "bridge", 200, 0, 3.9, invalid="generator lagged"),
        full_step(load, "bridge", 200, 1, 3.5),
    ]
    lines = load.markdown_table(steps)
    assert lines[0].startswith("| target | mode | N | CPU ms/call-s")
    rows = [line.split(" | ") for line in lines[2:] if line.startswith("| ")]
    assert [(r[0], r[2]) for r in rows] == [
        ("| bridge", "100"),
        ("| floor", "100"),
        ("| bridge", "200"),
    ]
    bridge100, floor100, bridge200 = rows
    # the median of 6.0, 4.2, 4.4 is the 4.4 step: its CPU split and its latency, not another's
    assert bridge100[3] == "4.4 (2.6 + 1.8)"
    assert (bridge100[6], bridge100[7]) == ("0.30 / 4.4", "0.40 / 8.8")
    assert (bridge100[8], bridge100[9]) == ("5", "1 |")  # late and dropped of all three steps
    assert bridge100[5] == "0.070"  # the RSS slope over N
    assert floor100[3] == "3.0 (1.8 + 1.2)"
    assert bridge200[3] == "3.5 (2.1 + 1.4)"
    # 6.0/3.0 = 2.00, 4.2/3.0 = 1.40, 4.4/3.2 = 1.375: the median 1.40; no floor at 200
    assert lines[-1] == "bridge/floor CPU, the median of each N's pairs: pcm16 1.40 (N = 100)"


def test_an_invalid_median_step_says_so_in_its_row() -> None:
    load = load_bench()
    lines = load.markdown_table([full_step(load, "bridge", 50, 0, 4.0, invalid="lagged")])
    (row,) = [line for line in lines if line.startswith("| bridge")]
    assert "4.0 (2.4 + 1.6) INVALID |" in row


def test_a_saved_run_reports_the_same_table(tmp_path: Path) -> None:
    load = load_bench()
    steps = [
        full_step(load, "bridge", 100, 0, 4.4, late_in=3, invalid="generator lagged"),
        full_step(load, "floor", 100, 0, 3.2, rss_series=[(1.0, 257.0), (2.0, 257.5)]),
    ]
    saved = tmp_path / "run.json"
    load.save_steps(steps, saved)
    again = load.load_steps(saved)
    assert repr(again) == repr(steps)  # every field back (NaN, unmeasured, is never == NaN)
    assert load.markdown_table(again) == load.markdown_table(steps)
    assert "INVALID" in load.markdown_table(again)[2]


def test_the_bridge_wrapper_counts_tasks_on_the_loop_and_writes_the_file_off_it(
    tmp_path: Path,
) -> None:
    """A file write on the loop once stalled every call for 0.7 s (a journal wait in `open`)."""
    import asyncio
    import threading

    spec = importlib.util.spec_from_file_location("bench_bridge", BENCH / "_bridge.py")
    assert spec is not None and spec.loader is not None
    wrapper = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wrapper)
    writers: list[int] = []
    original = wrapper._write_count
    target = tmp_path / "tasks.txt"

    async def run() -> int:
        loop = asyncio.get_running_loop()
        written = asyncio.Event()

        def recording_write(path: str, tasks: int) -> None:
            writers.append(threading.get_ident())
            original(path, tasks)
            loop.call_soon_threadsafe(written.set)

        wrapper._write_count = recording_write
        counter = asyncio.create_task(wrapper._count_tasks(str(target)))
        await written.wait()  # the run-wide pytest timeout bounds it
        counter.cancel()
        return threading.get_ident()

    loop_thread = asyncio.run(run())
    assert writers and all(ident != loop_thread for ident in writers)
    stamp, tasks = target.read_text().split()
    assert float(stamp) > 0 and int(tasks) == 2  # run() and the counter itself


def test_each_mode_has_its_own_ratio_target() -> None:
    load = load_bench()
    steps = []
    for mode in ("pcm16", "pcmu"):
        for repeat in (0, 1):
            steps.append(load.Step("bridge", mode, 100, repeat=repeat, cpu_ms=4.2))
            steps.append(load.Step("floor", mode, 100, repeat=repeat, cpu_ms=3.0))  # 1.40
    medians = [line for line in load.summary(steps) if "median of" in line]
    assert [line.split()[0] + " " + line.rsplit(" ", 1)[1] for line in medians] == [
        "pcm16 pass",  # ≤ 1.5
        "pcmu FAIL",  # > 1.3
    ]


def test_what_a_step_leaves_behind_is_counted_in_tcp_sockets_only() -> None:
    """A leaked call is a TCP connection; a worker's Unix sockets to its supervisor's table and
    its metrics files stay open by design and are not counted."""
    load = load_bench()
    me = os.getpid()
    before = load.tcp_socket_count(me, load.tcp_inodes())
    unix_a, unix_b = socket.socketpair(socket.AF_UNIX)
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    served, _ = listener.accept()
    with tempfile.TemporaryFile():
        try:
            assert load.tcp_socket_count(me, load.tcp_inodes()) - before == 3
        finally:
            for sock in (unix_a, unix_b, listener, client, served):
                sock.close()
    assert load.tcp_socket_count(me, load.tcp_inodes()) == before
