"""Signature + docstring -> pydantic arguments model, JSON schema, argument validation."""

from __future__ import annotations

import copy
import functools
import inspect
import json
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from tools.context import ToolContext
from tools.docstrings import parse_docstring
from tools.errors import ArgumentIssue, ToolArgumentsError, ToolRegistrationError

_MAX_ISSUES = 20


@dataclass(frozen=True)
class _Param:
    name: str
    field: str | None  # None: the ToolContext parameter
    positional_only: bool


@dataclass(frozen=True)
class FunctionSchema:
    """Everything the dispatcher needs to validate and call one function.

    Attributes:
        description: description from the docstring (summary and extended text).
        parameters: JSON schema of the arguments object.
        model: pydantic model validating the arguments.
        params: the function's parameters in order (the context parameter has no field).
        context_param: name of the ToolContext parameter, if any.
        var_keyword: whether the function takes ``**kwargs`` (extra arguments go there).
    """

    description: str
    parameters: dict[str, Any]
    model: type[BaseModel]
    params: tuple[_Param, ...]
    context_param: str | None
    var_keyword: bool = False

    def validate(self, raw: str) -> BaseModel:
        """Parse raw JSON arguments and validate them.

        Args:
            raw: the JSON text the model sent (empty text means no arguments).

        Returns:
            The validated arguments model.

        Raises:
            ToolArgumentsError: invalid JSON (``invalid_json``) or schema violations
                (``invalid_arguments``, with field-level details).
        """
        try:
            # Fast path: one pass in pydantic-core; failures are re-examined below so that
            # bad JSON and schema violations get distinct, precise errors.
            # The model's validator itself, without model_validate_json's Python frame.
            validate: Any = self.model.__pydantic_validator__.validate_json
            return validate(raw if raw.strip() else "{}")  # type: ignore[no-any-return]
        except pydantic.ValidationError:
            pass
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # absurd nesting is bad JSON too
            raise ToolArgumentsError(
                f"arguments are not valid JSON: {exc}", error_type="invalid_json"
            ) from exc
        if not isinstance(data, dict):
            raise ToolArgumentsError(
                f"arguments must be a JSON object, got {type(data).__name__}",
                error_type="invalid_arguments",
                details=(ArgumentIssue("", "Input should be an object", "model_type"),),
            )
        try:
            return self.model.model_validate(data)
        except pydantic.ValidationError as exc:
            issues = tuple(_issue(err) for err in exc.errors(include_url=False)[:_MAX_ISSUES])
            summary = "; ".join(f"{i.loc or '(arguments)'}: {i.msg}" for i in issues[:5])
            raise ToolArgumentsError(
                f"{exc.error_count()} invalid argument(s): {summary}",
                error_type="invalid_arguments",
                details=issues,
            ) from exc

    def call_args(
        self, validated: BaseModel, context: ToolContext | None
    ) -> tuple[list[Any], dict[str, Any]]:
        """Return the positional and keyword arguments for the function."""
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for param in self.params:
            value = context if param.field is None else getattr(validated, param.field)
            if param.positional_only:
                args.append(value)
            else:
                kwargs[param.name] = value
        if self.var_keyword and validated.model_extra:
            kwargs.update(validated.model_extra)
        return args, kwargs


def _issue(err: Any) -> ArgumentIssue:
    loc = ".".join(str(part) for part in err.get("loc", ()))
    return ArgumentIssue(loc=loc, msg=str(err.get("msg", "")), type=str(err.get("type", "")))


