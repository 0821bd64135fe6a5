"""The one exception type for user errors.

Anything a user can get wrong (a bad file, an unknown name, a value out of range) raises
:class:`NastoolsError` with a one-line message that names what failed, the value given,
what was expected and, where there is one, the fix. The CLI prints it as one line; bugs
keep their tracebacks.
"""

from __future__ import annotations


class NastoolsError(Exception):
    """A user error with a one-line, actionable message."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def brief(exc: BaseException | str, limit: int = 200) -> str:
    """The first line of an exception's message (its type name if empty), cut at a word
    boundary to about ``limit`` characters: a library's error inside a one-line message."""
    text = str(exc).strip()
    line = text.splitlines()[0].strip() if text else type(exc).__name__
    if len(line) <= limit:
        return line
    cut = line[:limit].rsplit(" ", 1)[0]
    return (cut if len(cut) > limit // 2 else line[:limit]) + " ..."


def require(module: str, extra: str | None = None, what: str | None = None):
    """Import an optional module lazily, or raise a one-line install hint.

    ``extra`` names the nastools extra that provides it (``pip install 'nastools[trt]'``).
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the machine
        hint = f"pip install 'nastools[{extra}]'" if extra else f"pip install {module.split('.')[0]}"
        raise NastoolsError(
            f"{what or module} needs the Python package '{module}', which is not importable here ({exc}); install it with: {hint}"
        ) from None
