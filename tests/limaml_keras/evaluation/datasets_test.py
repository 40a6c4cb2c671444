"""`datasets.load_csv` reads the user's CSVs by the pipeline's rules; the built-in names stay."""

import pytest

from limaml_keras import schema, synthetic
from limaml_keras.evaluation import datasets


@pytest.fixture(scope="module")
def small():
  return synthetic.generate(num_members=12, num_items=8, seed=1)


def test_reads_several_files_as_one_input_and_drops_cross_file_duplicates(tmp_path, small):
  frame = small.interactions
  half = len(frame) // 2
  first = synthetic.write_csv(small, str(tmp_path / "a.csv"))
  text = open(first, encoding="utf-8").read().splitlines()
  with open(tmp_path / "b.csv", "w", encoding="utf-8") as f:
    f.write("\n".join([text[0]] + text[1:half + 1]) + "\n")  # repeats rows of a.csv
  loaded, notes = datasets.load_csv([first, str(tmp_path / "b.csv")], small.spec,
                                    as_of=2_000_000_000)
  assert len(loaded) == len(frame)
  assert list(loaded.columns) == list(small.spec.all_columns())
  assert any(f"dropped {half} duplicate" in note for note in notes)


def test_bad_value_names_file_line_and_column(tmp_path, small):
  path = synthetic.write_csv(small, str(tmp_path / "a.csv"))
  lines = open(path, encoding="utf-8").read().splitlines()
  label = lines[0].split(",").index(schema.LABEL_COLUMN)
  cells = lines[2].split(",")
  cells[label] = "7"
  lines[2] = ",".join(cells)
  open(path, "w", encoding="utf-8").write("\n".join(lines) + "\n")
  with pytest.raises(ValueError, match=r"a.csv line 3: column 'label' must be 0 or 1"):
    datasets.load_csv([path], small.spec)


def test_no_file_is_an_error(small):
  with pytest.raises(ValueError, match="no CSV file"):
    datasets.load_csv([], small.spec)


def test_unknown_builtin_is_named():
  with pytest.raises(ValueError, match="unknown dataset"):
    datasets.load("netflix")
