"""The ``mnemos`` command line: parses arguments, calls the engine, prints results.

One ``_add_<command>`` function per subcommand registers its parser and its handler
(``set_defaults(handler=...)``); :data:`COMMANDS` lists them. A handler returns the exit
status. A :class:`MnemosError` anywhere becomes one line on stderr and exit status 2;
Ctrl+C, SIGTERM or SIGHUP during training saves a checkpoint and exits 130, 143 or 129. No training logic lives here.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

from mnemos.budget import format_duration
from mnemos.checkpoint import BEST, FORCE_REPLACES
from mnemos.config import (AUTO_BUDGET_S, AUTO_PRESET, DEFAULT_PRESET, GROUPS, PRESETS, SETTINGS, ModelConfig,
                           Preset, TrainConfig, configs_from, default_workers, get_preset)
from mnemos.errors import ConfigError, MnemosError
from mnemos.paths import RUNS_ROOT, TEST_DATA, TRAIN_DATA

EXIT_OK, EXIT_USER_ERROR = 0, 2
EXIT_BROKEN_PIPE = 141  # the reader of stdout went away (`| head`): what a SIGPIPE'd program returns
# what `timeout`, systemd, docker (TERM), a closed terminal (HUP) and Ctrl+C (INT) send: save, then exit 128 + N
TEXT_ARGS = ("prompt", "sample_prompt", "token")  # flags holding text (not paths: those may be any bytes)
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def catch_signals(handler, signals=STOP_SIGNALS) -> dict:
    """Install ``handler`` for ``signals`` and return the handlers it replaced (to put back).
    A signal the process was started ignoring stays ignored: under ``nohup`` a closed
    terminal (HUP) must not stop a run, as with any program."""
    return {s: signal.signal(s, handler) for s in signals if signal.getsignal(s) is not signal.SIG_IGN}


def _stdout_gone() -> None:
    """Point stdout at /dev/null once its reader has gone, so that later writes (and the
    flush at exit) do not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (plus exit 2) like every other error."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        self.exit(EXIT_USER_ERROR, one_line(f"{self.prog}: error: {message} (see `{self.prog} --help`)") + "\n")


