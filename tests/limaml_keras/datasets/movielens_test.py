"""Tests of the MovieLens loader on its three layouts and on the shared copy."""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from limaml_keras import schema
from limaml_keras.datasets import movielens

# Builds TFX/Transform outputs or SavedModels in its fixtures: minutes, not seconds.
pytestmark = pytest.mark.slow

SHARED_DIR = pathlib.Path(__file__).resolve().parents[3].parent / "shared/data/movielens-100k"

# One tiny data set, written in both layouts below.
_USERS = [("1", "24", "M", "technician", "85711"), ("2", "53", "F", "other", "94043"),
          ("3", "23", "M", "none", "32067")]
# (id, GroupLens title, GroupLens release date, RecBole title, RecBole year, genres)
_ITEMS = [
    ("1", "Toy Story (1995)", "01-Jan-1995", "Toy Story", "1995",
     ("Animation", "Children's", "Comedy")),
    ("483", "Casablanca (1942)", "01-Jan-1942", "Casablanca", "1942", ("Drama", "Romance", "War")),
    ("1233", "Nénette et Boni (1996)", "16-May-1997", "Nénette et Boni", "1997", ("Drama",)),
    ("1412", "Land Before Time III: The Time of the Great Giving (1995) (V)", "",
     "Land Before Time III: The Time of the Great Giving (1995)", "V",
     ("Animation", "Children's")),
    ("267", "unknown", "", "unkonwn", "unkonwn", ("unknown",)),
    ("99", "Blade Runner (1982)", "01-Jan-1982", "Blade Runner", "1982", ("Film-Noir", "Sci-Fi")),
]
_RATINGS = [("1", "1", "5", "881250949"), ("1", "483", "3", "881250950"),
            ("2", "1233", "4", "881250000"), ("2", "267", "1", "881250001"),
            ("3", "1412", "2", "881250949"), ("3", "99", "4", "891717742"),
            ("3", "1", "3", "891717743")]


def _write(path: pathlib.Path, lines, encoding="utf-8") -> None:
  path.write_bytes(("\n".join(lines) + "\n").encode(encoding))


def _write_grouplens(directory: pathlib.Path) -> pathlib.Path:
  directory.mkdir(parents=True, exist_ok=True)
  _write(directory / "u.data", ["\t".join(row) for row in _RATINGS])
  _write(directory / "u.user", ["|".join(row) for row in _USERS])
  items = []
  for item_id, title, date, _, _, genres in _ITEMS:
    flags = ["1" if genre in genres else "0" for genre in movielens.GENRES]
    items.append("|".join([item_id, title, date, "", "http://us.imdb.com/M/title-exact?x"] + flags))
  _write(directory / "u.item", items, encoding="latin-1")
  return directory


def _write_recbole(directory: pathlib.Path, one_m: bool = False) -> pathlib.Path:
  """The data in RecBole's MovieLens-100K layout, or its MovieLens-1M one (`genre`, float years)."""
  directory.mkdir(parents=True, exist_ok=True)
  prefix, genre, year_type = ("ml-1m", "genre", "float") if one_m else ("ml-100k", "class", "token")
  year_text = lambda year: f"{year}.0" if one_m and year.isdigit() else year  # pylint: disable=unnecessary-lambda-assignment
  _write(directory / f"{prefix}.inter",
         ["user_id:token\titem_id:token\trating:float\ttimestamp:float"] +
         ["\t".join(row) for row in _RATINGS])
  _write(directory / f"{prefix}.user",
         ["user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token"] +
         ["\t".join(row) for row in _USERS])
  _write(directory / f"{prefix}.item",
         [f"item_id:token\tmovie_title:token_seq\trelease_year:{year_type}\t{genre}:token_seq"] +
         ["\t".join([item_id, title, year_text(year), " ".join(genres)])
          for item_id, _, _, title, year, genres in _ITEMS])
  return directory


def _read_raw_csv(path, spec: schema.FeatureSpec) -> pd.DataFrame:
  """Reads a raw-schema CSV with ids and categorical columns as strings."""
  strings = {column: str for column in
             (schema.MEMBER_ID_COLUMN, schema.ITEM_ID_COLUMN) + spec.categorical_columns()}
  return pd.read_csv(path, dtype=strings, keep_default_na=False)


def _assert_raw_schema(frame: pd.DataFrame) -> None:
  spec = movielens.MOVIELENS_SPEC
  assert tuple(frame.columns) == spec.all_columns()
  for column in (schema.MEMBER_ID_COLUMN, schema.ITEM_ID_COLUMN) + spec.categorical_columns():
    assert frame[column].map(type).eq(str).all(), column
  for column in (schema.TIMESTAMP_COLUMN, schema.LABEL_COLUMN):
    assert frame[column].dtype == np.int64, column
  for column in spec.numeric_columns():
    assert frame[column].dtype == np.float64, column
  assert frame.notna().all().all()


