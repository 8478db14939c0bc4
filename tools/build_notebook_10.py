"""Build lesson 10 (train a translator) with nbformat.

Run from the repository root:  python tools/build_notebook_10.py
The notebook is written without outputs; execute it afterwards with
``jupyter nbconvert --to notebook --execute --inplace notebooks/10_train_a_translator.ipynb``.
"""

from __future__ import annotations

from pathlib import Path

from notebook_kit import VERSION_CHECK, code, md, terms_table, write_lesson

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "10_train_a_translator.ipynb"


SETUP = f"""# Setup: imports, a check that course_lib is recent enough, a fixed seed and short printing.
import re

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch

{VERSION_CHECK}

from course_lib import viz
from course_lib.generation import beam_search, greedy_decode
from course_lib.train import (
    TranslatorRecipe,
    batch_sampler,
    build_translator,
    cross_attention,
    exact_match,
    load_translator,
    load_translator_snapshots,
    train_translator,
    translation_loss,
)
from course_lib.training import History, lr_at, train
from course_lib.translation_data import (
    alignment,
    chinese_tokens,
    chinese_vocabulary,
    encode_pairs,
    english_tokens,
    english_vocabulary,
    make_pair,
    make_splits,
    parse_english,
    translate,
)
from course_lib.viz import plot_attention, plot_head_grid, show_map
from course_lib.widgets import FigureWidget, HeadGrid

RETRAIN = False  # True: train the translator from scratch here (about 3 minutes) instead of loading it

torch.manual_seed(0)
torch.set_num_threads(1)  # one CPU thread: steady timings and the same numbers on every run
torch.set_printoptions(precision=4, sci_mode=False)"""


