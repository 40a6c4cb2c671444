"""ActivitySlices: tags evaluation-period examples with their member's activity bucket.

TFMA slices by features of the evaluated examples, and the raw interactions
have no member-activity column. This Beam component adds one: it counts each
member's training-period interactions (ExampleGen's `train` split) and writes
the `eval` split again with an extra string feature `member_activity`, the
member's bucket in `limaml_keras.metrics.SEGMENTS` (`0`, `1-5`, `6-20`,
`>20`; members first seen in the evaluation period are `0`, cold start).
The Evaluator reads this artifact and slices on the feature; the models
ignore it (their `tf.io.parse_example` reads only the raw columns they know).

Members are matched by their raw `member_id` as the Transform's `member_key`
renders it (an integer id as its decimal string), and the join is a
`CoGroupByKey`, so it scales with the number of members.
"""

import os
from typing import Iterable, Mapping, Tuple

import apache_beam as beam
import tensorflow as tf
from tfx import v1 as tfx
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils

from limaml_keras import metrics
from limaml_keras import schema

ACTIVITY_FEATURE = "member_activity"
TRAIN_SPLIT = "train"
EVAL_SPLIT = "eval"
_RECORD_PREFIX = "data_tfrecord"
_TRAIN, _EVAL = "train_count", "eval_examples"


def member_key(serialized: bytes) -> bytes:
  """The raw `member_id` of a serialized tf.Example, as a string key.

  Raises:
    ValueError: when the example has no single integer or string `member_id`.
  """
  example = tf.train.Example.FromString(serialized)
  feature = example.features.feature.get(schema.MEMBER_ID_COLUMN)
  if feature is not None and len(feature.bytes_list.value) == 1:
    return feature.bytes_list.value[0]
  if feature is not None and len(feature.int64_list.value) == 1:
    return str(feature.int64_list.value[0]).encode()
  raise ValueError(f"every example needs one integer or string {schema.MEMBER_ID_COLUMN!r}; "
                   f"got {feature if feature is not None else 'none'} in {example}")


def activity_bucket(train_interactions: int) -> str:
  """The member-activity bucket (`metrics.SEGMENTS`) of a training-period interaction count."""
  return str(metrics.segment_of([train_interactions])[0])


def with_activity(serialized: bytes, bucket: str) -> bytes:
  """`serialized` with the string feature `member_activity` = `bucket` added."""
  example = tf.train.Example.FromString(serialized)
  if ACTIVITY_FEATURE in example.features.feature:
    raise ValueError(f"the raw data has a column {ACTIVITY_FEATURE!r} already; it is reserved "
                     "for the evaluation slices")
  example.features.feature[ACTIVITY_FEATURE].bytes_list.value.append(bucket.encode())
  return example.SerializeToString()


def _tag(element: Tuple[bytes, Mapping[str, Iterable]]) -> Iterable[bytes]:
  """(member, {train counts, eval examples}) -> the member's eval examples, tagged."""
  _, grouped = element
  bucket = activity_bucket(sum(grouped[_TRAIN]))
  for serialized in grouped[_EVAL]:
    yield with_activity(serialized, bucket)


def build_activity_pipeline(pipeline: beam.Pipeline, train_uri: str, eval_uri: str,
                            output_uri: str) -> None:
  """Adds the ActivitySlices transforms to `pipeline`.

  Args:
    pipeline: the Beam pipeline.
    train_uri: directory of the training period's gzipped raw tf.Example TFRecords.
    eval_uri: the same for the evaluation period.
    output_uri: receives `Split-eval/` with the tagged evaluation examples.
  """
  train = (pipeline
           | "ReadTrain" >> beam.io.ReadFromTFRecord(os.path.join(train_uri, "*"))
           | "TrainKey" >> beam.Map(lambda record: (member_key(record), 1))
           | "CountTrain" >> beam.CombinePerKey(sum))
  evaluation = (pipeline
                | "ReadEval" >> beam.io.ReadFromTFRecord(os.path.join(eval_uri, "*"))
                | "EvalKey" >> beam.Map(lambda record: (member_key(record), record)))
  _ = ({_TRAIN: train, _EVAL: evaluation}
       | "GroupByMember" >> beam.CoGroupByKey()
       | "Tag" >> beam.FlatMap(_tag)
       | "Write" >> beam.io.WriteToTFRecord(
           os.path.join(output_uri, f"Split-{EVAL_SPLIT}", _RECORD_PREFIX),
           file_name_suffix=".gz"))


@tfx.dsl.components.component(use_beam=True)
def ActivitySlices(  # pylint: disable=invalid-name
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    sliced_examples: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Examples],
    beam_pipeline: tfx.dsl.components.BeamComponentParameter[beam.Pipeline] = None,
) -> None:
  """Writes the `eval` split with each example's `member_activity` bucket (module docstring).

  Args:
    examples: ExampleGen output (raw tf.Examples) with `train` and `eval` splits.
    sliced_examples: the `eval` split, each example with `member_activity` added.
    beam_pipeline: provided by TFX, built from the pipeline's Beam args.
  """
  splits = artifact_utils.decode_split_names(examples.split_names)
  missing = [s for s in (TRAIN_SPLIT, EVAL_SPLIT) if s not in splits]
  if missing:
    raise ValueError(f"ActivitySlices needs examples with splits {TRAIN_SPLIT!r} and "
                     f"{EVAL_SPLIT!r}; missing {missing} (has {splits})")
  payload_format = examples_utils.get_payload_format(examples)
  if payload_format != example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE:
    raise ValueError("ActivitySlices reads tf.Example records; the examples have payload "
                     f"format {examples_utils.get_payload_format_string(examples)}")
  with beam_pipeline as pipeline:
    build_activity_pipeline(pipeline, artifact_utils.get_split_uri([examples], TRAIN_SPLIT),
                            artifact_utils.get_split_uri([examples], EVAL_SPLIT),
                            sliced_examples.uri)
  sliced_examples.split_names = artifact_utils.encode_split_names([EVAL_SPLIT])
  examples_utils.set_payload_format(sliced_examples, payload_format)
