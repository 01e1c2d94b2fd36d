"""UIDs for the DICOM objects this program writes (docs/DICOM_EXPORT.md).

The project UID root is a UUID-derived OID under ``2.25`` (ISO/IEC 9834-8,
DICOM PS3.5 B.2: no registration needed).  The UUID is a name-based UUID
(version 5) of a fixed project name, so the root never changes between
installations and anyone can recompute it::

    uuid.uuid5(uuid.NAMESPACE_URL, "urn:project:covid-cxr-assistant:dicom-uid-root")
    -> e82a601b-4551-52cf-ad08-ae031a8b3547
    -> 2.25.308600920762094063453636952963351786823

Every new Study/Series/SOP Instance UID is that root, a dot, and a random
decimal suffix filling the 64 characters DICOM allows (pydicom's
``generate_uid``, about 63 bits of randomness).  ``DEVICE_UID`` (root + ``.1``)
identifies this program as the SR's observing device."""

from __future__ import annotations

import uuid

from pydicom.uid import generate_uid

_PROJECT_NAME = "urn:project:covid-cxr-assistant:dicom-uid-root"
UID_ROOT = "2.25." + str(uuid.uuid5(uuid.NAMESPACE_URL, _PROJECT_NAME).int)
DEVICE_UID = UID_ROOT + ".1"


def new_uid() -> str:
    """A new, unique UID under the project root (at most 64 characters)."""
    return str(generate_uid(prefix=UID_ROOT + ".", entropy_srcs=None))


def is_project_uid(uid: str) -> bool:
    return str(uid).startswith(UID_ROOT + ".")


__all__ = ["UID_ROOT", "DEVICE_UID", "new_uid", "is_project_uid"]
