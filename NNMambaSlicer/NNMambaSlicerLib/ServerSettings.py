"""The remote worker's address and token, kept in Slicer's settings (qt.QSettings), never in a scene.

Remote use is off by default. Sending volumes to a server needs the user's explicit confirmation
for that exact address; changing the address asks again.
"""

from __future__ import annotations

from typing import Optional

PREFIX = "NNMambaSlicer/Remote"


class ServerSettings:
    """Reads and writes the remote server settings.

    Example:
        >>> server = ServerSettings()
        >>> server.save("gpu.example.org", 8765, token)
        >>> server.confirm("gpu.example.org", 8765)      # after the user said yes
        >>> server.isConfirmed("gpu.example.org", 8765)
        True
    """

    def __init__(self, settings=None) -> None:
        if settings is None:
            import qt
            settings = qt.QSettings()
        self.settings = settings

    def address(self) -> tuple:
        return (str(self.settings.value(f"{PREFIX}/Host", "") or ""),
                int(self.settings.value(f"{PREFIX}/Port", 0) or 0))

    def token(self) -> str:
        return str(self.settings.value(f"{PREFIX}/Token", "") or "")

    def tlsCertificateAuthority(self) -> Optional[str]:
        return str(self.settings.value(f"{PREFIX}/TlsCa", "") or "") or None

    def save(self, host: str, port: int, token: str, tlsCa: Optional[str] = None) -> None:
        host, port = self.parseAddress(f"{host}:{port}")
        if self.address() != (host, port):
            self.settings.remove(f"{PREFIX}/Confirmed")
        self.settings.setValue(f"{PREFIX}/Host", host)
        self.settings.setValue(f"{PREFIX}/Port", port)
        self.settings.setValue(f"{PREFIX}/Token", token)
        self.settings.setValue(f"{PREFIX}/TlsCa", tlsCa or "")

    def confirm(self, host: str, port: int) -> None:
        self.settings.setValue(f"{PREFIX}/Confirmed", f"{host}:{port}")

    def isConfirmed(self, host: str, port: int) -> bool:
        return bool(host) and self.settings.value(f"{PREFIX}/Confirmed", "") == f"{host}:{port}"

    def forget(self) -> None:
        for key in ("Host", "Port", "Token", "TlsCa", "Confirmed"):
            self.settings.remove(f"{PREFIX}/{key}")

    @staticmethod
    def parseAddress(text: str) -> tuple:
        """'host:port' -> (host, port); explains the expected form when it is not that."""
        host, _, port = text.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"the server address must look like host:port (e.g. gpu-server.local:8765), "
                             f"got '{text}'")
        return host.strip("[]"), int(port)
