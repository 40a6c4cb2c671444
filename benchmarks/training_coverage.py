"""Share of training-period interactions that reach the Trainer, before and after windowing.

Prints one JSON object. The data (a raw-schema CSV and its `features.json`)
are split at the pipeline's cutoff (`limaml_keras.task_settings.cutoff_time`,
latest `EVAL_FRACTION` = evaluation period) and preprocessed on the training
period with `limaml_keras.preprocessing.Preprocessor`. Then, over the same
training-period rows:

* `before`: the former TaskGen rule, one capped task per member (the
  earliest half as support capped to its latest 20, the rest as query capped
  to its earliest 20; members with fewer than 2 interactions dropped), i.e.
  `build_tasks(support_fraction=0.5, max_support=20, max_query=20,
  min_interactions=2)`;
* `after`: what TaskGen's DoFn emits now: `task_gen.train_tasks` called per
  member on TaskGen's per-interaction layout (the library's
  `limaml_keras.tasks.training_tasks`, windows of `TaskSettings.window`).

Usage: python -m benchmarks.training_coverage CSV [SPEC_JSON]
"""

import json
import os
import sys

import numpy as np

from limaml_keras import schema
from limaml_keras import task_settings
from limaml_keras import tasks as tasks_lib
from limaml_keras import tensor_layout
from limaml_keras.preprocessing import Preprocessor, read_raw_csv_frame
from tfx_pipeline.components import task_gen

_MATRIX_KEYS = (tensor_layout.MEMBER_FEATURES, tensor_layout.ITEM_FEATURES,
                tensor_layout.CONTEXT_FEATURES)


def _per_member(train):
  """{member key: [interaction dicts in TaskGen's `parse_interaction` layout]}."""
  members = {}
  for row in range(len(train[tensor_layout.LABEL])):
    interaction = {k: (train[k][row] if k in _MATRIX_KEYS else np.asarray([train[k][row]]))
                   for k in task_gen._FLOAT_KEYS + task_gen._INT_KEYS}  # pylint: disable=protected-access
    members.setdefault(str(train[tensor_layout.MEMBER_KEY][row]).encode(), []).append(interaction)
  return members


def main(csv_path: str, spec_path: str) -> dict:
  spec = schema.load_spec(spec_path)
  frame = read_raw_csv_frame(csv_path, spec, as_of=2**62)
  cutoff = task_settings.cutoff_time(frame[schema.TIMESTAMP_COLUMN].to_numpy())
  before_cutoff = frame[frame[schema.TIMESTAMP_COLUMN].to_numpy() < cutoff]
  train = Preprocessor(spec).fit(before_cutoff).transform(before_cutoff)
  total = len(train[tensor_layout.LABEL])
  old = tasks_lib.build_tasks(train, support_fraction=0.5, max_support=20, max_query=20,
                              min_interactions=2)
  settings = task_settings.DEFAULTS
  emitted_tasks = emitted = 0
  for key, interactions in _per_member(train).items():
    for tasks in task_gen.train_tasks(key, interactions, settings):
      emitted_tasks += len(tasks)
      emitted += int(tasks.support_sizes.sum() + tasks.query_sizes.sum())
  library = tasks_lib.training_tasks(train, settings)
  return {
      "data": os.path.basename(csv_path),
      "training_period_interactions": total,
      "members": int(len(set(train[tensor_layout.MEMBER_KEY]))),
      "before": {"tasks": len(old),
                 "interactions": int(old.support_sizes.sum() + old.query_sizes.sum()),
                 "share": round(float(old.support_sizes.sum() + old.query_sizes.sum()) / total, 4)},
      "after": {"tasks": emitted_tasks, "interactions": emitted,
                "share": round(emitted / total, 4), "settings": settings.__dict__,
                "library_training_tasks_interactions": int(
                    library.support_sizes.sum() + library.query_sizes.sum())},
  }


if __name__ == "__main__":
  path = sys.argv[1]
  spec_file = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(path),
                                                                   schema.SPEC_FILE_NAME)
  print(json.dumps(main(path, spec_file)))
