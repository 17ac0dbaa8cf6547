"""The committed gRPC code is what protos/v1/binding.proto generates, and it fits the servicer."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mmbind.protos import generate
from mmbind.protos.v1 import binding_pb2, binding_pb2_grpc
from mmbind.server.grpc_service import BindingServicer


def test_generated_code_matches_the_proto() -> None:
    problems = generate.check()
    assert problems == [], "\n".join(problems)


def test_check_reports_drift(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "protos"
    shutil.copytree(generate.PROTOS, copy, ignore=shutil.ignore_patterns("__pycache__"))
    proto = copy / "v1" / "binding.proto"
    proto.write_text(
        proto.read_text().replace(
            "message ListRunsRequest {}", "message ListRunsRequest {\n  bool all = 1;\n}"
        )
    )
    monkeypatch.setattr(generate, "PROTOS", copy)
    problems = generate.check()
    assert problems and any("binding_pb2.py differs" in p for p in problems)
    assert generate.main(["--check"]) == 1
    assert generate.main([]) == 0  # regenerating in place fixes it
    assert generate.check() == []


def test_generated_modules_import_through_the_package() -> None:
    source = Path(binding_pb2_grpc.__file__).read_text()
    assert "from mmbind.protos.v1 import binding_pb2" in source
    assert binding_pb2.DESCRIPTOR.name == "mmbind/protos/v1/binding.proto"
    assert binding_pb2.DESCRIPTOR.package == "mmbind.v1"


def test_servicer_implements_every_rpc() -> None:
    service = binding_pb2.DESCRIPTOR.services_by_name["BindingService"]
    base = binding_pb2_grpc.BindingServiceServicer
    missing = [
        m.name for m in service.methods if getattr(BindingServicer, m.name) is getattr(base, m.name)
    ]
    assert missing == []
