"""What the embedded departments need to know of the catalogue: the household registry's
AppKey and secret (it verifies the gateway's signatures), every other department's
credentials by file (HTTP Basic password, OAuth client, API key: the simulator accepts what
the gateway sends), where each department is (the simulators of `proofless simulators` listen
where the catalogue says the gateway will call) and where the front-end databases are (the
simulated registries fill what the gateway's SQL connector reads).

`simulator_departments(catalogue)` gives it in the shape `run_simulators` reads, so the
simulators and the gateway can never be pointed at different places by accident.
"""

from __future__ import annotations

from typing import Any

from gateway.catalogue.schema import Catalogue


def simulator_departments(catalogue: Catalogue) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for code, department in catalogue.departments.items():
        settings: dict[str, Any] = {"endpoint": department.endpoint}
        if department.connector == "sql":
            settings["dsn"] = department.endpoint
            schema = department.settings.get("schema")
            if schema:
                settings["schema"] = schema
        else:
            settings["url"] = department.endpoint
        auth = department.auth.settings
        if department.auth.scheme == "hmac_appkey":
            settings["app_key"] = auth["app_key"]
            settings["app_secret_file"] = auth["secret_file"]
        settings["auth"] = {"scheme": department.auth.scheme, **auth}
        out[code] = settings
    return out
