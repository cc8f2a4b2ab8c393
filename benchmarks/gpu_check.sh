#!/usr/bin/env bash
# GPU checks for the torch backend, one short run: the agreement and CUDA tests on cuda, then the
# benchmark with cuDNN. Run from the repository root on a machine with a CUDA device:
#     bash benchmarks/gpu_check.sh
set -euo pipefail
PY=${PYTHON:-python}
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name(0), 'cuDNN', torch.backends.cudnn.version())"
# CUDA tests: seqkit.testing's agreement (float64 and float32, fused and generic) on the GPU
$PY -m pytest tests/test_torch_backend.py -q -m cuda -p no:cacheprovider
# the same agreement with the default device 'auto' (= cuda here), every cell, L = 1..3
SEQKIT_DEVICE=auto $PY - <<'PY'
import seqkit
from seqkit.testing import check_backends_agree
from seqkit_torch import TorchBackend
for cell in seqkit.list_cells():
    for dtype in ("float64", "float32"):
        check_backends_agree(cell, backends=[TorchBackend(dtype=dtype, device="cuda")], dtype=dtype)
print("cuda agreement ok:", ", ".join(seqkit.list_cells()))
PY
$PY benchmarks/bench_torch.py --device cuda --repeat 10
