"""The inspector system prompt, the per-class user prompt, and chat building.

The shipped templates are ``synspill/prompts/vlm/system.txt`` and ``user.txt`` (the
paper's prompts: a certified inspector who never guesses; "detect and return the bounding
box coordinates of <class>, if present, in COCO JSON format"). ``{targets}`` becomes the
class name(s) and ``{definitions}`` one line per class from :mod:`synspill.taxonomy`. A
user prompt (``--prompt``) is used verbatim, except that ``{targets}`` /
``{definitions}`` in it are filled in the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from synspill import taxonomy
from synspill.templates import load_text

SYSTEM_FILE = "vlm/system.txt"
USER_FILE = "vlm/user.txt"


@dataclass(frozen=True)
class PromptSet:
    """System prompt and user template, as recorded with an adapter.

    Attributes:
        system: The system message.
        user: The user template (may contain ``{targets}`` and ``{definitions}``).
    """

    system: str
    user: str

    @classmethod
    def default(cls, user: str | None = None, system: str | None = None) -> PromptSet:
        """The shipped prompts, optionally with the user's own wording."""
        return cls(system if system is not None else load_text(SYSTEM_FILE),
                   user if user is not None else load_text(USER_FILE))

    def render_user(self, class_ids: list[int] | tuple[int, ...] | None = None) -> str:
        """The user message for the given classes (None: all eight)."""
        ids = list(class_ids) if class_ids else [c.id for c in taxonomy.CLASSES]
        names = [taxonomy.BY_ID[i].name for i in ids]
        targets = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
        definitions = "\n".join(f"- {taxonomy.BY_ID[i].name}: {taxonomy.BY_ID[i].description}" for i in ids)
        if "{targets}" not in self.user and "{definitions}" not in self.user:
            return self.user
        return self.user.replace("{{", "\x00").replace("}}", "\x01").replace("{targets}", targets) \
            .replace("{definitions}", definitions).replace("\x00", "{").replace("\x01", "}")

    def to_dict(self) -> dict[str, str]:
        return {"system": self.system, "user": self.user}


def user_turn(text: str) -> dict[str, Any]:
    """A user chat turn with one image placeholder followed by ``text``."""
    return {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}


def build_chat(prompts: PromptSet, user_text: str, examples: list[str] | None = None,
               answer: str | None = None) -> list[dict[str, Any]]:
    """One conversation: system, k solved examples (ICL), the query, optionally its answer.

    Images are placeholders in order (examples first, query last); the caller passes the
    PIL images in the same order to the processor.

    Args:
        prompts: The prompt set.
        user_text: The rendered user message (same for examples and query).
        examples: Answers of the k in-context examples (model-input coordinates), or None.
        answer: The assistant's answer (training target), or None for generation.
    """
    msgs: list[dict[str, Any]] = [{"role": "system", "content": [{"type": "text", "text": prompts.system}]}]
    for ex in examples or []:
        msgs.append(user_turn(user_text))
        msgs.append({"role": "assistant", "content": [{"type": "text", "text": ex}]})
    msgs.append(user_turn(user_text))
    if answer is not None:
        msgs.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return msgs
