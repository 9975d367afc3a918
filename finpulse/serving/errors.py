"""Serving errors: each carries its HTTP status, so every layer (model replica, handle hop, Gateway,
route) can pass it on unchanged, and a replica can return one in place of an item's result."""

from __future__ import annotations

from typing import Any


class ServingError(Exception):
    status = 500

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail

    def to_dict(self) -> dict:
        return {"error": {"status": self.status, "detail": self.detail}}


class ModelNotReady(ServingError):
    status = 503


class UnknownTicker(ServingError):
    status = 404


class NoFeatures(ServingError):
    status = 404


class BadInput(ServingError):
    status = 422


class TooLarge(ServingError):
    status = 413


_ERRORS = {cls.status: cls for cls in (ModelNotReady, UnknownTicker, BadInput, TooLarge)}


def error_from_dict(obj: dict) -> ServingError:
    """Rebuild the error a model replica returned in place of one item's result."""
    err = obj["error"]
    cls = _ERRORS.get(int(err["status"]), ServingError)
    out = cls(str(err["detail"]))
    out.status = int(err["status"])
    return out


def unwrap(obj: Any) -> Any:
    """An item result, or raise the error it stands for."""
    if isinstance(obj, dict) and "error" in obj:
        raise error_from_dict(obj)
    return obj
