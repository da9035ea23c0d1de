"""A newcomer's walk through README.md: every fenced snippet, run against a real server started the
README's way, from a fresh copy of the repository with fresh virtual environments.

The copy holds the repository's source files (tracked, or new and not ignored) and nothing else
(no `.venv`, no `.noukai`), so `make run` installs from scratch (from uv's cache when it is warm)
and creates the store and the dev key exactly as it would for someone who just cloned. Each
snippet is then run as written, with two adaptations a reader would make too: the port (the walk
takes a free one instead of 8080) and `<repository URL>` (this repository, as a `file://` URL).
`pip install` lines go through `uv pip install`, which takes the same arguments, into a new venv
per line.

Every snippet must be claimed by a handler below or listed in `NOT_RUN` with the reason, so a
snippet added to the README without being walked fails `test_every_snippet_is_walked`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.fakeprovider import FakeProvider, FakeToolCall, Reply

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
_BLOCK = re.compile(r"^```(\w*)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class Snippet:
    line: int
    lang: str
    text: str

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.lang or 'plain'})"


def readme_snippets() -> list[Snippet]:
    text = README.read_text(encoding="utf-8")
    return [
        Snippet(text.count("\n", 0, m.start()) + 1, m.group(1), m.group(2)) for m in _BLOCK.finditer(text)
    ]


NOT_RUN: dict[str, str] = {
    "make lint": "the Development targets are what `make test` (this suite's own run) does",
    "noukai init my-project": "tests/server/test_operator_config.py runs init, config check and "
    "serve --reload on a fresh project, and serves it",
}
"""Snippets recognised by a phrase they contain, and why the walk does not run them."""


def kind(snippet: Snippet) -> str:
    """Which handler walks the snippet ("" when none does)."""
    text, lang = snippet.text, snippet.lang
    for phrase in NOT_RUN:
        if phrase in text:
            return "not-run"
    rules: list[tuple[bool, str]] = [
        (lang == "bash" and "make run" in text, "quickstart"),
        (lang == "bash" and text.startswith("curl -s") and "/execute" in text, "curl-execute"),
        (lang == "bash" and text.startswith("curl -N"), "curl-stream"),
        (lang == "bash" and "pip install ./packages" in text, "pip-local"),
        (lang == "bash" and "git+<repository URL>" in text, "pip-git"),
        (lang == "python" and "from noukai_server import load_flow" in text, "in-process"),
        (lang == "python" and "from noukai_sdk import" in text, "published-sdk"),
        (lang == "python" and "from noukai import" in text, "our-sdk"),
        (lang == "yaml" and text.startswith("slug:"), "flow"),
        (lang == "yaml" and text.startswith("  - id:"), "step-fragment"),
        (lang == "text" and text.startswith("noukai "), "synopsis"),
        (lang == "toml", "config-example"),
    ]
    return next((name for matched, name in rules if matched), "")


def _of_kind(name: str) -> list[Snippet]:
    return [s for s in readme_snippets() if kind(s) == name]


def test_every_snippet_is_walked() -> None:
    unclaimed = [str(s) for s in readme_snippets() if not kind(s)]
    assert not unclaimed, f"README snippets nobody runs (add a handler or a NOT_RUN reason): {unclaimed}"
    assert len(readme_snippets()) >= 10


# --- the newcomer's machine -------------------------------------------------------------------


def _uv() -> str:
    found = shutil.which("uv") or str(REPO / ".tools" / "bin" / "uv")
    assert Path(found).exists(), "uv is installed by `make install` before the suite runs"
    return found


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NOUKAI_", "OPENAI_", "ANTHROPIC_", "VIRTUAL_ENV", "UV_PROJECT"))
    }
    env["PATH"] = f"{Path(_uv()).parent}{os.pathsep}{env.get('PATH', '')}"
    env["NO_PROXY"] = "127.0.0.1,localhost"
    env["COLUMNS"] = "200"
    env["NO_COLOR"] = "1"
    env["TERM"] = "dumb"
    env.update(extra)
    return env


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{shlex.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@dataclass
class Newcomer:
    """A fresh copy of the repository with `make run` serving from it."""

    clone: Path
    port: int
    fake: FakeProvider
    env: dict[str, str]
    venvs: dict[str, Path] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def key(self) -> str:
        return (self.clone / ".noukai" / "dev-api-key").read_text().strip()

    @property
    def noukai(self) -> str:
        return str(self.clone / ".venv" / "bin" / "noukai")

    def adapt(self, text: str) -> str:
        return text.replace("8080", str(self.port)).replace("<repository URL>", f"file://{REPO}")

    def bash(self, script: str, **env: str) -> str:
        return _run(["bash", "-euo", "pipefail", "-c", script], self.clone, {**self.env, **env})

    def command(self, *args: str) -> str:
        return _run([self.noukai, *args, "--url", self.url, "--api-key", self.key], self.clone, self.env)

    def venv(self, name: str) -> Path:
        """A new, empty virtual environment; returns its python."""
        path = self.clone.parent / "venvs" / name
        _run([_uv(), "venv", "--quiet", str(path)], self.clone, self.env)
        python = path / "bin" / "python"
        self.venvs[name] = python
        return python

    def pip_install(self, python: Path, args: list[str]) -> None:
        _run([_uv(), "pip", "install", "--quiet", "--python", str(python), *args], self.clone, self.env)


def _copy_source_files(destination: Path) -> None:
    """The files a clone of the working tree would have: tracked ones, and new ones not ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    for name in listed.decode().split("\0"):
        source = REPO / name
        if name and source.is_file():  # a tracked file deleted in the working tree is skipped
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def _wait_until_served(url: str, process: subprocess.Popen[str], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"make run exited {process.returncode}"
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"make run did not serve on {url} within {timeout} s")


