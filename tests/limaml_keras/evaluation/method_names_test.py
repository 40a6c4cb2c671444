"""`method_names`: every method trains as a model the evaluation can build, without TensorFlow."""

import subprocess
import sys

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


def test_importing_the_names_does_not_import_tensorflow():
  code = ("import sys; from limaml_keras.evaluation import method_names; "
          "print('tensorflow' in sys.modules)")
  assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        check=True).stdout.strip() == "False"
