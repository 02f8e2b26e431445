"""In-memory state shared by every fake server of one sandbox process (guarded by one re-entrant lock)."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .bitrix24.crm_seed import seed_crm
from .bitrix24.users import User, seed_users
from .faults import FaultRegistry
from .tokens import TokenStore

DAY = 86400
DEFAULT_SCOPE = "calendar,crm,im,imbot,imopenlines,placement,user"
MAX_RECORDS = 5000  # call/delivery logs are capped so a long demo session does not grow forever

DEFAULT_CONFIG: dict[str, Any] = {
    "access_ttl": 3600,
    "bitrix_refresh_ttl": 180 * DAY,
    "bitrix_code_ttl": 30,
    "bitrix_scope": DEFAULT_SCOPE,
    "bitrix_old_access_valid_after_refresh": False,
    "payment_required_status": 401,
    "yandex_access_ttl": 365 * DAY,
    "yandex_code_ttl": 600,
    "yandex_old_access_valid_after_refresh": True,
    "amocrm_access_ttl": DAY,
    "amocrm_refresh_ttl": 90 * DAY,
    "amocrm_code_ttl": 1200,
    "amocrm_old_access_valid_after_refresh": False,
    "event_timeout": 10.0,
    "openlines_event_timeout": 5.0,
    "openlines_duplicate_delivery": False,
    "openlines_delivery_delay_ms": 0,
    "telemost_personal_restricted": False,  # sandbox/telemost.py
    "telemost_live_stream_paid": False,
    "telemost_delete": "405",
    "telemost_forbidden": False,
    "telemost_rate_burst": 30,
    "telemost_rate_per_second": 10.0,
}


class SandboxError(Exception):
    """Bad sandbox configuration (missing credentials, bad arguments)."""


class NotFoundError(Exception):
    """A control API request names something that does not exist (portal, grant, bound handler)."""


@dataclass
class Client:
    client_id: str | None
    client_secret: str | None
    redirect_uri: str | None = None

    def matches(self, client_id: Any, client_secret: Any) -> bool:
        """True when both credentials are configured and equal the presented ones."""
        if not self.client_id or not self.client_secret:
            return False
        return secrets.compare_digest(str(client_id or ""), self.client_id) and secrets.compare_digest(
            str(client_secret or ""), self.client_secret
        )


@dataclass
class Bucket:
    size: float = 50
    drain: float = 2.0
    level: float = 0.0
    stamp: float = field(default_factory=time.monotonic)

    def take(self) -> bool:
        """Leaky bucket: +1 per request, drains `drain`/s, refuses above `size`."""
        now = time.monotonic()
        self.level = max(0.0, self.level - (now - self.stamp) * self.drain)
        self.stamp = now
        if self.level + 1 > self.size:
            return False
        self.level += 1
        return True


@dataclass
class Portal:
    name: str
    port: int
    host: str
    member_id: str = field(default_factory=lambda: secrets.token_hex(16))
    users: dict[int, User] = field(default_factory=seed_users)
    installed: bool = False
    install_finished: bool = False
    uninstalled: bool = False  # set by an uninstall, cleared by the next install
    application_token: str | None = None
    version: str = "1"
    previous_version: str | None = None
    payment_required: bool = False
    bucket: Bucket = field(default_factory=Bucket)
    calls: list[dict[str, Any]] = field(default_factory=list)
    handlers: list[dict[str, Any]] = field(default_factory=list)
    placements: list[dict[str, Any]] = field(default_factory=list)
    bots: dict[int, dict[str, Any]] = field(default_factory=dict)
    bot_messages: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    calendar: dict[int, dict[str, Any]] = field(default_factory=dict)
    calendar_deleted: list[dict[str, Any]] = field(default_factory=list)  # for the portal's calendar page
    openlines: list[dict[str, Any]] = field(default_factory=list)
    lines: dict[int, dict[str, Any]] = field(default_factory=dict)  # seeded by bitrix24.openlines
    chats: dict[int, dict[str, Any]] = field(default_factory=dict)  # Open Lines dialogs by chat id
    frame_events: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    opened_by: set[int] = field(default_factory=set)
    webhooks: dict[str, int] = field(default_factory=dict)  # incoming webhook code → the user it acts as
    crm: dict[str, dict[int, dict[str, Any]]] = field(default_factory=seed_crm)  # entity → id → record
    next_id: int = 100  # bots, messages, notifications, calendar entries and handlers share one sequence

    @property
    def domain(self) -> str:
        """Portal host as Bitrix24 reports it (host:port here, every portal has its own origin)."""
        return f"{self.host}:{self.port}"

    @property
    def base(self) -> str:
        """Portal origin."""
        return f"http://{self.domain}"

    @property
    def rest(self) -> str:
        """REST endpoint (client_endpoint)."""
        return f"{self.base}/rest/"

    def new_id(self) -> int:
        """Next id of the portal-wide sequence."""
        self.next_id += 1
        return self.next_id

    def find_user(self, user_id: Any) -> User | None:
        """Employee or bot by id."""
        try:
            uid = int(user_id)
        except (TypeError, ValueError):
            return None
        if uid in self.users:
            return self.users[uid]
        bot = self.bots.get(uid)
        if bot is not None:
            props = bot["properties"]
            return User(
                id=uid,
                name=str(props.get("NAME", "")),
                last_name=str(props.get("LAST_NAME", "")),
                gender="",
                position=str(props.get("WORK_POSITION", "")),
                email=f"bot{uid}@sandbox.example",
                user_type="bot",
                is_bot=True,
            )
        return None

    def record(self, log: list[dict[str, Any]], entry: dict[str, Any]) -> None:
        """Append to one of the capped logs."""
        log.append(entry)
        if len(log) > MAX_RECORDS:
            del log[: len(log) - MAX_RECORDS]

    def summary(self) -> dict[str, Any]:
        """Public identity of the portal (what POST /_sandbox/portals answers)."""
        return {
            "name": self.name,
            "domain": self.domain,
            "member_id": self.member_id,
            "rest": self.rest,
            "base": self.base,
            "users": [
                {"id": u.id, "name": u.full_name, "admin": u.admin, "active": u.active} for u in self.users.values()
            ],
        }

    def details(self) -> dict[str, Any]:
        """Identity plus install state and knobs."""
        info = self.summary()
        info.update(
            {
                "installed": self.installed,
                "install_finished": self.install_finished,
                "uninstalled": self.uninstalled,
                "application_token": self.application_token,
                "version": self.version,
                "payment_required": self.payment_required,
                "limits": {"bucket": self.bucket.size, "drain": self.bucket.drain},
                "page": f"{self.base}/app/?user_id=1",
            }
        )
        return info


@dataclass
class AmoAccount:
    id: int
    subdomain: str
    name: str


@dataclass
class YandexUser:
    id: str
    login: str
    display_name: str
    real_name: str

    @property
    def email(self) -> str:
        """Default e-mail of the account."""
        return f"{self.login}@yandex.ru"


class State:
    """Everything the fake servers share."""

    def __init__(self, app_url: str, env: Mapping[str, str], host: str = "127.0.0.1", access_ttl: float = 3600):
        self.lock = threading.RLock()
        self.stop_event = threading.Event()
        self.host = host
        self.app_url = app_url.rstrip("/")
        parts = urlsplit(self.app_url)
        self.app_origin = f"{parts.scheme}://{parts.netloc}"
        self.base_url = ""  # set once the base server is bound
        ttl = float(access_ttl)
        self.config: dict[str, Any] = dict(DEFAULT_CONFIG, access_ttl=int(ttl) if ttl.is_integer() else ttl)
        self.clients = {
            "bitrix24": Client(env.get("BITRIX24_CLIENT_ID"), env.get("BITRIX24_CLIENT_SECRET")),
            "yandex": Client(env.get("YANDEX_CLIENT_ID"), env.get("YANDEX_CLIENT_SECRET")),
            "amocrm": Client(
                env.get("AMOCRM_CLIENT_ID"), env.get("AMOCRM_CLIENT_SECRET"), env.get("AMOCRM_REDIRECT_URI")
            ),
        }
        # Bitrix24 takes the redirect URI from the app card; BITRIX24_REDIRECT_URI plays that role here.
        self.bitrix_redirect_uri = env.get("BITRIX24_REDIRECT_URI")
        if not self.clients["bitrix24"].client_id or not self.clients["bitrix24"].client_secret:
            raise SandboxError("BITRIX24_CLIENT_ID and BITRIX24_CLIENT_SECRET must be set in the environment")
        self.store = TokenStore(self.lock)
        self.faults = FaultRegistry(self.lock)
        self.portals: dict[str, Portal] = {}
        self.amo_accounts: dict[str, AmoAccount] = {}
        self.yandex_users: dict[str, YandexUser] = {}
        self.spawn_portal: Callable[[str | None], Portal] | None = None  # installed by the server runner
        self.add_amo_account("sandboxcrm", "Sandbox CRM")
        self.yandex_user("sandbox.user", "Иван Петров")

    # --- Bitrix24 ------------------------------------------------------------------------------
    @property
    def our_client_id(self) -> str:
        """client_id of the app under test."""
        return str(self.clients["bitrix24"].client_id)

    @property
    def oauth_rest(self) -> str:
        """server_endpoint value."""
        return f"{self.base_url}/rest/"

    @property
    def oauth_domain(self) -> str:
        """`domain` in token responses: the OAuth host, not the portal."""
        return urlsplit(self.base_url).netloc

    def portal(self, name: str) -> Portal | None:
        """Portal by name, member_id or domain."""
        with self.lock:
            if name in self.portals:
                return self.portals[name]
            for portal in self.portals.values():
                if name in (portal.member_id, portal.domain):
                    return portal
            return None

    def next_portal_name(self) -> str:
        """portalN with the first free N."""
        with self.lock:
            n = len(self.portals) + 1
            while f"portal{n}" in self.portals:
                n += 1
            return f"portal{n}"

    def mint_bitrix(
        self, portal: Portal, user_id: int, client_id: str | None = None, expires_in: float | None = None
    ) -> Any:
        """New Bitrix24 grant for a portal user (our app unless client_id says otherwise)."""
        return self.store.mint(
            "bitrix24",
            client_id or self.our_client_id,
            {"portal": portal.name, "member_id": portal.member_id, "user_id": int(user_id)},
            self.config["bitrix_scope"],
            access_ttl=self.config["access_ttl"] if expires_in is None else expires_in,
            refresh_ttl=self.config["bitrix_refresh_ttl"],
        )

    # --- amoCRM / Yandex -----------------------------------------------------------------------
    def add_amo_account(self, subdomain: str, name: str | None = None) -> AmoAccount:
        """Create (or return) an amoCRM account."""
        with self.lock:
            account = self.amo_accounts.get(subdomain)
            if account is None:
                account = AmoAccount(
                    id=30000000 + len(self.amo_accounts) + 1,
                    subdomain=subdomain,
                    name=name or subdomain.capitalize(),
                )
                self.amo_accounts[subdomain] = account
            return account

    def yandex_user(self, login: str, real_name: str | None = None) -> YandexUser:
        """Find or create a Yandex account by login."""
        with self.lock:
            for user in self.yandex_users.values():
                if user.login == login:
                    return user
            uid = str(1130000000000000 + len(self.yandex_users) + 1)
            name = real_name or login
            user = YandexUser(id=uid, login=login, display_name=name, real_name=name)
            self.yandex_users[uid] = user
            return user
