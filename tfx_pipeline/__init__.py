"""The LiMAML TFX pipeline: raw interactions in, a TF Serving model out.

    CsvExampleGen (time-split input) -> StatisticsGen -> SchemaGen
    -> ExampleValidator -> AnomaliesGate -> Transform -> TaskGen
    -> Trainer (LiMAML) [+ Trainer (global baseline)] -> Pusher

`pipeline.create_pipeline` builds it; `local_runner` runs it on this machine,
`kubeflow_v2_runner` compiles it for Kubeflow Pipelines, and `cli` wires both
into the `limaml pipeline` command.
"""
import os

# TFRS and TFT are Keras-2 libraries (see limaml_keras).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
