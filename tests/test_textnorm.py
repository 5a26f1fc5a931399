from affect_llm.textnorm import normalize


def test_cp1252_bytes_and_quotes():
    assert normalize("he\x92s lost it \x93really\x94 \x85") == "he's lost it \"really\" ..."
    assert normalize("You\u2019re  a\tgenius!\n") == "You're a genius!"
    assert normalize("caf\u00e9 \u2014 ok") == "caf\u00e9 - ok"
