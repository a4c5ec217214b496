"""The gateway's configuration: one TOML file with environment overrides, read into typed
sections (`Config`), and `Reloadable` for the files watched while serving."""

from gateway.config._loader import (
    ENV_PREFIX,
    AuditConfig,
    Config,
    ServerConfig,
    TlsConfig,
    TracingConfig,
    apply_env,
    host_port,
    load_config,
    merge_tables,
    parse_config,
)

__all__ = [
    "ENV_PREFIX",
    "AuditConfig",
    "Config",
    "ServerConfig",
    "TlsConfig",
    "TracingConfig",
    "apply_env",
    "host_port",
    "load_config",
    "merge_tables",
    "parse_config",
]
