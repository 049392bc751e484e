"""mnemos.parallel: data-parallel workers give the one-process loss and gradients, are
deterministic and resumable, report a dead or failing worker, and never outlive their parent."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from mnemos.config import ModelConfig, TrainConfig
from mnemos.errors import WorkerError
from mnemos.nn import GPT
from mnemos import parallel
from mnemos.parallel import DataParallel, blas_kernel_env, split_rows
from mnemos.trainer import Trainer

CFG = ModelConfig(vocab_size=61, n_layer=2, n_head=2, n_embd=16, block_size=8, dropout=0.0)
DROPOUT_CFG = ModelConfig(vocab_size=61, n_layer=2, n_head=2, n_embd=16, block_size=8, dropout=0.2)


def batch(B, T=8, seed=0, vocab=61):
    rng = np.random.default_rng(seed)
    return rng.integers(0, vocab, (B, T)), rng.integers(0, vocab, (B, T))


def one_process(model, x, y):
    model.params.grad.fill(0)
    _, loss = model.forward(x, y, train=True)
    model.backward()
    return loss, model.params.grad.copy()


def running(pid):
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def gone(pid, within=30.0):
    """True once ``pid`` no longer runs (a guard against hanging, not a speed limit)."""
    deadline = time.monotonic() + within
    while running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture(scope="module")
def dp3():
    model = GPT(CFG, seed=3)
    with DataParallel(model, 3, max_batch=8, seed=11) as dp:
        yield model, dp


def test_split_rows_covers_the_batch_in_near_equal_contiguous_shares():
    assert split_rows(12, 2) == [(0, 6), (6, 12)]
    assert split_rows(5, 3) == [(0, 2), (2, 4), (4, 5)]
    assert split_rows(2, 3) == [(0, 1), (1, 2), (2, 2)]
    for B in range(1, 20):
        for n in range(1, 6):
            shares = split_rows(B, n)
            assert shares[0][0] == 0 and shares[-1][1] == B
            assert all(a[1] == b[0] for a, b in zip(shares, shares[1:]))
            sizes = [hi - lo for lo, hi in shares]
            assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("B", [6, 7, 2])  # even shares, uneven shares, a worker left idle
def test_loss_and_gradients_equal_one_process(dp3, B):
    model, dp = dp3
    x, y = batch(B, seed=B)
    ref_loss, ref_grad = one_process(model, x, y)
    model.params.grad.fill(0)
    loss = dp.loss_and_grad(x, y)
    assert loss == pytest.approx(ref_loss, rel=1e-6, abs=1e-6)
    np.testing.assert_allclose(model.params.grad, ref_grad, rtol=1e-5, atol=1e-6)
    assert np.abs(ref_grad).max() > 1e-3  # the comparison is not between zeros


def test_an_evaluation_batch_shared_by_the_workers_has_one_process_loss_without_dropout():
    model = GPT(DROPOUT_CFG, seed=3)
    with DataParallel(model, 2, max_batch=8, seed=11) as dp:
        for B in (6, 7, 1):  # even shares, uneven, a worker left idle
            x, y = batch(B, seed=20 + B)
            want = float(model.forward(x, y, train=False)[1])  # no dropout when evaluating
            assert dp.loss(x, y) == pytest.approx(want, rel=1e-6, abs=1e-6)
            assert dp.loss_and_grad(x, y) != pytest.approx(want, rel=1e-4)  # training's forward drops out
            model.params.grad.fill(0.5)
            dp.loss(x, y)
            assert (model.params.grad == 0.5).all()  # forward only: nothing written to the gradient


@pytest.mark.parametrize("B", [7, 2, 1])  # three shares, two, one
def test_the_first_micro_batch_overwrites_and_scale_weights_it(dp3, B):
    """accumulate=False writes the (scaled) gradient over the parent's buffer, NaN and
    all; the next micro-batch adds to it, as the trainer's grad_accum steps do."""
    model, dp = dp3
    x1, y1 = batch(B, seed=4)
    x2, y2 = batch(B, seed=5)
    loss1, g1 = one_process(model, x1, y1)
    _, g2 = one_process(model, x2, y2)
    model.params.grad[...] = np.nan
    assert dp.loss_and_grad(x1, y1, scale=0.5, accumulate=False) == pytest.approx(loss1, rel=1e-6)
    np.testing.assert_allclose(model.params.grad, g1 / 2, rtol=1e-5, atol=1e-6)
    dp.loss_and_grad(x2, y2, scale=0.5)
    np.testing.assert_allclose(model.params.grad, (g1 + g2) / 2, rtol=1e-5, atol=1e-6)