def build_schema(
    fn: Any, *, name: str, description: str | None = None, strict: bool = False
) -> FunctionSchema:
    """Build the arguments model and JSON schema of a function.

    Args:
        fn: the function (sync or async).
        name: tool name, used for the model's class name and error messages.
        description: explicit description; the docstring's is used when None.
        strict: make the schema satisfy the API's strict mode.

    Returns:
        The function schema.

    Raises:
        ToolRegistrationError: unsupported parameter kinds or types.
    """
    try:
        signature = inspect.signature(fn)
        hints = typing.get_type_hints(_annotated_object(fn), include_extras=True)
    except (NameError, TypeError, ValueError) as exc:
        raise ToolRegistrationError(f"tool {name!r}: cannot read the signature: {exc}") from exc
    doc = parse_docstring(inspect.getdoc(fn))
    fields: dict[str, Any] = {}
    params: list[_Param] = []
    context_param: str | None = None
    extra: Literal["forbid", "allow"] = "forbid"
    for index, param in enumerate(signature.parameters.values()):
        annotation = hints.get(param.name, Any)
        positional_only = param.kind is inspect.Parameter.POSITIONAL_ONLY
        if _is_context(annotation):
            context_param = param.name
            params.append(_Param(param.name, None, positional_only))
            continue
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            raise ToolRegistrationError(f"tool {name!r}: *{param.name} is not supported")
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            extra = "allow"
            continue
        internal = f"p{index}"
        fields[internal] = _field(param, annotation, doc.params.get(param.name))
        params.append(_Param(param.name, internal, positional_only))
    model = _create_model(name, fields, extra)
    parameters = _json_schema(model, name)
    if strict:
        parameters = to_strict_schema(parameters, name=name)
    return FunctionSchema(
        description=description if description is not None else doc.description,
        parameters=parameters,
        model=model,
        params=tuple(params),
        context_param=context_param,
        var_keyword=extra == "allow",
    )


def _annotated_object(fn: Any) -> Any:
    """Return the object whose annotations describe fn's parameters."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.isfunction(fn) or inspect.ismethod(fn) or inspect.isbuiltin(fn):
        return fn
    call = getattr(type(fn), "__call__", None)  # noqa: B004 - the class attribute, not callable()
    return call if inspect.isfunction(call) else fn


def _is_context(annotation: Any) -> bool:
    if annotation is ToolContext:
        return True
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _is_context(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return len(args) == 1 and args[0] is ToolContext
    return False


def _field(param: inspect.Parameter, annotation: Any, doc_text: str | None) -> tuple[Any, Any]:
    # The parameter name is the alias, so names like "json" or "model_config" cannot clash
    # with BaseModel attributes; the docstring comes first so Annotated Field(...) wins.
    base, metadata = annotation, ()
    if typing.get_origin(annotation) is Annotated:
        base, *rest = typing.get_args(annotation)
        metadata = tuple(rest)
    info = Field(alias=param.name, description=doc_text) if doc_text else Field(alias=param.name)
    typed = Annotated[(base, info, *metadata)]  # type: ignore[valid-type]
    default = ... if param.default is inspect.Parameter.empty else param.default
    return (typed, default)


def _create_model(
    name: str, fields: dict[str, Any], extra: Literal["forbid", "allow"]
) -> type[BaseModel]:
    config = ConfigDict(extra=extra, protected_namespaces=())
    try:
        model: type[BaseModel] = pydantic.create_model(
            f"{name}_arguments", __config__=config, **fields
        )
    except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError, TypeError) as exc:
        raise ToolRegistrationError(f"tool {name!r}: unsupported parameter type: {exc}") from exc
    return model


def _json_schema(model: type[BaseModel], name: str) -> dict[str, Any]:
    try:
        schema = model.model_json_schema()
    except (pydantic.PydanticInvalidForJsonSchema, pydantic.PydanticUserError, TypeError) as exc:
        raise ToolRegistrationError(f"tool {name!r}: no JSON schema: {exc}") from exc
    return normalize_schema(schema)


def normalize_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Return the schema a model sees, decided here rather than by a pydantic release.

    pydantic's JSON-schema output shifts between minor releases (2.14 began closing nested
    dataclasses and TypedDicts that 2.13 left open), and the tool schema is part of every
    request, so the runtime fixes the details itself:

    * no generated ``title`` keywords (a property named ``title`` stays);
    * every object with declared ``properties`` is closed (``additionalProperties: false``)
      unless its type allows extra keys (``additionalProperties`` true or a schema);
    * ``$defs`` are named after the class alone (``Address``, not ``module__Address``),
      numbered on a clash (``Address_2``) in the order of pydantic's names, and sorted;
    * a ``$ref`` with siblings stays a plain ``$ref`` (releases before 2.9 wrapped it in a
      one-item ``allOf``);
    * the root always has ``properties``.
    """
    renames = _def_names(schema.get("$defs", {}))
    normalized: dict[str, Any] = _normalize(schema, renames)
    if "$defs" in normalized:
        normalized["$defs"] = dict(sorted(normalized["$defs"].items()))
    normalized.setdefault("properties", {})
    return normalized


