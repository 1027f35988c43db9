"""A simulated deployment (issue 12): labels only from the 2002 folders (easy_ham, hard_ham,
spam); the later folders (easy_ham_2, spam_2) are the deployment's own mail, unlabeled,
split into an adaptation part and a test part. Every configuration starts from the model
the product trains by default for its best accuracy (the hybrid: TF-IDF LR on normalised
text stacked with a linear model on the encoder's mean-pooled window) and is scored on the
test part:

- none: the model as trained on the 2002 labels;
- MLM: the encoder adapted by masked-LM training to the 2002 and adaptation-part texts
  (``ml.mlm``, unlabeled), the model trained on its vectors;
- self-training: ``ml.selftrain.self_train`` over the adaptation part, judged on a holdout
  set of the 2002 labels, as ``spamsift adapt selftrain`` runs it (pseudo-labels at the
  spam share the model estimates on the deployment's mail, the default; and at the labeled
  mail's share);
- MLM + self-training;
- active learning: n adaptation-part emails labeled (their folder's label stands in for the
  person) chosen by the review queue (``ml.active.choose``) or at random, added to the
  labels.

For each: F1 and FPR at the threshold chosen on the training labels, the same after the
thresholds are re-fitted on the adaptation part (``ml.refit``: its unlabeled score
distribution), and ROC-AUC. A last row runs the deployment the other way round (labels from
the later folders, the 2002 mail, hard_ham included, as the deployment's): there the
training threshold lets too many hams through, and a re-fit has to raise it.

    python -m bench.deployment_bench
"""

from __future__ import annotations

import argparse
import hashlib
import time

import numpy as np
from sklearn.model_selection import train_test_split

from bench.corpus import Corpus, load_corpus, subset, temporal_split
from bench.lm_bench import PACKAGE, WINDOW, Context, Fitted, _hybrid, _linear, _tfidf
from bench.report import write_section
from core.config import get_settings
from ml.active import choose
from ml.classifiers import validate
from ml.encoder import Encoder, EncoderConfig, model_directory
from ml.metrics import binary_metrics
from ml.mlm import MlmSettings, adapt, adapted_weights
from ml.mlm import to_artifact as mlm_artifact
from ml.refit import (BOOTSTRAP_FITS, ScoreMixture, expected_fpr, fpr_estimate,
                      refit_thresholds, score_mixture)
from ml.selftrain import SelfTrainSettings, self_train

LABEL_COUNTS = (10, 20, 50)
RANDOM_DRAWS = 3
HOLDOUT_SHARE = 0.1  # of the 2002 labels, for self-training's rounds (the product's default)


