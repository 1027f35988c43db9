"""Domain-adaptive pre-training: masked-language-model training of the encoder on the mail
a deployment receives (labeled or not), as LoRA adapters on the encoder.

The package ships no MLM head. ``BertForMaskedLM`` ties the decoder to the word embeddings,
but the head's transform (dense + LayerNorm) and the output bias start random, so the run
first trains those alone with the encoder frozen (``head_steps``), and only then adds the
adapters to the encoder and trains them together with the head. A held-out part of the mail
measures the masked-token loss after the warm-up (the encoder as shipped) and at the end
(adapted).

What is stored is the adapters (A and B of each adapted projection, and their scale);
``adapted_weights`` turns them into the encoder's changed weight matrices, which every user
of the adapted encoder (embedding, a fine-tune, an ONNX export) loads over the package's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ml.arrays import pack, unpack
from ml.encoder import load_pretrained
from ml.lora import Hooks, Progress, TrainingStopped
from ml.lora_settings import AdapterSettings

MLM = "mlm"


@dataclass(frozen=True)
class MlmSettings(AdapterSettings):
    steps: int = 300  # adapter steps, after the head's warm-up
    head_steps: int = 100
    max_length: int = 128
    batch_size: int = 16
    lr: float = 5e-4
    head_lr: float = 1e-3
    r: int = 8
    alpha: int = 16
    dropout: float = 0.1
    target: tuple[str, ...] = ("query", "value")
    mask_probability: float = 0.15
    held_out_share: float = 0.05
    seed: int = 0

    what = "MLM"

    def __post_init__(self) -> None:
        self._check(("steps", "max_length", "batch_size", "r", "alpha"))
        if self.head_steps < 0:
            raise ValueError("head_steps must not be negative")
        if not 0 < self.mask_probability < 1 or not 0 < self.held_out_share < 1:
            raise ValueError("mask_probability and held_out_share must be in (0, 1)")


@dataclass
class MlmResult:
    adapters: dict[str, np.ndarray]  # "<module>.lora_A" / ".lora_B", named as in BertModel
    scale: float
    loss_before: float  # held-out masked-token loss, the encoder as shipped (head warmed up)
    loss_after: float  # the same, adapted
    history: list[dict]
    seconds: float
    trainable_parameters: int


def _batches(ids: list[list[int]], batch_size: int, seed: int):
    """Batches of tokenized texts in a new random order each pass, for ever."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(ids))
        for start in range(0, max(1, len(order) - batch_size + 1), batch_size):
            yield [ids[i] for i in order[start:start + batch_size]]


