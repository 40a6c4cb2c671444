"""Groups serialized records by key with a shuffle that holds compressed blobs.

`beam.CoGroupByKey` over serialized records shuffles one element per record.
The DirectRunner's controller decodes every shuffled element into a Python
object and keeps them all until the grouped side is read, then encodes all
of them once more. A member shuffle of a million transformed tf.Examples held
several GB that way.

`GroupRecordsByKey` gives the same grouping with a `CombineFn`. Runners lift
a combiner before the shuffle (the DirectRunner and Dataflow do, and so does
Beam's portable runner path, which Flink and Spark run Python through): each
worker gathers a key's records per bundle, and `compact` packs them into one
zlib-compressed blob per tag. The shuffle then holds one small
tuple per key and bundle, and the records of one member, which repeat feature
names and member features, compress several-fold. The grouped side gets every
record back unchanged, as lists; order within a key is not defined (as with
`CoGroupByKey`).
"""

import struct
import zlib
from typing import Dict, List, Mapping, Sequence, Tuple, Union

import apache_beam as beam
import numpy as np

#: zlib level of the packed blobs: level 1 compresses tf.Examples nearly as
#: well as the default level at several times its speed.
COMPRESSION_LEVEL = 1
_COUNT = struct.Struct("<I")

#: A tag's records in an accumulator: a list, or that list packed (`pack`).
_Part = Union[List[bytes], bytes]


def pack(records: Sequence[bytes]) -> bytes:
  """Records -> one compressed blob (`unpack` gives them back, in order)."""
  lengths = np.fromiter((len(r) for r in records), np.uint32, count=len(records))
  payload = b"".join([_COUNT.pack(len(records)), lengths.tobytes(), *records])
  return zlib.compress(payload, COMPRESSION_LEVEL)


def unpack(blob: bytes) -> List[bytes]:
  """A `pack` blob -> its records, in order."""
  payload = zlib.decompress(blob)
  (count,) = _COUNT.unpack_from(payload)
  lengths = np.frombuffer(payload, np.uint32, count, _COUNT.size)
  ends = (_COUNT.size + 4 * count + np.cumsum(lengths, dtype=np.int64)).tolist()
  starts = [_COUNT.size + 4 * count] + ends[:-1]
  return [payload[s:e] for s, e in zip(starts, ends)]


def _records(part: _Part) -> List[bytes]:
  return unpack(part) if isinstance(part, bytes) else part


class GroupRecordsFn(beam.CombineFn):
  """`(tag index, record)` values of one key -> one list of records per tag.

  Accumulators are one part per tag: a list of records while a worker adds
  to it, a packed blob once `compact`ed for the shuffle.
  """

  def __init__(self, num_tags: int):
    super().__init__()
    if num_tags < 1:
      raise ValueError(f"num_tags must be >= 1, got {num_tags}")
    self._num_tags = num_tags

  def create_accumulator(self) -> List[_Part]:
    return [[] for _ in range(self._num_tags)]

  def add_input(self, accumulator: Sequence[_Part], tagged: Tuple[int, bytes]) -> List[_Part]:
    index, record = tagged
    if isinstance(accumulator, tuple):  # Compacted.
      accumulator = list(accumulator)
    part = accumulator[index]
    if isinstance(part, bytes):
      part = accumulator[index] = unpack(part)
    part.append(record)
    return accumulator

  def merge_accumulators(self, accumulators) -> List[_Part]:
    merged = self.create_accumulator()
    for accumulator in accumulators:
      for index, part in enumerate(accumulator):
        merged[index].extend(_records(part))
    return merged

  def compact(self, accumulator: List[_Part]) -> Tuple[bytes, ...]:
    return tuple(part if isinstance(part, bytes) else pack(part) for part in accumulator)

  def extract_output(self, accumulator: List[_Part]) -> List[List[bytes]]:
    return [_records(part) for part in accumulator]


class GroupRecordsByKey(beam.PTransform):
  """`{tag: PCollection[(key, record bytes)]}` -> `PCollection[(key, {tag: [records]})]`.

  The output is `beam.CoGroupByKey`'s (every tag present, empty when a key
  has no record of it, lists instead of iterables); the shuffle is the
  combiner's (module docstring).
  """

  def expand(self, pcolls: Mapping[str, beam.PCollection]) -> beam.PCollection:
    tags = sorted(pcolls)
    if not tags:
      raise ValueError("GroupRecordsByKey needs at least one tagged PCollection")
    tagged = [pcolls[tag]
              | f"Tag{tag.title()}" >> beam.MapTuple(lambda k, r, i=i: (k, (i, r)))
              .with_output_types(Tuple[bytes, Tuple[int, bytes]])
              for i, tag in enumerate(tags)]
    return (tagged
            | "Flatten" >> beam.Flatten()
            | "Group" >> beam.CombinePerKey(GroupRecordsFn(len(tags)))
            | "ByTag" >> beam.Map(_by_tag, tags))


def _by_tag(grouped: Tuple[bytes, List[List[bytes]]], tags: Sequence[str]
            ) -> Tuple[bytes, Dict[str, List[bytes]]]:
  key, parts = grouped
  return key, dict(zip(tags, parts))
