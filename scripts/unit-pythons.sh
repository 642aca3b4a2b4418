#!/usr/bin/env bash
# The unit tests (no Meltano, PostgreSQL or Redis) on each given Python version, each in
# its own environment .venv-py<XY> with the package and its dev dependencies:
#
#   scripts/unit-pythons.sh 3.10 3.13
#   scripts/unit-pythons.sh --build-only 3.10 3.13   (only build what is missing or stale)
#
# An interpreter is taken from $PYTHON<XY> (e.g. PYTHON310=/usr/bin/python3.10), else the
# newest pyenv install of that version, else python<X.Y> on PATH. A missing interpreter
# fails under CI=true and is skipped (with a note) elsewhere. The environment is rebuilt
# when pyproject.toml is newer than its stamp, with uv when there is one (.venv-meltano has
# it; seconds instead of a minute), else pip. The versions run side by side, each with its
# output kept apart and shown when it is done.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The fast tests: no Meltano, database or Redis; about half a minute each.
UNIT_TESTS=(
    tests/test_*_unit.py
    tests/test_parser_properties.py
    tests/test_record_path.py
    tests/test_ratelimit.py
    tests/test_redact.py
    tests/test_naming.py
    tests/test_new_platform.py
    tests/test_progress.py
    tests/test_runtime_counters.py
    tests/test_metric_tags.py
    tests/test_redivis_json_ready.py
    tests/test_dexi_streamed_results.py
    tests/test_dexi_encoded_rows.py
    tests/test_config.py
    tests/test_once.py
    tests/test_reinfer_sandbox.py
    tests/test_reinfer_lean_path.py
    tests/test_reinfer_as_sent.py
    tests/test_reinfer_predictions.py
)

find_python() {
    local version=$1 var="PYTHON${1/./}" candidate
    if [[ -n "${!var:-}" ]]; then
        echo "${!var}"
        return
    fi
    local root
    root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
    for candidate in $(ls -d "$root/versions/$version".* 2>/dev/null | sort -V -r); do
        if [[ -x "$candidate/bin/python" ]]; then
            echo "$candidate/bin/python"
            return
        fi
    done
    candidate=$(command -v "python$version" 2>/dev/null || true)
    if [[ -n "$candidate" ]] && "$candidate" --version >/dev/null 2>&1; then
        echo "$candidate"
    fi
}

BUILD_ONLY=false
if [[ "${1:-}" == "--build-only" ]]; then
    BUILD_ONLY=true
    shift
fi

UV=${UV:-$(command -v uv 2>/dev/null || echo .venv-meltano/bin/uv)}

build() {  # build VERSION PYTHON VENV: a fresh environment with the package and dev tools
    local version=$1 python=$2 venv=$3
    echo "building $venv (Python $version)"
    rm -rf "$venv"
    # pip's and setuptools' chatter goes to a log, shown only when the install fails.
    if ! {
        if [[ -x "$UV" ]]; then
            "$UV" venv -q --python "$python" "$venv" \
                && "$UV" pip install -q --python "$venv/bin/python" -e '.[dev]' -e ./sandbox -e ./warehouse
        else
            "$python" -m venv "$venv" \
                && "$venv/bin/python" -m pip install -q --upgrade pip \
                && "$venv/bin/python" -m pip install -q -e '.[dev]' -e ./sandbox -e ./warehouse
        fi
    } >"$venv.install.log" 2>&1; then
        cat "$venv.install.log" >&2
        echo "unit tests on Python $version: installing into $venv failed" >&2
        return 1
    fi
    rm -f "$venv.install.log"
    touch "$venv/.installed"
}

run_version() {  # run_version VERSION: build if needed, then the unit tests
    local version=$1 python venv
    python=$(find_python "$version")
    if [[ -z "$python" ]] \
        || [[ "$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" != "$version" ]]; then
        if [[ "${CI:-}" == "true" ]]; then
            echo "unit tests on Python $version: no interpreter found (set PYTHON${version/./})" >&2
            return 1
        fi
        echo "unit tests on Python $version: skipped, no interpreter found (set PYTHON${version/./})" >&2
        return 0
    fi
    venv=".venv-py${version/./}"
    if [[ ! -f "$venv/.installed" || pyproject.toml -nt "$venv/.installed" || sandbox/pyproject.toml -nt "$venv/.installed" \
        || warehouse/pyproject.toml -nt "$venv/.installed" ]]; then
        build "$version" "$python" "$venv" || return 1
    fi
    if [[ "$BUILD_ONLY" == "true" ]]; then
        return 0
    fi
    echo "unit tests on $("$venv/bin/python" --version)"
    # The editable install points at this tree; -p no:cacheprovider keeps runs apart.
    "$venv/bin/python" -m pytest -q -p no:cacheprovider "${UNIT_TESTS[@]}"
}

status=0
pids=()
logs=()
for version in "$@"; do
    log=$(mktemp)
    run_version "$version" >"$log" 2>&1 &
    pids+=($!)
    logs+=("$log")
done
for index in "${!pids[@]}"; do
    wait "${pids[$index]}" || status=1
    cat "${logs[$index]}"
    rm -f "${logs[$index]}"
done
exit $status
