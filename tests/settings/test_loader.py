"""noukai.toml, NOUKAI_* and options -> ServerConfig: precedence, and one clear message per mistake."""

from __future__ import annotations

import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from noukai_server.config import ConfigError, ServerConfig
from noukai_server.settings import load_server_config, load_settings
from noukai_server.settings.extensions import build_registries

OPERATOR = Path(__file__).resolve().parent.parent / "fixtures" / "operator_project"
OPERATOR_ENV = {"FAKE_OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "FAKEAI_TEAM": "blue", "FAKEAI_KEY": "sk-op"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "noukai.toml"
    path.write_text(textwrap.dedent(text))
    return path


def refused(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_server_config(write(tmp_path, text), environ or {})
    return str(caught.value)


def test_no_file_and_no_environment_is_the_defaults(tmp_path: Path) -> None:
    config = load_settings(None, {}, cwd=tmp_path).config
    assert config == ServerConfig(providers=config.providers)
    assert config.config_file is None


def test_the_working_directory_file_then_the_environment_then_options(tmp_path: Path) -> None:
    write(
        tmp_path,
        """
        [server]
        port = 9000
        host = "0.0.0.0"
        [streams]
        heartbeat_seconds = 5
        retry_ms = 250
        """,
    )
    loaded = load_settings(
        None, {"NOUKAI_HEARTBEAT_SECONDS": "2.5", "NOUKAI_PORT": "9100"}, {"port": 9200}, cwd=tmp_path
    )
    config = loaded.config
    assert (config.host, config.port, config.heartbeat_seconds, config.retry_ms) == (
        "0.0.0.0",
        9200,
        2.5,
        250,
    )
    assert loaded.sources["port"] == "command line"
    assert loaded.sources["heartbeat_seconds"] == "environment NOUKAI_HEARTBEAT_SECONDS"
    assert loaded.sources["retry_ms"] == f"{tmp_path / 'noukai.toml'}:7"
    assert loaded.sources["lease_seconds"] == "default"


def test_noukai_config_names_the_file_and_paths_are_relative_to_it(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "server.toml"
    path.write_text('[store]\ndata_dir = "state"\n[flows]\ndirs = ["flows", "/abs/flows"]\n')
    config = load_server_config(None, {"NOUKAI_CONFIG": str(path)})
    assert config.data_dir == tmp_path / "conf" / "state"
    assert config.flows_dirs == (tmp_path / "conf" / "flows", Path("/abs/flows"))
    assert config.config_file == path


def test_an_explicit_file_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does-not-exist.toml does not exist"):
        load_server_config(tmp_path / "does-not-exist.toml", {})


def test_invalid_toml_says_where(tmp_path: Path) -> None:
    message = refused(tmp_path, "[server]\nport = = 3\n")
    assert "not valid TOML" in message and "line 2" in message


def test_an_unknown_key_names_the_line_and_suggests(tmp_path: Path) -> None:
    message = refused(tmp_path, "[streams]\nretry_ms = 5\nheartbeat_second = 3\n")
    assert message.startswith(f"{tmp_path / 'noukai.toml'}:3: unknown key 'heartbeat_second' in [streams]")
    assert "did you mean 'heartbeat_seconds'?" in message
    assert "allowed: heartbeat_seconds, lifetime_seconds, retry_ms" in message


def test_an_unknown_section_suggests(tmp_path: Path) -> None:
    message = refused(tmp_path, "\n[sever]\nport = 1\n")
    assert f"{tmp_path / 'noukai.toml'}:2: unknown section [sever]; did you mean 'server'?" in message


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        (
            '[server]\nport = "8080"\n',
            [':2: [server] port = "8080" is not allowed', "an integer >= 0 and <= 65535"],
        ),
        ("[server]\nport = 70000\n", ["[server] port = 70000", "<= 65535"]),
        ("[workers]\nconcurrency = 0\n", [":2: [workers] concurrency = 0 is not allowed", "an integer >= 1"]),
        ("[workers]\nembedded = 1\n", ["[workers] embedded = 1", "true or false"]),
        (
            "\n[retention]\ninterval_seconds = -60\n",
            [":3: [retention] interval_seconds = -60", "a number > 0"],
        ),
        ("[streams]\nheartbeat_seconds = true\n", ["heartbeat_seconds = true", "a number > 0"]),
        ('[logging]\nlevel = "loud"\n', ['[logging] level = "loud"', "one of debug, info, warning, error"]),
        ('[flows]\ndirs = "flows"\n', ['[flows] dirs = "flows"', "a list of paths"]),
        ("server = 3\n", ["server must be a table"]),
    ],
)
def test_a_wrong_value_in_the_file_names_key_line_and_what_is_allowed(
    tmp_path: Path, text: str, needles: list[str]
) -> None:
    message = refused(tmp_path, text)
    for needle in needles:
        assert needle in message, message


@pytest.mark.parametrize(
    ("env", "needles"),
    [
        (
            {"NOUKAI_HEARTBEAT_SECONDS": "15s"},
            ["NOUKAI_HEARTBEAT_SECONDS='15s'", "[streams] heartbeat_seconds", "no unit"],
        ),
        ({"NOUKAI_HEARTBEAT_SECONDS": "-1"}, ["NOUKAI_HEARTBEAT_SECONDS='-1'", "a number > 0"]),
        ({"NOUKAI_WORKER_CONCURRENCY": "0"}, ["NOUKAI_WORKER_CONCURRENCY='0'", "an integer >= 1"]),
        ({"NOUKAI_RETRY_MS": "1.5"}, ["NOUKAI_RETRY_MS='1.5'", "an integer >= 1"]),
        ({"NOUKAI_EMBEDDED_WORKERS": "maybe"}, ["NOUKAI_EMBEDDED_WORKERS='maybe'", "true or false"]),
        ({"NOUKAI_LOG_LEVEL": "loud"}, ["NOUKAI_LOG_LEVEL='loud'", "debug, info, warning, error"]),
        ({"NOUKAI_PORT": "http"}, ["NOUKAI_PORT='http'", "an integer"]),
    ],
)
def test_a_bad_environment_variable_names_itself_and_what_is_allowed(
    tmp_path: Path, env: dict[str, str], needles: list[str]
) -> None:
    for load in (lambda: load_settings(None, env, cwd=tmp_path), lambda: ServerConfig.from_env(env)):
        with pytest.raises(ConfigError) as caught:
            load()
        for needle in needles:
            assert needle in str(caught.value)


def test_an_empty_environment_variable_is_unset(tmp_path: Path) -> None:
    write(tmp_path, "[streams]\nheartbeat_seconds = 4\n")
    assert load_settings(None, {"NOUKAI_HEARTBEAT_SECONDS": ""}, cwd=tmp_path).config.heartbeat_seconds == 4


def test_a_bad_option_value_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--concurrency 0 is not allowed: expected an integer >= 1"):
        load_settings(None, {}, {"worker_concurrency": 0}, cwd=tmp_path)


def test_the_operator_project_loads_providers_functions_and_tools() -> None:
    loaded = load_settings(OPERATOR / "noukai.toml", OPERATOR_ENV)
    config = loaded.config
    named = config.providers.named["fakeai"]
    assert (named.kind, named.base_url, named.api_key) == ("openai", "http://127.0.0.1:9/v1", "sk-op")
    assert named.headers == {"X-Team": "blue", "X-Client": "noukai-tests"}
    assert named.timeout_seconds == 20
    assert config.providers.prices["fakeai:gpt-test"] == (Decimal("1.5"), Decimal("6"))
    assert loaded.providers["fakeai"].headers_as_written["X-Team"] == "${FAKEAI_TEAM}"
    functions, tools = build_registries(config)
    assert "shop.normalise_sku" in functions and "text.upper" in functions
    stock = tools.get("stock_level")
    assert stock.description == "How many items of a SKU are in stock."
    assert stock.timeout_seconds == 5
    assert stock.spec.parameters["required"] == ["sku"]
    assert "word_count" in tools
    assert "sk-op" not in repr(config)  # keys stay out of every repr (logs, tracebacks)


PROVIDER = """
[providers.local]
kind = "openai"
base_url = "http://localhost:11434/v1"
"""


@pytest.mark.parametrize(
    ("extra", "env", "needles"),
    [
        (
            'api_key = "sk-live-123"\n',
            {},
            [":5: [providers.local] api_key: keys are never written in the config file", "api_key_env"],
        ),
        (
            'api_key_env = "LOCAL_KEY"\n',
            {},
            [":5: [providers.local] api_key_env", "LOCAL_KEY, which is not set", "'local'"],
        ),
        ('kind_of = "x"\n', {}, ["unknown key; did you mean 'kind'?"]),
        ("timeout_seconds = 0\n", {}, ["[providers.local] timeout_seconds: 0 is not allowed"]),
        ('headers = {X-Key = "${NOPE}"}\n', {}, ["header 'X-Key' refers to the environment variable NOPE"]),
        (
            '[providers.local.models."m"]\ninput_per_million = -1\noutput_per_million = 1\n',
            {},
            [":6: [providers.local.models.m] input_per_million: -1", "a number >= 0"],
        ),
        (
            '[providers.local.models."m"]\ninput = 1\n',
            {},
            ["[providers.local.models.m] input: unknown key; did you mean 'input_per_million'?"],
        ),
    ],
)
def test_provider_mistakes(tmp_path: Path, extra: str, env: dict[str, str], needles: list[str]) -> None:
    message = refused(tmp_path, PROVIDER + extra, env)
    for needle in needles:
        assert needle in message, message


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[providers]\nlocal = 3\n", "[providers.local]: expected a table"),
        (
            '[providers.x]\nkind = "openai"\napi_key_env = "MY-KEY"\n',
            "'MY-KEY' is not an environment variable name",
        ),
        ('[providers.x]\nkind = "openai"\napi_key_env = ""\n', "api_key_env: '' is not allowed"),
        ('[providers.x]\nkind = "openai"\nheaders = ["a"]\n', 'expected a table of header = "value" strings'),
        ('[providers.x]\nkind = "openai"\nheaders = {A = "$"}\n', "write $$ for a literal $"),
        (
            '[providers.x]\nkind = "openai"\nmodels = 3\n',
            'expected tables [providers.NAME.models."model-id"]',
        ),
        ('[providers.x]\nkind = "openai"\nmodels = {m = 3}\n', "models.'m' must be a table"),
        (
            '[providers.x]\nkind = "openai"\nbase_url = "${GW_URL}/v1"\n',
            "base_url refers to the environment variable GW_URL",
        ),
    ],
)
def test_more_provider_mistakes(tmp_path: Path, text: str, needle: str) -> None:
    assert needle in refused(tmp_path, text)


