"""CERAEncoder: a Hugging Face encoder with pooling, L2 normalisation and attention rationales.

The model is a plain bi-encoder (queries and passages share weights). What CERA adds is that
its CLS-to-token attention in one layer is trained to point at the evidence, so at query time
the attention row is read back as *rationale spans*: character offsets into the passage.

Because a bi-encoder encodes a passage without its query, the attention (and therefore the
spans) depend only on the passage: they come from the same forward pass that embeds it, so they
cost almost nothing and can be computed at indexing time.

The CLS attention row is recomputed from the layer's input hidden states and its query/key
projections (one row instead of a ``T x T`` matrix per head), so the encoder itself runs with
the fast SDPA attention kernel; models whose layers do not expose BERT-style ``query``/``key``
projections fall back to eager attention with ``output_attentions``.
"""

from __future__ import annotations

import json
import math
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from cera_rag.atomic import replace_dir
from cera_rag.errors import CheckpointError, ConfigError

Pooling = Literal["mean", "cls"]
#: What runs the forward pass: PyTorch, or ONNX Runtime in fp32 or with int8 weights.
Backend = Literal["torch", "onnx", "onnx-int8"]
BACKENDS: tuple[str, ...] = ("torch", "onnx", "onnx-int8")

#: File that marks a cera-rag checkpoint and holds its ``EncoderConfig``.
CONFIG_NAME = "cera_config.json"
#: File that marks a ``CERAReader`` checkpoint (see ``cera_rag.reader``).
READER_CONFIG_NAME = "cera_reader_config.json"
_PICKLE_WEIGHTS = ("pytorch_model.bin", "tf_model.h5", "model.ckpt.index", "flax_model.msgpack")
#: Serialises tokenizer calls: a fast tokenizer's truncation/padding state is set per call and shared,
#: so two threads tokenising at once (queries at 64 tokens, passages at 256) corrupt each other's batch.
_TOKENIZER_LOCK = threading.RLock()


class TruncationWarning(UserWarning):
    """A text was longer than the encoder's maximum length and was truncated."""


class EncoderConfig(BaseModel):
    """How a checkpoint pools, normalises, truncates and where its rationales come from."""

    model_config = ConfigDict(extra="ignore")

    pooling: Pooling = "mean"
    normalize: bool = True
    max_query_length: int = Field(64, ge=4)
    max_passage_length: int = Field(256, ge=4)
    rationale_layer: int = Field(-1, description="Layer whose CLS attention gives rationales (-1 = last).")
    rationale_heads: list[int] | None = Field(None, description="Heads averaged (None = all).")
    base_model: str | None = None


