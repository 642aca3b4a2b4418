"""Stream names users see: snake_case slugs of platform names, unique within a tap."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

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
    items: Sequence[tuple[K, str]],
    suffix: Callable[[K], str],
    fallback: str = "stream",
    bare: Callable[[list[K]], K] | None = None,
) -> dict[K, str]:
    """Key -> slug of its name; where two names share a slug, each gets ``_`` + its suffix,
    except the one ``bare`` picks among them (in the order of ``items``), if given."""
    base = {key: slug(name, fallback) for key, name in items}
    sharing: dict[str, list[K]] = {}
    for key, name in base.items():
        sharing.setdefault(name, []).append(key)
    kept = {bare(keys) for keys in sharing.values()} if bare is not None else set()
    return {
        key: name
        if len(sharing[name]) == 1 or key in kept
        else f"{name}_{_NON_WORD.sub('_', suffix(key).lower())}"
        for key, name in base.items()
    }


class NamesById(Generic[V]):
    """What a parent's listing said of each parent (its name), by the parent's id.

    A child's partition is its parent's id alone: its bookmark survives a rename (and the
    SDK keeps a bookmark only where the context is the whole partition). What the child's
    URL, header or label needs by name is the one the listing gave for that id this sync.
    """

    def __init__(self, id_field: str) -> None:
        #: The context key that holds the parent's id.
        self.id_field = id_field
        self._by_id: dict[str, V] = {}

    def learn(self, parent_id: Any, value: V) -> None:
        self._by_id[str(parent_id)] = value

    def of(self, context: Mapping[str, Any] | None) -> V | None:
        """The value listed for the context's parent; ``None`` when it has none."""
        if not context or self.id_field not in context:
            return None
        return self._by_id.get(str(context[self.id_field]))
