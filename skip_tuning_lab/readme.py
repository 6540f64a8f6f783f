"""Rewrites the README sections that commands generate, between `<!-- BEGIN name -->` and `<!-- END name -->`."""
import re
from pathlib import Path


def _pattern(name: str):
    begin, end = f"<!-- BEGIN {name} (generated) -->", f"<!-- END {name} (generated) -->"
    return begin, end, re.compile(re.escape(begin) + "\n?(.*?)\n?" + re.escape(end), re.S)


def section(path: Path, name: str) -> str:
    """The text a command wrote between the markers."""
    return _pattern(name)[2].search(path.read_text()).group(1)


def replace_section(path: Path, name: str, text: str) -> None:
    begin, end, pattern = _pattern(name)
    readme = path.read_text()
    if not pattern.search(readme):
        raise ValueError(f"{path} has no {begin} ... {end} section")
    path.write_text(pattern.sub(lambda _: f"{begin}\n{text}\n{end}", readme))
