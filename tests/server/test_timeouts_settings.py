"""The settings of timeouts and run caps: what they accept, the errors that name them, and what
the server builds from them (the engine's step timeouts, the claim's caps, the run limits)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from noukai_server.config import ConfigError, ServerConfig
from noukai_server.runtime.assembly import org_caps
from noukai_server.runtime.quotas import RunLimits
from noukai_server.settings import load_settings
from tests.conftest import REPO_ROOT, _server_env


def _load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ServerConfig:
    path = tmp_path / "noukai.toml"
    path.write_text(text)
    return load_settings(path, env or {}).config


def test_the_defaults_bound_every_step_and_every_run(tmp_path: Path) -> None:
    config = load_settings(None, {}, cwd=tmp_path).config
    assert (config.step_timeout_seconds, config.max_step_timeout_seconds, config.max_run_seconds) == (
        300,
        3600,
        3600,
    )
    assert (config.key_max_running, config.org_max_queued, config.key_max_queued) == (None, None, None)
    assert RunLimits.of(config).queue_caps is None  # no queued-runs count on the hot path by default


def test_the_file_and_the_environment_set_them(tmp_path: Path) -> None:
    text = (
        "[limits]\nstep_timeout_seconds = 20\nmax_step_timeout_seconds = 60\nmax_run_seconds = 900\n"
        "[workers]\nkey_max_running = 3\nkey_max_running_overrides = { k1 = 5 }\n"
        "org_max_queued = 100\norg_max_queued_overrides = { acme = 1000 }\n"
    )
    env = {"NOUKAI_KEY_MAX_QUEUED": "10", "NOUKAI_KEY_MAX_QUEUED_OVERRIDES": "k1=20,k2=30"}
    config = _load(tmp_path, text, env)
    assert (config.step_timeout_seconds, config.max_step_timeout_seconds, config.max_run_seconds) == (
        20,
        60,
        900,
    )
    caps = org_caps(config)
    assert (caps.key_cap("k1"), caps.key_cap("k9"), caps.key_cap(None)) == (5, 3, None)
    limits = RunLimits.of(config)
    assert limits.max_run_seconds == 900
    assert limits.queue_caps is not None
    assert (limits.queue_caps.org_cap("acme"), limits.queue_caps.org_cap("beta")) == (1000, 100)
    assert (limits.queue_caps.key_cap("k2"), limits.queue_caps.key_cap("k9")) == (30, 10)


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("[limits]\nstep_timeout_seconds = 0\n", ["[limits] step_timeout_seconds = 0", "a number > 0"]),
        ("[limits]\nmax_run_seconds = -5\n", ["[limits] max_run_seconds = -5", "a number > 0"]),
        ('[limits]\nmax_step_timeout_seconds = "1h"\n', ["max_step_timeout_seconds", "a number > 0"]),
        ("[workers]\nkey_max_running = 0\n", ["[workers] key_max_running = 0", "an integer >= 1"]),
        ("[workers]\norg_max_queued = 2.5\n", ["[workers] org_max_queued = 2.5", "an integer >= 1"]),
        ("[workers]\nkey_max_queued_overrides = { k1 = 0 }\n", ["key_max_queued_overrides", "integer >= 1"]),
        (
            "[limits]\nstep_timeout_seconds = 600\nmax_step_timeout_seconds = 60\n",
            ["[limits] step_timeout_seconds (600) is above [limits] max_step_timeout_seconds (60)"],
        ),
    ],
)
def test_a_wrong_value_names_the_setting_and_what_is_allowed(
    tmp_path: Path, text: str, needles: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    for needle in needles:
        assert needle in str(caught.value), str(caught.value)


@pytest.mark.parametrize(
    ("env", "needles"),
    [
        ({"NOUKAI_STEP_TIMEOUT_SECONDS": "soon"}, ["NOUKAI_STEP_TIMEOUT_SECONDS='soon'", "a number > 0"]),
        ({"NOUKAI_ORG_MAX_QUEUED": "0"}, ["NOUKAI_ORG_MAX_QUEUED='0'", "an integer >= 1"]),
        ({"NOUKAI_KEY_MAX_RUNNING_OVERRIDES": "k1"}, ["NOUKAI_KEY_MAX_RUNNING_OVERRIDES='k1'", "name=N"]),
        ({"NOUKAI_STEP_TIMEOUT_SECONDS": "7200"}, ["is above [limits] max_step_timeout_seconds (3600)"]),
    ],
)
def test_a_bad_environment_variable_is_refused(
    tmp_path: Path, env: dict[str, str], needles: list[str]
) -> None:
    for load in (lambda: load_settings(None, env, cwd=tmp_path), lambda: ServerConfig.from_env(env)):
        with pytest.raises(ConfigError) as caught:
            load()
        for needle in needles:
            assert needle in str(caught.value), str(caught.value)


def test_the_server_refuses_to_start_with_a_default_above_the_maximum(tmp_path: Path) -> None:
    env = {**_server_env(), "NOUKAI_STEP_TIMEOUT_SECONDS": "120", "NOUKAI_MAX_STEP_TIMEOUT_SECONDS": "60"}
    result = subprocess.run(
        [sys.executable, "-m", "noukai_server", "serve", "--port", "0", "--data-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert result.returncode != 0
    assert "step_timeout_seconds (120) is above [limits] max_step_timeout_seconds (60)" in result.stderr
