"""Flow documents are bounded before any parser sees them: a bracket nesting deeper than flows may
is refused in a few C-speed passes (PyYAML would spend seconds on it), with the message the parsed
check gives; ordinary documents, templates' braces included, pass."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from noukai_server.flows import FlowValidationError, load_flow, nests_too_deep, parse_off_loop
from noukai_server.flows._offload import MAX_CONCURRENT_PARSES
from noukai_server.flows._source import MAX_DEPTH, bracket_depth_exceeds


@pytest.mark.parametrize(
    ("document", "too_deep"),
    [
        (b"[" * 64 + b"]" * 64, False),
        (b"[" * 65 + b"]" * 65, True),
        (b"{" * 65, True),  # unclosed brackets nest too
        (b"]" * 1000 + b"[" * 10, False),  # stray closers are the parser's to report
        (b"[]" * 500_000, False),  # wide, not deep
        (b"[[]" * 300_000, True),  # deepens one level per repeat, never in a run of 65
        (b"[{[{" * 16 + b"}]}]" * 16, False),
        (b"[{[{" * 17 + b"}]}]" * 17, True),
        (b"prompt: 'a [ b' " * 64, False),
        (b"prompt: 'a [ b' " * 65, True),  # quoted or not, every bracket counts
    ],
)
def test_bracket_depth(document: bytes, too_deep: bool) -> None:
    assert bracket_depth_exceeds(document, 64) is too_deep
    assert nests_too_deep(document) is too_deep
    assert MAX_DEPTH == 64


@pytest.mark.parametrize("filename", ["flow.yaml", "flow.json", None])
@pytest.mark.parametrize("document", [b"[" * 100_000 + b"]" * 100_000, "{" * 100_000])
def test_a_deeply_nested_document_is_refused_before_parsing(
    filename: str | None, document: str | bytes
) -> None:
    with pytest.raises(FlowValidationError) as caught:
        load_flow(document, filename=filename)
    assert caught.value.code == "INVALID_TREE"
    assert str(caught.value.issues[0]) == "flow document nests deeper than 64 levels"


def test_templates_braces_do_not_count_as_nesting() -> None:
    template = "{{ parameters.x }} {% if true %}[1]{% endif %} {{ {'a': [1]} | tojson }}"
    steps = "".join(f'  - id: s{i}\n    type: template\n    template: "{template}"\n' for i in range(200))
    spec = load_flow(f"slug: wide\ninputs:\n  x: {{type: string}}\nsteps:\n{steps}", filename="flow.yaml")
    assert len(spec.steps) == 200


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_documents_are_parsed_off_the_loop_a_few_at_a_time() -> None:
    loop_thread = threading.get_ident()
    lock = threading.Lock()
    running = peak = 0

    def parse(index: int) -> int:
        nonlocal running, peak
        assert threading.get_ident() != loop_thread
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return index

    assert await asyncio.gather(*(parse_off_loop(parse, i) for i in range(5))) == list(range(5))
    assert peak == MAX_CONCURRENT_PARSES == 1


@pytest.mark.anyio
async def test_a_parse_error_reaches_the_caller() -> None:
    with pytest.raises(FlowValidationError, match="nests deeper than 64 levels"):
        await parse_off_loop(load_flow, "[" * 100, filename="flow.yaml")
