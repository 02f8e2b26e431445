"""Local stand-ins for Bitrix24 (OAuth server, portals, portal page), Yandex OAuth and amoCRM OAuth."""

from .server import Sandbox, start
from .state import SandboxError

__all__ = ["Sandbox", "SandboxError", "start"]
