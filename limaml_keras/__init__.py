"""LiMAML for Keras: meta-learned per-member personalisation of deep rankers."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
