"""Plain Keras transfer learning: the baseline the transfer and quality suites run tlcli against.

Standalone on purpose (no tlcli import): it is what a user following the Keras transfer-learning
guide (https://keras.io/guides/transfer_learning/, "An end-to-end example") would write.

    python -m benchmarks.plain_keras --data sample_data/target --base vgg16 --weights none \\
        --image-size 64 --epochs 5 --unfreeze-epochs 2 --from-block block5 --output plain.json

The recipe, stage by stage:

1. Data: `keras.utils.image_dataset_from_directory` per split (what the guide suggests for a
   folder of images; train shuffled with the seed, val/test in order), then
   `.cache().prefetch(AUTOTUNE)`, as the guide does after resizing (`.cache().batch()
   .prefetch()`; this utility batches already): decoded, resized images stay in memory after
   the first epoch, and later epochs replay the first epoch's order (the cache sits after the
   shuffle, as in the guide). The current guide augments in the data pipeline before caching,
   which freezes the first epoch's random draw; we augment in the model, as the guide's earlier
   version did, so that every epoch sees new augmentations.
2. Model: Input -> [RandomFlip + RandomZoom with --augment] -> the base's own preprocessing
   (Rescaling to [-1, 1] for "tf"-mode bases, as the guide does; otherwise the application's
   `preprocess_input` in a Lambda) -> base(training=False) -> GlobalAveragePooling2D ->
   Dropout(0.2) -> Dense(num_classes, softmax). Softmax + categorical cross-entropy, as tlcli.
3. Finetune: base frozen, Adam(1e-3), --epochs epochs.
4. Unfreeze: the same top layers tlcli unfreezes (from a block, or the top N layers), with
   BatchNormalization layers kept frozen (tlcli's default, and what the guide advises);
   recompile with Adam(--unfreeze-lr, default 1e-5), --unfreeze-epochs epochs.
5. Test accuracy after each stage when the data has a test/ split.

The JSON written to --output holds wall-clock timestamps (time.time()) of every step, so the
parent can relate them to the moment it launched this process, plus each stage's validation
and test accuracy and the number of base layers with weights that the unfreeze stage trains.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import keras

# name -> (keras.applications constructor, module holding preprocess_input, preprocessing mode)
BASES = {
    "vgg16": ("VGG16", "vgg16", "caffe"),
    "vgg19": ("VGG19", "vgg19", "caffe"),
    "resnet50": ("ResNet50", "resnet50", "caffe"),
    "resnet101": ("ResNet101", "resnet", "caffe"),
    "resnet152": ("ResNet152", "resnet", "caffe"),
    "mobilenet_v2": ("MobileNetV2", "mobilenet_v2", "tf"),
    "efficientnet_b0": ("EfficientNetB0", "efficientnet", "none"),
    "densenet121": ("DenseNet121", "densenet", "torch"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with train/ val/ [test/]")
    parser.add_argument("--base", choices=sorted(BASES), default="vgg16")
    parser.add_argument("--weights", default="none", help="none | imagenet | path to a .h5 file")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=5, help="frozen-base epochs")
    parser.add_argument("--unfreeze-epochs", type=int, default=2)
    unfreeze = parser.add_mutually_exclusive_group(required=True)
    unfreeze.add_argument("--from-block", help="unfreeze from this block, e.g. block5")
    unfreeze.add_argument("--top-layers", type=int, help="unfreeze the top N layers of the base")
    parser.add_argument("--augment", action="store_true", help="random horizontal flip + zoom")
    parser.add_argument("--zoom", type=float, default=0.1, help="zoom in or out by up to this")
    parser.add_argument("--unfreeze-lr", type=float, default=1e-5, help="unfreeze stage's rate")
    parser.add_argument("--f1", action="store_true", help="also the test split's macro F1")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", type=Path, required=True, help="JSON result file")
    return parser.parse_args(argv)


# --------------------------------------------------------------------------------------- data


def load_split(
    folder: Path, image_size: int, batch_size: int, *, class_names=None, shuffle=False, seed=0
):
    """A split decoded, resized and batched by Keras (it has .class_names and .file_paths)."""
    return keras.utils.image_dataset_from_directory(
        folder,
        label_mode="categorical",
        class_names=class_names,
        image_size=(image_size, image_size),
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        verbose=False,
    )


def load_splits(args: argparse.Namespace) -> tuple[dict, list[str], dict[str, int]]:
    """train, val and (when the folder exists) test, fed as the guide does; classes; counts."""
    size, batch = args.image_size, args.batch_size
    train = load_split(args.data / "train", size, batch, shuffle=True, seed=args.seed)
    raw = {"train": train}
    for name in ("val", "test"):
        if (args.data / name).is_dir():
            raw[name] = load_split(args.data / name, size, batch, class_names=train.class_names)
    splits = {name: dataset.cache().prefetch(buffer_size=-1) for name, dataset in raw.items()}
    counts = {name: len(dataset.file_paths) for name, dataset in raw.items()}
    return splits, train.class_names, counts


# -------------------------------------------------------------------------------------- model


def build_base(base_name: str, image_size: int, weights: str) -> keras.Model:
    constructor = getattr(keras.applications, BASES[base_name][0])
    return constructor(
        include_top=False,
        weights=None if weights == "none" else weights,
        input_shape=(image_size, image_size, 3),
    )


def preprocessing(base_name: str) -> list[keras.layers.Layer]:
    """The base's preprocess_input: Rescaling for "tf" mode (as the guide), else a Lambda."""
    _, module, mode = BASES[base_name]
    if mode == "tf":
        return [keras.layers.Rescaling(1 / 127.5, offset=-1.0)]
    if mode == "none":
        return []
    preprocess_input = getattr(keras.applications, module).preprocess_input
    return [keras.layers.Lambda(preprocess_input)]


