"""Method dispatch in front of the features: the core's handler.

Features register a function per method (``REGISTER`` → registrar, ``INVITE`` → B2BUA...).
OPTIONS addressed to the server is answered here with 200 and Allow / Accept / Supported
(RFC 3261 §11.2); a method nobody registered gets 501 Not Implemented (§8.2.1); a method we know
but that is not allowed for this target gets 405 from the feature itself.
"""

from __future__ import annotations

from collections.abc import Callable

from fastsip.message import Request, Response

from .addressing import Source
from .core import SUPPORTED_OPTIONS, RequestContext

__all__ = ("MethodRouter",)

RequestHandler = Callable[[RequestContext], None]


class MethodRouter:
    """Dispatches requests by method; answers OPTIONS and unknown methods itself."""

    def __init__(
        self,
        *,
        accept: tuple[str, ...] = ("application/sdp",),
        supported: tuple[str, ...] = SUPPORTED_OPTIONS,
    ) -> None:
        self._routes: dict[str, RequestHandler] = {}
        self._cancel: Callable[[RequestContext], None] | None = None
        self._ack: Callable[[Request, Source], None] | None = None
        self._stray: Callable[[Response, Source], None] | None = None
        self.accept = accept
        self.supported = supported
        self.options_handler: RequestHandler | None = None

    def route(self, method: str, handler: RequestHandler) -> None:
        self._routes[method] = handler

    def on_cancel_call(self, fn: Callable[[RequestContext], None]) -> None:
        self._cancel = fn

    def on_ack_call(self, fn: Callable[[Request, Source], None]) -> None:
        self._ack = fn

    def on_stray_call(self, fn: Callable[[Response, Source], None]) -> None:
        self._stray = fn

    @property
    def allow(self) -> list[str]:
        methods = {"OPTIONS", "ACK", "CANCEL", *self._routes}
        order = [
            "INVITE",
            "ACK",
            "CANCEL",
            "BYE",
            "OPTIONS",
            "REGISTER",
            "MESSAGE",
            "INFO",
            "UPDATE",
            "PRACK",
            "SUBSCRIBE",
            "NOTIFY",
            "REFER",
        ]
        return [m for m in order if m in methods] + sorted(methods - set(order))

    # -- Handler protocol -------------------------------------------------------------------
    def on_request(self, ctx: RequestContext) -> None:
        method = ctx.request.method
        fn = self._routes.get(method)
        if fn is not None:
            fn(ctx)
            return
        if method == "OPTIONS":
            if self.options_handler is not None:
                self.options_handler(ctx)
                return
            self.answer_options(ctx)
            return
        ctx.respond(501, headers=[("Allow", ", ".join(self.allow))])

    def answer_options(self, ctx: RequestContext) -> None:
        ctx.respond(
            200,
            headers=[
                ("Allow", ", ".join(self.allow)),
                ("Accept", ", ".join(self.accept)),
                ("Supported", ", ".join(self.supported)),
            ],
        )

    def on_cancel(self, ctx: RequestContext) -> None:
        if self._cancel is not None:
            self._cancel(ctx)

    def on_ack(self, request: Request, source: Source) -> None:
        if self._ack is not None:
            self._ack(request, source)

    def on_stray_response(self, response: Response, source: Source) -> None:
        if self._stray is not None:
            self._stray(response, source)
