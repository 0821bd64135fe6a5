"""One writer per output: a lock file that names the process holding it.

A training run, a search output folder and a latency table being profiled each have one
writer at a time. :class:`OutputLock` creates ``<folder>/.nastools.lock`` (for a folder) or
``.<name>.lock`` beside a file, holds an exclusive ``flock`` on it for as long as the work
runs, and writes the holder's pid, host and start time into it. A second process is refused
with one line naming the first (:class:`~nastools.errors.NastoolsError`). The kernel drops
the ``flock`` when its process dies, even by SIGKILL; the file left behind by a dead process
of this host is then taken over, with a note. A file naming another host is taken over too
where the file system is local to this machine (a disk, tmpfs, a container's overlay: every
process that can open the file shares this kernel's ``flock``, so a free one proves that no
process holds it; a container started again under a new host name); on a network or unknown
file system it is not (its process cannot be checked from here): the message says which
file to delete.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
from pathlib import Path
from typing import Callable

from nastools.errors import NastoolsError

LOCK_NAME = ".nastools.lock"


def lock_path(target: str | Path, folder: bool = True) -> Path:
    """The lock file of ``target``: ``<target>/.nastools.lock`` for a ``folder``,
    ``.<name>.lock`` beside it for a file."""
    p = Path(target)
    return p / LOCK_NAME if folder else p.with_name(f".{p.name}.lock")


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot, Linux), None where unknown;
    with the pid it names one process, even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22; the name in (...) may hold spaces


def pid_alive(pid: int, start: str | None = None) -> bool:
    """Whether process ``pid`` runs on this host (a zombie does not; with ``start``, a
    process that reused the pid does not either)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        if state in ("Z", "X"):
            return False
    except (OSError, IndexError):
        pass
    now = _start_time(pid)
    return start is None or now is None or now == start


#: file systems whose files only this machine's kernel opens: a free ``flock`` there is proof
LOCAL_FILE_SYSTEMS = frozenset(
    {"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "jfs", "reiserfs", "bcachefs", "zfs", "tmpfs", "ramfs", "overlay"}
)


def local_file_system(path: str | Path) -> bool:
    """Whether ``path`` lies on a file system of :data:`LOCAL_FILE_SYSTEMS` (the mount that
    holds it in ``/proc/self/mountinfo``); False for network, FUSE and unknown ones, and
    where the mount table cannot be read."""
    try:
        real = os.path.realpath(path)
        lines = Path("/proc/self/mountinfo").read_text(errors="replace").splitlines()
    except OSError:
        return False
    best, fstype = "", ""
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right.split():
            continue
        mount = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])  # \040: a space
        inside = real == mount or real.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):  # the deepest mount; of mounts on one point, the last
            best, fstype = mount, right.split()[0]
    return fstype in LOCAL_FILE_SYSTEMS


def _command() -> str:
    """This process's command line, shortened (``python -m nastools`` as ``nastools``)."""
    prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    prog = "nastools" if prog in ("__main__.py", "nastools") else prog
    text = " ".join([prog, *sys.argv[1:]])
    return text if len(text) <= 120 else text[:117] + "..."


def _describe(info: dict) -> str:
    if not info.get("pid"):
        return "another process"
    try:
        when = f", since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(info['since']))}"
    except (KeyError, TypeError, ValueError, OverflowError, OSError):  # absent, or a hand-edited file
        when = ""
    cmd = f" ({info['command']})" if info.get("command") else ""
    return f"pid {info['pid']} on {info.get('host', '?')}{cmd}{when}"


