"""A stand-in for CuPy that runs Mnemos's CUDA kernels on the CPU, for machines without a GPU.

The ``simulated_gpu`` fixture (``tests/conftest.py``) puts :func:`cupy_module` in
``sys.modules`` as ``cupy``; ``tests/test_gpu_sim.py`` runs ``tests/test_gpu.py`` with it. The array functions are NumPy's; what is
simulated is the part a GPU adds: the kernel sources of :mod:`mnemos.cuda_kernels`, the
very strings CuPy would compile, are compiled with the host C++ compiler and run on
the CPU with CUDA's execution model:

- a ``RawModule``'s ``__global__`` templates run one CUDA thread per lane: every warp's
  32 lanes are cooperative contexts (``ucontext``) switched at each ``__shfl_xor_sync``,
  so a shuffle exchanges values between lanes exactly as on a GPU (and a lane whose
  partner never reaches the shuffle aborts the run rather than reading garbage);
- an ``ElementwiseKernel``'s operation runs once per index ``i``, with its parameters
  bound as CuPy binds them (inputs by value, outputs by reference, ``raw`` arrays whole);
- launches check what CuPy passes on blindly: each array argument is C-contiguous and of
  the kernel's element type, each scalar has the exact NumPy type of its C parameter
  (CuPy passes a NumPy scalar by its own size, so ``np.int64`` for an ``int`` would be
  garbage on a GPU).

What it cannot show: speed, CuPy's own API quirks, and GPU-only behaviour (float
rounding of the device's ``exp``/``tanh``, flush-to-zero). ``tests/test_gpu.py`` on a
real GPU covers those.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import types

import numpy as np

CXX = shutil.which("g++") or shutil.which("c++")

_HEADER = r"""
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <ucontext.h>

struct dim3 { unsigned x = 1, y = 1, z = 1; };
static dim3 threadIdx, blockIdx, blockDim, gridDim;
#define __global__
#define __device__
#define __forceinline__ inline
using std::exp; using std::log; using std::sqrt; using std::tanh;

namespace sim {
constexpr int WARP = 32;
static ucontext_t scheduler, lanes[WARP];
static bool done[WARP];
static int current, n_lanes, shuffles[WARP];
static unsigned long long slots[2][WARP];
static dim3 lane_thread[WARP];
static std::function<void()> body;
alignas(16) static char stacks[WARP][1 << 16];

static void entry() { body(); done[current] = true; }  // returns to the scheduler (uc_link)

template<typename V> V shfl_xor(V v, int offset) {
    const int lane = current, partner = lane ^ offset, k = shuffles[lane]++;
    unsigned long long bits = 0;
    std::memcpy(&bits, &v, sizeof(V));
    slots[k & 1][lane] = bits;
    swapcontext(&lanes[lane], &scheduler);  // every lane gets to this shuffle before any reads
    if (partner >= n_lanes || shuffles[partner] <= k) {
        std::fprintf(stderr, "cuda_sim: lane %d shuffles with lane %d, which never reached this shuffle\n",
                     lane, partner);
        std::abort();
    }
    bits = slots[k & 1][partner];  // two slot sets: a lane can be one shuffle ahead, never two
    V r;
    std::memcpy(&r, &bits, sizeof(V));
    return r;
}

static void launch(dim3 grid, dim3 block, std::function<void()> kernel) {
    body = kernel;
    gridDim = grid;
    blockDim = block;
    const unsigned per_block = block.x * block.y * block.z;
    for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
    for (unsigned bx = 0; bx < grid.x; ++bx) {
        blockIdx = dim3{bx, by, bz};
        for (unsigned first = 0; first < per_block; first += WARP) {
            n_lanes = (int)(per_block - first < (unsigned)WARP ? per_block - first : (unsigned)WARP);
            for (int l = 0; l < n_lanes; ++l) {
                const unsigned t = first + l;
                lane_thread[l] = dim3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
                done[l] = false;
                shuffles[l] = 0;
                getcontext(&lanes[l]);
                lanes[l].uc_stack.ss_sp = stacks[l];
                lanes[l].uc_stack.ss_size = sizeof(stacks[l]);
                lanes[l].uc_link = &scheduler;
                makecontext(&lanes[l], entry, 0);
            }
            for (bool alive = true; alive;) {  // round robin: each lane runs to its next shuffle or its end
                alive = false;
                for (int l = 0; l < n_lanes; ++l) {
                    if (done[l]) continue;
                    current = l;
                    threadIdx = lane_thread[l];
                    swapcontext(&scheduler, &lanes[l]);
                    alive = alive || !done[l];
                }
            }
        }
    }
}
}  // namespace sim