@pytest.fixture(scope="module")
def newcomer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Newcomer]:
    """The quickstart: `make run` in a fresh copy, with the OpenAI provider pointed at the fake."""
    [quickstart] = _of_kind("quickstart")
    assert "make run" in quickstart.text
    clone = tmp_path_factory.mktemp("newcomer") / "noukai"
    _copy_source_files(clone)
    port = free_port()
    with FakeProvider(api_key="sk-walk") as fake:
        env = _clean_env(OPENAI_BASE_URL=fake.openai_base_url, OPENAI_API_KEY="sk-walk")
        log = (clone.parent / "make-run.log").open("w")
        process = subprocess.Popen(
            ["make", "run", f"PORT={port}"],
            cwd=clone,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # make, uv and the server: stopped together below
        )
        try:
            _wait_until_served(f"http://127.0.0.1:{port}", process)
            yield Newcomer(clone, port, fake, env)
        finally:
            _stop_group(process)
            log.close()


def _stop_group(process: subprocess.Popen[str]) -> None:
    for sig, wait in ((signal.SIGTERM, 30.0), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:  # the whole group is gone already
            break
        try:
            process.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue


# --- the walk ---------------------------------------------------------------------------------


def test_make_run_prints_the_key_and_a_snippet_to_try(newcomer: Newcomer) -> None:
    banner = (newcomer.clone.parent / "make-run.log").read_text()
    assert newcomer.key.startswith("nk_")
    assert newcomer.key in banner
    assert f"http://127.0.0.1:{newcomer.port}" in banner


def test_the_curl_snippet_runs_the_echo_flow(newcomer: Newcomer) -> None:
    [snippet] = _of_kind("curl-execute")
    answer = json.loads(newcomer.bash(newcomer.adapt(snippet.text)))
    assert answer["status"] == "completed"
    assert answer["result"] == "hello there"


def test_the_published_sdk_snippet_runs_unmodified(newcomer: Newcomer) -> None:
    """`pip install noukai-sdk`, then the snippet; its `env="dev"` is the one constant pointed at
    the walk's port (the published SDK knows no other way to reach a port; contract section 9)."""
    [snippet] = _of_kind("published-sdk")
    python = newcomer.venv("published-sdk")
    newcomer.pip_install(python, ["noukai-sdk"])
    prelude = f"import noukai_sdk._client\nnoukai_sdk._client.DEV_BASE_URL = '{newcomer.url}/api/v1'\n"
    output = _run([str(python), "-c", prelude + snippet.text], newcomer.clone, newcomer.env)
    assert output == "hello\n"


def _pip_lines(text: str) -> list[list[str]]:
    """Each `pip install ...` command of a snippet (continuations joined, comments dropped) as the
    arguments after `pip install`."""
    joined = text.replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words[:2] == ["pip", "install"]:
            commands.append(words[2:])
    return commands


def _check_distributions(python: Path, args: list[str]) -> None:
    bin_dir = python.parent
    _run([str(python), "-c", "import noukai; noukai.Noukai"], bin_dir, _clean_env())
    if any("noukai-server" in a for a in args):
        version = _run([str(bin_dir / "noukai"), "--version"], bin_dir, _clean_env())
        assert "noukai-server" in version
    else:
        assert not (bin_dir / "noukai").exists(), "the SDK alone installs no command"


def test_the_install_from_a_clone_snippet(newcomer: Newcomer) -> None:
    [snippet] = _of_kind("pip-local")
    commands = _pip_lines(snippet.text)
    assert len(commands) == 2
    for index, args in enumerate(commands):
        python = newcomer.venv(f"clone-install-{index}")
        newcomer.pip_install(python, args)
        _check_distributions(python, args)


def test_the_install_from_a_git_url_snippet(newcomer: Newcomer) -> None:
    """From this repository's committed HEAD, as a git URL is: uncommitted edits are not in it."""
    [snippet] = _of_kind("pip-git")
    commands = _pip_lines(newcomer.adapt(snippet.text))
    assert len(commands) == 2
    for index, args in enumerate(commands):
        python = newcomer.venv(f"git-install-{index}")
        newcomer.pip_install(python, args)
        _check_distributions(python, args)


def test_our_sdk_snippet_streams_the_run(newcomer: Newcomer) -> None:
    """Run in the application's venv: the SDK alone, installed as the README says."""
    [snippet] = _of_kind("our-sdk")
    python = newcomer.venv("application")
    newcomer.pip_install(python, ["./packages/noukai"])
    output = _run([str(python), "-c", newcomer.adapt(snippet.text)], newcomer.clone, newcomer.env)
    lines = output.splitlines()
    assert lines[0].startswith("run_started")
    assert lines[-1].startswith("flow_completed")
    deltas = "".join(line.removeprefix("step_output ") for line in lines if line.startswith("step_output"))
    assert deltas == "hello there"


def test_the_in_process_snippet_runs_without_the_server(newcomer: Newcomer) -> None:
    """In the clone's own venv (`make run` installed both distributions there), with the server of
    the walk left alone: the snippet needs none."""
    [snippet] = _of_kind("in-process")
    python = newcomer.clone / ".venv" / "bin" / "python"
    output = _run([str(python), "-c", snippet.text], newcomer.clone, newcomer.env)
    lines = output.splitlines()
    assert lines[0] == "hello"
    assert lines[-1].startswith("flow_completed")
    deltas = "".join(
        line.removeprefix("step_output ") for line in lines[1:] if line.startswith("step_output")
    )
    assert deltas == "hello there"


def test_the_flow_example_is_pushed_and_runs_with_and_without_its_optional_input(
    newcomer: Newcomer,
) -> None:
    [snippet] = _of_kind("flow")
    (newcomer.clone / "grade.yaml").write_text(snippet.text)
    pushed = newcomer.command("flows", "push", "grade.yaml", "--org", "dev", "--project", "main")
    assert "dev/main/grade: draft revision" in pushed
    plain = newcomer.command("run", "dev/main/grade", "-m", "Helo wrld", "--result-only")
    assert plain.strip() == "Check: Helo wrld"
    verbose = newcomer.command(
        "run", "dev/main/grade", "-m", "Helo wrld", "--param", "verbose=true", "--result-only"
    )
    assert json.loads(verbose) == {"verdict": "Check: Helo wrld"}


def test_the_agent_step_calls_its_server_tool(newcomer: Newcomer) -> None:
    """The README's agent step, in a flow of its own, on the OpenAI provider (the fake, which asks
    for `word_count` once and then answers)."""
    [snippet] = _of_kind("step-fragment")
    (newcomer.clone / "agent.yaml").write_text("slug: walk-agent\nsteps:\n" + snippet.text)
    newcomer.command("flows", "push", "agent.yaml", "--org", "dev", "--project", "main")
    newcomer.fake.script(
        Reply(tool_calls=[FakeToolCall("word_count", {"text": "one two three"})]),
        Reply.text("There are 3 words."),
    )
    result = newcomer.command("run", "dev/main/walk-agent", "-m", "How many words?", "--result-only")
    assert result.strip() == "There are 3 words."
    tool_turn = newcomer.fake.requests[-1].body["messages"][-1]
    assert tool_turn["role"] == "tool" and tool_turn["content"] == "3"


def _synopsis_commands(text: str) -> list[str]:
    """Each command line of the synopsis (continuation lines joined, `a | noukai b` split)."""
    commands: list[str] = []
    for line in text.splitlines():
        line = line.split("  #", 1)[0].strip()
        if not line:
            continue
        if line.startswith("noukai "):
            commands.extend(part.strip() for part in re.split(r"\|\s*(?=noukai )", line))
        else:
            commands[-1] += " " + line
    return commands


def test_every_command_and_option_of_the_synopsis_exists(newcomer: Newcomer) -> None:
    [snippet] = _of_kind("synopsis")
    commands = _synopsis_commands(snippet.text)
    assert len(commands) >= 7
    for command in commands:
        words = command.split()[1:]
        path = []
        for word in words:
            if not re.fullmatch(r"[a-z][a-z-]*", word):
                break
            path.append(word)
        help_text = _ANSI.sub("", _run([newcomer.noukai, *path, "--help"], newcomer.clone, newcomer.env))
        for option in re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", command):
            assert option in help_text, f"`{command}`: `noukai {' '.join(path)} --help` has no {option}"


def test_the_resumable_stream_snippet_resumes_after_id_12(newcomer: Newcomer) -> None:
    [snippet] = _of_kind("curl-stream")
    words = " ".join(f"w{i}" for i in range(20))
    answer = httpx.post(
        f"{newcomer.url}/api/v1/seq/dev/main/echo/execute",
        json={"message": words},
        headers={"Authorization": f"Bearer {newcomer.key}"},
        timeout=30,
    ).json()
    output = newcomer.bash(newcomer.adapt(snippet.text), RUN_ID=answer["executionId"], KEY=newcomer.key)
    ids = [int(line.removeprefix("id: ")) for line in output.splitlines() if line.startswith("id: ")]
    assert ids[0] == 13
    assert ids == list(range(13, ids[-1] + 1))
    assert "event: flow_completed" in output


def test_the_annotated_config_is_valid_and_keeps_its_key_out_of_sight(newcomer: Newcomer) -> None:
    """The README's noukai.toml beside the module `noukai init` writes: `config check` accepts it
    only with the provider's key variable set, and `config show` never prints the key."""
    [snippet] = _of_kind("config-example")
    project = newcomer.clone.parent / "configured"
    _run([newcomer.noukai, "init", str(project)], newcomer.clone, newcomer.env)
    (project / "noukai.toml").write_text(snippet.text)
    env = {**newcomer.env, "GATEWAY_API_KEY": "sk-walk-gateway-secret", "TEAM_NAME": "walkers"}
    checked = _run([newcomer.noukai, "config", "check"], project, env)
    assert checked.startswith("ok: ") and "1 named provider(s)" in checked and "1 MCP server(s)" in checked
    shown = json.loads(_run([newcomer.noukai, "config", "show", "--json"], project, env))
    assert shown["settings"]["workers"]["org_max_running_overrides"]["value"] == {"acme": 20}
    assert "sk-walk-gateway-secret" not in json.dumps(shown)
    del env["GATEWAY_API_KEY"]
    refused = subprocess.run(
        [newcomer.noukai, "config", "check"], cwd=project, env=env, capture_output=True, text=True
    )
    assert refused.returncode == 2 and "GATEWAY_API_KEY, which is not set" in refused.stderr


HANDLERS: dict[str, Callable[..., None]] = {
    "curl-execute": test_the_curl_snippet_runs_the_echo_flow,
    "curl-stream": test_the_resumable_stream_snippet_resumes_after_id_12,
    "pip-local": test_the_install_from_a_clone_snippet,
    "pip-git": test_the_install_from_a_git_url_snippet,
    "published-sdk": test_the_published_sdk_snippet_runs_unmodified,
    "our-sdk": test_our_sdk_snippet_streams_the_run,
    "flow": test_the_flow_example_is_pushed_and_runs_with_and_without_its_optional_input,
    "step-fragment": test_the_agent_step_calls_its_server_tool,
    "synopsis": test_every_command_and_option_of_the_synopsis_exists,
    "config-example": test_the_annotated_config_is_valid_and_keeps_its_key_out_of_sight,
    "quickstart": test_make_run_prints_the_key_and_a_snippet_to_try,
}
"""Which test walks each kind; `test_each_kind_has_one_snippet` keeps the two in step."""


def test_each_kind_has_one_snippet() -> None:
    """Each handler unpacks exactly one snippet of its kind; a second one would need its own."""
    for name in HANDLERS:
        assert len(_of_kind(name)) == 1, f"{name}: {[str(s) for s in _of_kind(name)]}"