def test_spec_has_member_and_item_features_and_no_context():
  spec = movielens.MOVIELENS_SPEC
  assert spec.side("member") == (("age",), ("gender", "occupation"))
  assert spec.item_numeric[0] == "year"
  assert spec.item_numeric[1:] == movielens.GENRE_COLUMNS
  assert spec.side("context") == ((), ())
  assert movielens.GENRE_COLUMNS[4] == "genre_children_s"
  assert {"genre_film_noir", "genre_sci_fi"} <= set(movielens.GENRE_COLUMNS)


class TestGroupLens:

  @pytest.fixture
  def data(self, tmp_path):
    return movielens.load_movielens(_write_grouplens(tmp_path / "ml-100k"))

  def test_loads_to_the_raw_schema(self, data):
    assert data.layout == movielens.GROUPLENS
    assert data.spec == movielens.MOVIELENS_SPEC
    _assert_raw_schema(data.frame)
    assert len(data.frame) == len(_RATINGS)
    assert data.frame[schema.TIMESTAMP_COLUMN].is_monotonic_increasing

  def test_label_is_rating_at_least_four(self, data):
    np.testing.assert_array_equal(data.frame[schema.LABEL_COLUMN], (data.ratings >= 4).astype(int))
    assert data.frame[schema.LABEL_COLUMN].sum() == 3

  def test_features(self, data):
    rows = data.frame.drop_duplicates(schema.ITEM_ID_COLUMN).set_index(schema.ITEM_ID_COLUMN)
    toy_story_genres = ["genre_animation", "genre_children_s", "genre_comedy"]
    assert rows.loc["1", toy_story_genres].tolist() == [1, 1, 1]
    assert rows.loc["1"].filter(like="genre_").sum() == 3
    assert rows.loc["99", ["genre_film_noir", "genre_sci_fi"]].tolist() == [1, 1]
    assert rows.loc["483", "year"] == 1942 and rows.loc["1233", "year"] == 1997
    assert rows.loc["1412", "year"] == 1995  # From the title.
    # Median of the known item years 1995, 1942, 1997, 1995, 1982.
    assert rows.loc["267", "year"] == 1995
    members = data.frame.drop_duplicates(schema.MEMBER_ID_COLUMN).set_index(
        schema.MEMBER_ID_COLUMN)
    assert members.loc["2", ["age", "gender", "occupation"]].tolist() == [53.0, "F", "other"]
    assert members.loc["3", "occupation"] == "none"

  def test_same_frame_as_recbole_layout(self, data, tmp_path):
    recbole = movielens.load_movielens(_write_recbole(tmp_path / "recbole"))
    assert recbole.layout == movielens.RECBOLE
    pd.testing.assert_frame_equal(data.frame, recbole.frame)
    np.testing.assert_array_equal(data.ratings, recbole.ratings)

  def test_same_frame_from_the_movielens_1m_layout(self, data, tmp_path):
    one_m = movielens.load_movielens(_write_recbole(tmp_path / "ml-1m", one_m=True))
    assert one_m.layout == movielens.RECBOLE_1M
    pd.testing.assert_frame_equal(data.frame, one_m.frame)
    np.testing.assert_array_equal(data.ratings, one_m.ratings)

  def test_sample_members_keeps_whole_histories_of_a_seeded_draw(self, data):
    sample = movielens.sample_members(data, 2, seed=3)
    kept = set(sample.frame["member_id"])
    assert len(kept) == 2
    whole = data.frame[data.frame["member_id"].isin(kept)].reset_index(drop=True)
    pd.testing.assert_frame_equal(sample.frame, whole)
    np.testing.assert_array_equal(sample.ratings,
                                  data.ratings[data.frame["member_id"].isin(kept).to_numpy()])
    again = movielens.sample_members(data, 2, seed=3)
    pd.testing.assert_frame_equal(sample.frame, again.frame)
    for bad in (0, 4):
      with pytest.raises(ValueError, match=rf"members must be in \[1, 3\], got {bad}"):
        movielens.sample_members(data, bad)

  def test_converter_samples_members(self, data, tmp_path):
    path = movielens.convert_to_csv(tmp_path / "ml-100k", tmp_path / "out" / "raw.csv",
                                    members=1, seed=0)
    written = _read_raw_csv(path, movielens.MOVIELENS_SPEC)
    pd.testing.assert_frame_equal(written, movielens.sample_members(data, 1, seed=0).frame)

  def test_converter_command_line_names_a_bad_sample_size(self, data, tmp_path, capsys):
    del data  # Its fixture writes the files.
    with pytest.raises(SystemExit) as exit_info:
      movielens.main([str(tmp_path / "ml-100k"), str(tmp_path / "raw.csv"), "--members", "9"])
    assert exit_info.value.code == 2
    assert "members must be in [1, 3], got 9" in capsys.readouterr().err

  def test_converter_runs_as_a_module_without_runpy_warnings(self, data, tmp_path):
    del data  # Its fixture writes the files.
    out = tmp_path / "module" / "raw.csv"
    result = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m",
                             "limaml_keras.datasets.movielens", str(tmp_path / "ml-100k"),
                             str(out)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out) and out.exists()

  def test_converter_round_trip(self, data, tmp_path):
    path = movielens.convert_to_csv(tmp_path / "ml-100k", tmp_path / "out" / "raw.csv")
    assert path.read_text().splitlines()[0] == ",".join(movielens.MOVIELENS_SPEC.all_columns())
    pd.testing.assert_frame_equal(_read_raw_csv(path, movielens.MOVIELENS_SPEC), data.frame)

  def test_converter_writes_the_feature_spec_beside_the_csv(self, data, tmp_path):
    path = movielens.convert_to_csv(tmp_path / "ml-100k", tmp_path / "out" / "raw.csv")
    written = json.loads((path.parent / "features.json").read_text())
    assert schema.FeatureSpec(**{k: tuple(v) for k, v in written.items()}) == \
        movielens.MOVIELENS_SPEC