def _json_safe(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def one_line(message) -> str:
    """``message`` as one printable line: a file name holding a newline or another control
    character (``\x85`` and ``\x0c`` break lines too) shows it escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(message))


def _print_json(obj: dict) -> None:
    print(json.dumps(_json_safe(obj)), flush=True)




# --------------------------------------------------------------------------- train


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model on a text file (or resume a run)",
                       description="Train a GPT on a UTF-8 text file. Flags override the preset.")
    p.add_argument("--data", help=f"training text (default {TRAIN_DATA})")
    p.add_argument("--val-data", help="validation text (default: the last 10%% of the training tokens)")
    p.add_argument("--out", help="run folder (default checkpoints/<timestamp>)")
    p.add_argument("--resume", metavar="DIR", help="continue the run saved in DIR")
    p.add_argument("--init-from", metavar="RUN", help="start a new run from the model saved in RUN (a run or "
                   "`mnemos import`): its weights and tokenizer, fine-tuning settings (lr 6e-5, 200 steps, "
                   "block <= 256) unless flags or --preset say otherwise; the shape cannot change")
    p.add_argument("--preset", help=f"starting point: {', '.join(f'{k} ({v.description})' for k, v in PRESETS.items())}"
                                    f", {AUTO_PRESET} (chosen for the text, the time budget and this machine, "
                                    f"saying why) (default {DEFAULT_PRESET}; {AUTO_PRESET} with --time-budget)")
    groups = {key: p.add_argument_group(title) for key, title in GROUPS.items()}
    for setting in SETTINGS:  # one flag per user-facing config field (mnemos.config)
        metavar = None if setting.choices else setting.label.upper().replace("-", "_")
        groups[setting.group].add_argument(setting.flag, dest=setting.name, type=_flag_type(setting.kind),
                                           metavar=metavar,
                                           choices=setting.choices, help=setting.help or None)
    p.add_argument("--force", action="store_true",
                   help="start a new run in an --out that holds one, replacing only the files a run writes ("
                        + ", ".join(name + "/" if name == BEST else name for name in FORCE_REPLACES)
                        + "); any other file there is kept")
    p.add_argument("--json", action="store_true", help="print one JSON object per event")
    p.set_defaults(handler=cmd_train)


def _flag_type(kind):
    """What argparse reads a flag's text with: ``kind``, a ``ConfigError`` from it (e.g.
    ``--time-budget abc``) turned into argparse's usage error (one line, exit 2)."""
    if kind in (int, float, str):
        return kind

    def read(text: str):
        try:
            return kind(text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return read


def _given(args: argparse.Namespace) -> dict:
    """The settings given as flags (the rest come from the preset, or from the run on ``--resume``)."""
    return {s.name: getattr(args, s.name) for s in SETTINGS if getattr(args, s.name) is not None}


def train_configs(args: argparse.Namespace) -> tuple[ModelConfig, TrainConfig]:
    """The preset's settings with every explicitly given flag on top (validated)."""
    return configs_from(args.preset, _given(args))


def auto_configs(args: argparse.Namespace) -> tuple[ModelConfig, TrainConfig, list[str]]:
    """``--preset auto``: the configs :func:`mnemos.autosize.plan` chooses for the training
    file and the budget (measured: a few seconds, cached), every explicit flag on top, and
    the reasons."""
    from mnemos.autosize import plan

    given = _given(args)
    budget = getattr(args, "time_budget", None) or AUTO_BUDGET_S
    workers = given.get("workers", default_workers())
    choice = plan(args.data or TRAIN_DATA, budget, workers, given.get("device", "cpu"), fixed=given)
    return (*configs_from(Preset(AUTO_PRESET, "", choice.model, choice.train), given), choice.reasons)


def _overrides(args: argparse.Namespace) -> dict:
    """Flags given explicitly on ``--resume``, over the preset's settings if one is named
    (the trainer refuses shape changes)."""
    out = _given(args)
    if args.preset:
        out = {**get_preset(args.preset).settings, **out}
    for k in ("data", "val_data"):
        if getattr(args, k) is not None:
            out[k] = getattr(args, k)
    return out


class ProgressPrinter:
    """Turns trainer events into output: one updating line on a terminal, a line every
    few steps otherwise, or (``--json``) one JSON object per event on stdout."""

    def __init__(self, json_mode: bool, stream=None, every: int = 10):
        self.json_mode = json_mode
        self.pipe_closed = False
        self.on_pipe_closed = lambda: None  # called once if the reader of the output goes away
        self.out = stream or sys.stdout
        self.tty = self.out.isatty() and not json_mode
        self.every = every
        self._prepare_last = self._step_last = 0.0
        self._line_open = False
        self.error: str | None = None

    def _end_line(self) -> None:
        if self._line_open:
            self.out.write("\n")
            self._line_open = False

    def _say(self, text: str) -> None:
        self._end_line()
        print(text, file=self.out, flush=True)

    def _status(self, text: str) -> None:
        if self.tty:
            self.out.write("\r\x1b[2K" + text)
            self.out.flush()
            self._line_open = True

    def __call__(self, event) -> None:
        if event.kind == "error":
            self.error = event.message
        if self.pipe_closed:
            return
        try:
            self._print(event)
        except OSError:  # the reader went away (EPIPE), or the terminal closed (EIO, after a SIGHUP)
            self.pipe_closed = True
            _stdout_gone()
            self.on_pipe_closed()

    def _print(self, event) -> None:
        if self.json_mode:
            if event.kind == "prepare" and event.done not in (0, event.total) and not event.message:
                now = time.monotonic()
                if now - self._prepare_last < 0.5:
                    return
                self._prepare_last = now
            _print_json(event.to_dict())
            return
        getattr(self, f"_on_{event.kind}", lambda e: None)(event)

    def _on_prepare(self, e) -> None:
        if e.message:
            self._say(e.message)
        elif e.total:
            self._status(f"{e.phase}: {100 * e.done / e.total:5.1f}%")

    def _on_step(self, e) -> None:
        now = time.monotonic()
        if self.tty and now - self._step_last < 0.1 and e.step != e.max_steps:
            return  # at most ~10 terminal updates a second
        self._step_last = now
        if e.time_budget_s is None:
            when = f"{format_duration(e.elapsed_s)} elapsed, ETA {format_duration(e.eta_s)}"
        else:  # max_steps is the planned last step, re-estimated as steps are timed
            when = (f"{format_duration(e.time_budget_s - e.budget_left_s)} of {format_duration(e.time_budget_s)} "
                    f"budget, ETA {format_duration(e.eta_s)}")
        total = f"~{e.max_steps}" if e.time_budget_s is not None and e.step < e.max_steps else e.max_steps
        line = (f"step {e.step:>6}/{total} | loss {e.loss:.4f} | lr {e.lr:.2e} | norm {e.grad_norm:.2f} | "
                f"{e.tokens_per_s:,.0f} tok/s | {when}")
        if self.tty:
            self._status(line)
        elif e.step % self.every == 0 or e.step == e.max_steps:
            self._say(line)

    def _on_eval(self, e) -> None:
        mark = "  (best)" if e.is_best else ""
        bump = (f"; in-context {e.icl_score:+.3f}, induction {e.induction_score:.2f} "
                f"(layer {e.induction_head[0]} head {e.induction_head[1]})" if e.induction_head else "")
        self._say(f"eval step {e.step}: train loss {e.train_loss:.4f}, val loss {e.val_loss:.4f}{bump}{mark}")

    def _on_sample(self, e) -> None:
        text = "".join(c if c.isprintable() or c in "\n\t" else "\N{MIDDLE DOT}" for c in e.prompt + e.text)
        text = text.strip("\n")
        body = "\n".join("    " + line for line in text.splitlines()[:8])
        self._say(f"sample at step {e.step}:\n{body}")

    def _on_checkpoint(self, e) -> None:
        self._say(f"saved {e.reason} checkpoint (step {e.step}) to {e.path}")

    def _on_state(self, e) -> None:
        if e.state == "stopping":
            self._say("stopping: saving a checkpoint after this step ...")

    def _on_done(self, e) -> None:
        loss = "n/a" if e.loss is None else f"{e.loss:.4f}"
        best = "n/a" if e.best_val_loss is None else f"{e.best_val_loss:.4f}"
        warning = f"; warning: {e.warning}" if e.warning else ""
        self._say(f"done ({e.reason}) at step {e.step} in {format_duration(e.elapsed_s)}: loss {loss}, "
                  f"best val loss {best}; " + (f"checkpoint {e.checkpoint}" if e.checkpoint else "no checkpoint")
                  + warning)
        if e.checkpoint and e.reason != "error":
            more = f"; continue with `mnemos train --resume {e.checkpoint}`" if e.reason == "stopped" else ""
            self._say(f"next: `mnemos generate --checkpoint {e.checkpoint}`, "
                      f"`mnemos eval --checkpoint {e.checkpoint}`{more}")

    def _on_warning(self, e) -> None:
        self._say(f"warning: {e.message}")

    def _on_error(self, e) -> None:
        self._end_line()


def cmd_train(args: argparse.Namespace) -> int:
    from mnemos.trainer import Trainer

    t_begin = time.perf_counter()  # a time budget counts what happens before training too (auto's measuring)
    printer = ProgressPrinter(args.json)
    if args.preset is None and args.time_budget is not None and not (args.resume or args.init_from):
        args.preset = AUTO_PRESET  # a budget and no preset: the model is sized to the budget
    if args.resume and args.out and os.path.realpath(args.out) != os.path.realpath(args.resume):
        raise ConfigError("--out cannot be used with --resume (a resumed run saves into its own folder)")
    if args.resume and args.preset == AUTO_PRESET:
        raise ConfigError(f"--preset {AUTO_PRESET} chooses the shape of a new run; resume without it")
    if args.init_from and (args.resume or args.preset == AUTO_PRESET):
        raise ConfigError(f"--init-from starts a new run from a trained model; it cannot go with "
                          f"{'--resume' if args.resume else '--preset auto (which chooses a new shape)'}")
    if args.resume:
        trainer = Trainer.from_checkpoint(args.resume, callback=printer, **_overrides(args))
    elif args.init_from:
        trainer = Trainer.init_from(args.init_from, args.data or TRAIN_DATA, args.val_data, args.out,
                                    args.preset, _given(args), callback=printer, force=args.force)
    elif args.preset == AUTO_PRESET:
        if not args.json:
            print("auto: measuring the text and this machine's speed (a few seconds, cached) ...", flush=True)
        model_cfg, train_cfg, reasons = auto_configs(args)
        if args.json:
            _print_json({"event": "auto", "reasons": reasons, "model": model_cfg.to_dict(),
                         "train": train_cfg.to_dict()})
        else:
            print("\n".join(f"auto: {line}" for line in reasons), flush=True)
    else:
        model_cfg, train_cfg = train_configs(args)
    if not (args.resume or args.init_from):
        trainer = Trainer.new(model_cfg, train_cfg, data=args.data or TRAIN_DATA, val_data=args.val_data,
                              out_dir=args.out, callback=printer, force=args.force)

    printer.on_pipe_closed = trainer.stop  # `mnemos train | head`: stop, saving a checkpoint
    if not args.json:
        print(f"run folder: {trainer.out_dir}", flush=True)
    signalled: list[int] = []
    trainer.count_preparation(time.perf_counter() - t_begin)

    def on_signal(signum, frame):
        if signalled:  # a second Ctrl+C or TERM: give up at once (the last save is atomic)
            if signum == getattr(signal, "SIGHUP", None):
                return  # a hang-up can come twice (to the session leader and its foreground group)
            raise KeyboardInterrupt
        signalled.append(signum)
        trainer.stop(reason="interrupt")

    in_main_thread = threading.current_thread() is threading.main_thread()  # signals only work there
    previous = catch_signals(on_signal) if in_main_thread else {}
    try:
        done = trainer.run()
    except KeyboardInterrupt:
        print(f"\nmnemos train: interrupted again; the last saved checkpoint is {trainer.last_good}",
              file=sys.stderr)
        return 128 + (signalled[0] if signalled else signal.SIGINT)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if done.reason == "error":
        print(f"mnemos train: error: {one_line(printer.error)}", file=sys.stderr)
        return EXIT_USER_ERROR
    if signalled:
        return 128 + signalled[0]  # 130 Ctrl+C, 143 SIGTERM, 129 SIGHUP
    return EXIT_BROKEN_PIPE if printer.pipe_closed else EXIT_OK


# --------------------------------------------------------------------------- eval


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="score a checkpoint on a test file (loss, perplexity, bits per byte)")
    p.add_argument("--checkpoint", required=True, metavar="DIR")
    p.add_argument("--data", default=TEST_DATA, help=f"test text (default {TEST_DATA})")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(handler=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from mnemos.evaluate import evaluate_checkpoint, save_report

    tty = sys.stderr.isatty() and not args.json

    def progress(done: int, total: int) -> None:
        if tty and total:
            sys.stderr.write(f"\r\x1b[2Kscoring {100 * done / total:5.1f}%")
            sys.stderr.flush()

    report = evaluate_checkpoint(args.checkpoint, data=args.data, progress=progress)
    if tty:
        sys.stderr.write("\r\x1b[2K")
    try:
        path = save_report(args.checkpoint, report)
    except MnemosError as exc:  # a read-only or full run folder: the numbers still count
        print(f"mnemos eval: warning: {one_line(exc)}", file=sys.stderr)
        path = None
    if args.json:
        _print_json({**report.to_dict(), "report": path and str(path)})
        return EXIT_OK
    rows = [("checkpoint", str(args.checkpoint)), ("data", str(args.data)), *report.rows(),
            ("method", report.method), ("report", str(path) if path else "not saved (see the warning)")]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return EXIT_OK


# --------------------------------------------------------------------------- generate


def _add_generate(sub) -> None:
    p = sub.add_parser("generate", help="continue a prompt with a trained model (streamed)")
    p.add_argument("--checkpoint", required=True, metavar="DIR")
    p.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    p.add_argument("--max-new-tokens", type=int, default=500)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=200)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--seed", type=int, default=None, help="same seed, same text")
    p.set_defaults(handler=cmd_generate)


