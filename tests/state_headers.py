"""Training states as earlier versions wrote them: a field removed from the JSON header."""

import json
from pathlib import Path


def drop_header_field(path: Path, name: str) -> None:
    """Rewrite the training state at ``path`` without ``name`` in its header's JSON, as the
    code from before that field existed wrote it (its tensors unchanged)."""
    blob = path.read_bytes()
    size = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + size])
    found = json.loads(header["__metadata__"]["state"])
    del found[name]
    header["__metadata__"]["state"] = json.dumps(found)
    packed = json.dumps(header).encode()
    path.write_bytes(len(packed).to_bytes(8, "little") + packed + blob[8 + size :])
