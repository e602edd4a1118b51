#!/usr/bin/env bash
# Every GPU check of the project in one call on a GPU machine: the tests
# marked gpu, then each benchmark side by side with torchvision, writing
# logs, JSON and ratio tables to $OUT (or ./gpu_results).
#
# The GPU machines have Python 3.12, numpy, cupy-cuda13x, torch and
# torchvision but no chainer, no pycocotools and no package registry.
# Prepare their wheels here, in an ignored .whl/ folder that travels with
# the call (device tool: carry [".whl"]):
#
#   echo /.whl/ >> .git/info/exclude
#   .venv/bin/pip wheel --no-deps --no-build-isolation -w .whl chainer==7.8.1
#   python3 -m pip download --no-deps --only-binary=:all: \
#       --python-version 3.12 --implementation cp \
#       --platform manylinux_2_17_x86_64 -d .whl pycocotools==2.0.10
#
# then run: bash bench/gpu_session.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu_results}
mkdir -p "$out"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile \
        --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1
py=python3
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"

$py -m pytest -q -m gpu 2>&1 | tee "$out/gpu_tests.log"

$py bench/roi_align.py --json "$out/roi_ours.json" \
    --save-cases /tmp/roi_cases.npz
$py bench/torchvision_ref.py roi_align --cases /tmp/roi_cases.npz \
    --json "$out/roi_tv.json"
$py bench/inference.py --size 800 1333 --json "$out/inf_ours.json"
$py bench/torchvision_ref.py inference --size 800 1333 \
    --json "$out/inf_tv.json"
$py bench/train.py --gpu 0 --json "$out/train_ours.json"
$py bench/torchvision_ref.py train --json "$out/train_tv.json"

{
    $py bench/compare.py roi_align "$out/roi_ours.json" "$out/roi_tv.json"
    $py bench/compare.py inference "$out/inf_ours.json" "$out/inf_tv.json"
    $py bench/compare.py train "$out/train_ours.json" "$out/train_tv.json"
} | tee "$out/ratios.txt"
