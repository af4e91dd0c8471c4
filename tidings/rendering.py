"""Jinja2 rendering of templates per channel and locale, in the sandbox.

Templates are code written by app developers and fed with data from callers, so every source runs
in an immutable sandbox with undefined names as errors; only the HTML body is autoescaped (escaping
plain text would put `&amp;` into an SMS). Compiled templates are cached by source, so rendering the
same template version many times costs one parse.

Which source feeds which part of a `RenderedMessage` (the first field that is set wins; the locale's
own fields are tried before the default content's, so a French user gets the French subject as a
push title rather than the English push title):

    channel   subject (title)              text (body)            html
    EMAIL     subject (required)           text (required)        html (optional)
    PUSH      push_title, subject          push_body, text (req.)  -
    SMS       -                            sms, text (required)    -
    IN_APP    subject (required)           text (required)         -
    WEBHOOK   subject                      text (required)         -
    SLACK     subject                      text (required)         -

A field set to "" is present (it renders to ""); only None means absent.

The render budget. Rendering one channel (all its fields) may take at most `MAX_RENDER_STEPS`
(100,000) steps and `MAX_RENDER_SECONDS` (0.5 s); each field renders to at most
`MAX_RENDERED_BYTES` (256 KiB). A step is one iteration of a `{% for %}` loop, one element of a
`range()` (so `for i in range(n)` costs n, paid when the range is built), or one call (function,
method, macro). Every `for` is rewritten at compile time to
iterate through a counting wrapper, `range` is replaced, and the sandbox's call hook counts too;
the clock is read at each step. Exceeding the budget is a `TemplateError` naming the field, the
channel and the reason: a template is refused at registration, and at send time the channel
fails for good. Rendering is CPU work, so async code renders through `render_async` /
`validate_template_async`, which run it on a small dedicated thread pool: an event loop that
serves HTTP requests or workflow tasks never runs a template.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ParamSpec, TypeVar

import jinja2
from jinja2 import StrictUndefined, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from tidings.models import Channel, RenderedMessage, TemplateContent, TemplateDefinition

MAX_RENDERED_BYTES = 256 * 1024  # per rendered field, as UTF-8
MAX_SMS_CHARS = 1600  # what SMS providers accept as one (concatenated) message
_MAX_REPEAT = MAX_RENDERED_BYTES  # bound on `"x" * n` before it is built
_MAX_POWER_BITS = 4096  # bound on `a ** b` before it is computed
MAX_RENDER_STEPS = 100_000  # loop iterations + range() elements + calls, per channel
MAX_RENDER_SECONDS = 0.5  # wall time per channel
_RENDER_THREADS = 4
_LOOP_FILTER = "tidings_budgeted"  # a filter, not a global: template data cannot shadow it

FIELDS = ("subject", "text", "html", "push_title", "push_body", "sms")


class TemplateError(ValueError):
    """A template that cannot be compiled or rendered; `field` says where, `reason` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class _BudgetExceeded(Exception):
    """Raised from inside a render; `render` turns it into a TemplateError naming the channel."""


class _Budget:
    def __init__(self) -> None:
        self.steps = 0
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS

    def spend(self, steps: int = 1) -> None:
        self.steps += steps
        if self.steps > MAX_RENDER_STEPS:
            raise _BudgetExceeded(f"more than {MAX_RENDER_STEPS} loop steps or calls")
        if time.monotonic() > self.deadline:
            raise _BudgetExceeded(f"took more than {MAX_RENDER_SECONDS} s")


# The budget of the render running in this thread (or task); None outside `render`, where
# nothing user-written runs (compiling only parses).
_budget: ContextVar[_Budget | None] = ContextVar("tidings_render_budget", default=None)


def _spend(steps: int = 1) -> None:
    budget = _budget.get()
    if budget is None:
        raise _BudgetExceeded("rendered outside a budget")  # a bug here, never the template's
    budget.spend(steps)


def _budgeted(iterable: Iterable[Any]) -> Iterator[Any]:
    # A range was paid for when `range()` built it; its iterations only check the clock.
    cost = 0 if isinstance(iterable, range) else 1
    for item in iterable:
        _spend(cost)
        yield item


def _budgeted_range(*args: int) -> range:
    values = range(*args)
    _spend(len(values))  # charged up front: `range(10**5) | sum` costs as much as a loop
    return values


@dataclass(frozen=True)
class _Slot:
    name: str  # subject, text or html in RenderedMessage
    fields: tuple[str, ...]  # TemplateContent fields to try, in order
    required: bool
    single_line: bool = False


