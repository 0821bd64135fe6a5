import os
import stat

import pytest

from nastools.io import atomic_write_json, atomic_write_text


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_write_gives_a_new_file_the_umask_permissions_and_keeps_an_existing_files(tmp_path):
    old = os.umask(0o022)
    try:
        new = atomic_write_json(tmp_path / "table.json", {"a": 1})
        assert _mode(new) == 0o644  # not the temp file's private 0o600
        os.chmod(new, 0o640)
        atomic_write_text(new, "{}\n")
        assert _mode(new) == 0o640 and new.read_text() == "{}\n"
        os.umask(0o077)
        assert _mode(atomic_write_text(tmp_path / "private.txt", "x")) == 0o600
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["private.txt", "table.json"]  # no temp file left


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    path = atomic_write_text(tmp_path / "f.txt", "old")

    def boom(f):
        f.write("half")
        raise KeyboardInterrupt

    from nastools.io import atomic_write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, boom)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_brief_keeps_the_first_line_and_cuts_at_a_word():
    from nastools.errors import brief

    assert brief(ValueError("bad thing\nsecond line")) == "bad thing"
    assert brief(KeyError()) == "KeyError"
    long = brief(RuntimeError("word " * 100), limit=50)
    assert long.endswith("word ...") and len(long) <= 54
    assert brief("x" * 300, limit=20) == "x" * 20 + " ..."


def test_writable_dir_and_file_refuse_unwritable_places_with_one_line_and_leave_nothing_behind(tmp_path):
    from nastools.errors import NastoolsError
    from nastools.io import writable_dir, writable_file

    afile = tmp_path / "afile"
    afile.write_text("x")
    for bad, match in (
        (afile, "is a file, not a folder"),
        (afile / "sub", "cannot write there"),
        ("/proc/nastools-x", "cannot write there"),
        ("", "empty path"),
        ("  ", "empty path"),
    ):
        with pytest.raises(NastoolsError, match=match):
            writable_dir(bad, "--out")
    with pytest.raises(NastoolsError, match="is a folder: give a file path"):
        writable_file(tmp_path, "--out")
    with pytest.raises(NastoolsError, match="m.onnx': its folder .* is a file, not a folder"):
        writable_file(afile / "m.onnx", "--out")
    with pytest.raises(NastoolsError, match="x.json': its folder '/proc/nastools-x': cannot write there"):
        writable_file("/proc/nastools-x/x.json", "--out")
    # a good path passes, and the folders the check made are gone again (a failing command leaves no empty run folder)
    assert writable_dir(tmp_path / "a" / "b", "--out") == tmp_path / "a" / "b"
    assert writable_file(tmp_path / "c" / "t.json", "--out") == tmp_path / "c" / "t.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_write_that_runs_out_of_room_is_one_line_naming_the_file_and_keeps_the_old_one(tmp_path):
    """A real failing write (a file size limit: EFBIG, as a full disk gives ENOSPC, with no file
    name in the error) through the CLI's error path names the file; the old file stays whole."""
    import subprocess
    import sys

    old = tmp_path / "table.json"
    old.write_text('{"old": true}\n')
    code = (
        "import resource, signal, sys\n"
        "from click.testing import CliRunner\n"
        "import click\n"
        "from nastools.cli import main\n"
        "from nastools.io import append_text, atomic_write_text\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "@main.command('write-big')\n"
        "def write_big():\n"
        "    atomic_write_text(sys.argv[1], 'x' * 100000)\n"
        "@main.command('append-big')\n"
        "def append_big():\n"
        "    append_text(sys.argv[2], 'y' * 100000)\n"
        "for cmd in ('write-big', 'append-big'):\n"
        "    res = CliRunner().invoke(main, [cmd])\n"
        "    print(res.exit_code, res.output.strip())\n"
    )
    log = tmp_path / "train.jsonl"
    out = subprocess.run([sys.executable, "-c", code, str(old), str(log)], capture_output=True, text=True, check=True).stdout
    lines = out.strip().splitlines()
    assert lines == [f"1 Error: File too large: {str(old)!r}", f"1 Error: File too large: {str(log)!r}"], out
    assert old.read_text() == '{"old": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.json", "train.jsonl"]  # no temp file left
