"""Compile every fused CUDA kernel of mnemos.cuda_kernels with NVRTC, no GPU needed.

A GPU session is short; a kernel that does not compile should be found before it. This
builds the exact sources CuPy would compile on first use (the row kernels' ``RawModule``
with its template instantiations; each ``ElementwiseKernel`` wrapped by CuPy's own code
generator for float32 and float64, with the argument kinds of its call site) and
compiles them with NVRTC for ``--arch`` (default sm_80 and sm_90), with CuPy's options.
One line per kernel; exit status 1 on a compile error, 2 where CuPy or NVRTC is missing.

    pip install cupy-cuda12x nvidia-cuda-nvrtc-cu12
    python benchmarks/gpu_compile_check.py [--arch 80 90]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# the call sites' argument kinds: which inputs are arrays (the rest are scalars; outputs are arrays)
ARRAY_INPUTS = {
    "mnemos_gelu": ("x",),
    "mnemos_gelu_train": ("x",),
    "mnemos_cross_entropy_backward": ("t",),
    "mnemos_adamw": ("g", "mask"),
    "mnemos_dropout_mask": (),
    "mnemos_swiglu": ("a",),
    "mnemos_swiglu_train": ("a",),
    "mnemos_swiglu_backward": ("dh", "silu", "u_dsilu"),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", nargs="+", default=["80", "90"], help="compute capabilities (sm_XX)")
    args = ap.parse_args(argv)
    try:
        import cupy
        from cupy._core import _carray, _kernel, _scalar, core
        from cupy.cuda import compiler, function, nvrtc

        nvrtc_version = nvrtc.getVersion()
    except Exception as exc:  # ImportError, or NVRTC's library not found
        print(f"gpu_compile_check: CuPy with NVRTC is needed ({exc}): pip install cupy-cuda12x "
              "nvidia-cuda-nvrtc-cu12")
        return 2
    from mnemos.cuda_kernels import CudaKernels

    # CuPy's compile path down to the cache, which would need a device: record its input instead
    captured = []

    def capture(source, options=(), *a, name_expressions=None, **kw):
        captured.append((source, tuple(options), name_expressions))
        return function.Module()

    compiler._compile_module_with_cache = capture
    kernels = CudaKernels(cupy)
    jobs = []  # (label, source, options, name_expressions)
    mod = kernels._module
    core.compile_with_cache(mod.code, mod.options, prepend_cupy_headers=False,
                            name_expressions=mod.name_expressions)
    jobs.append(("row kernels (" + ", ".join(mod.name_expressions) + ")", *captured.pop()))

    NDARRAY, INDEXER, SCALAR = 1, 2, 3  # cupy._core._kernel._ArgKind
    for ek in vars(kernels).values():
        if not isinstance(ek, cupy.ElementwiseKernel):
            continue
        for dtype in (np.dtype(np.float32), np.dtype(np.float64)):
            infos = []
            for k, p in enumerate(ek.params[:-1]):
                dt = p.dtype if p.dtype is not None else dtype
                if k >= ek.nin or p.name in ARRAY_INPUTS[ek.name]:
                    infos.append(_kernel._ArgInfo(NDARRAY, cupy.ndarray, dt, 1, True, True))
                else:
                    infos.append(_kernel._ArgInfo(SCALAR, _scalar.CScalar, dt, 0, True, True))
            infos.append(_kernel._ArgInfo(INDEXER, _carray.Indexer, None, 1, True, True))
            type_map = _kernel._TypeMap((("T", dtype),))
            code = _kernel._get_elementwise_kernel_code(tuple(infos), type_map, ek.params, ek.operation,
                                                        ek.name, ek.preamble, **ek.kwargs)
            core.compile_with_cache(code, ())
            jobs.append((f"{ek.name} <{dtype.name}>", *captured.pop()))

    failed = 0
    for label, source, options, names in jobs:
        for arch in args.arch:
            opts = options + ("-ftz=true", f"-arch=sm_{arch}", "--device-as-default-execution-space")
            prog = compiler._NVRTCProgram(source, "mnemos_kernel.cu", name_expressions=names, method="cubin")
            try:
                _, mapping = prog.compile(opts)
                missing = [n for n in names or () if not (mapping or {}).get(n)]
                status = f"FAILED: no lowered name for {missing}" if missing else "ok"
            except compiler.CompileException as exc:
                status = "FAILED\n" + str(exc).strip()
            failed += status != "ok"
            print(f"sm_{arch}  {label}: {status}")
    print(f"gpu_compile_check: {len(jobs)} sources x {len(args.arch)} archs, {failed} failed "
          f"(CuPy {cupy.__version__}, NVRTC {nvrtc_version[0]}.{nvrtc_version[1]})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