def _def_names(defs: dict[str, Any]) -> dict[str, str]:
    """pydantic's definition names -> ours: the last ``__`` segment, numbered on a clash."""
    renames: dict[str, str] = {}
    taken: set[str] = set()
    for original in sorted(defs):
        short = original.rsplit("__", 1)[-1]
        candidate, n = short, 1
        while candidate in taken:
            n += 1
            candidate = f"{short}_{n}"
        taken.add(candidate)
        renames[original] = candidate
    return renames


def _normalize(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, list):
        return [_normalize(item, renames) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in ("properties", "patternProperties"):
            out[key] = {k: _normalize(v, renames) for k, v in value.items()}
        elif key == "$defs":
            out[key] = {renames.get(k, k): _normalize(v, renames) for k, v in value.items()}
        elif key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
            target = value.removeprefix("#/$defs/")
            out[key] = f"#/$defs/{renames.get(target, target)}"
        elif key in ("default", "const", "enum", "examples"):
            out[key] = value
        else:
            out[key] = _normalize(value, renames)
    all_of = out.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and set(all_of[0]) == {"$ref"}:
        out["$ref"] = out.pop("allOf")[0]["$ref"]  # older releases wrap a $ref with siblings
    if out.get("type") == "object" and "properties" in out:
        out.setdefault("additionalProperties", False)
    return out


def to_strict_schema(schema: dict[str, Any], *, name: str = "tool") -> dict[str, Any]:
    """Return a copy of schema that satisfies the API's strict mode.

    Every object gets ``additionalProperties: false`` and lists all properties as required;
    ``default: null`` is dropped (the type stays nullable) and ``$ref`` with siblings is
    inlined, as in openai-python's ``to_strict_json_schema``.

    Raises:
        ToolRegistrationError: the schema has a free-form object (``dict[str, X]``, ``**kwargs``)
            that strict mode cannot express.
    """
    root = copy.deepcopy(schema)
    return _strict(root, root, name, "")


def _strict(node: dict[str, Any], root: dict[str, Any], name: str, path: str) -> dict[str, Any]:
    for def_name, def_schema in node.get("$defs", {}).items():
        _strict(def_schema, root, name, f"{path}/$defs/{def_name}")
    if node.get("type") == "object":
        extra = node.get("additionalProperties")
        if extra not in (None, False):
            raise ToolRegistrationError(
                f"tool {name!r}: strict mode does not allow free-form objects (at {path or '/'}); "
                "use a pydantic model or dataclass instead of dict"
            )
        node["additionalProperties"] = False
        node.setdefault("properties", {})
    props = node.get("properties")
    if isinstance(props, dict):
        node["required"] = list(props)
        for key, value in props.items():
            props[key] = _strict(value, root, name, f"{path}/{key}")
    if isinstance(node.get("items"), dict):
        node["items"] = _strict(node["items"], root, name, f"{path}/items")
    for keyword in ("anyOf", "prefixItems"):
        if isinstance(node.get(keyword), list):
            node[keyword] = [_strict(v, root, name, path) for v in node[keyword]]
    all_of = node.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1:
        node.pop("allOf")
        node.update(_strict(all_of[0], root, name, path))
    elif isinstance(all_of, list):
        node["allOf"] = [_strict(v, root, name, path) for v in all_of]
    if "default" in node and node["default"] is None:
        node.pop("default")
    ref = node.get("$ref")
    if isinstance(ref, str) and len(node) > 1:
        resolved = _resolve_ref(root, ref)
        merged = {**copy.deepcopy(resolved), **node}
        merged.pop("$ref")
        return _strict(merged, root, name, path)
    return node


def _resolve_ref(root: dict[str, Any], ref: str) -> dict[str, Any]:
    node: Any = root
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    if not isinstance(node, dict):
        raise ToolRegistrationError(f"unresolvable $ref {ref!r}")
    return node
