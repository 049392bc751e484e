"""Data-parallel training on all CPU cores: the batch is split across worker processes.

One NumPy process leaves cores idle: BLAS threads its matmuls, but every elementwise op,
softmax, LayerNorm and small attention matmul runs on one core. ``DataParallel`` starts
``n`` worker processes instead, each with single-threaded BLAS and its own copy of the
model code, and gives each a contiguous share of the batch's rows. Per micro-batch:

1. the parent copies the batch into shared memory and sends each worker its rows (a few
   bytes through a pipe); the weights need no copy: the parent's model keeps its weights
   and its gradient in the shared file (``GPT.rebind_params``), so AdamW updates the very
   buffer the workers read;
2. worker ``r`` runs forward(train=True) + backward on rows ``[lo, hi)``, writing the
   gradient over its own buffer (``backward(accumulate=False)``, so nothing needs
   zeroing), scaled by its share of the batch ``(hi - lo) / B``;
3. the parent adds the workers' gradients into ``model.params.grad`` in rank order, so
   the sum is deterministic (one pass over the buffers, split across the cores), and
   returns the batch's mean loss. Clipping and AdamW then run in the parent on the
   summed gradient, exactly as with one process.

Evaluation batches are shared the same way, forward only (:meth:`DataParallel.loss`).

The result equals one process on the whole batch up to float32 rounding (the mean loss
of the batch is the share-weighted mean of the shares' mean losses, and likewise its
gradient). Dropout masks come from a generator that each worker re-seeds per micro-batch
from ``(seed, step, micro, rank)``, so a run is reproducible and resumable bit for bit
for a given worker count without saving any worker state.

Why processes, not threads: threads take turns on the interpreter lock between the
layers' many small NumPy calls, and measured slower (docs/measurements.md).

How the workers are made, and why not ``multiprocessing``: its ``spawn`` start method
re-runs the user's main script in every worker (a script without the ``__main__`` guard
fails, and the TUI would be re-imported), and ``fork`` inherits the parent's multi-threaded
BLAS and is unsafe in a process that runs threads (the TUI). So each worker is a fresh
``python -m mnemos.parallel`` started with its BLAS set to one thread, handed two file
descriptors: a socket (a :class:`multiprocessing.connection.Connection` on each end) and
an *unlinked* temporary file in ``/dev/shm`` that both sides memory-map (the weights,
the parent's gradient, one gradient buffer per worker, the batch). The file has no name, so nothing can leak:
the kernel frees it when the last process holding it exits, however it exits.

Workers never outlive the trainer: they run in a session of their own and ignore Ctrl+C,
SIGTERM and SIGHUP (the parent decides when to stop, after saving a checkpoint), exit as soon as their
socket reports the parent gone (closed, crashed or killed) or their parent process id
changes, and :meth:`DataParallel.close` (also run on garbage collection and at
interpreter exit) asks them to stop, then terminates and kills them. A worker that
dies or fails raises :class:`~mnemos.errors.WorkerError` in the parent within ``POLL_S``
seconds, with the worker's last error line, instead of hanging it; so does one stopped
(SIGSTOP) for ``STOPPED_S`` seconds, or silent for ``REPLY_TIMEOUT_S``.
"""

from __future__ import annotations

import mmap
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from multiprocessing.connection import Connection

import numpy as np

from mnemos.errors import ConfigError, WorkerError
from mnemos.optim import run_chunked

POLL_S = 0.2  # how often a waiting parent checks that its workers live, and vice versa
STOPPED_S = 5.0  # a worker stopped (SIGSTOP, Ctrl+Z on its own) this long fails the step
REPLY_TIMEOUT_S = 1800.0  # no answer at all this long (a hung worker) fails the step too
_SINGLE_THREADED = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_ADVICE = "resume from the last checkpoint, with --workers 1 if it happens again"
_ALIGN = 64  # bytes: every shared array starts on a cache line


