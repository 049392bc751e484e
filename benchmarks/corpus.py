"""A 20 MB benchmark text of real French and English, built from Debian packages.

The original Mnemos was measured on 20 MB of French. No such file ships with the
project, so this helper assembles one (the same on every machine of one Debian release) from:

- French documentation shipped as Debian packages (the Debian handbook and reference,
  the developers' reference, the new maintainers' guide, the Debian FAQ, the aptitude,
  KiCad, GIMP and LilyPond manuals, the French man pages), downloaded with
  ``apt-get download`` and turned to plain text (HTML tags and roff requests removed);
- English: the Debian handbook in English and ``../shared/corpora/shakespeare.txt``.

The result is cached in ``benchmarks/.cache/`` (git-ignored). ``build_corpus`` returns
``None`` with a reason when the packages cannot be had (no apt, no network): the
benchmark then says so and skips.
"""

from __future__ import annotations

import gzip
import html.parser
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
SHAKESPEARE = HERE.parent.parent / "shared" / "corpora" / "shakespeare.txt"

# package -> glob patterns (inside the unpacked package) of the files to take, in order
PACKAGES = {
    "debian-handbook": ["usr/share/doc/debian-handbook/html/fr-FR/*.html", "usr/share/doc/debian-handbook/html/en-US/*.html"],
    "debian-reference-fr": ["usr/share/doc/debian-reference-fr/**/*.html"],
    "developers-reference-fr": ["usr/share/doc/**/*.html"],
    "maint-guide-fr": ["usr/share/doc/**/*.html"],
    "debian-faq-fr": ["usr/share/doc/**/*.html"],
    "aptitude-doc-fr": ["usr/share/doc/**/*.html"],
    "kicad-doc-fr": ["usr/share/**/*.html"],
    "gimp-help-fr": ["usr/share/**/*.html"],
    "lilypond-doc-html-fr": ["usr/share/doc/lilypond/html/Documentation/*-big-page.fr.html"],
    "manpages-fr": ["usr/share/man/fr/**/*.gz"],
}

_BLOCK_TAGS = {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "tr", "pre", "dt", "dd", "title"}