def test_gradients_accumulate_and_follow_the_parents_weights(dp3):
    model, dp = dp3
    x1, y1 = batch(8, seed=1)
    x2, y2 = batch(8, seed=2)
    _, g1 = one_process(model, x1, y1)
    _, g2 = one_process(model, x2, y2)
    model.params.grad.fill(0)
    dp.loss_and_grad(x1, y1)
    dp.loss_and_grad(x2, y2)  # += like model.backward(): micro-batches accumulate
    np.testing.assert_allclose(model.params.grad, g1 + g2, rtol=1e-5, atol=1e-6)
    saved = model.params.data.copy()
    try:
        model.params.data *= 0.5  # the workers must see the parent's current weights
        ref_loss, ref_grad = one_process(model, x1, y1)
        model.params.grad.fill(0)
        assert dp.loss_and_grad(x1, y1) == pytest.approx(ref_loss, rel=1e-6)
        np.testing.assert_allclose(model.params.grad, ref_grad, rtol=1e-5, atol=1e-6)
    finally:
        model.params.data[...] = saved


def test_a_failing_worker_raises_a_worker_error_and_stops_the_others():
    model = GPT(CFG, seed=0)
    dp = DataParallel(model, 2, max_batch=4)
    pids = list(dp.pids)
    x, y = batch(4)
    x[3, 0] = 10_000  # out of the vocabulary: the second worker's embedding lookup fails
    with pytest.raises(WorkerError, match=r"worker 2 of 2 failed: \w+Error: "):
        dp.loss_and_grad(x, y)
    assert dp.closed and all(gone(pid) for pid in pids)
    with pytest.raises(WorkerError, match="stopped"):
        dp.loss_and_grad(*batch(4))


def test_a_killed_worker_raises_a_worker_error_instead_of_hanging():
    model = GPT(CFG, seed=0)
    dp = DataParallel(model, 2, max_batch=4)
    survivor = dp.pids[0]
    os.kill(dp.pids[1], signal.SIGKILL)
    assert gone(dp.pids[1])
    with pytest.raises(WorkerError, match=r"worker 2 of 2 died \(killed by SIGKILL\)"):
        dp.loss_and_grad(*batch(4))
    assert gone(survivor)


def test_close_stops_every_worker_and_is_idempotent():
    dp = DataParallel(GPT(CFG), 2, max_batch=2)
    pids = list(dp.pids)
    assert all(running(pid) for pid in pids)
    dp.close()
    dp.close()
    assert all(gone(pid) for pid in pids)


