"""Fixtures for the listen agent tests: generated audio (espeak-ng + sox) and an agent on the real server."""

from __future__ import annotations

import pytest

from tilepilot.agents.listen.agent import ListenAgent
from tilepilot.agents.rules import build_policy
from tests.gen.audio import AudioFactory


@pytest.fixture(scope="session")
def audio_gen(tmp_path_factory: pytest.TempPathFactory) -> AudioFactory:
    return AudioFactory(tmp_path_factory.getbasetemp() / "listen-audio")


@pytest.fixture
def listen_agent(chat_client) -> ListenAgent:
    return ListenAgent(chat_client, build_policy("listen"), workers=2)
