"""The meta-training configuration, read from a TOML file (see pretrained/l2l-zo.toml)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..learned.nets import check_design
from .tasks import FAMILIES, MAX_SAMPLES


META_LOSSES = ("log", "vs-adam", "vs-best")
#: The meta-losses that run classic references alongside the learned optimizer.
REFERENCE_LOSSES = ("vs-adam", "vs-best")
#: How validation picks a stage's checkpoint: the lowest mean held-out meta-loss, or
#: ("safe", reference losses only) the one least behind ZO-Adam on its worst held-out
#: batch, then the lowest mean.
SELECTIONS = ("mean", "safe")
#: How episodes pick their family and dimension: by the family weights and uniformly over
#: dims, or ("adaptive", reference losses only) also leaning towards the (family, dimension)
#: cells whose recent episodes were furthest behind their reference (see
#: trainer.cell_probabilities).
TASK_SAMPLINGS = ("uniform", "adaptive")


def _check_choice(name: str, value, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _is_positive_integer(value) -> bool:
    return int(value) == value and value >= 1


@dataclass(frozen=True)
class StageConfig:
    episodes: int
    lr: float
    penalty: float = 0.0  # lambda * mean(o^2) on the QueryRNN's output (stage 2)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run; the same config and seed give the same weights."""

    name: str = "l2l-zo"
    features: str = "rms"
    step_form: str = "direct"        # or "adam": the UpdateRNN corrects ZO-Adam's step
    seed: int = 0
    q: int = 20
    steps: int = 200                 # T, optimizer steps per episode
    truncation: int = 20             # one outer Adam step every this many steps
    base_step: float = 0.1
    mu_relative: float = 1e-4
    meta_gradient: str = "autograd"  # or "zo": central differences (black-box)
    meta_loss: str = "log"           # or "vs-adam" / "vs-best": log(1 + f_t / f_t of a
    #                                  classic reference), see trainer
    behind_penalty: float = 0.0      # vs-*: extra weight on the steps behind the reference
    max_lead: float | None = None    # vs-best: the reference counts at most e^max_lead below
    #                                  ZO-Adam (None: no limit)
    selection: str = "mean"          # or "safe": see SELECTIONS
    safe_margin: float = 0.0         # "safe": a worst batch this far above log 2 is not behind
    task_sampling: str = "uniform"   # or "adaptive": see TASK_SAMPLINGS
    cells_per_episode: int = 1       # task batches per outer step, each drawn on its own
    adaptive_sharpness: float = 20.0  # adaptive: a cell 0.1 further behind is e^2 as likely
    families: dict = field(default_factory=lambda: {f: 1.0 for f in FAMILIES})
    dims: tuple = (16, 32, 64)
    batch: int | tuple = 8           # tasks per episode (one family and dimension); or one
                                     # number per entry of dims, so large d costs less
    f_scale: tuple = (-3.0, 3.0)     # f multiplied by 10^U(f_scale)
    max_samples: int = MAX_SAMPLES   # data-driven families use min(2 d, max_samples) samples
    stage1: StageConfig = StageConfig(episodes=300, lr=1e-3)
    stage2: StageConfig = StageConfig(episodes=150, lr=5e-3, penalty=0.005)
    validate_every: int = 25
    validation_tasks: int = 4        # per family, each a batch of one dimension
    validation_seed: int = 10_000

    def __post_init__(self):
        check_design(self.features, self.step_form)
        if self.meta_gradient not in ("autograd", "zo"):
            raise ValueError(f"meta_gradient must be 'autograd' or 'zo', got {self.meta_gradient!r}")
        _check_choice("meta_loss", self.meta_loss, META_LOSSES)
        _check_choice("selection", self.selection, SELECTIONS)
        _check_choice("task_sampling", self.task_sampling, TASK_SAMPLINGS)
        if not _is_positive_integer(self.cells_per_episode):
            raise ValueError(f"cells_per_episode must be a positive integer, "
                             f"got {self.cells_per_episode!r}")
        if self.max_lead is not None and (self.meta_loss != "vs-best"
                                          or not self.max_lead >= 0):
            raise ValueError(f"max_lead limits the 'vs-best' reference: it needs "
                             f"meta_loss='vs-best' and a value >= 0, got max_lead="
                             f"{self.max_lead!r} with meta_loss={self.meta_loss!r}")
        for name in ("behind_penalty", "adaptive_sharpness", "safe_margin"):
            if not getattr(self, name) >= 0:  # NaN fails too
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.safe_margin and self.selection != "safe":
            raise ValueError(f"safe_margin applies to selection='safe', got "
                             f"selection={self.selection!r}")
        if ((self.selection == "safe" or self.behind_penalty or self.task_sampling == "adaptive")
                and self.meta_loss not in REFERENCE_LOSSES):
            raise ValueError(f"selection='safe', behind_penalty and task_sampling='adaptive' "
                             f"compare with a classic reference: they need meta_loss "
                             f"'vs-adam' or 'vs-best', got {self.meta_loss!r}")
        unknown = set(self.families) - set(FAMILIES)
        if unknown:
            raise ValueError(f"unknown task families {sorted(unknown)}; known: {FAMILIES}")
        if isinstance(self.batch, tuple) and len(self.batch) != len(self.dims):
            raise ValueError(f"batch {list(self.batch)} must give one size per entry of dims "
                             f"{list(self.dims)}")
        if not all(_is_positive_integer(b) for b in self.batches):
            raise ValueError(f"batch must hold positive integers, got {self.batch!r}")
        if self.steps % self.truncation:
            raise ValueError(f"steps ({self.steps}) must be a multiple of truncation "
                             f"({self.truncation})")

    @property
    def batches(self) -> tuple:
        """Tasks per episode for each entry of ``dims``."""
        return self.batch if isinstance(self.batch, tuple) else (self.batch,) * len(self.dims)

    def batch_for(self, d: int) -> int:
        """Tasks per episode in dimension d (an entry of ``dims``)."""
        return self.batches[self.dims.index(d)]

    def as_dict(self) -> dict:
        return asdict(self)


def load_config(path: str | Path) -> TrainConfig:
    """Read a TOML config; keys not given take the defaults above; unknown keys are errors."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    raw = tomllib.loads(Path(path).read_text())
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{path}: unknown config keys {unknown}")
    for stage in ("stage1", "stage2"):
        if stage in raw:
            raw[stage] = StageConfig(**raw[stage])
    for key in ("dims", "f_scale", "batch"):
        if isinstance(raw.get(key), list):
            raw[key] = tuple(raw[key])
    return TrainConfig(**raw)
