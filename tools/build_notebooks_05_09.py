"""Build the lesson notebooks 05-09 (multi-head attention ... generation) with nbformat.

Run from the repository root:  python tools/build_notebooks_05_09.py [05 06 ...]
The notebooks are written without outputs; execute them afterwards with
``jupyter nbconvert --to notebook --execute --inplace notebooks/NN_*.ipynb``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from notebook_kit import VERSION_CHECK, code, md, terms_table, write_lesson

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


def setup_code(imports: str, float64: bool = True) -> str:
    """The first cell of every lesson: imports, version check, seeds, print options."""
    dtype_lines = (
        "# float64 everywhere in this lesson, so comparisons with PyTorch show rounding only.\n"
        "torch.set_default_dtype(torch.float64)\n"
        if float64
        else ""
    )
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
torch.set_num_threads(1)  # the tensors in this lesson are tiny: one CPU thread is quickest and steadiest
{dtype_lines}torch.set_printoptions(precision=4, sci_mode=False)"""


def your_turn(lesson: str, name: str, what: str, next_text: str) -> str:
    """The closing section of a lesson: its exercise notebook, how to get hints, the next lesson."""
    return (
        "\n\n## Your turn\n\n"
        f"Open the exercise notebook [`exercises/{name}.ipynb`](../exercises/{name}.ipynb): {what} "
        "Each exercise has a check cell that tells you at once whether your code is right and, if it is not, "
        f"what to look at. Stuck? Run `course hint {lesson}.1` in a terminal (or `!course hint {lesson}.1` in a "
        f"notebook cell) for a nudge; `course check {lesson}` runs the whole exercise notebook and lists what passes."
        f"\n\n{next_text}"
    )


RUNNING_TOKENS = """# The running example, cut into words by the tokenizer of lesson 01.
tokenizer = WordTokenizer.from_corpus([RUNNING_SENTENCE])
tokens = tokenizer.tokenize(RUNNING_SENTENCE)
token_ids = torch.tensor([tokenizer.encode(RUNNING_SENTENCE)])  # (1, T)
T = len(tokens)
print(RUNNING_SENTENCE)
print("token ids:", token_ids.tolist(), " shape:", tuple(token_ids.shape))"""

DIFF_HELPER = '''def max_abs_difference(a, b):
    """The largest absolute difference between two tensors, as a float."""
    return (a - b).abs().max().item()'''


# ---------------------------------------------------------------------------------------------
# Lesson 05: multi-head attention
# ---------------------------------------------------------------------------------------------
def lesson05() -> list[tuple[str, str]]:
    return [
        md(r"""
# Lesson 05 · Multi-head attention

In lesson 03 one attention *head* let every token take a weighted average of the other tokens'
values, and lesson 04 decided with masks which tokens it may look at. This lesson runs **several
heads side by side** and glues their results back together. That is the attention block the
Transformer actually uses.
"""),
        code(
            setup_code("""
from course_lib.attention import scaled_dot_product_attention
from course_lib.embeddings import TokenEmbedding
from course_lib.example import RUNNING_SENTENCE
from course_lib.masks import causal_mask
from course_lib.multihead import MultiHeadAttention, merge_heads, split_heads
from course_lib.positional import SinusoidalPositionalEncoding
from course_lib.tokenization import WordTokenizer
from course_lib.viz import plot_attention, plot_head_grid, show_map
from course_lib.widgets import HeadGrid
""")
        ),
        md("## Where we are\n\nThe highlighted boxes are what this lesson builds."),
        code("show_map(5)\nplt.show()"),
        md(r"""
## Learning goals

By the end of this lesson you can

1. explain why a Transformer uses several small attention heads instead of one big one;
2. go from `(B, T, d_model)` to `(B, n_heads, T, d_head)` and back (`split_heads`, `merge_heads`);
3. compute all heads at once with a single call to scaled dot-product attention;
4. write multi-head attention yourself and show it equals `course_lib` and `torch.nn.MultiheadAttention`;
5. count its parameters.
"""),
        md(r"""
## Why several heads?

One attention head computes, for each query token, **one** probability distribution over the keys,
and returns **one** weighted average of the values. That is a strong limit. In
*"the cat sat on the mat because it was tired"* the token `it` would like to know several things
at once: which noun it refers to (`cat`), which verb it belongs to (`was`), what comes just before it.
A single softmax has to spread its weight over all of these, and the average blurs them together.

Multi-head attention gives each token several independent looks:

* each head has its **own** query, key and value projections, so each can measure "relevance" in its
  own way (one may track the previous token, another a matching word, another the verb);
* each head works in a small space of `d_head = d_model / n_heads` dimensions, so eight heads of width 64
  cost about the same as one head of width 512;
* the heads' outputs are **concatenated** and mixed by one more linear layer, the **output projection**
  `w_o`, so the next layer receives one vector per token again.

In pictures: `x → (w_q, w_k, w_v) → split into heads → attention in every head → concatenate → w_o`.
We now build exactly that, one step per cell.
"""),
        md(r"""
## The running example

We turn the running sentence into vectors as in lessons 01 and 02: a token embedding plus sinusoidal
positions. The widths are tiny so that every number stays readable: `d_model = 16` split into
`n_heads = 4` heads of `d_head = 4` dimensions. All weights are random (seeded): nothing is trained
in this lesson, so the heads show *different* patterns, not *meaningful* ones yet.
"""),
        code(RUNNING_TOKENS),
        code("""
d_model, n_heads = 16, 4
d_head = d_model // n_heads

embed = TokenEmbedding(tokenizer.vocab_size, d_model)
add_positions = SinusoidalPositionalEncoding(d_model)
x = add_positions(embed(token_ids))  # (1, T, d_model)
print("x:", tuple(x.shape), " = (B, T, d_model)")
print("d_head =", d_head)
"""),
        md(r"""
## Step 1 · Project to queries, keys and values

Exactly as for one head, three linear layers turn every token vector into a query, a key and a value.
The only difference: each layer produces `d_model` numbers per token, **all heads' worth at once**.
Columns `0:4` will belong to head 0, columns `4:8` to head 1, and so on.
"""),
        code("""
w_q = nn.Linear(d_model, d_model)
w_k = nn.Linear(d_model, d_model)
w_v = nn.Linear(d_model, d_model)
w_o = nn.Linear(d_model, d_model)  # the output projection, used in step 4

q = w_q(x)  # (1, T, d_model)
k = w_k(x)  # (1, T, d_model)
v = w_v(x)  # (1, T, d_model)
print("q, k, v:", tuple(q.shape), tuple(k.shape), tuple(v.shape))
"""),
        md(r"""
## Step 2 · Split into heads

Splitting costs nothing: no numbers change, we only look at the last axis differently.

1. `view(B, T, n_heads, d_head)` cuts each token's `d_model` features into `n_heads` slices of `d_head`;
2. `transpose(1, 2)` moves the head axis in front of the time axis, giving `(B, n_heads, T, d_head)`.

After the transpose, every head looks like a separate "batch" entry holding a `(T, d_head)` matrix,
which is exactly the shape scaled dot-product attention wants.
"""),
        code("""
B = q.shape[0]
q_view = q.view(B, T, n_heads, d_head)  # (B, T, n_heads, d_head)
q_heads = q_view.transpose(1, 2)  # (B, n_heads, T, d_head)
print("after view:     ", tuple(q_view.shape))
print("after transpose:", tuple(q_heads.shape))

# Head 1 is simply columns 4:8 of the projected queries:
print("head 1 == q[..., 4:8]:", torch.equal(q_heads[:, 1], q[..., 1 * d_head : 2 * d_head]))
"""),
        md("We will need this for keys and values too, so we make it a function, together with its inverse."),
        code("""
def my_split_heads(x, n_heads):
    B, T, d_model = x.shape
    d_head = d_model // n_heads
    return x.view(B, T, n_heads, d_head).transpose(1, 2)  # (B, n_heads, T, d_head)


def my_merge_heads(x):
    B, n_heads, T, d_head = x.shape
    # transpose makes the tensor non-contiguous in memory, so use reshape (not view) to flatten.
    return x.transpose(1, 2).reshape(B, T, n_heads * d_head)  # (B, T, d_model)


q_heads = my_split_heads(q, n_heads)  # (B, n_heads, T, d_head)
k_heads = my_split_heads(k, n_heads)  # (B, n_heads, T, d_head)
v_heads = my_split_heads(v, n_heads)  # (B, n_heads, T, d_head)
print("q_heads, k_heads, v_heads:", tuple(q_heads.shape), tuple(k_heads.shape), tuple(v_heads.shape))
print("merge undoes split:", torch.equal(my_merge_heads(q_heads), q))
"""),
        md(r"""
## Step 3 · All heads attend in parallel

`scaled_dot_product_attention` from lesson 03 works on any leading dimensions `(..., T, d)`, so a single
call runs every head of every batch entry at once, no Python loop over heads. The scale is now
$1/\sqrt{d_\text{head}}$, because each head's dot products are sums of `d_head` products.
"""),
        code("""
heads_out, weights = scaled_dot_product_attention(q_heads, k_heads, v_heads)
print("per-head outputs:  ", tuple(heads_out.shape), " = (B, n_heads, T, d_head)")
print("attention weights: ", tuple(weights.shape), " = (B, n_heads, T_q, T_k)")
print("each row sums to 1:", torch.allclose(weights.sum(-1), torch.ones(())))
"""),
        md(r"""
To convince ourselves that the single call really is "four heads side by side", run head 2 on its own,
as one ordinary attention over its `d_head = 4` columns, and compare:
"""),
        code("""
cols = slice(2 * d_head, 3 * d_head)  # head 2's columns
head2_alone, _ = scaled_dot_product_attention(q[..., cols], k[..., cols], v[..., cols])  # (1, T, d_head)
print("head 2 alone:", tuple(head2_alone.shape), " same as heads_out[:, 2]:", torch.allclose(head2_alone, heads_out[:, 2]))
"""),
        md(r"""
## Step 4 · Concatenate and project

`merge_heads` puts the heads' `d_head`-wide outputs next to each other again, giving one `d_model`-wide
vector per token. The output projection `w_o` then **mixes** the heads: without it, the feature slots
of head 0 could only ever carry what head 0 found.
"""),
        code("""
concatenated = my_merge_heads(heads_out)  # (B, T, d_model)
output = w_o(concatenated)  # (B, T, d_model)
print("concatenated:", tuple(concatenated.shape))
print("output:      ", tuple(output.shape), " same shape as the input x", tuple(x.shape))
"""),
        md(r"""
The output has the shape of the input. That is what lets us add it back to `x` (a *residual connection*,
lesson 06) and stack many such blocks.

## The whole thing as one function
"""),
        code("""
def my_multi_head_attention(query, key, value, w_q, w_k, w_v, w_o, n_heads, mask=None):
    q = my_split_heads(w_q(query), n_heads)  # (B, n_heads, T_q, d_head)
    k = my_split_heads(w_k(key), n_heads)  # (B, n_heads, T_k, d_head)
    v = my_split_heads(w_v(value), n_heads)  # (B, n_heads, T_k, d_head)
    heads, weights = scaled_dot_product_attention(q, k, v, mask)  # (B, n_heads, T_q, d_head)
    return w_o(my_merge_heads(heads)), weights  # (B, T_q, d_model), (B, n_heads, T_q, T_k)


my_output, my_weights = my_multi_head_attention(x, x, x, w_q, w_k, w_v, w_o, n_heads)
print("output", tuple(my_output.shape), " weights", tuple(my_weights.shape))
"""),
        md(r"""
Self-attention passes the same `x` as query, key and value. The separate arguments matter in lesson 08,
where the decoder's queries attend to the encoder's keys and values (*cross-attention*).

## Look at the heads

Each small heatmap is one head: a row is a query token, a column a key token, and the colour says how
much of that key's value the query takes.
"""),
        code("""
fig = plot_head_grid(my_weights[0].detach(), tokens, tokens, title="Self-attention of the running example, 4 random heads")
plt.show()
"""),
        md(r"""
Even with random weights the heads disagree: they have different projections, so they score the same
pairs of tokens differently. Training (lessons 10 and 11) turns these differences into useful
specialisations. Lesson 12 shows the heads of a real pretrained model.

The widget below shows all heads small and one enlarged. Pick a head to study it.
"""),
        code("# NBVAL_IGNORE_OUTPUT\nHeadGrid(my_weights[0].detach(), tokens, tokens)"),
        md(r"""
**Try this**

* Which head looks most like "attend to yourself" (a bright diagonal)? Which spreads its weight evenly?
* Change `n_heads` to 8 in the cell that sets `d_model, n_heads` and rerun from there. How do the
  shapes printed at each step change? What happens with `n_heads = 3`, and why?
* Pass `mask=causal_mask(T)` to `my_multi_head_attention` and plot again: every head loses its upper triangle.
"""),
        md(r"""
## The course_lib reference

`course_lib` keeps the same steps: the split and the merge are small functions, and the module holds the
four linear layers `w_q`, `w_k`, `w_v`, `w_o`. (Ignore `kv_cache` for now: it speeds up generation and is
explained in lesson 09.)
"""),
        code("print(inspect.getsource(split_heads))\nprint(inspect.getsource(merge_heads))"),
        code("print(inspect.getsource(MultiHeadAttention.forward))"),
        md(r"""
We copy our four linear layers into a `MultiHeadAttention` and check that both give the same numbers.
Everything runs in float64, so any difference is pure rounding (around 1e-16).
"""),
        code(DIFF_HELPER),
        code("""
reference = MultiHeadAttention(d_model, n_heads)
my_layers = {"w_q": w_q, "w_k": w_k, "w_v": w_v, "w_o": w_o}
for name, layer in my_layers.items():
    getattr(reference, name).load_state_dict(layer.state_dict())  # copy our weights into the reference

reference_output = reference(x, x, x)  # (B, T, d_model)
print("split_heads vs ours: ", f"{max_abs_difference(split_heads(q, n_heads), my_split_heads(q, n_heads)):.1e}")
print("output vs ours:      ", f"{max_abs_difference(reference_output, my_output):.1e}")
print("weights vs ours:     ", f"{max_abs_difference(reference.attention_weights, my_weights):.1e}")
print("attention_weights:   ", tuple(reference.attention_weights.shape), " = (B, n_heads, T_q, T_k)")
"""),
        md(r"""
## Equal to PyTorch's `nn.MultiheadAttention`

PyTorch stores the three input projections as **one** matrix `in_proj_weight` of shape
`(3 * d_model, d_model)`: rows `0:d_model` are the query projection, then the key, then the value
projection. Its output projection is called `out_proj`. So we cut `in_proj_weight` (and `in_proj_bias`)
into three chunks and copy them into `w_q`, `w_k`, `w_v`, and `out_proj` into `w_o`.

Two more details:

* `batch_first=True` makes PyTorch use our `(B, T, d_model)` layout;
* `average_attn_weights=False` returns the weights of every head, `(B, n_heads, T_q, T_k)`;
  by default PyTorch returns their average over heads.
"""),
        code("""
torch_mha = nn.MultiheadAttention(d_model, n_heads, batch_first=True)
ours = MultiHeadAttention(d_model, n_heads)
print("in_proj_weight:", tuple(torch_mha.in_proj_weight.shape), " out_proj.weight:", tuple(torch_mha.out_proj.weight.shape))

with torch.no_grad():
    weight_q, weight_k, weight_v = torch_mha.in_proj_weight.chunk(3, dim=0)  # 3 x (d_model, d_model)
    bias_q, bias_k, bias_v = torch_mha.in_proj_bias.chunk(3, dim=0)  # 3 x (d_model,)
    ours.w_q.weight.copy_(weight_q)
    ours.w_k.weight.copy_(weight_k)
    ours.w_v.weight.copy_(weight_v)
    ours.w_q.bias.copy_(bias_q)
    ours.w_k.bias.copy_(bias_k)
    ours.w_v.bias.copy_(bias_v)
    ours.w_o.load_state_dict(torch_mha.out_proj.state_dict())

torch_output, torch_weights = torch_mha(x, x, x, average_attn_weights=False)
our_output = ours(x, x, x)
print("output:  max abs difference", f"{max_abs_difference(our_output, torch_output):.1e}")
print("weights: max abs difference", f"{max_abs_difference(ours.attention_weights, torch_weights):.1e}")
"""),
        md(r"""
**Masks are the one trap.** `course_lib` masks say **True = may attend** (like
`F.scaled_dot_product_attention`). `nn.MultiheadAttention`'s `attn_mask` and `key_padding_mask` say the
opposite, **True = blocked**. So we pass the negation `~mask` to PyTorch. Forgetting the `~` does not raise
an error: it silently lets every token see only its *future*, and the last token, which has no future, may
see nothing at all, so its row becomes NaN.
"""),
        code("""
mask = causal_mask(T)  # (T, T), True = may attend
torch_output, torch_weights = torch_mha(x, x, x, attn_mask=~mask, average_attn_weights=False)  # PyTorch: True = blocked
our_output = ours(x, x, x, mask=mask)
print("causal, output:  max abs difference", f"{max_abs_difference(our_output, torch_output):.1e}")
print("causal, weights: max abs difference", f"{max_abs_difference(ours.attention_weights, torch_weights):.1e}")

wrong_output, _ = torch_mha(x, x, x, attn_mask=mask)  # forgot the ~: each token may see only its future
rows_with_nan = torch.isnan(wrong_output[0]).any(dim=-1)  # (T,)
print("forgot the ~: query rows that became NaN:", rows_with_nan.nonzero().flatten().tolist())
print("forgot the ~: max abs difference in the other rows:",
      f"{max_abs_difference(our_output[0, ~rows_with_nan], wrong_output[0, ~rows_with_nan]):.2f}")
"""),
        md(r"""
## How many parameters?

Four `d_model × d_model` matrices and four bias vectors: $4\,d_\text{model}^2 + 4\,d_\text{model}$.
The number of heads does **not** appear: splitting into heads re-arranges the same projections, it
does not add any. For the paper's base model (`d_model = 512`, 8 heads) that is about one million
parameters per attention block.
"""),
        code("""
def count_parameters(module):
    return sum(parameter.numel() for parameter in module.parameters())


for width, heads in [(d_model, n_heads), (d_model, 1), (512, 8), (512, 1)]:
    print(f"d_model={width:4d}, n_heads={heads}: {count_parameters(MultiHeadAttention(width, heads)):>9,d} parameters"
          f"   (4*d^2 + 4*d = {4 * width**2 + 4 * width:,d})")
print("nn.MultiheadAttention(512, 8):", f"{count_parameters(nn.MultiheadAttention(512, 8)):,d}")
"""),
        md(r"""
**Try this**

* Build `MultiHeadAttention(16, 3)`: read the error message. Why must `d_model` be divisible by `n_heads`?
* Give `x` a batch of two sentences (`torch.cat([x, x.flip(1)])`) and check that the shapes still work.

## Summary

* Multi-head attention runs `n_heads` attention heads in parallel, each in `d_head = d_model / n_heads`
  dimensions, so each head can attend to different tokens for a different reason.
* Splitting into heads is a `view` plus a `transpose`: `(B, T, d_model) → (B, n_heads, T, d_head)`.
  The heads are then just an extra batch dimension for scaled dot-product attention.
* Merging concatenates the heads back to `(B, T, d_model)`, and the output projection `w_o` mixes them.
* Our version, `course_lib.MultiHeadAttention` and `nn.MultiheadAttention` agree to float64 rounding once
  the weights are copied; remember that PyTorch's masks mean True = blocked.
* The parameter count, $4d^2 + 4d$, does not depend on the number of heads.
"""),
        md(
            "## Key terms\n\n"
            + terms_table(
                [
                    (
                        "multi-head attention",
                        "多头注意力",
                        "several attention heads in parallel, concatenated and projected",
                    ),
                    ("attention head", "注意力头", "one query/key/value projection pair and its attention"),
                    ("head dimension (d_head)", "头维度", "width of each head, d_model / n_heads"),
                    (
                        "split heads / merge heads",
                        "拆分注意力头 / 合并注意力头",
                        "(B, T, d_model) ↔ (B, n_heads, T, d_head)",
                    ),
                    ("output projection", "输出投影", "the linear layer w_o that mixes the concatenated heads"),
                    ("concatenation", "拼接", "putting the heads' outputs side by side"),
                ]
            )
            + your_turn(
                "05",
                "05_multi_head_attention",
                "You will write `split_heads`, `merge_heads` and a `MultiHeadAttention` class, and count its parameters.",
                "Next lesson: [06 the feed-forward network, residual connections and layer norm](06_mlp_residual_layernorm.ipynb).",
            )
        ),
    ]


