"""Who empties `PROMETHEUS_MULTIPROC_DIR`, and what a starting process keeps of the others' files."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from noukai_server.telemetry import metrics_multiproc
from noukai_server.telemetry.metrics import MULTIPROC_ENV


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def live_pid() -> Iterator[int]:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()


def _files(directory: Path, *names: str) -> None:
    for name in names:
        (directory / name).write_bytes(b"x")


def test_the_first_process_empties_a_directory_nobody_lives_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    dead = _dead_pid()
    _files(tmp_path, f"counter_{dead}.db", f"gauge_livesum_{dead}.db", f"histogram_{os.getpid()}.db")
    assert metrics_multiproc.prepare() == tmp_path
    assert list(tmp_path.iterdir()) == []


def test_a_process_starting_beside_live_ones_retires_only_dead_gauges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, live_pid: int
) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    dead, own = _dead_pid(), os.getpid()
    _files(
        tmp_path,
        f"counter_{live_pid}.db",
        f"gauge_livesum_{live_pid}.db",
        f"counter_{dead}.db",  # an ended process's counts stay in the sums
        f"gauge_livesum_{dead}.db",
        f"gauge_livesum_{own}.db",  # a dead process whose pid this one reuses
    )
    metrics_multiproc.prepare()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"counter_{live_pid}.db", f"gauge_livesum_{live_pid}.db", f"counter_{dead}.db"]
    )


def test_a_scrape_retires_the_gauges_of_killed_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, live_pid: int
) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    dead = _dead_pid()
    kept = [f"gauge_livesum_{live_pid}.db", f"counter_{dead}.db", f"histogram_{dead}.db"]
    _files(tmp_path, *kept, f"gauge_livesum_{dead}.db", f"gauge_liveall_{dead}.db")
    metrics_multiproc.retire_dead()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)


def test_off_without_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    assert metrics_multiproc.prepare() is None
    assert metrics_multiproc.scrape_registry() is None
    metrics_multiproc.process_exit()  # nothing to retire
    metrics_multiproc.retire_dead()


def test_a_missing_directory_is_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path / "a" / "b"))
    assert metrics_multiproc.prepare() == tmp_path / "a" / "b"
    assert (tmp_path / "a" / "b").is_dir()


def test_an_unusable_directory_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path / "a-file" / "metrics"))
    with pytest.raises(metrics_multiproc.MultiprocDirUnusable, match="PROMETHEUS_MULTIPROC_DIR=.*a-file"):
        metrics_multiproc.prepare()
    with pytest.raises(metrics_multiproc.MultiprocDirUnusable):
        metrics_multiproc.scrape_registry()


def test_the_scrape_registry_creates_the_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The app builds its scrape registry before its lifespan prepares the directory."""
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path / "later"))
    assert metrics_multiproc.scrape_registry() is not None
    assert (tmp_path / "later").is_dir()
