"""Registration: decorators, names, duplicates, lookup, the public exports."""

import asyncio
import functools

import pytest

import tools
from tools import Tool, ToolRegistrationError, ToolRegistry, default_registry, tool


def test_all_is_exactly_the_public_api() -> None:
    """tools.__all__ is the sorted list of the public names, each importable."""
    assert tools.__all__ == [
        "Tool",
        "ToolCall",
        "ToolCallResult",
        "ToolContext",
        "ToolDispatcher",
        "ToolError",
        "ToolRegistrationError",
        "ToolRegistry",
        "default_registry",
        "tool",
    ]
    assert all(hasattr(tools, name) for name in tools.__all__)


def test_decorator_forms_return_the_function() -> None:
    """@registry.tool and @registry.tool(...) register and return the function unchanged."""
    registry = ToolRegistry()

    @registry.tool
    def plain(x: int) -> int:
        """Plain."""
        return x

    @registry.tool(name="renamed", description="Custom.", timeout_s=2.5, strict=True)
    async def coro(x: int) -> int:
        return x

    assert plain(3) == 3
    assert asyncio.iscoroutinefunction(coro)
    assert registry.names() == ["plain", "renamed"]
    renamed = registry.get("renamed")
    assert renamed is not None
    assert (renamed.description, renamed.timeout_s, renamed.strict, renamed.is_async) == (
        "Custom.",
        2.5,
        True,
        True,
    )
    plain_tool = registry.get("plain")
    assert plain_tool is not None and not plain_tool.is_async


def test_register_returns_tool_and_container_protocol() -> None:
    """register() returns the Tool; in, len, iter and get work on names."""
    registry = ToolRegistry()

    def a() -> None:
        """A."""

    built = registry.register(a, name="alpha")
    assert isinstance(built, Tool)
    assert "alpha" in registry and "a" not in registry
    assert len(registry) == 1
    assert list(registry) == [built]
    assert registry.get("missing") is None


def test_module_level_tool_uses_default_registry() -> None:
    """@tool registers on default_registry, with and without arguments."""

    @tool
    def registry_test_default_one() -> str:
        """One."""
        return "1"

    @tool(name="registry_test_default_two")
    def two() -> str:
        return "2"

    assert "registry_test_default_one" in default_registry
    assert "registry_test_default_two" in default_registry


def test_duplicate_name_is_an_error() -> None:
    """Registering a second tool under a taken name raises ToolRegistrationError."""
    registry = ToolRegistry()

    def f() -> None:
        """F."""

    registry.register(f)
    with pytest.raises(ToolRegistrationError, match="already registered"):
        registry.register(f)
    assert len(registry) == 1


@pytest.mark.parametrize("name", ["", "has space", "dot.name", "x" * 65, "ünï", "a/b"])
def test_invalid_names_are_rejected(name: str) -> None:
    """Names outside [a-zA-Z0-9_-]{1,64} are rejected with the rule in the message."""

    def f() -> None:
        """F."""

    with pytest.raises(ToolRegistrationError, match="1-64 characters"):
        ToolRegistry().register(f, name=name)


def test_longest_valid_name_is_accepted() -> None:
    """A 64-character name made of allowed characters is fine."""

    def f() -> None:
        """F."""

    name = "A-z_0" + "x" * 59
    assert ToolRegistry().register(f, name=name).name == name


def test_lambda_needs_a_name() -> None:
    """A lambda has no valid name of its own; name= fixes it."""
    registry = ToolRegistry()
    with pytest.raises(ToolRegistrationError):
        registry.register(lambda: 1)
    assert registry.register(lambda: 1, name="one").name == "one"


def test_unsupported_signatures() -> None:
    """*args, generators, bad timeouts and unknown types fail at registration."""

    def star(*values: int) -> None:
        """Star."""

    def gen() -> object:
        yield 1

    class Opaque:
        pass

    def opaque(o: Opaque) -> None:
        """Opaque."""

    def f() -> None:
        """F."""

    registry = ToolRegistry()
    with pytest.raises(ToolRegistrationError, match=r"\*values"):
        registry.register(star)
    with pytest.raises(ToolRegistrationError, match="generator"):
        registry.register(gen)
    with pytest.raises(ToolRegistrationError, match="unsupported parameter type"):
        registry.register(opaque)
    with pytest.raises(ToolRegistrationError, match="timeout_s"):
        registry.register(f, timeout_s=0)
    assert len(registry) == 0


def test_partial_and_async_callable_object() -> None:
    """functools.partial and objects with an async __call__ register (with a name)."""

    def scale(x: int, factor: int) -> int:
        """Scale."""
        return x * factor

    class Doubler:
        async def __call__(self, x: int) -> int:
            return 2 * x

    registry = ToolRegistry()
    part = registry.register(functools.partial(scale, factor=3), name="triple")
    obj = registry.register(Doubler(), name="double")
    assert part.parameters["required"] == ["x"]
    assert obj.is_async and not part.is_async
