"""The docs: the README stays one screen, the generated reference pages are current, and the shell blocks the docs
mark as runnable (``<!-- runnable -->`` on the line before the fence) run as written."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from selfplay.reference import pages, stale

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _runnable_blocks() -> list[tuple[str, str]]:
    blocks = []
    for page in sorted(DOCS.rglob("*.md")):
        text = page.read_text()
        for m in re.finditer(r"<!-- runnable -->\n```(?:bash|sh)\n(.*?)\n```", text, re.S):
            blocks.append((f"{page.relative_to(ROOT)}:{text[: m.start()].count(chr(10)) + 1}", m.group(1)))
    return blocks


def test_the_readme_is_one_screen_with_no_dated_text_or_long_cells():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b", text), "dated text belongs in docs/changelog.md"
    for line in text.splitlines():
        if line.startswith("|"):
            assert all(len(cell.strip()) <= 200 for cell in line.strip("|").split("|")), line


def test_every_benchmark_figure_fits_its_cell():
    rows = [line for line in (DOCS / "benchmarks.md").read_text().splitlines() if line.count("|") == 6]
    figures = [line.strip("|").split("|")[-1].strip() for line in rows[2:] if not line.startswith("|---")]
    assert len(figures) > 10 and all(len(f) <= 120 for f in figures), max(figures, key=len)


def test_the_generated_reference_pages_are_current():
    assert stale(DOCS / "reference") == [], "run python -m selfplay.reference"


def test_the_config_reference_names_every_key_with_its_help():
    from dataclasses import fields

    from selfplay.training.schema import SECTIONS, TrainConfig, section_type

    text = pages()["config.md"]
    for section in SECTIONS:
        for f in fields(section_type(section)):
            assert f"`{section}.{f.name}`" in text and f.metadata["help"].split(",")[0][:30] in text
    assert "`update.lr`" in text and "`0.0001`" in text  # a default, as the schema declares it
    assert "| `sampling.observer` |" in text and "`chat`, `compact`" in text  # choices
    top = text.split("## `sampling`")[0]
    assert [f.name for f in fields(TrainConfig) if f.name not in SECTIONS] == re.findall(r"^\| `(\w+)` \|", top, re.M)


def test_a_stale_page_is_named(tmp_path):
    for name, text in pages().items():
        (tmp_path / name).write_text(text)
    (tmp_path / "cli.md").write_text("old\n")
    assert stale(tmp_path) == ["cli.md"]
    out = subprocess.run(
        [sys.executable, "-m", "selfplay.reference", "--check", str(tmp_path)], capture_output=True, text=True
    )
    assert out.returncode == 1 and "cli.md is stale" in out.stderr


@pytest.mark.parametrize("where,block", _runnable_blocks(), ids=[w for w, _ in _runnable_blocks()])
def test_runnable_docs_blocks_run(where, block, tmp_path):
    """Each marked block runs as a bash script in a scratch folder that sees the repository's docs and configs."""
    for name in ("docs", "configs"):
        (tmp_path / name).symlink_to(ROOT / name)
    out = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert out.returncode == 0, f"{where}:\n{block}\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"


def test_there_are_runnable_blocks():
    assert len(_runnable_blocks()) >= 2
