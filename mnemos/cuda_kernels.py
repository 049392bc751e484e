"""Fused CUDA kernels for the GPU backend, written here from scratch.

On a GPU the model is bound by kernel launches, not arithmetic: written op by op, as
the NumPy code is, a step of nanoGPT's GPU shape launches ~465 small elementwise
kernels. Each class of chain below becomes one launch instead:

- GELU and, in training, its derivative for the backward (``ElementwiseKernel``):
  ~13 NumPy ops -> 1;
- LayerNorm forward / backward, one warp per row (``RawModule``): mean, variance,
  normalise, scale and shift in one pass; the backward's two row means and ``dx`` too;
  RMSNorm (Llama) likewise, without the mean;
- SwiGLU (Llama) forward with, in training, what its backward needs, and its backward
  writing both halves of the gradient, one launch each;
- causal softmax of the attention scores, one warp per row: scale, mask (position
  ``j > i`` of row ``i`` gets probability 0), max, exp, sum, normalise; and its backward
  ``dS = P * (dP - rowsum(dP * P)) * scale``;
- cross-entropy: log-softmax, the picked log-probability and the probabilities for the
  backward in one pass per row; backward ``(p - onehot(y)) / N`` in one launch;
- AdamW: decay, both moments and the update over the flat buffer in one launch;
- dropout masks from a counter-based hash (splitmix64) of (seed, element index).

Every kernel computes exactly what the NumPy layer computes (same formulas, same
two-pass LayerNorm variance, per-row maxima); ``tests/test_gpu.py`` compares them.
The row kernels take contiguous arrays; float32 and float64 are both compiled.
"""

from __future__ import annotations

import math

import numpy as np

