"""Text normalisation: written English -> the words a speaker would say.

``normalize_text`` prepares TTS input: numbers, ordinals, years, currency, percentages, times and
common abbreviations become words; unicode quotes, dashes and accents become ASCII; the result is
lowercase ``a-z``, space, ``'`` and the punctuation ``, . ? ! - : ;`` (kept as prosody cues).
``normalize_for_asr`` goes on to keep only ``a-z``, ``'`` and single spaces; ASR tokenizers, WER
scoring and benchmarks all compare text in that form.

Characters with no spoken form (emoji, symbols, non-Latin scripts) are dropped.
"""
import re
import unicodedata

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ["", "thousand", "million", "billion", "trillion", "quadrillion"]
_IRREGULAR_ORDINALS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth",
    "eight": "eighth", "nine": "ninth", "twelve": "twelfth",
}


def number_to_words(n: int) -> str:
    """Cardinal in words, American style without "and": ``1234 -> "one thousand two hundred thirty four"``."""
    if n < 0:
        return "minus " + number_to_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        return _ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + number_to_words(n % 100))
    if n >= 1000 ** len(_SCALES):
        return _digits_to_words(str(n))
    words, scale = [], 0
    while n:
        n, group = divmod(n, 1000)
        if group:
            words.insert(0, number_to_words(group) + (" " + _SCALES[scale] if scale else ""))
        scale += 1
    return " ".join(words)


def ordinal_to_words(n: int) -> str:
    """``22 -> "twenty second"``, ``100 -> "one hundredth"``."""
    *head, last = number_to_words(n).split()
    if last in _IRREGULAR_ORDINALS:
        last = _IRREGULAR_ORDINALS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return " ".join([*head, last])


def year_to_words(n: int) -> str:
    """Years as spoken: ``1999 -> "nineteen ninety nine"``, ``1905 -> "nineteen oh five"``,
    ``2000 -> "two thousand"``, ``2005 -> "two thousand five"``, ``2019 -> "twenty nineteen"``."""
    century, rest = divmod(n, 100)
    if n % 1000 < 10 or not 1000 <= n < 10000:  # 2000, 2005, 1000, 3007
        return number_to_words(n)
    if rest == 0:
        return number_to_words(century) + " hundred"
    return number_to_words(century) + (" oh " if rest < 10 else " ") + number_to_words(rest)


def _digits_to_words(digits: str) -> str:
    return " ".join(_ONES[int(d)] for d in digits)


def _integer_words(digits: str) -> str:
    """An integer written with optional thousands commas; leading zeros ("007") read digit by digit."""
    digits = digits.replace(",", "")
    if len(digits) > 1 and digits.startswith("0"):
        return _digits_to_words(digits)
    return number_to_words(int(digits))


def _decimal_words(number: str) -> str:
    """``"3.14" -> "three point one four"``, ``"1,000" -> "one thousand"``, ``".5" -> "point five"``."""
    whole, _, fraction = number.partition(".")
    words = _integer_words(whole) if whole else ""
    if fraction:
        words += " point " + _digits_to_words(fraction)
    return words.strip()


# --- unicode -> ASCII ---------------------------------------------------------------------------

_UNICODE_TO_ASCII = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "`": "'", "\u00b4": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u00ab": '"', "\u00bb": '"', "\u2033": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2212": "-",
    "\u2014": ", ", "\u2015": ", ",
    "\u2026": "...", "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u3000": " ",
    "\u00bd": " one half", "\u00bc": " one quarter", "\u00be": " three quarters",
    "\u00df": "ss", "\u00e6": "ae", "\u00c6": "Ae", "\u0153": "oe", "\u0152": "Oe", "\u00f8": "o",
    "\u00d8": "O", "\u0142": "l", "\u0141": "L", "\u0111": "d", "\u0110": "D", "\u00fe": "th",
    "\u00de": "Th", "\u00f0": "d", "\u00d0": "D", "\u0131": "i",
})


