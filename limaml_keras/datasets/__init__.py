"""Public data sets converted to the raw interaction schema."""
from limaml_keras.datasets.movielens import convert_to_csv
from limaml_keras.datasets.movielens import load_movielens
from limaml_keras.datasets.movielens import MOVIELENS_SPEC
from limaml_keras.datasets.movielens import MovieLensData
from limaml_keras.datasets.movielens import MovieLensFormatError
