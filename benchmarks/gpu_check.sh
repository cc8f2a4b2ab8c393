#!/usr/bin/env bash
# Every GPU check of the torch backend in one short run (about 6-8 minutes on one GPU, most of it
# Triton compiling the compiled path's kernels once). Run from the repository root on a machine
# with a CUDA device and torch installed:
#     bash benchmarks/gpu_check.sh            # prints everything; also copies it to $OUT if set
# Stages (each under its own timeout, so one slow stage cannot eat the others' time):
#   1. the CUDA tests (-m cuda): fused and generic paths agree with NumPy in float64 and float32
#   2. the compiled path on cuda: every registered cell (and the peephole plugin when installed)
#      agrees with NumPy in float64 (1e-9) and float32 (the documented tolerance), and five new
#      (T, B) reuse the compiled graphs; one-hot ids equal the dense product (fused, generic)
#   3. benchmarks/bench_torch.py --device cuda: fused, compiled, generic and the plain loop
#      against cuDNN (floor: compiled <= 2x cuDNN at both sizes)
#   4. benchmarks/bench_train.py --device cuda: the demo's model, seqkit against plain PyTorch
set -uo pipefail
PY=${PYTHON:-python}
LOG=$(mktemp)
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

stage "device" 60 $PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; \
print(torch.__version__, torch.cuda.get_device_name(0), 'cuDNN', torch.backends.cudnn.version())"
[ "$status" -eq 0 ] || { echo "gpu_check: no usable CUDA device, nothing else to check"; exit 1; }

stage "cuda tests" 150 $PY -m pytest -q -p no:cacheprovider -m cuda \
  tests/test_torch_backend.py tests/test_torch_compiled.py

stage "compiled path on cuda" 240 $PY - <<'PY'
import time

import seqkit
from seqkit.testing import check_backends_agree, make_batch
from seqkit_torch import TorchBackend

try:
    import seqkit_peephole
    if "lstm_peephole" not in seqkit.list_cells():
        seqkit.register_plugin(seqkit_peephole, name="peephole-gpu-check")
except ImportError:
    print("seqkit_peephole not installed: its cell is not checked")
for dtype, tol in (("float64", 1e-9), ("float32", 1e-4)):
    be = TorchBackend(dtype=dtype, device="cuda", path="compiled")
    for cell in seqkit.list_cells():
        start = time.perf_counter()
        check_backends_agree(cell, backends=[be], dtype=dtype, num_layers=(1, 2), rtol=tol, atol=tol)
        layer = seqkit.Recurrent(cell, 3, 4)
        stats = be.compile_stats(layer)
        assert be.layer_path(layer) == "compiled", (cell, dtype, stats.error)
        print(f"{dtype} {cell}: agrees (rtol=atol={tol}); {stats.graphs} graphs, "
              f"{stats.seconds:.1f} s compiling; {time.perf_counter() - start:.1f} s in all")
# a new batch size or length must not compile again
be = TorchBackend(dtype="float32", device="cuda", path="compiled")
layer = seqkit.Recurrent("gru_simple", 3, 4, bidirectional=True)
graphs = None
for T, B in [(5, 3), (2, 4), (7, 2), (3, 9), (11, 5), (1, 6)]:
    data = make_batch(layer, T, B, T + B, with_lengths=True)
    out, _, cache = be.recurrent_forward(layer, layer.init_params(0), data.x, data.initial_state,
                                         data.lengths)
    be.recurrent_backward(layer, cache, data.d_out, data.d_final)
    graphs = graphs or be.compile_stats(layer).graphs
print(f"recompiles over 5 new (T, B): {be.compile_stats(layer).graphs - graphs}")
# one-hot ids (seqkit.OneHot's output) on cuda equal the dense one-hot product, gradients too:
# the fused kernel's gathered route (V > D*G*H) and the generic path's gather and scatter-add
import numpy as np
import torch
from seqkit.layers import OneHot
for path in ("fused", "generic"):
    be = TorchBackend(dtype="float64", device="cuda", path=path)
    layer = seqkit.Recurrent("lstm", 40, 4, num_layers=2, bidirectional=True)
    params = be.init_params(layer, 0)
    x, _ = OneHot(40).forward(be.ops, None, np.random.default_rng(0).integers(0, 40, (6, 3)))
    d_out = torch.randn(6, 3, 8, dtype=torch.float64, device="cuda")
    got = []
    for inp in (x, x.dense()):
        out, _, cache = be.recurrent_forward(layer, params, inp, lengths=np.array([6, 2, 4]))
        got.append((out, be.recurrent_backward(layer, cache, d_out)["weight_ih_l0"]))
    for a, b in zip(*got):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-13), path
    print(f"one-hot ids on cuda, path {path}: equal to the dense product, d weight_ih too")
PY

stage "bench_torch cuda" 180 $PY benchmarks/bench_torch.py --device cuda --repeat 10
stage "bench_train cuda" 120 $PY benchmarks/bench_train.py --device cuda --skip-numpy

if [ -n "${OUT:-}" ]; then cp "$LOG" "$OUT/gpu_check.log"; fi
echo "gpu_check: $([ $status -eq 0 ] && echo 'every stage passed' || echo 'SOME STAGE FAILED')"
exit $status
