"""The corpus of lesson 11: sentences from a small probabilistic grammar, with exact probabilities.

Why a grammar of our own? Because then we know the *true* probability of every sentence, so
we know the lowest loss any language model can reach on it (the entropy floor), and we can
check whether a trained model gets there.

The sentences read like simple English::

    if the dog that the cats chase sleeps ( the girl sings ) , then the farmers wait .

and carry three long-range dependencies that a model can only get right by looking far back
(attention), not by looking at the last two words (a trigram):

1. **agreement**: a verb agrees in number with its subject, across a relative clause
   ("the dog that the cats chase *sleeps*": 5 or more tokens from noun to verb);
2. **brackets**: asides in ``( )``, ``[ ]`` or ``{ }``, nested up to depth 3, closed in order;
3. **opening choice**: a sentence that opens with "if" continues with ", then"; one that opens
   with "either" continues with ", or".

How the probabilities stay exact
--------------------------------
The sampler makes each random choice at the moment the next word reveals it, and gives that
word the log-probability of every choice made since the previous word. Every choice point
has options that start with different words, so the words determine the choices (the
grammar is unambiguous; ``parse_sentence`` recovers every choice from the words alone, and
the tests check it). Hence the log-probability stored with a word is exactly
``log p(word | the words before it)``, and the sum over a sentence is ``log p(sentence)``.

The entropy floor per token is ``E[-log p(sentence)] / E[number of tokens]``, where the tokens
of a sentence are its words plus the end-of-sentence token ``<eos>`` (the model reads ``<bos>``
first and must predict every word and then ``<eos>``). ``estimate_entropy_floor`` estimates it
by Monte Carlo, with its standard error.

Built in lesson 11 (train a tiny GPT).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from course_lib.tokenization import SPECIAL_TOKENS, WordTokenizer
from course_lib.tokenization.word import WORD_PATTERN

# ----------------------------------------------------------------------------------------
# The grammar: words and probabilities
# ----------------------------------------------------------------------------------------

NOUNS: dict[str, tuple[str, str]] = {
    "dog": ("dog", "dogs"),
    "cat": ("cat", "cats"),
    "bird": ("bird", "birds"),
    "fox": ("fox", "foxes"),
    "child": ("child", "children"),
    "girl": ("girl", "girls"),
    "farmer": ("farmer", "farmers"),
    "teacher": ("teacher", "teachers"),
}
"""Noun -> (singular, plural). Every form is a different word, so the word shows the number."""

TRANSITIVE_VERBS: dict[str, tuple[str, str]] = {
    "see": ("sees", "see"),
    "like": ("likes", "like"),
    "chase": ("chases", "chase"),
    "help": ("helps", "help"),
    "follow": ("follows", "follow"),
    "find": ("finds", "find"),
}
"""Verb that takes an object -> (form after a singular subject, form after a plural subject)."""

INTRANSITIVE_VERBS: dict[str, tuple[str, str]] = {
    "sleep": ("sleeps", "sleep"),
    "run": ("runs", "run"),
    "sing": ("sings", "sing"),
    "wait": ("waits", "wait"),
    "laugh": ("laughs", "laugh"),
}
"""Verb without an object -> (singular form, plural form)."""

ADJECTIVES: tuple[str, ...] = ("big", "small", "old", "young", "happy", "hungry")
PREPOSITIONS: tuple[str, ...] = ("in", "near", "behind")
PLACES: tuple[str, ...] = ("park", "garden", "house", "river", "forest")
BRACKETS: dict[str, str] = {"(": ")", "[": "]", "{": "}"}
"""Opening bracket -> its closing bracket."""

FORMS: dict[str, float] = {"plain": 0.4, "if": 0.2, "either": 0.2, "when": 0.2}
"""How a sentence opens, with probabilities:

* plain: ``CLAUSE .``
* if: ``if CLAUSE , then CLAUSE .``
* either: ``either CLAUSE , or CLAUSE .``
* when: ``when CLAUSE , CLAUSE .``
"""

CONNECTIVES: dict[str, str | None] = {"plain": None, "if": "then", "either": "or", "when": None}
"""The word that must follow the comma, fixed by the sentence's first word."""

