"""The flow cycle check (FLOW_CYCLE) on the paths that save flows without the HTTP API: the CLI's
`flows push --local`, which writes the store itself, and the `--flows` folders loaded when `serve`
starts. The HTTP push's refusal is tested in tests/server/test_subflows.py."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.server.test_cli import noukai, store
from tests.server.test_logging import Served, serve
from tests.server.test_serve_startup import served

__all__ = ["served", "store"]  # fixtures, used by name

CALLS_B = "slug: cyc-a\nsteps:\n  - {id: to_b, type: flow, flow: dev/main/cyc-b}\n"
CALLS_A = "slug: cyc-b\nsteps:\n  - {id: to_a, type: flow, flow: dev/main/cyc-a}\n"
LOOP = "dev/main/cyc-b -> dev/main/cyc-a -> dev/main/cyc-b"


def test_a_local_push_that_closes_a_loop_is_refused_with_flow_cycle(store: Path) -> None:
    a, b = store / "a.yaml", store / "b.yaml"
    a.write_text(CALLS_B)
    b.write_text(CALLS_A)
    push = ("flows", "push", "--org", "dev", "--project", "main", "--local")
    first = noukai(store, *push[:2], str(a), *push[2:], check=False)
    assert first.returncode == 0, first.stderr  # b does not exist yet: no loop
    second = noukai(store, *push[:2], str(b), *push[2:], check=False)
    assert second.returncode == 1, second.stdout
    assert f"{b}: FLOW_CYCLE: " in second.stderr
    assert LOOP in second.stderr and "step 'to_a'" in second.stderr
    assert "Traceback" not in second.stderr
    # The refused push saved nothing: b's first accepted document is its revision 1.
    b.write_text("slug: cyc-b\nsteps:\n  - {id: done, type: template, template: ok}\n")
    accepted = noukai(store, *push[:2], str(b), *push[2:])
    assert "dev/main/cyc-b: draft revision 1" in accepted.stdout


def test_a_flows_folder_whose_flows_call_each_other_skips_the_one_closing_the_loop(
    tmp_path: Path, served: list[Served]
) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "cyc-a.yaml").write_text(CALLS_B)  # loaded first (by name): b is not there yet
    (flows / "cyc-b.yaml").write_text(CALLS_A)
    server = serve(tmp_path / "data", "--flows", str(flows))
    served.append(server)
    banner = server.banner()
    assert "skipped 1 flow file(s)" in banner
    assert f"  cyc-b.yaml: flow dev/main/cyc-b runs itself through the flows it names ({LOOP})" in banner
    warnings = [line for line in server.log().splitlines() if " WARNING " in line]
    assert any(str(flows / "cyc-b.yaml") in line and LOOP in line for line in warnings), warnings
    assert "Traceback" not in server.log()
    headers = {"Authorization": f"Bearer {server.dev_key}"}
    loaded = httpx.get(f"{server.api_url}/flows/dev/main/cyc-a", headers=headers)
    assert loaded.status_code == 200, loaded.text
    missing = httpx.get(f"{server.api_url}/flows/dev/main/cyc-b", headers=headers)
    assert missing.status_code == 404, missing.text
