"""Tests for course_lib.data.translation: the toy languages, the generator and the splits."""

import random

import pytest
import torch

from course_lib.data.translation import (
    LONG_SOURCE_LENGTHS,
    MAX_SOURCE_LEN,
    NOUNS,
    VERBS,
    NounPhrase,
    RelativeClause,
    Sentence,
    alignment,
    chinese_tokens,
    chinese_vocabulary,
    depth,
    encode_pairs,
    english_tokens,
    english_vocabulary,
    join_chinese,
    make_pair,
    make_splits,
    parse_english,
    random_sentence,
    translate,
    trim_padding,
)


@pytest.fixture(scope="module")
def splits():
    return make_splits(seed=0, n_train=3000, n_val=300, n_test=600, n_long=100)


# ---------------------------------------------------------------- the examples of the issue


def test_subject_relative_clause_comes_before_the_noun():
    phrase = NounPhrase("cat", relative=RelativeClause("subject", "chase", NounPhrase("dog")))
    assert " ".join(english_tokens(phrase)) == "the cat that chases the dog"
    assert join_chinese(chinese_tokens(phrase)) == "追狗的猫"


def test_object_relative_clause_puts_its_subject_first():
    phrase = NounPhrase("cat", relative=RelativeClause("object", "chase", NounPhrase("dog")))
    assert " ".join(english_tokens(phrase)) == "the cat that the dog chases"
    assert join_chinese(chinese_tokens(phrase)) == "狗追的猫"


def test_numerals_take_measure_words():
    assert join_chinese(chinese_tokens(NounPhrase("cat", plural=True, determiner="three"))) == "三只猫"
    assert join_chinese(chinese_tokens(NounPhrase("book", plural=True, determiner="two"))) == "两本书"
    assert join_chinese(chinese_tokens(NounPhrase("car", determiner="this"))) == "这辆车"
    assert join_chinese(chinese_tokens(NounPhrase("car", plural=True, determiner="these"))) == "这些车"
    assert join_chinese(chinese_tokens(NounPhrase("teacher", determiner="a", adjective="new"))) == "一位新老师"


@pytest.mark.parametrize(
    ("english", "chinese"),
    [
        ("the cat chases the dog", "猫追狗"),
        ("the cat chased the dog", "猫追了狗"),
        ("the cats do not chase the dog", "猫不追狗"),
        ("the cat did not see the dog", "猫没看见狗"),
        ("the cat that the dog chases sees three cats", "狗追的猫看见三只猫"),
        ("the cat that chases the dog that the bird sees likes a book", "追鸟看见的狗的猫喜欢一本书"),
        ("two children that help the teacher carried five big books", "帮助老师的两个孩子搬了五本大书"),
    ],
)
def test_translate_whole_sentences(english, chinese):
    assert translate(english) == chinese


def test_number_and_agreement_have_no_counterpart():
    assert translate("the cat chases the dog") == translate("the cats chase the dogs")
    assert translate("the cat that chases the dog sees the bird") == translate(
        "the cats that chase the dog see the birds"
    )


# ---------------------------------------------------------------- the parser


def test_parsing_the_english_gives_back_the_tree():
    rng = random.Random(5)
    for _ in range(300):
        tree = random_sentence(rng)
        assert parse_english(" ".join(english_tokens(tree))) == tree


@pytest.mark.parametrize(
    "bad",
    [
        "the cat chase the dog",  # agreement
        "a cats chase the dog",  # determiner and number
        "the cat that chase the dog sees the bird",  # agreement inside the clause
        "the cats does not see the dog",  # auxiliary agreement
        "the cat sees",  # no object
        "the cat sees the dog the bird",  # extra words
        "the unicorn sees the dog",  # not in the vocabulary
    ],
)
def test_parser_rejects_what_the_grammar_cannot_make(bad):
    with pytest.raises(ValueError, match="parse_english"):
        parse_english(bad)


# ---------------------------------------------------------------- the splits


def test_splits_do_not_overlap(splits):
    sources = {name: {pair.english for pair in pairs} for name, pairs in splits.items()}
    for name, pairs in splits.items():
        assert len(sources[name]) == len(pairs), f"{name} has a sentence twice"
    names = list(sources)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            assert not sources[first] & sources[second], f"{first} and {second} share sentences"


def test_lengths_and_the_long_set(splits):
    for name in ("train", "val", "test"):
        assert max(len(pair.english) for pair in splits[name]) <= MAX_SOURCE_LEN
    low, high = LONG_SOURCE_LENGTHS
    assert low > MAX_SOURCE_LEN
    assert all(low <= len(pair.english) <= high for pair in splits["long"])
    assert [len(pairs) for pairs in splits.values()] == [3000, 300, 600, 100]


def test_nesting_depth_is_at_most_two_and_reached(splits):
    depths = [pair.depth for pair in splits["train"]]
    assert max(depths) == 2
    assert depths.count(2) > len(depths) / 5
    assert {0, 1} <= set(depths)


