"""Natural-language questions from an (intervention, comparator, outcome) prompt.

People ask in many ways; a retriever trained on one template learns the template. Training
samples a phrasing per example each epoch (``TRAIN_TEMPLATES``); validation can hold some
phrasings out (``HELDOUT_TEMPLATES``) to show that the model generalises to unseen wording.
"""

from __future__ import annotations

import random
import re

from cera_rag.data.reader import Prompt

#: The CERA paper's query form.
PAPER_TEMPLATE = "compare the effect of {intervention} versus {comparator} on {outcome}"
#: The Evidence Inference annotation interface's form.
UPSTREAM_TEMPLATE = (
    "With respect to {outcome}, characterize the reported difference between {intervention} "
    "and those receiving {comparator}."
)

TRAIN_TEMPLATES: tuple[str, ...] = (
    PAPER_TEMPLATE,
    UPSTREAM_TEMPLATE,
    "What was the effect of {intervention} compared with {comparator} on {outcome}?",
    "Did {intervention} change {outcome} compared to {comparator}?",
    "How did {outcome} differ between {intervention} and {comparator}?",
    "{outcome}: {intervention} vs {comparator}",
    "Is {intervention} better than {comparator} for {outcome}?",
    "Effect of {intervention} versus {comparator} on {outcome}",
    "Was there a significant difference in {outcome} with {intervention} versus {comparator}?",
)

#: Phrasings never used in training: evaluating on them measures robustness to new wording.
HELDOUT_TEMPLATES: tuple[str, ...] = (
    "Does {intervention} improve or worsen {outcome} relative to {comparator}?",
    "What happened to {outcome} in patients given {intervention} rather than {comparator}?",
    "{intervention} or {comparator}: which works better on {outcome}?",
)

ALL_TEMPLATES = TRAIN_TEMPLATES + HELDOUT_TEMPLATES

_SPACES = re.compile(r"\s+")


def render(template: str, prompt: Prompt) -> str:
    """Fill a template with a prompt's fields (whitespace collapsed)."""
    text = template.format(
        intervention=prompt.intervention.strip(),
        comparator=prompt.comparator.strip(),
        outcome=prompt.outcome.strip(),
    )
    return _SPACES.sub(" ", text).strip()


def phrasings(prompt: Prompt, templates: tuple[str, ...] = TRAIN_TEMPLATES) -> list[str]:
    """Every phrasing of ``prompt`` under ``templates``, in template order."""
    return [render(t, prompt) for t in templates]


def sample_query(prompt: Prompt, rng: random.Random, templates: tuple[str, ...] = TRAIN_TEMPLATES) -> str:
    """One phrasing chosen at random (training samples a new one each epoch)."""
    return render(rng.choice(templates), prompt)
