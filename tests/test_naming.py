"""Stream-name slugs shared by every platform."""

from __future__ import annotations

from tap_dataplatforms.core.naming import distinct_slugs, slug


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