def test_a_provider_kind_and_name_are_checked(tmp_path: Path) -> None:
    assert 'expected "openai" or "anthropic"' in refused(tmp_path, '[providers.x]\nkind = "gemini"\n')
    assert "'openai' is a built-in provider" in refused(tmp_path, '[providers.openai]\nkind = "openai"\n')
    assert "lower-case letters" in refused(tmp_path, '[providers.Local]\nkind = "openai"\n')


def test_a_provider_without_api_key_env_sends_a_placeholder(tmp_path: Path) -> None:
    config = load_server_config(write(tmp_path, PROVIDER), {})
    assert config.providers.named["local"].api_key == "none"


def test_functions_and_tools_forms(tmp_path: Path) -> None:
    (tmp_path / "ops_forms.py").write_text(
        "def f(x: int) -> int:\n    return x\n\n"
        "async def t(q: str) -> str:\n    '''Look q up.'''\n    return q\n"
    )
    path = write(
        tmp_path,
        """
        [functions]
        plain = "ops_forms:f"
        inline = { path = "ops_forms:f" }
        text.mine = "ops_forms:f"
        [tools]
        look = { path = "ops_forms:t", description = "Find things.", timeout_seconds = 2 }
        """,
    )
    config = load_server_config(path, {})
    assert sorted(config.functions) == ["inline", "plain", "text.mine"]
    assert config.tools["look"].description == "Find things."
    functions, tools = build_registries(config)
    assert "text.mine" in functions and tools.get("look").description == "Find things."


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        (
            '[functions]\nshout = "no_such_module_xyz:shout"\n',
            [":2: [functions] shout: no_such_module_xyz:shout", "cannot import module 'no_such_module_xyz'"],
        ),
        (
            '[functions]\nshout = "json:no_such"\n',
            ["[functions] shout: json:no_such", "has no attribute 'no_such'"],
        ),
        ('[functions]\nshout = "json"\n', ["[functions] shout", 'expected "package.module:callable"']),
        (
            '[functions]\nversion = "platform:python_version_tuple"\nx = "json:__doc__"\n',
            ["[functions] x", "is not callable"],
        ),
        (
            '[functions]\n"text.upper" = "json:dumps"\n',
            [":2: [functions] text.upper: json:dumps clashes with the built-in function 'text.upper'"],
        ),
        (
            '[tools]\nadd = "operator:add"\n',
            [":2: [tools] add: operator:add clashes with the built-in tool 'add'"],
        ),
        ('[tools]\n"bad name" = "json:dumps"\n', ["tool name 'bad name' must match"]),
        (
            '[tools]\nkw = "json:dumps"\n',
            ["[tools] kw: json:dumps: tool 'kw': *args and **kwargs cannot be described"],
        ),
        (
            '[tools]\nx = { path = "json:dumps", timeout = 3 }\n',
            ["unknown key 'timeout'; did you mean 'timeout_seconds'?"],
        ),
        (
            '[functions]\nx = { path = "json:dumps", description = "no" }\n',
            ["unknown key 'description'", "allowed: path"],
        ),
    ],
)
def test_function_and_tool_mistakes(tmp_path: Path, text: str, needles: list[str]) -> None:
    message = refused(tmp_path, text)
    for needle in needles:
        assert needle in message, message


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[tools]\nx = { path = "json:dumps", description = 3 }\n', "description must be a string"),
        ('[tools]\nx = { path = "json:dumps", timeout_seconds = 0 }\n', "timeout_seconds 0 is not allowed"),
        ("[tools]\nx = 3\n", 'x: 3 is not allowed: expected "package.module:callable"'),
    ],
)
def test_more_tool_mistakes(tmp_path: Path, text: str, needle: str) -> None:
    assert needle in refused(tmp_path, text)


