"""The documentation a new user reads: README.md stays short and starts with the two commands, every
relative link in README.md, docs/ and the model cards reaches an existing file (and heading), and
each shipped checkpoint's model card is the one tools/model_card.py generates from its records."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOOL = REPO / "tools" / "model_card.py"
SHIPPED = sorted(p.parent for p in (REPO / "checkpoints").glob("*/worldgame.json"))

PLAY = ("python -m venv .venv && . .venv/bin/activate && pip install torch --index-url "
        "https://download.pytorch.org/whl/cpu && pip install -e . && worldgame play")
TEST = ("python -m venv .venv && . .venv/bin/activate && pip install torch --index-url "
        "https://download.pytorch.org/whl/cpu && pip install -e '.[dev,atari]' && python -m pytest -x -n auto --maxprocesses=4 --dist loadfile --durations=25")

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def markdown_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *(c / "README.md" for c in SHIPPED)]


def prose(text: str) -> str:
    """The text outside fenced code blocks and inline code spans (links there are examples, not links)."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, formatting and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())  # a link's text
    text = re.sub(r"[^\w\- ]", "", text.replace("`", "").lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def test_readme_is_short_and_starts_with_the_two_commands() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail into docs/ (at most 250)"
    first = FENCE.search(text)
    assert first, "README.md has no code block"
    block = first.group(0)
    assert PLAY in block, "README.md's first code block must hold the command that sets up and plays the shipped game"
    assert TEST in block, "README.md's first code block must hold the command that sets up and runs the tests"


def test_every_relative_link_reaches_a_file_and_heading() -> None:
    broken = []
    for md in markdown_files():
        assert md.is_file(), f"{md.relative_to(REPO)} is missing"
        for target in LINK.findall(prose(md.read_text(encoding="utf-8"))):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, mailto: ...
                continue
            file_part, _, anchor = target.partition("#")
            dest = (md.parent / file_part).resolve() if file_part else md
            where = f"{md.relative_to(REPO)} -> {target}"
            if not dest.exists():
                broken.append(f"{where}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{where}: no heading #{anchor} in {dest.relative_to(REPO)}")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_docs_are_linked_from_the_readme() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    missing = [p.name for p in sorted((REPO / "docs").glob("*.md")) if f"(docs/{p.name}" not in readme]
    assert not missing, f"docs/ files README.md does not link: {missing}"


def card_tool(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], check=False, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("checkpoint", SHIPPED, ids=[p.name for p in SHIPPED])
def test_model_card_is_current(checkpoint: Path) -> None:
    done = card_tool("--check", checkpoint)
    assert done.returncode == 0, (done.stderr or done.stdout).strip() + (
        f"\nregenerate it: python tools/model_card.py checkpoints/{checkpoint.name}")


def test_shipped_checkpoints_are_there() -> None:
    assert {p.name for p in SHIPPED} >= {"bouncer", "boxing", "pong"}


def test_model_card_check_finds_a_stale_card_and_reads_files_as_data(tmp_path: Path) -> None:
    src = REPO / "checkpoints" / "pong"
    folder = tmp_path / "pong"
    (folder / "eval").mkdir(parents=True)
    shutil.copy(src / "worldgame.json", folder / "worldgame.json")
    ev = json.loads((src / "eval" / "eval.json").read_text())
    # mistyped and hostile values: left out or shown as text, never evaluated
    ev["vae_psnr"] = "__import__('os').system('false')"
    ev["teacher_forced"]["psnr"]["4"] = float("nan")
    ev["objects"]["control"]["pairs"]["RIGHT/LEFT"] = ["not", "a", "dict"]
    ev["rollout"]["fusion"] = "off | <script>\n# heading"
    (folder / "eval" / "eval.json").write_text(json.dumps(ev))
    (folder / "README.md").write_text("stale\n")
    assert card_tool("--check", folder).returncode == 1
    assert (folder / "README.md").read_text() == "stale\n"  # --check writes nothing
    written = card_tool(folder)
    assert written.returncode == 0, written.stderr
    card = (folder / "README.md").read_text()
    assert "__import__" not in card and "PSNR – dB" in card and "\n# heading" not in card
    assert card_tool("--check", folder).returncode == 0


def test_model_card_refuses_what_is_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "eval").mkdir()
    (tmp_path / "worldgame.json").write_text("[1, 2]")
    (tmp_path / "eval" / "eval.json").write_text("{}")
    done = card_tool(tmp_path)
    assert done.returncode == 2 and "worldgame.json" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "README.md").exists()
