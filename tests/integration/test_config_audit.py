"""Configuration changes are audit entries: the rules a gateway starts with, each policy or
catalogue reload (by file change or SIGHUP), and each refused one, with the old and new
versions, so an auditor replaying the log knows which rules decided every access."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.stack import ROOT, Stack, poll


async def config_entries(stack: Stack) -> list[dict[str, Any]]:
    log = stack.gateway.audit
    lines = await log.entries(0, log.tree_size) if log.tree_size else []
    return [e for e in map(json.loads, lines) if e.get("kind") == "config"]


async def test_start_edit_refusal_and_sighup_are_in_the_log(
    make_stack: Callable[..., Any], tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    shutil.copy(ROOT / "deploy" / "config" / "policy.toml", policy)
    async with make_stack({"policy": {"file": str(policy)}}, tmp_path / "state") as stack:
        (start,) = await config_entries(stack)
        first = stack.gateway.rules.value.policy.version
        assert (start["trigger"], start["outcome"], start["policy"]["new"]) == (
            "start",
            "applied",
            first,
        )

        # an edit: the witness caller goes away
        text = policy.read_text(encoding="utf-8")
        edited = text.replace('[callers.witness]\nname = "independent checkpoint witness"\n'
                              'roles = ["witness"]\n', "")  # fmt: skip
        assert edited != text
        policy.write_text(edited, encoding="utf-8")
        os.utime(policy, ns=(1, 1))  # a different stamp even within one mtime tick

        async def applied() -> bool:
            return len(await config_entries(stack)) >= 2

        await poll(applied, "the policy edit's audit entry")
        change = (await config_entries(stack))[1]
        assert (change["trigger"], change["outcome"]) == ("change", "applied")
        assert change["policy"]["old"] == first
        assert change["policy"]["new"] == stack.gateway.rules.value.policy.version != first
        assert change["changes"] == {"callers": {"removed": ["witness"]}}

        # a broken file: refused, the previous rules stay, and the refusal is logged
        policy.write_text(edited + "\n[items.broken]\n", encoding="utf-8")
        os.utime(policy, ns=(2, 2))

        async def refused() -> bool:
            return len(await config_entries(stack)) >= 3

        await poll(refused, "the refused policy's audit entry")
        refusal = (await config_entries(stack))[2]
        assert refusal["outcome"] == "refused"
        assert refusal["policy"]["new"] == change["policy"]["new"]
        assert "items.broken" in refusal["error"]

        # SIGHUP (reload_rules): a forced reload of a good file is logged as such
        policy.write_text(edited, encoding="utf-8")
        stack.gateway.reload_rules()

        async def forced() -> bool:
            return any(e["trigger"] == "sighup" for e in await config_entries(stack))

        await poll(forced, "the SIGHUP reload's audit entry")
