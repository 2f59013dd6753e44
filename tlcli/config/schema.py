"""The config schema: one typed object from the YAML file to every stage.

The pydantic models below are the schema, the validator and the source of README's config
reference at once (`tlcli.config.reference`). Unknown keys are errors, and so are values that
cannot work together; `tlcli.config.loading` turns each into one line naming the file and key.

>>> cfg = Config.model_validate({"name": "demo", "data": {"train_dir": "photos"},
...                              "model": {"base": "resnet50", "weights": None}})
>>> cfg.model.weights, cfg.image_size, cfg.data.val_split, cfg.defined_stages()
('none', (224, 224), 0.2, ['finetune'])
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    PrivateAttr,
    Tag,
    field_validator,
    model_validator,
)

from tlcli.bases import BASES, base_names
from tlcli.config.messages import at
from tlcli.config.sweep import SweepConfig, check_space
from tlcli.rundir import STAGES, RunDir

# The weights settings that name no file: `model.weights`, `pretrain.weights`.
SPECIAL_WEIGHTS = ("imagenet", "none", "pretrain")


def weights_label(weights: str) -> str:
    """A weights setting as banners and model cards name it: a special name as it is, a path
    by its file name.

    >>> weights_label("imagenet"), weights_label("/models/ants/finetune/model.keras")
    ('imagenet', 'model.keras')
    """
    return weights if weights in SPECIAL_WEIGHTS else Path(weights).name


class Section(BaseModel):
    """A config section: unknown keys are errors, defaults are validated too."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


def _none_if_off(value: Any) -> Any:
    """`key: none`, `key: false` and `key: null` all switch an optional section off."""
    return None if value in (None, False, "none", "off") else value


