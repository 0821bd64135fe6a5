"""Published supernets as nastools runs, read without running code from their files.

- :mod:`nastools.importers.safe_pickle`: ``torch.save`` files (zip or legacy format) read
  with a restricted unpickler; foreign objects become inert placeholders;
- :mod:`nastools.importers.attentivenas`: AttentiveNAS and AlphaNet supernets onto the
  ``attentivenas`` space (:func:`~nastools.importers.attentivenas.import_attentivenas`).

Importing this package imports neither torch nor the reference code.
"""

from __future__ import annotations

IMPORTERS = ("attentivenas",)

__all__ = ["IMPORTERS"]
