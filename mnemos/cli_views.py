"""``mnemos inspect``'s text: every view laid out for a terminal (80 columns).

The numbers come from ``mnemos.inspect`` (tokens, next token, attention, anatomy,
replay: ``format_report`` / ``format_replay``) and, for ``--view lens|heads|loss|attribution``,
from ``mnemos.lens``, ``mnemos.heads``, ``mnemos.token_loss`` and ``mnemos.attribution``;
this module only loads the checkpoint, calls them and lays their results out.
"""

from __future__ import annotations

import numpy as np

from mnemos.errors import MnemosError
from mnemos.inspect import AttentionView, Component, MergeNode, NextTokenView, ReplayFrame, TokenView, token_label
from mnemos.textfmt import bar

VIEWS = ("lens", "heads", "loss", "attribution")
CELL = 9  # characters per logit-lens cell
CLI_TOKENS = 2048  # tokens the loss view scores from the command line (the app shows fewer, at once)


def _cell(label: str, prob: float) -> str:
    return f"{label[:CELL - 4]:<{CELL - 4}}{prob:>3.0%}"[:CELL]


def format_lens(view) -> str:
    """One row per prompt token: the top guess for the next token after each layer, and
    the layer where the model's final answer first becomes the top guess."""
    layers = ["embed"] + [f"block {i + 1}" for i in range(view.n_layer)]
    lines = ["logit lens: the top next token read after each layer (final norm + head applied)",
             f"{'token':>10} " + " ".join(f"{name:<{CELL}}" for name in layers) + " first"]
    for t, label in enumerate(view.labels):
        cells = " ".join(_cell(view.top_labels[l][t][0], float(view.top_probs[l, t, 0]))
                         for l in range(view.n_layer + 1))
        lines.append(f"{label[-10:]:>10} {cells} {layers[view.first_layer[t]]}")
    if view.truncated:
        lines.append(f"(the first {view.truncated} tokens did not fit the context)")
    return "\n".join(lines)


def format_heads(scores) -> str:
    """A layer x head grid per score, and the top head of each kind."""
    from mnemos.heads import KINDS

    B, T = scores.tokens.shape
    source = "the training text's" if scores.from_training else "all"
    lines = [f"head scores on {B} sequences of {T // 2} random tokens, each repeated once",
             f"(drawn from {source} {scores.pool_size} ids; TransformerLens's head detector, 'mul':",
             " the share of each head's attention on the pattern)"]
    grids = [*((kind.replace("_", " "), scores.scores[kind], f"at most {scores.ceiling[kind]:.2f}")
               for kind in KINDS), ("attention entropy (bits)", scores.entropy, "0 = one token")]
    for name, grid, note in grids:
        lines.append(f"\n{name} ({note})")
        lines.append("layer " + "".join(f"{'head ' + str(h + 1):>8}" for h in range(scores.n_head)))
        for l in range(scores.n_layer):
            lines.append(f"{l + 1:>5} " + "".join(f"{grid[l, h]:>8.2f}" for h in range(scores.n_head)))
    lines.append("")
    for kind in (*KINDS, "entropy"):
        l, h, value = scores.top(kind)
        what = "most focused head (lowest entropy)" if kind == "entropy" else f"top {kind.replace('_', ' ')} head"
        lines.append(f"{what}: layer {l + 1} head {h + 1} ({value:.2f})")
    return "\n".join(lines)


def format_token_losses(view, worst: int = 10) -> str:
    lines = [f"{len(view.loss)} tokens scored, mean loss {view.mean_loss:.3f} nats"
             + (f" ({view.unscored_chars:,} more characters not scored)" if view.unscored_chars else ""),
             f"the {worst} worst-predicted tokens:",
             f"{'position':>8} {'token':<14}{'loss':>7}{'prob':>8}   expected instead"]
    for s in view.worst(worst):
        lines.append(f"{s.index:>8} {s.label[:13]:<14}{s.loss:>7.2f}{s.prob:>8.2%}   "
                     f"{s.expected_label[:14]} ({s.expected_prob:.0%})")
    return "\n".join(lines)