_SLOTS: dict[Channel, tuple[_Slot, ...]] = {
    Channel.EMAIL: (
        _Slot("subject", ("subject",), required=True, single_line=True),
        _Slot("text", ("text",), required=True),
        _Slot("html", ("html",), required=False),
    ),
    Channel.PUSH: (
        _Slot("subject", ("push_title", "subject"), required=False, single_line=True),
        _Slot("text", ("push_body", "text"), required=True),
    ),
    Channel.SMS: (_Slot("text", ("sms", "text"), required=True),),
    Channel.IN_APP: (
        _Slot("subject", ("subject",), required=True, single_line=True),
        _Slot("text", ("text",), required=True),
    ),
    Channel.WEBHOOK: (
        _Slot("subject", ("subject",), required=False, single_line=True),
        _Slot("text", ("text",), required=True),
    ),
    Channel.SLACK: (
        _Slot("subject", ("subject",), required=False, single_line=True),
        _Slot("text", ("text",), required=True),
    ),
}


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus bounds on `*` and `**` so that `{{ "x" * 10**10 }}` is refused
    before it allocates instead of after, and the render budget on loops, ranges and calls."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals["range"] = _budgeted_range
        self.filters[_LOOP_FILTER] = _budgeted

    def call(
        self,
        __context: jinja2.runtime.Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        _spend()  # macros recursing without a loop are stopped here
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(
        self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any
    ) -> Any:
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(count, int)
                    and len(seq) * count > _MAX_REPEAT
                ):
                    raise SecurityError(f"repetition would build more than {_MAX_REPEAT} items")
            return left * right
        if (
            operator == "**"
            and isinstance(left, int)
            and isinstance(right, int)
            and abs(left) > 1
            and right * math.log2(abs(left)) > _MAX_POWER_BITS
        ):
            raise SecurityError(f"power would exceed {_MAX_POWER_BITS} bits")
        return super().call_binop(context, operator, left, right)


@lru_cache(maxsize=2)
def _environment(autoescape: bool) -> _Sandbox:
    return _Sandbox(undefined=StrictUndefined, autoescape=autoescape)


def _check_ast(tree: nodes.Template) -> None:
    # The sandbox refuses these at run time too, but only on the branch that runs; refusing them
    # here catches them in branches that sample data never reaches.
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        name = node.attr if isinstance(node, nodes.Getattr) else None
        if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            key = node.arg.value
            name = key if isinstance(key, str) and key.startswith("__") else None
        if name is not None and name.startswith("_"):
            raise SecurityError(f"line {node.lineno}: access to {name!r} is not allowed")


def _budget_loops(tree: nodes.Template) -> None:
    """Rewrite every `{% for x in items %}` as `{% for x in items | tidings_budgeted %}`."""
    for loop in tree.find_all(nodes.For):
        loop.iter = nodes.Filter(loop.iter, _LOOP_FILTER, [], [], None, None, lineno=loop.lineno)


@lru_cache(maxsize=4096)
def _compile(source: str, autoescape: bool) -> jinja2.Template:
    env = _environment(autoescape)
    tree = env.parse(source)
    _check_ast(tree)
    _budget_loops(tree)
    return env.from_string(tree)


def _compile_field(source: str, field: str, *, html: bool) -> jinja2.Template:
    try:
        return _compile(source, html)
    except jinja2.TemplateSyntaxError as e:
        raise TemplateError(field, f"syntax error on line {e.lineno}: {e.message}") from e
    except SecurityError as e:
        raise TemplateError(field, f"refused by the sandbox: {e}") from e


def _render_field(source: str, field: str, data: dict[str, Any], *, html: bool) -> str:
    template = _compile_field(source, field, html=html)
    parts: list[str] = []
    size = 0
    try:
        # Streamed so that a runaway loop stops at the bound instead of filling memory.
        for chunk in template.generate(data):
            size += len(chunk.encode())
            if size > MAX_RENDERED_BYTES:
                raise TemplateError(field, f"renders to more than {MAX_RENDERED_BYTES} bytes")
            parts.append(chunk)
    except (TemplateError, _BudgetExceeded):
        raise
    except SecurityError as e:
        raise TemplateError(field, f"refused by the sandbox: {e}") from e
    except jinja2.UndefinedError as e:
        raise TemplateError(field, f"undefined variable: {e.message}") from e
    except Exception as e:  # template code is user code: any failure is the template's
        raise TemplateError(field, f"render failed: {type(e).__name__}: {e}") from e
    return "".join(parts)


def _locale_key(template: TemplateDefinition, locale: str | None) -> str | None:
    if not locale or not template.locales:
        return None
    if locale in template.locales:
        return locale
    wanted = locale.replace("_", "-").lower()
    by_norm = {key.replace("_", "-").lower(): key for key in template.locales}
    language = wanted.split("-", 1)[0]
    return by_norm.get(wanted) or by_norm.get(language)


