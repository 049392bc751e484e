"""The layers of GPT-2, each with its forward and its hand-written backward side by side.

Conventions: activations are 2-D ``(N, C)`` with ``N = B * T`` rows (attention reshapes
to ``(B, H, T, hd)`` internally). ``forward`` keeps what ``backward`` needs; ``backward``
takes the gradient of the loss w.r.t. the output, *adds* the parameter gradients into
the model's flat gradient buffer and returns the gradient w.r.t. the input. Outputs are
written into buffers from the shared :class:`~mnemos.nn.workspace.Workspace`, so a
returned array is only valid until the same layer runs again. What backward needs is
kept per layer; scratch that is consumed at once (backward outputs, temporaries, the
outputs of projections added straight into the residual) is shared by all layers,
which halves the memory and keeps those buffers hot in cache.

Each docstring gives the short derivation of the backward pass; ``1`` is a vector of
ones, ``*`` is elementwise, ``@`` a matrix product, ``rows`` means "for each row".
"""

from __future__ import annotations

import math

import numpy as np

from mnemos.backend import dropout_mask, fused_kernels, scatter_add

GELU_C = math.sqrt(2.0 / math.pi)
GELU_A = 0.044715


def grad_product(a, b, grad, params, ws, key: str) -> None:
    """``grad += a @ b`` for a parameter gradient ``grad`` (a view into ``params.grad``),
    through the scratch buffer ``key``; or, when the store is in overwrite mode
    (``params.accumulate`` false), ``grad = a @ b`` straight into the gradient."""
    xp = ws.xp
    if params.accumulate:
        tmp = ws.get(key, grad.shape)
        xp.matmul(a, b, out=tmp)
        grad += tmp
    else:
        xp.matmul(a, b, out=grad)


class Dropout:
    """Inverted dropout: ``y = x * m`` with ``m = [u >= p] / (1 - p)``, ``u ~ U(0, 1)``.

    Backward: ``dx = dy * m`` (the same mask). Active only when ``train`` and ``p > 0``;
    the mask comes from the model's dropout generator, so runs are reproducible by seed.
    """

    def __init__(self, name, p, ws, rng):
        self.name, self.p, self.ws, self.rng = name, float(p), ws, rng
        self.xp = ws.xp
        self.mask = None

    def forward(self, x, train, out=None):  # any shape -> same shape (in place unless out)
        """Returns ``x`` itself when inactive, else the masked values (in ``out`` if given)."""
        if not (train and self.p > 0.0):
            self.mask = None
            return x
        if out is None:
            out = x
        m = self.ws.get(self.name + ".mask", x.shape)
        dropout_mask(self.xp, self.rng, m, self.p)  # [u >= p] / (1 - p)
        self.mask = m
        self.xp.multiply(x, m, out=out)
        return out

    def backward(self, dy, out=None):  # any shape -> same shape (in place unless out)
        if self.mask is None:
            return dy
        if out is None:
            out = dy
        self.xp.multiply(dy, self.mask, out=out)
        return out


class Linear:
    """``y = x @ W + b`` with ``W`` stored ``(in, out)`` like Hugging Face's Conv1D; the
    bias ``b`` only when the store holds ``<name>.bias`` (Llama's linears have none).

    Backward: ``dx = dy @ W^T``, ``dW = x^T @ dy``, ``db = 1^T @ dy`` (sum over rows).
    """

    def __init__(self, params, name, ws, keep_output=True):
        self.params, self.name, self.ws, self.xp = params, name, ws, ws.xp
        self.out_key = name + ".y" if keep_output else "linear.y"  # shared when used at once
        self.W, self.dW = params.view(name + ".weight"), params.grad_view(name + ".weight")
        has_bias = name + ".bias" in params
        self.b = params.view(name + ".bias") if has_bias else None
        self.db = params.grad_view(name + ".bias") if has_bias else None
        self.x = None

    def forward(self, x):  # (N, in) -> (N, out)
        self.x = x
        y = self.ws.get(self.out_key, (x.shape[0], self.W.shape[1]))
        self.xp.matmul(x, self.W, out=y)
        if self.b is not None:
            y += self.b
        return y

    def backward(self, dy):  # (N, out) -> (N, in)
        xp, ws = self.xp, self.ws
        grad_product(self.x.T, dy, self.dW, self.params, ws, "linear.dW")
        if self.db is not None:
            grad_product(ws.ones(dy.shape[0]), dy, self.db, self.params, ws, "linear.db")
        dx = ws.get("linear.dx", self.x.shape)
        xp.matmul(dy, self.W.T, out=dx)
        return dx


