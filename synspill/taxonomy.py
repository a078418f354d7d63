"""The eight-class spill taxonomy, in one place, used everywhere.

COCO category ids are 1..8 in this order; YOLO class indices are ``id - 1``. The
descriptions double as VLM prompt text. The paper names ``oil-spill``, ``floor-stain``
and ``chemical-discoloration``; the other five are what a plant safety team logs most.
"""

from __future__ import annotations

from dataclasses import dataclass

from synspill.errors import UsageError


@dataclass(frozen=True)
class SpillClass:
    """One taxonomy class."""

    id: int
    name: str
    description: str


CLASSES: tuple[SpillClass, ...] = (
    SpillClass(1, "oil-spill", "dark brown or black oil, fuel or lubricant pooled or smeared on a surface, often glossy"),
    SpillClass(2, "water-leak", "clear water puddle or wet patch that darkens the floor and reflects lights"),
    SpillClass(3, "chemical-discoloration", "coloured chemical spill or discoloured patch (yellow, green, blue, white crust) on floor or equipment"),
    SpillClass(4, "floor-stain", "dried stain, residue or tide mark left on the floor after a past spill"),
    SpillClass(5, "coolant-leak", "green, pink or orange coolant or glycol leaking from pumps, hoses or joints"),
    SpillClass(6, "rust-stain", "orange-brown rust or corrosion run-off streaks below pipes, flanges and tanks"),
    SpillClass(7, "grease-smear", "thick dark grease smeared or dripped around bearings, gears and valves"),
    SpillClass(8, "powder-spill", "dry powder or granular material (dust, cement, salt, pellets) spread on the floor"),
)

NAMES: tuple[str, ...] = tuple(c.name for c in CLASSES)
BY_ID: dict[int, SpillClass] = {c.id: c for c in CLASSES}
BY_NAME: dict[str, SpillClass] = {c.name: c for c in CLASSES}

# Loose spellings seen in annotation tools and VLM answers -> taxonomy names.
ALIASES: dict[str, str] = {
    "oil": "oil-spill", "oil spill": "oil-spill", "oil_spill": "oil-spill", "fuel": "oil-spill",
    "water": "water-leak", "water leak": "water-leak", "water_leak": "water-leak", "wet floor": "water-leak",
    "wet-floor": "water-leak", "wet_floor": "water-leak", "puddle": "water-leak", "leak": "water-leak",
    "chemical": "chemical-discoloration", "chemical spill": "chemical-discoloration",
    "chemical_discoloration": "chemical-discoloration", "discoloration": "chemical-discoloration",
    "stain": "floor-stain", "floor stain": "floor-stain", "floor_stain": "floor-stain",
    "coolant": "coolant-leak", "coolant leak": "coolant-leak", "coolant_leak": "coolant-leak", "glycol": "coolant-leak",
    "rust": "rust-stain", "rust stain": "rust-stain", "rust_stain": "rust-stain", "corrosion": "rust-stain",
    "grease": "grease-smear", "grease smear": "grease-smear", "grease_smear": "grease-smear",
    "powder": "powder-spill", "powder spill": "powder-spill", "powder_spill": "powder-spill", "dust": "powder-spill",
}


def normalize_name(label: str) -> str | None:
    """Map a free-text label to a taxonomy name, or None if it is not one.

    Matching is case-insensitive and accepts the aliases in :data:`ALIASES`.
    """
    key = label.strip().lower()
    if key in BY_NAME:
        return key
    return ALIASES.get(key) or ALIASES.get(key.replace("-", " "))


def class_id(label: str | int) -> int:
    """The COCO category id (1-8) of a name, alias or id.

    Raises:
        UsageError: ``label`` is not a taxonomy class.
    """
    if isinstance(label, int) or (isinstance(label, str) and label.isdigit()):
        i = int(label)
        if i in BY_ID:
            return i
        raise UsageError(f"class id {i} is not in the taxonomy; use 1-{len(CLASSES)}")
    name = normalize_name(label)
    if name is None:
        raise UsageError(f"class {label!r} is not in the taxonomy; use one of: {', '.join(NAMES)}")
    return BY_NAME[name].id


def parse_classes(spec: str | list[str] | None) -> list[int] | None:
    """Parse ``--classes oil-spill,water-leak`` (names, aliases or ids) into sorted ids."""
    if spec is None:
        return None
    parts = spec if isinstance(spec, list) else [spec]
    items = [p.strip() for part in parts for p in part.split(",") if p.strip()]
    return sorted({class_id(p) for p in items}) if items else None


def coco_categories() -> list[dict]:
    """The taxonomy as COCO ``categories`` records."""
    return [{"id": c.id, "name": c.name, "supercategory": "spill"} for c in CLASSES]
