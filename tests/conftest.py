"""Fixtures shared by tests/ and tests/tui/."""

import sys

import pytest


@pytest.fixture
def simulated_gpu(monkeypatch):
    """``cupy`` (and ``cupyx``) stood in for by tests/cuda_sim.py: NumPy arrays, the CUDA
    kernels compiled for the CPU. Skips where there is no C++ compiler to build them."""
    import cuda_sim

    if cuda_sim.CXX is None:
        pytest.skip("no C++ compiler (g++) to build the simulated CUDA kernels")
    from mnemos import backend

    monkeypatch.setattr(backend, "_KERNELS", dict(backend._KERNELS))  # the simulator's kernels go with it
    monkeypatch.setitem(sys.modules, "cupy", cuda_sim.cupy_module())
    monkeypatch.setitem(sys.modules, "cupyx", cuda_sim.cupyx_module())
    return cuda_sim.cupy_module()


@pytest.fixture(scope="session")
def hf_gpt2_dir(tmp_path_factory):
    """A small random GPT-2 folder as ``save_pretrained`` writes it (see tests/hf_models.py)."""
    pytest.importorskip("torch", reason="the Hugging Face model is made by transformers, which needs torch")
    pytest.importorskip("transformers", reason="the Hugging Face model is made by transformers")
    from hf_models import save_gpt2

    return save_gpt2(tmp_path_factory.mktemp("hf") / "gpt2")
