"""The edit directions of ISTRC's figures and edit scores (spec "Data: Transformations").

Each edited attribute has the target y of its "add" direction and the spec's name for it: Young's
y = 0 is "older", Narrow_Eyes' y = 0 "bigger eyes", No_Beard's y = 1 "less beard"; the others add
the attribute (y = 1). An attribute outside the table is added (y = 1). The figure sets are the
paper's Fig. 1 (makeup, bigger lips, mustache) and Fig. 2 (-beard, +makeup, +mustache,
+attractive, +smile); Fig. 11's confounds add makeup to men and a beard to women (No_Beard -> 0).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CONFOUNDS", "DIRECTIONS", "FIGURE_SETS", "Confound", "direction_name", "target_of"]

#: attribute -> (target y of the edit, the spec's name of the edit)
DIRECTIONS: dict[str, tuple[int, str]] = {
    "Male": (1, "+male"),
    "Smiling": (1, "+smile"),
    "Mouth_Slightly_Open": (1, "+open mouth"),
    "No_Beard": (1, "-beard"),
    "Mustache": (1, "+mustache"),
    "Big_Nose": (1, "+bigger nose"),
    "Young": (0, "+older"),
    "Big_Lips": (1, "+bigger lips"),
    "Narrow_Eyes": (0, "+bigger eyes"),
    "Attractive": (1, "+attractive"),
    "Heavy_Makeup": (1, "+makeup"),
}
#: The attribute rows of Fig. 1 (one person each set): the paper's Figs. 1 and 2.
FIGURE_SETS: tuple[tuple[str, ...], ...] = (
    ("Heavy_Makeup", "Big_Lips", "Mustache"),
    ("No_Beard", "Heavy_Makeup", "Mustache", "Attractive", "Smiling"),
)


@dataclass(frozen=True)
class Confound:
    """One row group of Fig. 5: edit ``attribute`` towards ``target`` on inputs with ``Male`` =
    ``male``; the judge's Male probability is drawn along the strip."""

    attribute: str
    target: int
    male: int
    title: str


CONFOUNDS = (
    Confound("Heavy_Makeup", 1, 1, "+makeup on men"),
    Confound("No_Beard", 0, 0, "+beard on women"),
)


def target_of(attribute: str) -> int:
    """The target y of ``attribute``'s edit (1 for an attribute outside ``DIRECTIONS``)."""
    return DIRECTIONS.get(attribute, (1, ""))[0]


def direction_name(attribute: str, target: int | None = None) -> str:
    """``+makeup``, ``-beard``, ``+older``; ``Attr -> y`` outside the table or for the other y."""
    known, name = DIRECTIONS.get(attribute, (None, ""))
    target = target_of(attribute) if target is None else target
    return name if known == target and name else f"{attribute} -> {target}"
