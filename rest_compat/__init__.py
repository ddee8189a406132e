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
    """Serve each version's OpenAPI document at /openapi/{version}.json, without an API key.

    A document is built and serialized on its first request, then served from memory.
    """
    import orjson
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from connex.errors import NotFound
    from connex.problems import problem_response
    from rest_compat.openapi import build_document

    serialized: dict[str, bytes] = {}

    async def openapi_document(request: Request) -> Response:
        name = request.path_params["version"]
        if name not in VERSIONS:
            known = ", ".join(f"/openapi/{known}.json" for known in VERSIONS)
            error = NotFound(f"No API version {name!r}. The documents are {known}")
            return problem_response(error, instance=request.url.path)
        if name not in serialized:
            serialized[name] = orjson.dumps(build_document(schema, name, services.settings))
        return Response(serialized[name], media_type="application/json")

    return [Route("/openapi/{version}.json", openapi_document, methods=["GET"])]


def docs_routes(schema: StrawberrySchema, services: Services) -> list[BaseRoute]:
    from rest_compat import docs
    from rest_compat.openapi import build_document

    return docs.docs_routes(lambda name: build_document(schema, name, services.settings), services.settings)
