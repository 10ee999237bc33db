#!/usr/bin/env bash
# Issue 12's checks on the offline GPU machine (../shared/GPU.md), prepared here so that a
# session's few device minutes go to measuring, in one device call if it fits.
#
#   Here, with the package registry, once:    bash scripts/gpu_check.sh prepare
#   There (the run tool, carry [".device"]):  bash scripts/gpu_check.sh all         (both below)
#                                             bash scripts/gpu_check.sh benchmark   (est. 5 min)
#                                             bash scripts/gpu_check.sh tests       (the suite)
#
# The device steps write under $OUT: imports.txt (every declared dependency: version or
# missing), then views.txt (scripts/benchmark_views.py on the GPU, benchmark_view_loader.py in
# 15 loader processes, benchmark_step.py in fp32 and bf16), benchmark.log, gpu.json
# (docs/benchmarks/gpu.json), the semclust runs' logs (run.log, views_*.log) and the first
# run's manifest.json; or tests.log (pytest -v, one line per test as it ends, so a run cut
# short still says how far it got). Each step stops itself before the tool's 600 s limit.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/gpu_check}
shared=${SHARED:-../shared}

# Declared dependencies the GPU machine may lack and small enough to carry (the carry holds
# 64 MiB with the tree; ../shared/device/prepare.sh fills about 38 MB of it). opencv and
# numba's llvmlite are about 60 MB each and do not fit: imports.txt says if they are missing,
# the tests that need them skip, and a run's report leaves its heatmaps out.
EXTRAS="open_clip_torch:open_clip ftfy:ftfy wcwidth:wcwidth regex:regex ImageHash:imagehash
PyWavelets:pywt datasketch:datasketch networkx:networkx"
REPORTED="torch torchvision pytorch_lightning hydra omegaconf faiss timm pytorch_grad_cam
tensorboard sklearn scipy numpy safetensors matplotlib umap numba skimage cv2 tqdm xdist"

install_missing_extras() {
  for pair in $EXTRAS; do
    dist=${pair%%:*} module=${pair##*:}
    python3 -c "import $module" 2>/dev/null && continue
    wheel=$(ls .device/extra | grep -i "^${dist//-/_}-" | head -1)
    [ -n "$wheel" ] && python3 -m pip install -q --no-index --no-deps --no-compile \
      --target /tmp/site ".device/extra/$wheel" && echo "installed $wheel"
  done
}

report_imports() {
  for pair in $EXTRAS $REPORTED; do
    module=${pair##*:}
    python3 -c "import $module as m; print('$module', getattr(m, '__version__', '?'))" \
      2>/dev/null || echo "$module MISSING"
  done
  python3 -c "import torch; print('cuda', torch.version.cuda, torch.cuda.get_device_name())"
}

run_benchmark() {  # $1: seconds it may take
  local work=/tmp/semclust_gpu_benchmark status started=$SECONDS
  # The batched views alone on the GPU (SimCLR's batch, SCAN's): done and queued ms per view;
  # then made by 15 loader processes on the CPU, pairs a second; then SimCLR's step alone.
  {
    for batch in 512 128; do
      timeout 45 python3 scripts/benchmark_views.py --device cuda --batch "$batch" --batched-only
    done
    timeout 60 python3 scripts/benchmark_view_loader.py --workers 15 --batch 512 --view simclr
    timeout 60 python3 scripts/benchmark_view_loader.py --workers 15 --batch 128 --view scan
    # The model's own ceiling: SimCLR's step with the batch already on the GPU.
    timeout 60 python3 scripts/benchmark_step.py --device cuda --batch 512 2>/dev/null
  } > "$out/views.txt" 2>&1
  cat "$out/views.txt"
  timeout "$(($1 - (SECONDS - started)))" python3 scripts/benchmark_gpu.py \
    --data /tmp/data/cifar10_jpg_train \
    --reference .device/scan_reference --workers 15 --work "$work" --out "$out/gpu.json" \
    > "$out/benchmark.log" 2>&1
  status=$?
  cp "$work"/*.log "$work/run/manifest.json" "$out/" 2>/dev/null
  tail -20 "$out/benchmark.log"
  return $status
}

run_tests() {  # $1: seconds it may take
  local dist=worksteal status
  # pyproject's --dist worksteal needs pytest-xdist >= 3.2; an older one there takes load.
  python3 -c "import xdist.scheduler.worksteal" 2>/dev/null || dist=load
  # Without CI set, tests marked needs(cv2 / umap / pytorch_grad_cam) skip there, saying why.
  # 12 workers, not -n auto's 8 (tests/conftest.py caps it for memory, ~2 GB a worker): that
  # machine has 16 cores and 128 GiB; the cores left serve the processes tests start.
  env -u CI timeout "$1" python3 -m pytest -v -n 12 --dist "$dist" -p no:cacheprovider \
    > "$out/tests.log" 2>&1
  status=$?
  grep -E "FAILED|ERROR" "$out/tests.log" | head -40
  tail -3 "$out/tests.log"
  return $status
}

case "${1:-}" in
prepare)
  "$shared/device/prepare.sh"
  mkdir -p .device/extra
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .device/extra $(for pair in $EXTRAS; do
      echo "${pair%%:*}"; done)
  du -sh .device
  ;;
benchmark | tests | all)
  mkdir -p "$out"
  # shellcheck disable=SC1091
  source .device/remote.sh
  install_missing_extras
  report_imports > "$out/imports.txt" 2>&1
  grep MISSING "$out/imports.txt"
  case "$1" in
  benchmark) run_benchmark 540 ;;
  tests) run_tests 540 ;;
  all)
    # One call for both: the machine goes back after 30 s idle, and a second start costs
    # minutes of the session's 15. The suite gets what the benchmark left of 570 s.
    started=$SECONDS
    run_benchmark 540
    benchmark_status=$?
    left=$((570 - (SECONDS - started)))
    if [ "$left" -ge 60 ]; then
      run_tests "$left"
    else
      echo "no time left for the suite in this call: run 'tests' next" | tee "$out/tests.log"
      false
    fi
    tests_status=$?
    [ "$benchmark_status" -eq 0 ] && [ "$tests_status" -eq 0 ]
    ;;
  esac
  exit $?
  ;;
*)
  echo "usage: bash scripts/gpu_check.sh prepare|benchmark|tests|all" >&2
  exit 2
  ;;
esac