def format_attribution(a, width: int = 30) -> str:
    top = max((abs(v) for _, v in a.parts), default=1.0) or 1.0
    lines = [f"direct logit attribution of [{a.token_label}] (id {a.token}) after "
             f"[{a.labels[a.position]}] (position {a.position})",
             f"logit {a.logit:.3f}, probability {a.prob:.1%}, rank {a.rank + 1}"]
    for name, value in a.parts:
        bar = ("+" if value >= 0 else "-") * max(1, round(abs(value) / top * width)) if value else ""
        lines.append(f"{name:<22}{value:>9.3f}  {bar}")
    lines.append(f"{'final norm bias':<22}{a.bias:>9.3f}")
    lines.append(f"{'sum':<22}{a.total + a.bias:>9.3f}  (= the logit)")
    return "\n".join(lines)


def _token_id(tokenizer, text: str) -> int:
    ids = tokenizer.encode(text, allowed_special="all")
    if len(ids) != 1:
        raise MnemosError(f"--token {text!r} is {len(ids)} tokens; give the text of exactly one token")
    return ids[0]


def compute_view(ckpt, view: str, prompt: str, text: str | None = None, position: int = -1,
                 token: str | None = None):
    """The ``view`` of a loaded checkpoint for ``prompt`` (``text``: what the loss view scores)."""
    from mnemos.generate import Generator

    model, tokenizer = ckpt.model, ckpt.tokenizer
    if view == "heads":
        from mnemos.heads import head_scores, training_tokens

        return head_scores(model, exclude=tokenizer.special_tokens.values(), seen=training_tokens(ckpt))
    if view == "loss":
        from mnemos.token_loss import token_losses

        return token_losses(model, tokenizer, text if text is not None else prompt, max_tokens=CLI_TOKENS)
    ids = Generator(model, tokenizer).encode_prompt(prompt)
    if view == "lens":
        from mnemos.lens import logit_lens

        return logit_lens(model, tokenizer, ids)
    from mnemos.attribution import direct_logit_attribution

    return direct_logit_attribution(model, tokenizer, ids, position,
                                    None if token is None else _token_id(tokenizer, token))


def format_view(view: str, result, tokenizer, layer: int | None = None, head: int | None = None) -> str:
    """``result`` of ``compute_view`` as text; for the head scores with ``layer`` and
    ``head``, also that head's attention map on the first random sequence."""
    if view == "heads" and layer is not None:
        ids = [int(i) for i in result.tokens[0]]
        labels = [token_label(tokenizer.token_bytes(i)) for i in ids]
        maps = AttentionView(ids, labels, result.patterns[:, 0], 0)
        return format_heads(result) + "\n\n" + format_attention(maps, layer, head)
    return {"lens": format_lens, "heads": format_heads, "loss": format_token_losses,
            "attribution": format_attribution}[view](result)


def run(args, print_json) -> None:
    """What ``mnemos inspect --view`` prints."""
    from mnemos.checkpoint import load_checkpoint
    from mnemos.data import read_text

    text = read_text(args.data) if args.data else None
    ckpt = load_checkpoint(args.checkpoint)
    result = compute_view(ckpt, args.view, args.prompt, text, args.position, args.token)
    if args.json:
        print_json({"checkpoint": args.checkpoint, "view": args.view, args.view: result.to_dict()})
    else:
        print(format_view(args.view, result, ckpt.tokenizer, args.layer, args.head))


# --------------------------------------------------------------------------- the basic views (mnemos.inspect)


def format_tokens(view: TokenView, limit: int = 200) -> str:
    """Tokens as ``[label]`` pieces with ids, then the counts."""
    shown = view.tokens[:limit]
    pieces = " ".join(f"[{t.label}]{t.id}" for t in shown)
    more = f" ... (+{view.n_tokens - limit} more)" if view.n_tokens > limit else ""
    return (f"{pieces}{more}\n{view.n_tokens} tokens, {view.n_bytes} bytes, {view.n_chars} characters: "
            f"{view.bytes_per_token:.2f} bytes/token")


def format_merge_tree(node: MergeNode, indent: str = "") -> str:
    rank = f" merge #{node.rank}" if node.rank is not None else f" {node.kind}"
    lines = [f"{indent}{node.id:>6} [{node.label}]{rank}"]
    lines += [format_merge_tree(c, indent + "    ") for c in node.children]
    return "\n".join(lines)


