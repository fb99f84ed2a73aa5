import classify

SHORT = ["Hi.", "Ok.", "Yes.", "No."]
LONG = ["The quick brown fox jumps over the lazy dog. It runs far away.",
        "Many words make a long document, and long documents have many sentences. Truly.",
        "Another lengthy passage follows here, with several clauses. And a second sentence.",
        "Documents like this one are long. They ramble on. They never stop."]


def test_separates_short_notes_from_long_documents():
    model = classify.train(SHORT + LONG, ["note"] * 4 + ["document"] * 4)
    assert classify.predict(model, ["Sure.", "This is a rather long text with many words. It goes on and on."]) == [
        "note", "document"]
