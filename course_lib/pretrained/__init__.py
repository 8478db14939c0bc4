"""Real pretrained weights in course_lib's own parts.

* ``bert``: all-MiniLM-L6-v2 (a small BERT) as course_lib's encoder, and its sentence embeddings.
* ``gpt2``: Hugging Face GPT-2 weights copied into ``course_lib.models.GPT``.
* ``llama``: Hugging Face Llama weights copied into ``course_lib.llama.Llama`` (lesson 13).
* ``quantization``: the course's own GGUF dequantizers, Q4_1 and Q8_0 (lesson 14).
* ``smollm2``: SmolLM2-135M-Instruct read from its GGUF file into ``Llama``, with its tokenizer
  and chat template (lesson 14).

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
from course_lib.pretrained.llama import (
    LLAMA_BLOCK_NAMES,
    LLAMA_TOP_LEVEL_NAMES,
    llama_config_from_hf,
    llama_hf_names,
    llama_hf_shapes,
    load_llama,
)
from course_lib.pretrained.quantization import dequantize_q4_1, dequantize_q8_0, dequantize_tensor
from course_lib.pretrained.smollm2 import (
    END_OF_TURN,
    GGUF_BLOCK_NAMES,
    GGUF_TOP_LEVEL_NAMES,
    SMOLLM2_DEFAULT_SYSTEM_PROMPT,
    SMOLLM2_FILE_NAME,
    SMOLLM2_INSTALL_COMMAND,
    chat_prompt,
    gguf_state_dict,
    gguf_value,
    hf_rows_to_llama_cpp,
    llama_config_from_gguf,
    llama_cpp_rows_to_hf,
    load_gguf_llama,
    load_smollm2,
    read_gguf,
    smollm2_path,
    tokenizer_from_gguf,
)

__all__ = [
    "BERT_EMBEDDING_NAMES",
    "BERT_LAYER_NAMES",
    "BERT_UNUSED_PREFIXES",
    "END_OF_TURN",
    "GGUF_BLOCK_NAMES",
    "GGUF_TOP_LEVEL_NAMES",
    "GPT2_BLOCK_NAMES",
    "GPT2_CONV1D_PARTS",
    "GPT2_MASK_BUFFERS",
    "GPT2_TOP_LEVEL_NAMES",
    "INSTALL_HINT",
    "LLAMA_BLOCK_NAMES",
    "LLAMA_TOP_LEVEL_NAMES",
    "MAX_TOKENS",
    "SMOLLM2_DEFAULT_SYSTEM_PROMPT",
    "SMOLLM2_FILE_NAME",
    "SMOLLM2_INSTALL_COMMAND",
    "BertEncoderConfig",
    "BertEncoderModel",
    "_cached_minilm",
    "_check_state_dict",
    "_import_pretrained_extra",
    "_load_renamed",
    "bert_weights_to_course_lib",
    "chat_prompt",
    "dequantize_q4_1",
    "dequantize_q8_0",
    "dequantize_tensor",
    "embed_sentences",
    "gpt2_config_from_weights",
    "gguf_state_dict",
    "gguf_value",
    "gpt2_weights_to_course_lib",
    "hf_rows_to_llama_cpp",
    "l2_normalize",
    "llama_config_from_gguf",
    "llama_config_from_hf",
    "llama_cpp_rows_to_hf",
    "llama_hf_names",
    "llama_hf_shapes",
    "load_gguf_llama",
    "load_gpt2",
    "load_llama",
    "load_minilm",
    "load_minilm_tokenizer",
    "load_smollm2",
    "mean_pool",
    "minilm_path",
    "read_gguf",
    "smollm2_path",
    "tokenize_batch",
    "tokenizer_from_gguf",
]