_ROW_KERNELS = r"""
template<typename T> __device__ __forceinline__ T warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

template<typename T> __device__ __forceinline__ T warp_max(T v) {
    for (int o = 16; o > 0; o >>= 1) { T w = __shfl_xor_sync(0xffffffffu, v, o); v = w > v ? w : v; }
    return v;
}

// one warp per row: blockDim = (32, rows per block)
#define ROW_AND_LANE \
    const long long row = (long long)blockIdx.x * blockDim.y + threadIdx.y; \
    const int lane = threadIdx.x; \
    if (row >= n_rows) return;

template<typename T>
__global__ void layernorm_forward(const T* x, const T* w, const T* b, T* xhat, T* y, T* rstd,
                                  long long n_rows, int C, double eps) {
    ROW_AND_LANE
    const T* xr = x + row * C;
    T s = 0;
    for (int j = lane; j < C; j += 32) s += xr[j];
    const T mean = warp_sum(s) / (T)C;
    T v = 0;
    for (int j = lane; j < C; j += 32) { T d = xr[j] - mean; v += d * d; }
    const T r = (T)1 / sqrt(warp_sum(v) / (T)C + (T)eps);
    for (int j = lane; j < C; j += 32) {
        T h = (xr[j] - mean) * r;
        xhat[row * C + j] = h;
        y[row * C + j] = h * w[j] + b[j];
    }
    if (lane == 0) rstd[row] = r;
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * w; also dy * xhat (for dw)
template<typename T>
__global__ void layernorm_backward(const T* dy, const T* xhat, const T* w, const T* rstd, T* dx, T* dy_xhat,
                                   long long n_rows, int C) {
    ROW_AND_LANE
    const long long o = row * C;
    T sg = 0, sgx = 0;
    for (int j = lane; j < C; j += 32) {
        T d = dy[o + j], h = xhat[o + j], g = d * w[j];
        sg += g;
        sgx += g * h;
        dy_xhat[o + j] = d * h;
    }
    const T mg = warp_sum(sg) / (T)C, mgx = warp_sum(sgx) / (T)C, r = rstd[row];
    for (int j = lane; j < C; j += 32) dx[o + j] = r * (dy[o + j] * w[j] - mg - xhat[o + j] * mgx);
}

// RMSNorm: rstd = 1 / sqrt(mean(x^2) + eps), xhat = x * rstd, y = xhat * w
template<typename T>
__global__ void rmsnorm_forward(const T* x, const T* w, T* xhat, T* y, T* rstd, long long n_rows, int C, double eps) {
    ROW_AND_LANE
    const T* xr = x + row * C;
    T v = 0;
    for (int j = lane; j < C; j += 32) v += xr[j] * xr[j];
    const T r = (T)1 / sqrt(warp_sum(v) / (T)C + (T)eps);
    for (int j = lane; j < C; j += 32) {
        T h = xr[j] * r;
        xhat[row * C + j] = h;
        y[row * C + j] = h * w[j];
    }
    if (lane == 0) rstd[row] = r;
}

// dx = rstd * (g - xhat * mean(g * xhat)), g = dy * w; also dy * xhat (for dw)
template<typename T>
__global__ void rmsnorm_backward(const T* dy, const T* xhat, const T* w, const T* rstd, T* dx, T* dy_xhat,
                                 long long n_rows, int C) {
    ROW_AND_LANE
    const long long o = row * C;
    T sgx = 0;
    for (int j = lane; j < C; j += 32) {
        T d = dy[o + j], h = xhat[o + j];
        sgx += d * w[j] * h;
        dy_xhat[o + j] = d * h;
    }
    const T mgx = warp_sum(sgx) / (T)C, r = rstd[row];
    for (int j = lane; j < C; j += 32) dx[o + j] = r * (dy[o + j] * w[j] - xhat[o + j] * mgx);
}

// rows of length Tn; row i (mod Tn) attends to positions 0..i: P = softmax(S * scale)
// (S and P may be the same buffer: each lane reads an element before writing it)
template<typename T>
__global__ void causal_softmax(const T* S, T* P, long long n_rows, int Tn, double scale) {
    ROW_AND_LANE
    const T* s = S + row * Tn;
    T* p = P + row * Tn;
    const int i = (int)(row % Tn);
    const T sc = (T)scale;
    T m = s[0] * sc;
    for (int j = lane; j <= i; j += 32) { T a = s[j] * sc; m = a > m ? a : m; }
    m = warp_max(m);
    T sum = 0;
    for (int j = lane; j <= i; j += 32) { T e = exp(s[j] * sc - m); p[j] = e; sum += e; }
    const T inv = (T)1 / warp_sum(sum);
    for (int j = lane; j < Tn; j += 32) p[j] = j <= i ? p[j] * inv : (T)0;
}

// dS = P * (dP - rowsum(dP * P)) * scale, in place over dP
template<typename T>
__global__ void softmax_backward(T* dP, const T* P, long long n_rows, int Tn, double scale) {
    ROW_AND_LANE
    const long long o = row * Tn;
    T s = 0;
    for (int j = lane; j < Tn; j += 32) s += dP[o + j] * P[o + j];
    s = warp_sum(s);
    for (int j = lane; j < Tn; j += 32) dP[o + j] = P[o + j] * (dP[o + j] - s) * (T)scale;
}

// nll[r] = logsumexp(z_r) - z_r[t_r]; with keep, probs = softmax(z_r) for the backward
template<typename T>
__global__ void cross_entropy_forward(const T* z, const long long* t, T* probs, double* nll,
                                      long long n_rows, int V, int keep) {
    ROW_AND_LANE
    const long long o = row * V;
    T m = z[o];
    for (int j = lane; j < V; j += 32) { T a = z[o + j]; m = a > m ? a : m; }
    m = warp_max(m);
    T sum = 0;
    for (int j = lane; j < V; j += 32) {
        T e = exp(z[o + j] - m);
        sum += e;
        if (keep) probs[o + j] = e;
    }
    sum = warp_sum(sum);
    if (keep) {
        const T inv = (T)1 / sum;
        for (int j = lane; j < V; j += 32) probs[o + j] *= inv;
    }
    if (lane == 0) nll[row] = (double)log(sum) + (double)m - (double)z[o + t[row]];
}
"""

_ROW_NAMES = ("layernorm_forward", "layernorm_backward", "rmsnorm_forward", "rmsnorm_backward", "causal_softmax",
              "softmax_backward", "cross_entropy_forward")
_ROWS_PER_BLOCK = 8

GELU_C = math.sqrt(2.0 / math.pi)
GELU_A = 0.044715


