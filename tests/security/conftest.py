"""The security suite: each module reproduces one item of the red-team review against a real
gateway (real grpc.aio server, real mutual TLS, the embedded departments) and passes only
once the hole is closed. The fixtures are the integration suite's."""

from tests.integration.conftest import details, make_stack, stack

__all__ = ["details", "make_stack", "stack"]
