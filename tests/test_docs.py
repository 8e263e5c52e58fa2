"""The README and docs/ stay true: the README is short, every relative link (and its #anchor) resolves, every
headline number links to its page, and every `saelab` command they show names a command that exists (the
README's complete command lines parse as given)."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from saelab.cli import build_parser, route

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    return {slug(m) for m in re.findall(r"^#+ (.*)$", text, flags=re.M)}


def test_readme_is_short_and_keeps_the_two_commands() -> None:
    text = README.read_text()
    assert len(text.splitlines()) < 200
    assert "python3 -m pip install -q rust-just && just demo" in text
    assert "python3 -m pip install -q rust-just && just test" in text
    assert "<!-- BEGIN synth table" in text and "<!-- END synth table -->" in text and "docs/synth.md" in text


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_and_anchors_resolve(page: Path) -> None:
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name}: {target} does not exist"
        if anchor and dest.suffix == ".md":
            assert anchor in anchors(dest), f"{page.name}: no heading #{anchor} in {dest.name}"


def test_every_headline_number_links_to_its_page() -> None:
    table = README.read_text().split("## Headline results", 1)[1].split("\n## ", 1)[0]
    rows = [r for r in table.splitlines() if r.startswith("| ") and not r.startswith(("| what", "| ---"))]
    assert len(rows) >= 8
    for row in rows:
        what, result, machine, command = [c.strip() for c in row.strip("|").split(" | ")]
        assert "](docs/" in result, f"no link in {what!r}"
        assert command.startswith("`") and machine, row


def _commands(text: str) -> list[list[str]]:
    """The `saelab ...` command lines of a page's bash blocks, up to a comment or a `&&`."""
    found = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M):
        for line in block.splitlines():
            for part in line.split("#", 1)[0].split("&&"):
                if part.strip().startswith("saelab "):
                    found.append(shlex.split(part)[1:])
    return found


def test_readme_commands_parse() -> None:
    commands = _commands(README.read_text())
    assert len(commands) >= 9
    parser = build_parser()
    for argv in commands:
        parser.parse_args(route(argv).argv)  # exits with a usage error if a command or option does not exist


def _choices(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommands of `parser` by name ({} for a command without any)."""
    found = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]  # noqa: SLF001
    return dict(found[0].choices) if found else {}


def test_commands_named_in_docs_exist() -> None:
    top = _choices(build_parser())
    for page in PAGES:
        for cmd in re.findall(r"`saelab ([a-z][a-z-]*(?: [a-z][a-z-]*)?)", page.read_text()):
            words = route(cmd.split()).argv
            assert words[0] in top, f"{page.name}: `saelab {cmd}` is not a command"
            nested = _choices(top[words[0]])
            if nested and len(words) > 1:
                assert words[1] in nested, f"{page.name}: `saelab {cmd}` is not a command"
