import json
import os
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from nastools.cli import main
from nastools.space import load_space


def _commands(group, prefix=()):
    yield prefix
    if isinstance(group, click.Group):
        for name, cmd in group.commands.items():
            yield from _commands(cmd, prefix + (name,))


@pytest.mark.parametrize("path", list(_commands(main)), ids=lambda p: " ".join(p) or "nastools")
def test_every_command_has_help(path):
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_console_script_and_module_entry_without_optional_packages():
    code = (
        "import sys; from nastools.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "assert 'tensorrt' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    out = subprocess.run([sys.executable, "-m", "nastools", "--version"], check=True, capture_output=True, text=True)
    assert "nastools" in out.stdout


def test_every_help_starts_without_the_heavy_packages():
    # `nastools <command> --help` answers in a fraction of a second: torch, onnxruntime, numpy
    # and matplotlib are imported by the commands' bodies, not by their definitions
    paths = [list(p) for p in _commands(main)]
    code = (
        "import sys; from nastools.cli import main\n"
        f"for path in {paths!r}:\n"
        "    try:\n        main([*path, '--help'], prog_name='nastools')\n"
        "    except SystemExit as e:\n        assert e.code == 0, path\n"
        "heavy = {'torch', 'onnxruntime', 'onnx', 'numpy', 'matplotlib', 'tensorrt'} & set(sys.modules)\n"
        "assert not heavy, sorted(heavy)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_version_is_the_projects_from_both_entry_points():
    import re
    from pathlib import Path

    import nastools

    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1)
    assert nastools.__version__ == version
    script = Path(sys.executable).with_name("nastools")
    for cmd in ([sys.executable, "-m", "nastools"], [str(script)] if script.exists() else []):
        if cmd:
            out = subprocess.run([*cmd, "--version"], check=True, capture_output=True, text=True).stdout
            assert out.strip() == f"nastools, version {version}"


def test_space_list_json():
    result = CliRunner().invoke(main, ["space", "list", "--json"])
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert set(rows) >= {"fmnist", "attentivenas"}
    sp = load_space("attentivenas")
    assert rows["attentivenas"]["num_archs"] == sp.num_archs
    assert rows["attentivenas"]["flops"] == [sp.flops(sp.min_arch()), sp.flops(sp.max_arch())]


def test_space_show_table_and_json():
    result = CliRunner().invoke(main, ["space", "show", "attentivenas"])
    assert result.exit_code == 0
    assert "192|200|208|216" in result.output and "distinct subnets: 440,301,256,704" in result.output
    data = json.loads(CliRunner().invoke(main, ["space", "show", "fmnist", "--json"]).output)
    assert data["definition"]["name"] == "fmnist" and data["fingerprint"] == load_space("fmnist").fingerprint


def test_space_sample_lines_are_valid_archs():
    result = CliRunner().invoke(main, ["space", "sample", "fmnist", "-n", "4", "--flops", "20M", "--seed", "3"])
    assert result.exit_code == 0
    sp = load_space("fmnist")
    lines = result.output.strip().splitlines()
    assert len(lines) == 4
    for line in lines:
        rec = json.loads(line)
        arch = sp.arch_from_dict(rec)
        assert rec["id"] == arch.id and rec["flops"] == sp.flops(arch) and rec["params"] == sp.params(arch)
        assert abs(rec["flops"] - 20e6) <= 0.05 * 20e6
    again = CliRunner().invoke(main, ["space", "sample", "fmnist", "-n", "4", "--flops", "20M", "--seed", "3"])
    assert again.output == result.output  # seeded


def test_space_cost(tmp_path):
    sp = load_space("fmnist")
    arch = sp.sample(9)
    path = tmp_path / "a.json"
    arch.save(path)
    data = json.loads(CliRunner().invoke(main, ["space", "cost", str(path), "--json"]).output)
    assert data["flops"] == sp.flops(arch) and data["params"] == sp.params(arch) and data["id"] == arch.id
    assert [r["stage"] for r in data["stages"]] == ["stem", "mb1", "mb2", "mb3", "mb4", "mb5", "head"]
    text = CliRunner().invoke(main, ["space", "cost", str(path)]).output
    assert arch.id in text and "mb5" in text


@pytest.mark.parametrize(
    "args",
    [
        ["space", "show", "nope"],
        ["space", "sample", "fmnist", "--flops", "5G"],
        ["space", "cost", "/no/such/arch.json"],
    ],
)
def test_bad_input_is_one_line(args):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    out = result.output.strip()
    assert out.startswith("Error: ") and "\n" not in out


def test_bad_options_are_one_line_naming_the_help_and_exit_2():
    r = CliRunner().invoke(main, ["profile", "--batch", "0"], prog_name="nastools")
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: Invalid value for '--batch'")
    assert "(see: nastools profile --help)" in lines[0] and "Usage:" not in r.output
    for group in ("space", "import"):  # a group without its command prints its help, as plain nastools does
        r = CliRunner().invoke(main, [group], prog_name="nastools")
        assert r.exit_code == 2 and r.output.startswith(f"Usage: nastools {group} [OPTIONS] COMMAND") and "Commands:" in r.output
    r = CliRunner().invoke(main, ["bogus"], prog_name="nastools")
    assert r.exit_code == 2 and r.output.strip().splitlines() == ["Error: No such command 'bogus'. (see: nastools --help)"]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["export", "--batch", "x"], "'--batch': got 'x', expected a positive integer or 'dynamic'"),
        (["export", "--batch", "0"], "'--batch': got '0'"),
        (["export", "--calib-images", "0"], "'--calib-images': 0 is not in the range x>=1"),
        (["export", "--parity-images", "0"], "'--parity-images': 0 is not in the range x>=1"),
        (["export", "--eval-images", "-3"], "'--eval-images': -3 is not in the range x>=1"),
        (["export", "--max-batch", "0"], "'--max-batch': 0 is not in the range x>=1"),
        (["export", "--workspace", "0"], "'--workspace': 0 is not in the range x>=1"),
        (["export", "--format", "tflite"], "'--format': 'tflite' is not one of 'onnx', 'trt', 'torchscript'"),
        (["export", "--dataset", "mnist"], "'--dataset': 'mnist' is not one of"),
        (["bench", "m.onnx", "--duration", "3"], "--duration '3': add a unit"),
        (["bench", "m.onnx", "--backend", "tvm"], "'--backend': 'tvm' is not one of 'ort', 'trt', 'torch'"),
        (["profile", "--resolutions", "28;32"], "'--resolutions': got '28;32', expected comma-separated integers"),
        (["profile", "--precision", "int4"], "'--precision': 'int4' is not one of 'fp32', 'fp16', 'int8'"),
        (["profile", "--device", "tpu"], "'--device': 'tpu' is not one of 'cpu', 'gpu'"),
        (["search", "--flops", "5M", "--table", "mine"], "'--table': got 'mine', expected DEVICE=PATH or a .json file"),
        (["search", "--flops", "5M", "--dataset", "mnist"], "'--dataset': 'mnist' is not one of"),
        (["space", "sample", "fmnist", "--flops", "lots"], "--flops: count 'lots': expected a number"),
        (["search", "--latency", "10"], "--latency: latency '10': add a unit"),
        (["search", "--latency", "0ms"], "--latency: latency '0ms': expected a positive time"),
        (["search", "--flops", "10ms"], "--flops: count '10ms'"),
        (["search", "--params", "-1M"], "--params: count '-1M'"),
        (["search", "--latency", "cpu=1ms", "--latency", "2ms"], "both mean this CPU"),
        (["search", "--flops", "5M", "--table", "a.json", "--table", "cpu=b.json"], "this CPU is given more than one table"),
        (["train", "--time-budget", "10"], "--time-budget: duration '10': add a unit"),
        (["train", "--sampler", "uniform", "--candidates", "5"], "--candidates: only the attentive samplers use it"),
    ],
)
def test_every_bad_option_value_exits_2_in_one_line_before_any_work(tmp_path, args, needle):
    r = CliRunner().invoke(main, [*args, "--run", str(tmp_path / "r")] if args[0] in ("export", "search") else args, prog_name="nastools")
    lines = r.output.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("Error: ") and needle in lines[0], r.output
    assert f"(see: nastools {' '.join(args[:2] if args[0] == 'space' else args[:1])} --help)" in lines[0]
    assert not (tmp_path / "r").exists()