P_ADJECTIVE = 0.25
"""Probability that a noun phrase has an adjective ("the old dog")."""
P_RELATIVE = 0.5
"""Probability that a subject has a relative clause ("the dog that the cats chase")."""
RELATIVE_KINDS: dict[str, float] = {"subject": 1 / 3, "object": 1 / 3, "place": 1 / 3}
"""Relative clauses: "that sees the cat" (subject), "that the cat sees" (object),
"that sleeps in the park" (place). Each has at least 4 words, so the main verb comes 5 or more
tokens after its subject noun."""
P_TRANSITIVE = 0.5
"""Probability that the main verb takes an object."""
P_PLACE = 0.4
"""Probability that a verb without an object is followed by a place ("runs near the river")."""
P_ASIDE_BY_DEPTH: tuple[float, ...] = (0.35, 0.3, 0.25)
"""Probability that a clause at bracket depth 0, 1, 2 is followed by a bracketed aside. A clause
at depth 3 has none, so brackets nest at most 3 deep."""
MAX_DEPTH = len(P_ASIDE_BY_DEPTH)

ROLE_AGREEMENT = "agreeing verb"
ROLE_CLOSING = "closing bracket"
ROLE_CONNECTIVE = "then / or"
ROLES: tuple[str, ...] = (ROLE_AGREEMENT, ROLE_CLOSING, ROLE_CONNECTIVE)
"""The long-range positions the lesson looks at:

* ``agreeing verb``: a verb whose subject noun is 5 or more tokens back (across a relative clause);
* ``closing bracket``: any closing bracket;
* ``then / or``: the word after the comma in an "if" or "either" sentence.
"""


def vocabulary_words() -> list[str]:
    """Every word the grammar can write, in a fixed order (the word tokenizer's vocabulary)."""
    words = [".", ",", "the", "that", "if", "then", "either", "or", "when"]
    words += [form for pair in NOUNS.values() for form in pair]
    words += [form for pair in TRANSITIVE_VERBS.values() for form in pair]
    words += [form for pair in INTRANSITIVE_VERBS.values() for form in pair]
    words += list(ADJECTIVES) + list(PREPOSITIONS) + list(PLACES)
    words += [symbol for pair in BRACKETS.items() for symbol in pair]
    return words


def make_tokenizer() -> WordTokenizer:
    """The word-level tokenizer of the tiny GPT: special tokens, then ``vocabulary_words()``."""
    return WordTokenizer(list(SPECIAL_TOKENS) + vocabulary_words())


# ----------------------------------------------------------------------------------------
# The sampler
# ----------------------------------------------------------------------------------------


@dataclass
class Sentence:
    """One sampled sentence.

    ``words`` are the words; ``log_probs`` and ``roles`` have one entry per *token*, that is
    per word plus one for ``<eos>``: ``log_probs[i]`` is ``log p(token i | tokens before it)``
    under the grammar, ``roles[i]`` is one of ``ROLES`` or "". ``choices`` is the derivation:
    every random choice, in order, as ``(name, outcome)``. ``links`` are the long-range
    dependencies as ``(role, i, j)``: word ``j`` (of that role) depends on word ``i`` (the
    subject noun, the opening bracket, or the sentence's first word).
    """

    words: list[str]
    log_probs: list[float]
    roles: list[str]
    choices: list[tuple[str, str]] = field(default_factory=list)
    links: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def n_tokens(self) -> int:
        """Words plus ``<eos>``: the number of predictions a model makes on this sentence."""
        return len(self.words) + 1

    @property
    def log_prob(self) -> float:
        """``log p(sentence)``: the sum of the per-token log-probabilities."""
        return math.fsum(self.log_probs)


def _draw(rng: random.Random, options: dict[str, float]) -> str:
    """Pick one option with its probability: walk the cumulative distribution up to a uniform draw."""
    draw = rng.random()
    for option, probability in options.items():
        draw -= probability
        if draw < 0:
            return option
    return option  # only reached through rounding when draw is within 1e-16 of 1


