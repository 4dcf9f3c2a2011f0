"""Regenerate morphnas/v1 from protos/ (the one command; CI checks the output does not drift).

python scripts/gen_protos.py            # write morphnas/v1/*_pb2*.py
python scripts/gen_protos.py --check    # exit 1 if the committed files differ
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
PACKAGE = Path("morphnas") / "v1"


def generate(out: Path) -> list[Path]:
    sources = sorted(str(p.relative_to(PROTOS)) for p in (PROTOS / PACKAGE).glob("*.proto"))
    include = str(Path(protoc.__file__).parent / "_proto")
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--pyi_out={out}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted((out / PACKAGE).glob("*_pb2*.py*"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generated = generate(Path(tmp))
        target = ROOT / PACKAGE
        if args.check:
            stale = [
                p.name
                for p in generated
                if not (target / p.name).exists()
                or not filecmp.cmp(p, target / p.name, shallow=False)
            ]
            if stale:
                print(f"generated code is out of date: {stale}; run python scripts/gen_protos.py")
                return 1
            print("generated code matches protos/")
            return 0
        target.mkdir(parents=True, exist_ok=True)
        for path in generated:
            shutil.copy(path, target / path.name)
        (target / "__init__.py").write_text(
            '"""Generated from protos/morphnas/v1 by scripts/gen_protos.py. Do not edit."""\n'
        )
        print(f"wrote {[p.name for p in generated]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
