"""ServerSettings: remote processing is opt-in per address; the token stays in the settings store."""

from __future__ import annotations

import pytest

from NNMambaSlicerLib.ServerSettings import ServerSettings


class MemorySettings:
    """The three qt.QSettings methods ServerSettings calls, over a dict (no Qt here)."""

    def __init__(self) -> None:
        self.values = {}

    def value(self, key, default=None):
        return self.values.get(key, default)

    def setValue(self, key, value) -> None:
        self.values[key] = value

    def remove(self, key) -> None:
        self.values.pop(key, None)


def test_nothing_is_confirmed_until_the_user_confirms_that_address():
    server = ServerSettings(MemorySettings())
    assert server.address() == ("", 0) and not server.isConfirmed("", 0)
    server.save("gpu.example.org", 8765, "secret")
    assert not server.isConfirmed("gpu.example.org", 8765)
    server.confirm("gpu.example.org", 8765)
    assert server.isConfirmed("gpu.example.org", 8765) and server.token() == "secret"


def test_changing_the_address_withdraws_the_confirmation():
    server = ServerSettings(MemorySettings())
    server.save("gpu.example.org", 8765, "secret")
    server.confirm("gpu.example.org", 8765)
    server.save("other.example.org", 8765, "secret")
    assert not server.isConfirmed("other.example.org", 8765)


def test_forgetting_removes_the_token():
    store = MemorySettings()
    server = ServerSettings(store)
    server.save("gpu.example.org", 8765, "secret")
    server.forget()
    assert server.token() == "" and not any("Token" in key for key in store.values)


@pytest.mark.parametrize("text", ["gpu.example.org", "gpu:port", ":8765", "gpu:70000"])
def test_informs_what_a_server_address_looks_like(text):
    with pytest.raises(ValueError, match="must look like host:port"):
        ServerSettings.parseAddress(text)


def test_ipv6_and_names_parse():
    assert ServerSettings.parseAddress("[::1]:8765") == ("::1", 8765)
    assert ServerSettings.parseAddress(" gpu-server.local:9000 ") == ("gpu-server.local", 9000)