class _Writer:
    """Collects words while the grammar runs; either samples choices or reads them off words.

    Sampling (``words=None``): ``choose`` draws with ``rng``. Parsing (``words`` given):
    ``choose`` picks the option whose first word is the next word, so a parse fails loudly
    if two options could start with the same word.
    """

    def __init__(self, rng: random.Random | None, words: Sequence[str] | None = None):
        self.rng = rng
        self.target = list(words) if words is not None else None
        self.words: list[str] = []
        self.log_probs: list[float] = []
        self.roles: list[str] = []
        self.choices: list[tuple[str, str]] = []
        self.links: list[tuple[str, int, int]] = []
        self.pending = 0.0  # log-probability of the choices not yet revealed by a word

    def next_word(self) -> str | None:
        """In parsing mode, the word that comes next (None at the end)."""
        index = len(self.words)
        return self.target[index] if index < len(self.target) else None

    def choose(self, name: str, options: dict[str, float], first_words: dict[str, set[str]]) -> str:
        """Make one choice; ``first_words[option]`` is the set of words that option can start with."""
        if self.target is None:
            outcome = _draw(self.rng, options)
        else:
            word = self.next_word()
            matches = [option for option in options if word in first_words[option]]
            if len(matches) != 1:
                raise ValueError(
                    f"parse_sentence: at word {len(self.words)} ({word!r}) the choice {name!r} "
                    f"matches {len(matches)} options {matches}; the sentence is not in the grammar"
                )
            outcome = matches[0]
        self.pending += math.log(options[outcome])
        self.choices.append((name, outcome))
        return outcome

    def emit(self, word: str, role: str = "", depends_on: int | None = None) -> int:
        """Write one word; it carries the log-probability of the choices it reveals. Returns its index.

        ``depends_on``: the index of the earlier word this one depends on (recorded in ``links``).
        """
        if self.target is not None and self.next_word() != word:
            raise ValueError(
                f"parse_sentence: expected {word!r} at word {len(self.words)}, got {self.next_word()!r}; "
                "the sentence is not in the grammar"
            )
        self.words.append(word)
        self.log_probs.append(self.pending)
        self.roles.append(role)
        self.pending = 0.0
        if depends_on is not None:
            self.links.append((role, depends_on, len(self.words) - 1))
        return len(self.words) - 1


def _uniform(names) -> dict[str, float]:
    names = list(names)
    return {name: 1.0 / len(names) for name in names}


def _yes_no(p_yes: float) -> dict[str, float]:
    return {"yes": p_yes, "no": 1.0 - p_yes}


def _single_words(words) -> dict[str, set[str]]:
    return {word: {word} for word in words}


# Every choice point: its options with their probabilities (_P_...), and the words each option
# can start with (_FIRST_...), from which the parser reads the choice off the next word.
_NOUN_WORDS = {form for pair in NOUNS.values() for form in pair}
_TRANSITIVE_WORDS = {form for pair in TRANSITIVE_VERBS.values() for form in pair}
_INTRANSITIVE_WORDS = {form for pair in INTRANSITIVE_VERBS.values() for form in pair}
_CLAUSE_END_WORDS = {".", ",", *BRACKETS.values()}
_OPENING_WORDS = set(BRACKETS)
_VERB_TABLES = {"transitive": TRANSITIVE_VERBS, "intransitive": INTRANSITIVE_VERBS}

_P_ADJECTIVE = _yes_no(P_ADJECTIVE)
_P_ADJECTIVE_WORD = _uniform(ADJECTIVES)
_P_NOUN = _uniform(f"{noun}/{number}" for noun in NOUNS for number in ("sg", "pl"))
_P_RELATIVE = _yes_no(P_RELATIVE)
_P_TRANSITIVE = _yes_no(P_TRANSITIVE)
_P_PLACE = _yes_no(P_PLACE)
_P_PREPOSITION = _uniform(PREPOSITIONS)
_P_PLACE_WORD = _uniform(PLACES)
_P_BRACKET = _uniform(BRACKETS)
_P_ASIDE = [_yes_no(p) for p in P_ASIDE_BY_DEPTH]
_P_VERB = {kind: _uniform(verbs) for kind, verbs in _VERB_TABLES.items()}

_FIRST_FORM = {"plain": {"the"}, "if": {"if"}, "either": {"either"}, "when": {"when"}}
_FIRST_ADJECTIVE = {"yes": set(ADJECTIVES), "no": _NOUN_WORDS}
_FIRST_ADJECTIVE_WORD = _single_words(ADJECTIVES)
_FIRST_NOUN = {f"{noun}/{number}": {NOUNS[noun][i]} for noun in NOUNS for i, number in enumerate(("sg", "pl"))}
_FIRST_RELATIVE = {"yes": {"that"}, "no": _TRANSITIVE_WORDS | _INTRANSITIVE_WORDS}
_FIRST_RELATIVE_KIND = {"subject": _TRANSITIVE_WORDS, "object": {"the"}, "place": _INTRANSITIVE_WORDS}
_FIRST_TRANSITIVE = {"yes": _TRANSITIVE_WORDS, "no": _INTRANSITIVE_WORDS}
_FIRST_PLACE = {"yes": set(PREPOSITIONS), "no": _CLAUSE_END_WORDS | _OPENING_WORDS}
_FIRST_PREPOSITION = _single_words(PREPOSITIONS)
_FIRST_PLACE_WORD = _single_words(PLACES)
_FIRST_ASIDE = {"yes": _OPENING_WORDS, "no": _CLAUSE_END_WORDS}
_FIRST_BRACKET = _single_words(BRACKETS)
_FIRST_VERB = {kind: {lemma: set(forms) for lemma, forms in verbs.items()} for kind, verbs in _VERB_TABLES.items()}


