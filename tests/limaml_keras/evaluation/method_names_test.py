"""`method_names`: every method trains as a model the evaluation can build.

That the names load without TensorFlow is `import_direction_test`'s CLI check
(`limaml evaluate` lists them in `--help`).
"""

from limaml_keras import model_config
from limaml_keras.evaluation import method_names, methods


def test_every_method_trains_as_a_known_model():
  assert set(method_names.TRAINED_AS) == set(method_names.METHODS)
  assert len(set(method_names.METHODS)) == len(method_names.METHODS)
  hp = methods.Hyperparameters()
  for method, trained_as in method_names.TRAINED_AS.items():
    config = methods.config_for(trained_as, hp)
    assert config.model in model_config.MODELS, method
    assert config.first_order == trained_as.endswith("first_order"), method
  # Fine-tuning adapts the global model: it trains nothing of its own.
  assert method_names.TRAINED_AS["fine_tune"] == "global"

