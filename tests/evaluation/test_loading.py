"""The loading of ``lu.evaluate``: one pool of loading processes for every call of a Python process, item by
item, the same table, error rows and resume as loading in the process; workers that leave with their parent;
the default number of workers; the choice of decoding."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest
from evaluation_toy import PAIRS, ToyDataset, run
from torch.utils.data import Subset

from lafam_utils.evaluation import close_loading_pool, loading
from lafam_utils.evaluation.run_store import chunk_path, run_folders

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tests" / "evaluation_toy.py"


def without_time(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns="seconds")


def gone(pid: int) -> bool:
    """Whether process ``pid`` has exited (a zombie counts as exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def wait_until_gone(pids: set[int], seconds: float = 20) -> set[int]:
    """The processes of ``pids`` still running after up to ``seconds``."""
    deadline = time.monotonic() + seconds
    while (alive := {pid for pid in pids if not gone(pid)}) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


def item_readers(log: Path) -> dict[int, set[int]]:
    """Index -> the processes that read it, from a ``ToyDataset(log=...)`` file."""
    readers: dict[int, set[int]] = {}
    for line in log.read_text().splitlines():
        pid, index = map(int, line.split())
        readers.setdefault(index, set()).add(pid)
    return readers


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> pd.DataFrame:
    """Loaded in this process: 10 images, item 4 broken."""
    return run(tmp_path_factory.mktemp("reference"), ToyDataset(n=10, broken=(4,)), num_workers=0)


def test_workers_by_default_follow_the_cpus_and_the_device(monkeypatch):
    expectations = {
        "cpu": [(2, 1, 0), (3, 1, 0), (4, 1, 2), (16, 1, 8), (64, 1, 8), (16, 4, 2), (12, 4, 0), (32, 2, 8)],
        "cuda": [(1, 1, 0), (2, 1, 1), (4, 1, 3), (16, 1, 8), (64, 1, 8), (16, 4, 3), (12, 8, 0), (32, 4, 7)],
    }
    for device, cases in expectations.items():
        for cpus, local_ranks, expected in cases:
            monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cpus: set(range(n)))
            monkeypatch.setenv("LOCAL_WORLD_SIZE", str(local_ranks))
            assert loading.default_workers(device) == expected, (device, cpus, local_ranks)


def test_a_dataset_that_cannot_reach_a_worker_loads_here(monkeypatch, tmp_path):
    monkeypatch.setattr(loading, "default_workers", lambda device: 4)

    class Local(ToyDataset):  # defined in a function: not picklable
        pass

    with pytest.warns(UserWarning, match="loads the dataset in this process, not in 4 workers"):
        assert loading.workers_for(None, Local(n=2)) == 0
    assert loading.workers_for(None, ToyDataset(n=2)) == 4
    assert loading.workers_for(3, Local(n=2)) == 3  # as given: an error in the worker, not a silent change
    with pytest.raises(ValueError, match="num_workers must be a non-negative integer"):
        run(tmp_path, ToyDataset(n=2), num_workers=-1)


def test_decode_is_resolved_per_dataset_and_device(tmp_path):
    from voc_files import write_voc

    import lafam_utils as lu

    write_voc(tmp_path)
    voc = lu.datasets.VOC2012(tmp_path, subset=None, size=32, cache_dir=tmp_path / "cache")
    drawn = Subset(voc, [2, 0])
    assert loading.resolve_decode("auto", voc, "cuda") == "device" == loading.resolve_decode("auto", drawn, "cuda")
    assert loading.resolve_decode("auto", voc, "cpu") == "dataset"
    assert loading.resolve_decode("auto", ToyDataset(), "cuda") == "dataset"
    assert loading.resolve_decode("device", drawn, "cpu") == "device"
    assert loading.encoded_item(drawn, 0)["id"] == voc[2]["id"]
    with pytest.raises(ValueError, match="decode='device' needs a dataset that gives its image files' bytes"):
        loading.resolve_decode("device", ToyDataset(), "cpu")
    with pytest.raises(ValueError, match="decode must be 'auto', 'dataset' or 'device', got 'gpu'"):
        run(tmp_path / "runs", ToyDataset(n=2), decode="gpu")


