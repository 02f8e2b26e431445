"""Wiring of the models for one app: built once in create_app, used by routes and CLI commands."""

from __future__ import annotations

from dataclasses import dataclass

from config import fernet_keys
from database import Database
from models.alerts import ReauthNotifier, Translate
from models.audit import AuditLog
from models.bitrix24 import Bitrix24Rest
from models.cipher import Cipher
from models.conference import ConferenceService
from models.connect import ConnectLinks
from models.http import portal_session
from models.identity import IdentityService
from models.install import InstallService
from models.integrations import Integrations
from models.metrics import Metrics
from models.oauth import AmoCRMOAuth, Bitrix24OAuth, YandexOAuth, make_session
from models.openlines import BotConfig, OpenLinesService
from models.portal import PortalService, PortalSettings
from models.refresh import RefreshEngine, RefreshSettings
from models.security import SessionSigner
from models.telemost import TelemostApi
from models.vault import Vault
from models.webhook import webhook_from_config


@dataclass
class Services:
    """Everything a request or command needs, built from the config."""

    db: Database
    vault: Vault
    audit: AuditLog
    metrics: Metrics
    engine: RefreshEngine
    portals: PortalService
    install: InstallService
    identity: IdentityService
    signer: SessionSigner
    bitrix_oauth: Bitrix24OAuth
    yandex: YandexOAuth
    amocrm: AmoCRMOAuth
    integrations: Integrations
    telemost: TelemostApi
    conferences: ConferenceService
    connect: ConnectLinks
    openlines: OpenLinesService | None = None


def build(cfg, db: Database, translate: Translate | None = None) -> Services:
    """Construct the services from the Flask config mapping; `translate` gives notifications their words."""
    refresh_settings = RefreshSettings.from_config(cfg)
    timeout = float(cfg["HTTP_TIMEOUT_SECONDS"])
    session = make_session(max(8, refresh_settings.concurrency + 4))
    vault = Vault(db, Cipher(fernet_keys(cfg["TOKEN_ENCRYPTION_KEY"])), int(cfg["TOKEN_HISTORY_KEEP"]))
    audit = AuditLog(db)
    metrics = Metrics(db)
    bitrix_oauth = Bitrix24OAuth(
        session,
        timeout,
        client_id=cfg["BITRIX24_CLIENT_ID"],
        client_secret=cfg["BITRIX24_CLIENT_SECRET"],
        oauth_url=cfg["BITRIX24_OAUTH_URL"],
        http_method=cfg["BITRIX24_OAUTH_METHOD"],
    )
    yandex = YandexOAuth(
        session,
        timeout,
        client_id=cfg["YANDEX_CLIENT_ID"],
        client_secret=cfg["YANDEX_CLIENT_SECRET"],
        oauth_url=cfg["YANDEX_OAUTH_URL"],
        login_url=cfg["YANDEX_LOGIN_URL"],
    )
    amocrm = AmoCRMOAuth(
        session,
        timeout,
        client_id=cfg["AMOCRM_CLIENT_ID"],
        client_secret=cfg["AMOCRM_CLIENT_SECRET"],
        redirect_uri=cfg["AMOCRM_REDIRECT_URI"],
        base_url=cfg["AMOCRM_BASE_URL"],
        authorize_url=cfg["AMOCRM_AUTHORIZE_URL"],
    )
    engine = RefreshEngine(
        vault, {"bitrix24": bitrix_oauth, "yandex": yandex, "amocrm": amocrm}, refresh_settings, metrics=metrics
    )
    # Portal hosts come from outside: their calls go through the pinned transport (models/http.py).
    portal_http = portal_session(
        max(8, refresh_settings.concurrency + 4), allow_loopback=bool(cfg["ALLOW_LOOPBACK_PORTALS"])
    )
    rest = Bitrix24Rest(portal_http, timeout, allow_loopback=bool(cfg["ALLOW_LOOPBACK_PORTALS"]))
    portal_settings = PortalSettings(
        client_id=cfg["BITRIX24_CLIENT_ID"],
        public_url=cfg["PUBLIC_URL"],
        allow_loopback=bool(cfg["ALLOW_LOOPBACK_PORTALS"]),
        oauth_url=cfg["BITRIX24_OAUTH_URL"],
        bot_code=cfg["BOT_CODE"],
        bot_name=cfg["BOT_NAME"],
        webhook=webhook_from_config(cfg),
    )
    portals = PortalService(db, vault, engine, rest, portal_settings, audit)
    install = InstallService(db, portals, vault, engine, bitrix_oauth, rest, portal_settings, audit, translate)
    identity = IdentityService(portals, install, rest, vault)
    engine.notifier = ReauthNotifier(portals, translate)
    signer = SessionSigner(
        cfg["SESSION_SIGNING_KEY"], int(cfg["SESSION_TTL_SECONDS"]), issuer=cfg["PUBLIC_URL"] or "b24-telemost"
    )
    integrations = Integrations(vault, engine, yandex, amocrm, env_yandex_token=cfg["YANDEX_OAUTH_TOKEN"], audit=audit)
    telemost = TelemostApi(session, cfg["TELEMOST_API_URL"], timeout)
    conference_service = ConferenceService(db, vault, engine, portals, integrations, telemost)
    openlines = OpenLinesService(db, portals, BotConfig.from_config(cfg), audit)
    return Services(
        db=db,
        vault=vault,
        audit=audit,
        metrics=metrics,
        engine=engine,
        portals=portals,
        install=install,
        identity=identity,
        signer=signer,
        bitrix_oauth=bitrix_oauth,
        yandex=yandex,
        amocrm=amocrm,
        integrations=integrations,
        connect=ConnectLinks(db),
        telemost=telemost,
        conferences=conference_service,
        openlines=openlines,
    )