def adapt(base_dir: Path, texts: list[str], settings: MlmSettings, hooks: Hooks | None = None,
          run_on: str | None = None) -> MlmResult:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, BertForMaskedLM, DataCollatorForLanguageModeling

    from ml.lora import device

    if len(texts) < 4:
        raise ValueError("masked-LM adaptation needs at least 4 emails")
    hooks = hooks or Hooks()
    run_on = run_on or device()
    started = time.perf_counter()
    torch.manual_seed(settings.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_dir, local_files_only=True)
    collate = DataCollatorForLanguageModeling(tokenizer, mlm_probability=settings.mask_probability,
                                              return_tensors="pt")
    ids = tokenizer(list(texts), truncation=True, max_length=settings.max_length,
                    verbose=False)["input_ids"]
    order = np.random.default_rng(settings.seed).permutation(len(ids))
    n_held_out = max(2, int(round(settings.held_out_share * len(ids))))
    held_out = [ids[i] for i in order[:n_held_out]]
    training = [ids[i] for i in order[n_held_out:]]

    # the head's transform is new: that is the point here
    model = load_pretrained(BertForMaskedLM, base_dir, new_head=True).to(run_on)

    def head_parameters():
        head = model.cls.predictions
        return [*head.transform.parameters(), head.bias]

    def masked_loss(batch_ids: list[list[int]]):
        batch = collate([{"input_ids": x} for x in batch_ids])
        return model(input_ids=batch["input_ids"].to(run_on),
                     attention_mask=batch["attention_mask"].to(run_on),
                     labels=batch["labels"].to(run_on)).loss

    def held_out_loss() -> float:
        model.eval()
        state = torch.get_rng_state()
        torch.manual_seed(settings.seed + 1)  # the same masks every time it is measured
        with torch.inference_mode():
            losses = [float(masked_loss(held_out[i:i + settings.batch_size]))
                      for i in range(0, len(held_out), settings.batch_size)]
        torch.set_rng_state(state)
        model.train()
        return float(np.mean(losses))

    total = settings.head_steps + settings.steps
    history: list[dict] = []
    step = 0
    batches = _batches(training or held_out, settings.batch_size, settings.seed)

    def run(parameters, lr: float, steps: int, phase: str) -> None:
        nonlocal step
        optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.01)
        running = None
        for _ in range(steps):
            loss = masked_loss(next(batches))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            value = loss.item()
            running = value if running is None else 0.9 * running + 0.1 * value
            elapsed = time.perf_counter() - started
            hooks.progress(Progress(step, total, running, None, None, elapsed,
                                    elapsed / step * (total - step)))
            if step < total and hooks.should_stop():
                raise TrainingStopped(f"stopped at step {step} of {total}")
        history.append({"phase": phase, "step": step, "loss": running})

    model.train()
    for parameter in model.parameters():
        parameter.requires_grad = False
    for parameter in head_parameters():
        parameter.requires_grad = True
    if settings.head_steps:
        run(head_parameters(), settings.head_lr, settings.head_steps, "head warm-up")
    loss_before = held_out_loss()

    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=list(settings.target))
    model = get_peft_model(model, config)
    for parameter in head_parameters():
        parameter.requires_grad = True
    trainable = [p for p in model.parameters() if p.requires_grad]
    run(trainable, settings.lr, settings.steps, "adapters")
    loss_after = held_out_loss()
    return MlmResult(adapters=_adapters(model), scale=settings.alpha / settings.r,
                     loss_before=loss_before, loss_after=loss_after, history=history,
                     seconds=time.perf_counter() - started,
                     trainable_parameters=int(sum(p.numel() for p in trainable)))


def _adapters(model) -> dict[str, np.ndarray]:
    """A and B of every adapted projection, named as the module is in a ``BertModel``."""
    adapters = {}
    for name, parameter in model.named_parameters():
        if ".lora_A." in name or ".lora_B." in name:
            module, kind = name.split(".lora_")
            module = module.split(".bert.", 1)[1]
            adapters[f"{module}.lora_{kind.split('.')[0]}"] = \
                parameter.detach().cpu().numpy().copy()
    return adapters


def to_artifact(result: MlmResult, settings: MlmSettings, base: str) -> tuple[dict, bytes]:
    blob = pack(**result.adapters)
    return {"base": base, "method": MLM, "scale": result.scale, "mlm": settings.to_dict(),
            "artifact_bytes": len(blob)}, blob


def adapted_weights(base_dir: Path, artifact: dict, blob: bytes) -> dict[str, np.ndarray]:
    """The encoder's weight matrices that adaptation changed, W + scale · B·A, by their
    names in a ``BertModel``; load them over the package's weights."""
    from safetensors.numpy import load_file

    base = load_file(str(Path(base_dir) / "model.safetensors"))
    adapters = unpack(blob)
    weights = {}
    for name in adapters:
        if name.endswith(".lora_A"):
            module = name[:-len(".lora_A")]
            a, b = adapters[name], adapters[f"{module}.lora_B"]
            weight = base[f"{module}.weight"]
            weights[f"{module}.weight"] = (weight + artifact["scale"] * (b @ a)).astype(
                weight.dtype)
    return weights
