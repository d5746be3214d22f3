"""The statistics of `bench.claims`, fixed before any measurement (its docstring says how): the
orderings judged, the paired bootstrap over seeds and test examples, and how often two models agree."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RETAINED = 0.97  # "students lose little": the share of the teacher's score a student must keep


@dataclass(frozen=True)
class Claim:
    """`left relation share x right`: the statistic is accuracy(left) - share * accuracy(right)."""

    left: str
    relation: str
    right: str
    paper: str
    share: float = 1.0

    @property
    def name(self) -> str:
        return f"{self.left} {self.relation} {'' if self.share == 1 else f'{self.share:g} x '}{self.right}"


CLAIMS = [
    Claim("bistil", ">=", "teacher", "students lose little against the teacher", RETAINED),
    Claim("bistil", ">=", "trimmed_teacher", "... and against the teacher with a trimmed vocabulary", RETAINED),
    Claim("bistil", ">=", "multilingual", "beat (at least match) multilingually distilled models"),
    Claim("bistil", ">>", "scratch", "greatly beat bilingual models trained from scratch"),
    Claim("bistil", ">", "no_phase1", "phase 1 (bilingual distillation) helps"),
]


GREATLY = 0.05


BOOTSTRAP_RESAMPLES = 2000


def units_from_stored(stored: list[int] | None) -> np.ndarray | None:
    return None if stored is None else np.asarray(stored, dtype=np.int64)


@dataclass
class Scored:
    """One model on one language: its row and its correctness on the test set, one entry per scored
    unit (an example; for a token task a word, `units` giving each sentence's number of words)."""

    row: dict
    correct: np.ndarray
    units: np.ndarray | None = None

    def stored_row(self) -> dict:
        """The row with its correctness, as the Parquet table keeps it (`earlier_results` reads it back)."""
        return {**self.row, "correct": self.correct.tolist(), "units": None if self.units is None else self.units.tolist()}

    def per_example(self) -> tuple[np.ndarray, np.ndarray]:
        """(correct units, units) per example: what the bootstrap resamples, since the words of one
        sentence are not independent draws."""
        if self.units is None:
            return self.correct.astype(float), np.ones(self.correct.size)
        starts = np.concatenate([[0], np.cumsum(self.units)[:-1]]).astype(np.int64)
        return np.add.reduceat(self.correct.astype(float), starts), self.units.astype(float)


def paired_bootstrap(
    pairs_by_lang: dict[str, list[tuple[np.ndarray, np.ndarray]]],
    rng: np.random.Generator,
    share: float = 1.0,
    units_by_lang: dict[str, np.ndarray] | None = None,
) -> tuple[float, float, float]:
    """(difference, low, high): the mean over languages of accuracy(left) - share * accuracy(right),
    with its paired 95% bootstrap interval. Each pair holds per-example correct counts; `units_by_lang`
    the units (words) each example has, all ones where absent: accuracy is correct units over units
    of the resampled examples."""
    differences = np.zeros(BOOTSTRAP_RESAMPLES)
    point = []
    for lang, pairs in pairs_by_lang.items():
        left = np.stack([pair[0] for pair in pairs]).astype(float)
        right = share * np.stack([pair[1] for pair in pairs]).astype(float)
        delta = left - right  # seeds x examples
        units = units_by_lang[lang] if units_by_lang and lang in units_by_lang else np.ones(delta.shape[1])
        point.append(delta.sum(axis=1).mean() / units.sum())
        seeds = rng.integers(0, delta.shape[0], size=(BOOTSTRAP_RESAMPLES, delta.shape[0]))
        examples = rng.integers(0, delta.shape[1], size=(BOOTSTRAP_RESAMPLES, delta.shape[1]))
        per_seed_mean = np.stack([delta[:, row].sum(axis=1) / units[row].sum() for row in examples])  # resamples x seeds
        differences += np.take_along_axis(per_seed_mean, seeds, axis=1).mean(axis=1)
    differences /= len(pairs_by_lang)
    low, high = np.percentile(differences, [2.5, 97.5])
    return float(np.mean(point)), float(low), float(high)


def holds(relation: str, difference: float, low: float) -> bool:
    return {">=": difference >= 0, ">": low > 0, ">>": low > GREATLY}[relation]


def judge(results: list[Scored], langs: list[str], teacher_model: str) -> list[dict]:
    by_key: dict[tuple[str, str], list[Scored]] = {}
    for result in results:
        by_key.setdefault((result.row["model"], result.row["target_lang"]), []).append(result)
    judged = []
    for claim in CLAIMS:
        left_model, right_model = (teacher_model if side == "teacher" else side for side in (claim.left, claim.right))
        matched: dict[str, list[tuple[Scored, Scored]]] = {}
        for lang in langs:
            a, b = by_key.get((left_model, lang), []), by_key.get((right_model, lang), [])
            if not a or not b:
                continue
            seeds_a = {r.row["seed"]: r for r in a}
            seeds_b = {r.row["seed"]: r for r in b}
            if len(seeds_a) > 1 and len(seeds_b) > 1:
                matched[lang] = [(seeds_a[s], seeds_b[s]) for s in sorted(seeds_a.keys() & seeds_b.keys())]
            else:
                matched[lang] = [(x, y) for x in seeds_a.values() for y in seeds_b.values()]
        if not matched:
            continue
        # Units (words) are what agree or not; examples (sentences) are what the bootstrap draws.
        pairs = {lang: [(x.correct, y.correct) for x, y in both] for lang, both in matched.items()}
        counts = {lang: [(x.per_example()[0], y.per_example()[0]) for x, y in both] for lang, both in matched.items()}
        units = {lang: both[0][0].per_example()[1] for lang, both in matched.items()}
        cells = {}
        for key, langs_in in [*[(lang, [lang]) for lang in pairs], ("mean", list(pairs))]:
            subset = {lang: counts[lang] for lang in langs_in}
            difference, low, high = paired_bootstrap(subset, np.random.default_rng(0), claim.share, units)
            cells[key] = {"difference": difference, "low": low, "high": high, "holds": holds(claim.relation, difference, low),
                          "seeds": max(len(p) for p in subset.values()),
                          "agreement": agreement({lang: pairs[lang] for lang in langs_in})}  # fmt: skip
        judged.append({"claim": claim.name, "paper": claim.paper, "languages": sorted(pairs), "by_language": cells})
    return judged


def agreement(pairs_by_lang: dict[str, list[tuple[np.ndarray, np.ndarray]]]) -> float:
    """The share of test examples (words of a token task) on which both models are right or both
    wrong, mean over pairs and languages."""
    return float(np.mean([np.mean([np.mean(x == y) for x, y in pairs]) for pairs in pairs_by_lang.values()]))


def seed_agreement(results: list[Scored], langs: list[str], model: str = "bistil") -> dict[str, float]:
    """`model`'s agreement with itself under another seed, per language and on the mean: how alike two
    models can be when only the seed differs, the yardstick for the agreements of the judged pairs."""
    pairs = {}
    for lang in langs:
        runs = [r.correct for r in results if (r.row["model"], r.row["target_lang"]) == (model, lang)]
        if len(runs) > 1:
            pairs[lang] = [(runs[i], runs[j]) for i in range(len(runs)) for j in range(i + 1, len(runs))]
    return {**{lang: agreement({lang: pairs[lang]}) for lang in pairs}, **({"mean": agreement(pairs)} if pairs else {})}

