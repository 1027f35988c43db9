"""LoRA fine-tuning of the packaged encoder as a spam classifier, and serving what it made.

The encoder is loaded as a sequence classifier ([CLS] → its pooler → a new two-class head);
``peft`` adds low-rank adapters to the attention projections, and only the adapters and the
head are trained and stored (tens of thousands of parameters, a few hundred kilobytes).

Training holds out a stratified validation part, weights the classes by their inverse
frequency, validates every ``eval_every`` steps and stops early when validation F1 stops
improving; the best state is kept. Validation scores (never test data) give the Platt
calibration and the verdict thresholds, as out-of-fold scores do for the other kinds.

A run can stop at any step and go on from its last checkpoint to the same model: the data
order of an epoch is a function of the seed and the epoch, and a checkpoint holds the
trainable weights, the optimizer's moments, the random state and the step. Checkpoints are
``.npz`` bytes (never a pickle), so the caller keeps them where any worker finds them (the
jobs table).

For serving, the adapters are merged into the base weights once at load, which makes the
model exactly as fast as the base encoder; an ONNX backend exports the merged model.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from ml.arrays import pack, unpack
from ml.encoder import load_pretrained, load_weights
from ml.linear import check_labels, platt
from ml.lora_settings import LORA, LoraSettings
from ml.metrics import binary_metrics
from ml.odds import sigmoid

MAX_CHECKPOINT_VERSION = 1


@dataclass
class Progress:
    step: int
    total: int
    loss: float | None
    validation_f1: float | None
    best_f1: float | None
    seconds: float  # since this process started the run (resumed runs count from there)
    eta_seconds: float | None


@dataclass
class Hooks:
    """How a run talks to whoever runs it (a Celery task, a benchmark)."""

    progress: Callable[[Progress], None] = lambda progress: None
    checkpoint: Callable[[bytes], None] = lambda blob: None
    should_stop: Callable[[], bool] = lambda: False  # asked after every step


class TrainingStopped(Exception):
    """``should_stop`` said so; a checkpoint was saved first."""


class CheckpointMismatch(ValueError):
    """The checkpoint is of another run: other texts, labels or settings."""


@dataclass
class LoraResult:
    state: dict[str, np.ndarray]  # adapter and head weights of the best validation F1
    calibration: tuple[float, float]
    validation_index: np.ndarray  # positions in the training texts held out
    validation_p: np.ndarray  # calibrated p(spam) of those, by the best state
    history: list[dict]
    steps: int
    resumed_from: int
    trainable_parameters: int
    seconds: float
    stopped_early: bool
    settings: LoraSettings = field(default_factory=LoraSettings)


# -- model building ---------------------------------------------------------------------------

def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _classifier(base_dir: Path, settings: LoraSettings, base_state: dict | None = None,
                eager: bool = False):
    """The encoder as a sequence classifier with fresh LoRA adapters (a peft model)."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(settings.seed)
    # "classifier newly initialised" is the point here
    model = load_pretrained(AutoModelForSequenceClassification, base_dir, new_head=True,
                            num_labels=2,
                            **({"attn_implementation": "eager"} if eager else {}))
    load_weights(model.bert, base_state)  # an adapted encoder's, over the package's
    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=settings.r, lora_alpha=settings.alpha,
                        lora_dropout=settings.dropout, target_modules=list(settings.target))
    return get_peft_model(model, config)


def _trainable_state(model) -> dict[str, np.ndarray]:
    from peft import get_peft_model_state_dict

    return {name: tensor.detach().cpu().numpy().copy()
            for name, tensor in get_peft_model_state_dict(model).items()}


def _load_trainable_state(model, state: dict[str, np.ndarray]) -> None:
    import torch
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(model, {k: torch.from_numpy(np.array(v))
                                               for k, v in state.items()})
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise ValueError(f"the adapter does not fit this model: {unexpected[:3]}")


def trainable_parameters(model) -> int:
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


# -- batches ----------------------------------------------------------------------------------

def _tokenize(tokenizer, texts: list[str], max_length: int) -> list[list[int]]:
    return tokenizer(list(texts), truncation=True, max_length=max_length,
                     verbose=False)["input_ids"]