def set_blas_threads(n: int) -> int | None:
    """Set this process's BLAS threads to ``n`` (OpenBLAS, as NumPy's wheels bundle it, found
    among the loaded libraries) and return the previous count; None, changing nothing, where
    no OpenBLAS is loaded (another BLAS, or no ``/proc``)."""
    import ctypes

    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            libs = {line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line}
    except OSError:
        return None
    for lib in sorted(libs):
        try:
            dll = ctypes.CDLL(lib)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", ""):
                get = getattr(dll, f"{prefix}_get_num_threads{suffix}", None)
                set_ = getattr(dll, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and set_ is not None:
                    before = int(get())
                    set_(ctypes.c_int(n))
                    return before
    return None


def blas_kernel_env(environ=os.environ, cpuinfo: str | None = None) -> dict[str, str]:
    """``{"OPENBLAS_CORETYPE": "Haswell"}`` for the workers on an AMD Zen 4 CPU, else ``{}``.

    On Zen 4 (AMD family 25 with AVX-512) OpenBLAS picks its SkylakeX kernels, written for
    Intel's full-width 512-bit units; Zen 4 runs each 512-bit instruction as two 256-bit
    halves, and OpenBLAS's AVX2 (Haswell) kernels measured faster there for the workers'
    single-threaded matmuls, not for one process with 2-threaded BLAS, so only the workers
    get it (figures: docs/measurements.md; ``benchmarks/parallel_speed.py --blas-kernels``).
    A user's own ``OPENBLAS_CORETYPE`` wins; other CPUs, and BLAS libraries other than
    OpenBLAS (which ignore the variable), are left as they are. ``cpuinfo`` defaults to
    the text of ``/proc/cpuinfo`` (absent off Linux: no change).
    """
    if "OPENBLAS_CORETYPE" in environ:
        return {}
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
                cpuinfo = f.read(1 << 16)  # the first processor's block is enough
        except OSError:
            return {}
    fields = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if fields:
                break  # the end of the first processor's block
            continue
        fields.setdefault(key.strip(), value.strip())
    zen4 = (fields.get("vendor_id") == "AuthenticAMD" and fields.get("cpu family") == "25"
            and "avx512f" in fields.get("flags", "").split())
    return {"OPENBLAS_CORETYPE": "Haswell"} if zen4 else {}


def split_rows(batch: int, workers: int) -> list[tuple[int, int]]:
    """Contiguous ``[lo, hi)`` row ranges, one per worker, sizes differing by at most one
    (the first ``batch % workers`` get the extra row). Empty when batch < workers."""
    base, extra = divmod(batch, workers)
    bounds, lo = [], 0
    for r in range(workers):
        hi = lo + base + (1 if r < extra else 0)
        bounds.append((lo, hi))
        lo = hi
    return bounds


class _Layout:
    """Byte offsets of the shared arrays: weights, the parent's (summed) gradient, one
    gradient per worker, x and y."""

    def __init__(self, n_params: int, dtype, workers: int, max_tokens: int):
        self.n_params, self.dtype, self.workers, self.max_tokens = n_params, np.dtype(dtype).str, workers, max_tokens
        self.args = (n_params, self.dtype, workers, max_tokens)  # what a worker rebuilds it from
        size = lambda n, dt: -(-n * np.dtype(dt).itemsize // _ALIGN) * _ALIGN  # noqa: E731
        p = size(n_params, dtype)
        self.data, self.grad = 0, p
        self.grads = [p * (2 + r) for r in range(workers)]
        self.x = p * (2 + workers)
        self.y = self.x + size(max_tokens, np.int64)
        self.nbytes = self.y + size(max_tokens, np.int64)

    def arrays(self, buf):
        """``(data, grad, [grad_r], x, y)`` as NumPy views of the shared buffer."""
        view = lambda off, n, dt: np.ndarray((n,), dtype=dt, buffer=buf, offset=off)  # noqa: E731
        return (view(self.data, self.n_params, self.dtype), view(self.grad, self.n_params, self.dtype),
                [view(off, self.n_params, self.dtype) for off in self.grads],
                view(self.x, self.max_tokens, np.int64), view(self.y, self.max_tokens, np.int64))


def _shared_file(nbytes: int):
    """An unlinked, ``nbytes``-long temporary file, in RAM (``/dev/shm``) where there is one."""
    folder = "/dev/shm" if os.path.isdir("/dev/shm") else None
    f = tempfile.TemporaryFile(dir=folder)
    f.truncate(nbytes)
    return f


def _worker_main(sock_fd: int, mem_fd: int) -> None:
    """A worker's life (``python -m mnemos.parallel SOCK_FD MEM_FD``): receive the
    layout, map the shared file, serve steps, exit when stopped or orphaned."""
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):  # stopping is the parent's to decide (it saves first)
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    conn = Connection(sock_fd)
    try:
        _, layout_args, config, seed, rank, parent_pid = conn.recv()
        layout = _Layout(*layout_args)
        with mmap.mmap(mem_fd, layout.nbytes) as buf:
            _serve(conn, buf, layout, config, seed, rank, parent_pid)
    except (EOFError, OSError):
        pass  # the parent went away
    except BufferError:
        pass  # a failed step's traceback still holds a view of the mapping; exiting anyway
    finally:
        conn.close()


def _serve(conn, buf, layout: _Layout, config: dict, seed: int, rank: int, parent_pid: int) -> None:
    """Build the model on the shared buffers, then answer ``("step", lo, hi, B, T, key,
    scale)`` (forward and backward) and ``("loss", lo, hi, B, T)`` (forward only, for
    evaluation) messages until told to stop or orphaned."""
    from mnemos.config import ModelConfig
    from mnemos.nn import GPT, ParamStore, param_specs

    data, _, grads, xs, ys = layout.arrays(buf)
    cfg = ModelConfig.from_dict(config)
    grad = grads[rank]
    model = GPT(cfg, dtype=layout.dtype, seed=seed,
                params=ParamStore(param_specs(cfg), layout.dtype, np, data=data, grad=grad))
    conn.send(("ready", os.getpid()))
    while True:
        if not conn.poll(POLL_S):
            if os.getppid() != parent_pid:
                return  # the parent died and the socket did not say so
            continue
        msg = conn.recv()
        if msg[0] == "stop":
            return
        kind, lo, hi, B, T = msg[:5]
        try:
            x = xs[:B * T].reshape(B, T)[lo:hi]
            y = ys[:B * T].reshape(B, T)[lo:hi]
            if kind == "loss":
                conn.send(("ok", float(model.forward(x, y, train=False)[1])))
                continue
            key, scale = msg[5:]
            if cfg.dropout > 0:
                model.rng.bit_generator.state = np.random.PCG64([seed, 3, *key, rank]).state
            _, loss = model.forward(x, y, train=True)
            model.backward(scale=scale * (hi - lo) / B, accumulate=False)
            conn.send(("ok", float(loss)))
        except Exception as exc:  # reported to the parent, which raises WorkerError
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class _Worker:
    """The parent's handle on one worker: its process, its socket, its stderr file."""

    def __init__(self, rank: int, mem_fd: int):
        self.rank = rank
        parent_end, child_end = socket.socketpair()
        self.stderr = tempfile.TemporaryFile()
        # the worker imports this very copy of mnemos, whatever the current directory
        path = os.pathsep.join(p for p in (_PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, **_SINGLE_THREADED, **blas_kernel_env(), "PYTHONPATH": path}
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mnemos.parallel", str(child_end.fileno()), str(mem_fd)],
                pass_fds=(child_end.fileno(), mem_fd), env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=self.stderr,
                start_new_session=True)  # out of the terminal's process group: Ctrl+C is for the parent
        except BaseException:
            parent_end.close()
            raise
        finally:
            child_end.close()
        self.conn = Connection(parent_end.detach())

    def last_error_line(self) -> str:
        """The last line the worker wrote to stderr (its traceback's last line), if any."""
        try:
            self.stderr.seek(0)
            lines = [ln.strip() for ln in self.stderr.read().decode(errors="replace").splitlines() if ln.strip()]
        except (OSError, ValueError):
            return ""
        return lines[-1] if lines else ""


class DataParallel:
    """``workers`` processes computing one micro-batch's loss and gradient together.

    ``model`` is the parent's model: its weights and gradient move into the shared
    memory for as long as this object is open (and back into private arrays on
    :meth:`close`), so it stays the one source of truth; ``max_batch`` bounds the rows of a
    micro-batch; ``seed`` derives the workers' dropout generators. Use as a context
    manager or call :meth:`close`; garbage collection and interpreter exit close it too.

    While it is open the parent's BLAS runs one thread, as the workers' do: the parent's
    own work between steps (evaluation, the sample, the optimizer) is small, and on a
    machine busier than its cores two BLAS threads spin against the workers and each other
    (a forward pass of the 2-layer 64-wide model at batch 16 x 128, at load 10 on 2 cores:
    0.23-1.0 s with two threads, 0.04-0.15 s with one). A time budget plans with the
    evaluation's measured time, so an evaluation that varied 2-10x made budgeted runs end
    early or late.
    """

    def __init__(self, model, workers: int, max_batch: int, seed: int = 0):
        if workers < 2:
            raise ValueError("DataParallel needs at least 2 workers (1 worker is the plain model)")
        if os.name != "posix":
            raise ConfigError("--workers above 1 needs a POSIX system (Linux, macOS); use --workers 1")
        xp = getattr(model, "xp", np)
        if xp is not np:
            raise ConfigError("data-parallel workers run on the CPU; use --workers 1 with --device cuda")
        self.model, self.workers, self.seed = model, workers, seed
        cfg = model.config
        self.layout = _Layout(model.params.size, model.dtype, workers, max_batch * cfg.block_size)
        self._file = _shared_file(self.layout.nbytes)
        self._mmap = mmap.mmap(self._file.fileno(), self.layout.nbytes)
        self._data, self._grad, self._grads, self._x, self._y = self.layout.arrays(self._mmap)
        model.rebind_params(self._data, self._grad)
        self._workers: list[_Worker] = []
        self._closed = False
        # runs on close(), on garbage collection, or at interpreter exit
        self._finalizer = weakref.finalize(self, _shutdown, self._workers, self._file)
        try:
            for rank in range(workers):
                self._workers.append(_Worker(rank, self._file.fileno()))
            for w in self._workers:
                self._send(w, ("init", self.layout.args, cfg.to_dict(), seed, w.rank, os.getpid()))
            self.pids = [self._receive(w)[1] for w in self._workers]
        except BaseException:
            self.close()
            raise
        self._blas_threads = set_blas_threads(1)  # (put back on close)

    # ---------------------------------------------------------------- the work

    def loss_and_grad(self, x: np.ndarray, y: np.ndarray, key: tuple[int, int] = (0, 0),
                      scale: float = 1.0, accumulate: bool = True) -> float:
        """Add d(``scale`` x mean loss over the batch)/d(params) into ``model.params.grad``
        (write it there with ``accumulate=False``) and return the mean loss, like
        ``forward(x, y, train=True)`` + ``backward(scale, accumulate)`` on the model.
        ``key`` (step, micro-batch) seeds the workers' dropout masks."""
        loss, shares = self._share_out(x, y, ("step", tuple(int(k) for k in key), float(scale)))
        self._sum_grads([self._grads[w.rank] for w, _, _ in shares], accumulate)
        return loss

    def loss(self, x: np.ndarray, y: np.ndarray) -> float:
        """The mean loss over the batch without dropout, like ``forward(x, y, train=False)``
        on the model: an evaluation batch, its rows shared by the workers."""
        return self._share_out(x, y, ("loss",))[0]

    def _share_out(self, x: np.ndarray, y: np.ndarray, kind: tuple) -> tuple[float, list]:
        """Send each worker its rows of the batch with the message ``kind``; return the
        batch's mean loss (the share-weighted mean of theirs) and the shares."""
        if self._closed:
            raise WorkerError("the data-parallel workers were stopped; start a new run")
        B, T = x.shape
        if B * T > self.layout.max_tokens:
            raise ValueError(f"a micro-batch of {B}x{T} tokens exceeds the {self.layout.max_tokens} reserved")
        self._x[:B * T] = x.reshape(-1)
        self._y[:B * T] = y.reshape(-1)
        shares = [(w, lo, hi) for w, (lo, hi) in zip(self._workers, split_rows(B, self.workers)) if hi > lo]
        try:
            for w, lo, hi in shares:
                self._send(w, (kind[0], lo, hi, B, T, *kind[1:]))
            losses = [self._receive(w)[1] for w, _, _ in shares]
        except BaseException:
            self.close()  # a half-finished step leaves the workers in an unknown state
            raise
        return sum((hi - lo) / B * loss for (_, lo, hi), loss in zip(shares, losses)), shares

    def _sum_grads(self, grads: list, accumulate: bool) -> None:
        """``model.params.grad (+)= grads[0] + grads[1] + ...``, always in this order
        (deterministic), in one pass split across the cores."""
        grad = self.model.params.grad

        def add(lo, hi):
            out = grad[lo:hi]
            terms = ([out] if accumulate else []) + [g[lo:hi] for g in grads]
            if len(terms) == 1:
                out[...] = terms[0]
                return
            np.add(terms[0], terms[1], out=out)  # the first two in one pass
            for t in terms[2:]:
                out += t

        run_chunked(add, grad.size)

    def _where(self, w: _Worker) -> str:
        return f"data-parallel worker {w.rank + 1} of {self.workers}"

    def _died(self, w: _Worker) -> WorkerError:
        code = w.proc.wait()
        detail = w.last_error_line()
        return WorkerError(f"{self._where(w)} died ({_exit_reason(code)}{': ' + detail if detail else ''}); {_ADVICE}")

    def _send(self, w: _Worker, msg) -> None:
        try:
            w.conn.send(msg)
        except OSError:
            raise self._died(w) from None

    def _receive(self, w: _Worker):
        """The next message from worker ``w``; raises WorkerError if it died, failed,
        stayed stopped (SIGSTOP) for ``STOPPED_S`` or gave no answer in ``REPLY_TIMEOUT_S``."""
        start = time.monotonic()
        stopped_since = None
        while True:
            try:
                if w.conn.poll(POLL_S):
                    msg = w.conn.recv()
                    break
            except (EOFError, OSError):
                msg = None
                break
            if w.proc.poll() is not None:
                msg = None
                break
            now = time.monotonic()
            if _process_state(w.proc.pid) in ("T", "t"):
                stopped_since = stopped_since or now
                if now - stopped_since > STOPPED_S:
                    raise WorkerError(f"{self._where(w)} (pid {w.proc.pid}) is stopped (SIGSTOP?) and does not "
                                      f"answer; continue it with `kill -CONT {w.proc.pid}` next time, or {_ADVICE}")
            else:
                stopped_since = None
            if now - start > REPLY_TIMEOUT_S:
                raise WorkerError(f"{self._where(w)} (pid {w.proc.pid}) gave no answer in {REPLY_TIMEOUT_S:.0f} s; "
                                  f"{_ADVICE}")
        if msg is None:
            raise self._died(w)
        if msg[0] == "error":
            raise WorkerError(f"{self._where(w)} failed: {msg[1]}; {_ADVICE}")
        return msg

    # ---------------------------------------------------------------- lifetime

    def close(self) -> None:
        """Stop the workers (politely, then by signal) and free the shared memory. Safe
        to call more than once."""
        if self._closed:
            return
        self._closed = True
        if getattr(self, "_blas_threads", None):
            set_blas_threads(self._blas_threads)
        params = self.model.params
        if params.data is self._data:  # the model gets private buffers again
            self.model.rebind_params(np.empty_like(params.data), np.empty_like(params.grad))
        self._data = self._grad = self._grads = self._x = self._y = None
        try:
            self._mmap.close()
        except BufferError:
            pass  # someone still holds a view; the mapping is freed with it
        self._finalizer()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "DataParallel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _shutdown(workers: list[_Worker], file) -> None:
    """Ask every worker to stop, wait a second, then terminate / kill; close the file."""
    for w in workers:
        try:
            w.conn.send(("stop",))
        except (OSError, ValueError):
            pass  # already gone
    for w in workers:
        try:
            w.proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            w.proc.terminate()
            try:
                w.proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
        w.conn.close()
        w.stderr.close()
    file.close()


def _process_state(pid: int) -> str:
    """The state letter of a process from ``/proc/<pid>/stat`` ("R", "S", "T" stopped ...);
    "" where there is no /proc (macOS) or the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return ""
    return stat[stat.rfind(")") + 2:][:1]


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


if __name__ == "__main__":
    _worker_main(int(sys.argv[1]), int(sys.argv[2]))
