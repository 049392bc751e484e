"""How fast each see-inside view updates for a 64-token prompt on the baby GPT shape.

    python benchmarks/inspect_speed.py [--repeat 20] [--corpus FILE]

The baby shape (n_layer 4, n_head 4, n_embd 128, block 64) with a 512-token BPE trained
on ``../shared/corpora/shakespeare.txt`` (or any ``--corpus``). For each view it times the
engine call (``mnemos.inspect``) plus turning the result into what the terminal app
draws (the widget's renderable, rendered by Rich at 120 columns), median of
``--repeat`` runs after a warm-up. Then, in the app itself (headless, 120 x 40), the
time from a key press to the repainted Inspect screen for each view's keys.
Target (issue 6): every view under 100 ms. The deeper views of issue 16 (logit lens,
head scores, per-token losses of the 512 tokens the app shows, direct logit
attribution), engine side plus their text, under 50 ms; and what the trainer's induction probe adds to one
evaluation of this shape (2 x 20 batches of 12 x 64).

Peers, in the same run: the same model exported to Hugging Face ``GPT2LMHeadModel``
(PyTorch, eager attention) computing logits and attention maps for the same 64 tokens
(``output_attentions=True``), and Hugging Face ``tokenizers`` encoding the same prompt
with offsets, from Mnemos' exported tokenizer. Ratios > 1 mean Mnemos is slower.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from mnemos.config import ModelConfig, TrainConfig  # noqa: E402
from mnemos.events import EvalEvent, SampleEvent, StepEvent  # noqa: E402
from mnemos import inspect as views  # noqa: E402
from mnemos.cli_views import format_attention  # noqa: E402

CORPUS = HERE.parent.parent / "shared" / "corpora" / "shakespeare.txt"
PROMPT_TOKENS = 64


def median_ms(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def render(renderable) -> None:
    """Lay the renderable out as the terminal would (Rich, 120 columns, no output)."""
    from rich.console import Console

    Console(width=120, file=io.StringIO(), color_system="truecolor", force_terminal=True).print(renderable)


def setup(corpus: Path, workdir: Path):
    from mnemos.checkpoint import save_checkpoint
    from mnemos.nn import GPT
    from mnemos.optim import AdamW
    from mnemos.tokenizer import BPETokenizer

    text = corpus.read_text("utf-8")[:1_000_000]
    tok = BPETokenizer.train(text, 512)
    config = ModelConfig(vocab_size=tok.vocab_size, n_layer=4, n_head=4, n_embd=128, block_size=64)
    model = GPT(config, seed=0)
    ids = tok.encode(text[10_000:12_000])[:PROMPT_TOKENS]
    prompt = tok.decode(ids)
    # metrics of a 5000-step run: a step row each step, an eval and a sample every 250
    metrics = []
    for step in range(5001):
        metrics.append(StepEvent(step, 5000, 2.0, 1e-3, 1.0, 2e4, 1.0, 1.0, step * 768).to_dict())
        if step % 250 == 0:
            metrics.append(EvalEvent(step, 2.0, 2.1, 2.1, True, 1.0).to_dict())
            metrics.append(SampleEvent(step, "\n", text[step:step + 600], 2.1).to_dict())
    run = workdir / "checkpoints" / "run"
    save_checkpoint(run, model, tok, config, TrainConfig(tokenizer_vocab=512), AdamW(model.params),
                    {"step": 5000}, metrics=metrics)
    return tok, model, prompt, run


def bench_mnemos(tok, model, prompt: str, run: Path, repeat: int) -> dict[str, float]:
    from mnemos_tui.widgets.anatomy import component_label
    from mnemos_tui.widgets.next_token import bars, summary
    from mnemos_tui.widgets.replay import loss_strip
    from mnemos_tui.widgets.token_view import merge_tree_renderable

    ids = tok.encode(prompt)
    assert len(ids) == PROMPT_TOKENS, len(ids)
    logits = views.next_token_logits(model, ids)

    def tokens():
        view = views.tokenize_view(tok, prompt)
        tree = views.merge_tree(tok, max(view.ids))
        render(merge_tree_renderable(tree))

    def reshape():
        view = views.next_token_distribution(logits, tok, 0.8, 50, 0.95)
        render(summary(view))
        render(bars(view))

    def next_token():
        view = views.next_token_view(model, tok, ids, 0.8, 50, 0.95)
        render(bars(view))

    def attention():
        view = views.attention_view(model, tok, prompt)
        render(format_attention(view, 1, 1))  # the same T x T grid of cells the widget draws

    def anatomy():
        root = views.anatomy(model)
        for c in root.walk():
            component_label(c)

    def replay():
        frames = views.replay(run)
        render(loss_strip(frames, len(frames) - 1))

    return {
        "tokens + merge tree": median_ms(tokens, repeat),
        "next token: reshape (temperature/top-k/top-p key)": median_ms(reshape, repeat),
        "next token: new prompt (forward pass)": median_ms(next_token, repeat),
        "attention: all layers and heads": median_ms(attention, repeat),
        "anatomy (with weight statistics)": median_ms(anatomy, repeat),
        "replay (5,000-step metrics.jsonl)": median_ms(replay, repeat),
    }


DEEPER_TARGET_MS = 50


def deeper_text(tok, corpus: Path) -> str:
    """2,048 tokens of the corpus, away from the tokenizer's training slice."""
    return tok.decode(tok.encode(corpus.read_text("utf-8")[1_100_000:1_140_000])[:2048])


