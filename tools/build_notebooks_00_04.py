"""Build the lesson notebooks 00-04 (overview ... masking) with nbformat.

Run from the repository root:  python tools/build_notebooks_00_04.py [00 01 ...]
The notebooks are written without outputs; execute them afterwards with
``jupyter nbconvert --to notebook --execute --inplace notebooks/NN_*.ipynb``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from notebook_kit import VERSION_CHECK, code, md, terms_table, write_lesson

from course_lib.viz import LESSON_TITLES  # the titles the map uses

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


LESSON_FILES = {
    0: "00_overview",
    1: "01_tokens_and_embeddings",
    2: "02_positional_encoding",
    3: "03_self_attention",
    4: "04_masking",
    5: "05_multi_head_attention",
    6: "06_mlp_residual_layernorm",
    7: "07_encoder",
    8: "08_decoder",
    9: "09_generation",
    10: "10_train_a_translator",
    11: "11_train_a_tiny_gpt",
    12: "12_pretrained_model",
}


def setup_code(imports: str) -> str:
    """The first cell of every lesson: imports, version check, seeds, print options."""
    return f"""# Setup: imports, a check that course_lib is recent enough, a fixed seed and short printing.
import inspect
import re

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

{VERSION_CHECK}

{imports.strip()}

torch.manual_seed(0)
# float64 everywhere in this lesson, so comparisons with PyTorch show rounding only.
torch.set_default_dtype(torch.float64)
torch.set_printoptions(precision=4, sci_mode=False)"""


DIFF_HELPER = '''def max_abs_difference(a, b):
    """The largest absolute difference between two tensors, as a float."""
    return (a - b).abs().max().item()'''

RUNNING_TOKENS = """# The running example, cut into words by the tokenizer of lesson 01.
tokenizer = WordTokenizer.from_corpus([RUNNING_SENTENCE])
tokens = tokenizer.tokenize(RUNNING_SENTENCE)
token_ids = torch.tensor([tokenizer.encode(RUNNING_SENTENCE)])  # (1, T)
T = len(tokens)
print(RUNNING_SENTENCE)
print("tokens:   ", tokens)
print("token ids:", token_ids.tolist(), "shape:", tuple(token_ids.shape))"""


def exercise_link(lesson: int) -> str:
    name = LESSON_FILES[lesson]
    return (
        f"## Your turn\n\n"
        f"Open the exercise notebook [`exercises/{name}.ipynb`](../exercises/{name}.ipynb). "
        f"Each exercise has a check cell that tells you at once whether your code is right "
        f"and, if it is not, what to look at. Stuck? Run `course hint {lesson:02d}.1` in a terminal "
        f"(or `!course hint {lesson:02d}.1` in a notebook cell) for a nudge; `course check {lesson:02d}` "
        f"runs the whole exercise notebook and lists what passes.\n\n"
        f"Next lesson: [{lesson + 1:02d} {LESSON_TITLES[lesson + 1]}]({LESSON_FILES[lesson + 1]}.ipynb)."
    )


# ======================================================================================
# 00 overview
# ======================================================================================


def roadmap_table() -> str:
    rows = [
        (0, "the whole map; next-token prediction", "what a Transformer is for"),
        (1, "tokenizers; the embedding table", "text -> ids -> vectors"),
        (2, "sinusoidal and learned positions", "why word order is lost without them"),
        (3, "queries, keys, values; scaled dot-product attention", "why we divide by sqrt(d_k)"),
        (4, "causal and padding masks", 'what "peeking" at the future does'),
        (5, "several attention heads side by side", "equal to `nn.MultiheadAttention`"),
        (6, "feed-forward network, residuals, layer norm", "what breaks without residuals"),
        (7, "the encoder: a stack of layers", "equal to `nn.TransformerEncoderLayer`"),
        (8, "the decoder and the full encoder-decoder", "equal to `nn.Transformer`"),
        (9, "output layer; greedy, beam and sampled decoding; KV cache", "temperature, top-k, top-p"),
        (10, "train a small translator", "cross-attention alignments"),
        (11, "train a tiny GPT", "the model writes text"),
        (12, "load a real pretrained model into our code", "same numbers as the original"),
    ]
    lines = ["| # | lesson | builds | you will see |", "|---|---|---|---|"]
    for number, builds, see in rows:
        name = LESSON_FILES[number]
        title = LESSON_TITLES[number]
        lines.append(f"| {number:02d} | [{title}]({name}.ipynb) | {builds} | {see} |")
    return "\n".join(lines)


def lesson_00() -> list[tuple[str, str]]:
    return [
        md("""
# Lesson 00 · Overview: what we will build

This course builds a Transformer, the model behind machine translation systems and chat
assistants, one part at a time. Every part is a few lines of PyTorch that you write, run and
check against a tested reference (the package `course_lib`) and against PyTorch's own modules.
"""),
        code(
            setup_code("""
import ipywidgets as widgets

from course_lib import GPT, GPTConfig
from course_lib.example import RUNNING_SENTENCE
from course_lib.tokenization import WordTokenizer
from course_lib.viz import show_map
""")
        ),
        md("""
## The map

This is the whole Transformer of the paper *Attention Is All You Need* (Vaswani et al., 2017).
Each lesson opens with this map and colours the part it builds. The small labels on the arrows
are tensor shapes: `B` sentences in a batch, `T` tokens per sentence, `d_model` numbers per token,
`V` words in the vocabulary. In this first lesson everything is coloured: it is the whole plan.
"""),
        code("""
show_map(0)
plt.show()
"""),
        md("""
## Learning goals

After this lesson you can:

1. say in one sentence what a language model computes: a probability for every possible next token;
2. follow the path *text → token ids `(B, T)` → logits `(B, T, V)` → probabilities `(B, T, V)`*;
3. find your way through the course: lessons, widgets, exercises and the `course` command.
"""),
        md("""
## The one job: predict the next token

A Transformer language model does one thing over and over: it reads some text and gives, for
every word it knows, the probability that this word comes next. Writing a paragraph is just
that step in a loop: pick a likely next word, append it, predict again.

Why is such a plain task enough? To guess the next word of *"the cat sat on the mat because it
was ..."* well, a model has to know that *it* means *the cat* and that cats get *tired*. Next-token
prediction forces a model to pick up grammar, meaning and a little world knowledge, and it needs no
labelled data: every text is its own answer key.

Throughout lessons 01-09 we follow one **running example**, the same sentence every time:
"""),
        code("""
print(RUNNING_SENTENCE)
"""),
        md("""
One sentence of `T` words gives `T - 1` training examples at once: each prefix (the *context*)
and the word that follows it. A Transformer computes all of these predictions in one pass; lesson 04
shows how the *causal mask* keeps each prediction from looking at the answer.
"""),
        code("""
words = RUNNING_SENTENCE.split()
for t in range(1, len(words)):
    context = " ".join(words[:t])
    print(f"{context:>40}  ->  {words[t]}")
"""),
        md("""
## The interface of a model, before any training

Let us look at the inputs and outputs of a small GPT-style model from `course_lib` (lesson 09
assembles it, lesson 11 trains it). Here it is **untrained**: its weights are random, so we look
only at the *shapes* and at what its numbers mean, not at how good they are.

First the text becomes integer ids. Lesson 01 explains the tokenizer; for now, each word gets a
number, and the vocabulary also holds four special tokens (`<pad>`, `<unk>`, `<bos>`, `<eos>`).
"""),
        code("""
tokenizer = WordTokenizer.from_corpus([RUNNING_SENTENCE])
vocabulary = tokenizer.id_to_token
V = tokenizer.vocab_size
token_ids = torch.tensor([tokenizer.encode(RUNNING_SENTENCE)])  # (B, T) = (1, 10)
B, T = token_ids.shape
print("vocabulary:", vocabulary)
print("V =", V)
print("token ids:", token_ids.tolist(), " shape (B, T):", tuple(token_ids.shape))
"""),
        md("""
The model maps the ids `(B, T)` to **logits** `(B, T, V)`: at every position, one raw score per
vocabulary entry. A softmax turns each row of scores into probabilities that are positive and sum
to 1. Position `t` holds the prediction for the token at position `t + 1`.
"""),
        code("""
# A tiny model: 32 numbers per token (d_model), 4 attention heads, 2 layers, at most 16 tokens.
config = GPTConfig(vocab_size=V, context_length=16, d_model=32, n_heads=4, n_layers=2)
model = GPT(config).eval()  # eval(): no dropout; we only look, we do not train

with torch.no_grad():  # no gradients needed: we only run the model
    logits = model(token_ids)  # (B, T, V)
probabilities = torch.softmax(logits, dim=-1)  # (B, T, V), each row sums to 1

print("input ids     (B, T):   ", tuple(token_ids.shape))
print("logits        (B, T, V):", tuple(logits.shape))
print("probabilities (B, T, V):", tuple(probabilities.shape))
print("rows sum to 1:", torch.allclose(probabilities.sum(dim=-1), torch.ones(B, T)))
"""),
        md("""
What does the untrained model say after *"the cat sat on the mat because it was"*? That context
ends at position `T - 2`, so we read row `T - 2`:
"""),
        code("""
last_context = probabilities[0, T - 2]  # (V,)
top = last_context.topk(5)
print("context:", " ".join(words[: T - 1]))
for probability, index in zip(top.values, top.indices):
    print(f"  {vocabulary[index]:>8}  {probability:.4f}")
print(f"uniform guess 1/V = {1 / V:.4f}; the true next word 'tired' gets {last_context[tokenizer.token_to_id['tired']]:.4f}")
"""),
        md("""
Every probability is close to `1/V`: a random model has no opinion. Training (lessons 10 and 11)
changes the weights so that the true next token gets a high probability. The figure shows all
`T` predictions at once, one row per context.

One pattern shows even without training: each row is a little brighter at the token the context
ends with. This model's output layer reuses the embedding table (*weight tying*, lesson 09), and
the residual connections (lesson 06) carry the input token's vector through to the output, so a
random model tends to favour repeating its last token.
"""),
        code("""
fig, ax = plt.subplots(figsize=(9, 4.5), layout="constrained")
image = ax.imshow(probabilities[0].numpy(), cmap="viridis", vmin=0, aspect="auto")
ax.set_xticks(range(V), vocabulary, rotation=45, ha="right")
ax.set_yticks(range(T), [f"...{word}" for word in words])
ax.set_xlabel("candidate next token (vocabulary)")
ax.set_ylabel("context ends with")
ax.set_title("Untrained tiny GPT: P(next token | context), one row per position")
fig.colorbar(image, ax=ax, label="probability")
plt.show()
"""),
        md("""
### Widget: slide through the contexts

Move the slider to choose how many words the model has read. The bar chart shows its probabilities
for the next token; the true next word is drawn in orange. (Running the notebook makes the widget
live; on a web page you see the figure above instead.)
"""),
        code("""
