#!/usr/bin/env bash
# The GPU check, as one short script for a machine with an NVIDIA GPU (under 6 minutes):
# the GPU tests (CuPy vs NumPy: loss, gradients, AdamW steps, float64 finite differences,
# dropout, checkpoints across devices), the CPU backend tests, then the speed benchmark
# (Mnemos on CuPy vs PyTorch eager CUDA at the baby and nanoGPT shapes).
#
#   pip install 'mnemos[gpu]'        # CuPy for CUDA 12, once; skip it where `import cupy` already
#                                    # works (any cupy-cudaXXx; offline GPU images often have one)
#   bash benchmarks/gpu_check.sh     # from anywhere; writes its log to $OUT or ./gpu_check.log
#
# The Python is $PYTHON, else python3 (some images have no plain `python`).
set -uo pipefail
cd "$(dirname "$0")/.."
log="${OUT:-.}/gpu_check.log"
exec > >(tee "$log") 2>&1
py="${PYTHON:-python3}"

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi: not found"
if ! "$py" -c "import cupy" 2>/dev/null; then
    echo "CuPy is not installed: pip install 'mnemos[gpu]' (or cupy-cuda12x), then run this again"
    exit 2
fi
"$py" -c "import cupy, numpy; print('cupy', cupy.__version__, 'numpy', numpy.__version__, 'cuda runtime', cupy.cuda.runtime.runtimeGetVersion())"

status=0
timeout 240 "$py" -m pytest -q -rs tests/test_gpu.py tests/test_backend.py || status=$?
timeout 240 "$py" benchmarks/gpu_speed.py --rounds 3 --steps 50 || status=$?
echo "gpu_check: exit status $status (log: $log)"
exit $status