# ---------------------------------------------------------------------------------------------
# Lesson 06: MLP, residual connections, layer norm
# ---------------------------------------------------------------------------------------------
def lesson06() -> list[tuple[str, str]]:
    return [
        md(r"""
# Lesson 06 · The feed-forward network, residual connections and layer norm

Attention lets tokens exchange information. A Transformer block needs three more parts to become
something we can stack dozens of times and still train:

* a **feed-forward network** (an MLP) that processes every token on its own;
* **residual connections** that add each sublayer's output to its input;
* **layer normalisation** that keeps every token vector at a steady scale.

This lesson builds each part, shows what goes wrong without it, and puts them together into a block.
"""),
        code(
            setup_code("""
from course_lib.embeddings import TokenEmbedding
from course_lib.encoder import EncoderLayer
from course_lib.example import RUNNING_SENTENCE
from course_lib.feedforward import FeedForward
from course_lib.normalization import LayerNorm, layer_norm
from course_lib.positional import SinusoidalPositionalEncoding
from course_lib.tokenization import WordTokenizer
from course_lib.viz import plot_matrix, show_map
from course_lib.widgets import AblationToggles
""")
        ),
        md("## Where we are"),
        code("show_map(6)\nplt.show()"),
        md(r"""
## Learning goals

1. Write the position-wise feed-forward network and show that it treats every position alike and alone.
2. Write layer normalisation from its formula and match `F.layer_norm` exactly.
3. Measure what goes wrong in a deep stack without residual connections.
4. Explain post-norm (the 2017 paper) versus pre-norm (GPT-2 and most modern models), and see how
   differently the activations grow.
5. Assemble a full Transformer block from these parts.
"""),
        md(r"""
## The running example

Same sentence, same tiny sizes as lesson 05: `d_model = 16`. The feed-forward network's hidden layer is
four times wider, `d_ff = 64`, the same ratio as the paper (512 and 2048).
"""),
        code(RUNNING_TOKENS),
        code("""
d_model, n_heads, d_ff = 16, 4, 64
x = SinusoidalPositionalEncoding(d_model)(TokenEmbedding(tokenizer.vocab_size, d_model)(token_ids))  # (1, T, d_model)
x = x.detach()  # we only need the values; gradients will be taken with respect to the layers below
print("x:", tuple(x.shape), " = (B, T, d_model)")
"""),
        md(r"""
## 1 · The position-wise feed-forward network

**Why?** Attention output is a weighted average of value vectors: it moves information *between*
tokens, but it does little computing *on* it. The feed-forward network (FFN) is where each token
transforms what it has gathered: expand to `d_ff` features, apply a non-linearity, project back:

$$\mathrm{FFN}(x) = \mathrm{ReLU}(x W_1 + b_1)\, W_2 + b_2$$

It is applied to each position **separately and identically**: the same $W_1, W_2$ for every token,
and no token sees another inside the FFN.
"""),
        code("""
linear1 = nn.Linear(d_model, d_ff)
linear2 = nn.Linear(d_ff, d_model)


def my_feed_forward(x):
    hidden = torch.relu(linear1(x))  # (B, T, d_ff)
    return linear2(hidden)  # (B, T, d_model)


hidden = torch.relu(linear1(x))  # (B, T, d_ff)
ffn_out = my_feed_forward(x)  # (B, T, d_model)
print("input ", tuple(x.shape))
print("hidden", tuple(hidden.shape), " = (B, T, d_ff)")
print("output", tuple(ffn_out.shape))
"""),
        md(r"""
"Position-wise" is easy to check. Run the FFN on the whole sentence at once, then on one token at a time,
and compare. Then shuffle the tokens: the outputs are shuffled the same way and are otherwise unchanged,
so the FFN cannot know where a token sits or what its neighbours are.
"""),
        code("""
one_at_a_time = torch.cat([my_feed_forward(x[:, t : t + 1]) for t in range(T)], dim=1)  # (1, T, d_model)
print("whole sentence == one token at a time:", torch.allclose(ffn_out, one_at_a_time))

order = torch.randperm(T)
print("shuffle, then FFN == FFN, then shuffle:", torch.allclose(my_feed_forward(x[:, order]), ffn_out[:, order]))
"""),
        md(r"""
Which hidden units fire for which token? ReLU sets every negative pre-activation to zero, so each token
switches on its own subset of the 64 hidden units. (The two `the` tokens differ only through their
positions, so their patterns are similar but not identical.)
"""),
        code("""
fig, ax = plt.subplots(figsize=(10, 3.6))
plot_matrix(hidden[0].detach(), row_labels=tokens, ax=ax, title="FFN hidden activations after ReLU (random weights)",
            xlabel="hidden unit (d_ff = 64)", ylabel="token", cmap="viridis")
plt.show()
print(f"fraction of hidden units that are zero: {(hidden == 0).double().mean().item():.2f}")
"""),
        md("`course_lib.FeedForward` is the same two layers, with a choice of activation and dropout:"),
        code("print(inspect.getsource(FeedForward))"),
        code(DIFF_HELPER),
        code("""
reference_ffn = FeedForward(d_model, d_ff)
reference_ffn.linear1.load_state_dict(linear1.state_dict())
reference_ffn.linear2.load_state_dict(linear2.state_dict())
print("FeedForward vs ours: max abs difference", f"{max_abs_difference(reference_ffn(x), ffn_out):.1e}")
print("last_hidden kept for plots:", tuple(reference_ffn.last_hidden.shape))
"""),
        md(r"""
## 2 · Layer normalisation

**Why?** Each sublayer adds something to the token vectors, so without a check their size drifts from
layer to layer, and the softmax and ReLU behave differently at different scales. Layer normalisation
rescales **each token vector on its own** to mean 0 and variance 1 over its `d_model` features, then
applies a learnable per-feature scale `weight` (γ) and shift `bias` (β):

$$\mathrm{LN}(x) = \frac{x - \mu}{\sqrt{\sigma^2 + \varepsilon}} \odot \gamma + \beta,
\qquad \mu = \frac{1}{d}\sum_i x_i,\quad \sigma^2 = \frac{1}{d}\sum_i (x_i - \mu)^2$$

Two details decide whether we match PyTorch exactly:

* the variance is the **biased** one (divide by `d`, not `d - 1`);
* `eps` goes **inside** the square root.

Unlike batch normalisation it uses no statistics across the batch, so a token's result never depends on
the other sentences in the batch, and training and inference compute the same thing.
"""),
        code("""
def my_layer_norm(x, weight, bias, eps=1e-5):
    mean = x.mean(dim=-1, keepdim=True)  # (..., 1)
    variance = ((x - mean) ** 2).mean(dim=-1, keepdim=True)  # (..., 1), divide by d
    return (x - mean) / torch.sqrt(variance + eps) * weight + bias  # (..., d)


weight, bias = torch.ones(d_model), torch.zeros(d_model)
normed = my_layer_norm(x, weight, bias)  # (1, T, d_model)
print("per-token mean before:", x.mean(-1)[0])
print("per-token std before: ", x.std(-1, unbiased=False)[0])
print("per-token mean after: ", normed.mean(-1)[0].round(decimals=4) + 0.0)  # + 0.0 turns -0.0 into 0.0
print("per-token std after:  ", normed.std(-1, unbiased=False)[0])
"""),
        md(
            "Compare with `F.layer_norm` and `course_lib.layer_norm`, using a random γ and β so that those are tested too:"
        ),
        code("""
gamma, beta = torch.randn(d_model), torch.randn(d_model)
ours = my_layer_norm(x, gamma, beta)
print("vs F.layer_norm:         ", f"{max_abs_difference(ours, F.layer_norm(x, (d_model,), gamma, beta, eps=1e-5)):.1e}")
print("vs course_lib.layer_norm:", f"{max_abs_difference(ours, layer_norm(x, gamma, beta)):.1e}")

# A common slip: the unbiased variance (torch.var's default divides by d - 1).
mean = x.mean(-1, keepdim=True)
unbiased = (x - mean) / torch.sqrt(x.var(-1, keepdim=True) + 1e-5) * gamma + beta
print("with the unbiased variance the difference is", f"{max_abs_difference(unbiased, ours):.3f}", "(not rounding!)")
"""),
        code("print(inspect.getsource(layer_norm))"),
        md(r"""
## 3 · Residual connections, and what breaks without them

A residual (skip) connection adds a sublayer's output to its input: `x = x + sublayer(x)`.
The sublayer only has to learn a *correction* to `x`, and, more importantly for training, the
gradient has a direct path back: the derivative of `x + f(x)` with respect to `x` is `I + f'(x)`, and the
identity part `I` does not shrink however many layers we stack.

Here is a numeric demonstration. Stack 24 feed-forward sublayers, once plainly (`x = ffn(x)`) and once
with residuals (`x = x + ffn(x)`). Same weights, same input. Backpropagate a loss and look at the gradient
that reaches each layer's first weight matrix.
"""),
        code("""
depth = 24
torch.manual_seed(0)
stack = [FeedForward(d_model, d_ff) for _ in range(depth)]


def run_stack(x, residual):
    for ffn in stack:
        x = x + ffn(x) if residual else ffn(x)  # (B, T, d_model)
    return x


gradient_norms = {}
for residual in (False, True):
    for ffn in stack:
        ffn.zero_grad()
    out = run_stack(x, residual)  # (1, T, d_model)
    out.pow(2).mean().backward()
    gradient_norms[residual] = [ffn.linear1.weight.grad.norm().item() for ffn in stack]
    print(f"residual={residual!s:5}: gradient norm at layer 1 = {gradient_norms[residual][0]:.1e}, "
          f"at layer {depth} = {gradient_norms[residual][-1]:.1e}")
"""),
        code("""
fig, ax = plt.subplots(figsize=(7, 3.8))
layers = range(1, depth + 1)
ax.semilogy(layers, gradient_norms[False], "o-", color="#d55e00", label="no residual: x = ffn(x)")
ax.semilogy(layers, gradient_norms[True], "s-", color="#0072b2", label="residual: x = x + ffn(x)")
ax.set_xlabel("layer (1 = closest to the input)")
ax.set_ylabel("gradient norm of linear1.weight (log scale)")
ax.set_title(f"Gradient reaching each layer of a {depth}-layer stack")
ax.legend()
plt.show()
"""),
        md(r"""
Without residuals the gradient shrinks by roughly the same factor at every layer, so by layer 1 it is
around $10^{-17}$: the first layers would never learn. With residuals every layer receives a gradient of
the same order.

The forward pass suffers as well. Without residuals, the output of the deep stack hardly depends on the
input at all: two *different* sentences come out almost the same. With residuals, the input survives.
"""),
        code("""
other = torch.randn_like(x) * x.std()  # a completely different input, (1, T, d_model)
with torch.no_grad():
    for residual in (False, True):
        a, b = run_stack(x, residual), run_stack(other, residual)
        relative = ((a - b).norm() / a.norm()).item()
        print(f"residual={residual!s:5}: relative difference of the two outputs = {relative:.1e}")
"""),
        md(r"""
## 4 · Where does the layer norm go? Post-norm versus pre-norm

There are two ways to combine a sublayer, its residual connection and a layer norm:

| | formula | used by |
|---|---|---|
| **post-norm** | `x = LayerNorm(x + sublayer(x))` | the 2017 paper *Attention Is All You Need*, BERT |
| **pre-norm** | `x = x + sublayer(LayerNorm(x))` | GPT-2, GPT-3, LLaMA and most recent models |

In post-norm the residual stream itself is normalised after every sublayer. In pre-norm the residual
stream is **never** normalised inside the stack: each sublayer reads a normalised copy and adds its result.
The identity path from the last layer to the first is then clean, which makes deep pre-norm stacks easier
to train (Xiong et al., 2020, *On Layer Normalization in the Transformer Architecture*: no learning-rate
warm-up needed). The price: the stream grows, so pre-norm models add one **final** layer norm after the
last block (GPT-2 calls it `ln_f`).

`course_lib` makes the choice explicit with `norm_first` (the same name PyTorch uses):
`EncoderLayer(..., norm_first=False)` is post-norm, `norm_first=True` is pre-norm.
Let us push the running example through 48 layers of each kind and measure the size (root mean square)
of the token vectors after every layer.
"""),
        code("""
def rms_through_stack(norm_first, depth=48):
    torch.manual_seed(0)
    layers = [EncoderLayer(d_model, n_heads, d_ff, norm_first=norm_first) for _ in range(depth)]
    sizes, h = [], x
    with torch.no_grad():
        for layer in layers:
            h = layer(h)  # (1, T, d_model)
            sizes.append(h.pow(2).mean().sqrt().item())
    return sizes


rms = {norm_first: rms_through_stack(norm_first) for norm_first in (False, True)}
for norm_first, name in ((False, "post-norm"), (True, "pre-norm ")):
    print(f"{name}: RMS after layer 1 = {rms[norm_first][0]:.2f}, after layer 48 = {rms[norm_first][-1]:.2f}")
"""),
        code("""
fig, ax = plt.subplots(figsize=(7, 3.8))
ax.plot(range(1, 49), rms[False], "o-", color="#d55e00", markersize=3, label="post-norm (norm_first=False)")
ax.plot(range(1, 49), rms[True], "s-", color="#0072b2", markersize=3, label="pre-norm (norm_first=True)")
ax.set_xlabel("layer")
ax.set_ylabel("RMS of the token vectors")
ax.set_title("Scale of the residual stream through 48 random layers")
ax.set_ylim(bottom=0)
ax.legend()
plt.show()
"""),
        md(r"""
Post-norm holds every layer's output at RMS 1 (its last step is a layer norm with γ = 1, β = 0).
Pre-norm lets the stream grow, layer after layer, because every sublayer *adds* to it; that is why it needs
the final layer norm. Lesson 07's `Encoder` adds that final norm (`final_norm=True`, as `nn.Transformer`
does), and lesson 09's GPT ends with `final_norm`.

## 5 · The whole block

With all parts in hand, a Transformer block is four lines. Attention, then the FFN, each wrapped with a
residual connection and a layer norm in one of the two orders:
"""),
        code("""
def my_block(x, attention, ffn, norm1, norm2, norm_first, mask=None):
    if norm_first:  # pre-norm
        h = norm1(x)
        x = x + attention(h, h, h, mask=mask)  # (B, T, d_model)
        x = x + ffn(norm2(x))  # (B, T, d_model)
    else:  # post-norm, as in the paper
        x = norm1(x + attention(x, x, x, mask=mask))  # (B, T, d_model)
        x = norm2(x + ffn(x))  # (B, T, d_model)
    return x


for norm_first in (False, True):
    layer = EncoderLayer(d_model, n_heads, d_ff, norm_first=norm_first)  # course_lib's block (lesson 07)
    mine = my_block(x, layer.self_attn, layer.ff, layer.norm1, layer.norm2, norm_first)
    print(f"norm_first={norm_first!s:5}: output {tuple(mine.shape)}, "
          f"vs course_lib EncoderLayer: max abs difference {max_abs_difference(mine, layer(x)):.1e}")
"""),
        md(r"""
`course_lib` calls this block `EncoderLayer`: lesson 07 stacks it into the encoder, and with a causal mask
it is also the block of a GPT.

## Play: switch parts off

The widget below runs a small random (seeded, untrained) stack of two pre-norm blocks with a causal mask
on the running sentence, the kind of stack a GPT uses. Tick a box to remove a part: the $\sqrt{d_k}$
scaling, the causal mask, the residual connections or the positional encoding. Left: the attention of the
complete model; middle: the same layer and head with the part removed; right: the size of each token's
output vector, complete versus ablated.

Things to look for: without the scaling the attention becomes much more peaked; without the causal mask
the upper triangle fills in; without residuals the output vectors change size and carry less of the input.
Removing the positions changes less than you might expect here: with a causal mask, the two `the` tokens
still see different prefixes. Remove the causal mask *and* the positions, and the two `the` tokens give
exactly the same output (check the bars).
"""),
        code("# NBVAL_IGNORE_OUTPUT\nAblationToggles()"),
        md(r"""
**Try this**

* In the residual experiment, change `depth` to 6 and to 48. How does the first layer's gradient scale
  without residuals?
* Replace `torch.relu` by `F.gelu` in `my_feed_forward`. Is the FFN still position-wise? (Why must it be?)
* In `my_layer_norm`, move `eps` outside the square root: `/ (torch.sqrt(variance) + eps)`. How large is the
  difference from `F.layer_norm`? When would it matter? (Try it on `x * 1e-3`, a token vector with a tiny variance.)
* Run `rms_through_stack(True, depth=200)`. Does the stream keep growing?

## Summary

* The **feed-forward network** `linear2(relu(linear1(x)))` with `d_ff = 4 d_model` processes each position
  alone, with the same weights everywhere.
* **Layer norm** makes each token vector mean 0, variance 1 (biased variance, `eps` inside the square root),
  then scales and shifts it with learned γ, β. It matches `F.layer_norm` to rounding.
* **Residual connections** `x + sublayer(x)` keep gradients alive in deep stacks. Without them the first
  layer's gradient vanished (about 1e-17 after 24 layers) and the output forgot the input.
* **Post-norm** (paper) normalises the residual stream after each sublayer; **pre-norm** (GPT-2) normalises
  only the sublayer's input, trains more easily when deep, lets the stream grow and needs a final layer norm.
  `course_lib` chooses with `norm_first`.
"""),
        md(
            "## Key terms\n\n"
            + terms_table(
                [
                    ("feed-forward network (FFN, MLP)", "前馈网络", "linear → activation → linear, per position"),
                    ("position-wise", "逐位置", "the same function applied to every token separately"),
                    ("residual connection", "残差连接", "x + sublayer(x): add the input back to the output"),
                    ("layer normalization", "层归一化", "per-token mean 0, variance 1, then scale γ and shift β"),
                    (
                        "post-norm / pre-norm",
                        "后归一化 / 前归一化",
                        "layer norm after the residual addition / before the sublayer",
                    ),
                    ("vanishing gradient", "梯度消失", "gradients shrinking layer by layer towards zero"),
                    ("Transformer block", "Transformer 块", "attention + FFN, each with residual and layer norm"),
                ]
            )
            + your_turn(
                "06",
                "06_mlp_residual_layernorm",
                "You will write `layer_norm`, `FeedForward` and a residual sublayer in both norm orders.",
                "Next lesson: [07 the encoder](07_encoder.ipynb).",
            )
        ),
    ]


