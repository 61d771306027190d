"""A tiny deterministic English-like corpus for the language-model tests (not collected by pytest)."""

import random

WORDS = "the a cat dog sat ran on under mat tree big small red blue quickly slowly and then".split()


def generated_text(n_docs: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 40))) for _ in range(n_docs)]
