"""Caption wording for the synthetic teacher: composition, synonyms, paraphrases, wrong values.

Real captioners (appendix A.4) name an object in a few words, often leave attributes out,
get some wrong, and pick their own words; these tables let the synthetic teacher do the same
in a controlled, seeded way.
"""

from __future__ import annotations

import numpy as np

SYNONYMS: dict[str, list[str]] = {
    # colours
    "red": ["crimson", "scarlet"], "blue": ["navy", "azure"], "green": ["emerald", "olive"],
    "yellow": ["golden", "lemon"], "white": ["ivory", "snow-white"], "black": ["dark", "jet-black"],
    "gray": ["grey", "silver"], "grey": ["gray", "silver"], "brown": ["chocolate", "tan"],
    "orange": ["amber", "tangerine"], "purple": ["violet", "lilac"], "pink": ["rose", "salmon"],
    # sizes
    "large": ["big", "huge"], "small": ["little", "tiny"], "medium": ["mid-sized", "average-sized"],
    "big": ["large"], "tall": ["high"], "short": ["low"],
    # categories
    "chair": ["seat", "stool"], "table": ["desk", "counter"], "sofa": ["couch", "settee"],
    "bed": ["cot", "bunk"], "lamp": ["light", "lantern"], "cabinet": ["cupboard", "closet"],
    "shelf": ["bookcase", "rack"], "bookshelf": ["bookcase", "shelf"], "box": ["crate", "carton"],
    "plant": ["houseplant", "potted plant"], "monitor": ["screen", "display"], "mug": ["cup"],
    "cup": ["mug"], "bottle": ["flask"], "desk": ["table", "workbench"], "door": ["doorway"],
    "trash can": ["bin", "garbage can"], "bin": ["trash can"], "pillow": ["cushion"],
    "television": ["tv", "screen"], "tv": ["television"], "ball": ["sphere"], "vase": ["jar"],
    "toilet": ["lavatory"], "sink": ["basin"], "bathtub": ["tub"], "window": ["pane"],
    "bag": ["sack"], "basket": ["hamper"], "stool": ["seat"], "drawer": ["chest of drawers"],
}

COLORS = ["red", "blue", "green", "yellow", "white", "black", "gray", "brown", "orange", "purple", "pink"]
SIZES = ["small", "medium", "large"]

# Templates for a reworded caption; {attrs} = attributes before the noun, {noun} = category.
PARAPHRASES_WITH_ATTRS = ["the {attrs} {noun}", "a {noun} that is {attrs_and}", "this {attrs} {noun}",
                          "there is a {attrs} {noun}", "{noun}, {attrs_and}"]
PARAPHRASES_BARE = ["the {noun}", "this {noun}", "there is a {noun}", "an object: {noun}"]

# The order attributes take in front of the noun ("a large red chair").
ATTRIBUTE_ORDER = ["size", "color", "material", "shape"]


def describable(attributes: dict) -> list[tuple[str, str]]:
    """(key, value) of the string attributes a caption can mention, in adjective order."""
    keys = [k for k in ATTRIBUTE_ORDER if isinstance(attributes.get(k), str) and attributes[k]]
    return [(k, attributes[k]) for k in keys]


def compose(words: list[str], noun: str) -> str:
    """The plain caption: "a large red chair" (article by the first word's sound)."""
    phrase = " ".join(words + [noun])
    article = "an" if phrase[:1].lower() in "aeiou" else "a"
    return f"{article} {phrase}"


def paraphrase(words: list[str], noun: str, rng: np.random.Generator) -> str:
    if words:
        template = PARAPHRASES_WITH_ATTRS[int(rng.integers(len(PARAPHRASES_WITH_ATTRS)))]
        attrs_and = " and ".join(words) if len(words) <= 2 else ", ".join(words[:-1]) + " and " + words[-1]
        return template.format(attrs=" ".join(words), attrs_and=attrs_and, noun=noun)
    template = PARAPHRASES_BARE[int(rng.integers(len(PARAPHRASES_BARE)))]
    return template.format(noun=noun)


def synonym(word: str, rng: np.random.Generator) -> str:
    """A different word of the same meaning, or ``word`` itself when none is known."""
    options = SYNONYMS.get(word.lower())
    if not options:
        return word
    return options[int(rng.integers(len(options)))]


def wrong_value(key: str, value: str, others: list[str], rng: np.random.Generator) -> str:
    """A plausible but wrong value for attribute ``key`` (what a captioner confuses it with)."""
    pool = COLORS if key == "color" else SIZES if key == "size" else others
    pool = [v for v in pool if v != value]
    if not pool:
        return value
    return pool[int(rng.integers(len(pool)))]