class LayerNorm:
    """``y = xhat * w + b`` with ``xhat = (x - mean) * rstd``, ``rstd = 1/sqrt(var + eps)``
    over the last axis (``C`` features).

    Backward: ``dw = 1^T @ (dy * xhat)``, ``db = 1^T @ dy``. With ``g = dy * w``, since
    ``d xhat_j / d x_i = rstd * (delta_ij - 1/C - xhat_i xhat_j / C)``:
    ``dx = rstd * (g - mean(g) - xhat * mean(g * xhat))`` (means over the row).
    """

    def __init__(self, params, name, ws, eps=1e-5):
        self.params, self.name, self.ws, self.xp, self.eps = params, name, ws, ws.xp, eps
        self.w, self.b = params.view(name + ".weight"), params.view(name + ".bias")
        self.dw, self.db = params.grad_view(name + ".weight"), params.grad_view(name + ".bias")
        self.xhat = self.rstd = None
        self.keys = (name + ".xhat", name + ".y", name + ".rstd")
        C = self.w.shape[0]
        self.inv_c = self.xp.full(C, 1.0 / C, dtype=ws.dtype)  # x @ inv_c = row means
        self.fused = fused_kernels(self.xp)  # one GPU kernel each way on CuPy; None on NumPy

    def forward(self, x):  # (N, C) -> (N, C)
        xp, ws = self.xp, self.ws
        N, C = x.shape
        xhat = ws.get(self.keys[0], (N, C))
        y = ws.get(self.keys[1], (N, C))
        rstd = ws.get(self.keys[2], (N,))
        if self.fused is not None:
            self.fused.layernorm_forward(x, self.w, self.b, self.eps, xhat, y, rstd)
            self.xhat, self.rstd = xhat, rstd
            return y
        mean = ws.get("ln.mean", (N,))
        xp.matmul(x, self.inv_c, out=mean)  # row means as a matrix-vector product
        xp.subtract(x, mean[:, None], out=xhat)
        xp.multiply(xhat, xhat, out=y)  # y as scratch for the squares
        xp.matmul(y, self.inv_c, out=rstd)  # variances
        rstd += self.eps
        xp.sqrt(rstd, out=rstd)
        xp.reciprocal(rstd, out=rstd)
        xhat *= rstd[:, None]
        xp.multiply(xhat, self.w, out=y)
        y += self.b
        self.xhat, self.rstd = xhat, rstd
        return y

    def backward(self, dy):  # (N, C) -> (N, C)
        xp, ws = self.xp, self.ws
        xhat, rstd = self.xhat, self.rstd
        N, C = xhat.shape
        ones_n, ones_c = ws.ones(N), ws.ones(C)
        g = ws.get("ln.g", (N, C))
        dx = ws.get("ln.dx", (N, C))
        if self.fused is not None:  # dx, and dy * xhat into g
            self.fused.layernorm_backward(dy, xhat, self.w, rstd, dx, g)
            grad_product(ones_n, g, self.dw, self.params, ws, "ln.dw")
            grad_product(ones_n, dy, self.db, self.params, ws, "ln.db")
            return dx
        xp.multiply(dy, xhat, out=g)
        grad_product(ones_n, g, self.dw, self.params, ws, "ln.dw")
        grad_product(ones_n, dy, self.db, self.params, ws, "ln.db")
        xp.multiply(dy, self.w, out=g)
        norm_input_grad(xp, g, xhat, rstd, ones_c, dx, centred=True)
        return dx


def norm_input_grad(xp, g, xhat, rstd, ones_c, dx, centred) -> None:
    """``dx = rstd * (g - mean(g) - xhat * mean(g * xhat))``, means over each row of
    ``C``: the input gradient of LayerNorm (``g = dy * w``); without the ``mean(g)`` term
    (``centred`` false) that of RMSNorm, which does not subtract the mean."""
    C = g.shape[1]
    xp.multiply(g, xhat, out=dx)
    mean_gx = dx @ ones_c
    mean_gx *= 1.0 / C
    xp.multiply(xhat, mean_gx[:, None], out=dx)
    xp.subtract(g, dx, out=dx)
    if centred:
        mean_g = g @ ones_c
        mean_g *= 1.0 / C
        xp.subtract(dx, mean_g[:, None], out=dx)
    dx *= rstd[:, None]


