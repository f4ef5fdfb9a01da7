"""CERAReader: a cross-encoder that scores a (question, passage) pair and marks its evidence words.

A bi-encoder embeds a passage without its question, so its attention spans are the same for
every question. The reader reads both in one forward pass (``[CLS] question [SEP] passage
[SEP]``) and has two heads on the encoder's token states:

* a **relevance head** on ``[CLS]``: one logit, higher = the passage reports the answer;
* a **token head** on every passage token: the probability that the token lies in the human
  evidence for *this* question.

Trained on the human evidence spans of the train split (``cera_rag.reader_train``), it re-ranks
the bi-encoder's top passages and returns per-question evidence spans (``evidence_spans``):
character offsets into each passage, adjacent words merged into phrases.

Checkpoints are a Hugging Face encoder folder (safetensors), its tokenizer,
``reader_heads.safetensors`` and ``cera_reader_config.json``; the same safety checks as
``CERAEncoder`` apply (safetensors only, no remote code).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from cera_rag.atomic import replace_dir
from cera_rag.errors import CheckpointError, ConfigError
from cera_rag.model import (
    _TOKENIZER_LOCK,
    CONFIG_NAME,
    READER_CONFIG_NAME,
    RationaleSpan,
    TruncationWarning,
    _words,
    check_model_folder,
    check_output_dir,
    length_sorted_batches,
    load_backbone,
    merge_words,
    token_lengths,
)

#: Safetensors file holding the two heads.
HEADS_NAME = "reader_heads.safetensors"
ReaderBackend = Literal["torch", "onnx", "onnx-int8"]
READER_BACKENDS: tuple[str, ...] = ("torch", "onnx", "onnx-int8")
#: Pairs per forward pass. A first stage's candidates differ a lot in length, and small length-sorted
#: batches pad least: re-ranking 20 candidates on the 2-core CPU took p50 189 ms in batches of 4 against
#: 262 ms in batches of 16 (onnx-int8; torch 265 vs 285 ms, onnx 307 vs 408 ms; 30 validation questions).
READ_BATCH_SIZE = 4


class ReaderConfig(BaseModel):
    """How a reader truncates its input; saved as ``cera_reader_config.json``."""

    model_config = ConfigDict(extra="ignore")

    max_length: int = Field(256, ge=16, description="Tokens of question + passage (the passage is cut first).")
    max_query_length: int = Field(64, ge=4, description="The question is cut to this many tokens first.")
    base_model: str | None = None
    layers: int | None = Field(None, ge=1, description="Encoder layers kept (None: all; fewer = faster).")


class ReaderHeads(nn.Module):
    """Relevance logit from the ``[CLS]`` state and an evidence logit per token."""

    def __init__(self, hidden: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.relevance = nn.Linear(hidden, 1)
        self.token = nn.Linear(hidden, 1)

    def forward(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.dropout(states)  # (B, T, h)
        return self.relevance(x[:, 0]).squeeze(-1), self.token(x).squeeze(-1)  # (B,), (B, T)


@dataclass
class PairBatch:
    """Tokenised (question, passage) pairs; ``offsets`` are into the passage, (0, 0) elsewhere."""

    inputs: dict[str, torch.Tensor]
    offsets: np.ndarray  # (B, T, 2)
    passage_mask: np.ndarray  # (B, T) bool: passage tokens
    truncated: int


@dataclass
class ReadResult:
    """What the reader says about each passage, in input order."""

    scores: np.ndarray  # (n,) float32 relevance logits
    words: list[list[tuple[int, int]]]  # per passage: (start, end) of each word the reader saw
    probabilities: list[np.ndarray]  # per passage: (n_words,) evidence probability of each word

    def spans(
        self, texts: Sequence[str], top_fraction: float = 0.2, threshold: float | None = None
    ) -> list[list[RationaleSpan]]:
        """Evidence spans of each passage (see ``CERAReader.evidence_spans``)."""
        return [
            evidence_spans_from_words(t, w, p, top_fraction, threshold)
            for t, w, p in zip(texts, self.words, self.probabilities, strict=True)
        ]


def evidence_spans_from_words(
    text: str,
    words: Sequence[tuple[int, int]],
    probabilities: np.ndarray,
    top_fraction: float = 0.2,
    threshold: float | None = None,
) -> list[RationaleSpan]:
    """Evidence spans from word probabilities: the top ``top_fraction`` words, or those above ``threshold``.

    A span's ``weight`` is its share of the passage's evidence probability mass (the sum over its
    words divided by the sum over all words), so the weights of all spans sum to at most 1.
    """
    if not words:
        return []
    probs = np.asarray(probabilities, dtype=np.float64)
    total = probs.sum()
    if total <= 0 or not np.isfinite(total):
        return []
    if threshold is not None:
        keep = np.nonzero(probs > threshold)[0].tolist()
    else:
        k = max(1, int(math.ceil(top_fraction * len(words))))
        keep = np.argsort(-probs, kind="stable")[:k].tolist()
    return merge_words(text, words, probs / total, keep)


def _check_query(query: Any) -> str:
    if not isinstance(query, str):
        raise TypeError(f"query must be a str, not {type(query).__name__}.")
    if not query.strip():
        raise ValueError("query is empty or whitespace only; give a question with words in it.")
    return query


def standardise(x: np.ndarray) -> np.ndarray:
    """``(x - mean) / std`` (all zeros when the values are equal): puts two score scales on one footing."""
    sd = float(x.std())
    return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)


def _check_marking(top_fraction: float, threshold: float | None) -> None:
    if not 0.0 < top_fraction <= 1.0:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}.")
    if threshold is not None and not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be a probability in [0, 1), got {threshold}.")


def _check_passages(passages: Any) -> list[str]:
    if isinstance(passages, str):
        raise TypeError("passages must be a list of strings, not one string; wrap it: [text].")
    out = list(passages)
    for i, p in enumerate(out):
        if not isinstance(p, str):
            raise TypeError(f"passages[{i}] is {type(p).__name__}, not str.")
    return out


class CERAReader(nn.Module):
    """A query-aware evidence reader: relevance scores and evidence spans for (question, passage) pairs.

    Example:
        >>> reader = CERAReader.from_pretrained("checkpoints/cera-reader")  # doctest: +SKIP
        >>> reader.score("Does aspirin lower pain?", passages)  # doctest: +SKIP
        array([ 4.1, -2.3], dtype=float32)
        >>> reader.evidence_spans("Does aspirin lower pain?", passages)[0]  # doctest: +SKIP
        [RationaleSpan(start=0, end=41, text='Pain was significantly lower with aspirin', weight=0.62)]
    """

    def __init__(
        self, model: nn.Module, heads: ReaderHeads, tokenizer: Any, config: ReaderConfig, name: str = ""
    ) -> None:
        super().__init__()
        self.model: Any = model
        self.heads = heads
        self.tokenizer = tokenizer
        self.config = config
        self.name = name or (config.base_model or "cera-reader")
        self.eval()
        #: set by ``to_onnx``: the forward pass runs in ONNX Runtime
        self._onnx: Any = None

    # ------------------------------------------------------------------------------ loading
    @staticmethod
    def _local_source(name_or_path: str | os.PathLike[str]) -> tuple[str, bool]:
        from cera_rag.paths import resolve_model_path

        source = resolve_model_path(name_or_path)
        path = Path(source)
        if path.is_dir():
            return source, True
        if path.exists() or str(name_or_path).startswith((".", "/", "~")):
            raise CheckpointError(
                f"Reader directory {name_or_path} does not exist or is not a folder. Train one with "
                "`cera-rag train-reader --preset quick`."
            )
        return source, False

    @classmethod
    def from_base(
        cls, base_model: str | os.PathLike[str], device: str | torch.device | None = None, **overrides: Any
    ) -> CERAReader:
        """A new, untrained reader on a base encoder (a folder or hub id); the heads start random."""
        source, is_local = cls._local_source(base_model)
        if is_local:
            check_model_folder(Path(source))
        try:
            config = ReaderConfig(base_model=str(base_model), **{k: v for k, v in overrides.items() if v is not None})
        except ValidationError as exc:
            raise ConfigError(f"Invalid reader settings: {exc}") from exc
        model, tokenizer = load_backbone(source, str(base_model), is_local)
        model = _keep_layers(model, config.layers)
        reader = cls(model, ReaderHeads(int(model.config.hidden_size)), tokenizer, config, name=str(base_model))
        return reader.to(device) if device is not None else reader

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str],
        device: str | torch.device | None = None,
        backend: ReaderBackend = "torch",
    ) -> CERAReader:
        """Load a reader saved by ``save_pretrained`` from a folder or a hub id.

        Raises:
            CheckpointError: The folder is missing, is not a reader checkpoint (a ``CERAEncoder``
                checkpoint or a plain model), holds pickle weights only, or its files are corrupt.
            ConfigError: Unknown ``backend``.
        """
        if backend not in READER_BACKENDS:
            raise ConfigError(f"Unknown backend {backend!r}; choose one of {', '.join(READER_BACKENDS)}.")
        source, is_local = cls._local_source(name_or_path)
        if not is_local:
            source = _download(str(name_or_path))
        path = Path(source)
        check_model_folder(path)
        cfg_file = path / READER_CONFIG_NAME
        if not cfg_file.is_file():
            if (path / CONFIG_NAME).is_file():
                raise CheckpointError(
                    f"{path} is a CERAEncoder (bi-encoder) checkpoint, not a reader. Load it with "
                    "CERAEncoder.from_pretrained, or train a reader with `cera-rag train-reader`."
                )
            raise CheckpointError(
                f"{path} is not a CERAReader checkpoint (no {READER_CONFIG_NAME}). To start a reader from a "
                "base encoder, use CERAReader.from_base or `cera-rag train-reader --base-model`."
            )
        try:
            config = ReaderConfig(**json.loads(cfg_file.read_text(encoding="utf-8")))
        except (ValueError, ValidationError) as exc:
            raise CheckpointError(f"{cfg_file} is not a valid reader config ({exc}); re-save the reader.") from exc
        model, tokenizer = load_backbone(source, str(name_or_path), True)
        heads = ReaderHeads(int(model.config.hidden_size))
        heads_file = path / HEADS_NAME
        try:
            from safetensors.torch import load_file

            missing, unexpected = heads.load_state_dict(load_file(str(heads_file)), strict=False)
        except Exception as exc:  # noqa: BLE001 - missing file, torn file, wrong shapes
            raise CheckpointError(
                f"Could not read the reader heads {heads_file} ({exc}); re-save or re-train the reader."
            ) from exc
        if missing or unexpected:
            raise CheckpointError(f"{heads_file} does not hold the reader heads (missing {missing}); re-train it.")
        reader = cls(model, heads, tokenizer, config, name=str(path))
        if device is not None:
            reader.to(device)
        if backend != "torch":
            return reader.to_onnx(int8=backend == "onnx-int8")
        return reader

    def save_pretrained(self, directory: str | os.PathLike[str]) -> None:
        """Write encoder weights (safetensors), tokenizer, heads and config; the folder is replaced atomically."""
        from safetensors.torch import save_file

        target = check_output_dir(directory)

        def write(tmp: Path) -> None:
            self.model.save_pretrained(tmp, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)
            save_file({k: v.contiguous().cpu() for k, v in self.heads.state_dict().items()}, str(tmp / HEADS_NAME))
            (tmp / READER_CONFIG_NAME).write_text(self.config.model_dump_json(indent=2), encoding="utf-8")

        replace_dir(target, write)

    def to_onnx(
        self, int8: bool = False, folder: str | os.PathLike[str] | None = None, threads: int | None = None
    ) -> CERAReader:
        """A copy whose forward pass runs in ONNX Runtime on the CPU (the ``fast`` extra); inference only."""
        from cera_rag.onnx_backend import int8_file_name, quantize_onnx, session, weights_fingerprint
        from cera_rag.paths import cache_dir

        base = (
            Path(folder)
            if folder is not None
            else (
                cache_dir()
                / "onnx"
                / ("reader-" + weights_fingerprint(self.config.model_dump_json(), self.model, self.heads))
            )
        )
        fp32 = base / "reader.onnx"
        if not fp32.is_file():
            self._export(fp32)
        path = fp32
        if int8:
            path = base / int8_file_name("reader")
            if not path.is_file():
                quantize_onnx(fp32, path)
        copy = CERAReader(self.model, self.heads, self.tokenizer, self.config.model_copy(), name=self.name)
        copy._onnx = _OnnxReader(path, session(path, threads))
        return copy

    def _export(self, path: Path) -> None:
        from cera_rag.onnx_backend import export_graph

        batch = self.tokenize_pairs("what was the result", ["the results were significantly better " * 3, "no change"])
        # in the order of ``_ExportedReader.forward``'s arguments (the tokenizer's own order differs)
        inputs = {k: batch.inputs[k].cpu() for k in ("input_ids", "attention_mask", "token_type_ids")}
        if bool(inputs["attention_mask"].all()):
            raise RuntimeError("The export example must be padded, so the graph keeps the attention-mask path.")
        export_graph(
            _ExportedReader(self),
            inputs,
            {"relevance": {0: "batch"}, "token_logits": {0: "batch", 1: "tokens"}},
            path,
        )

    @property
    def backend(self) -> str:
        """``torch``, ``onnx`` or ``onnx-int8``: what runs the forward pass."""
        from cera_rag.onnx_backend import backend_name

        return backend_name(self._onnx)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Relevance logits ``(B,)`` and evidence logits ``(B, T)`` of tokenised pairs."""
        if self._onnx is not None:
            if torch.is_grad_enabled():
                raise RuntimeError("An ONNX-backed CERAReader runs inference only; use backend='torch' to train.")
            return self._onnx(input_ids, attention_mask, token_type_ids)
        kw = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, **kw)
        return self.heads(out.last_hidden_state)

    def _cut_query(self, query: str) -> str:
        """The query's first ``max_query_length`` tokens, as text (a huge query cannot crowd out the passage)."""
        with _TOKENIZER_LOCK:
            enc = self.tokenizer(
                query, add_special_tokens=False, truncation=True, max_length=self.config.max_query_length,
                return_offsets_mapping=True,
            )  # fmt: skip
        offsets = enc["offset_mapping"]
        if len(offsets) < self.config.max_query_length or not offsets:
            return query
        return query[: offsets[-1][1]]

    def tokenize_pairs(self, query: str | Sequence[str], passages: Sequence[str]) -> PairBatch:
        """Tokenise ``(query, passage)`` pairs with dynamic padding; the passage is truncated, never the query.

        ``query`` is one question for every passage, or one question per passage.
        """
        queries = [query] * len(passages) if isinstance(query, str) else list(query)
        cut = {q: self._cut_query(q) for q in set(queries)}
        with _TOKENIZER_LOCK:
            enc = self.tokenizer(
                [cut[q] for q in queries],
                list(passages),
                padding=True,
                truncation="only_second",
                max_length=self.config.max_length,
                return_offsets_mapping=True,
                return_tensors="pt",
            )
            sequence_ids = [enc.sequence_ids(i) for i in range(len(passages))]
        offsets = enc.pop("offset_mapping").numpy().copy()
        passage_mask = np.array([[s == 1 for s in ids] for ids in sequence_ids], dtype=bool)
        offsets[~passage_mask] = 0
        truncated = 0
        for row, text in enumerate(passages):
            ends = offsets[row, passage_mask[row], 1]
            if text.strip() and (ends.size == 0 or int(ends.max()) < len(text.rstrip())):
                truncated += 1
        inputs = {k: v.to(self.device) for k, v in enc.items()}
        return PairBatch(inputs, offsets, passage_mask, truncated)

    @torch.inference_mode()
    def read(self, query: str, passages: Sequence[str], batch_size: int = READ_BATCH_SIZE) -> ReadResult:
        """Relevance scores and per-word evidence probabilities of ``passages`` for ``query``.

        Raises:
            ValueError: ``query`` is empty or whitespace.
            TypeError: ``query`` is not a string or ``passages`` not a list of strings.
        """
        query = _check_query(query)
        texts = _check_passages(passages)
        scores = np.zeros(len(texts), dtype=np.float32)
        words: list[list[tuple[int, int]]] = [[] for _ in texts]
        probs: list[np.ndarray] = [np.zeros(0) for _ in texts]
        truncated = 0
        # the question is the same in every pair: the passage's own token count orders the batches
        lengths = token_lengths(self.tokenizer, texts, self.config.max_length)
        for idx in length_sorted_batches(lengths, batch_size):
            chunk = [texts[i] for i in idx]
            batch = self.tokenize_pairs(query, chunk)
            relevance, logits = self(**batch.inputs)
            token_probs = torch.sigmoid(logits.float()).cpu().numpy()
            scores[idx] = relevance.float().cpu().numpy()
            truncated += batch.truncated
            for row, i in enumerate(idx):
                groups = _words(texts[i], batch.offsets[row])
                words[i] = [(s, e) for s, e, _ in groups]
                probs[i] = np.array([float(token_probs[row, p].mean()) for _, _, p in groups], dtype=np.float64)
        if truncated:
            warnings.warn(
                f"{truncated} of {len(texts)} passages do not fit the reader's {self.config.max_length} tokens "
                "with the question and are read from their beginning only (spans stay valid offsets; split "
                "long documents into passages first).",
                TruncationWarning,
                stacklevel=3,
            )
        return ReadResult(scores, words, probs)

    def score(self, query: str, passages: Sequence[str], batch_size: int = READ_BATCH_SIZE) -> np.ndarray:
        """``(n,)`` float32 relevance of each passage to ``query`` (higher = more relevant)."""
        return self.read(query, passages, batch_size).scores

    def evidence_spans(
        self,
        query: str,
        passages: Sequence[str],
        top_fraction: float = 0.2,
        threshold: float | None = None,
        batch_size: int = READ_BATCH_SIZE,
    ) -> list[list[RationaleSpan]]:
        """The evidence for ``query`` in each passage: character spans, adjacent words merged.

        Args:
            query: The question.
            passages: Passage texts.
            top_fraction: Share of each passage's words marked (at least one word).
            threshold: Instead of a share, mark the words whose evidence probability is above
                this; a passage may then get no span at all.
            batch_size: Pairs per forward pass.

        Returns:
            Per passage, ``RationaleSpan``s in text order with ``passage[start:end] == text``;
            ``weight`` is the span's share of the passage's evidence probability mass.
        """
        _check_marking(top_fraction, threshold)
        texts = _check_passages(passages)
        return self.read(query, texts, batch_size).spans(texts, top_fraction, threshold)

    def rerank(
        self,
        query: str,
        passages: Sequence[str],
        top_fraction: float = 0.2,
        threshold: float | None = None,
        batch_size: int = READ_BATCH_SIZE,
        first_stage_scores: Sequence[float | None] | None = None,
        fusion_weight: float = 0.0,
    ) -> list[Ranked]:
        """The passages re-ranked by relevance (best first), each with its evidence spans, in one pass.

        With ``first_stage_scores`` (the retriever's score of each passage) and ``fusion_weight``
        ``w > 0``, the order is by ``z(reader) + w * z(first stage)``, both standardised over these
        passages; ``Ranked.score`` is then that fused score. Empty or whitespace-only passages are
        not read; they come last with score ``-inf`` and no spans.
        """
        _check_marking(top_fraction, threshold)
        texts = _check_passages(passages)
        todo = [i for i, t in enumerate(texts) if t.strip()]
        out = [Ranked(i, float("-inf"), []) for i in range(len(texts))]
        if todo:
            result = self.read(query, [texts[i] for i in todo], batch_size)
            spans = result.spans([texts[i] for i in todo], top_fraction, threshold)
            scores = result.scores.astype(np.float64)
            if fusion_weight > 0:
                if first_stage_scores is None or len(first_stage_scores) != len(texts):
                    raise ValueError("fusion_weight needs first_stage_scores, one per passage.")
                first = np.array([first_stage_scores[i] or 0.0 for i in todo], dtype=np.float64)
                scores = standardise(scores) + fusion_weight * standardise(first)
            for row, i in enumerate(todo):
                out[i] = Ranked(i, float(scores[row]), spans[row])
        return sorted(out, key=lambda r: -r.score)


