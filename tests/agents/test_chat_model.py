"""Every agent is typed against tilepilot.model_runtime.chat_model.ChatModel: the real client and the doubles fit it."""

from __future__ import annotations

import inspect

from tilepilot.model_runtime.chat_model import ChatModel
from tilepilot.model_runtime.client import ChatClient
from tilepilot.model_runtime.profiles import tiny_profile
from tests.agents.desktop.doubles import ScriptedChat
from tests.agents.doubles import WordChat


def test_the_client_and_the_doubles_satisfy_the_protocol() -> None:
    client = ChatClient(["http://127.0.0.1:9"], tiny_profile())
    try:
        for model in (client, ScriptedChat([], screen=(0, 0, 10, 10)), WordChat()):
            assert isinstance(model, ChatModel), type(model).__name__
    finally:
        client.close()


def test_the_protocol_names_every_option_the_client_takes() -> None:
    # The agents call chat() with these keywords; the protocol must offer each, with the client's default.
    protocol = inspect.signature(ChatModel.chat).parameters
    client = inspect.signature(ChatClient.chat).parameters
    assert list(protocol) == list(client)
    assert all(protocol[name].default == client[name].default for name in client)