def _yaml_switch(value: Any) -> Any:
    """YAML 1.1 (PyYAML) reads a bare `on` / `off` as a boolean: read it back as the word."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return value


AutoOff = Annotated[Literal["auto", "off"], BeforeValidator(_yaml_switch)]

# `weights: null` (or a bare `weights:`) means no weights, as `weights: none` does.
Weights = Annotated[str, BeforeValidator(lambda value: "none" if value is None else value)]


# --------------------------------------------------------------------------------------- data


class AugmentConfig(Section):
    """Random augmentation of training images; every transform is off by default."""

    flip: Literal["none", "horizontal", "vertical", "horizontal_and_vertical"] = Field(
        "none", description="random mirror"
    )
    rotation: float = Field(0.0, ge=0, le=0.5, description="fraction of a full turn, both ways")
    zoom: float = Field(0.0, ge=0, lt=1, description="zoom in or out by up to this fraction")
    crop: float = Field(0.0, ge=0, lt=1, description="random crop of up to this fraction")
    translate: float = Field(0.0, ge=0, lt=1, description="shift by up to this fraction")
    contrast: float = Field(0.0, ge=0, le=1, description="contrast change factor")
    brightness: float = Field(0.0, ge=0, le=1, description="brightness change factor")

    @property
    def enabled(self) -> bool:
        return self != AugmentConfig()


def _image_size(value: Any) -> Any:
    """`image_size: 224` is shorthand for `[224, 224]`."""
    if isinstance(value, int) and not isinstance(value, bool):
        return [value, value]
    return value


class DataConfig(Section):
    """Where the images are and how they are fed. Each split folder holds one folder per class."""

    train_dir: Path = Field(description="training images, one sub-folder per class")
    val_dir: Path | None = Field(None, description="validation images, same class folders")
    val_split: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="fraction of train_dir held out for validation (0.2 if no val_dir)",
    )
    test_dir: Path | None = Field(None, description="test images, same class folders")
    test_split: float | None = Field(
        None, ge=0, lt=1, description="fraction of train_dir held out for testing"
    )
    image_size: tuple[PositiveInt, PositiveInt] | None = Field(
        None, description="[height, width] or one number; default: the base's own (224)"
    )
    batch_size: PositiveInt = Field(32, description="global batch size (split across replicas)")
    augment: AugmentConfig = Field(default_factory=AugmentConfig, description="see data.augment")
    class_weight: Literal["none", "balanced"] = Field(
        "none", description="balanced: weight each class by n / (classes x count)"
    )

    _image_size = field_validator("image_size", mode="before")(_image_size)

    @field_validator("augment", mode="before")
    @classmethod
    def _augment_off(cls, value: Any) -> Any:
        return {} if _none_if_off(value) is None else value

    @field_validator("class_weight", mode="before")
    @classmethod
    def _class_weight_off(cls, value: Any) -> Any:
        return "none" if value is None else value

    @model_validator(mode="after")
    def _splits(self) -> DataConfig:
        if self.val_dir is not None and self.val_split is not None:
            raise at("val_split", "give val_dir or val_split, not both")
        if self.test_dir is not None and self.test_split is not None:
            raise at("test_split", "give test_dir or test_split, not both")
        if self.val_dir is None and self.val_split is None:
            # A folder of images and nothing else still gets a validation set.
            self.val_split = 0.2
        if (self.val_split or 0) + (self.test_split or 0) >= 0.9:
            raise at(
                "val_split", "val_split + test_split leave less than 10% of train_dir to train on"
            )
        return self


class DataOverride(Section):
    """`pretrain.data`: data keys that differ for the source task; the rest come from `data`."""

    train_dir: Path | None = None
    val_dir: Path | None = None
    val_split: float | None = Field(None, ge=0, lt=1)
    test_dir: Path | None = None
    test_split: float | None = Field(None, ge=0, lt=1)
    image_size: tuple[PositiveInt, PositiveInt] | None = None
    batch_size: PositiveInt | None = None
    augment: AugmentConfig | None = None
    class_weight: Literal["none", "balanced"] | None = None

    _image_size = field_validator("image_size", mode="before")(_image_size)


# -------------------------------------------------------------------------------------- model

Activation = Literal["relu", "gelu", "silu", "swish", "elu", "selu", "tanh", "leaky_relu"]


class HeadConfig(Section):
    """The new classifier on top of the base: pooling output -> dropout -> dense layers."""

    dense: list[PositiveInt] = Field(default_factory=list, description="hidden layer widths")
    dropout: float = Field(0.2, ge=0, lt=1, description="dropout rate before each dense layer")
    activation: Activation = Field("relu", description="of the hidden layers")


def _head_kind(value: Any) -> str:
    return "~pretrain" if value == "pretrain" else "~layers"


# `head: pretrain` (adaptive transfer) or a HeadConfig; the tags keep errors about one shape.
Head = Annotated[
    Annotated[HeadConfig, Tag("~layers")] | Annotated[Literal["pretrain"], Tag("~pretrain")],
    Discriminator(_head_kind),
]


class ModelConfig(Section):
    """The network: a keras.applications base, its starting weights, the pooling and the head."""

    base: str = Field(description="a name from `tlcli.bases` (vgg16, resnet50, mobilenet_v2, ...)")
    weights: Weights = Field(
        "imagenet",
        description="imagenet, none, pretrain (this run's pretrain stage), or a path: a Keras "
        "weights file (.h5) or a tlcli model.keras / run folder",
    )
    pooling: Literal["flatten", "avg", "max"] = Field("avg", description="base output -> vector")
    head: Head = Field(
        default_factory=HeadConfig,
        description="see model.head; or `pretrain` to reuse the pretrain head's hidden layers",
    )
    tta: Annotated[Literal["auto", "flip", "off"], BeforeValidator(_yaml_switch)] = Field(
        "auto",
        description="test-time augmentation inside the saved model: flip averages the "
        "predictions of the image and its mirror; auto: flip when finetune's head search found "
        "mirrored images help",
    )

    @field_validator("base")
    @classmethod
    def _known_base(cls, value: str) -> str:
        value = value.lower()
        if value not in BASES:
            hint = difflib.get_close_matches(value, base_names(), n=1)
            did_you_mean = f"did you mean '{hint[0]}'? " if hint else ""
            raise ValueError(
                f"unknown base '{value}'; {did_you_mean}known: {', '.join(base_names())}"
            )
        return value


# ----------------------------------------------------------------------------------- training


class OptimizerConfig(Section):
    """A Keras optimizer. `momentum` applies to sgd and rmsprop, `nesterov` to sgd."""

    name: Literal["sgd", "adam", "adamw", "rmsprop"] = Field("adam", description="Keras optimizer")
    learning_rate: PositiveFloat = Field(1e-3, description="initial rate (unfreeze: 1e-5)")
    momentum: float | None = Field(None, ge=0, lt=1, description="sgd, rmsprop")
    nesterov: bool | None = Field(None, description="sgd")
    weight_decay: float | None = Field(None, ge=0, description="decoupled weight decay")
    clipnorm: PositiveFloat | None = Field(None, description="clip each gradient's norm")

    @model_validator(mode="after")
    def _applies(self) -> OptimizerConfig:
        if self.momentum is not None and self.name not in ("sgd", "rmsprop"):
            raise at("momentum", f"applies to sgd and rmsprop, not {self.name}")
        if self.nesterov is not None and self.name != "sgd":
            raise at("nesterov", f"applies to sgd only, not {self.name}")
        return self


class ScheduleConfig(Section):
    """Learning-rate schedule over optimizer steps (batches).

    inverse_time: lr0 / (1 + decay_rate * step / decay_steps); exponential: lr0 * decay_rate **
    (step / decay_steps); step: the same in whole steps (staircase); cosine: from lr0 to
    alpha * lr0 over decay_steps (default: the whole stage).
    """

    name: Literal["constant", "inverse_time", "exponential", "step", "cosine"] = Field(
        "constant", description="`schedule: cosine` alone is fine too"
    )
    decay_steps: PositiveInt | None = Field(
        None, description="steps per decay; default: one epoch (cosine: the whole stage)"
    )
    decay_rate: PositiveFloat = Field(0.5, description="inverse_time, exponential, step")
    alpha: float = Field(0.0, ge=0, le=1, description="cosine: final rate as a fraction of lr0")
    warmup_steps: NonNegativeInt = Field(0, description="cosine: linear warm-up steps from 0")

    @model_validator(mode="after")
    def _warmup_cosine_only(self) -> ScheduleConfig:
        if self.warmup_steps and self.name != "cosine":
            raise at("warmup_steps", f"applies to the cosine schedule, not {self.name}")
        return self


class EarlyStoppingConfig(Section):
    """Stop when `monitor` stops improving; keep the best epoch's weights."""

    monitor: Literal["val_loss", "val_accuracy", "loss", "accuracy"] = Field(
        "val_loss", description="the quantity watched"
    )
    patience: NonNegativeInt = Field(3, description="epochs without improvement before stopping")
    min_delta: float = Field(0.0, ge=0, description="smallest change that counts")
    restore_best_weights: bool = Field(True, description="end with the best epoch's weights")


