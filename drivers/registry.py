"""The backends :func:`drivers.connect` can open, looked up by the form of the URI.

A backend is a factory ``factory(uri, **options) -> Device`` (an *unopened* device; ``connect``
opens it) registered with the URI forms it accepts, the options it takes and a help line per form.
The in-process simulator (``drivers.sim``) and the VISA instrument (``drivers.visa``) register
themselves here; so does any other backend, in this package or outside it::

    import drivers

    @drivers.backend("mybench", scheme="mybench", options=("timeout_s",),
                     forms=[("mybench://HOST", "the lab's bench controller at HOST")])
    def _open_mybench(uri: str, **options) -> drivers.Device:
        return MyBenchDevice(uri, **options)

A URI matches a backend by its ``scheme`` (the URI is the scheme itself, or starts with
``scheme:`` or ``scheme?``) or by its ``pattern`` (a regular expression matched at the start, as
for VISA resource strings). Backends are tried in registration order; the first match opens it.
The "accepted forms" message of a bad URI lists every registered form.

Outside packages register through the entry-point group :data:`ENTRY_POINT_GROUP`: the entry point
names a module (or an object in it) whose import runs its ``@drivers.backend(...)`` decorators; a
loaded object that is a :class:`Backend` is registered as it is. Entry points are loaded once, the
first time a URI is resolved or the forms are listed.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import Device

#: entry-point group through which installed packages add backends
ENTRY_POINT_GROUP = "opu_stack.drivers"

Factory = Callable[..., "Device"]


@dataclass(frozen=True)
class Backend:
    """One way to reach a device.

    ``name``: short identifier (shown in errors); ``factory(uri, **options)``: returns an unopened
    :class:`~drivers.base.Device`; ``scheme`` / ``pattern``: which URIs it takes (at least one);
    ``options``: the keyword options ``connect`` may pass on (None: anything, the factory checks);
    ``forms``: (URI form, help line) pairs for the "accepted forms" message and docs.
    """

    name: str
    factory: Factory
    scheme: str | None = None
    pattern: re.Pattern[str] | None = None
    options: tuple[str, ...] | None = ()
    forms: tuple[tuple[str, str], ...] = ()

    def matches(self, uri: str) -> bool:
        if self.scheme is not None and (uri == self.scheme or uri.startswith((self.scheme + ":",
                                                                              self.scheme + "?"))):
            return True
        return self.pattern is not None and self.pattern.match(uri) is not None

    def create(self, uri: str, options: dict[str, Any]) -> Device:
        """The unopened device for ``uri``; unknown options raise ``TypeError`` naming the allowed."""
        if self.options is not None:
            unknown = sorted(set(options) - set(self.options))
            if unknown:
                allowed = ", ".join(self.options) or "none"
                raise TypeError(f"unknown option(s) {', '.join(unknown)} for the {self.name!r} backend "
                                f"({uri!r}); its options are: {allowed}")
        return self.factory(uri, **options)


_BACKENDS: dict[str, Backend] = {}
_entry_points_loaded = False


def register_backend(name: str, factory: Factory, *, scheme: str | None = None,
                     pattern: str | re.Pattern[str] | None = None,
                     options: Iterable[str] | None = (),
                     forms: Sequence[tuple[str, str]] = (), replace: bool = False) -> Backend:
    """Register ``factory`` as backend ``name`` (see the module docstring); returns the :class:`Backend`.

    Raises ``ValueError`` if ``name`` is taken (unless ``replace``) or neither ``scheme`` nor
    ``pattern`` is given.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"backend name must be a non-empty string, got {name!r}")
    if scheme is None and pattern is None:
        raise ValueError(f"backend {name!r} needs a scheme or a pattern to match URIs")
    if name in _BACKENDS and not replace:
        raise ValueError(f"a backend named {name!r} is already registered; pass replace=True to replace it")
    compiled = re.compile(pattern) if isinstance(pattern, str) else pattern
    default_form = scheme if scheme is not None else compiled.pattern if compiled is not None else name
    shown = tuple((str(f), str(h)) for f, h in forms) or ((default_form, name),)
    b = Backend(name, factory, scheme, compiled, None if options is None else tuple(options), shown)
    _BACKENDS[name] = b
    return b


def backend(name: str, *, scheme: str | None = None, pattern: str | re.Pattern[str] | None = None,
            options: Iterable[str] | None = (), forms: Sequence[tuple[str, str]] = (),
            replace: bool = False) -> Callable[[Factory], Factory]:
    """Decorator form of :func:`register_backend`; returns the factory unchanged."""

    def register(factory: Factory) -> Factory:
        register_backend(name, factory, scheme=scheme, pattern=pattern, options=options, forms=forms,
                         replace=replace)
        return factory

    return register


def unregister_backend(name: str) -> None:
    """Remove backend ``name`` (``KeyError`` if there is none)."""
    del _BACKENDS[name]


def backends() -> tuple[Backend, ...]:
    """The registered backends, in the order URIs are matched against them."""
    _load_entry_points()
    return tuple(_BACKENDS.values())


def find_backend(uri: str) -> Backend | None:
    """The first registered backend whose scheme or pattern matches ``uri`` (None: no match)."""
    return next((b for b in backends() if b.matches(uri)), None)


def accepted_forms() -> str:
    """The "accepted forms" text: one line per registered URI form, with its help line."""
    rows = [(form, text) for b in backends() for form, text in b.forms]
    width = max((len(f) for f, _ in rows), default=0)
    return "\n".join(f"  {form.ljust(width)}  {text}" for form, text in rows)


def unknown_uri_message(uri: object) -> str:
    return f"unknown device URI {uri!r}; accepted forms:\n{accepted_forms()}"


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            if isinstance(obj, Backend) and obj.name not in _BACKENDS:
                _BACKENDS[obj.name] = obj
        except Exception as exc:  # one broken plugin must not take the other backends down
            warnings.warn(f"drivers backend entry point {ep.name!r} ({ep.value}) failed to load: "
                          f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=3)


__all__ = [
    "ENTRY_POINT_GROUP",
    "Backend",
    "accepted_forms",
    "backend",
    "backends",
    "find_backend",
    "register_backend",
    "unknown_uri_message",
    "unregister_backend",
]