def cmd_generate(args: argparse.Namespace) -> int:
    from mnemos.checkpoint import load_checkpoint
    from mnemos.generate import Generator, check_sampling

    check_sampling(args.temperature, args.top_k, args.top_p)
    if args.max_new_tokens < 0:
        raise ConfigError(f"--max-new-tokens must be >= 0, got {args.max_new_tokens}")
    ckpt = load_checkpoint(args.checkpoint)
    gen = Generator(ckpt.model, ckpt.tokenizer)
    pieces = gen.stream(args.prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                        top_k=args.top_k, top_p=args.top_p, seed=args.seed)  # checks everything: then echo
    sys.stdout.write(args.prompt)
    try:
        for piece in pieces:
            sys.stdout.write(piece.text)
            sys.stdout.flush()
    except KeyboardInterrupt as exc:  # Ctrl+C (or TERM, HUP) ends the stream where it is
        print(flush=True)
        return 128 + getattr(exc, "signum", signal.SIGINT)
    print(flush=True)
    return EXIT_OK


# --------------------------------------------------------------------------- export


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="write a checkpoint as a Hugging Face GPT-2 or Llama model folder")
    p.add_argument("--checkpoint", required=True, metavar="DIR")
    p.add_argument("--format", required=True, choices=("hf",), help="hf: transformers GPT2LMHeadModel (or LlamaForCausalLM for --arch llama) + tokenizer")
    p.add_argument("--out", required=True, metavar="DIR")
    p.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from mnemos.export import export_hf

    out = export_hf(args.checkpoint, args.out)
    print(f"exported {args.checkpoint} to {out or args.out} "
          f"(load it with transformers.AutoModelForCausalLM.from_pretrained)")
    return EXIT_OK