class Deployment:
    """The corpus split as a deployment sees it, and how to train and judge its model."""

    def __init__(self, corpus: Corpus, seed: int = 0, reverse: bool = False) -> None:
        self.corpus = corpus
        labeled, own = temporal_split(corpus)
        if reverse:  # labels from the later folders, the 2002 mail as the deployment's
            labeled, own = own, labeled
        self.adaptation, self.test = train_test_split(
            own, test_size=0.5, stratify=corpus.y[own], random_state=seed)
        self.training, self.holdout = train_test_split(
            labeled, test_size=HOLDOUT_SHARE, stratify=corpus.y[labeled], random_state=seed)
        self.settings = get_settings()
        self.judged: list[dict] = []  # every row judge() gave, random draws included

    def fit(self, ctx: Context, extra: np.ndarray | None = None,
            extra_y: np.ndarray | None = None) -> Fitted:
        """The hybrid on the training labels, plus ``extra`` positions labeled ``extra_y``."""
        train = self.training if extra is None else np.concatenate([self.training, extra])
        y = self.corpus.y[train] if extra is None else np.concatenate(
            [self.corpus.y[self.training], extra_y])
        text = _tfidf(ctx, train, "lr", y=y)
        language = _linear(ctx, train, "mean", y=y)
        return _hybrid(ctx, train, text, language, y=y)

    def threshold(self, fitted: Fitted) -> float:
        return validate(fitted.y_held_out, fitted.p_held_out, self.settings.target_fpr,
                        self.settings.max_spam_missed).thresholds.spam

    def judge(self, fitted: Fitted, name: str) -> dict:
        """Figures on the test part at the training threshold and after re-fitting, and the
        false-positive rate the Models page would expect at each from the adaptation part's
        scores, with the test hams' exact interval beside it."""
        y_test = self.corpus.y[self.test]
        p_test, p_adaptation = fitted.score(self.test), fitted.score(self.adaptation)
        threshold = self.threshold(fitted)
        before = binary_metrics(y_test, p_test, threshold)
        row = {"name": name, "f1": before["f1"], "fpr": before["fpr"],
               "roc_auc": before["roc_auc"]}
        mixture = score_mixture(p_adaptation)
        expected = {"": self.expected(p_adaptation, p_test[y_test == 0], threshold, mixture)}
        try:
            refitted, _ = refit_thresholds(p_adaptation, y_test[:0], p_test[:0],
                                           self.settings.target_fpr,
                                           self.settings.max_spam_missed,
                                           self.settings.refit_min_hams)
            after = binary_metrics(y_test, p_test, refitted.spam)
            expected["_refit"] = self.expected(p_adaptation, p_test[y_test == 0],
                                               refitted.spam, mixture)
        except ValueError:  # the scores do not fall into two groups: no re-fit
            after = {"f1": float("nan"), "fpr": float("nan")}
        row |= {"f1_refit": after["f1"], "fpr_refit": after["fpr"]}
        row |= {f"{key}{suffix}": value for suffix, figures in expected.items()
                for key, value in figures.items()}
        print(row, flush=True)
        self.judged.append(row)
        return row

    @staticmethod
    def expected(p_unlabeled: np.ndarray, p_hams: np.ndarray, threshold: float,
                 mixture: ScoreMixture) -> dict:
        """The mixture's expected false-positive rate and interval at ``threshold``, and
        whether they hold the measured rate of ``p_hams`` (or its exact interval meets
        theirs)."""
        if not mixture.apart:
            return {}
        estimate = expected_fpr(p_unlabeled, threshold, mixture)
        measured = fpr_estimate(p_hams, threshold)
        return {"expected": estimate.fpr, "expected_low": estimate.low,
                "expected_high": estimate.high,
                "holds": estimate.low <= measured.fpr <= estimate.high,
                "meets": measured.low <= estimate.high and estimate.low <= measured.high}

    def self_trained(self, ctx: Context, start: Fitted,
                     settings: SelfTrainSettings = SelfTrainSettings()
                     ) -> tuple[Fitted, list[dict]]:
        y_holdout = self.corpus.y[self.holdout]

        def holdout_f1(fitted: Fitted) -> float:
            return binary_metrics(y_holdout, fitted.score(self.holdout),
                                  self.threshold(fitted))["f1"]

        best, rounds = self_train(
            start, lambda fitted: fitted.score(self.adaptation),
            lambda positions, labels, _: self.fit(ctx, self.adaptation[positions], labels),
            holdout_f1, float(self.corpus.y[self.training].mean()), settings)
        return best, [{k: v for k, v in r.items() if k != "model"} for r in rounds]


def adapted_context(deployment: Deployment, mlm: MlmSettings) -> tuple[Context, float]:
    """A context whose encoder was adapted to the training and adaptation-part texts."""
    corpus = deployment.corpus
    started = time.perf_counter()
    positions = np.concatenate([deployment.training, deployment.holdout,
                                deployment.adaptation])
    base_dir = model_directory(PACKAGE)
    result = adapt(base_dir, [corpus.texts[i] for i in positions], mlm)
    artifact, blob = mlm_artifact(result, mlm, "bench")
    name = f"mlm.bench-{hashlib.sha256(blob).hexdigest()[:12]}"  # its own vector cache
    weights = adapted_weights(base_dir, artifact, blob)
    encoder = Encoder(EncoderConfig(package=PACKAGE, max_length=WINDOW, adapted=name),
                      weights)
    ctx = Context(corpus, mlm.steps, encoder=encoder)
    return ctx, time.perf_counter() - started


def queue_choice(deployment: Deployment, ctx: Context, fitted: Fitted, n: int) -> np.ndarray:
    """Positions (in the adaptation part) the review queue asks to label first."""
    p = fitted.score(deployment.adaptation)
    vectors = ctx.vectors["mean"][deployment.adaptation]
    return np.array(choose(p, deployment.threshold(fitted), n, vectors), dtype=int)


def expected_cell(row: dict, suffix: str) -> str:
    """The expected false-positive rate and its interval, in per cent."""
    if np.isnan(row.get(f"expected{suffix}", np.nan)):
        return "–"
    return (f"{100 * row[f'expected{suffix}']:.2f} % ({100 * row[f'expected_low{suffix}']:.2f}"
            f"–{100 * row[f'expected_high{suffix}']:.2f})")


def estimate_seconds(p_unlabeled: np.ndarray, threshold: float) -> str:
    """How long the Models page's expected false-positive rate (mixture and interval) takes
    on these scores, and on 100,000 drawn from them."""
    timings = []
    for n in (len(p_unlabeled), 100_000):
        p = p_unlabeled if n == len(p_unlabeled) else np.random.default_rng(0).choice(
            p_unlabeled, n)
        started = time.perf_counter()
        expected_fpr(p, threshold, score_mixture(p))
        timings.append(f"{time.perf_counter() - started:.2f} s for {n:,} scores")
    return ("The Models page's expected false-positive rate with its interval (the mixture "
            f"and {BOOTSTRAP_FITS} resampled fits) took {' and '.join(timings)} (drawn from "
            "the adaptation part's).")


