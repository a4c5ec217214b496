"""Embedded department simulators: the household registry and social-security bureau as HTTP
JSON services, the real-estate registry as a front-end database, all fed by one deterministic
synthetic population (`datagen`)."""

from adapters.simulators.datagen import Population, generate
from adapters.simulators.faults import Faults
from adapters.simulators.runner import Simulators, run_simulators, serve_forever

__all__ = ["Faults", "Population", "Simulators", "generate", "run_simulators", "serve_forever"]
