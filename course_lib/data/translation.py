"""A generated translation task: toy English into toy Chinese (lesson 10).

Both languages are defined here, with a small vocabulary. A sentence is a small syntax
tree (``Sentence`` -> ``NounPhrase`` -> ``RelativeClause`` -> ``NounPhrase`` ...), and one
tree is rendered twice: into English and into Chinese. So every English sentence has
exactly one correct translation, and a model's output can be checked exactly.

What makes the task more than copying words:

* Relative clauses come *before* the noun in Chinese and end in 的:
  "the cat that chases the dog" -> 追狗的猫 (chase dog 的 cat), and
  "the cat that the dog chases" -> 狗追的猫. Nested to depth 2, the alignment crosses.
* Numerals and demonstratives take a measure word that depends on the noun:
  "three cats" -> 三只猫, "two books" -> 两本书 (two is 两 before a measure word),
  "this car" -> 这辆车, "these cars" -> 这些车.
* English number and agreement (cat/cats, chases/chase, does/do) have no counterpart
  in Chinese: the model must learn to drop them.
* Tense and negation of the main verb are words of their own in Chinese:
  "chased" -> 追了, "does not chase" -> 不追, "did not chase" -> 没追.

Built in lesson 10 (train a translator).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from course_lib.tokenization import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS

# ---------------------------------------------------------------- the lexicon


@dataclass(frozen=True)
class Noun:
    """A noun: English singular and plural, its Chinese word and measure word (量词)."""

    singular: str
    plural: str
    chinese: str
    measure: str


@dataclass(frozen=True)
class Verb:
    """A transitive verb: English forms (3rd person singular, plural/base, past) and Chinese."""

    third_singular: str
    base: str
    past: str
    chinese: str


NOUNS: dict[str, Noun] = {
    noun.singular: noun
    for noun in [
        Noun("cat", "cats", "猫", "只"),
        Noun("dog", "dogs", "狗", "只"),
        Noun("bird", "birds", "鸟", "只"),
        Noun("horse", "horses", "马", "匹"),
        Noun("snake", "snakes", "蛇", "条"),
        Noun("book", "books", "书", "本"),
        Noun("car", "cars", "车", "辆"),
        Noun("tree", "trees", "树", "棵"),
        Noun("teacher", "teachers", "老师", "位"),
        Noun("student", "students", "学生", "个"),
        Noun("child", "children", "孩子", "个"),
    ]
}

VERBS: dict[str, Verb] = {
    verb.base: verb
    for verb in [
        Verb("chases", "chase", "chased", "追"),
        Verb("sees", "see", "saw", "看见"),
        Verb("likes", "like", "liked", "喜欢"),
        Verb("helps", "help", "helped", "帮助"),
        Verb("finds", "find", "found", "找到"),
        Verb("carries", "carry", "carried", "搬"),
    ]
}

ADJECTIVES: dict[str, str] = {"big": "大", "small": "小", "black": "黑", "white": "白", "red": "红", "new": "新"}

NUMERALS: dict[str, str] = {
    "two": "两",  # 两, not 二, before a measure word
    "three": "三",
    "four": "四",
    "five": "五",
    "six": "六",
    "seven": "七",
    "eight": "八",
    "nine": "九",
}

SINGULAR_DETERMINERS = ("the", "a", "this")
PLURAL_DETERMINERS = ("the", "these", *NUMERALS)

RELATIVE_KINDS = ("subject", "object")
TENSES = ("present", "past")

# ---------------------------------------------------------------- the syntax tree


@dataclass(frozen=True)
class RelativeClause:
    """A relative clause attached to a noun.

    ``kind="subject"``: the head noun does the verb to ``other``
    ("the cat that chases the dog"). ``kind="object"``: ``other`` does the verb to the
    head noun ("the cat that the dog chases"). Always present tense, never negated.
    """

    kind: str
    verb: str
    other: NounPhrase


@dataclass(frozen=True)
class NounPhrase:
    """Determiner, optional adjective, noun, optional relative clause."""

    noun: str
    plural: bool = False
    determiner: str = "the"
    adjective: str | None = None
    relative: RelativeClause | None = None


@dataclass(frozen=True)
class Sentence:
    """Subject, verb (with tense and negation), object."""

    subject: NounPhrase
    verb: str
    object: NounPhrase
    tense: str = "present"
    negated: bool = False


def depth(node: Sentence | NounPhrase) -> int:
    """How deeply relative clauses nest: 0 for none, 1 for a clause, 2 for a clause in a clause."""
    if isinstance(node, Sentence):
        return max(depth(node.subject), depth(node.object))
    if node.relative is None:
        return 0
    return 1 + depth(node.relative.other)


# ---------------------------------------------------------------- rendering, with alignment tags
#
# Each renderer returns (token, tag) pairs. A tag names the word of the tree a token comes
# from: the path to its noun phrase plus a role ("det", "adj", "noun", "that", "verb", "not").
# An English word and a Chinese token with the same tag translate each other, which gives
# the word alignment (对齐) for free.

Tagged = list[tuple[str, tuple]]


def _present(verb: str, plural_subject: bool) -> str:
    return VERBS[verb].base if plural_subject else VERBS[verb].third_singular


def _english(node: Sentence | NounPhrase, path: tuple) -> Tagged:
    if isinstance(node, NounPhrase):
        noun = NOUNS[node.noun]
        words = [(node.determiner, (path, "det"))]
        if node.adjective is not None:
            words.append((node.adjective, (path, "adj")))
        words.append((noun.plural if node.plural else noun.singular, (path, "noun")))
        clause, inner = node.relative, path + ("rel",)
        if clause is not None:
            that, verb = ("that", (path, "that")), (inner, "verb")
            if clause.kind == "subject":  # the cat that chases the dog
                words += [that, (_present(clause.verb, node.plural), verb), *_english(clause.other, inner)]
            else:  # the cat that the dog chases
                words += [that, *_english(clause.other, inner), (_present(clause.verb, clause.other.plural), verb)]
        return words

    verb = VERBS[node.verb]
    main = (path, "verb")
    if node.negated:
        auxiliary = "did" if node.tense == "past" else ("do" if node.subject.plural else "does")
        verb_words = [(auxiliary, (path, "aux")), ("not", (path, "not")), (verb.base, main)]
    elif node.tense == "past":
        verb_words = [(verb.past, main)]
    else:
        verb_words = [(_present(node.verb, node.subject.plural), main)]
    return _english(node.subject, path + ("subject",)) + verb_words + _english(node.object, path + ("object",))


def _chinese(node: Sentence | NounPhrase, path: tuple) -> Tagged:
    if isinstance(node, NounPhrase):
        noun = NOUNS[node.noun]
        words: Tagged = []
        clause, inner = node.relative, path + ("rel",)
        if clause is not None:
            verb = (VERBS[clause.verb].chinese, (inner, "verb"))
            if clause.kind == "subject":  # 追狗的猫
                words += [verb, *_chinese(clause.other, inner), ("的", (path, "that"))]
            else:  # 狗追的猫
                words += [*_chinese(clause.other, inner), verb, ("的", (path, "that"))]
        det = (path, "det")
        if node.determiner == "a":
            words += [("一", det), (noun.measure, det)]
        elif node.determiner == "this":
            words += [("这", det), (noun.measure, det)]
        elif node.determiner == "these":
            words += [("这些", det)]
        elif node.determiner in NUMERALS:
            words += [(NUMERALS[node.determiner], det), (noun.measure, det)]
        if node.adjective is not None:
            words.append((ADJECTIVES[node.adjective], (path, "adj")))
        words.append((noun.chinese, (path, "noun")))
        return words

    verb, main = VERBS[node.verb].chinese, (path, "verb")
    if node.negated:
        verb_words = [("没" if node.tense == "past" else "不", (path, "not")), (verb, main)]
    elif node.tense == "past":
        verb_words = [(verb, main), ("了", main)]
    else:
        verb_words = [(verb, main)]
    return _chinese(node.subject, path + ("subject",)) + verb_words + _chinese(node.object, path + ("object",))


def english_tokens(node: Sentence | NounPhrase) -> list[str]:
    """Render a tree (a sentence or a noun phrase) as English words."""
    return [word for word, _ in _english(node, ())]


def chinese_tokens(node: Sentence | NounPhrase) -> list[str]:
    """Render a tree as toy-Chinese tokens (a token is a word: 猫, 老师, 只, 的 ...).

    Noun phrase order: [relative clause 的] [这 / 这些 / numeral + measure word] [adjective] noun.
    """
    return [word for word, _ in _chinese(node, ())]


def alignment(node: Sentence | NounPhrase) -> list[tuple[int, int]]:
    """The word alignment: (English position, Chinese position) for every pair of tokens
    that translate each other. English "the" and the auxiliaries do/does/did have no
    Chinese token; a numeral aligns with the numeral and its measure word (三只)."""
    english, chinese = _english(node, ()), _chinese(node, ())
    return [(i, j) for i, (_, tag) in enumerate(english) for j, (_, other) in enumerate(chinese) if tag == other]


def join_chinese(tokens: list[str]) -> str:
    """Chinese is written without spaces: ['追', '狗', '的', '猫'] -> '追狗的猫'."""
    return "".join(tokens)


# ---------------------------------------------------------------- parsing English back into a tree

_NOUN_FORMS = {n.singular: (key, False) for key, n in NOUNS.items()} | {
    n.plural: (key, True) for key, n in NOUNS.items()
}
_PRESENT_FORMS = {v.third_singular: (key, False) for key, v in VERBS.items()} | {
    v.base: (key, True) for key, v in VERBS.items()
}
_PAST_FORMS = {v.past: key for key, v in VERBS.items()}


class _Parser:
    """Recursive descent over the toy English grammar; raises ValueError on anything else."""

    def __init__(self, words: list[str]):
        self.words = words
        self.position = 0

    def error(self, expected: str) -> ValueError:
        found = self.words[self.position] if self.position < len(self.words) else "the end of the sentence"
        return ValueError(f"parse_english: expected {expected} at word {self.position + 1}, found {found!r}")

    def peek(self) -> str | None:
        return self.words[self.position] if self.position < len(self.words) else None

    def take(self) -> str:
        word = self.words[self.position]
        self.position += 1
        return word

    def noun_phrase(self) -> NounPhrase:
        determiner = self.peek()
        if determiner not in SINGULAR_DETERMINERS + PLURAL_DETERMINERS:
            raise self.error("a determiner (the, a, this, these, two..nine)")
        self.take()
        adjective = self.take() if self.peek() in ADJECTIVES else None
        if self.peek() not in _NOUN_FORMS:
            raise self.error("a noun")
        noun, plural = _NOUN_FORMS[self.take()]
        allowed = PLURAL_DETERMINERS if plural else SINGULAR_DETERMINERS
        if determiner not in allowed:
            number = "plural" if plural else "singular"
            raise ValueError(f"parse_english: {determiner!r} does not go with the {number} noun {noun!r}")
        relative = None
        if self.peek() == "that":
            self.take()
            if self.peek() in _PRESENT_FORMS:  # subject relative: the verb agrees with the head noun
                verb = self.present_verb(plural)
                relative = RelativeClause("subject", verb, self.noun_phrase())
            else:  # object relative: the verb agrees with the other noun
                other = self.noun_phrase()
                relative = RelativeClause("object", self.present_verb(other.plural), other)
        return NounPhrase(noun, plural, determiner, adjective, relative)

    def present_verb(self, plural_subject: bool) -> str:
        if self.peek() not in _PRESENT_FORMS:
            raise self.error("a present-tense verb")
        verb, plural_form = _PRESENT_FORMS[self.take()]
        if plural_form != plural_subject:
            raise ValueError(
                f"parse_english: the verb {self.words[self.position - 1]!r} does not agree with its subject"
            )
        return verb

    def sentence(self) -> Sentence:
        subject = self.noun_phrase()
        word = self.peek()
        if word in ("does", "do", "did"):
            self.take()
            if word != "did" and (word == "do") != subject.plural:
                raise ValueError(f"parse_english: {word!r} does not agree with the subject")
            if self.peek() != "not":
                raise self.error("'not'")
            self.take()
            if self.peek() not in VERBS:
                raise self.error("a verb in its base form")
            verb, tense, negated = self.take(), ("past" if word == "did" else "present"), True
        elif word in _PAST_FORMS:
            verb, tense, negated = _PAST_FORMS[self.take()], "past", False
        else:
            verb, tense, negated = self.present_verb(subject.plural), "present", False
        sentence = Sentence(subject, verb, self.noun_phrase(), tense, negated)
        if self.peek() is not None:
            raise self.error("the end of the sentence")
        return sentence


def parse_english(text: str) -> Sentence:
    """Parse a toy-English sentence (words separated by spaces) into its tree.

    Raises ValueError, naming the word, for anything outside the toy grammar.
    """
    if not isinstance(text, str):
        raise ValueError(f"parse_english: text must be a str, got {type(text).__name__}")
    return _Parser(text.lower().split()).sentence()


def translate(text: str) -> str:
    """The reference translation of a toy-English sentence, as Chinese text.

    >>> translate("the cat chases three dogs")
    '猫追三只狗'
    """
    return join_chinese(chinese_tokens(parse_english(text)))


# ---------------------------------------------------------------- the seeded generator


@dataclass(frozen=True)
class GeneratorSettings:
    """Probabilities of the random grammar. ``max_depth`` bounds relative-clause nesting."""

    relative_clause: float = 0.55
    adjective: float = 0.35
    plural: float = 0.5
    past: float = 0.4
    negated: float = 0.3
    max_depth: int = 2


def random_noun_phrase(rng: random.Random, depth_left: int, settings: GeneratorSettings) -> NounPhrase:
    """Draw a noun phrase with relative clauses nested at most ``depth_left`` deep."""
    plural = rng.random() < settings.plural
    if plural:
        determiner = rng.choice(["the", "the", "these", rng.choice(list(NUMERALS)), rng.choice(list(NUMERALS))])
    else:
        determiner = rng.choice(["the", "the", "a", "this"])
    adjective = rng.choice(sorted(ADJECTIVES)) if rng.random() < settings.adjective else None
    relative = None
    if depth_left > 0 and rng.random() < settings.relative_clause:
        kind = rng.choice(RELATIVE_KINDS)
        relative = RelativeClause(kind, rng.choice(list(VERBS)), random_noun_phrase(rng, depth_left - 1, settings))
    return NounPhrase(rng.choice(list(NOUNS)), plural, determiner, adjective, relative)


def random_sentence(rng: random.Random, settings: GeneratorSettings | None = None) -> Sentence:
    """Draw one sentence tree from the grammar."""
    settings = settings or GeneratorSettings()
    subject = random_noun_phrase(rng, settings.max_depth, settings)
    verb = rng.choice(list(VERBS))
    tense = "past" if rng.random() < settings.past else "present"
    negated = rng.random() < settings.negated
    return Sentence(subject, verb, random_noun_phrase(rng, settings.max_depth, settings), tense, negated)


@dataclass(frozen=True)
class TranslationPair:
    """One example: the English words, the Chinese tokens and the nesting depth."""

    english: tuple[str, ...]
    chinese: tuple[str, ...]
    depth: int

    @property
    def source_text(self) -> str:
        return " ".join(self.english)

    @property
    def target_text(self) -> str:
        return join_chinese(list(self.chinese))


def make_pair(sentence: Sentence) -> TranslationPair:
    """Render one tree into a translation pair."""
    return TranslationPair(tuple(english_tokens(sentence)), tuple(chinese_tokens(sentence)), depth(sentence))


MAX_SOURCE_LEN = 25
"""Sentences of the train, validation and test splits have at most this many English words."""

LONG_SOURCE_LENGTHS = (26, 29)
"""The long set: 26 to 29 English words, longer than anything in training (same grammar, depth <= 2)."""


def make_splits(
    seed: int = 0,
    n_train: int = 60_000,
    n_val: int = 1_000,
    n_test: int = 2_000,
    n_long: int = 500,
    settings: GeneratorSettings | None = None,
) -> dict[str, list[TranslationPair]]:
    """Draw the four data sets from one seeded generator.

    ``train``, ``val`` and ``test`` hold distinct sentences of at most ``MAX_SOURCE_LEN``
    English words (no English sentence is in two splits, nor twice in one). ``long`` holds
    distinct sentences of ``LONG_SOURCE_LENGTHS`` words, to see how far the model
    generalises beyond the lengths it was trained on. Test and validation are drawn first,
    and the long set from a stream of its own, so changing ``n_train`` changes none of them.
    """
    for name, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test), ("n_long", n_long)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"make_splits: {name} must be an int >= 0, got {value!r}")
    settings = settings or GeneratorSettings()
    rng = random.Random(seed)
    seen: set[tuple[str, ...]] = set()
    splits: dict[str, list[TranslationPair]] = {}
    for name, wanted in (("test", n_test), ("val", n_val), ("train", n_train)):
        splits[name] = []
        while len(splits[name]) < wanted:
            pair = make_pair(random_sentence(rng, settings))
            if len(pair.english) <= MAX_SOURCE_LEN and pair.english not in seen:
                seen.add(pair.english)
                splits[name].append(pair)
    # Long sentences need many clauses: draw them from richer settings and a stream of their own.
    # Their length alone keeps them apart from the other splits.
    long_rng = random.Random(f"long-{seed}")
    long_settings = GeneratorSettings(**{**settings.__dict__, "relative_clause": 0.9})
    low, high = LONG_SOURCE_LENGTHS
    splits["long"] = []
    while len(splits["long"]) < n_long:
        pair = make_pair(random_sentence(long_rng, long_settings))
        if low <= len(pair.english) <= high and pair.english not in seen:
            seen.add(pair.english)
            splits["long"].append(pair)
    return {name: splits[name] for name in ("train", "val", "test", "long")}


# ---------------------------------------------------------------- vocabularies and batches


class Vocabulary:
    """Token <-> id for one language. Ids 0-3 are ``<pad>``, ``<unk>``, ``<bos>``, ``<eos>``
    (as in ``course_lib.tokenization``); the words follow in a fixed order."""

    def __init__(self, words):
        tokens = list(SPECIAL_TOKENS) + [word for word in words if word not in SPECIAL_TOKENS]
        if len(set(tokens)) != len(tokens):
            raise ValueError("Vocabulary: the word list has duplicates")
        self.id_to_token: list[str] = tokens
        self.token_to_id: dict[str, int] = {token: index for index, token in enumerate(tokens)}

    def __len__(self) -> int:
        return len(self.id_to_token)

    pad_id, bos_id, eos_id = PAD_ID, BOS_ID, EOS_ID

    def encode(self, tokens, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        """Tokens -> ids; raises ValueError for a token outside the vocabulary."""
        unknown = [token for token in tokens if token not in self.token_to_id]
        if unknown:
            raise ValueError(f"Vocabulary.encode: tokens not in the vocabulary: {unknown}")
        ids = [self.token_to_id[token] for token in tokens]
        return ([BOS_ID] if add_bos else []) + ids + ([EOS_ID] if add_eos else [])

    def decode(self, ids) -> list[str]:
        """Ids -> tokens, stopping at ``<eos>`` and leaving out ``<pad>`` and ``<bos>``."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        tokens = []
        for index in ids:
            if index == EOS_ID:
                break
            if index not in (PAD_ID, BOS_ID):
                tokens.append(self.id_to_token[index])
        return tokens


