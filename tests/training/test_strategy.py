import pytest
import tensorflow as tf

from massivetext_tf.training.strategy import get_strategy, xla_supported


def test_unknown_strategy_lists_the_valid_ones():
    with pytest.raises(ValueError, match="one_device, mirrored, multi_worker_mirrored, tpu"):
        get_strategy("horovod")


def test_missing_devices_fail_at_once_with_what_was_found():
    assert not tf.config.list_logical_devices("GPU")
    with pytest.raises(RuntimeError, match=r"asked for 2 GPUs \(GPU:0,GPU:1\), found: CPU:0"):
        get_strategy("mirrored", devices="GPU:0,GPU:1")
    with pytest.raises(RuntimeError, match="asked for 1 CPUs .*found: CPU:0"):
        get_strategy("one_device", devices="CPU:7")
    with pytest.raises(ValueError, match="cannot parse device"):
        get_strategy("mirrored", devices="gpu-zero")
    with pytest.raises(RuntimeError, match="asked for a TPU"):
        get_strategy("tpu", tpu="local")


def test_one_device_defaults_to_cpu_and_runs_xla():
    s = get_strategy("one_device")
    assert isinstance(s, tf.distribute.OneDeviceStrategy)
    assert s.num_replicas_in_sync == 1
    assert xla_supported(s) == (True, "")
    m = get_strategy("mirrored")  # no GPU: one CPU replica
    assert m.num_replicas_in_sync == 1 and xla_supported(m)[0]


def test_from_config_builds_the_runtime_sections_strategy():
    from massivetext_tf.training.config import RuntimeConfig
    from massivetext_tf.training.strategy import from_config

    s = from_config(RuntimeConfig(strategy="one_device", devices="CPU:0"))
    assert isinstance(s, tf.distribute.OneDeviceStrategy)
    assert s.extended.worker_devices[0].endswith("CPU:0")
    with pytest.raises(RuntimeError, match="asked for 1 CPUs .*found: CPU:0"):
        from_config(RuntimeConfig(strategy="one_device", devices="CPU:7"))