@dataclass(frozen=True)
class RationaleSpan:
    """A span of a passage the encoder's attention points at: ``passage[start:end] == text``."""

    start: int
    end: int
    text: str
    weight: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pool(last_hidden: torch.Tensor, mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """Sentence vectors from token states: the [CLS] state (CERA paper) or the masked mean (Contriever)."""
    if pooling == "cls":
        return last_hidden[:, 0]
    m = mask.unsqueeze(-1).to(last_hidden.dtype)
    return (last_hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def _has_pickle_only(path: Path) -> bool:
    has_safe = any(path.glob("*.safetensors"))
    return not has_safe and any((path / name).exists() for name in _PICKLE_WEIGHTS)


def _sentence_transformers_pooling(path: Path) -> tuple[Pooling | None, bool | None]:
    """Pooling and normalisation declared by a sentence-transformers folder, if it is one."""
    modules = path / "modules.json"
    if not modules.is_file():
        return None, None
    try:
        entries = json.loads(modules.read_text(encoding="utf-8"))
        normalize = any(str(e.get("type", "")).endswith("Normalize") for e in entries)
        pooling: Pooling | None = None
        for e in entries:
            if str(e.get("type", "")).endswith("Pooling"):
                module_dir = (path / e["path"]).resolve()
                if not module_dir.is_relative_to(path.resolve()):
                    continue  # a module path outside the model folder is never read
                cfg = json.loads((module_dir / "config.json").read_text(encoding="utf-8"))
                pooling = "cls" if cfg.get("pooling_mode_cls_token") else "mean"
        return pooling, normalize
    except (OSError, ValueError, KeyError, TypeError):
        return None, None


def check_model_folder(path: Path) -> None:
    """Refuse a local model folder that is not a loadable, pickle-free checkpoint.

    Raises:
        CheckpointError: No ``config.json``, pickle weights only, or no ``*.safetensors`` file.
    """
    if not (path / "config.json").is_file():
        raise CheckpointError(
            f"{path} has no config.json: it is not a model checkpoint (expected the files "
            "written by save_pretrained or a Hugging Face model folder)."
        )
    if _has_pickle_only(path):
        raise CheckpointError(
            f"{path} holds pickle weights only; cera-rag loads safetensors only (pickle can run "
            "code). Convert it with `transformers` (model.save_pretrained(dir, "
            "safe_serialization=True)) from a source you trust."
        )
    if not any(path.glob("*.safetensors")):
        raise CheckpointError(f"{path} has no *.safetensors weights file.")


def load_backbone(source: str, name: str, is_local: bool) -> tuple[Any, Any]:
    """``(AutoModel, AutoTokenizer)`` from ``source``: safetensors only, no remote code, SDPA attention.

    Raises:
        CheckpointError: The weights or tokenizer cannot be loaded (corrupt file, hub unreachable).
    """
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
        model = AutoModel.from_pretrained(
            source, use_safetensors=True, trust_remote_code=False, attn_implementation="sdpa"
        )
    except Exception as exc:  # noqa: BLE001 - safetensors, OSError, ValueError...: all mean "cannot load"
        where = "folder" if is_local else "hub id (is the hub reachable? HF_HUB_OFFLINE set?)"
        raise CheckpointError(
            f"Could not load the model from {name} ({where}): {exc}. If the weights are "
            "corrupt, re-save or re-train the checkpoint."
        ) from exc
    return model, tokenizer


def check_output_dir(directory: str | os.PathLike[str]) -> Path:
    """``directory`` as a ``Path`` if a checkpoint may be written there (replacing what it holds).

    Allowed: a missing path, an empty folder, or a folder that already holds a model checkpoint
    (a ``config.json``). Anything else would be deleted by the atomic replace, so it is refused.

    Raises:
        CheckpointError: If the path is a file, has no name (``.``, ``..``, ``/``), or is a folder
            with other content.
    """
    target = Path(directory).expanduser()
    if target.name in ("", ".", ".."):
        raise CheckpointError(
            f"Checkpoint output_dir {str(directory)!r} names no folder of its own; give one such as checkpoints/my-run."
        )
    if not target.exists():
        return target
    if not target.is_dir():
        raise CheckpointError(f"Checkpoint output_dir {target} exists and is not a folder; choose another path.")
    if any(target.iterdir()) and not ((target / CONFIG_NAME).is_file() or (target / "config.json").is_file()):
        raise CheckpointError(
            f"{target} exists and is not a model checkpoint (no config.json); saving there would replace its "
            "files. Choose another output_dir, or empty that folder."
        )
    return target


class CERAEncoder(nn.Module):
    """A bi-encoder that embeds queries and passages and explains passages with attention spans.

    Example:
        >>> enc = CERAEncoder.from_pretrained("checkpoints/cera-best")  # doctest: +SKIP
        >>> q = enc.encode_queries(["Does aspirin lower pain compared with placebo?"])  # doctest: +SKIP
        >>> enc.rationale_spans(query, passage)  # doctest: +SKIP
        [RationaleSpan(start=10, end=42, text='significantly lower pain', weight=0.31), ...]
    """

    def __init__(self, model: nn.Module, tokenizer: Any, config: EncoderConfig, name: str = "") -> None:
        super().__init__()
        self.model: Any = model
        self.tokenizer = tokenizer
        self.config = config
        self.name = name or (config.base_model or "cera-encoder")
        self.model.eval()
        #: set by ``to_onnx``: the forward pass runs in ONNX Runtime instead of PyTorch
        self._onnx: Any = None

    # ------------------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str],
        device: str | torch.device | None = None,
        backend: Backend = "torch",
        **overrides: Any,
    ) -> CERAEncoder:
        """Load a cera-rag checkpoint, a sentence-transformers folder, a HF model folder or a hub id.

        Weights are read from safetensors only (a folder holding only pickle weights is refused)
        and ``trust_remote_code`` is never set. ``overrides`` replace ``EncoderConfig`` fields,
        e.g. ``pooling="mean", normalize=False`` for the Contriever-style counterpart.
        ``backend="onnx"`` / ``"onnx-int8"`` run inference in ONNX Runtime (see ``to_onnx``).
        """
        if backend not in BACKENDS:
            raise ConfigError(f"Unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
        from cera_rag.paths import resolve_model_path

        source = resolve_model_path(name_or_path)
        path = Path(source)
        is_local = path.is_dir()
        if not is_local and (path.exists() or str(name_or_path).startswith((".", "/", "~"))):
            raise CheckpointError(
                f"Model directory {name_or_path} does not exist or is not a folder. Train one with "
                "`cera-rag train --preset quick`, or pass a hub id such as facebook/contriever."
            )
        values: dict[str, Any] = {"base_model": str(name_or_path)}
        if is_local:
            check_model_folder(path)
            if (path / READER_CONFIG_NAME).is_file():
                raise CheckpointError(
                    f"{path} is a CERAReader checkpoint (a cross-encoder that reads a question and a passage "
                    "together), not a bi-encoder; load it with cera_rag.CERAReader.from_pretrained."
                )
            st_pooling, st_normalize = _sentence_transformers_pooling(path)
            if st_pooling is not None:
                values["pooling"] = st_pooling
            if st_normalize is not None:
                values["normalize"] = st_normalize
            cfg_file = path / CONFIG_NAME
            if cfg_file.is_file():
                try:
                    values.update(json.loads(cfg_file.read_text(encoding="utf-8")))
                except ValueError as exc:
                    raise CheckpointError(f"{cfg_file} is not valid JSON ({exc}); re-save the checkpoint.") from exc
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            config = EncoderConfig(**values)
        except ValidationError as exc:
            raise CheckpointError(f"Invalid encoder settings for {name_or_path}: {exc}") from exc
        model, tokenizer = load_backbone(source, str(name_or_path), is_local)
        name = config.base_model if not (is_local and (path / CONFIG_NAME).is_file()) else str(path)
        encoder = cls(model, tokenizer, config, name=str(name))
        if device is not None:
            encoder.to(device)
        if backend != "torch":
            return encoder.to_onnx(int8=backend == "onnx-int8")
        return encoder

    def save_pretrained(self, directory: str | os.PathLike[str], extra_files: dict[str, str] | None = None) -> None:
        """Write safetensors weights, tokenizer and ``cera_config.json``; the folder is replaced atomically.

        ``extra_files`` (name -> UTF-8 text, e.g. a soup's provenance) go into the same atomic swap.

        Raises:
            CheckpointError: If ``directory`` exists and is not a checkpoint (see ``check_output_dir``).
        """
        target = check_output_dir(directory)

        def write(tmp: Path) -> None:
            self.model.save_pretrained(tmp, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)
            (tmp / CONFIG_NAME).write_text(self.config.model_dump_json(indent=2), encoding="utf-8")
            for name, text in (extra_files or {}).items():
                (tmp / name).write_text(text, encoding="utf-8")

        replace_dir(target, write)

    def quantized(self) -> CERAEncoder:
        """An int8 copy for fast CPU inference: ``torch.ao`` dynamic quantisation of every ``nn.Linear``.

        Weights are stored as int8 and activations quantised on the fly; embeddings, scores and
        rationale spans come through the same code. Inference only (no training, CPU only).
        """
        import copy

        from torch.ao.quantization import quantize_dynamic

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch marks the quantised-tensor API as deprecated
            model = quantize_dynamic(copy.deepcopy(self.model).cpu(), {nn.Linear}, dtype=torch.qint8)
        return CERAEncoder(model, self.tokenizer, self.config.model_copy(), name=self.name)

    def to_onnx(
        self, int8: bool = False, folder: str | os.PathLike[str] | None = None, threads: int | None = None
    ) -> CERAEncoder:
        """A copy whose forward pass runs in ONNX Runtime on the CPU (needs the ``fast`` extra).

        The encoder's forward pass (embedding and CLS-attention row) is exported once to an ONNX
        graph, cached under ``cache_dir()/onnx/<weights hash>/`` (or ``folder``); ``int8=True``
        quantises its weights per output channel (ONNX Runtime dynamic quantisation). Everything
        else (tokenisation, batching, spans, ``save_pretrained``) is this encoder's. Inference
        only: the copy shares this encoder's PyTorch weights but not later changes to them.
        """
        from cera_rag.onnx_backend import OnnxForward, onnx_file

        path = onnx_file(self, int8=int8, folder=folder)
        copy = CERAEncoder(self.model, self.tokenizer, self.config.model_copy(), name=self.name)
        copy._onnx = OnnxForward(path, threads)
        return copy

    @property
    def backend(self) -> str:
        """``torch``, ``onnx`` or ``onnx-int8``: what runs the forward pass."""
        from cera_rag.onnx_backend import backend_name

        return backend_name(self._onnx)

    # ------------------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    # ------------------------------------------------------------------------------ forward
    def tokenize(self, texts: Sequence[str], max_length: int, offsets: bool = False) -> dict[str, torch.Tensor]:
        """Tokenise with dynamic padding; ``offsets=True`` adds ``offset_mapping``."""
        with _TOKENIZER_LOCK:
            batch = self.tokenizer(
                list(texts),
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
                return_offsets_mapping=offsets,
            )
        return {k: v.to(self.device) for k, v in batch.items()}

    def _attention_layer(self) -> Any | None:
        encoder = getattr(self.model, "encoder", None)
        layers = getattr(encoder, "layer", None)
        if layers is None:
            return None
        layer = layers[self.config.rationale_layer]
        attn = getattr(getattr(layer, "attention", None), "self", None)
        if attn is None or not hasattr(attn, "query") or not hasattr(attn, "key"):
            return None
        return attn

    def cls_attention_heads(self, hidden_in: torch.Tensor, mask: torch.Tensor, attn: Any) -> torch.Tensor:
        """CLS-to-token attention ``(B, H, T)`` of every head of ``attn`` (a BERT self-attention) given its input."""
        heads = int(self.model.config.num_attention_heads)
        b, t, h = hidden_in.shape
        dh = h // heads
        q = attn.query(hidden_in[:, :1]).view(b, 1, heads, dh).transpose(1, 2)  # (B, H, 1, dh)
        k = attn.key(hidden_in).view(b, t, heads, dh).transpose(1, 2)  # (B, H, T, dh)
        scores = (q @ k.transpose(-1, -2)).squeeze(2) / math.sqrt(dh)  # (B, H, T)
        scores = scores.masked_fill(~mask.bool().unsqueeze(1), torch.finfo(scores.dtype).min)
        return scores.softmax(-1)

    def _cls_attention(self, hidden_in: torch.Tensor, mask: torch.Tensor, attn: Any) -> torch.Tensor:
        """CLS-to-token attention of ``attn`` given its input states, averaged over the chosen heads."""
        probs = self.cls_attention_heads(hidden_in, mask, attn)
        if self.config.rationale_heads:
            probs = probs[:, self.config.rationale_heads]
        return probs.mean(1)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, return_attention: bool = False, **kw: Any
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Embeddings ``(B, d)`` and, when asked, the rationale layer's CLS attention row ``(B, T)``."""
        kw.pop("offset_mapping", None)
        if self._onnx is not None:
            if kw or torch.is_grad_enabled():
                raise RuntimeError(
                    "An ONNX-backed CERAEncoder runs inference on input_ids and attention_mask only; "
                    "use the PyTorch encoder (backend='torch') for training or gradients."
                )
            return self._onnx(input_ids, attention_mask, return_attention)
        attn = self._attention_layer() if return_attention else None
        need_eager = return_attention and attn is None
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            output_hidden_states=return_attention and not need_eager,
            output_attentions=need_eager,
            **kw,
        )
        emb = pool(out.last_hidden_state, attention_mask, self.config.pooling)
        if self.config.normalize:
            emb = nn.functional.normalize(emb, dim=-1)
        if not return_attention:
            return emb, None
        if attn is not None:
            n_layers = len(out.hidden_states) - 1
            layer = self.config.rationale_layer % n_layers
            return emb, self._cls_attention(out.hidden_states[layer], attention_mask, attn)
        probs = out.attentions[self.config.rationale_layer][:, :, 0]  # (B, H, T)
        if self.config.rationale_heads:
            probs = probs[:, self.config.rationale_heads]
        return emb, probs.mean(1)

    # ------------------------------------------------------------------------------ inference
    def _batches(self, texts: Sequence[str], max_length: int, batch_size: int) -> Iterator[list[int]]:
        if len(texts) <= batch_size:
            return iter([list(range(len(texts)))] if texts else [])  # one batch: order cannot change its padding
        return length_sorted_batches(token_lengths(self.tokenizer, texts, max_length), batch_size)

    def _check_texts(self, texts: Sequence[str], what: str, max_length: int, allow_empty: bool) -> list[str]:
        """Type and content checks (truncation is detected, once, from the tokenised batches)."""
        if isinstance(texts, str):
            raise TypeError(f"{what} must be a list of strings, not one string; wrap it: [text].")
        out = list(texts)
        for i, t in enumerate(out):
            if not isinstance(t, str):
                raise TypeError(f"{what}[{i}] is {type(t).__name__}, not str.")
            if not allow_empty and not t.strip():
                raise ValueError(f"{what}[{i}] is empty or whitespace only; give a question with words in it.")
        return out

    @staticmethod
    def _count_truncated(texts: Sequence[str], offsets: np.ndarray, mask: np.ndarray, max_length: int) -> int:
        """Rows that filled ``max_length`` while text remained after their last token (tokenised once)."""
        n = 0
        for row, text in enumerate(texts):
            length = int(mask[row].sum())
            if length >= max_length and int(offsets[row, :length, 1].max()) < len(text.rstrip()):
                n += 1
        return n

    def _warn_truncated(self, n: int, total: int, what: str, max_length: int) -> None:
        if n:
            warnings.warn(
                f"{n} of {total} {what} exceed {max_length} tokens and are truncated; only their first "
                f"{max_length} tokens are embedded (split long documents into passages first).",
                TruncationWarning,
                stacklevel=4,
            )

    @torch.inference_mode()
    def _encode(self, texts: Sequence[str], max_length: int, batch_size: int, what: str) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        truncated = 0
        for idx in self._batches(texts, max_length, batch_size):
            chunk = [texts[i] for i in idx]
            batch = self.tokenize(chunk, max_length, offsets=True)
            emb, _ = self(batch["input_ids"], batch["attention_mask"])
            out[idx] = emb.float().cpu().numpy()
            truncated += self._count_truncated(
                chunk, batch["offset_mapping"].cpu().numpy(), batch["attention_mask"].cpu().numpy(), max_length
            )
        self._warn_truncated(truncated, len(texts), what, max_length)
        return out

    def encode_queries(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """``(n, d)`` float32 query embeddings."""
        texts = self._check_texts(texts, "queries", self.config.max_query_length, allow_empty=False)
        return self._encode(texts, self.config.max_query_length, batch_size, "queries")

    def encode_passages(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        return_rationales: bool = False,
        top_fraction: float = 0.2,
    ) -> Any:
        """``(n, d)`` float32 passage embeddings; with ``return_rationales`` also their spans (one pass)."""
        texts = self._check_texts(texts, "passages", self.config.max_passage_length, allow_empty=True)
        if not return_rationales:
            return self._encode(texts, self.config.max_passage_length, batch_size, "passages")
        return self._encode_with_spans(texts, batch_size, top_fraction)

    @torch.inference_mode()
    def _encode_with_spans(
        self, texts: list[str], batch_size: int, top_fraction: float
    ) -> tuple[np.ndarray, list[list[RationaleSpan]]]:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        spans: list[list[RationaleSpan]] = [[] for _ in texts]
        max_length = self.config.max_passage_length
        truncated = 0
        for idx in self._batches(texts, max_length, batch_size):
            chunk = [texts[i] for i in idx]
            batch = self.tokenize(chunk, max_length, offsets=True)
            emb, attention = self(batch["input_ids"], batch["attention_mask"], return_attention=True)
            out[idx] = emb.float().cpu().numpy()
            assert attention is not None
            att = attention.float().cpu().numpy()
            offs = batch["offset_mapping"].cpu().numpy()
            for row, i in enumerate(idx):
                spans[i] = spans_from_attention(texts[i], offs[row], att[row], top_fraction)
            truncated += self._count_truncated(chunk, offs, batch["attention_mask"].cpu().numpy(), max_length)
        self._warn_truncated(truncated, len(texts), "passages", max_length)
        return out, spans

    def rationale_spans(self, query: str, passage: str, top_fraction: float = 0.2) -> list[RationaleSpan]:
        """The spans of ``passage`` the encoder's CLS attention points at, in text order.

        ``query`` is accepted for API symmetry with cross-encoders; a bi-encoder encodes the
        passage without it, so the spans are the passage's (and can be cached at indexing time).
        """
        return self.rationale_spans_batch(query, [passage], top_fraction)[0]

    def rationale_spans_batch(
        self, query: str, passages: Sequence[str], top_fraction: float = 0.2
    ) -> list[list[RationaleSpan]]:
        """``rationale_spans`` for several passages in one forward pass."""
        if not 0.0 < top_fraction <= 1.0:
            raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}.")
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, not {type(query).__name__}.")
        _, spans = self.encode_passages(passages, return_rationales=True, top_fraction=top_fraction)
        return spans

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        """Dot-product scores of ``query`` against ``passages`` (cosine when normalised)."""
        q = self.encode_queries([query])
        return (self.encode_passages(passages) @ q[0]).astype(np.float32)


def token_lengths(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[int]:
    """Tokens each text takes after truncation to ``max_length`` (special tokens included)."""
    if not texts:
        return []
    with _TOKENIZER_LOCK:
        ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    return [len(x) for x in ids]


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Indices in batches sorted by ``lengths`` (longest first), so each batch pads to a similar length.

    Sort by *token* counts (``token_lengths``), not characters: clinical text with numbers, units and
    tables tokenises unevenly (a 478-character passage can take 256 tokens, a 512-character one 89),
    and on the validation passages character order pads batches of 32 to 1.9x their real tokens,
    token order to 1.01x. Tokenising twice costs far less than the padding it saves.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    for s in range(0, len(order), batch_size):
        yield order[s : s + batch_size]


def _words(text: str, offsets: np.ndarray) -> list[tuple[int, int, list[int]]]:
    """Group wordpieces into whitespace-delimited words: pieces that touch (no gap) form one word."""
    words: list[tuple[int, int, list[int]]] = []
    for i, (s, e) in enumerate(offsets.tolist()):
        if e <= s:
            continue  # special or padding token
        if words and s == words[-1][1]:
            ws, _, pieces = words[-1]
            words[-1] = (ws, e, [*pieces, i])
        else:
            words.append((s, e, [i]))
    return words


def spans_from_attention(
    text: str, offsets: np.ndarray, attention: np.ndarray, top_fraction: float = 0.2
) -> list[RationaleSpan]:
    """Rationale spans from one attention row: top words by attention, adjacent words merged.

    Args:
        text: the passage.
        offsets: ``(T, 2)`` character offsets of the tokens, ``(0, 0)`` for special tokens.
        attention: ``(T,)`` CLS attention of the tokens.
        top_fraction: fraction of the passage's words kept (at least one).

    Returns:
        Spans in text order; ``weight`` is the share of the passage's word attention they hold.
    """
    words = _words(text, offsets)
    if not words:
        return []
    weights = np.array([float(attention[p].sum()) for _, _, p in words], dtype=np.float64)
    total = weights.sum()
    if total <= 0 or not np.isfinite(total):
        return []
    weights = weights / total
    k = max(1, int(math.ceil(top_fraction * len(words))))
    keep = np.argsort(-weights, kind="stable")[:k].tolist()
    return merge_words(text, [(s, e) for s, e, _ in words], weights, keep)


def merge_words(
    text: str, words: Sequence[tuple[int, int]], weights: np.ndarray, keep: Sequence[int]
) -> list[RationaleSpan]:
    """Spans from the kept words: runs of adjacent kept words become one span.

    Args:
        text: the passage.
        words: ``(start, end)`` character spans of its words, in text order.
        weights: ``(n_words,)`` weight of each word; a span's weight is the sum over its words.
        keep: indices of the words to keep (any order).

    Returns:
        Spans in text order, ``text[start:end] == span.text``.
    """
    keep = sorted(int(i) for i in keep)
    if not keep:
        return []
    spans: list[RationaleSpan] = []
    run = [keep[0]]
    for j in [*keep[1:], None]:
        if j is not None and j == run[-1] + 1:
            run.append(j)
            continue
        s, e = words[run[0]][0], words[run[-1]][1]
        spans.append(RationaleSpan(s, e, text[s:e], float(weights[run].sum())))
        if j is not None:
            run = [j]
    return spans
