"""The HTTP API's errors: one exception, one JSON body for every route.

Every error a client sees is `{"code": "...", "message": "..."}` with a matching
status (docs/protocol.md, "HTTP API"): the routes raise `ApiError`; FastAPI's own
refusals (a body that does not validate, a 404 from the static files) are answered
in the same shape.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _body(code: str, message: str, status: int) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def install_handlers(app: FastAPI) -> None:
    """Answer `ApiError` and FastAPI's own errors with the documented body."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _body(exc.code, exc.message, exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"][1:]) or "body"
        return _body("invalid_request", f"{where}: {first['msg']}", 422)

    # Starlette's own class, which FastAPI's derives from: the router's 404 for a path
    # that matches no route is one of these.
    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        code = "not_found" if exc.status_code == 404 else "http_error"
        return _body(code, str(exc.detail), exc.status_code)
