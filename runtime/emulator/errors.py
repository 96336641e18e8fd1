"""Errors the emulator answers with, shaped like the real service's error bodies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ApiError(Exception):
    """An error response: ``{"error": {"message", "type", "param", "code"}}`` with a status.

    Attributes:
        status: HTTP status code.
        message: human readable message (never contains an API key).
        type: error type (``invalid_request_error``, ``server_error``, ...).
        param: the offending parameter, if any.
        code: machine readable code, if any.
        headers: extra response headers (e.g. ``retry-after``).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON body of the error response."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def not_found(kind: str, object_id: str) -> ApiError:
    """404 for an unknown id, worded as the service does."""
    return ApiError(404, f"No {kind} found with id '{object_id}'.")


def invalid(message: str, *, param: str | None = None, code: str | None = None) -> ApiError:
    """400 invalid_request_error."""
    return ApiError(400, message, param=param, code=code)


def missing(param: str) -> ApiError:
    """400 for a missing required parameter."""
    return ApiError(
        400,
        f"Missing required parameter: '{param}'.",
        param=param,
        code="missing_required_parameter",
    )


def rate_limited(headers: Mapping[str, str]) -> ApiError:
    """429 as the service sends it."""
    return ApiError(
        429,
        "Rate limit reached for requests. Please try again later.",
        type="requests",
        code="rate_limit_exceeded",
        headers=headers,
    )


def server_error() -> ApiError:
    """500 as the service sends it."""
    return ApiError(
        500,
        "The server had an error while processing your request. Sorry about that!",
        type="server_error",
    )


def overloaded(headers: Mapping[str, str]) -> ApiError:
    """503 as the service sends it."""
    return ApiError(
        503,
        "The engine is currently overloaded, please try again later.",
        type="server_error",
        code="service_unavailable",
        headers=headers,
    )