def augmentation(zoom: float, seed: int) -> list[keras.layers.Layer]:
    """tlcli's `augment: {flip: horizontal, zoom: Z}`, as layers of the model."""
    return [
        keras.layers.RandomFlip("horizontal", seed=seed),
        keras.layers.RandomZoom((-zoom, zoom), seed=seed + 1),
    ]


def build_classifier(
    base: keras.Model, base_name: str, num_classes: int, augment: list[keras.layers.Layer]
) -> keras.Model:
    """Input -> [augmentation] -> preprocessing -> base(training=False) -> pool -> head."""
    inputs = keras.Input(base.input_shape[1:])
    x = inputs
    for layer in [*augment, *preprocessing(base_name)]:
        x = layer(x)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def feature_extractor(base_name: str, image_size: int, weights: str) -> keras.Model:
    """preprocessing -> base -> pooling: what the frozen stage recomputes every epoch."""
    base = build_base(base_name, image_size, weights)
    inputs = keras.Input(base.input_shape[1:])
    x = inputs
    for layer in preprocessing(base_name):
        x = layer(x)
    outputs = keras.layers.GlobalAveragePooling2D()(base(x, training=False))
    return keras.Model(inputs, outputs)


def first_unfrozen(base: keras.Model, from_block: str | None, top_layers: int | None) -> int:
    """Index of the first base layer to train; the same rule as tlcli's `unfreeze_top`."""
    names = [layer.name for layer in base.layers]
    if top_layers is not None:
        return max(0, len(names) - top_layers)
    for index, name in enumerate(names):
        rest = name[len(from_block) :] if name.startswith(from_block) else None
        if rest is not None and (rest == "" or not rest[0].isdigit()):
            return index
    raise SystemExit(f"no block '{from_block}' in {base.name}")


def unfreeze_top(base: keras.Model, start: int) -> int:
    """Train base layers from `start` up, BatchNormalization excepted; returns how many train."""
    base.trainable = True
    for index, layer in enumerate(base.layers):
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = index >= start and not is_bn
    return sum(1 for layer in base.layers if layer.trainable and layer.weights)


