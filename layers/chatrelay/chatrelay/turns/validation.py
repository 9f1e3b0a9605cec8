"""The rules a question must meet before anything is stored or sent upstream (422, field ``prompt``).

One place for every surface: the request models only fix the types, these rules need the
settings (the length limit) and apply whatever the route.
"""

from __future__ import annotations

import re

from chatrelay import errors
from chatrelay.text import is_blank

# Control characters (Unicode Cc) other than tab, line feed and carriage return.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def check_prompt(prompt: str, *, max_chars: int | None = None, field: str = "prompt") -> None:
    if is_blank(prompt):
        raise errors.InvalidRequest(f"{field}: prompt must not be blank", field=field)
    if max_chars is not None and len(prompt) > max_chars:
        raise errors.InvalidRequest(f"prompt is longer than {max_chars} characters", field=field)
    found = _CONTROL.search(prompt)
    if found:
        raise errors.InvalidRequest(f"prompt contains the control character U+{ord(found.group()):04X}", field=field)
