"""Text normalisation: written English -> the words a speaker would say.

``normalize_text`` prepares TTS input: numbers, ordinals, years, decades (``'90s``), currency, percentages, times,
dates (``12/25/2023``, ``2023-12-25``, ``Jan 5th``), phone numbers (``555-1234``, digit by digit), fractions
(``2 1/2`` -> "two and a half"), ranges and scores (``10-20`` -> "ten to twenty"), units
(``5 km``, ``3 kg``), Roman numerals (``chapter IV`` -> "chapter four", ``Henry VIII`` -> "henry the
eighth") and common abbreviations become words (number words from ``num2words``); two-letter initialisms
in capitals are spelled (``the UN`` -> "the u n", the letter A as "ay"; ASR text keeps them as written); unicode quotes, dashes and accents become ASCII; the result is
lowercase ``a-z``, space, ``'`` and the punctuation ``, . ? ! - : ;`` (kept as prosody cues).
``normalize_for_asr`` goes on to keep only ``a-z``, ``'`` and single spaces; ASR tokenizers, WER
scoring and benchmarks all compare text in that form.

Characters with no spoken form (emoji, symbols, non-Latin scripts) are dropped.
"""
import re
import unicodedata

from num2words import num2words

_DIGITS = "zero one two three four five six seven eight nine".split()


def _words(n: int, to: str = "cardinal") -> str:
    """num2words in this module's style: ``"one hundred and twenty-one," -> "one hundred twenty one"``;
    numbers beyond its largest scale (10**306) digit by digit."""
    try:
        words = num2words(n, to=to)
    except OverflowError:
        return _digits_to_words(str(n))
    return " ".join(word for word in words.replace(",", " ").replace("-", " ").split() if word != "and")


def number_to_words(n: int) -> str:
    """Cardinal in words, American style without "and": ``1234 -> "one thousand two hundred thirty four"``."""
    return "minus " + number_to_words(-n) if n < 0 else _words(n)


def ordinal_to_words(n: int) -> str:
    """``22 -> "twenty second"``, ``100 -> "one hundredth"``."""
    return _words(n, "ordinal")


def year_to_words(n: int) -> str:
    """Years as spoken: ``1999 -> "nineteen ninety nine"``, ``1905 -> "nineteen oh five"``,
    ``2000 -> "two thousand"``, ``2005 -> "two thousand five"``, ``2019 -> "twenty nineteen"``."""
    return _words(n, "year")


def _digits_to_words(digits: str) -> str:
    """``"007" -> "zero zero seven"``."""
    return " ".join(_DIGITS[int(d)] for d in digits)


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


# --- dates, units and Roman numerals: rewritten into forms the rules below read ------------------

_MONTHS = "January February March April May June July August September October November December".split()
_NUMERIC_DATE_RE = re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{4})\b")  # US order, or D/M/Y when the first is > 12
_ISO_DATE_RE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_MONTH_ABBREVIATION_RE = re.compile(r"\b(Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept?|Oct|Nov|Dec)\b\.?(?=\s+\d)")
_MONTH_DAY_RE = re.compile(rf"\b({'|'.join(_MONTHS)})\s+(\d{{1,2}})\b(?![.:,]\d)")  # "May 5" -> "May 5th"


def _date(month: int, day: int, year: str) -> str:
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return ""
    return f"{_MONTHS[month - 1]} {day}th, {year}"


def _numeric_date(match: re.Match) -> str:
    month, day, year = int(match.group(1)), int(match.group(2)), match.group(3)
    if month > 12:
        month, day = day, month
    return _date(month, day, year) or match.group(0)


def _expand_dates(text: str) -> str:
    """``12/25/2023``, ``2023-12-25`` -> ``December 25th, 2023``; ``Jan 5`` -> ``January 5th``."""
    text = _NUMERIC_DATE_RE.sub(_numeric_date, text)
    text = _ISO_DATE_RE.sub(lambda m: _date(int(m.group(2)), int(m.group(3)), m.group(1)) or m.group(0), text)
    months = {month[:3]: month for month in _MONTHS}
    text = _MONTH_ABBREVIATION_RE.sub(lambda m: months[m.group(1)[:3]], text)
    return _MONTH_DAY_RE.sub(lambda m: f"{m.group(1)} {m.group(2)}th" if 1 <= int(m.group(2)) <= 31 else m.group(0), text)


