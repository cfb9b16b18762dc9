"""The meta-training configuration, read from a TOML file (see pretrained/l2l-zo.toml)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..learned.designs import design_for
from .tasks import FAMILIES, MAX_SAMPLES, Augmentation

#: The meta-losses: the paper's log(f_t / f_0), or log(1 + f_t / f_ref) against the better,
#: on each task and step, of zo-adamm and zo-signsgd (see zominimize.train.trainer).
META_LOSSES = ("log", "vs-best")

_RETIRED = "was retired; see research/experiment-log.md (reproduce at commit 8adf837)"
#: Config keys of retired experiments, and what the kept code does instead.
RETIRED_KEYS = {
    "meta_gradient": "the meta-gradient is autograd's, through the training tasks",
    "max_lead": "the vs-best reference is not held near zo-adamm",
    "safe_margin": "checkpoints are selected by the mean held-out meta-loss",
    "task_sampling": "task batches are drawn by the family weights and uniformly over dims",
    "adaptive_sharpness": "task batches are drawn by the family weights and uniformly over "
                          "dims",
}
#: Values of kept keys that named retired experiments.
RETIRED_VALUES = {("meta_loss", "vs-adam"), ("selection", "safe")}


def _is_positive_integer(value) -> bool:
    return int(value) == value and value >= 1


#: The task augmentation's keys (see zominimize.train.tasks.Augmentation): log10 ranges
#: that may be None (off), probabilities, and ranges that are always given.
OPTIONAL_RANGES = ("x_scale_range", "coordinate_scale_range", "x_shift_range")
PROBABILITIES = ("box_fraction", "minority_fraction", "noise")
RANGES = ("minority_share", "minority_weight", "noise_level")


def _is_range(value) -> bool:
    """A pair (lo, hi) of finite numbers, lo <= hi."""
    try:
        lo, hi = value
        return math.isfinite(lo) and math.isfinite(hi) and lo <= hi
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True)
class StageConfig:
    """One stage of meta-training: its episodes, the outer Adam's learning rate, and the
    penalty lambda * mean(o^2) on the QueryRNN's output (stage 2)."""

    episodes: int
    lr: float
    penalty: float = 0.0


@dataclass(frozen=True)
class EvolutionConfig:
    """What an ES stage over whole runs shares: iterations (0: no stage), antithetic pairs,
    noise scale and Adam step of theta, the run length (or several: each task batch's runs
    last one of them, drawn uniformly), task batches per iteration, how often to
    validate, and over how many last iterations theta is averaged into the stage's result
    (0: the last theta)."""

    iterations: int = 0
    pairs: int = 8
    sigma: float = 0.1
    lr: float = 0.03
    steps: int | tuple = 200
    batches: int = 2
    validate_every: int = 25
    average_last: int = 0

    def check(self, where: str) -> None:
        """Raise ValueError, naming the table ``where``, for a value out of range."""
        if not (self.iterations == 0 or _is_positive_integer(self.iterations)):
            raise ValueError(f"{where}.iterations must be a non-negative integer, "
                             f"got {self.iterations!r}")
        if not (self.average_last == 0 or _is_positive_integer(self.average_last)) \
                or self.average_last > self.iterations:
            raise ValueError(f"{where}.average_last must be an integer from 0 to iterations "
                             f"({self.iterations}), got {self.average_last!r}")
        for key in ("pairs", "batches", "validate_every"):
            if not _is_positive_integer(getattr(self, key)):
                raise ValueError(f"{where}.{key} must be a positive integer, "
                                 f"got {getattr(self, key)!r}")
        if not self.horizons or not all(_is_positive_integer(v) for v in self.horizons):
            raise ValueError(f"{where}.steps must be a positive integer or a list of them, "
                             f"got {self.steps!r}")
        for key in ("sigma", "lr"):
            if not getattr(self, key) > 0:
                raise ValueError(f"{where}.{key} must be > 0, got {getattr(self, key)!r}")

    @property
    def horizons(self) -> tuple:
        """The run lengths that ``steps`` allows."""
        return self.steps if isinstance(self.steps, tuple) else (self.steps,)


