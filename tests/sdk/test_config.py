"""Client construction: keys, base URLs, env, defaults and their validation."""

from __future__ import annotations

from typing import Any

import pytest

import noukai
from noukai._config import normalize_base_url, resolve_base_url, user_agent


def make(**kwargs: Any) -> noukai.Noukai:
    kwargs.setdefault("api_key", "nk_x")
    return noukai.Noukai(**kwargs)


def test_api_key_from_argument_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(noukai.AuthenticationError, match="no API key"):
        noukai.Noukai()
    with pytest.raises(noukai.AuthenticationError, match="nk_"):
        noukai.Noukai(api_key="sk-wrong")
    monkeypatch.setenv("NOUKAI_API_KEY", "nk_from_env\n")
    client = noukai.Noukai()
    assert client._config.api_key == "nk_from_env"
    assert make(api_key="nk_arg")._config.api_key == "nk_arg"  # the argument wins
    monkeypatch.setenv("NOUKAI_API_KEY", "bad")
    with pytest.raises(noukai.AuthenticationError):
        noukai.AsyncNoukai()


def test_env_shortcut_and_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    assert make().base_url == "https://api.noukai.xyz/api/v1"
    assert make(env="production").base_url == "https://api.noukai.xyz/api/v1"
    assert make(env="dev").base_url == "http://localhost:8080/api/v1"
    assert make(env="development").base_url == "http://localhost:8080/api/v1"
    assert make(base_url="http://127.0.0.1:9000").base_url == "http://127.0.0.1:9000/api/v1"
    assert make(base_url="http://127.0.0.1:9000/api/v1/").base_url == "http://127.0.0.1:9000/api/v1"
    monkeypatch.setenv("NOUKAI_ENV", "dev")
    assert make().base_url == "http://localhost:8080/api/v1"
    assert make(env="production").base_url == "https://api.noukai.xyz/api/v1"  # argument beats env var
    monkeypatch.setenv("NOUKAI_BASE_URL", "https://noukai.internal/")
    assert make().base_url == "https://noukai.internal/api/v1"  # NOUKAI_BASE_URL beats NOUKAI_ENV
    assert make(env="dev").base_url == "http://localhost:8080/api/v1"
    with pytest.raises(ValueError, match="not both"):
        make(env="dev", base_url="http://x")


@pytest.mark.parametrize("bad", ["staging", "prod", ""])
def test_unknown_env_names_are_refused(bad: str) -> None:
    if bad:
        with pytest.raises(ValueError, match="production' or 'dev"):
            make(env=bad)
    else:
        assert resolve_base_url(env=None, base_url=None, environ={"NOUKAI_ENV": " "}).endswith("xyz/api/v1")


@pytest.mark.parametrize("bad", ["localhost:8080", "ftp://x", "http://", "http://x/?a=1", "http://x/#f"])
def test_bad_base_urls(bad: str) -> None:
    with pytest.raises(ValueError):
        normalize_base_url(bad)


def test_org_and_project_go_together() -> None:
    client = make(org="acme", project="spelling")
    assert (client.org, client.project) == ("acme", "spelling")
    with pytest.raises(ValueError, match="together"):
        make(org="acme")
    with pytest.raises(ValueError, match="together"):
        noukai.AsyncNoukai(api_key="nk_x", project="spelling")
    with pytest.raises(ValueError):
        make(org="a/b", project="c")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("timeout", 0),
        ("timeout", -1),
        ("timeout", True),
        ("max_retries", -1),
        ("max_retries", 1.5),
        ("max_retries", True),
    ],
)
def test_numeric_arguments_are_checked(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=name):
        make(**{name: value})


def test_defaults_and_repr() -> None:
    client = make()
    assert (client.timeout, client.max_retries) == (300.0, 1)
    assert make(timeout=5, max_retries=0).timeout == 5.0
    assert "api.noukai.xyz" in repr(client)
    assert user_agent().startswith("noukai-python/")


def test_close_is_idempotent() -> None:
    client = make()
    client.close()
    client.close()
    with make() as again:
        assert again.flow("a/b/c").slug == "c"


@pytest.mark.anyio
async def test_aclose_is_idempotent() -> None:
    client = noukai.AsyncNoukai(api_key="nk_x")
    await client.aclose()
    await client.aclose()
    async with noukai.AsyncNoukai(api_key="nk_x") as again:
        assert again.flow("a/b/c").org == "a"


def test_flow_identifier_forms() -> None:
    client = make(org="acme", project="spelling")
    assert (lambda f: (f.org, f.project, f.slug))(client.flow("grade-3")) == ("acme", "spelling", "grade-3")
    other = client.flow("other-org/x/grade-3")
    assert (other.org, other.project, other.slug) == ("other-org", "x", "grade-3")
    explicit = client.flow(org="acme", project="spelling", slug="grade-3")
    assert (explicit.org, explicit.project, explicit.slug) == ("acme", "spelling", "grade-3")
    assert client.flow(slug="g").org == "acme"
    assert repr(explicit) == "<Flow acme/spelling/grade-3>"
    for bad in ("a/b", "a//c", "", "a/b/c/d"):
        with pytest.raises(ValueError):
            client.flow(bad)
    with pytest.raises(ValueError):
        client.flow("a/b/c", slug="c")
    with pytest.raises(ValueError):
        client.flow()
    with pytest.raises(ValueError):
        client.flow(org="acme", slug="g")
    with pytest.raises(ValueError, match="short slug"):
        make().flow("grade-3")
    with pytest.raises(ValueError, match="needs org"):
        make().flow(slug="grade-3")
