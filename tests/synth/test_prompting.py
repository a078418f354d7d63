"""Prompt sets and deterministic prompt selection."""

from __future__ import annotations

import pytest

from synspill import taxonomy
from synspill.errors import UsageError
from synspill.synth import prompting

PAPER_SCENE_START = "A factory interior, close-up of industrial equipment, image captured via a colored"
PAPER_SCENE_END = "accurate machinery components, subtle equipment variations, realistic wear and tear."
PAPER_OIL_START = "Realistic oil spill in factory with brown or black stains, industrial scene with dark oil"
PAPER_OIL_NEG_END = "human figures, fingers, deformed body parts, 3D render, CGI, artifact, sketch."
TYPES = ["corridor", "control-room", "pump-room", "walkway", "tank-farm", "loading-bay", "compressor-hall", "workshop"]


def test_shipped_scene_prompts_hold_the_paper_prompt_and_all_types():
    p = prompting.load_scene_prompts()
    assert p["positive"].startswith(PAPER_SCENE_START) and p["positive"].endswith(PAPER_SCENE_END)
    assert p["negative"].startswith("Text, watermark, low quality") and p["negative"].endswith("artificial appearance.")
    assert prompting.scene_types(p) == TYPES


def test_shipped_spill_prompts_cover_the_taxonomy():
    p = prompting.load_spill_prompts()
    assert set(p) == set(taxonomy.NAMES)
    assert p["oil-spill"]["positive"][0].startswith(PAPER_OIL_START)
    assert p["oil-spill"]["negative"].startswith("Cartoon, anime") and p["oil-spill"]["negative"].endswith(PAPER_OIL_NEG_END)
    assert all(len(v["positive"]) >= 2 and v["negative"] for v in p.values())


def test_choices_are_deterministic_and_vary_with_seed():
    p = prompting.load_scene_prompts()
    a = prompting.scene_prompt(p, "pump-room", 7)
    assert a == prompting.scene_prompt(p, "pump-room", 7)
    assert a[0].endswith(p["positive"]) and a[0] != p["positive"] and a[1] == p["negative"]
    assert len({prompting.scene_prompt(p, "pump-room", s)[0] for s in range(40)}) == 3  # all variations reached
    assert prompting.scene_prompt(p, None, 3) == (p["positive"], p["negative"])
    assert set(prompting.pick_scene_type(p, s) for s in range(200)) == set(TYPES)
    sp = prompting.load_spill_prompts()
    assert prompting.spill_prompt(sp, "rust", 4) == prompting.spill_prompt(sp, 6, 4)
    vals = [prompting.sample_uniform((0.2, 0.4), s, "lora-scale") for s in range(100)]
    assert all(0.2 <= v <= 0.4 for v in vals) and len(set(vals)) == 100
    assert prompting.sample_uniform((0.5, 0.5), 1, "x") == 0.5
    # independent streams: the salt changes the draw, the seed alone does not decide it
    assert prompting.sample_uniform((0, 1), 5, "a") != prompting.sample_uniform((0, 1), 5, "b")
    assert prompting.rng_for(5, "a").random() == prompting.rng_for(5, "a").random()


@pytest.mark.parametrize(("call", "match"), [
    (lambda: prompting.scene_prompt(prompting.load_scene_prompts(), "beach", 0), "not in the scene prompts"),
    (lambda: prompting.spill_prompt(prompting.load_spill_prompts(), "lava", 0), "not in the taxonomy"),
    (lambda: prompting.sample_uniform((0.4, 0.2), 0, "x"), "low end"),
    (lambda: prompting.choose([], 0, "refs"), "empty"),
])
def test_errors(call, match):
    with pytest.raises(UsageError, match=match):
        call()


def test_user_files(tmp_path):
    f = tmp_path / "spills.toml"
    f.write_text('[oil-spill]\npositive = "black goo"\nnegative = "cartoon"\n')
    p = prompting.load_spill_prompts(str(f))
    assert prompting.spill_prompt(p, 1, 0) == ("black goo", "cartoon")
    assert p["water-leak"] == prompting.load_spill_prompts()["water-leak"]  # shipped fallback
    bad = tmp_path / "bad.toml"
    bad.write_text('[lava]\npositive = ["x"]\n')
    with pytest.raises(UsageError, match="not a taxonomy class"):
        prompting.load_spill_prompts(str(bad))
    scene = tmp_path / "scene.toml"
    scene.write_text('positive = "x"\n')
    with pytest.raises(UsageError, match="negative"):
        prompting.load_scene_prompts(str(scene))