class OutputLock:
    """An exclusive lock on ``target`` (a folder or a file) for one writing process.

    >>> with OutputLock("runs/a", "run"):
    ...     ...  # the only writer of runs/a

    ``what`` names the output in messages (``"run"``, ``"search output folder"``) and
    ``elsewhere`` how to write another one instead (``"pass another --run"``);
    ``folder=False`` locks a file. ``note`` prints the take-over note (default: stderr).
    Folders created for the lock file are removed again on release when left empty.
    """

    def __init__(
        self,
        target: str | Path,
        what: str,
        *,
        folder: bool = True,
        elsewhere: str = "write elsewhere",
        note: Callable[[str], None] | None = None,
    ) -> None:
        self.target, self.what, self.elsewhere = Path(target), what, elsewhere
        self.path = lock_path(target, folder)
        self.note = note or (lambda m: print(m, file=sys.stderr, flush=True))
        self._fd: int | None = None
        self._made: list[Path] = []

    def _read(self, fd: int) -> dict:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            data = json.loads(os.read(fd, 65536).decode("utf-8", "replace") or "{}")
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def _refuse(self, info: dict, why: str) -> NastoolsError:
        return NastoolsError(
            f"{self.what} {str(self.target)!r} is in use by {_describe(info)}{why}: one process at a time writes it; "
            f"wait for that one to end or stop it, or {self.elsewhere}"
        )

    def acquire(self) -> "OutputLock":
        """Take the lock, or raise a one-line :class:`NastoolsError` naming its holder."""
        if self._fd is not None:
            return self
        self._made = [d for d in (self.path.parent, *self.path.parent.parents) if not d.exists()]
        host, pid = socket.gethostname(), os.getpid()
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: the pid check alone
            fcntl = None
        for _ in range(10):
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            except OSError as exc:
                self._cleanup_dirs()
                raise NastoolsError(
                    f"{self.what} {str(self.target)!r}: cannot create its lock file {str(self.path)!r} ({exc.strerror or exc})"
                ) from None
            try:
                if fcntl is not None:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        raise self._refuse(self._read(fd), "") from None
                    # the file may have been released and removed between open and flock
                    try:
                        same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
                    except FileNotFoundError:
                        same = False
                    if not same:
                        os.close(fd)
                        continue
                old = self._read(fd)
                if not isinstance(old.get("pid"), int) or isinstance(old.get("pid"), bool):
                    old = {}  # empty (a writer killed before it wrote) or not ours: nothing to respect
                if old:
                    if old.get("host") != host and not (fcntl is not None and local_file_system(self.path)):
                        raise NastoolsError(
                            f"{self.what} {str(self.target)!r} is locked by {_describe(old)}, another host whose process "
                            f"cannot be checked from here; if it no longer runs, delete {str(self.path)!r}"
                        )
                    mine = (old.get("host"), old.get("pid"), old.get("start")) == (host, pid, _start_time(pid))
                    if old.get("host") == host and not mine and pid_alive(int(old["pid"]), old.get("start")):
                        raise self._refuse(old, f" (lock file {str(self.path)!r})")
                    self.note(
                        f"note: {self.what} {str(self.target)!r}: taking over the lock of {_describe(old)}, "
                        f"which no longer runs (it was killed or crashed)"
                    )
                info = {"pid": pid, "host": host, "start": _start_time(pid), "since": round(time.time(), 1), "command": _command()}
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
                os.write(fd, (json.dumps(info) + "\n").encode())
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                self._cleanup_dirs()
                raise
            self._fd = fd
            return self
        raise NastoolsError(f"{self.what} {str(self.target)!r}: could not take the lock {str(self.path)!r} (it keeps being replaced)")

    def release(self) -> None:
        """Remove the lock file and let go of the lock (idempotent)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                os.unlink(self.path)  # before closing: nobody can take a lock on a file about to vanish
        except OSError:
            pass
        finally:
            os.close(fd)
            self._cleanup_dirs()

    def _cleanup_dirs(self) -> None:
        for d in self._made:  # deepest first; only folders left empty
            try:
                d.rmdir()
            except OSError:
                break
        self._made = []

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> bool:
        self.release()
        return False


__all__ = ["LOCAL_FILE_SYSTEMS", "LOCK_NAME", "OutputLock", "local_file_system", "lock_path", "pid_alive"]
