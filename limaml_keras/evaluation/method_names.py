"""Names of the compared methods (no TensorFlow import: the CLI lists them in `--help`).

What each method is: `limaml_keras.evaluation.methods`.
"""

METHODS = ("global", "id_embedding", "fine_tune", "limaml_first_order", "limaml")
#: The model each method trains; `fine_tune` reuses the trained `global` model.
TRAINED_AS = {"global": "global", "id_embedding": "id_embedding", "fine_tune": "global",
              "limaml_first_order": "limaml_first_order", "limaml": "limaml"}
