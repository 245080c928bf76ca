"""What the service may write to its logs about a study.

Series and study UIDs can be traced back to a patient through the PACS, so logs carry them only
as a keyed hash (HMAC-SHA256, first 16 hex digits): an operator holding the key can match a log
line to a UID they already know, nobody else can. Patient names, IDs and birth dates are never
logged at all; nothing in the service reads them from uploads.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets

logger = logging.getLogger(__name__)

#: Libraries whose log lines may quote what they read: highdicom names the SOP instances it copies
#: from (INFO), pydicom quotes header values, urllib3 the URLs of DICOMweb requests (study and
#: series UIDs in the path), PIL the files it opens. Only their errors reach the log.
QUIETED_LOGGERS = ("highdicom", "pydicom", "urllib3", "PIL", "requests", "dicomweb_client")


def quiet_third_party_loggers() -> None:
    """Keep the libraries' own log lines (which may name a study) out of the service's log.

    Called in the lifespan (not at import): their loggers then pass ERROR and above only.
    """
    for name in QUIETED_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


class UidHasher:
    """Keyed hash of UIDs for log lines."""

    def __init__(self, key: bytes | None) -> None:
        if key is None:
            # Without a configured key the hashes still hide the UID, but match only within
            # this process's lifetime.
            logger.info(
                "UIDs in logs are hashed with a key made for this process; set "
                "NODULE_LOG_HASH_KEY to match hashes across restarts"
            )
            key = secrets.token_bytes(32)
        self._key = key

    def __call__(self, uid: str | None) -> str:
        """``uid:<16 hex>`` for a UID, ``-`` for none."""
        if not uid:
            return "-"
        digest = hmac.new(self._key, uid.encode("utf-8"), hashlib.sha256).hexdigest()
        return f"uid:{digest[:16]}"
