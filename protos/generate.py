"""Regenerate the Python code of the gRPC contract, or check that it has not drifted.

The proto source is ``protos/v1/binding.proto``; the repository folder ``protos/``
is the package ``mmbind.protos``, so protoc gets the virtual include path
``mmbind/protos=protos`` and the generated modules import each other as
``mmbind.protos.v1.binding_pb2``.

Besides protoc's ``binding_pb2.py``, ``binding_pb2.pyi`` and ``binding_pb2_grpc.py``
this writes ``binding_pb2_grpc.pyi``, a typed stub of the gRPC module made from the
service descriptor (protoc has no stub output for it), and marks
``binding_pb2.pyi`` ``# mypy: ignore-errors`` (protobuf ships no type information,
so its ``Message`` base class is ``Any`` under ``mypy --strict``).

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
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")
VIRTUAL_ROOT = "mmbind/protos"
MYPY_HEADER = "# mypy: ignore-errors\n"


def generated_names(proto: str) -> list[str]:
    """Paths, relative to ``protos/``, of the files generated from ``proto``."""
    stem = proto.removesuffix(".proto")
    return [stem + suffix for suffix in GENERATED_SUFFIXES]


def _python_type(proto_type: str, package: str, module: str) -> str:
    """``.mmbind.v1.Foo`` -> ``binding_pb2.Foo`` (messages of this file only)."""
    prefix = f".{package}."
    if not proto_type.startswith(prefix):
        raise RuntimeError(f"message type {proto_type} is not in package {package}")
    return f"{module}.{proto_type[len(prefix) :]}"


def grpc_stub(descriptor_set: bytes, proto: str) -> str:
    """Text of the typed stub ``<name>_pb2_grpc.pyi`` of ``proto``'s services."""
    from google.protobuf import descriptor_pb2

    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set).file
    wanted = f"{VIRTUAL_ROOT}/{proto}"
    fd = next((f for f in files if f.name == wanted), None)
    if fd is None:
        raise RuntimeError(f"protoc gave no descriptor for {wanted}")
    stem = Path(proto).stem
    module = f"{stem}_pb2"
    dotted = f"mmbind.protos.{Path(proto).parent.as_posix().replace('/', '.')}"
    lines = [
        f'"""Typed stub of ``{stem}_pb2_grpc`` (written by protos/generate.py; do not edit)."""',
        "",
        "from collections.abc import Iterator",
        "",
        "import grpc",
        "",
        f"from {dotted} import {module}",
        "",
    ]
    for service in fd.service:
        lines += ["", f"class {service.name}Stub:"]
        lines.append("    def __init__(self, channel: grpc.Channel) -> None: ...")
        for m in service.method:
            kind = ("Stream" if m.client_streaming else "Unary") + (
                "Stream" if m.server_streaming else "Unary"
            )
            lines.append(f"    {m.name}: grpc.{kind}MultiCallable")
        lines += ["", "", f"class {service.name}Servicer:"]
        for m in service.method:
            in_type = _python_type(m.input_type, fd.package, module)
            out_type = _python_type(m.output_type, fd.package, module)
            arg = (
                f"request_iterator: Iterator[{in_type}]"
                if m.client_streaming
                else (f"request: {in_type}")
            )
            ret = f"Iterator[{out_type}]" if m.server_streaming else out_type
            lines += [
                f"    def {m.name}(",
                f"        self, {arg}, context: grpc.ServicerContext",
                f"    ) -> {ret}: ...",
            ]
        lines += [
            "",
            "",
            f"def add_{service.name}Servicer_to_server(",
            f"    servicer: {service.name}Servicer, server: grpc.Server",
            ") -> None: ...",
        ]
    return "\n".join(lines) + "\n"


def generate(out_dir: Path) -> dict[str, Path]:
    """Run protoc on every proto file into ``out_dir`` and write the extra stubs.

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
    descriptors = out_dir / "descriptors.pb"
    args = [
        "grpc_tools.protoc",
        f"-I{VIRTUAL_ROOT}={PROTOS}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--descriptor_set_out={descriptors}",
        *(str(PROTOS / p) for p in PROTO_FILES),
    ]
    code = protoc.main(args)
    if code != 0:
        raise RuntimeError(f"protoc failed with exit code {code} on {', '.join(PROTO_FILES)}")
    produced: dict[str, Path] = {}
    for proto in PROTO_FILES:
        stem = proto.removesuffix(".proto")
        base = out_dir / VIRTUAL_ROOT
        (base / f"{stem}_pb2_grpc.pyi").write_text(grpc_stub(descriptors.read_bytes(), proto))
        message_stub = base / f"{stem}_pb2.pyi"
        if message_stub.is_file():
            message_stub.write_text(MYPY_HEADER + message_stub.read_text())
        for rel in generated_names(proto):
            path = base / rel
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
