"""Uniform weight averaging of CERA checkpoints: a "model soup".

Wortsman et al., "Model soups: averaging weights of multiple fine-tuned models improves accuracy
without increasing inference time", ICML 2022 (arXiv 2203.05482). Checkpoints fine-tuned from the
same base encoder with the same recipe (here: the same preset, different seeds) tend to sit in one
basin of the loss, so the average of their weights

    theta_soup = (1 / n) * sum_i theta_i

is one encoder, as fast as each of them, that often scores above every ingredient. Averaging
checkpoints that started from *different* weights gives noise, so the architecture, the encoder
settings and the tokenizer must match, and the soup is only as good as a validation run says (on
the `best` preset's three seeds it scored as an average seed, no better: README, Retrieval).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from cera_rag.errors import CheckpointError
from cera_rag.model import CERAEncoder

#: Written beside the weights: which checkpoints went into the soup.
SOUP_FILE = "soup.json"


def _settings(encoder: CERAEncoder) -> dict[str, object]:
    # base_model names the folder each checkpoint was loaded from; every other setting must match.
    return encoder.config.model_dump(exclude={"base_model"})


def average_state_dicts(
    state_dicts: Sequence[dict[str, torch.Tensor]], names: Sequence[str]
) -> dict[str, torch.Tensor]:
    """The element-wise mean of floating-point tensors; other tensors (ids, buffers) must be equal.

    Raises:
        CheckpointError: The checkpoints hold different tensor names or shapes, or differ in a
            non-float tensor (they are not the same architecture).
    """
    first, first_name = state_dicts[0], names[0]
    soup: dict[str, torch.Tensor] = {}
    for state, name in zip(state_dicts[1:], names[1:], strict=True):
        if state.keys() != first.keys():
            only = sorted(set(state) ^ set(first))[:3]
            raise CheckpointError(
                f"{name} and {first_name} hold different weights ({', '.join(only)} ...): a soup averages "
                "checkpoints of one architecture, fine-tuned from the same base encoder."
            )
    for key, tensor in first.items():
        others = [state[key] for state in state_dicts[1:]]
        for other, name in zip(others, names[1:], strict=True):
            if other.shape != tensor.shape:
                raise CheckpointError(
                    f"{key} has shape {tuple(other.shape)} in {name} and {tuple(tensor.shape)} in {first_name}."
                )
        if tensor.is_floating_point():
            # Accumulate in float64 so the order of the checkpoints does not change the result.
            total = tensor.double().clone()
            for other in others:
                total += other.double()
            soup[key] = (total / len(state_dicts)).to(tensor.dtype)
        else:
            for other, name in zip(others, names[1:], strict=True):
                if not torch.equal(other, tensor):
                    raise CheckpointError(f"{key} differs between {name} and {first_name}; it cannot be averaged.")
            soup[key] = tensor.clone()
    return soup


def average_checkpoints(paths: Sequence[str | os.PathLike[str]], output_dir: str | os.PathLike[str]) -> CERAEncoder:
    """Average the weights of ``paths`` (two or more cera-rag checkpoints) into ``output_dir``.

    The soup keeps the first checkpoint's tokenizer and encoder settings (all must agree), is
    written through ``CERAEncoder.save_pretrained`` (atomic folder swap) and lists its
    ingredients in ``soup.json``.

    Example:
        >>> average_checkpoints(  # doctest: +SKIP
        ...     [f"checkpoints/rows/07h_best_3epochs_lambda1-s{s}" for s in (42, 43, 44)], "checkpoints/cera-soup"
        ... )

    Raises:
        CheckpointError: Fewer than two checkpoints, a checkpoint that cannot be loaded, or
            checkpoints whose settings, tokenizers or weights do not line up.
    """
    sources = [Path(p) for p in paths]
    if len(sources) < 2:
        raise CheckpointError(f"A soup needs two or more checkpoints to average; got {len(sources)}.")
    if len({p.resolve() for p in sources}) != len(sources):
        raise CheckpointError("The same checkpoint is listed twice; a soup averages distinct fine-tuned checkpoints.")
    encoders = [CERAEncoder.from_pretrained(p) for p in sources]
    base, names = encoders[0], [str(p) for p in sources]
    for encoder, name in zip(encoders[1:], names[1:], strict=True):
        if _settings(encoder) != _settings(base):
            raise CheckpointError(
                f"{name} and {names[0]} have different encoder settings ({_settings(encoder)} vs "
                f"{_settings(base)}); average checkpoints trained with one recipe."
            )
        if encoder.tokenizer.get_vocab() != base.tokenizer.get_vocab():
            raise CheckpointError(f"{name} and {names[0]} use different tokenizers; they cannot be averaged.")
    soup = average_state_dicts([e.model.state_dict() for e in encoders], names)
    base.model.load_state_dict(soup)
    provenance = {"method": "uniform weight average", "checkpoints": names}
    base.save_pretrained(output_dir, extra_files={SOUP_FILE: json.dumps(provenance, indent=1)})
    return CERAEncoder.from_pretrained(output_dir)


__all__ = ["SOUP_FILE", "average_checkpoints", "average_state_dicts"]