def test_depth_counts_nested_clauses():
    inner = NounPhrase("bird", relative=RelativeClause("object", "see", NounPhrase("dog")))
    outer = NounPhrase("cat", relative=RelativeClause("subject", "chase", inner))
    assert depth(NounPhrase("cat")) == 0
    assert depth(inner) == 1
    assert depth(Sentence(NounPhrase("tree"), "like", outer)) == 2


def test_both_kinds_of_relative_clause_occur(splits):
    kinds = set()
    for pair in splits["train"][:500]:
        tree = parse_english(pair.source_text)
        for phrase in (tree.subject, tree.object):
            while phrase.relative is not None:
                kinds.add(phrase.relative.kind)
                phrase = phrase.relative.other
    assert kinds == {"subject", "object"}


def content_positions(pair):
    """For each English noun and verb (in English order), the position of its Chinese gloss;
    None when a gloss is not found exactly once."""
    glosses = {noun.singular: noun.chinese for noun in NOUNS.values()} | {
        noun.plural: noun.chinese for noun in NOUNS.values()
    }
    for verb in VERBS.values():
        glosses |= {verb.third_singular: verb.chinese, verb.base: verb.chinese, verb.past: verb.chinese}
    words = [glosses[word] for word in pair.english if word in glosses]
    if len(set(words)) != len(words) or any(pair.chinese.count(word) != 1 for word in words):
        return None
    return [pair.chinese.index(word) for word in words]


def test_alignment_crosses_exactly_when_there_is_a_relative_clause(splits):
    checked = {0: 0, 1: 0, 2: 0}
    for pair in splits["test"]:
        positions = content_positions(pair)
        if positions is None:
            continue
        monotone = positions == sorted(positions)
        assert monotone == (pair.depth == 0), pair.source_text
        checked[pair.depth] += 1
    assert min(checked.values()) >= 20  # each depth was really checked


def test_alignment_links_translations_and_covers_every_chinese_token(splits):
    glosses = {noun.plural: noun.chinese for noun in NOUNS.values()} | {n.singular: n.chinese for n in NOUNS.values()}
    for pair in splits["test"][:200]:
        tree = parse_english(pair.source_text)
        links = alignment(tree)
        assert {j for _, j in links} == set(range(len(pair.chinese)))  # no Chinese token comes from nowhere
        for i, j in links:
            if pair.english[i] in glosses:
                assert pair.chinese[j] == glosses[pair.english[i]]
        chinese_order = [j for _, j in sorted(links)]
        assert (chinese_order == sorted(chinese_order)) == (pair.depth == 0)


def test_targets_match_the_reference_translation(splits):
    for pair in splits["val"]:
        assert translate(pair.source_text) == pair.target_text


# ---------------------------------------------------------------- determinism


def test_same_seed_same_data_and_other_seed_other_data():
    first = make_splits(seed=4, n_train=200, n_val=20, n_test=20, n_long=5)
    again = make_splits(seed=4, n_train=200, n_val=20, n_test=20, n_long=5)
    other = make_splits(seed=5, n_train=200, n_val=20, n_test=20, n_long=5)
    assert first == again
    assert first["test"] != other["test"]


def test_held_out_sets_do_not_depend_on_the_training_size():
    small = make_splits(seed=0, n_train=10, n_val=50, n_test=50, n_long=10)
    large = make_splits(seed=0, n_train=500, n_val=50, n_test=50, n_long=10)
    for name in ("val", "test", "long"):
        assert small[name] == large[name]


# ---------------------------------------------------------------- vocabularies and tensors


def test_vocabularies_cover_every_token(splits):
    source_vocab, target_vocab = english_vocabulary(), chinese_vocabulary()
    for pairs in splits.values():
        source, target = encode_pairs(pairs, source_vocab, target_vocab)  # raises on an unknown token
        assert source.shape[0] == target.shape[0] == len(pairs)
    assert len(source_vocab) < 100 and len(target_vocab) < 100  # small vocabularies


def test_encode_pairs_layout():
    source_vocab, target_vocab = english_vocabulary(), chinese_vocabulary()
    pairs = [make_pair(parse_english("the cat chases the dog")), make_pair(parse_english("a dog saw the cats"))]
    source, target = encode_pairs(pairs, source_vocab, target_vocab)
    assert source.shape == (2, 5)
    cat_chases_dog = target_vocab.encode(["猫", "追", "狗"])
    padding = [target_vocab.pad_id] * 3  # the second target, 一只狗看见了猫, is 3 tokens longer
    assert target[0].tolist() == [target_vocab.bos_id, *cat_chases_dog, target_vocab.eos_id, *padding]
    assert target_vocab.decode(target[1]) == ["一", "只", "狗", "看见", "了", "猫"]
    assert source_vocab.decode(source[0]) == ["the", "cat", "chases", "the", "dog"]


def test_trim_padding_drops_only_all_padding_columns():
    ids = torch.tensor([[5, 6, 0, 0], [7, 0, 0, 0]])
    assert trim_padding(ids).tolist() == [[5, 6], [7, 0]]


def test_vocabulary_rejects_unknown_tokens():
    with pytest.raises(ValueError, match="Vocabulary.encode"):
        chinese_vocabulary().encode(["猫", "龙"])