def _to_ascii(text: str) -> str:
    """Map quotes, dashes, ellipses and accented letters to ASCII; drop what has no ASCII form
    (currency signs and the degree sign are kept for the number rules)."""
    text = unicodedata.normalize("NFKD", text.translate(_UNICODE_TO_ASCII))
    return "".join(c if c.isascii() or c in "£€¥°" else " " for c in text if not unicodedata.combining(c))


# --- abbreviations ------------------------------------------------------------------------------

_ABBREVIATIONS = {
    "Mr": "mister", "Mrs": "misses", "Ms": "miz", "Dr": "doctor", "Prof": "professor",
    "Jr": "junior", "Sr": "senior", "Gen": "general", "Gov": "governor", "Capt": "captain",
    "Col": "colonel", "Lt": "lieutenant", "Sgt": "sergeant", "Rev": "reverend", "Hon": "honorable",
    "Mt": "mount", "Ft": "fort", "Co": "company", "Corp": "corporation", "Inc": "incorporated",
    "Ltd": "limited", "Bros": "brothers", "Ave": "avenue", "Rd": "road", "Blvd": "boulevard",
    "vs": "versus", "etc": "et cetera", "approx": "approximately", "dept": "department",
    "Jan": "january", "Feb": "february", "Mar": "march", "Apr": "april", "Aug": "august",
    "Sep": "september", "Sept": "september", "Oct": "october", "Nov": "november", "Dec": "december",
}
_ABBREVIATION_RE = re.compile(r"\b(" + "|".join(_ABBREVIATIONS) + r")\.", re.IGNORECASE)
_LOWER_ABBREVIATIONS = {k.lower(): v for k, v in _ABBREVIATIONS.items()}


def _expand_abbreviations(text: str) -> str:
    text = re.sub(r"\be\.g\.", "for example", text, flags=re.IGNORECASE)
    text = re.sub(r"\bi\.e\.", "that is", text, flags=re.IGNORECASE)
    text = re.sub(r"\bSt\.(?=\s+[A-Z])", "saint", text)  # St. Louis; "Main St." is a street
    text = re.sub(r"\bSt\.", "street", text)
    text = re.sub(r"\bNo\.(?=\s*\d)", "number", text)
    return _ABBREVIATION_RE.sub(lambda m: _LOWER_ABBREVIATIONS[m.group(1).lower()], text)


# --- numbers ------------------------------------------------------------------------------------

_NUMBER = r"\d[\d,]*(?:\.\d+)?|\.\d+"
_CURRENCIES = {"$": ("dollar", "cent"), "£": ("pound", "penny"), "€": ("euro", "cent"), "¥": ("yen", "sen")}
_MAGNITUDES = r"thousand|million|billion|trillion"
_CURRENCY_RE = re.compile(rf"([$£€¥])\s?({_NUMBER})(?:\s?({_MAGNITUDES})\b)?", re.IGNORECASE)
_PERCENT_RE = re.compile(rf"({_NUMBER})\s?%")
_TIME_RE = re.compile(r"\b(\d{1,2}):(\d{2})\b(?:\s*([ap])\.?\s?m\b\.?)?", re.IGNORECASE)
_AM_PM_RE = re.compile(r"\b(\d{1,2})\s*([ap])\.?\s?m\b\.?", re.IGNORECASE)
_ORDINAL_RE = re.compile(r"\b(\d[\d,]*)(st|nd|rd|th)\b", re.IGNORECASE)
_YEAR_RE = re.compile(r"(?<![\d.])(?<!\d,)(1[1-9]\d\d|20\d\d)(s?)(?!\d|[.,]\d)")
_NEGATIVE_RE = re.compile(rf"(?<![\w.])-({_NUMBER})")
_NUMBER_RE = re.compile(_NUMBER)


def _plural(word: str, amount: str) -> str:
    if amount in ("one", "") or word in ("yen", "sen"):
        return word
    return "pence" if word == "penny" else word + "s"