@dataclass(frozen=True)
class Ranked:
    """One passage after ``CERAReader.rerank``: its input position, reader score and evidence spans."""

    index: int
    score: float
    spans: list[RationaleSpan]


def _keep_layers(model: Any, layers: int | None) -> Any:
    """Keep the first ``layers`` encoder layers (a shallower, faster reader)."""
    if layers is None:
        return model
    stack = model.encoder.layer
    if layers > len(stack):
        raise ConfigError(f"layers={layers} but the base encoder has only {len(stack)} layers.")
    model.encoder.layer = stack[:layers]
    model.config.num_hidden_layers = layers
    return model


def _download(repo_id: str) -> str:
    """A hub reader's files in the local cache (safetensors, JSON and tokenizer files only)."""
    try:
        from huggingface_hub import snapshot_download

        return str(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"]))
    except Exception as exc:  # noqa: BLE001 - offline, unknown repo, auth: all mean "cannot fetch"
        raise CheckpointError(
            f"Could not fetch the reader {repo_id!r} from the hub ({exc}); is the hub reachable (HF_HUB_OFFLINE)? "
            "Or pass a local folder written by CERAReader.save_pretrained."
        ) from exc


class _ExportedReader(nn.Module):
    def __init__(self, reader: CERAReader) -> None:
        super().__init__()
        self.reader = reader

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.reader.forward(input_ids, attention_mask, token_type_ids)


class _OnnxReader:
    def __init__(self, path: Path, sess: Any) -> None:
        self.path = path
        self.session = sess
        self.inputs = {i.name for i in sess.get_inputs()}

    def __call__(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        feeds = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": token_type_ids,
        }
        arrays = {
            k: np.ascontiguousarray(v.cpu().numpy(), dtype=np.int64) for k, v in feeds.items() if k in self.inputs
        }
        relevance, logits = self.session.run(None, arrays)
        return torch.from_numpy(relevance), torch.from_numpy(logits)


__all__ = ["CERAReader", "Ranked", "ReadResult", "ReaderConfig", "ReaderHeads", "evidence_spans_from_words"]