def english_vocabulary() -> Vocabulary:
    """Every English word the grammar can produce, in a fixed order."""
    words = list(dict.fromkeys([*SINGULAR_DETERMINERS, *PLURAL_DETERMINERS, *ADJECTIVES]))
    for noun in NOUNS.values():
        words += [noun.singular, noun.plural]
    for verb in VERBS.values():
        words += [verb.third_singular, verb.base, verb.past]
    return Vocabulary([*words, "that", "does", "do", "did", "not"])


def chinese_vocabulary() -> Vocabulary:
    """Every toy-Chinese token the grammar can produce, in a fixed order."""
    words = [noun.chinese for noun in NOUNS.values()]
    words += list(dict.fromkeys(noun.measure for noun in NOUNS.values()))
    words += [verb.chinese for verb in VERBS.values()] + list(ADJECTIVES.values()) + list(NUMERALS.values())
    return Vocabulary([*words, "一", "这", "这些", "的", "了", "不", "没"])


def encode_pairs(
    pairs: list[TranslationPair], source_vocab: Vocabulary, target_vocab: Vocabulary
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad a list of pairs into two id tensors.

    The source is the English ids; the target is ``<bos>`` + Chinese ids + ``<eos>``
    (the decoder reads ``target[:, :-1]`` and learns to predict ``target[:, 1:]``).

    Shapes:
        -> source (N, S_max), target (N, T_max + 2), padded with ``<pad>`` = 0
    """
    if not pairs:
        raise ValueError("encode_pairs: pairs is empty")
    sources = [source_vocab.encode(pair.english) for pair in pairs]
    targets = [target_vocab.encode(pair.chinese, add_bos=True, add_eos=True) for pair in pairs]
    source = torch.full((len(pairs), max(map(len, sources))), PAD_ID, dtype=torch.long)  # (N, S_max)
    target = torch.full((len(pairs), max(map(len, targets))), PAD_ID, dtype=torch.long)  # (N, T_max + 2)
    for row, (src, tgt) in enumerate(zip(sources, targets, strict=True)):
        source[row, : len(src)] = torch.tensor(src)
        target[row, : len(tgt)] = torch.tensor(tgt)
    return source, target


def trim_padding(ids: torch.Tensor) -> torch.Tensor:
    """Drop the columns that are padding in every row.

    Shapes:
        ids (B, T) -> (B, T') with T' <= T
    """
    used = (ids != PAD_ID).any(dim=0).nonzero()  # (n_used, 1)
    return ids[:, : int(used.max()) + 1] if used.numel() else ids[:, :1]
