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

The render budget (`tidings.render_limits`). Rendering one channel (all its fields) may take at
most `MAX_RENDER_STEPS` (100,000) steps and `MAX_RENDER_SECONDS` (0.5 s); each field renders to at
most `MAX_RENDERED_BYTES` (256 KiB). A step is one iteration of a `{% for %}` loop, one element
of a `range()` (so `for i in range(n)` costs n, paid when the range is built), or one call
(function, method, macro). Every `for` is rewritten at compile time to iterate through a counting
wrapper, `range` is replaced, and the sandbox's call hook counts too; the clock is read at each
step. One operation may build at most `MAX_GROWTH` (256 Ki) characters: repetition, padding
(`center`, `indent`...), format widths and `replace` are checked before they run, and `lipsum`
is gone. Exceeding any of it is a `TemplateError` naming the field and the reason (the channel
too, for the budget): a template is refused at registration, and at send time the channel fails
for good. Rendering is CPU work, so async code renders through `render_async` /
`validate_template_async`, which run it on a small dedicated thread pool: an event loop that
serves HTTP requests or workflow tasks never runs a template.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, ParamSpec, TypeVar

import jinja2
from jinja2 import StrictUndefined, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

from tidings import personalise
from tidings import render_limits as limits
from tidings.models import Channel, RenderedMessage, TemplateContent, TemplateDefinition, User
from tidings.tracking import mark_untracked, strip_marks

MAX_RENDERED_BYTES = 256 * 1024  # per rendered field, as UTF-8
MAX_SMS_CHARS = 1600  # what SMS providers accept as one (concatenated) message
_RENDER_THREADS = 4
_LOOP_FILTER = "tidings_budgeted"  # a filter, not a global: template data cannot shadow it
_CONCAT_FILTER = "tidings_concat"

UNSUBSCRIBE_VARIABLE = "unsubscribe_url"

FIELDS = ("subject", "text", "html", "push_title", "push_body", "sms")


class TemplateError(ValueError):
    """A template that cannot be compiled or rendered; `field` says where, `reason` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    def of_template(self, template_id: str) -> str:
        """The reason as a caller's data is refused with it, naming the template and where."""
        return f"{self.reason} (template {template_id}, {self.field})"


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


class _Undefined(StrictUndefined):
    """StrictUndefined that names the whole path of a missing key of the user's profile."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        path = personalise.path_of(self._undefined_obj)
        if path is not None and self._undefined_hint is None:
            return f"{path}.{self._undefined_name} is undefined"
        return str(super()._undefined_message)


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus the render budget on loops, ranges and calls, and bounds on
    the operations that allocate in one go (`tidings.render_limits`), checked before they run."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals["range"] = limits.budgeted_range
        del self.globals["lipsum"]  # lipsum(n=10**6) is seconds of work in one call
        self.filters[_LOOP_FILTER] = limits.budgeted
        self.filters[_CONCAT_FILTER] = limits.bounded_concat
        self.filters.update(limits.limited_filters(self.filters))
        # `{{ url | untracked }}`: the link is sent as written even where tracking is on.
        self.filters["untracked"] = _untracked
        # Filled in per recipient at send time (tidings.unsubscribe); "" when rendering for
        # checks or previews, and for CRITICAL notifications, which cannot be unsubscribed from.
        self.globals[UNSUBSCRIBE_VARIABLE] = ""
        # Locale-aware formatting, as filters and as functions (tidings.personalise).
        self.filters.update(personalise.HELPERS)
        self.globals.update(personalise.HELPERS)

    def call(
        self,
        __context: jinja2.runtime.Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        limits.spend()  # macros recursing without a loop are stopped here
        limits.check_call(__obj, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        # `"{:>{w}}".format(...)` reaches here, not `call`, with the format string bound.
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt: str = value.__self__
        format_: Callable[..., str] = wrapped

        def checked(*args: Any, **kwargs: Any) -> str:
            limits.check_format(fmt, args, kwargs)
            return format_(*args, **kwargs)

        return checked

    def call_binop(
        self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any
    ) -> Any:
        limits.check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)


def _untracked(value: Any) -> Any:
    if isinstance(value, Markup):
        return Markup(mark_untracked(str(value)))
    return mark_untracked(str(value))


@lru_cache(maxsize=2)
def _environment(autoescape: bool) -> _Sandbox:
    # finalize sees every {{ value }} before it becomes text.
    return _Sandbox(undefined=_Undefined, autoescape=autoescape, finalize=limits.check_size)


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


class _Instrument(NodeTransformer):
    """Rewrites `{% for x in items %}` as `{% for x in items | tidings_budgeted %}`, and `a ~ b`
    as `[a, b] | tidings_concat` (a join the sandbox has no hook for, bounded in size)."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, _LOOP_FILTER, [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        parts = nodes.List(node.nodes, lineno=node.lineno)
        return nodes.Filter(parts, _CONCAT_FILTER, [], [], None, None, lineno=node.lineno)


@lru_cache(maxsize=4096)
def _compile(source: str, autoescape: bool) -> jinja2.Template:
    env = _environment(autoescape)
    tree = env.parse(source)
    _check_ast(tree)
    _Instrument().visit(tree)
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
    except (TemplateError, limits.BudgetExceeded):
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
    keep_marks: bool = False,
    user: User | None = None,
    at: datetime | None = None,
) -> RenderedMessage:
    """Render what `channel` needs from `template` for `locale` ("fr-CA" falls back to "fr", then
    to the default content), within the render budget. Raises TemplateError naming the field and
    the reason. CPU-bound: from async code, use `render_async`.

    URLs passed through the `untracked` filter come out marked when `keep_marks` is True (the
    send path, whose link tracking reads and removes the marks: `tidings.tracking`), and plain
    otherwise.

    The template sees `data` over the personal names of `tidings.personalise` for `user` at the
    instant `at` (the send time; without them, the sample user on a Monday morning)."""
    profile = user or personalise.SAMPLE_USER
    names = personalise.context(data, user=user, at=at, locale=locale)
    # Formatting first: it loads the locale's data, which is not the template's cost.
    with personalise.formatting(locale or profile.locale, profile.timezone), limits.budget():
        message = _render(template, channel, names, locale)
    return message if keep_marks else tracking_free(message)


def tracking_free(message: RenderedMessage) -> RenderedMessage:
    return message.model_copy(
        update={
            "subject": strip_marks(message.subject),
            "text": strip_marks(message.text),
            "html": None if message.html is None else strip_marks(message.html),
        }
    )


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
        except limits.BudgetExceeded as e:
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
    return names - set(_environment(False).globals) - personalise.NAMES


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
    keep_marks: bool = False,
    user: User | None = None,
    at: datetime | None = None,
) -> RenderedMessage:
    """`render`, on the render threads, so the calling event loop keeps serving."""
    return await _off_loop(
        render, template, channel, data, locale=locale, keep_marks=keep_marks, user=user, at=at
    )


async def validate_template_async(template: TemplateDefinition) -> None:
    """`validate_template`, on the render threads."""
    await _off_loop(validate_template, template)