def _currency(match: re.Match) -> str:
    unit, subunit = _CURRENCIES[match.group(1)]
    number, magnitude = match.group(2).replace(",", ""), match.group(3)
    if magnitude:  # "$2.5 million" -> "two point five million dollars"
        return f" {_decimal_words(number)} {magnitude.lower()} {_plural(unit, 'many')} "
    whole, _, fraction = number.partition(".")
    whole_words = _integer_words(whole) if whole.strip("0") else ""
    cents_words = ""
    if fraction:
        cents = int((fraction + "0")[:2]) if len(fraction) <= 2 else None
        if cents is None:  # "$1.999": read as a decimal
            return f" {_decimal_words(number)} {_plural(unit, 'many')} "
        cents_words = number_to_words(cents) if cents else ""
    parts = []
    if whole_words or not cents_words:
        whole_words = whole_words or "zero"
        parts.append(f"{whole_words} {_plural(unit, whole_words)}")
    if cents_words:
        parts.append(f"{cents_words} {_plural(subunit, cents_words)}")
    return " " + " and ".join(parts) + " "


def _time(match: re.Match) -> str:
    hours, minutes, half = int(match.group(1)), int(match.group(2)), match.group(3)
    if hours > 24 or minutes > 59:  # not a time, e.g. a score "30:45"
        return f" {number_to_words(hours)} {number_to_words(minutes)} "
    words = number_to_words(hours)
    if minutes == 0:
        words += "" if half else " o'clock"
    else:
        words += (" oh " if minutes < 10 else " ") + number_to_words(minutes)
    return f" {words} {half.lower() + ' m' if half else ''} "


def _year(match: re.Match) -> str:
    """``1999 -> nineteen ninety nine``; decades ``1990s -> nineteen nineties``."""
    words = year_to_words(int(match.group(1)))
    if match.group(2):
        words = words[:-1] + "ies" if words.endswith("y") else words + "s"
    return f" {words} "


def _expand_numbers(text: str) -> str:
    text = _CURRENCY_RE.sub(_currency, text)
    text = _PERCENT_RE.sub(lambda m: f" {_decimal_words(m.group(1))} percent ", text)
    text = _TIME_RE.sub(_time, text)
    text = _AM_PM_RE.sub(lambda m: f" {number_to_words(int(m.group(1)))} {m.group(2).lower()} m ", text)
    text = _ORDINAL_RE.sub(lambda m: f" {ordinal_to_words(int(m.group(1).replace(',', '')))} ", text)
    text = _YEAR_RE.sub(_year, text)
    text = _NEGATIVE_RE.sub(lambda m: f" minus {_decimal_words(m.group(1))} ", text)
    text = re.sub(r"#\s?(?=\d)", " number ", text)  # "#1" -> "number one"
    text = re.sub(r"(\d)\s*°\s*([CF])\b", lambda m: f"{m.group(1)} degrees {'celsius' if m.group(2) == 'C' else 'fahrenheit'}", text)
    text = _NUMBER_RE.sub(lambda m: f" {_decimal_words(m.group(0))} ", text)
    return text


_SYMBOLS = {"%": " percent ", "&": " and ", "+": " plus ", "=": " equals ", "@": " at ", "°": " degrees "}


def normalize_text(text: str) -> str:
    """Written text -> spoken-form text for TTS (see module docstring). Lowercase, ASCII."""
    text = _to_ascii(text)
    text = _expand_abbreviations(text)
    text = _expand_numbers(text)
    for symbol, words in _SYMBOLS.items():
        text = text.replace(symbol, words)
    text = text.lower()
    text = re.sub(r"\.{2,}", ".", text)
    text = re.sub(r"[^a-z' ,.?!:;-]", " ", text)
    text = re.sub(r"\s+([,.?!:;])", r"\1", text)  # no space before punctuation
    return " ".join(text.split())


def normalize_for_asr(text: str) -> str:
    """:func:`normalize_text`, then only ``a-z``, ``'`` inside words, and single spaces."""
    text = re.sub(r"[^a-z']", " ", normalize_text(text))
    text = re.sub(r"(?<![a-z])'|'(?![a-z])", " ", text)
    return " ".join(text.split())
