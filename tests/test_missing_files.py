"""Nothing in the repository points at files a user of it does not have.

The project was designed from documents that never shipped with it (the design notes' interface,
architecture, protocols and style pages); a docstring or comment that sends the reader there is
a dead end. What those pages fixed for users is in docs/reference.md. The names are built here
from parts, so this file does not match itself.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

UNSHIPPED = re.compile(
    r"(?<![\w-])(?:"
    + "|".join(
        re.escape(page + ".md") for page in ("interface", "architecture", "protocols", "style")
    )
    + "|"
    + re.escape("shared" + "/" + "design")
    + r")",
    re.IGNORECASE,
)


def _tracked_files() -> list[Path]:
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the tracked files are unknown")
    listed = subprocess.run(
        [git, "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True
    ).stdout
    return [ROOT / name for name in listed.decode().split("\0") if name]


def _text(path: Path) -> str | None:
    """The file's text, or None for a binary (NUL bytes, not UTF-8) or absent file."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return None
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    anchors = set()
    for heading in re.findall(r"^#+\s+(.+?)\s*$", markdown, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def test_every_relative_link_in_the_markdown_files_resolves() -> None:
    """README and docs/ link to each other; a moved section or file must not leave a dead link."""
    markdown = [path for path in _tracked_files() if path.suffix == ".md"]
    assert len(markdown) >= 4
    dead = []
    checked = 0
    for path in markdown:
        text = path.read_text(encoding="utf-8")
        for number, line in enumerate(text.splitlines(), 1):
            for target in LINK.findall(line):
                if re.match(r"^[a-z]+:", target):
                    continue  # http:, https:, mailto:
                file_part, _, anchor = target.partition("#")
                resolved = (path.parent / file_part).resolve() if file_part else path
                checked += 1
                if not resolved.exists():
                    dead.append(f"{path.relative_to(ROOT)}:{number}: {target} (no such file)")
                elif anchor and resolved.suffix == ".md":
                    if anchor not in _anchors(resolved.read_text(encoding="utf-8")):
                        dead.append(
                            f"{path.relative_to(ROOT)}:{number}: {target} (no such heading)"
                        )
    assert checked >= 10
    assert not dead, "dead links:\n" + "\n".join(dead)


def test_the_pattern_matches_each_unshipped_name_and_nothing_near_it() -> None:
    md = ".md"
    for text in (
        "see interface" + md,
        "(ARCHITECTURE" + md + ")",
        "`protocols" + md + "`",
        "style" + md + ", section 2",
        "shared/" + "design/notes",
    ):
        assert UNSHIPPED.search(text), text
    for text in ("lifestyle" + md, "docs/reference.md", "my-style" + md, "interface_md", "shared/"):
        assert UNSHIPPED.search(text) is None, text


def test_no_tracked_file_names_a_file_users_do_not_have() -> None:
    files = _tracked_files()
    assert len(files) > 50
    found = []
    scanned = 0
    for path in files:
        text = _text(path)
        if text is None:
            continue
        scanned += 1
        for number, line in enumerate(text.splitlines(), 1):
            for match in UNSHIPPED.finditer(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {match.group(0)}")
    assert scanned > 50
    assert not found, (
        "these point at files users do not have (point to docs/reference.md instead):\n"
        + "\n".join(found)
    )