def run(corpus: Corpus, mlm: MlmSettings) -> list[str]:
    deployment = Deployment(corpus)
    ctx = Context(corpus, mlm.steps)
    rows, notes = [], []
    plain = deployment.fit(ctx)
    rows.append(deployment.judge(plain, "no adaptation"))
    notes.append(estimate_seconds(plain.score(deployment.adaptation),
                                  deployment.threshold(plain)))
    adapted_ctx, mlm_seconds = adapted_context(deployment, mlm)
    adapted = deployment.fit(adapted_ctx)
    rows.append(deployment.judge(adapted, "MLM adaptation"))
    self_trained, rounds = deployment.self_trained(ctx, plain)
    rows.append(deployment.judge(self_trained, "self-training"))
    notes.append(f"Self-training rounds: {rounds}.")
    at_labeled_share, labeled_rounds = deployment.self_trained(
        ctx, plain, SelfTrainSettings(share_from="labels"))
    rows.append(deployment.judge(at_labeled_share,
                                 "self-training at the labeled mail's spam share"))
    notes.append(f"Self-training at the labeled mail's spam share, rounds: {labeled_rounds}.")
    both, both_rounds = deployment.self_trained(adapted_ctx, adapted)
    rows.append(deployment.judge(both, "MLM adaptation + self-training"))
    notes.append(f"Self-training after MLM, rounds: {both_rounds}.")
    y_adaptation = corpus.y[deployment.adaptation]
    rng = np.random.default_rng(0)
    for n in LABEL_COUNTS:
        chosen = queue_choice(deployment, ctx, plain, n)
        rows.append(deployment.judge(
            deployment.fit(ctx, deployment.adaptation[chosen], y_adaptation[chosen]),
            f"{n} labels chosen by the review queue"))
        draws = []
        for _ in range(RANDOM_DRAWS):
            picked = rng.choice(len(deployment.adaptation), n, replace=False)
            draws.append(deployment.judge(
                deployment.fit(ctx, deployment.adaptation[picked], y_adaptation[picked]),
                f"{n} labels at random"))
        rows.append({"name": f"{n} labels at random (mean of {RANDOM_DRAWS} draws)",
                     **{k: float(np.mean([d.get(k, np.nan) for d in draws]))
                        for k in draws[0] if k != "name"}})
    backwards = Deployment(corpus, reverse=True)
    rows.append(backwards.judge(backwards.fit(ctx), "the other way round: labels from the "
                                "later folders, the 2002 mail the deployment's (no adaptation)"))
    lines = ["| configuration | F1 | FPR | FPR expected (95 % interval) | F1 after re-fit | "
             "FPR after re-fit | FPR expected after re-fit | ROC-AUC |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        lines.append(f"| {row['name']} | {row['f1']:.4f} | {row['fpr']:.4f} | "
                     f"{expected_cell(row, '')} | {row['f1_refit']:.4f} | "
                     f"{row['fpr_refit']:.4f} | {expected_cell(row, '_refit')} | "
                     f"{row['roc_auc']:.4f} |")
    checked = [(row[f"holds{suffix}"], row[f"meets{suffix}"])
               for row in deployment.judged + backwards.judged for suffix in ("", "_refit")
               if f"holds{suffix}" in row]
    notes.append(f"The expected rate's interval (the Models page's, from the adaptation "
                 f"part's scores) held the test hams' measured rate at "
                 f"{sum(holds for holds, _ in checked)} of {len(checked)} thresholds (every "
                 f"model judged, random draws included); the test hams' exact 95 % interval "
                 f"met it at {sum(meets for _, meets in checked)}.")
    return [f"Labels: {len(deployment.training)} emails of the 2002 folders (and a holdout "
            f"set of {len(deployment.holdout)} for self-training's rounds). The deployment's "
            f"mail: {len(deployment.adaptation)} emails to adapt on (unlabeled) and "
            f"{len(deployment.test)} to test on, from the later folders. Thresholds for a "
            f"{get_settings().target_fpr:.1%} false-positive rate; MLM adaptation took "
            f"{mlm_seconds:.0f} s ({mlm.head_steps} head steps, {mlm.steps} adapter "
            "steps) including embedding the corpus again.", "", *lines, "", *notes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mlm-steps", type=int, default=MlmSettings.steps)
    parser.add_argument("--sample", type=int, default=0,
                        help="a stratified subset of this many messages (a quick check; "
                             "figures of a subset are not written)")
    args = parser.parse_args()
    corpus = load_corpus()
    if args.sample:
        corpus = subset(corpus, args.sample)
    started = time.perf_counter()
    body = "\n".join([*run(corpus, MlmSettings(steps=args.mlm_steps)), "",
                      f"Whole run: {time.perf_counter() - started:.0f} s."])
    if not args.sample:
        write_section("deployment", "Simulated deployment (issue 12)", body,
                      "python -m bench.deployment_bench")
    print(body, flush=True)


if __name__ == "__main__":
    main()
