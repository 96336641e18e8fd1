"""A cheaper ``__init__`` for the frozen dataclasses built on every call and every turn.

A frozen dataclass's generated ``__init__`` sets each field through ``object.__setattr__``
(frozen classes refuse plain assignment): about 2,000 instructions a field, 16,600 for a
:class:`~tools.calls.ToolCallResult`. :func:`direct_init` gives the class an ``__init__`` with
the same parameters that writes the instance's ``__dict__`` instead; everything else (frozen
assignment, equality, hashing, repr, ``dataclasses.replace``, pickling) stays the dataclass's.
"""

from __future__ import annotations

import dataclasses
from types import FunctionType
from typing import TypeVar

T = TypeVar("T")


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
