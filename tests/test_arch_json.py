"""Property tests: Arch JSON round-trips, and malformed input always gives the one-line
error (NastoolsError), never another exception, from the library and from the CLI."""

import json

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nastools.cli import main
from nastools.errors import NastoolsError
from nastools.space import Arch, StageArch, load_arch, load_space, parse_arch

SPACES = {n: load_space(n) for n in ("fmnist", "attentivenas")}


@st.composite
def archs(draw):
    sp = SPACES[draw(st.sampled_from(sorted(SPACES)))]
    stages = tuple(
        StageArch(
            draw(st.sampled_from(s.widths)),
            draw(st.sampled_from(s.depths)),
            draw(st.sampled_from(s.kernels)),
            draw(st.sampled_from(s.expands)),
        )
        for s in sp.stages
    )
    return Arch(
        sp.name, draw(st.sampled_from(sp.resolutions)), draw(st.sampled_from(sp.stem_widths)), stages, draw(st.sampled_from(sp.head_widths))
    )


json_values = st.recursive(
    # subnormals as one value: hypothesis refuses to draw them once an ONNX Runtime session has
    # set flush-to-zero on this thread (nastools.runtime.session_options)
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_subnormal=False) | st.just(5e-324) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@given(archs())
@settings(max_examples=200)
def test_round_trip(arch):
    sp = SPACES[arch.space]
    text = arch.to_json()
    back = sp.arch_from_dict(json.loads(text))
    assert back == arch and back.id == arch.id and back.key == arch.key
    assert load_arch(text) == arch
    assert json.loads(back.to_json()) == json.loads(text)


@given(json_values)
@settings(max_examples=300)
def test_arbitrary_json_never_crashes(value):
    try:
        arch = parse_arch(value)
    except NastoolsError as exc:
        assert "\n" not in str(exc) and str(exc)
    else:  # only a structurally valid arch parses, to a record its own encoding gives back
        assert isinstance(value, dict) and {"space", "resolution", "stem", "stages", "head"} <= value.keys()
        assert parse_arch(json.loads(arch.to_json())) == arch and len(arch.stages) == len(value["stages"])


FIELDS = [
    "format",
    "space",
    "resolution",
    "stem",
    "stages",
    "head",
    "stage.width",
    "stage.depth",
    "stage.kernel",
    "stage.expand",
    "stage",
    "extra",
]


@given(archs(), st.sampled_from(FIELDS), json_values, st.data())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_corrupted_field_gives_one_line_error(arch, field, junk, data):
    d = arch.to_dict()
    if field == "extra":
        d["bogus"] = junk
        where = "arch: unknown field 'bogus'"
    elif field == "stage" or field.startswith("stage."):
        i = data.draw(st.integers(0, len(d["stages"]) - 1))
        if field == "stage":
            d["stages"][i] = junk
            where = f"arch.stages[{i}]"
        else:
            d["stages"][i][field.split(".")[1]] = junk
            where = f"arch.stages[{i}].{field.split('.')[1]}"
    else:
        d[field] = junk
        where = f"arch.{field}"
    sp = SPACES[arch.space]
    try:
        out = sp.arch_from_dict(d)
    except NastoolsError as exc:
        msg = str(exc)
        assert "\n" not in msg
        assert msg.startswith(where), (where, msg)  # the message names the field that is wrong
    else:
        # the junk happened to be a valid value
        assert out == sp.validate(out)


@given(archs(), st.sampled_from(["resolution", "stem", "head", "width", "kernel"]))
@settings(max_examples=100)
def test_out_of_space_values_name_allowed_values(arch, field):
    d = arch.to_dict()
    if field in ("width", "kernel"):
        d["stages"][0][field] = 999
    else:
        d[field] = 999
    with pytest.raises(NastoolsError) as exc:
        SPACES[arch.space].arch_from_dict(d)
    assert "got 999" in str(exc.value) and "expected one of" in str(exc.value)


@pytest.mark.parametrize(
    "content",
    [
        "",
        "{",
        "[]",
        '"arch"',
        '{"space": "fmnist"}',
        '{"format": "nastools.arch/9", "space": "fmnist"}',
        '{"space": "nope", "resolution": 28, "stem": 8, "stages": [], "head": 512}',
        json.dumps({**load_space("fmnist").sample(0).to_dict(), "resolution": 31}),
        json.dumps({**load_space("fmnist").sample(0).to_dict(), "stages": [{"width": 8}]}),
        "\xff\xfe",
    ],
)
def test_cli_bad_arch_is_one_line(tmp_path, content):
    path = tmp_path / "arch.json"
    path.write_bytes(content.encode("utf-8", "surrogateescape") if content != "\xff\xfe" else b"\xff\xfe")
    result = CliRunner().invoke(main, ["space", "cost", str(path)])
    assert result.exit_code == 1
    out = result.output.strip()
    assert out.startswith("Error: ") and "\n" not in out and "Traceback" not in out
    assert result.exception is None or isinstance(result.exception, SystemExit)


@given(json_values)
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_cli_never_tracebacks(tmp_path, value):
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(value))
    result = CliRunner().invoke(main, ["space", "cost", str(path)])
    assert isinstance(result.exception, (SystemExit, type(None)))
    assert result.exit_code in (0, 1)
    if result.exit_code == 1:
        assert result.output.strip().startswith("Error: ") and "\n" not in result.output.strip()
