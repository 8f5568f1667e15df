"""License strings as sources write them -> SPDX identifiers, and the allow-list decision.

Sources spell licenses every way ("CC0 1.0", "Creative Commons Attribution 4.0", "CC-BY",
"cc-by-nc", "CC0-1.0 (Quaternius License.txt)"); datasets need one identifier per asset to
filter and attribute. Anything we cannot identify is "unknown" and is rejected, never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

UNKNOWN = "unknown"

# Identifiers written exactly as SPDX spells them, matched case-insensitively.
_SPDX_IDS = [
    "CC0-1.0",
    "CC-BY-4.0",
    "CC-BY-3.0",
    "CC-BY-2.0",
    "CC-BY-SA-4.0",
    "CC-BY-SA-3.0",
    "CC-BY-NC-4.0",
    "CC-BY-NC-3.0",
    "CC-BY-ND-4.0",
    "CC-BY-NC-SA-4.0",
    "CC-BY-NC-ND-4.0",
    "MIT",
    "Apache-2.0",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "GPL-2.0",
    "GPL-3.0",
    "LGPL-3.0",
    "MPL-2.0",
    "Unlicense",
]
_BY_LOWER = {s.lower(): s for s in _SPDX_IDS}

# Phrases, tried in order on a lower-cased, punctuation-flattened string.
_PHRASES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), spdx)
    for p, spdx in [
        (r"\bcc[ -]?0\b|creative commons zero|public domain dedication|\bpublic domain\b", "CC0-1.0"),
        (
            r"(cc|creative commons)( attribution)?[ -]?(by)?[ -]?nc[ -]?nd|noncommercial[ -]noderiv",
            "CC-BY-NC-ND",
        ),
        (
            r"(cc|creative commons)( attribution)?[ -]?(by)?[ -]?nc[ -]?sa|noncommercial[ -]sharealike",
            "CC-BY-NC-SA",
        ),
        (r"(cc|creative commons)( attribution)?[ -]?(by)?[ -]?nc\b|non ?commercial", "CC-BY-NC"),
        (r"(cc|creative commons)( attribution)?[ -]?(by)?[ -]?nd\b|no ?deriv", "CC-BY-ND"),
        (r"(cc|creative commons)( attribution)?[ -]?(by)?[ -]?sa\b|share ?alike", "CC-BY-SA"),
        (r"\bcc[ -]?by\b|creative commons attribution|\bcc attribution\b", "CC-BY"),
        (r"\bmit\b", "MIT"),
        (r"apache", "Apache-2.0"),
        (r"bsd[ -]?3|3[ -]clause bsd|new bsd|modified bsd", "BSD-3-Clause"),
        (r"bsd[ -]?2|2[ -]clause bsd|simplified bsd|freebsd", "BSD-2-Clause"),
        (r"\bunlicense\b", "Unlicense"),
        (r"\bgpl|general public license", "GPL"),
    ]
]
# A versionless CC family gets the version when one is written nearby, else the current one.
_CC_DEFAULT_VERSION = "4.0"
_VERSION = re.compile(r"\b([1-4])\.0\b|\bv?([1-4])\b(?! ?clause)")
# YouTube's "Creative Commons" option is CC BY 3.0 (YouTube help: "Creative Commons license").
_SOURCE_ALIASES = {"creativecommon": "CC-BY-3.0", "youtube": UNKNOWN}


def normalize(text: str | None) -> str:
    """Map a free-form license string to an SPDX identifier, or ``"unknown"``."""
    if not text or not text.strip():
        return UNKNOWN
    raw = text.strip()
    if raw.lower() in _SOURCE_ALIASES:
        return _SOURCE_ALIASES[raw.lower()]
    # "CC0-1.0 (Quaternius License.txt)": an exact SPDX id followed by a note.
    first = re.split(r"[\s(,;]", raw, maxsplit=1)[0].lower()
    if first in _BY_LOWER:
        return _BY_LOWER[first]
    flat = re.sub(r"[_/.,;:()\[\]]+", " ", raw.lower()).replace("  ", " ")
    flat_with_dots = re.sub(r"[_/,;:()\[\]]+", " ", raw.lower())
    for pattern, spdx in _PHRASES:
        if not pattern.search(flat):
            continue
        if not spdx.startswith("CC-"):
            return spdx
        match = _VERSION.search(flat_with_dots)
        version = f"{match.group(1) or match.group(2)}.0" if match else _CC_DEFAULT_VERSION
        candidate = f"{spdx}-{version}"
        return _BY_LOWER.get(candidate.lower(), candidate)
    return UNKNOWN


@dataclass(frozen=True)
class LicenseDecision:
    spdx: str
    allowed: bool
    reason: str | None  # why it was rejected


def decide(text: str | None, allowlist: Iterable[str]) -> LicenseDecision:
    spdx = normalize(text)
    allowed = {a.lower() for a in allowlist}
    if spdx.lower() in allowed:
        return LicenseDecision(spdx, True, None)
    if spdx == UNKNOWN:
        return LicenseDecision(spdx, False, "license unknown")
    return LicenseDecision(spdx, False, f"license {spdx} not in the allow-list")