# --------------------------------------------------------------------------- import


def _add_import(sub) -> None:
    p = sub.add_parser("import", help="read a Hugging Face GPT-2 model folder into a new run folder",
                       description="Import a transformers model folder (config.json, model.safetensors or its "
                                   "shards, tokenizer.json or vocab.json + merges.txt) as a Mnemos run: then "
                                   "eval, generate, inspect, export or `train --init-from` it. Pickled "
                                   "pytorch_model.bin files are refused.")
    p.add_argument("--from", dest="src", required=True, metavar="HF_DIR", help="the Hugging Face model folder")
    p.add_argument("--out", required=True, metavar="DIR", help="the new run folder (must not exist or be empty)")
    p.set_defaults(handler=cmd_import)


def cmd_import(args: argparse.Namespace) -> int:
    from mnemos.hf_import import import_hf

    report = import_hf(args.src, args.out, say=lambda line: print(line, flush=True))
    print(f"imported {args.src} ({report.model_type}, {report.n_params:,} parameters, vocabulary "
          f"{report.vocab_size:,}) to {report.out}")
    for note in report.notes:
        print(f"note: {note}")
    return EXIT_OK


# --------------------------------------------------------------------------- data


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="data helpers (`mnemos data sample` fetches a corpus)")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="{sample}", parser_class=_Parser)
    s = dsub.add_parser("sample", help="download the Shakespeare plays into data/training and data/testing")
    s.add_argument("--force", action="store_true", help="overwrite existing train.txt / test.txt")
    s.set_defaults(handler=cmd_data_sample)


