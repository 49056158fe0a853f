"""Settings of the rating page (``rate:`` in the config file)."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, model_validator

LOOPBACK_NAMES = ("localhost",)


class RateSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="address the rating page listens on; loopback keeps it to this machine")
    port: int = Field(8765, ge=1, le=65535, description="port of the rating page")
    token: str | None = Field(
        None, min_length=8, description="shared secret raters open the page with (/?token=...); required off loopback"
    )
    seed: int | None = Field(None, description="seed of the left/right draws, for a reproducible study; random when empty")

    @model_validator(mode="after")
    def _token_off_loopback(self) -> "RateSettings":
        if not is_loopback(self.host) and not self.token:
            raise ValueError(f"host {self.host!r} is reachable from the network: set rate.token too")
        return self


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False
