"""tlcli: transfer learning for image classifiers, driven by one YAML config.

Every stage is a plain function as well as a command::

    from tlcli.config import load_config
    from tlcli import stages

    cfg = load_config("configs/quickstart.yaml")
    stages.run_all(cfg)
"""

__version__ = "0.1.0"