# NBVAL_IGNORE_OUTPUT
TRUE_COLOUR, OTHER_COLOUR = "#e69f00", "#56b4e9"  # colour-blind-safe orange and blue


def show_next_token(context_length):
    next_word_id = token_ids[0, context_length].item()
    row = probabilities[0, context_length - 1]  # (V,)
    colours = [TRUE_COLOUR if index == next_word_id else OTHER_COLOUR for index in range(V)]
    fig, ax = plt.subplots(figsize=(9, 3), layout="constrained")
    ax.bar(range(V), row.numpy(), color=colours)
    ax.axhline(1 / V, color="black", linestyle="--", linewidth=1, label="uniform 1/V")
    ax.set_xticks(range(V), vocabulary, rotation=45, ha="right")
    ax.set_ylim(0, max(0.2, row.max().item() * 1.1))
    ax.set_xlabel("candidate next token")
    ax.set_ylabel("probability")
    ax.set_title(f"context: '{' '.join(words[:context_length])}'  ->  true next: '{words[context_length]}'")
    ax.legend(loc="upper right")
    plt.show()


context_slider = widgets.IntSlider(value=T - 1, min=1, max=T - 1, description="words read")
widgets.VBox([context_slider, widgets.interactive_output(show_next_token, {"context_length": context_slider})])
"""),
        md("""
> **Try this:** change `d_model` or `n_layers` in `GPTConfig` and run the cells again. The shapes of
> the logits do not change: they depend only on `B`, `T` and `V`. What changes them?

> **Try this:** add a word to the sentence before building the tokenizer. Which shapes grow?

## The same interface, after training

Lesson 11 trains this kind of model for real and saves it in the folder `checkpoints/`. It learns a
small made-up language that the course generates: sentences about dogs, cats and children, with
nested clauses and brackets that must be closed. (Our running sentence is not in that language:
*sat* and *mat* are not in its vocabulary.) Here is what the trained model writes, starting each
sentence from `<bos>` and sampling one token at a time until it produces `<eos>`:
"""),
        code("""
from course_lib.language_data import CHECKPOINT_DIR, generate_sentences, load_tiny_gpt

checkpoint_ready = (CHECKPOINT_DIR / "tiny_gpt.safetensors").exists()
if checkpoint_ready:
    trained_model, trained_tokenizer, info = load_tiny_gpt()
    print(f"lesson 11's tiny GPT: {info['steps']} training steps, V = {trained_tokenizer.vocab_size}")
    generator = torch.Generator().manual_seed(0)  # seeded: the same sentences every run
    for text in generate_sentences(trained_model, trained_tokenizer, 5, generator=generator):
        print("  ", text)
else:
    print("No checkpoint yet: run lesson 11 to train the tiny GPT, then come back.")
"""),
        md("""
Its next-token probabilities are no longer flat. Take the prompt *the dog that the cats chase*:
the next word should be the verb of *the dog*, and it must agree with it, *the dog ... sleeps*,
not *sleep*, although the nearest noun, *cats*, is plural. A trained model has to remember the
subject from far back. The interface is the one we saw: ids `(1, T)` in, logits `(1, T, V)` out,
softmax over the last row.
"""),
        code("""
if checkpoint_ready:
    prompt = "the dog that the cats chase"
    prompt_ids = torch.tensor([[trained_tokenizer.bos_id] + trained_tokenizer.encode(prompt)])  # (1, T)
    with torch.no_grad():
        trained_logits = trained_model(prompt_ids)  # (1, T, V)
    next_token = torch.softmax(trained_logits[0, -1], dim=-1)  # (V,)
    print("ids", tuple(prompt_ids.shape), "-> logits", tuple(trained_logits.shape))
    print(f"after '{prompt}':")
    top = next_token.topk(5)
    for probability, index in zip(top.values, top.indices):
        print(f"  {trained_tokenizer.id_to_token[index]:>8}  {probability:.4f}")
    print(f"uniform guess 1/V = {1 / trained_tokenizer.vocab_size:.4f}")
"""),
        md("""
All of its favourites are singular verbs, each far above the uniform guess: the model has learned
the agreement. Lesson 11 trains this model and looks inside it.
"""),
        md(f"""
## The road map

The course builds the map from the bottom up. Lessons 01-04 build what one attention layer needs,
05-08 assemble the encoder and decoder, 09 turns outputs into text, 10-11 train models and 12 loads
a real pretrained one into the code you wrote.

{roadmap_table()}
"""),
        md("""
## How to use the notebooks

- **Run the cells in order**, top to bottom (`Shift+Enter` runs one cell; *Run → Run All Cells*
  runs them all). Every lesson starts with a setup cell that checks your `course_lib` version.
- **Read the prose first.** Each step says *why* before the code shows *how*; the printed shapes
  are there to be compared with the comments in the code (`# (B, T, d_model)`).
- **Widgets** (sliders, dropdowns) appear when you run their cell. Move them: they redraw the
  figure in place. On a web page they show as a still picture.
- **"Try this" boxes** suggest a small change to make and what to look for. Change the code,
  run it, then undo (or re-run the notebook from the top).
- **The reference code** is shown in each lesson with `inspect.getsource(...)` after you built
  your own version, so you can compare line by line.

## How to do the exercises

Every lesson from 01 to 09 has an exercise notebook in `exercises/` with the same name. You fill
in the cells marked with `raise NotImplementedError`; the check cell after each one tells you
whether your code is right, and if not, names the mistake. From a terminal in the course folder
(Windows, macOS and Linux alike):

| command | what it does |
|---|---|
| `course check 01` | runs `exercises/01_*.ipynb` in a fresh kernel and lists which exercises pass |
| `course hint 01.2` | shows the next hint for exercise 01.2 (run it again for a stronger one) |
| `course reset 01` | gives you a fresh exercise notebook (your version is backed up first) |
| `pytest --nbval exercises/01_tokens_and_embeddings.ipynb` | the same check, with pytest |

Inside a notebook you can run the same commands with a `!` in front: `!course hint 01.2`.
"""),
        md(
            """
## Summary

- A Transformer language model reads token ids `(B, T)` and returns logits `(B, T, V)`: at every
  position, a score for every possible next token. A softmax over the last dimension makes them
  probabilities.
