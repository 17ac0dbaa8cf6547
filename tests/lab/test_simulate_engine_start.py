"""``simulate`` starts Flower's simulation engine again when Ray's head does not come up in time.

Fault injection: ``flwr.simulation.run_simulation`` is replaced by a function that fails the way
Flower 1.42 reports Ray's 30 s GCS start timeout (seen in CI with three pytest-xdist workers
and two experiments on 2 cores), so that the retry is tested without loading the machine.
"""

from __future__ import annotations

from typing import Any

import flwr.simulation
import pytest

from mmbind.errors import FederationError
from mmbind.lab.simulate import RAY_START_ATTEMPTS, ray_start_timed_out, simulate
from mmbind.run_config import RunConfig

TIMEOUT = (
    "Timed out waiting for file /tmp/ray/session_2026-12-08_04-40-20_108963_22072/"
    "gcs_server_port_459dcee30ec0e069fe27048d2b790fa3be0aab87c7c67a4d7cdafe86"
)


def crashed(cause: BaseException) -> RuntimeError:
    """What ``run_simulation`` raises: "Simulation Runtime crashed." from the engine's error."""
    try:
        raise RuntimeError("Simulation Runtime crashed.") from cause
    except RuntimeError as exc:
        return exc


def test_the_start_timeout_is_recognised_through_the_chain_of_causes() -> None:
    assert ray_start_timed_out(crashed(RuntimeError(TIMEOUT)))
    assert ray_start_timed_out(RuntimeError(TIMEOUT))
    assert not ray_start_timed_out(crashed(RuntimeError("a ClientApp raised ValueError")))
    assert not ray_start_timed_out(RuntimeError("Timed out waiting for file /tmp/elsewhere"))


def fake_engine(monkeypatch: pytest.MonkeyPatch, errors: list[BaseException | None]) -> list[int]:
    """Replace the engine: call ``i`` raises ``errors[i]`` (None: returns); count the calls."""
    calls: list[int] = []

    def run_simulation(**_: Any) -> None:
        calls.append(1)
        error = errors[len(calls) - 1]
        if error is not None:
            raise error

    monkeypatch.setattr(flwr.simulation, "run_simulation", run_simulation)
    return calls


def test_a_start_timeout_starts_the_engine_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: the first start times out, the second runs (this fake engine trains nothing)
    calls = fake_engine(monkeypatch, [crashed(RuntimeError(TIMEOUT)), None])
    # Execute / Assert: started twice; then the run's missing results are the error
    with pytest.raises(FederationError, match="without results"):
        simulate(RunConfig(methods=("lower_bound",)))
    assert len(calls) == 2


def test_other_errors_and_repeated_timeouts_are_not_hidden(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare / Execute / Assert: any other crash is raised at once
    calls = fake_engine(monkeypatch, [crashed(RuntimeError("a ClientApp raised ValueError"))])
    with pytest.raises(RuntimeError, match="Simulation Runtime crashed"):
        simulate(RunConfig(methods=("lower_bound",)))
    assert len(calls) == 1
    # ... and a timeout on every attempt after RAY_START_ATTEMPTS starts
    calls = fake_engine(monkeypatch, [crashed(RuntimeError(TIMEOUT))] * RAY_START_ATTEMPTS)
    with pytest.raises(RuntimeError, match="Simulation Runtime crashed"):
        simulate(RunConfig(methods=("lower_bound",)))
    assert len(calls) == RAY_START_ATTEMPTS
