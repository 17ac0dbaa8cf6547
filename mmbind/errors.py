"""The error hierarchy of mmbind.

Every error a user can cause derives from :class:`MMBindError`. Entry points turn
them into a one-line message and a non-zero exit; the gRPC edge maps them to a
status code through :attr:`MMBindError.grpc_status` (the name of a
``grpc.StatusCode`` member, kept as a string so this module needs no gRPC).
"""

from __future__ import annotations


class MMBindError(Exception):
    """Root of all errors that mmbind raises on purpose."""

    grpc_status: str = "INTERNAL"
    exit_code: int = 1


class ConfigError(MMBindError, ValueError):
    """A configuration value, CLI argument or hyperparameter is invalid."""

    grpc_status = "INVALID_ARGUMENT"
    exit_code = 2


class UnknownModalityError(ConfigError):
    """A modality name is not in the registry."""


class DataError(MMBindError):
    """Data files are missing, unreadable or hold invalid values (NaN, bad shape)."""

    grpc_status = "FAILED_PRECONDITION"
    exit_code = 3


class ShapeError(MMBindError, ValueError):
    """Arrays or tensors have a shape that does not fit the operation."""

    grpc_status = "INVALID_ARGUMENT"


class BindingError(MMBindError):
    """A run cannot bind: no shared modality, no partner node, nothing to pair."""

    grpc_status = "FAILED_PRECONDITION"
    exit_code = 4


class UnknownNodeError(MMBindError, KeyError):
    """A node id is not part of the run."""

    grpc_status = "NOT_FOUND"

    def __str__(self) -> str:  # KeyError quotes its argument; keep messages plain.
        return str(self.args[0]) if self.args else "unknown node"


class StoreError(MMBindError):
    """The binding store is unreachable or holds inconsistent state."""

    grpc_status = "UNAVAILABLE"
    exit_code = 5


class FederationError(MMBindError):
    """A federated phase failed: nodes replied with errors or did not reply."""

    grpc_status = "ABORTED"
    exit_code = 6


class LimitError(MMBindError):
    """A request exceeds a limit of the service (size, count, concurrent streams)."""

    grpc_status = "RESOURCE_EXHAUSTED"


class AuthenticationError(MMBindError):
    """A caller presents no credential, or one the service does not know."""

    grpc_status = "UNAUTHENTICATED"
    exit_code = 7


class PermissionDeniedError(MMBindError):
    """A caller's credential does not allow what it asks for."""

    grpc_status = "PERMISSION_DENIED"
    exit_code = 7
