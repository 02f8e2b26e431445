"""amoCRM long-lived tokens: no refresh token, nothing to refresh, expiry watched in the admin status."""

import time


def register(client, config, **body):
    return client.post("/api/admin/amocrm/accounts", json=body, headers={"X-API-Token": config["ADMIN_API_TOKEN"]})


def test_long_lived_token_is_kept_watched_and_served(client, config, services):
    response = register(client, config, subdomain="acme", access_token="eyJ.long.lived", expires_in=10 * 86400)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["refresh_expires_at"] is None

    report = services.engine.run()
    assert (report.due, report.refreshed, report.failed) == (0, 0, 0)

    headers = {"X-API-Token": config["ADMIN_API_TOKEN"]}
    status = client.get("/api/admin/status", headers=headers).get_json()
    assert [row["account"] for row in status["expiring_without_refresh"]] == ["acme"]
    token = client.get("/api/admin/tokens/amocrm/acme", headers=headers).get_json()
    assert token["access_token"] == "eyJ.long.lived"


def test_expired_long_lived_token_needs_a_new_one(client, config, services):
    register(client, config, subdomain="old", access_token="eyJ.expired", expires_in=1)
    time.sleep(1.1)
    response = client.get("/api/admin/tokens/amocrm/old", headers={"X-API-Token": config["ADMIN_API_TOKEN"]})
    assert response.status_code == 409 and response.get_json()["error"] == "needs_reauth"


def test_long_lived_token_needs_its_lifetime(client, config):
    response = register(client, config, subdomain="acme", access_token="eyJ.long.lived")
    assert response.status_code == 400 and response.get_json()["error"] == "missing_fields"
    too_long = register(client, config, subdomain="acme", access_token="x", expires_in=6 * 366 * 86400)
    assert too_long.status_code == 400


def test_long_lived_token_near_its_end_is_not_refreshed(client, config, services):
    register(client, config, subdomain="soon", access_token="eyJ.soon", expires_in=120)
    response = client.get("/api/admin/tokens/amocrm/soon", headers={"X-API-Token": config["ADMIN_API_TOKEN"]})
    assert response.status_code == 200 and response.get_json()["access_token"] == "eyJ.soon"
    cred = services.vault.find("amocrm", "soon", "account")
    assert (cred.failure_count, cred.status) == (0, "active")