class TrainStage(Section):
    """What every training stage has: epochs, optimizer, schedule, loss options, early stop."""

    epochs: PositiveInt = Field(10, description="training epochs")
    optimizer: OptimizerConfig = Field(
        default_factory=OptimizerConfig, description="see <stage>.optimizer"
    )
    schedule: ScheduleConfig = Field(
        default_factory=ScheduleConfig, description="see <stage>.schedule"
    )
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="of the cross-entropy loss")
    early_stopping: EarlyStoppingConfig | None = Field(
        None, description="see <stage>.early_stopping; `true` for the defaults, off when absent"
    )

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule_name(cls, value: Any) -> Any:
        """`schedule: cosine` is shorthand for `schedule: {name: cosine}`."""
        if value is None:
            return {}
        return {"name": value} if isinstance(value, str) else value

    @field_validator("early_stopping", mode="before")
    @classmethod
    def _early_stopping_switch(cls, value: Any) -> Any:
        return {} if value is True else _none_if_off(value)


class PretrainConfig(TrainStage):
    """The source task: the whole base trains, with its own head, on `data` + `pretrain.data`."""

    epochs: PositiveInt = Field(20, description="training epochs")
    data: DataOverride = Field(
        default_factory=DataOverride, description="keys of `data` that differ for the source task"
    )
    weights: Weights = Field(
        "none", description="the base before pretraining: imagenet, none, a path"
    )
    head: HeadConfig | None = Field(None, description="default: model.head, or dense [256]")


class FrozenCache(Section):
    """Options of the frozen-bottom cache shared by finetune and unfreeze.

    auto: cache when it is exact (no augmentation) or when `cache_views` is set; on: always
    (with augmentation and no cache_views, 4 views); off: never.
    """

    cache: Literal["auto", "on", "off"] = Field("auto", description="frozen-bottom cache")
    cache_views: PositiveInt | None = Field(
        None, description="augmented views of each training image to cache"
    )

    @field_validator("cache", mode="before")
    @classmethod
    def _yaml_on_off(cls, value: Any) -> Any:
        return _yaml_switch(value)


class FinetuneConfig(FrozenCache, TrainStage):
    """Frozen base, new head trains."""

    epochs: PositiveInt = Field(10, description="training epochs")
    search: AutoOff = Field(
        "auto",
        description="auto: fit the head on the cached features by k-fold search over L2 "
        "strength and mirrored images, when the head is one dense layer and the features are "
        "cached exactly (no data.augment); the head as configured (optimizer, schedule, "
        "epochs, ...) is scored on the same folds and kept when no candidate beats it; "
        "off: train the head with the optimizer for `epochs`",
    )


