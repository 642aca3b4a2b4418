#!/usr/bin/env bash
# The tests not marked `timing` (tests/conftest.py), in two pytest processes side by side,
# one a core: those marked `meltano`, which share the project's .meltano/ and so run one
# after another, and all the others. Each has its own temporary directory; the second
# one's report follows the first's. Exits non-zero if either fails. Arguments go to both.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTEST=${PYTEST:-.venv/bin/pytest}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$PYTEST" -m "not timing and not meltano" -p no:cacheprovider --basetemp="$work/others" "$@" \
    >"$work/others.log" 2>&1 &
others=$!
"$PYTEST" -m "meltano and not timing" --basetemp="$work/meltano" "$@"
meltano_status=$?
wait "$others"
others_status=$?
echo
echo "==================== the other tests (run beside the Meltano ones) ===================="
cat "$work/others.log"
if ((meltano_status != 0 || others_status != 0)); then
    echo "pytest side by side: Meltano tests exit $meltano_status, the others exit $others_status" >&2
    exit 1
fi
