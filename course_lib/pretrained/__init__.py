"""Real pretrained weights in course_lib's own parts.

* ``bert``: all-MiniLM-L6-v2 (a small BERT) as course_lib's encoder, and its sentence embeddings.
* ``gpt2``: Hugging Face GPT-2 weights copied into ``course_lib.models.GPT``.

Nothing is downloaded at run time: weights come from pip packages that ship them.

Built in lesson 12 (a real pretrained model).
"""

from course_lib.pretrained._loading import check_state_dict as _check_state_dict
from course_lib.pretrained._loading import load_renamed as _load_renamed
from course_lib.pretrained.bert import (
    BERT_EMBEDDING_NAMES,
    BERT_LAYER_NAMES,
    BERT_UNUSED_PREFIXES,
    INSTALL_HINT,
    MAX_TOKENS,
    BertEncoderConfig,
    BertEncoderModel,
    _cached_minilm,
    _import_pretrained_extra,
    bert_weights_to_course_lib,
    embed_sentences,
    l2_normalize,
    load_minilm,
    load_minilm_tokenizer,
    mean_pool,
    minilm_path,
    tokenize_batch,
)
from course_lib.pretrained.gpt2 import (
    GPT2_BLOCK_NAMES,
    GPT2_CONV1D_PARTS,
    GPT2_MASK_BUFFERS,
    GPT2_TOP_LEVEL_NAMES,
    gpt2_config_from_weights,
    gpt2_weights_to_course_lib,
    load_gpt2,
)

__all__ = [
    "BERT_EMBEDDING_NAMES",
    "BERT_LAYER_NAMES",
    "BERT_UNUSED_PREFIXES",
    "GPT2_BLOCK_NAMES",
    "GPT2_CONV1D_PARTS",
    "GPT2_MASK_BUFFERS",
    "GPT2_TOP_LEVEL_NAMES",
    "INSTALL_HINT",
    "MAX_TOKENS",
    "BertEncoderConfig",
    "BertEncoderModel",
    "_cached_minilm",
    "_check_state_dict",
    "_import_pretrained_extra",
    "_load_renamed",
    "bert_weights_to_course_lib",
    "embed_sentences",
    "gpt2_config_from_weights",
    "gpt2_weights_to_course_lib",
    "l2_normalize",
    "load_gpt2",
    "load_minilm",
    "load_minilm_tokenizer",
    "mean_pool",
    "minilm_path",
    "tokenize_batch",
]
