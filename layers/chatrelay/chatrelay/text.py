"""Text facts several modules need: which characters show nothing at all.

Unicode's Default_Ignorable_Code_Point set (DerivedCoreProperties.txt): zero-width
spaces and joiners, bidi controls, soft hyphen, variation selectors, tags, fillers.
They render as nothing, so a prompt made only of them (and white space) is blank, and
a forbidden word with one inside is still that word.
"""

from __future__ import annotations

import re

DEFAULT_IGNORABLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f"
    "\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0000-\U000e0fff]"
)


def is_blank(text: str) -> bool:
    """Nothing but white space and default-ignorable code points."""
    return not DEFAULT_IGNORABLE.sub("", text).strip()
