"""Rewrites the README sections that commands generate, between `<!-- BEGIN name -->` and `<!-- END name -->`."""
import re
from pathlib import Path


def replace_section(path: Path, name: str, text: str) -> None:
    begin, end = f"<!-- BEGIN {name} (generated) -->", f"<!-- END {name} (generated) -->"
    readme = path.read_text()
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    if not pattern.search(readme):
        raise ValueError(f"{path} has no {begin} ... {end} section")
    path.write_text(pattern.sub(lambda _: f"{begin}\n{text}\n{end}", readme))
