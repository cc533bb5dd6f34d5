"""Shared test set-up: offline, ci profile, and a private data folder per session unless one is given."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports `datasets`
os.environ.setdefault("DSMINI_PROFILE", "ci")
os.environ.setdefault("DSMINI_DATA", "offline")
