"""The console's HTTP side: the shell at `/`, its static files (CSP, caching), and
`GET /api/v1/keys/me`, which the sign-in uses."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import httpx

from noukai_server.console import CONTENT_SECURITY_POLICY, STATIC_DIR
from tests.conftest import REPO_ROOT, ServerProcess
from tests.console.conftest import Api


def test_the_shell_is_served_at_the_root_with_a_strict_policy(console_server: ServerProcess) -> None:
    answer = httpx.get(f"{console_server.base_url}/")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY and "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert answer.headers["cache-control"] == "no-cache"
    assert '<script type="module" src="console/static/app.js">' in answer.text
    assert "<script>" not in answer.text  # no inline script: the policy would block it


def test_static_files_revalidate_with_an_etag(console_server: ServerProcess) -> None:
    url = f"{console_server.base_url}/console/static/app.js"
    first = httpx.get(url)
    assert first.status_code == 200 and first.headers["content-type"].startswith("text/javascript")
    assert first.headers["cache-control"] == "no-cache"
    assert first.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    again = httpx.get(url, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def test_a_missing_static_file_is_a_404(console_server: ServerProcess) -> None:
    assert httpx.get(f"{console_server.base_url}/console/static/nope.js").status_code == 404
    assert httpx.get(f"{console_server.base_url}/console/static/../__init__.py").status_code == 404


def test_the_api_and_its_docs_stay_where_they_were(console_server: ServerProcess) -> None:
    assert httpx.get(f"{console_server.api_url}/health").json()["status"] == "ok"
    assert httpx.get(f"{console_server.base_url}/docs").status_code == 200


def test_keys_me_tells_the_calling_key(console_server: ServerProcess, admin: Api) -> None:
    made = admin.call("POST", "orgs/dev/keys", {"scope": "read", "name": "reader"})
    me = Api(console_server, made["key"]).call("GET", "keys/me")
    assert me == {**me, "id": made["id"], "org": "dev", "project": "main", "scope": "read", "state": "active"}
    assert "key" not in me and made["key"] not in str(me)


def test_keys_me_refuses_a_missing_or_bad_key(console_server: ServerProcess) -> None:
    missing = httpx.get(f"{console_server.api_url}/keys/me")
    assert missing.status_code == 401 and missing.json()["detail"]["code"] == "UNAUTHENTICATED"
    bad = httpx.get(f"{console_server.api_url}/keys/me", headers={"Authorization": "Bearer nk_x_y"})
    assert bad.status_code == 401 and bad.json()["detail"]["code"] == "UNAUTHENTICATED"


def test_the_wheel_ships_every_console_file(tmp_path: Path) -> None:
    """The console is served from the installed package: the wheel must carry its static files."""
    uv = shutil.which("uv") or str(REPO_ROOT / ".tools" / "bin" / "uv")
    subprocess.run(
        [uv, "build", "--wheel", "--quiet", "packages/noukai-server", "-o", str(tmp_path)],
        cwd=REPO_ROOT,
        check=True,
    )
    (wheel,) = tmp_path.glob("noukai_server-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    files = {f"noukai_server/console/static/{path.name}" for path in STATIC_DIR.iterdir()}
    assert "noukai_server/console/static/index.html" in files
    assert files <= shipped, sorted(files - shipped)