def bench_deeper(tok, model, prompt: str, text: str, repeat: int) -> dict[str, float]:
    """The issue-16 views, each as ``mnemos inspect --view`` computes and lays it out."""
    import numpy as np

    from mnemos import cli_views
    from mnemos.attribution import direct_logit_attribution
    from mnemos.heads import head_scores, induction_probe
    from mnemos.lens import logit_lens
    from mnemos.token_loss import token_losses

    ids = tok.encode(prompt)
    specials = tok.special_tokens.values()
    rng = np.random.default_rng(0)
    windows = rng.integers(0, tok.vocab_size - 1, (16, 64))  # ICL_WINDOWS
    batch = rng.integers(0, tok.vocab_size - 1, (12, 64))
    return {
        "logit lens (5 layers x 64 positions, top 3)": median_ms(
            lambda: cli_views.format_lens(logit_lens(model, tok, ids)), repeat),
        "head scores (4 x 64 repeated random tokens)": median_ms(
            lambda: cli_views.format_heads(head_scores(model, specials)), repeat),
        "text by loss (512 tokens, as the app)": median_ms(
            lambda: cli_views.format_token_losses(token_losses(model, tok, text)), repeat),
        "text by loss (2,048 tokens, as the CLI)": median_ms(
            lambda: cli_views.format_token_losses(token_losses(model, tok, text, max_tokens=2048)), repeat),
        "direct logit attribution (last token)": median_ms(
            lambda: cli_views.format_attribution(direct_logit_attribution(model, tok, ids)), repeat),
        "trainer: induction probe, per evaluation": median_ms(
            lambda: induction_probe(model, windows, windows, exclude=specials), repeat),
        "trainer: one evaluation's loss batches": 40 * median_ms(lambda: model.forward(batch, batch), repeat),
    }


def bench_tui(workdir: Path, prompt: str, repeat: int) -> dict[str, float]:
    """Key press to repainted screen in the Inspect screen (Textual's headless driver,
    120 x 40): what the user waits for."""
    import asyncio

    from textual.worker import WorkerCancelled

    from mnemos_tui.app import MnemosApp

    async def workers_done(app) -> None:
        """A worker superseded by a newer one of its group ends cancelled: by design."""
        for worker in list(app.workers):
            try:
                await worker.wait()
            except WorkerCancelled:
                pass

    async def run() -> dict[str, float]:
        app = MnemosApp(root=workdir, checkpoint=workdir / "checkpoints" / "run", start="inspect")
        out = {}
        async with app.run_test(size=(120, 40)) as pilot:
            for _ in range(200):
                await pilot.pause(0.05)
                await workers_done(app)
                if getattr(app.screen, "ckpt", None) is not None:
                    break
            app.screen.query_one("#inspect-prompt").value = prompt
            await pilot.pause(0.3)
            await workers_done(app)

            async def keys(tab: str, key: str) -> float:
                await pilot.press(tab)
                await pilot.pause()
                times = []
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    await pilot.press(key)
                    await pilot.pause()  # the screen has processed the key and repainted
                    times.append((time.perf_counter() - t0) * 1e3)
                return statistics.median(times)

            out["app: a key bound to nothing (harness baseline)"] = await keys("1", "insert")
            out["app: tokens, cursor → (with merge tree)"] = await keys("1", "right")
            out["app: next token, temperature key"] = await keys("2", "minus")
            out["app: attention, next head"] = await keys("3", "right")
            out["app: attention, next layer"] = await keys("3", "down")
            out["app: anatomy, cursor ↓"] = await keys("4", "down")
            out["app: replay, previous evaluation"] = await keys("5", "left")
            out["app: lens, cursor ↓"] = await keys("6", "down")
            out["app: heads, next score"] = await keys("7", "k")
            out["app: attribution, next candidate"] = await keys("8", "down")
        return out

    return asyncio.run(run())