COPY_FROM_TORCH = '''@torch.no_grad()
def copy_attention(ours, theirs):
    """nn.MultiheadAttention -> course_lib MultiHeadAttention: cut in_proj into w_q, w_k, w_v."""
    for layer, weight, bias in zip(
        (ours.w_q, ours.w_k, ours.w_v), theirs.in_proj_weight.chunk(3), theirs.in_proj_bias.chunk(3)
    ):
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    ours.w_o.load_state_dict(theirs.out_proj.state_dict())


def copy_layer_from_torch(ours, theirs):
    """nn.TransformerEncoderLayer / nn.TransformerDecoderLayer -> course_lib's layer of the same kind."""
    copy_attention(ours.self_attn, theirs.self_attn)
    if hasattr(theirs, "multihead_attn"):  # decoder layers: PyTorch's name for cross-attention
        copy_attention(ours.cross_attn, theirs.multihead_attn)
    ours.ff.linear1.load_state_dict(theirs.linear1.state_dict())
    ours.ff.linear2.load_state_dict(theirs.linear2.state_dict())
    for name in ("norm1", "norm2", "norm3"):
        if hasattr(theirs, name):
            getattr(ours, name).load_state_dict(getattr(theirs, name).state_dict())'''


# ---------------------------------------------------------------------------------------------
# Lesson 07: encoder
# ---------------------------------------------------------------------------------------------
def lesson07() -> list[tuple[str, str]]:
    return [
        md(r"""
# Lesson 07 · The encoder

The encoder reads a whole input sentence and turns every token into a vector that knows about the
entire sentence. It is the left column of the paper's Figure 1: `N` identical layers, each made of the
parts of lessons 05 and 06, multi-head self-attention and a feed-forward network, each with a residual
connection and a layer norm.
"""),
        code(
            setup_code("""
from course_lib.embeddings import TokenEmbedding
from course_lib.encoder import Encoder, EncoderLayer
from course_lib.example import RUNNING_SENTENCE
from course_lib.feedforward import FeedForward
from course_lib.masks import padding_mask
from course_lib.multihead import MultiHeadAttention
from course_lib.normalization import LayerNorm
from course_lib.positional import SinusoidalPositionalEncoding
from course_lib.tokenization import WordTokenizer
from course_lib.viz import plot_attention, show_map
from course_lib.widgets import HeadGrid
""")
        ),
        md("## Where we are"),
        code("show_map(7)\nplt.show()"),
        md(r"""
## Learning goals

1. Build an encoder layer as a module from `MultiHeadAttention`, `FeedForward` and `LayerNorm`.
2. Stack layers into an encoder, with the final layer norm that pre-norm needs.
3. Use a padding mask so that a batch of sentences of different lengths gives each sentence the same
   result it would get alone.
4. Show that the layer and the stack equal `nn.TransformerEncoderLayer` and `nn.TransformerEncoder`.
5. Look at the attention maps of every layer on the running example.

## What the encoder is for

In translation the encoder reads the source sentence once; its output, called the **memory**, is what
the decoder consults for every word it writes (lesson 08). In models like BERT there is no decoder at
all: the encoder's output vectors *are* the product, e.g. averaged into a sentence embedding (lesson 12).

Encoder self-attention has **no causal mask**: the whole input is known in advance, so every token may
look at every other token, including later ones. The only mask it needs is the padding mask of lesson 04.
"""),
        md("## The running example\n\nThe same tokenizer as in lessons 01-04; its `<pad>` token matters for batches."),
        code("""
tokenizer = WordTokenizer.from_corpus([RUNNING_SENTENCE])
tokens = tokenizer.tokenize(RUNNING_SENTENCE)
token_ids = torch.tensor([tokenizer.encode(RUNNING_SENTENCE)])  # (1, T)
PAD_ID = tokenizer.pad_id
T = len(tokens)
print("token ids:", token_ids.tolist(), " shape:", tuple(token_ids.shape), " pad id:", PAD_ID)

d_model, n_heads, d_ff = 16, 4, 64
embed = TokenEmbedding(tokenizer.vocab_size, d_model)
add_positions = SinusoidalPositionalEncoding(d_model)
x = add_positions(embed(token_ids))  # (1, T, d_model)
print("x:", tuple(x.shape), " = (B, T, d_model)")
"""),
        md(r"""
## An encoder layer as a module

Lesson 06 ended with a `my_block` function. Here it becomes an `nn.Module` that owns its parts. The
attribute names (`self_attn`, `ff`, `norm1`, `norm2`) are the ones `course_lib` uses, so weights can be
copied between the two with `load_state_dict`.
"""),
        code("""
class MyEncoderLayer(nn.Module):
    def __init__(self, d_model, n_heads, d_ff, norm_first=False):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads)
        self.ff = FeedForward(d_model, d_ff)
        self.norm1 = LayerNorm(d_model)
        self.norm2 = LayerNorm(d_model)

    def forward(self, x, mask=None):
        if self.norm_first:  # pre-norm: x + sublayer(norm(x))
            h = self.norm1(x)
            x = x + self.self_attn(h, h, h, mask=mask)  # (B, T, d_model)
            x = x + self.ff(self.norm2(x))  # (B, T, d_model)
        else:  # post-norm, as in the paper: norm(x + sublayer(x))
            x = self.norm1(x + self.self_attn(x, x, x, mask=mask))  # (B, T, d_model)
            x = self.norm2(x + self.ff(x))  # (B, T, d_model)
        return x


my_layer = MyEncoderLayer(d_model, n_heads, d_ff)
out = my_layer(x)  # (1, T, d_model)
print("in ", tuple(x.shape))
print("out", tuple(out.shape), " (same shape: layers can be stacked)")
print("attention weights", tuple(my_layer.self_attn.attention_weights.shape), " = (B, n_heads, T, T)")
"""),
        md("`course_lib.EncoderLayer` is the same, plus input checks and dropout (off by default):"),
        code("print(inspect.getsource(EncoderLayer.forward))"),
        code(DIFF_HELPER),
        code("""
for norm_first in (False, True):
    mine = MyEncoderLayer(d_model, n_heads, d_ff, norm_first=norm_first)
    reference = EncoderLayer(d_model, n_heads, d_ff, norm_first=norm_first)
    reference.load_state_dict(mine.state_dict())  # same parameter names, so the weights copy directly
    print(f"norm_first={norm_first!s:5}: course_lib vs ours, max abs difference {max_abs_difference(reference(x), mine(x)):.1e}")
"""),
        md(r"""
## Stacking: the encoder

The encoder is `n_layers` of these layers, one after another, each with its own weights. `course_lib.Encoder`
adds one **final layer norm** after the last layer (`final_norm=True`), as `nn.Transformer` does. Lesson 06
showed why pre-norm needs it: inside a pre-norm stack the residual stream is never normalised.
"""),
        code("""
encoder = Encoder(n_layers=3, d_model=d_model, n_heads=n_heads, d_ff=d_ff)
h = x
for index, layer in enumerate(encoder.layers):
    h = layer(h)  # (1, T, d_model)
    print(f"after layer {index}: {tuple(h.shape)}")
h = encoder.norm(h)  # (1, T, d_model)
print("after the final norm:", tuple(h.shape))
print("same as encoder(x):", torch.allclose(h, encoder(x)))
print("parameters:", sum(p.numel() for p in encoder.parameters()))
"""),
        md(r"""
## Attention maps, layer by layer

After `encoder(x)` every layer's attention module still holds its weights on `.attention_weights`. Here is
the average over heads for each of the three layers. The weights are random, so the patterns are not
linguistic yet, and an untrained encoder attends almost uniformly (the colour scale is stretched to show the
small differences). Notice that every token attends in **both** directions: there is no causal mask.
"""),
        code("""
_ = encoder(x)  # run once: every layer keeps its latest weights
layer_weights = torch.stack([layer.self_attn.attention_weights[0] for layer in encoder.layers])  # (n_layers, n_heads, T, T)
print("weights of all layers:", tuple(layer_weights.shape), " = (n_layers, n_heads, T, T)")

head_means = layer_weights.mean(dim=1)  # (n_layers, T, T)
fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), layout="constrained")
for index, ax in enumerate(axes):
    plot_attention(head_means[index], tokens, tokens, ax=ax, title=f"layer {index}, mean over heads",
                   vmax=head_means.max().item())  # one colour scale for all three, stretched to the data
plt.show()
print(f"uniform attention would give 1/T = {1 / T:.2f} everywhere; the weights range from "
      f"{head_means.min().item():.2f} to {head_means.max().item():.2f}")
"""),
        md("Pick a layer and a head to see each one separately:"),
        code("# NBVAL_IGNORE_OUTPUT\nHeadGrid(layer_weights, tokens, tokens)"),
        md(r"""
## Batches and padding

Sentences in a batch have different lengths, so the short ones are filled up with `<pad>` tokens. The padding
must not change anything: a sentence should get **the same vectors** whether it is encoded alone or next to a
longer sentence. The padding mask from lesson 04 (`True` at real tokens, shape `(B, 1, 1, T)`) stops every query
from attending to a padded key.

Test it: encode the running example alone, then with 3 and with 6 padding tokens appended, with and without the
mask. The padding goes at the end, so the real tokens keep their positions and their positional encodings.
"""),
        code("""
encoder.eval()  # evaluation mode (it switches dropout off; ours is 0 anyway)
alone = encoder(x)  # (1, T, d_model), no padding at all

for n_pad in (3, 6):
    padded_ids = torch.cat([token_ids, torch.full((1, n_pad), PAD_ID)], dim=1)  # (1, T + n_pad)
    padded_x = add_positions(embed(padded_ids))  # (1, T + n_pad, d_model)
    mask = padding_mask(padded_ids, PAD_ID)  # (1, 1, 1, T + n_pad)
    with_mask = encoder(padded_x, mask)[:, :T]  # (1, T, d_model): the real tokens only
    without_mask = encoder(padded_x)[:, :T]  # (1, T, d_model)
    print(f"{n_pad} pads: with mask {max_abs_difference(with_mask, alone):.1e}, "
          f"without mask {max_abs_difference(without_mask, alone):.2f}")
"""),
        md(r"""
With the mask the real tokens come out the same to float64 rounding; without it every token mixes in some of
the padding and the result depends on how much padding there is. The outputs **at** the padded positions
are meaningless (they are queries too, and attend to the real tokens); later code ignores them.

The same holds in a real batch. The second sentence is shorter and padded; its real tokens match what it gets alone:
"""),
        code("""
short = "the cat sat on the mat".split()
short_ids = tokenizer.encode(" ".join(short))
batch_ids = torch.tensor([token_ids[0].tolist(), short_ids + [PAD_ID] * (T - len(short))])  # (2, T)
print(batch_ids)
batch_out = encoder(add_positions(embed(batch_ids)), padding_mask(batch_ids, PAD_ID))  # (2, T, d_model)
short_alone = encoder(add_positions(embed(torch.tensor([short_ids]))))  # (1, 6, d_model)
print("batch output:", tuple(batch_out.shape))
print("short sentence, batch vs alone:", f"{max_abs_difference(batch_out[1, : len(short)], short_alone[0]):.1e}")
"""),
        md(r"""
## Equal to `nn.TransformerEncoderLayer`

PyTorch's layer holds the same parts under slightly different names: `self_attn` (an `nn.MultiheadAttention`,
whose fused `in_proj_weight` we cut in three as in lesson 05), `linear1`, `linear2`, `norm1`, `norm2`. A small
function copies them into a `course_lib` layer. (The same mapping is used by the course's tests.)
"""),
        code(COPY_FROM_TORCH),
        md(r"""
Two conventions to respect:

* PyTorch's `src_key_padding_mask` is **True at padding** (blocked); ours is True at real tokens. So we pass
  `batch_ids == PAD_ID`.
* PyTorch has a **fast path**: in inference (`eval()` and no gradients) it runs a fused kernel, and
  `nn.TransformerEncoder` (below) packs a padded batch into a nested tensor and returns **zeros at padded
  positions**. Our layer returns ordinary (but meaningless) vectors there. So we compare at the **real tokens
  only**, which is what matters; with gradients enabled, as here, PyTorch takes the ordinary path anyway.
"""),
        code("""
batch_x = add_positions(embed(batch_ids)).detach()  # (2, T, d_model)
real = batch_ids != PAD_ID  # (2, T), True at real tokens
for norm_first in (False, True):
    theirs = nn.TransformerEncoderLayer(d_model, n_heads, d_ff, dropout=0.0, batch_first=True, norm_first=norm_first)
    ours = EncoderLayer(d_model, n_heads, d_ff, norm_first=norm_first)
    copy_layer_from_torch(ours, theirs)
    their_out = theirs(batch_x, src_key_padding_mask=batch_ids == PAD_ID)  # PyTorch: True = padding
    our_out = ours(batch_x, mask=padding_mask(batch_ids, PAD_ID))  # course_lib: True = real token
    print(f"norm_first={norm_first!s:5}: max abs difference at real tokens {max_abs_difference(our_out[real], their_out[real]):.1e}")
"""),
        md(r"""
## Equal to `nn.TransformerEncoder`

The stack: `nn.TransformerEncoder` deep-copies one layer `num_layers` times and applies an optional final
`norm`. We copy each layer into `course_lib.Encoder` and the final norm into `encoder.norm`.
(`enable_nested_tensor=False` turns off the nested-tensor packing just described; it would only matter in inference.)
"""),
        code("""
for norm_first in (False, True):
    one_layer = nn.TransformerEncoderLayer(d_model, n_heads, d_ff, dropout=0.0, batch_first=True, norm_first=norm_first)
    theirs = nn.TransformerEncoder(one_layer, num_layers=3, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)
    ours = Encoder(3, d_model, n_heads, d_ff, norm_first=norm_first)
    for our_layer, their_layer in zip(ours.layers, theirs.layers):
        copy_layer_from_torch(our_layer, their_layer)
    ours.norm.load_state_dict(theirs.norm.state_dict())
    their_out = theirs(batch_x, src_key_padding_mask=batch_ids == PAD_ID)
    our_out = ours(batch_x, padding_mask(batch_ids, PAD_ID))
    print(f"3 layers, norm_first={norm_first!s:5}: max abs difference at real tokens "
          f"{max_abs_difference(our_out[real], their_out[real]):.1e}")
"""),
        md(r"""
**Try this**

* Set `n_layers=6` (the paper's value) and plot the per-layer maps again. Do later layers look flatter or sharper?
* Drop the padding mask in the `nn.TransformerEncoderLayer` comparison but keep it in ours: which tokens differ?
* In the `nn.TransformerEncoder` cell, remove `enable_nested_tensor=False`, call `theirs.eval()` and run it under
  `with torch.no_grad():`. Print `their_out[1]`: the padded positions are now exact zeros (the fast path), while
  the real tokens still match ours.

## Summary

* An **encoder layer** is self-attention then a feed-forward network, each with a residual connection and a layer
  norm, in post-norm (`norm_first=False`, the paper) or pre-norm (`norm_first=True`) order.
* The **encoder** stacks `N` such layers (each with its own weights) and ends with a final layer norm; its output,
  one vector per token, is the **memory** the decoder reads.
* Encoder attention is bidirectional; only a **padding mask** is needed, and with it a sentence's vectors do not
  depend on the padding in its batch.
* `course_lib`'s `EncoderLayer` and `Encoder` equal `nn.TransformerEncoderLayer` and `nn.TransformerEncoder`
  with copied weights (compare at real tokens: PyTorch's fast path zeroes padded positions).
"""),
        md(
            "## Key terms\n\n"
            + terms_table(
                [
                    ("encoder", "编码器", "stack of self-attention + FFN layers reading the whole input"),
                    ("encoder layer", "编码器层", "one self-attention sublayer and one FFN sublayer"),
                    ("memory", "记忆（编码器输出）", "the encoder's output vectors, read by the decoder"),
                    ("padding mask", "填充掩码", "blocks attention to <pad> tokens"),
                    ("padding", "填充", "filler tokens that make sentences in a batch equally long"),
                    ("bidirectional attention", "双向注意力", "every token may attend to earlier and later tokens"),
                    ("stack (of layers)", "堆叠", "N identical layers applied one after another"),
                ]
            )
            + your_turn(
                "07",
                "07_encoder",
                "You will write an `EncoderLayer`, count its parameters, and pad a batch of sentences.",
                "Next lesson: [08 the decoder](08_decoder.ipynb).",
            )
        ),
    ]


