"""The environment variable that slows ``paced-mlp`` (tests/train/cluster_plugin.py), importable without registering
the plugin's model."""

PACE_ENV = "PROBE_TEST_PACE_S"