def compile_model(model: keras.Model, learning_rate: float) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.CategoricalCrossentropy(),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )


# ----------------------------------------------------------------------------------- training


class StageClock(keras.callbacks.Callback):
    """time.time() when the first training batch starts, and the wall time of every epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.first_batch_at: float | None = None
        self.epoch_seconds: list[float] = []
        self._epoch_start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if self.first_batch_at is None:
            self.first_batch_at = time.time()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch_seconds.append(time.perf_counter() - self._epoch_start)


def fit_stage(model: keras.Model, splits: dict, epochs: int) -> dict:
    """fit() with wall-clock timestamps around it and the last epoch's validation accuracy."""
    clock = StageClock()
    fit_start = time.time()
    history = model.fit(
        splits["train"],
        validation_data=splits.get("val"),
        epochs=epochs,
        callbacks=[clock],
        verbose=2,  # one line per epoch, as tlcli prints when its output is not a terminal
    )
    fit_end = time.time()
    val_accuracy = history.history.get("val_accuracy", [None])[-1]
    return {
        "fit_start": fit_start,
        "first_batch_at": clock.first_batch_at,
        "fit_end": fit_end,
        "fit_seconds": fit_end - fit_start,
        "epoch_seconds": clock.epoch_seconds,
        "val_accuracy": None if val_accuracy is None else float(val_accuracy),
    }


def test_stage(model: keras.Model, splits: dict, f1: bool = False) -> dict:
    """Test accuracy (and macro F1) and how long it took; nothing when there is no test split."""
    if "test" not in splits:
        return {}
    started = time.time()
    _, accuracy = model.evaluate(splits["test"], verbose=0)
    ended = time.time()
    result = {"test_accuracy": float(accuracy), "eval_seconds": ended - started, "eval_end": ended}
    if f1:
        result["test_f1_macro"] = macro_f1(model, splits["test"])
    return result


def macro_f1(model: keras.Model, dataset) -> float:
    """The mean over classes of F1 (a class never predicted nor present counts 0, as sklearn)."""
    import numpy as np

    true, predicted = [], []
    for images, labels in dataset:
        true.append(np.argmax(labels, 1))
        predicted.append(np.argmax(model.predict_on_batch(images), 1))
    true, predicted = np.concatenate(true), np.concatenate(predicted)
    scores = []
    for label in range(int(model.output_shape[-1])):
        hits = np.sum((predicted == label) & (true == label))
        total = np.sum(predicted == label) + np.sum(true == label)
        scores.append(2 * hits / total if total else 0.0)
    return float(np.mean(scores))


def main(argv: list[str] | None = None) -> None:
    ready_at = time.time()  # the imports (TensorFlow, Keras) are done
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    splits, classes, counts = load_splits(args)

    base = build_base(args.base, args.image_size, args.weights)
    base.trainable = False
    augment = augmentation(args.zoom, args.seed) if args.augment else []
    model = build_classifier(base, args.base, len(classes), augment)
    model_built_at = time.time()

    compile_model(model, 1e-3)
    finetune = fit_stage(model, splits, args.epochs)
    finetune.update(test_stage(model, splits, args.f1))

    unfreeze_start = time.time()
    start = first_unfrozen(base, args.from_block, args.top_layers)
    trained_layers = unfreeze_top(base, start)
    compile_model(model, args.unfreeze_lr)  # recompile after changing `trainable` (the guide)
    unfreeze = {"start": unfreeze_start, **fit_stage(model, splits, args.unfreeze_epochs)}
    unfreeze.update(test_stage(model, splits, args.f1))

    result = {
        "tool": "plain_keras",
        "ready_at": ready_at,
        "model_built_at": model_built_at,
        "classes": classes,
        "images": counts,
        "trained_layers": trained_layers,
        "stages": {"finetune": finetune, "unfreeze": unfreeze},
        "end_at": time.time(),
    }
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
