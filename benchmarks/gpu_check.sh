#!/usr/bin/env bash
# Every GPU check of the torch backend in one short run (about 8 minutes on one GPU with 16
# cores, most of it compiling the compiled path's packages once). Run from the repository root on
# a machine with a CUDA device, torch and seqkit (with the peephole plugin) installed:
#     bash benchmarks/gpu_check.sh            # prints everything; also copies it to $OUT if set
#     DEVICE=cpu CELLS=gru bash benchmarks/gpu_check.sh  # a dry run on the CPU, one cell
# Stages, in order of what matters most (each under its own timeout, so that one slow stage
# cannot eat the others' time):
#   1. compile and agree, side by side (one process per check, the cores compile in parallel;
#      they share one store of packages): the compiled path agrees with NumPy for every
#      registered cell in float64 (1e-9) and float32 (the documented 1e-4); five new (T, B)
#      compile nothing; one-hot ids equal the dense product (fused, generic); and
#      bench_torch's packages are compiled into the store for stage 2
#   2. benchmarks/bench_torch.py: fused, compiled (and compiled replayed as one CUDA graph),
#      generic and the plain loop against cuDNN (floor: compiled <= 2x cuDNN at both sizes)
#   3. the CUDA tests (-m cuda): fused, generic and compiled paths agree with NumPy
#   4. benchmarks/bench_train.py: the demo's model, seqkit against plain PyTorch (needs the
#      `names` package for the surnames corpus)
set -uo pipefail
PY=${PYTHON:-python}
DEVICE=${DEVICE:-cuda}
LOG=${OUT:+$OUT/gpu_check.log}  # under $OUT as it is written: a run cut short still reports
LOG=${LOG:-$(mktemp)}
WORK=$(mktemp -d)
export SEQKIT_CACHE_DIR=${SEQKIT_CACHE_DIR:-$WORK/store}  # empty: every compile is measured
status=0
stage() {  # stage NAME SECONDS COMMAND...: run one stage, note its exit status, keep going
  local name=$1 limit=$2
  shift 2
  echo "=== $name (limit ${limit}s)" | tee -a "$LOG"
  local start=$SECONDS
  timeout "$limit" "$@" 2>&1 | grep -v '^DEBUG' | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  echo "=== $name: exit $rc after $((SECONDS - start))s" | tee -a "$LOG"
  [ "$rc" -eq 0 ] || status=1
}

side_by_side() {  # side_by_side SECONDS: the checks of stage 1 as parallel processes
  local limit=$1 pids=() names=() k=0 rc failed=0
  launch() {  # launch NAME COMMAND...
    names+=("$1")
    shift
    timeout "$limit" "$@" >"$WORK/job$k.log" 2>&1 &
    pids+=($!)
    k=$((k + 1))
  }
  # one compile thread each: the jobs already fill the cores
  export TORCHINDUCTOR_COMPILE_THREADS=1
  for size in 0 1; do
    launch "bench_torch packages, size $size" \
      $PY benchmarks/bench_torch.py --device "$DEVICE" --size $size --warm-up
  done
  launch "recompiles, one-hot" $PY benchmarks/gpu_agreement.py --device "$DEVICE" --recompiles --one-hot
  for cell in ${CELLS:-$($PY -c "import seqkit; print(*seqkit.list_cells())")}; do
    for dtype in float32 float64; do
      launch "$cell $dtype" $PY benchmarks/gpu_agreement.py --device "$DEVICE" --cell "$cell" --dtype $dtype
    done
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}"
    rc=$?
    if [ "$rc" -eq 0 ]; then
      grep -v '^DEBUG' "$WORK/job$i.log" | grep -v Warning | tail -n 3
    else
      failed=1
      [ "$rc" -eq 124 ] && echo "--- ${names[$i]}: TIMED OUT after ${limit}s" || echo "--- ${names[$i]}: exit $rc"
      tail -n 25 "$WORK/job$i.log"
    fi
  done
  return $failed
}

stage "device" 60 $PY -c "import os, torch; import seqkit_torch; d = torch.device('$DEVICE'); \
print('torch', torch.__version__, 'cuda', torch.version.cuda, os.cpu_count(), 'CPUs'); \
print(torch.cuda.get_device_name(d), 'cuDNN', torch.backends.cudnn.version()) if d.type == 'cuda' else None"
[ "$status" -eq 0 ] || { echo "gpu_check: no usable $DEVICE device, nothing else to check"; exit 1; }

echo "=== compile and agree, side by side (limit 120s each)" | tee -a "$LOG"
start=$SECONDS
side_by_side 120 2>&1 | tee -a "$LOG"
rc=${PIPESTATUS[0]}
echo "=== compile and agree: exit $rc after $((SECONDS - start))s" | tee -a "$LOG"
[ "$rc" -eq 0 ] || status=1
stage "bench_torch $DEVICE" 110 $PY benchmarks/bench_torch.py --device "$DEVICE" --repeat "${REPEAT:-20}"
if [ "$DEVICE" = cuda ]; then
  stage "cuda tests" 70 $PY -m pytest -q -p no:cacheprovider -m cuda -x \
    tests/test_torch_backend.py tests/test_torch_compiled.py
fi
stage "bench_train $DEVICE" 60 $PY benchmarks/bench_train.py --device "$DEVICE" --skip-numpy

if [ -n "${OUT:-}" ]; then (cd "$WORK" && tar czf "$OUT/side_by_side_logs.tgz" job*.log); fi
echo "gpu_check: $([ $status -eq 0 ] && echo 'every stage passed' || echo 'SOME STAGE FAILED')"
exit $status
