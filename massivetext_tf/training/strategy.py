"""One string-to-strategy factory, in the spirit of Model Garden's `distribute_utils`.

    strategy = from_config(cfg.runtime)   # what training, fine-tuning, evaluation and tuning use
    strategy = get_strategy("one_device")                       # CPU:0, or GPU:0 if present
    strategy = get_strategy("one_device", devices="CPU:0")
    strategy = get_strategy("mirrored", devices="GPU:0,GPU:1")   # default: every local GPU
    strategy = get_strategy("multi_worker_mirrored")             # cluster from TF_CONFIG
    strategy = get_strategy("tpu", tpu="my-tpu")                 # or "local", or grpc://host:8470

A device that is asked for but not present fails at once with a message that lists what was
found, e.g. ``asked for 2 GPUs (GPU:0,GPU:1), found: CPU:0``.
"""
from __future__ import annotations

import json
import logging
import os
import re

import tensorflow as tf

log = logging.getLogger(__name__)

from massivetext_tf.training.names import STRATEGIES  # noqa: E402,F401  (re-exported)

_DEVICE_RE = re.compile(r"^(?:/?(?:job:\w+/)?(?:replica:\d+/)?(?:task:\d+/)?device:)?([A-Za-z_]+):(\d+)$")


def _parse_devices(devices) -> list[str]:
    """'GPU:0,GPU:1' or ['/gpu:0', 'GPU:1'] -> ['GPU:0', 'GPU:1'] (kind upper-cased)."""
    if devices is None:
        return []
    if isinstance(devices, str):
        devices = [d for d in devices.split(",") if d.strip()]
    out = []
    for raw in devices:
        m = _DEVICE_RE.match(str(raw).strip())
        if not m:
            raise ValueError(
                f"--devices: cannot parse device {raw!r}; expected names like CPU:0 or GPU:1"
            )
        out.append(f"{m.group(1).upper()}:{int(m.group(2))}")
    return out


def local_devices() -> list[str]:
    """Logical devices of this process as 'KIND:index' (e.g. ['CPU:0', 'CPU:1', 'GPU:0'])."""
    found = []
    for kind in ("CPU", "GPU", "TPU"):
        for i, _ in enumerate(tf.config.list_logical_devices(kind)):
            found.append(f"{kind}:{i}")
    return found


def _check_present(asked: list[str]) -> None:
    found = local_devices()
    missing = [d for d in asked if d not in found]
    if missing:
        kinds = sorted({d.split(":")[0] for d in asked})
        what = " and ".join(
            f"{sum(d.startswith(k + ':') for d in asked)} {k}s" for k in kinds
        )
        raise RuntimeError(
            f"asked for {what} ({','.join(asked)}), found: {', '.join(found) or 'nothing'}"
            f" (missing: {','.join(missing)})"
        )


def _configure_coordination(heartbeat_timeout_s: float | None) -> None:
    """Bounded failure detection for multi-worker runs.

    MultiWorkerMirroredStrategy starts TF's coordination service (leader: the chief, or worker 0)
    with its own defaults unless one is already configured. We configure it first so that every
    task sends heartbeats and a task that stops heart-beating for `heartbeat_timeout_s` is
    declared dead: the service then propagates an error to the surviving tasks, which aborts
    their pending collectives instead of hanging forever. There is no public API for this in
    TF 2.20/2.21; `context.configure_coordination_service` is what the strategy itself calls.
    """
    if not heartbeat_timeout_s:
        return
    try:
        from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
        from tensorflow.python.distribute import multi_worker_util
        from tensorflow.python.eager import context
    except ImportError:  # pragma: no cover - layout of a future TF
        log.warning("cannot configure the coordination service on this TF version")
        return
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    spec = resolver.cluster_spec()
    if not spec.as_dict() or context.context().coordination_service is not None:
        return
    jobs = [
        coordination_config_pb2.CoordinatedJob(name=j, num_tasks=spec.num_tasks(j))
        for j in ("chief", "worker")
        if j in spec.jobs
    ]
    context.context().configure_coordination_service(
        service_type="standalone",
        service_leader=multi_worker_util.coordination_leader(spec),
        coordinated_jobs=jobs,
        heartbeat_timeout_in_ms=int(heartbeat_timeout_s * 1000),
    )


