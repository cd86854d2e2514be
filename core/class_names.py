"""Human-readable names of a model's classes, written into its manifest as ``"class_names"``.

The rules shared by the trainer CLI (``--class-names``, ``trainer.class_names``) and the retraining
job API (``"class_names"``): ``fashion`` names Fashion-MNIST's ten classes, ``digits`` names
"0".."9", or a list is given; it must hold exactly one non-empty, distinct name per class, in label
order; the server then answers ``"class"`` beside ``"label"``. A manifest without the key is as
valid as ever. In the kernel because the API checks a request with it without importing the trainer.
"""

from __future__ import annotations

from collections.abc import Sequence

# Fashion-MNIST's labels 0..9, as its README (zalandoresearch/fashion-mnist) names them: 7 is
# "Sneaker" and 8 "Bag" (the images agree: class 7's top third is nearly empty, a low shoe).
FASHION_MNIST = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DIGITS = tuple(str(digit) for digit in range(10))
BUILT_IN = {"fashion": FASHION_MNIST, "digits": DIGITS}
MAX_NAME_LENGTH = 64


def check_class_names(names: Sequence[str], n_classes: int) -> list[str]:
    """``names`` as a list once it has exactly ``n_classes`` non-empty, distinct, short strings."""
    names = [name.strip() if isinstance(name, str) else name for name in names]
    if len(names) != n_classes:
        raise ValueError(f"class names: the model has {n_classes} classes, {len(names)} name(s) were given")
    for index, name in enumerate(names):
        if not isinstance(name, str) or not name:
            raise ValueError(f"class names: entry {index} is empty or not a string")
        if len(name) > MAX_NAME_LENGTH:
            raise ValueError(f"class names: entry {index} is longer than {MAX_NAME_LENGTH} characters")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"class names: {', '.join(map(repr, duplicates))} appear(s) more than once")
    return names


def resolve_class_names(value: str | Sequence[str], n_classes: int) -> list[str]:
    """A built-in list by its name (``fashion``, ``digits``) or the given names, checked."""
    if isinstance(value, str):
        if value not in BUILT_IN:
            raise ValueError(f"class names: {value!r} is not one of {', '.join(BUILT_IN)}; or give a list of names")
        return list(BUILT_IN[value])
    return check_class_names(value, n_classes)
