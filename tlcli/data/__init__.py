"""Data: from folders of image files to decoded, split, checked arrays and tf.data pipelines.

    images.py       decode one image whatever it holds (odd modes converted, broken skipped)
    folders.py      find the class folders and files; carve val/test splits by hashing paths
    stage_data.py   a stage's data: splits, decoded rows, checks, data_report.json, split.csv
    pipeline.py     tf.data: shuffle, batch, augment, class weights, prefetch
    preflight.py    check a config's datasets without training

May import: `tlcli.config`, the root helpers, NumPy, Pillow, TensorFlow (pipeline.py only).
Never `tlcli.model`: data knows pixels, not networks.
"""