- One sentence of `T` tokens holds `T - 1` (context → next token) examples, all predicted in one pass.
- An untrained model gives every token about `1/V`; training makes the true next token likely, and
  a trained model writes text by predicting one token at a time (lesson 11's tiny GPT above).

## Key terms

"""
            + terms_table(
                [
                    ("token", "词元", "a piece of text the model reads as one unit (a word, a character, a subword)"),
                    ("vocabulary", "词表", "every token the model knows, each with an integer id"),
                    ("next-token prediction", "下一个词元预测", "the task of language models"),
                    ("language model", "语言模型", "a model that gives P(next token | context)"),
                    ("context", "上下文", "the tokens the model has read so far"),
                    (
                        "logits",
                        "对数几率 (logits)",
                        "raw scores, one per vocabulary token; softmax turns them into probabilities",
                    ),
                    ("probability", "概率", "non-negative numbers that sum to 1"),
                    ("Transformer", "Transformer 模型", "the architecture on the map, built from attention layers"),
                ]
            )
            + f"""

## Next

Lesson 01 turns text into numbers: [tokens and embeddings]({LESSON_FILES[1]}.ipynb).
Lesson 00 has no exercise notebook; the exercises start with lesson 01.
"""
        ),
    ]


# ======================================================================================
# 01 tokens and embeddings
# ======================================================================================


def lesson_01() -> list[tuple[str, str]]:
    return [
        md("""
# Lesson 01 · Tokens and embeddings

A neural network computes with numbers, not letters. This lesson builds the first two steps of
every Transformer: cut text into **tokens** and give each token an integer **id**, then look each
id up in a table of vectors, the **embedding**.
"""),
        code(
            setup_code("""
import ipywidgets as widgets

from course_lib.embeddings import TokenEmbedding, embedding_lookup
from course_lib.example import RUNNING_SENTENCE
from course_lib.tokenization import BPETokenizer, CharTokenizer, WordTokenizer
from course_lib.viz import plot_matrix, show_map
""")
        ),
        code("""
show_map(1)
plt.show()
"""),
        md("""
## Learning goals

1. Cut the running example into tokens three ways (words, characters, byte-pair encoding) and
   say what each way costs.
2. Turn tokens into ids and ids into vectors with an embedding table, and show that the lookup
   is the same as multiplying a one-hot vector by the table (and the same as `nn.Embedding`).
3. Explain why the Transformer multiplies its embeddings by $\\sqrt{d_\\text{model}}$.
4. Measure how similar two embeddings are (cosine similarity) and say why random embeddings
   are not similar to anything.
"""),
        md("""
## 1. From text to tokens

A **token** is the unit the model reads. There is a trade-off:

- **Words** are meaningful units, but the vocabulary is huge and every word not seen during
  training becomes the *unknown* token `<unk>`.
- **Characters** make a tiny vocabulary and never meet an unknown word, but sentences become long,
  and attention's cost grows with the square of the length.
- **Subwords** sit in between: frequent words stay whole, rare words are spelled from a few
  pieces. Byte-pair encoding (BPE) learns these pieces from a corpus; GPT-2 uses it.

We need a small corpus to build vocabularies from. Here is one, written for this lesson. It
contains the running example.
"""),
        code("""
CORPUS = [
    RUNNING_SENTENCE,
    "the dog sat on the rug because it was cold",
    "the cat chased the dog around the mat",
    "a tired cat sleeps on a warm mat",
    "the dog was tired after the long walk",
    "it rained, so the cat stayed inside.",
    "the cats and the dogs were friends",
    "a cat sat on a hat",
    "the mat was red and the rug was blue",
    "because the dog was hungry, it ate",
]
print(len(CORPUS), "sentences,", sum(len(text.split()) for text in CORPUS), "words")
print("running example:", RUNNING_SENTENCE)
"""),
        md("""
### Words

`WordTokenizer` lower-cases the text and splits it into words and punctuation marks. Its
vocabulary starts with four **special tokens** that every tokenizer of the course shares:

| token | id | used for |
|---|---|---|
| `<pad>` | 0 | filling up short sentences in a batch (lesson 04) |
| `<unk>` | 1 | any token that is not in the vocabulary |
| `<bos>` | 2 | beginning of a sequence (the decoder's first input, lesson 08) |
| `<eos>` | 3 | end of a sequence (generation stops there, lesson 09) |

Then come the corpus's words, most frequent first.
"""),
        code("""
word_tokenizer = WordTokenizer.from_corpus(CORPUS)
print("vocabulary size:", word_tokenizer.vocab_size)
print("first 16 tokens:", word_tokenizer.id_to_token[:16])
print("tokens:", word_tokenizer.tokenize(RUNNING_SENTENCE))
print("ids:   ", word_tokenizer.encode(RUNNING_SENTENCE))
"""),
        md("""
A word the corpus never saw has no id of its own: it becomes `<unk>`, and its meaning is lost.
"""),
        code("""
new_sentence = "the cat napped on the sofa"
ids = word_tokenizer.encode(new_sentence)
print(new_sentence, "->", ids)
print("decoded back:", word_tokenizer.decode(ids))
"""),
        md("""
### Characters

`CharTokenizer` keeps every character, spaces included. Nothing is unknown as long as the
characters were seen, but the sequence is several times longer. It also works for any writing
system: a Chinese sentence is just a sequence of characters.
"""),
        code("""
char_tokenizer = CharTokenizer.from_corpus(CORPUS)
print("vocabulary size:", char_tokenizer.vocab_size)
print("tokens:", char_tokenizer.tokenize(RUNNING_SENTENCE)[:20], "...")
print("number of tokens:", len(char_tokenizer.encode(RUNNING_SENTENCE)))

chinese = "猫坐在垫子上"  # "the cat sits on the mat"
print(chinese, "->", CharTokenizer.from_corpus([chinese]).tokenize(chinese))
"""),
        md("""
### Byte-pair encoding (BPE)

BPE starts from characters and learns **merges**. It counts every pair of neighbouring symbols in
the corpus, glues the most frequent pair into a new symbol, and repeats until the vocabulary has
the size we asked for. Two details:

- The space before a word is kept as a visible mark `▁`, so `"the cat"` is learned as the words
  `the` and `▁cat`, and decoding can put the spaces back.
- When two pairs are equally frequent, the alphabetically first wins, so training always gives
  the same result.

Let us train one on our corpus and look at its first merges:
"""),
        code("""
bpe_tokenizer = BPETokenizer.train(CORPUS, vocab_size=55)
print(bpe_tokenizer)
for step, (left, right) in enumerate(bpe_tokenizer.merges[:12], start=1):
    print(f"merge {step:2d}: {left!r:>8} + {right!r:<8} -> {left + right!r}")
"""),
        md("""
The first merges are the most frequent pairs of the corpus: pieces of *the*, *cat*, *was*...
To encode new text, BPE spells each word in characters and replays the merges in the order
they were learned. Frequent words end up as one token (`▁cat`, `▁the`), rarer ones are cut into
pieces (`▁s` + `at`, `bec` + `ause`), and the unseen words *napped* and *sofa* are spelled from
pieces instead of becoming `<unk>`. Note that `the` at the start of the sentence and `▁the` after
a space are two different tokens.
"""),
        code("""
print(bpe_tokenizer.tokenize(RUNNING_SENTENCE))
print(bpe_tokenizer.tokenize(new_sentence))
ids = bpe_tokenizer.encode(new_sentence)
print("round trip:", bpe_tokenizer.decode(ids) == new_sentence)
"""),
        md("""
The three tokenizers side by side, on the running example:
"""),
        code("""
print(f"{'tokenizer':<10} {'vocabulary':>10} {'tokens':>7}  unknown in '{new_sentence}'")
for name, tok in [("word", word_tokenizer), ("character", char_tokenizer), ("BPE", bpe_tokenizer)]:
    n_tokens = len(tok.encode(RUNNING_SENTENCE))
    n_unknown = tok.encode(new_sentence).count(tok.unk_id)
    print(f"{name:<10} {tok.vocab_size:>10} {n_tokens:>7}  {n_unknown}")
"""),
        md("""
The same numbers in a picture. Characters give the smallest vocabulary and the longest sequence.
On our tiny corpus, with only 36 different words, the word vocabulary is small too, smaller even
than our BPE's. On real text it grows to hundreds of thousands of words and still meets unknown
ones; that is where BPE pays off: a vocabulary of a size *we* choose that can spell any word.

The running example in Chinese, 猫坐在垫子上，因为它累了, is added for comparison: cut into
characters, it is about as short as the English cut into words, because a Chinese character often
carries as much meaning as an English word.
"""),
        code("""
chinese_sentence = "猫坐在垫子上，因为它累了"  # the running example in Chinese
labels = ["word", "BPE", "character", "中文字符\\n(Chinese characters)"]
lengths = [len(tok.encode(RUNNING_SENTENCE)) for tok in (word_tokenizer, bpe_tokenizer, char_tokenizer)]
lengths.append(len(CharTokenizer.from_corpus([chinese_sentence]).encode(chinese_sentence)))
sizes = [tok.vocab_size for tok in (word_tokenizer, bpe_tokenizer, char_tokenizer)]

fig, (ax_length, ax_size) = plt.subplots(1, 2, figsize=(11, 3.6), layout="constrained")
ax_length.bar(labels, lengths, color=["#0072b2", "#009e73", "#e69f00", "#cc79a7"])
ax_length.set_ylabel("number of tokens")
ax_length.set_title("Tokens in the running example (词元数)")
ax_size.bar(labels[:3], sizes, color=["#0072b2", "#009e73", "#e69f00"])
ax_size.set_ylabel("vocabulary size V")
ax_size.set_title("Vocabulary built from the corpus (词表大小)")
for ax in (ax_length, ax_size):
    ax.set_xlabel("tokenizer")
plt.show()
"""),
        md("""
> **Try this:** train BPE with `vocab_size=40` and with `vocab_size=150`. How does the number of
> tokens of the running example change? With 150, training stops early: why? (Hint: look at
> `min_frequency` in `BPETokenizer.train`.)

Real models use the same idea at scale: GPT-2's BPE has 50,257 tokens learned from gigabytes of
text. For lessons 01-09 we keep things readable: **one token per word**, with a vocabulary built
from the running sentence alone. These are the tokens and ids you will meet in every lesson up
to lesson 09.
"""),
        code(RUNNING_TOKENS.replace("# The running example, cut into words by the tokenizer of lesson 01.\n", "")),
        code("""
V = tokenizer.vocab_size
print("V =", V, "->", tokenizer.id_to_token)
"""),
        md("""
## 2. From ids to vectors: the embedding table

An id is just a name: id 6 is not "bigger" than id 5. The model needs a vector per token, whose
numbers it can adjust during training. The **embedding table** has one row per vocabulary token:
a matrix of shape `(V, d_model)`. Looking up a token means taking its row.
"""),
        code("""
d_model = 16
torch.manual_seed(0)
table = torch.randn(V, d_model)  # (V, d_model), random until training changes it
print("table:", tuple(table.shape))
"""),
        md("""
Indexing a tensor with a tensor of ids picks the rows: `table[token_ids]` turns `(B, T)` ids
into `(B, T, d_model)` vectors. Both `the`s of the sentence get the same row.
"""),
        code("""
def my_embedding_lookup(token_ids, table):
    \"\"\"Row token_ids[b, t] of the table for every token: (B, T) ids, (V, d_model) -> (B, T, d_model).\"\"\"
    return table[token_ids]  # (B, T, d_model)


embeddings = my_embedding_lookup(token_ids, table)  # (1, T, d_model)
print("ids", tuple(token_ids.shape), "-> embeddings", tuple(embeddings.shape))
print("first 4 numbers of 'the' at position 0:", embeddings[0, 0, :4])
print("first 4 numbers of 'the' at position 4:", embeddings[0, 4, :4])
"""),
        md("""
### A lookup is a matrix product

Why call it a "layer"? Write each id as a **one-hot** vector: length `V`, all zeros except a 1
at the id. Multiplying a one-hot row by the table picks exactly one row of the table:

$$\\text{onehot}(i)\\,W = W_{i,:}$$

So an embedding is a linear layer (with no bias) applied to one-hot vectors, computed the cheap
way. This is also why the gradient only reaches the rows of tokens that occurred in the batch.
"""),
        code("""
one_hot = F.one_hot(token_ids, num_classes=V).to(table.dtype)  # (1, T, V); integers -> floats to multiply
via_matmul = one_hot @ table  # (1, T, V) @ (V, d_model) -> (1, T, d_model)
print("one-hot:", tuple(one_hot.shape), " one-hot @ table:", tuple(via_matmul.shape))
print("row of the first token:", one_hot[0, 0].int().tolist())
"""),
        md("""
PyTorch's own layer is `nn.Embedding`. We copy our table into it and compare our lookup with the
one-hot product, with `nn.Embedding` and with course_lib's `embedding_lookup`:
"""),
        code(
            DIFF_HELPER
            + """


torch_embedding = nn.Embedding(V, d_model)  # PyTorch's embedding layer, with its own random table
with torch.no_grad():  # copying into a trainable weight must not be recorded for gradients
    torch_embedding.weight.copy_(table)  # now it holds our table

print(f"max abs difference, lookup vs one-hot @ table:      {max_abs_difference(embeddings, via_matmul):.1e}")
print(f"max abs difference, lookup vs nn.Embedding:         {max_abs_difference(embeddings, torch_embedding(token_ids)):.1e}")
print(f"max abs difference, lookup vs course_lib reference: {max_abs_difference(embeddings, embedding_lookup(token_ids, table)):.1e}")
"""
        ),
        md("""
All are exactly equal (a difference of `0.0`): multiplying by 1 and adding zeros is exact.
Here is course_lib's version. Besides the lookup it checks its inputs, so a wrong shape or an id
outside the vocabulary gives a clear message instead of an index error:
"""),
        code("""
print(inspect.getsource(embedding_lookup))
"""),
        code("""
try:
    embedding_lookup(torch.tensor([[3, 99]]), table)
except ValueError as error:
    print("ValueError:", error)
"""),
        md("""
### Scaling by $\\sqrt{d_\\text{model}}$

The paper multiplies the embeddings by $\\sqrt{d_\\text{model}}$ (section 3.4) without saying why.
The usual explanation is the next step (lesson 02): a positional encoding is **added** to each embedding, and each of its
`d_model / 2` sine-cosine pairs has length 1, so its length is $\\sqrt{d_\\text{model}/2}$.
Embedding tables are usually initialised small (course_lib draws them with standard deviation
$1/\\sqrt{d_\\text{model}}$, so each row has length about 1). Without the scale, the position
would drown out the word. `TokenEmbedding` is the table plus this scale.
"""),
        code("""
torch.manual_seed(0)
embedding = TokenEmbedding(V, d_model)  # weights (V, d_model), std 1/sqrt(d_model)
x = embedding(token_ids)  # (1, T, d_model), already multiplied by sqrt(d_model)

print("weight:", tuple(embedding.weight.shape), " output:", tuple(x.shape))
print(f"average length of a table row:        {embedding.weight.norm(dim=-1).mean():.3f}")
print(f"average length after the scale:       {x.norm(dim=-1).mean():.3f}")
print(f"length of a positional encoding row:  {(d_model / 2) ** 0.5:.3f}  (= sqrt(d_model / 2))")
"""),
        code("""
print(inspect.getsource(TokenEmbedding))
"""),
        md("""
Not every model scales: GPT-2 (and course_lib's `GPT`, lesson 09) adds *learned* position vectors
of a matching size instead, so it builds `TokenEmbedding(..., scale=False)`.

## 3. How similar are two embeddings?

During training, tokens used in similar ways get similar vectors. A common measure of similarity
is the **cosine similarity**: the cosine of the angle between two vectors,

$$\\cos(a, b) = \\frac{a \\cdot b}{\\lVert a \\rVert \\, \\lVert b \\rVert},$$

which is 1 for the same direction, 0 for perpendicular vectors and −1 for opposite ones. It ignores
length, so the $\\sqrt{d_\\text{model}}$ scale does not change it. For all pairs at once, normalise
every row to length 1 and multiply the matrix by its transpose.
"""),
        code("""
def cosine_similarity_matrix(vectors):
    \"\"\"Cosine similarity of every pair of rows: (N, d) -> (N, N).\"\"\"
    unit = vectors / vectors.norm(dim=-1, keepdim=True)  # (N, d), each row of length 1
    return unit @ unit.T  # (N, N)


with torch.no_grad():
    similarity = cosine_similarity_matrix(x[0])  # (T, T)
print("similarity:", tuple(similarity.shape))
torch_similarity = F.cosine_similarity(x[0, :, None], x[0, None, :], dim=-1)  # (T, T)
print(f"max abs difference from PyTorch's F.cosine_similarity: {max_abs_difference(similarity, torch_similarity):.1e}")
"""),
        code("""
fig, ax = plt.subplots(figsize=(6.5, 5.5), layout="constrained")
plot_matrix(similarity, tokens, tokens, ax=ax, center=0.0, annotate=True,
            title="Cosine similarity of the (random) embeddings",
            xlabel="token", ylabel="token", colorbar_label="cosine similarity", vmin=-1, vmax=1)
plt.show()
"""),
        md("""
Read the figure:

- The diagonal is 1: every vector points in its own direction.
- The two `the`s (positions 0 and 4) have similarity 1 with each other: same id, same row.
- Everything else is scattered around 0, positive or negative by chance. Two random vectors in
  `d_model` dimensions have a cosine of typically $\\pm 1/\\sqrt{d_\\text{model}}$ (here ±0.25),
  and the more dimensions, the closer to perpendicular they are. So **random embeddings are
  unrelated to each other**: a value like 0.5 between *cat* and *because* is luck, not meaning.

Meaning arrives only with training. Lesson 12 loads a real pretrained model, whose embeddings put
related words and sentences close together.

> **Try this:** set `d_model = 512` at the top of section 2 and run the cells again. What happens
> to the off-diagonal similarities, and why?

### Widget: pick a token

Choose a token of the running example: the left chart shows its embedding row (the numbers the
model reads for it), the right chart its cosine similarity with every token of the sentence.
"""),
        code("""
# NBVAL_IGNORE_OUTPUT
def show_token(position):
    row = x[0, position].detach()  # (d_model,)
    fig, (ax_row, ax_similarity) = plt.subplots(1, 2, figsize=(11, 3.2), layout="constrained")
    ax_row.bar(range(d_model), row.numpy(), color="#0072b2")
    ax_row.set_xlabel("dimension")
    ax_row.set_ylabel("value")
    ax_row.set_title(f"embedding of '{tokens[position]}' (row {token_ids[0, position].item()} of the table)")
    ax_similarity.bar(range(T), similarity[position].numpy(), color="#e69f00")
    ax_similarity.set_xticks(range(T), tokens, rotation=45, ha="right")
    ax_similarity.set_ylim(-1.05, 1.05)
    ax_similarity.set_xlabel("token of the sentence")
    ax_similarity.set_ylabel("cosine similarity")
    ax_similarity.set_title(f"similarity of '{tokens[position]}' with each token")
    plt.show()


token_picker = widgets.Dropdown(options=[(f"{t}: {word}", t) for t, word in enumerate(tokens)], value=1,
                                description="token")
widgets.VBox([token_picker, widgets.interactive_output(show_token, {"position": token_picker})])
"""),
        md("""
> **Try this:** in the widget, pick `it` and `cat`. Are they similar? After training on a large
> corpus, should they be?
"""),
        md(
            """
## Summary

- A **tokenizer** turns text into a list of integer ids. Words are readable but meet unknown words;
  characters never do but make long sequences; BPE learns subword pieces in between.
- Every vocabulary starts with the special tokens `<pad>`=0, `<unk>`=1, `<bos>`=2, `<eos>`=3.
- An **embedding table** `(V, d_model)` turns ids `(B, T)` into vectors `(B, T, d_model)` by picking
  rows. That equals `one_hot(ids) @ table` and PyTorch's `nn.Embedding`, exactly.
- The paper scales embeddings by $\\sqrt{d_\\text{model}}$ so they are not drowned by the
  positional encoding added next.
- Cosine similarity compares directions. Random embeddings are all nearly perpendicular; only
  training makes similar tokens similar.

## Key terms

"""
            + terms_table(
                [
                    ("token", "词元", "the unit of text the model reads"),
                    ("tokenizer", "分词器", "turns text into tokens and ids, and back"),
                    ("vocabulary", "词表", "all tokens the model knows, each with an id"),
                    ("special token", "特殊词元", "`<pad>`, `<unk>`, `<bos>`, `<eos>`"),
                    ("byte-pair encoding (BPE)", "字节对编码", "learns subword pieces by merging frequent pairs"),
                    ("subword", "子词", "a piece of a word, e.g. `▁c` + `at`"),
                    ("embedding", "嵌入", "the vector of a token, a row of the embedding table"),
                    ("one-hot vector", "独热向量", "all zeros except a single 1"),
                    ("cosine similarity", "余弦相似度", "cosine of the angle between two vectors"),
                ]
            )
            + "\n\n"
            + exercise_link(1)
        ),
    ]


# ======================================================================================
# 02 positional encoding
# ======================================================================================


def lesson_02() -> list[tuple[str, str]]:
    return [
        md("""
# Lesson 02 · Positional encoding

*"The cat sat on the mat"* and *"the mat sat on the cat"* use the same words and mean different
things. This lesson shows that attention, on its own, cannot tell them apart, and builds the fix:
a vector per **position**, added to each token's embedding.
"""),
        code(
            setup_code("""
from course_lib.attention import scaled_dot_product_attention
from course_lib.embeddings import TokenEmbedding
from course_lib.example import RUNNING_SENTENCE
from course_lib.positional import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    sinusoidal_positional_encoding,
)
from course_lib.tokenization import WordTokenizer
from course_lib.viz import plot_matrix, show_map
from course_lib.widgets import PositionalEncodingExplorer
""")
        ),
        code("""
show_map(2)
plt.show()
"""),
        md("""
## Learning goals

1. Show with numbers that self-attention without positions ignores word order: shuffling the
   input only shuffles the output.
2. Build the sinusoidal positional encoding of the paper from its formula and read its heatmap.
3. See why sines and cosines are a good choice: the dot product of two positions depends only on
   how far apart they are.
4. Compare with learned position embeddings (BERT, GPT-2) and with course_lib's versions.
"""),
        md("""
## 1. The running example, as vectors

We start where lesson 01 ended: the running sentence as word ids, and their embeddings (the same
seed gives the same table as in lesson 01).
"""),
        code(RUNNING_TOKENS),
        code("""
d_model = 16
torch.manual_seed(0)
embedding = TokenEmbedding(tokenizer.vocab_size, d_model)
with torch.no_grad():
    x = embedding(token_ids)  # (1, T, d_model)
print("embeddings x:", tuple(x.shape))
"""),
        md("""
## 2. Why order is lost

Self-attention (lesson 03 builds it) lets every token take a weighted average of all tokens'
vectors, with weights computed from the vectors themselves. Nothing in it looks at *where* a
token is. Let us use course_lib's attention as a black box and test that claim: one attention
layer with random projections.
"""),
        code("""
torch.manual_seed(1)
w_q, w_k, w_v = (nn.Linear(d_model, d_model, bias=False) for _ in range(3))


def self_attention(x):
    \"\"\"One attention layer with fixed random weights: (B, T, d_model) -> (B, T, d_model).\"\"\"
    output, _ = scaled_dot_product_attention(w_q(x), w_k(x), w_v(x))  # (B, T, d_model)
    return output


with torch.no_grad():
    out = self_attention(x)  # (1, T, d_model)
print("attention output:", tuple(out.shape))
"""),
        md("""
Now swap *cat* (position 1) and *mat* (position 5): **the mat sat on the cat**. A model that
understands order should now give *cat* a different vector, because it plays a different role.
"""),
        code(
            DIFF_HELPER
            + """


swap = torch.tensor([0, 5, 2, 3, 4, 1, 6, 7, 8, 9])  # new position -> old position
swapped_tokens = [tokens[i] for i in swap]
print(" ".join(swapped_tokens))

with torch.no_grad():
    out_swapped = self_attention(x[:, swap])  # (1, T, d_model)

cat_before = out[0, 1]  # 'cat' at position 1 of the original
cat_after = out_swapped[0, 5]  # 'cat' at position 5 of the swapped sentence
print(f"max abs difference of the output for 'cat': {max_abs_difference(cat_before, cat_after):.1e}")
print(f"max abs difference out(swapped x) vs swapped out(x): {max_abs_difference(out_swapped, out[:, swap]):.1e}")
"""
        ),
        md("""
The output vector of *cat* is the same in both sentences (up to rounding, about 1e-16). In general,
shuffling the tokens only shuffles the outputs the same way: attention is
**permutation-equivariant**. For attention, a sentence is a *bag* of words.

Why? Each output is a weighted sum over *all* tokens, and the weights depend only on pairs of
vectors. Move the tokens around and each one still meets the same partners with the same weights.

The fix: make the vectors themselves carry their position, by **adding** a position vector
$p_t$ to the embedding of the token at position $t$. Then *cat at position 1* and *cat at
position 5* are different inputs.

## 3. The sinusoidal encoding

The paper (section 3.5) uses a fixed table built from sines and cosines of different
frequencies. Position $pos$ and dimension pair $i$ (dimensions $2i$ and $2i+1$) get

$$PE_{pos,\\,2i} = \\sin\\!\\left(\\frac{pos}{10000^{2i/d_\\text{model}}}\\right), \\qquad
PE_{pos,\\,2i+1} = \\cos\\!\\left(\\frac{pos}{10000^{2i/d_\\text{model}}}\\right).$$

Think of a clock with `d_model / 2` hands that turn at different speeds: pair 0 turns once every
$2\\pi \\approx 6.3$ positions, the last pair takes tens of thousands of positions for one turn. The
positions of all the hands together tell the time, that is, the position.

We build it in small steps. First, a column of positions and a row of frequencies, one per pair:
"""),
        code("""
seq_len, base = 64, 10000.0
positions = torch.arange(seq_len).unsqueeze(1)  # (seq_len, 1)
pair_index = torch.arange(0, d_model, 2)  # (d_model / 2,) = 0, 2, 4, ... the "2i" of the formula
frequencies = 1.0 / base ** (pair_index / d_model)  # (d_model / 2,)
print("positions:", tuple(positions.shape), " frequencies:", tuple(frequencies.shape))
print("frequencies:", frequencies)
"""),
        md("""
Write $\\omega_i = 1/10000^{2i/d_\\text{model}}$ for the frequency of pair $i$ (the `frequencies`
above). Broadcasting `(seq_len, 1) * (d_model/2,)` gives every angle $pos \\cdot \\omega_i$ at once.
Sines go to the even dimensions, cosines to the odd ones:
"""),
        code("""
angles = positions * frequencies  # (seq_len, d_model / 2)
encoding = torch.zeros(seq_len, d_model)  # (seq_len, d_model)
encoding[:, 0::2] = torch.sin(angles)  # even dimensions
encoding[:, 1::2] = torch.cos(angles)  # odd dimensions
print("angles:", tuple(angles.shape), " encoding:", tuple(encoding.shape))
print("position 0:", encoding[0])
print("position 1:", encoding[1])
"""),
        md("""
Position 0 is `[0, 1, 0, 1, ...]` (sin 0 = 0, cos 0 = 1). Here are the steps as one function, and a
comparison with course_lib's `sinusoidal_positional_encoding` (PyTorch has no built-in module for
it, so course_lib is the reference here):
"""),
        code("""
def my_sinusoidal_encoding(seq_len, d_model, base=10000.0):
    \"\"\"The paper's positional encoding: (seq_len, d_model), sin on even and cos on odd dimensions.\"\"\"
    positions = torch.arange(seq_len).unsqueeze(1)  # (seq_len, 1)
    frequencies = 1.0 / base ** (torch.arange(0, d_model, 2) / d_model)  # (d_model / 2,)
    angles = positions * frequencies  # (seq_len, d_model / 2)
    encoding = torch.zeros(seq_len, d_model)  # (seq_len, d_model)
    encoding[:, 0::2] = torch.sin(angles)
    encoding[:, 1::2] = torch.cos(angles)
    return encoding


mine = my_sinusoidal_encoding(64, d_model)
reference = sinusoidal_positional_encoding(64, d_model)
print("shapes:", tuple(mine.shape), tuple(reference.shape))
print(f"max abs difference from course_lib: {max_abs_difference(mine, reference):.1e}")
"""),
        code("""
print(inspect.getsource(sinusoidal_positional_encoding))
"""),
        md("""
course_lib computes in float64 and checks its arguments (for example, `d_model` must be even,
because dimensions come in sine-cosine pairs).

### The picture

Each row of the heatmap is one position's vector. The first dimensions (left) change fast, from
one position to the next; the last ones (right) hardly change over 64 positions.
"""),
        code("""
fig, (ax_map, ax_curves) = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained",
                                        gridspec_kw={"width_ratios": [1, 1.3]})
