"""Grouping serialized records by key through a compacting combiner."""

import random

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from tfx_pipeline.beam import grouped_records as gr


@pytest.mark.parametrize("records", [[], [b""], [b"a"], [b"", b"xyz", b""],
                                     [bytes(range(256)) * 3, b"\x00" * 1000, b"tail"]])
def test_pack_then_unpack_gives_the_records_back_in_order(records):
  assert gr.unpack(gr.pack(records)) == records


def test_records_of_one_member_pack_several_fold_smaller():
  # Serialized tf.Examples of one member repeat feature names and member features.
  records = [b"\n\x90\x01\n\x0fmember_features\x12\x0b\x12\t\n\x07\x00\x00\x80?\x00\x00\x00@"
             + b"\n\x07item_id\x12\x03\x1a\x01" + bytes([i % 251]) for i in range(500)]
  assert len(gr.pack(records)) * 4 < sum(map(len, records))


def test_the_combiner_groups_by_tag_through_compaction_and_merging():
  fn = gr.GroupRecordsFn(num_tags=2)
  first, second = fn.create_accumulator(), fn.create_accumulator()
  for tagged in [(0, b"a"), (1, b"x"), (0, b"b")]:
    first = fn.add_input(first, tagged)
  second = fn.add_input(second, (0, b"c"))
  shuffled = [fn.compact(first), fn.compact(second)]
  assert all(isinstance(part, bytes) for acc in shuffled for part in acc)
  merged = fn.merge_accumulators(shuffled + [fn.add_input(fn.create_accumulator(), (1, b"y"))])
  assert fn.extract_output(merged) == [[b"a", b"b", b"c"], [b"x", b"y"]]
  # A compacted accumulator still takes inputs (a runner may add after compacting).
  more = fn.add_input(fn.compact(first), (1, b"z"))
  assert fn.extract_output(more) == [[b"a", b"b"], [b"x", b"z"]]


def test_a_combiner_needs_a_tag():
  with pytest.raises(ValueError, match="num_tags"):
    gr.GroupRecordsFn(0)


def _sorted_groups(element):
  key, groups = element
  return key, {tag: sorted(records) for tag, records in groups.items()}


def test_grouping_matches_cogroupbykey_on_the_direct_runner():
  rng = random.Random(0)
  train = [(f"m{rng.randrange(40)}".encode(), rng.randbytes(rng.randrange(0, 60)))
           for _ in range(2000)]
  evaluation = [(f"m{rng.randrange(60)}".encode(), rng.randbytes(20)) for _ in range(300)]
  expected = {}
  for tag, pairs in (("train", train), ("eval", evaluation)):
    for key, record in pairs:
      expected.setdefault(key, {"train": [], "eval": []})[tag].append(record)
  expected = [_sorted_groups(item) for item in expected.items()]
  with beam.Pipeline() as pipeline:
    grouped = ({"train": pipeline | "Train" >> beam.Create(train),
                "eval": pipeline | "Eval" >> beam.Create(evaluation)}
               | gr.GroupRecordsByKey()
               | beam.Map(_sorted_groups))
    assert_that(grouped, equal_to(expected))


def test_grouping_nothing_is_an_error():
  with pytest.raises(ValueError, match="at least one"):
    gr.GroupRecordsByKey().expand({})