def _pad(tokenizer, ids: list[list[int]]):
    batch = tokenizer.pad({"input_ids": ids}, return_tensors="np")
    return batch["input_ids"].astype(np.int64), batch["attention_mask"].astype(np.int64)


def margins(forward, tokenizer, ids: list[list[int]], batch_size: int) -> np.ndarray:
    """logit(spam) - logit(ham) of each tokenized text, in length-sorted padded batches."""
    out = np.zeros(len(ids), dtype=np.float64)
    order = np.argsort([len(x) for x in ids], kind="stable")
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        input_ids, mask = _pad(tokenizer, [ids[i] for i in index])
        logits = forward(input_ids, mask)
        out[index] = logits[:, 1] - logits[:, 0]
    return out


def _torch_logits(model, run_on: str):
    import torch

    def forward(input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(input_ids=torch.from_numpy(input_ids).to(run_on),
                         attention_mask=torch.from_numpy(mask).to(run_on)
                         ).logits.float().cpu().numpy()

    return forward


# -- checkpoints ------------------------------------------------------------------------------

def _checkpoint_bytes(model, optimizer, meta: dict, best_state: dict | None) -> bytes:
    import torch

    arrays = {f"model/{k}": v for k, v in _trainable_state(model).items()}
    arrays["rng"] = torch.get_rng_state().numpy()  # the base model's dropout draws from it
    if best_state is not None:
        arrays.update({f"best/{k}": v for k, v in best_state.items()})
    optimizer_state = optimizer.state_dict()
    for index, slots in optimizer_state["state"].items():
        for slot, value in slots.items():
            arrays[f"optimizer/{index}/{slot}"] = value.detach().cpu().numpy()
    meta = {**meta, "version": MAX_CHECKPOINT_VERSION,
            "param_groups": optimizer_state["param_groups"]}
    return pack(meta=np.array(json.dumps(meta)), **arrays)


def run_digest(texts: list[str], y: np.ndarray, settings: LoraSettings) -> str:
    """What identifies a run: its texts, labels and settings."""
    digest = hashlib.sha256(json.dumps(settings.to_dict(), sort_keys=True).encode())
    for text, label in zip(texts, np.asarray(y, dtype=int).tolist()):
        digest.update(f"{label}\0{text}\0".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def _restore(blob: bytes, model, optimizer, run: str) -> tuple[dict, dict | None]:
    import torch

    arrays = unpack(blob)
    meta = json.loads(str(arrays.pop("meta")))
    if meta.get("version") != MAX_CHECKPOINT_VERSION or meta.get("run") != run:
        raise CheckpointMismatch("the checkpoint is of another run (other mail, labels or "
                                 "settings)")
    _load_trainable_state(model, {k[len("model/"):]: v for k, v in arrays.items()
                                  if k.startswith("model/")})
    best = {k[len("best/"):]: v for k, v in arrays.items() if k.startswith("best/")} or None
    state: dict[int, dict] = {}
    for key, value in arrays.items():
        if key.startswith("optimizer/"):
            _, index, slot = key.split("/")
            state.setdefault(int(index), {})[slot] = torch.from_numpy(np.array(value))
    optimizer.load_state_dict({"state": state, "param_groups": meta.pop("param_groups")})
    torch.set_rng_state(torch.from_numpy(np.array(arrays["rng"])))
    return meta, best


def checkpoint_step(blob: bytes) -> int:
    """The step a checkpoint was taken at."""
    return int(json.loads(str(unpack(blob)["meta"]))["step"])


# -- training ---------------------------------------------------------------------------------

def split_validation(y: np.ndarray, settings: LoraSettings) -> tuple[np.ndarray, np.ndarray]:
    """Stratified positions (train, validation); at least two of each class held out."""
    y = np.asarray(y, dtype=int)
    check_labels(y)
    n_validation = max(int(round(settings.validation_share * len(y))), 4)
    positions = np.arange(len(y))
    train, validation = train_test_split(positions, test_size=n_validation, stratify=y,
                                         random_state=settings.seed)
    return np.sort(train), np.sort(validation)


def _schedule(step: int, total: int, warmup: int) -> float:
    """Learning-rate factor: linear warm-up, then linear decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def train_lora(base_dir: Path, texts: list[str], y: np.ndarray, settings: LoraSettings,
               hooks: Hooks | None = None, resume: bytes | None = None,
               base_state: dict | None = None, run_on: str | None = None) -> LoraResult:
    """Fine-tune on ``texts`` (labels ``y``, 1 = spam); ``resume`` is a checkpoint of an
    earlier run on the same texts and settings. Raises ``TrainingStopped`` when
    ``hooks.should_stop()`` turns true (after saving a checkpoint), ``CheckpointMismatch``
    when ``resume`` is of another run."""
    import torch
    from transformers import AutoTokenizer

    hooks = hooks or Hooks()
    run_on = run_on or device()
    started = time.perf_counter()
    y = np.asarray(y, dtype=int)
    run = run_digest(texts, y, settings)
    train_index, validation_index = split_validation(y, settings)
    tokenizer = AutoTokenizer.from_pretrained(base_dir, local_files_only=True)
    ids = _tokenize(tokenizer, texts, settings.max_length)
    train_ids = [ids[i] for i in train_index]
    train_y = y[train_index]
    validation_ids = [ids[i] for i in validation_index]
    validation_y = y[validation_index]

    model = _classifier(base_dir, settings, base_state).to(run_on)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=settings.lr,
                                  weight_decay=settings.weight_decay)
    counts = np.bincount(train_y, minlength=2)
    class_weights = torch.tensor(len(train_y) / (2.0 * np.maximum(counts, 1)),
                                 dtype=torch.float32, device=run_on)
    loss_function = torch.nn.CrossEntropyLoss(weight=class_weights)

    steps_per_epoch = int(np.ceil(len(train_ids) / settings.batch_size))
    total = steps_per_epoch * settings.epochs
    if settings.max_steps:
        total = min(total, settings.max_steps)
    eval_every = settings.eval_every or max(1, -(-steps_per_epoch // 4))  # 4 an epoch
    warmup = int(settings.warmup_share * total)

    step, history, best_state, best_f1, best_step, stale = 0, [], None, -1.0, 0, 0
    running_loss = None  # smoothed training loss
    if resume is not None:
        meta, best_state = _restore(resume, model, optimizer, run)
        step, history, running_loss = meta["step"], meta["history"], meta["loss"]
        best_f1, best_step, stale = meta["best_f1"], meta["best_step"], meta["stale"]
    resumed_from = step
    forward = _torch_logits(model, run_on)

    def validate() -> tuple[float, np.ndarray]:
        model.eval()
        scores = margins(forward, tokenizer, validation_ids, settings.batch_size * 2)
        model.train()
        return binary_metrics(validation_y, sigmoid(scores), 0.5)["f1"], scores

    def save() -> None:
        hooks.checkpoint(_checkpoint_bytes(model, optimizer, {
            "run": run, "step": step, "history": history, "best_f1": best_f1,
            "best_step": best_step, "stale": stale, "loss": running_loss}, best_state))

    model.train()
    stopped_early = False
    while step < total and not stopped_early:
        epoch, position = divmod(step, steps_per_epoch)
        order = np.random.default_rng(settings.seed + epoch).permutation(len(train_ids))
        batch = order[position * settings.batch_size:(position + 1) * settings.batch_size]
        input_ids, mask = _pad(tokenizer, [train_ids[i] for i in batch])
        for group in optimizer.param_groups:
            group["lr"] = settings.lr * _schedule(step, total, warmup)
        logits = model(input_ids=torch.from_numpy(input_ids).to(run_on),
                       attention_mask=torch.from_numpy(mask).to(run_on)).logits
        loss = loss_function(logits, torch.from_numpy(train_y[batch]).to(run_on))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        value = float(loss.detach())
        running_loss = value if running_loss is None else 0.9 * running_loss + 0.1 * value
        validation_f1 = None
        if step % eval_every == 0 or step == total:
            validation_f1, _ = validate()
            history.append({"step": step, "loss": round(running_loss, 5),
                            "validation_f1": round(validation_f1, 5)})
            if validation_f1 > best_f1:
                best_f1, best_step, stale = validation_f1, step, 0
                best_state = _trainable_state(model)
            else:
                stale += 1
                stopped_early = stale >= settings.patience and step < total
        elapsed = time.perf_counter() - started
        done_here = step - resumed_from
        hooks.progress(Progress(step, total, running_loss, validation_f1,
                                best_f1 if best_f1 >= 0 else None, elapsed,
                                elapsed / done_here * (total - step) if done_here else None))
        if step < total and not stopped_early:
            if hooks.should_stop():
                save()
                raise TrainingStopped(f"stopped at step {step} of {total}")
            if step % settings.checkpoint_every == 0:
                save()

    if best_state is None:  # no step ran (a resumed run that was finished): keep the weights
        best_state = _trainable_state(model)
    _load_trainable_state(model, best_state)
    _, validation_scores = validate()
    calibration = platt(validation_scores, validation_y)
    a, b = calibration
    return LoraResult(state=best_state, calibration=calibration,
                      validation_index=validation_index,
                      validation_p=sigmoid(a * validation_scores + b), history=history,
                      steps=step, resumed_from=resumed_from,
                      trainable_parameters=trainable_parameters(model),
                      seconds=time.perf_counter() - started, stopped_early=stopped_early,
                      settings=settings)


# -- the stored model, and serving it ---------------------------------------------------------

def to_artifact(result: LoraResult, base: str) -> tuple[dict, bytes]:
    """What the registry stores: the adapters and the head (``.npz``), and how to rebuild."""
    blob = pack(**result.state)
    return {"base": base, "lora": result.settings.to_dict(),
            "calibration": list(result.calibration),
            "trainable_parameters": result.trainable_parameters,
            "artifact_bytes": len(blob)}, blob


def artifact_digest(artifact: dict, blob: bytes) -> str:
    """What the merged weights depend on: the adapters and head, and the base they go on
    (not the calibration, which a backend's thresholds may change after an export)."""
    base = json.dumps([artifact["base"], artifact.get("encoder_version")])
    return hashlib.sha256(base.encode() + blob).hexdigest()[:16]


class LoraClassifier:
    """A fine-tuned model with its adapters merged into the base weights, ready to score."""

    kind = LORA

    def __init__(self, forward, tokenizer, max_length: int, calibration: tuple[float, float],
                 batch_size: int = 32) -> None:
        self._forward = forward
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.calibration = calibration
        self.batch_size = batch_size

    def decision(self, texts: list[str]) -> np.ndarray:
        return margins(self._forward, self.tokenizer,
                       _tokenize(self.tokenizer, texts, self.max_length), self.batch_size)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        a, b = self.calibration
        return sigmoid(a * self.decision(texts) + b)

    def with_calibration(self, calibration: tuple[float, float]) -> LoraClassifier:
        return LoraClassifier(self._forward, self.tokenizer, self.max_length, calibration,
                              self.batch_size)

    @classmethod
    def load(cls, base_dir: Path, artifact: dict, blob: bytes, backend: str = "torch",
             cache_dir: Path | None = None, base_state: dict | None = None,
             batch_size: int = 32, threads: int = 0) -> LoraClassifier:
        """Merge the adapters into the base once; ``backend`` ``onnx`` or ``onnx-int8``
        exports the merged model (cached in ``cache_dir`` by the artifact's digest)."""
        from transformers import AutoTokenizer

        settings = LoraSettings.from_dict(artifact["lora"])
        tokenizer = AutoTokenizer.from_pretrained(base_dir, local_files_only=True)
        calibration = tuple(artifact["calibration"])

        def merged(eager: bool = False):
            model = _classifier(base_dir, replace(settings, dropout=0.0), base_state, eager)
            _load_trainable_state(model, unpack(blob))
            return model.merge_and_unload().eval()

        if backend == "torch":
            import torch

            if threads:
                torch.set_num_threads(threads)
            forward = _torch_logits(merged(), "cpu")
        else:
            from ml.onnx_export import onnx_session, sequence_classifier_file

            if cache_dir is None:
                raise ValueError(f"the {backend} backend needs a cache_dir")
            folder = Path(cache_dir) / f"lora-{artifact_digest(artifact, blob)}"
            path = sequence_classifier_file(lambda: merged(eager=True), folder,
                                            int8=backend == "onnx-int8")
            session = onnx_session(path, threads)

            def forward(input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
                return session.run(None, {"input_ids": input_ids, "attention_mask": mask})[0]
        return cls(forward, tokenizer, settings.max_length, calibration, batch_size)
