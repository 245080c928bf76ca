from __future__ import annotations

from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import AppSettings


def test_healthz_answers() -> None:
    with TestClient(create_app(AppSettings())) as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_settings_come_from_the_environment(monkeypatch: object) -> None:
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setenv("NODULE_PORT", "8123")
    assert AppSettings().port == 8123
