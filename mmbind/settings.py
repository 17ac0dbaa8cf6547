"""Process-level settings (environment prefix ``MMBIND_``), built at entry points only."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class MMBindSettings(BaseSettings):
    """Settings read from the environment, e.g. ``MMBIND_REDIS_URL``.

    Built by the CLIs, never at import time. CLI flags override these values.
    """

    model_config = SettingsConfigDict(env_prefix="MMBIND_", extra="ignore")

    log_level: str = "WARNING"
    output: str = "mmbind-output"
    data_dir: str = ""
    redis_url: str = ""
    num_cpus: int = 0
    """CPUs given to the simulation engine; 0 = all cores of this machine."""
