"""The render budget: loops, ranges and calls are counted, time is bounded, and rendering runs
off the event loop so a runaway template never stalls other work."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest

from tidings.models import Channel, TemplateContent, TemplateDefinition
from tidings.render_limits import MAX_RENDER_SECONDS, MAX_RENDER_STEPS
from tidings.rendering import (
    TemplateError,
    render,
    render_async,
    validate_template,
    validate_template_async,
)

NESTED_RANGES = "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}"
NESTED_DATA = (
    "{% for a in xs %}{% for b in xs %}{% for c in xs %}{% endfor %}{% endfor %}{% endfor %}"
)
# No loop at all: 2**40 macro calls, stopped by the call hook.
EXPONENTIAL_MACRO = (
    "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}"
)


def make(text: str, sample: dict[str, Any] | None = None, **more: str) -> TemplateDefinition:
    return TemplateDefinition(
        id="t",
        channels=[Channel.EMAIL, Channel.SMS],
        content=TemplateContent(subject="Hi", text=text, **more),
        sample_data=sample or {},
    )


def test_nested_ranges_are_refused_at_registration_quickly_naming_the_channel() -> None:
    start = time.monotonic()
    with pytest.raises(TemplateError) as e:
        validate_template(make(NESTED_RANGES))
    assert time.monotonic() - start < 0.3
    assert e.value.field == "content.text"
    assert "render budget of channel email" in e.value.reason
    assert f"{MAX_RENDER_STEPS} loop steps" in e.value.reason


def test_a_data_driven_nested_loop_is_stopped() -> None:
    xs = list(range(500))  # 500**3 iterations from 2 KB of data
    with pytest.raises(TemplateError, match="render budget of channel sms"):
        render(make("ok", sms=NESTED_DATA), Channel.SMS, {"xs": xs})


def test_recursion_without_loops_is_stopped() -> None:
    start = time.monotonic()
    with pytest.raises(TemplateError, match="render budget"):
        render(make(EXPONENTIAL_MACRO), Channel.EMAIL, {})
    assert time.monotonic() - start < MAX_RENDER_SECONDS + 0.5


def test_range_then_filter_costs_its_length() -> None:
    text = "{% for i in range(10) %}{{ range(20000) | sum }}{% endfor %}"
    with pytest.raises(TemplateError, match="loop steps"):
        render(make(text), Channel.EMAIL, {})


def test_normal_templates_are_unaffected() -> None:
    text = (
        "{% for item in items %}{{ loop.index }}. {{ item.name | upper }}"
        "{% for tag in item.tags %} #{{ tag }}{% endfor %}\n{% endfor %}"
        "{% for i in range(3) %}{{ i }}{% endfor %}"
    )
    items = [{"name": f"n{i}", "tags": ["a", "b"]} for i in range(1000)]
    message = render(make(text), Channel.EMAIL, {"items": items})
    assert message.text.startswith("1. N0 #a #b\n2. N1")
    assert message.text.endswith("1000. N999 #a #b\n012")
    # The budget is per render: the same template renders again and again.
    for _ in range(3):
        render(make(text), Channel.EMAIL, {"items": items})


def test_data_named_like_the_budget_cannot_switch_it_off() -> None:
    # The loop wrapper is a filter, and filters are not looked up in the template's data.
    with pytest.raises(TemplateError, match="render budget"):
        render(make(NESTED_DATA), Channel.EMAIL, {"xs": list(range(500)), "tidings_budgeted": 1})


async def test_render_async_renders() -> None:
    message = await render_async(make("Hello {{ n }}"), Channel.EMAIL, {"n": 1})
    assert message.text == "Hello 1"


async def test_the_event_loop_keeps_answering_while_a_runaway_render_is_refused() -> None:
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    try:
        start = time.monotonic()
        with pytest.raises(TemplateError, match="render budget"):
            await validate_template_async(make(EXPONENTIAL_MACRO))
        elapsed = time.monotonic() - start
    finally:
        task.cancel()
    assert elapsed >= 0.1  # the render really ran for a while
    during = [t for t in ticks if t >= start]
    gaps = [b - a for a, b in itertools.pairwise(during)]
    # Had the render run on this loop, it would have ticked at most once, with one gap as long
    # as the render; the margins leave room for a loaded machine.
    assert len(during) >= 5, f"the loop ticked {len(during)} times in {elapsed:.2f} s"
    assert max(gaps) < elapsed * 0.6


# One operation that would allocate gigabytes at once: refused before it runs. (Tried with
# 10**10 so that a missing check would fail loudly rather than quietly use 100 MB.)
ONE_SHOT_BOMBS = [
    "{{ 'x'.center(10**10) }}",
    "{{ 'x'.ljust(10**10) }}",
    "{{ 'x'.zfill(10**10) }}",
    "{{ 'x' | center(10**10) }}",
    "{{ 'x\\ny' | indent(10**10) }}",
    "{{ '%*d' % (10**10, 1) }}",
    "{{ '%10000000000d' % 1 }}",
    "{{ '%(n)10000000000d' % {'n': 1} }}",
    "{{ '{:>10000000000}'.format(1) }}",
    "{{ '{:>{w}}'.format(1, w=10**10) }}",
    "{{ '%*d' | format(10**10, 1) }}",
    "{{ ('x' * 200000).replace('x', 'yyyyyyyyyy') }}",
    "{{ ('x' * 200000) | replace('x', 'yyyyyyyyyy') }}",
    "{{ 'x' * 10**10 }}",
    "{{ lipsum(10**6) }}",
    # Doubling in a short loop: few steps, exponential size.
    "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}{{ ns.s | length }}",
    "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}"
    "{% endfor %}{{ ns.s | length }}",
    "{% set ns = namespace(s=[1]) %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}"
    "{% endfor %}{{ ns.s | length }}",
    # Many references to one long string, turned into text in one go.
    "{% set l = ['x' * 250000] * 250000 %}{{ l | join }}",
    "{% set l = ['x' * 250000] * 250000 %}{{ l }}",
    "{% set l = ['x' * 250000] * 250000 %}{{ l | string | length }}",
    "{% set l = ['x' * 250000] * 250000 %}{{ l | tojson | length }}",
    "{% set l = ['x' * 250000] * 250000 %}{{ ('' ~ l) | length }}",
    "{% set l = ['x' * 250000] * 250000 %}{{ ('%s' % (l,)) | length }}",
    "{% set l = ['x' * 250000] * 250000 %}{{ '{}'.format(l) | length }}",
    "{% set l = [[1] * 250000] * 250000 %}{{ l | sum(start=[]) | length }}",
]


@pytest.mark.parametrize("text", ONE_SHOT_BOMBS)
def test_one_shot_allocations_are_refused_before_they_run(text: str) -> None:
    with pytest.raises(TemplateError) as e:
        render(make(text), Channel.EMAIL, {})
    assert e.value.field == "content.text"
    # Refused by a check, not by a MemoryError after the fact.
    assert (
        "refused by the sandbox" in e.value.reason or "'lipsum' is undefined" in e.value.reason
    ), e.value.reason


def test_ordinary_formatting_and_padding_still_work() -> None:
    text = (
        "{{ '%05.2f' % 3.14159 }}|{{ '{:,}'.format(amount) }}|{{ '%d items' | format(n) }}"
        "|{{ 'ab' | center(6) }}|{{ 'a-b' | replace('-', '--') }}|{{ 'x'.rjust(3, '.') }}"
        "|{{ '100%' }}|{{ '%s%%' % 5 }}"
    )
    message = render(make(text), Channel.EMAIL, {"amount": 12_345_678_901, "n": 3})
    assert message.text == "03.14|12,345,678,901|3 items|  ab  |a--b|..x|100%|5%"


def test_joins_keep_their_meaning_and_escaping() -> None:
    t = make(
        "{{ 'a' ~ 1 ~ name }}|{{ 'a' + 'b' }}|{{ [1] + [2] }}|{{ 1 + 2 }}",
        html="<p>{{ '<b>' ~ name }}</p>{{ ('<i>' | safe) ~ name }}",
    )
    message = render(t, Channel.EMAIL, {"name": "<Ann>"})
    assert message.text == "a1<Ann>|ab|[1, 2]|3"
    assert message.html == "<p>&lt;b&gt;&lt;Ann&gt;</p><i>&lt;Ann&gt;"
