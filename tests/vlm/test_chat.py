"""Prompts rendered from the taxonomy; user wording kept; chat layout for ICL and training."""

from __future__ import annotations

from synspill import taxonomy
from synspill.vlm.chat import PromptSet, build_chat


def test_default_prompts_follow_the_paper_and_taxonomy():
    ps = PromptSet.default()
    assert "safety inspector" in ps.system and "never guess" in ps.system
    one = ps.render_user([3])
    assert one.startswith("Detect and return the bounding box coordinates of chemical-discoloration, if present, in COCO JSON format")
    assert taxonomy.BY_ID[3].description in one and "oil-spill" not in one
    every = ps.render_user()
    assert all(c.name in every and c.description in every for c in taxonomy.CLASSES)
    assert '[{"bbox_2d": [x1, y1, x2, y2]' in every  # literal braces survive templating


def test_user_prompt_verbatim_or_templated():
    assert PromptSet.default(user="Find leaks, JSON please.").render_user([1]) == "Find leaks, JSON please."
    assert PromptSet.default(user="Boxes of {targets}").render_user([1, 2]) == "Boxes of oil-spill or water-leak"


def test_chat_layout_for_icl_and_training():
    ps = PromptSet.default()
    chat = build_chat(ps, "q", examples=["a1", "a2"], answer="ans")
    roles = [m["role"] for m in chat]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user", "assistant"]
    assert sum(1 for m in chat for c in m["content"] if c["type"] == "image") == 3
