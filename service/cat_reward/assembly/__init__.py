"""Group assembly: CaT needs all G rollouts of a prompt at once, but trainers send one sample
(OpenRLHF, verl's reward loop) or part of a group (TRL across processes) per request. Samples
wait here until their group is complete or its deadline passes; the group is scored once, and
every waiting request gets its own rewards.

The state lives in a store (Redis, shared by every replica; or in-process, the embedded
default), so any replica may receive any sample, and a replica that dies while scoring is
replaced by another waiter once its lease runs out.
"""

from .assembler import Assembled, GroupAssembler, GroupClosed, GroupConflict, GroupFailed, GroupFull, SampleIn
from .memory import MemoryAssemblyStore
from .redis import RedisAssemblyStore
from .rolling import RollingGroups

__all__ = [
    "Assembled",
    "GroupAssembler",
    "GroupClosed",
    "GroupConflict",
    "GroupFailed",
    "GroupFull",
    "MemoryAssemblyStore",
    "RedisAssemblyStore",
    "RollingGroups",
    "SampleIn",
]
