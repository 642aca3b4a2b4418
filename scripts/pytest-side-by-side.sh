#!/usr/bin/env bash
# The tests not marked `timing` (tests/conftest.py), in two pytest processes side by side,
# one a core: those marked `meltano`, which share the project's .meltano/ and so run one
# after another, and all the others. Each has its own temporary directory; the Meltano
# ones report as they go, the others' report follows. Exits non-zero if either fails.
# Arguments go to both.
#
# With UNIT_PYTHONS set (e.g. UNIT_PYTHONS="3.10 3.13", as `make test` does), the unit
# tests on those Pythons (scripts/unit-pythons.sh) start on the core the first of the two
# processes leaves idle, and their report comes last.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTEST=${PYTEST:-.venv/bin/pytest}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$PYTEST" -m "not timing and not meltano" -p no:cacheprovider --basetemp="$work/others" "$@" \
    >"$work/others.log" 2>&1 &
others=$!
"$PYTEST" -m "meltano and not timing" --basetemp="$work/meltano" "$@" &
meltano=$!
unit_status=0
if [[ -n "${UNIT_PYTHONS:-}" ]]; then
    wait -n "$others" "$meltano"
    # shellcheck disable=SC2086  # a list of versions
    scripts/unit-pythons.sh $UNIT_PYTHONS >"$work/unit.log" 2>&1 &
    unit=$!
fi
wait "$meltano"
meltano_status=$?
wait "$others"
others_status=$?
echo
echo "==================== the other tests (run beside the Meltano ones) ===================="
cat "$work/others.log"
if [[ -n "${UNIT_PYTHONS:-}" ]]; then
    wait "$unit"
    unit_status=$?
    echo
    echo "==================== the unit tests on Python $UNIT_PYTHONS ===================="
    cat "$work/unit.log"
fi
if ((meltano_status != 0 || others_status != 0 || unit_status != 0)); then
    echo "pytest side by side: Meltano tests exit $meltano_status, the others exit $others_status," \
        "the unit tests exit $unit_status" >&2
    exit 1
fi
