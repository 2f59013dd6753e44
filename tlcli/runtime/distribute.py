"""tf.distribute for a run: which strategy trains, which process is the chief, where the other
workers write, and how the workers wait for each other.

`run.distribution`:

    auto          MirroredStrategy when this machine sees two or more GPUs, else the default
    none          the default strategy (one device)
    mirrored      MirroredStrategy over every GPU here (over every logical CPU device when there
                  is no GPU: see TLCLI_CPU_DEVICES in startup.py)
    multi_worker  MultiWorkerMirroredStrategy; the cluster comes from the TF_CONFIG variable
    tpu           TPUStrategy; the address comes from `run.tpu`, else TPU_NAME

One strategy per process, created before any other TensorFlow work: MultiWorkerMirroredStrategy
configures the runtime's collective ops, which TensorFlow allows only at start-up
(tensorflow/python/eager/context.py, `configure_collective_ops`), and a TPU system is initialised
once. `data.batch_size` is the global batch: Keras passes the tf.data pipeline to
`strategy.experimental_distribute_dataset`, which splits every batch across the replicas
(keras/src/backend/tensorflow/trainer.py, TFEpochIterator).

Multi-worker runs need a run directory every worker sees (a shared file system). The chief
(task `chief`, else `worker` 0, as tf.distribute decides) writes the run's files; the others run
every step the chief runs, including saves (a save may read variables across workers), and write
to a throwaway folder instead (`write_path`), as the Keras multi-worker guide does.

>>> strategy = start_distribution(RunConfig(distribution="none"))
>>> strategy.num_replicas_in_sync, is_chief(), write_path(Path("/runs/demo/finetune"))
(1, True, PosixPath('/runs/demo/finetune'))
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlcli.config import RunConfig
from tlcli.errors import ConfigError, RunError

# These strategies change the TensorFlow runtime itself: at most one of them per process.
ONCE_PER_PROCESS = ("multi_worker", "tpu")
TF_CONFIG_EXAMPLE = (
    'TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
    '"task": {"type": "worker", "index": 0}}\''
)


@dataclass
class Started:
    """The strategy this process trains with, and this process's place in the cluster."""

    key: tuple[str, str | None]  # (run.distribution, run.tpu) it was created for
    kind: str  # the resolved choice: none, mirrored, multi_worker or tpu
    strategy: Any
    name: str
    workers: int = 1
    chief: bool = True


_started: Started | None = None
_scratch: Path | None = None


def start_distribution(run: RunConfig):
    """Create the run's strategy once per process (later calls return it); returns the strategy."""
    global _started
    key = (run.distribution, run.tpu)
    if _started is not None:
        if _started.key == key:
            return _started.strategy
        if _started.kind in ONCE_PER_PROCESS or run.distribution in ONCE_PER_PROCESS:
            raise RunError(
                f"this process already trains with {_started.name}; run.distribution "
                f"{run.distribution} needs a new process (one tlcli command per setting)"
            )
    _started = _create(run)
    return _started.strategy


def is_chief() -> bool:
    """Whether this process writes the run's files: always, unless it is a non-chief worker."""
    return _started is None or _started.chief


def is_multi_worker() -> bool:
    """Whether this process trains together with other processes (workers > 1)."""
    return _started is not None and _started.kind == "multi_worker" and _started.workers > 1


def write_path(path: Path) -> Path:
    """Where this process writes what belongs at `path`: `path` on the chief, else a temp copy
    (`/tmp/tlcli-worker-1a2b/runs/demo/finetune` for `/runs/demo/finetune`)."""
    if is_chief():
        return path
    return _scratch_dir().joinpath(*Path(path).absolute().parts[1:])


def wait_for_workers() -> None:
    """Block until every worker gets here (no-op without multi-worker): a barrier."""
    gather_from_workers(0)


def same_on_all_workers(value: int, what: str) -> int:
    """Check that every worker holds the same `value`; RunError naming `what` if not."""
    values = sorted(set(gather_from_workers(value)))
    if len(values) > 1:
        raise RunError(
            f"the workers disagree on {what} ({values}): every worker must see the same run "
            "directory, on a file system they share"
        )
    return value


def gather_from_workers(value: int) -> list[int]:
    """`value` from every replica of every worker; just [value] without multi-worker."""
    if _started is None or _started.kind != "multi_worker":
        return [value]
    import tensorflow as tf  # on call: prepare and `tlcli report` import this module without it

    strategy = _started.strategy

    @tf.function  # collectives run as a graph; eager ones work but warn of overhead
    def gather():
        per_replica = strategy.run(lambda: tf.constant([value], tf.int64))
        return strategy.gather(per_replica, axis=0)

    return [int(v) for v in gather().numpy()]


def describe() -> dict[str, Any]:
    """Strategy name, replicas in sync, workers: for stage.json and the console."""
    if _started is None:
        return {"strategy": "default", "replicas": 1, "workers": 1}
    return {
        "strategy": _started.name,
        "replicas": int(_started.strategy.num_replicas_in_sync),
        "workers": _started.workers,
    }


# ----------------------------------------------------------------------------------- creating


def _create(run: RunConfig) -> Started:
    import tensorflow as tf  # on call: prepare and `tlcli report` import this module without it

    key = (run.distribution, run.tpu)
    kind = run.distribution
    if kind == "auto":
        kind = "mirrored" if len(tf.config.list_physical_devices("GPU")) > 1 else "none"
    if kind == "none":
        return Started(key, kind, tf.distribute.get_strategy(), "default")
    if kind == "mirrored":
        strategy = tf.distribute.MirroredStrategy(_local_devices())
        return Started(key, kind, strategy, "MirroredStrategy")
    if kind == "multi_worker":
        return _multi_worker(key)
    return _tpu(key, run.tpu)