plot_matrix(sinusoidal_positional_encoding(64, 64), ax=ax_map, center=0.0, vmin=-1, vmax=1,
            title="Sinusoidal encoding, d_model = 64", xlabel="dimension", ylabel="position",
            colorbar_label="PE value")
table64 = sinusoidal_positional_encoding(64, 64)
for dim in (0, 2, 10, 30):
    ax_curves.plot(table64[:, dim].numpy(), label=f"dimension {dim} (sin)")
ax_curves.set_xlabel("position")
ax_curves.set_ylabel("PE value")
ax_curves.set_title("A few dimensions over the positions")
ax_curves.legend(loc="lower left", fontsize=8)
plt.show()
"""),
        md("""
### Widget: explore the encoding

Change `d_model`, the `base` (10000 in the paper) and the position. Watch how a larger base
slows every hand of the clock down, and how each position gets its own pattern.
"""),
        code("""
# NBVAL_IGNORE_OUTPUT
PositionalEncodingExplorer(max_len=64, d_model=64, base=10000.0)
"""),
        md("""
> **Try this:** in the widget, set `base` to a small value such as 10. What happens to the rows of
> positions far apart? Could the model still tell position 3 from position 60?

### Relative positions: the dot product depends only on the distance

Why sines and cosines, and not simply the number $pos$? One reason: the values stay between −1
and 1 for any length. Another: the dot product of two positions' encodings depends only on their
**offset** $k$, not on where they are. For each pair,