def test_choices_come_from_the_one_definition():
    from nastools.constants import BACKENDS, DEVICES, FORMATS, PRECISIONS

    def choices(cmd, name):
        (opt,) = [p for p in main.commands[cmd].params if p.name == name]
        return tuple(opt.type.choices)

    assert choices("export", "fmt") == FORMATS and choices("export", "precision") == PRECISIONS
    assert choices("profile", "precision") == PRECISIONS and choices("profile", "backend") == BACKENDS
    assert choices("bench", "backend") == BACKENDS and choices("profile", "device") == DEVICES


def test_an_os_error_that_escapes_a_command_is_one_line_naming_the_path():
    import click

    from nastools.cli import NastoolsGroup

    @click.group(cls=NastoolsGroup)
    def g():
        pass

    @g.command()
    def write():
        open("/proc/nastools-no-such-dir/x", "w")

    @g.command()
    def truncated():
        raise EOFError

    r = CliRunner().invoke(g, ["write"])
    assert r.exit_code == 1 and r.output.strip() == "Error: No such file or directory: '/proc/nastools-no-such-dir/x'"
    r = CliRunner().invoke(g, ["truncated"])
    assert r.exit_code == 1 and "Aborted" not in r.output and "truncated file" in r.output


@pytest.mark.parametrize("world_size, code", [("2", 3), ("1", None)])
def test_a_torchrun_process_ends_with_its_output_flushed_and_without_finalizing(world_size, code):
    """Under torchrun a command's process ends at once (no interpreter finalization, where a
    gloo worker thread may abort the process); its output is flushed. Elsewhere the call
    returns and the process ends as usual."""
    script = (
        "import atexit, sys\n"
        "from nastools.cli import end_distributed_process\n"
        "atexit.register(lambda: print('finalized', flush=True))\n"
        "sys.stdout.write('summary')\n"
        "end_distributed_process(3)\n"
        "print(' returned')\n"
    )
    env = {**os.environ, "WORLD_SIZE": world_size}
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    if code is not None:
        assert (r.returncode, r.stdout) == (code, "summary")
    else:
        assert (r.returncode, r.stdout) == (0, "summary returned\nfinalized\n")


def test_no_progress_turns_the_bars_off_and_keeps_the_result(tmp_path):
    """``eval --no-progress`` on the shipped supernet: the same top-1 line without the BN
    recalibration bar that the command shows by default; every command with bars takes it."""
    space = load_space("fmnist")
    arch = tmp_path / "min.json"
    arch.write_text(space.min_arch().to_json())
    args = ["eval", "--run", "fmnist-attentive", "--arch", str(arch), "--calib-images", "64", "--max-images", "64"]
    with_bars = CliRunner().invoke(main, args)
    without = CliRunner().invoke(main, [*args, "--no-progress"])
    assert with_bars.exit_code == 0 and without.exit_code == 0, with_bars.output + without.output
    assert "BN recalibration" in with_bars.output and "BN recalibration" not in without.output
    assert [line for line in without.output.splitlines() if "top-1" in line]
    for cmd in ("train", "eval", "search", "profile", "export"):
        assert "--no-progress" in CliRunner().invoke(main, [cmd, "--help"]).output, cmd