class GELU:
    """tanh-GELU: ``y = x/2 * (1 + t)``, ``t = tanh(u)``, ``u = c (x + a x^3)``.

    Backward: ``dy/dx = (1 + t)/2 + x/2 * (1 - t^2) * c (1 + 3 a x^2)``, where
    ``x/2 * (1 - t^2) = y (1 - t)`` saves a pass. In training the
    forward computes this derivative from its own intermediates (``x^2``, ``t``), so the
    backward is one product. Cubes are products into buffers (float32 ``x ** 3`` is a
    slow generic power).
    """

    def __init__(self, name, ws):
        self.name, self.ws, self.xp = name, ws, ws.xp
        self.dydx = None
        self.fused = fused_kernels(self.xp)  # one GPU kernel on CuPy; None on NumPy

    def forward(self, x, train=True):  # (N, D) -> (N, D)
        xp, ws = self.xp, self.ws
        if self.fused is not None:
            y = ws.get(self.name + ".y", x.shape)
            self.dydx = ws.get(self.name + ".dydx", x.shape) if train else None
            self.fused.gelu(x, y, self.dydx)
            return y
        x2 = ws.get("gelu.x2", x.shape)
        t = ws.get("gelu.t", x.shape)
        y = ws.get(self.name + ".y", x.shape)
        xp.multiply(x, x, out=x2)
        xp.multiply(x2, GELU_C * GELU_A, out=t)
        t += GELU_C
        t *= x  # u = c x + c a x^3
        xp.tanh(t, out=t)
        if not train:
            self.dydx = None
            xp.multiply(t, 0.5, out=y)
            y += 0.5
            y *= x
            return y
        h = self.dydx = ws.get(self.name + ".dydx", x.shape)  # h = (1 + t)/2, then dy/dx
        xp.multiply(t, 0.5, out=h)
        h += 0.5
        xp.multiply(h, x, out=y)
        # x/2 (1 - t^2) = x h (1 - t) = y (1 - t), so dy/dx = h + y (1 - t) du/dx
        x2 *= 3.0 * GELU_C * GELU_A
        x2 += GELU_C  # du/dx = c (1 + 3 a x^2)
        xp.subtract(1.0, t, out=t)
        t *= y
        t *= x2
        h += t
        return y

    def backward(self, dy):  # (N, D) -> (N, D)
        dx = self.ws.get("gelu.dx", dy.shape)
        self.xp.multiply(dy, self.dydx, out=dx)
        return dx


class Embedding:
    """``x = wte[idx] + wpe[start:start + T]`` then dropout; without a ``wpe`` in the
    store (Llama: positions enter as rotations inside attention) just ``wte[idx]``.

    Backward: the lookup routes gradients back to the rows used, summed over repeats
    (``dwte[idx[n]] += dx[n]``, a scatter-add on the flat view: always added, as the
    head, tied or not, has written ``dwte`` first); ``dwpe[t] += sum_b dx[b, t]``.
    """

    def __init__(self, params, ws, dropout, rng):
        self.params, self.ws, self.xp = params, ws, ws.xp
        self.wte, self.dwte = params.view("wte"), params.grad_view("wte")
        self.wpe = params.view("wpe") if "wpe" in params else None
        self.dwpe = params.grad_view("wpe") if "wpe" in params else None
        self.drop = Dropout("emb.drop", dropout, ws, rng)
        self.idx = None

    def forward(self, idx, train, out, start=0):  # (B, T) int -> (B*T, C) in out
        xp = self.xp
        B, T = idx.shape
        C = self.wte.shape[1]
        self.idx = idx
        xp.take(self.wte, idx.reshape(-1), axis=0, out=out)
        if self.wpe is not None:
            out.reshape(B, T, C)[...] += self.wpe[start:start + T]
        return self.drop.forward(out, train)

    def backward(self, dx):  # (B*T, C) -> None (dx is modified)
        xp, ws = self.xp, self.ws
        B, T = self.idx.shape
        C = self.wte.shape[1]
        dx = self.drop.backward(dx)
        if self.dwpe is not None:
            if not self.params.accumulate:
                self.dwpe[T:] = 0  # positions past T get no gradient from this batch
            grad_product(ws.ones(B), dx.reshape(B, T * C), self.dwpe[:T].reshape(T * C), self.params, ws,
                         "emb.dwpe")
        flat = ws.get("emb.flat_idx", (B * T, C), dtype=xp.intp)
        xp.add((self.idx.reshape(-1, 1) * C), xp.arange(C), out=flat)
        scatter_add(xp, self.dwte.reshape(-1), flat.reshape(-1), dx.reshape(-1))


