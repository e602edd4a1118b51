#!/usr/bin/env bash
# One-command install: a virtual environment in .venv with every pinned
# dependency, chainer 7.8.1 built from its sdist included.
#   bash setup.sh            # CPU
#   bash setup.sh --gpu 13   # also cupy-cuda13x (or --gpu 12 for cupy-cuda12x)
#   bash setup.sh --mpi      # also mpi4py and MPICH (ChainerMN, mpiexec)
#   bash setup.sh --onnx     # also onnx and onnxruntime (ONNX export/demo)
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
CUDA=""
MPI=""
ONNX=""
while [ $# -gt 0 ]; do
  case "$1" in
    --gpu) CUDA="$2"; shift 2 ;;
    --mpi) MPI=1; shift ;;
    --onnx) ONNX=1; shift ;;
    *) echo "setup.sh: unknown argument '$1' (expected --gpu 12|13, --mpi, --onnx)" >&2; exit 2 ;;
  esac
done

"$PYTHON" - <<'PY' || { echo "setup.sh: Python 3.11 or 3.12 is required ($PYTHON)" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info[:2] in ((3, 11), (3, 12)) else 1)
PY

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
# chainer's sdist needs setuptools (<82, for pkg_resources) and numpy present
# before it builds, and it must build without isolation.
"${PIP[@]}" install -r requirements/build.txt
"${PIP[@]}" install --no-build-isolation -r requirements/base.txt
if [ -n "$CUDA" ]; then
  "${PIP[@]}" install "cupy-cuda${CUDA}x==14.2.0"
fi
if [ -n "$MPI" ]; then
  "${PIP[@]}" install -r requirements/mpi.txt
fi
if [ -n "$ONNX" ]; then
  "${PIP[@]}" install -r requirements/onnx.txt
fi
"$VENV/bin/python" -c "from utils import compat; import chainer; print('chainer', chainer.__version__, 'ready in $VENV')"
