"""A plain PyTorch GPT-2 of exactly Mnemos' shape and parameter names.

The peer for parity tests and benchmarks (never imported by ``mnemos/``): nanoGPT's
model written with the same parameter layout as Mnemos (linear weights stored
``(in, out)`` like Hugging Face's Conv1D, head tied to ``wte``), so that
``named_parameters()`` match ``GPT.state_dict()`` name for name.

    from benchmarks._torch_gpt import torch_gpt_from_state_dict
    tmodel = torch_gpt_from_state_dict(model.state_dict(), model.config)
    logits, loss = tmodel(idx, targets)
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class Conv1D(nn.Module):
    """``y = x @ weight + bias`` with ``weight`` of shape ``(in, out)``."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        shape = x.shape[:-1] + (self.weight.shape[1],)
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(shape)


class LayerNorm(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.bias = nn.Parameter(torch.zeros(n))

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.n_head, self.n_embd, self.dropout = config.n_head, config.n_embd, config.dropout
        self.c_attn = Conv1D(config.n_embd, 3 * config.n_embd)
        self.c_proj = Conv1D(config.n_embd, config.n_embd)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                           is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = Conv1D(config.n_embd, 4 * config.n_embd)
        self.c_proj = Conv1D(4 * config.n_embd, config.n_embd)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class TorchGPT(nn.Module):
    """GPT-2 (pre-LN, tied head) with Mnemos' parameter names and layouts."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.wte = nn.Parameter(torch.empty(config.vocab_size, config.n_embd))
        self.wpe = nn.Parameter(torch.empty(config.block_size, config.n_embd))
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = LayerNorm(config.n_embd)
        std = 0.02
        for name, p in self.named_parameters():
            if p.dim() == 2:
                nn.init.normal_(p, 0.0, std / math.sqrt(2 * config.n_layer) if name.endswith("c_proj.weight") else std)

    def forward(self, idx, targets=None):
        T = idx.shape[1]
        x = self.drop(self.wte[idx] + self.wpe[:T])
        for block in self.h:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.T
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        return logits, loss


def torch_gpt_from_state_dict(state: dict, config, dtype=torch.float32) -> TorchGPT:
    """A ``TorchGPT`` holding the weights of a Mnemos ``GPT.state_dict()``."""
    model = TorchGPT(config).to(dtype)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.from_numpy(np.asarray(state[name])).to(dtype))
    return model


def grads_by_name(model: TorchGPT) -> dict[str, np.ndarray]:
    """Gradients as NumPy arrays keyed by Mnemos parameter names."""
    return {name: p.grad.detach().numpy().copy() for name, p in model.named_parameters()}


def decays(name: str, shape) -> bool:
    """Mnemos' rule: weight decay on 2-D matrices except the position embedding."""
    return len(shape) == 2 and name != "wpe"


def make_adamw(model: TorchGPT, lr=1e-3, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1):
    """``torch.optim.AdamW`` with nanoGPT-style decay / no-decay parameter groups."""
    named = list(model.named_parameters())
    groups = [
        {"params": [p for n, p in named if decays(n, p.shape)], "weight_decay": weight_decay},
        {"params": [p for n, p in named if not decays(n, p.shape)], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, foreach=True)
