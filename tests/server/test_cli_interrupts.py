"""Ctrl-C in `noukai run` lands between two outputs, never inside one (cli/interrupts.py)."""

from __future__ import annotations

import io
import os
import signal
from typing import Any

import pytest
from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text

from noukai import RunStarted
from noukai_server.cli.interrupts import OutputGate
from noukai_server.cli.run import GatedView, HumanView


def ctrl_c() -> None:
    """SIGINT to this process; Python runs the handler before the next bytecode of this thread."""
    os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_while_writing_is_raised_once_the_writing_is_done() -> None:
    gate = OutputGate()
    written: list[str] = []

    def write() -> None:
        with gate.writing():
            written.append("first half")
            ctrl_c()
            with gate.writing():  # nested stretches: raised when the outermost ends
                written.append("nested")
            written.append("second half")
        written.append("after")  # never: the interrupt comes first

    with gate.installed(), pytest.raises(KeyboardInterrupt):
        write()
    assert written == ["first half", "nested", "second half"]


def test_ctrl_c_between_writes_is_raised_at_once() -> None:
    gate = OutputGate()
    with gate.installed(), pytest.raises(KeyboardInterrupt):
        ctrl_c()


def test_the_previous_handler_is_back_after_the_gate() -> None:
    before = signal.getsignal(signal.SIGINT)
    with OutputGate().installed() as gate:
        assert signal.getsignal(signal.SIGINT) == gate.on_signal
    assert signal.getsignal(signal.SIGINT) is before


class InterruptedWhileRendering:
    """A renderable during whose rendering Ctrl-C is pressed."""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        ctrl_c()
        yield Text("rendered whole")


class RecordingView:
    """A view that prints on a rich console and can be interrupted half-way."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def event(self, event: Any) -> None:
        self.console.print(InterruptedWhileRendering())

    def error(self, text: str) -> None:
        self.console.print(f"error: {text}")

    def note(self, text: str) -> None:
        self.console.print(text)

    def finish(self, event: Any) -> None:
        pass


def test_an_output_interrupted_half_way_ends_whole_and_the_note_after_it_is_printed() -> None:
    out = io.StringIO()
    gate = OutputGate()
    view = GatedView(RecordingView(Console(file=out, width=80)), gate)
    with gate.installed():
        with pytest.raises(KeyboardInterrupt):
            view.event(RunStarted())
        view.note("interrupted; the run goes on")
    assert out.getvalue() == "rendered whole\ninterrupted; the run goes on\n"


def test_the_human_view_gated_finishes_its_line_before_the_interrupt() -> None:
    out, err = io.StringIO(), io.StringIO()
    gate = OutputGate()
    view = GatedView(HumanView(out, Console(file=err, width=200), deltas=False), gate)

    def write() -> None:
        with gate.writing():
            ctrl_c()
            view.note("one whole line")

    with gate.installed(), pytest.raises(KeyboardInterrupt):
        write()
    assert err.getvalue() == "one whole line\n"