# ---------------------------------------------------------------------------------------------
# Lesson 08: decoder
# ---------------------------------------------------------------------------------------------
def lesson08() -> list[tuple[str, str]]:
    return [
        md(r"""
# Lesson 08 · The decoder and the full encoder-decoder Transformer

The decoder writes the output sentence one token at a time. Each of its layers has **three** sublayers:

1. **masked self-attention** over the tokens written so far (a causal mask: no peeking at the future);
2. **cross-attention**: the decoder's tokens ask questions (queries) and the encoder's memory answers
   (keys and values); this is how the source sentence reaches the output;
3. the **feed-forward network**,

each with a residual connection and a layer norm. With an encoder, a decoder, embeddings and an output
layer we have the complete model of *Attention Is All You Need*.
"""),
        code(
            setup_code("""
from course_lib.decoder import DecoderLayer
from course_lib.example import RUNNING_SENTENCE
from course_lib.feedforward import FeedForward
from course_lib.masks import causal_mask, combine_masks, padding_mask
from course_lib.models import Transformer, TransformerConfig
from course_lib.multihead import MultiHeadAttention
from course_lib.normalization import LayerNorm
from course_lib.viz import plot_attention, show_map
from course_lib.widgets import HeadGrid
""")
        ),
        md("## Where we are"),
        code("show_map(8)\nplt.show()"),
        md(r"""
## Learning goals

1. Explain masked self-attention and cross-attention, and the shape `(B, T, S)` of cross-attention weights.
2. Build a decoder layer and show it equals `course_lib.DecoderLayer` and `nn.TransformerDecoderLayer`.
3. Use the full `course_lib.models.Transformer`: `encode` the source once, `decode` the target.
4. Prepare training pairs with **teacher forcing** (the target shifted right).
5. Show that the whole encoder-decoder equals `nn.Transformer` with copied weights.

## A translation pair

The running example becomes the **source** sentence. As a target we use its Chinese translation, split into
words. The decoder also needs three special tokens: `<pad>`, `<bos>` (beginning of sentence: the first
decoder input) and `<eos>` (end of sentence: the model's signal that it is done).
"""),
        code("""
source_tokens = RUNNING_SENTENCE.split()
target_tokens = "猫 坐 在 垫子 上 ， 因为 它 累 了".split()

src_vocab = ["<pad>"] + sorted(set(source_tokens))
tgt_vocab = ["<pad>", "<bos>", "<eos>"] + sorted(set(target_tokens))
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2

src_ids = torch.tensor([[src_vocab.index(word) for word in source_tokens]])  # (1, S)
full_target = ["<bos>"] + target_tokens + ["<eos>"]
tgt_ids = torch.tensor([[tgt_vocab.index(word) for word in full_target]])  # (1, T + 1)
S = src_ids.shape[1]
print("source:", " ".join(source_tokens), " ids", tuple(src_ids.shape))
print("target:", " ".join(full_target), " ids", tuple(tgt_ids.shape))
print("vocabulary sizes: source", len(src_vocab), " target", len(tgt_vocab))
"""),
        md(r"""
## Teacher forcing: shift right

During training the decoder does not write its own previous tokens; it is **given** the correct ones
(teacher forcing) and asked, at every position at once, for the next token. So its input is the target
without its last token, and the labels are the target without its first token: the input is the labels
**shifted right** by one, with `<bos>` in front.
"""),
        code("""
decoder_input = tgt_ids[:, :-1]  # (1, T): <bos> 猫 ... 了
labels = tgt_ids[:, 1:]  # (1, T):       猫 ... 了 <eos>
T = decoder_input.shape[1]
input_words = [tgt_vocab[i] for i in decoder_input[0].tolist()]
label_words = [tgt_vocab[i] for i in labels[0].tolist()]
for position, (seen, wanted) in enumerate(zip(input_words, label_words)):
    print(f"position {position}: has seen ... {seen:6s} -> must predict {wanted}")
"""),
        md(r"""
The causal mask makes this honest: at position 2 the decoder sees `<bos> 猫 坐` and must predict `在`, without
seeing `在` in its input. All `T` predictions are trained in one forward pass.

## The model

A small `course_lib.models.Transformer`, random and seeded: `d_model = 32`, 4 heads, 2 encoder and 2 decoder layers.
"""),
        code("""
config = TransformerConfig(
    src_vocab_size=len(src_vocab), tgt_vocab_size=len(tgt_vocab), d_model=32, n_heads=4,
    n_encoder_layers=2, n_decoder_layers=2, d_ff=64, dropout=0.0, pad_id=PAD_ID,
)
model = Transformer(config)
d_model, n_heads, d_ff = config.d_model, config.n_heads, config.d_ff
print(config)
"""),
        md(r"""
`encode` embeds the source, adds positions, runs the encoder and returns the **memory** and the source padding
mask; the decoder needs both.
"""),
        code("""
memory, src_mask = model.encode(src_ids)
print("memory:  ", tuple(memory.shape), " = (B, S, d_model)")
print("src_mask:", tuple(src_mask.shape), " = (B, 1, 1, S), True at real source tokens")

x = model.positional(model.tgt_embedding(decoder_input))  # (1, T, d_model): what the first decoder layer reads
print("decoder input vectors:", tuple(x.shape), " = (B, T, d_model)")
"""),
        md(r"""
## Sublayer 1 · Masked self-attention

This is lesson 05's multi-head attention with lesson 04's causal mask: query position `t` may attend to key
positions `0..t` only. Each row of the weights has zeros right of the diagonal.
"""),
        code("""
self_attention = MultiHeadAttention(d_model, n_heads)
y = self_attention(x, x, x, mask=causal_mask(T))  # (1, T, d_model)
print("output", tuple(y.shape), " weights", tuple(self_attention.attention_weights.shape), " = (B, n_heads, T, T)")
print("head 0, first 4 rows:")
print(self_attention.attention_weights[0, 0, :4, :6])
"""),
        md(r"""
## Sublayer 2 · Cross-attention

Cross-attention is the same module with different inputs: the **queries come from the decoder** (`T` target
positions) while the **keys and values come from the encoder's memory** (`S` source positions). So the
weights have shape `(B, n_heads, T, S)`: for every target position, a distribution over the source words. No
causal mask here: the whole source is known. Only the source padding mask applies.
"""),
        code("""
cross_attention = MultiHeadAttention(d_model, n_heads)
z = cross_attention(y, memory, memory, mask=src_mask)  # query (1, T, d_model), key/value (1, S, d_model)
print("queries from the decoder:", tuple(y.shape), "  keys/values from the memory:", tuple(memory.shape))
print("output", tuple(z.shape), " = (B, T, d_model): one vector per target position")
print("weights", tuple(cross_attention.attention_weights.shape), " = (B, n_heads, T, S)")
"""),
        md(r"""
## A decoder layer as a module

Three sublayers, each with residual and norm, in either order. The names match `course_lib.DecoderLayer`:
`self_attn`, `cross_attn`, `ff`, `norm1`, `norm2`, `norm3`.
"""),
        code("""
class MyDecoderLayer(nn.Module):
    def __init__(self, d_model, n_heads, d_ff, norm_first=False):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads)
        self.cross_attn = MultiHeadAttention(d_model, n_heads)
        self.ff = FeedForward(d_model, d_ff)
        self.norm1, self.norm2, self.norm3 = LayerNorm(d_model), LayerNorm(d_model), LayerNorm(d_model)

    def forward(self, x, memory, self_mask=None, memory_mask=None):
        if self.norm_first:  # pre-norm
            h = self.norm1(x)
            x = x + self.self_attn(h, h, h, mask=self_mask)  # (B, T, d_model)
            h = self.norm2(x)
            x = x + self.cross_attn(h, memory, memory, mask=memory_mask)  # (B, T, d_model)
            x = x + self.ff(self.norm3(x))  # (B, T, d_model)
        else:  # post-norm, as in the paper
            x = self.norm1(x + self.self_attn(x, x, x, mask=self_mask))  # (B, T, d_model)
            x = self.norm2(x + self.cross_attn(x, memory, memory, mask=memory_mask))  # (B, T, d_model)
            x = self.norm3(x + self.ff(x))  # (B, T, d_model)
        return x


my_layer = MyDecoderLayer(d_model, n_heads, d_ff)
out = my_layer(x, memory, self_mask=causal_mask(T), memory_mask=src_mask)
print("x", tuple(x.shape), "+ memory", tuple(memory.shape), "->", tuple(out.shape))
"""),
        code("print(inspect.getsource(DecoderLayer.forward))"),
        code(DIFF_HELPER),
        code("""
for norm_first in (False, True):
    mine = MyDecoderLayer(d_model, n_heads, d_ff, norm_first=norm_first)
    reference = DecoderLayer(d_model, n_heads, d_ff, norm_first=norm_first)
    reference.load_state_dict(mine.state_dict())
    a = mine(x, memory, causal_mask(T), src_mask)
    b = reference(x, memory, causal_mask(T), src_mask)
    print(f"norm_first={norm_first!s:5}: course_lib vs ours, max abs difference {max_abs_difference(a, b):.1e}")
"""),
        md(r"""
## Equal to `nn.TransformerDecoderLayer`

PyTorch's decoder layer calls its cross-attention `multihead_attn`; everything else maps as in lesson 07.
We test a batch with padding on both sides: the target's padding mask is combined with the causal mask
(`combine_masks`, lesson 04), and the source's padding mask goes to cross-attention. In PyTorch all three
masks mean True = blocked, so we pass the negations.
"""),
        code(COPY_FROM_TORCH),
        code("""
B, T_demo, S_demo = 2, 5, 7
x_demo, memory_demo = torch.randn(B, T_demo, d_model), torch.randn(B, S_demo, d_model)
tgt_demo_ids = torch.tensor([[5, 6, 7, 8, 9], [5, 6, 7, 0, 0]])  # (B, T): row 1 has 2 pads
src_demo_ids = torch.tensor([[3, 4, 5, 6, 7, 8, 9], [3, 4, 5, 6, 0, 0, 0]])  # (B, S): row 1 has 3 pads
self_mask = combine_masks(causal_mask(T_demo), padding_mask(tgt_demo_ids, PAD_ID))  # (B, 1, T, T)
memory_mask = padding_mask(src_demo_ids, PAD_ID)  # (B, 1, 1, S)

for norm_first in (False, True):
    theirs = nn.TransformerDecoderLayer(d_model, n_heads, d_ff, dropout=0.0, batch_first=True, norm_first=norm_first)
    ours = DecoderLayer(d_model, n_heads, d_ff, norm_first=norm_first)
    copy_layer_from_torch(ours, theirs)
    their_out = theirs(
        x_demo, memory_demo, tgt_mask=~causal_mask(T_demo),
        tgt_key_padding_mask=tgt_demo_ids == PAD_ID, memory_key_padding_mask=src_demo_ids == PAD_ID,
    )  # PyTorch: True = blocked
    our_out = ours(x_demo, memory_demo, self_mask=self_mask, memory_mask=memory_mask)
    print(f"norm_first={norm_first!s:5}: max abs difference {max_abs_difference(our_out, their_out):.1e}")
"""),
        md(r"""
## The full model: encode, then decode

`model.decode(tgt_ids, memory, src_mask)` embeds the target tokens, adds positions, builds the causal mask
itself, runs the decoder stack and applies the **output layer**: a linear map from `d_model` to the target
vocabulary, giving one row of **logits** per target position (lesson 09 turns them into probabilities).
`model(src_ids, tgt_ids)` does both steps.
"""),
        code("""
logits = model.decode(decoder_input, memory, src_mask)  # (1, T, V_tgt)
print("logits:", tuple(logits.shape), " = (B, T, V_tgt)")
print("same as model(src_ids, decoder_input):", torch.allclose(logits, model(src_ids, decoder_input)))

loss = F.cross_entropy(logits.reshape(-1, len(tgt_vocab)), labels.reshape(-1))
print(f"teacher-forcing loss of the untrained model: {loss.item():.3f}"
      f"  (a uniform guess would give log V = {torch.log(torch.tensor(float(len(tgt_vocab)))).item():.3f}:"
      " the random model is confidently wrong)")
"""),
        md(r"""
The causal mask is what makes teacher forcing honest. Change the **last** decoder input token: the logits at
every earlier position stay exactly the same, because no position can see the tokens after it.
"""),
        code("""
changed_input = decoder_input.clone()
changed_input[0, -1] = tgt_vocab.index("猫")  # replace the last input token
changed_logits = model.decode(changed_input, memory, src_mask)  # (1, T, V_tgt)
print("positions 0..T-2 unchanged:", torch.equal(changed_logits[:, :-1], logits[:, :-1]))
print("last position changed:     ", not torch.allclose(changed_logits[:, -1], logits[:, -1]))
"""),
        md(r"""
## Cross-attention: which source words does each target position read?

Each decoder layer keeps its cross-attention weights, `(B, n_heads, T, S)`. Below: the last decoder layer,
averaged over heads; a row is a target position (what the decoder has seen so far), a column a source word.
The model is untrained, so the weights are spread out; after training in lesson 10 a translator's
cross-attention lines up target words with the source words they translate.
"""),
        code("""
cross_weights = torch.stack([layer.cross_attn.attention_weights[0] for layer in model.decoder.layers])  # (n_layers, n_heads, T, S)
print("cross-attention weights of all decoder layers:", tuple(cross_weights.shape))

fig, ax = plt.subplots(figsize=(8, 6))
plot_attention(cross_weights[-1].mean(0), input_words, source_tokens, ax=ax,
               title="Cross-attention, last decoder layer, mean over heads (untrained)")
ax.set_xlabel("source token (key, from the encoder memory)")
ax.set_ylabel("decoder input token (query)")
plt.show()
"""),
        md("Every head and layer separately:"),
        code("# NBVAL_IGNORE_OUTPUT\nHeadGrid(cross_weights, input_words, source_tokens)"),
        md(r"""
## Equal to `nn.Transformer`

`nn.Transformer` contains the encoder stack, the decoder stack and their final norms, but no embeddings
and no output layer. So we copy its layers into our model, feed it the **same embedded inputs** our model
builds, apply our output layer to its result, and compare logits. The source gets some padding to make
the test meaningful.
"""),
        code("""
torch_transformer = nn.Transformer(
    d_model, n_heads, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=d_ff, dropout=0.0, batch_first=True
)
for our_layer, their_layer in zip(model.encoder.layers, torch_transformer.encoder.layers):
    copy_layer_from_torch(our_layer, their_layer)
for our_layer, their_layer in zip(model.decoder.layers, torch_transformer.decoder.layers):
    copy_layer_from_torch(our_layer, their_layer)
model.encoder.norm.load_state_dict(torch_transformer.encoder.norm.state_dict())
model.decoder.norm.load_state_dict(torch_transformer.decoder.norm.state_dict())

padded_src = torch.cat([src_ids, torch.zeros(1, 3, dtype=torch.long)], dim=1)  # (1, S + 3), 3 pads
src_x = model.positional(model.src_embedding(padded_src))  # (1, S + 3, d_model)
tgt_x = model.positional(model.tgt_embedding(decoder_input))  # (1, T, d_model)
their_hidden = torch_transformer(
    src_x, tgt_x, tgt_mask=~causal_mask(T),
    src_key_padding_mask=padded_src == PAD_ID, memory_key_padding_mask=padded_src == PAD_ID,
)  # (1, T, d_model), PyTorch masks: True = blocked
their_logits = model.output(their_hidden)  # (1, T, V_tgt)
our_logits = model(padded_src, decoder_input)  # (1, T, V_tgt)
print("logits, course_lib Transformer vs nn.Transformer: max abs difference",
      f"{max_abs_difference(our_logits, their_logits):.1e}")
"""),
        md(r"""
**Try this**

* Print `model.decoder.layers[0].self_attn.attention_weights[0, 0]`: where are the zeros, and why?
* Feed `decoder_input[:, :4]` only: are the logits at positions 0..3 the same as before? (This is what makes
  fast generation possible; lesson 09.)
* Build the model with `norm_first=True` and repeat the `nn.Transformer` comparison (pass `norm_first=True`
  to `nn.Transformer` too).

## Summary

* A **decoder layer** = masked self-attention + cross-attention + FFN, each with a residual connection and layer norm.
* **Masked self-attention** uses the causal mask, so position `t` only sees target tokens `0..t`.
* **Cross-attention** takes queries from the decoder and keys/values from the encoder memory; its weights are
  `(B, n_heads, T, S)`, a distribution over source positions for each target position.
* `Transformer.encode` runs once per source; `Transformer.decode` maps target tokens and memory to logits `(B, T, V)`.
* **Teacher forcing**: the decoder input is the target shifted right (starting with `<bos>`), the labels are the
  target shifted left (ending with `<eos>`); all positions train in one pass.
* With copied weights, `course_lib` equals `nn.TransformerDecoderLayer` and `nn.Transformer`.
"""),
        md(
            "## Key terms\n\n"
            + terms_table(
                [
                    ("decoder", "解码器", "stack of masked self-attention + cross-attention + FFN layers"),
                    ("masked self-attention", "掩码自注意力", "self-attention with a causal mask"),
                    ("cross-attention", "交叉注意力", "queries from the decoder, keys/values from the encoder memory"),
                    (
                        "encoder-decoder",
                        "编码器-解码器",
                        "the full model of the 2017 paper, for sequence-to-sequence tasks",
                    ),
                    ("teacher forcing", "教师强制", "training the decoder on the correct previous tokens"),
                    ("shift right", "右移", "decoder input = <bos> + target without its last token"),
                    ("logits", "对数几率（logits）", "unnormalised scores over the vocabulary"),
                    ("beginning / end of sentence", "句首 / 句尾标记", "<bos> and <eos>"),
                ]
            )
            + your_turn(
                "08",
                "08_decoder",
                "You will write a `DecoderLayer`, predict the shape of cross-attention weights, and write `shift_right` for teacher forcing.",
                "Next lesson: [09 the output layer and generation](09_generation.ipynb).",
            )
        ),
    ]