class _Grammar:
    """The grammar as code: one method per rule. Used both to sample and to parse."""

    def __init__(self, writer: _Writer):
        self.w = writer

    def sentence(self) -> None:
        form = self.w.choose("form", FORMS, _FIRST_FORM)
        if form != "plain":
            self.w.emit(form)
        self.clause(depth=0)
        if form != "plain":
            self.w.emit(",")
            connective = CONNECTIVES[form]
            if connective is not None:
                self.w.emit(connective, role=ROLE_CONNECTIVE, depends_on=0)
            self.clause(depth=0)
        self.w.emit(".")

    def clause(self, depth: int) -> None:
        """``SUBJECT VERB_PHRASE [ASIDE]``; the verb agrees with the subject."""
        number, noun_index, has_relative = self.noun_phrase(subject=True)
        if has_relative:  # the verb is 5 or more words after its subject noun
            self.verb_phrase(number, role=ROLE_AGREEMENT, depends_on=noun_index)
        else:
            self.verb_phrase(number)
        if depth < MAX_DEPTH:
            self.aside(depth)

    def noun_phrase(self, subject: bool) -> tuple[str, int, bool]:
        """``the [ADJECTIVE] NOUN [RELATIVE]``; returns the number, the noun's index and whether a
        relative clause follows."""
        self.w.emit("the")
        if self.w.choose("adjective?", _P_ADJECTIVE, _FIRST_ADJECTIVE) == "yes":
            self.w.emit(self.w.choose("adjective", _P_ADJECTIVE_WORD, _FIRST_ADJECTIVE_WORD))
        noun, number = self.w.choose("noun", _P_NOUN, _FIRST_NOUN).split("/")
        noun_index = self.w.emit(NOUNS[noun][0 if number == "sg" else 1])
        if not subject:
            return number, noun_index, False
        if self.w.choose("relative?", _P_RELATIVE, _FIRST_RELATIVE) == "no":
            return number, noun_index, False
        self.relative_clause(number)
        return number, noun_index, True

    def relative_clause(self, head_number: str) -> None:
        """``that VERB OBJECT`` | ``that SUBJECT VERB`` | ``that VERB in the PLACE``."""
        self.w.emit("that")
        kind = self.w.choose("relative kind", RELATIVE_KINDS, _FIRST_RELATIVE_KIND)
        if kind == "subject":
            self.verb("transitive", head_number)
            self.noun_phrase(subject=False)
        elif kind == "object":
            inner_number, _, _ = self.noun_phrase(subject=False)
            self.verb("transitive", inner_number)
        else:
            self.verb("intransitive", head_number)
            self.place()

    def verb(self, kind: str, number: str, role: str = "", depends_on: int | None = None) -> None:
        """A transitive or intransitive verb in the form that agrees with ``number``."""
        lemma = self.w.choose("verb", _P_VERB[kind], _FIRST_VERB[kind])
        self.w.emit(_VERB_TABLES[kind][lemma][0 if number == "sg" else 1], role=role, depends_on=depends_on)

    def verb_phrase(self, number: str, role: str = "", depends_on: int | None = None) -> None:
        """``VERB OBJECT`` | ``VERB [PLACE]``."""
        if self.w.choose("transitive?", _P_TRANSITIVE, _FIRST_TRANSITIVE) == "yes":
            self.verb("transitive", number, role, depends_on)
            self.noun_phrase(subject=False)
        else:
            self.verb("intransitive", number, role, depends_on)
            if self.w.choose("place?", _P_PLACE, _FIRST_PLACE) == "yes":
                self.place()

    def place(self) -> None:
        """``PREPOSITION the PLACE``."""
        self.w.emit(self.w.choose("preposition", _P_PREPOSITION, _FIRST_PREPOSITION))
        self.w.emit("the")
        self.w.emit(self.w.choose("place", _P_PLACE_WORD, _FIRST_PLACE_WORD))

    def aside(self, depth: int) -> None:
        """``[ ( CLAUSE ) ]``: an optional bracketed clause, one level deeper."""
        if self.w.choose("aside?", _P_ASIDE[depth], _FIRST_ASIDE) == "no":
            return
        opening = self.w.choose("bracket", _P_BRACKET, _FIRST_BRACKET)
        opening_index = self.w.emit(opening)
        self.clause(depth + 1)
        self.w.emit(BRACKETS[opening], role=ROLE_CLOSING, depends_on=opening_index)


