#!/usr/bin/env bash
# The device check in one command, from the repository root of a fresh machine:
#
#     bash benchmarks/device_check.sh OUT [--tiny]
#
# Installs (timed, and recorded), then runs benchmarks/device_check.py, which writes
# OUT/device-check.json and OUT/device-check.txt after every stage. At most 8 minutes in all,
# installing included (--deadline SECONDS, after --tiny, says otherwise).
#
# Which Python runs it:
# - $BJ_PYTHON, if set;
# - where nvidia-smi answers: the project's environment with JAX's CUDA build,
#   `uv sync --locked --extra gpu` (uv.lock), if uv is there and PyPI can be reached; else the
#   machine's own python3, if it already has JAX with a GPU and the project's dependencies;
# - elsewhere: the project's .venv (`uv sync --locked` first if there is none).
set -u
started=$(date +%s.%N)
out=${1:?usage: bash benchmarks/device_check.sh OUT [--tiny] [--deadline SECONDS]}
shift
cd "$(dirname "$0")/.." || exit 1
mkdir -p "$out" || exit 1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

uv_cmd() {  # the uv to use, if any
    if command -v uv >/dev/null 2>&1; then echo uv
    elif python3 -m uv --version >/dev/null 2>&1; then echo "python3 -m uv"
    fi
}
pypi_reachable() {
    python3 -c "import socket; socket.create_connection(('pypi.org', 443), 3).close()" >/dev/null 2>&1
}
has_deps() {  # the project's imports (and the tests'), and a GPU if $2 says so
    "$1" -c "
import jax, optax, orbax.checkpoint, matplotlib, tqdm, numpy, pytest, chex, hypothesis, xdist
assert '$2' != 'gpu' or jax.default_backend() == 'gpu', jax.devices()
" >>"$work/install.log" 2>&1
}

python="" way="" ok=false backend=cpu
: >"$work/install.log"
command -v nvidia-smi >/dev/null 2>&1 && backend=gpu && nvidia-smi >>"$work/install.log" 2>&1
uv=$(uv_cmd)
if [ -n "${BJ_PYTHON:-}" ]; then
    python=$BJ_PYTHON way="BJ_PYTHON ($BJ_PYTHON)"
elif [ $backend = gpu ]; then
    if [ -n "$uv" ] && pypi_reachable \
        && UV_HTTP_TIMEOUT=30 timeout 240 $uv sync --locked --extra gpu >>"$work/install.log" 2>&1; then
        python=.venv/bin/python way="uv sync --locked --extra gpu"
    else
        python=python3 way="the machine's python3 (uv ${uv:-absent}; PyPI $(pypi_reachable && echo reachable || echo unreachable))"
        export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    fi
else
    if [ ! -x .venv/bin/python ] && [ -n "$uv" ]; then
        timeout 240 $uv sync --locked >>"$work/install.log" 2>&1
    fi
    python=.venv/bin/python way="the project's .venv (no GPU)"
fi
has_deps "$python" $backend && ok=true
ended=$(date +%s.%N)

python3 - "$work/install.json" "$way" "$ok" "$started" "$ended" "$work/install.log" "$python" <<'EOF'
import json, sys
path, way, ok, started, ended, log, python = sys.argv[1:]
tail = open(log, errors="replace").read()[-2000:]
json.dump({"way": way, "ok": ok == "true", "seconds": float(ended) - float(started), "python": python,
           "log_tail": tail}, open(path, "w"))
EOF
if [ "$ok" != true ]; then
    echo "device check: the environment is not usable ($way); install log:" >&2
    tail -20 "$work/install.log" >&2
fi
# Run even when the check above failed: the JSON then records the install and each stage's error
# (the orchestrator needs no package; python3 runs it if the chosen Python is missing).
command -v "${python%% *}" >/dev/null 2>&1 || python=python3
$python benchmarks/device_check.py "$out" --started "$started" --install-json "$work/install.json" "$@"