class UnfreezeConfig(FrozenCache, TrainStage):
    """The top of the base trains too, at a low learning rate, starting from `finetune`."""

    epochs: PositiveInt = Field(5, description="training epochs")
    optimizer: OptimizerConfig = Field(
        default_factory=lambda: OptimizerConfig(learning_rate=1e-5),
        description="see <stage>.optimizer",
    )
    layers: int | Literal["all"] | None = Field(
        None, description="train the top N layers of the base, or all (the default)"
    )
    from_layer: str | None = Field(None, description="train from this base layer up")
    from_block: str | None = Field(None, description="train from this block up: block5, conv5")
    train_bn: bool = Field(False, description="let BatchNorm layers train (batch statistics)")
    interpolate: AutoOff = Field(
        "auto",
        description="auto: end with the mix of the finetune and unfreeze weights (0, 1/4, ..., "
        "1) that scores best on validation, so unfreezing never ends below finetune there",
    )

    @field_validator("layers", mode="before")
    @classmethod
    def _layers(cls, value: Any) -> Any:
        if value is None or value == "all":
            return value
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"expected a positive number of layers or 'all', got {value!r}")
        return value

    @model_validator(mode="after")
    def _one_selector(self) -> UnfreezeConfig:
        chosen = [k for k in ("layers", "from_layer", "from_block") if getattr(self, k) is not None]
        if len(chosen) > 1:
            raise at(
                chosen[1], f"give one of layers, from_layer, from_block (got {', '.join(chosen)})"
            )
        if not chosen:
            self.layers = "all"
        return self


def _names_a_block(name: str, blocks: tuple[str, ...]) -> bool:
    """A block of the base (`block5`), or a part of one (`block6a` of EfficientNet's block6).

    >>> _names_a_block("block6a", ("block5", "block6")), _names_a_block("block5", ("block_5",))
    (True, False)
    """
    return any(
        name == block or (name.startswith(block) and not name[len(block)].isdigit())
        for block in blocks
    )


class EvaluateConfig(Section):
    """Which split `evaluate` scores: auto = test when the data has one, else val."""

    split: Literal["auto", "test", "val", "train"] = Field(
        "auto", description="auto: test when there is one, else val"
    )


class RunConfig(Section):
    """How the computation runs: precision, XLA, and the tf.distribute strategy."""

    mixed_precision: Literal["none", "float16", "bfloat16"] = Field(
        "none", description="Keras mixed-precision policy; the output layer stays float32"
    )
    jit_compile: Literal["auto"] | bool = Field("auto", description="XLA compilation (Keras)")
    distribution: Literal["auto", "none", "mirrored", "multi_worker", "tpu"] = Field(
        "auto", description="tf.distribute strategy; auto = mirrored on several GPUs"
    )
    tpu: str | None = Field(None, description="TPU address for distribution: tpu")

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _precision_off(cls, value: Any) -> Any:
        return "none" if value in (None, False) else value


