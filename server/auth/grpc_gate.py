"""The collector's gRPC server interceptor: every call except the health service's needs a valid token
(UNAUTHENTICATED), counts once against the token's rate limit when it opens (RESOURCE_EXHAUSTED), needs
its method's scope (PERMISSION_DENIED) and, for a token restricted to experiments, may only name runs and
experiments of those (PERMISSION_DENIED); list answers are trimmed to them."""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from runwire.server.auth.guard import Guard, Identity, bearer_token
from runwire.server.auth.methods import METHOD_RULES, Rule, field_value, is_open
from runwire.server.auth.scopes import Scope
from runwire.server.errors import CollectorError, PermissionDenied

log = logging.getLogger(__name__)


def _metadata_token(metadata: Any) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            return bearer_token(value if isinstance(value, str) else value.decode("latin-1"))
    return None


def _refusing(handler: grpc.RpcMethodHandler, error: CollectorError) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that aborts every call with `error`."""

    async def abort(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(error.code, str(error))

    kwargs = {"request_deserializer": handler.request_deserializer, "response_serializer": handler.response_serializer}
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(abort, **kwargs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(abort, **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(abort, **kwargs)
    return grpc.stream_stream_rpc_method_handler(abort, **kwargs)


class GrpcGate(grpc.aio.ServerInterceptor):
    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = details.method
        handler = await continuation(details)
        if handler is None or is_open(method):
            return handler
        try:
            rule = METHOD_RULES.get(method)
            identity = await self.guard.authenticate(_metadata_token(details.invocation_metadata))
            self.guard.spend(identity)
            if rule is None:
                log.error("no scope is defined for a gRPC method; refused", extra={"fields": {"method": method}})
                raise PermissionDenied(f"{method} has no scope defined on this collector; refused")
            identity.require_scope(rule.scope, method)
            if rule.unrestricted:
                identity.require_unrestricted(method, rule.unrestricted)
        except CollectorError as e:
            log.info("refused", extra={"fields": {"rpc": method, "code": e.code.name, "reason": str(e)}})
            return _refusing(handler, e)
        write_if_new = bool(rule.write_if_new) and not identity.scope.allows(Scope.WRITE)
        if not write_if_new and (
            not identity.restricted or not (rule.runs or rule.experiments or rule.response_filter)
        ):
            return handler
        return self._checked(handler, rule, identity, method)

    async def _check(self, request: Any, rule: Rule, identity: Identity, method: str) -> None:
        if rule.write_if_new and not identity.scope.allows(Scope.WRITE):
            name = field_value(request, rule.write_if_new)
            if not name or not await self.guard.store.list_experiments(name):
                identity.require_scope(Scope.WRITE, f"{method} of a new experiment {name!r}")
        if not identity.restricted:
            return
        named = False
        for path in rule.experiments:
            experiment = field_value(request, path)
            if experiment:
                named = True
                identity.require_experiment(experiment, f"{method} of experiment {experiment!r}")
        run_ids = [field_value(request, path) for path in rule.runs]
        named = named or any(run_ids)
        if rule.named and not named:
            raise PermissionDenied(
                f"{method}: token {identity.token_id} is restricted to experiments "
                f"{identity.describe_restriction()}; name one of them (or a run of them)"
            )
        await self.guard.require_runs(identity, run_ids, method)

    def _checked(
        self, handler: grpc.RpcMethodHandler, rule: Rule, identity: Identity, method: str
    ) -> grpc.RpcMethodHandler:
        check = self._check
        kwargs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }

        async def checked(request: Any, context: grpc.aio.ServicerContext) -> None:
            try:
                await check(request, rule, identity, method)
            except CollectorError as e:
                log.info("refused", extra={"fields": {"rpc": method, "code": e.code.name, "reason": str(e)}})
                await context.abort(e.code, str(e))

        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                await checked(request, context)
                response = await inner(request, context)
                if rule.response_filter is not None and identity.restricted and response is not None:
                    rule.response_filter(response, identity.experiments)
                return response

            return grpc.unary_unary_rpc_method_handler(unary_unary, **kwargs)
        if handler.unary_stream:
            inner_stream = handler.unary_stream

            async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                await checked(request, context)
                if not inspect.isasyncgenfunction(inner_stream):  # writes with context.write
                    await inner_stream(request, context)
                    return
                async for response in inner_stream(request, context):
                    yield response

            return grpc.unary_stream_rpc_method_handler(unary_stream, **kwargs)
        if handler.stream_unary and rule.first_message:
            inner_client = handler.stream_unary

            async def stream_unary(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
                first = None
                async for message in requests:
                    first = message
                    break
                if first is not None and first.HasField(rule.first_message):
                    await checked(getattr(first, rule.first_message), context)

                async def replay() -> AsyncIterator[Any]:
                    if first is None:
                        return
                    yield first
                    async for message in requests:
                        yield message

                return await inner_client(replay(), context)

            return grpc.stream_unary_rpc_method_handler(stream_unary, **kwargs)
        return _refusing(handler, PermissionDenied(f"{method} cannot check experiment restrictions; refused"))