$$\\sin(a)\\sin(b) + \\cos(a)\\cos(b) = \\cos(a - b),$$

so $PE_{pos} \\cdot PE_{pos+k} = \\sum_i \\cos(k\\,\\omega_i)$, the same for every $pos$. Attention
compares vectors with dot products (lesson 03), so "two words apart" looks the same anywhere in
the sentence. Check it:
"""),
        code("""
pe = sinusoidal_positional_encoding(64, d_model)  # (64, d_model)
for offset in (1, 2, 5):
    dots = [pe[pos] @ pe[pos + offset] for pos in (0, 10, 30)]
    formula = torch.cos(offset * frequencies).sum()
    print(f"offset {offset}: dot products at positions 0, 10, 30 = "
          f"{', '.join(f'{d:.4f}' for d in dots)};  sum of cos(k w_i) = {formula:.4f}")
"""),
        code("""
fig, ax = plt.subplots(figsize=(6, 5), layout="constrained")
plot_matrix(pe @ pe.T, ax=ax, cmap="viridis", title="PE[p] · PE[q]: constant along each diagonal",
            xlabel="position q", ylabel="position p", colorbar_label="dot product")
plt.show()
"""),
        md("""
The bands parallel to the diagonal are the offsets: every cell with the same $q - p$ has the same
colour. The diagonal itself is $d_\\text{model}/2 = 8$, the largest value: a position is most
similar to itself, and similarity tends to fall with distance (with ripples, from the fast
dimensions).

## 4. Adding the positions

`SinusoidalPositionalEncoding` stores the table once (a *buffer*: saved with the model, never
trained) and adds its first `T` rows to the embeddings. Now run the swap test again:
"""),
        code("""
add_positions = SinusoidalPositionalEncoding(d_model, max_len=64)
with torch.no_grad():
    x_pos = add_positions(x)  # (1, T, d_model) + (T, d_model) -> (1, T, d_model)
    x_swapped_pos = add_positions(x[:, swap])  # (1, T, d_model): positions added after the swap
    out_pos = self_attention(x_pos)  # (1, T, d_model)
    out_swapped_pos = self_attention(x_swapped_pos)  # (1, T, d_model)

print("x + PE:", tuple(x_pos.shape))
print(f"max abs difference of x_pos vs x + my table: {max_abs_difference(x_pos, x + mine[:T]):.1e}")
print(f"max abs difference of the output for 'cat' (positions 1 vs 5): "
      f"{max_abs_difference(out_pos[0, 1], out_swapped_pos[0, 5]):.2f}")
"""),
        md("""
Now *cat* gets a different output in the two sentences: the model can tell them apart.

## 5. Learned position embeddings

BERT and GPT-2 do not use a formula: they learn a vector per position, a second embedding table
of shape `(max_len, d_model)`, looked up with the ids `0, 1, ..., T-1`. The paper tried both and
found them about equally good. Learned positions are simple and flexible; their limit is that a
model never sees a position beyond `max_len`, whereas the formula gives an encoding for any
position.

course_lib's `LearnedPositionalEmbedding` is such a table (initialised small and random); it
equals `nn.Embedding` applied to the positions:
"""),
        code("""
torch.manual_seed(0)
learned = LearnedPositionalEmbedding(max_len=16, d_model=d_model)  # weight (16, d_model)
position_table = nn.Embedding(16, d_model)
with torch.no_grad():
    position_table.weight.copy_(learned.weight)
    ours = learned(x)  # (1, T, d_model)
    pytorch = x + position_table(torch.arange(T))  # (1, T, d_model) + (T, d_model)
print("weight:", tuple(learned.weight.shape), " output:", tuple(ours.shape))
print(f"max abs difference from x + nn.Embedding(positions): {max_abs_difference(ours, pytorch):.1e}")
"""),
        code("""
print(inspect.getsource(LearnedPositionalEmbedding))
"""),
        md("""
A sequence longer than `max_len` has no position vectors left, and course_lib says so:
"""),
        code("""
try:
    learned(torch.zeros(1, 20, d_model))
except ValueError as error:
    print("ValueError:", error)
"""),
        md(
            """
> **Try this:** the sinusoidal `add_positions` was built with `max_len=64`. The formula itself has
> no limit: call `sinusoidal_positional_encoding(1000, d_model)` and plot a few columns. Which
> dimensions still look constant over 1000 positions?

## Summary

- Self-attention treats a sentence as a bag of words: permuting the input permutes the output,
  and *cat* gets the same vector wherever it stands.
- The fix is to **add** a position vector to each embedding.
- The sinusoidal encoding uses sin on even and cos on odd dimensions, at frequencies
  $1/10000^{2i/d_\\text{model}}$; it needs no training and works for any length.
- The dot product of two sinusoidal encodings depends only on their distance.
- Learned position embeddings are a trainable `(max_len, d_model)` table, used by BERT and GPT-2.

## Key terms

"""
            + terms_table(
                [
                    ("positional encoding", "位置编码", "a vector per position added to the embeddings"),
                    ("sinusoidal", "正弦的", "built from sine and cosine waves"),
                    ("learned position embedding", "可学习的位置嵌入", "a trained table of position vectors"),
                    ("frequency / wavelength", "频率 / 波长", "how fast a dimension pair turns with position"),
                    ("permutation-equivariant", "置换等变", "shuffling inputs shuffles outputs the same way"),
                    ("relative position (offset)", "相对位置（偏移）", "the distance between two positions"),
                    ("buffer", "缓冲区", "a tensor saved with a module but not trained"),
                ]
            )
            + "\n\n"
            + exercise_link(2)
        ),
    ]


# ======================================================================================
# 03 self-attention
# ======================================================================================

EMBED_RUNNING = """d_model = 16
torch.manual_seed(0)
embedding = TokenEmbedding(tokenizer.vocab_size, d_model)  # the same table as in lessons 01 and 02
add_positions = SinusoidalPositionalEncoding(d_model, max_len=64)
x = add_positions(embedding(token_ids))  # (1, T, d_model): embeddings + positions
print("x:", tuple(x.shape))"""


def lesson_03() -> list[tuple[str, str]]:
    return [
        md("""
# Lesson 03 · Self-attention

In *"the cat sat on the mat because it was tired"*, what does *it* refer to? To understand a
word, a model has to look at the other words. **Self-attention** is how a Transformer does that:
every token asks a question, every token offers an answer, and each token collects the answers
that fit its question best.
"""),
        code(
            setup_code("""
import math