def exp_shifted(src, out, groups, ones, xp):
    """``out = exp(src - shift)`` for ``src`` of shape ``(..., n)``; returns the row sums
    of ``out`` (shape ``src.shape[:-1]``) and the shift (broadcastable against
    ``sums.reshape(groups, -1)``).

    The shift is one maximum per group of rows (``groups`` = how many; e.g. one per
    (batch, head) slice of attention scores): a max over a whole slice is ~10x cheaper
    than one per short row. It is exact unless a row's maximum lies far below its
    group's and the row underflows; if any row's sum falls under ``sqrt(tiny)``, all
    rows are redone with their own maximum, so results match a per-row shift to rounding.
    """
    flat_src, flat_out = src.reshape(groups, -1), out.reshape(groups, -1)
    shift = flat_src.max(axis=1)[:, None]
    xp.subtract(flat_src, shift, out=flat_out)
    xp.exp(out, out=out)
    sums = out @ ones
    if sums.min() < _SAFE_SUM[out.dtype.char]:
        row_max = src.max(axis=-1, keepdims=True)
        xp.subtract(src, row_max, out=out)
        xp.exp(out, out=out)
        sums = out @ ones
        shift = row_max.reshape(groups, -1)
    return sums, shift


_SAFE_SUM = {"f": float(np.sqrt(np.finfo(np.float32).tiny)), "d": float(np.sqrt(np.finfo(np.float64).tiny))}


