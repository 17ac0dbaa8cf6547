"""Process-level settings (environment prefix ``MMBIND_``), built at entry points only."""

from __future__ import annotations

from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from mmbind.errors import ConfigError


class MMBindSettings(BaseSettings):
    """Settings read from the environment, e.g. ``MMBIND_REDIS_URL``.

    Built by the CLIs, never at import time. CLI flags override these values.
    """

    model_config = SettingsConfigDict(env_prefix="MMBIND_", extra="ignore")

    log_level: str = "WARNING"
    output: str = "mmbind-output"
    data_dir: str = ""
    redis_url: str = ""
    redis_password: SecretStr = SecretStr("")
    """Redis password (``MMBIND_REDIS_PASSWORD``): never on a command line, never logged."""
    redis_password_file: str = ""
    """A file holding the Redis password (``MMBIND_REDIS_PASSWORD_FILE``)."""
    binding_service: str = ""
    """The BindingService a ServerApp uses (``MMBIND_BINDING_SERVICE``, set by mmbind-server
    for the processes it starts: the run's submitter cannot point it elsewhere)."""
    certs_dir: str = ""
    """The folder of this machine from ``mmbind certs init`` (``MMBIND_CERTS_DIR``)."""
    num_cpus: int = 0
    """CPUs given to the simulation engine; 0 = all cores of this machine."""

    @classmethod
    def load(cls) -> MMBindSettings:
        """Read the environment; a bad value is one :class:`ConfigError` naming the variable."""
        try:
            return cls()
        except ValidationError as exc:
            err = exc.errors()[0]
            name = f"MMBIND_{'_'.join(str(p) for p in err['loc']).upper()}"
            raise ConfigError(f"invalid {name}={err.get('input')!r}: {err['msg']}") from None
