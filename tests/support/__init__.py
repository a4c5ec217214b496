"""Helpers shared by the test suites: a running stack, audit logs, processes, the CLI."""
