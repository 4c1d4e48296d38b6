"""Enables pytester (pytest running pytest on a throwaway project) for the plugin tests."""

pytest_plugins = ["pytester"]
