"""The REST layer generated from the schema: routes, binding, execution, OpenAPI and docs."""

from __future__ import annotations

from typing import Any

from starlette.routing import BaseRoute, Mount
from strawberry.schema import Schema as StrawberrySchema

from connex.context import Services
from rest_compat.app import DeprecationHeaders, VersionApp, deprecation_headers
from rest_compat.compiler import CompiledRoute, compile_version
from rest_compat.routes import VERSIONS


def compile_all(schema: StrawberrySchema) -> dict[str, list[CompiledRoute]]:
    return {name: compile_version(schema, version) for name, version in VERSIONS.items()}


def mount_versions(
    schema: StrawberrySchema, services: Services
) -> tuple[list[BaseRoute], list[tuple[type, dict[str, Any]]]]:
    """Return a mount per version and the middleware that marks deprecated versions."""
    settings = services.settings
    compiled = services.extras.setdefault("routes", compile_all(schema))
    mounts: list[BaseRoute] = []
    wrappers: list[tuple[type, dict[str, Any]]] = []
    for name, version in VERSIONS.items():
        mounts.append(Mount(f"/{name}", app=VersionApp(version, compiled[name], services)))
        if version.deprecated:
            headers = deprecation_headers(
                version, settings.v1_deprecated_on, settings.v1_sunset_on, settings.public_base_url
            )
            wrappers.append((DeprecationHeaders, {"prefix": f"/{name}", "headers": headers}))
    return mounts, wrappers


def openapi_routes(schema: StrawberrySchema, services: Services) -> list[BaseRoute]:
    return []


def docs_routes() -> list[BaseRoute]:
    return []