class CausalSelfAttention:
    """Multi-head causal self-attention, all heads in one batched matmul.

    ``qkv = x @ W_attn + b`` (fused), q, k, v are strided ``(B, H, T, hd)`` views of it;
    ``P = softmax(q k^T / sqrt(hd) + mask)`` with ``-inf`` above the diagonal;
    ``y = dropout(P) @ v``; heads concatenated; ``out = y @ W_proj + b`` then dropout.

    Backward (per head): ``dP' = dy @ v^T``, ``dv = P'^T @ dy`` (``P'`` = P after dropout,
    ``dP = dP' * mask``); softmax rows: ``dS = P * (dP - rowsum(dP * P))`` (masked entries
    have ``P = 0`` so get no gradient); ``dq = dS @ k / sqrt(hd)``, ``dk = dS^T @ q / sqrt(hd)``.
    dq, dk, dv are written straight into the strided views of one ``dqkv`` buffer.

    With ``rope`` (a :class:`~mnemos.nn.llama.Rotary`, Llama) q and k are rotated by
    their positions in place inside ``qkv`` before the scores, and ``dq``, ``dk`` rotated
    back inside ``dqkv`` before ``c_attn``'s backward.
    """

    def __init__(self, params, name, ws, n_head, block_size, dropout, rng, rope=None):
        self.name, self.ws, self.xp = name, ws, ws.xp
        self.n_head = n_head
        self.rope = rope
        self.c_attn = Linear(params, name + ".c_attn", ws)
        self.c_proj = Linear(params, name + ".c_proj", ws, keep_output=False)
        self.attn_drop = Dropout(name + ".attn_drop", dropout, ws, rng)
        self.resid_drop = Dropout(name + ".resid_drop", dropout, ws, rng)
        xp = self.xp
        causal = xp.triu(xp.ones((block_size, block_size), dtype=bool), k=1)
        self.mask = xp.where(causal, -xp.inf, 0.0).astype(ws.dtype)
        self.shape = self.qkv = self.P = self.Pd = None
        self.fused = fused_kernels(xp)  # one GPU kernel per softmax (and backward) on CuPy

    def _heads(self, qkv, B, T):
        """q, k, v as (B, H, T, hd) views of the fused (B*T, 3C) projection."""
        H = self.n_head
        hd = qkv.shape[-1] // (3 * H)
        return qkv.reshape(B, T, 3, H, hd).transpose(2, 0, 3, 1, 4)

    def forward(self, x, B, T, train, record=None):  # (B*T, C) -> (B*T, C)
        xp, ws, n = self.xp, self.ws, self.name
        C = x.shape[1]
        H = self.n_head
        hd = C // H
        qkv = self.c_attn.forward(x)
        if self.rope is not None:
            self.rope.forward(qkv.reshape(B, T, 3 * C)[:, :, :2 * C])  # q and k, rotated in place
        q, k, v = self._heads(qkv, B, T)
        S = ws.get("attn.scores", (B, H, T, T))  # scratch shared by all layers
        P = ws.get(n + ".P", (B, H, T, T))
        xp.matmul(q, k.swapaxes(-1, -2), out=S)
        if self.fused is not None:
            self.fused.causal_softmax(S, P, 1.0 / math.sqrt(hd))
        else:
            S *= 1.0 / math.sqrt(hd)
            S += self.mask[:T, :T]
            sums, _ = exp_shifted(S, P, B * H, ws.ones(T), xp)
            xp.reciprocal(sums, out=sums)
            P *= sums[..., None]
        if record is not None:
            record.append(P.copy())
        drop_out = ws.get(n + ".Pd", P.shape) if train and self.attn_drop.p > 0 else None
        Pd = self.attn_drop.forward(P, train, out=drop_out)
        y = ws.get(n + ".y", (B, T, H, hd))
        xp.matmul(Pd, v, out=y.transpose(0, 2, 1, 3))
        out = self.c_proj.forward(y.reshape(B * T, C))
        self.shape, self.qkv, self.P, self.Pd = (B, T), qkv, P, Pd
        return self.resid_drop.forward(out, train)

    def backward(self, dout):  # (B*T, C) -> (B*T, C); dout is not modified
        xp, ws = self.xp, self.ws
        B, T = self.shape
        H = self.n_head
        C = dout.shape[1]
        hd = C // H
        dout = self.resid_drop.backward(dout, out=ws.get("attn.dout", dout.shape))
        dy = self.c_proj.backward(dout).reshape(B, T, H, hd).transpose(0, 2, 1, 3)
        q, k, v = self._heads(self.qkv, B, T)
        dqkv = ws.get("attn.dqkv", (B * T, 3 * C))
        dq, dk, dv = self._heads(dqkv, B, T)
        dP = ws.get("attn.dP", (B, H, T, T))
        xp.matmul(dy, v.swapaxes(-1, -2), out=dP)
        xp.matmul(self.Pd.swapaxes(-1, -2), dy, out=dv)
        self.attn_drop.backward(dP)
        P = self.P
        if self.fused is not None:
            self.fused.softmax_backward(dP, P, 1.0 / math.sqrt(hd))
        else:
            tmp = ws.get("attn.tmp", P.shape)
            xp.multiply(dP, P, out=tmp)
            rowsum = tmp @ ws.ones(T)
            dP -= rowsum[..., None]
            dP *= P
            dP *= 1.0 / math.sqrt(hd)
        xp.matmul(dP, k, out=dq)
        xp.matmul(dP.swapaxes(-1, -2), q, out=dk)
        if self.rope is not None:
            self.rope.backward(dqkv.reshape(B, T, 3 * C)[:, :, :2 * C])
        return self.c_attn.backward(dqkv)

    def forward_cached(self, x, B, t, k_cache, v_cache, start):  # (B*t, C) -> (B*t, C)
        """Inference on ``t`` new positions after ``start`` cached ones; appends k, v.

        One new position (``t == 1``, every generated token) sees all cached ones, so
        it needs no causal mask, and each (batch, head) group is a single row: its
        maximum is the row's own, so the softmax is exact without ``exp_shifted``'s
        underflow check."""
        xp, ws = self.xp, self.ws
        C = x.shape[1]
        H = self.n_head
        hd = C // H
        qkv = self.c_attn.forward(x)
        if self.rope is not None:
            self.rope.forward(qkv.reshape(B, t, 3 * C)[:, :, :2 * C], start)
        q, k, v = self._heads(qkv, B, t)
        end = start + t
        k_cache[:, :, start:end] = k
        v_cache[:, :, start:end] = v
        S = xp.matmul(q, k_cache[:, :, :end].swapaxes(-1, -2))  # (B, H, t, end)
        S *= 1.0 / math.sqrt(hd)
        if t == 1:
            S -= S.max(axis=-1, keepdims=True)
            P = xp.exp(S, out=S)
            P /= (P @ ws.ones(end))[..., None]
        else:
            S += self.mask[start:end, :end]
            P = xp.empty_like(S)
            P /= exp_shifted(S, P, B * H, ws.ones(end), xp)[0][..., None]
        y = ws.get("attn.y_cached", (B, t, H, hd))
        xp.matmul(P, v_cache[:, :, :end], out=y.transpose(0, 2, 1, 3))  # (B, H, t, hd) into (B, t, H, hd)
        return self.c_proj.forward(y.reshape(B * t, C))


