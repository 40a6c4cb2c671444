"""Names of the evaluation protocols (no TensorFlow import: the CLI lists them in `--help`).

What each protocol is: `limaml_keras.evaluation.protocol`.

* `time`: one global cutoff (production-like).
* `member`: each member's latest interactions are query, earlier ones are
  training data and support (every member seen in training).
* `member-heldout`: the `member` split with a seeded share of members kept out
  of training; only those held-out members are scored.
"""

PROTOCOLS = ("time", "member", "member-heldout")
