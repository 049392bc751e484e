"""The model: GPT-2 in NumPy with hand-written backward passes.

``GPT`` (the model), ``ParamStore`` (flat parameter and gradient buffers with named
views), ``KVCache`` (keys and values for generation), ``param_specs`` (stable names).
"""

from mnemos.nn.gpt import GPT, param_specs
from mnemos.nn.kvcache import KVCache
from mnemos.nn.params import ParamStore

__all__ = ["GPT", "KVCache", "ParamStore", "param_specs"]