template<typename V> V __shfl_xor_sync(unsigned, V v, int offset) { return sim::shfl_xor(v, offset); }
"""

# C parameter types -> the NumPy type a scalar must have, or the element type of a pointer
_C_TYPES = {"float": np.float32, "double": np.float64, "long long": np.int64, "int": np.int32,
            "unsigned long long": np.uint64, "unsigned int": np.uint32}
_CUPY_TYPES = {"float32": "float", "float64": "double", "int64": "long long", "int32": "int",
               "uint64": "unsigned long long", "uint32": "unsigned int"}
_CTYPES = {np.float32: ctypes.c_float, np.float64: ctypes.c_double, np.int64: ctypes.c_longlong,
           np.int32: ctypes.c_int, np.uint64: ctypes.c_ulonglong, np.uint32: ctypes.c_uint}


def _compile(source: str) -> ctypes.CDLL:
    """Build ``source`` into a shared library (cached by its hash) and load it."""
    digest = hashlib.sha1(source.encode()).hexdigest()[:16]
    folder = os.path.join(tempfile.gettempdir(), f"mnemos-cuda-sim-{os.getuid()}")
    os.makedirs(folder, exist_ok=True)
    lib = os.path.join(folder, f"{digest}.so")
    if not os.path.exists(lib):
        src = os.path.join(folder, f"{digest}.cpp")
        with open(src, "w") as f:
            f.write(source)
        tmp = f"{lib}.{os.getpid()}"
        subprocess.run([CXX, "-std=c++17", "-O1", "-shared", "-fPIC", "-w", src, "-o", tmp],
                       check=True, capture_output=True, text=True)
        os.replace(tmp, lib)
    return ctypes.CDLL(lib)


def _pack(args, ctypes_of) -> tuple:
    """A ``void*[]`` pointing at each argument as its C type, and the holders keeping them alive."""
    holders = []
    for a, c_type in zip(args, ctypes_of):
        holders.append(ctypes.c_void_p(a.ctypes.data) if c_type is None else c_type(a.item()))
    array = (ctypes.c_void_p * len(holders))(*[ctypes.addressof(h) for h in holders])
    return array, holders


def _check_array(a, element, what: str) -> None:
    assert isinstance(a, np.ndarray), f"{what}: an array is needed, got {type(a).__name__}"
    assert a.flags.c_contiguous, f"{what}: the kernel indexes it as contiguous, but it has strides {a.strides}"
    assert a.dtype == element, f"{what}: the kernel reads {np.dtype(element)}, the array holds {a.dtype}"


def _check_scalar(v, want, what: str) -> None:
    assert type(v) is want, (f"{what}: the C parameter is {np.dtype(want)}, the launch passes "
                             f"{type(v).__name__} (CuPy would pass its bytes unconverted)")


class _Function:
    """One instantiated ``__global__`` function; called as CuPy's: ``f(grid, block, args)``."""

    def __init__(self, lib, symbol: str, params: list[tuple[str, str]], label: str):
        self.fn = getattr(lib, symbol)
        self.fn.restype = None
        self.params, self.label = params, label

    def __call__(self, grid, block, args):
        assert len(args) == len(self.params), f"{self.label}: {len(args)} arguments for {len(self.params)} parameters"
        c_types = []
        for a, (ctype, name) in zip(args, self.params):
            what = f"{self.label} argument {name!r}"
            if ctype.endswith("*"):
                _check_array(a, _C_TYPES[ctype.replace("const", "").rstrip("*").strip()], what)
                c_types.append(None)
            else:
                want = _C_TYPES[ctype]
                _check_scalar(a, want, what)
                c_types.append(_CTYPES[want])
        dims = [int(d) for d in (tuple(grid) + (1,) * 3)[:3] + (tuple(block) + (1,) * 3)[:3]]
        packed, _holders = _pack(args, c_types)
        self.fn(*[ctypes.c_uint(d) for d in dims], packed)


class RawModule:
    """``cupy.RawModule(code=..., options=..., name_expressions=[...])``: every named
    template instantiation becomes a host function launching it through the warp simulator."""

    def __init__(self, code: str, options=(), name_expressions=()):
        self.code, self.options, self.name_expressions = code, tuple(options), tuple(name_expressions)
        signatures = {m.group(1): m.group(2) for m in re.finditer(r"__global__\s+void\s+(\w+)\s*\(([^)]*)\)", code)}
        wrappers, self._params = [], {}
        for k, expr in enumerate(self.name_expressions):
            name, ctype = re.fullmatch(r"(\w+)<\s*(\w+)\s*>", expr).groups()
            params = []
            for p in signatures[name].split(","):
                decl, pname = re.fullmatch(r"\s*(.*?)\s*(\w+)\s*", p).groups()
                params.append((re.sub(r"\bT\b", ctype, decl).replace(" *", "*"), pname))
            self._params[expr] = (f"mnemos_sim_{k}", params)
            call = ", ".join(f"*({t}*)a[{i}]" for i, (t, _) in enumerate(params))
            wrappers.append(f'extern "C" void mnemos_sim_{k}(unsigned gx, unsigned gy, unsigned gz, unsigned bx, '
                            f"unsigned by, unsigned bz, void** a) {{\n"
                            f"    sim::launch(dim3{{gx, gy, gz}}, dim3{{bx, by, bz}}, [=] {{ {expr}({call}); }});\n}}")
        self._lib = _compile(_HEADER + code + "\n" + "\n".join(wrappers) + "\n")

    def get_function(self, name_expression: str) -> _Function:
        symbol, params = self._params[name_expression]
        return _Function(self._lib, symbol, params, name_expression)