def _sources(
    template: TemplateDefinition, locale_key: str | None
) -> list[tuple[str, TemplateContent]]:
    layers = [("content", template.content)]
    if locale_key is not None:
        layers.insert(0, (f"locales.{locale_key}", template.locales[locale_key]))
    return layers


def _pick(
    layers: list[tuple[str, TemplateContent]], fields: Iterable[str]
) -> tuple[str, str] | None:
    fields = tuple(fields)
    for prefix, content in layers:
        for name in fields:
            source = getattr(content, name)
            if source is not None:
                return f"{prefix}.{name}", source
    return None


def render(
    template: TemplateDefinition,
    channel: Channel,
    data: dict[str, Any],
    *,
    locale: str | None = None,
) -> RenderedMessage:
    """Render what `channel` needs from `template` for `locale` ("fr-CA" falls back to "fr", then
    to the default content), within the render budget. Raises TemplateError naming the field and
    the reason. CPU-bound: from async code, use `render_async`."""
    token = _budget.set(_Budget())
    try:
        return _render(template, channel, data, locale)
    finally:
        _budget.reset(token)


def _render(
    template: TemplateDefinition, channel: Channel, data: dict[str, Any], locale: str | None
) -> RenderedMessage:
    layers = _sources(template, _locale_key(template, locale))
    out: dict[str, str | None] = {"subject": "", "text": "", "html": None}
    for slot in _SLOTS[channel]:
        picked = _pick(layers, slot.fields)
        if picked is None:
            if slot.required:
                raise TemplateError(
                    f"content.{slot.fields[0]}",
                    f"channel {channel} needs a {slot.name}: set {' or '.join(slot.fields)}",
                )
            continue
        field, source = picked
        try:
            value = _render_field(source, field, data, html=slot.name == "html")
        except _BudgetExceeded as e:
            raise TemplateError(
                field, f"exceeds the render budget of channel {channel.value}: {e}"
            ) from e
        if slot.single_line:
            value = " ".join(value.split())
        if channel is Channel.SMS and len(value) > MAX_SMS_CHARS:
            raise TemplateError(
                field, f"renders to {len(value)} characters; SMS allows at most {MAX_SMS_CHARS}"
            )
        out[slot.name] = value
    return RenderedMessage(
        channel=channel, subject=out["subject"] or "", text=out["text"] or "", html=out["html"]
    )


def _all_fields(template: TemplateDefinition) -> Iterable[tuple[str, str, bool]]:
    for prefix, content in [("content", template.content)] + [
        (f"locales.{key}", c) for key, c in template.locales.items()
    ]:
        for name in FIELDS:
            source = getattr(content, name)
            if source is not None:
                yield f"{prefix}.{name}", source, name == "html"


def validate_template(template: TemplateDefinition) -> None:
    """Compile every field, then render every channel the template supports for the default
    content and every locale against `sample_data`. Raises TemplateError on the first problem, so
    a broken template is refused when it is registered rather than when it is sent."""
    for field, source, html in _all_fields(template):
        _compile_field(source, field, html=html)
    for locale in [None, *template.locales]:
        for channel in template.channels:
            render(template, channel, template.sample_data, locale=locale)


def required_variables(template: TemplateDefinition) -> set[str]:
    """Top-level names the template reads from its data, across all fields and locales."""
    names: set[str] = set()
    for field, source, html in _all_fields(template):
        env = _environment(html)
        try:
            tree = env.parse(source)
        except jinja2.TemplateSyntaxError as e:
            raise TemplateError(field, f"syntax error on line {e.lineno}: {e.message}") from e
        names |= meta.find_undeclared_variables(tree)
    return names - set(_environment(False).globals)


P = ParamSpec("P")
R = TypeVar("R")


@lru_cache(maxsize=1)
def _executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=_RENDER_THREADS, thread_name_prefix="tidings-render")


async def _off_loop(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    # A dedicated pool, not asyncio.to_thread: a burst of renders cannot starve the default
    # executor that DNS lookups and file I/O share, and at most _RENDER_THREADS run at once.
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor(), functools.partial(fn, *args, **kwargs))


async def render_async(
    template: TemplateDefinition,
    channel: Channel,
    data: dict[str, Any],
    *,
    locale: str | None = None,
) -> RenderedMessage:
    """`render`, on the render threads, so the calling event loop keeps serving."""
    return await _off_loop(render, template, channel, data, locale=locale)


async def validate_template_async(template: TemplateDefinition) -> None:
    """`validate_template`, on the render threads."""
    await _off_loop(validate_template, template)
