"""``AnatomyTree``: the model as a tree (embeddings, each block's LayerNorms, attention
and MLP, the head) with parameter counts and shares; ``ComponentDetails`` shows the
highlighted component's shape, role, FLOPs and weight statistics. The numbers come from
``mnemos.inspect.anatomy``."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static, Tree

from mnemos.inspect import Component


def _count(n: int) -> str:
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def component_label(c: Component) -> Text:
    text = Text()
    short = c.name if c.kind in ("model", "block") or "." not in c.name else c.name.split(".")[-1]
    text.append(short, style="bold" if c.children else "")
    if c.shape:
        text.append(f" {'×'.join(map(str, c.shape))}", style="dim")
    if c.kind == "compute":
        text.append(f"  {_count(c.flops)} FLOPs/token", style="italic")
    elif c.kind == "tied":
        text.append("  tied to wte", style="italic")
    else:
        text.append(f"  {_count(c.params)} params · {c.share:.1%}")
    return text


class AnatomyTree(Tree[Component]):
    """The anatomy tree; blocks start collapsed except the first."""

    def show(self, root: Component) -> None:
        self.clear()
        self.root.set_label(component_label(root))
        self.root.data = root

        def add(node, comp: Component) -> None:
            for child in comp.children:
                if child.children:
                    branch = node.add(component_label(child), data=child)
                    add(branch, child)
                else:
                    node.add_leaf(component_label(child), data=child)

        add(self.root, root)
        self.root.expand()
        for node in self.root.children:
            if node.data is not None and node.data.name == "h.0":
                node.expand_all()


class ComponentDetails(Static):
    component: Component | None = None

    def show(self, c: Component, total_flops: int) -> None:
        self.component = c
        table = Table(box=None, show_header=False, padding=(0, 1))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        table.add_row("component", c.name)
        if c.role:
            table.add_row("what it does", c.role)
        if c.shape:
            table.add_row("shape", " × ".join(map(str, c.shape)))
        table.add_row("parameters", f"{c.params:,} ({c.share:.2%} of the model)")
        if total_flops:
            table.add_row("forward FLOPs/token", f"{c.flops:,} ({c.flops / total_flops:.1%})")
        if c.stats:
            s = c.stats
            table.add_row("weight norm", f"{s['norm']:.4f}")
            table.add_row("mean / std", f"{s['mean']:+.5f} / {s['std']:.5f}")
            table.add_row("largest |w|", f"{s['absmax']:.4f}")
        elif c.kind not in ("compute", "tied"):
            table.add_row("weights", Text("open a checkpoint to see their statistics", style="dim"))
        self.update(table)