@dataclass(frozen=True)
class ControllerConfig(EvolutionConfig):
    """The controller stage of a gained design (see zominimize.train.controller): the ES
    keys of :class:`EvolutionConfig`, and the tasks it draws (which the query stage draws
    too): tasks per batch, the share of digits attacks and their image sides, the lr
    spread (10^U(-lr_decades, lr_decades) times the default), the dimensions of the family
    tasks and their augmentation."""

    batch: int = 4
    attack_share: float = 0.5
    attack_sides: tuple = (8, 16, 28)
    lr_decades: float = 1.2
    dims: tuple = (30, 100, 300)
    x_scale_range: tuple = (-1.0, 1.0)
    coordinate_scale_range: tuple = (-0.5, 0.5)
    box_fraction: float = 0.2
    minority_fraction: float = 0.2

    def __post_init__(self):
        where = "controller"
        self.check(where)
        if not _is_positive_integer(self.batch):
            raise ValueError(f"{where}.batch must be a positive integer, got {self.batch!r}")
        if not self.lr_decades >= 0:
            raise ValueError(f"{where}.lr_decades must be >= 0, got {self.lr_decades!r}")
        for key in ("attack_share", "box_fraction", "minority_fraction"):
            if not 0 <= getattr(self, key) <= 1:
                raise ValueError(f"{where}.{key} must be a probability in [0, 1], "
                                 f"got {getattr(self, key)!r}")
        for key in ("attack_sides", "dims"):
            values = getattr(self, key)
            if not values or not all(_is_positive_integer(v) for v in values):
                raise ValueError(f"{where}.{key} must be a list of positive integers, "
                                 f"got {values!r}")
        for key in ("x_scale_range", "coordinate_scale_range"):
            if not _is_range(getattr(self, key)):
                raise ValueError(f"{where}.{key} must be a range [lo, hi] of finite log10 "
                                 f"values with lo <= hi, got {getattr(self, key)!r}")


