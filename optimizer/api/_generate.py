"""Regenerate the committed protobuf/gRPC modules from protos/ (needs grpcio-tools).

Run ``python -m optimizer.api._generate`` after editing a .proto; tests/api/test_generated.py
fails when the committed modules are stale.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "protos"
OUT_DIR = Path(__file__).resolve().parent / "smartcharging" / "v1"
#: Every .proto of the package, in a stable order (a new file needs no edit here).
PROTOS = tuple(sorted(str(f.relative_to(PROTO_DIR)) for f in (PROTO_DIR / "smartcharging" / "v1").glob("*.proto")))


def generate(out_root: Path) -> dict[str, str]:
    """Generate into a scratch dir; return {file name: text} with package-relative imports."""
    from grpc_tools import protoc  # dev dependency, imported only here

    with tempfile.TemporaryDirectory() as tmp:
        include = str(Path(protoc.__file__).parent / "_proto")
        args = ["protoc", f"-I{PROTO_DIR}", f"-I{include}", f"--python_out={tmp}",
                f"--pyi_out={tmp}", f"--grpc_python_out={tmp}", *PROTOS]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        out: dict[str, str] = {}
        for f in sorted((Path(tmp) / "smartcharging" / "v1").iterdir()):
            text = f.read_text()
            # grpc_tools writes absolute imports from the proto path; make them package-relative.
            text = text.replace("from smartcharging.v1 import", "from . import")
            out[f.name] = text
        return out


def main() -> int:
    files = generate(OUT_DIR)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (OUT_DIR / name).write_text(text)
    for pkg in (OUT_DIR.parent, OUT_DIR):
        (pkg / "__init__.py").touch()
    print(f"wrote {len(files)} files to {OUT_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
