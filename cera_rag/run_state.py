"""Resumable training state: model, optimizer and scheduler in ``<output_dir>.run/``, never pickle.

The folder holds ``model/`` (the model's own ``save_pretrained``), ``optimizer.safetensors``
(every tensor of the optimizer state), ``state.json`` (counters, history, scalar optimizer state,
scheduler) and the run's config (written last, so its presence marks a complete state). A save
writes ``<run>.tmp``, moves ``<run>`` to ``<run>.old`` and ``<run>.tmp`` to ``<run>``; ``recover``
completes a save that a kill cut short between those renames.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import yaml

from cera_rag.atomic import write_text
from cera_rag.errors import CheckpointError

log = logging.getLogger(__name__)

#: Written last by ``RunState.save``: its presence marks a complete state.
CONFIG_FILE = "train_config.yaml"


def run_dir_for(output_dir: Path) -> Path:
    """Where the run that writes ``output_dir`` keeps its resumable state: ``<output_dir>.run``."""
    return output_dir.with_name(output_dir.name + ".run")


def checkpoint_finished(output_dir: Path, model_file: str | None = None) -> bool:
    """``output_dir`` holds a model whose training run is not still unfinished.

    A model is ``model_file`` when given (a reader's heads), else a config and safetensors weights.
    """
    if model_file is not None:
        has_model = (output_dir / model_file).is_file()
    else:
        has_model = (output_dir / "config.json").is_file() and any(output_dir.glob("*.safetensors"))
    return has_model and not RunState(run_dir_for(output_dir)).unfinished


class RunState:
    """The resumable state of one training run, kept in ``run_dir``."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    @property
    def exists(self) -> bool:
        return (self.run_dir / "state.json").is_file()

    @property
    def model_dir(self) -> Path:
        return self.run_dir / "model"

    @property
    def unfinished(self) -> bool:
        """A saved state that stopped before the run's last step.

        The best epoch so far is already in ``output_dir`` then, so a finished-looking checkpoint
        can be an intermediate one: whoever skips finished runs must resume these. States saved
        before ``total`` was recorded are judged by their config's ``epochs`` and ``max_steps``.
        """
        if not self.exists:
            return False
        try:
            state = json.loads((self.run_dir / "state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CheckpointError(
                f"Cannot read the resumable state in {self.run_dir}: {exc}. Delete that folder to start afresh."
            ) from exc
        if "total" in state:
            return int(state["step"]) < int(state["total"])
        config_path = self.run_dir / CONFIG_FILE
        config = yaml.safe_load(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
        max_steps = (config or {}).get("max_steps")
        if max_steps and int(state["step"]) >= int(max_steps):
            return False
        return int(state["epoch"]) < int((config or {}).get("epochs", 1))

    def save(
        self,
        save_model: Callable[[Path], None],
        save_config: Callable[[Path], None],
        opt: torch.optim.Optimizer,
        sched: Any,
        state: dict[str, Any],
    ) -> None:
        """Write model, optimizer tensors (safetensors), counters (JSON) and config, swapping the folder in."""
        from safetensors.torch import save_file

        tmp = self.run_dir.with_name(self.run_dir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_model(tmp / "model")
        tensors: dict[str, torch.Tensor] = {}
        opt_state = opt.state_dict()
        scalars: dict[str, Any] = {"param_groups": opt_state["param_groups"], "state": {}}
        for pid, st in opt_state["state"].items():
            scalars["state"][str(pid)] = {}
            for name, value in st.items():
                if torch.is_tensor(value) and value.dim() > 0:
                    tensors[f"{pid}.{name}"] = value.contiguous().cpu()
                else:
                    scalars["state"][str(pid)][name] = float(value)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        payload = {**state, "optimizer": scalars, "scheduler": sched.state_dict()}
        (tmp / "state.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
        save_config(tmp / CONFIG_FILE)
        old = self.run_dir.with_name(self.run_dir.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if self.run_dir.exists():
            self.run_dir.rename(old)
        tmp.rename(self.run_dir)
        shutil.rmtree(old, ignore_errors=True)

    def load(self, opt: torch.optim.Optimizer, sched: Any) -> dict[str, Any]:
        """Restore optimizer and scheduler in place; returns the counters and history."""
        from safetensors.torch import load_file

        try:
            payload = json.loads((self.run_dir / "state.json").read_text(encoding="utf-8"))
            tensors = load_file(str(self.run_dir / "optimizer.safetensors"))
        except (OSError, ValueError) as exc:
            raise CheckpointError(
                f"Cannot resume from {self.run_dir}: {exc}. Delete that folder to start afresh."
            ) from exc
        scalars = payload.pop("optimizer")
        state: dict[int, dict[str, Any]] = {}
        for pid, values in scalars["state"].items():
            state[int(pid)] = {k: torch.tensor(v) for k, v in values.items()}
        for key, value in tensors.items():
            pid, name = key.split(".", 1)
            state.setdefault(int(pid), {})[name] = value
        opt.load_state_dict({"state": state, "param_groups": scalars["param_groups"]})
        sched.load_state_dict(payload.pop("scheduler"))
        return dict(payload)

    def recover(self) -> None:
        """Complete a ``save`` that a kill cut short between its two renames.

        Killed in between, ``<run>`` is missing: the new state is used if it is complete (its
        config is written last), else the previous one.
        """
        if self.exists:
            return
        tmp = self.run_dir.with_name(self.run_dir.name + ".tmp")
        old = self.run_dir.with_name(self.run_dir.name + ".old")
        for candidate, complete in ((tmp, tmp / CONFIG_FILE), (old, old / "state.json")):
            if complete.is_file():
                shutil.rmtree(self.run_dir, ignore_errors=True)
                candidate.rename(self.run_dir)
                log.warning("Recovered the resumable state of %s from %s", self.run_dir, candidate.name)
                break
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def trim_log(path: Path, step: int) -> None:
    """Keep the log records up to ``step``, the checkpoint a run resumes from.

    A killed run may have logged steps past its last checkpoint, or left a line cut short; the
    resumed run logs those steps again, so the log holds every step once.
    """
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        at = record.get("step", record.get("eval", {}).get("step")) if isinstance(record, dict) else None
        if isinstance(at, int) and at <= step:
            kept.append(line + "\n")
    write_text(path, "".join(kept))


def adamw_groups(module: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: no weight decay on biases and LayerNorm weights."""
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    return [
        {"params": [p for n, p in module.named_parameters() if not n.endswith(no_decay)], "weight_decay": weight_decay},
        {"params": [p for n, p in module.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
    ]


@contextlib.contextmanager
def sigint_sets_interrupted(trainer: Any) -> Iterator[None]:
    """Ctrl-C sets ``trainer._interrupted`` (the loop stops after the current step) instead of raising."""

    def on_sigint(signum: int, frame: Any) -> None:
        trainer._interrupted = True

    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
