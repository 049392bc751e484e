"""tests/test_gpu.py again, on any machine: ``cupy`` is ``tests/cuda_sim.py``, which runs the
CUDA kernels of mnemos.cuda_kernels on the CPU (compiled with the host C++ compiler, a
warp's lanes exchanging values at each shuffle as on a GPU). So the whole device code
path (every fused kernel, its launch and its arguments, the layers' GPU branches, AdamW
and dropout on the device, checkpoints across devices) is checked against NumPy
without a GPU. Speed and the device's own float rounding still need tests/test_gpu.py
on a GPU. Plus checks of the simulator itself."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import cuda_sim
import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("simulated_gpu")  # tests/conftest.py; skips without g++
SIM = {"cupy": cuda_sim.cupy_module(), "cupyx": cuda_sim.cupyx_module()}


def _load_gpu_tests():
    """tests/test_gpu.py as a module of its own, imported while the simulator is ``cupy``."""
    saved = {name: sys.modules.get(name) for name in SIM}
    sys.modules.update(SIM)
    try:
        spec = importlib.util.spec_from_file_location("test_gpu_on_sim", Path(__file__).with_name("test_gpu.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


_gpu_tests = _load_gpu_tests()
globals().update({name: fn for name, fn in vars(_gpu_tests).items() if name.startswith("test_")})



# ---- the simulator itself: it must fail where a GPU would go wrong


def test_a_warp_shuffle_exchanges_lanes_values(simulated_gpu):
    mod = simulated_gpu.RawModule(code=r"""
        template<typename T> __global__ void swap_halves(const T* x, T* y) {
            const int i = threadIdx.x;
            y[i] = __shfl_xor_sync(0xffffffffu, x[i], 16) + (T)(1000 * blockIdx.x);
        }""", name_expressions=["swap_halves<float>"])
    x = np.arange(32, dtype=np.float32)
    y = np.empty_like(x)
    mod.get_function("swap_halves<float>")((1,), (32,), (x, y))
    np.testing.assert_array_equal(y, np.r_[x[16:], x[:16]])


def test_a_divergent_shuffle_aborts_instead_of_reading_garbage(tmp_path):
    script = tmp_path / "diverge.py"
    script.write_text(f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
import numpy as np, cuda_sim
mod = cuda_sim.RawModule(code=r'''
    template<typename T> __global__ void bad(T* x) {{
        if (threadIdx.x >= 8) return;  // lanes 8..31 leave: lane 0's partner 16 never shuffles
        x[threadIdx.x] = __shfl_xor_sync(0xffffffffu, x[threadIdx.x], 16);
    }}''', name_expressions=["bad<float>"])
mod.get_function("bad<float>")((1,), (32,), (np.zeros(32, np.float32),))
""")
    run = subprocess.run([sys.executable, str(script)], check=False, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "never reached this shuffle" in run.stderr


def test_launch_arguments_are_checked_as_a_gpu_would_need_them(simulated_gpu):
    from mnemos.cuda_kernels import CudaKernels

    k = CudaKernels(simulated_gpu)
    x = np.ones((4, 8), np.float32)
    w, b = np.ones(8, np.float32), np.zeros(8, np.float32)
    xhat, y, rstd = np.empty_like(x), np.empty_like(x), np.empty(4, np.float32)
    fn = k._module.get_function("layernorm_forward<float>")
    with pytest.raises(AssertionError, match="CuPy would pass its bytes unconverted"):
        fn((1,), (32, 8), (x, w, b, xhat, y, rstd, 4, np.int32(8), np.float64(1e-5)))  # a Python int for long long
    with pytest.raises(AssertionError, match="contiguous"):
        fn((1,), (32, 8), (x, w, b, np.empty((8, 4), np.float32).T, y, rstd, np.int64(4), np.int32(8),
                           np.float64(1e-5)))
    with pytest.raises(AssertionError, match="reads float32"):
        fn((1,), (32, 8), (x, w, b, xhat, y, rstd.astype(np.float64), np.int64(4), np.int32(8), np.float64(1e-5)))
