"""The CaT engine: reference estimation, self-proposed rubrics, the judge and reward rules.

Pure async Python: no web framework, HTTP client, cache or database imports. It reaches the
outside world only through the Protocols in ``ports``.
"""

from .errors import (
    CatError,
    GenerationFailed,
    InvalidGroup,
    LLMBadResponse,
    LLMError,
    LLMRequestRejected,
    LLMUnavailable,
    RubricGenerationFailed,
    SynthesisFailed,
)
from .pipeline import CaTPipeline
from .ports import AnswerChecker, ChatRequest, ChatResult, EquivalenceResult, LLMClient, Roles
from .prompts import PromptSet, load_prompt_set
from .types import Criterion, Group, GroupOptions, GroupOutcome, Reference, RolloutOutcome, Sampling, Usage, Verdict

__all__ = [
    "AnswerChecker",
    "CaTPipeline",
    "CatError",
    "ChatRequest",
    "ChatResult",
    "Criterion",
    "EquivalenceResult",
    "GenerationFailed",
    "Group",
    "GroupOptions",
    "GroupOutcome",
    "InvalidGroup",
    "LLMBadResponse",
    "LLMClient",
    "LLMError",
    "LLMRequestRejected",
    "LLMUnavailable",
    "PromptSet",
    "Reference",
    "Roles",
    "RolloutOutcome",
    "RubricGenerationFailed",
    "Sampling",
    "SynthesisFailed",
    "Usage",
    "Verdict",
    "load_prompt_set",
]
