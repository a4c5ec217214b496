"""The security suite: each module reproduces one item of the red-team review against a real
gateway (real grpc.aio server, real mutual TLS, the embedded departments) and passes only
once the hole is closed. The fixtures are the integration suite's, and the audit tests' note
key."""

from tests.integration.conftest import details, make_stack, stack
from tests.support.auditlog import note_key, note_key_file

__all__ = ["details", "make_stack", "note_key", "note_key_file", "stack"]
