"""How the computation runs: starting TensorFlow, tf.distribute, mixed precision, and guarded
patches of Keras internals.

    startup.py        import TensorFlow once, quietly; seeds; logical CPU devices
    distribute.py     the run's strategy, the chief, where other workers write, barriers
    precision.py      the Keras dtype policy a model is built or loaded under
    scope.py          `model_scope` (strategy + policy) and a description of the runtime
    keras_patches.py  multi-worker fixes of Keras' private trainer, checked before applied

May import: `tlcli.config`, the root helpers, TensorFlow and Keras (lazily where it can).
"""
