"""Which direction an answer states: a keyword parse onto the Evidence Inference labels.

Evidence Inference labels each prompt ``significantly increased``, ``significantly decreased``
or ``no significant difference``. ``parse_label`` reads the same out of a free-text answer:
no-difference phrases win (``"no significant increase"`` says no difference), then increase and
decrease words; an answer with both directions, or none, states no direction (``None``).
Words like "improved" or "worse" are not read as a direction: whether an improvement is an
increase depends on the outcome.

Example:
    >>> parse_label("Pain was significantly lower with aspirin than with placebo.")
    'significantly decreased'
    >>> parse_label("There was no significant difference in mortality.")
    'no significant difference'
    >>> parse_label("The context does not say.") is None
    True
"""

from __future__ import annotations

import re

INCREASED = "significantly increased"
DECREASED = "significantly decreased"
NO_DIFFERENCE = "no significant difference"
LABELS = (INCREASED, DECREASED, NO_DIFFERENCE)

_NO_DIFF = re.compile(
    r"\b(no|not|nor|without|neither)\b[\w\s,-]{0,40}?\b(significant(ly)?|statistical(ly)?|meaningful|notabl[ey]|"
    r"difference|differ(ed|ent)?|change[ds]?|effect)\b"
    r"|\b(similar|comparable|unchanged|equivalent|did not differ|no difference|non-?significant|insignificant)\b",
    re.IGNORECASE,
)
_UP = re.compile(
    r"\b(increas\w*|higher|greater|rais\w*|rose|elevat\w*|boost\w*|larger|longer)\b",
    re.IGNORECASE,
)
_DOWN = re.compile(
    r"\b(decreas\w*|lower\w*|fewer|reduc\w*|declin\w*|drop\w*|fell|fall\w*|diminish\w*|smaller|shorter)\b",
    re.IGNORECASE,
)
_NOT_SAY = re.compile(r"\b(does not say|doesn't say|not (stated|reported|mentioned)|cannot be determined)\b", re.I)


def normalise_label(label: str) -> str | None:
    """A dataset label mapped onto ``LABELS`` (``None`` for anything else)."""
    text = " ".join(label.lower().split())
    if "increase" in text:
        return INCREASED
    if "decrease" in text:
        return DECREASED
    if "no significant" in text or "no difference" in text:
        return NO_DIFFERENCE
    return None


def parse_label(answer: str) -> str | None:
    """The direction an answer states, as one of ``LABELS``, or ``None`` when it states none (or both)."""
    text = " ".join(str(answer).split())
    if not text or _NOT_SAY.search(text):
        return None
    if _NO_DIFF.search(text):
        return NO_DIFFERENCE
    up, down = bool(_UP.search(text)), bool(_DOWN.search(text))
    if up and not down:
        return INCREASED
    if down and not up:
        return DECREASED
    return None


def label_correct(answer: str, reference_label: str) -> float | None:
    """1.0 / 0.0 when the answer states a direction and the reference has a label; ``None`` otherwise."""
    predicted, truth = parse_label(answer), normalise_label(reference_label)
    if predicted is None or truth is None:
        return None
    return 1.0 if predicted == truth else 0.0