from course_lib.attention import scaled_dot_product_attention
from course_lib.embeddings import TokenEmbedding
from course_lib.example import RUNNING_SENTENCE
from course_lib.positional import SinusoidalPositionalEncoding
from course_lib.tokenization import WordTokenizer
from course_lib.viz import plot_attention, plot_matrix, show_map
from course_lib.widgets import AttentionStepThrough

torch.set_grad_enabled(False)  # this lesson only looks at numbers; nothing is trained
""")
        ),
        code("""
show_map(3)
plt.show()
"""),
        md("""
## Learning goals

1. Compute queries, keys and values from the token vectors, and attention scores from them.
2. Explain, with a numerical experiment, why the scores are divided by $\\sqrt{d_k}$.
3. Turn scores into weights with a softmax and mix the values with them.
4. Check your attention against course_lib and against PyTorch's `F.scaled_dot_product_attention`.

## The idea in words

Attention works like a soft lookup in a dictionary:

- each token makes a **query** $q$: *what am I looking for?*
- each token offers a **key** $k$: *what do I contain?*
- each token offers a **value** $v$: *what do I pass on if you pick me?*

The match between a query and a key is their dot product $q \\cdot k$ (large when they point the
same way). A softmax turns the matches of one query into weights that sum to 1, and the output of
that token is the weighted sum of the values. In one line, for all tokens at once:

$$\\text{Attention}(Q, K, V) = \\text{softmax}\\!\\left(\\frac{Q K^\\top}{\\sqrt{d_k}}\\right) V$$

It is *self*-attention when queries, keys and values all come from the same sentence.

## 1. The running example

Tokens, embeddings and positions as built in lessons 01 and 02:
"""),
        code(RUNNING_TOKENS),
        code(EMBED_RUNNING),
        md("""
## 2. Queries, keys and values

Each is a linear projection of the same `x`, with its own weight matrix. The projections let the
model learn *different* views of a token for asking, for being found and for passing on. The
projected size `d_k` need not equal `d_model`; we use 8 here. (In lesson 05 several such *heads*
run side by side.) The weights are random: the model is untrained, so expect no meaningful
pattern yet.
"""),
        code("""
d_k = d_v = 8
torch.manual_seed(1)
w_q = nn.Linear(d_model, d_k, bias=False)  # weight (d_k, d_model)
w_k = nn.Linear(d_model, d_k, bias=False)
w_v = nn.Linear(d_model, d_v, bias=False)

q = w_q(x)  # (1, T, d_model) -> (1, T, d_k)
k = w_k(x)  # (1, T, d_k)
v = w_v(x)  # (1, T, d_v)
print("x", tuple(x.shape), "-> q", tuple(q.shape), " k", tuple(k.shape), " v", tuple(v.shape))
"""),
        md("""
## 3. Scores: every query against every key

The score of query $i$ and key $j$ is $q_i \\cdot k_j$. For all pairs at once, multiply `q` by
`k` transposed over its last two dimensions: `(1, T, d_k) @ (1, d_k, T) -> (1, T, T)`. Row $i$
holds query $i$'s scores against every key.
"""),
        code("""
scores = q @ k.transpose(-2, -1)  # (1, T, d_k) @ (1, d_k, T) -> (1, T, T)
print("scores:", tuple(scores.shape))
it = tokens.index("it")
print(f"scores of the query '{tokens[it]}' (row {it}):")
print("  ", "  ".join(f"{word}={score:.2f}" for word, score in zip(tokens, scores[0, it])))
"""),
        md("""
## 4. Why divide by $\\sqrt{d_k}$?

A dot product adds up `d_k` products. If the entries of $q$ and $k$ are independent with mean 0
and variance 1, each product has variance 1, so the sum has **variance $d_k$**: the larger the
vectors, the more spread out the scores. Let us measure it.
"""),
        code("""
torch.manual_seed(2)
dimensions = [1, 4, 16, 64, 256, 1024]
print(f"{'d_k':>5} {'var(q·k)':>10} {'var(q·k / sqrt(d_k))':>22}")
for d in dimensions:
    q_sample = torch.randn(4000, d)  # 4000 random queries
    k_sample = torch.randn(4000, d)  # 4000 random keys
    dots = (q_sample * k_sample).sum(dim=-1)  # (4000,)
    print(f"{d:>5} {dots.var():>10.1f} {(dots / math.sqrt(d)).var():>22.2f}")
"""),
        md("""
Why does the spread matter? Softmax turns differences of scores into ratios of weights:
$e^{s_1}/e^{s_2} = e^{s_1 - s_2}$. With $d_k = 1024$ the scores have a standard deviation of about
$\\sqrt{1024} = 32$, and scores that differ by 30 give one weight about $e^{30}$ times the other, so the softmax puts almost all weight on the largest score: it **saturates** into a
one-hot vector. That is bad for learning: the gradient of softmax,
$\\partial p_i / \\partial s_j = p_i(\\delta_{ij} - p_j)$, is nearly zero when $p$ is one-hot, so
the scores (and the query and key weights behind them) stop learning.

Dividing by $\\sqrt{d_k}$ brings the variance back to 1 for every `d_k`. The next cell measures, for
one query against 10 keys, the average largest weight and the size of the softmax's gradient
(the norm of its Jacobian matrix), with and without the scale.
"""),
        code("""
def softmax_statistics(d, scale, trials=500, n_keys=10):
    \"\"\"Average largest weight and softmax-Jacobian norm for random queries and keys of size d.\"\"\"
    q_sample = torch.randn(trials, 1, d)  # (trials, 1, d)
    k_sample = torch.randn(trials, n_keys, d)  # (trials, n_keys, d)
    scores = (q_sample @ k_sample.transpose(-2, -1)).squeeze(1)  # (trials, n_keys)
    if scale:
        scores = scores / math.sqrt(d)
    p = torch.softmax(scores, dim=-1)  # (trials, n_keys)
    jacobian = torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)  # (trials, n_keys, n_keys)
    return p.max(dim=-1).values.mean().item(), jacobian.norm(dim=(-2, -1)).mean().item()


torch.manual_seed(3)
unscaled = [softmax_statistics(d, scale=False) for d in dimensions]
scaled = [softmax_statistics(d, scale=True) for d in dimensions]
print(f"{'d_k':>5} {'max weight':>11} {'(scaled)':>9} {'gradient size':>14} {'(scaled)':>9}")
for d, (w_raw, g_raw), (w_scaled, g_scaled) in zip(dimensions, unscaled, scaled):
    print(f"{d:>5} {w_raw:>11.3f} {w_scaled:>9.3f} {g_raw:>14.3f} {g_scaled:>9.3f}")
"""),
        code("""
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
axes[0].plot(dimensions, [w for w, _ in unscaled], "o-", label="q·k (no scaling)")
axes[0].plot(dimensions, [w for w, _ in scaled], "s-", label="q·k / sqrt(d_k)")
axes[0].axhline(1.0, color="grey", linestyle=":", linewidth=1)
axes[0].set_ylabel("average largest weight (10 keys)")
axes[0].set_title("Without scaling, softmax saturates")
axes[1].plot(dimensions, [g for _, g in unscaled], "o-", label="q·k (no scaling)")
axes[1].plot(dimensions, [g for _, g in scaled], "s-", label="q·k / sqrt(d_k)")
axes[1].set_ylabel("size of the softmax gradient")
axes[1].set_title("... and its gradient vanishes")
for ax in axes:
    ax.set_xscale("log", base=2)
    ax.set_xlabel("d_k (size of queries and keys)")
    ax.legend()
plt.show()
"""),
        md("""
Without the scale, the largest weight heads for 1 and the gradient for 0 as `d_k` grows; with it,
both stay the same at every size. The paper's model uses $d_k = 64$: there, without the scale, one
key out of ten already takes almost 90% of the weight on average.

> **Try this:** change `n_keys=10` to `n_keys=100` in `softmax_statistics`. Does the scaled
> version still keep the weights spread out?

Back to the running example: divide its scores by $\\sqrt{d_k} = \\sqrt{8}$.
"""),
        code("""
scaled_scores = scores / math.sqrt(d_k)  # (1, T, T)
print("scaled scores:", tuple(scaled_scores.shape))
"""),
        md("""
## 5. Softmax: scores become weights

A softmax over the **last** dimension (over the keys) makes every row positive and sum to 1:
row $i$ says how much token $i$ takes from each token. (A softmax over the wrong dimension is a
common mistake: then the *columns* sum to 1.)
"""),
        code("""
weights = torch.softmax(scaled_scores, dim=-1)  # (1, T, T), each row sums to 1
print("weights:", tuple(weights.shape))
print("row sums:", weights.sum(dim=-1))
print(f"weights of '{tokens[it]}':", weights[0, it])
"""),
        code("""
fig, ax = plt.subplots(figsize=(6.5, 5.5), layout="constrained")
plot_attention(weights[0], tokens, tokens, ax=ax, annotate=True,
               title="Attention weights (random, untrained projections)")
plt.show()
"""),
        md("""
Each row is one token's attention over the sentence. The pattern means nothing yet: the
projections are random. A trained model learns projections that make, for example, the row of *it*
light up at *cat* (lesson 12 shows the heads of a real trained model).

## 6. The weighted sum of values

Finally each token's output is its weights times the values: `(1, T, T) @ (1, T, d_v) -> (1, T, d_v)`.
Row $i$ of the output is $\\sum_j w_{ij} v_j$, a blend of every token's value. Check it by hand for
*it*:
"""),
        code("""
output = weights @ v  # (1, T, T) @ (1, T, d_v) -> (1, T, d_v)
print("output:", tuple(output.shape))

by_hand = sum(weights[0, it, j] * v[0, j] for j in range(T))  # (d_v,)
print(f"output of '{tokens[it]}':", output[0, it])
print("by hand:        ", by_hand)
"""),
        md("""
## 7. All steps in one function, compared with course_lib and PyTorch

The whole of scaled dot-product attention is four lines. It works for any leading dimensions
(batch, heads), because `@` and `transpose(-2, -1)` act on the last two.
"""),
        code(
            DIFF_HELPER
            + """


def my_attention(q, k, v):
    \"\"\"softmax(q k^T / sqrt(d_k)) v for q (..., T_q, d_k), k (..., T_k, d_k), v (..., T_k, d_v).\"\"\"
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., T_q, T_k)
    weights = torch.softmax(scores, dim=-1)  # (..., T_q, T_k)
    return weights @ v, weights  # (..., T_q, d_v), (..., T_q, T_k)


my_output, my_weights = my_attention(q, k, v)
reference_output, reference_weights = scaled_dot_product_attention(q, k, v)
pytorch_output = F.scaled_dot_product_attention(q, k, v)  # PyTorch returns only the output