def cmd_data_sample(args: argparse.Namespace) -> int:
    from mnemos.sample import sample_corpus

    sample_corpus(".", force=args.force, progress=lambda message: print(message, flush=True))
    return EXIT_OK


# --------------------------------------------------------------------------- list


def _add_list(sub) -> None:
    p = sub.add_parser("list", help="list the runs in a checkpoints folder")
    p.add_argument("--root", default=RUNS_ROOT, help=f"folder of runs (default {RUNS_ROOT})")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_list)


def cmd_list(args: argparse.Namespace) -> int:
    import dataclasses

    from mnemos.checkpoint import list_checkpoints

    runs = list_checkpoints(args.root)
    if args.json:
        for info in runs:
            _print_json(dataclasses.asdict(info))
        return EXIT_OK
    if not runs:
        print(f"no runs in {args.root}/ yet; start one with `mnemos train`")
    for info in runs:
        if info.problem:
            print(f"{info.path:<40} unreadable: {info.problem}")
            continue
        best = "-" if info.best_val_loss is None else f"{info.best_val_loss:.4f}"
        total = "-" if info.max_steps is None else info.max_steps  # a time-budgeted run without a step limit
        print(f"{info.path:<40} step {info.step:>6}/{total:<6} best val {best:>7}  "
              f"{info.num_params / 1e6:.2f}M params")
    return EXIT_OK