class Config(Section):
    """The whole experiment. Outputs go to `<output_dir>/<name>/`."""

    name: str = Field(
        description="run folder name",
        json_schema_extra={"shown_default": "the config file's name"},  # set by load_config
    )
    output_dir: Path = Field(Path("runs"), description="where run folders go")
    cache_dir: Path | None = Field(
        None,
        description="decoded images and cached features; default <output_dir>/<name>/cache. "
        "Runs (and processes) may share one: entries are keyed by content",
    )
    seed: int = Field(42, description="fixes splits, shuffling and initialisation")
    data: DataConfig = Field(description="see data")
    model: ModelConfig = Field(description="see model")
    pretrain: PretrainConfig | None = Field(None, description="the source task; absent: skipped")
    finetune: FinetuneConfig = Field(
        default_factory=FinetuneConfig, description="frozen base, new head (always runs)"
    )
    unfreeze: UnfreezeConfig | None = Field(None, description="absent: skipped")
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig, description="see evaluate")
    run: RunConfig = Field(default_factory=RunConfig, description="see run")
    sweep: SweepConfig | None = Field(
        None, description="what `tlcli sweep` searches; ignored by the other commands"
    )

    _source: str = PrivateAttr("<config>")

    @field_validator("name")
    @classmethod
    def _folder_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
            raise ValueError(
                f"'{value}' is not a folder name: use letters, digits, '.', '_' and '-'"
            )
        return value

    # Rules across sections, one validator each. Pydantic runs them in this order, and the
    # first that fails is the error: keep a rule's inputs (pretrain.head) filled before it.

    @model_validator(mode="after")
    def _pretrain_weights_not_pretrain(self) -> Config:
        if self.pretrain is not None and self.pretrain.weights == "pretrain":
            raise at("pretrain.weights", "cannot be 'pretrain' (it is what pretrain makes)")
        return self

    @model_validator(mode="after")
    def _pretrain_head_from_model_head(self) -> Config:
        """`pretrain.head` defaults to `model.head`, or dense [256] when that is `pretrain`."""
        if self.pretrain is not None and self.pretrain.head is None:
            head = self.model.head
            self.pretrain.head = head if isinstance(head, HeadConfig) else HeadConfig(dense=[256])
        return self

    @model_validator(mode="after")
    def _weights_pretrain_needs_pretrain(self) -> Config:
        if self.model.weights == "pretrain" and self.pretrain is None:
            raise at("model.weights", "is 'pretrain' but the config has no pretrain section")
        return self

    @model_validator(mode="after")
    def _head_pretrain_needs_hidden_layers(self) -> Config:
        if self.model.head != "pretrain":
            return self
        if self.pretrain is None:
            raise at("model.head", "is 'pretrain' but the config has no pretrain section")
        if not self.pretrain.head.dense:
            raise at(
                "model.head",
                "is 'pretrain' (reuse its hidden layers) but pretrain.head.dense is empty: "
                "give the pretrain head hidden layers, e.g. dense: [256]",
            )
        return self

    @model_validator(mode="after")
    def _test_split_exists(self) -> Config:
        if self.evaluate.split == "test" and not (self.data.test_dir or self.data.test_split):
            raise at("evaluate.split", "is 'test' but data has no test_dir or test_split")
        return self

    @model_validator(mode="after")
    def _early_stopping_has_validation(self) -> Config:
        for stage in STAGES:
            section = getattr(self, stage)
            stopping = section and section.early_stopping
            if stopping and stopping.monitor.startswith("val_"):
                data = self.stage_data(stage)
                if data.val_dir is None and not data.val_split:
                    raise at(
                        f"{stage}.early_stopping.monitor",
                        f"'{stopping.monitor}' needs validation data, and this stage has none",
                    )
        return self

    @model_validator(mode="after")
    def _sweep_space_fits(self) -> Config:
        if self.sweep is not None:
            check_space(type(self), self.model_dump(mode="json", exclude={"sweep"}), self.sweep)
        return self

    @model_validator(mode="after")
    def _from_block_in_base(self) -> Config:
        block = self.unfreeze.from_block if self.unfreeze is not None else None
        spec = BASES[self.model.base]
        if block is not None and not _names_a_block(block, spec.blocks):
            hint = difflib.get_close_matches(block, spec.blocks, n=1)
            did_you_mean = f"did you mean '{hint[0]}'? " if hint else ""
            blocks = ", ".join(spec.blocks)
            raise at(
                "unfreeze.from_block",
                f"no block '{block}' in {spec.name}; {did_you_mean}blocks: {blocks}",
            )
        return self

    @model_validator(mode="after")
    def _image_size_fits_base(self) -> Config:
        spec = BASES[self.model.base]
        sizes = {"data.image_size": self.data.image_size}
        if self.pretrain is not None:
            sizes["pretrain.data.image_size"] = self.pretrain.data.image_size
        for key, size in sizes.items():
            if size and min(size) < spec.min_size:
                raise at(
                    key,
                    f"{list(size)} is too small for {spec.name}: "
                    f"at least {spec.min_size}x{spec.min_size}",
                )
        return self

    # --- views the stages use -----------------------------------------------------------------

    @property
    def source(self) -> str:
        """The file this config came from, for messages."""
        return self._source

    @property
    def image_size(self) -> tuple[int, int]:
        """The target task's image size: as configured, else the base's default."""
        return self.data.image_size or (BASES[self.model.base].default_size,) * 2

    @property
    def run_dir(self) -> Path:
        return self.output_dir / self.name

    @property
    def cache_path(self) -> Path:
        """Where decoded images and cached features go: `cache_dir`, else the run's own."""
        return self.cache_dir or RunDir(self.run_dir).cache_dir

    def stage_data(self, stage: str) -> DataConfig:
        """The data a stage trains on: `data`, with `pretrain.data` laid over it for pretrain.

        When `pretrain.data` names its own `train_dir`, the split keys of `data` describe another
        dataset and are not inherited.
        """
        if stage != "pretrain" or self.pretrain is None:
            return self.data
        override = self.pretrain.data.model_dump(exclude_none=True)
        merged = self.data.model_dump()
        if "train_dir" in override:
            for key in ("val_dir", "val_split", "test_dir", "test_split"):
                merged[key] = None
        merged.update(override)
        if merged.get("image_size") is None:
            merged["image_size"] = self.image_size
        return DataConfig.model_validate(merged)

    def defined_stages(self) -> list[str]:
        """The training stages `tlcli run` runs, in order: finetune always, others when present."""
        return [s for s in STAGES if s == "finetune" or getattr(self, s) is not None]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)