def format_next_token(view: NextTokenView, width: int = 30) -> str:
    top = max((c.prob for c in view.candidates), default=1.0) or 1.0
    lines = [f"next token (temperature {view.temperature:g}, top-k {view.top_k or 'off'}, "
             f"top-p {view.top_p if view.top_p is not None else 'off'}): entropy {view.entropy:.2f} bits "
             f"≈ {view.effective_choices:.1f} choices ({view.raw_entropy:.2f} bits unshaped), "
             f"{view.kept} tokens kept"]
    for c in view.candidates:
        mark = "▶" if c.chosen else " "
        lines.append(f"{mark}{c.label[:14]:>14} {c.id:>6} {c.prob:7.2%} {bar(c.prob / top, width)}")
    return "\n".join(lines)


_SHADES = " ·░▒▓█"


def format_attention(view: AttentionView, layer: int | None = None, head: int | None = None) -> str:
    """One head as a shaded heatmap (queries down, keys across) when ``layer`` and
    ``head`` are given; otherwise each head's mean look-back distance and what the last
    token reads most. Layers and heads are numbered from 1, as the app numbers them."""
    if layer is not None and head is not None:
        if not (1 <= layer <= view.n_layer and 1 <= head <= view.n_head):
            raise MnemosError(f"no layer {layer} / head {head}: the model has {view.n_layer} layers "
                              f"of {view.n_head} heads (count from 1)")
        w = view.weights[layer - 1, head - 1]
        shade = np.minimum((w * len(_SHADES)).astype(int), len(_SHADES) - 1)
        keys = [" " * 13 + "".join(lab[r] if r < len(lab) else " " for lab in view.labels)
                for r in range(3)]  # key labels, written downwards over their columns
        rows = [f"{label[:12]:>12} " + "".join(_SHADES[s] for s in row)
                for label, row in zip(view.labels, shade)]
        return "\n".join([f"layer {layer} head {head} (queries down, keys across; darker = more weight)",
                          *keys, *rows])
    dist = view.head_summary()
    lines = ["layer head  mean look-back  last token reads most"]
    for l in range(view.n_layer):
        for h in range(view.n_head):
            row = view.weights[l, h, -1]
            k = int(row.argmax())
            lines.append(f"{l + 1:>5} {h + 1:>4}  {dist[l, h]:>10.2f} tok  [{view.labels[k]}] at {k} ({row[k]:.0%})")
    return "\n".join(lines)


def format_anatomy(root: Component, max_depth: int = 3) -> str:
    lines = [f"{'component':<28}{'shape':>14}{'params':>12}{'share':>8}{'FLOPs/token':>13}"
             f"{'norm':>9}{'std':>9}"]

    def add(node: Component, depth: int) -> None:
        shape = "x".join(map(str, node.shape)) if node.shape else ""
        stats = f"{node.stats['norm']:>9.3f}{node.stats['std']:>9.4f}" if node.stats else ""
        lines.append(f"{'  ' * depth + node.name:<28}{shape:>14}{node.params:>12,}{node.share:>8.1%}"
                     f"{node.flops:>13,}{stats}")
        if depth < max_depth:
            for child in node.children:
                add(child, depth + 1)

    add(root, 0)
    return "\n".join(lines)


def format_replay(frames: list[ReplayFrame]) -> str:
    if not frames:
        return "no samples recorded yet: the run logs one at each evaluation (--eval-interval)"
    out = []
    for f in frames:
        loss = f"val loss {f.val_loss:.3f}" if f.val_loss is not None else "val loss ?"
        out.append(f"── step {f.step} · {loss} ──\n{f.prompt}{f.text}")
    return "\n".join(out)


def format_report(views: dict, layer: int | None = None, head: int | None = None) -> str:
    """The text ``mnemos inspect`` prints for ``inspect_checkpoint``'s views."""
    root = views["anatomy"]
    parts = [f"checkpoint {views['checkpoint']}: {root.role}, {root.params:,} parameters, "
             f"{root.flops:,} forward FLOPs per token",
             "\n== tokens ==", format_tokens(views["tokens"]),
             "\n== next token ==", format_next_token(views["next_token"])]
    if views["attention"] is not None:
        parts += ["\n== attention ==", format_attention(views["attention"], layer, head)]
    parts += ["\n== anatomy ==", format_anatomy(root, max_depth=2)]
    return "\n".join(parts)
