from __future__ import annotations

from mofsim_core.config import Config
from mofsim_core.redact import mask_secrets, mask_url


def test_mask_url_hides_only_the_password() -> None:
    assert mask_url("postgresql://me:s3cret@db:5432/x") == "postgresql://me:***@db:5432/x"
    assert mask_url("postgresql://me@db/x") == "postgresql://me@db/x"
    assert mask_url("not a url") == "not a url"


def test_mask_secrets_by_key_and_in_urls_at_any_depth() -> None:
    data = {
        "token": "",
        "list": [{"password": "x"}],
        "nested": {"webhook": "https://u:p4ss@hooks.example/x", "plain": 3},
    }
    assert mask_secrets(data) == {
        "token": "",
        "list": [{"password": "***"}],
        "nested": {"webhook": "https://u:***@hooks.example/x", "plain": 3},
    }


def test_configuration_shown_with_every_secret_masked() -> None:
    cfg = Config(
        database_url="postgresql://me:hunter2@db/x",
        extra={"alerts": {"smtp_password": "pw", "url": "https://a:b@c/d"}},
    )
    shown = cfg.masked()
    assert "hunter2" not in str(shown) and "pw" not in str(shown.get("extra"))
    assert shown["extra"]["alerts"]["url"] == "https://a:***@c/d"
