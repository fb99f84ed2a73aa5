import typedrows


def test_batches():
    assert typedrows.batches([1, 2, 3], 2) == [[1, 2], [3]]