@dataclass(frozen=True)
class QueryStageConfig(EvolutionConfig):
    """The query stage of a design with the subspace QueryRNN (see
    zominimize.train.query_stage): the ES keys of :class:`EvolutionConfig`; its tasks are
    the controller stage's."""

    lr: float = 0.01

    def __post_init__(self):
        self.check("query_stage")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run; the same config and seed give the same
    weights. The TOML keys are these fields (``stage1``, ``stage2`` and ``controller`` as
    tables)."""

    name: str = "l2l-zo"
    features: str = "rms-max-coherence-success"  # with step_form: the design
    step_form: str = "adam-blend-slow"           # (see zominimize.learned.designs)
    query: str = "scales"                        # the QueryRNN (zominimize.learned.queries)
    seed: int = 0
    q: int = 20
    steps: int = 200                 # T, optimizer steps per episode
    truncation: int = 20             # one outer Adam step every this many steps
    base_step: float = 0.1
    mu_relative: float = 1e-4
    meta_loss: str = "log"           # or "vs-best"
    behind_penalty: float = 0.0      # vs-best: extra weight on the steps behind the reference
    selection: str = "mean"          # a stage keeps the checkpoint of lowest held-out mean
    cells_per_episode: int = 1       # task batches per outer step, each drawn on its own
    families: dict = field(default_factory=lambda: {f: 1.0 for f in FAMILIES})
    dims: tuple = (16, 32, 64)
    batch: int | tuple = 8           # tasks per episode (one family and dimension); or one
    #                                  number per entry of dims, so large d costs less
    f_scale: tuple = (-3.0, 3.0)     # f multiplied by 10^U(f_scale)
    max_samples: int = MAX_SAMPLES   # data-driven families use min(2 d, max_samples) samples
    # task augmentation (zominimize.train.tasks.Augmentation), all off by default:
    x_scale_range: tuple | None = None           # log10 range of the optimum's distance factor
    coordinate_scale_range: tuple | None = None  # log10 range of a factor per coordinate
    x_shift_range: tuple | None = None           # log10 range of RMS(x0)
    box_fraction: float = 0.0        # share of task batches with a box
    minority_fraction: float = 0.0   # share of task batches that depend on a few coordinates
    minority_share: tuple = (0.05, 0.2)   # their share of the coordinates
    minority_weight: tuple = (2.0, 3.0)   # log10 range of their weights
    noise: float = 0.0               # share of task batches with noisy evaluations
    noise_level: tuple = (-6.0, -3.0)     # log10 range of the relative noise
    stage1: StageConfig = StageConfig(episodes=300, lr=1e-3)
    stage2: StageConfig = StageConfig(episodes=150, lr=5e-3, penalty=0.005)
    controller: ControllerConfig = ControllerConfig()  # a gained design's third stage
    query_stage: QueryStageConfig = QueryStageConfig()  # the subspace QueryRNN's stage
    validate_every: int = 25
    validation_tasks: int = 4        # per family, each a batch of one dimension
    validation_seed: int = 10_000

    def __post_init__(self):
        for key in ("meta_loss", "selection"):
            if (key, getattr(self, key)) in RETIRED_VALUES:
                raise ValueError(f"{key} {getattr(self, key)!r} {_RETIRED}")
        design_for(self.features, self.step_form, self.query)
        if self.meta_loss not in META_LOSSES:
            raise ValueError(f"meta_loss must be one of {META_LOSSES}, got {self.meta_loss!r}")
        if self.selection != "mean":
            raise ValueError(f"selection must be 'mean', got {self.selection!r}")
        if not _is_positive_integer(self.cells_per_episode):
            raise ValueError(f"cells_per_episode must be a positive integer, "
                             f"got {self.cells_per_episode!r}")
        if not self.behind_penalty >= 0:  # NaN fails too
            raise ValueError(f"behind_penalty must be >= 0, got {self.behind_penalty!r}")
        if self.behind_penalty and self.meta_loss != "vs-best":
            raise ValueError(f"behind_penalty weighs the steps behind the 'vs-best' reference: "
                             f"it needs meta_loss='vs-best', got {self.meta_loss!r}")
        unknown = set(self.families) - set(FAMILIES)
        if unknown:
            raise ValueError(f"unknown task families {sorted(unknown)}; known: {FAMILIES}")
        if isinstance(self.batch, tuple) and len(self.batch) != len(self.dims):
            raise ValueError(f"batch {list(self.batch)} must give one size per entry of dims "
                             f"{list(self.dims)}")
        if not all(_is_positive_integer(b) for b in self.batches):
            raise ValueError(f"batch must hold positive integers, got {self.batch!r}")
        self._check_augmentation()
        if self.controller.iterations and self.design.inner is None:
            raise ValueError(f"controller.iterations = {self.controller.iterations} trains a "
                             f"step-size controller, which step_form={self.step_form!r} does "
                             f"not have (a gained design's step form ends in '-gain')")
        if self.stage2.episodes and self.query != "scales":
            raise ValueError(f"stage2 trains the QueryRNN through its scales, which the "
                             f"{self.query!r} QueryRNN does not have: set stage2.episodes = 0")
        if self.query_stage.iterations and self.query != "subspace":
            raise ValueError(f"query_stage trains the subspace QueryRNN: it needs "
                             f"query = 'subspace', got {self.query!r}")
        if self.steps % self.truncation:
            raise ValueError(f"steps ({self.steps}) must be a multiple of truncation "
                             f"({self.truncation})")

    def _check_augmentation(self) -> None:
        for key in OPTIONAL_RANGES:
            value = getattr(self, key)
            if value is not None and not _is_range(value):
                raise ValueError(f"{key} must be a range [lo, hi] of finite log10 values with "
                                 f"lo <= hi, got {value!r}")
        for key in PROBABILITIES:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0 <= value <= 1:
                raise ValueError(f"{key} must be a probability in [0, 1], got {value!r}")
        for key in RANGES:
            if not _is_range(getattr(self, key)):
                raise ValueError(f"{key} must be a range [lo, hi] of finite values with "
                                 f"lo <= hi, got {getattr(self, key)!r}")
        lo, hi = self.minority_share
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"minority_share must lie in (0, 1], got {self.minority_share!r}")

    @property
    def augmentation(self) -> Augmentation:
        """The task augmentation this config asks for (all off by default)."""
        return Augmentation(**{key: getattr(self, key)
                               for key in OPTIONAL_RANGES + PROBABILITIES + RANGES})

    @property
    def design(self):
        """The design this config trains (:class:`zominimize.learned.designs.Design`)."""
        return design_for(self.features, self.step_form, self.query)

    @property
    def batches(self) -> tuple:
        """Tasks per episode for each entry of ``dims``."""
        return self.batch if isinstance(self.batch, tuple) else (self.batch,) * len(self.dims)

    def batch_for(self, d: int) -> int:
        """Tasks per episode in dimension d (an entry of ``dims``)."""
        return self.batches[self.dims.index(d)]

    def as_dict(self) -> dict:
        """The config as plain data (what checkpoints and the manifest record)."""
        return asdict(self)


#: The tables of a config (sub-configs), whose keys are filled one by one.
TABLES = ("stage1", "stage2", "controller", "query_stage")


def with_defaults(recorded: dict) -> dict:
    """A config recorded as plain data (:meth:`TrainConfig.as_dict`) with the keys added
    since, in the tables as well as at the top level, read as their defaults."""
    defaults = TrainConfig().as_dict()
    filled = {**defaults, **recorded}
    for table in TABLES:
        if isinstance(recorded.get(table), dict):
            filled[table] = {**defaults[table], **recorded[table]}
    return filled


def load_config(path: str | Path) -> TrainConfig:
    """Read a TOML config: keys not given take the defaults of :class:`TrainConfig`.

    Raises
    ------
    ValueError
        For an unknown key, a key or value of a retired experiment (named, with where
        to read about it), or a value the config does not accept.
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    raw = tomllib.loads(Path(path).read_text())
    for key in sorted(set(raw) & set(RETIRED_KEYS)):
        raise ValueError(f"{path}: config key {key!r} {_RETIRED} ({RETIRED_KEYS[key]})")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{path}: unknown config keys {unknown}")
    try:
        for stage in ("stage1", "stage2"):
            if stage in raw:
                raw[stage] = StageConfig(**raw[stage])
        for name, kind in (("controller", ControllerConfig),
                           ("query_stage", QueryStageConfig)):
            if name in raw:
                table = {key: tuple(value) if isinstance(value, list) else value
                         for key, value in raw[name].items()}
                raw[name] = kind(**table)
    except TypeError as exc:  # an unknown key in a table
        raise ValueError(f"{path}: {exc}") from None
    for key in ("dims", "f_scale", "batch") + OPTIONAL_RANGES + RANGES:
        if isinstance(raw.get(key), list):
            raw[key] = tuple(raw[key])
    try:
        return TrainConfig(**raw)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