# --------------------------------------------------------------------------- inspect


def _add_inspect(sub) -> None:
    p = sub.add_parser("inspect", help="see inside a model: tokens, next-token odds, attention, anatomy, replay")
    p.add_argument("--checkpoint", required=True, metavar="DIR")
    p.add_argument("--prompt", default="\n", help="text to look inside with (default: a newline)")
    p.add_argument("--replay", action="store_true",
                   help="instead: the fixed prompt's completion at every evaluation, with the loss")
    p.add_argument("--temperature", type=float, default=1.0, help="reshape the next-token odds (default 1)")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--top", type=int, default=10, metavar="N", help="next-token candidates to list (default 10)")
    p.add_argument("--layer", type=int, default=None, help="with --head: draw that head's attention map (layers count from 1)")
    p.add_argument("--head", type=int, default=None, help="with --layer: draw that head's attention map (heads count from 1)")
    p.add_argument("--view", choices=("lens", "heads", "loss", "attribution"),
                   help="instead: the logit lens of the prompt, what each head does, the loss of each token "
                        "(of --data, or the prompt), or where the prompt's predicted token's logit comes from")
    p.add_argument("--data", metavar="FILE", help="with --view loss: the text to score (its first 2048 tokens)")
    p.add_argument("--position", type=int, default=-1, help="with --view attribution: the prompt position (-1: last)")
    p.add_argument("--token", help="with --view attribution: the token to explain (default: the model's top guess)")
    p.add_argument("--json", action="store_true", help="print every number as one JSON object")
    p.set_defaults(handler=cmd_inspect)


def cmd_inspect(args: argparse.Namespace) -> int:
    from mnemos import cli_views
    from mnemos import inspect as views

    if (args.layer is None) != (args.head is None):
        raise MnemosError("give both --layer and --head (counted from 1) to draw one attention map")
    if args.top < 1:
        raise ConfigError(f"--top must be at least 1 (the candidates to list), got {args.top}")
    if args.view:
        cli_views.run(args, _print_json)
        return EXIT_OK
    if args.replay:
        frames = views.replay(args.checkpoint)
        if args.json:
            _print_json({"checkpoint": args.checkpoint, "replay": [f.to_dict() for f in frames]})
        else:
            print(cli_views.format_replay(frames))
        return EXIT_OK
    found = views.inspect_checkpoint(args.checkpoint, args.prompt, args.temperature, args.top_k, args.top_p,
                                     args.top)
    if args.json:
        _print_json(views.views_to_dict(found))
    else:
        print(cli_views.format_report(found, args.layer, args.head))
    return EXIT_OK


