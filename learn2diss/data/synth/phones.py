"""Phone sets: every synthesiser's phone symbols mapped to one ARPAbet inventory plus silence.

The inventory is the 39 phones of the CMU Pronouncing Dictionary (no stress) and ``sil``.
Allophones fold into their phoneme (aspirated ``p_h``→P, flap ``4``→T, syllabic ``l=``→L,
``r=``→ER); British vowels fold into their nearest US phoneme (``Q``→AA, ``3:``→ER, ``I@``→IH).
"""

from __future__ import annotations

SILENCE = "sil"
ARPABET: tuple[str, ...] = (
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH",
    "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH",
    "UH", "UW", "V", "W", "Y", "Z", "ZH",
)  # fmt: skip
INVENTORY: tuple[str, ...] = (SILENCE, *ARPABET)

_SAMPA_CONSONANTS = {
    "p": "P", "b": "B", "t": "T", "d": "D", "k": "K", "g": "G", "f": "F", "v": "V", "T": "TH",
    "D": "DH", "s": "S", "z": "Z", "S": "SH", "Z": "ZH", "h": "HH", "tS": "CH", "dZ": "JH",
    "m": "M", "n": "N", "N": "NG", "l": "L", "r": "R", "w": "W", "j": "Y", "_": SILENCE,
}  # fmt: skip

# espeak-ng's US-English MBROLA tables (voices mb-us1, mb-us2, mb-us3).
US_SAMPA: dict[str, str] = {
    **_SAMPA_CONSONANTS,
    "p_h": "P", "t_h": "T", "k_h": "K", "4": "T", "l=": "L", "l/": "L", "m=": "M", "n=": "N",
    "r=": "ER", "i": "IY", "I": "IH", "E": "EH", "{": "AE", "A": "AA", "O": "AO", "O2": "AO",
    "U": "UH", "u": "UW", "V": "AH", "@": "AH", "EI": "EY", "AI": "AY", "OI": "OY", "aU": "AW",
    "@U": "OW", "A~": "AA", "O~": "AO", "E~": "EH", "{~": "AE",
}  # fmt: skip

# espeak-ng's British MBROLA table (voice mb-en1).
UK_SAMPA: dict[str, str] = {
    **_SAMPA_CONSONANTS,
    "5": "L", "l=": "L", "m=": "M", "n=": "N", "i:": "IY", "i": "IY", "I": "IH", "e": "EH",
    "{": "AE", "A:": "AA", "Q": "AA", "O:": "AO", "U": "UH", "u:": "UW", "V": "AH", "@": "AH",
    "3:": "ER", "eI": "EY", "aI": "AY", "OI": "OY", "aU": "AW", "@U": "OW", "I@": "IH",
    "e@": "EH", "U@": "UH", "aI@": "AY", "aU@": "AW",
}  # fmt: skip

# Festival's ``radio`` set and flite's CMU set: lower-case ARPAbet plus pauses.
RADIO: dict[str, str] = {
    **{p.lower(): p for p in ARPABET},
    "ax": "AH", "dx": "T", "pau": SILENCE, "h#": SILENCE, "brth": SILENCE,
}  # fmt: skip

# Festival's British ``mrpa`` set (voice rab).
MRPA: dict[str, str] = {
    "#": SILENCE, "p": "P", "b": "B", "t": "T", "d": "D", "k": "K", "g": "G", "f": "F",
    "v": "V", "th": "TH", "dh": "DH", "s": "S", "z": "Z", "sh": "SH", "zh": "ZH", "h": "HH",
    "ch": "CH", "jh": "JH", "m": "M", "n": "N", "ng": "NG", "l": "L", "r": "R", "w": "W",
    "y": "Y", "ii": "IY", "i": "IH", "e": "EH", "a": "AE", "aa": "AA", "o": "AA", "oo": "AO",
    "u": "UH", "uu": "UW", "uh": "AH", "@": "AH", "@@": "ER", "ei": "EY", "ai": "AY",
    "oi": "OY", "au": "AW", "ou": "OW", "i@": "IH", "e@": "EH", "u@": "UH",
}  # fmt: skip

PHONE_SETS: dict[str, dict[str, str]] = {
    "us-sampa": US_SAMPA,
    "uk-sampa": UK_SAMPA,
    "radio": RADIO,
    "mrpa": MRPA,
}


def to_arpabet(symbol: str, phone_set: str) -> str:
    """Map one synthesiser phone symbol to the common inventory; ValueError when unknown."""
    try:
        return PHONE_SETS[phone_set][symbol]
    except KeyError:
        raise ValueError(f"phone {symbol!r} is not in the {phone_set!r} phone map") from None
