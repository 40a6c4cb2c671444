"""Offline comparison of LiMAML with its baselines under a production-like time split."""
