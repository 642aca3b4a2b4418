"""Stream-name slugs shared by every platform."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from tap_dataplatforms.core.naming import NamesById, distinct_slugs, slug
from tap_dataplatforms.dexi.columns import run_slugs


def test_slug_forms() -> None:
    assert slug("Price watch DE") == "price_watch_de"
    assert slug("storeLocator") == "store_locator"
    assert slug("Prosjekt Øst") == "prosjekt_ost"
    assert slug("Jobs / listings (EU)") == "jobs_listings_eu"
    assert slug("%%", "table") == "table"


def test_only_colliding_slugs_get_a_suffix() -> None:
    names = distinct_slugs(
        [("id-1aaaaaaaaa", "Daily prices"), ("id-2bbbbbbbbb", "daily_prices"), ("x", "Other")],
        suffix=lambda key: key[:8],
    )
    assert names == {
        "id-1aaaaaaaaa": "daily_prices_id_1aaaa",
        "id-2bbbbbbbbb": "daily_prices_id_2bbbb",
        "x": "other",
    }


def test_bare_keeps_one_of_the_sharing_names_unsuffixed() -> None:
    names = distinct_slugs(
        [("new-1234567", "Store"), ("old-7654321", "store"), ("x", "Other")],
        suffix=lambda key: key[:8],
        bare=lambda sharing: sharing[-1],
    )
    assert names == {"new-1234567": "store_new_1234", "old-7654321": "store", "x": "other"}


def _run_slugs_as_written_before(
    runs: list[tuple[str, str]], overrides: dict[str, str]
) -> dict[str, str]:
    """Dexi's results-stream rule as it was written before it used ``distinct_slugs``:
    the names users' tables carry, which must not change."""
    base = {run_id: slug(name, "run") for run_id, name in runs}
    keeper: dict[str, str] = {}
    for run_id, _ in runs:
        if run_id not in overrides:
            keeper[base[run_id]] = run_id
    names = {}
    for run_id, _ in runs:
        if run_id in overrides:
            names[run_id] = slug(overrides[run_id], "run")
        elif keeper[base[run_id]] == run_id:
            names[run_id] = base[run_id]
        else:
            names[run_id] = f"{base[run_id]}_{re.sub('[^0-9a-z]+', '_', run_id[:8].lower())}"
    return names


_NAMES = st.sampled_from(["Store", "store", "Price watch", "price_watch", "!!!", "", "Øst", "ost"])


@given(
    st.lists(st.tuples(st.text("abcDEF0123-_", min_size=1, max_size=12), _NAMES), max_size=8),
    st.data(),
)
def test_dexi_run_slugs_are_the_names_they_always_were(
    runs: list[tuple[str, str]], data: st.DataObject
) -> None:
    runs = list(dict(runs).items())  # run ids are unique
    pinned = data.draw(st.sets(st.sampled_from([r for r, _ in runs]))) if runs else set()
    overrides = {run_id: f"Pinned {run_id}" for run_id in pinned}
    assert run_slugs(runs, overrides) == _run_slugs_as_written_before(runs, overrides)


def test_names_by_id_look_up_the_listed_name_of_the_context_parent() -> None:
    names: NamesById[str] = NamesById("workspace_id")
    names.learn(7, "Sales")
    assert names.of({"workspace_id": "7"}) == "Sales"
    assert names.of({"workspace_id": 8}) is None
    assert names.of({"other": 7}) is None
    assert names.of(None) is None