# ---------------------------------------------------------------------------------------------
# Lesson 09: output layer and generation
# ---------------------------------------------------------------------------------------------
def lesson09() -> list[tuple[str, str]]:
    return [
        md(r"""
# Lesson 09 · The output layer and generation

A Transformer ends with one vector per position. This lesson turns that vector into a **probability for
every word of the vocabulary** and then turns probabilities into **text**, one token at a time: by
sampling (with temperature, top-k, top-p), by always taking the best token (greedy decoding), or by
keeping several candidates alive (beam search). Finally it makes generation fast with a **key/value cache**.
"""),
        code(
            setup_code("""
import time

from course_lib.example import RUNNING_SENTENCE
from course_lib.generation import (
    beam_search, generate, greedy_decode, length_penalty, next_token_probs, sample_next_token,
)
from course_lib.masks import causal_mask
from course_lib.models import GPT, GPTConfig, Transformer, TransformerConfig
from course_lib.multihead import KVCache, MultiHeadAttention
from course_lib.viz import plot_sampling_bars, show_map
from course_lib.widgets import SamplingExplorer
""")
        ),
        md("## Where we are"),
        code("show_map(9)\nplt.show()"),
        md(r"""
## Learning goals

1. Compute next-token probabilities with a linear layer and a softmax, and explain **weight tying**.
2. Reshape a distribution with **temperature**, **top-k** and **top-p**, and sample from it reproducibly.
3. Explain **greedy decoding** and **beam search** with a length penalty (and why beam size 1 is greedy).
4. Explain why a **key/value cache** gives exactly the same tokens, and measure how much faster it is.

## A small language model for the running example

A GPT (lesson 11 trains a real one) is a stack of the pre-norm blocks of lessons 06-07 with a causal mask,
a final layer norm, and an **output layer**. Our vocabulary is the running sentence's words plus a few more,
so that the model has some wrong answers to choose from.
"""),
        code("""
tokens = RUNNING_SENTENCE.split()
extra_words = "a dog ran under sofa he hungry and happy".split()
vocab = sorted(set(tokens + extra_words))
V = len(vocab)
token_ids = torch.tensor([[vocab.index(word) for word in tokens]])  # (1, T)
print(f"V = {V} words:", " ".join(vocab))

config = GPTConfig(vocab_size=V, context_length=16, d_model=32, n_heads=4, n_layers=2)
gpt = GPT(config)
print(config)
"""),
        md(r"""
## The output layer: linear, then softmax

The last hidden vector $h_t$ (after the final layer norm) is multiplied by a matrix $W$ of shape `(V, d_model)`:
one **logit** per vocabulary word, $z = W h_t$. Softmax turns the logits into probabilities that sum to 1.

**Weight tying.** The token embedding is also a `(V, d_model)` matrix. GPT-2 and the 2017 paper use *the same
matrix* for both (Press & Wolf, 2017): a word's logit is the dot product of the hidden state with that word's
embedding, so words with similar embeddings get similar scores. It also saves `V × d_model` parameters, a large
share of a small model's size. In `course_lib`, `lm_head.weight` *is* `token_embedding.weight`: one tensor,
not a copy.

Let us run the model by hand, block by block, and apply the output layer ourselves:
"""),
        code("""
print("tied:", gpt.lm_head.weight is gpt.token_embedding.weight, " shape", tuple(gpt.lm_head.weight.shape), "= (V, d_model)")

T = token_ids.shape[1]
with torch.no_grad():
    h = gpt.position_embedding(gpt.token_embedding(token_ids))  # (1, T, d_model)
    for block in gpt.blocks:
        h = block(h, causal_mask(T))  # (1, T, d_model)
    h = gpt.final_norm(h)  # (1, T, d_model)
    logits = h @ gpt.token_embedding.weight.T  # (1, T, V): the output layer, tied
    probs = torch.softmax(logits, dim=-1)  # (1, T, V)
    print("hidden", tuple(h.shape), "-> logits", tuple(logits.shape), "-> probabilities", tuple(probs.shape))
    print("same as gpt(token_ids):", torch.allclose(logits, gpt(token_ids)))
    print("each row sums to 1:", torch.allclose(probs.sum(-1), torch.ones(())))

total = sum(p.numel() for p in gpt.parameters())  # parameters() lists the shared tensor once
print(f"parameters: {total:,d}; without tying there would be {total + V * config.d_model:,d}")
"""),
        md(r"""
Untrained, the model's guesses are nearly uniform. To get a distribution worth looking at, we let the model
read the running sentence a dozen times (training is the subject of lessons 10 and 11; here it is just a few
steps of gradient descent on "predict the next word"). Not enough to memorise the sentence, enough to have opinions.
"""),
        code("""
def next_word_loss(model, ids):
    logits = model(ids[:, :-1])  # (1, T - 1, V)
    return F.cross_entropy(logits.reshape(-1, V), ids[:, 1:].reshape(-1))


optimizer = torch.optim.Adam(gpt.parameters(), lr=1e-2)
print(f"loss before: {next_word_loss(gpt, token_ids).item():.3f}  (log V = {torch.log(torch.tensor(float(V))).item():.3f})")
for step in range(12):
    loss = next_word_loss(gpt, token_ids)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
gpt.eval()  # evaluation mode from now on (it has no dropout, but this is the habit)
print(f"loss after 12 steps: {next_word_loss(gpt, token_ids).item():.3f}")
"""),
        md('Now the running example\'s last question: what comes after *"the cat sat on the mat because it was"*?'),
        code("""
prompt = token_ids[:, :-1]  # (1, 9): everything but "tired"
with torch.no_grad():
    next_logits = gpt(prompt)[0, -1]  # (V,): logits at the last position
next_probs = torch.softmax(next_logits, dim=-1)  # (V,)
print(" ".join(tokens[:-1]), "...")
for p, index in zip(*next_probs.topk(5)):
    print(f"  {vocab[index]:8s} {p.item():.3f}")
"""),
        md(r"""
## Shaping the distribution: temperature, top-k, top-p

Sampling straight from these probabilities sometimes picks a poor word from the long tail. Three knobs
reshape the distribution first; `course_lib.next_token_probs` applies them in this order:

* **temperature** $\tau$: softmax of $z / \tau$. $\tau < 1$ sharpens (the likely words get likelier),
  $\tau > 1$ flattens, and $\tau \to 0$ puts all the mass on the largest logit (greedy).
* **top-k**: keep only the $k$ most likely words, set the others' probability to 0, renormalise.
* **top-p** (nucleus sampling, Holtzman et al., 2019): keep the *smallest* set of most likely words whose
  probabilities add up to at least $p$, renormalise. Unlike top-k, the number of kept words adapts: few when the
  model is sure, many when it is not.
"""),
        code("print(inspect.getsource(next_token_probs))"),
        code("""
settings = [
    ("temperature 1 (unchanged)", dict()),
    ("temperature 0.5 (sharper)", dict(temperature=0.5)),
    ("temperature 2 (flatter)", dict(temperature=2.0)),
    ("top-k = 3", dict(top_k=3)),
    ("top-p = 0.7", dict(top_p=0.7)),
    ("temperature 0 (greedy)", dict(temperature=0.0)),
]
order = next_logits.argsort(descending=True)  # most likely first
labels = [vocab[i] for i in order.tolist()]
fig, axes = plt.subplots(2, 3, figsize=(15, 6.5), layout="constrained", sharey=True)
for ax, (name, kwargs) in zip(axes.flat, settings):
    temperature_only = next_token_probs(next_logits, temperature=kwargs.get("temperature", 1.0))  # (V,)
    final = next_token_probs(next_logits, **kwargs)  # (V,)
    plot_sampling_bars(final[order], labels, before_cut=temperature_only[order], ax=ax, title=name)
    ax.set_ylabel("probability")
    kept = int((final > 0).sum())
    print(f"{name:27s}: {kept:2d} words kept, p(tired) = {final[vocab.index('tired')].item():.3f}")
plt.show()
"""),
        md(r"""
Grey hatched outlines are the probabilities before the cut; the coloured bars are what is left after it.
Move the sliders to try other settings (temperature 0 means greedy; top-k 0 and top-p 1 mean "off"):
"""),
        code("# NBVAL_IGNORE_OUTPUT\nSamplingExplorer(next_logits, vocab)"),
        md(r"""
## Sampling, reproducibly

`sample_next_token` draws one token per row with `torch.multinomial`. Randomness comes from a
**generator**; a `torch.Generator` seeded with the same number gives the same draws every time, without
touching the global seed.
"""),
        code("""
probs = next_token_probs(next_logits, temperature=1.0)[None]  # (1, V)
for seed in (0, 0, 1):
    generator = torch.Generator().manual_seed(seed)
    draws = [vocab[sample_next_token(probs, generator).item()] for _ in range(8)]
    print(f"seed {seed}:", " ".join(draws))
"""),
        md(r"""
`generate` repeats this: predict, sample, append, predict again. Each new token becomes part of the input
for the next step.
"""),
        code("""
start = token_ids[:, :1]  # (1, 1): "the"
for seed in (0, 0, 1):
    out = generate(gpt, start, max_new_tokens=9, temperature=0.8, top_p=0.95, generator=torch.Generator().manual_seed(seed))
    print(f"seed {seed}:", " ".join(vocab[i] for i in out[0].tolist()))
greedy = generate(gpt, start, max_new_tokens=9, temperature=0.0)
print("greedy:", " ".join(vocab[i] for i in greedy[0].tolist()))
"""),
        md(r"""
## Greedy decoding and beam search

For translation we usually want the single most likely output rather than a random one. Finding it exactly is
hopeless (there are $V^L$ sequences of length $L$), so we search:

* **greedy decoding** takes the most likely token at every step. It is fast, but a good first word can lead to a
  poor sentence, and it never reconsiders.
* **beam search** keeps the `beam_size` best *partial* sequences (hypotheses) at each step, ranked by the sum
  of their log-probabilities. Every hypothesis is extended by every word, the best `beam_size` extensions
  survive, and hypotheses that produce `<eos>` are set aside as finished.
* Summed log-probabilities only decrease as a sequence grows, so longer hypotheses look worse. A **length
  penalty** corrects this: finished hypotheses are compared by score $/\,\mathrm{lp}(L)$ with
  $\mathrm{lp}(L) = ((5 + L)/6)^\alpha$ (Wu et al., 2016); $\alpha = 0$ switches it off.

With `beam_size = 1`, only the best extension survives each step: that is greedy decoding, exactly.

We try both on lesson 08's encoder-decoder, seeded, after only **three** training steps on the
running example's translation pair: far from trained (lesson 10 trains a real translator), but enough to
make the search interesting. (We do not tie the output layer here: an untrained *tied* model mostly repeats
its input token, because the hidden state still resembles that token's own embedding.)"""),
        code("""
target_words = ["<pad>", "<bos>", "<eos>"] + "猫 坐 在 垫子 上 ， 因为 它 累 了".split()
BOS_ID, EOS_ID = 1, 2
source_vocab = ["<pad>"] + sorted(set(tokens))
src_ids = torch.tensor([[source_vocab.index(word) for word in tokens]])  # (1, S)
tgt_ids = torch.tensor([[BOS_ID] + list(range(3, len(target_words))) + [EOS_ID]])  # (1, 12): <bos> 猫 ... 了 <eos>

torch.manual_seed(1)
translator = Transformer(TransformerConfig(
    src_vocab_size=len(source_vocab), tgt_vocab_size=len(target_words), d_model=32, n_heads=4,
    n_encoder_layers=2, n_decoder_layers=2, d_ff=64, dropout=0.0, tie_output=False,
))
translator_optimizer = torch.optim.Adam(translator.parameters(), lr=1e-2)
for step in range(3):  # three steps of teacher forcing (lesson 08), nowhere near trained
    logits = translator(src_ids, tgt_ids[:, :-1])  # (1, 11, V_tgt)
    loss = F.cross_entropy(logits.reshape(-1, len(target_words)), tgt_ids[:, 1:].reshape(-1))
    translator_optimizer.zero_grad()
    loss.backward()
    translator_optimizer.step()


@torch.no_grad()
def sequence_log_prob(model, src_ids, sequence):
    # Sum of log p(token | source, earlier tokens) over the tokens after <bos>.
    logits = model(src_ids, sequence[:, :-1])  # (1, L, V_tgt)
    log_probs = torch.log_softmax(logits, dim=-1)  # (1, L, V_tgt)
    return log_probs.gather(-1, sequence[:, 1:, None]).sum().item()


def show(name, sequence):
    words = " ".join(target_words[i] for i in sequence[0].tolist())
    L = sequence.shape[1] - 1
    score = sequence_log_prob(translator, src_ids, sequence)
    print(f"{name:22s} log p = {score:7.3f}, / lp(L={L:2d}) = {score / length_penalty(L, 0.6):7.3f}   {words}")


show("reference translation", tgt_ids)
greedy_ids = greedy_decode(translator, src_ids, BOS_ID, EOS_ID, max_len=12)
beam1_ids = beam_search(translator, src_ids, BOS_ID, EOS_ID, beam_size=1, max_len=12)
show("greedy", greedy_ids)
show("beam_size=1", beam1_ids)
print("beam_size=1 == greedy:", torch.equal(greedy_ids, beam1_ids))
for beam_size in (2, 4):
    show(f"beam_size={beam_size}", beam_search(translator, src_ids, BOS_ID, EOS_ID, beam_size=beam_size, max_len=12))
"""),
        md(r"""
Read the scores: beam search finds an output with a **better length-normalised score** than greedy decoding,
exactly what it is built to do, and yet, for this barely trained model, a *worse translation* (it drops words).
Even the reference translation scores lower than both: the model has not learned it yet. Search can only be
as good as the model's probabilities; with a well trained model the more probable outputs
are usually the better ones (lesson 10). Beam search is also not guaranteed to find the most probable sequence
overall: it only compares the hypotheses that survived in its beam.

The length penalty grows slowly with length; a larger $\alpha$ favours longer outputs more strongly:
"""),
        code("""
for alpha in (0.0, 0.6, 1.0):
    print(f"alpha={alpha}: " + ", ".join(f"lp({L})={length_penalty(L, alpha):.2f}" for L in (1, 5, 10, 20)))
"""),
        md(r"""
## The key/value cache

Generating token $t+1$ needs the logits at position $t$ only. Without a cache, `generate` feeds the whole
sequence $0..t$ through the model again at every step and throws away all positions but the last. That is
wasteful, and the waste grows with the length.

**Why caching is valid.** In a causal model, the keys and values at position $i$ depend only on tokens $0..i$
(every layer's input at position $i$ depends only on positions $\le i$). Appending a new token changes nothing
at earlier positions. So their keys and values, in every layer, can be computed once and kept. At each step
we feed **only the newest token**: it produces one query, one key and one value per head and layer; the key and
value are appended to the cache, and the query attends to all cached keys.

**How `course_lib` does it.** A `KVCache` per layer stores keys and values `(B, n_heads, T_past, d_head)`;
`MultiHeadAttention.forward(..., kv_cache=cache)` appends the new ones and attends over all of them. The
model tells its positional embedding and causal mask where the new tokens start (`start = len(cache)`).
(For cross-attention the encoder memory never changes, so its keys and values are computed once: `static=True`.)
"""),
        code("print(inspect.getsource(KVCache))"),
        md("Step by step on the running example: feed the prompt once, then one token at a time."),
        code("""
cache = gpt.new_cache()  # one KVCache per block
with torch.no_grad():
    logits_prompt = gpt(prompt, cache=cache)  # (1, 9, V): the whole prompt, once
    print("after the prompt: cache holds", len(cache[0]), "positions; keys", tuple(cache[0].keys.shape), "= (B, n_heads, T_past, d_head)")
    next_id = logits_prompt[:, -1].argmax(-1, keepdim=True)  # (1, 1)
    logits_step = gpt(next_id, cache=cache)  # (1, 1, V): only the new token goes in
    print("after one step:   cache holds", len(cache[0]), "positions; the step's logits", tuple(logits_step.shape))

    full = gpt(torch.cat([prompt, next_id], dim=1))  # (1, 10, V): recompute everything
print("cached step vs full recomputation, last position: max abs difference",
      f"{(logits_step[0, -1] - full[0, -1]).abs().max().item():.1e}")
"""),
        md(r"""
**Proof that it changes nothing:** generate with and without the cache, greedily and by sampling (with the same
seeded generator); the tokens are identical.
"""),
        code("""
for name, kwargs in [("greedy", dict(temperature=0.0)), ("sampled", dict(temperature=1.0))]:
    with_cache = generate(gpt, start, 12, use_cache=True, generator=torch.Generator().manual_seed(0), **kwargs)
    without = generate(gpt, start, 12, use_cache=False, generator=torch.Generator().manual_seed(0), **kwargs)
    print(f"{name:8s} same tokens: {torch.equal(with_cache, without)}  ->", " ".join(vocab[i] for i in with_cache[0].tolist()))
"""),
        md(r"""
**How much faster?** A bigger GPT (context 512, `d_model = 128`, 2 layers, float32 as in practice), a
40-token prompt, 200 new tokens by greedy decoding, once with the cache and once recomputing everything, on one CPU
thread (set in the first cell). We time every step. (Timings depend on your machine; this cell's stored numbers are not checked.)
"""),
        code("""
# NBVAL_IGNORE_OUTPUT
torch.manual_seed(0)
big = GPT(GPTConfig(vocab_size=512, context_length=512, d_model=128, n_heads=4, n_layers=2)).float().eval()
big_prompt = torch.randint(0, 512, (1, 40))  # (1, 40)


@torch.no_grad()
def timed_greedy(model, prompt_ids, n_new, use_cache):
    # Greedy generation that records the time of every step.
    ids, cache, step_input, step_times = prompt_ids, (model.new_cache() if use_cache else None), prompt_ids, []
    for _ in range(n_new):
        started = time.perf_counter()
        logits = model(step_input if use_cache else ids, cache=cache)[:, -1]  # (1, V)
        next_id = logits.argmax(-1, keepdim=True)  # (1, 1)
        step_times.append(time.perf_counter() - started)
        ids = torch.cat([ids, next_id], dim=1)  # (1, T + 1)
        step_input = next_id
    return ids, step_times


ids_cached, times_cached = timed_greedy(big, big_prompt, 200, use_cache=True)
ids_full, times_full = timed_greedy(big, big_prompt, 200, use_cache=False)
print("same tokens:", torch.equal(ids_cached, ids_full))
print(f"with cache:    {sum(times_cached):.2f} s for 200 tokens")
print(f"without cache: {sum(times_full):.2f} s for 200 tokens")
print(f"speed-up: {sum(times_full) / sum(times_cached):.1f}x")
"""),
        code("""
def running_median(values, window=9):
    # Smooths out the spikes a busy computer adds to single measurements.
    padded = torch.tensor(values).double()
    padded = torch.cat([padded[:1].repeat(window // 2), padded, padded[-1:].repeat(window // 2)])
    return padded.unfold(0, window, 1).median(dim=-1).values


positions = range(big_prompt.shape[1], big_prompt.shape[1] + 200)
fig, ax = plt.subplots(figsize=(8, 4))
for times, colour, name in [
    (times_full, "#d55e00", "without cache: recompute all positions"),
    (times_cached, "#0072b2", "with KV cache: only the new token"),
]:
    milliseconds = [1000 * t for t in times]
    ax.plot(positions, milliseconds, color=colour, linewidth=0.8, alpha=0.35)
    ax.plot(positions, 1000 * running_median(times), color=colour, linewidth=2, label=name + " (running median)")
ax.set_xlabel("position of the generated token")
ax.set_ylabel("time for this step (ms)")
ax.set_title("Time per generated token")
ax.set_ylim(bottom=0)
ax.legend()
plt.show()
"""),
        md(r"""
(Thin lines are single measurements, thick lines their running median. With the cache the very first step
is slower: it runs the whole prompt once to fill the cache.)

Without the cache each step costs more as the sequence grows (it processes all $t$ positions, and attention
compares all pairs); with the cache each step processes one token, so the cost stays nearly flat (attention
over the cache still grows slowly). The longer the text, the larger the speed-up. The price is memory: the
cache stores `2 × n_layers × T × d_model` numbers per sequence.
"""),
        md(r"""
## The cost of attention: why $T^2$ matters, and why fused kernels are faster

Every head compares every query with every key, so attention builds a $T \times T$ matrix of scores, then
a $T \times T$ matrix of weights. Double the text and that work and memory grow four times: $T^2$. The
linear layers, by contrast, grow only like $T$. The memory is easy to count exactly: one float32 weights
matrix per head and per sequence.
"""),
        code(r"""
n_heads_cost, d_head_cost = 4, 64
lengths = [64, 128, 256, 512, 1024, 2048]
for T_cost in lengths:
    megabytes = n_heads_cost * T_cost * T_cost * 4 / 2**20  # float32 weights, (n_heads, T, T)
    print(f"T = {T_cost:5d}: attention weights of one layer take {megabytes:8.2f} MB")
"""),
        md(r"""
Now the time, measured: course_lib's readable attention (which keeps the weights, so we can plot them)
against PyTorch's fused `F.scaled_dot_product_attention`, for one sequence with 4 heads, median of 5 runs.
"""),
        code(r"""
# NBVAL_IGNORE_OUTPUT
import statistics
import time

from course_lib.attention import scaled_dot_product_attention


def median_seconds(fn, repeats=5):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


readable_times, fused_times = [], []
with torch.no_grad():
    for T_cost in lengths:
        q_c, k_c, v_c = (torch.randn(1, n_heads_cost, T_cost, d_head_cost) for _ in range(3))  # (1, H, T, d_head)
        readable_times.append(median_seconds(lambda: scaled_dot_product_attention(q_c, k_c, v_c)))
        fused_times.append(median_seconds(lambda: F.scaled_dot_product_attention(q_c, k_c, v_c)))
for T_cost, r, f in zip(lengths, readable_times, fused_times):
    print(f"T = {T_cost:5d}: readable {r * 1000:8.2f} ms   fused {f * 1000:8.2f} ms   ratio {r / f:5.2f}")

fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
ax.loglog(lengths, [t * 1000 for t in readable_times], "o-", color="#d55e00", label="readable (keeps the weights)")
ax.loglog(lengths, [t * 1000 for t in fused_times], "s-", color="#0072b2", label="fused F.scaled_dot_product_attention")
reference = [readable_times[-1] * 1000 * (T_cost / lengths[-1]) ** 2 for T_cost in lengths]
ax.loglog(lengths, reference, "--", color="grey", label="grows like $T^2$")
ax.set_xlabel("sequence length T")
ax.set_ylabel("time per attention call (ms)")
ax.set_title("Attention time grows like $T^2$")
ax.legend()
plt.show()
"""),
        md(r"""
For short texts both are quick and the difference hardly matters. For long ones the lines bend towards the
$T^2$ slope, and the fused kernel pulls ahead. Both do the same arithmetic; the difference is **memory
traffic**. The readable version writes the whole $T \times T$ score matrix to memory, reads it back for the
softmax, writes the weights, and reads them again to multiply by $V$. A fused kernel (the idea of
FlashAttention, Dao et al., 2022) walks over the keys in blocks that fit in the processor's cache and keeps
a running maximum and running sum for the softmax, so the $T \times T$ matrix is never stored at all. On
this course's laptop-sized models the gap for a whole training step is small (see `BENCHMARKS.md`:
`python tasks.py bench`), and `course_lib.multihead.use_fused_attention(model)` switches a model to the
fused path for training; `tests/test_fast_path.py` proves it gives the same outputs and gradients. The
readable path stays the default because it keeps `.attention_weights` for the pictures.

**Try this**

* In the sampling figure, set top-p to 0.5: how many words survive? And with temperature 2 and top-p 0.5?
* Generate from `start` with `temperature=0.3` and with `temperature=1.5` (same seed). Which text looks more
  like the training sentence?
* Increase `max_len` of the beam search to 15 and change `alpha`: does the chosen hypothesis change?
* Rerun the timing with 400 new tokens (and a 100-token prompt). How does the speed-up change?

## Summary

* The **output layer** maps the final hidden vector to `V` logits; softmax makes them probabilities. With
  **tied weights** it reuses the token embedding matrix.
* **Temperature** rescales the logits; **top-k** keeps the k likeliest words; **top-p** keeps the smallest set
  whose probability reaches p. A seeded `torch.Generator` makes sampling reproducible.
* **Greedy decoding** takes the best token each step; **beam search** keeps `beam_size` hypotheses and compares
  finished ones with a **length penalty**; beam size 1 is greedy.
* The **KV cache** stores each layer's keys and values, valid because causal attention never lets earlier
  positions see later tokens; it gives identical tokens and makes each step cost one token's work.
"""),
        md(
            "## Key terms\n\n"
            + terms_table(
                [
                    ("output layer", "输出层", "linear map from d_model to the vocabulary's logits"),
                    ("weight tying", "权重共享", "the output layer reuses the token embedding matrix"),
                    ("temperature", "温度", "divide logits by τ before the softmax"),
                    ("top-k sampling", "top-k 采样", "sample among the k likeliest tokens"),
                    ("top-p (nucleus) sampling", "top-p（核）采样", "sample among the smallest set with mass ≥ p"),
                    ("greedy decoding", "贪心解码", "always take the most likely next token"),
                    ("beam search", "束搜索", "keep the beam_size best partial sequences"),
                    ("length penalty", "长度惩罚", "normalises scores so longer outputs are not punished"),
                    ("KV cache", "键值缓存", "stored keys and values of earlier positions"),
                    ("autoregressive generation", "自回归生成", "each new token is fed back as input"),
                ]
            )
            + your_turn(
                "09",
                "09_generation",
                "You will write `next_token_probs` (temperature, top-k, top-p), greedy decoding, and the log-probability of a sequence.",
                "Next: lesson 10 trains the encoder-decoder as a translator, and lesson 11 trains a tiny GPT and generates text with it.",
            )
        ),
    ]


LESSONS = {
    "05": ("05_multi_head_attention", lesson05),
    "06": ("06_mlp_residual_layernorm", lesson06),
    "07": ("07_encoder", lesson07),
    "08": ("08_decoder", lesson08),
    "09": ("09_generation", lesson09),
}


def main(argv: list[str]) -> None:
    chosen = argv or list(LESSONS)
    for key in chosen:
        name, make_cells = LESSONS[key]
        write_lesson(name, make_cells())


if __name__ == "__main__":
    main(sys.argv[1:])