def test_an_unreadable_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "noukai.toml"
    path.write_bytes(b"\xff\xfe[server]")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_server_config(path, {})


def test_mcp_servers_need_the_mcp_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "noukai_server.mcp.config", None)  # importing it fails
    message = refused(tmp_path, '[mcp.servers.files]\ncommand = "x"\n')
    assert ":1: [mcp.servers] is not supported by this build" in message


def test_an_import_error_inside_the_module_is_reported(tmp_path: Path) -> None:
    (tmp_path / "ops_broken.py").write_text("import no_such_dependency_xyz\n")
    message = refused(tmp_path, '[tools]\nlookup = "ops_broken:lookup"\n')
    assert "[tools] lookup: ops_broken:lookup: cannot import module 'ops_broken'" in message
    assert "no_such_dependency_xyz" in message


def test_org_caps_when_the_server_has_them(tmp_path: Path) -> None:
    path = write(tmp_path, "[workers]\norg_max_running = 10\norg_max_running_overrides = {acme = 50}\n")
    config = load_server_config(path, {"NOUKAI_ORG_MAX_RUNNING_OVERRIDES": "acme=5,beta=2"})
    assert config.org_max_running == 10
    assert config.org_max_running_overrides == {"acme": 5, "beta": 2}
    message = refused(tmp_path, "[workers]\norg_max_running_overrides = {acme = 0}\n")
    assert "[workers] org_max_running_overrides = {acme = 0} is not allowed" in message
    assert "a table of name = integer >= 1" in message


def test_mcp_servers_are_parsed_by_the_mcp_package(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [mcp.servers.files]
        command = "mcp-files"
        args = ["--root", "/srv"]
        [mcp.servers.search]
        url = "https://mcp.example/search"
        headers = { Authorization = "Bearer ${SEARCH_TOKEN}" }
        """,
    )
    config = load_server_config(path, {"SEARCH_TOKEN": "t0k"})
    assert sorted(config.mcp_servers) == ["files", "search"]
    assert config.mcp_servers["search"].headers == {"Authorization": "Bearer t0k"}
    message = refused(tmp_path, '[mcp.servers.search]\nurl = "https://x"\nheaders = {A = "${NOPE}"}\n')
    assert str(tmp_path / "noukai.toml") in message and "NOPE" in message
    assert "[mcp] holds only [mcp.servers.NAME] tables" in refused(tmp_path, "[mcp]\nserver = 1\n")
