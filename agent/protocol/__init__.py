"""The edge protocol library (PROTOCOL.md): everything a client needs, no agent required.

from agent.protocol import TrustStore, load_signer, make_task, accept_task, open_agent_message
"""

from .acceptance import AcceptancePolicy, AcceptedTask, accept_task
from .client import build_task, make_control, make_task, open_agent_message, sign_task
from .codec import ALLOWED_DTYPES, ARRAY_EXT_TYPE, Limits, as_array, packb, unpackb
from .envelope import Envelope, open_envelope, seal, verify_envelope
from .errors import (
    AuthenticationError,
    BodyError,
    CodecError,
    EncodeError,
    PayloadTooLarge,
    ProtocolError,
    TaskRejected,
    TopicError,
    TrustStoreError,
)
from .keys import Ed25519Signer, HmacSigner, Signer, generate_signer, load_signer, signer_from_bytes
from .messages import Event, Heartbeat, Presence, RejectReport, Result
from .replay import MemoryReplayCache, ReplayCache, ReplayRecord
from .task import Task
from .topics import ParsedTopic, Topics, is_valid_id
from .truststore import TrustedKey, TrustStore, write_trust_store

__all__ = [
    "ALLOWED_DTYPES",
    "ARRAY_EXT_TYPE",
    "AcceptancePolicy",
    "AcceptedTask",
    "AuthenticationError",
    "BodyError",
    "CodecError",
    "Ed25519Signer",
    "EncodeError",
    "Envelope",
    "Event",
    "Heartbeat",
    "HmacSigner",
    "Limits",
    "MemoryReplayCache",
    "ParsedTopic",
    "PayloadTooLarge",
    "Presence",
    "ProtocolError",
    "RejectReport",
    "ReplayCache",
    "ReplayRecord",
    "Result",
    "Signer",
    "Task",
    "TaskRejected",
    "TopicError",
    "Topics",
    "TrustStore",
    "TrustStoreError",
    "TrustedKey",
    "accept_task",
    "as_array",
    "build_task",
    "generate_signer",
    "is_valid_id",
    "load_signer",
    "make_control",
    "make_task",
    "open_agent_message",
    "open_envelope",
    "packb",
    "seal",
    "sign_task",
    "signer_from_bytes",
    "unpackb",
    "verify_envelope",
    "write_trust_store",
]
