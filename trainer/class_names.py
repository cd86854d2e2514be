"""``--class-names`` of the trainer CLI: a built-in list by its name, or a file of names.

A file holds a JSON list of strings, or one name per line; the rules the names must follow are
``core.class_names``'s, shared with the retraining job API.
"""

from __future__ import annotations

import json
from pathlib import Path

from core.class_names import BUILT_IN


def load_class_names(value: str) -> list[str]:
    """A built-in list by its name, or the names in the file ``value`` (JSON list or one per line)."""
    if value in BUILT_IN:
        return list(BUILT_IN[value])
    path = Path(value)
    if not path.is_file():
        raise ValueError(f"--class-names {value!r} is neither {' nor '.join(BUILT_IN)} nor a readable file")
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            names = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not a JSON list of class names ({exc.msg} at line {exc.lineno})") from exc
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise ValueError(f"{path}: the JSON must be a list of strings")
        return names
    return [line.strip() for line in text.splitlines() if line.strip()]