_UNITS = {  # symbol after a number (case-sensitive) -> (singular, plural)
    "mm": ("millimeter", "millimeters"), "cm": ("centimeter", "centimeters"), "m": ("meter", "meters"),
    "km": ("kilometer", "kilometers"), "mi": ("mile", "miles"), "ft": ("foot", "feet"), "yd": ("yard", "yards"),
    "mg": ("milligram", "milligrams"), "g": ("gram", "grams"), "kg": ("kilogram", "kilograms"),
    "lb": ("pound", "pounds"), "lbs": ("pound", "pounds"), "oz": ("ounce", "ounces"),
    "ml": ("milliliter", "milliliters"), "l": ("liter", "liters"), "L": ("liter", "liters"),
    "mph": ("mile per hour", "miles per hour"), "km/h": ("kilometer per hour", "kilometers per hour"),
    "kph": ("kilometer per hour", "kilometers per hour"), "ms": ("millisecond", "milliseconds"),
    "sec": ("second", "seconds"), "min": ("minute", "minutes"), "h": ("hour", "hours"), "hr": ("hour", "hours"),
    "hrs": ("hour", "hours"), "Hz": ("hertz", "hertz"), "kHz": ("kilohertz", "kilohertz"),
    "MHz": ("megahertz", "megahertz"), "GHz": ("gigahertz", "gigahertz"), "KB": ("kilobyte", "kilobytes"),
    "MB": ("megabyte", "megabytes"), "GB": ("gigabyte", "gigabytes"), "TB": ("terabyte", "terabytes"),
    "W": ("watt", "watts"), "kW": ("kilowatt", "kilowatts"), "kWh": ("kilowatt hour", "kilowatt hours"),
    "V": ("volt", "volts"),
}
_UNIT_RE = re.compile(r"(?<![\w.$£€¥])(\d[\d,]*(?:\.\d+)?)\s?("
                      + "|".join(re.escape(unit) for unit in sorted(_UNITS, key=len, reverse=True)) + r")(?![\w/])")


def _expand_units(text: str) -> str:
    """``5 km`` -> ``5 kilometers``, ``1 ft`` -> ``1 foot`` (before abbreviations: "ft." is not "fort")."""
    return _UNIT_RE.sub(lambda m: f"{m.group(1)} {_UNITS[m.group(2)][m.group(1) != '1']}", text)


_ROMAN_RE = re.compile(r"M{0,3}(?:CM|CD|D?C{0,3})(?:XC|XL|L?X{0,3})(?:IX|IV|V?I{0,3})")  # a valid numeral
_NUMBERED_RE = re.compile(r"\b((?i:chapter|book|part|volume|act|scene|section|article|appendix|episode|war|"
                          r"psalm|canto|stage|phase|level|round))\s+([MDCLXVI]+)\b")
_REGNAL_RE = re.compile(r"\b([A-Z][a-z]+)\s+([IVX]+)\b")  # not "Washington DC"
_ROMAN_VALUES = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}


def roman_to_int(numeral: str) -> int:
    """``"XIV" -> 14`` (a valid numeral; each symbol before a larger one subtracts)."""
    values = [_ROMAN_VALUES[symbol] for symbol in numeral]
    return sum(-value if value < following else value for value, following in zip(values, values[1:] + [0]))


def _numbered(match: re.Match) -> str:
    word, numeral = match.groups()
    if not _ROMAN_RE.fullmatch(numeral) or (len(numeral) == 1 and numeral not in "IVX"):  # "Part C" is a letter
        return match.group(0)
    return f"{word} {roman_to_int(numeral)}"


def _regnal(match: re.Match) -> str:
    name, numeral = match.groups()
    # "Henry VIII", "Elizabeth II"; a single letter only before punctuation ("Elizabeth I.", not "Then I went")
    single_ok = numeral in "IV" and re.match(r"\s*(?:[,.;:!?)]|$)", match.string[match.end():])
    if not _ROMAN_RE.fullmatch(numeral) or (len(numeral) == 1 and not single_ok):
        return match.group(0)
    return f"{name} the {roman_to_int(numeral)}th"


