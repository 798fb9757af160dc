"""``/docs``: Swagger UI served by the app itself, from the assets of the ``swagger-ui-bundle`` package
(FastAPI's default page loads them from a CDN, which fails offline). The OpenAPI document declares
the bearer-token scheme, so the page's "Authorize" button sends the token on "Try it out".
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

ASSETS = "/static/swagger-ui"
SECURITY_SCHEME = {"bearerAuth": {"type": "http", "scheme": "bearer",
                                  "description": "An API token (`monitor api token`): scope read for GET, write "
                                                 "for POST."}}
OPEN_OPERATIONS = {("/health", "get")}


def assets_dir() -> str:
    """Where the installed swagger-ui-bundle keeps swagger-ui-bundle.js and swagger-ui.css."""
    from swagger_ui_bundle import swagger_ui_path

    return str(swagger_ui_path)


def body_schemas() -> dict:
    """Schemas of bodies a route reads itself (``POST /v1/performance``: counted before validation)."""
    from monitor.api.classic_engine import ClassicRecord

    return {"ClassicRecord": ClassicRecord.model_json_schema(ref_template="#/components/schemas/{model}")}


def install(app: FastAPI) -> None:
    """Mount the assets, add ``/docs``, and the bearer scheme to the OpenAPI document."""
    app.mount(ASSETS, StaticFiles(directory=assets_dir()), name="swagger-ui")

    openapi_url = app.openapi_url
    if openapi_url is None:  # the docs page shows the OpenAPI document: the app must serve one
        raise ValueError("the API docs need an app with an openapi_url")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=openapi_url, title=f"{app.title} - API",
                                   swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSETS}/favicon-32x32.png")

    def openapi() -> dict:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = spec.setdefault("components", {})
            components["securitySchemes"] = SECURITY_SCHEME
            components.setdefault("schemas", {}).update(body_schemas())
            for path, operations in spec.get("paths", {}).items():
                for method, operation in operations.items():
                    if (path, method) not in OPEN_OPERATIONS:
                        operation["security"] = [{"bearerAuth": []}]
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the schema
