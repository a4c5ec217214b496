"""The tamper-evident audit log: a transparency log of every access (ARCHITECTURE.md,
"Formats" and "Guarantees").

Rooms: `merkle` (RFC 9162 tree maths, pure), `note` (C2SP signed notes and checkpoints, pure),
`entry` (canonical entries and subjects, pure), `storage` (segments and checkpoint files),
`tiles` (tlog-tiles hash storage),
`log` (the asyncio `AuditLog`), `verify` and `tools` (offline auditing), `cli`, `service` (gRPC).
"""
