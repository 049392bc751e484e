"""The small pure pieces of the widgets: plot binning, the memory estimate, which field
a ConfigError is about, the sampling form's parsing."""

from __future__ import annotations

import os

import numpy as np
import pytest

from mnemos.config import ModelConfig, configs_from
from mnemos.errors import ConfigError
from mnemos.budget import format_duration as duration
from mnemos.textfmt import bar
from mnemos_tui.widgets.loss_plot import bin_means


def test_bin_means_averages_consecutive_points_and_keeps_short_series():
    x = np.arange(1.0, 11.0)
    assert bin_means(x, x * 2, 20)[0] is x  # fewer points than bins: unchanged
    bx, by = bin_means(x, x * 2, 5)
    np.testing.assert_allclose(bx, [1.5, 3.5, 5.5, 7.5, 9.5])
    np.testing.assert_allclose(by, 2 * bx)


@pytest.mark.parametrize("overrides, field", [
    (dict(n_embd=30, n_head=4), "n_embd"),
    (dict(min_lr=0.1, lr=0.01), "min_lr"),
    (dict(device="tpu"), "device"),
    (dict(tokenizer_vocab=100), "tokenizer_vocab"),
])
def test_a_config_error_names_the_field_it_is_about(overrides, field):
    with pytest.raises(ConfigError) as caught:
        configs_from("tiny", overrides)
    assert caught.value.field == field


def test_one_duration_and_one_bar_for_the_cli_and_the_app():
    assert duration(5) == "0:05" and duration(3725) == "1:02:05" and duration(59.6) == "0:59"
    assert duration(None) == "-" and duration(float("inf")) == "-" and duration(float("nan")) == "-"
    assert bar(0.5, 5) == "██▌" and bar(1.0, 3) == "███" and bar(0.0, 3) == ""


@pytest.mark.anyio
async def test_sampling_form_parses_blank_as_off_and_refuses_bad_values():
    from textual.app import App

    from mnemos_tui.widgets.sampling_form import SamplingForm

    class Host(App):
        def compose(self):
            yield SamplingForm()

    app = Host()
    async with app.run_test() as pilot:
        form = app.query_one(SamplingForm)
        form.query_one("#s-top_k").value = ""
        form.query_one("#s-seed").value = "42"
        await pilot.pause()
        settings = form.settings()
        assert settings.top_k is None and settings.seed == 42 and settings.temperature == 0.8
        form.query_one("#s-temperature").value = "-1"
        await pilot.pause()
        with pytest.raises(ConfigError, match="temperature"):
            form.settings()
        assert form.has_class("-invalid")


def test_step_ticks_are_whole_round_numbers_inside_the_range():
    from mnemos_tui.widgets.loss_plot import step_ticks

    assert step_ticks(0, 100) == [0, 20, 40, 60, 80, 100]
    assert step_ticks(751.0, 800.0) == [760, 770, 780, 790, 800]
    assert step_ticks(3, 3) == [3]
    assert step_ticks(751.5, 751.9) == [752]
    for low, high in [(0.4, 7.6), (11, 20), (1, 100_000), (0, 1_234_567)]:
        ticks = step_ticks(low, high)
        assert all(isinstance(t, int) for t in ticks) and 2 <= len(ticks) <= 6
        assert ticks == sorted(ticks) and low <= ticks[0] and ticks[-1] <= high


def test_token_details_count_merge_levels_in_the_singular_and_plural():
    from mnemos.inspect import merge_tree, tokenize_view
    from mnemos.tokenizer import BPETokenizer
    from mnemos_tui.widgets.token_view import TokenDetails
    from tui_helpers import text_of

    tok = BPETokenizer.train("aaaa " * 50, 259)  # aa, aaaa, then " aaaa"
    view = tokenize_view(tok, "aa aaaa")
    details = TokenDetails()
    said = {}
    for token in view.tokens:
        tree = merge_tree(tok, token.id)
        if tree.kind == "merge":
            details.show(view, token, tree, tok.vocab_size, len(tok.merges))
            said[tree.depth - 1] = text_of(details)
    assert "in 1 merge level\n" in said[1] and "in 3 merge levels\n" in said[3]


def test_system_usage_counts_a_child_process_and_a_folders_files(tmp_path):
    import os
    import subprocess
    import sys

    from mnemos_tui.widgets.system_row import folder_size, process_tree, usage

    alone = usage(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "import time; x = bytearray(50_000_000); time.sleep(30)"])
    try:
        while usage(child.pid).rss < 50_000_000:  # the child has allocated its 50 MB
            assert child.poll() is None
        assert child.pid in process_tree(os.getpid())
        both = usage(os.getpid())
        assert both.processes == alone.processes + 1
        assert both.rss >= alone.rss + 50_000_000 * 0.9 and both.cpu_s >= alone.cpu_s
    finally:
        child.kill()
        child.wait()
    (tmp_path / "run" / "best").mkdir(parents=True)
    (tmp_path / "run" / "model.npz").write_bytes(b"x" * 1000)
    (tmp_path / "run" / "best" / "model.npz").write_bytes(b"x" * 500)
    assert folder_size(tmp_path / "run") == 1500 and folder_size(None) == 0 and folder_size(tmp_path / "no") == 0


def test_train_stats_columns_stay_put_when_the_numbers_change_width():
    from rich.console import Console

    from mnemos_tui.widgets.train_stats import TrainStats

    def columns(values: dict) -> list[int]:
        stats = TrainStats()
        stats.values = values
        console = Console(width=80, record=True, file=open(os.devnull, "w"))
        console.print(stats.render())
        line = console.export_text().splitlines()[0]
        return [line.index("state"), line.index("step")]

    assert columns({"state": "idle", "step": "-"}) == \
        columns({"state": "preparing", "step": "1,234,567 / ~9,999,999"}) == \
        columns({"state": "running", "step": "12 / 50"})