class MLP:
    """``out = dropout(act(x @ W_fc + b_fc) @ W_proj + b_proj)``; backward chains the parts.

    ``activation`` is GELU (GPT-2) or :class:`~mnemos.nn.llama.SwiGLU` (Llama, whose
    ``c_fc`` holds the gate and up projections side by side and has no biases)."""

    def __init__(self, params, name, ws, dropout, rng, activation=None):
        self.name, self.ws = name, ws
        self.c_fc = Linear(params, name + ".c_fc", ws, keep_output=False)  # the activation keeps what it needs
        self.act = (activation or GELU)(name + ".act", ws)
        self.c_proj = Linear(params, name + ".c_proj", ws, keep_output=False)
        self.drop = Dropout(name + ".drop", dropout, ws, rng)

    def forward(self, x, train):  # (N, C) -> (N, C)
        out = self.c_proj.forward(self.act.forward(self.c_fc.forward(x), train))
        return self.drop.forward(out, train)

    def backward(self, dout):  # (N, C) -> (N, C); dout is not modified
        dout = self.drop.backward(dout, out=self.ws.get("mlp.dout", dout.shape))
        return self.c_fc.backward(self.act.backward(self.c_proj.backward(dout)))


class CrossEntropy:
    """Mean cross-entropy of logits ``z`` (N, V) against targets ``y`` (N,), fused with
    a numerically stable log-softmax: ``loss = mean_n(logsumexp(z_n) - z_n[y_n])``
    (one shift for all rows, per-row where a row would underflow: see ``exp_shifted``).

    Backward: ``dz = (softmax(z) - onehot(y)) / N`` (times ``scale``, the weight of this
    loss in the objective), written over the softmax buffer.
    """

    def __init__(self, ws):
        self.ws, self.xp = ws, ws.xp
        self.probs = self.targets = None
        self.fused = fused_kernels(self.xp)  # one GPU kernel each way on CuPy; None on NumPy

    def forward(self, z, targets, keep=True):  # (N, V), (N,) -> float
        xp, ws = self.xp, self.ws
        N, V = z.shape
        p = ws.get("ce.probs", (N, V))
        if self.fused is not None:
            nll = ws.get("ce.nll", (N,), dtype=xp.float64)
            self.fused.cross_entropy(z, targets, p, nll, keep)
            if keep:
                self.probs, self.targets = p, targets
            return float(nll.mean())
        s, shift = exp_shifted(z, p, 1, ws.ones(V), xp)  # p = exp(z - shift), row sums s
        logsumexp = xp.log(s) + shift.reshape(-1)
        nll = logsumexp - z[xp.arange(N), targets]
        loss = float(nll.astype(xp.float64).mean())
        if keep:
            xp.reciprocal(s, out=s)
            p *= s[:, None]
            self.probs, self.targets = p, targets
        return loss

    def backward(self, scale=1.0):  # -> (N, V)
        xp = self.xp
        dz, targets = self.probs, self.targets
        N = dz.shape[0]
        if self.fused is not None:
            self.fused.cross_entropy_backward(dz, targets, scale)
        else:
            dz[xp.arange(N), targets] -= 1.0
            dz *= scale / N
        self.probs = None
        return dz