# --------------------------------------------------------------------------- compare


def _add_compare(sub) -> None:
    from mnemos.compare import AXES, DEFAULT_SMOOTHING

    p = sub.add_parser("compare", help="compare runs: best validation bits per byte, differing hyperparameters",
                       description="Compare run folders: each run's best validation loss and bits per byte, and "
                                   "the hyperparameters that differ between them.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders (see `mnemos list`)")
    p.add_argument("--x", choices=tuple(AXES), default="step", help="x axis of the plot (default step)")
    p.add_argument("--smooth", type=float, default=DEFAULT_SMOOTHING, metavar="F",
                   help=f"TensorBoard's smoothing of the train curve, 0 to below 1 (default {DEFAULT_SMOOTHING})")
    p.add_argument("--report", metavar="FILE", help="also write the comparison as Markdown, with the plot")
    p.add_argument("--plot", metavar="FILE", help="also write the loss plot as a text file")
    p.add_argument("--json", action="store_true", help="print the comparison as one JSON object")
    p.set_defaults(handler=cmd_compare)


def _writable(path: str, flag: str) -> Path:
    """``path`` for compare's ``flag`` output, refused (one line) if writing it could lose
    the user's files: inside a run folder (``--report RUN/metrics.jsonl``), or over an
    existing file that is not an earlier report or plot (``--report train.txt``)."""
    from mnemos.checkpoint import refuse_inside_run

    out = Path(path)
    if out.is_dir():
        raise MnemosError(f"{flag} {path} is a folder; give a file name")
    if not out.parent.is_dir():
        raise MnemosError(f"{flag} {path}: folder {out.parent} does not exist; create it first")
    refuse_inside_run(out, flag)
    if os.path.lexists(out) and not _compare_output(out):
        raise MnemosError(f"{flag} {path} exists and is not an earlier comparison; give a new file name")
    return out


