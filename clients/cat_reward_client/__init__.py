"""Python client of the cat-reward service (Compute as Teacher rewards for RL trainers).

    from cat_reward_client import CatRewardClient

    with CatRewardClient("http://127.0.0.1:8000") as client:
        result = client.rewards(prompt="What is 6 x 7?", rollouts=["42", "41", "The answer is 42."])
        result.rewards          # e.g. [1.0, 0.0, 1.0]; None where a reward could not be computed

``AsyncCatRewardClient`` has the same methods, awaited. Errors are ``CatRewardError``
subclasses (see ``cat_reward_client._exceptions`` for the tree).
"""

from ._async_client import AsyncCatRewardClient
from ._client import CatRewardClient
from ._config import DEFAULT_BASE_URL, DEFAULT_TIMEOUT, RetryPolicy
from ._exceptions import (
    CatRewardError,
    InvalidRequestError,
    NotFoundError,
    RequestTimeout,
    ResponseDecodeError,
    ServerError,
    TransportError,
    UnavailableError,
    UpstreamError,
)
from ._models import (
    BatchItem,
    BatchResult,
    ChatMessage,
    Criterion,
    ErrorInfo,
    GroupStatus,
    Health,
    Provenance,
    Readiness,
    RewardGroup,
    RewardOptions,
    RewardResult,
    RolloutDetail,
    RubricPage,
    SampleGroup,
    SamplesResult,
    SamplingOptions,
    StageUsage,
    Usage,
    Verdict,
)
from ._version import __version__

__all__ = [
    "__version__",
    # clients
    "AsyncCatRewardClient",
    "CatRewardClient",
    # configuration
    "DEFAULT_BASE_URL",
    "DEFAULT_TIMEOUT",
    "RetryPolicy",
    # requests
    "ChatMessage",
    "RewardGroup",
    "RewardOptions",
    "SampleGroup",
    "SamplingOptions",
    # results
    "BatchItem",
    "BatchResult",
    "Criterion",
    "ErrorInfo",
    "GroupStatus",
    "Health",
    "Provenance",
    "Readiness",
    "RewardResult",
    "RolloutDetail",
    "RubricPage",
    "SamplesResult",
    "StageUsage",
    "Usage",
    "Verdict",
    # exceptions
    "CatRewardError",
    "InvalidRequestError",
    "NotFoundError",
    "RequestTimeout",
    "ResponseDecodeError",
    "ServerError",
    "TransportError",
    "UnavailableError",
    "UpstreamError",
]

# Present every public name as living in the package itself (as httpx does).
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type):
        _obj.__module__ = "cat_reward_client"
del _name, _obj
