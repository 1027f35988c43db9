"""The hyper-parameters of a LoRA fine-tune, checked in one place (the API and the CLI check
a request with them before a job is queued; this module imports nothing heavy)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

LORA = "lora"  # the model kind
# Modules of a BERT layer that adapters may go on ("dense": every other linear layer).
TARGETS = ("query", "key", "value", "dense")


class AdapterSettings:
    """What the settings of an adapter run (a LoRA fine-tune, an MLM adaptation) share:
    checks of the common bounds, and reading and writing them as JSON options."""

    what = "LoRA"  # in error messages

    def _check(self, at_least_one: tuple[str, ...]) -> None:
        for name in at_least_one:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.target or not set(self.target) <= set(TARGETS):
            raise ValueError(f"target must name modules among {', '.join(TARGETS)}; got "
                             f"{', '.join(self.target) or 'none'}")

    def to_dict(self) -> dict:
        return {**asdict(self), "target": list(self.target)}

    @classmethod
    def from_dict(cls, data: dict):
        """Raises ValueError for an unknown option or a value out of range; ``target`` may
        be a comma-separated string."""
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown {cls.what} option(s): {', '.join(unknown)}")
        values = dict(data)
        if isinstance(values.get("target"), str):
            values["target"] = values["target"].split(",")
        if "target" in values:
            values["target"] = tuple(name.strip() for name in values["target"])
        try:
            return cls(**values)
        except TypeError as exc:  # a value of the wrong type, compared with a bound
            raise ValueError(f"bad {cls.what} option: {exc}") from None


@dataclass(frozen=True)
class LoraSettings(AdapterSettings):
    """Hyper-parameters of a run; the defaults are what the benchmarks chose for 2 CPU cores."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.1
    target: tuple[str, ...] = ("query", "value")
    epochs: int = 2
    lr: float = 1e-3
    max_length: int = 128  # tokens per email, special tokens included
    batch_size: int = 16
    max_steps: int = 0  # 0: as many as the epochs take
    validation_share: float = 0.15
    eval_every: int = 0  # steps between validations; 0: about four times an epoch
    patience: int = 3  # validations without a better F1 before stopping
    checkpoint_every: int = 20  # steps
    warmup_share: float = 0.06
    weight_decay: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        self._check(("r", "alpha", "epochs", "max_length", "batch_size", "patience",
                     "checkpoint_every"))
        if not 0 < self.validation_share < 1:
            raise ValueError(f"validation_share must be in (0, 1), got "
                             f"{self.validation_share}")
        if self.lr <= 0 or self.max_steps < 0 or self.eval_every < 0:
            raise ValueError("lr must be positive; max_steps and eval_every not negative")
