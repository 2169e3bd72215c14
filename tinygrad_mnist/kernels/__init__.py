"""The engine room: fast implementations of some textbook ops (package in progress)."""
