"""A ready-made config with throwaway secrets, for tests."""
from __future__ import annotations

from typing import Any

from bot.config import Config, config_from_dict

TEST_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


def test_config(*, encrypted: bool = True, **sections: dict[str, Any] | list[dict[str, Any]]) -> Config:
    """Secrets for a fake account (safe mode when ``encrypted``), memory storage, plus any overrides
    (``intents=[{...}, ...]`` for ``[[intents]]`` tables)."""
    raw: dict[str, Any] = {
        "wechat": {"appid": "wxtestappid000001", "appsecret": "test-secret", "token": "test-token",
                   "encoding_aes_key": TEST_AES_KEY if encrypted else "",
                   "api_base_url": "http://127.0.0.1:9"},  # a closed port: tests never call the real API
        "handlers": {"routers": []},
        "storage": {"url": "memory://"},
    }
    for name, values in sections.items():
        if isinstance(values, list):
            raw[name] = values
        else:
            raw.setdefault(name, {}).update(values)
    return config_from_dict(raw)


test_config.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