class TestErrors:

  def test_directory_with_neither_layout(self, tmp_path):
    (tmp_path / "README").write_text("nothing here")
    with pytest.raises(FileNotFoundError, match=r"u\.data.*ml-100k\.inter"):
      movielens.load_movielens(tmp_path)

  def test_incomplete_layout_names_the_missing_files(self, tmp_path):
    _write_grouplens(tmp_path)
    (tmp_path / "u.item").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing u\.item"):
      movielens.load_movielens(tmp_path)

  def test_non_numeric_rating_names_file_and_line(self, tmp_path):
    _write_grouplens(tmp_path)
    lines = (tmp_path / "u.data").read_text().splitlines()
    lines[2] = "2\t1233\tfour\t881250000"
    _write(tmp_path / "u.data", lines)
    with pytest.raises(movielens.MovieLensFormatError, match=r"u\.data, line 3: rating.*'four'"):
      movielens.load_movielens(tmp_path)

  def test_wrong_field_count_names_file_and_line(self, tmp_path):
    _write_recbole(tmp_path)
    with open(tmp_path / "ml-100k.inter", "a") as f:
      f.write("1\t99\t4\n")
    with pytest.raises(movielens.MovieLensFormatError,
                       match=r"ml-100k\.inter, line 9: expected 4 .* got 3"):
      movielens.load_movielens(tmp_path)

  def test_unknown_genre_names_file_and_line(self, tmp_path):
    _write_recbole(tmp_path)
    text = (tmp_path / "ml-100k.item").read_text().replace("Film-Noir", "Noir")
    (tmp_path / "ml-100k.item").write_text(text)
    with pytest.raises(movielens.MovieLensFormatError, match=r"ml-100k\.item, line 7: .*'Noir'"):
      movielens.load_movielens(tmp_path)

  def test_interaction_with_unknown_item(self, tmp_path):
    _write_grouplens(tmp_path)
    with open(tmp_path / "u.data", "a") as f:
      f.write("1\t12345\t4\t891717744\n")
    with pytest.raises(movielens.MovieLensFormatError, match=r"line 8: item_id '12345'"):
      movielens.load_movielens(tmp_path)


@pytest.mark.shared_data
class TestSharedRecBoleCopy:

  @pytest.fixture(scope="class")
  def data(self):
    if not SHARED_DIR.is_dir():
      pytest.skip(f"shared MovieLens-100K copy not found at {SHARED_DIR}")
    return movielens.load_movielens(SHARED_DIR)

  def test_counts(self, data):
    frame = data.frame
    assert data.layout == movielens.RECBOLE
    _assert_raw_schema(frame)
    assert len(frame) == 100_000
    assert frame[schema.MEMBER_ID_COLUMN].nunique() == 943
    assert frame[schema.ITEM_ID_COLUMN].nunique() == 1682
    assert (len(data.members), len(data.items)) == (943, 1682)

  def test_labels(self, data):
    np.testing.assert_array_equal(np.unique(data.ratings), [1, 2, 3, 4, 5])
    assert int((data.ratings >= 4).sum()) == 55_375
    assert data.frame[schema.LABEL_COLUMN].sum() == 55_375

  def test_features(self, data):
    items = data.items.set_index(schema.ITEM_ID_COLUMN)
    toy_story = items.loc["1"]
    assert toy_story["year"] == 1995
    assert set(toy_story.filter(like="genre_")[lambda s: s == 1].index) == {
        "genre_animation", "genre_children_s", "genre_comedy"}
    assert items["genre_film_noir"].sum() == 24 and items["genre_sci_fi"].sum() == 101
    assert items.loc["1412", "year"] == 1995  # release_year "V"; year from the title.
    assert items.loc["267", "year"] == items["year"].drop("267").median()
    assert data.frame["year"].between(1922, 1998).all()
    assert set(data.frame["gender"]) == {"M", "F"}
    assert data.frame["occupation"].nunique() == 21
