"""Writing a benchmark's results: one JSON file, its summary echoed to the terminal."""
from __future__ import annotations

import json
from pathlib import Path


def write_report(path, out: dict, summary: dict) -> Path:
    """Write ``out`` as indented JSON to ``path`` (folders created), print ``summary``
    and where the file went."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(out, indent=1))
    print(json.dumps(summary, indent=1))
    print(f"wrote {p}")
    return p
