"""The network: a keras.applications base with preprocessing and a new head, its weights,
freezing and unfreezing, optimizers.

    network.py     build the classifier network (preprocessing -> base -> pooling -> head)
    weights.py     the base's starting weights: imagenet, none, a file, another run
    freezing.py    freeze the base; unfreeze its top (BatchNorm stays in inference mode)
    optimizers.py  optimizers, learning-rate schedules, compiling a stage
    output_layer.py  the softmax output layer: scale its logits (temperature), keep and restore it
    tta.py         flip test-time augmentation inside the saved network; strip it to train on

May import: `tlcli.config`, the root helpers, Keras. Never `tlcli.data`.
"""
