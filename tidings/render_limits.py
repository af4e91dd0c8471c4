"""What one template render may cost: the render budget (steps and time) and the bounds on single
operations that would allocate before any budget is checked. Used by `tidings.rendering`'s
sandbox; the figures are documented there.

A step is one loop iteration, one element of a `range()`, or one call. The clock is read at each
step, so a render stops within one step of its deadline. What a step cannot catch is one C-level
operation that allocates gigabytes at once (`"x".center(10**10)`, `"%*d" % (10**10, 1)`,
`s.replace("x", long)`), nor a string doubled by `~` or `+` in a short loop: those are refused
by width and growth checks on repetition, powers, padding, formatting, replacement and joins, and
values are size-checked before they become text (output, `join`, `string`, `tojson`...).

These bound the operations we know to grow; they are not a memory sandbox. Running renders in a
separate process with an address-space limit would be the complete answer if another way to grow
a value turns up.
"""

from __future__ import annotations

import functools
import math
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from jinja2 import pass_eval_context
from jinja2.exceptions import SecurityError
from jinja2.nodes import EvalContext
from jinja2.runtime import markup_join, str_join

MAX_RENDER_STEPS = 100_000  # loop iterations + range() elements + calls, per channel
MAX_RENDER_SECONDS = 0.5  # wall time per channel
MAX_GROWTH = 256 * 1024  # characters one operation may build: repetition, padding, replace
MAX_POWER_BITS = 4096  # bound on `a ** b` before it is computed

_PADDING = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
# A %-format conversion's width and precision (`%(name)-*.*d`), or a literal `%%`.
_PERCENT_SPEC = re.compile(r"%%|%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")


class BudgetExceeded(Exception):
    """Raised from inside a render; the renderer turns it into a TemplateError."""


class _Budget:
    def __init__(self) -> None:
        self.steps = 0
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS

    def spend(self, steps: int) -> None:
        self.steps += steps
        if self.steps > MAX_RENDER_STEPS:
            raise BudgetExceeded(f"more than {MAX_RENDER_STEPS} loop steps or calls")
        if time.monotonic() > self.deadline:
            raise BudgetExceeded(f"took more than {MAX_RENDER_SECONDS} s")


# The budget of the render running in this thread; None outside one (compiling only parses).
_current: ContextVar[_Budget | None] = ContextVar("tidings_render_budget", default=None)


@contextmanager
def budget() -> Iterator[None]:
    """A fresh budget for everything rendered inside the block."""
    token = _current.set(_Budget())
    try:
        yield
    finally:
        _current.reset(token)


def spend(steps: int = 1) -> None:
    current = _current.get()
    if current is None:
        raise BudgetExceeded("rendered outside a budget")  # a bug here, never the template's
    current.spend(steps)


def budgeted(iterable: Iterable[Any]) -> Iterator[Any]:
    """What every `{% for %}` iterates through (the renderer rewrites loops to use it)."""
    # A range was paid for when `range()` built it; its iterations only check the clock.
    cost = 0 if isinstance(iterable, range) else 1
    for item in iterable:
        spend(cost)
        yield item


def budgeted_range(*args: int) -> range:
    values = range(*args)
    spend(len(values))  # charged up front: `range(10**5) | sum` costs as much as a loop
    return values


# --- single operations --------------------------------------------------------------------------


def check_size(value: Any, what: str = "output") -> Any:
    """Refuse a value whose text would be over MAX_GROWTH characters, before it is turned into
    text (`str` of a list of 200,000 references to one long string is gigabytes). Walks at most
    about MAX_GROWTH items, whatever the value's size; returns the value unchanged."""
    room = MAX_GROWTH
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            room -= len(item)
        elif isinstance(item, list | tuple | set | frozenset | dict):
            room -= len(item)
            if room >= 0:
                stack.extend(item.items() if isinstance(item, dict) else item)
        else:
            room -= 1
        if room < 0:
            raise SecurityError(f"{what} would be more than {MAX_GROWTH} characters")
    return value


