"""``APIError``: an error the server answers with, as OpenAI error JSON ``{"error": {message, type, param, code}}``."""

from __future__ import annotations

TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
         413: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error",
         503: "service_unavailable_error", 504: "timeout_error"}


class APIError(Exception):
    """A request the server refuses or could not finish; ``status`` is the HTTP status, the message one line."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 retry_after: int | None = None) -> None:
        self.status = status
        self.message = " ".join(str(message).split())
        self.param = param
        self.code = code
        self.retry_after = retry_after
        super().__init__(self.message)

    def body(self) -> dict:
        kind = TYPES.get(self.status, "server_error" if self.status >= 500 else "invalid_request_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


def bad_request(message: str, *, param: str | None = None, code: str = "invalid_request") -> APIError:
    return APIError(400, message, param=param, code=code)
