"""Rendering off the event loop with a deadline: a cheap template renders inline, any other on a
bounded pool of render threads, and a template checks its own deadline as it runs (ticks compiled
into its loops, filters, tests, calls, lookups and operators), so no thread is ever killed."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from noukai_server.flows import TemplateEngine, TemplateError
from noukai_server.flows._deadline import RenderJob, RenderPool, rendering_under, tick, ticking
from noukai_server.flows._environment import FlowEnvironment

pytestmark = pytest.mark.anyio
RUNAWAY = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
# No `{% for %}` at all: the work happens inside filters that call other filters and tests per
# item (some 10 million calls; more stages would nest their generators too deeply).
_STAGE = "|map('string')|map('length')|select('odd')|map('string')|reject('none')"
RUNAWAY_CHAIN = "{{ range(100000)" + _STAGE * 30 + "|list|length }}"
HANG_GUARD = 30.0
PAST = r"^template ran past its 0.2 s limit$"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def context(**parameters: Any) -> dict[str, Any]:
    return {"parameters": parameters}


@pytest.mark.parametrize(
    ("source", "cheap"),
    [
        ("Hello {{ parameters.name }}", True),
        ("{{ parameters['name'] | default('x') | upper }}", True),
        (
            "{% if parameters.name == 'a' and not parameters.b is defined %}"
            "{{ parameters.name ~ '!' }}{% endif %}",
            True,
        ),
        ("{{ parameters.items | tojson }}", True),
        ("{% for i in parameters.items %}{{ i }}{% endfor %}", False),
        ("{{ parameters.n * 2 }}", False),
        ("{{ parameters.name | center(10) }}", False),
        ("{{ parameters.name.upper() }}", False),
        ("{{ parameters.items[1:] }}", False),
    ],
)
async def test_only_templates_without_loops_calls_or_arithmetic_are_cheap(source: str, cheap: bool) -> None:
    engine = TemplateEngine()
    ctx = context(name="a", items=[1, 2], n=3)
    assert not engine.is_cheap(source)  # not compiled yet: the first render compiles it off the loop
    assert await engine.render_text_async(source, ctx) == engine.render_text(source, ctx)
    assert engine.is_cheap(source) is cheap


async def test_a_runaway_nested_loop_fails_at_its_deadline_and_the_engine_goes_on() -> None:
    engine = TemplateEngine(template_seconds=0.2)
    for _ in range(3):
        with pytest.raises(TemplateError, match=PAST):
            await engine.render_text_async(RUNAWAY, {})
        assert await engine.render_value_async("{{ [1, 2] | sum }}", {}) == 3


async def test_a_runaway_chain_of_filters_without_a_loop_fails_at_its_deadline() -> None:
    engine = TemplateEngine(template_seconds=0.2)
    assert "{% for" not in RUNAWAY_CHAIN
    with pytest.raises(TemplateError, match=PAST):
        await engine.render_text_async(RUNAWAY_CHAIN, {})
    # The same chain over little data is an ordinary template (given time to compile its 150 filters).
    small = RUNAWAY_CHAIN.replace("100000", "10")
    assert await TemplateEngine().render_text_async(small, {}) == "10"


async def test_every_async_render_is_bounded() -> None:
    engine = TemplateEngine(template_seconds=0.2)
    with pytest.raises(TemplateError, match=PAST):
        await engine.render_value_async(RUNAWAY, {})
    with pytest.raises(TemplateError, match=r"^field 'a\[1\]': template ran past its 0.2 s limit$"):
        await engine.render_structure_async({"a": ["ok", RUNAWAY]}, {})
    rendered = await engine.render_structure_async({"a": ["{{ 1 + 1 }}", "{{ parameters.x }}"]}, context(x=5))
    assert rendered == {"a": [2, 5]}


async def test_the_event_loop_runs_while_a_template_runs_away() -> None:
    engine = TemplateEngine(template_seconds=0.5)
    ticks = 0

    async def count() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    counter = asyncio.create_task(count())
    with pytest.raises(TemplateError):
        await engine.render_text_async(RUNAWAY, {})
    counter.cancel()
    assert ticks >= 5  # a loop blocked for the whole render would have counted at most once


async def test_a_cancelled_render_stops_its_thread() -> None:
    pool = RenderPool(HANG_GUARD)
    engine = TemplateEngine(template_seconds=HANG_GUARD)
    engine._render_pool = pool  # observe the engine's pool
    task = asyncio.create_task(engine.render_text_async(RUNAWAY, {}))
    await _until(lambda: pool.busy() == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _until(lambda: pool.busy() == 0)  # long before HANG_GUARD, the render's own deadline
    assert await engine.render_text_async("{% for i in [1, 2] %}{{ i }}{% endfor %}", {}) == "12"


async def test_a_render_cancelled_while_queued_never_starts() -> None:
    pool = RenderPool(HANG_GUARD, max_threads=1)
    started: list[str] = []
    blocker = asyncio.create_task(pool.run(lambda: _tick_for(HANG_GUARD)))
    await _until(lambda: pool.busy() == 1)
    queued = asyncio.create_task(pool.run(lambda: started.append("queued")))
    await asyncio.sleep(0.05)
    queued.cancel()
    blocker.cancel()
    for task in (queued, blocker):
        with pytest.raises(asyncio.CancelledError):
            await task
    await _until(lambda: pool.busy() == 0)
    assert await pool.run(lambda: "next") == "next"
    assert started == []


async def test_the_pool_never_keeps_a_thread_stuck_in_a_runaway_render() -> None:
    pool = RenderPool(0.2, max_threads=2)
    engine = TemplateEngine(template_seconds=0.2)
    engine._render_pool = pool
    # Three times more runaways than threads: the queued ones run once the first ones stop.
    outcomes = await asyncio.gather(
        *(engine.render_text_async(RUNAWAY, {}) for _ in range(6)), return_exceptions=True
    )
    assert all(isinstance(outcome, TemplateError) for outcome in outcomes)
    assert pool.busy() == 0
    assert len(pool._executor._threads) <= 2
    assert await engine.render_text_async("{% for i in [3] %}{{ i }}{% endfor %}", {}) == "3"


async def test_the_deadline_is_per_render_and_starts_when_the_render_starts() -> None:
    # Six renders of 0.1 s each on one thread take 0.6 s in all, longer than one deadline: none
    # fails, since waiting in the queue does not count.
    pool = RenderPool(0.5, max_threads=1)
    results = await asyncio.gather(*(pool.run(lambda: _tick_for(0.1)) for _ in range(6)))
    assert results == ["done"] * 6


async def test_concurrent_renders_each_get_their_own_deadline_and_result() -> None:
    engine = TemplateEngine(template_seconds=0.3)
    loop = "{% for i in range(parameters.n) %}{{ i * 2 }},{% endfor %}"
    runaway = asyncio.ensure_future(engine.render_text_async(RUNAWAY, {}))
    results = await asyncio.gather(*(engine.render_text_async(loop, context(n=n)) for n in range(20)))
    assert results == ["".join(f"{i * 2}," for i in range(n)) for n in range(20)]
    with pytest.raises(TemplateError, match="ran past its 0.3 s limit"):
        await runaway


async def test_errors_inside_a_render_thread_reach_the_caller() -> None:
    engine = TemplateEngine()
    with pytest.raises(TemplateError, match="'nope' is undefined"):
        await engine.render_text_async("{% for i in [1] %}{{ nope }}{% endfor %}", {})
    with pytest.raises(TemplateError, match="template syntax error"):
        await engine.render_text_async("{% for %}", {})


@pytest.mark.parametrize(
    "source",
    [
        "{% for x in [1] %}{% endfor %}",
        "{% for x in [1] if x %}{% endfor %}",
        "{{ y | upper }}",
        "{% if y is string %}{% endif %}",
        "{{ [1] | map('string') | list }}",
        "{{ x.a }}",
        "{{ x['a'] }}",
        "{{ 'a'.upper() }}",
        "{{ 1 + 1 }}",
        "{% macro m() %}{% endmacro %}{{ m() }}",
        "{% filter upper %}a{% endfilter %}",
    ],
)
def test_every_loop_filter_test_call_lookup_and_operator_checks_the_deadline(source: str) -> None:
    # The render is compiled before its job is set, so only the render's own ticks can raise.
    template = FlowEnvironment().from_string(source)
    job = RenderJob(0.2)
    job.expire()
    with rendering_under(job), pytest.raises(TemplateError, match=PAST):
        template.render(x={"a": 1}, y="b")


def test_the_items_of_a_recursive_loop_tick_too() -> None:
    env = FlowEnvironment()
    template = env.from_string("{% for x in [[1, 2]] recursive %}{{ loop(x) if x is iterable }}{% endfor %}")
    job = RenderJob(HANG_GUARD)
    with rendering_under(job):
        assert template.render() == ""  # `loop(x)` renders 1 and 2 to nothing, on a live deadline
    env.call(env.from_string("").new_context(), len, [1])  # an ordinary call is not wrapped


@pytest.mark.parametrize(
    "source",
    [
        "{% for x in xs %}{{ loop.index }}/{{ loop.length }}/{{ loop.revindex }}/{{ loop.last }}{% endfor %}",
        "{% for x in xs %}{{ loop.cycle('a', 'b') }}{{ loop.changed(x) }}{{ loop.previtem | default('-') }}"
        "{{ loop.nextitem | default('-') }};{% endfor %}",
        "{% for x in xs if x > 1 %}{{ x }}{% else %}none{% endfor %}",
        "{% for x in [] %}{{ x }}{% else %}none{% endfor %}",
        "{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}",
        "{% for x in [[1, [2, 3]], 4] recursive %}{% if x is iterable %}({{ loop(x) }}){% else %}"
        "{{ x }}@{{ loop.depth }}{% endif %}{% endfor %}",
    ],
)
def test_loops_render_the_same_with_and_without_a_deadline(source: str) -> None:
    template = FlowEnvironment().from_string(source)
    alone = template.render(xs=[1, 2, 3])
    with rendering_under(RenderJob(HANG_GUARD)):
        assert template.render(xs=[1, 2, 3]) == alone


def test_a_render_past_its_deadline_fails_at_every_later_tick() -> None:
    job = RenderJob(0.2)
    job.expire()
    with rendering_under(job):
        for _ in range(3):
            # Whatever swallowed the first refusal, the next tick refuses again.
            with pytest.raises(TemplateError, match=PAST):
                tick()


def test_a_render_ticks_until_its_deadline_passes() -> None:
    job = RenderJob(0.05)
    job.start()
    with rendering_under(job), pytest.raises(TemplateError, match=r"^template ran past its 0.05 s limit$"):
        _tick_for(HANG_GUARD)
    assert time.monotonic() >= job.deadline


def test_without_a_deadline_ticks_do_nothing_and_loops_are_not_wrapped() -> None:
    items = [1, 2]
    assert ticking(items) is items
    tick()
    assert TemplateEngine().render_text(RUNAWAY.replace("100000", "3"), {}) == ""
    job = RenderJob(0.2)
    with rendering_under(job):
        assert list(ticking(items)) == items  # wrapped, and the same items
    assert ticking(items) is items  # the job ended with its block


def test_render_pools_refuse_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        RenderPool(0)
    with pytest.raises(ValueError):
        RenderPool(1, max_threads=0)
    with pytest.raises(ValueError):
        TemplateEngine(template_seconds=0)


def test_render_threads_are_named_and_never_the_callers() -> None:
    pool = RenderPool(1.0)
    name = asyncio.run(pool.run(lambda: threading.current_thread().name))
    assert name.startswith("noukai-render")
    assert name != threading.current_thread().name


def _tick_for(seconds: float) -> str:
    """Stand-in for a render that takes `seconds` and checks its deadline all along."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        tick()
    return "done"


async def _until(check: Any) -> None:
    begun = time.monotonic()
    while not check():
        assert time.monotonic() - begun < HANG_GUARD
        await asyncio.sleep(0.01)
