import textstats


def test_words_are_lowercased_and_split_on_punctuation():
    assert textstats.words("Hello, World! It's") == ["hello", "world", "it's"]


def test_word_counts():
    assert textstats.word_counts("a b a")["a"] == 2


def test_sentences():
    assert textstats.sentence_count("One. Two! Three?") == 3
    assert textstats.sentence_count("") == 0


def test_mean_word_length():
    assert textstats.mean_word_length("ab abcd") == 3.0