def _compare_output(path: Path) -> bool:
    """Whether ``path`` is a file compare wrote: a report's heading, or a plot's frame."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096).decode("utf-8", errors="replace").splitlines()[:3]
    except OSError:
        return False
    return bool(head) and (head[0].startswith("# Comparison of ") or any(line.lstrip().startswith("┌") for line in head))


def cmd_compare(args: argparse.Namespace) -> int:
    from mnemos.compare import check_smoothing, compare_runs, plot_text
    from mnemos.fileio import write_atomic

    check_smoothing(args.smooth)
    outputs = {flag: _writable(path, flag) for flag, path in (("--report", args.report), ("--plot", args.plot))
               if path is not None}
    if len(outputs) == 2 and os.path.abspath(args.report) == os.path.abspath(args.plot):
        raise MnemosError("--report and --plot name the same file; give each its own")
    comparison = compare_runs(args.runs)
    plot = plot_text(comparison, args.x, args.smooth) if outputs else None
    texts = {"--report": comparison.to_markdown(args.x, args.smooth, plot), "--plot": plot}
    for flag, out in outputs.items():
        write_atomic(out, lambda f, text=texts[flag]: f.write(text.encode("utf-8")))
    if args.json:
        _print_json({**comparison.to_dict(), **{flag[2:]: str(out) for flag, out in outputs.items()}})
        return EXIT_OK
    print(comparison.to_text())
    for flag, out in outputs.items():
        print(f"{flag[2:]} written to {out}")
    return EXIT_OK


# --------------------------------------------------------------------------- main

# One registration function per subcommand; `inspect` (mnemos/inspect.py) adds its own here.
COMMANDS = [_add_train, _add_eval, _add_generate, _add_export, _add_import, _add_data, _add_list, _add_inspect,
            _add_compare]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mnemos", description="Train, test and talk to a small GPT written in NumPy.")
    parser.add_argument("--version", action="version", version=f"mnemos {__import__('mnemos').__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for add in COMMANDS:
        add(sub)
    return parser


_NEGATIVE = re.compile(r"^-(\d|\.\d|inf|nan)", re.IGNORECASE)


def _glue_negatives(argv: list[str]) -> list[str]:
    """``--time-budget -5m``, ``--weight-decay -inf`` -> ``--time-budget=-5m`` ...: argparse
    would read a value that starts with ``-`` as an unknown option and say "expected one
    argument"; glued to its flag, the error says what is wrong with the value."""
    out = []
    for arg in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and _NEGATIVE.match(arg):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def _check_values(args: argparse.Namespace) -> None:
    """What no flag may hold, checked before any command runs: an infinite or NaN float
    (whatever the flag: new flags are covered), and text that is not valid Unicode (a
    command line in another encoding arrives with lone surrogates), a path with a NUL
    character (no file system takes one; ``main([...])`` and the app can pass one)."""
    for name, value in vars(args).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, list) and not value:  # argparse reads `--flag=--` as an empty list
            raise ConfigError(f"{flag} needs a value, got '--'")
        for path in (value if isinstance(value, list) else [value]) if name not in TEXT_ARGS else ():
            if isinstance(path, str) and "\x00" in path:
                raise ConfigError(f"{flag} {path!r} holds a NUL character, which no file name can; give the path "
                                  f"without it")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{flag} must be a finite number, got {value}")
        if isinstance(value, str) and name in TEXT_ARGS:
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ConfigError(f"{flag} is not valid UTF-8 text (U+{ord(value[exc.start]):04X}, an undecodable "
                                  f"byte, at character {exc.start}); pass UTF-8 text") from None


class _Signalled(KeyboardInterrupt):
    """SIGTERM or SIGHUP outside a training loop, raised as an interrupt so that cleanups run
    (temporary files removed, nothing half-written renamed into place) and the command says
    so in one line with the signal's exit status, instead of dying silently."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_signalled(signum, frame):
    raise _Signalled(signum)


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a path of undecodable bytes prints escaped, not as a crash
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError, OSError):
            pass
    try:
        args = build_parser().parse_args(_glue_negatives(sys.argv[1:] if argv is None else list(argv)))
    except SystemExit as exc:  # --help, --version, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USER_ERROR
    in_main_thread = threading.current_thread() is threading.main_thread()  # signals only work there
    previous = catch_signals(_raise_signalled, [s for s in STOP_SIGNALS if s != signal.SIGINT]) \
        if in_main_thread else {}  # (train's loop installs its own, saving first)
    try:
        _check_values(args)
        return args.handler(args)
    except MnemosError as exc:
        print(f"mnemos {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:
        _stdout_gone()
        return EXIT_BROKEN_PIPE
    except UnicodeError as exc:  # a name or text of undecodable bytes that no check foresaw
        print(f"mnemos {args.command}: error: {one_line(exc)}; use UTF-8 names and text", file=sys.stderr)
        return EXIT_USER_ERROR
    except MemoryError:  # past the estimates (mnemos.memory): one line, not a traceback
        print(f"mnemos {args.command}: error: out of memory; try smaller settings (--batch-size, --block-size, "
              f"--workers) or a smaller file", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as exc:  # a file problem no check foresaw: one line, not a traceback
        where = f" ({exc.filename})" if exc.filename else ""
        print(one_line(f"mnemos {args.command}: error: {exc.strerror or exc}{where}; check the path, its "
                       f"permissions and free space"), file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        print(f"\nmnemos {args.command}: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        return 128 + signum  # 130 Ctrl+C, 143 SIGTERM, 129 SIGHUP
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
