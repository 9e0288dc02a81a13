"""The channel core: inputs in, effects out, no I/O (see :mod:`.channels`).

The Manager drives it in production; tests drive it directly with a
synchronous model of a few peers.
"""

from datatransfer.core.channels import ChannelCore, Steps, malformed_new_request, refusal_kind
from datatransfer.core.effects import PROCEED, Answer

__all__ = ["PROCEED", "Answer", "ChannelCore", "Steps", "malformed_new_request", "refusal_kind"]
