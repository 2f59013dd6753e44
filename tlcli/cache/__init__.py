"""The cache: what tlcli computes once and keeps on disk, shared by runs and processes.

    store.py           entries named by their content, built once across processes (a file
                       lock), kept while in use, removed when stale
    rows.py            the .npy row files entries are kept in, read and written a few rows at
                       a time
    decoded_images.py  every image of a folder decoded once into a uint8 row file; a stage's data
    cut.py             where a network is cut into a frozen bottom and a trainable top
    plan.py            whether a frozen stage trains on cached features, and at which cut
    features.py        the frozen bottom's outputs per split, computed once
    prefix.py          finetune caches the frozen prefix unfreeze trains on: one pass for both
    mirror.py          the bottom's outputs on mirror images, for test-time augmentation
    evaluate_top.py    evaluate after a cached stage: the saved top on the cached features

May import: `tlcli.data`, `tlcli.model`, `tlcli.config`, the root helpers.
"""