class _HTMLText(html.parser.HTMLParser):
    """Text of an HTML page: tags dropped, scripts and styles skipped, blocks on new lines."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self.skip += 1
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self.skip:
            self.skip -= 1

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def html_to_text(source: str) -> str:
    parser = _HTMLText()
    parser.feed(source)
    return "".join(parser.parts)


_ROFF_ESCAPE = re.compile(r"\\(?:f(?:\[[^\]]*\]|\(..|.)|\(..|\[[^\]]*\]|s[-+]?\d+|\*(?:\(..|\[[^\]]*\]|.)|[&|^ce\-\\ ])")
_ROFF_CHARS = {"\\-": "-", "\\(em": "—", "\\(en": "–", "\\(aq": "'", "\\(dq": '"', "\\(bu": "•", "\\ ": " ", "\\\\": "\\", "\\e": "\\"}


def roff_to_text(source: str) -> str:
    """Plain text of a man page: comments and requests dropped, macro arguments kept."""
    out = []
    for line in source.splitlines():
        if line.startswith(('.\\"', "'\\\"")):
            continue
        if line.startswith((".", "'")):
            request, _, args = line[1:].partition(" ")
            if request not in ("SH", "SS", "B", "I", "BR", "IR", "RB", "RI", "BI", "IB", "TP", "IP", "UR", "MT"):
                continue
            line = args.replace('"', "")
        line = _ROFF_ESCAPE.sub(lambda m: _ROFF_CHARS.get(m.group(), ""), line)
        out.append(line)
    return "\n".join(out)


def _clean(text: str) -> str:
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line) + "\n"


def _package_text(package: str, folder: Path) -> str:
    texts = []
    for pattern in PACKAGES[package]:
        for path in sorted(folder.glob(pattern)):
            if path.suffix == ".gz":
                texts.append(roff_to_text(gzip.decompress(path.read_bytes()).decode("utf-8", "replace")))
            else:
                texts.append(html_to_text(path.read_text("utf-8", "replace")))
    return _clean("\n".join(texts))


def _debian_text(packages=tuple(PACKAGES), name: str = "debian-docs") -> str | None:
    """The text of these documentation packages, cached as ``<name>.txt``; ``None`` if apt
    cannot fetch them."""
    cached = CACHE / f"{name}.txt"
    if cached.exists():
        return cached.read_text("utf-8")
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        texts = []
        for package in packages:  # one by one: a package missing from this release is skipped
            subprocess.run(["apt-get", "download", package], cwd=tmp, capture_output=True)
            deb = next(tmp_path.glob(f"{package}_*.deb"), None)
            if deb is None:
                continue
            folder = tmp_path / package
            subprocess.run(["dpkg-deb", "-x", str(deb), str(folder)], check=True)
            texts.append(_package_text(package, folder))
    text = "".join(texts)
    if not text:
        return None
    CACHE.mkdir(exist_ok=True)
    cached.write_text(text, "utf-8")
    return text


# The French-only packages of a few MB each (about 8 MB of downloads; the handbook, KiCad's
# and GIMP's manuals are left out: 100 MB for the rest of their languages and images).
FRENCH_PACKAGES = ("debian-reference-fr", "developers-reference-fr", "maint-guide-fr", "debian-faq-fr",
                   "aptitude-doc-fr", "lilypond-doc-html-fr", "manpages-fr")


def french_corpus() -> tuple[str | None, str]:
    """``(text, description)``: French prose only (Debian's French documentation and man
    pages, free licences), or ``(None, reason)`` when apt cannot fetch it."""
    text = _debian_text(FRENCH_PACKAGES, "debian-french")
    if text is None:
        return None, "no French corpus: apt-get download failed"
    return text, f"Debian's French documentation, {len(text.encode()) / 1e6:.1f} MB"


def man_corpus(megabytes: float = 10.0) -> tuple[str | None, str]:
    """``(text, description)``: about ``megabytes`` MB of this machine's English manual pages
    (``/usr/share/man/man1``-``man8``, pages of at least 500 characters in a shuffle seeded 0), or
    ``(None, reason)`` without them. Technical English, another style than Shakespeare's: the
    held-out English stand-in of docs/auto.md's fourth round (the same on every machine with
    the same packages installed)."""
    import glob
    import random

    pages = sorted(glob.glob("/usr/share/man/man[1-8]/*.gz"))
    random.Random(0).shuffle(pages)
    parts, size = [], 0
    for page in pages:
        if size > megabytes * 1e6:
            break
        try:
            text = _clean(roff_to_text(gzip.decompress(Path(page).read_bytes()).decode("utf-8", "replace")))
        except (OSError, EOFError):
            continue
        if len(text) >= 500:
            parts.append(text)
            size += len(text)
    if not parts:
        return None, "no English man pages under /usr/share/man"
    text = "\n\n".join(parts)
    return text, f"{len(parts):,} English man pages, {len(text.encode()) / 1e6:.1f} MB"


def build_corpus(megabytes: float = 20.0) -> tuple[str | None, str]:
    """``(text, description)``: about ``megabytes`` MB of real text, or ``(None, reason)``."""
    parts, names = [], []
    docs = _debian_text()
    if docs is not None:
        parts.append(docs)
        names.append(f"Debian French/English docs {len(docs.encode()) / 1e6:.1f} MB")
    if SHAKESPEARE.exists():
        parts.append(SHAKESPEARE.read_text("utf-8"))
        names.append(f"Shakespeare {SHAKESPEARE.stat().st_size / 1e6:.1f} MB")
    if not parts:
        return None, "no corpus: apt-get download failed and ../shared/corpora/shakespeare.txt is absent"
    text = "".join(parts)
    data = text.encode("utf-8")
    limit = int(megabytes * 1e6)
    if len(data) > limit:
        cut = data.rfind(b"\n", 0, limit) + 1
        text = data[:cut].decode("utf-8")
    return text, " + ".join(names)
