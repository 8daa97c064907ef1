"""PUT /admin/v1/apps/{app}/integrations/{network} checks settings and credentials against the network's models
(from the registry) and answers 400 naming the field; GET /admin/v1/networks shows the schemas."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.db.migrate import upgrade
from shared.networks.registry import registry
from tests.support.pipeline import AdminApi, service_env, start_admin
from tests.support.postgres import create_database

META_OK = {"settings": {"dataset_id": "ds-1"}, "credentials": {"access_token": "EAAB-secret"}}
GOOGLE_CREDENTIALS = {"developer_token": "d", "client_id": "c", "client_secret": "s", "refresh_token": "r"}
GOOGLE_ACTION = {"purchase": "customers/1234567890/conversionActions/99"}


@pytest.fixture(scope="module")
def admin(postgres_server_url: str, module_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[AdminApi]:
    database_url = create_database(postgres_server_url, f"integrations_{uuid.uuid4().hex}")
    upgrade(database_url)
    log_dir: Path = tmp_path_factory.mktemp("integrations")
    admin_service, admin_base = start_admin(service_env(module_bootstrap, database_url), log_dir)
    try:
        yield AdminApi(admin_base)
    finally:
        admin_service.terminate()


@pytest.mark.parametrize(("network", "body", "field", "message"), [
    ("meta", {"settings": {}, "credentials": {"access_token": "t"}}, "settings.dataset_id", "Field required"),
    ("meta", {"settings": {"dataset_id": "ds"}, "credentials": {}}, "credentials.access_token", "Field required"),
    ("meta", {"settings": {"dataset_id": "ds"}}, "credentials.access_token", "Field required"),
    ("meta", {"settings": {"dataset-id": "ds"}, "credentials": {"access_token": "t"}}, "settings.dataset_id",
     "Field required"),
    ("meta", {"settings": {"dataset_id": "ds", "forward_unattributed": "often"}, "credentials": {"access_token": "t"}},
     "settings.forward_unattributed", "Input should be a valid boolean, unable to interpret input"),
    ("google_ads", {"settings": {"conversion_actions": GOOGLE_ACTION}, "credentials": GOOGLE_CREDENTIALS},
     "settings.customer_id", "Field required"),
    ("google_ads", {"settings": {"customer_id": "123-456-7890"}, "credentials": GOOGLE_CREDENTIALS},
     "settings.conversion_actions", "Field required"),
    ("google_ads", {"settings": {"customer_id": "123-456-7890", "conversion_actions": {"purchase": "99"}},
                    "credentials": GOOGLE_CREDENTIALS}, "settings.conversion_actions",
     "Value error, purchase: '99' is not customers/<id>/conversionActions/<id>"),
    ("google_ads", {"settings": {"customer_id": "123-456-7890", "conversion_actions": GOOGLE_ACTION},
                    "credentials": {**GOOGLE_CREDENTIALS, "refresh_token": ""}}, "credentials.refresh_token",
     "Value should have at least 1 item after validation, not 0"),
    ("tiktok", {"settings": {"store_app_id": "com.example"}, "credentials": {"access_token": "t"}},
     "settings.tiktok_app_id", "Field required"),
    ("skan_postback", {"settings": {"ad_networks": [{"ad_network_id": "x.skadnetwork", "install_url": "ftp://x"}]}},
     "settings.ad_networks.0.install_url", "String should match pattern '^https?://\\S+$'"),
    ("revenuecat", {"settings": {}}, "credentials.authorization", "Field required"),
])
def test_a_wrong_or_missing_field_is_400_naming_it_and_nothing_is_stored(
        admin: AdminApi, network: str, body: dict[str, Any], field: str, message: str) -> None:
    app_id = admin.new_app()["app_id"]
    answer = admin.call("PUT", f"/apps/{app_id}/integrations/{network}", body, expect=400)
    assert (answer["error"], answer["field"]) == ("invalid_integration", field)
    assert answer["message"] in (message, message.replace("item", "character"))
    assert "secret" not in repr(answer)
    admin.call("GET", f"/apps/{app_id}/integrations/{network}", expect=404)


def test_a_valid_integration_is_stored_normalised_and_a_later_put_keeps_what_it_omits(admin: AdminApi) -> None:
    app_id = admin.new_app()["app_id"]
    path = f"/apps/{app_id}/integrations/meta"
    stored = admin.call("PUT", path, {"settings": {"dataset_id": " ds-1 "}, "credentials": {"access_token": "t"}})
    assert stored["settings"] == {"dataset_id": "ds-1"} and stored["credentials_set"] is True
    # No credentials given: the stored ones stay; the settings as stored are checked again.
    assert admin.call("PUT", path, {"enabled": False})["settings"] == {"dataset_id": "ds-1"}
    assert admin.call("PUT", path, {"settings": {}}, expect=400)["field"] == "settings.dataset_id"
    assert admin.call("GET", path)["enabled"] is False


def test_networks_are_listed_with_their_settings_and_credentials_schemas(admin: AdminApi) -> None:
    listed = {n["network"]: n for n in admin.call("GET", "/networks")["networks"]}
    assert set(listed) == {*registry().names, "revenuecat"}
    meta = listed["meta"]
    assert meta["kind"] == "forward" and meta["click_id_types"] == ["fbclid"]
    assert meta["settings_schema"]["required"] == ["dataset_id"]
    assert meta["settings_schema"]["additionalProperties"] is False
    assert meta["credentials_schema"]["properties"]["access_token"]["writeOnly"] is True
    assert listed["google_ads"]["event_names_setting"] == "conversion_actions"
    assert listed["google_ads"]["forwards_unattributed"] is False and meta["forwards_unattributed"] is True
    assert listed["revenuecat"]["kind"] == "source"
    assert listed["skan_postback"]["feed"] == "skan"
