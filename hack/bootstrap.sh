# Sourced by hack/taskmill and hack/test: make sure .venv holds Taskmill and
# its dev tools, installing them on first use and again when pyproject.toml
# changes. Needs only python3 (>= 3.11) and network access to PyPI.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TASKMILL_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

stamp="$VENV/.taskmill-installed"
want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/python" ]] || [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    echo "taskmill: installing into $VENV (first run or pyproject.toml changed)" >&2
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
    "$VENV/bin/python" -m pip install --quiet -e "$ROOT[dev]" >&2
    echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