class CudaKernels:
    """The fused kernels, compiled on first use by CuPy (and cached on disk by it)."""

    def __init__(self, cp):
        self.cp = cp
        self._module = cp.RawModule(code=_ROW_KERNELS, options=("--std=c++14",),
                                    name_expressions=[f"{n}<{t}>" for n in _ROW_NAMES for t in ("float", "double")])
        gelu = (f"T x2 = x * x; T t = tanh(((T){GELU_C * GELU_A!r} * x2 + (T){GELU_C!r}) * x);"
                "T h = (T)0.5 * ((T)1 + t); y = h * x;")
        self._gelu = cp.ElementwiseKernel("T x", "T y", gelu, "mnemos_gelu")
        self._gelu_train = cp.ElementwiseKernel(
            "T x", "T y, T dydx",
            gelu + f"dydx = h + ((T){1.5 * GELU_C * GELU_A!r} * x2 + (T){0.5 * GELU_C!r}) * x * ((T)1 - t * t);",
            "mnemos_gelu_train")
        # SwiGLU over the (N, F) outputs; a = [g | u] is (N, 2F), read whole (raw)
        swiglu = ("const long long o = (i / F) * 2 * F + i % F; const T g = a[o], u = a[o + F];"
                  "const T s = (T)1 / ((T)1 + exp(-g)); const T silu_g = g * s; h = silu_g * u;")
        self._swiglu = cp.ElementwiseKernel("raw T a, int64 F", "T h", swiglu, "mnemos_swiglu")
        self._swiglu_train = cp.ElementwiseKernel(
            "raw T a, int64 F", "T h, T silu, T u_dsilu",
            swiglu + "silu = silu_g; u_dsilu = u * (s + silu_g * ((T)1 - s));", "mnemos_swiglu_train")
        self._swiglu_bwd = cp.ElementwiseKernel(  # over the (N, 2F) gradient: the g half, then the u half
            "raw T dh, raw T silu, raw T u_dsilu, int64 F", "T da",
            "const long long c = i % (2 * F), k = (i / (2 * F)) * F + (c < F ? c : c - F);"
            "da = dh[k] * (c < F ? u_dsilu[k] : silu[k]);", "mnemos_swiglu_backward")
        self._ce_bwd = cp.ElementwiseKernel(
            "raw int64 t, int64 V, T inv_n", "T dz",
            "dz = (dz - (((long long)(i % V) == t[i / V]) ? (T)1 : (T)0)) * inv_n;",
            "mnemos_cross_entropy_backward")
        self._adamw = cp.ElementwiseKernel(
            "T g, T mask, float64 lr, float64 wd, float64 b1, float64 b2, float64 eps, float64 step, "
            "float64 rsqrt_bc2",
            "T p, T m, T v",
            "p = p * (T)(1.0 - lr * wd * (double)mask);"
            "m = (T)b1 * m + (T)(1.0 - b1) * g;"
            "v = (T)b2 * v + (T)(1.0 - b2) * g * g;"
            "p = p - (T)step * m / (sqrt(v) * (T)rsqrt_bc2 + (T)eps);",
            "mnemos_adamw")
        self._dropout = cp.ElementwiseKernel(
            "uint64 seed, float64 p, float64 scale", "T m",
            "unsigned long long z = seed + (unsigned long long)i * 0x9E3779B97F4A7C15ull;"
            "z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;"
            "z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;"
            "z ^= z >> 31;"
            "double u = (double)(z >> 11) * (1.0 / 9007199254740992.0);"  # 53 bits -> [0, 1)
            "m = u >= p ? (T)scale : (T)0;",
            "mnemos_dropout_mask")

    # ---------------------------------------------------------------- launching

    def _rows(self, name, n_rows, *args):
        """Launch row kernel ``name`` (instantiated for ``args[0]``'s dtype), a warp per row."""
        kind = "double" if args[0].dtype == np.float64 else "float"
        fn = self._module.get_function(f"{name}<{kind}>")
        blocks = (int(n_rows) + _ROWS_PER_BLOCK - 1) // _ROWS_PER_BLOCK
        fn((blocks,), (32, _ROWS_PER_BLOCK), args)

    def _c(self, a):
        return self.cp.ascontiguousarray(a)

    # ---------------------------------------------------------------- the layers' chains

    def gelu(self, x, y, dydx=None) -> None:
        """``y = x/2 (1 + t)``, ``t = tanh(c (x + a x^3))``; with ``dydx`` also the
        derivative ``(1 + t)/2 + x/2 (1 - t^2) c (1 + 3 a x^2)`` for the backward."""
        if dydx is None:
            self._gelu(x, y)
        else:
            self._gelu_train(x, y, dydx)

    def layernorm_forward(self, x, w, b, eps, xhat, y, rstd) -> None:
        N, C = x.shape
        self._rows("layernorm_forward", N, self._c(x), w, b, xhat, y, rstd, np.int64(N), np.int32(C),
                   np.float64(eps))

    def layernorm_backward(self, dy, xhat, w, rstd, dx, dy_xhat) -> None:
        N, C = dy.shape
        self._rows("layernorm_backward", N, self._c(dy), xhat, w, rstd, dx, dy_xhat, np.int64(N), np.int32(C))

    def rmsnorm_forward(self, x, w, eps, xhat, y, rstd) -> None:
        N, C = x.shape
        self._rows("rmsnorm_forward", N, self._c(x), w, xhat, y, rstd, np.int64(N), np.int32(C), np.float64(eps))

    def rmsnorm_backward(self, dy, xhat, w, rstd, dx, dy_xhat) -> None:
        N, C = dy.shape
        self._rows("rmsnorm_backward", N, self._c(dy), xhat, w, rstd, dx, dy_xhat, np.int64(N), np.int32(C))

    def swiglu(self, a, h, silu=None, u_dsilu=None) -> None:
        """``h = silu(g) * u`` for ``a = [g | u]`` (N, 2F); in training also ``silu(g)``
        and ``u * silu'(g)`` for the backward."""
        F = np.int64(h.shape[1])
        if silu is None:
            self._swiglu(self._c(a), F, h)
        else:
            self._swiglu_train(self._c(a), F, h, silu, u_dsilu)

    def swiglu_backward(self, dh, silu, u_dsilu, da) -> None:
        """``da = [dh * u * silu'(g) | dh * silu(g)]`` (N, 2F)."""
        self._swiglu_bwd(self._c(dh), silu, u_dsilu, np.int64(dh.shape[1]), da)

    def causal_softmax(self, S, P, scale) -> None:
        """``(..., T, T)`` scores -> probabilities: row ``i`` of ``P`` is the softmax of
        ``S[i, :i+1] * scale``, zeros after (``P`` may be ``S``)."""
        T = S.shape[-1]
        rows = S.size // T
        self._rows("causal_softmax", rows, self._c(S), P, np.int64(rows), np.int32(T), np.float64(scale))

    def softmax_backward(self, dP, P, scale) -> None:
        """In place: ``dP = P * (dP - rowsum(dP * P)) * scale``."""
        T = P.shape[-1]
        self._rows("softmax_backward", P.size // T, dP, P, np.int64(P.size // T), np.int32(T), np.float64(scale))

    def cross_entropy(self, z, targets, probs, nll, keep: bool) -> None:
        """``nll[n] = logsumexp(z[n]) - z[n, targets[n]]`` (float64); ``probs = softmax(z)`` if keep."""
        N, V = z.shape
        t = self._c(targets.astype(self.cp.int64, copy=False))
        self._rows("cross_entropy_forward", N, self._c(z), t, probs, nll, np.int64(N), np.int32(V), np.int32(keep))

    def cross_entropy_backward(self, dz, targets, scale=1.0) -> None:
        """In place over the probabilities: ``dz = (p - onehot(targets)) * scale / N``."""
        N, V = dz.shape
        t = self._c(targets.astype(self.cp.int64, copy=False))
        self._ce_bwd(t, np.int64(V), dz.dtype.type(scale / N), dz)

    def adamw(self, p, g, m, v, mask, lr, weight_decay, b1, b2, eps, t) -> None:
        """One AdamW update of the flat buffers, as :meth:`mnemos.optim.AdamW.step`."""
        bc1, bc2 = 1.0 - b1 ** t, 1.0 - b2 ** t
        self._adamw(g, mask, lr, weight_decay, b1, b2, eps, lr / bc1, 1.0 / math.sqrt(bc2), p, m, v)

    def dropout_mask(self, seed: int, p: float, out) -> None:
        """``out = [u >= p] / (1 - p)`` with ``u`` a hash of (seed, index) in [0, 1)."""
        self._dropout(np.uint64(seed), p, 1.0 / (1.0 - p), out)
