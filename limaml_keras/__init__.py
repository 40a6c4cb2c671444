"""LiMAML for Keras: meta-learned per-member personalisation of deep rankers.

The models and layers are importable from the package itself::

    from limaml_keras import LiMAMLModel, MetaBlock, GlobalBlock

They load lazily (PEP 562), so `import limaml_keras.schema` and the CLI's
argument parsing do not import TensorFlow.
"""
import os

from limaml_keras import lazy_names

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

#: Public name -> the module that defines it.
_LAZY = {
    "LiMAMLModel": "limaml_keras.model",
    "GlobalModel": "limaml_keras.model",
    "IdEmbeddingModel": "limaml_keras.model",
    "PersonalizedRanker": "limaml_keras.model",
    "MetaBlock": "limaml_keras.layers",
    "GlobalBlock": "limaml_keras.layers",
    "build_tasks": "limaml_keras.tasks",
    "Tasks": "limaml_keras.tasks",
    "FeatureSpec": "limaml_keras.schema",
}

__all__ = sorted(_LAZY)
__getattr__ = lazy_names.module_getattr(__name__, _LAZY)