@pytest.mark.slow
def test_one_pool_serves_every_call_item_by_item_with_the_same_table(reference, tmp_path, capfd):
    """Two workers started once: the same rows and error rows as loading here, for two datasets in a row,
    a resumed run and a run stopped half-way; the items of a batch are read by both workers."""
    close_loading_pool()
    first = run(tmp_path / "b", ToyDataset(n=7, delay=0.3), num_workers=2, progress=True)
    pool = loading.current_pool()
    assert pool is not None and pool.size == 2
    here = run(tmp_path / "c", ToyDataset(n=7), num_workers=0)
    pd.testing.assert_frame_equal(without_time(first), without_time(here))

    pool.wait_until_started()
    log = tmp_path / "items.log"  # another dataset, the same pool
    table = run(tmp_path / "a", ToyDataset(n=10, broken=(4,), delay=0.1, log=str(log)), num_workers=2, progress=True)
    assert loading.current_pool() is pool and pool.start_seconds > 0
    assert capfd.readouterr().err.count("started 2 loading processes in") == 1
    pd.testing.assert_frame_equal(without_time(table), without_time(reference))
    broken = table[table["index"] == 4]
    assert (broken["id"] == "img004").all() and broken["error"].str.contains("truncated").all()
    readers = {i: pids - {os.getpid()} for i, pids in item_readers(log).items()}  # here: the identity's sample
    assert set(readers) == set(range(10)) and set().union(*readers.values()) == set(pool.pids)
    assert any(len(set().union(*(readers[i] for i in range(b * 3, b * 3 + 3)))) == 2 for b in range(3))

    run_dir = run_folders(tmp_path / "a")[0]
    missing = chunk_path(run_dir, PAIRS[2], 1)
    missing.unlink()
    stamps = {p: p.stat().st_mtime_ns for p in (run_dir / "chunks").iterdir()}
    resumed = run(tmp_path / "a", ToyDataset(n=10, broken=(4,)), num_workers=2)
    assert missing.exists() and {p: p.stat().st_mtime_ns for p in stamps} == stamps
    pd.testing.assert_frame_equal(without_time(resumed), without_time(reference))

    class Stop(BaseException):
        pass

    def stop_at_second_batch(maps, masks, **kwargs):
        calls.append(1)
        if len(calls) > 3:
            raise Stop
        from evaluation_toy import toy_metrics

        return toy_metrics(maps, masks, **kwargs)

    calls: list[int] = []
    with pytest.raises(Stop):
        run(tmp_path / "d", ToyDataset(n=10, broken=(4,), delay=0.05), num_workers=2, metric_fn=stop_at_second_batch)
    assert not pool.busy and loading.current_pool() is pool
    again = run(tmp_path / "e", ToyDataset(n=10, broken=(4,)), num_workers=2)  # nothing left from the stopped call
    pd.testing.assert_frame_equal(without_time(again), without_time(reference))
    assert loading.current_pool() is pool and not capfd.readouterr().err


@pytest.mark.slow
def test_a_lost_worker_leaves_the_rest_to_this_process_and_the_next_call_starts_a_new_pool(reference, tmp_path):
    close_loading_pool()
    assert loading.loading_pool(2).wait_until_started() > 0  # idle workers take the first tasks: one exits
    exiting = ToyDataset(n=10, broken=(4,), delay=0.05, exit_in_worker=tuple(range(10)))
    with pytest.warns(UserWarning, match=r"loading process lafam-loading-\d exited with code 3; evaluate loads the"):
        table = run(tmp_path / "a", exiting, num_workers=2)
    pd.testing.assert_frame_equal(without_time(table), without_time(reference))
    lost = loading.current_pool()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = run(tmp_path / "b", ToyDataset(n=10, broken=(4,)), num_workers=2)
    pd.testing.assert_frame_equal(without_time(again), without_time(reference))
    new = loading.current_pool()
    assert new is not lost and not set(new.pids) & set(lost.pids)
    close_loading_pool()
    assert loading.current_pool() is None and not wait_until_gone(set(new.pids) | set(lost.pids))


@pytest.mark.slow
def test_workers_leave_at_exit_and_when_their_parent_is_killed(tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}", "OMP_NUM_THREADS": "1"}

    def start(name: str, delay: float) -> tuple[subprocess.Popen, Path]:
        log = tmp_path / f"{name}.log"
        command = [sys.executable, str(SCRIPT), str(tmp_path / name), "--workers", "2", "--delay", str(delay),
                   "--items-log", str(log)]
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True), log

    finished, finished_log = start("finished", 0.0)
    assert finished.wait(timeout=120) == 0, finished.stderr.read()[-3000:]
    finished_workers = set().union(*item_readers(finished_log).values()) - {finished.pid}
    assert len(finished_workers) >= 1 and not wait_until_gone(finished_workers)

    killed, killed_log = start("killed", 0.5)
    deadline = time.monotonic() + 120
    while not (killed_log.exists() and set().union(*item_readers(killed_log).values()) - {killed.pid}):
        assert time.monotonic() < deadline and killed.poll() is None
        time.sleep(0.05)
    killed.kill()  # SIGKILL: no atexit
    killed.wait()
    workers = set().union(*item_readers(killed_log).values()) - {killed.pid}
    assert not wait_until_gone(workers)
