"""Regenerate the Python code of the gRPC contract, or check that it has not drifted.

The proto source is ``protos/v1/binding.proto``; the repository folder ``protos/``
is the package ``mmbind.protos``, so protoc gets the virtual include path
``mmbind/protos=protos`` and the generated modules import each other as
``mmbind.protos.v1.binding_pb2``.

Usage (from anywhere)::

    python protos/generate.py           # regenerate protos/v1/*_pb2*.py{,i} in place
    python protos/generate.py --check   # exit 1 with a diff summary if they differ
"""

from __future__ import annotations

import argparse
import difflib
import shutil
import sys
import tempfile
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

PROTOS = Path(__file__).resolve().parent
"""The repository folder ``protos/`` (the package ``mmbind.protos``)."""
PROTO_FILES = ("v1/binding.proto",)
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
VIRTUAL_ROOT = "mmbind/protos"


def generated_names(proto: str) -> list[str]:
    """Paths, relative to ``protos/``, of the files generated from ``proto``."""
    stem = proto.removesuffix(".proto")
    return [stem + suffix for suffix in GENERATED_SUFFIXES]


def generate(out_dir: Path) -> dict[str, Path]:
    """Run protoc on every proto file into ``out_dir``.

    Returns
    -------
    dict
        Path relative to ``protos/`` -> generated file under ``out_dir``.

    Raises
    ------
    RuntimeError
        If protoc fails (its messages are on stderr).
    """
    from grpc_tools import protoc  # dev dependency: import only when generating

    well_known = resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{VIRTUAL_ROOT}={PROTOS}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(PROTOS / p) for p in PROTO_FILES),
    ]
    code = protoc.main(args)
    if code != 0:
        raise RuntimeError(f"protoc failed with exit code {code} on {', '.join(PROTO_FILES)}")
    produced: dict[str, Path] = {}
    for proto in PROTO_FILES:
        for rel in generated_names(proto):
            path = out_dir / VIRTUAL_ROOT / rel
            if not path.is_file():
                raise RuntimeError(f"protoc did not produce {VIRTUAL_ROOT}/{rel}")
            produced[rel] = path
    return produced


def diff_summary(committed: Path, fresh: Path, rel: str, max_lines: int = 20) -> str:
    """A short unified diff between a committed and a freshly generated file."""
    old = committed.read_text().splitlines() if committed.exists() else []
    new = fresh.read_text().splitlines()
    lines = list(
        difflib.unified_diff(old, new, f"committed/{rel}", f"generated/{rel}", lineterm="", n=1)
    )
    head = "\n".join(lines[:max_lines])
    more = f"\n... ({len(lines) - max_lines} more diff lines)" if len(lines) > max_lines else ""
    return head + more


def check() -> list[str]:
    """Regenerate into a temporary folder; one message per committed file that differs."""
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mmbind-protos-") as tmp:
        for rel, fresh in generate(Path(tmp)).items():
            committed = PROTOS / rel
            if not committed.exists():
                problems.append(f"protos/{rel} is missing")
            elif committed.read_bytes() != fresh.read_bytes():
                problems.append(
                    f"protos/{rel} differs from the code generated from the .proto:\n"
                    + diff_summary(committed, fresh, rel)
                )
    return problems


def write() -> list[str]:
    """Regenerate in place; the files written, relative to ``protos/``."""
    with tempfile.TemporaryDirectory(prefix="mmbind-protos-") as tmp:
        produced = generate(Path(tmp))
        for rel, fresh in produced.items():
            shutil.copyfile(fresh, PROTOS / rel)
    return sorted(produced)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write: exit 1 if the committed generated code differs from the .proto",
    )
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = check()
            if problems:
                print("generated gRPC code is out of date:", file=sys.stderr)
                for p in problems:
                    print(f"- {p}", file=sys.stderr)
                print("run: python protos/generate.py", file=sys.stderr)
                return 1
            print("generated gRPC code is up to date")
            return 0
        for rel in write():
            print(f"wrote protos/{rel}")
        return 0
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