def _expand_roman_numerals(text: str) -> str:
    """``chapter IV`` -> ``chapter 4``; ``Henry VIII`` -> ``Henry the 8th``. Upper-case numerals only,
    after a numbering word (chapter, part, act, war, ...) or a capitalised name."""
    text = _NUMBERED_RE.sub(_numbered, text)
    return _REGNAL_RE.sub(_regnal, text)


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
# Abbreviations that a name, word or number follows ("Mr. Smith", "No. 5", "Jan. 5"): their period ends no sentence.
# The rest of _ABBREVIATIONS may end one ("... and Sons Ltd.").
_MAY_END_A_SENTENCE = {"Jr", "Sr", "Co", "Corp", "Inc", "Ltd", "Bros", "Ave", "Rd", "Blvd", "etc", "dept"}
ABBREVIATIONS_BEFORE_A_WORD = (*(k for k in _ABBREVIATIONS if k not in _MAY_END_A_SENTENCE), "St", "No")
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

_NUMBER = r"\d+(?:,\d{3})*(?:\.\d+)?|\.\d+"  # thousands commas, never a trailing comma
_CURRENCIES = {"$": ("dollar", "cent"), "£": ("pound", "penny"), "€": ("euro", "cent"), "¥": ("yen", "sen")}
_MAGNITUDES = r"thousand|million|billion|trillion"
_CURRENCY_RE = re.compile(rf"([$£€¥])\s?({_NUMBER})(?:\s?({_MAGNITUDES})\b)?", re.IGNORECASE)
_PERCENT_RE = re.compile(rf"({_NUMBER})\s?%")
_TIME_RE = re.compile(r"\b(\d{1,2}):(\d{2})(?!\d)(?:\s*([ap])\.?\s?m\b\.?)?", re.IGNORECASE)
_AM_PM_RE = re.compile(r"\b(\d{1,2})\s*([ap])\.?\s?m\b\.?", re.IGNORECASE)
_ORDINAL_RE = re.compile(r"\b(\d[\d,]*)(st|nd|rd|th)\b", re.IGNORECASE)
_YEAR_RE = re.compile(r"(?<![\d.])(?<!\d,)(1[1-9]\d\d|20\d\d)(s?)(?!\d|[.,]\d)")
_NEGATIVE_RE = re.compile(rf"(?<![\w.])-({_NUMBER})")
_NUMBER_RE = re.compile(_NUMBER)
_FRACTION_RE = re.compile(r"(?<![\w/.])(?:(\d+) )?([1-9])/([2-9]|10|16)(?![\w/]|\.\d)")  # "3/4", "2 1/2"; not "24/7", "9/11"
_RANGE_RE = re.compile(rf"(?<![\w.-])({_NUMBER})-(?=(?:{_NUMBER})(?![\w-]|\.\d))")  # "10-20", "1990-1995", a score "3-2"
_DECADE_RE = re.compile(r"(?<![\w'])'?([1-9]0)'?s\b")  # "the '90s", "80s"
# "555-1234", "555-123-4567", "(555) 123-4567", "+1 555.123.4567", "1-800-555-1234"
_PHONE_RE = re.compile(r"(?<![\w.+-])(?:\+\d{1,3}[-. ]?|1-)?(?:\(\d{3}\) ?|\d{3}[-.])?\d{3}[-.]\d{4}(?![\w-]|\.\d)")


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


def _fraction(match: re.Match) -> str:
    """``3/4 -> three quarters``, ``2 1/2 -> two and a half``; a numerator not below the denominator is no fraction."""
    whole, numerator, denominator = match.group(1), int(match.group(2)), int(match.group(3))
    if numerator >= denominator:
        return match.group(0)
    name = {2: "half", 4: "quarter"}.get(denominator) or ordinal_to_words(denominator)
    if numerator > 1:
        name = "halves" if name == "half" else name + "s"
    part = f"{'a' if whole and numerator == 1 else number_to_words(numerator)} {name}"
    return f" {_integer_words(whole)} and {part} " if whole else f" {part} "


def _decade(match: re.Match) -> str:
    """``'90s -> nineties``."""
    return f" {number_to_words(int(match.group(1)))[:-1]}ies "


def _phone_number(match: re.Match) -> str:
    """Digit by digit, a pause between groups: ``555-1234 -> "five five five, one two three four"``."""
    groups = ", ".join(_digits_to_words(group) for group in re.findall(r"\d+", match.group(0)))
    return f" {'plus ' if match.group(0).startswith('+') else ''}{groups} "