def cells() -> list[tuple[str, str]]:
    return [
        md(r"""
# Lesson 10 · Train a translator

Lessons 01 to 09 built every part of the Transformer and checked each one against PyTorch. The model has
never *learned* anything yet: its weights are random. In this lesson we train the whole encoder-decoder on
the task it was invented for, translation (翻译), and look inside it afterwards.

The task is small enough to train on a laptop CPU in about three minutes, and rich enough that the model
has to learn real grammar: toy English into toy Chinese.
"""),
        code(SETUP),
        md("## Where we are\n\nEverything is coloured: this lesson trains the whole model."),
        code("show_map(10)\nplt.show()"),
        md(r"""
## Learning goals

By the end of this lesson you can

1. describe a translation data set by its **alignment** (对齐), and say why a crossing alignment is harder than
   copying;
2. write the **training loop** of a sequence-to-sequence model: teacher forcing, **label smoothing**, AdamW,
   **warm-up** and decay of the learning rate, gradient clipping;
3. measure a translator by **exact match** with greedy decoding, and check how far it **generalises** to longer
   sentences;
4. read **cross-attention** maps as a learned alignment, and watch them form during training;
5. compare **greedy decoding** with **beam search** and explain the model's remaining mistakes.
"""),
        md(r"""
## 1. The data: two toy languages

Real translation data would take hours to learn. Instead `course_lib.translation_data` defines two small
languages and a **syntax tree** that can be written in either of them. One tree gives one English sentence and
its one correct Chinese translation, so we can check the model's answer exactly.

The Chinese side follows Chinese word order:

* a **relative clause comes before its noun** and ends in 的: "the cat that chases the dog" is 追狗的猫
  (chase dog 的 cat);
* numerals take a **measure word** (量词) that depends on the noun: three cats 三只猫, two books 两本书;
* English plural and verb agreement (cat/cats, chases/chase) **have no counterpart**; tense and negation become
  words of their own (chased 追了, does not chase 不追, did not chase 没追).
"""),
        code(r"""
# The reference translation comes from the tree, not from a model.
for english in [
    "the cat that chases the dog sees three cats",
    "the cat that the dog chases sees three cats",
    "the cats that chase the dog saw two books",
    "a teacher that the children like did not find this car",
]:
    print(f"{english:<48} -> {translate(english)}")
"""),
        md(r"""
Clauses nest up to two deep ("the dog that chases the cat that the bird sees ..."), and a sentence has up to
25 English words. The generator draws sentences from a fixed seed and splits them into **train**, **validation**
and **test** sets that share no sentence. A fourth set, **long**, holds sentences of 26 to 29 words: longer
than anything the model sees in training.

The shipped model was trained on 60 000 sentences. Here we draw only 2 000 training sentences, for the short
demonstration run below; the validation, test and long sets do not depend on that number.
"""),
        code(r"""
model, info = load_translator()  # the shipped checkpoint: weights, configuration, history, measured facts
recipe = TranslatorRecipe(**info["recipe"])
splits = make_splits(info["facts"]["seed"], 2000, recipe.n_val, recipe.n_test, recipe.n_long)
source_vocab, target_vocab = english_vocabulary(), chinese_vocabulary()
for name, pairs in splits.items():
    lengths = [len(pair.english) for pair in pairs]
    print(f"{name:>5}: {len(pairs):>5} sentences, {min(lengths)}-{max(lengths)} English words")
print("vocabulary sizes: English", len(source_vocab), " Chinese", len(target_vocab))
"""),
        md(r"""
### The alignment crosses

Which Chinese token translates which English word? The tree knows: `alignment(tree)` lists the pairs of
positions. Drawn as lines, a word-for-word task would give parallel lines. Here the lines **cross**: the head
noun of a relative clause jumps over its whole clause, and nested clauses cross again.
"""),
        code(r'''
def draw_alignment(ax, english, chinese, links, title):
    """English words on top, Chinese tokens below, a line for every aligned pair."""
    x_top = np.linspace(0, 1, len(english))
    x_bottom = np.linspace(0, 1, len(chinese))
    for i, j in links:
        ax.plot([x_top[i], x_bottom[j]], [1, 0], color="tab:blue", alpha=0.6)
    for x, word in zip(x_top, english):
        ax.text(x, 1.04, word, rotation=55, ha="left", va="bottom", fontsize=9)
    for x, token in zip(x_bottom, chinese):
        ax.text(x, -0.06, token, ha="center", va="top", fontsize=12)
    ax.set_ylim(-0.25, 1.45)
    ax.set_xlim(-0.05, 1.1)
    ax.set_axis_off()
    ax.set_title(title, loc="left")


examples = [
    ("no relative clause: the lines do not cross", "the big dogs chased three cats"),
    ("depth 1", "the cat that chases the dog sees a bird"),
    ("depth 2", "the teacher that the child that helps the horse likes did not see these books"),
]
fig, axes = plt.subplots(len(examples), 1, figsize=(10, 8), layout="constrained")
for ax, (title, english) in zip(axes, examples):
    tree = parse_english(english)
    draw_alignment(ax, english_tokens(tree), chinese_tokens(tree), alignment(tree), title)
plt.show()
'''),
        md(r"""
(“the” has no Chinese counterpart; a numeral links to both the numeral and its measure word, 三只.)

## 2. The model

The translator is `course_lib.Transformer` from lesson 08, small: 3 encoder and 3 decoder layers,
`d_model = 128`, 4 heads, pre-norm (lesson 06), no dropout (the data are endless, so there is nothing to
over-fit). Its output layer shares its weights with the Chinese embedding.
"""),
        code(r"""
print(model.config)
n_parameters = sum(p.numel() for p in model.parameters())
print(f"{n_parameters:,} parameters")
"""),
        md(r"""
## 3. The training loop

`course_lib.training.train` is one loop you can read in full (`train??` shows it). Each step:

1. takes a random **batch** of sentence pairs (`batch_sampler`);
2. computes the loss with **teacher forcing**: the decoder reads the correct Chinese prefix
   `<bos> y1 … yn` and must predict `y1 … yn <eos>`, every position at once (the causal mask of lesson 04
   keeps it from peeking);
3. uses **label smoothing** (标签平滑): the target puts 0.9 on the right token and spreads 0.1 over the whole
   vocabulary, so the model is never pushed towards infinite confidence;
4. back-propagates, **clips** the gradient norm to 1, and takes an **AdamW** step;
5. sets the **learning rate** from a schedule: a linear **warm-up** (学习率预热) and then a cosine decay.

The shipped run had a budget of three minutes rather than a number of steps, so its schedule follows the clock
(`schedule_by_time=True`, `lr_at` gives the curve): a slower computer takes fewer steps, but still warms up
and decays fully.

Why warm up? At the start the weights are random and the gradients large and noisy. AdamW divides by a running
estimate of the gradient's size, and that estimate is poor for the first few steps; small steps at first keep
them from throwing the model off.
"""),
        code(r"""
shipped = History.from_dict(info["history"])  # what the shipped run logged every 10 steps
warmup_end = shipped.steps[int(np.argmax(shipped.lr))]
fig, ax = plt.subplots(figsize=(7, 3))
ax.plot(shipped.steps, shipped.lr)
ax.axvline(warmup_end, color="grey", linestyle=":", label=f"end of warm-up (about step {warmup_end})")
ax.set_xlabel("training step")
ax.set_ylabel("learning rate")
ax.set_title(f"The learning rate of the shipped run ({shipped.steps[-1]} steps)")
ax.legend()
plt.show()
"""),
        md(r"""
The loss function is the whole "task" as the loop sees it (`translation_loss`):
"""),
        code(r"""
batch = batch_sampler(*encode_pairs(splits["train"], source_vocab, target_vocab), batch_size=4, seed=0)(0)
source, target = batch
print("source", tuple(source.shape), " target", tuple(target.shape))
print("decoder reads :", target_vocab.id_to_token[target[0, 0]], "".join(target_vocab.decode(target[0, 1:-1])))
print("and predicts  :", "".join(target_vocab.decode(target[0, 1:])), "<eos>")
"""),
        md(r"""
### A short run, to see the loop work

Training the shipped model takes about three minutes (`python -m course_lib.train translator`, or set
`RETRAIN = True` in the first cell). Here a fresh model trains for 30 steps. The dashed line is the loss of a
uniform guess over the 50 Chinese tokens, ln 50 ≈ 3.9. A fresh model starts far above it: its random logits
are large, so it is confidently wrong. In 30 steps it comes down to about that line, which means it has
learned which tokens are common, not yet how to translate. That takes hundreds of steps more.
"""),
        code(r"""
fresh = build_translator(recipe, source_vocab, target_vocab)
short = train(
    fresh,
    batch_sampler(*encode_pairs(splits["train"], source_vocab, target_vocab), batch_size=32, seed=0),
    lambda m, b: translation_loss(m, b, recipe.label_smoothing),
    steps=30,
    peak_lr=recipe.peak_lr,
    warmup_steps=10,
    log_every=1,
    progress=False,
)
print(f"30 steps: the loss fell by more than a third: {short.train_loss[-1] < 0.67 * short.train_loss[0]}")
fig, ax = plt.subplots(figsize=(7, 3))
ax.plot(short.steps, short.train_loss, marker=".", label="training loss")
ax.axhline(np.log(len(target_vocab)), color="grey", linestyle="--", label="uniform guess, ln V")
ax.legend()
ax.set_xlabel("training step")
ax.set_ylabel("training loss")
ax.set_title("The first 30 steps of a fresh model")
plt.show()
"""),
        md(r"""
With `RETRAIN = True` the next cell trains the full recipe here (the progress bar shows the loss); otherwise it
keeps the shipped model and its stored history.
"""),
        code(r"""
if RETRAIN:
    run = train_translator(save=False)
    model, history = run.model, run.history
    snapshot_steps, snapshots = run.snapshot_steps, run.snapshots
    facts = run.facts
else:
    history = History.from_dict(info["history"])
    snapshot_steps, snapshots = load_translator_snapshots()
    facts = info["facts"]
print(f"trained for {facts['steps_done']} steps")
"""),
        md(r"""
### Training curves

The stored history has the training loss and learning rate every 10 steps, and the exact match on 200
validation sentences every 250 steps. With label smoothing the loss cannot reach 0: even a perfect model pays
for the 0.1 it must spread over the vocabulary.
"""),
        code(r"""
fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 3.8), layout="constrained")
ax_loss.plot(history.steps, history.train_loss, label="training loss")
ax_loss.set_xlabel("training step")
ax_loss.set_ylabel("label-smoothed cross-entropy")
ax_loss.set_yscale("log")
ax_lr = ax_loss.twinx()
ax_lr.plot(history.steps, history.lr, color="tab:orange", alpha=0.6, label="learning rate")
ax_lr.set_ylabel("learning rate")
ax_loss.legend(loc="upper right")
ax_lr.legend(loc="center right")
ax_loss.set_title("Loss and learning rate")
ax_acc.plot(history.eval_steps, [100 * v for v in history.metric("val_exact_match")], marker="o")
ax_acc.set_xlabel("training step")
ax_acc.set_ylabel("exact match (%)")
ax_acc.set_ylim(0, 101)
ax_acc.set_title("Validation exact match (greedy decoding, 200 sentences)")
plt.show()
"""),
        md(r"""
## 4. How good is it?

**Exact match** counts a sentence as right only if every token of the greedy translation equals the reference:
one wrong measure word and the whole sentence is wrong. It is a strict measure, and the right one here, since
each sentence has exactly one correct translation.
"""),
        code(r"""
results = {}
for name in ("test", "long"):
    accuracy, wrong = exact_match(model, splits[name], source_vocab, target_vocab)
    results[name] = (accuracy, wrong)
    print(f"{name:>5}: {100 * accuracy:6.2f}% exact match ({len(splits[name]) - len(wrong)} of {len(splits[name])})")
"""),
        md(r"""
On sentences like those it was trained on, the model is almost always exactly right. On longer sentences it
does much worse, although the grammar is the same. The next figure shows where accuracy falls.
"""),
        code(r"""
by_length = {}
for name in ("test", "long"):
    wrong_sources = {pair.english for pair, _ in results[name][1]}
    for pair in splits[name]:
        right, total = by_length.get(len(pair.english), (0, 0))
        by_length[len(pair.english)] = (right + (pair.english not in wrong_sources), total + 1)
lengths = sorted(by_length)
accuracy = [100 * by_length[n][0] / by_length[n][1] for n in lengths]
fig, ax = plt.subplots(figsize=(9, 3.5))
ax.bar(lengths, accuracy, color=["tab:blue" if n <= 25 else "tab:red" for n in lengths])
ax.axvline(25.5, color="grey", linestyle=":")
ax.text(25.7, 50, "longer than any\ntraining sentence", fontsize=9)
ax.set_xlabel("English sentence length (words)")
ax.set_ylabel("exact match (%)")
ax.set_title("Exact match by length: test set (blue) and long set (red)")
plt.show()
"""),
        md(r"""
Why the cliff? The grammar of a 27-word sentence is the same as that of a 20-word one, but the **positions**
are not. No training sentence had an English word at position 26 or later, so the encoder has never seen the
sinusoidal encodings (lesson 02) of those positions, and the attention patterns it learned were tuned to the
lengths it saw. Learning the *rule* does not automatically mean applying it at any length: generalising beyond
the training lengths is a known weakness of Transformers, and an active research topic (relative position
schemes such as RoPE or ALiBi help).

## 5. Cross-attention is a learned alignment

Each decoder layer's cross-attention decides, for every Chinese token it is about to write, which English
words to read. Nobody told the model the alignment; if it learned one, it is in these weights. Rows are the
Chinese token being predicted, columns the English words. The boxes mark the true alignment.
"""),
        code(r'''
def cross_attention_of(pair):
    """Cross-attention of every layer while the model reads the reference translation:
    (n_layers, n_heads, T, S), rows = token predicted, columns = English word."""
    source, target = encode_pairs([pair], source_vocab, target_vocab)
    return cross_attention(model, source, target)[:, 0]


def alignment_hits(weights, links, n_rows):
    """Share of aligned rows whose most-attended English word is one of the aligned ones."""
    aligned = {}
    for i, j in links:
        aligned.setdefault(j, set()).add(i)
    rows = [j for j in range(n_rows) if j in aligned]
    return np.mean([int(weights[j].argmax()) in aligned[j] for j in rows])


example = parse_english("the teacher that the child that helps the horse likes did not see these books")
example_pair = make_pair(example)
weights = cross_attention_of(example_pair)  # (n_layers, n_heads, T, S)
links = alignment(example)
n_rows = len(example_pair.chinese)
scores = np.array([[alignment_hits(weights[l, h], links, n_rows) for h in range(weights.shape[1])] for l in range(weights.shape[0])])
print("share of Chinese tokens whose strongest cross-attention hits an aligned English word")
print("(rows: layers 0-2, columns: heads 0-3)")
print(np.round(scores, 2))
best_layer, best_head = np.unravel_index(scores.argmax(), scores.shape)
print(f"best: layer {best_layer}, head {best_head}")
'''),
        code(r"""
rows = list(example_pair.chinese) + ["<eos>"]
fig, ax = plt.subplots(figsize=(9, 6))
plot_attention(weights[best_layer, best_head], rows, list(example_pair.english), ax=ax,
               title=f"Cross-attention, layer {best_layer} head {best_head}")
for i, j in links:
    ax.add_patch(plt.Rectangle((i - 0.5, j - 0.5), 1, 1, fill=False, edgecolor="tab:cyan", linewidth=1.5))
ax.set_ylabel("Chinese token being predicted")
ax.set_xlabel("English word (attended to)")
plt.show()
"""),
        md(r"""
The bright cells follow the boxes: to write 书 the model reads "books", to write 没 it reads "not", and the
jump back and forth between the clauses is there in the weights. The heads share the work differently: in the
shipped model, head 0 of the last layer reads "that" while 的 is written, and head 1 reads "did" for 没. All
heads of the last layer:
"""),
        code(r"""
fig = plot_head_grid(weights[-1], rows, list(example_pair.english), ncols=2, figsize=(12, 9),
                     title="Cross-attention of the last decoder layer, all heads")
plt.show()
"""),
        md("Explore every layer and head (the slider picks the layer, the other the head):"),
        code("# NBVAL_IGNORE_OUTPUT\nHeadGrid(weights, rows, list(example_pair.english))"),
        md(r"""
### Watching the alignment form

During training, the loop took a **snapshot** of the cross-attention on four test sentences every few hundred
steps. At step 0 the weights are nearly uniform: a random model reads everything a little. Move the slider to
see the alignment appear.
"""),
        code(r'''
class AlignmentFormingSlider(FigureWidget):
    """Cross-attention of one sentence at each saved training step (a slider over the snapshots)."""

    def __init__(self, steps, weights, sentences):
        self.steps = list(steps)
        self.weights = weights.numpy()  # (n_snapshots, n_layers, n_sentences, n_heads, T, S)
        self.sentences = sentences  # [(english words, chinese tokens), ...]
        n_layers, n_heads = self.weights.shape[1], self.weights.shape[3]
        controls = {
            "snapshot": widgets.IntSlider(value=len(self.steps) - 1, min=0, max=len(self.steps) - 1, description="snapshot"),
            "sentence": widgets.Dropdown(options=[(" ".join(e[:6]) + " ...", k) for k, (e, _) in enumerate(sentences)], description="sentence"),
            "layer": widgets.IntSlider(value=n_layers - 1, min=0, max=n_layers - 1, description="layer"),
            "head": widgets.Dropdown(options=[("mean of heads", -1)] + [(f"head {h}", h) for h in range(n_heads)], description="head"),
        }
        super().__init__(controls, figsize=(8, 6))

    def current_matrix(self):
        c = {name: control.value for name, control in self.controls.items()}
        english, chinese = self.sentences[c["sentence"]]
        heads = self.weights[c["snapshot"], c["layer"], c["sentence"]]  # (n_heads, T, S)
        matrix = heads.mean(axis=0) if c["head"] == -1 else heads[c["head"]]
        return matrix[: len(chinese) + 1, : len(english)]  # drop the padding

    def _build_figure(self):
        self.ax = self.figure.add_subplot()
        self.heatmap = viz.plot_attention(np.zeros((2, 2)), ["a", "b"], ["a", "b"], ax=self.ax, vmax=1.0)

    def _update(self):
        english, chinese = self.sentences[self.controls["sentence"].value]
        viz.update_image(self.heatmap, self.current_matrix(), vmin=0.0, vmax=1.0)
        viz.set_tick_labels(self.ax, list(chinese) + ["<eos>"], english)
        self.ax.set_ylabel("Chinese token being predicted")
        self.ax.set_title(f"after {self.steps[self.controls['snapshot'].value]} training steps")

    def _layout_key(self):
        return self.controls["sentence"].value


snapshot_sentences = info["snapshot_sentences"]
print("snapshots at steps", snapshot_steps)
'''),
        code("# NBVAL_IGNORE_OUTPUT\nAlignmentFormingSlider(snapshot_steps, snapshots, snapshot_sentences)"),
        md(r"""
And the same, still, as a strip (mean of the last layer's heads, first snapshot sentence):
"""),
        code(r"""
english, chinese = snapshot_sentences[0]
picks = np.linspace(0, len(snapshot_steps) - 1, 4).round().astype(int)
fig, axes = plt.subplots(2, 2, figsize=(13, 11), layout="constrained")
for ax, k in zip(axes.flat, picks):
    matrix = snapshots[k, -1, 0].mean(dim=0)[: len(chinese) + 1, : len(english)]
    plot_attention(matrix, list(chinese) + ["<eos>"], english, ax=ax, vmax=1.0, title=f"after {snapshot_steps[k]} steps")
plt.show()
"""),
        md(r"""
## 6. Greedy decoding and beam search

Greedy decoding (lesson 09) takes the likeliest token at every step and never looks back. **Beam search**
(束搜索) keeps the `beam_size` best partial translations. When the model is confident, both agree. Where the
greedy translation was wrong, does a wider search repair it?
"""),
        code(r"""
def beam_translate(pair, beam_size=4):
    source, _ = encode_pairs([pair], source_vocab, target_vocab)
    ids = beam_search(model, source, target_vocab.bos_id, target_vocab.eos_id, beam_size=beam_size, max_len=40)
    return target_vocab.decode(ids[0])


test_wrong = results["test"][1]
repaired = 0
for k, (pair, greedy_output) in enumerate(test_wrong):
    beam_output = beam_translate(pair)
    repaired += tuple(beam_output) == pair.chinese
    if k < 8:  # print a few
        print(pair.source_text)
        print("   reference:", pair.target_text)
        print("   greedy   :", "".join(greedy_output))
        print("   beam (4) :", "".join(beam_output))
print(f"beam search repaired {repaired} of the {len(test_wrong)} wrong test translations")
"""),
        md(r"""
And on sentences the model gets right, beam search changes nothing:
"""),
        code(r"""
right_pairs = [pair for pair in splits["test"][:20] if pair.english not in {p.english for p, _ in test_wrong}]
agree = sum(tuple(beam_translate(pair)) == pair.chinese for pair in right_pairs)
print(f"beam search agrees with the (correct) greedy output on {agree} of {len(right_pairs)} sentences")
"""),
        md(r"""
## 7. The failure cases

Look again at the wrong test translations above. Almost every one (the count is below) has the same Chinese
word **twice in a row** in the reference, and the model wrote it once or three times. "the dogs chase the birds that chase the cat" becomes
狗追追猫的鸟: the main verb and the verb of the relative clause meet. Let us count.
"""),
        code(r"""
def has_doubled_word(tokens):
    return any(a == b for a, b in zip(tokens, tokens[1:]))


wrong_sources = {pair.english for pair, _ in test_wrong}
doubled = [pair for pair in splits["test"] if has_doubled_word(pair.chinese)]
others = [pair for pair in splits["test"] if not has_doubled_word(pair.chinese)]
for name, group in (("with a word twice in a row", doubled), ("all the others", others)):
    right = sum(pair.english not in wrong_sources for pair in group)
    print(f"test sentences {name:<27}: {len(group):>4}, exact match {100 * right / len(group):6.2f}%")
involved = sum(has_doubled_word(pair.chinese) or has_doubled_word(output) for pair, output in test_wrong)
print(f"wrong test translations with a doubled word in the reference or the output: {involved} of {len(test_wrong)}")
"""),
        md(r"""
Why is a doubled word hard? After writing the first 追 the decoder's next input is 追; after writing the second
one, its next input is 追 again. The two situations differ only in the position, so the decoder must *count*
how many verbs it has written, and a few small differences in the positional encoding are all it has to go on.
Sometimes it loses count and writes one 追 too few (the clause loses its verb) or one too many.

On the long set the mistakes are of another kind. The part in brackets is where the output leaves the reference:
"""),
        code(r"""
def first_difference(reference, output):
    for position, (a, b) in enumerate(zip(reference, output)):
        if a != b:
            return position
    return min(len(reference), len(output))


long_wrong = results["long"][1]
for pair, output in long_wrong[:6]:
    k = first_difference(pair.chinese, output)
    print(f"{len(pair.english)} words: {pair.source_text}")
    print("   reference:", "".join(pair.chinese[:k]), "[" + "".join(pair.chinese[k:]) + "]")
    print("   greedy   :", "".join(output[:k]), "[" + "".join(output[k:]) + "]")
"""),
        md(r"""
* The subject and the main verb are usually right; the error comes in the object, near the end of the sentence,
  where the English words sit at or close to positions the model never saw in training.
* The mistakes are mostly structural: an object relative written as a subject relative (四条蛇搬的 "that four
  snakes carry" comes out as 搬…四条蛇的 "that carries four snakes") or the other way round, or the verbs of two
  nested clauses trading places. Now and then a noun is wrong as well. The dictionary part of the task (which
  noun, which measure word) is easy; keeping track of the structure is hard.

**Try this**

* Translate sentences of your own with `model_translate` (next cell). Which ones break it? (The words must
  come from the toy vocabulary: `source_vocab.id_to_token` lists them.)
* Set `RETRAIN = True` and change `TranslatorRecipe` (fewer layers, no warm-up, no label smoothing): what
  happens to the curves?
* In the slider, find the step where the alignment first appears. Is it before or after validation accuracy
  starts to rise?

"""),
        code(r'''
def model_translate(english):
    """The model's greedy translation of an English sentence, next to the reference."""
    source = torch.tensor([source_vocab.encode(english.split())])  # (1, S)
    output = target_vocab.decode(greedy_decode(model, source, target_vocab.bos_id, target_vocab.eos_id)[0])
    reference = translate(english)
    verdict = "right" if "".join(output) == reference else f"wrong, the reference is {reference}"
    print(f"{english}\n   -> {''.join(output)}  ({verdict})")


model_translate("the dog that the teacher likes did not chase the big cats")
'''),
        md(r"""
## Summary

* A **generated task** gives exact answers: each English sentence has one correct translation, so
  **exact match** measures the model strictly.
* Translating into Chinese word order makes the **alignment cross**: relative clauses move before their noun,
  numerals gain measure words, agreement disappears.
* The **training loop**: teacher forcing, **label smoothing**, AdamW, **warm-up** then cosine decay, gradient
  clipping, periodic evaluation. A three-minute CPU run reaches over 99% exact match on held-out sentences.
* **Cross-attention** learns the alignment without being told: its strongest weights sit on the English word
  being translated, and they form during training.
* **Beam search** can repair a few greedy mistakes, but not a model that has not learned the structure.
  The model's real weakness is **length generalisation**: sentences longer than any in training.
"""),
        md(
            "## Key terms\n\n"
            + terms_table(
                [
                    ("translation", "翻译", "mapping a sentence of one language to another"),
                    ("alignment", "对齐", "which target token translates which source word"),
                    ("teacher forcing", "教师强制", "the decoder reads the correct previous tokens in training"),
                    ("label smoothing", "标签平滑", "the target spreads a little probability over all tokens"),
                    ("learning-rate warm-up", "学习率预热", "the learning rate rises linearly over the first steps"),
                    ("cosine decay", "余弦衰减", "the learning rate falls along half a cosine"),
                    ("gradient clipping", "梯度裁剪", "scale the gradient down when its norm is too large"),
                    ("exact match", "完全匹配", "the whole output equals the reference"),
                    ("length generalisation", "长度泛化", "working on inputs longer than any seen in training"),
                    ("cross-attention", "交叉注意力", "the decoder's queries read the encoder's output"),
                    ("beam search", "束搜索", "keep the beam_size best partial outputs"),
                ]
            )
            + "\n\nNext: [lesson 11](11_train_a_tiny_gpt.ipynb) trains a decoder-only model, a tiny GPT, with the same loop."
        ),
    ]


def build() -> None:
    write_lesson(NOTEBOOK.stem, cells())


if __name__ == "__main__":
    build()
