"""Public Wi-Fi session logs: the retention-bound encrypted store of record for police inquiries."""

from gateway.wifilog.sessions import EventKind, Session, SessionEvent, merge
from gateway.wifilog.signing import Signer, verify_document
from gateway.wifilog.store import Query, WifiLogError, WifiLogStore

__all__ = [
    "EventKind",
    "Query",
    "Session",
    "SessionEvent",
    "Signer",
    "WifiLogError",
    "WifiLogStore",
    "merge",
    "verify_document",
]