def _expand_numbers(text: str) -> str:
    text = _PHONE_RE.sub(_phone_number, text)
    text = re.sub(r"(?<=[A-Za-z])-(?=\d)|(?<=\d)-(?=[A-Za-z])", " ", text)  # "COVID-19", "F-16", "3-D"
    text = _FRACTION_RE.sub(_fraction, text)
    text = _RANGE_RE.sub(r"\1 to ", text)
    text = _CURRENCY_RE.sub(_currency, text)
    text = _PERCENT_RE.sub(lambda m: f" {_decimal_words(m.group(1))} percent ", text)
    text = _TIME_RE.sub(_time, text)
    text = _AM_PM_RE.sub(lambda m: f" {number_to_words(int(m.group(1)))} {m.group(2).lower()} m ", text)
    text = _ORDINAL_RE.sub(lambda m: f" {ordinal_to_words(int(m.group(1).replace(',', '')))} ", text)
    text = _YEAR_RE.sub(_year, text)
    text = _DECADE_RE.sub(_decade, text)
    text = _NEGATIVE_RE.sub(lambda m: f" minus {_decimal_words(m.group(1))} ", text)
    text = re.sub(r"#\s?(?=\d)", " number ", text)  # "#1" -> "number one"
    text = re.sub(r"(\d)\s*°\s*([CF])\b", lambda m: f"{m.group(1)} degrees {'celsius' if m.group(2) == 'C' else 'fahrenheit'}", text)
    text = _NUMBER_RE.sub(lambda m: f" {_decimal_words(m.group(0))} ", text)
    return text


_SYMBOLS = {"%": " percent ", "&": " and ", "+": " plus ", "=": " equals ", "@": " at ", "°": " degrees "}
# two-letter words said as words even in capitals ("I said NO", "OK"); any other is an initialism ("UN", "AI", "US")
_WORDS_IN_CAPITALS = frozenset("ah an as at be by do eh go ha he hi if in is lo me my no of oh ok on or ow so to uh "
                               "um up we yo".split())


def _spell_initialisms(text: str) -> str:
    """In text that is not all capitals, a two-letter word in capitals that is no word ("the UN", "AI", "ID") is said
    letter by letter, as is a capital A alone before punctuation ("plan A.", "A, B, C"). The letter A is written "ay",
    its name in the pronunciation dictionary, where "a" is the article. Longer capitals are left to the dictionary,
    which has most initialisms ("FBI") and acronyms ("NASA") and tells them from emphasis ("NOT")."""
    if not re.search(r"[a-z]", text):
        return text  # a heading or shouting: words

    def spell(match: re.Match) -> str:
        word = match.group()
        return word if word.lower() in _WORDS_IN_CAPITALS else " ".join("ay" if c == "A" else c for c in word)

    text = re.sub(r"\b[A-Z]{2}\b", spell, text)
    return re.sub(r"\bA\b(?=\s*(?:[,.;:!?]|$))", "ay", text)


def normalize_text(text: str, spell_initialisms: bool = True) -> str:
    """Written text -> spoken-form text for TTS (see module docstring). Lowercase, ASCII.
    ``spell_initialisms``: see :func:`_spell_initialisms` (ASR text keeps the words as written)."""
    text = _to_ascii(text)
    text = _expand_dates(text)
    text = _expand_units(text)
    text = _expand_roman_numerals(text)
    text = _expand_abbreviations(text)
    text = _expand_numbers(text)
    for symbol, words in _SYMBOLS.items():
        text = text.replace(symbol, words)
    if spell_initialisms:
        text = _spell_initialisms(text)
    text = text.lower()
    text = re.sub(r"\.{2,}", ".", text)
    text = re.sub(r"[^a-z' ,.?!:;-]", " ", text)
    text = re.sub(r"\s-+\s", ", ", text)  # a dash between words: a pause
    text = re.sub(r"(?<![a-z])-+|-+(?![a-z])", " ", text)  # a hyphen that joins no two letters
    text = re.sub(r"\s+([,.?!:;])", r"\1", text)  # no space before punctuation
    return " ".join(text.split())


def normalize_for_asr(text: str) -> str:
    """:func:`normalize_text`, then only ``a-z``, ``'`` inside words, and single spaces."""
    text = re.sub(r"[^a-z']", " ", normalize_text(text, spell_initialisms=False))
    text = re.sub(r"(?<![a-z])'|'(?![a-z])", " ", text)
    return " ".join(text.split())
