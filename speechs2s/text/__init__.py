"""Text front end: normalisation (written -> spoken form) and tokenizers (text <-> ids)."""
from speechs2s.text.normalize import normalize_for_asr, normalize_text
from speechs2s.text.tokenizers import BPETokenizer, CharTokenizer, PhonemeTokenizer, Tokenizer, build_tokenizer

__all__ = [
    "normalize_text", "normalize_for_asr",
    "Tokenizer", "CharTokenizer", "PhonemeTokenizer", "BPETokenizer", "build_tokenizer",
]
