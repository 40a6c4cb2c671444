#!/usr/bin/env bash
# One entry point for people and CI. Creates .venv on first use (Python 3.10 via pyenv),
# installs the exact stack from constraints.txt, then runs:
#   ./run.sh demo [args]   the main job end-to-end on the embedded synthetic data
#   ./run.sh test [args]   the test suite (pytest)
#   ./run.sh <cmd> [args]  any command inside the environment, e.g. ./run.sh limaml --help
set -euo pipefail
cd "$(dirname "$0")"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}" TF_USE_LEGACY_KERAS=1 PYTHONWARNINGS="${PYTHONWARNINGS:-ignore}"

python_bin() {
  if command -v pyenv >/dev/null 2>&1 && pyenv prefix 3.10.13 >/dev/null 2>&1; then
    echo "$(pyenv prefix 3.10.13)/bin/python"
  elif command -v python3.10 >/dev/null 2>&1; then
    command -v python3.10
  else
    echo "error: Python 3.10 is required (pyenv install 3.10.13)" >&2; exit 2
  fi
}

# Reinstall when the pins, setup.py or the set of packages (editable install) change.
stamp=".venv/.installed-$( (cat constraints.txt requirements.in setup.py; ls -d ./*/__init__.py) | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "[run.sh] setting up .venv (first run takes about a minute)" >&2
  [ -x .venv/bin/python ] || "$(python_bin)" -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check uv==0.13.9
  # --compile-bytecode: uv writes no .pyc by default, and with PYTHONDONTWRITEBYTECODE set (as on
  # our machines) every process would compile TensorFlow from source: `import tensorflow` 11 s -> 4.6 s.
  .venv/bin/uv pip install --quiet --compile-bytecode --python .venv/bin/python -r requirements.in -c constraints.txt
  .venv/bin/uv pip install --quiet --python .venv/bin/python --no-deps -e .
  rm -f .venv/.installed-*; touch "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"

cmd="${1:-demo}"; shift || true
case "$cmd" in
  demo) exec limaml demo "$@" ;;
  test) exec python -m pytest "$@" ;;
  *) exec "$cmd" "$@" ;;
esac