def _big(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > MAX_GROWTH


def _check_widths(what: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    if any(_big(v) for v in [*args, *kwargs.values()]):
        raise SecurityError(f"{what}: a width over {MAX_GROWTH} is not allowed")


def _check_replace(value: str, old: Any, new: Any, count: Any = None) -> None:
    if not (isinstance(old, str) and isinstance(new, str)) or len(new) <= len(old):
        return
    times = value.count(old) if old else len(value) + 1
    if isinstance(count, int) and count >= 0:
        times = min(times, count)
    if len(value) + times * (len(new) - len(old)) > MAX_GROWTH:
        raise SecurityError(f"replace would build more than {MAX_GROWTH} characters")


def check_format(fmt: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    """Refuse widths and precisions over MAX_GROWTH in a %- or {}-format string, including ones
    taken from the arguments (`%*d`, `{:{w}}`)."""
    from_args = False
    for match in _PERCENT_SPEC.finditer(fmt):
        for part in match.groups():
            from_args |= part == "*"
            if part and part.isdigit() and int(part) > MAX_GROWTH:
                raise SecurityError(f"format width {part} is over {MAX_GROWTH}")
    try:
        specs = [spec for _, _, spec, _ in string.Formatter().parse(fmt) if spec]
    except ValueError:
        specs = []  # not a {}-format string; formatting it reports the problem itself
    for spec in specs:
        from_args |= "{" in spec
        for digits in re.findall(r"\d+", spec):
            if int(digits) > MAX_GROWTH:
                raise SecurityError(f"format width {digits} is over {MAX_GROWTH}")
    if from_args:
        _check_widths("format", args, kwargs)
    check_size([list(args), dict(kwargs)], "format")


def check_call(obj: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    """Bounds on string methods that allocate in one go."""
    owner = getattr(obj, "__self__", None)
    if not isinstance(owner, str):
        return
    name = getattr(obj, "__name__", "")
    if name in _PADDING:
        _check_widths(name, args, kwargs)
    elif name == "replace" and len(args) >= 2:
        _check_replace(owner, *args[:3])


def check_binop(operator: str, left: Any, right: Any) -> None:
    if operator == "*":
        for seq, count in ((left, right), (right, left)):
            sized = isinstance(seq, str | list | tuple) and isinstance(count, int)
            if sized and len(seq) * count > MAX_GROWTH:
                raise SecurityError(f"repetition would build more than {MAX_GROWTH} items")
    elif operator == "**":
        if (
            isinstance(left, int)
            and isinstance(right, int)
            and abs(left) > 1
            and right * math.log2(abs(left)) > MAX_POWER_BITS
        ):
            raise SecurityError(f"power would exceed {MAX_POWER_BITS} bits")
    elif operator == "+":
        sized = isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple)
        if sized and len(left) + len(right) > MAX_GROWTH:
            raise SecurityError(f"+ would build more than {MAX_GROWTH} items")
    elif operator == "%" and isinstance(left, str):
        values = right if isinstance(right, tuple) else (right,)
        check_format(left, values, right if isinstance(right, Mapping) else {})


@pass_eval_context
def bounded_concat(eval_ctx: EvalContext, parts: list[Any]) -> str:
    """`a ~ b ~ c`, as Jinja joins it, refused when it builds more than MAX_GROWTH characters
    (checked before the parts are turned into text)."""
    check_size(parts, "~")
    joined: str = (markup_join if eval_ctx.autoescape else str_join)(parts)
    return joined


def _sized(name: str, filter_: Callable[..., Any]) -> Callable[..., Any]:
    """`filter_` with its input checked by `check_size` first (the value is the first argument
    after the context or environment that Jinja passes to some filters)."""
    skip = 1 if hasattr(filter_, "jinja_pass_arg") else 0

    @functools.wraps(filter_)
    def sized(*args: Any, **kwargs: Any) -> Any:
        check_size(args[skip], name)
        return filter_(*args, **kwargs)

    return sized


def limited_filters(filters: Mapping[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """Replacements for the built-in filters that pad, replace or format."""
    center, indent, slice_, replace, format_ = (
        filters["center"],
        filters["indent"],
        filters["slice"],
        filters["replace"],
        filters["format"],
    )
    sized = {
        name: _sized(name, filters[name]) for name in ("join", "sum", "string", "tojson", "pprint")
    }

    @functools.wraps(center)
    def limited_center(value: Any, width: int = 80) -> Any:
        _check_widths("center", (width,), {})
        return center(value, width)

    @functools.wraps(indent)
    def limited_indent(value: Any, width: Any = 4, *args: Any, **kwargs: Any) -> Any:
        _check_widths("indent", (width,), {})
        return indent(value, width, *args, **kwargs)

    @functools.wraps(slice_)
    def limited_slice(value: Any, slices: int, *args: Any, **kwargs: Any) -> Any:
        _check_widths("slice", (slices,), {})
        return slice_(value, slices, *args, **kwargs)

    @pass_eval_context
    def limited_replace(
        eval_ctx: EvalContext, value: Any, old: Any, new: Any, count: Any = None
    ) -> Any:
        check_size([value, old, new], "replace")  # each becomes text first
        _check_replace(str(value), str(old), str(new), count)
        return replace(eval_ctx, value, old, new, count)

    @functools.wraps(format_)
    def limited_format(value: Any, *args: Any, **kwargs: Any) -> Any:
        check_format(str(value), args, kwargs)
        return format_(value, *args, **kwargs)

    return {
        **sized,
        "center": limited_center,
        "indent": limited_indent,
        "slice": limited_slice,
        "replace": limited_replace,
        "format": limited_format,
    }
