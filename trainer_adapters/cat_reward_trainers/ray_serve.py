"""Rewards through a Ray Serve deployment handle, for trainers that run in the same Ray cluster
as the service (verl, OpenRLHF): no HTTP, no API key, no load balancer in between.

    from cat_reward_trainers.ray_serve import CatRewardHandle

    rewards = CatRewardHandle()                          # app "cat-reward", deployment "CatReward"
    result = rewards.rewards("What is 6 x 7?", ["42", "41"], metadata={"run_id": "r1", "step": 3})
    batch = rewards.rewards_batch(groups)                # like CatRewardClient.rewards_batch
    result = await rewards.arewards(...)                 # in async code (verl's reward loop)

The methods take the arguments and return the types of ``cat_reward_client.CatRewardClient``
(``RewardResult``, ``BatchResult``) and raise its exceptions (``InvalidRequestError`` for a
422 naming the field, ``UnavailableError`` ...), because the request and the answer are the same
JSON as over HTTP (the deployment answers as ``POST /rewards`` would).

Retries. Serve does not retry a request that was in flight on a replica that died; this adapter
does. A lost replica or node (``RayActorError``, ``ActorUnavailableError``, Serve's
``BackPressureError``, ``ReplicaUnavailableError``, ``DeploymentUnavailableError``) and the
statuses of the retry policy (429, 503) are retried with backoff, up to ``max_retries`` times,
always under the **same idempotency key**: the service records one history entry per key, so a
retried group is never recorded twice. The default key is the SHA-256 of the request body, as
the HTTP client's; pass ``idempotency_key`` to choose it. A call that times out is not retried
(the replica may still be scoring it).

Needs ``ray[serve]`` in the trainer's environment (``pip install 'cat-reward[ray]'`` pins it), and
the service deployed in the same cluster: ``serve run cat_reward.ray_serve:app`` or
``serve deploy deploy/ray/serve.yaml``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable, Mapping
from typing import Any

from cat_reward_client import BatchResult, RetryPolicy, RewardGroup, RewardResult, TransportError
from cat_reward_client._core import IDEMPOTENCY_HEADER, Call, ClientCore, Done, RequestSpec

DEFAULT_APP = "cat-reward"
DEFAULT_DEPLOYMENT = "CatReward"


def _lost_replica_errors() -> tuple[type[BaseException], ...]:
    from ray.exceptions import ActorUnavailableError, RayActorError
    from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError

    return (RayActorError, ActorUnavailableError, BackPressureError, ReplicaUnavailableError, DeploymentUnavailableError)


class CatRewardHandle:
    """A rewards client over a Serve deployment handle, with idempotent retries.

    Cheap to build and picklable: the handle is looked up on first use, in the process that
    uses it (a Ray actor or task), so an instance can be passed to remote workers.
    """

    def __init__(
        self,
        app_name: str = DEFAULT_APP,
        deployment_name: str = DEFAULT_DEPLOYMENT,
        *,
        max_retries: int = 5,
        retry: RetryPolicy | None = None,
        timeout_s: float = 900.0,
    ) -> None:
        self.app_name = app_name
        self.deployment_name = deployment_name
        self.retry = retry or RetryPolicy(max_retries=max_retries, backoff_initial=0.5, backoff_max=10.0)
        self.timeout_s = timeout_s
        self.retries_after_lost = 0  # calls sent again because their replica or node was lost
        self._handle = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_handle": None}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(app_name={self.app_name!r}, deployment_name={self.deployment_name!r})"

    # --- the calls ---------------------------------------------------------------------

    def rewards(
        self,
        prompt: Any,
        rollouts: Iterable[str],
        mode: str | None = None,
        reference: str | None = None,
        options: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        *,
        metadata: Mapping[str, Any] | None = None,
        rubric: Iterable[Mapping[str, Any]] | None = None,
        token_logprobs: Iterable[Iterable[float]] | None = None,
    ) -> RewardResult:
        """Score one group, as ``CatRewardClient.rewards`` (a caller's ``rubric``, per-rollout
        ``token_logprobs`` included)."""
        return self._send(
            self._core().rewards(prompt, rollouts, mode, reference, options, idempotency_key, metadata, rubric, token_logprobs)
        )

    def rewards_batch(
        self, groups: Iterable[RewardGroup | Mapping[str, Any]], idempotency_key: str | None = None
    ) -> BatchResult:
        """Score several groups, as ``CatRewardClient.rewards_batch``."""
        return self._send(self._core().rewards_batch(groups, idempotency_key))

    async def arewards(
        self,
        prompt: Any,
        rollouts: Iterable[str],
        mode: str | None = None,
        reference: str | None = None,
        options: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        *,
        metadata: Mapping[str, Any] | None = None,
        rubric: Iterable[Mapping[str, Any]] | None = None,
        token_logprobs: Iterable[Iterable[float]] | None = None,
    ) -> RewardResult:
        return await self._asend(
            self._core().rewards(prompt, rollouts, mode, reference, options, idempotency_key, metadata, rubric, token_logprobs)
        )

    async def arewards_batch(
        self, groups: Iterable[RewardGroup | Mapping[str, Any]], idempotency_key: str | None = None
    ) -> BatchResult:
        return await self._asend(self._core().rewards_batch(groups, idempotency_key))

    # --- machinery ---------------------------------------------------------------------

    def _core(self) -> ClientCore:
        return ClientCore(retry=self.retry)

    def handle(self):
        if self._handle is None:
            from ray import serve

            self._handle = serve.get_deployment_handle(self.deployment_name, app_name=self.app_name)
        return self._handle

    def _request(self, spec: RequestSpec):
        return self.handle().call.remote(spec.path, spec.body, spec.header(IDEMPOTENCY_HEADER))

    def _lost(self, call: Call, exc: BaseException) -> float:
        """The wait before trying again after a lost replica, or raise when out of retries."""
        call.attempts += 1
        if call.retries_left <= 0:
            raise TransportError(
                f"{call.spec.method} {call.spec.path} over a Serve handle: {type(exc).__name__} "
                f"(after {call.attempts} attempts)",
                attempts=call.attempts,
            ) from exc
        self.retries_after_lost += 1
        return self.retry.backoff(call.attempts, random.random())

    def _send(self, spec: RequestSpec):
        call = self._core().start(spec)
        lost = _lost_replica_errors()
        while True:
            try:
                status, content = self._request(spec).result(timeout_s=self.timeout_s)
            except lost as exc:
                delay = self._lost(call, exc)
            else:
                step = call.on_response(status, {}, content)
                if isinstance(step, Done):
                    return step.value
                delay = step.delay
            time.sleep(delay)

    async def _asend(self, spec: RequestSpec):
        call = self._core().start(spec)
        lost = _lost_replica_errors()
        while True:
            try:
                status, content = await asyncio.wait_for(self._request(spec), self.timeout_s)
            except lost as exc:
                delay = self._lost(call, exc)
            else:
                step = call.on_response(status, {}, content)
                if isinstance(step, Done):
                    return step.value
                delay = step.delay
            await asyncio.sleep(delay)