def test_workers_exit_when_their_parent_is_killed(tmp_path):
    script = textwrap.dedent("""
        import os, signal, sys
        from mnemos.config import ModelConfig
        from mnemos.nn import GPT
        from mnemos.parallel import DataParallel
        dp = DataParallel(GPT(ModelConfig(vocab_size=61, n_layer=1, n_head=2, n_embd=16, block_size=8)), 2, 2)
        print(*dp.pids, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup of any kind runs
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == -signal.SIGKILL, out.stderr
    pids = [int(p) for p in out.stdout.split()]
    assert len(pids) == 2 and all(gone(pid) for pid in pids)


def test_dropout_masks_are_reproducible_by_key_and_differ_between_keys():
    model = GPT(DROPOUT_CFG, seed=1)
    x, y = batch(6)
    with DataParallel(model, 2, max_batch=6, seed=5) as dp:
        runs = {}
        for key in [(0, 0), (0, 0), (1, 0), (0, 1)]:
            model.params.grad.fill(0)
            runs.setdefault(key, []).append((dp.loss_and_grad(x, y, key=key), model.params.grad.copy()))
    (l_a, g_a), (l_b, g_b) = runs[(0, 0)]
    assert l_a == l_b and np.array_equal(g_a, g_b)
    for other in [(1, 0), (0, 1)]:
        assert not np.array_equal(runs[other][0][1], g_a)


# ---------------------------------------------------------------- through the trainer

TRAIN = TrainConfig(tokenizer_vocab=256, batch_size=6, grad_accum=2, max_steps=12, warmup_steps=2, lr=3e-3,
                    min_lr=3e-4, eval_interval=6, eval_steps=1, sample_tokens=0, seed=3)
WORDS = "the king is dead long live the queen and all her men ride to the sea at dawn".split()


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "train.txt"
    path.write_text("\n".join(" ".join(rng.choice(WORDS, 8)) for _ in range(200)) + "\n", encoding="utf-8")
    return path


def run(text_file, out, workers, model_cfg=CFG, **changes):
    cfg = TrainConfig(**{**TRAIN.to_dict(), "workers": workers, **changes})
    events = []
    trainer = Trainer.new(model_cfg, cfg, text_file, out_dir=out, callback=events.append)
    done = trainer.run()
    assert done.reason == "finished", [getattr(e, "message", "") for e in events]
    return trainer, events


def test_training_with_two_workers_follows_the_one_process_run(text_file, tmp_path):
    one, ev1 = run(text_file, tmp_path / "one", workers=1)
    two, ev2 = run(text_file, tmp_path / "two", workers=2)
    steps1 = [e.loss for e in ev1 if e.kind == "step"]
    steps2 = [e.loss for e in ev2 if e.kind == "step"]
    np.testing.assert_allclose(steps2, steps1, rtol=1e-4)  # float32 rounding, grown over 12 AdamW steps
    np.testing.assert_allclose(two.model.params.data, one.model.params.data, rtol=1e-3, atol=1e-5)
    assert two.parallel is not None and two.parallel.closed  # the workers ended with the run
    assert all(gone(pid) for pid in two.parallel.pids)


def test_two_worker_runs_are_deterministic_and_resume_bit_for_bit(text_file, tmp_path):
    """Dropout on, two micro-batches per step: 12 straight steps == the same again ==
    7 steps, stop, resume, 5 more (the workers' dropout comes from seed + step)."""
    straight, _ = run(text_file, tmp_path / "straight", workers=2, model_cfg=DROPOUT_CFG)
    again, _ = run(text_file, tmp_path / "again", workers=2, model_cfg=DROPOUT_CFG)
    assert np.array_equal(again.model.params.data, straight.model.params.data)
    cfg = TrainConfig(**{**TRAIN.to_dict(), "workers": 2})
    holder = {}
    first = Trainer.new(DROPOUT_CFG, cfg, text_file, out_dir=tmp_path / "split",
                        callback=lambda e: e.kind == "step" and e.step == 7 and holder["t"].stop())
    holder["t"] = first
    assert first.run().reason == "stopped" and first.step == 7
    resumed = Trainer.from_checkpoint(tmp_path / "split")
    assert resumed.run().reason == "finished" and resumed.step == 12
    assert np.array_equal(resumed.model.params.data, straight.model.params.data)
    assert np.array_equal(resumed.optimizer.m, straight.optimizer.m)


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc to find the workers")
def test_ctrl_c_on_the_cli_saves_stops_the_workers_and_exits_130(text_file, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "mnemos", "train", "--data", str(text_file), "--out", str(out), "--workers", "2",
           "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "8", "--batch-size", "4",
           "--vocab-size", "256", "--max-steps", "100000", "--eval-interval", "100000", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        for line in proc.stdout:  # wait until training runs
            if '"event": "step"' in line:
                break
        workers = children(proc.pid)
        assert len(workers) == 2
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl+C: the whole foreground group
        rest, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert '"reason": "interrupt"' in rest  # the checkpoint event
    assert (out / "model.npz").exists()
    assert all(gone(pid) for pid in workers)


def test_an_exception_in_the_training_loop_stops_the_workers(text_file, tmp_path):
    cfg = TrainConfig(**{**TRAIN.to_dict(), "workers": 2})
    holder = {}

    def callback(event):
        if event.kind == "step" and event.step == 2:
            holder["pids"] = list(holder["t"].parallel.pids)
            raise RuntimeError("the user interface fell over")

    trainer = holder["t"] = Trainer.new(CFG, cfg, text_file, out_dir=tmp_path / "run", callback=callback)
    with pytest.raises(RuntimeError, match="fell over"):
        trainer.run()
    assert trainer.parallel.closed and all(gone(pid) for pid in holder["pids"])


def test_weights_live_in_shared_memory_while_open():
    """The parent's weights and gradient are the shared buffers while the workers run
    (no copy per micro-batch; updates in place reach the workers) and private arrays with
    the same values after close, where the model still trains in one process."""
    model = GPT(CFG, seed=5)
    before = model.params.data.copy()
    with DataParallel(model, 2, 4) as dp:
        assert model.params.data is dp._data and model.params.grad is dp._grad
        np.testing.assert_array_equal(model.params.data, before)
        x, y = batch(4)
        model.params.grad.fill(0)
        dp.loss_and_grad(x, y)
        model.params.data *= 0.5  # an in-place update, as AdamW does
        ref = GPT(CFG, seed=5)
        ref.params.data[...] = model.params.data
        loss = dp.loss_and_grad(x, y)
        ref_loss, _ = one_process(ref, x, y)
        assert loss == pytest.approx(float(ref_loss), rel=1e-5)
        during = model.params.data.copy()
    assert dp.closed and model.params.data.base is None  # an array of its own again
    np.testing.assert_array_equal(model.params.data, during)
    one_process(model, x, y)


ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
flags\t\t: fpu sse2 avx2 fma avx512f avx512dq avx512bw avx512vl

processor\t: 1
vendor_id\t: GenuineIntel
"""


def test_blas_kernels_are_chosen_for_zen_4_only_and_the_users_choice_wins():
    assert blas_kernel_env({}, ZEN4) == {"OPENBLAS_CORETYPE": "Haswell"}
    assert blas_kernel_env({"OPENBLAS_CORETYPE": "SkylakeX"}, ZEN4) == {}  # the user's choice stands
    assert blas_kernel_env({}, ZEN4.replace("avx512f ", "")) == {}  # Zen 3: no AVX-512
    assert blas_kernel_env({}, ZEN4.replace(": 25", ": 26")) == {}  # Zen 5: full-width AVX-512, not measured
    assert blas_kernel_env({}, ZEN4.replace("AuthenticAMD", "GenuineIntel")) == {}
    assert blas_kernel_env({}, "") == {}


@pytest.mark.skipif(not os.path.exists("/proc/self/environ"), reason="reads the workers' environment from /proc")
def test_workers_start_with_the_chosen_blas_kernels_and_compute_the_same(monkeypatch):
    monkeypatch.setattr(parallel, "blas_kernel_env", lambda: {"OPENBLAS_CORETYPE": "Haswell"})
    model = GPT(CFG, seed=6)
    ref = GPT(CFG, seed=6)
    x, y = batch(4)
    with DataParallel(model, 2, 4) as dp:
        for pid in dp.pids:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
            assert b"OPENBLAS_CORETYPE=Haswell" in env and b"OPENBLAS_NUM_THREADS=1" in env
        loss = dp.loss_and_grad(x, y, accumulate=False)
        grad = model.params.grad.copy()
    ref_loss, ref_grad = one_process(ref, x, y)
    assert loss == pytest.approx(ref_loss, rel=1e-6, abs=1e-6)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-6)


def test_a_stopped_worker_raises_a_worker_error_instead_of_hanging(monkeypatch):
    """SIGSTOP on a worker (Ctrl+Z on its own, a debugger): the parent says so instead of
    waiting for it forever; closing kills the stopped worker too."""
    monkeypatch.setattr(parallel, "STOPPED_S", 0.3)
    dp = DataParallel(GPT(CFG, seed=0), 2, max_batch=4)
    pids = list(dp.pids)
    os.kill(pids[1], signal.SIGSTOP)
    with pytest.raises(WorkerError, match=rf"worker 2 of 2 \(pid {pids[1]}\) is stopped .*kill -CONT {pids[1]}"):
        dp.loss_and_grad(*batch(4))
    assert dp.closed and all(gone(pid) for pid in pids)


def test_workers_ignore_term_and_hup_the_parent_decides():
    """systemd's SIGTERM reaches every process of the service: the workers leave stopping
    (after a save) to the parent."""
    dp = DataParallel(GPT(CFG, seed=0), 2, max_batch=4)
    try:
        for pid in dp.pids:
            os.kill(pid, signal.SIGTERM)
            os.kill(pid, signal.SIGHUP)
        x, y = batch(4)
        assert np.isfinite(dp.loss_and_grad(x, y))
    finally:
        dp.close()


def test_the_parent_runs_one_blas_thread_while_the_workers_live():
    """Its evaluations then take steady times on a machine busier than its cores (see DataParallel)."""
    before = parallel.set_blas_threads(3)
    if before is None:
        pytest.skip("no OpenBLAS loaded in this process")
    try:
        dp = DataParallel(GPT(CFG), 2, max_batch=2)
        assert parallel.set_blas_threads(1) == 1
        dp.close()
        assert parallel.set_blas_threads(3) == 3  # put back
    finally:
        parallel.set_blas_threads(before)