print("output:", tuple(my_output.shape), " weights:", tuple(my_weights.shape))
print(f"max abs difference, mine vs course_lib output:  {max_abs_difference(my_output, reference_output):.1e}")
print(f"max abs difference, mine vs course_lib weights: {max_abs_difference(my_weights, reference_weights):.1e}")
print(f"max abs difference, mine vs F.scaled_dot_product_attention: {max_abs_difference(my_output, pytorch_output):.1e}")
"""
        ),
        md("""
All three agree to rounding error. course_lib's version has the same four steps, plus input
checks and the `mask` argument that lesson 04 explains:
"""),
        code("""
print(inspect.getsource(scaled_dot_product_attention))
"""),
        md("""
A wrong shape gets a message that says what was expected:
"""),
        code("""
try:
    scaled_dot_product_attention(q, k, v[:, :5])  # 5 values for 10 keys
except ValueError as error:
    print("ValueError:", error)
"""),
        md("""
## 8. Widget: step through attention

The widget below shows one stage at a time (scores $QK^\\top$, scaled, softmax, times $V$) for a
sentence you choose. We hand it this lesson's own embeddings and projections `w_q`, `w_k`, `w_v`,
so its numbers are the ones computed above. Its sentences use only the running example's words:
the second one is lesson 02's swapped sentence. (Leave the *causal* box alone until lesson 04.)
"""),
        code("""
def lesson_qkv(sentence):
    \"\"\"This lesson's tokens and q, k, v for a sentence, shaped (n_heads, T, d) with one head.\"\"\"
    ids = torch.tensor([tokenizer.encode(sentence)])  # (1, T)
    x = add_positions(embedding(ids))  # (1, T, d_model)
    return tokenizer.tokenize(sentence), w_q(x), w_k(x), w_v(x)  # q, k: (1, T, d_k), v: (1, T, d_v)


sentences = [RUNNING_SENTENCE, "the mat sat on the cat because it was tired", "it was tired because the cat sat"]
"""),
        code("""
# NBVAL_IGNORE_OUTPUT
AttentionStepThrough(sentences=sentences, qkv_fn=lesson_qkv)
"""),
        md(
            """
> **Try this:** make one key much longer, for example `k[0, 2] *= 10`, and recompute the weights.
> What happens to the column of *sat*? Why is a dot product sensitive to the length of vectors?

> **Try this:** replace `dim=-1` by `dim=-2` in the softmax. Which sums are 1 now, and why is that
> not what a query needs?

## Summary

- Self-attention projects each token into a **query**, a **key** and a **value**.
- Scores $QK^\\top$ compare every query with every key: `(B, T, d_k) @ (B, d_k, T) -> (B, T, T)`.
- Dividing by $\\sqrt{d_k}$ keeps the scores' variance at 1, so the softmax does not saturate and
  its gradient does not vanish as `d_k` grows.
- A softmax over the keys turns each row of scores into weights that sum to 1.
- The output of each token is the weighted sum of the values: `(B, T, T) @ (B, T, d_v) -> (B, T, d_v)`.
- Our four lines equal course_lib's `scaled_dot_product_attention` and PyTorch's
  `F.scaled_dot_product_attention`.

## Key terms

"""
            + terms_table(
                [
                    ("self-attention", "自注意力", "tokens of one sequence attend to each other"),
                    ("query / key / value", "查询 / 键 / 值", "what a token asks / offers to be matched / passes on"),
                    ("attention score", "注意力分数", "the dot product of a query and a key"),
                    ("scaling", "缩放", "dividing the scores by sqrt(d_k)"),
                    ("softmax", "softmax 函数", "turns scores into positive weights that sum to 1"),
                    ("attention weights", "注意力权重", "the softmax of the scores, one row per query"),
                    ("weighted sum", "加权和", "the output: the values mixed by the weights"),
                    ("saturation", "饱和", "a softmax that is almost one-hot, with a vanishing gradient"),
                ]
            )
            + "\n\n"
            + exercise_link(3)
        ),
    ]


# ======================================================================================
# 04 masking
# ======================================================================================


def lesson_04() -> list[tuple[str, str]]:
    return [
        md("""
# Lesson 04 · Masking

Attention lets every token look at every other token. Sometimes that is wrong: a language model
that predicts the next word must not look at it, and a batch of sentences of different lengths
is filled up with padding that nobody should look at. A **mask** says, for each query and key,
whether the query may attend to the key.
"""),
        code(
            setup_code("""
import math

from course_lib.attention import scaled_dot_product_attention
from course_lib.embeddings import TokenEmbedding
from course_lib.example import RUNNING_SENTENCE
from course_lib.masks import causal_mask, combine_masks, padding_mask
from course_lib.positional import SinusoidalPositionalEncoding
from course_lib.tokenization import WordTokenizer
from course_lib.viz import plot_attention, plot_matrix, show_map
from course_lib.widgets import MaskExplorer

torch.set_grad_enabled(False)  # this lesson only looks at numbers; nothing is trained
""")
        ),
        code("""
show_map(4)
plt.show()
"""),
        md("""
## Learning goals

1. Build the **causal mask** and apply it by setting the blocked scores to $-\\infty$ before the
   softmax.
2. Show with numbers what "peeking" means: without the mask, the output at position $t$ changes
   when a *future* token changes; with the mask, it does not.
3. Build the **padding mask** for a padded batch and combine both masks.
4. Handle a query that may attend to nothing: zeros, not NaN.
5. Match PyTorch's `F.scaled_dot_product_attention` with masks.

**The convention of this course: a mask is a bool tensor, and `True` means *may attend*.** It is the
convention of `F.scaled_dot_product_attention`. (`nn.MultiheadAttention` uses the opposite one,
True = blocked; flip a mask with `~mask` before passing it there.)

## 1. The running example and lesson 03's attention

Same tokens, embeddings, positions and projection weights as in lesson 03:
"""),
        code(RUNNING_TOKENS),
        code(EMBED_RUNNING),
        code("""
d_k = d_v = 8
torch.manual_seed(1)
w_q = nn.Linear(d_model, d_k, bias=False)
w_k = nn.Linear(d_model, d_k, bias=False)
w_v = nn.Linear(d_model, d_v, bias=False)
q, k, v = w_q(x), w_k(x), w_v(x)  # (1, T, d_k), (1, T, d_k), (1, T, d_v)
scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (1, T, T), scaled as in lesson 03
print("q, k, v:", tuple(q.shape), tuple(k.shape), tuple(v.shape), " scores:", tuple(scores.shape))
"""),
        md("""
## 2. The causal mask

Lesson 00 showed that one sentence holds many training examples: the context *the cat sat* must
predict *on*, the context *the cat sat on* must predict *the*, and so on. A decoder computes all
these predictions in one pass, one per position. Position $t$ predicts token $t+1$, so it may look
at positions $0, \\dots, t$, **never at later ones**; otherwise it could copy the answer.

Query $i$ may attend to key $j$ exactly when $j \\le i$: the lower triangle of a `T × T` matrix,
diagonal included.
"""),
        code("""
def my_causal_mask(T):
    \"\"\"Bool (T, T): True where query i may attend to key j, that is j <= i.\"\"\"
    return torch.ones(T, T, dtype=torch.bool).tril()  # (T, T)


mask = my_causal_mask(T)  # (T, T)
print("causal mask (1 = may attend):")
print(mask.int())
print("same as course_lib's causal_mask:", torch.equal(mask, causal_mask(T)))
"""),
        md("""
### Applying it: blocked scores become $-\\infty$

A weight of exactly 0 needs $e^{s} = 0$, that is $s = -\\infty$. So we set every blocked score to
`-inf` **before** the softmax (`masked_fill` writes a value where its condition is True, hence
`~mask`, the blocked places). The softmax of a row then spreads its weight over the allowed keys
only, and the weights still sum to 1.

(Setting the *weights* to 0 after the softmax would be wrong: the remaining weights would no longer
sum to 1.)
"""),
        code("""
masked_scores = scores.masked_fill(~mask, float("-inf"))  # (1, T, T), upper triangle -inf
print(masked_scores[0])
"""),
        code("""
masked_weights = torch.softmax(masked_scores, dim=-1)  # (1, T, T)
print("row sums:", masked_weights.sum(dim=-1))

fig, (ax_scores, ax_weights) = plt.subplots(1, 2, figsize=(12, 5), layout="constrained")
plot_matrix(masked_scores[0], tokens, tokens, ax=ax_scores, center=0.0, annotate=True, fmt="{:.1f}",
            title="Scores after the causal mask (hatched: -inf)", xlabel="key (attended to)",
            ylabel="query (attending)", colorbar_label="scaled score")
plot_attention(masked_weights[0], tokens, tokens, ax=ax_weights, annotate=True,
               title="Weights: zero above the diagonal")
plt.show()
"""),
        md("""
The first token can only attend to itself (weight 1.0); the last one to the whole sentence.

## 3. What "peeking" does

Let us prove that the mask stops information from flowing backwards. Change a *future* token,
position 5 (*mat* becomes *cat*: "the cat sat on the **cat** because it was tired"), and compare
every position's output before and after, without and with the mask.
"""),
        code(
            DIFF_HELPER
            + """


def attend(x, mask=None):
    \"\"\"Lesson 03's attention with the fixed weights w_q, w_k, w_v: (B, T, d_model) -> (B, T, d_v).\"\"\"
    output, _ = scaled_dot_product_attention(w_q(x), w_k(x), w_v(x), mask)  # (B, T, d_v)
    return output


changed_ids = token_ids.clone()  # (1, T)
changed_ids[0, 5] = tokenizer.token_to_id["cat"]
x_changed = add_positions(embedding(changed_ids))  # (1, T, d_model)
print(" ".join(tokenizer.ids_to_tokens(changed_ids[0])))

before, after = attend(x), attend(x_changed)  # (1, T, d_v) each, no mask
before_masked, after_masked = attend(x, mask), attend(x_changed, mask)  # (1, T, d_v) each, causal mask

print(f"{'position':>8} {'token':>8} {'change without mask':>20} {'change with mask':>17}")
for t in range(T):
    without = max_abs_difference(before[0, t], after[0, t])
    with_mask = max_abs_difference(before_masked[0, t], after_masked[0, t])
    print(f"{t:>8} {tokens[t]:>8} {without:>20.4f} {with_mask:>17.4f}")
print("with the mask, positions 0-4 are bit-for-bit identical:", torch.equal(before_masked[0, :5], after_masked[0, :5]))
"""
        ),
        md("""
Without the mask, **every** position's output changes, including positions 0-4, which come before
the change: they *peeked* at the future. A model trained that way learns to copy the next token
from its input, scores perfectly during training and is useless when it has to generate text, where
the future does not exist yet. With the causal mask, positions 0-4 are exactly unchanged (a
difference of 0), and only positions 5 and later, which may see position 5, change.

> **Try this:** change position 9 (*tired*) instead. Which positions change with the mask now?

## 4. Padding

To run several sentences at once, a batch must be a rectangle `(B, T)`. Shorter sentences are filled
up with the padding token `<pad>` (id 0). Padding is not text: no token should attend to it.
"""),
        code("""