def _finish(writer: _Writer) -> Sentence:
    """Add the ``<eos>`` token: after the final "." the sentence always ends (log-probability 0)."""
    writer.log_probs.append(writer.pending)
    writer.roles.append("")
    return Sentence(writer.words, writer.log_probs, writer.roles, writer.choices, writer.links)


def sample_sentence(rng: random.Random) -> Sentence:
    """Draw one sentence from the grammar (pass a seeded ``random.Random``).

    Built in lesson 11 (train a tiny GPT).
    """
    if not isinstance(rng, random.Random):
        raise ValueError(f"sample_sentence: rng must be a random.Random, got {type(rng).__name__}")
    writer = _Writer(rng)
    _Grammar(writer).sentence()
    return _finish(writer)


def sample_corpus(n_sentences: int, seed: int = 0) -> list[Sentence]:
    """``n_sentences`` sentences drawn with ``random.Random(seed)``: the same seed, the same corpus."""
    if isinstance(n_sentences, bool) or not isinstance(n_sentences, int) or n_sentences <= 0:
        raise ValueError(f"sample_corpus: n_sentences must be a positive int, got {n_sentences!r}")
    rng = random.Random(seed)
    return [sample_sentence(rng) for _ in range(n_sentences)]


def parse_sentence(words: Sequence[str] | str) -> Sentence:
    """Recover the derivation and the per-token log-probabilities of a sentence from its words.

    At every choice the parser looks at the next word and keeps the one option that can start
    with it; if none or several could, or a word does not fit, it raises ``ValueError``. That
    a parse never needs to guess is what makes the grammar unambiguous.

    A string is cut like the word tokenizer cuts it, so punctuation need not stand apart:
    "the dog runs." (as ``WordTokenizer.decode`` writes it) parses like "the dog runs .".

    Built in lesson 11 (train a tiny GPT).
    """
    if isinstance(words, str):
        words = WORD_PATTERN.findall(words)  # words and punctuation marks, as the tokenizer splits them
    writer = _Writer(None, words)
    _Grammar(writer).sentence()
    if len(writer.words) != len(words):
        raise ValueError(
            f"parse_sentence: the sentence ends after word {len(writer.words)} but has {len(words)} words; "
            f"the rest {list(words[len(writer.words) :])} is not in the grammar"
        )
    return _finish(writer)


# ----------------------------------------------------------------------------------------
# The entropy floor
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FloorEstimate:
    """The entropy floor in nats per token, with its Monte Carlo standard error."""

    nats_per_token: float
    standard_error: float
    n_sentences: int
    mean_tokens_per_sentence: float
    seed: int


def estimate_entropy_floor(n_sentences: int = 200_000, seed: int = 12345) -> FloorEstimate:
    """Estimate the grammar's entropy per token, the lowest loss any model can reach.

    floor = E[-log p(sentence)] / E[tokens per sentence], estimated by the ratio of the two
    sums over ``n_sentences`` samples. Its standard error comes from the delta method: with
    ``d_i = -log p(s_i) - floor * tokens_i``, SE = std(d) / (mean(tokens) * sqrt(n)).

    Built in lesson 11 (train a tiny GPT).
    """
    if isinstance(n_sentences, bool) or not isinstance(n_sentences, int) or n_sentences < 2:
        raise ValueError(f"estimate_entropy_floor: n_sentences must be an int >= 2, got {n_sentences!r}")
    rng = random.Random(seed)
    surprisals, lengths = [], []
    for _ in range(n_sentences):
        sentence = sample_sentence(rng)
        surprisals.append(-sentence.log_prob)
        lengths.append(sentence.n_tokens)
    surprisal = torch.tensor(surprisals, dtype=torch.float64)  # (n,)
    length = torch.tensor(lengths, dtype=torch.float64)  # (n,)
    floor = float(surprisal.sum() / length.sum())
    residual = surprisal - floor * length  # (n,)
    standard_error = float(residual.std() / (length.mean() * math.sqrt(n_sentences)))
    return FloorEstimate(floor, standard_error, n_sentences, float(length.mean()), seed)
