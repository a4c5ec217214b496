"""Building the department adapters from the `[departments.*]` configuration sections."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from adapters.base import DepartmentAdapter
from adapters.household import HouseholdAdapter
from adapters.property import PropertyAdapter
from adapters.social_security import SocialSecurityAdapter
from gateway.domain.errors import ConfigError

_FACTORIES: dict[str, Callable[[Mapping[str, Any]], DepartmentAdapter[Any]]] = {
    "household": HouseholdAdapter.from_config,
    "social_security": SocialSecurityAdapter.from_config,
    "property": PropertyAdapter.from_config,
}


def build_adapters(
    departments: Mapping[str, Mapping[str, Any]],
) -> dict[str, DepartmentAdapter[Any]]:
    """One adapter per configured department. Nothing connects yet: sessions and pools open
    on first use inside the running event loop; `close()` each adapter on shutdown."""
    adapters: dict[str, DepartmentAdapter[Any]] = {}
    for name, cfg in departments.items():
        factory = _FACTORIES.get(name)
        if factory is None:
            raise ConfigError(f"departments.{name}: unknown department")
        try:
            adapters[name] = factory(cfg)
        except KeyError as missing:
            raise ConfigError(f"departments.{name}: missing key {missing}") from None
        except OSError as exc:
            raise ConfigError(f"departments.{name}: cannot read {exc.filename}") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"departments.{name}: bad value ({type(exc).__name__})") from None
    return adapters
