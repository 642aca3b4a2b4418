"""Stream names users see: snake_case slugs of platform names, unique within a tap."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TypeVar

K = TypeVar("K")

_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_NON_WORD = re.compile(r"[^0-9a-z]+")
# Letters NFKD does not take apart into an ASCII base.
_LETTERS = str.maketrans({"ø": "o", "æ": "ae", "å": "a", "ß": "ss", "đ": "d", "ł": "l"})


def slug(text: str, fallback: str = "stream") -> str:
    """``"Price watch DE"`` -> ``price_watch_de``, ``"storeLocator"`` -> ``store_locator``,
    ``"Prosjekt Øst"`` -> ``prosjekt_ost``: lower-case ASCII words joined by ``_``."""
    text = _CAMEL.sub(r"\1_\2", text).lower().translate(_LETTERS)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return _NON_WORD.sub("_", text).strip("_") or fallback


def distinct_slugs(
    items: Sequence[tuple[K, str]], suffix: Callable[[K], str], fallback: str = "stream"
) -> dict[K, str]:
    """Key -> slug of its name; where two names share a slug, each gets ``_`` + its suffix."""
    base = {key: slug(name, fallback) for key, name in items}
    counts = Counter(base.values())
    return {
        key: f"{name}_{_NON_WORD.sub('_', suffix(key).lower())}" if counts[name] > 1 else name
        for key, name in base.items()
    }