def _parse_params(text: str) -> list[tuple[bool, str, str]]:
    """CuPy's ``"raw int64 t, T x"`` -> ``[(raw, type, name), ...]``."""
    out = []
    for p in text.split(","):
        words = p.split()
        raw = words[0] == "raw"
        type_, name = words[-2], words[-1]
        out.append((raw, type_, name))
    return out


class ElementwiseKernel:
    """``cupy.ElementwiseKernel(in_params, out_params, operation, name)``: ``operation``
    runs for each index ``i`` of the (equally shaped) non-raw arrays, compiled per call
    signature (which arguments are arrays, and what ``T`` is)."""

    def __init__(self, in_params: str, out_params: str, operation: str, name: str = "kernel", **kwargs):
        self.ins, self.outs = _parse_params(in_params), _parse_params(out_params)
        self.params = self.ins + self.outs
        self.nin, self.operation, self.name = len(self.ins), operation, name
        self._built: dict = {}

    def __call__(self, *args):
        assert len(args) == len(self.params), f"{self.name}: pass every input and output ({len(self.params)} arguments)"
        arrays = [isinstance(a, np.ndarray) for a in args]
        t_types = {a.dtype for a, (_, tp, _), arr in zip(args, self.params, arrays) if tp == "T" and arr}
        t_types |= {np.dtype(type(a)) for a, (_, tp, _), arr in zip(args, self.params, arrays)
                    if tp == "T" and not arr and isinstance(a, np.generic)}
        assert len(t_types) == 1, f"{self.name}: T must be one type, the arguments give {t_types or 'none'}"
        T = np.dtype(t_types.pop()).type
        sizes = {a.size for a, (raw, _, _), arr in zip(args, self.params, arrays) if arr and not raw}
        assert len(sizes) == 1, f"{self.name}: the non-raw arrays differ in size ({sizes})"
        for k, (raw, tp, name) in enumerate(self.outs, start=self.nin):
            assert arrays[k], f"{self.name}: output {name!r} must be passed as an array"
        key = (T, tuple(arrays))
        if key not in self._built:
            self._built[key] = self._build(T, arrays)
        fn, c_types = self._built[key]
        checked = []
        for a, arr, (raw, tp, name), ctype in zip(args, arrays, self.params, c_types):
            element = T if tp == "T" else getattr(np, tp)
            if arr:
                _check_array(a, element, f"{self.name} argument {name!r}")
            else:
                a = element(a)  # CuPy converts a scalar argument to the parameter's type
            checked.append(a)
        packed, _holders = _pack(checked, c_types)
        fn(ctypes.c_longlong(sizes.pop()), packed)

    def _build(self, T, arrays):
        ctype_of_t = _CUPY_TYPES[np.dtype(T).name]
        binds, unpack, c_types = [], [], []
        for k, ((raw, tp, name), arr) in enumerate(zip(self.params, arrays)):
            c = ctype_of_t if tp == "T" else _CUPY_TYPES[tp]
            if arr:
                unpack.append(f"{c}* const {name}__p = *({c}**)a[{k}];")
                c_types.append(None)
                if raw:
                    binds.append(f"{c}* const {name} = {name}__p;")
                elif k < self.nin:
                    binds.append(f"const {c} {name} = {name}__p[i];")
                else:
                    binds.append(f"{c}& {name} = {name}__p[i];")
            else:
                unpack.append(f"const {c} {name} = *({c}*)a[{k}];")
                c_types.append(_CTYPES[getattr(np, tp) if tp != "T" else T])
        source = (_HEADER + f"typedef {ctype_of_t} T;\n"
                  f'extern "C" void run(long long n, void** a) {{\n    {" ".join(unpack)}\n'
                  f"    for (long long i = 0; i < n; ++i) {{\n        {' '.join(binds)}\n        {self.operation}\n    }}\n}}\n")
        fn = _compile(source).run
        fn.restype = None
        return fn, c_types


@functools.cache
def cupy_module() -> types.ModuleType:
    """A ``cupy`` whose arrays are NumPy's and whose kernels run through the simulator (one
    module object, so ``xp is cupy`` holds wherever it is installed)."""
    cp = types.ModuleType("cupy", "cuda_sim: NumPy arrays, CUDA kernels simulated on the CPU")
    cp.__getattr__ = lambda name: getattr(np, name)
    cp.RawModule, cp.ElementwiseKernel = RawModule, ElementwiseKernel
    cp.asnumpy = np.asarray
    device = types.SimpleNamespace(synchronize=lambda: None)  # the CPU has finished when a call returns
    cp.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 1),
                                    Device=lambda *_: device)
    cp.__version__ = "cuda_sim"
    return cp


@functools.cache
def cupyx_module() -> types.ModuleType:
    cpx = types.ModuleType("cupyx")
    cpx.scatter_add = np.add.at
    return cpx
