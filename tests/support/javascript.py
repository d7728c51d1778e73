"""The real IoT Agent code and JavaScript's JSON in one Node process, as an oracle for property tests.

`AgentOracle` runs tests/support/agent_oracle.js with the installed iotagent-ul (its UltraLight
parser and its iotagent-node-lib) and answers two questions in microseconds, without MQTT or HTTP:
does JavaScript's `JSON.parse` take a text, and what exact Orion request does the library make of a
payload. Hypothesis can then ask thousands of them.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.support.iot_agent import UL, agent_home

SCRIPT = Path(__file__).with_name("agent_oracle.js")


class AgentOracle:
    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            ["node", str(SCRIPT), str(agent_home(UL))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
        )

    def _ask(self, *request: Any) -> Any:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(request, ensure_ascii=False) + "\n")
        self._proc.stdin.flush()
        while True:
            line = self._proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the Node oracle exited ({self._proc.poll()})")
            if line.startswith("@@"):
                answer = json.loads(line[2:])
                if "error" in answer:
                    raise RuntimeError(f"the Node oracle failed: {answer['error']}")
                return answer

    def json_parses(self, text: str) -> bool:
        """Whether JavaScript's JSON.parse(text) succeeds."""
        return bool(self._ask("json_parse", text)["ok"])

    def agent_request(
        self, fmt: str, payload: str, *, entity_name: str, entity_type: str, types: Mapping[str, str]
    ) -> tuple[str, bytes]:
        """(url, body) of the Orion request iotagent-node-lib makes of one payload ("json" or "ul")."""
        answer = self._ask("agent_request", fmt, payload, entity_name, entity_type, dict(types))
        return answer["url"], answer["body"].encode()

    def close(self) -> None:
        self._proc.kill()
        self._proc.wait()
        for pipe in (self._proc.stdin, self._proc.stdout):
            if pipe is not None:
                pipe.close()


@pytest.fixture(scope="session")
def agent_oracle() -> Iterator[AgentOracle]:
    oracle = AgentOracle()
    yield oracle
    oracle.close()