def bench_peers(tok, model, prompt: str, text: str, workdir: Path, repeat: int) -> dict[str, float]:
    out = {}
    try:
        import torch
        import transformers

        from mnemos.export import hf_config, to_hf_state_dict, write_tokenizer_json
    except ImportError as exc:
        print(f"(no Hugging Face peer: {exc})")
        return out
    torch.set_num_threads(2)
    config = transformers.GPT2Config(**hf_config(model.config))
    hf = transformers.GPT2LMHeadModel._from_config(config, attn_implementation="eager")
    hf.load_state_dict({k: torch.tensor(v) for k, v in to_hf_state_dict(model).items()}, strict=False)
    hf.eval()
    idx = torch.tensor([tok.encode(prompt)])

    def forward_attn():
        with torch.no_grad():
            hf(idx, output_attentions=True)

    out["attention: all layers and heads"] = median_ms(forward_attn, repeat)
    out["next token: new prompt (forward pass)"] = median_ms(forward_attn, repeat)

    def lens():  # the residual stream after each block through ln_f and the head, softmaxed
        with torch.no_grad():
            hidden = hf(idx, output_hidden_states=True).hidden_states
            torch.softmax(hf.lm_head(hf.transformer.ln_f(torch.stack(hidden[:-1]))), -1).topk(3)

    def hidden():  # what the attribution splits: the forward with every block's output
        with torch.no_grad():
            hf(idx, output_hidden_states=True)

    out["logit lens (5 layers x 64 positions, top 3)"] = median_ms(lens, repeat)
    out["direct logit attribution (last token)"] = median_ms(hidden, repeat)
    half = torch.randint(0, tok.vocab_size - 1, (4, 32))
    rep_idx = torch.cat([half, half], 1)

    def heads():
        with torch.no_grad():
            hf(rep_idx, output_attentions=True)

    out["head scores (4 x 64 repeated random tokens)"] = median_ms(heads, repeat)
    windows = torch.tensor(tok.encode(text)[:2048]).unfold(0, 64, 32)  # the same sliding windows

    def losses():
        with torch.no_grad():
            logits = hf(windows).logits
            torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                              windows[:, 1:].reshape(-1), reduction="none")

    out["text by loss (2,048 tokens, as the CLI)"] = median_ms(losses, repeat)
    try:
        from tokenizers import Tokenizer

        write_tokenizer_json(tok, workdir / "tokenizer.json")
        hf_tok = Tokenizer.from_file(str(workdir / "tokenizer.json"))
        out["tokens + merge tree"] = median_ms(lambda: hf_tok.encode(prompt).offsets, repeat)
    except ImportError:
        pass
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    args = parser.parse_args()
    if not args.corpus.is_file():
        sys.exit(f"no corpus at {args.corpus}; pass --corpus FILE (any UTF-8 text of a few hundred KB)")
    with tempfile.TemporaryDirectory() as tmp:
        tok, model, prompt, run = setup(args.corpus, Path(tmp))
        text = deeper_text(tok, args.corpus)
        mine = bench_mnemos(tok, model, prompt, run, args.repeat)
        deeper = bench_deeper(tok, model, prompt, text, args.repeat)
        mine.update(deeper)
        mine.update(bench_tui(Path(tmp), prompt, args.repeat))
        peers = bench_peers(tok, model, prompt, text, Path(tmp), args.repeat)
    print(f"baby GPT (4 layers, 4 heads, n_embd 128, block 64, vocab {model.config.vocab_size}), "
          f"{PROMPT_TOKENS}-token prompt, median of {args.repeat}")
    base_name = "app: a key bound to nothing (harness baseline)"
    base = mine.get(base_name, 0.0)
    print(f"{'view':<52}{'Mnemos ms':>10}{'target':>8}{'HF peer ms':>12}{'ratio':>7}")
    for name, ms in mine.items():
        peer = peers.get(name)
        ratio = f"{ms / peer:.2f}" if peer else ""
        peer_s = f"{peer:.2f}" if peer else ""
        # in the app, the view's own share is what the key costs beyond a key that does nothing
        own = ms - base if name.startswith("app:") and name != base_name else ms
        target = DEEPER_TARGET_MS if name in deeper and "2,048" not in name else 100
        ok = "" if name == base_name or name.startswith("trainer:") else ("ok" if own < target else "SLOW")
        extra = f"  ({own:+.1f} over baseline)" if own != ms else ""
        print(f"{name:<52}{ms:>10.2f}{ok:>8}{peer_s:>12}{ratio:>7}{extra}")
    probe, evaluation = deeper["trainer: induction probe, per evaluation"], deeper["trainer: one evaluation's loss batches"]
    print(f"the induction probe adds {probe / evaluation:.1%} to an evaluation's loss batches (before its sample)")
    print("HF peer: transformers GPT2LMHeadModel (eager, output_attentions=True) for the forward passes, "
          "tokenizers encode with offsets for tokens; it does not render anything. For the deeper views it "
          "computes the same numbers (hidden states through ln_f and lm_head; attentions; per-token "
          "cross-entropy of the same windows) but not the attribution's split or the scores' patterns.")


if __name__ == "__main__":
    main()
