"""The typed RPCs answer byte for byte what they answered before the catalogue served them.

tests/vectors/replay/answers.json was recorded by `python -m tests.support.replay` on the
hand-written adapters and claims (the last commit before the catalogue). This replays the
same calls against today's gateway: every record message's deterministic serialization, the
disclosed fields and data digest of every proof, and every claim's verdict must match.
"""

from __future__ import annotations

import json
from pathlib import Path

from gateway.devtools.pki import DevPki
from tests.support.replay import POLICY, replay
from tests.support.stack import ROOT, running_stack

ANSWERS = ROOT / "tests" / "vectors" / "replay" / "answers.json"


async def test_typed_rpcs_answer_as_before(pki: DevPki, tmp_path: Path) -> None:
    expected = json.loads(ANSWERS.read_text())
    async with running_stack(pki, tmp_path, {"policy": {"file": str(POLICY)}}) as stack:
        got = await replay(stack)
    assert sorted(got) == sorted(expected)
    differing = [idn for idn in expected if got[idn] != expected[idn]]
    assert not differing, f"{len(differing)} of {len(expected)} people answered differently"
