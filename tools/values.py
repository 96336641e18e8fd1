"""Cheaper construction of the frozen dataclasses built on every call, turn or event.

A frozen dataclass's generated ``__init__`` sets each field through ``object.__setattr__``
(frozen classes refuse plain assignment): about 2,000 instructions a field, 16,600 for a
:class:`~tools.calls.ToolCallResult`. Both helpers write the instance's ``__dict__`` instead;
everything else (frozen assignment, equality, hashing, repr, ``dataclasses.replace``,
pickling) stays the dataclass's:

* :func:`direct_init` gives a class an ``__init__`` with the same parameters (its callers
  are unchanged);
* :func:`frozen_instance` builds one instance from a dict of every field (the emulator's
  builders, which hold their values in dicts already).
"""

from __future__ import annotations

import dataclasses
from types import FunctionType
from typing import Any, TypeVar

T = TypeVar("T")
_new_instance = object.__new__
_set_attribute = object.__setattr__


def direct_init(cls: type[T]) -> type[T]:
    """Replace the ``__init__`` of the frozen dataclass ``cls`` by one writing ``__dict__``.

    Only for what the generated one would do with plain values: fields with a default or none,
    no ``default_factory``, ``kw_only``, ``InitVar`` or ``__post_init__``, and no ``__slots__``.

    Raises:
        TypeError: ``cls`` is not such a dataclass.
    """
    params = dataclasses.fields(cls)  # type: ignore[arg-type]  # TypeError if not a dataclass
    if "__slots__" in vars(cls) or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: direct_init needs a __dict__ and no __post_init__")
    defaults: dict[str, object] = {}
    signature, body = ["self"], []
    for param in params:
        if not param.init or param.kw_only or param.default_factory is not dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{param.name}: direct_init takes plain fields only")
        if param.default is dataclasses.MISSING:
            signature.append(param.name)
        else:
            defaults[f"_default_{param.name}"] = param.default
            signature.append(f"{param.name}=_default_{param.name}")
        body.append(f"    fields[{param.name!r}] = {param.name}")
    source = f"def __init__({', '.join(signature)}):\n    fields = self.__dict__\n"
    namespace: dict[str, object] = dict(defaults)
    exec(source + "\n".join(body) + "\n", namespace)  # generated code, as dataclasses does
    init = namespace["__init__"]
    assert isinstance(init, FunctionType)
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = f"Initialise a {cls.__name__} (its fields written directly)."
    setattr(cls, "__init__", init)  # noqa: B010  # mypy refuses assigning a method
    return cls


def frozen_instance(cls: type[T], values: dict[str, Any]) -> T:
    """An instance of the frozen dataclass ``cls`` from the values of all of its fields.

    Equal to ``cls(**values)`` without a call of ``__init__``; ``values`` must name every
    field and becomes the instance's ``__dict__``.
    """
    instance = _new_instance(cls)
    _set_attribute(instance, "__dict__", values)
    return instance