def get_strategy(
    name: str,
    *,
    tpu: str | None = None,
    devices=None,
    collective_timeout_s: float | None = None,
    heartbeat_timeout_s: float | None = None,
) -> tf.distribute.Strategy:
    """Builds a `tf.distribute.Strategy` from its name.

    Args:
        name: one of `one_device`, `mirrored`, `multi_worker_mirrored`, `tpu`.
        tpu: TPU name or address for `tpu` (`local` on a TPU VM; default: `local`).
        devices: `one_device`: one device ("CPU:0", "GPU:0"; default GPU:0 if any, else
            CPU:0). `mirrored`: a comma-separated list or a list (default: every GPU, or CPU:0).
        collective_timeout_s: `multi_worker_mirrored`: abort a collective that waits longer.
        heartbeat_timeout_s: `multi_worker_mirrored`: declare a silent worker dead after this.

    Raises:
        ValueError: unknown name or unparsable device.
        RuntimeError: a requested device is not present (the message lists those found).
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; valid: {', '.join(STRATEGIES)}")
    asked = _parse_devices(devices)

    if name == "one_device":
        if len(asked) > 1:
            raise ValueError(f"one_device takes one device, got {','.join(asked)}")
        if not asked:
            asked = ["GPU:0"] if tf.config.list_logical_devices("GPU") else ["CPU:0"]
        _check_present(asked)
        return tf.distribute.OneDeviceStrategy(f"/{asked[0].lower()}")

    if name == "mirrored":
        if not asked:
            gpus = tf.config.list_logical_devices("GPU")
            asked = [f"GPU:{i}" for i in range(len(gpus))] or ["CPU:0"]
        _check_present(asked)
        return tf.distribute.MirroredStrategy([f"/{d.lower()}" for d in asked])

    if name == "multi_worker_mirrored":
        if "TF_CONFIG" not in os.environ:
            log.warning("multi_worker_mirrored without TF_CONFIG: running as a single worker")
        else:
            try:
                json.loads(os.environ["TF_CONFIG"])
            except json.JSONDecodeError as e:
                raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from None
        if asked:
            _check_present(asked)
        _configure_coordination(heartbeat_timeout_s)
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.AUTO,
            timeout_seconds=collective_timeout_s,
        )
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)

    # tpu
    if asked:
        raise ValueError("--devices does not apply to the tpu strategy; use --tpu")
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "local")
        if (tpu or "local") != "local":
            tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as e:
        raise RuntimeError(
            f"asked for a TPU ({tpu or 'local'}), found: {', '.join(local_devices())} ({e})"
        ) from None
    return tf.distribute.TPUStrategy(resolver)


def from_config(runtime) -> tf.distribute.Strategy:
    """The strategy of a `RuntimeConfig` (strategy, devices, tpu and the multi-worker
    timeouts): the one place a run's strategy is built from its config."""
    return get_strategy(
        runtime.strategy, tpu=runtime.tpu, devices=runtime.devices,
        collective_timeout_s=runtime.collective_timeout_s,
        heartbeat_timeout_s=runtime.heartbeat_timeout_s,
    )


def strategy_name(strategy: tf.distribute.Strategy) -> str:
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "tpu"
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "multi_worker_mirrored"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "mirrored"
    return "one_device"


def device_kind(strategy: tf.distribute.Strategy) -> str:
    """'TPU', 'GPU' or 'CPU': the kind of device the replicas run on."""
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "TPU"
    devs = list(strategy.extended.worker_devices)
    return "GPU" if devs and all("GPU" in d.upper() for d in devs) else "CPU"


def xla_supported(strategy: tf.distribute.Strategy) -> tuple[bool, str]:
    """Whether `strategy.run` of a `jit_compile=True` step works here, and why not if not.

    MirroredStrategy over several CPU devices cannot run XLA-compiled steps in TF 2.20/2.21
    (the in-process CPU collectives have no XLA lowering); everything else can.
    """
    if (
        isinstance(strategy, tf.distribute.MirroredStrategy)
        and not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        and strategy.num_replicas_in_sync > 1
        and device_kind(strategy) == "CPU"
    ):
        return False, (
            "MirroredStrategy over several CPU devices cannot run jit_compile=True steps "
            "(no XLA lowering of in-process CPU collectives)"
        )
    return True, ""


def set_logical_cpus(n: int) -> None:
    """Splits the host CPU into `n` logical devices (tests, CPU demos). Call before TF starts."""
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
    )