short_sentence = "the cat sat"
short_ids = tokenizer.encode(short_sentence)
batch_ids = torch.tensor([
    tokenizer.encode(RUNNING_SENTENCE),
    short_ids + [tokenizer.pad_id] * (T - len(short_ids)),
])  # (B, T) = (2, 10)
print("batch ids (B, T):", tuple(batch_ids.shape))
print(batch_ids)
"""),
        md("""
`padding_mask` marks the real tokens with True. Its shape `(B, 1, 1, T)` is made for multi-head
attention (lesson 05), whose scores are `(B, n_heads, T_q, T_k)`: the mask broadcasts over heads and
queries, and blocks the padded **keys** (columns).
"""),
        code("""
pad_mask = padding_mask(batch_ids, tokenizer.pad_id)  # (B, 1, 1, T)
print("padding mask:", tuple(pad_mask.shape))
print(pad_mask[:, 0, 0].int())
"""),
        md("""
Our single attention has no head dimension yet: its `q` is `(B, T, d_k)`. Careful: broadcasting
`(B, 1, 1, T)` with `(B, T, T)` silently gives `(B, B, T, T)`, mixing sentences. So we give `x` a head
dimension of size 1, `(B, 1, T, d_model)`, as lesson 05 will have anyway.

Does padding change the real tokens' outputs? Pad the short sentence to 10 and to 5 positions and
compare the outputs of its three real tokens:
"""),
        code("""
def short_outputs(length, use_mask):
    \"\"\"Outputs of the 3 real tokens of the short sentence padded to `length`: (3, d_v).\"\"\"
    ids = torch.tensor([short_ids + [tokenizer.pad_id] * (length - len(short_ids))])  # (1, length)
    x = add_positions(embedding(ids))[:, None]  # (1, 1, length, d_model): a head dimension
    mask = padding_mask(ids, tokenizer.pad_id) if use_mask else None  # (1, 1, 1, length)
    return attend(x, mask)[0, 0, : len(short_ids)]  # (3, d_v)


print(f"without the padding mask, padded to 10 vs 5: {max_abs_difference(short_outputs(10, False), short_outputs(5, False)):.4f}")
print(f"with the padding mask,    padded to 10 vs 5: {max_abs_difference(short_outputs(10, True), short_outputs(5, True)):.4f}")
"""),
        md("""
Without the mask, the amount of padding changes the result: the real tokens spend attention on
`<pad>`. With the mask, a sentence gives the same outputs however it is padded.

## 5. Both masks at once

A decoder needs both: no future keys **and** no padded keys. Masks combine with a logical AND
(`combine_masks` does that, broadcasting `(T, T)` with `(B, 1, 1, T)` to `(B, 1, T, T)`).
"""),
        code("""
both = combine_masks(causal_mask(T), pad_mask)  # (T, T) & (B, 1, 1, T) -> (B, 1, T, T)
print("combined mask:", tuple(both.shape))
print("same as causal & padding:", torch.equal(both, causal_mask(T) & pad_mask))

x_batch = add_positions(embedding(batch_ids))[:, None]  # (B, 1, T, d_model)
batch_output, batch_weights = scaled_dot_product_attention(w_q(x_batch), w_k(x_batch), w_v(x_batch), both)
print("output:", tuple(batch_output.shape), " weights:", tuple(batch_weights.shape))
"""),
        code("""
batch_tokens = tokenizer.ids_to_tokens(batch_ids[1])
fig, (ax_mask, ax_weights) = plt.subplots(1, 2, figsize=(12, 5), layout="constrained")
plot_matrix(both[1, 0].int(), batch_tokens, batch_tokens, ax=ax_mask, cmap="viridis",
            title=f"Causal AND padding mask for '{short_sentence}'", xlabel="key (attended to)",
            ylabel="query (attending)", colorbar_label="1 = may attend")
plot_attention(batch_weights[1, 0], batch_tokens, batch_tokens, ax=ax_weights, annotate=True,
               title="Attention weights of the padded sentence")
plt.show()
"""),
        md("""
The padded *queries* (the rows of `<pad>`) still attend to the real tokens before them. Their
outputs are meaningless but harmless: nobody attends to them, and the loss ignores them (lesson 10).

## 6. A row with nothing to attend to

Some models pad on the **left** (`<pad> <pad> the cat sat`). With a causal mask, the first padded
query may attend only to itself, and it is padding: every key of its row is blocked. The row's
scores are all `-inf`, and softmax computes $e^{-\\infty} / \\sum e^{-\\infty} = 0/0$: **NaN**.
"""),
        code("""
left_ids = torch.tensor([[tokenizer.pad_id, tokenizer.pad_id] + short_ids])  # (1, 5)
left_tokens = tokenizer.ids_to_tokens(left_ids[0])
left_mask = combine_masks(causal_mask(5), padding_mask(left_ids, tokenizer.pad_id))  # (1, 1, 5, 5)
print(left_tokens)
print(left_mask[0, 0].int())

x_left = add_positions(embedding(left_ids))[:, None]  # (1, 1, 5, d_model)
q_left, k_left, v_left = w_q(x_left), w_k(x_left), w_v(x_left)  # (1, 1, 5, d_k) each
naive_scores = (q_left @ k_left.transpose(-2, -1) / math.sqrt(d_k)).masked_fill(~left_mask, float("-inf"))
naive_weights = torch.softmax(naive_scores, dim=-1)  # (1, 1, 5, 5)
print("naive softmax weights:")
print(naive_weights[0, 0])
"""),
        md("""
NaN is contagious. In the next layer, *every* query multiplies the values by its weights, and
`0 × NaN` is still NaN, so one empty row poisons the whole sentence, and then the loss and every
gradient. course_lib's attention (and recent versions of PyTorch's) returns **zero weights and a
zero output** for such a row instead:
"""),
        code("""
reference_output, reference_weights = scaled_dot_product_attention(q_left, k_left, v_left, left_mask)
print("course_lib weights:")
print(reference_weights[0, 0])
print("NaN anywhere in course_lib's output:", reference_output.isnan().any().item())

naive_output = naive_weights @ v_left  # (1, 1, 5, d_v)
# A second attention layer (kept minimal: no projections, no scale) on top of the first one's output.
next_layer = torch.softmax(naive_output @ naive_output.transpose(-2, -1), dim=-1) @ naive_output  # (1, 1, 5, d_v)
print("rows with NaN after one naive layer:", naive_output.isnan().any(dim=-1)[0, 0].tolist())
print("rows with NaN after a second layer: ", next_layer.isnan().any(dim=-1)[0, 0].tolist())
"""),
        md("""
course_lib does it with one extra step, which you saw in lesson 03's listing of
`scaled_dot_product_attention` (the second `if mask is not None:` block): after the softmax, it sets
the weights of blocked keys to 0. In a fully blocked row that replaces the NaNs with zeros; in every
other row the blocked weights are 0 already, so nothing changes.

Here are course_lib's two mask builders. Both are one line of work; the rest checks the inputs.
"""),
        code("""
print(inspect.getsource(causal_mask))
print(inspect.getsource(padding_mask))
"""),
        md("""
## 7. Compared with PyTorch

`F.scaled_dot_product_attention` takes the same kind of mask (`attn_mask`, bool, True = may
attend), and also a shortcut `is_causal=True` that builds the causal mask itself.
"""),
        code("""
ours, _ = scaled_dot_product_attention(q, k, v, causal_mask(T))
pytorch_mask = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(T))
pytorch_causal = F.scaled_dot_product_attention(q, k, v, is_causal=True)
print(f"causal, attn_mask: max abs difference {max_abs_difference(ours, pytorch_mask):.1e}")
print(f"causal, is_causal: max abs difference {max_abs_difference(ours, pytorch_causal):.1e}")

q_b, k_b, v_b = w_q(x_batch), w_k(x_batch), w_v(x_batch)  # (B, 1, T, d_k) each
pytorch_both = F.scaled_dot_product_attention(q_b, k_b, v_b, attn_mask=both)
print(f"causal + padding:  max abs difference {max_abs_difference(batch_output, pytorch_both):.1e}")

pytorch_left = F.scaled_dot_product_attention(q_left, k_left, v_left, attn_mask=left_mask)
print(f"fully masked rows: max abs difference {max_abs_difference(reference_output, pytorch_left):.1e}")
"""),
        md("""
## 8. Widget: explore the masks

Switch the causal and padding masks on and off, change the amount of padding, and see the mask,
the masked scores and the weights update together.
"""),
        code("""
# NBVAL_IGNORE_OUTPUT
MaskExplorer(tokens=tokens, pad_count=2)
"""),
        md(
            """
> **Try this:** in `my_causal_mask`, use `.triu()` instead of `.tril()`. Run the peeking test
> again: which positions are protected now? What would such a model learn?

> **Try this:** fill blocked scores with `-1e9` instead of `-inf`. Does the fully masked row still
> give NaN? What does it give instead, and is that better?

## Summary

- A mask is a bool tensor, **True = may attend**, broadcastable to the scores `(..., T_q, T_k)`.
- Blocked scores are set to $-\\infty$ before the softmax, so their weights are exactly 0 and the
  allowed weights still sum to 1.
- The **causal mask** (lower triangle) stops position $t$ from seeing later positions: changing a
  future token leaves earlier outputs exactly unchanged. Without it, the model peeks.
- The **padding mask** `(B, 1, 1, T)` blocks `<pad>` keys, so padding does not change real tokens'
  outputs. A decoder uses both, combined with AND.
- A query with no allowed key gets zero weights and a zero output, not NaN.

## Key terms

"""
            + terms_table(
                [
                    ("mask", "掩码", "bool tensor: True = may attend"),
                    ("causal mask", "因果掩码", "blocks the future: query i sees keys 0..i"),
                    ("padding", "填充", "filler tokens that make a batch rectangular"),
                    ("padding mask", "填充掩码", "blocks the padded keys"),
                    (
                        "peeking (information leakage)",
                        "偷看（信息泄露）",
                        "a position seeing the answer it must predict",
                    ),
                    ("negative infinity", "负无穷", "the score of a blocked key; its weight becomes 0"),
                    ("broadcasting", "广播", "stretching size-1 dimensions to match shapes"),
                    ("NaN (not a number)", "非数值", "the result of 0/0; spreads through every later step"),
                ]
            )
            + "\n\n"
            + exercise_link(4)
        ),
    ]


LESSONS = {"00": lesson_00, "01": lesson_01, "02": lesson_02, "03": lesson_03, "04": lesson_04}


def main(selected: list[str]) -> None:
    NOTEBOOKS.mkdir(exist_ok=True)
    for number in selected or sorted(LESSONS):
        write_lesson(LESSON_FILES[int(number)], LESSONS[number]())


if __name__ == "__main__":
    main(sys.argv[1:])
