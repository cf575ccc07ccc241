"""The token check shared by the gRPC interceptor and the HTTP middleware: parse the bearer token, look it
up (cached for `AUTH_CACHE_TTL_S`, so new and revoked tokens take effect without a restart), verify its
secret, spend one call of its rate limit; and the experiment restriction checks."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from runwire.server import limits as server_limits
from runwire.server.auth.ratelimit import RateLimiter
from runwire.server.auth.scopes import Scope
from runwire.server.auth.tokens import MalformedToken, parse_token, secret_matches
from runwire.server.errors import NotFound, PermissionDenied, ResourceExhausted, Unauthenticated
from runwire.server.records import TokenRecord
from runwire.server.store.base import Store

log = logging.getLogger(__name__)

RUN_EXPERIMENT_CACHE_ENTRIES = 100_000
"""Run ids whose experiment the collector remembers for restriction checks (a run never changes experiment)."""

CREATE_HINT = "create one with `runwire token create --scope read|write|admin`"


@dataclass(frozen=True)
class Identity:
    """Who a request's valid token says it is."""

    token_id: str
    scope: Scope
    experiments: frozenset[str] = frozenset()
    """Experiments the token is restricted to; empty = every experiment."""
    name: str = ""

    @property
    def restricted(self) -> bool:
        return bool(self.experiments)

    def describe_restriction(self) -> str:
        return ", ".join(repr(e) for e in sorted(self.experiments))

    def require_scope(self, needed: Scope, what: str) -> None:
        if not self.scope.allows(needed):
            raise PermissionDenied(
                f"{what} needs a token of scope {needed.label} or higher; token {self.token_id} has scope "
                f"{self.scope.label}"
            )

    def require_unrestricted(self, what: str, why: str = "") -> None:
        if self.restricted:
            raise PermissionDenied(
                f"{what} needs a token without experiment restriction{(' (' + why + ')') if why else ''}; "
                f"token {self.token_id} is restricted to experiments {self.describe_restriction()}"
            )

    def require_experiment(self, experiment: str, what: str) -> None:
        if self.restricted and experiment not in self.experiments:
            raise PermissionDenied(
                f"{what}: token {self.token_id} is restricted to experiments {self.describe_restriction()}"
            )


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` value; None when there is none."""
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not rest.strip():
        raise Unauthenticated("the authorization value must be `Bearer <token>`")
    return rest.strip()


class Guard:
    """One per collector with auth on."""

    def __init__(
        self,
        store: Store,
        rate_per_s: float = server_limits.RATE_LIMIT_PER_S,
        burst: int = server_limits.RATE_LIMIT_BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.limiter = RateLimiter(rate_per_s, burst, clock)
        self._clock = clock
        self._tokens: dict[str, tuple[TokenRecord | None, float]] = {}
        self._runs: OrderedDict[str, str] = OrderedDict()
        self._touches: set[asyncio.Task] = set()

    async def authenticate(self, token: str | None) -> Identity:
        """The identity of a valid `token`; Unauthenticated for a missing, malformed, unknown, wrong
        or revoked one."""
        if not token:
            raise Unauthenticated(f"no token: this collector requires an access token ({CREATE_HINT})")
        try:
            parsed = parse_token(token)
        except MalformedToken as e:
            raise Unauthenticated(f"malformed token: {e}") from None
        record = await self._lookup(parsed.token_id)
        if record is None or not secret_matches(parsed.secret, record.secret_sha256):
            raise Unauthenticated("invalid token: no such token, or a wrong secret")
        if record.revoked:
            raise Unauthenticated(f"token {record.token_id} was revoked")
        return Identity(record.token_id, Scope.parse(record.scope), frozenset(record.experiments), record.name)

    def spend(self, identity: Identity) -> None:
        """Count one call of the token; ResourceExhausted when it is over its rate limit."""
        wait = self.limiter.take(identity.token_id)
        if wait is not None:
            raise ResourceExhausted(
                f"token {identity.token_id} is over its rate limit of {self.limiter.rate:g} calls/s "
                f"(burst {self.limiter.burst}); retry in {wait:.2f} s",
                retry_after_s=wait,
            )

    async def _lookup(self, token_id: str) -> TokenRecord | None:
        now = self._clock()
        cached = self._tokens.get(token_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        record = await self.store.get_token(token_id)
        if len(self._tokens) >= server_limits.AUTH_CACHE_MAX_ENTRIES:
            self._tokens.clear()
        self._tokens[token_id] = (record, now + server_limits.AUTH_CACHE_TTL_S)
        if record is not None and not record.revoked:
            task = asyncio.create_task(self._touch(token_id))
            self._touches.add(task)
            task.add_done_callback(self._touches.discard)
        return record

    async def _touch(self, token_id: str) -> None:
        try:
            await self.store.touch_token(token_id, time.time())
        except Exception as e:  # last-used is informational: never fail a request over it
            log.debug("could not record token use", extra={"fields": {"token": token_id, "error": str(e)}})

    # --- experiment restrictions ------------------------------------------------------------------------

    async def run_experiment(self, run_id: str) -> str | None:
        """The experiment of run `run_id`, or None when there is no such run."""
        found = self._runs.get(run_id)
        if found is not None:
            self._runs.move_to_end(run_id)
            return found
        try:
            run = await self.store.get_run(run_id)
        except NotFound:
            return None
        self._runs[run_id] = run.experiment_name
        if len(self._runs) > RUN_EXPERIMENT_CACHE_ENTRIES:
            self._runs.popitem(last=False)
        return run.experiment_name

    async def require_runs(self, identity: Identity, run_ids: Iterable[str], what: str) -> None:
        """A restricted token may only name runs of its experiments (an unknown run is left to the
        service, which answers NotFound)."""
        if not identity.restricted:
            return
        for run_id in run_ids:
            if not run_id:
                continue
            experiment = await self.run_experiment(run_id)
            if experiment is not None and experiment not in identity.experiments:
                raise PermissionDenied(
                    f"{what}: run {run_id!r} belongs to experiment {experiment!r}, and token "
                    f"{identity.token_id} is restricted to experiments {identity.describe_restriction()}"
                )

    async def close(self) -> None:
        for task in list(self._touches):
            task.cancel()
        self._touches.clear()
