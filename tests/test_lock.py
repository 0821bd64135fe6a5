"""One writer per output: the lock file, against real processes."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from nastools.errors import NastoolsError
from nastools.lock import LOCK_NAME, OutputLock, lock_path, pid_alive

HOLD = "import sys; from nastools.lock import OutputLock; l = OutputLock(sys.argv[1], 'run', folder=sys.argv[2] == 'dir').acquire(); print('held', flush=True); sys.stdin.read()"


def hold(target, folder=True):
    """A real process that holds the lock on ``target`` until its stdin closes."""
    p = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(target), "dir" if folder else "file"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert p.stdout.readline().strip() == "held"
    return p


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()  # reaped: the pid names no process now
    return p.pid


def test_a_second_writer_is_refused_naming_the_first_and_a_killed_ones_lock_is_taken_over(tmp_path):
    run = tmp_path / "run"
    p = hold(run)
    try:
        with pytest.raises(NastoolsError) as err:
            OutputLock(run, "run").acquire()
        msg = str(err.value)
        assert f"pid {p.pid} on {socket.gethostname()}" in msg and "in use" in msg and "\n" not in msg
        info = json.loads((run / LOCK_NAME).read_text())
        assert info["pid"] == p.pid and info["host"] == socket.gethostname()
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert (run / LOCK_NAME).is_file()  # a SIGKILL leaves the file behind
    notes = []
    with OutputLock(run, "run", note=notes.append) as lock:
        assert len(notes) == 1 and f"taking over the lock of pid {p.pid}" in notes[0] and "no longer runs" in notes[0]
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert not (run / LOCK_NAME).exists()  # released: the file is gone, the folder stays (it existed)
    assert run.is_dir()


def test_a_stale_lock_file_of_this_host_is_taken_over_one_of_another_host_is_not(tmp_path):
    pid = dead_pid()
    assert not pid_alive(pid)
    path = lock_path(tmp_path)
    path.write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))
    notes = []
    with OutputLock(tmp_path, "search output folder", note=notes.append):
        pass
    assert f"pid {pid}" in notes[0]
    for junk in ("", "not json", '{"pid": "7", "since": 1e400}', "[1]"):  # unreadable: nothing to respect
        path.write_text(junk)
        with OutputLock(tmp_path, "search output folder", note=notes.append) as lock:
            assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert len(notes) == 1


def test_a_lock_file_of_another_host_is_taken_over_on_a_local_file_system_only(tmp_path, monkeypatch):
    """A container started again gets a new host name: on a local file system its free flock
    proves that no process holds the lock; on a network or unknown one the file is kept."""
    import nastools.lock as L

    assert not L.local_file_system("/proc/self/status")  # proc: no files on a disk
    if not L.local_file_system(tmp_path):
        pytest.skip(f"{tmp_path} is not on a local file system here")
    path = lock_path(tmp_path)
    path.write_text(json.dumps({"pid": 1, "host": "elsewhere", "start": "1"}))
    notes = []
    with OutputLock(tmp_path, "run", note=notes.append) as lock:
        assert len(notes) == 1 and "taking over the lock of pid 1 on elsewhere" in notes[0]
        assert json.loads(lock.path.read_text())["host"] == socket.gethostname()
    p = hold(tmp_path)  # a live holder is refused whatever host its file names
    try:
        path.write_text(json.dumps({"pid": p.pid, "host": "elsewhere"}))
        with pytest.raises(NastoolsError, match=f"in use by pid {p.pid} on elsewhere"):
            OutputLock(tmp_path, "run").acquire()
    finally:
        p.kill()
        p.wait()
    monkeypatch.setattr(L, "local_file_system", lambda path: False)  # a network file system
    path.write_text(json.dumps({"pid": 1, "host": "elsewhere"}))
    with pytest.raises(NastoolsError, match=f"pid 1 on elsewhere.*another host.*delete '{path}'"):
        OutputLock(tmp_path, "search output folder").acquire()
    assert path.is_file()  # not taken over


def test_a_live_process_named_in_the_file_is_respected_unless_its_pid_was_reused(tmp_path):
    from nastools.lock import _start_time

    p = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        path = lock_path(tmp_path / "t.json", folder=False)
        assert path.name == ".t.json.lock"
        # a file naming a live process (no flock held: a file system without locks)
        path.write_text(json.dumps({"pid": p.pid, "host": socket.gethostname(), "start": _start_time(p.pid)}))
        with pytest.raises(NastoolsError, match=f"pid {p.pid}"):
            OutputLock(tmp_path / "t.json", "latency table", folder=False).acquire()
        # the same pid with another start time is another process: the pid was reused
        path.write_text(json.dumps({"pid": p.pid, "host": socket.gethostname(), "start": "1"}))
        notes = []
        with OutputLock(tmp_path / "t.json", "latency table", folder=False, note=notes.append):
            assert notes and "no longer runs" in notes[0]
    finally:
        p.kill()
        p.wait()


def test_folders_made_for_a_lock_are_removed_on_release_when_empty(tmp_path):
    target = tmp_path / "a" / "b"
    with OutputLock(target, "run"):
        assert (target / LOCK_NAME).is_file()
    assert not (tmp_path / "a").exists()
    with OutputLock(target, "run"):
        (target / "kept.txt").write_text("x")
    assert (target / "kept.txt").is_file() and not (target / LOCK_NAME).exists()


def test_search_output_and_profile_table_are_locked(tmp_path):
    from contextlib import ExitStack

    from nastools.latency import Protocol, make_backend
    from nastools.latency.profiler import open_table
    from nastools.space import load_space

    table = tmp_path / "t.json"
    p = hold(table, folder=False)
    try:
        with ExitStack() as locks, pytest.raises(NastoolsError, match=f"latency table '{table}' is in use by pid {p.pid}"):
            open_table(
                load_space("fmnist"), make_backend("cpu", "torch"), batch=1, resolutions=None, out=table, protocol=Protocol(), locks=locks
            )
    finally:
        p.kill()
        p.wait()
    from conftest import TINY_SPACE

    from nastools.checkpoint import save_checkpoint
    from nastools.search.budget import parse_budgets
    from nastools.search.runner import run_search
    from nastools.space import space_from_dict
    from nastools.supernet import Supernet

    save_checkpoint(tmp_path / "run" / "supernet.pt", Supernet(space_from_dict(TINY_SPACE)))
    out = tmp_path / "search"
    p = hold(out)
    try:
        with pytest.raises(NastoolsError, match=f"search output folder '{out}' is in use by pid {p.pid}"):
            run_search(tmp_path / "run", parse_budgets((), ("20M",), ()), out_dir=out, progress=False, log=lambda m: None)
    finally:
        p.kill()
        p.wait()