def _local_devices() -> list[str]:
    """Every GPU; without one, every logical CPU device (MirroredStrategy would take one CPU)."""
    import tensorflow as tf  # on call: prepare and `tlcli report` import this module without it

    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return [device.name for device in devices]


def _multi_worker(key: tuple[str, str | None]) -> Started:
    import tensorflow as tf  # on call: prepare and `tlcli report` import this module without it

    from tlcli.runtime import keras_patches

    cluster, (task_type, index) = read_tf_config(os.environ.get("TF_CONFIG"))
    keras_patches.install_multi_worker_fixes()
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    except RuntimeError as exc:
        raise RunError(
            "run.distribution is multi_worker, but TensorFlow was already running in this "
            f"process ({exc}); start each worker as a fresh `tlcli` process"
        ) from None
    workers = sum(len(addresses) for addresses in cluster.values())
    chief = is_chief_task(cluster, task_type, index)
    return Started(key, "multi_worker", strategy, "MultiWorkerMirroredStrategy", workers, chief)


def _tpu(key: tuple[str, str | None], address: str | None) -> Started:
    import tensorflow as tf  # on call: prepare and `tlcli report` import this module without it

    where = address or os.environ.get("TPU_NAME")
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunError(
            f"run.distribution is tpu, but no TPU is reachable at {where or '(no address)'}: "
            f"{reason[:200]}. Set run.tpu ('local' on a TPU VM, or grpc://HOST:8470) or "
            "TPU_NAME"
        ) from None
    return Started(key, "tpu", strategy, "TPUStrategy")


# ------------------------------------------------------------------------------------ TF_CONFIG


def read_tf_config(text: str | None) -> tuple[dict[str, list[str]], tuple[str, int]]:
    """Parse and check TF_CONFIG: returns (cluster, (task type, task index)). ConfigError if bad.

    >>> read_tf_config('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", '
    ...                '"index": 1}}')
    ({'worker': ['a:1', 'b:1']}, ('worker', 1))
    """
    if not text or not text.strip():
        raise ConfigError(
            "run.distribution is multi_worker, but TF_CONFIG is not set; set it on every "
            f"worker, e.g. {TF_CONFIG_EXAMPLE} (index 1 on the second); see README, Scaling out"
        )
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"TF_CONFIG is not valid JSON ({exc.msg}); e.g. {TF_CONFIG_EXAMPLE}"
        ) from None
    if not isinstance(parsed, dict):
        raise ConfigError(f"TF_CONFIG must be a JSON object; e.g. {TF_CONFIG_EXAMPLE}")
    cluster = _check_cluster(parsed.get("cluster"))
    return cluster, _check_task(parsed.get("task"), cluster)


def is_chief_task(cluster: dict[str, list[str]], task_type: str, index: int) -> bool:
    """tf.distribute's rule: the `chief` task, or `worker` 0 when the cluster has no chief.

    >>> is_chief_task({"worker": ["a:1", "b:1"]}, "worker", 0)
    True
    """
    if task_type == "chief":
        return True
    return "chief" not in cluster and task_type == "worker" and index == 0


def _check_cluster(cluster: Any) -> dict[str, list[str]]:
    if not isinstance(cluster, dict) or not cluster:
        raise ConfigError(
            f"TF_CONFIG has no cluster (a mapping of job to addresses); e.g. {TF_CONFIG_EXAMPLE}"
        )
    for job, addresses in cluster.items():
        if job not in ("chief", "worker"):
            raise ConfigError(
                f"TF_CONFIG cluster has a '{job}' job; multi_worker training uses 'chief' "
                "(optional, one address) and 'worker' jobs only"
            )
        if not isinstance(addresses, list) or not addresses:
            raise ConfigError(f"TF_CONFIG cluster.{job} must be a list of host:port addresses")
        for address in addresses:
            host, _, port = address.rpartition(":") if isinstance(address, str) else ("", "", "")
            if not host or not port.isdigit():
                raise ConfigError(
                    f"TF_CONFIG cluster.{job}: '{address}' is not a host:port address"
                )
    if len(cluster.get("chief", [])) > 1:
        raise ConfigError("TF_CONFIG cluster.chief must hold one address")
    return cluster


def _check_task(task: Any, cluster: dict[str, list[str]]) -> tuple[str, int]:
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ConfigError(
            'TF_CONFIG needs a task naming this process, e.g. "task": {"type": "worker", '
            '"index": 0}'
        )
    task_type, index = task["type"], task["index"]
    if task_type not in cluster:
        raise ConfigError(
            f"TF_CONFIG task.type '{task_type}' is not a job of the cluster ({', '.join(cluster)})"
        )
    if (
        not isinstance(index, int)
        or isinstance(index, bool)
        or not (0 <= index < len(cluster[task_type]))
    ):
        raise ConfigError(
            f"TF_CONFIG task.index {index!r} is not a position in cluster.{task_type} "
            f"(0 to {len(cluster[task_type]) - 1})"
        )
    return task_type, index


def _scratch_dir() -> Path:
    """A folder for this process's throwaway files, removed when the process exits."""
    global _scratch
    if _scratch is None:
        _scratch = Path(tempfile.mkdtemp(prefix="tlcli-worker-"))
        atexit.register(shutil.rmtree, _scratch, ignore_errors=True)
    return _scratch
