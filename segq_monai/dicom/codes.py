"""The coded concepts of segq's DICOM objects, and the private coding scheme ``99SEGQ`` for those DICOM lacks.

DICOM has no code for a *predicted* Dice, its interval or a quality-control flag, nor for a host bundle's own class
names. PS3.16 leaves such concepts to private coding schemes whose designator begins with ``99``; the objects that
use one declare it in their ``CodingSchemeIdentificationSequence`` (PS3.3 C.12.1.1.2): :data:`SCHEME` is that
declaration. Codes, meanings and units (UCUM ``1``: a ratio without unit):

| code | meaning |
| --- | --- |
| ``SEGQ001`` | Predicted Dice (``pred_dice``) |
| ``SEGQ002`` / ``SEGQ003`` | Predicted Dice interval lower / upper bound (``pred_dice_lo`` / ``pred_dice_hi``) |
| ``SEGQ004`` | Predicted Dice interval coverage (the promised probability that the true Dice lies in it) |
| ``SEGQ010`` | Segmentation quality flag; values ``SEGQ011`` Flagged for review, ``SEGQ012`` Accepted |
| ``SEGQ020`` | Automated segmentation quality control (the procedure reported) |
| ``SEGQ100`` | Host segmentation class (segment category) |
| ``SEGQ1nn`` | the host's class ``nn`` (segment type, meaning: its class name) |
"""

from __future__ import annotations

from highdicom.coding_schemes import CodingSchemeIdentificationItem
from highdicom.sr import CodedConcept

__all__ = [
    "ACCEPTED", "COVERAGE", "FLAG", "FLAGGED", "HOST_CLASS", "PRED_DICE", "PRED_DICE_HI", "PRED_DICE_LO",
    "PROCEDURE", "SCHEME", "SCHEME_DESIGNATOR", "UNITLESS", "class_code",
]  # fmt: skip

#: the private coding scheme's designator (PS3.16 8.2: private designators begin with ``99``)
SCHEME_DESIGNATOR = "99SEGQ"
#: its declaration, for an object's ``CodingSchemeIdentificationSequence``
SCHEME = CodingSchemeIdentificationItem(
    designator=SCHEME_DESIGNATOR, name="segq-monai segmentation quality concepts", version="1",
    responsible_organization="segq-monai developers (docs/dicom.md)",
)  # fmt: skip


def _code(value: str, meaning: str) -> CodedConcept:
    return CodedConcept(value, SCHEME_DESIGNATOR, meaning)


PRED_DICE = _code("SEGQ001", "Predicted Dice")
PRED_DICE_LO = _code("SEGQ002", "Predicted Dice interval lower bound")
PRED_DICE_HI = _code("SEGQ003", "Predicted Dice interval upper bound")
COVERAGE = _code("SEGQ004", "Predicted Dice interval coverage")
FLAG = _code("SEGQ010", "Segmentation quality flag")
FLAGGED = _code("SEGQ011", "Flagged for review")
ACCEPTED = _code("SEGQ012", "Accepted")
PROCEDURE = _code("SEGQ020", "Automated segmentation quality control")
HOST_CLASS = _code("SEGQ100", "Host segmentation class")
#: UCUM's unit of a dimensionless ratio
UNITLESS = CodedConcept("1", "UCUM", "no units")


def class_code(index: int, name: str) -> CodedConcept:
    """The segment type of the host's class ``index`` (1 to 99, 0 being the background), meaning its name."""
    if not 1 <= index <= 99:
        raise ValueError(f"class index {index} is outside 1..99; the 99SEGQ scheme codes at most 99 host classes.")
    return _code(f"SEGQ{100 + index}", name)
